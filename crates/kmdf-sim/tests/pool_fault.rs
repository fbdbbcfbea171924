//! Pool tracking and fault injection.

use kmdf_sim::exec::DriverScope;
use kmdf_sim::fault::FaultPoint;
use kmdf_sim::pool::PoolBlock;
use kmdf_sim::{Machine, Status, VerifierMode};

/// A small "driver" routine: three allocations, unwinding on failure. Returns the 1-based index
/// of the allocation that failed, if any.
fn create_context(machine: &Machine) -> Result<Vec<PoolBlock>, usize> {
    let pool = machine.pool();
    let mut blocks = Vec::new();
    for (i, (tag, size)) in [(b"Ctx0", 64), (b"Buf1", 256), (b"Lst2", 16)]
        .into_iter()
        .enumerate()
    {
        match pool.allocate(tag, size) {
            Ok(b) => blocks.push(b),
            Err(status) => {
                assert_eq!(status, Status::INSUFFICIENT_RESOURCES);
                return Err(i + 1); // `blocks` drops here: everything is freed
            }
        }
    }
    Ok(blocks)
}

#[test]
fn fault_sweep_hits_every_failure_path_without_leaks() {
    let machine = Machine::builder().verifier(VerifierMode::Record).build();
    let _d = DriverScope::enter("sweep");
    let mut failed_at = Vec::new();
    let runs = machine.faults().sweep(FaultPoint::Allocation, |n| {
        match create_context(&machine) {
            Err(i) => {
                assert_eq!(i, usize::try_from(n).unwrap());
                failed_at.push(i);
            }
            Ok(blocks) => assert_eq!(blocks.len(), 3),
        }
        assert!(machine.pool().check_leaks("sweep").is_empty());
    });
    assert_eq!(runs, 4);
    assert_eq!(failed_at, [1, 2, 3]);
    assert!(machine.verifier().violations().is_empty());
    assert_eq!(
        machine
            .trace()
            .filter(|e| e.text.starts_with("injected failure"))
            .len(),
        3
    );
}

#[test]
fn fail_nth_object_creation_counts_per_machine() {
    let m1 = Machine::new();
    let m2 = Machine::new();
    m1.faults().fail_nth(FaultPoint::ObjectCreation, 2);
    assert!(!m1.faults().should_fail(FaultPoint::ObjectCreation));
    assert!(!m2.faults().should_fail(FaultPoint::ObjectCreation));
    assert!(m1.faults().should_fail(FaultPoint::ObjectCreation));
    assert!(
        !m1.faults().should_fail(FaultPoint::ObjectCreation),
        "fails once"
    );
    assert_eq!(m1.faults().injected(FaultPoint::ObjectCreation), 1);
    assert_eq!(m1.faults().calls(FaultPoint::ObjectCreation), 3);
}

#[test]
fn pool_blocks_are_zeroed_tagged_and_tracked() {
    let machine = Machine::new();
    let _d = DriverScope::enter("drv");
    let mut b = machine.pool().allocate(*b"Abcd", 8).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    b[3] = 7;
    assert_eq!(b.tag().to_string(), "Abcd");
    let out = machine.pool().outstanding_for_driver("drv");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].size, 8);
    assert_eq!(
        machine.pool().allocate(b"Abcd", 0).unwrap_err(),
        Status::INVALID_PARAMETER
    );
    assert_eq!(
        machine.pool().allocate(b"Huge", usize::MAX).unwrap_err(),
        Status::INSUFFICIENT_RESOURCES
    );
    b.free();
    assert!(machine.pool().outstanding().is_empty());
}

/// `Machine::verdict`: clean machines pass with a summary; a leaked allocation is reported, and
/// freeing it clears the verdict.
#[test]
fn verdict_reports_leaks_and_passes_clean_machines() {
    let machine = Machine::new();
    let _bound = machine.enter();
    assert!(machine
        .verdict()
        .unwrap()
        .starts_with("verifier: no violations"));
    let block = machine.pool().allocate(*b"Leak", 32).unwrap();
    let problems = machine.verdict().unwrap_err();
    assert!(problems.contains("pool leak"), "{problems}");
    block.free();
    assert!(machine.verdict().is_ok());
}
