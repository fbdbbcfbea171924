//! USB facts of the OSR USB-FX2 board: its configuration descriptor, a parser for it, the vendor
//! control requests and the bus speed.
//!
//! The board has one configuration with one vendor-class interface (class `0xFF`) and three
//! endpoints, in this order: interrupt IN `0x81` (max packet `0x49`, interval 1) carrying the switch
//! byte, bulk OUT `0x06` and bulk IN `0x88` forming a loopback (max packet 512 at high speed, 64 at
//! full speed). [`configuration_descriptor`] builds the real descriptor bytes — configuration,
//! interface and endpoint descriptors back to back, each with its own `bLength`, the
//! configuration's `wTotalLength` covering all of them — exactly what
//! `WdfUsbTargetDeviceRetrieveConfigDescriptor` would copy out.
//!
//! [`parse_configuration_descriptor`] walks such a byte array the way a driver does when it selects
//! the interface and finds its pipes by type and direction. It checks every length and never
//! panics, so the driver model can run it on whatever a test hands it (and a fuzz target can too).
//!
//! Values not given by the sample's documentation (`bmAttributes` of the configuration and
//! `bMaxPower`) are plausible choices and are named as such below.
//!
//! ```
//! use kmdf_sim::fx2::usb::{configuration_descriptor, parse_configuration_descriptor, UsbSpeed};
//!
//! let bytes = configuration_descriptor(UsbSpeed::High);
//! let config = parse_configuration_descriptor(&bytes).unwrap();
//! assert_eq!(config.interface_class, 0xFF);
//! let addresses: Vec<u8> = config.endpoints.iter().map(|e| e.address).collect();
//! assert_eq!(addresses, [0x81, 0x06, 0x88]);
//! ```

use core::fmt;

/// `bDescriptorType` of a configuration descriptor.
pub const DESCRIPTOR_TYPE_CONFIGURATION: u8 = 0x02;
/// `bDescriptorType` of an interface descriptor.
pub const DESCRIPTOR_TYPE_INTERFACE: u8 = 0x04;
/// `bDescriptorType` of an endpoint descriptor.
pub const DESCRIPTOR_TYPE_ENDPOINT: u8 = 0x05;

/// Length of a configuration descriptor.
pub const CONFIGURATION_DESCRIPTOR_LENGTH: usize = 9;
/// Length of an interface descriptor.
pub const INTERFACE_DESCRIPTOR_LENGTH: usize = 9;
/// Length of an endpoint descriptor.
pub const ENDPOINT_DESCRIPTOR_LENGTH: usize = 7;
/// Total length of the board's configuration descriptor (`wTotalLength`): 9 + 9 + 3 × 7 = 39.
pub const FX2_CONFIGURATION_TOTAL_LENGTH: usize =
    CONFIGURATION_DESCRIPTOR_LENGTH + INTERFACE_DESCRIPTOR_LENGTH + 3 * ENDPOINT_DESCRIPTOR_LENGTH;

/// Address of the interrupt IN endpoint (switch bytes).
pub const INTERRUPT_IN_ENDPOINT: u8 = 0x81;
/// Address of the bulk OUT endpoint (loopback input).
pub const BULK_OUT_ENDPOINT: u8 = 0x06;
/// Address of the bulk IN endpoint (loopback output).
pub const BULK_IN_ENDPOINT: u8 = 0x88;
/// `wMaxPacketSize` of the interrupt IN endpoint.
pub const INTERRUPT_MAX_PACKET: u16 = 0x49;
/// `bInterval` of the interrupt IN endpoint.
pub const INTERRUPT_INTERVAL: u8 = 1;
/// Vendor-specific interface class.
pub const INTERFACE_CLASS_VENDOR: u8 = 0xFF;
/// Configuration `bmAttributes`: bus-powered (bit 7 always set) with remote wake-up (bit 5), since
/// the board has a remote-wake feature. A modelling choice: the sample does not print this byte.
pub const FX2_CONFIGURATION_ATTRIBUTES: u8 = 0xA0;
/// Configuration `bMaxPower` in 2 mA units (100 mA). A modelling choice, as above.
pub const FX2_MAX_POWER: u8 = 50;

/// The bus speed the board enumerated at; it decides the bulk endpoints' max packet size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UsbSpeed {
    /// Full speed (12 Mbit/s): bulk max packet 64.
    Full,
    /// High speed (480 Mbit/s): bulk max packet 512.
    #[default]
    High,
}

impl UsbSpeed {
    /// `wMaxPacketSize` of the bulk endpoints at this speed.
    pub const fn bulk_max_packet(self) -> u16 {
        match self {
            UsbSpeed::Full => 64,
            UsbSpeed::High => 512,
        }
    }
}

