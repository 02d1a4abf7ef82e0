//! A measurement to run by hand, not a correctness test: 1 GiB from client to upstream through
//! `relay()` on loopback, in `Copy` and then `Splice` mode (default and 1 MiB pipes), printing
//! throughput and the CPU time of the thread the relay runs on (user and system split from
//! `/proc/thread-self/stat`, in clock ticks).
//!
//! ```text
//! cargo test --release --test relay_bench -- --ignored --nocapture
//! ```
//!
//! The sender and receiver are blocking threads of their own, so the relay thread's CPU time is
//! the relay's alone. On a machine with fewer than three cores they compete with it, which
//! lowers throughput in both modes alike.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};
use sluice::relay::{RelayEnd, RelayMode, RelaySettings, relay};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TOTAL: u64 = 1 << 30;
const ROUNDS: usize = 3;

/// CPU time of the calling thread: (user + system, user, system).
fn thread_cpu() -> (Duration, Duration, Duration) {
    let now = clock_gettime(ClockId::ThreadCPUTime);
    let total = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name in parentheses start at field 3; utime and stime are 14, 15.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let per_second = rustix::param::clock_ticks_per_second();
    let tick = |i: usize| {
        let ticks: u64 = fields[i].parse().unwrap();
        Duration::from_nanos(ticks * 1_000_000_000 / per_second)
    };
    (total, tick(11), tick(12))
}

fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let dialed = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let accepted = listener.accept().unwrap().0;
    (dialed, accepted)
}

struct Run {
    elapsed: Duration,
    cpu: (Duration, Duration, Duration),
}

fn one_run(mode: RelayMode, pipe_size: Option<usize>) -> Run {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut client, relay_client) = pair(&listener);
    let (relay_upstream, mut upstream) = pair(&listener);
    let settings = RelaySettings {
        idle_timeout: None,
        buffer_size: 16 * 1024,
        mode,
        pipe_size,
    };

    let relay = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let before = thread_cpu();
        let report = runtime.block_on(async {
            relay_client.set_nonblocking(true).unwrap();
            relay_upstream.set_nonblocking(true).unwrap();
            let relay_client = tokio::net::TcpStream::from_std(relay_client).unwrap();
            let relay_upstream = tokio::net::TcpStream::from_std(relay_upstream).unwrap();
            let cut = CancellationToken::new();
            relay(relay_client, relay_upstream, Vec::new(), settings, &cut).await
        });
        let after = thread_cpu();
        (
            report,
            (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        )
    });

    let started = Instant::now();
    let receiver = std::thread::spawn(move || {
        upstream.shutdown(Shutdown::Write).unwrap();
        let (mut buf, mut got) = (vec![0; 256 * 1024], 0u64);
        loop {
            match upstream.read(&mut buf).unwrap() {
                0 => break got,
                n => got += n as u64,
            }
        }
    });
    let chunk = vec![0x5a; 256 * 1024];
    let mut left = TOTAL;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        client.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(receiver.join().unwrap(), TOTAL);
    let elapsed = started.elapsed();
    let (report, cpu) = relay.join().unwrap();
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!(report.bytes_up, TOTAL);
    Run { elapsed, cpu }
}

#[test]
#[ignore = "a measurement; run by hand in a release build"]
fn one_gib_copy_vs_splice() {
    let modes = [
        (RelayMode::Copy, None),
        (RelayMode::Splice, None),
        (RelayMode::Splice, Some(1 << 20)),
    ];
    for (mode, pipe_size) in modes {
        for _ in 0..ROUNDS {
            let Run { elapsed, cpu } = one_run(mode, pipe_size);
            let gbit = (TOTAL * 8) as f64 / elapsed.as_secs_f64() / 1e9;
            println!(
                "{mode:?} (pipe_size {pipe_size:?}): 1 GiB in {elapsed:.2?} = {gbit:.1} Gbit/s; relay thread CPU {:.2?} \
                 (user {:.2?}, sys {:.2?}) = {:.0}% of the wall time",
                cpu.0,
                cpu.1,
                cpu.2,
                100.0 * cpu.0.as_secs_f64() / elapsed.as_secs_f64()
            );
        }
    }
}
