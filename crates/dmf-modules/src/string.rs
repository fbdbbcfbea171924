//! # DMF_String
//!
//! ## Summary
//!
//! String helpers over the kernel's string shapes: `MULTI_SZ` lists of UTF-16 strings (parse,
//! enumerate, find the last, build), lookups in lists of strings and GUIDs, conversions between
//! UTF-16 (`UNICODE_STRING`, `WCHAR*`) and narrow strings, and GUIDs as `{xxxxxxxx-…}` text.
//!
//! Every helper writes into a buffer the caller provides and never allocates, so each is usable
//! at `DISPATCH_LEVEL` and cannot fail for lack of memory; a buffer that is too short is
//! `STATUS_BUFFER_TOO_SMALL`. The helpers are also free functions of this module
//! ([`multi_sz_enumerate`], [`guid_to_string`], …) for code that has no String Module at hand
//! (the Registry Module builds its `REG_MULTI_SZ` data with [`multi_sz_build`]); the Module's
//! Methods are the same functions behind the Module's rundown guard.
//!
//! ## Configuration
//!
//! None: create it with `DmfString::with(())`.
//!
//! ## Methods
//!
//! | C DMF | Rust |
//! |---|---|
//! | `DMF_String_FindInListChar` | [`DmfString::find_in_list_char`] (the comparison callback is a closure returning an [`Ordering`]) |
//! | `DMF_String_FindInListExactChar` | [`DmfString::find_in_list_exact_char`] |
//! | `DMF_String_FindInListLookForLeftMatchChar` | [`DmfString::find_in_list_look_for_left_match_char`] |
//! | `DMF_String_FindInListExactGuid` | [`DmfString::find_in_list_exact_guid`] |
//! | `DMF_String_MultiSzEnumerate` | [`DmfString::multi_sz_enumerate`]; also [`multi_sz_iter`] |
//! | `DMF_String_MultiSzFindLast` | [`DmfString::multi_sz_find_last`] |
//! | — | [`multi_sz_build`], [`multi_sz_size`] (a `REG_MULTI_SZ` buffer from Rust strings) |
//! | `DMF_String_RtlAnsiStringToUnicodeString` | [`DmfString::rtl_ansi_string_to_unicode_string`] |
//! | `DMF_String_RtlUnicodeStringToAnsiString` | [`DmfString::rtl_unicode_string_to_ansi_string`] |
//! | `DMF_String_WideStringCopyAsNarrow` | [`DmfString::wide_string_copy_as_narrow`] |
//! | — (`RtlStringFromGUID`, `RtlGUIDFromString`) | [`DmfString::guid_to_string`], [`DmfString::guid_from_string`] |
//! | `DMF_String_RtlInitUnicodeString`, `DMF_String_AnsiStringInitialize` | merged into Rust: a `&[u16]` / `&str` already carries its length |
//! | case-insensitive comparison | merged into `core`: `str::eq_ignore_ascii_case` (there is no such C Method; pass it to [`DmfString::find_in_list_char`]) |
//! | copying a UTF-16 string (`RtlUnicodeStringCopy`) | merged into `core`: `<[u16]>::copy_from_slice` on a bounded slice (there is no such C Method) |
//!
//! All at `≤ DISPATCH_LEVEL` (C DMF pages the MULTI_SZ and conversion Methods; nothing here
//! touches paged memory of its own).
//!
//! ## Callbacks
//!
//! None (the comparison and enumeration callbacks of C DMF are closures passed to the Methods).
//!
//! ## Remarks
//!
//! - **Narrow strings are UTF-8.** C DMF converts with the system's ANSI code page; a Rust driver's
//!   narrow strings are `&str`, so the conversions are UTF-16 ↔ UTF-8, exactly and without a code
//!   page. A UTF-16 string with an unpaired surrogate does not convert
//!   (`STATUS_INVALID_PARAMETER`) where C DMF would substitute a default character.
//! - **Terminators.** Converted strings are written with a terminating NUL, and the destination
//!   must have room for it (`STATUS_BUFFER_TOO_SMALL` otherwise), as C DMF's conversions require
//!   in user mode; the returned length or `&str` excludes it.
//! - **MULTI_SZ parsing is bounded by the slice.** A `MULTI_SZ` ends at its double NUL or at the
//!   end of the slice, whichever comes first, so a missing terminator never reads past the
//!   buffer. As in C DMF, the first string may be empty (`"\0Last\0\0"` lists `""` and `"Last"`);
//!   an empty string anywhere else ends the list.
//! - The list lookups return `Ok(None)` for "not found" (C DMF: `-1`) and `Ok(Some(index))`.
//!
//! ## Example
//!
//! ```
//! use dmf_core::module::NoParent;
//! use dmf_core::platform::contract::device::Guid;
//! use dmf_core::NtStatus;
//! use dmf_modules::string::{multi_sz_build, DmfString};
//!
//! let machine = kmdf_sim::Machine::new();
//! let _on = machine.enter();
//! let strings = DmfString::with(()).create(&NoParent)?;
//!
//! // A REG_MULTI_SZ buffer, its strings, its last one.
//! let mut multi = [0u16; 32];
//! let used = multi_sz_build(&["first", "middle", "last"], &mut multi)?;
//! let mut seen = 0;
//! strings.multi_sz_enumerate(&multi[..used], |_| {
//!     seen += 1;
//!     true
//! })?;
//! assert_eq!(seen, 3);
//! let last = strings.multi_sz_find_last(&multi[..used])?.unwrap();
//! assert_eq!(String::from_utf16(last).unwrap(), "last");
//!
//! // Lookups.
//! let list = ["qwer", "asdf", "mnbvcxz"];
//! assert_eq!(strings.find_in_list_look_for_left_match_char(&list, "mnb")?, Some(2));
//! assert_eq!(strings.find_in_list_exact_char(&list, "mnb")?, None);
//!
//! // GUIDs as text and back.
//! let guid = Guid::new(0xC130_8310, 0x8B25, 0x47DA, [0x90, 0x83, 0x3C, 1, 2, 0xDA, 0xE1, 0x9B]);
//! let mut text = [0u8; 38];
//! let shown = strings.guid_to_string(&guid, &mut text)?;
//! assert_eq!(shown, "{C1308310-8B25-47DA-9083-3C0102DAE19B}");
//! assert_eq!(strings.guid_from_string(shown)?, guid);
//! # Ok::<(), NtStatus>(())
//! ```
//!
//! ## Category
//!
//! Driver Patterns.