impl fmt::Display for UsbSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UsbSpeed::Full => "full speed",
            UsbSpeed::High => "high speed",
        })
    }
}

/// The board's configuration descriptor at `speed`, as bytes.
pub const fn configuration_descriptor(speed: UsbSpeed) -> [u8; FX2_CONFIGURATION_TOTAL_LENGTH] {
    // Descriptor lengths as bytes; the assertions tie the literals to the named lengths.
    const _: () = assert!(CONFIGURATION_DESCRIPTOR_LENGTH == 9 && INTERFACE_DESCRIPTOR_LENGTH == 9);
    const _: () = assert!(ENDPOINT_DESCRIPTOR_LENGTH == 7 && FX2_CONFIGURATION_TOTAL_LENGTH == 39);
    let (cfg_len, if_len, ep_len) = (9_u8, 9_u8, 7_u8);
    let total = 39_u16.to_le_bytes();
    let interrupt = INTERRUPT_MAX_PACKET.to_le_bytes();
    let bulk = speed.bulk_max_packet().to_le_bytes();
    [
        // Configuration descriptor.
        cfg_len,
        DESCRIPTOR_TYPE_CONFIGURATION,
        total[0],
        total[1],
        1, // bNumInterfaces
        1, // bConfigurationValue
        0, // iConfiguration
        FX2_CONFIGURATION_ATTRIBUTES,
        FX2_MAX_POWER,
        // Interface descriptor.
        if_len,
        DESCRIPTOR_TYPE_INTERFACE,
        0, // bInterfaceNumber
        0, // bAlternateSetting
        3, // bNumEndpoints
        INTERFACE_CLASS_VENDOR,
        0, // bInterfaceSubClass
        0, // bInterfaceProtocol
        0, // iInterface
        // Endpoint 0: interrupt IN.
        ep_len,
        DESCRIPTOR_TYPE_ENDPOINT,
        INTERRUPT_IN_ENDPOINT,
        EndpointKind::Interrupt as u8,
        interrupt[0],
        interrupt[1],
        INTERRUPT_INTERVAL,
        // Endpoint 1: bulk OUT.
        ep_len,
        DESCRIPTOR_TYPE_ENDPOINT,
        BULK_OUT_ENDPOINT,
        EndpointKind::Bulk as u8,
        bulk[0],
        bulk[1],
        0,
        // Endpoint 2: bulk IN.
        ep_len,
        DESCRIPTOR_TYPE_ENDPOINT,
        BULK_IN_ENDPOINT,
        EndpointKind::Bulk as u8,
        bulk[0],
        bulk[1],
        0,
    ]
}

/// Transfer type of an endpoint (`bmAttributes` bits 1–0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EndpointKind {
    /// Control.
    Control = 0,
    /// Isochronous.
    Isochronous = 1,
    /// Bulk.
    Bulk = 2,
    /// Interrupt.
    Interrupt = 3,
}

impl EndpointKind {
    /// The transfer type in `bmAttributes`' low two bits.
    pub const fn from_attributes(attributes: u8) -> Self {
        match attributes & 0x3 {
            0 => EndpointKind::Control,
            1 => EndpointKind::Isochronous,
            2 => EndpointKind::Bulk,
            _ => EndpointKind::Interrupt,
        }
    }
}

/// One endpoint descriptor, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    /// `bEndpointAddress` (bit 7 set = IN).
    pub address: u8,
    /// Transfer type.
    pub kind: EndpointKind,
    /// `wMaxPacketSize`.
    pub max_packet_size: u16,
    /// `bInterval`.
    pub interval: u8,
}

impl EndpointInfo {
    /// Whether data flows device-to-host.
    pub const fn is_in(&self) -> bool {
        self.address & 0x80 != 0
    }
}

/// The parts of a configuration descriptor the FX2 driver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigurationInfo {
    /// `wTotalLength`.
    pub total_length: u16,
    /// `bNumInterfaces`.
    pub num_interfaces: u8,
    /// `bConfigurationValue`.
    pub configuration_value: u8,
    /// `bmAttributes`.
    pub attributes: u8,
    /// `bMaxPower` (2 mA units).
    pub max_power: u8,
    /// `bInterfaceClass` of the first interface.
    pub interface_class: u8,
    /// The first interface's endpoints, in descriptor order.
    pub endpoints: Vec<EndpointInfo>,
}

impl ConfigurationInfo {
    /// The first endpoint of `kind` flowing in the given direction, as a driver finds its pipes.
    pub fn find_endpoint(&self, kind: EndpointKind, is_in: bool) -> Option<EndpointInfo> {
        self.endpoints
            .iter()
            .copied()
            .find(|e| e.kind == kind && e.is_in() == is_in)
    }
}

