//! The OSR USB-FX2 learning kit as a piece of hardware: switches, light bar, seven-segment
//! display, the interrupt pipe, the bulk loopback and the USB cable.
//!
//! # Two sides of one board
//!
//! An [`Fx2Board`] is a cloneable handle to one board (an `Arc` around a `Mutex`-protected state and
//! a `Condvar`), so a test, a driver model and a demo renderer can all hold it at once. Its methods
//! fall into two groups:
//!
//! * **The person at the desk** — [`flip_switch`](Fx2Board::flip_switch),
//!   [`set_switches`](Fx2Board::set_switches), [`plug_in`](Fx2Board::plug_in),
//!   [`unplug`](Fx2Board::unplug), and the observers [`snapshot`](Fx2Board::snapshot) and
//!   [`picture`](Fx2Board::picture). These always work: DIP switches can be flipped on an unplugged
//!   board, and anyone can look at it.
//! * **The USB host** — vendor requests ([`read_switches`](Fx2Board::read_switches),
//!   [`set_bar_graph`](Fx2Board::set_bar_graph), [`vendor_request`](Fx2Board::vendor_request), …),
//!   the interrupt pipe, the bulk pipes, port reset, re-enumeration and bus power
//!   ([`power_on`](Fx2Board::power_on), [`suspend`](Fx2Board::suspend),
//!   [`resume`](Fx2Board::resume), [`power_off`](Fx2Board::power_off)). These fail with an
//!   [`Fx2Error`] when the board is unplugged ([`Fx2Error::Unplugged`]) or not running
//!   ([`Fx2Error::PoweredOff`], [`Fx2Error::Suspended`]); the driver model maps those to NTSTATUS
//!   values the way a USB stack would.
//!
//! # The interrupt pipe
//!
//! The firmware sends one byte — the [`SwitchState`] — when it starts ([`power_on`](Fx2Board::power_on),
//! a re-enumeration), when it [`resume`](Fx2Board::resume)s from suspend, and on every switch change,
//! with no de-bounce: each flip is one byte. While the board is suspended or off, switch changes send
//! nothing (a suspended board with remote wake enabled reports [`BoardEvent::RemoteWake`] instead).
//! Bytes wait in a bounded FIFO in the endpoint (oldest dropped on overflow, counted in the
//! snapshot) until the host reads them, in one of two ways:
//!
//! * **polling** — [`try_read_interrupt`](Fx2Board::try_read_interrupt) (non-blocking) or
//!   [`read_interrupt_timeout`](Fx2Board::read_interrupt_timeout) (blocks on the condition variable,
//!   for demos in real time);
//! * **a continuous reader** — [`on_interrupt`](Fx2Board::on_interrupt) registers a hook that
//!   receives every byte, starting with those already waiting; while at least one hook is
//!   registered the hooks consume the bytes (like KMDF's continuous reader owning the pipe), and
//!   removing the last one ([`remove_hook`](Fx2Board::remove_hook)) lets bytes queue again. A driver
//!   model registers the hook in D0Entry and removes it in D0Exit, and completes the requests parked
//!   in its manual queue from the hook — no threads needed.
//!
//! # Hooks and ordering
//!
//! Hooks ([`on_interrupt`](Fx2Board::on_interrupt), and [`on_event`](Fx2Board::on_event) for
//! [`BoardEvent`]s such as light-bar changes, bulk data, unplug) run on the thread that caused the
//! change, **after** the board's lock is released, so a hook may call back into the board (read the
//! switches, even flip one). Delivery is serialized: one thread at a time delivers, in the order
//! the changes happened; a change made from inside a hook, or by another thread during a delivery,
//! is delivered by the thread already delivering, after the current hook returns. Every hook sees
//! every byte (broadcast).
//!
//! # Bulk loopback
//!
//! [`bulk_write`](Fx2Board::bulk_write) to endpoint `0x06` accepts as many bytes as the bounded
//! loopback buffer has room for (the real board double-buffers, so a large write blocks until
//! someone reads); [`bulk_read`](Fx2Board::bulk_read) from endpoint `0x88` returns them in order,
//! unchanged. The board creates no data itself.
//!
//! ```
//! use kmdf_sim::fx2::board::Fx2Board;
//!
//! let board = Fx2Board::new();
//! board.power_on().unwrap();
//! assert_eq!(board.try_read_interrupt().unwrap(), Some(0x00)); // start-up byte
//! board.flip_switch(1).unwrap();
//! board.flip_switch(3).unwrap();
//! assert_eq!(board.try_read_interrupt().unwrap(), Some(0x01));
//! assert_eq!(board.try_read_interrupt().unwrap(), Some(0x05));
//! assert_eq!(board.try_read_interrupt().unwrap(), None);
//!
//! board.set_bar_graph(0x0D.into()).unwrap();
//! assert!(board.picture().contains("●○●●○○○○"));
//! ```