use core::cmp::Ordering;

use dmf_core::module::ModuleCallbacks;
use dmf_core::platform::contract::device::Guid;
use dmf_core::{NtResult, NtStatus};
use dmf_macros::{dmf_callbacks, dmf_module};

/// The `DMF_String` Module. See the [module documentation](self).
#[dmf_module(crate = ::dmf_core, config = (), open = Create, lock = Dispatch)]
pub struct DmfString;

#[dmf_callbacks(crate = ::dmf_core)]
impl ModuleCallbacks for DmfString {}

/// Characters in a GUID's text form, `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`.
pub const GUID_STRING_LENGTH: usize = 38;

// ---------------------------------------------------------------------------------------------
// Lookups
// ---------------------------------------------------------------------------------------------

/// `DMF_String_FindInListChar`: the index of the first entry of `list` for which
/// `compare(entry, look_for)` is [`Ordering::Equal`].
pub fn find_in_list_char(
    list: &[&str],
    look_for: &str,
    mut compare: impl FnMut(&str, &str) -> Ordering,
) -> Option<usize> {
    list.iter()
        .position(|entry| compare(entry, look_for) == Ordering::Equal)
}

/// `DMF_String_FindInListExactChar`: the index of the first entry equal to `look_for`
/// (case-sensitive, whole string).
pub fn find_in_list_exact_char(list: &[&str], look_for: &str) -> Option<usize> {
    find_in_list_char(list, look_for, Ord::cmp)
}

