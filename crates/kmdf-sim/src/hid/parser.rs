//! The HID parser (`hidparse.sys`) of the simulator: a report descriptor parsed into the
//! simulator's own *preparsed data* layout, and the `HidP_*` routines a driver calls on it.
//!
//! Preparsed data is opaque to drivers (hidclass hands it out with
//! `IOCTL_HID_GET_COLLECTION_DESCRIPTOR`, `hidparse.sys` reads it); the layout below is the
//! simulator's, not Windows'. Little-endian:
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | magic [`PREPARSED_MAGIC`] |
//! | 8 | 2 | top-level collection usage page |
//! | 10 | 2 | top-level collection usage |
//! | 12 | 2 × 3 | input, output, feature report byte length (report ID byte included) |
//! | 18 | 1 | reserved |
//! | 19 | 1 | item count *n* |
//! | 20 | 24 × *n* | items: type, report ID, button flag, reserved, usage page, usage min, usage max, bit offset (from the report's first byte, the ID byte included), bit size, count, 2 reserved, logical min `i32`, logical max `i32` |
//!
//! The descriptor parser understands the short items a simple device uses: Usage Page, Usage,
//! Usage Minimum/Maximum, Logical Minimum/Maximum, Report Size/Count/ID, Input, Output, Feature,
//! Collection and End Collection; anything else is refused. As on Windows, every report starts
//! with its report ID byte (0 when the descriptor declares no report IDs) and the byte lengths in
//! the caps count it.

use crate::status::Status;

/// The preparsed data's first eight bytes.
pub const PREPARSED_MAGIC: [u8; 8] = *b"SimHidP1";
const HEADER: usize = 20;
const ITEM: usize = 24;
/// The largest preparsed blob the simulator makes (a bound for readers).
pub const MAX_PREPARSED_LEN: usize = HEADER + ITEM * 255;

/// `FACILITY_HID_ERROR_CODE` statuses of `hidpi.h` (`HIDP_ERROR_CODES(sev, code)`).
const fn hidp(sev: u32, code: u32) -> Status {
    Status(i32::from_ne_bytes(
        ((sev << 28) | (0x11 << 16) | code).to_ne_bytes(),
    ))
}
/// `HIDP_STATUS_SUCCESS`.
pub const HIDP_STATUS_SUCCESS: Status = hidp(0, 0);
/// `HIDP_STATUS_INVALID_PREPARSED_DATA`.
pub const HIDP_STATUS_INVALID_PREPARSED_DATA: Status = hidp(0xC, 1);
/// `HIDP_STATUS_INVALID_REPORT_TYPE`.
pub const HIDP_STATUS_INVALID_REPORT_TYPE: Status = hidp(0xC, 2);
/// `HIDP_STATUS_INVALID_REPORT_LENGTH`.
pub const HIDP_STATUS_INVALID_REPORT_LENGTH: Status = hidp(0xC, 3);
/// `HIDP_STATUS_USAGE_NOT_FOUND`.
pub const HIDP_STATUS_USAGE_NOT_FOUND: Status = hidp(0xC, 4);
/// `HIDP_STATUS_VALUE_OUT_OF_RANGE`.
pub const HIDP_STATUS_VALUE_OUT_OF_RANGE: Status = hidp(0xC, 5);
/// `HIDP_STATUS_BUFFER_TOO_SMALL`.
pub const HIDP_STATUS_BUFFER_TOO_SMALL: Status = hidp(0xC, 7);
/// `HIDP_STATUS_INCOMPATIBLE_REPORT_ID`.
pub const HIDP_STATUS_INCOMPATIBLE_REPORT_ID: Status = hidp(0xC, 0xA);
/// `HIDP_STATUS_REPORT_DOES_NOT_EXIST`.
pub const HIDP_STATUS_REPORT_DOES_NOT_EXIST: Status = hidp(0xC, 0x10);

/// `HIDP_REPORT_TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportType {
    /// `HidP_Input` (0).
    Input = 0,
    /// `HidP_Output` (1).
    Output = 1,
    /// `HidP_Feature` (2).
    Feature = 2,
}

impl ReportType {
    fn from_raw(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Input),
            1 => Some(Self::Output),
            2 => Some(Self::Feature),
            _ => None,
        }
    }
}