use core::fmt;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ioctl::{BarGraphState, SevenSegment, SwitchState};
use super::usb::{configuration_descriptor, UsbSpeed, VendorRequest};

/// Why the board refused a USB operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fx2Error {
    /// The board is not connected to the host.
    Unplugged,
    /// The board is connected but not powered (not yet started, or powered off).
    PoweredOff,
    /// The board is in USB suspend.
    Suspended,
    /// A switch number outside 1..=8.
    InvalidSwitch(u8),
    /// The device stalled a vendor request it does not know.
    Stall {
        /// The request's `bRequest`.
        request: u8,
    },
    /// The data buffer is shorter than the request's data stage.
    BufferTooSmall {
        /// Bytes the data stage needs.
        needed: usize,
    },
}

impl fmt::Display for Fx2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fx2Error::Unplugged => f.write_str("the OSR FX2 board is unplugged"),
            Fx2Error::PoweredOff => f.write_str("the OSR FX2 board is not powered"),
            Fx2Error::Suspended => f.write_str("the OSR FX2 board is suspended"),
            Fx2Error::InvalidSwitch(n) => write!(f, "no switch {n} (switches are 1 to 8)"),
            Fx2Error::Stall { request } => {
                write!(f, "the device stalled vendor request 0x{request:02X}")
            }
            Fx2Error::BufferTooSmall { needed } => {
                write!(f, "the data buffer must hold {needed} byte(s)")
            }
        }
    }
}

impl std::error::Error for Fx2Error {}

/// The board's bus-power state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Not running: unplugged, or plugged in and not yet (or no longer) started by the host.
    #[default]
    Off,
    /// Running (the device is in D0 from the host's point of view).
    On,
    /// In USB suspend (selective suspend or system sleep).
    Suspended,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::Off => "off",
            PowerState::On => "on",
            PowerState::Suspended => "suspended",
        })
    }
}

/// Something that happened on the board, reported to [`Fx2Board::on_event`] hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BoardEvent {
    /// A switch (or several at once) changed; the new state.
    SwitchesChanged(SwitchState),
    /// The host set the light bar; the new state.
    BarGraphChanged(BarGraphState),
    /// The host set the seven-segment display; the new value.
    SevenSegmentChanged(SevenSegment),
    /// Bytes were written to the bulk OUT endpoint; `pending` bytes now wait on bulk IN.
    BulkDataReady {
        /// Bytes waiting to be read.
        pending: usize,
    },
    /// Bytes were read from bulk IN; the loopback buffer has `free` bytes of room.
    BulkSpaceFreed {
        /// Free room in the loopback buffer.
        free: usize,
    },
    /// The board was connected.
    PluggedIn,
    /// The board was disconnected (surprise removal from the host's point of view).
    Unplugged,
    /// The bus-power state changed.
    PowerChanged(PowerState),
    /// A switch changed while the board was suspended with remote wake enabled.
    RemoteWake,
    /// The host reset the port.
    PortReset,
    /// The host made the board re-enumerate.
    Reenumerated,
}

/// Identifies a registered hook, for [`Fx2Board::remove_hook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookId(u64);

/// How a board is built: bus speed, buffer sizes and the switches' initial positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fx2BoardConfig {
    /// Bus speed (decides the bulk max packet size in the descriptor). Default: high speed.
    pub speed: UsbSpeed,
    /// Room in the bulk loopback buffer, in bytes. Default: 1024 (two 512-byte buffers).
    pub bulk_capacity: usize,
    /// Interrupt bytes the endpoint holds before dropping the oldest. Default: 64.
    pub interrupt_capacity: usize,
    /// Switch positions when the board is built. Default: all off.
    pub initial_switches: SwitchState,
}

impl Default for Fx2BoardConfig {
    fn default() -> Self {
        Self {
            speed: UsbSpeed::High,
            bulk_capacity: 1024,
            interrupt_capacity: 64,
            initial_switches: SwitchState::OFF,
        }
    }
}

/// Everything visible about a board at one instant (see [`Fx2Board::snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardSnapshot {
    /// Whether the cable is plugged in.
    pub connected: bool,
    /// Bus-power state.
    pub power: PowerState,
    /// Bus speed.
    pub speed: UsbSpeed,
    /// Switch positions.
    pub switches: SwitchState,
    /// Light bar.
    pub bar_graph: BarGraphState,
    /// Seven-segment display.
    pub seven_segment: SevenSegment,
    /// Whether the host enabled remote wake.
    pub remote_wake_enabled: bool,
    /// Interrupt bytes waiting in the endpoint.
    pub interrupt_pending: usize,
    /// Interrupt bytes queued since the board was built.
    pub interrupt_sent: u64,
    /// Interrupt bytes dropped because the endpoint FIFO was full.
    pub interrupt_dropped: u64,
    /// Bytes waiting in the bulk loopback buffer.
    pub bulk_pending: usize,
    /// Port resets so far.
    pub reset_count: u64,
    /// Re-enumerations so far.
    pub reenumerate_count: u64,
}