/// `DMF_String_FindInListLookForLeftMatchChar`: the index of the first entry that starts with
/// `look_for` (case-sensitive). An empty `look_for` matches only an empty entry, as in C DMF.
pub fn find_in_list_look_for_left_match_char(list: &[&str], look_for: &str) -> Option<usize> {
    find_in_list_char(list, look_for, |entry, look_for| {
        if look_for.is_empty() {
            if entry.is_empty() {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        } else if entry.starts_with(look_for) {
            Ordering::Equal
        } else {
            entry.cmp(look_for)
        }
    })
}

/// `DMF_String_FindInListExactGuid`: the index of the first GUID of `list` equal to `look_for`.
pub fn find_in_list_exact_guid(list: &[Guid], look_for: &Guid) -> Option<usize> {
    list.iter().position(|guid| guid == look_for)
}

// ---------------------------------------------------------------------------------------------
// MULTI_SZ
// ---------------------------------------------------------------------------------------------

/// The strings of a `MULTI_SZ` (UTF-16, each NUL-terminated, the list ended by one more NUL),
/// without their terminators. See the module's remarks for where the list ends.
pub fn multi_sz_iter(multi_sz: &[u16]) -> MultiSzIter<'_> {
    MultiSzIter {
        rest: multi_sz,
        first: true,
    }
}

/// The iterator of [`multi_sz_iter`].
#[derive(Clone, Debug)]
pub struct MultiSzIter<'a> {
    rest: &'a [u16],
    first: bool,
}

impl<'a> Iterator for MultiSzIter<'a> {
    type Item = &'a [u16];

    fn next(&mut self) -> Option<&'a [u16]> {
        let first = core::mem::replace(&mut self.first, false);
        let end = self
            .rest
            .iter()
            .position(|&unit| unit == 0)
            .unwrap_or(self.rest.len());
        let ends_list = if end == 0 {
            // An empty string ends the list, except a first one followed by more strings.
            !first || self.rest.get(1).is_none_or(|&unit| unit == 0)
        } else {
            false
        };
        if ends_list || self.rest.is_empty() {
            self.rest = &[];
            return None;
        }
        let (string, rest) = self.rest.split_at(end);
        self.rest = rest.get(1..).unwrap_or(&[]);
        Some(string)
    }
}

/// `DMF_String_MultiSzEnumerate`: calls `callback` with each string of `multi_sz` (without its
/// terminator) until it returns `false`.
pub fn multi_sz_enumerate(multi_sz: &[u16], mut callback: impl FnMut(&[u16]) -> bool) {
    for string in multi_sz_iter(multi_sz) {
        if !callback(string) {
            break;
        }
    }
}

/// `DMF_String_MultiSzFindLast`: the last string of `multi_sz`, `None` if it has none.
pub fn multi_sz_find_last(multi_sz: &[u16]) -> Option<&[u16]> {
    multi_sz_iter(multi_sz).last()
}

/// UTF-16 units a `MULTI_SZ` of `strings` takes, terminators included.
pub fn multi_sz_size(strings: &[&str]) -> usize {
    strings
        .iter()
        .map(|s| s.encode_utf16().count() + 1)
        .sum::<usize>()
        + 1
}

/// Writes `strings` into `out` as a `MULTI_SZ` (the layout of a `REG_MULTI_SZ` value) and
/// returns the units used ([`multi_sz_size`]). An empty list is the single terminating NUL.
///
/// # Errors
///
/// `STATUS_INVALID_PARAMETER` for an empty string or one holding a NUL (neither can be stored in
/// a `MULTI_SZ`); `STATUS_BUFFER_TOO_SMALL` if `out` is shorter than [`multi_sz_size`].
pub fn multi_sz_build(strings: &[&str], out: &mut [u16]) -> NtResult<usize> {
    if strings.iter().any(|s| s.is_empty() || s.contains('\0')) {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let size = multi_sz_size(strings);
    let out = out.get_mut(..size).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
    let mut at = 0;
    for s in strings {
        for unit in s.encode_utf16().chain([0]) {
            out[at] = unit;
            at += 1;
        }
    }
    for unit in &mut out[at..] {
        *unit = 0;
    }
    Ok(size)
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

/// `DMF_String_RtlAnsiStringToUnicodeString`: writes `source` into `destination` as UTF-16
/// with a terminating NUL; returns the length in units without the NUL.
///
/// # Errors
///
/// `STATUS_BUFFER_TOO_SMALL` when `destination` cannot hold the string and its NUL (nothing
/// useful is left in it then).
pub fn narrow_to_wide(source: &str, destination: &mut [u16]) -> NtResult<usize> {
    let mut length = 0;
    for unit in source.encode_utf16() {
        *destination
            .get_mut(length)
            .ok_or(NtStatus::BUFFER_TOO_SMALL)? = unit;
        length += 1;
    }
    *destination
        .get_mut(length)
        .ok_or(NtStatus::BUFFER_TOO_SMALL)? = 0;
    Ok(length)
}

/// `DMF_String_RtlUnicodeStringToAnsiString`: writes all of `source` (UTF-16, NULs included as
/// characters) into `destination` as UTF-8 with a terminating NUL; returns the text written.
///
/// # Errors
///
/// `STATUS_BUFFER_TOO_SMALL` when `destination` cannot hold the text and its NUL;
/// `STATUS_INVALID_PARAMETER` for an unpaired surrogate.
pub fn wide_to_narrow<'d>(source: &[u16], destination: &'d mut [u8]) -> NtResult<&'d str> {
    let mut length = 0;
    let mut encoded = [0_u8; 4];
    for c in char::decode_utf16(source.iter().copied()) {
        let c = c.map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let bytes = c.encode_utf8(&mut encoded).as_bytes();
        destination
            .get_mut(length..length + bytes.len())
            .ok_or(NtStatus::BUFFER_TOO_SMALL)?
            .copy_from_slice(bytes);
        length += bytes.len();
    }
    *destination
        .get_mut(length)
        .ok_or(NtStatus::BUFFER_TOO_SMALL)? = 0;
    // Whole characters encoded by `encode_utf8`: valid UTF-8.
    core::str::from_utf8(&destination[..length]).map_err(|_| NtStatus::INTERNAL_ERROR)
}

