//! The OSR USB-FX2 driver's user-mode interface: IOCTL codes, the device-interface GUID and the
//! one-byte data layouts — the Rust counterpart of the sample's `public.h`.
//!
//! # I/O control codes
//!
//! [`ctl_code`] is the `CTL_CODE` macro: bits 31–16 device type (bit 31 "Common"), bits 15–14
//! required access, bits 13–2 function (bit 13 "Custom"), bits 1–0 transfer method. Like the C
//! macro it computes in 32-bit arithmetic and masks nothing, which matters for this board: the
//! sample's `FILE_DEVICE_OSRUSBFX2` is `0x65500`, too wide for 16 bits, so `0x65500 << 16` drops the
//! top nibble and every OSR FX2 code starts with `0x5500…` (effective device type `0x5500`, Common
//! bit clear). The nine `IOCTL_OSRUSBFX2_*` constants below are computed with [`ctl_code`] exactly as
//! the header does, and compile-time assertions pin each one to the value a C driver sees, so a
//! "fix" of the quirk cannot slip in unnoticed.
//!
//! The decoders ([`device_type_from_ctl_code`], [`access_from_ctl_code`],
//! [`function_from_ctl_code`], [`method_from_ctl_code`], or [`CtlCode::decode`] for all four at
//! once) split a code back into its fields; the I/O layer uses the method to pick a buffer model
//! and the access bits to check a handle's granted access.
//!
//! # Data layouts
//!
//! The sample's `BAR_GRAPH_STATE` and `SWITCH_STATE` are one-byte unions of bit-fields; here they
//! are [`BarGraphState`] and [`SwitchState`], transparent wrappers of the raw byte where bit *i* is
//! bar (switch) *i + 1*. The byte is the wire format and is never re-mapped: the README's remark
//! that the interrupt byte runs in reverse order of the labels printed on the switch pack is a fact
//! about the plastic, not about the byte. The seven-segment display is also a raw byte, one bit per
//! segment ([`SevenSegment`]); the segment-to-bit map is not documented, so no digit table is
//! offered.
//!
//! ```
//! use kmdf_sim::fx2::ioctl::*;
//!
//! assert_eq!(IOCTL_OSRUSBFX2_READ_SWITCHES, 0x5500_6018);
//! let code = CtlCode::decode(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE);
//! assert_eq!(code.method, METHOD_OUT_DIRECT);
//! assert_eq!(code.access, FILE_READ_ACCESS);
//! assert_eq!(code.function, 0x809);
//! assert_eq!(code.device_type, 0x5500); // the 32-bit quirk
//!
//! let switches = SwitchState::from_raw(0b0000_0101);
//! assert_eq!(switches.is_on(1), Some(true));
//! assert_eq!(switches.is_on(2), Some(false));
//! assert_eq!(switches.to_string(), "[1 0 1 0 0 0 0 0]");
//! assert_eq!(BarGraphState::from_raw(0x0D).to_string(), "●○●●○○○○");
//! ```

use core::fmt;

use crate::guid::Guid;

// ---------------------------------------------------------------------------------------------
// CTL_CODE
// ---------------------------------------------------------------------------------------------

/// `METHOD_BUFFERED`: input and output share one system buffer.
pub const METHOD_BUFFERED: u32 = 0;
/// `METHOD_IN_DIRECT`: input buffered, output buffer described by an MDL (device reads it).
pub const METHOD_IN_DIRECT: u32 = 1;
/// `METHOD_OUT_DIRECT`: input buffered, output buffer described by an MDL (device writes it).
pub const METHOD_OUT_DIRECT: u32 = 2;
/// `METHOD_NEITHER`: the driver gets the caller's raw user-mode addresses.
pub const METHOD_NEITHER: u32 = 3;

