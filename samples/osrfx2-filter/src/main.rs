//! The OSR FX2 filter runner: `cargo run -p osrfx2-filter`.
//!
//! Loads the FX2 function-driver model with this DMF upper filter on kmdf-sim's simulated board.
//! It then plays a session: the board arrives and the filter keeps the light bar in sync with
//! the switches, a user reads the switches through the filter, a user who is not an administrator
//! tries to set the bar and is refused, an administrator sets it, the board is unplugged and
//! plugged back, and the drivers unload. It ends with the verifier's verdict.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use osrfx2_filter::session;

fn main() -> ExitCode {
    if let Some(bad) = std::env::args().nth(1) {
        eprintln!("unknown argument {bad}; this runner takes none");
        return ExitCode::from(2);
    }
    println!("DMF for Rust — an upper filter (DefaultTarget + IoctlHandler) on the simulated OSR USB-FX2");
    println!();
    let s = session::Session::scripted();
    for (i, step) in s.steps.iter().enumerate() {
        println!("── {}. {} ──", i + 1, step.title);
        for line in &step.trace {
            println!("  {line}");
        }
        for line in step.picture.lines() {
            println!("    {line}");
        }
        println!();
    }
    match s.verdict() {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            println!("the verifier found problems:\n{problems}");
            ExitCode::FAILURE
        }
    }
}
