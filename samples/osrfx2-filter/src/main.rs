//! The OSR FX2 filter simulator runner: `cargo run -p osrfx2-filter`.
//!
//! It will load the FX2 driver model with this upper filter on kmdf-sim's simulated board (the
//! samples issue). Until the sample exists it says so instead of pretending.
#![forbid(unsafe_code)]

fn main() {
    println!("DMF for Rust — the OSR FX2 upper filter on the simulated board");
    println!();
    println!("The filter sample is not written yet: it arrives with the samples issue.");
    println!("Run `cargo test --workspace` to exercise what exists today.");
}