/// `HIDP_CAPS` (the fields the simulator's parser fills; the others are 0 on Windows for such
/// a device too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// `Usage`.
    pub usage: u16,
    /// `UsagePage`.
    pub usage_page: u16,
    /// `InputReportByteLength`.
    pub input_report_byte_length: u16,
    /// `OutputReportByteLength`.
    pub output_report_byte_length: u16,
    /// `FeatureReportByteLength`.
    pub feature_report_byte_length: u16,
    /// `NumberInputButtonCaps`.
    pub number_input_button_caps: u16,
    /// `NumberInputValueCaps`.
    pub number_input_value_caps: u16,
    /// `NumberOutputButtonCaps`.
    pub number_output_button_caps: u16,
    /// `NumberOutputValueCaps`.
    pub number_output_value_caps: u16,
    /// `NumberFeatureButtonCaps`.
    pub number_feature_button_caps: u16,
    /// `NumberFeatureValueCaps`.
    pub number_feature_value_caps: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Item {
    kind: ReportType,
    report_id: u8,
    button: bool,
    usage_page: u16,
    usage_min: u16,
    usage_max: u16,
    bit_offset: u16,
    bit_size: u8,
    count: u8,
    logical_min: i32,
    logical_max: i32,
}

/// One short item's data: unsigned and sign-extended.
fn item_data(data: &[u8]) -> (u32, i32) {
    let mut bytes = [0u8; 4];
    bytes[..data.len()].copy_from_slice(data);
    let unsigned = u32::from_le_bytes(bytes);
    let signed = match *data {
        [b] => i32::from(i8::from_le_bytes([b])),
        [a, b] => i32::from(i16::from_le_bytes([a, b])),
        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]),
        _ => 0,
    };
    (unsigned, signed)
}

/// The descriptor parser's state: global and local items, the collection depth, the items and
/// the bits each report has used so far (after its ID byte).
#[derive(Default)]
struct Preparser {
    page: u16,
    logical_min: i32,
    logical_max: i32,
    size: u8,
    count: u8,
    report_id: u8,
    usages: Vec<u16>,
    usage_min: Option<u16>,
    usage_max: Option<u16>,
    top: Option<(u16, u16)>,
    depth: u32,
    items: Vec<Item>,
    bits: Vec<((ReportType, u8), u32)>,
}

impl Preparser {
    fn local_reset(&mut self) {
        self.usages.clear();
        (self.usage_min, self.usage_max) = (None, None);
    }

    fn item(&mut self, tag: u8, unsigned: u32, signed: i32) -> Result<(), Status> {
        let bad = Status::INVALID_PARAMETER;
        let u16v = || u16::try_from(unsigned).map_err(|_| bad);
        let u8v = || u8::try_from(unsigned).map_err(|_| bad);
        match tag {
            0x04 => self.page = u16v()?,
            0x14 => self.logical_min = signed,
            // A logical maximum is read unsigned when the minimum is not negative (as parsers do).
            0x24 => {
                self.logical_max = if self.logical_min >= 0 {
                    i32::try_from(unsigned).map_err(|_| bad)?
                } else {
                    signed
                };
            }
            0x74 => self.size = u8v()?,
            0x94 => self.count = u8v()?,
            0x84 => self.report_id = u8v()?,
            0x08 => self.usages.push(u16v()?),
            0x18 => self.usage_min = Some(u16v()?),
            0x28 => self.usage_max = Some(u16v()?),
            0xA0 => {
                if self.depth == 0 {
                    self.top = Some((self.page, *self.usages.first().ok_or(bad)?));
                }
                self.depth += 1;
                self.local_reset();
            }
            0xC0 => self.depth = self.depth.checked_sub(1).ok_or(bad)?,
            0x80 => self.main(ReportType::Input, unsigned)?,
            0x90 => self.main(ReportType::Output, unsigned)?,
            0xB0 => self.main(ReportType::Feature, unsigned)?,
            _ => return Err(bad),
        }
        Ok(())
    }