/// Why a byte array is not a well-formed configuration descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorError {
    /// Fewer bytes than a descriptor header or than `wTotalLength` claims.
    Truncated,
    /// A descriptor's `bLength` is too small for its type or runs past the end.
    BadLength {
        /// Offset of the offending descriptor.
        offset: usize,
    },
    /// The first descriptor is not a configuration descriptor.
    NotAConfiguration,
    /// No interface descriptor was found.
    NoInterface,
    /// The interface announces more endpoints than follow it.
    MissingEndpoints {
        /// `bNumEndpoints`.
        expected: u8,
        /// Endpoint descriptors found.
        found: usize,
    },
}

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DescriptorError::Truncated => f.write_str("configuration descriptor is truncated"),
            DescriptorError::BadLength { offset } => {
                write!(f, "descriptor at offset {offset} has a bad bLength")
            }
            DescriptorError::NotAConfiguration => {
                f.write_str("first descriptor is not a configuration descriptor")
            }
            DescriptorError::NoInterface => f.write_str("no interface descriptor"),
            DescriptorError::MissingEndpoints { expected, found } => {
                write!(
                    f,
                    "interface announces {expected} endpoints, {found} follow"
                )
            }
        }
    }
}

impl std::error::Error for DescriptorError {}

/// Walks a configuration descriptor: checks every `bLength` and `wTotalLength`, decodes the first
/// interface and its endpoint descriptors. Unknown descriptor types are skipped by their length.
pub fn parse_configuration_descriptor(bytes: &[u8]) -> Result<ConfigurationInfo, DescriptorError> {
    let header = bytes
        .get(..CONFIGURATION_DESCRIPTOR_LENGTH)
        .ok_or(DescriptorError::Truncated)?;
    if header[1] != DESCRIPTOR_TYPE_CONFIGURATION {
        return Err(DescriptorError::NotAConfiguration);
    }
    if usize::from(header[0]) < CONFIGURATION_DESCRIPTOR_LENGTH {
        return Err(DescriptorError::BadLength { offset: 0 });
    }
    let total_length = u16::from_le_bytes([header[2], header[3]]);
    let body = bytes
        .get(..usize::from(total_length))
        .ok_or(DescriptorError::Truncated)?;

    let mut interface: Option<(u8, u8)> = None; // (class, bNumEndpoints)
    let mut endpoints = Vec::new();
    let mut offset = 0;
    while offset < body.len() {
        let rest = &body[offset..];
        let [length, kind, ..] = *rest else {
            return Err(DescriptorError::Truncated);
        };
        let length = usize::from(length);
        if length < 2 || length > rest.len() {
            return Err(DescriptorError::BadLength { offset });
        }
        let descriptor = &rest[..length];
        match kind {
            DESCRIPTOR_TYPE_INTERFACE if interface.is_none() => {
                if length < INTERFACE_DESCRIPTOR_LENGTH {
                    return Err(DescriptorError::BadLength { offset });
                }
                interface = Some((descriptor[5], descriptor[4]));
            }
            DESCRIPTOR_TYPE_INTERFACE => break, // only the first interface is decoded
            DESCRIPTOR_TYPE_ENDPOINT if interface.is_some() => {
                if length < ENDPOINT_DESCRIPTOR_LENGTH {
                    return Err(DescriptorError::BadLength { offset });
                }
                endpoints.push(EndpointInfo {
                    address: descriptor[2],
                    kind: EndpointKind::from_attributes(descriptor[3]),
                    max_packet_size: u16::from_le_bytes([descriptor[4], descriptor[5]]),
                    interval: descriptor[6],
                });
            }
            _ => {}
        }
        offset += length;
    }

    let (interface_class, expected) = interface.ok_or(DescriptorError::NoInterface)?;
    if endpoints.len() < usize::from(expected) {
        return Err(DescriptorError::MissingEndpoints {
            expected,
            found: endpoints.len(),
        });
    }
    Ok(ConfigurationInfo {
        total_length,
        num_interfaces: header[4],
        configuration_value: header[5],
        attributes: header[7],
        max_power: header[8],
        interface_class,
        endpoints,
    })
}

/// The board's vendor control requests (device recipient, value 0, index 0, at most one data byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VendorRequest {
    /// `0xD4`: read the seven-segment display (IN, one byte).
    Read7Segment = 0xD4,
    /// `0xD6`: read the switches (IN, one byte).
    ReadSwitches = 0xD6,
    /// `0xD7`: read the light bar (IN, one byte).
    ReadBarGraph = 0xD7,
    /// `0xD8`: set the light bar (OUT, one byte).
    SetBarGraph = 0xD8,
    /// `0xD9`: is the board running at high speed (IN, one byte, non-zero = yes).
    IsHighSpeed = 0xD9,
    /// `0xDA`: re-enumerate (OUT, no data).
    Reenumerate = 0xDA,
    /// `0xDB`: set the seven-segment display (OUT, one byte).
    Set7Segment = 0xDB,
}

