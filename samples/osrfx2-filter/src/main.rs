//! The OSR FX2 filter runner: `cargo run -p osrfx2-filter`.
//!
//! Loads the FX2 function-driver model with this DMF upper filter on kmdf-sim's simulated board.
//! It then plays a session: the board arrives and the filter keeps the light bar in sync with
//! the switches, a user reads the switches through the filter, a user who is not an administrator
//! tries to set the bar and is refused, an administrator sets it, the board is unplugged and
//! plugged back, and the drivers unload. It ends with the verifier's verdict.
//!
//! Flag: `--diagram <file>` also writes the session as a sequence diagram (`.svg`: SVG, `.mmd` or
//! `.md`: Mermaid; docs/trace.md).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dmf::core::platform::simulator::diagram::is_diagram_file;
use osrfx2_filter::session;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let diagram = match args.as_slice() {
        [] => None,
        [flag, file] if flag == "--diagram" && is_diagram_file(Path::new(file)) => {
            Some(PathBuf::from(file))
        }
        _ => {
            eprintln!(
                "unknown arguments {args:?}; the one flag is --diagram <file.svg|file.mmd|file.md>"
            );
            return ExitCode::from(2);
        }
    };
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
    if let Some(file) = &diagram {
        if let Err(error) = s.diagram().write(file) {
            eprintln!("cannot write the diagram: {error}");
            return ExitCode::FAILURE;
        }
        println!("the session's sequence diagram: {}", file.display());
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
