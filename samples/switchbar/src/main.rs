//! The SwitchBar simulator runner: `cargo run -p switchbar`.
//!
//! It will load the OSR FX2 driver model and SwitchBar on kmdf-sim's simulated board and play a
//! scripted session (the samples issue). Until the sample exists it says so instead of pretending.
#![forbid(unsafe_code)]

fn main() {
    println!("DMF for Rust — SwitchBar on the simulated OSR USB-FX2 board");
    println!();
    println!("The SwitchBar sample driver is not written yet: it arrives with the samples issue,");
    println!("on top of kmdf-sim's FX2 board, the Module framework and the Module library.");
    println!("Run `cargo test --workspace` to exercise what exists today.");
}
