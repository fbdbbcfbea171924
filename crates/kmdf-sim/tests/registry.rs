//! The simulated registry: persistence across simulated reboots, Windows naming rules, errors.

use kmdf_sim::registry::{
    RegistryError, RegistryStore, RegistryValue, RegistryValueType, STATUS_BUFFER_TOO_SMALL,
    STATUS_INVALID_PARAMETER, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_OBJECT_TYPE_MISMATCH,
};

const INSTANCE: &str = r"USB\VID_0547&PID_1002\5&1";

/// One simulated boot: what a driver does with the registry while the machine runs.
fn boot(store: &RegistryStore, increment: u32) -> u32 {
    let params = store.driver_parameters("osrusbfx2").unwrap();
    let count = match params.query_dword("BootCount") {
        Ok(n) => n,
        Err(RegistryError::NotFound) => 0,
        Err(e) => panic!("unexpected {e}"),
    };
    params.set_value("BootCount", count + increment).unwrap();
    count + increment
}

#[test]
fn registry_values_persist_across_two_boots_of_one_store() {
    let store = RegistryStore::new();
    assert_eq!(boot(&store.clone(), 1), 1);
    // The first machine is gone; a second one boots with the same store.
    let second_machine = store.clone();
    assert!(second_machine.same_store(&store));
    assert_eq!(boot(&second_machine, 1), 2);
    assert_eq!(
        store
            .open_key(&RegistryStore::driver_parameters_path("osrusbfx2"))
            .unwrap()
            .query_dword("BootCount"),
        Ok(2)
    );
}

#[test]
fn registry_snapshot_branches_independent_stores() {
    let store = RegistryStore::new();
    boot(&store, 1);
    let snapshot = store.snapshot();
    let branch_a = RegistryStore::from_snapshot(&snapshot);
    let branch_b = RegistryStore::from_snapshot(&snapshot);
    assert_eq!(boot(&branch_a, 10), 11);
    assert_eq!(boot(&branch_b, 100), 101);
    assert_eq!(
        boot(&store, 1),
        2,
        "the original is untouched by the branches"
    );
    assert_eq!(RegistryStore::from_snapshot(&snapshot).snapshot(), snapshot);
    assert_ne!(store.snapshot(), snapshot);
    let dump = snapshot.to_string();
    assert!(
        dump.contains(
            r"[\Registry\Machine\System\CurrentControlSet\Services\osrusbfx2\Parameters]"
        ),
        "{dump}"
    );
    assert!(
        dump.contains("BootCount = REG_DWORD 0x00000001 (1)"),
        "{dump}"
    );
}

#[test]
fn registry_device_keys_are_found_again_after_a_reboot() {
    let store = RegistryStore::new();
    let hw = store.device_hardware_key(INSTANCE).unwrap();
    assert_eq!(
        hw.path().unwrap(),
        r"\Registry\Machine\System\CurrentControlSet\Enum\USB\VID_0547&PID_1002\5&1\Device Parameters"
    );
    hw.set_value("DeviceSetting", 7u32).unwrap();
    store
        .create_key(&RegistryStore::device_instance_path(INSTANCE))
        .unwrap()
        .set_value("ClassGUID", "{36FC9E60-C465-11CF-8056-444553540000}")
        .unwrap();
    let sw = store.device_software_key(INSTANCE).unwrap();
    assert_eq!(
        sw.path().unwrap(),
        r"\Registry\Machine\System\CurrentControlSet\Control\Class\{36FC9E60-C465-11CF-8056-444553540000}\0000"
    );
    sw.set_value("DriverSetting", "on").unwrap();
    // A second device of the class gets the next index.
    let other = store
        .device_software_key(r"USB\VID_0547&PID_1002\5&2")
        .unwrap();
    assert!(other
        .path()
        .unwrap()
        .ends_with(r"\{00000000-0000-0000-0000-000000000000}\0000"));

    let rebooted = RegistryStore::from_snapshot(&store.snapshot());
    assert_eq!(
        rebooted
            .device_hardware_key(INSTANCE)
            .unwrap()
            .query_dword("devicesetting"),
        Ok(7)
    );
    let sw = rebooted.device_software_key(INSTANCE).unwrap();
    assert!(sw.path().unwrap().ends_with(r"\0000"));
    assert_eq!(sw.query_string("DriverSetting"), Ok("on".to_owned()));
}