/// `FILE_ANY_ACCESS`: any open handle may send the code.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_SPECIAL_ACCESS`: same bits as `FILE_ANY_ACCESS`; the driver checks access itself.
pub const FILE_SPECIAL_ACCESS: u32 = FILE_ANY_ACCESS;
/// `FILE_READ_ACCESS` (= `FILE_READ_DATA`): the handle must have been granted read access.
pub const FILE_READ_ACCESS: u32 = 1;
/// `FILE_WRITE_ACCESS` (= `FILE_WRITE_DATA`): the handle must have been granted write access.
pub const FILE_WRITE_ACCESS: u32 = 2;

/// The `CTL_CODE` macro: `(device_type << 16) | (access << 14) | (function << 2) | method`.
///
/// Computed in 32-bit arithmetic with no masking, exactly like the C macro: bits shifted past
/// bit 31 are lost (see the module documentation for why the OSR FX2 codes depend on this) and
/// out-of-range fields overlap their neighbours rather than being rejected.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    // The shifts are by constants below 32, so they cannot overflow; high bits are discarded as in C.
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// `DEVICE_TYPE_FROM_CTL_CODE`: bits 31–16 (including the Common bit).
pub const fn device_type_from_ctl_code(code: u32) -> u32 {
    code >> 16
}

/// The required-access field, bits 15–14 (a combination of `FILE_READ_ACCESS`/`FILE_WRITE_ACCESS`).
pub const fn access_from_ctl_code(code: u32) -> u32 {
    (code >> 14) & 0x3
}

/// The function field, bits 13–2 (including the Custom bit 13, i.e. `0x800` and above).
pub const fn function_from_ctl_code(code: u32) -> u32 {
    (code >> 2) & 0xFFF
}

/// `METHOD_FROM_CTL_CODE`: the transfer method, bits 1–0.
pub const fn method_from_ctl_code(code: u32) -> u32 {
    code & 0x3
}

/// An I/O control code split into its four fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtlCode {
    /// Device type, bits 31–16.
    pub device_type: u32,
    /// Function number, bits 13–2.
    pub function: u32,
    /// Transfer method (`METHOD_*`), bits 1–0.
    pub method: u32,
    /// Required access (`FILE_*_ACCESS`), bits 15–14.
    pub access: u32,
}

impl CtlCode {
    /// Splits `code` into its fields.
    pub const fn decode(code: u32) -> Self {
        Self {
            device_type: device_type_from_ctl_code(code),
            function: function_from_ctl_code(code),
            method: method_from_ctl_code(code),
            access: access_from_ctl_code(code),
        }
    }

    /// Re-assembles the code with [`ctl_code`].
    pub const fn encode(&self) -> u32 {
        ctl_code(self.device_type, self.function, self.method, self.access)
    }

    /// Whether a handle granted read access is required.
    pub const fn requires_read(&self) -> bool {
        self.access & FILE_READ_ACCESS != 0
    }

    /// Whether a handle granted write access is required.
    pub const fn requires_write(&self) -> bool {
        self.access & FILE_WRITE_ACCESS != 0
    }
}

// ---------------------------------------------------------------------------------------------
// The OSR FX2 interface (public.h)
// ---------------------------------------------------------------------------------------------

/// `GUID_DEVINTERFACE_OSRUSBFX2` = `{573E8C73-0CB4-4471-A1BF-FAB26C31D384}`: the interface the
/// function driver registers (no reference string) and applications open.
pub const GUID_DEVINTERFACE_OSRUSBFX2: Guid = Guid::new(
    0x573E_8C73,
    0x0CB4,
    0x4471,
    [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84],
);

/// `FILE_DEVICE_OSRUSBFX2` as the sample defines it — wider than the 16-bit device-type field.
pub const FILE_DEVICE_OSRUSBFX2: u32 = 0x65500;

/// `IOCTL_INDEX`: the sample's first function number (the Custom range starts at `0x800`).
pub const IOCTL_INDEX: u32 = 0x800;

/// The sample's maximum bulk transfer for the test board (`TEST_BOARD_TRANSFER_BUFFER_SIZE`, 64 KiB);
/// longer reads and writes are failed with `STATUS_INVALID_PARAMETER`.
pub const TEST_BOARD_TRANSFER_BUFFER_SIZE: usize = 64 * 1024;