    /// An Input, Output or Feature item.
    fn main(&mut self, kind: ReportType, flags: u32) -> Result<(), Status> {
        let bad = Status::INVALID_PARAMETER;
        if self.depth == 0 || self.size == 0 || self.count == 0 {
            return Err(bad);
        }
        let (usage_min, usage_max) = match (self.usage_min, self.usage_max, self.usages.first()) {
            (Some(a), Some(b), _) if a <= b => (a, b),
            (None, None, Some(&u)) => (u, u),
            _ => return Err(bad),
        };
        let key = (kind, self.report_id);
        let slot = if let Some(p) = self.bits.iter().position(|(k, _)| *k == key) {
            p
        } else {
            self.bits.push((key, 0));
            self.bits.len() - 1
        };
        let offset = 8 + self.bits[slot].1;
        self.bits[slot].1 += u32::from(self.size) * u32::from(self.count);
        if self.bits[slot].1 > 8 * 8192 {
            return Err(bad);
        }
        // Constant (bit 0 of the item's data): padding, no usage.
        if flags & 1 == 0 {
            self.items.push(Item {
                kind,
                report_id: self.report_id,
                button: self.size == 1 && self.logical_min == 0 && self.logical_max == 1,
                usage_page: self.page,
                usage_min,
                usage_max,
                bit_offset: u16::try_from(offset).map_err(|_| bad)?,
                bit_size: self.size,
                count: self.count,
                logical_min: self.logical_min,
                logical_max: self.logical_max,
            });
        }
        self.local_reset();
        Ok(())
    }

    /// The byte length of the longest report of `kind`, its ID byte included.
    fn length(&self, kind: ReportType) -> u16 {
        let bits = self
            .bits
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, b)| 1 + b.div_ceil(8))
            .max()
            .unwrap_or(0);
        // At most 8 KiB + 1 (checked per item).
        u16::try_from(bits).unwrap_or(u16::MAX)
    }

    fn serialize(&self) -> Result<Vec<u8>, Status> {
        let bad = Status::INVALID_PARAMETER;
        let (top_page, top_usage) = self.top.ok_or(bad)?;
        let n = u8::try_from(self.items.len()).map_err(|_| bad)?;
        if self.depth != 0 || n == 0 {
            return Err(bad);
        }
        let mut out = Vec::with_capacity(HEADER + ITEM * self.items.len());
        out.extend_from_slice(&PREPARSED_MAGIC);
        for v in [
            top_page,
            top_usage,
            self.length(ReportType::Input),
            self.length(ReportType::Output),
            self.length(ReportType::Feature),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&[0, n]);
        for it in &self.items {
            out.extend_from_slice(&[it.kind as u8, it.report_id, u8::from(it.button), 0]);
            for v in [it.usage_page, it.usage_min, it.usage_max, it.bit_offset] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&[it.bit_size, it.count, 0, 0]);
            out.extend_from_slice(&it.logical_min.to_le_bytes());
            out.extend_from_slice(&it.logical_max.to_le_bytes());
        }
        Ok(out)
    }
}