#[test]
fn registry_names_are_case_insensitive_and_case_preserving() {
    let store = RegistryStore::new();
    let key = store
        .create_key(r"\Registry\Machine\Software\Vendor\Product")
        .unwrap();
    key.set_value("MixedCase", 1u32).unwrap();
    let again = store
        .open_key(r"\REGISTRY\machine\SOFTWARE\vendor\PRODUCT")
        .unwrap();
    assert_eq!(again.query_dword("mixedcase"), Ok(1));
    again.set_value("MIXEDCASE", 2u32).unwrap();
    assert_eq!(key.query_dword("MixedCase"), Ok(2));
    assert_eq!(
        key.value_names().unwrap(),
        ["MixedCase"],
        "first spelling kept"
    );
    assert_eq!(
        again.path().unwrap(),
        r"\Registry\Machine\Software\Vendor\Product"
    );
    // Creating with another spelling opens the same key.
    store
        .create_key(r"\registry\MACHINE\software\VENDOR\product")
        .unwrap()
        .set_value("Other", "x")
        .unwrap();
    assert_eq!(key.values().unwrap().len(), 2);
    assert_eq!(
        store
            .open_key(r"\Registry\Machine\Software")
            .unwrap()
            .subkeys()
            .unwrap(),
        ["Vendor"]
    );
}

#[test]
fn registry_type_mismatch_is_reported() {
    let store = RegistryStore::new();
    let key = store.driver_parameters("drv").unwrap();
    key.set_value("Name", "text").unwrap();
    let err = key.query_dword("Name").unwrap_err();
    assert_eq!(
        err,
        RegistryError::TypeMismatch {
            expected: RegistryValueType::Dword,
            found: RegistryValueType::Sz
        }
    );
    assert_eq!(err.ntstatus(), STATUS_OBJECT_TYPE_MISMATCH);
    assert_eq!(
        STATUS_OBJECT_TYPE_MISMATCH.to_ne_bytes(),
        0xC000_0024_u32.to_ne_bytes()
    );
    assert!(matches!(
        key.query_qword("Name"),
        Err(RegistryError::TypeMismatch { .. })
    ));
    assert!(matches!(
        key.query_binary("Name"),
        Err(RegistryError::TypeMismatch { .. })
    ));
    assert!(matches!(
        key.query_multi_string("Name"),
        Err(RegistryError::TypeMismatch { .. })
    ));
    // Setting replaces the type.
    key.set_value("Name", 5u64).unwrap();
    assert_eq!(key.query_qword("Name"), Ok(5));
}

#[test]
fn registry_enumeration_is_sorted() {
    let store = RegistryStore::new();
    let key = store
        .create_key(r"\Registry\Machine\Software\Order")
        .unwrap();
    for name in ["zeta", "Alpha", "beta", "Gamma", ""] {
        key.set_value(name, name).unwrap();
        if !name.is_empty() {
            key.create_subkey(name).unwrap();
        }
    }
    assert_eq!(
        key.value_names().unwrap(),
        ["", "Alpha", "beta", "Gamma", "zeta"]
    );
    assert_eq!(key.subkeys().unwrap(), ["Alpha", "beta", "Gamma", "zeta"]);
    let values = key.values().unwrap();
    assert_eq!(
        values[1],
        ("Alpha".to_owned(), RegistryValue::Sz("Alpha".to_owned()))
    );
}

#[test]
fn registry_buffer_too_small_reports_the_size() {
    let store = RegistryStore::new();
    let key = store.driver_parameters("drv").unwrap();
    key.set_value("Text", "abc").unwrap();
    let err = key.query_value_into("Text", &mut []).unwrap_err();
    assert_eq!(err, RegistryError::BufferTooSmall { required: 8 });
    assert_eq!(err.ntstatus(), STATUS_BUFFER_TOO_SMALL);
    let mut short = [0u8; 7];
    assert_eq!(
        key.query_value_into("Text", &mut short),
        Err(RegistryError::BufferTooSmall { required: 8 })
    );
    let mut buf = [0xFFu8; 10];
    assert_eq!(
        key.query_value_into("Text", &mut buf),
        Ok((RegistryValueType::Sz, 8))
    );
    assert_eq!(&buf[..8], &[b'a', 0, b'b', 0, b'c', 0, 0, 0]);
    key.set_value("Dword", 0x0102_0304u32).unwrap();
    let mut four = [0u8; 4];
    assert_eq!(
        key.query_value_into("Dword", &mut four),
        Ok((RegistryValueType::Dword, 4))
    );
    assert_eq!(four, [4, 3, 2, 1]);
}