impl VendorRequest {
    /// The request whose `bRequest` is `code`, or `None` (the device stalls unknown requests).
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0xD4 => VendorRequest::Read7Segment,
            0xD6 => VendorRequest::ReadSwitches,
            0xD7 => VendorRequest::ReadBarGraph,
            0xD8 => VendorRequest::SetBarGraph,
            0xD9 => VendorRequest::IsHighSpeed,
            0xDA => VendorRequest::Reenumerate,
            0xDB => VendorRequest::Set7Segment,
            _ => return None,
        })
    }

    /// `bRequest`.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Whether data flows device-to-host.
    pub const fn is_in(self) -> bool {
        matches!(
            self,
            VendorRequest::Read7Segment
                | VendorRequest::ReadSwitches
                | VendorRequest::ReadBarGraph
                | VendorRequest::IsHighSpeed
        )
    }

    /// Bytes in the data stage: 0 for re-enumerate, otherwise 1.
    pub const fn data_length(self) -> usize {
        match self {
            VendorRequest::Reenumerate => 0,
            _ => 1,
        }
    }
}

/// USB feature selector `ENDPOINT_HALT` (endpoint stall).
pub const FEATURE_ENDPOINT_HALT: u16 = 0x00;
/// USB feature selector `DEVICE_REMOTE_WAKEUP`.
pub const FEATURE_DEVICE_REMOTE_WAKEUP: u16 = 0x01;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fx2_descriptor_parses_at_both_speeds() {
        for (speed, bulk) in [(UsbSpeed::High, 512), (UsbSpeed::Full, 64)] {
            let bytes = configuration_descriptor(speed);
            let config = parse_configuration_descriptor(&bytes).expect("well-formed");
            assert_eq!(usize::from(config.total_length), bytes.len());
            assert_eq!(config.num_interfaces, 1);
            assert_eq!(config.interface_class, INTERFACE_CLASS_VENDOR);
            let interrupt = config.find_endpoint(EndpointKind::Interrupt, true);
            assert_eq!(
                interrupt,
                Some(EndpointInfo {
                    address: 0x81,
                    kind: EndpointKind::Interrupt,
                    max_packet_size: 0x49,
                    interval: 1
                })
            );
            let out = config.find_endpoint(EndpointKind::Bulk, false).unwrap();
            let inn = config.find_endpoint(EndpointKind::Bulk, true).unwrap();
            assert_eq!((out.address, out.max_packet_size), (0x06, bulk));
            assert_eq!((inn.address, inn.max_packet_size), (0x88, bulk));
        }
    }

    #[test]
    fn fx2_descriptor_parser_rejects_bad_input_without_panicking() {
        let good = configuration_descriptor(UsbSpeed::High);
        // Every truncation fails cleanly.
        for len in 0..good.len() {
            assert!(
                parse_configuration_descriptor(&good[..len]).is_err(),
                "{len}"
            );
        }
        // A zero bLength inside would loop forever if not caught.
        let mut zero = good;
        zero[9] = 0;
        assert_eq!(
            parse_configuration_descriptor(&zero),
            Err(DescriptorError::BadLength { offset: 9 })
        );
        let mut not_config = good;
        not_config[1] = DESCRIPTOR_TYPE_INTERFACE;
        assert_eq!(
            parse_configuration_descriptor(&not_config),
            Err(DescriptorError::NotAConfiguration)
        );
        let mut too_many = good;
        too_many[13] = 4;
        assert_eq!(
            parse_configuration_descriptor(&too_many),
            Err(DescriptorError::MissingEndpoints {
                expected: 4,
                found: 3
            })
        );
        // Every single-byte corruption either parses or errors; none panics.
        for i in 0..good.len() {
            for v in [0u8, 1, 2, 7, 9, 0x27, 0xFF] {
                let mut bytes = good;
                bytes[i] = v;
                let _ = parse_configuration_descriptor(&bytes);
            }
        }
    }

    #[test]
    fn fx2_vendor_requests_round_trip() {
        for code in 0..=u8::MAX {
            if let Some(request) = VendorRequest::from_code(code) {
                assert_eq!(request.code(), code);
            }
        }
        assert_eq!(VendorRequest::from_code(0xD5), None);
        assert!(VendorRequest::ReadSwitches.is_in());
        assert!(!VendorRequest::SetBarGraph.is_in());
        assert_eq!(VendorRequest::Reenumerate.data_length(), 0);
    }
}