/// `DMF_String_WideStringCopyAsNarrow`: as [`wide_to_narrow`] for a NUL-terminated `WCHAR*`
/// string: `wide` up to its first NUL (or its end).
///
/// # Errors
///
/// As [`wide_to_narrow`]; an empty `narrow` is always `STATUS_BUFFER_TOO_SMALL`.
pub fn wide_string_copy_as_narrow<'d>(narrow: &'d mut [u8], wide: &[u16]) -> NtResult<&'d str> {
    let end = wide
        .iter()
        .position(|&unit| unit == 0)
        .unwrap_or(wide.len());
    wide_to_narrow(&wide[..end], narrow)
}

// ---------------------------------------------------------------------------------------------
// GUIDs
// ---------------------------------------------------------------------------------------------

/// A `core::fmt::Write` into a byte slice.
struct SliceWriter<'d> {
    out: &'d mut [u8],
    at: usize,
}

impl core::fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.at + s.len();
        self.out
            .get_mut(self.at..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

/// `RtlStringFromGUID` without the allocation: writes `guid` as
/// `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}` (upper case, [`GUID_STRING_LENGTH`] characters)
/// into `out` and returns it.
///
/// # Errors
///
/// `STATUS_BUFFER_TOO_SMALL` if `out` is shorter than [`GUID_STRING_LENGTH`].
pub fn guid_to_string<'d>(guid: &Guid, out: &'d mut [u8]) -> NtResult<&'d str> {
    use core::fmt::Write as _;
    let out = out
        .get_mut(..GUID_STRING_LENGTH)
        .ok_or(NtStatus::BUFFER_TOO_SMALL)?;
    let mut writer = SliceWriter { out, at: 0 };
    write!(writer, "{guid}").map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    let SliceWriter { out, at } = writer;
    core::str::from_utf8(&out[..at]).map_err(|_| NtStatus::INTERNAL_ERROR)
}

