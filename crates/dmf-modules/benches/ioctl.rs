//! IoctlHandler dispatch vs a hand-written `match`, in the same run.
//!
//! - `ioctl_table_32`: what the Module does before touching a request — find the code in a
//!   32-entry table and check the buffer sizes — against the `match` a driver writes by hand
//!   (code → minimums → size check). A batch of 64 requests (¾ known codes, some too small, ¼
//!   unknown) per iteration; the Module's dense `CTL_CODE` table (direct index) and a sparse
//!   one (hash index).
//! - `ioctl_request_32`: one IOCTL end to end on kmdf-sim — an application's `DeviceIoControl`
//!   through the I/O manager, DMF's dispatch and the IoctlHandler (with its buffer copies) to the
//!   handler and back — against a driver whose default-queue callback is the hand-written
//!   `match`. The simulator's request plumbing dominates this one.
#![allow(missing_docs, clippy::cast_possible_truncation)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dmf_core::device::container_driver_config;
use dmf_core::platform::contract::device::{Guid, PlatformDevice, PlatformDeviceInit};
use dmf_core::platform::contract::io::{PlatformRequest, QueueDispatch};
use dmf_core::platform::{simulator, Device, DriverConfig, QueueConfig, Request};
use dmf_core::NtStatus;
use dmf_modules::ioctl_handler::{
    IoctlEntry, IoctlHandler, IoctlHandlerConfig, IoctlResult, IoctlTable,
};
use kmdf_sim::io::{Access, AppConfig, Application};
use kmdf_sim::pnp::StackSpec;
use kmdf_sim::Machine;

/// `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800 + i, METHOD_BUFFERED, FILE_ANY_ACCESS)`.
const fn ctl(i: u32) -> u32 {
    (0x22 << 16) | ((0x800 + i) << 2)
}

/// A sparse code (not `CTL_CODE` neighbours): the table falls back to its hash index.
const fn sparse(i: u32) -> u32 {
    ctl(0) + i * 0x1_0004
}

const fn min_in(i: u32) -> usize {
    (i % 5) as usize * 4
}

const fn min_out(i: u32) -> usize {
    (i % 3) as usize * 2
}

macro_rules! hand_written {
    ($name:ident, $code:ident, [$($i:literal)*]) => {
        /// The hand-written switch: code → minimums, then the size check; answers the input
        /// minimum (the table path answers the same field of its entry).
        #[inline(never)]
        fn $name(code: u32, input: usize, output: usize) -> Option<Result<u32, NtStatus>> {
            const fn entry(i: u32) -> (usize, usize) {
                (min_in(i), min_out(i))
            }
            let (mi, mo) = match code {
                $(c if c == $code($i) => entry($i),)*
                _ => return None,
            };
            if input < mi || output < mo {
                Some(Err(NtStatus::BUFFER_TOO_SMALL))
            } else {
                Some(Ok(mi as u32))
            }
        }
    };
}

hand_written!(match_dense, ctl, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31]);
hand_written!(match_sparse, sparse, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31]);

fn table(code: fn(u32) -> u32) -> IoctlTable {
    IoctlTable::new((0..32).map(|i| {
        IoctlEntry::new(code(i), min_in(i), min_out(i), |_| IoctlResult::success(0)).unwrap()
    }))
    .unwrap()
}

/// Table dispatch: the entry's input minimum, as the hand-written one answers.
#[inline(never)]
fn table_dispatch(
    table: &IoctlTable,
    code: u32,
    input: usize,
    output: usize,
) -> Option<Result<u32, NtStatus>> {
    table
        .lookup(code, input, output)
        .map(|r| r.map(|e| e.input_minimum as u32))
}

/// 64 requests: ¾ known codes with sizes around the minimums, ¼ unknown.
fn requests(code: fn(u32) -> u32) -> Vec<(u32, usize, usize)> {
    let mut x = 0x9E37_79B9u32;
    (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = x % 32;
            let c = if x.is_multiple_of(4) {
                code(i) + 0x40_0000
            } else {
                code(i)
            };
            (c, (x >> 8) as usize % 20, (x >> 16) as usize % 8)
        })
        .collect()
}