/// Returns the configuration descriptor (output ≥ the descriptor's size).
pub const IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);
/// Resets the USB port (pipes stopped and restarted around it).
pub const IOCTL_OSRUSBFX2_RESET_DEVICE: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 1,
    METHOD_BUFFERED,
    FILE_WRITE_ACCESS,
);
/// Makes the device re-enumerate (vendor request `0xDA`).
pub const IOCTL_OSRUSBFX2_REENUMERATE_DEVICE: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 3,
    METHOD_BUFFERED,
    FILE_WRITE_ACCESS,
);
/// Reads the light bar (one [`BarGraphState`] byte out).
pub const IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 4,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);
/// Sets the light bar (one [`BarGraphState`] byte in).
pub const IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 5,
    METHOD_BUFFERED,
    FILE_WRITE_ACCESS,
);
/// Reads the DIP switches (one [`SwitchState`] byte out).
pub const IOCTL_OSRUSBFX2_READ_SWITCHES: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 6,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);
/// Reads the seven-segment display (one [`SevenSegment`] byte out).
pub const IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 7,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);
/// Sets the seven-segment display (one [`SevenSegment`] byte in).
pub const IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 8,
    METHOD_BUFFERED,
    FILE_WRITE_ACCESS,
);
/// Waits for the next interrupt-pipe byte (a [`SwitchState`]); pended by the driver until then.
pub const IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE: u32 = ctl_code(
    FILE_DEVICE_OSRUSBFX2,
    IOCTL_INDEX + 9,
    METHOD_OUT_DIRECT,
    FILE_READ_ACCESS,
);

// The values a C driver compiled from public.h sees (32-bit CTL_CODE arithmetic).
const _: () = assert!(IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR == 0x5500_6000);
const _: () = assert!(IOCTL_OSRUSBFX2_RESET_DEVICE == 0x5500_A004);
const _: () = assert!(IOCTL_OSRUSBFX2_REENUMERATE_DEVICE == 0x5500_A00C);
const _: () = assert!(IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY == 0x5500_6010);
const _: () = assert!(IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY == 0x5500_A014);
const _: () = assert!(IOCTL_OSRUSBFX2_READ_SWITCHES == 0x5500_6018);
const _: () = assert!(IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY == 0x5500_601C);
const _: () = assert!(IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY == 0x5500_A020);
const _: () = assert!(IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE == 0x5500_6026);

/// All nine OSR FX2 IOCTLs with their `public.h` names, in function-number order.
pub const OSRUSBFX2_IOCTLS: [(u32, &str); 9] = [
    (
        IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR,
        "IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR",
    ),
    (IOCTL_OSRUSBFX2_RESET_DEVICE, "IOCTL_OSRUSBFX2_RESET_DEVICE"),
    (
        IOCTL_OSRUSBFX2_REENUMERATE_DEVICE,
        "IOCTL_OSRUSBFX2_REENUMERATE_DEVICE",
    ),
    (
        IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY,
        "IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY",
    ),
    (
        IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
        "IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY",
    ),
    (
        IOCTL_OSRUSBFX2_READ_SWITCHES,
        "IOCTL_OSRUSBFX2_READ_SWITCHES",
    ),
    (
        IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY,
        "IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY",
    ),
    (
        IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY,
        "IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY",
    ),
    (
        IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
        "IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE",
    ),
];

/// The `public.h` name of an OSR FX2 IOCTL code, for traces; `None` for any other code.
pub fn osrusbfx2_ioctl_name(code: u32) -> Option<&'static str> {
    let code = from_dmf_header(code);
    OSRUSBFX2_IOCTLS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
}

/// `FILE_DEVICE_OSRUSBFX2` as DMF's copies of the header define it — `65500U`, decimal
/// (`Dmf/Modules.Template/Dmf_OsrFx2_Public.h`, which Microsoft's C DMF samples include, and
/// `DmfSamples/kmdf_fx2_dmf/inc/public.h`, DMF's port of the FX2 driver). It fits the 16-bit
/// field, so their codes start with `0xFFDC…` where this header's start with `0x5500…`; function,
/// method and access are the same.
pub const FILE_DEVICE_OSRUSBFX2_DMF: u32 = 65500;