type InterruptHook = Arc<dyn Fn(u8) + Send + Sync>;
type EventHook = Arc<dyn Fn(&BoardEvent) + Send + Sync>;

/// The board's state, behind the mutex.
struct State {
    config: Fx2BoardConfig,
    connected: bool,
    power: PowerState,
    switches: SwitchState,
    bar_graph: BarGraphState,
    seven_segment: SevenSegment,
    remote_wake_enabled: bool,
    interrupt_fifo: VecDeque<u8>,
    interrupt_sent: u64,
    interrupt_dropped: u64,
    bulk: VecDeque<u8>,
    reset_count: u64,
    reenumerate_count: u64,
    interrupt_hooks: Vec<(HookId, InterruptHook)>,
    event_hooks: Vec<(HookId, EventHook)>,
    /// Events not yet handed to the event hooks.
    events: VecDeque<BoardEvent>,
    /// INVARIANT: true while exactly one thread runs the delivery loop in [`Fx2Board::deliver`].
    delivering: bool,
    next_hook: u64,
}

impl State {
    /// Fails unless the host can talk to the board.
    fn require_running(&self) -> Result<(), Fx2Error> {
        match (self.connected, self.power) {
            (false, _) => Err(Fx2Error::Unplugged),
            (true, PowerState::Off) => Err(Fx2Error::PoweredOff),
            (true, PowerState::Suspended) => Err(Fx2Error::Suspended),
            (true, PowerState::On) => Ok(()),
        }
    }

    fn require_connected(&self) -> Result<(), Fx2Error> {
        if self.connected {
            Ok(())
        } else {
            Err(Fx2Error::Unplugged)
        }
    }

    fn event(&mut self, event: BoardEvent) {
        if !self.event_hooks.is_empty() {
            self.events.push_back(event);
        }
    }

    /// The firmware sends the current switch byte on the interrupt pipe.
    fn send_interrupt(&mut self) {
        if self.interrupt_fifo.len() >= self.config.interrupt_capacity {
            if self.interrupt_fifo.pop_front().is_none() {
                // A zero-capacity endpoint holds nothing.
                self.interrupt_dropped += 1;
                return;
            }
            self.interrupt_dropped += 1;
        }
        self.interrupt_fifo.push_back(self.switches.raw());
        self.interrupt_sent += 1;
    }

    /// A switch change: one interrupt byte if running; a remote-wake signal if suspended and armed.
    fn switches_changed(&mut self, new: SwitchState) {
        if new == self.switches {
            return;
        }
        self.switches = new;
        self.event(BoardEvent::SwitchesChanged(new));
        if !self.connected {
            return;
        }
        match self.power {
            PowerState::On => self.send_interrupt(),
            PowerState::Suspended if self.remote_wake_enabled => {
                self.event(BoardEvent::RemoteWake);
            }
            PowerState::Suspended | PowerState::Off => {}
        }
    }

    /// Endpoint buffers lose their contents (power loss, reset, re-enumeration).
    fn flush_endpoints(&mut self) {
        self.interrupt_fifo.clear();
        self.bulk.clear();
    }

    fn set_power(&mut self, power: PowerState) {
        if self.power != power {
            self.power = power;
            self.event(BoardEvent::PowerChanged(power));
        }
    }

    fn snapshot(&self) -> BoardSnapshot {
        BoardSnapshot {
            connected: self.connected,
            power: self.power,
            speed: self.config.speed,
            switches: self.switches,
            bar_graph: self.bar_graph,
            seven_segment: self.seven_segment,
            remote_wake_enabled: self.remote_wake_enabled,
            interrupt_pending: self.interrupt_fifo.len(),
            interrupt_sent: self.interrupt_sent,
            interrupt_dropped: self.interrupt_dropped,
            bulk_pending: self.bulk.len(),
            reset_count: self.reset_count,
            reenumerate_count: self.reenumerate_count,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled whenever an interrupt byte is queued or the board goes away.
    changed: Condvar,
}

/// One simulated OSR USB-FX2 board (a cloneable, thread-safe handle; see the module docs).
#[derive(Clone)]
pub struct Fx2Board {
    shared: Arc<Shared>,
}

/// Clears the delivering flag if a hook panics, so later changes are still delivered.
struct DeliveryGuard<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for DeliveryGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.shared).delivering = false;
        }
    }
}

