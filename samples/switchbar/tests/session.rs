//! End-to-end: the SwitchBar sample on the simulated OSR USB-FX2 board. Every step of the main
//! job's scripted session is asserted on the board and the trace; unplug during streaming,
//! replug, and unload with nothing leaked; plus seeded plug/flip churn.
#![allow(clippy::missing_panics_doc)]

use switchbar::session;

use session::Session;
use switchbar::{bar_for_switches, BOARD_WIRING};

fn has(step: &session::Step, text: &str) -> bool {
    step.trace.iter().any(|l| l.contains(text))
}

#[test]
fn scripted_session_every_step() {
    let s = Session::scripted(false);
    let titles: Vec<&str> = s.steps.iter().map(|st| st.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "SwitchBar loads; it waits for the OSR FX2 interface",
            "the OSR FX2 board is plugged in",
            "switch 2 is turned on",
            "switch 8 is turned on",
            "switch 1 is turned off",
            "the board is unplugged mid-stream",
            "switch 5 is turned on",
            "the OSR FX2 board is plugged in",
            "switch 5 is turned off",
            "the drivers unload",
        ]
    );
    let expected_switches = [0x00, 0x05, 0x07, 0x87, 0x86, 0x86, 0x96, 0x96, 0x86, 0x86];
    let expected_bar = [0x00, 0x05, 0x07, 0x87, 0x86, 0x00, 0x00, 0x96, 0x86, 0x86];
    for (i, step) in s.steps.iter().enumerate() {
        assert_eq!(
            step.switches,
            expected_switches[i],
            "step {}: switches",
            i + 1
        );
        assert_eq!(step.bar, expected_bar[i], "step {}: light bar", i + 1);
        if step.connected && i > 0 {
            assert_eq!(step.bar, bar_for_switches(step.switches, BOARD_WIRING));
        }
    }
    // Step 1: SwitchBar's device started, no FX2 yet, nothing streamed.
    assert!(has(&s.steps[0], "[switchbar] EvtDeviceD0Entry"));
    assert!(!has(&s.steps[0], "SwitchBar:"));
    // Step 2: arrival → PostOpen → stream start and the initial mirror.
    assert!(has(&s.steps[1], "[osrusbfx2] EvtDevicePrepareHardware"));
    assert!(has(
        &s.steps[1],
        "SwitchBar: OSR FX2 arrived: start streaming"
    ));
    assert!(has(&s.steps[1], "switches 00000101 -> light bar 00000101"));
    // Steps 3-5: each flip reaches SwitchBar and it mirrors the new switches. Usually once; a
    // second time when the re-sent GET_INTERRUPT_MESSAGE (from a work item, at PASSIVE_LEVEL)
    // lands in the FX2 driver's parked queue while it is still completing that queue for the same
    // interrupt, which the real driver does too — the same byte, so the same mirror.
    for (i, bits) in [(2, "00000111"), (3, "10000111"), (4, "10000110")] {
        let mirrors: Vec<_> = s.steps[i]
            .trace
            .iter()
            .filter(|l| l.contains("-> light bar"))
            .collect();
        assert!(
            (1..=2).contains(&mirrors.len()),
            "step {}: {mirrors:?}",
            i + 1
        );
        for mirror in &mirrors {
            assert!(mirror.contains(&format!("switches {bits}")), "{mirror}");
        }
    }
    // Step 6: the unplug reaches SwitchBar's PreClose while the interrupt request is pending.
    assert!(has(&s.steps[5], "SwitchBar: OSR FX2 leaving"));
    assert!(has(&s.steps[5], "[osrusbfx2] EvtDeviceSelfManagedIoFlush"));
    assert!(!s.steps[5].connected);
    // Step 7: nothing happens while unplugged.
    assert!(s.steps[6].trace.is_empty(), "{:?}", s.steps[6].trace);
    // Step 8: replug resumes with the switch moved while unplugged.
    assert!(has(&s.steps[7], "SwitchBar: OSR FX2 arrived"));
    assert!(has(&s.steps[7], "switches 10010110 -> light bar 10010110"));
    // Step 10: SwitchBar's device leaves first (its Module closes the target), then the FX2.
    assert!(has(&s.steps[9], "[switchbar] EvtDeviceReleaseHardware"));
    assert!(has(&s.steps[9], "SwitchBar: OSR FX2 leaving"));
    assert_eq!(s.verdict().map(|_| ()), Ok(()));
}

/// A small deterministic generator (xorshift) for the churn test.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn seeded_churn_keeps_the_bar_in_sync_and_leaks_nothing() {
    for seed in [1_u64, 7, 42, 2024] {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = Session::start(false);
        s.plug_in();
        for _ in 0..40 {
            match rng.below(10) {
                0 if s.board.is_connected() => s.unplug(),
                1 if !s.board.is_connected() => s.plug_in(),
                _ => s.flip(u8::try_from(rng.below(8)).unwrap() + 1),
            }
            let step = s.steps.last().unwrap();
            if step.connected {
                assert_eq!(
                    step.bar,
                    bar_for_switches(step.switches, BOARD_WIRING),
                    "seed {seed}: {}",
                    step.title
                );
            } else {
                assert_eq!(step.bar, 0, "seed {seed}: an unplugged board is dark");
            }
        }
        s.unload();
        assert_eq!(s.verdict().map(|_| ()), Ok(()), "seed {seed}");
    }
}