/// `code` of this header as DMF's header computes it (device type
/// [`FILE_DEVICE_OSRUSBFX2_DMF`]).
pub const fn dmf_header_code(code: u32) -> u32 {
    (FILE_DEVICE_OSRUSBFX2_DMF << 16) | (code & 0xFFFF)
}

/// A code of DMF's header as this header computes it; any other code unchanged. The simulated
/// FX2 driver answers both headers' codes, so that drivers and applications built with either
/// (C DMF's samples with DMF's) talk to it.
pub const fn from_dmf_header(code: u32) -> u32 {
    if code >> 16 == FILE_DEVICE_OSRUSBFX2_DMF {
        (IOCTL_OSRUSBFX2_READ_SWITCHES & 0xFFFF_0000) | (code & 0xFFFF)
    } else {
        code
    }
}

// ---------------------------------------------------------------------------------------------
// One-byte data layouts
// ---------------------------------------------------------------------------------------------

/// Index of bit `n` (1-based, 1..=8) in a one-byte state, or `None` if `n` is out of range.
const fn bit_of(n: u8) -> Option<u8> {
    if n >= 1 && n <= 8 {
        Some(1 << (n - 1))
    } else {
        None
    }
}

/// `BAR_GRAPH_STATE`: the light bar, one bit per LED; bit *i* (`0x01 << i`) is bar *i + 1*
/// (bars counted from the top of the LED stack; the board's top two LEDs are not represented).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct BarGraphState(u8);

impl BarGraphState {
    /// All bars off.
    pub const OFF: Self = Self(0);
    /// All eight bars lit.
    pub const ALL: Self = Self(0xFF);

    /// The state whose raw byte (`BarsAsUChar`) is `raw`.
    pub const fn from_raw(raw: u8) -> Self {
        Self(raw)
    }

    /// The raw byte (`BarsAsUChar`).
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// Whether bar `n` (1..=8) is lit; `None` for any other `n`.
    pub const fn is_lit(self, n: u8) -> Option<bool> {
        match bit_of(n) {
            Some(bit) => Some(self.0 & bit != 0),
            None => None,
        }
    }

    /// This state with bar `n` (1..=8) lit or dark; `None` for any other `n`.
    pub const fn with_bar(self, n: u8, lit: bool) -> Option<Self> {
        match bit_of(n) {
            Some(bit) if lit => Some(Self(self.0 | bit)),
            Some(bit) => Some(Self(self.0 & !bit)),
            None => None,
        }
    }

    /// How many bars are lit.
    pub const fn lit_count(self) -> u32 {
        self.0.count_ones()
    }
}

impl From<u8> for BarGraphState {
    fn from(raw: u8) -> Self {
        Self(raw)
    }
}

impl From<BarGraphState> for u8 {
    fn from(state: BarGraphState) -> Self {
        state.0
    }
}

impl fmt::Display for BarGraphState {
    /// Bar 1 first: `●` lit, `○` dark, e.g. `●○●●○○○○` for `0x0D`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in 0..8 {
            f.write_str(if self.0 & (1 << i) != 0 { "●" } else { "○" })?;
        }
        Ok(())
    }
}

/// `SWITCH_STATE`: the eight DIP switches, one bit per switch; bit *i* (`0x01 << i`) is
/// `Switch`*i + 1*. This is also the interrupt-pipe byte. The byte is raw and not re-mapped to the
/// labels printed on the switch pack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct SwitchState(u8);

impl SwitchState {
    /// All switches off.
    pub const OFF: Self = Self(0);

    /// The state whose raw byte (`SwitchesAsUChar`) is `raw`.
    pub const fn from_raw(raw: u8) -> Self {
        Self(raw)
    }

    /// The raw byte (`SwitchesAsUChar`).
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// Whether switch `n` (1..=8) is on; `None` for any other `n`.
    pub const fn is_on(self, n: u8) -> Option<bool> {
        match bit_of(n) {
            Some(bit) => Some(self.0 & bit != 0),
            None => None,
        }
    }

