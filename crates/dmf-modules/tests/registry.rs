//! DMF_Registry, modelled on C DMF's `Dmf_Tests_Registry.c`: the path-and-value Methods, the same
//! Methods through keys opened by path and by the device's predefined ids, tree writes (config and
//! Method), enumeration and the conditional Methods; then what C DMF's test does not cover:
//! wrong types, access, keys with subkeys, malformed input, persistence across a reboot, a seeded
//! round trip of every value type against a model, and allocation failure.
#![cfg(feature = "sim")]
#![allow(clippy::too_many_lines)]

mod device_parent;

use std::collections::BTreeMap;

use device_parent::device_parent;
use dmf_core::module::NoParent;
use dmf_core::platform::contract::PlatformRegistryKey;
use dmf_core::platform::simulator::alloc_sweep;
use dmf_core::NtStatus;
use dmf_modules::registry::{
    DeviceRegistryKey, ReadError, Registry, RegistryAccess, RegistryBranch, RegistryConfig,
    RegistryEntry, RegistryEntryValue, RegistryKey, RegistryTree, RegistryValueType,
    MAXIMUM_NAME_LENGTH,
};
use dmf_modules::string::multi_sz_iter;
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::registry::{RegistryStore, RegistryValue as SimValue};
use kmdf_sim::{Machine, VerifierMode};

// The names and data of Dmf_Tests_Registry.c.
const REGISTRY_PATH_NAME: &str = r"\Registry\Machine\SOFTWARE\Microsoft\DmfKTest";
const REGISTRY_PATH_NAME_USER: &str = r"\Registry\Machine\SOFTWARE\Microsoft\DmfUTest";
const VALUENAME_STRING: &str = "string";
const VALUENAME_MULTISTRING: &str = "multistring";
const VALUENAME_BINARY: &str = "binary";
const VALUENAME_DWORD: &str = "ulong";
const VALUENAME_QWORD: &str = "ulonglong";
const VALUEDATA_DWORD: u32 = 0x8765_4321;
const VALUEDATA_QWORD: u64 = 0x1234_5678_8765_4321;
const SUBKEYS: [&str; 2] = ["subkey1", "subkey2"];
const BINARY_ORIGINAL: [u8; 10] = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0];
const STRING_ORIGINAL: &str = "DmfTest";
const MULTI_STRING_ORIGINAL: [&str; 3] = ["DmfTest 1", "DmfTest 2", "DmfTest 3"];
/// `sizeof(stringOriginal)`: "DmfTest" and its NUL in UTF-16.
const STRING_BYTES: usize = 16;
/// `sizeof(multiStringOriginal)`: three 9-character strings with their NULs, and the final NUL.
const MULTI_STRING_BYTES: usize = (3 * 10 + 1) * 2;

const STATUS_CANNOT_DELETE: NtStatus = NtStatus::from_raw(kmdf_sim::registry::STATUS_CANNOT_DELETE);

static REGISTRY_ENTRIES: [RegistryEntry; 5] = [
    RegistryEntry {
        name: VALUENAME_STRING,
        value: RegistryEntryValue::String(STRING_ORIGINAL),
    },
    RegistryEntry {
        name: VALUENAME_MULTISTRING,
        value: RegistryEntryValue::MultiString(&MULTI_STRING_ORIGINAL),
    },
    RegistryEntry {
        name: VALUENAME_BINARY,
        value: RegistryEntryValue::Binary(&BINARY_ORIGINAL),
    },
    RegistryEntry {
        name: VALUENAME_DWORD,
        value: RegistryEntryValue::Dword(VALUEDATA_DWORD),
    },
    RegistryEntry {
        name: VALUENAME_QWORD,
        value: RegistryEntryValue::Qword(VALUEDATA_QWORD),
    },
];

static REGISTRY_TREE: [RegistryTree; 2] = [
    RegistryTree {
        path: REGISTRY_PATH_NAME,
        branches: &[RegistryBranch {
            prefix: "",
            entries: &REGISTRY_ENTRIES,
        }],
    },
    RegistryTree {
        path: REGISTRY_PATH_NAME_USER,
        branches: &[
            RegistryBranch {
                prefix: r"\subkey1",
                entries: &[],
            },
            RegistryBranch {
                prefix: r"\subkey2",
                entries: &[],
            },
        ],
    },
];

/// A branch prefix that does not start with `\`.
static BAD: [RegistryTree; 1] = [RegistryTree {
    path: REGISTRY_PATH_NAME,
    branches: &[RegistryBranch {
        prefix: "subkey",
        entries: &[],
    }],
}];

/// A tree whose path is not absolute.
static RELATIVE: [RegistryTree; 1] = [RegistryTree {
    path: r"SOFTWARE\Microsoft",
    branches: &[RegistryBranch {
        prefix: "",
        entries: &REGISTRY_ENTRIES,
    }],
}];

fn machine() -> Machine {
    Machine::builder().verifier(VerifierMode::Record).build()
}

/// The path argument of the `PathAndValue` Methods.
const PATH: Option<&str> = Some(REGISTRY_PATH_NAME);

fn too_small(bytes_needed: usize) -> ReadError {
    ReadError {
        status: NtStatus::BUFFER_TOO_SMALL,
        bytes_needed,
    }
}

fn not_found() -> ReadError {
    NtStatus::OBJECT_NAME_NOT_FOUND.into()
}