/// Parses `descriptor` into preparsed data.
///
/// Errors: `STATUS_INVALID_PARAMETER` for an item the parser does not know, an unbalanced
/// collection, a main item before a usage, more than 255 items or reports longer than 8 KiB.
pub fn preparse(descriptor: &[u8]) -> Result<Vec<u8>, Status> {
    let mut parser = Preparser::default();
    let mut at = 0;
    while at < descriptor.len() {
        let prefix = descriptor[at];
        let len = match prefix & 3 {
            3 => 4,
            l => usize::from(l),
        };
        let data = descriptor
            .get(at + 1..at + 1 + len)
            .ok_or(Status::INVALID_PARAMETER)?;
        at += 1 + len;
        let (unsigned, signed) = item_data(data);
        parser.item(prefix & 0xFC, unsigned, signed)?;
    }
    parser.serialize()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The header and items of a preparsed blob, checked.
fn read(pp: &[u8]) -> Result<(Caps, Vec<Item>), Status> {
    let bad = HIDP_STATUS_INVALID_PREPARSED_DATA;
    if pp.len() < HEADER || pp[..8] != PREPARSED_MAGIC {
        return Err(bad);
    }
    let n = usize::from(pp[19]);
    if pp.len() != HEADER + ITEM * n {
        return Err(bad);
    }
    let mut caps = Caps {
        usage_page: u16_at(pp, 8),
        usage: u16_at(pp, 10),
        input_report_byte_length: u16_at(pp, 12),
        output_report_byte_length: u16_at(pp, 14),
        feature_report_byte_length: u16_at(pp, 16),
        ..Caps::default()
    };
    let mut items = Vec::with_capacity(n);
    for k in 0..n {
        let b = &pp[HEADER + ITEM * k..HEADER + ITEM * (k + 1)];
        let item = Item {
            kind: ReportType::from_raw(b[0]).ok_or(bad)?,
            report_id: b[1],
            button: b[2] != 0,
            usage_page: u16_at(b, 4),
            usage_min: u16_at(b, 6),
            usage_max: u16_at(b, 8),
            bit_offset: u16_at(b, 10),
            bit_size: b[12],
            count: b[13],
            logical_min: i32_at(b, 16),
            logical_max: i32_at(b, 20),
        };
        let end =
            usize::from(item.bit_offset) + usize::from(item.bit_size) * usize::from(item.count);
        if end.div_ceil(8) > usize::from(report_length(&caps, item.kind))
            || item.bit_size > 32
            || item.bit_size == 0
            || item.count == 0
            || item.usage_min > item.usage_max
        {
            return Err(bad);
        }
        let counter = match (item.kind, item.button) {
            (ReportType::Input, true) => &mut caps.number_input_button_caps,
            (ReportType::Input, false) => &mut caps.number_input_value_caps,
            (ReportType::Output, true) => &mut caps.number_output_button_caps,
            (ReportType::Output, false) => &mut caps.number_output_value_caps,
            (ReportType::Feature, true) => &mut caps.number_feature_button_caps,
            (ReportType::Feature, false) => &mut caps.number_feature_value_caps,
        };
        *counter += 1;
        items.push(item);
    }
    Ok((caps, items))
}

fn report_length(caps: &Caps, kind: ReportType) -> u16 {
    match kind {
        ReportType::Input => caps.input_report_byte_length,
        ReportType::Output => caps.output_report_byte_length,
        ReportType::Feature => caps.feature_report_byte_length,
    }
}

/// The items of `kind` and the report, after the length check (`report.len()` must be the
/// caps' byte length of that type, as `hidparse.sys` requires).
fn items_for(pp: &[u8], kind: ReportType, report_len: usize) -> Result<Vec<Item>, Status> {
    let (caps, items) = read(pp)?;
    let len = usize::from(report_length(&caps, kind));
    if len == 0 {
        return Err(HIDP_STATUS_REPORT_DOES_NOT_EXIST);
    }
    if report_len != len {
        return Err(HIDP_STATUS_INVALID_REPORT_LENGTH);
    }
    Ok(items.into_iter().filter(|i| i.kind == kind).collect())
}

fn get_bits(report: &[u8], offset: usize, size: usize) -> u32 {
    let mut v = 0u32;
    for k in 0..size {
        let bit = offset + k;
        if report[bit / 8] & (1 << (bit % 8)) != 0 {
            v |= 1 << k;
        }
    }
    v
}

fn set_bits(report: &mut [u8], offset: usize, size: usize, value: u32) {
    for k in 0..size {
        let bit = offset + k;
        if value & (1 << k) != 0 {
            report[bit / 8] |= 1 << (bit % 8);
        } else {
            report[bit / 8] &= !(1 << (bit % 8));
        }
    }
}

/// The report ID check of the setters: a report whose ID byte is 0 takes the item's ID.
fn claim(report: &mut [u8], id: u8) -> Result<(), Status> {
    match report[0] {
        0 => {
            report[0] = id;
            Ok(())
        }
        r if r == id => Ok(()),
        _ => Err(HIDP_STATUS_INCOMPATIBLE_REPORT_ID),
    }
}

/// `HidP_GetCaps`.
///
/// Errors: `HIDP_STATUS_INVALID_PREPARSED_DATA`.
pub fn get_caps(pp: &[u8]) -> Result<Caps, Status> {
    read(pp).map(|(caps, _)| caps)
}

/// `HidP_InitializeReportForID`: zeroes `report` and writes `report_id` into its first byte.
///
/// Errors: `HIDP_STATUS_INVALID_PREPARSED_DATA`; `HIDP_STATUS_INVALID_REPORT_LENGTH` when the
/// length is not the caps' length of that type; `HIDP_STATUS_REPORT_DOES_NOT_EXIST` for an ID
/// with no item of that type.
pub fn initialize_report_for_id(
    kind: ReportType,
    report_id: u8,
    pp: &[u8],
    report: &mut [u8],
) -> Result<(), Status> {
    let items = items_for(pp, kind, report.len())?;
    if !items.iter().any(|i| i.report_id == report_id) {
        return Err(HIDP_STATUS_REPORT_DOES_NOT_EXIST);
    }
    report.fill(0);
    report[0] = report_id;
    Ok(())
}

/// `HidP_GetUsages`: the pressed buttons of `usage_page` in `report` (whose ID byte selects the
/// items) into `usages`; the number written.
///
/// Errors: as [`initialize_report_for_id`]; `HIDP_STATUS_USAGE_NOT_FOUND` when the report has
/// no button of that page; `HIDP_STATUS_BUFFER_TOO_SMALL` when `usages` is too short (it holds
/// the first ones).
pub fn get_usages(
    kind: ReportType,
    usage_page: u16,
    pp: &[u8],
    report: &[u8],
    usages: &mut [u16],
) -> Result<usize, Status> {
    let items = items_for(pp, kind, report.len())?;
    let mut found = false;
    let mut n = 0;
    for it in items
        .iter()
        .filter(|i| i.button && i.usage_page == usage_page && i.report_id == report[0])
    {
        found = true;
        for k in 0..it.count {
            if get_bits(report, usize::from(it.bit_offset) + usize::from(k), 1) == 1 {
                let usage = it.usage_min.saturating_add(u16::from(k));
                let slot = usages.get_mut(n).ok_or(HIDP_STATUS_BUFFER_TOO_SMALL)?;
                *slot = usage;
                n += 1;
            }
        }
    }
    if found {
        Ok(n)
    } else {
        Err(HIDP_STATUS_USAGE_NOT_FOUND)
    }
}

/// `HidP_SetUsages`: sets the buttons `usages` of `usage_page` in `report`.
///
/// Errors: as [`get_usages`]; `HIDP_STATUS_INCOMPATIBLE_REPORT_ID` when a usage is in another
/// report than the one `report` holds.
pub fn set_usages(
    kind: ReportType,
    usage_page: u16,
    usages: &[u16],
    pp: &[u8],
    report: &mut [u8],
) -> Result<(), Status> {
    let items = items_for(pp, kind, report.len())?;
    for &usage in usages {
        let it = items
            .iter()
            .find(|i| {
                i.button
                    && i.usage_page == usage_page
                    && (i.usage_min..=i.usage_max).contains(&usage)
                    && usage - i.usage_min < u16::from(i.count)
            })
            .ok_or(HIDP_STATUS_USAGE_NOT_FOUND)?;
        claim(report, it.report_id)?;
        set_bits(
            report,
            usize::from(it.bit_offset + (usage - it.usage_min)),
            1,
            1,
        );
    }
    Ok(())
}

fn value_item(items: &[Item], usage_page: u16, usage: u16) -> Result<Item, Status> {
    items
        .iter()
        .find(|i| {
            !i.button && i.usage_page == usage_page && (i.usage_min..=i.usage_max).contains(&usage)
        })
        .copied()
        .ok_or(HIDP_STATUS_USAGE_NOT_FOUND)
}

/// `HidP_GetUsageValue`: the raw value of (`usage_page`, `usage`) in `report`.
///
/// Errors: as [`get_usages`]; `HIDP_STATUS_INCOMPATIBLE_REPORT_ID` when the value is in another
/// report.
pub fn get_usage_value(
    kind: ReportType,
    usage_page: u16,
    usage: u16,
    pp: &[u8],
    report: &[u8],
) -> Result<u32, Status> {
    let items = items_for(pp, kind, report.len())?;
    let it = value_item(&items, usage_page, usage)?;
    if it.report_id != report[0] {
        return Err(HIDP_STATUS_INCOMPATIBLE_REPORT_ID);
    }
    let index = usize::from(usage - it.usage_min).min(usize::from(it.count) - 1);
    let offset = usize::from(it.bit_offset) + index * usize::from(it.bit_size);
    Ok(get_bits(report, offset, usize::from(it.bit_size)))
}

/// `HidP_SetUsageValue`: writes the raw `value` of (`usage_page`, `usage`) into `report`.
///
/// Errors: as [`set_usages`]; `HIDP_STATUS_VALUE_OUT_OF_RANGE` when `value` does not fit the
/// field.
pub fn set_usage_value(
    kind: ReportType,
    usage_page: u16,
    usage: u16,
    value: u32,
    pp: &[u8],
    report: &mut [u8],
) -> Result<(), Status> {
    let items = items_for(pp, kind, report.len())?;
    let it = value_item(&items, usage_page, usage)?;
    if it.bit_size < 32 && value >> it.bit_size != 0 {
        return Err(HIDP_STATUS_VALUE_OUT_OF_RANGE);
    }
    claim(report, it.report_id)?;
    let index = usize::from(usage - it.usage_min).min(usize::from(it.count) - 1);
    let offset = usize::from(it.bit_offset) + index * usize::from(it.bit_size);
    set_bits(report, offset, usize::from(it.bit_size), value);
    Ok(())
}