    /// This state with switch `n` (1..=8) on or off; `None` for any other `n`.
    pub const fn with_switch(self, n: u8, on: bool) -> Option<Self> {
        match bit_of(n) {
            Some(bit) if on => Some(Self(self.0 | bit)),
            Some(bit) => Some(Self(self.0 & !bit)),
            None => None,
        }
    }

    /// This state with switch `n` (1..=8) toggled; `None` for any other `n`.
    pub const fn toggled(self, n: u8) -> Option<Self> {
        match bit_of(n) {
            Some(bit) => Some(Self(self.0 ^ bit)),
            None => None,
        }
    }

    /// How many switches are on.
    pub const fn on_count(self) -> u32 {
        self.0.count_ones()
    }
}

impl From<u8> for SwitchState {
    fn from(raw: u8) -> Self {
        Self(raw)
    }
}

impl From<SwitchState> for u8 {
    fn from(state: SwitchState) -> Self {
        state.0
    }
}

impl fmt::Display for SwitchState {
    /// Switch 1 first, as toggles: `[1 0 1 1 0 0 0 0]` for `0x0D`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for i in 0..8 {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(if self.0 & (1 << i) != 0 { "1" } else { "0" })?;
        }
        f.write_str("]")
    }
}

/// The seven-segment display's raw byte: one bit per segment (eight bits including the point).
///
/// The segment-to-bit map is not documented by the sample, so this type offers bit access only;
/// the sample's test application lights the segments one at a time by writing `1 << i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct SevenSegment(u8);

impl SevenSegment {
    /// All segments dark.
    pub const BLANK: Self = Self(0);

    /// The display state whose raw byte is `raw`.
    pub const fn from_raw(raw: u8) -> Self {
        Self(raw)
    }

    /// The raw byte.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// Whether segment bit `bit` (0..=7) is lit; `None` for any other `bit`.
    pub const fn is_lit(self, bit: u8) -> Option<bool> {
        if bit < 8 {
            Some(self.0 & (1 << bit) != 0)
        } else {
            None
        }
    }
}

impl From<u8> for SevenSegment {
    fn from(raw: u8) -> Self {
        Self(raw)
    }
}

impl From<SevenSegment> for u8 {
    fn from(state: SevenSegment) -> Self {
        state.0
    }
}