fn utf16(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

fn multi_utf16() -> Vec<u16> {
    let mut units: Vec<u16> = MULTI_STRING_ORIGINAL
        .iter()
        .flat_map(|s| s.encode_utf16().chain([0]))
        .collect();
    units.push(0);
    units
}

// ----- Tests_Registry_Path_* -------------------------------------------------------------------

fn path_delete_values(registry: &Registry) {
    for name in [
        VALUENAME_STRING,
        VALUENAME_MULTISTRING,
        VALUENAME_BINARY,
        VALUENAME_DWORD,
        VALUENAME_QWORD,
    ] {
        let status = registry.path_and_value_delete(PATH, name);
        assert!(
            status.is_ok() || status == Err(NtStatus::OBJECT_NAME_NOT_FOUND),
            "{name}: {status:?}"
        );
    }
}

fn path_delete_path(registry: &Registry) {
    let status = registry.registry_path_delete(REGISTRY_PATH_NAME);
    assert!(
        status.is_ok() || status == Err(NtStatus::OBJECT_NAME_NOT_FOUND),
        "{status:?}"
    );
}

fn validate_path_deleted(registry: &Registry) {
    assert_eq!(
        registry
            .handle_open_by_name_ex(PATH, RegistryAccess::Read, false)
            .err(),
        Some(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
}

fn path_read_non_existent(registry: &Registry) {
    let mut units = [0u16; 64];
    let mut bytes = [0u8; 128];
    assert_eq!(
        registry.path_and_value_read_string(PATH, VALUENAME_STRING, &mut units),
        Err(not_found())
    );
    assert_eq!(
        registry.path_and_value_read_multi_string(PATH, VALUENAME_MULTISTRING, &mut units),
        Err(not_found())
    );
    assert_eq!(
        registry.path_and_value_read_binary(PATH, VALUENAME_BINARY, &mut bytes),
        Err(not_found())
    );
    assert_eq!(
        registry.path_and_value_read_dword(PATH, VALUENAME_DWORD),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        registry.path_and_value_read_qword(PATH, VALUENAME_QWORD),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
}

fn path_write_values(registry: &Registry) {
    registry
        .path_and_value_write_string(PATH, VALUENAME_STRING, STRING_ORIGINAL)
        .unwrap();
    registry
        .path_and_value_write_multi_string(PATH, VALUENAME_MULTISTRING, &MULTI_STRING_ORIGINAL)
        .unwrap();
    registry
        .path_and_value_write_binary(PATH, VALUENAME_BINARY, &BINARY_ORIGINAL)
        .unwrap();
    registry
        .path_and_value_write_dword(PATH, VALUENAME_DWORD, VALUEDATA_DWORD)
        .unwrap();
    registry
        .path_and_value_write_qword(PATH, VALUENAME_QWORD, VALUEDATA_QWORD)
        .unwrap();
}

fn path_read_and_validate_bytes_read(registry: &Registry) {
    assert_eq!(
        registry.path_and_value_read_string(PATH, VALUENAME_STRING, &mut []),
        Err(too_small(STRING_BYTES))
    );
    assert_eq!(
        registry.path_and_value_read_multi_string(PATH, VALUENAME_MULTISTRING, &mut []),
        Err(too_small(MULTI_STRING_BYTES))
    );
    assert_eq!(
        registry.path_and_value_read_binary(PATH, VALUENAME_BINARY, &mut []),
        Err(too_small(BINARY_ORIGINAL.len()))
    );
}

fn path_read_and_validate_data(registry: &Registry) {
    let mut units = [0u16; 64];
    let read = registry
        .path_and_value_read_string(PATH, VALUENAME_STRING, &mut units)
        .unwrap();
    assert_eq!(read, STRING_BYTES);
    assert_eq!(&units[..read / 2], utf16(STRING_ORIGINAL).as_slice());
    let mut units = [0u16; 64];
    let read = registry
        .path_and_value_read_multi_string(PATH, VALUENAME_MULTISTRING, &mut units)
        .unwrap();
    assert_eq!(read, MULTI_STRING_BYTES);
    assert_eq!(&units[..read / 2], multi_utf16().as_slice());
    let mut bytes = [0u8; 128];
    let read = registry
        .path_and_value_read_binary(PATH, VALUENAME_BINARY, &mut bytes)
        .unwrap();
    assert_eq!(&bytes[..read], &BINARY_ORIGINAL);
    assert_eq!(
        registry.path_and_value_read_dword(PATH, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD)
    );
    assert_eq!(
        registry.path_and_value_read_dword_and_validate(PATH, VALUENAME_DWORD, 0, 1),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(
        registry.path_and_value_read_dword_and_validate(PATH, VALUENAME_DWORD, 0, u32::MAX),
        Ok(VALUEDATA_DWORD)
    );
    assert_eq!(
        registry.path_and_value_read_qword(PATH, VALUENAME_QWORD),
        Ok(VALUEDATA_QWORD)
    );
    assert_eq!(
        registry.path_and_value_read_qword_and_validate(PATH, VALUENAME_QWORD, 0, 1),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(
        registry.path_and_value_read_qword_and_validate(PATH, VALUENAME_QWORD, 0, u64::MAX),
        Ok(VALUEDATA_QWORD)
    );
}

fn path_read_small_buffers(registry: &Registry) {
    let mut small = [0u16; 1];
    assert_eq!(
        registry.path_and_value_read_string(PATH, VALUENAME_STRING, &mut small),
        Err(too_small(STRING_BYTES))
    );
    assert_eq!(
        registry.path_and_value_read_multi_string(PATH, VALUENAME_MULTISTRING, &mut small),
        Err(too_small(MULTI_STRING_BYTES))
    );
    assert_eq!(small, [0], "a buffer that is too small is left untouched");
    let mut small = [0u8; 1];
    assert_eq!(
        registry.path_and_value_read_binary(PATH, VALUENAME_BINARY, &mut small),
        Err(too_small(BINARY_ORIGINAL.len()))
    );
    assert_eq!(small, [0]);
}

/// Tests_Registry_RunTest, "Path and Value Tests".
#[test]
fn mods_registry_path_and_value() {
    let machine = machine();
    let _on = machine.enter();
    let registry = Registry::with(RegistryConfig::default())
        .create(&NoParent)
        .unwrap();
    path_delete_values(&registry);
    path_delete_path(&registry);
    path_read_non_existent(&registry);
    validate_path_deleted(&registry);
    path_write_values(&registry);
    path_read_and_validate_bytes_read(&registry);
    path_read_and_validate_data(&registry);
    path_read_small_buffers(&registry);
    // The data is where C DMF would have put it, as the kernel stores it.
    let stored = machine
        .registry()
        .open_key(REGISTRY_PATH_NAME)
        .unwrap()
        .query_value(VALUENAME_MULTISTRING)
        .unwrap();
    assert_eq!(
        stored,
        SimValue::MultiSz(MULTI_STRING_ORIGINAL.map(String::from).to_vec())
    );
    path_delete_values(&registry);
    path_delete_path(&registry);
    path_read_non_existent(&registry);
    validate_path_deleted(&registry);
    registry.delete();
    assert!(machine.verifier().violations().is_empty());
}

// ----- Tests_Registry_Handle_* -----------------------------------------------------------------

fn handle_delete_values(registry: &Registry, key: &RegistryKey) {
    for name in [
        VALUENAME_STRING,
        VALUENAME_MULTISTRING,
        VALUENAME_BINARY,
        VALUENAME_DWORD,
        VALUENAME_QWORD,
    ] {
        let status = registry.value_delete(key, name);
        assert!(
            status.is_ok() || status == Err(NtStatus::OBJECT_NAME_NOT_FOUND),
            "{name}: {status:?}"
        );
    }
}

fn handle_read_non_existent(registry: &Registry, key: &RegistryKey) {
    let mut units = [0u16; 64];
    let mut bytes = [0u8; 128];
    assert_eq!(
        registry.value_read_string(key, VALUENAME_STRING, &mut units),
        Err(not_found())
    );
    assert_eq!(
        registry.value_read_multi_string(key, VALUENAME_MULTISTRING, &mut units),
        Err(not_found())
    );
    assert_eq!(
        registry.value_read_binary(key, VALUENAME_BINARY, &mut bytes),
        Err(not_found())
    );
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        registry.value_read_qword(key, VALUENAME_QWORD),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
}

fn handle_write_values(registry: &Registry, key: &RegistryKey) {
    registry
        .value_write_string(key, VALUENAME_STRING, STRING_ORIGINAL)
        .unwrap();
    registry
        .value_write_multi_string(key, VALUENAME_MULTISTRING, &MULTI_STRING_ORIGINAL)
        .unwrap();
    registry
        .value_write_binary(key, VALUENAME_BINARY, &BINARY_ORIGINAL)
        .unwrap();
    registry
        .value_write_dword(key, VALUENAME_DWORD, VALUEDATA_DWORD)
        .unwrap();
    registry
        .value_write_qword(key, VALUENAME_QWORD, VALUEDATA_QWORD)
        .unwrap();
}

fn handle_read_and_validate(registry: &Registry, key: &RegistryKey) {
    // Sizes first (NULL buffer), then the data, then buffers that are too small.
    assert_eq!(
        registry.value_read_string(key, VALUENAME_STRING, &mut []),
        Err(too_small(STRING_BYTES))
    );
    assert_eq!(
        registry.value_read_multi_string(key, VALUENAME_MULTISTRING, &mut []),
        Err(too_small(MULTI_STRING_BYTES))
    );
    assert_eq!(
        registry.value_read_binary(key, VALUENAME_BINARY, &mut []),
        Err(too_small(BINARY_ORIGINAL.len()))
    );
    let mut units = [0u16; 64];
    assert_eq!(
        registry.value_read_string(key, VALUENAME_STRING, &mut units),
        Ok(STRING_BYTES)
    );
    assert_eq!(
        &units[..STRING_BYTES / 2],
        utf16(STRING_ORIGINAL).as_slice()
    );
    assert_eq!(
        registry.value_read_multi_string(key, VALUENAME_MULTISTRING, &mut units),
        Ok(MULTI_STRING_BYTES)
    );
    let strings: Vec<String> = multi_sz_iter(&units[..MULTI_STRING_BYTES / 2])
        .map(|s| String::from_utf16(s).unwrap())
        .collect();
    assert_eq!(strings, MULTI_STRING_ORIGINAL);
    let mut bytes = [0u8; 64];
    assert_eq!(
        registry.value_read(key, VALUENAME_BINARY, RegistryValueType::Binary, &mut bytes),
        Ok(BINARY_ORIGINAL.len())
    );
    assert_eq!(&bytes[..BINARY_ORIGINAL.len()], &BINARY_ORIGINAL);
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD)
    );
    assert_eq!(
        registry.value_read_dword_and_validate(key, VALUENAME_DWORD, VALUEDATA_DWORD + 1, u32::MAX),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(
        registry.value_read_qword(key, VALUENAME_QWORD),
        Ok(VALUEDATA_QWORD)
    );
    assert_eq!(
        registry.value_read_qword_and_validate(key, VALUENAME_QWORD, 0, VALUEDATA_QWORD),
        Ok(VALUEDATA_QWORD)
    );
    let mut small = [0u16; 1];
    assert_eq!(
        registry.value_read_string(key, VALUENAME_STRING, &mut small),
        Err(too_small(STRING_BYTES))
    );
    let mut small = [0u8; 1];
    assert_eq!(
        registry.value_read_binary(key, VALUENAME_BINARY, &mut small),
        Err(too_small(BINARY_ORIGINAL.len()))
    );
}

/// Tests_Registry_RunTest, "Path/Predefined Id key open and Value Tests": the same values through
/// a key opened by path (then deleted) and through the device's hardware and software keys.
#[test]
fn mods_registry_handles_by_path_and_predefined_id() {
    let machine = machine();
    let _on = machine.enter();
    let parent = device_parent(&machine);
    let registry = Registry::with(RegistryConfig::default())
        .create(&parent)
        .unwrap();
    let opens: [&dyn Fn() -> RegistryKey; 3] = [
        &|| {
            registry
                .handle_open_by_name_ex(PATH, RegistryAccess::All, true)
                .unwrap()
        },
        &|| {
            registry
                .handle_open_by_id(DeviceRegistryKey::Hardware, RegistryAccess::All)
                .unwrap()
        },
        &|| {
            registry
                .handle_open_by_id(DeviceRegistryKey::Software, RegistryAccess::All)
                .unwrap()
        },
    ];
    for (index, open) in opens.iter().enumerate() {
        let key = open();
        handle_delete_values(&registry, &key);
        handle_read_non_existent(&registry, &key);
        handle_write_values(&registry, &key);
        handle_read_and_validate(&registry, &key);
        handle_delete_values(&registry, &key);
        handle_read_non_existent(&registry, &key);
        if index == 0 {
            registry.handle_delete(key).unwrap();
            validate_path_deleted(&registry);
        }
    }
    // The device's keys are the ones PnP keeps for its instance, and a None path names the
    // hardware key.
    let instance = parent.node.instance_id().to_owned();
    let hardware = RegistryStore::device_hardware_key_path(&instance);
    registry
        .path_and_value_write_dword(None, "Probe", 5)
        .unwrap();
    assert_eq!(
        machine
            .registry()
            .open_key(&hardware)
            .unwrap()
            .query_dword("Probe"),
        Ok(5)
    );
    let software = registry
        .handle_open_by_id(DeviceRegistryKey::Software, RegistryAccess::ReadWrite)
        .unwrap();
    registry.value_write_dword(&software, "Soft", 6).unwrap();
    let soft_again = machine.registry().device_software_key(&instance).unwrap();
    assert_eq!(soft_again.query_dword("Soft"), Ok(6));
    // The driver's Parameters key.
    let parameters = registry
        .handle_open_parameters_registry_key("module-test")
        .unwrap();
    registry.value_write_dword(&parameters, "Param", 7).unwrap();
    assert_eq!(
        machine
            .registry()
            .driver_parameters("module-test")
            .unwrap()
            .query_dword("Param"),
        Ok(7)
    );
    drop((software, parameters));
    registry.delete();
    assert!(machine.verifier().violations().is_empty());
}

/// A Module without a device cannot open the device's keys.
#[test]
fn mods_registry_device_keys_need_a_device() {
    let machine = machine();
    let _on = machine.enter();
    let registry = Registry::with(RegistryConfig::default())
        .create(&NoParent)
        .unwrap();
    assert_eq!(
        registry
            .handle_open_by_id(DeviceRegistryKey::Hardware, RegistryAccess::Read)
            .err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        registry.path_and_value_read_dword(None, "x"),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    registry.delete();
}

// ----- Tree tests ------------------------------------------------------------------------------

/// Tests_Registry_TreeWrite: the tree written by the Method, then by the config at open.
#[test]
fn mods_registry_tree_write() {
    let machine = machine();
    let _on = machine.enter();
    let registry = Registry::with(RegistryConfig::default())
        .create(&NoParent)
        .unwrap();
    validate_path_deleted(&registry);
    registry.tree_write_ex(&REGISTRY_TREE).unwrap();
    path_read_and_validate_data(&registry);
    let mut seen = Vec::new();
    assert_eq!(
        registry.enumerate_keys_from_name(REGISTRY_PATH_NAME_USER, |_, name| {
            seen.push(name.to_owned());
            true
        }),
        Ok(true)
    );
    assert_eq!(seen, SUBKEYS);
    path_delete_values(&registry);
    path_delete_path(&registry);
    validate_path_deleted(&registry);

    // The config's tree is written when the Module opens.
    let configured = Registry::with(RegistryConfig {
        tree: &REGISTRY_TREE,
        ..RegistryConfig::default()
    })
    .create(&NoParent)
    .unwrap();
    path_read_and_validate_data(&configured);
    path_delete_values(&registry);
    path_delete_path(&registry);

    // A branch prefix must be empty or start with '\': the open fails and says why.
    assert_eq!(
        registry.tree_write_ex(&BAD),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        Registry::with(RegistryConfig {
            tree: &BAD,
            ..RegistryConfig::default()
        })
        .create(&NoParent)
        .err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    // A relative tree path is not a registry path.
    assert_eq!(
        registry.tree_write_ex(&RELATIVE),
        Err(NtStatus::INVALID_PARAMETER)
    );
    configured.delete();
    registry.delete();
    assert!(machine.verifier().violations().is_empty());
}

// ----- Enum and conditional tests --------------------------------------------------------------

fn count_subkeys(names: &[String]) -> usize {
    names
        .iter()
        .filter(|n| SUBKEYS.contains(&n.as_str()))
        .count()
}

/// Tests_Registry_RunTest, "Enum and Conditional Tests".
#[test]
fn mods_registry_enumeration_and_conditional_actions() {
    let machine = machine();
    let _on = machine.enter();
    let registry = Registry::with(RegistryConfig::default())
        .create(&NoParent)
        .unwrap();
    validate_path_deleted(&registry);
    let key = registry
        .handle_open_by_name_ex(PATH, RegistryAccess::All, true)
        .unwrap();
    handle_write_values(&registry, &key);
    for name in SUBKEYS {
        drop(registry.handle_open_by_handle(&key, name, true).unwrap());
    }

    // Tests_Registry_Path_Enumerate.
    let mut names = Vec::new();
    assert_eq!(
        registry.enumerate_keys_from_name(REGISTRY_PATH_NAME, |_, name| {
            names.push(name.to_owned());
            true
        }),
        Ok(true)
    );
    assert_eq!(count_subkeys(&names), 2);
    // Tests_Registry_Path_NameContainingStringEnumerate.
    for (look_for, expected) in [("subkey1", 1), ("subkey2", 1), ("DoesNotExist", 0)] {
        let mut found = 0;
        assert_eq!(
            registry.sub_keys_from_path_name_containing_string_enumerate(
                REGISTRY_PATH_NAME,
                look_for,
                |subkey, name| {
                    // The callback gets the subkey opened.
                    registry.value_write_dword(subkey, "seen", 1).unwrap();
                    found += usize::from(SUBKEYS.contains(&name));
                    true
                }
            ),
            Ok(true)
        );
        assert_eq!(found, expected, "{look_for}");
    }
    // Tests_Registry_Handle_Enumerate, both forms; a callback that stops early.
    let mut names = Vec::new();
    assert_eq!(
        registry.sub_keys_from_handle_enumerate(&key, |_, name| {
            names.push(name.to_owned());
            true
        }),
        Ok(true)
    );
    assert_eq!(count_subkeys(&names), 2);
    let mut seen_values = 0;
    assert_eq!(
        registry.all_sub_keys_from_handle_enumerate(&key, |subkey, _| {
            seen_values += usize::from(registry.value_read_dword(subkey, "seen") == Ok(1));
            true
        }),
        Ok(true)
    );
    assert_eq!(seen_values, 2);
    let mut calls = 0;
    assert_eq!(
        registry.sub_keys_from_handle_enumerate(&key, |_, _| {
            calls += 1;
            false
        }),
        Ok(false)
    );
    assert_eq!(calls, 1);
    let mut values = Vec::new();
    assert_eq!(
        registry.values_from_handle_enumerate(&key, |name| {
            values.push(name.to_owned());
            true
        }),
        Ok(true)
    );
    values.sort();
    assert_eq!(
        values,
        [
            VALUENAME_BINARY,
            VALUENAME_MULTISTRING,
            VALUENAME_STRING,
            VALUENAME_DWORD,
            VALUENAME_QWORD
        ]
    );

    conditional_delete(&registry, &key);
    conditional_write(&registry, &key);
    custom_action(&registry, &key);

    handle_delete_values(&registry, &key);
    // A key with subkeys cannot be deleted; delete them first (Tests_Registry_Handle_DeleteSubkeys).
    let again = registry
        .handle_open_by_name_ex(PATH, RegistryAccess::All, false)
        .unwrap();
    assert_eq!(registry.handle_delete(again), Err(STATUS_CANNOT_DELETE));
    for name in SUBKEYS {
        let subkey = registry.handle_open_by_handle(&key, name, false).unwrap();
        registry.handle_delete(subkey).unwrap();
    }
    registry.handle_delete(key).unwrap();
    validate_path_deleted(&registry);
    registry.delete();
    assert!(machine.verifier().violations().is_empty());
}

fn dword_equals(expected: u32) -> impl FnOnce(&[u8]) -> bool {
    move |stored| stored == expected.to_le_bytes()
}

/// Tests_Registry_Handle_ConditionalDelete.
fn conditional_delete(registry: &Registry, key: &RegistryKey) {
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD)
    );
    // A failing condition leaves the value.
    registry
        .value_delete_if_needed(key, VALUENAME_DWORD, dword_equals(VALUEDATA_DWORD + 1))
        .unwrap();
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD)
    );
    // A succeeding one removes it.
    registry
        .value_delete_if_needed(key, VALUENAME_DWORD, dword_equals(VALUEDATA_DWORD))
        .unwrap();
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    // A value that is not there.
    assert_eq!(
        registry.value_delete_if_needed(key, VALUENAME_DWORD, |_| true),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
}

/// Tests_Registry_Handle_ConditionalWrite (RegistryValueComparisonFunction_IfDefault: write
/// only over the default value).
fn conditional_write(registry: &Registry, key: &RegistryKey) {
    let write = |value: u32, compare: &dyn Fn(&[u8]) -> bool, if_not_found: bool| {
        registry.value_write_if_needed(
            key,
            VALUENAME_DWORD,
            RegistryValueType::Dword,
            &value.to_le_bytes(),
            compare,
            if_not_found,
        )
    };
    let if_default = |stored: &[u8]| stored == VALUEDATA_DWORD.to_le_bytes();
    assert_eq!(
        write(VALUEDATA_DWORD, &if_default, false),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    write(VALUEDATA_DWORD, &if_default, true).unwrap();
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD)
    );
    // Over the default: written.
    write(VALUEDATA_DWORD + 1, &if_default, false).unwrap();
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD + 1)
    );
    // Over a non-default value: not written.
    write(VALUEDATA_DWORD + 2, &if_default, false).unwrap();
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD + 1)
    );
    // Client data captured by the closure (RegistryValueComparisonFunction_IfEqualToContext).
    registry
        .value_write_dword(key, VALUENAME_DWORD, VALUEDATA_DWORD)
        .unwrap();
    let context = VALUEDATA_DWORD + 1;
    write(
        VALUEDATA_DWORD + 1,
        &|s: &[u8]| s == context.to_le_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD)
    );
    let context = VALUEDATA_DWORD;
    write(
        VALUEDATA_DWORD + 1,
        &|s: &[u8]| s == context.to_le_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(
        registry.value_read_dword(key, VALUENAME_DWORD),
        Ok(VALUEDATA_DWORD + 1)
    );
}

