//! Ten thousand relayed connections that each moved a byte both ways and went idle, then all
//! closed: idle relays hold no pipe and no buffer, and the process's open fds come back to
//! where they started.
//!
//! This is its own test binary with a single test, so it runs alone in its process and every
//! fd in `/proc/self/fd` is either this test's or its runtime's. Both ends of every connection
//! are in-process: 10k connections are 40k sockets, so the test raises `RLIMIT_NOFILE` first
//! (and, where the hard limit is lower and cannot be raised, runs as many as fit).
#![cfg(target_os = "linux")]

mod relay_support;

use std::time::Duration;

use relay_support::{pair, settings, trace_init};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use sluice::relay::{RelayMode, buffers_in_flight, pipes_in_flight, pipes_pooled, relay};
use sluice_testkit::{settle, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CONNECTIONS: usize = 10_000;

/// The whole test, setup included; about 10 s in a debug build on 2 cores.
const DEADLINE: Duration = Duration::from_secs(120);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Fds beyond four per connection: the runtime's, the listeners, the pool's spare pipes.
const SPARE_FDS: u64 = 512;

/// How many connections fit under `RLIMIT_NOFILE` once raised as far as allowed: all
/// `CONNECTIONS`, unless the hard limit is too low and cannot be raised (that takes
/// `CAP_SYS_RESOURCE`); then as many as fit, said loudly.
fn connections_that_fit() -> usize {
    let want = 4 * CONNECTIONS as u64 + SPARE_FDS;
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    if limit.current.is_none_or(|soft| soft >= want) {
        return CONNECTIONS;
    }
    let raised = Rlimit {
        current: Some(want),
        maximum: limit.maximum.map(|hard| hard.max(want)),
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        return CONNECTIONS;
    }
    let hard = limit.maximum.unwrap_or(want).min(want);
    let fit = Rlimit {
        current: Some(hard),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, fit).expect("raising the soft limit to the hard one");
    let n = usize::try_from(hard.saturating_sub(SPARE_FDS) / 4).unwrap();
    eprintln!(
        "RLIMIT_NOFILE hard limit {hard} cannot be raised: {n} connections instead of {CONNECTIONS}"
    );
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_then_closed_leave_no_fd_behind() {
    trace_init();
    let connections = connections_that_fit();
    let clients = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstreams = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (fds_before, pooled_before) = (open_fds(), pipes_pooled());
    let started = Instant::now();

    let cut = CancellationToken::new();
    let mut ends = Vec::with_capacity(connections);
    let mut relays = Vec::with_capacity(connections);
    within(DEADLINE, "setting up", async {
        // One at a time: a pair is matched by accepting right after connecting.
        for _ in 0..connections {
            let (mut client, relay_client) = pair(&clients).await;
            let (relay_upstream, mut upstream) = pair(&upstreams).await;
            let cut = cut.clone();
            let settings = settings(RelayMode::Splice);
            relays.push(tokio::spawn(async move {
                relay(relay_client, relay_upstream, Vec::new(), settings, &cut).await
            }));
            // A byte each way, so every direction has spliced through a pipe once.
            let mut byte = [0];
            client.write_all(b"q").await.unwrap();
            upstream.read_exact(&mut byte).await.unwrap();
            upstream.write_all(b"a").await.unwrap();
            client.read_exact(&mut byte).await.unwrap();
            ends.push((client, upstream));
        }
    })
    .await;
    println!(
        "{connections} connections set up in {:?}",
        started.elapsed()
    );

    let held = settle(
        DEADLINE,
        async || (pipes_in_flight(), buffers_in_flight()),
        |&h| h == (0, 0),
    )
    .await;
    assert_eq!(held, (0, 0), "(pipes, buffers) held by idle connections");
    let open = open_fds();
    assert!(
        open >= fds_before + 4 * connections,
        "counting fds does not work: {open} open, {fds_before} before"
    );

    // Both ends close; each relay passes the FINs on and finishes on its own.
    drop(ends);
    within(DEADLINE, "relays ending", async {
        for relay in relays {
            relay.await.unwrap();
        }
    })
    .await;
    assert!(!cut.is_cancelled());

    // Empty pipes the pool keeps for reuse (two fds each, bounded) are all that may remain.
    let expected = || fds_before + 2 * (pipes_pooled() - pooled_before);
    let open = settle(DEADLINE, async || open_fds(), |&open| open == expected()).await;
    assert_eq!(
        open,
        expected(),
        "{open} fds open, {fds_before} before, {} pipes pooled",
        pipes_pooled()
    );
    println!(
        "all closed after {:?}; {} pipes pooled",
        started.elapsed(),
        pipes_pooled()
    );
}
