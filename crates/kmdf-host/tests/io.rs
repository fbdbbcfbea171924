//! The images' I/O on the host: SwitchBar's DeviceInterfaceTarget and continuous reader on the
//! FX2 interrupt IOCTL writing the light bar, and the upper filter's DefaultTarget, IoctlHandler
//! and pass-through — each image plays its sample's scripted session in a child process (a stop
//! off the entry-point thread ends the process), which prints what the parent asserts.
//!
//! Each test prints `SKIPPED: <reason>` when its image is absent (`bash .ci/kmdf-check` links
//! them).
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::PathBuf;
use std::process::Command;

use kmdf_host::host::Driver;

fn image(which: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    match which {
        "switchbar" => root.join("target/kmdf-check/switchbar.sys"),
        _ => root.join("target/kmdf-check/osrfx2_filter.sys"),
    }
}

/// The session of `KMDF_HOST_IO_CHILD` with its image, as lines: `STEP <title>|<switches>|<bar>`,
/// the filter's `APP <application line>`, and `VERDICT <Ok|Err>: <text>`.
#[test]
#[ignore = "run by the tests below in a child process"]
fn io_child() {
    let Ok(which) = std::env::var("KMDF_HOST_IO_CHILD") else {
        return;
    };
    let filter = which != "switchbar";
    let service = if filter {
        osrfx2_filter::session::FILTER
    } else {
        "switchbar"
    };
    let driver = Driver::load(&image(&which), service).expect("the image loads");
    let install = |m: &kmdf_sim::Machine| driver.install(m);
    let (steps, verdict) = if filter {
        let s = osrfx2_filter::session::Session::scripted_with(&install);
        let steps: Vec<_> = s
            .steps
            .iter()
            .map(|st| (st.title.clone(), st.switches, st.bar, st.trace.clone()))
            .collect();
        (steps, s.verdict())
    } else {
        let s = switchbar::session::Session::scripted_with(false, &install);
        let steps: Vec<_> = s
            .steps
            .iter()
            .map(|st| (st.title.clone(), st.switches, st.bar, st.trace.clone()))
            .collect();
        (steps, s.verdict())
    };
    for (title, switches, bar, trace) in steps {
        println!("STEP {title}|{switches:#04x}|{bar:#04x}");
        for line in trace.iter().filter(|l| l.contains("application:")) {
            println!("APP {}", line.trim());
        }
    }
    match verdict {
        Ok(text) => println!("VERDICT Ok: {text}"),
        Err(text) => println!("VERDICT Err: {text}"),
    }
    // The image stays mapped until the process ends.
    std::mem::forget(driver);
}

/// Runs the session of `which` in a child process: its stdout, or `None` (skipped).
fn session(which: &str) -> Option<String> {
    if !image(which).exists() {
        println!(
            "SKIPPED: {} is absent (bash .ci/kmdf-check links it)",
            image(which).display()
        );
        return None;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "io_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KMDF_HOST_IO_CHILD", which)
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the {which} session ended with {:?}:\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

/// The steps: (title, switches, bar).
fn steps(out: &str) -> Vec<(String, u8, u8)> {
    out.lines()
        .filter_map(|l| l.find("STEP ").map(|i| &l[i + 5..]))
        .map(|l| {
            let mut parts = l.rsplitn(3, '|');
            let bar = parts.next().unwrap();
            let switches = parts.next().unwrap();
            let title = parts.next().unwrap();
            let byte = |s: &str| u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            (title.to_owned(), byte(switches), byte(bar))
        })
        .collect()
}

#[test]
fn switchbar_opens_the_fx2_interface_and_its_light_bar_follows_the_switches() {
    let Some(out) = session("switchbar") else {
        return;
    };
    let steps = steps(&out);
    assert_eq!(steps.len(), 10, "{out}");
    // Before the board: nothing lit.
    assert_eq!(steps[0].2, 0);
    // Plugged in (switches 1 and 3), then flips 2, 8 and 1: the bar mirrors the switches, which
    // the continuous reader gets through the interrupt IOCTL and writes back with the
    // set-bar-graph IOCTL, both through the target opened by the interface's symbolic link.
    for step in &steps[1..5] {
        assert_eq!(step.2, step.1, "{}: {out}", step.0);
    }
    assert_eq!(steps[4].1, 0x86);
    // Unplugged (the board's bar goes dark), a flip meanwhile, then plugged in again: the
    // target is reopened on the new interface and the bar catches up.
    assert_eq!(steps[5].2, 0);
    assert_eq!(steps[6].2, 0);
    assert_eq!(steps[7].2, steps[7].1);
    assert_eq!(steps[8].2, steps[8].1);
    assert!(out.contains("VERDICT Ok"), "{out}");
}

#[test]
fn the_filter_passes_reads_down_and_lets_only_administrators_set_the_light_bar() {
    let Some(out) = session("osrfx2filter") else {
        return;
    };
    let apps: Vec<&str> = out
        .lines()
        .filter_map(|l| l.find("APP ").map(|i| &l[i + 4..]))
        .collect();
    assert_eq!(
        apps,
        [
            "user application: IOCTL_OSRUSBFX2_READ_SWITCHES [] -> success [0A]",
            "user application: IOCTL_OSRUSBFX2_GET_BAR_GRAPH_DISPLAY [] -> success [0A]",
            "user application: IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY [FF] -> STATUS_ACCESS_DENIED",
            "admin application: IOCTL_OSRUSBFX2_SET_BAR_GRAPH_DISPLAY [AA] -> success []",
        ],
        "{out}"
    );
    assert!(out.contains("VERDICT Ok"), "{out}");
}
