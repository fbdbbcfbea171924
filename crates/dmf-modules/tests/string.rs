//! DMF_String, modelled on C DMF's `Dmf_Tests_String.c`: the conversions with big and small
//! buffers, `MultiSzFindLast` on its test strings, the list lookups on its tables, then MULTI_SZ
//! building and bounds, GUID text, a seeded round trip and the Module's lifetime.
#![cfg(feature = "sim")]

use std::cmp::Ordering;

use dmf_core::module::NoParent;
use dmf_core::platform::contract::device::Guid;
use dmf_core::NtStatus;
use dmf_modules::string::{
    find_in_list_char, guid_from_string, guid_to_string, multi_sz_build, multi_sz_enumerate,
    multi_sz_find_last, multi_sz_iter, multi_sz_size, narrow_to_wide, wide_to_narrow, DmfString,
    GUID_STRING_LENGTH,
};
use kmdf_sim::{Machine, VerifierMode};

fn module(machine: &Machine) -> dmf_core::module::DynamicModule<DmfString> {
    let _on = machine.enter();
    DmfString::with(()).create(&NoParent).unwrap()
}

fn w(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// `L"…"` with its embedded NULs, as the C test writes MULTI_SZ literals.
fn wz(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

const NARROW: [&str; 4] = ["", "a", "ab", "abcdedfghijklmnopqrstuvwxyz0123456789"];
const STRING_LENGTH_SMALL: usize = 1;
const STRING_LENGTH_BIG: usize = 64;

/// Tests_String_NarrowWide: WideStringCopyAsNarrow, RtlUnicodeStringToAnsiString and
/// RtlAnsiStringToUnicodeString with big buffers (success) and 1-character buffers (failure,
/// except for the empty string).
#[test]
fn mods_string_conversions_big_and_small_buffers() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let strings = module(&machine);
    let _on = machine.enter();
    for narrow in NARROW {
        let wide = wz(narrow);
        let mut big = [0xFF_u8; STRING_LENGTH_BIG];
        assert_eq!(
            strings.wide_string_copy_as_narrow(&mut big, &wide),
            Ok(narrow)
        );
        assert_eq!(big[narrow.len()], 0, "NUL-terminated");
        let mut small = [0xFF_u8; STRING_LENGTH_SMALL];
        let copied = strings.wide_string_copy_as_narrow(&mut small, &wide);
        if narrow.is_empty() {
            assert_eq!(copied, Ok(""));
        } else {
            assert_eq!(copied, Err(NtStatus::BUFFER_TOO_SMALL));
        }

        // A UNICODE_STRING is counted, not terminated: the slice without its NUL.
        let counted = w(narrow);
        let mut big = [0_u8; STRING_LENGTH_BIG];
        assert_eq!(
            strings.rtl_unicode_string_to_ansi_string(&mut big, &counted),
            Ok(narrow)
        );
        let mut small = [0_u8; STRING_LENGTH_SMALL];
        let converted = strings.rtl_unicode_string_to_ansi_string(&mut small, &counted);
        assert!(
            converted.is_ok() == narrow.is_empty(),
            "{narrow:?}: {converted:?}"
        );

        let mut big = [0xFFFF_u16; STRING_LENGTH_BIG];
        let length = strings
            .rtl_ansi_string_to_unicode_string(&mut big, narrow)
            .unwrap();
        assert_eq!(&big[..=length], wide.as_slice());
        let mut small = [0_u16; STRING_LENGTH_SMALL];
        let converted = strings.rtl_ansi_string_to_unicode_string(&mut small, narrow);
        assert!(
            converted.is_ok() == narrow.is_empty(),
            "{narrow:?}: {converted:?}"
        );
    }
    // Beyond ASCII: exact UTF-8 ↔ UTF-16, and an unpaired surrogate refused.
    let mut out = [0_u8; 16];
    assert_eq!(wide_to_narrow(&w("é€😀"), &mut out), Ok("é€😀"));
    assert_eq!(
        wide_to_narrow(&[0xD800, 0x41], &mut out),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let mut units = [0_u16; 4];
    assert_eq!(narrow_to_wide("😀é", &mut units), Ok(3));
    assert_eq!(
        narrow_to_wide("😀éa", &mut units),
        Err(NtStatus::BUFFER_TOO_SMALL),
        "no room for the terminator"
    );
    drop(strings);
    assert!(machine.verifier().violations().is_empty());
}

/// Tests_String_NarrowWide, the `DMF_String_MultiSzFindLast` part, on C DMF's test strings.
#[test]
fn mods_string_multi_sz_find_last() {
    let machine = Machine::new();
    let strings = module(&machine);
    let _on = machine.enter();
    let last = |literal: &str| {
        strings
            .multi_sz_find_last(&wz(literal))
            .unwrap()
            .map(|s| String::from_utf16(s).unwrap())
    };
    assert_eq!(last("first\0last\0\0").as_deref(), Some("last"));
    assert_eq!(last("only\0\0").as_deref(), Some("only"));
    assert_eq!(last("\0\0"), None);
    assert_eq!(last("first\0middle\0last\0\0").as_deref(), Some("last"));
    assert_eq!(last("\0"), None);
    assert_eq!(last("\0last\0\0").as_deref(), Some("last"));
    assert_eq!(last("\0middle\0last\0\0").as_deref(), Some("last"));
    assert_eq!(last("first\0middle\0\0\0").as_deref(), Some("middle"));
}

/// DMF_String_MultiSzEnumerate: every string in order, a leading empty string included, early
/// stop, and a list without its terminators read only up to the slice's end.
#[test]
fn mods_string_multi_sz_enumerate() {
    let machine = Machine::new();
    let strings = module(&machine);
    let _on = machine.enter();
    let collect = |units: &[u16]| -> Vec<String> {
        let mut seen = Vec::new();
        strings
            .multi_sz_enumerate(units, |s| {
                seen.push(String::from_utf16(s).unwrap());
                true
            })
            .unwrap();
        seen
    };
    assert_eq!(collect(&wz("a\0bc\0\0")), ["a", "bc"]);
    assert_eq!(collect(&wz("\0Last\0\0")), ["", "Last"]);
    assert_eq!(
        collect(&wz("a\0\0b\0\0")),
        ["a"],
        "an empty string ends the list"
    );
    assert_eq!(collect(&w("a\0unterminated")), ["a", "unterminated"]);
    assert_eq!(collect(&[]), Vec::<String>::new());
    let mut calls = 0;
    multi_sz_enumerate(&wz("a\0b\0c\0\0"), |_| {
        calls += 1;
        calls < 2
    });
    assert_eq!(calls, 2);
}

/// MULTI_SZ building: the layout REG_MULTI_SZ stores, the size, bounds and invalid strings.
#[test]
fn mods_string_multi_sz_build() {
    let mut out = [0xFFFF_u16; 16];
    assert_eq!(multi_sz_size(&["ab", "c"]), 6);
    assert_eq!(multi_sz_build(&["ab", "c"], &mut out), Ok(6));
    assert_eq!(&out[..6], w("ab\0c\0\0").as_slice());
    assert_eq!(multi_sz_build(&[], &mut out), Ok(1));
    assert_eq!(out[0], 0);
    assert_eq!(multi_sz_iter(&out[..1]).count(), 0);
    assert_eq!(
        multi_sz_build(&["ab", "c"], &mut [0; 5]),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(
        multi_sz_build(&["a", ""], &mut out),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        multi_sz_build(&["a\0b"], &mut out),
        Err(NtStatus::INVALID_PARAMETER)
    );
    let used = multi_sz_build(&["x", "yz"], &mut out).unwrap();
    assert_eq!(multi_sz_find_last(&out[..used]), Some(w("yz").as_slice()));
}

const TABLE0: [&str; 9] = [
    "", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh",
];
const TABLE1: [&str; 8] = [
    "s", "st", "stu", "stuv", "stuvw", "stuvwx", "stuvwxy", "stuvwxyz",
];
const TABLE2: [&str; 9] = [
    "qwer", "asdf", "zxcv", "t", "fg", "vb", "poiulkhj", "mnbvcxz", "",
];
const TABLE3: [&str; 7] = ["mnb", "v", "poiulkjhqwer", "poiulkhj", "", "zxcvzxcv", "_@"];
const ANSWERS3: [Option<usize>; 7] = [Some(7), Some(5), None, Some(6), Some(8), None, None];
const ANSWERS4: [Option<usize>; 7] = [None, None, None, Some(6), Some(8), None, None];
const TABLE5: [&str; 1] = ["abc123"];
const TABLE6: [&str; 6] = ["a", "ab", "abc", "abc1", "abc123", "abc123456"];

/// Tests_String_TableLookups, table for table.
#[test]
fn mods_string_table_lookups() {
    let machine = Machine::new();
    let strings = module(&machine);
    let _on = machine.enter();
    let left = |list: &[&str], look_for: &str| {
        strings
            .find_in_list_look_for_left_match_char(list, look_for)
            .unwrap()
    };
    let exact =
        |list: &[&str], look_for: &str| strings.find_in_list_exact_char(list, look_for).unwrap();
    for look_for in TABLE0 {
        assert_eq!(left(&[], look_for), None);
        assert_eq!(exact(&[], look_for), None);
    }
    for (index, look_for) in TABLE0.iter().enumerate() {
        assert_eq!(left(&TABLE0, look_for), Some(index));
        assert_eq!(left(&TABLE1, look_for), None);
        assert_eq!(exact(&TABLE0, look_for), Some(index));
        assert_eq!(exact(&TABLE1, look_for), None);
    }
    for (index, look_for) in TABLE1.iter().enumerate() {
        assert_eq!(left(&TABLE1, look_for), Some(index));
        assert_eq!(left(&TABLE0, look_for), None);
    }
    for (look_for, (left_answer, exact_answer)) in TABLE3.iter().zip(ANSWERS3.iter().zip(ANSWERS4))
    {
        assert_eq!(left(&TABLE2, look_for), *left_answer, "{look_for:?}");
        assert_eq!(exact(&TABLE2, look_for), exact_answer, "{look_for:?}");
    }
    for (index, look_for) in TABLE6.iter().enumerate() {
        // Only the last string (longer than the entry) fails.
        assert_eq!(left(&TABLE5, look_for).is_some(), index != 5, "{look_for}");
    }
    assert_eq!(left(&TABLE6, TABLE5[0]), Some(4));
    assert_eq!(left(&TABLE1, TABLE5[0]), None);
    for look_for in TABLE1 {
        assert_eq!(left(&TABLE5, look_for), None);
    }

    // A client comparison: case-insensitive (str::eq_ignore_ascii_case).
    let found = strings
        .find_in_list_char(&TABLE2, "ASDF", |entry, look_for| {
            if entry.eq_ignore_ascii_case(look_for) {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        })
        .unwrap();
    assert_eq!(found, Some(1));
    assert_eq!(
        find_in_list_char(&TABLE2, "zxcv", |a, b| a.len().cmp(&b.len())),
        Some(0),
        "the first entry the comparison calls equal"
    );
}

const GUIDS: [Guid; 5] = [
    Guid::new(
        0xc130_8310,
        0x8b25,
        0x47da,
        [0x90, 0x83, 0x3c, 0x1, 0x2, 0xda, 0xe1, 0x9b],
    ),
    Guid::new(
        0x61ed_94bd,
        0x6ad4,
        0x4b61,
        [0xb9, 0xd1, 0x7b, 0x18, 0xf1, 0x4b, 0xf9, 0xf6],
    ),
    Guid::new(
        0xc323_be51,
        0x6e7a,
        0x4643,
        [0xb4, 0xdd, 0xa0, 0xe8, 0xef, 0xe7, 0x48, 0x8c],
    ),
    Guid::new(
        0x4a9d_6030,
        0x6966,
        0x411b,
        [0x81, 0xe7, 0xcb, 0xe8, 0x6, 0x1c, 0xb4, 0x75],
    ),
    Guid::new(
        0x744f_2cf2,
        0xb514,
        0x4147,
        [0xb0, 0x50, 0xfd, 0xf7, 0xde, 0x8b, 0x17, 0x61],
    ),
];
const GUID5: Guid = Guid::new(
    0x8a16_6351,
    0xb60e,
    0x45e9,
    [0xab, 0x49, 0xfd, 0x5d, 0xbb, 0x71, 0xfb, 0x39],
);

/// Tests_String_TableLookups, the GUID part; then GUIDs as text (the comments of the C test are
/// the expected text).
#[test]
fn mods_string_guids() {
    let machine = Machine::new();
    let strings = module(&machine);
    let _on = machine.enter();
    for (index, guid) in GUIDS.iter().enumerate() {
        assert_eq!(
            strings.find_in_list_exact_guid(&GUIDS, guid),
            Ok(Some(index))
        );
    }
    assert_eq!(strings.find_in_list_exact_guid(&GUIDS, &GUID5), Ok(None));
    assert_eq!(strings.find_in_list_exact_guid(&[], &GUID5), Ok(None));

    let expected = [
        "{C1308310-8B25-47DA-9083-3C0102DAE19B}",
        "{61ED94BD-6AD4-4B61-B9D1-7B18F14BF9F6}",
        "{C323BE51-6E7A-4643-B4DD-A0E8EFE7488C}",
        "{4A9D6030-6966-411B-81E7-CBE8061CB475}",
        "{744F2CF2-B514-4147-B050-FDF7DE8B1761}",
    ];
    for (guid, text) in GUIDS.iter().zip(expected) {
        let mut out = [0_u8; GUID_STRING_LENGTH];
        assert_eq!(strings.guid_to_string(guid, &mut out), Ok(text));
        assert_eq!(strings.guid_from_string(text), Ok(*guid));
        assert_eq!(guid_from_string(&text.to_lowercase()), Ok(*guid));
    }
    let mut short = [0_u8; GUID_STRING_LENGTH - 1];
    assert_eq!(
        guid_to_string(&GUID5, &mut short),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    for bad in [
        "",
        "C1308310-8B25-47DA-9083-3C0102DAE19B",
        "{C1308310-8B25-47DA-9083-3C0102DAE19B",
        "{C1308310+8B25-47DA-9083-3C0102DAE19B}",
        "{C1308310-8B25-47DA-9083-3C0102DAE19G}",
        "{C1308310-8B25-47DA-9083-3C0102DAE19B}}",
        "{+1308310-8B25-47DA-9083-3C0102DAE19B}",
        "{C1308310-8B25-47DA-9083-3C0102DAE1é}",
    ] {
        assert_eq!(
            guid_from_string(bad),
            Err(NtStatus::INVALID_PARAMETER),
            "{bad:?}"
        );
    }
}

/// Seeded: random lists of random strings built into a MULTI_SZ come back unchanged through
/// enumeration and find-last; text round-trips through UTF-16 and back.
#[test]
fn mods_string_seeded_round_trips() {
    const CHARS: [char; 7] = ['a', 'Z', '0', ' ', 'é', '€', '😀'];
    let mut state = 0x0123_4567_89AB_CDEF_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..500 {
        let count = usize::try_from(next() % 5).unwrap();
        let list: Vec<String> = (0..count)
            .map(|_| {
                (0..=next() % 6)
                    .map(|_| CHARS[usize::try_from(next() % 7).unwrap()])
                    .collect()
            })
            .collect();
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        let mut units = vec![0_u16; multi_sz_size(&refs)];
        let used = multi_sz_build(&refs, &mut units).unwrap();
        assert_eq!(used, units.len());
        let back: Vec<String> = multi_sz_iter(&units)
            .map(|s| String::from_utf16(s).unwrap())
            .collect();
        assert_eq!(back, list);
        assert_eq!(
            multi_sz_find_last(&units).map(|s| String::from_utf16(s).unwrap()),
            list.last().cloned()
        );
        for text in &list {
            let mut wide = vec![0_u16; text.encode_utf16().count() + 1];
            let length = narrow_to_wide(text, &mut wide).unwrap();
            let mut narrow = vec![0_u8; text.len() + 1];
            assert_eq!(
                wide_to_narrow(&wide[..length], &mut narrow),
                Ok(text.as_str())
            );
        }
    }
}

/// After close every Method refuses; the free functions stay usable.
#[test]
fn mods_string_closed_module_refuses() {
    let machine = Machine::new();
    let strings = module(&machine);
    let _on = machine.enter();
    let handle = (*strings).clone();
    strings.delete();
    assert_eq!(
        handle.find_in_list_exact_char(&TABLE0, "a"),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        handle.multi_sz_find_last(&wz("a\0\0")),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    let mut out = [0_u8; GUID_STRING_LENGTH];
    assert_eq!(
        handle.guid_to_string(&GUID5, &mut out),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(guid_to_string(&GUID5, &mut out).is_ok());
}
