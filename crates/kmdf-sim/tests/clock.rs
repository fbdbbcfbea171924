//! Virtual-clock tests: minutes of simulated time in milliseconds of real time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmdf_sim::exec::{
    current_irql, DriverScope, Event, EventKind, ExecutionLevel, Irql, SystemThread, Timer,
    TimerConfig, WaitStatus,
};
use kmdf_sim::{ClockMode, Machine};

fn now_ms() -> u64 {
    let m = Machine::current().expect("callback threads are bound to their machine");
    u64::try_from(m.now().as_millis()).unwrap()
}

#[test]
fn periodic_timer_runs_ten_simulated_minutes() {
    let machine = Machine::new();
    let ticks = Arc::new(AtomicU32::new(0));
    let t = Arc::clone(&ticks);
    let timer = Timer::new(&machine, TimerConfig::periodic("tick", 100), move |_| {
        assert_eq!(current_irql(), Irql::Dispatch);
        t.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert!(!timer.start(Duration::from_millis(100)));
    let real = Instant::now();
    machine.advance(Duration::from_mins(10));
    assert_eq!(ticks.load(Ordering::SeqCst), 6000);
    assert_eq!(machine.now(), Duration::from_mins(10));
    assert!(real.elapsed() < Duration::from_secs(30));
    assert!(timer.stop(true));
    machine.advance(Duration::from_secs(10));
    assert_eq!(ticks.load(Ordering::SeqCst), 6000, "no tick after stop");
}

#[test]
fn system_thread_sleeps_five_minutes_in_auto_advance() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let result = Arc::new(Mutex::new(None));
    let r = Arc::clone(&result);
    let never = Event::new(&machine, EventKind::Notification, false);
    let thread = SystemThread::spawn(&machine, "sleeper", move || {
        let status = never.wait(Some(Duration::from_mins(5)));
        *r.lock().unwrap() = Some((status, now_ms()));
    })
    .unwrap();
    let real = Instant::now();
    assert_eq!(thread.wait(None), WaitStatus::Signaled);
    assert!(thread.is_terminated());
    assert_eq!(
        *result.lock().unwrap(),
        Some((WaitStatus::TimedOut, 300_000))
    );
    assert_eq!(machine.now(), Duration::from_mins(5));
    assert!(real.elapsed() < Duration::from_secs(5));
}

#[test]
fn auto_advance_test_thread_own_wait() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let ev = Event::new(&machine, EventKind::Synchronization, false);
    assert_eq!(ev.wait(Some(Duration::from_mins(10))), WaitStatus::TimedOut);
    assert_eq!(machine.now(), Duration::from_mins(10));
}

#[test]
fn manual_advance_fires_timers_in_deadline_order() {
    let machine = Machine::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut timers = Vec::new();
    let _driver = DriverScope::enter("order");
    for (name, due) in [("c", 30), ("a", 10), ("b", 20), ("a2", 10)] {
        let log = Arc::clone(&log);
        let t = Timer::new(&machine, TimerConfig::one_shot(name), move |t| {
            log.lock().unwrap().push((t.name().to_owned(), now_ms()));
        })
        .unwrap();
        t.start(Duration::from_millis(due));
        timers.push(t);
    }
    machine.advance(Duration::from_millis(25));
    assert_eq!(machine.now(), Duration::from_millis(25));
    assert_eq!(
        *log.lock().unwrap(),
        vec![("a".into(), 10), ("a2".into(), 10), ("b".into(), 20)]
    );
    machine.advance(Duration::from_millis(10));
    assert_eq!(log.lock().unwrap().last(), Some(&("c".into(), 30)));
    assert_eq!(machine.now(), Duration::from_millis(35));
    // The trace shows the same order, attributed to the creating driver.
    assert_eq!(
        machine.trace().callbacks_for("order"),
        vec!["EvtTimerFunc"; 4]
    );
    let objects: Vec<String> = machine
        .trace()
        .filter(|e| e.driver.as_deref() == Some("order"))
        .into_iter()
        .map(|e| e.object)
        .collect();
    assert_eq!(objects, ["a", "a2", "b", "c"]);
}

#[test]
fn wait_is_satisfied_by_timer_before_timeout_auto_advance() {
    let machine = Machine::builder().clock(ClockMode::AutoAdvance).build();
    let _bound = machine.enter();
    let ev = Event::new(&machine, EventKind::Notification, false);
    let e = ev.clone();
    let timer = Timer::new(&machine, TimerConfig::one_shot("setter"), move |_| {
        e.set();
    })
    .unwrap();
    timer.start(Duration::from_millis(200));
    assert_eq!(ev.wait(Some(Duration::from_secs(1))), WaitStatus::Signaled);
    assert_eq!(machine.now(), Duration::from_millis(200));
}

