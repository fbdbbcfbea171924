//! GUIDs, as Windows lays them out and prints them.
//!
//! Device interfaces (`WdfDeviceCreateDeviceInterface`, interface-arrival notifications, remote
//! targets opened by interface) and the OSR USB-FX2 board's `GUID_DEVINTERFACE_OSRUSBFX2` all name
//! things by GUID. The simulator only needs a GUID to be a value: compared, hashed, ordered, printed
//! and parsed in the registry format `{573E8C73-0CB4-4471-A1BF-FAB26C31D384}`. [`Guid`] is therefore
//! the C `GUID` structure (same four fields, same meaning) with a `const` constructor so GUIDs can be
//! declared as constants, a [`Display`](core::fmt::Display) in registry format (upper-case hex, in
//! braces), and a [`FromStr`] that accepts that format with or without braces, in either case.
//!
//! ```
//! use kmdf_sim::guid::Guid;
//!
//! const MY_INTERFACE: Guid = Guid::new(
//!     0x573E_8C73,
//!     0x0CB4,
//!     0x4471,
//!     [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84],
//! );
//! assert_eq!(MY_INTERFACE.to_string(), "{573E8C73-0CB4-4471-A1BF-FAB26C31D384}");
//! assert_eq!("573e8c73-0cb4-4471-a1bf-fab26c31d384".parse::<Guid>(), Ok(MY_INTERFACE));
//! ```

use core::fmt;
use core::str::FromStr;

/// A GUID with the field layout of the Windows `GUID` structure.
///
/// `data1`..`data3` are printed as hex numbers; `data4` is printed byte by byte (the first two
/// bytes form the fourth group of the registry format, the other six the fifth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C)]
pub struct Guid {
    /// The first 32 bits (first group of the printed form).
    pub data1: u32,
    /// The next 16 bits (second group).
    pub data2: u16,
    /// The next 16 bits (third group).
    pub data3: u16,
    /// The last eight bytes (fourth group: bytes 0–1; fifth group: bytes 2–7).
    pub data4: [u8; 8],
}

impl Guid {
    /// The all-zero GUID, `GUID_NULL`.
    pub const NULL: Guid = Guid::new(0, 0, 0, [0; 8]);

    /// Builds a GUID from its four fields, like a C `DEFINE_GUID`.
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Self {
        Self {
            data1,
            data2,
            data3,
            data4,
        }
    }

    /// Whether this is [`Guid::NULL`].
    pub const fn is_null(&self) -> bool {
        self.data1 == 0 && self.data2 == 0 && self.data3 == 0 && u64::from_ne_bytes(self.data4) == 0
    }

    /// The 16 bytes of the GUID in its in-memory (little-endian fields) layout, as a C driver
    /// would see them in a buffer.
    pub const fn to_bytes_le(&self) -> [u8; 16] {
        let a = self.data1.to_le_bytes();
        let b = self.data2.to_le_bytes();
        let c = self.data3.to_le_bytes();
        let d = self.data4;
        [
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ]
    }

    /// The GUID stored in `bytes` in its in-memory (little-endian fields) layout.
    pub const fn from_bytes_le(bytes: [u8; 16]) -> Self {
        let b = bytes;
        Self {
            data1: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            data2: u16::from_le_bytes([b[4], b[5]]),
            data3: u16::from_le_bytes([b[6], b[7]]),
            data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
        }
    }
}

impl fmt::Display for Guid {
    /// Registry format: `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`, upper-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

/// Why a string is not a GUID (see [`Guid`]'s [`FromStr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseGuidError;

impl fmt::Display for ParseGuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a GUID: expected {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}")
    }
}

impl std::error::Error for ParseGuidError {}

impl FromStr for Guid {
    type Err = ParseGuidError;

    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, optionally in braces, hex digits in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let inner = match (s.strip_prefix('{'), s.strip_suffix('}')) {
            (Some(_), Some(_)) if s.len() >= 2 => &s[1..s.len() - 1],
            (None, None) => s,
            _ => return Err(ParseGuidError),
        };
        let groups: Vec<&str> = inner.split('-').collect();
        let [g1, g2, g3, g4, g5] = groups.as_slice() else {
            return Err(ParseGuidError);
        };
        let widths = [(g1, 8), (g2, 4), (g3, 4), (g4, 4), (g5, 12)];
        if widths
            .iter()
            .any(|(g, w)| g.len() != *w || !g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ParseGuidError);
        }
        let hex32 = |g: &str| u32::from_str_radix(g, 16).map_err(|_| ParseGuidError);
        let hex16 = |g: &str| u16::from_str_radix(g, 16).map_err(|_| ParseGuidError);
        let tail = u64::from_str_radix(&format!("{g4}{g5}"), 16).map_err(|_| ParseGuidError)?;
        Ok(Guid::new(
            hex32(g1)?,
            hex16(g2)?,
            hex16(g3)?,
            tail.to_be_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: Guid = Guid::new(
        0x573E_8C73,
        0x0CB4,
        0x4471,
        [0xA1, 0xBF, 0xFA, 0xB2, 0x6C, 0x31, 0xD3, 0x84],
    );

    #[test]
    fn guid_display_is_registry_format() {
        assert_eq!(SAMPLE.to_string(), "{573E8C73-0CB4-4471-A1BF-FAB26C31D384}");
        assert_eq!(
            Guid::NULL.to_string(),
            "{00000000-0000-0000-0000-000000000000}"
        );
    }

    #[test]
    fn guid_parse_round_trips_and_rejects_garbage() {
        assert_eq!(SAMPLE.to_string().parse::<Guid>(), Ok(SAMPLE));
        assert_eq!(
            "573e8c73-0cb4-4471-a1bf-fab26c31d384".parse::<Guid>(),
            Ok(SAMPLE)
        );
        for bad in [
            "",
            "{",
            "}",
            "{573E8C73-0CB4-4471-A1BF-FAB26C31D384",
            "573E8C73-0CB4-4471-A1BF-FAB26C31D38",
            "573E8C73-0CB4-4471-A1BF-FAB26C31D3845",
            "573E8C73-0CB4-4471-A1BFFAB26C31D384",
            "+73E8C73-0CB4-4471-A1BF-FAB26C31D384",
            "573E8C73-0CB4-4471-A1BF-FAB26C31D38G",
            "573E8C73-0CB4-4471-A1BF-FAB26C31D384-",
            "{é73E8C73-0CB4-4471-A1BF-FAB26C31D384}",
        ] {
            assert_eq!(bad.parse::<Guid>(), Err(ParseGuidError), "{bad:?}");
        }
    }

    #[test]
    fn guid_byte_layout_round_trips() {
        let bytes = SAMPLE.to_bytes_le();
        assert_eq!(&bytes[..4], &[0x73, 0x8C, 0x3E, 0x57]);
        assert_eq!(Guid::from_bytes_le(bytes), SAMPLE);
        assert!(Guid::NULL.is_null());
        assert!(!SAMPLE.is_null());
    }
}
