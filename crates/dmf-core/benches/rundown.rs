//! Rundown protection benchmark (being written; see issue 2).
fn main() {}