#[test]
fn wait_is_satisfied_by_timer_before_timeout_manual() {
    let machine = Machine::new();
    let ev = Event::new(&machine, EventKind::Notification, false);
    let seen = Arc::new(Mutex::new(None));
    let (e, s) = (ev.clone(), Arc::clone(&seen));
    let waiter = SystemThread::spawn(&machine, "waiter", move || {
        let status = e.wait(Some(Duration::from_secs(1)));
        *s.lock().unwrap() = Some((status, now_ms()));
    })
    .unwrap();
    let e = ev.clone();
    let timer = Timer::new(&machine, TimerConfig::one_shot("setter"), move |_| {
        e.set();
    })
    .unwrap();
    timer.start(Duration::from_millis(300));
    machine.advance(Duration::from_secs(2));
    assert!(waiter.is_terminated());
    assert_eq!(*seen.lock().unwrap(), Some((WaitStatus::Signaled, 300)));
}

#[test]
fn timed_out_wait_wakes_at_its_deadline_in_manual_mode() {
    let machine = Machine::new();
    let ev = Event::new(&machine, EventKind::Notification, false);
    let seen = Arc::new(Mutex::new(None));
    let s = Arc::clone(&seen);
    let _t = SystemThread::spawn(&machine, "waiter", move || {
        let status = ev.wait(Some(Duration::from_millis(750)));
        *s.lock().unwrap() = Some((status, now_ms()));
    })
    .unwrap();
    machine.advance(Duration::from_millis(700));
    assert_eq!(*seen.lock().unwrap(), None);
    machine.advance(Duration::from_millis(100));
    assert_eq!(*seen.lock().unwrap(), Some((WaitStatus::TimedOut, 750)));
}

#[test]
fn one_shot_timer_restarts_itself_and_start_resets_due_time() {
    let machine = Machine::new();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f = Arc::clone(&fired);
    let timer = Timer::new(&machine, TimerConfig::one_shot("again"), move |t| {
        let mut f = f.lock().unwrap();
        f.push(now_ms());
        if f.len() < 3 {
            assert!(
                !t.start(Duration::from_millis(10)),
                "a fired one-shot is not queued"
            );
        }
    })
    .unwrap();
    assert!(!timer.start(Duration::from_millis(50)));
    machine.advance(Duration::from_millis(20));
    assert!(
        timer.start(Duration::from_millis(10)),
        "was queued: due time reset"
    );
    machine.advance(Duration::from_millis(100));
    assert_eq!(*fired.lock().unwrap(), vec![30, 40, 50]);
}

#[test]
fn passive_timer_runs_on_a_worker_and_rejects_a_period() {
    let machine = Machine::new();
    assert_eq!(
        Timer::new(
            &machine,
            TimerConfig::periodic("p", 10).execution_level(ExecutionLevel::Passive),
            |_| {}
        )
        .unwrap_err(),
        kmdf_sim::Status::INVALID_PARAMETER
    );
    let level = Arc::new(Mutex::new(None));
    let l = Arc::clone(&level);
    let timer = Timer::new(
        &machine,
        TimerConfig::one_shot("p").execution_level(ExecutionLevel::Passive),
        move |_| *l.lock().unwrap() = Some((current_irql(), kmdf_sim::exec::thread_name())),
    )
    .unwrap();
    timer.start(Duration::from_millis(5));
    machine.advance(Duration::from_millis(5));
    let (irql, thread) = level.lock().unwrap().clone().unwrap();
    assert_eq!(irql, Irql::Passive);
    assert!(thread.starts_with("worker-"), "{thread}");
}

#[test]
fn machines_run_in_parallel_with_independent_clocks() {
    let handles: Vec<_> = (1..=4u32)
        .map(|i| {
            std::thread::spawn(move || {
                let machine = Machine::builder().name(&format!("m{i}")).build();
                let count = Arc::new(AtomicU32::new(0));
                let c = Arc::clone(&count);
                let timer = Timer::new(&machine, TimerConfig::periodic("t", i), move |_| {
                    c.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
                timer.start(Duration::from_millis(u64::from(i)));
                machine.advance(Duration::from_millis(120));
                (count.load(Ordering::SeqCst), machine.now())
            })
        })
        .collect();
    for (i, h) in (1..=4u32).zip(handles) {
        let (count, now) = h.join().unwrap();
        assert_eq!(count, 120 / i);
        assert_eq!(now, Duration::from_millis(120));
    }
}

#[test]
fn real_time_mode_uses_the_wall_clock() {
    let machine = Machine::builder().clock(ClockMode::RealTime).build();
    let _bound = machine.enter();
    let ev = Event::new(&machine, EventKind::Notification, false);
    let e = ev.clone();
    let timer = Timer::new(&machine, TimerConfig::one_shot("rt"), move |_| {
        e.set();
    })
    .unwrap();
    let real = Instant::now();
    timer.start(Duration::from_millis(10));
    assert_eq!(ev.wait(Some(Duration::from_secs(1))), WaitStatus::Signaled);
    let elapsed = real.elapsed();
    assert!(elapsed >= Duration::from_millis(10), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    assert!(machine.now() >= Duration::from_millis(10));
}