/// Locks the state; a panic in another thread (a hook, a test) does not make the board unusable.
fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One unit of work for the delivery loop, run without the lock held.
enum Delivery {
    Interrupt(u8, Vec<InterruptHook>),
    Event(BoardEvent, Vec<EventHook>),
}

impl Default for Fx2Board {
    fn default() -> Self {
        Self::new()
    }
}

impl Fx2Board {
    /// A board with the default [`Fx2BoardConfig`]: plugged in, powered off, switches all off.
    pub fn new() -> Self {
        Self::with_config(Fx2BoardConfig::default())
    }

    /// A board built as `config` says: plugged in, powered off.
    pub fn with_config(config: Fx2BoardConfig) -> Self {
        let state = State {
            config,
            connected: true,
            power: PowerState::Off,
            switches: config.initial_switches,
            bar_graph: BarGraphState::OFF,
            seven_segment: SevenSegment::BLANK,
            remote_wake_enabled: false,
            interrupt_fifo: VecDeque::new(),
            interrupt_sent: 0,
            interrupt_dropped: 0,
            bulk: VecDeque::new(),
            reset_count: 0,
            reenumerate_count: 0,
            interrupt_hooks: Vec::new(),
            event_hooks: Vec::new(),
            events: VecDeque::new(),
            delivering: false,
            next_hook: 1,
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                changed: Condvar::new(),
            }),
        }
    }

    /// How this board was built.
    pub fn config(&self) -> Fx2BoardConfig {
        self.lock().config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Runs `change` under the lock, wakes blocked readers, then delivers hooks without the lock.
    fn change<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let result = {
            let mut state = self.lock();
            change(&mut state)
        };
        self.shared.changed.notify_all();
        self.deliver();
        result
    }

    /// The delivery loop (see "Hooks and ordering" in the module docs).
    fn deliver(&self) {
        let mut state = self.lock();
        if state.delivering {
            return; // the delivering thread will pick our change up
        }
        state.delivering = true;
        let mut guard = DeliveryGuard {
            shared: &self.shared,
            armed: true,
        };
        loop {
            let next = if state.interrupt_hooks.is_empty() {
                None
            } else {
                state.interrupt_fifo.pop_front().map(|byte| {
                    let hooks = state
                        .interrupt_hooks
                        .iter()
                        .map(|(_, h)| h.clone())
                        .collect();
                    Delivery::Interrupt(byte, hooks)
                })
            };
            let next = next.or_else(|| {
                state.events.pop_front().map(|event| {
                    let hooks = state.event_hooks.iter().map(|(_, h)| h.clone()).collect();
                    Delivery::Event(event, hooks)
                })
            });
            let Some(next) = next else {
                // Cleared under the same lock that found the queues empty, so no change is stranded.
                state.delivering = false;
                guard.armed = false;
                return;
            };
            drop(state);
            match next {
                Delivery::Interrupt(byte, hooks) => hooks.iter().for_each(|hook| hook(byte)),
                Delivery::Event(event, hooks) => hooks.iter().for_each(|hook| hook(&event)),
            }
            state = self.lock();
        }
    }

    // -----------------------------------------------------------------------------------------
    // The person at the desk
    // -----------------------------------------------------------------------------------------

    /// Toggles switch `n` (1..=8) and returns the new switch state. Works whether or not the board
    /// is plugged in; a running board sends the new state on the interrupt pipe.
    pub fn flip_switch(&self, n: u8) -> Result<SwitchState, Fx2Error> {
        self.change(|state| {
            let new = state
                .switches
                .toggled(n)
                .ok_or(Fx2Error::InvalidSwitch(n))?;
            state.switches_changed(new);
            Ok(new)
        })
    }

    /// Sets switch `n` (1..=8) on or off and returns the new switch state; no byte if unchanged.
    pub fn set_switch(&self, n: u8, on: bool) -> Result<SwitchState, Fx2Error> {
        self.change(|state| {
            let new = state
                .switches
                .with_switch(n, on)
                .ok_or(Fx2Error::InvalidSwitch(n))?;
            state.switches_changed(new);
            Ok(new)
        })
    }

    /// Sets all eight switches at once (one change: at most one interrupt byte).
    pub fn set_switches(&self, switches: SwitchState) {
        self.change(|state| state.switches_changed(switches));
    }

    /// The switch positions as a person sees them (no USB traffic; works unplugged).
    pub fn switches(&self) -> SwitchState {
        self.lock().switches
    }

    /// Connects the cable. The board stays powered off until the host calls [`power_on`](Self::power_on).
    pub fn plug_in(&self) {
        self.change(|state| {
            if !state.connected {
                state.connected = true;
                state.event(BoardEvent::PluggedIn);
            }
        });
    }

    /// Pulls the cable: the board loses power, its displays go dark, pending endpoint data is lost
    /// and blocked readers wake with [`Fx2Error::Unplugged`]. Switch positions are kept.
    pub fn unplug(&self) {
        self.change(|state| {
            if state.connected {
                state.connected = false;
                state.set_power(PowerState::Off);
                state.flush_endpoints();
                state.bar_graph = BarGraphState::OFF;
                state.seven_segment = SevenSegment::BLANK;
                state.remote_wake_enabled = false;
                state.event(BoardEvent::Unplugged);
            }
        });
    }

    /// Whether the cable is plugged in.
    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }

    /// The bus-power state.
    pub fn power_state(&self) -> PowerState {
        self.lock().power
    }

    /// Port resets so far.
    pub fn reset_count(&self) -> u64 {
        self.lock().reset_count
    }

    /// Re-enumerations so far.
    pub fn reenumerate_count(&self) -> u64 {
        self.lock().reenumerate_count
    }

    /// Everything visible about the board, read atomically.
    pub fn snapshot(&self) -> BoardSnapshot {
        self.lock().snapshot()
    }

    /// The board as a few lines of text for demos:
    ///
    /// ```text
    /// OSR USB-FX2 · plugged in · on · high speed
    ///   switches   [1 0 1 1 0 0 0 0]
    ///   light bar  ●○●●○○○○
    ///   7-segment  0x06 (00000110)
    ///   pipes      interrupt messages unread 0 · bulk 0/1024 · resets 0 · re-enumerations 0
    /// ```
    ///
    /// "interrupt messages unread" counts switch changes the board queued on its interrupt pipe
    /// that the host has not read yet: 0 while the FX2 driver keeps its continuous reader
    /// running, whether or not an application's `GET_INTERRUPT_MESSAGE` is waiting.
    pub fn picture(&self) -> String {
        let snapshot = self.snapshot();
        let capacity = self.config().bulk_capacity;
        render_picture(&snapshot, capacity)
    }

    // -----------------------------------------------------------------------------------------
    // The USB host: power
    // -----------------------------------------------------------------------------------------

    /// The host starts the board: it powers up and the firmware sends the current switch byte on
    /// the interrupt pipe. Does nothing if it is already on; resumes it if suspended.
    pub fn power_on(&self) -> Result<(), Fx2Error> {
        self.change(|state| {
            state.require_connected()?;
            match state.power {
                PowerState::On => {}
                PowerState::Off | PowerState::Suspended => {
                    state.set_power(PowerState::On);
                    state.send_interrupt();
                }
            }
            Ok(())
        })
    }

    /// The host suspends the board (selective suspend or system sleep); nothing is sent on the
    /// interrupt pipe until [`resume`](Self::resume). Does nothing if already suspended.
    pub fn suspend(&self) -> Result<(), Fx2Error> {
        self.change(|state| {
            state.require_connected()?;
            match state.power {
                PowerState::Off => Err(Fx2Error::PoweredOff),
                PowerState::Suspended => Ok(()),
                PowerState::On => {
                    state.set_power(PowerState::Suspended);
                    Ok(())
                }
            }
        })
    }

    /// The host resumes a suspended board: the firmware sends the current switch byte (so a pended
    /// GET_INTERRUPT_MESSAGE can complete on power-up with no switch change). Does nothing if on.
    pub fn resume(&self) -> Result<(), Fx2Error> {
        self.change(|state| {
            state.require_connected()?;
            match state.power {
                PowerState::Off => Err(Fx2Error::PoweredOff),
                PowerState::On => Ok(()),
                PowerState::Suspended => {
                    state.set_power(PowerState::On);
                    state.send_interrupt();
                    Ok(())
                }
            }
        })
    }

    /// The host powers the board down (device removed or disabled): pending endpoint data is lost.
    /// Does nothing if already off; works unplugged.
    pub fn power_off(&self) {
        self.change(|state| {
            if state.power != PowerState::Off {
                state.set_power(PowerState::Off);
                state.flush_endpoints();
            }
        });
    }

    /// `SET_FEATURE`/`CLEAR_FEATURE(DEVICE_REMOTE_WAKEUP)`: whether a switch change while suspended
    /// signals [`BoardEvent::RemoteWake`].
    pub fn set_remote_wake_enabled(&self, enabled: bool) -> Result<(), Fx2Error> {
        self.change(|state| {
            state.require_connected()?;
            state.remote_wake_enabled = enabled;
            Ok(())
        })
    }

    // -----------------------------------------------------------------------------------------
    // The USB host: control transfers
    // -----------------------------------------------------------------------------------------

    /// The configuration descriptor (as `WdfUsbTargetDeviceRetrieveConfigDescriptor` returns it).
    /// Needs only the cable: descriptors are read before the device is started.
    pub fn configuration_descriptor(&self) -> Result<Vec<u8>, Fx2Error> {
        let state = self.lock();
        state.require_connected()?;
        Ok(configuration_descriptor(state.config.speed).to_vec())
    }

    /// A vendor control request by number, as the driver sends it: IN requests write their byte to
    /// `data[0]`, OUT requests read theirs from `data[0]`; returns the bytes transferred. Unknown
    /// requests stall ([`Fx2Error::Stall`]).
    pub fn vendor_request(&self, request: u8, data: &mut [u8]) -> Result<usize, Fx2Error> {
        let kind = VendorRequest::from_code(request).ok_or(Fx2Error::Stall { request })?;
        let needed = kind.data_length();
        if data.len() < needed {
            return Err(Fx2Error::BufferTooSmall { needed });
        }
        self.change(|state| {
            state.require_running()?;
            match kind {
                VendorRequest::Read7Segment => data[0] = state.seven_segment.raw(),
                VendorRequest::ReadSwitches => data[0] = state.switches.raw(),
                VendorRequest::ReadBarGraph => data[0] = state.bar_graph.raw(),
                VendorRequest::IsHighSpeed => {
                    data[0] = u8::from(state.config.speed == UsbSpeed::High);
                }
                VendorRequest::SetBarGraph => {
                    state.bar_graph = BarGraphState::from_raw(data[0]);
                    state.event(BoardEvent::BarGraphChanged(state.bar_graph));
                }
                VendorRequest::Set7Segment => {
                    state.seven_segment = SevenSegment::from_raw(data[0]);
                    state.event(BoardEvent::SevenSegmentChanged(state.seven_segment));
                }
                VendorRequest::Reenumerate => {
                    state.reenumerate_count += 1;
                    state.flush_endpoints();
                    state.event(BoardEvent::Reenumerated);
                    // The firmware restarts and announces the switches again.
                    state.send_interrupt();
                }
            }
            Ok(needed)
        })
    }

    fn vendor_in(&self, request: VendorRequest) -> Result<u8, Fx2Error> {
        let mut byte = [0u8];
        self.vendor_request(request.code(), &mut byte)?;
        Ok(byte[0])
    }

    fn vendor_out(&self, request: VendorRequest, byte: u8) -> Result<(), Fx2Error> {
        self.vendor_request(request.code(), &mut [byte]).map(|_| ())
    }

    /// Vendor request `0xD6`: the switch byte.
    pub fn read_switches(&self) -> Result<SwitchState, Fx2Error> {
        self.vendor_in(VendorRequest::ReadSwitches)
            .map(SwitchState::from_raw)
    }

    /// Vendor request `0xD7`: the light bar.
    pub fn bar_graph(&self) -> Result<BarGraphState, Fx2Error> {
        self.vendor_in(VendorRequest::ReadBarGraph)
            .map(BarGraphState::from_raw)
    }

    /// Vendor request `0xD8`: sets the light bar.
    pub fn set_bar_graph(&self, bars: BarGraphState) -> Result<(), Fx2Error> {
        self.vendor_out(VendorRequest::SetBarGraph, bars.raw())
    }

    /// Vendor request `0xD4`: the seven-segment display.
    pub fn seven_segment(&self) -> Result<SevenSegment, Fx2Error> {
        self.vendor_in(VendorRequest::Read7Segment)
            .map(SevenSegment::from_raw)
    }

    /// Vendor request `0xDB`: sets the seven-segment display.
    pub fn set_seven_segment(&self, value: SevenSegment) -> Result<(), Fx2Error> {
        self.vendor_out(VendorRequest::Set7Segment, value.raw())
    }

    /// Vendor request `0xD9`: whether the board runs at high speed.
    pub fn is_high_speed(&self) -> Result<bool, Fx2Error> {
        self.vendor_in(VendorRequest::IsHighSpeed).map(|b| b != 0)
    }

    /// Vendor request `0xDA`: the firmware re-enumerates. Endpoint data is lost, the counter goes
    /// up, [`BoardEvent::Reenumerated`] is reported, and the restarted firmware sends the switch
    /// byte again. Power and displays are kept (a modelling choice: the host-side removal and
    /// re-arrival of the device is the driver model's business).
    pub fn reenumerate(&self) -> Result<(), Fx2Error> {
        self.vendor_request(VendorRequest::Reenumerate.code(), &mut [])
            .map(|_| ())
    }

    /// Resets the USB port (IOCTL_OSRUSBFX2_RESET_DEVICE's `WdfUsbTargetDeviceResetPortSynchronously`):
    /// endpoint data is lost and the counter goes up; power and displays are kept.
    pub fn reset_port(&self) -> Result<(), Fx2Error> {
        self.change(|state| {
            state.require_connected()?;
            state.reset_count += 1;
            state.flush_endpoints();
            state.event(BoardEvent::PortReset);
            Ok(())
        })
    }

    // -----------------------------------------------------------------------------------------
    // The USB host: interrupt pipe
    // -----------------------------------------------------------------------------------------

    /// Takes the oldest interrupt byte waiting in the endpoint, or `None` if there is none (always
    /// `None` while an [`on_interrupt`](Self::on_interrupt) hook consumes the bytes).
    pub fn try_read_interrupt(&self) -> Result<Option<u8>, Fx2Error> {
        let mut state = self.lock();
        state.require_running()?;
        Ok(state.interrupt_fifo.pop_front())
    }

    /// Waits up to `timeout` (real time) for an interrupt byte; `Ok(None)` on timeout. Fails at
    /// once, or as soon as it happens, if the board is unplugged, powered off or suspended.
    pub fn read_interrupt_timeout(&self, timeout: Duration) -> Result<Option<u8>, Fx2Error> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        loop {
            state.require_running()?;
            if let Some(byte) = state.interrupt_fifo.pop_front() {
                return Ok(Some(byte));
            }
            let remaining = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(remaining) if !remaining.is_zero() => remaining,
                    _ => return Ok(None),
                },
                None => Duration::from_hours(1), // "forever": wait in long slices
            };
            state = self
                .shared
                .changed
                .wait_timeout(state, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Registers a continuous reader: `hook` receives every interrupt byte, starting with those
    /// already waiting, until [`remove_hook`](Self::remove_hook). See the module docs for ordering.
    pub fn on_interrupt(&self, hook: impl Fn(u8) + Send + Sync + 'static) -> HookId {
        self.change(|state| {
            let id = HookId(state.next_hook);
            state.next_hook += 1;
            state.interrupt_hooks.push((id, Arc::new(hook)));
            id
        })
    }

    /// Registers `hook` for every [`BoardEvent`] from now on.
    pub fn on_event(&self, hook: impl Fn(&BoardEvent) + Send + Sync + 'static) -> HookId {
        self.change(|state| {
            let id = HookId(state.next_hook);
            state.next_hook += 1;
            state.event_hooks.push((id, Arc::new(hook)));
            id
        })
    }

    /// Removes a hook registered with [`on_interrupt`](Self::on_interrupt) or
    /// [`on_event`](Self::on_event); returns whether it was registered. A delivery already under
    /// way on another thread may still call it once.
    pub fn remove_hook(&self, id: HookId) -> bool {
        let mut state = self.lock();
        let before = state.interrupt_hooks.len() + state.event_hooks.len();
        state.interrupt_hooks.retain(|(h, _)| *h != id);
        state.event_hooks.retain(|(h, _)| *h != id);
        if state.event_hooks.is_empty() {
            state.events.clear();
        }
        before != state.interrupt_hooks.len() + state.event_hooks.len()
    }

    // -----------------------------------------------------------------------------------------
    // The USB host: bulk loopback
    // -----------------------------------------------------------------------------------------

    /// Writes to bulk OUT (`0x06`): accepts as many bytes as the loopback buffer has room for and
    /// returns that count (0 when full — the caller waits for [`BoardEvent::BulkSpaceFreed`]).
    pub fn bulk_write(&self, data: &[u8]) -> Result<usize, Fx2Error> {
        self.change(|state| {
            state.require_running()?;
            let room = state.config.bulk_capacity.saturating_sub(state.bulk.len());
            let accepted = room.min(data.len());
            state.bulk.extend(&data[..accepted]);
            if accepted > 0 {
                state.event(BoardEvent::BulkDataReady {
                    pending: state.bulk.len(),
                });
            }
            Ok(accepted)
        })
    }

    /// Reads from bulk IN (`0x88`): copies up to `buffer.len()` looped-back bytes, oldest first,
    /// and returns the count (0 when nothing waits — the caller waits for
    /// [`BoardEvent::BulkDataReady`]).
    pub fn bulk_read(&self, buffer: &mut [u8]) -> Result<usize, Fx2Error> {
        self.change(|state| {
            state.require_running()?;
            let count = buffer.len().min(state.bulk.len());
            for (slot, byte) in buffer.iter_mut().zip(state.bulk.drain(..count)) {
                *slot = byte;
            }
            if count > 0 {
                let free = state.config.bulk_capacity.saturating_sub(state.bulk.len());
                state.event(BoardEvent::BulkSpaceFreed { free });
            }
            Ok(count)
        })
    }

    /// Bytes waiting in the bulk loopback buffer.
    pub fn bulk_pending(&self) -> usize {
        self.lock().bulk.len()
    }
}