fn bench_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("ioctl_table_32");
    for (name, code, hand) in [
        (
            "dense",
            ctl as fn(u32) -> u32,
            match_dense as fn(u32, usize, usize) -> _,
        ),
        (
            "sparse",
            sparse as fn(u32) -> u32,
            match_sparse as fn(u32, usize, usize) -> _,
        ),
    ] {
        let t = table(code);
        let batch = requests(code);
        for &(c, i, o) in &batch {
            assert_eq!(table_dispatch(&t, c, i, o), hand(c, i, o), "same answers");
        }
        group.bench_function(format!("{name}/IoctlTable::lookup"), |b| {
            b.iter(|| {
                let mut hits = 0u32;
                for &(c, i, o) in black_box(&batch) {
                    if let Some(Ok(x)) = table_dispatch(&t, c, i, o) {
                        hits = hits.wrapping_add(x + 1);
                    }
                }
                hits
            });
        });
        group.bench_function(format!("{name}/hand-written match"), |b| {
            b.iter(|| {
                let mut hits = 0u32;
                for &(c, i, o) in black_box(&batch) {
                    if let Some(Ok(x)) = hand(c, i, o) {
                        hits = hits.wrapping_add(x + 1);
                    }
                }
                hits
            });
        });
    }
    group.finish();
}

const GUID: Guid = Guid::new(0x0BE7_C4A1, 0x1111, 0x2222, [3; 8]);

fn sim_guid() -> kmdf_sim::guid::Guid {
    dmf_core::platform::simulator::sim_guid(GUID)
}

/// The hand-written driver: its default queue's `EvtIoDeviceControl` is the `match`.
fn hand_written_driver() -> DriverConfig {
    DriverConfig {
        device_add: Arc::new(|_driver, init| {
            let device = init.create_device()?;
            let mut queue = QueueConfig::new_default(QueueDispatch::Parallel);
            queue.device_control = Some(Arc::new(
                |_q, r: Request, output: usize, input: usize, code: u32| match match_dense(
                    code, input, output,
                ) {
                    None => r.complete(NtStatus::NOT_SUPPORTED),
                    Some(Err(s)) => r.complete(s),
                    Some(Ok(_)) => {
                        let n = r.with_output_buffer(1, |out| {
                            out[0] = 1;
                            1
                        });
                        r.complete_with_information(NtStatus::SUCCESS, n.unwrap_or(0));
                    }
                },
            ));
            device.create_queue(queue)?;
            device.create_interface(GUID, None)?;
            Ok(())
        }),
        unload: None,
    }
}

fn ioctl_handler_driver() -> DriverConfig {
    container_driver_config(
        |_device: &Device, modules| {
            let table = IoctlTable::new((0..32).map(|i| {
                IoctlEntry::new(ctl(i), min_in(i), min_out(i), |call| {
                    if call.output_length() == 0 {
                        IoctlResult::success(0)
                    } else {
                        match call.with_output(|out| out[0] = 1) {
                            Ok(()) => IoctlResult::success(1),
                            Err(status) => IoctlResult::status(status),
                        }
                    }
                })
                .unwrap()
            }))
            .unwrap();
            modules.add(IoctlHandler::with(IoctlHandlerConfig {
                table,
                device_interface: Some(GUID),
                ..IoctlHandlerConfig::default()
            }));
            Ok(())
        },
        false,
    )
}

fn bench_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("ioctl_request_32");
    group.measurement_time(std::time::Duration::from_secs(4));
    for (name, driver) in [
        ("IoctlHandler", ioctl_handler_driver as fn() -> DriverConfig),
        (
            "hand-written match",
            hand_written_driver as fn() -> DriverConfig,
        ),
    ] {
        let machine = Machine::new();
        let _bound = machine.enter();
        simulator::install_driver(&machine, "bench", driver());
        let node = machine
            .pnp()
            .plug_in(StackSpec::new("ROOT\\BENCH", "bench"))
            .unwrap();
        let handle = Application::new(&machine, AppConfig::default())
            .open_interface(sim_guid(), Access::READ_WRITE)
            .unwrap();
        let input = [7u8; 16];
        group.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| {
                    handle
                        .device_io_control(ctl(4), black_box(&input), 4)
                        .unwrap()
                },
                BatchSize::SmallInput,
            );
        });
        handle.close();
        node.remove().unwrap();
        machine.settle();
        assert!(machine.verifier().violations().is_empty());
    }
    group.finish();
}

criterion_group!(benches, bench_table, bench_request);
criterion_main!(benches);