impl fmt::Display for SevenSegment {
    /// The raw byte in hex and the lit segment bits (bit 7 first), e.g. `0x06 (00000110)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} ({:08b})", self.0, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fx2_ioctl_codes_match_the_table() {
        let table: [(u32, u32, u32, u32, u32); 9] = [
            (
                IOCTL_OSRUSBFX2_GET_CONFIG_DESCRIPTOR,
                0x800,
                METHOD_BUFFERED,
                FILE_READ_ACCESS,
                0x5500_6000,
            ),
            (
                IOCTL_OSRUSBFX2_RESET_DEVICE,
                0x801,
                METHOD_BUFFERED,
                FILE_WRITE_ACCESS,
                0x5500_A004,
            ),
            (
                IOCTL_OSRUSBFX2_REENUMERATE_DEVICE,
                0x803,
                METHOD_BUFFERED,
                FILE_WRITE_ACCESS,
                0x5500_A00C,
            ),
            (
                IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY,
                0x804,
                METHOD_BUFFERED,
                FILE_READ_ACCESS,
                0x5500_6010,
            ),
            (
                IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY,
                0x805,
                METHOD_BUFFERED,
                FILE_WRITE_ACCESS,
                0x5500_A014,
            ),
            (
                IOCTL_OSRUSBFX2_READ_SWITCHES,
                0x806,
                METHOD_BUFFERED,
                FILE_READ_ACCESS,
                0x5500_6018,
            ),
            (
                IOCTL_OSRUSBFX2_GET_7_SEGMENT_DISPLAY,
                0x807,
                METHOD_BUFFERED,
                FILE_READ_ACCESS,
                0x5500_601C,
            ),
            (
                IOCTL_OSRUSBFX2_SET_7_SEGMENT_DISPLAY,
                0x808,
                METHOD_BUFFERED,
                FILE_WRITE_ACCESS,
                0x5500_A020,
            ),
            (
                IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE,
                0x809,
                METHOD_OUT_DIRECT,
                FILE_READ_ACCESS,
                0x5500_6026,
            ),
        ];
        for (code, function, method, access, expected) in table {
            assert_eq!(code, expected, "{:?}", osrusbfx2_ioctl_name(code));
            let decoded = CtlCode::decode(code);
            assert_eq!(decoded.function, function);
            assert_eq!(decoded.method, method);
            assert_eq!(decoded.access, access);
            assert_eq!(decoded.device_type, 0x5500);
            assert_eq!(decoded.encode(), code);
        }
        assert_eq!(osrusbfx2_ioctl_name(0x5500_6014), None);
        assert_eq!(
            osrusbfx2_ioctl_name(0x5500_6018),
            Some("IOCTL_OSRUSBFX2_READ_SWITCHES")
        );
    }

    #[test]
    fn fx2_ctl_code_and_decoders_use_the_documented_layout() {
        // A well-formed code with the Common bit set round-trips through every decoder.
        let code = ctl_code(
            0x8022,
            0xABC,
            METHOD_NEITHER,
            FILE_READ_ACCESS | FILE_WRITE_ACCESS,
        );
        assert_eq!(code, 0x8022_EAF3);
        assert_eq!(device_type_from_ctl_code(code), 0x8022);
        assert_eq!(function_from_ctl_code(code), 0xABC);
        assert_eq!(method_from_ctl_code(code), METHOD_NEITHER);
        assert_eq!(access_from_ctl_code(code), 3);
        assert!(CtlCode::decode(code).requires_read());
        assert!(CtlCode::decode(code).requires_write());
        assert!(!CtlCode::decode(IOCTL_OSRUSBFX2_READ_SWITCHES).requires_write());
        // The quirk: the device type's top nibble is shifted out.
        assert_eq!(ctl_code(FILE_DEVICE_OSRUSBFX2, 0, 0, 0), 0x5500_0000);
    }

    #[test]
    fn fx2_one_byte_states_are_raw_bits() {
        let bar = BarGraphState::OFF
            .with_bar(1, true)
            .and_then(|b| b.with_bar(8, true));
        assert_eq!(bar.map(BarGraphState::raw), Some(0x81));
        assert_eq!(BarGraphState::OFF.with_bar(0, true), None);
        assert_eq!(BarGraphState::OFF.with_bar(9, true), None);
        assert_eq!(BarGraphState::ALL.is_lit(9), None);
        assert_eq!(BarGraphState::from_raw(0x81).to_string(), "●○○○○○○●");
        assert_eq!(BarGraphState::from_raw(0x81).lit_count(), 2);
        let sw = SwitchState::from_raw(0x80);
        assert_eq!(sw.is_on(8), Some(true));
        assert_eq!(sw.toggled(8), Some(SwitchState::OFF));
        assert_eq!(sw.with_switch(1, true).map(SwitchState::raw), Some(0x81));
        assert_eq!(sw.to_string(), "[0 0 0 0 0 0 0 1]");
        assert_eq!(SevenSegment::from_raw(0x06).to_string(), "0x06 (00000110)");
        assert_eq!(SevenSegment::from_raw(0x06).is_lit(1), Some(true));
        assert_eq!(SevenSegment::from_raw(0x06).is_lit(8), None);
        assert_eq!(core::mem::size_of::<SwitchState>(), 1);
        assert_eq!(core::mem::size_of::<BarGraphState>(), 1);
    }

    #[test]
    fn fx2_interface_guid_prints_in_registry_format() {
        assert_eq!(
            GUID_DEVINTERFACE_OSRUSBFX2.to_string(),
            "{573E8C73-0CB4-4471-A1BF-FAB26C31D384}"
        );
    }
}