/// `RtlGUIDFromString`: parses `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` (either case, braces
/// required).
///
/// # Errors
///
/// `STATUS_INVALID_PARAMETER` for any other text.
pub fn guid_from_string(text: &str) -> NtResult<Guid> {
    let bytes = text.as_bytes();
    if bytes.len() != GUID_STRING_LENGTH || bytes[0] != b'{' || bytes[37] != b'}' {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if [9, 14, 19, 24].iter().any(|&at| bytes[at] != b'-') {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let hex = |from: usize, digits: usize| -> NtResult<u64> {
        bytes[from..from + digits]
            .iter()
            .try_fold(0_u64, |acc, &b| {
                let digit = char::from(b)
                    .to_digit(16)
                    .ok_or(NtStatus::INVALID_PARAMETER)?;
                Ok(acc << 4 | u64::from(digit))
            })
    };
    let narrow = |value: u64| u32::try_from(value).map_err(|_| NtStatus::INVALID_PARAMETER);
    let data1 = narrow(hex(1, 8)?)?;
    let data2 = u16::try_from(hex(10, 4)?).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let data3 = u16::try_from(hex(15, 4)?).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let mut data4 = [0_u8; 8];
    for (i, byte) in data4.iter_mut().enumerate() {
        let at = if i < 2 { 20 + 2 * i } else { 25 + 2 * (i - 2) };
        *byte = u8::try_from(hex(at, 2)?).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    }
    Ok(Guid::new(data1, data2, data3, data4))
}

// ---------------------------------------------------------------------------------------------
// The Module's Methods
// ---------------------------------------------------------------------------------------------

impl DmfString {
    /// `DMF_String_FindInListChar`: see [`find_in_list_char`].
    pub fn find_in_list_char(
        &self,
        list: &[&str],
        look_for: &str,
        compare: impl FnMut(&str, &str) -> Ordering,
    ) -> NtResult<Option<usize>> {
        let _module = self.enter()?;
        Ok(find_in_list_char(list, look_for, compare))
    }

    /// `DMF_String_FindInListExactChar`: see [`find_in_list_exact_char`].
    pub fn find_in_list_exact_char(
        &self,
        list: &[&str],
        look_for: &str,
    ) -> NtResult<Option<usize>> {
        let _module = self.enter()?;
        Ok(find_in_list_exact_char(list, look_for))
    }

    /// `DMF_String_FindInListLookForLeftMatchChar`: see
    /// [`find_in_list_look_for_left_match_char`].
    pub fn find_in_list_look_for_left_match_char(
        &self,
        list: &[&str],
        look_for: &str,
    ) -> NtResult<Option<usize>> {
        let _module = self.enter()?;
        Ok(find_in_list_look_for_left_match_char(list, look_for))
    }

    /// `DMF_String_FindInListExactGuid`: see [`find_in_list_exact_guid`].
    pub fn find_in_list_exact_guid(
        &self,
        list: &[Guid],
        look_for: &Guid,
    ) -> NtResult<Option<usize>> {
        let _module = self.enter()?;
        Ok(find_in_list_exact_guid(list, look_for))
    }

    /// `DMF_String_MultiSzEnumerate`: see [`multi_sz_enumerate`].
    pub fn multi_sz_enumerate(
        &self,
        multi_sz: &[u16],
        callback: impl FnMut(&[u16]) -> bool,
    ) -> NtResult<()> {
        let _module = self.enter()?;
        multi_sz_enumerate(multi_sz, callback);
        Ok(())
    }

    /// `DMF_String_MultiSzFindLast`: see [`multi_sz_find_last`].
    pub fn multi_sz_find_last<'s>(&self, multi_sz: &'s [u16]) -> NtResult<Option<&'s [u16]>> {
        let _module = self.enter()?;
        Ok(multi_sz_find_last(multi_sz))
    }

    /// `DMF_String_RtlAnsiStringToUnicodeString`: see [`narrow_to_wide`].
    pub fn rtl_ansi_string_to_unicode_string(
        &self,
        destination: &mut [u16],
        source: &str,
    ) -> NtResult<usize> {
        let _module = self.enter()?;
        narrow_to_wide(source, destination)
    }

    /// `DMF_String_RtlUnicodeStringToAnsiString`: see [`wide_to_narrow`].
    pub fn rtl_unicode_string_to_ansi_string<'d>(
        &self,
        destination: &'d mut [u8],
        source: &[u16],
    ) -> NtResult<&'d str> {
        let _module = self.enter()?;
        wide_to_narrow(source, destination)
    }

    /// `DMF_String_WideStringCopyAsNarrow`: see [`wide_string_copy_as_narrow`].
    pub fn wide_string_copy_as_narrow<'d>(
        &self,
        narrow: &'d mut [u8],
        wide: &[u16],
    ) -> NtResult<&'d str> {
        let _module = self.enter()?;
        wide_string_copy_as_narrow(narrow, wide)
    }

    /// `RtlStringFromGUID`: see [`guid_to_string`].
    pub fn guid_to_string<'d>(&self, guid: &Guid, out: &'d mut [u8]) -> NtResult<&'d str> {
        let _module = self.enter()?;
        guid_to_string(guid, out)
    }

    /// `RtlGUIDFromString`: see [`guid_from_string`].
    pub fn guid_from_string(&self, text: &str) -> NtResult<Guid> {
        let _module = self.enter()?;
        guid_from_string(text)
    }
}