#[test]
fn registry_missing_keys_and_values_are_not_found() {
    let store = RegistryStore::new();
    let err = store.open_key(r"\Registry\Machine\Nothing").unwrap_err();
    assert_eq!(err, RegistryError::NotFound);
    assert_eq!(err.ntstatus(), STATUS_OBJECT_NAME_NOT_FOUND);
    assert_eq!(
        STATUS_OBJECT_NAME_NOT_FOUND.to_ne_bytes(),
        0xC000_0034_u32.to_ne_bytes()
    );
    let key = store.driver_parameters("drv").unwrap();
    assert_eq!(key.query_value("Absent"), Err(RegistryError::NotFound));
    assert_eq!(key.delete_value("Absent"), Err(RegistryError::NotFound));
    assert_eq!(
        key.open_subkey("Absent").unwrap_err(),
        RegistryError::NotFound
    );
}

#[test]
fn registry_delete_values_and_keys() {
    let store = RegistryStore::new();
    let key = store
        .create_key(r"\Registry\Machine\Software\Gone")
        .unwrap();
    key.set_value("V", vec![1u8, 2, 3]).unwrap();
    key.delete_value("v").unwrap();
    assert_eq!(key.query_value("V"), Err(RegistryError::NotFound));
    let child = key.create_subkey(r"Child\Grandchild").unwrap();
    assert_eq!(
        store.delete_key(r"\Registry\Machine\Software\Gone"),
        Err(RegistryError::HasSubkeys)
    );
    store
        .delete_tree(r"\Registry\Machine\Software\GONE")
        .unwrap();
    assert!(!store.key_exists(r"\Registry\Machine\Software\Gone"));
    assert_eq!(child.query_value("x"), Err(RegistryError::KeyDeleted));
    // Re-creating the key does not revive old handles.
    let fresh = store
        .create_key(r"\Registry\Machine\Software\Gone")
        .unwrap();
    assert_eq!(key.value_names(), Err(RegistryError::KeyDeleted));
    fresh.delete().unwrap();
    assert_eq!(fresh.path(), Err(RegistryError::KeyDeleted));
    assert_eq!(
        store.delete_key(r"\Registry\Machine\Software\Gone"),
        Err(RegistryError::NotFound)
    );
}

#[test]
fn registry_rejects_malformed_input() {
    let store = RegistryStore::new();
    for bad in [
        "",
        "Registry\\Machine",
        r"\",
        r"\Registry\\Machine",
        r"\Registry\Machine\",
    ] {
        let err = store.create_key(bad).unwrap_err();
        assert_eq!(err, RegistryError::InvalidParameter, "{bad:?}");
        assert_eq!(err.ntstatus(), STATUS_INVALID_PARAMETER);
    }
    let long = format!(r"\Registry\{}", "k".repeat(256));
    assert_eq!(
        store.create_key(&long).unwrap_err(),
        RegistryError::InvalidParameter
    );
    assert_eq!(
        store.driver_parameters(r"a\b").unwrap_err(),
        RegistryError::InvalidParameter
    );
    let key = store.driver_parameters("drv").unwrap();
    assert_eq!(
        key.set_value("S", "a\0b"),
        Err(RegistryError::InvalidParameter)
    );
    assert_eq!(
        key.set_value("M", vec![String::new()]),
        Err(RegistryError::InvalidParameter)
    );
    assert_eq!(
        key.set_value("bad\0name", 1u32),
        Err(RegistryError::InvalidParameter)
    );
    key.set_value("Multi", vec!["a".to_owned(), "b".to_owned()])
        .unwrap();
    assert_eq!(
        key.query_multi_string("Multi"),
        Ok(vec!["a".to_owned(), "b".to_owned()])
    );
}

#[test]
fn registry_is_shared_between_threads() {
    let store = RegistryStore::new();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let key = store.driver_parameters("shared").unwrap();
                for i in 0..25u32 {
                    key.set_value(&format!("T{t}V{i:02}"), i).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        store
            .driver_parameters("shared")
            .unwrap()
            .values()
            .unwrap()
            .len(),
        100
    );
}
