//! The SwitchBar main job: `cargo run -p switchbar`.
//!
//! Loads the OSR USB-FX2 function driver model and SwitchBar on kmdf-sim's simulated board and
//! plays a scripted session: the device arrives, switches flip and the bar follows, the board is
//! unplugged mid-stream and plugged back, the drivers unload. After each step it prints what the
//! drivers did and a picture of the board, and it ends with the verifier's verdict.
//!
//! Flags: `--real-time` runs on the wall clock instead of the virtual one; `--interactive` lets
//! you flip switches from the keyboard (`1`–`8` flip, `u` unplug, `p` plug in, `q` quit);
//! `--diagram <file>` also writes the session as a sequence diagram (`.svg`: SVG, `.mmd` or
//! `.md`: Mermaid; docs/trace.md).
#![forbid(unsafe_code)]

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use dmf::core::platform::simulator::diagram::is_diagram_file;
use switchbar::session::{Session, Step};

fn print_step(n: usize, step: &Step) {
    println!("── {n}. {} ──", step.title);
    for line in &step.trace {
        println!("  {line}");
    }
    for line in step.picture.lines() {
        println!("    {line}");
    }
    if step.connected {
        let mirrored =
            step.bar == switchbar::bar_for_switches(step.switches, switchbar::BOARD_WIRING);
        println!(
            "    {} the light bar {} the switches",
            if mirrored { "✓" } else { "✗" },
            if mirrored {
                "mirrors"
            } else {
                "does NOT mirror"
            }
        );
    }
    println!();
}

fn interactive(real_time: bool) -> Session {
    let mut s = Session::start(real_time);
    print_step(1, s.steps.last().expect("the start step"));
    println!("Keys: 1-8 flip a switch, p plug in, u unplug, q quit (then Enter).");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        for c in line.trim().chars() {
            match c {
                '1'..='8' => s.flip(c as u8 - b'0'),
                'p' if !s.board.is_connected() => s.plug_in(),
                'u' if s.board.is_connected() => s.unplug(),
                'q' => {
                    s.unload();
                    return s;
                }
                _ => continue,
            }
            let n = s.steps.len();
            print_step(n, s.steps.last().expect("a step"));
        }
    }
    s.unload();
    s
}

const USAGE: &str = "flags: --real-time, --interactive, --diagram <file.svg|file.mmd|file.md>";

fn main() -> ExitCode {
    let mut real_time = false;
    let mut keyboard = false;
    let mut diagram: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--real-time" => real_time = true,
            "--interactive" => keyboard = true,
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
    println!("DMF for Rust — SwitchBar on the simulated OSR USB-FX2 board");
    println!(
        "({} clock; SwitchBar mirrors switch n onto LED n)",
        if real_time { "wall" } else { "virtual" }
    );
    println!();
    let session = if keyboard {
        interactive(real_time)
    } else {
        // Each step is printed as soon as it happened (in real time too).
        Session::scripted_live(real_time, &switchbar::session::install, &mut |s| {
            print_step(s.steps.len(), s.steps.last().expect("a step"));
        })
    };
    if keyboard {
        print_step(session.steps.len(), session.steps.last().expect("a step"));
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