fn render_picture(s: &BoardSnapshot, bulk_capacity: usize) -> String {
    let cable = if s.connected {
        "plugged in"
    } else {
        "unplugged"
    };
    format!(
        "OSR USB-FX2 · {cable} · {power} · {speed}\n\
         \x20 switches   {switches}\n\
         \x20 light bar  {bar}\n\
         \x20 7-segment  {seg}\n\
         \x20 pipes      interrupt messages unread {ipending} · bulk {bulk}/{bulk_capacity} · \
         resets {resets} · re-enumerations {reenum}\n",
        power = s.power,
        speed = s.speed,
        switches = s.switches,
        bar = s.bar_graph,
        seg = s.seven_segment,
        ipending = s.interrupt_pending,
        bulk = s.bulk_pending,
        resets = s.reset_count,
        reenum = s.reenumerate_count,
    )
}

impl fmt::Display for Fx2Board {
    /// One line: `OSR USB-FX2 (plugged in, on): switches [1 0 1 1 0 0 0 0] bar ●○●●○○○○ 7-seg 0x06`.
    /// With `{:#}`, the multi-line [`picture`](Fx2Board::picture).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f.write_str(&self.picture());
        }
        let s = self.snapshot();
        write!(
            f,
            "OSR USB-FX2 ({}, {}): switches {} bar {} 7-seg 0x{:02X}",
            if s.connected {
                "plugged in"
            } else {
                "unplugged"
            },
            s.power,
            s.switches,
            s.bar_graph,
            s.seven_segment.raw()
        )
    }
}

