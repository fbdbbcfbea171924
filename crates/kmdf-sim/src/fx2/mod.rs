//! The OSR USB-FX2 learning kit, modelled as hardware.
//!
//! The OSR FX2 board is the device behind the WDK's `usb/kmdf_fx2` sample and behind DMF's
//! SwitchBar and OSR FX2 filter samples: eight DIP switches, a light bar of eight LEDs, a
//! seven-segment display, an interrupt IN endpoint that reports the switches, and a pair of bulk
//! endpoints that loop data back. This module is the board only — what a USB host sees at the end
//! of the cable. The function-driver model that exposes it to simulated Windows applications (the
//! IOCTLs, the pended GET_INTERRUPT_MESSAGE requests, the continuous reader) is built on top of it
//! by the simulator's I/O layer, which is why the board's API is shaped the way a driver uses a
//! device: vendor requests, pipes, power transitions, and hooks that let a driver complete parked
//! requests without threads.
//!
//! * [`ioctl`] — the driver's public interface (`public.h`): `CTL_CODE` and its decoders, the nine
//!   `IOCTL_OSRUSBFX2_*` codes (with the sample's 32-bit device-type quirk, checked at compile
//!   time), `GUID_DEVINTERFACE_OSRUSBFX2`, and the one-byte [`BarGraphState`], [`SwitchState`] and
//!   [`SevenSegment`] layouts.
//! * [`usb`] — USB facts: the configuration descriptor bytes and a parser for them, the vendor
//!   requests, the bus speed.
//! * [`board`] — [`Fx2Board`], the thread-safe board itself.
//!
//! ```
//! use kmdf_sim::fx2::{Fx2Board, SwitchState};
//!
//! let board = Fx2Board::new();
//! board.power_on().unwrap();
//! board.set_switches(SwitchState::from_raw(0b0000_1101));
//! board.set_bar_graph(0b0000_1101.into()).unwrap();
//! println!("{}", board.picture());
//! ```

pub mod board;
pub mod driver;
pub mod ioctl;
pub mod usb;

pub use board::{
    BoardEvent, BoardSnapshot, Fx2Board, Fx2BoardConfig, Fx2Error, HookId, PowerState,
};
pub use ioctl::{BarGraphState, SevenSegment, SwitchState, GUID_DEVINTERFACE_OSRUSBFX2};
pub use usb::UsbSpeed;