/// DMF_Registry_CustomAction: the closure does the work and decides the status.
fn custom_action(registry: &Registry, key: &RegistryKey) {
    let mut copied = Vec::new();
    registry
        .custom_action(key, VALUENAME_BINARY, |stored| {
            copied.extend_from_slice(stored);
            true
        })
        .unwrap();
    assert_eq!(copied, BINARY_ORIGINAL);
    assert_eq!(
        registry.custom_action(key, VALUENAME_BINARY, |_| false),
        Err(NtStatus::UNSUCCESSFUL)
    );
    assert_eq!(
        registry.custom_action(key, "absent", |_| true),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
}

// ----- Beyond Dmf_Tests_Registry.c --------------------------------------------------------------

/// Wrong types, short and malformed data, access rights, a closed Module.
#[test]
fn mods_registry_failure_paths() {
    let machine = machine();
    let _on = machine.enter();
    let registry = Registry::with(RegistryConfig {
        value_size_maximum: 8,
        ..RegistryConfig::default()
    })
    .create(&NoParent)
    .unwrap();
    let key = registry
        .handle_open_by_name_ex(PATH, RegistryAccess::All, true)
        .unwrap();
    handle_write_values(&registry, &key);

    // Wrong type: refused, the caller's buffer untouched.
    let mut units = [0xAAAA_u16; 64];
    assert_eq!(
        registry.value_read_string(&key, VALUENAME_MULTISTRING, &mut units),
        Err(NtStatus::OBJECT_TYPE_MISMATCH.into())
    );
    assert!(units.iter().all(|&u| u == 0xAAAA));
    assert_eq!(
        registry.value_read_dword(&key, VALUENAME_QWORD),
        Err(NtStatus::OBJECT_TYPE_MISMATCH)
    );
    assert_eq!(
        registry.value_read_qword(&key, VALUENAME_DWORD),
        Err(NtStatus::OBJECT_TYPE_MISMATCH)
    );
    // Data that is not a value of its type.
    assert_eq!(
        registry.value_write(&key, "bad", RegistryValueType::Dword, &[1, 2, 3]),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        registry.value_write(&key, "bad", RegistryValueType::String, b"a"),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        registry.value_write_string(&key, "bad", "nul\0inside"),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        registry.value_write_multi_string(&key, "bad", &["a", ""]),
        Err(NtStatus::INVALID_PARAMETER)
    );
    // REG_EXPAND_SZ round trip through the raw Methods.
    let expand: Vec<u8> = utf16("%SystemRoot%\\x")
        .iter()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    registry
        .value_write(&key, "expand", RegistryValueType::ExpandString, &expand)
        .unwrap();
    let mut back = [0u8; 64];
    assert_eq!(
        registry.value_read(&key, "expand", RegistryValueType::ExpandString, &mut back),
        Ok(expand.len())
    );
    assert_eq!(&back[..expand.len()], expand.as_slice());
    assert_eq!(
        registry.value_read(&key, "expand", RegistryValueType::String, &mut back),
        Err(NtStatus::OBJECT_TYPE_MISMATCH.into())
    );
    // The conditional Methods read at most value_size_maximum bytes.
    assert_eq!(
        registry.custom_action(&key, VALUENAME_BINARY, |_| true),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    registry
        .custom_action(&key, VALUENAME_QWORD, |s| s.len() == 8)
        .unwrap();

    // Access: a read-only key refuses writes; deleting a key needs All.
    let read_only = registry
        .handle_open_by_name_ex(PATH, RegistryAccess::Read, false)
        .unwrap();
    assert_eq!(
        registry.value_write_dword(&read_only, "x", 1),
        Err(NtStatus::ACCESS_DENIED)
    );
    assert_eq!(
        registry.value_delete(&read_only, VALUENAME_DWORD),
        Err(NtStatus::ACCESS_DENIED)
    );
    assert_eq!(
        registry
            .handle_open_by_handle(&read_only, "sub", true)
            .err(),
        Some(NtStatus::ACCESS_DENIED),
        "creating a subkey needs write access on the parent"
    );
    drop(registry.handle_open_by_handle(&key, "sub", true).unwrap());
    let read_write = registry
        .handle_open_by_name_ex(PATH, RegistryAccess::ReadWrite, false)
        .unwrap();
    let sub = read_write
        .open_subkey("sub", RegistryAccess::ReadWrite, false)
        .unwrap();
    assert_eq!(registry.handle_delete(sub), Err(NtStatus::ACCESS_DENIED));
    // Opening an existing subkey asks for the subkey's own access, whatever the parent's.
    drop(
        read_only
            .open_subkey("sub", RegistryAccess::All, false)
            .unwrap(),
    );
    // Missing keys and malformed paths.
    assert_eq!(
        registry.handle_open_by_handle(&key, "absent", false).err(),
        Some(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        registry.handle_open_by_name(r"no\leading\separator").err(),
        Some(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        registry.registry_path_delete(r"\Registry\Machine\SOFTWARE\Absent"),
        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
    );
    // A deleted key's handles report it.
    let doomed = registry.handle_open_by_handle(&key, "sub", false).unwrap();
    let other = registry.handle_open_by_handle(&key, "sub", false).unwrap();
    registry.handle_delete(doomed).unwrap();
    assert_eq!(
        registry.value_read_dword(&other, "x"),
        Err(NtStatus::from_raw(kmdf_sim::registry::STATUS_KEY_DELETED))
    );

    // A value name longer than the enumeration's bound ends it with STATUS_BUFFER_OVERFLOW.
    let long = "n".repeat(MAXIMUM_NAME_LENGTH + 1);
    registry.value_write_dword(&key, &long, 1).unwrap();
    assert_eq!(
        registry.values_from_handle_enumerate(&key, |_| true),
        Err(NtStatus::BUFFER_OVERFLOW)
    );

    // After close every Method refuses.
    let handle = (*registry).clone();
    registry.delete();
    assert_eq!(
        handle.value_read_dword(&key, VALUENAME_DWORD),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        handle.handle_open_by_name(REGISTRY_PATH_NAME).err(),
        Some(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(machine.verifier().violations().is_empty());
}

/// Values written in one boot are there in the next when the machines share a store (the
/// registry persists across reboots), under any spelling of their names.
#[test]
fn mods_registry_persists_across_a_reboot() {
    let store = RegistryStore::new();
    for boot in 0..2_u32 {
        let machine = machine();
        machine.use_registry(&store);
        let _on = machine.enter();
        let registry = Registry::with(RegistryConfig::default())
            .create(&NoParent)
            .unwrap();
        let boots = registry
            .path_and_value_read_dword(PATH, "Boots")
            .unwrap_or(0);
        assert_eq!(boots, boot);
        registry
            .path_and_value_write_dword(PATH, "BOOTS", boots + 1)
            .unwrap();
        registry.delete();
    }
    assert_eq!(
        store
            .open_key(REGISTRY_PATH_NAME)
            .unwrap()
            .query_dword("boots"),
        Ok(2)
    );
}

/// A small deterministic generator (xorshift64*), seeded per test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Model {
    Dword(u32),
    Qword(u64),
    String(String),
    MultiString(Vec<String>),
    Binary(Vec<u8>),
}

fn random_text(rng: &mut Rng) -> String {
    const CHARS: [char; 8] = ['a', 'Z', '7', ' ', 'é', 'ß', '€', '😀'];
    (0..=rng.below(12))
        .map(|_| CHARS[usize::try_from(rng.below(8)).unwrap()])
        .collect()
}

/// Seeded: random writes, overwrites (of any type) and deletes of a few names through the typed
/// Methods, checked against a model after every step, by typed reads and by enumeration.
#[test]
fn mods_registry_seeded_round_trip_against_a_model() {
    let machine = machine();
    let _on = machine.enter();
    let registry = Registry::with(RegistryConfig::default())
        .create(&NoParent)
        .unwrap();
    let key = registry
        .handle_open_by_name_ex(PATH, RegistryAccess::All, true)
        .unwrap();
    let mut rng = Rng(0x5EED_0000_DEAD_BEEF);
    let mut model: BTreeMap<String, Model> = BTreeMap::new();
    for step in 0..400 {
        let name = format!("v{}", rng.below(6));
        let value = match rng.below(6) {
            0 => Some(Model::Dword(u32::try_from(rng.next() >> 32).unwrap())),
            1 => Some(Model::Qword(rng.next())),
            2 => Some(Model::String(random_text(&mut rng))),
            3 => Some(Model::MultiString(
                (0..rng.below(4)).map(|_| random_text(&mut rng)).collect(),
            )),
            4 => Some(Model::Binary(
                (0..rng.below(20))
                    .map(|_| rng.next().to_le_bytes()[0])
                    .collect(),
            )),
            _ => None,
        };
        match &value {
            Some(Model::Dword(v)) => registry.value_write_dword(&key, &name, *v).unwrap(),
            Some(Model::Qword(v)) => registry.value_write_qword(&key, &name, *v).unwrap(),
            Some(Model::String(s)) => registry.value_write_string(&key, &name, s).unwrap(),
            Some(Model::MultiString(list)) => {
                let refs: Vec<&str> = list.iter().map(String::as_str).collect();
                registry
                    .value_write_multi_string(&key, &name, &refs)
                    .unwrap();
            }
            Some(Model::Binary(b)) => registry.value_write_binary(&key, &name, b).unwrap(),
            None => {
                let expected = if model.contains_key(&name) {
                    Ok(())
                } else {
                    Err(NtStatus::OBJECT_NAME_NOT_FOUND)
                };
                assert_eq!(registry.value_delete(&key, &name), expected, "step {step}");
            }
        }
        match value {
            Some(value) => model.insert(name, value),
            None => model.remove(&name),
        };
        // Every name reads back as the model says.
        for index in 0..6 {
            let name = format!("v{index}");
            let expected = model.get(&name);
            let mut units = [0u16; 256];
            let mut bytes = [0u8; 64];
            let found = match expected {
                None => {
                    assert_eq!(
                        registry.value_read_dword(&key, &name),
                        Err(NtStatus::OBJECT_NAME_NOT_FOUND)
                    );
                    continue;
                }
                Some(Model::Dword(_)) => {
                    Model::Dword(registry.value_read_dword(&key, &name).unwrap())
                }
                Some(Model::Qword(_)) => {
                    Model::Qword(registry.value_read_qword(&key, &name).unwrap())
                }
                Some(Model::String(_)) => {
                    let read = registry.value_read_string(&key, &name, &mut units).unwrap();
                    Model::String(String::from_utf16(&units[..read / 2 - 1]).unwrap())
                }
                Some(Model::MultiString(_)) => {
                    let read = registry
                        .value_read_multi_string(&key, &name, &mut units)
                        .unwrap();
                    Model::MultiString(
                        multi_sz_iter(&units[..read / 2])
                            .map(|s| String::from_utf16(s).unwrap())
                            .collect(),
                    )
                }
                Some(Model::Binary(_)) => {
                    let read = registry.value_read_binary(&key, &name, &mut bytes).unwrap();
                    Model::Binary(bytes[..read].to_vec())
                }
            };
            assert_eq!(Some(&found), expected, "step {step}, {name}");
        }
        let mut names = Vec::new();
        registry
            .values_from_handle_enumerate(&key, |name| {
                names.push(name.to_owned());
                true
            })
            .unwrap();
        assert_eq!(
            names,
            model.keys().cloned().collect::<Vec<_>>(),
            "step {step}"
        );
    }
    registry.delete();
    assert!(machine.verifier().violations().is_empty());
}

/// Allocation failure: the path-and-value scenario with its 1st, 2nd, … allocation failing; every
/// run ends clean (no pool block, object or violation left) and every failure a caller sees is
/// `STATUS_INSUFFICIENT_RESOURCES` (or the Module's refusal after it failed to be created). The
/// heap is not counted here (the counting allocator needs a binary of its own).
#[test]
fn mods_registry_allocation_failure_sweep() {
    fn acceptable(status: NtStatus) -> bool {
        status == NtStatus::INSUFFICIENT_RESOURCES
    }
    let mut bad = Vec::new();
    let report = alloc_sweep(|fail_at| {
        let machine = machine();
        {
            let _on = machine.enter();
            machine.faults().fail_nth(FaultPoint::Allocation, fail_at);
            let mut check = |what: &str, status: NtStatus| {
                if !acceptable(status) {
                    bad.push(format!("allocation {fail_at}: {what}: {status:?}"));
                }
            };
            match Registry::with(RegistryConfig {
                tree: &REGISTRY_TREE,
                ..RegistryConfig::default()
            })
            .create(&NoParent)
            {
                Err(status) => check("create", status),
                Ok(registry) => {
                    let mut units = [0u16; 64];
                    if let Err(e) =
                        registry.path_and_value_read_string(PATH, VALUENAME_STRING, &mut units)
                    {
                        check("read string", e.status);
                    }
                    if let Err(status) = registry.path_and_value_write_multi_string(
                        PATH,
                        VALUENAME_MULTISTRING,
                        &MULTI_STRING_ORIGINAL,
                    ) {
                        check("write multi-string", status);
                    }
                    if let Err(status) =
                        registry.value_delete_if_needed_path_probe(PATH, VALUENAME_DWORD)
                    {
                        check("delete if needed", status);
                    }
                    match registry.enumerate_keys_from_name(REGISTRY_PATH_NAME_USER, |_, _| true) {
                        Ok(done) => assert!(done),
                        Err(status) => check("enumerate", status),
                    }
                    registry.delete();
                }
            }
        }
        machine
    });
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let report = report.unwrap();
    assert!(report.points > 5, "{report:?}");
}

/// The conditional-delete probe of the sweep, as a client would write it with the Methods.
trait DeleteIfNeededProbe {
    fn value_delete_if_needed_path_probe(
        &self,
        path: Option<&str>,
        name: &str,
    ) -> dmf_core::NtResult<()>;
}

impl DeleteIfNeededProbe for Registry {
    fn value_delete_if_needed_path_probe(
        &self,
        path: Option<&str>,
        name: &str,
    ) -> dmf_core::NtResult<()> {
        let key = self.handle_open_by_name_ex(path, RegistryAccess::ReadWrite, false)?;
        self.value_delete_if_needed(&key, name, |_| true)
    }
}