impl fmt::Debug for Fx2Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fx2Board")
            .field("state", &self.snapshot())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn running() -> Fx2Board {
        let board = Fx2Board::new();
        board.power_on().unwrap();
        assert_eq!(board.try_read_interrupt().unwrap(), Some(0));
        board
    }

    #[test]
    fn fx2_set_switches_unchanged_sends_nothing() {
        let board = running();
        board.set_switches(SwitchState::OFF);
        assert_eq!(board.try_read_interrupt().unwrap(), None);
        board.set_switches(SwitchState::from_raw(0xA5));
        assert_eq!(board.try_read_interrupt().unwrap(), Some(0xA5));
        assert_eq!(board.set_switch(1, true).unwrap().raw(), 0xA5);
        assert_eq!(board.try_read_interrupt().unwrap(), None);
    }

    #[test]
    fn fx2_interrupt_fifo_drops_oldest_when_full() {
        let board = Fx2Board::with_config(Fx2BoardConfig {
            interrupt_capacity: 2,
            ..Fx2BoardConfig::default()
        });
        board.power_on().unwrap(); // 0x00
        board.flip_switch(1).unwrap(); // 0x01
        board.flip_switch(2).unwrap(); // 0x03, drops 0x00
        assert_eq!(board.snapshot().interrupt_dropped, 1);
        assert_eq!(board.try_read_interrupt().unwrap(), Some(0x01));
        assert_eq!(board.try_read_interrupt().unwrap(), Some(0x03));
        let zero = Fx2Board::with_config(Fx2BoardConfig {
            interrupt_capacity: 0,
            ..Fx2BoardConfig::default()
        });
        zero.power_on().unwrap();
        assert_eq!(zero.try_read_interrupt().unwrap(), None);
    }

    #[test]
    fn fx2_hook_may_reenter_the_board() {
        let board = running();
        let inner = board.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        board.on_interrupt(move |byte| {
            log.lock().unwrap().push(byte);
            // Reading and even flipping from inside the hook must not deadlock.
            assert!(inner.read_switches().is_ok());
            if byte == 0x01 {
                inner.flip_switch(2).unwrap();
            }
        });
        board.flip_switch(1).unwrap();
        assert_eq!(*seen.lock().unwrap(), [0x01, 0x03]);
    }

    #[test]
    fn fx2_panicking_hook_does_not_wedge_delivery() {
        let board = running();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let id = board.on_interrupt(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            panic!("hook failure");
        });
        let flipper = board.clone();
        assert!(std::thread::spawn(move || flipper.flip_switch(1))
            .join()
            .is_err());
        assert!(board.remove_hook(id));
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        board.on_interrupt(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        board.flip_switch(1).unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn fx2_vendor_request_checks_buffers_and_stalls_unknown() {
        let board = running();
        assert_eq!(
            board.vendor_request(0xD6, &mut []),
            Err(Fx2Error::BufferTooSmall { needed: 1 })
        );
        assert_eq!(
            board.vendor_request(0xD5, &mut [0]),
            Err(Fx2Error::Stall { request: 0xD5 })
        );
        let mut byte = [0xEE];
        assert_eq!(board.vendor_request(0xD9, &mut byte), Ok(1));
        assert_eq!(byte, [1]);
        assert_eq!(board.vendor_request(0xDB, &mut [0x3F]), Ok(1));
        assert_eq!(board.seven_segment().unwrap().raw(), 0x3F);
    }
}
