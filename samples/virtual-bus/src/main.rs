//! The VirtualBus main job: `cargo run -p virtual-bus`.
//!
//! Loads the virtual bus driver and the OSR USB-FX2 function driver model on kmdf-sim and plays
//! a scripted session: the bus loads; boards 1 and 2 are plugged in through the bus's control
//! interface (the toaster `enum` tool's `-p`), their FX2 drivers start and an application reads
//! each board's switches; a switch flips on board 2; board 1 is unplugged (`-u`); board 2 is
//! yanked (surprise removal); board 3 is plugged in and ejected (`-e`); board 1 is plugged in
//! again; the bus unloads, its children first. After each step it prints what the drivers and
//! DMF did, what the applications got and which children the bus has, and it ends with the
//! verifier's verdict.
//!
//! Flags: `--real-time` runs on the wall clock instead of the virtual one; `--diagram <file>`
//! also writes the session as a sequence diagram (`.svg`: SVG, `.mmd` or `.md`: Mermaid;
//! docs/trace.md).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use dmf::core::platform::simulator::diagram::is_diagram_file;
use virtual_bus::session::{Session, Step};

fn print_step(n: usize, step: &Step) {
    println!("── {n}. {} ──", step.title);
    for line in &step.trace {
        println!("  {line}");
    }
    for app in &step.apps {
        println!("    » {app}");
    }
    if step.children.is_empty() {
        println!("    the bus has no children");
    } else {
        let children: Vec<String> = step
            .children
            .iter()
            .map(|(serial, state)| format!("board {serial} ({state:?})"))
            .collect();
        println!("    the bus's children: {}", children.join(", "));
    }
    println!();
}

const USAGE: &str = "flags: --real-time, --diagram <file.svg|file.mmd|file.md>";

fn main() -> ExitCode {
    let mut real_time = false;
    let mut diagram: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--real-time" => real_time = true,
            "--diagram" => match args.next().map(PathBuf::from) {
                Some(file) if is_diagram_file(&file) => diagram = Some(file),
                _ => {
                    eprintln!("--diagram needs a .svg, .mmd or .md file name; {USAGE}");
                    return ExitCode::from(2);
                }
            },
            bad => {
                eprintln!("unknown argument {bad}; {USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    println!("DMF for Rust — a virtual bus of simulated OSR USB-FX2 boards (the Pdo Module)");
    println!(
        "({} clock; each child PDO is driven by the OSR FX2 function driver)",
        if real_time { "wall" } else { "virtual" }
    );
    println!();
    let session = Session::scripted(real_time);
    for (i, step) in session.steps.iter().enumerate() {
        print_step(i + 1, step);
    }
    if let Some(file) = &diagram {
        if let Err(error) = session.diagram().write(file) {
            eprintln!("cannot write the diagram: {error}");
            return ExitCode::FAILURE;
        }
        println!("the session's sequence diagram: {}", file.display());
    }
    match session.verdict() {
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
