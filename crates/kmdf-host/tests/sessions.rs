//! The samples' end-to-end checks, run against the linked driver images: the same functions the
//! samples' own tests run on their sim builds (`switchbar::session::check_*`,
//! `osrfx2_filter::session::check_*`, `virtual_bus::session::check_*`), with the `.sys` image installed as the driver package
//! instead — ours, and Microsoft's C DMF samples (`SwitchBar1.sys`, `SwitchBar4.sys`, from
//! `tools/cdmf-oracle/build.sh`) through the checks that do not depend on our notes. Each check runs in a child process (this test binary, re-run on one test), because a
//! host stop off the entry-point thread ends the process. Skipped when the images are absent
//! (`bash .ci/kmdf-check` links them; `KMDF_HOST_IMAGES` names another folder).
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::PathBuf;
use std::process::Command;

use kmdf_host::host::Driver;
use kmdf_sim::Machine;

/// A sample's check: runs its scenario with the driver package installed by the argument.
type Check = fn(&dyn Fn(&Machine));

/// Set in the child: which check to run.
const CHILD: &str = "KMDF_HOST_SESSION_CHILD";

/// Where the images are: `kmdf-check` (ours; `KMDF_HOST_IMAGES` names another folder) or
/// `cdmf-oracle` (Microsoft's C DMF samples; `CDMF_ORACLE_IMAGES`).
fn image(folder: &str, file: &str) -> Option<PathBuf> {
    let variable = if folder == "kmdf-check" {
        "KMDF_HOST_IMAGES"
    } else {
        "CDMF_ORACLE_IMAGES"
    };
    let folder = std::env::var_os(variable).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target")
                .join(folder)
        },
        PathBuf::from,
    );
    let path = folder.join(file);
    if path.is_file() {
        Some(path)
    } else {
        println!(
            "SKIPPED: {} is missing (run `bash .ci/kmdf-check` to link the driver images)",
            path.display()
        );
        None
    }
}

/// Runs `check` with `file` installed as `service`, in a child process; panics with the child's
/// output when it fails.
fn in_child(test: &str, file: &str, service: &'static str, check: Check) {
    let folder = if file.starts_with("SwitchBar") {
        "cdmf-oracle"
    } else {
        "kmdf-check"
    };
    let Some(path) = image(folder, file) else {
        return;
    };
    if std::env::var(CHILD).as_deref() == Ok(test) {
        let driver = Driver::load(&path, service).expect("the image loads");
        check(&|machine: &Machine| driver.install(machine));
        // The image stays mapped until the process ends.
        std::mem::forget(driver);
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        return; // a child runs only its own check
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("the child runs");
    assert!(
        out.status.success(),
        "{test} on {file}: exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn switchbar_image_scripted_session() {
    in_child(
        "switchbar_image_scripted_session",
        "switchbar.sys",
        "switchbar",
        switchbar::session::check_scripted_session,
    );
}

#[test]
fn switchbar_image_seeded_churn() {
    in_child(
        "switchbar_image_seeded_churn",
        "switchbar.sys",
        "switchbar",
        switchbar::session::check_seeded_churn,
    );
}

#[test]
fn filter_image_scripted_session() {
    in_child(
        "filter_image_scripted_session",
        "osrfx2_filter.sys",
        osrfx2_filter::session::FILTER,
        osrfx2_filter::session::check_scripted_session,
    );
}

#[test]
fn filter_image_passes_every_other_ioctl_down() {
    in_child(
        "filter_image_passes_every_other_ioctl_down",
        "osrfx2_filter.sys",
        osrfx2_filter::session::FILTER,
        osrfx2_filter::session::check_pass_through,
    );
}

#[test]
fn filter_image_refuses_non_administrators() {
    in_child(
        "filter_image_refuses_non_administrators",
        "osrfx2_filter.sys",
        osrfx2_filter::session::FILTER,
        osrfx2_filter::session::check_non_administrator_refused,
    );
}

/// Microsoft's C DMF SwitchBar (SwitchBar1) mirrors the switches on the light bar at every step
/// of the scripted session, with a clean verdict (its notes go to WPP, so only the board, the
/// callbacks and the verdict are checked). Its mirror is the physical kit's (rotated by 5 and
/// inverted), ours the simulated board's (direct).
#[test]
fn c_dmf_switchbar1_image_board_session() {
    in_child(
        "c_dmf_switchbar1_image_board_session",
        "SwitchBar1.sys",
        "switchbar",
        |install| {
            switchbar::session::check_board_session(install, switchbar::Wiring::OsrKit);
        },
    );
}

/// Our filter through the filter session's board steps with an administrator's application.
#[test]
fn filter_image_board_session() {
    in_child(
        "filter_image_board_session",
        "osrfx2_filter.sys",
        osrfx2_filter::session::FILTER,
        |install| {
            osrfx2_filter::session::check_board_session(install, &osrfx2_filter::session::PORT);
        },
    );
}

/// Microsoft's C DMF SwitchBar4 through the filter session's board steps with an
/// administrator's application: it mirrors the switches (the kit's mirror), completes an
/// administrator's SET_BAR_GRAPH_DISPLAY itself, and refuses a non-administrator's open with
/// STATUS_ACCESS_DENIED (`AccessModeFilterAdministratorOnly`), with a clean verdict.
#[test]
fn c_dmf_switchbar4_image_board_session() {
    in_child(
        "c_dmf_switchbar4_image_board_session",
        "SwitchBar4.sys",
        osrfx2_filter::session::FILTER,
        |install| {
            osrfx2_filter::session::check_board_session(
                install,
                &osrfx2_filter::session::C_DMF_SWITCHBAR4,
            );
        },
    );
}

/// The VirtualBus image (a bus driver on the Pdo Module) through its scripted session: boards
/// plugged in as child PDOs, each enumerated with the FX2 function driver on top, switches read
/// through the children, unplug, eject and surprise removal, with a clean verdict.
#[test]
fn virtual_bus_image_scripted_session() {
    in_child(
        "virtual_bus_image_scripted_session",
        "virtual_bus.sys",
        virtual_bus::session::VIRTUALBUS_DRIVER,
        |install| {
            virtual_bus::session::check_scripted_session(install);
        },
    );
}

/// The VirtualBus image refuses bad control requests as its sim build does.
#[test]
fn virtual_bus_image_control_refusals() {
    in_child(
        "virtual_bus_image_control_refusals",
        "virtual_bus.sys",
        virtual_bus::session::VIRTUALBUS_DRIVER,
        virtual_bus::session::check_control_refusals,
    );
}

/// The VirtualBus image through seeded plug/unplug/yank/eject/flip churn over four boards.
#[test]
fn virtual_bus_image_seeded_churn() {
    in_child(
        "virtual_bus_image_seeded_churn",
        "virtual_bus.sys",
        virtual_bus::session::VIRTUALBUS_DRIVER,
        virtual_bus::session::check_seeded_churn,
    );
}
