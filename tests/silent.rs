//! `breaker.silent_after_request` end to end: a member that accepts and then says nothing,
//! beside a healthy one, behind connect-only health checks (which pass it: the kernel
//! completes the handshake for a hung process).
//!
//! The healthy member echoes, so a client that got its request back knows it was served; the
//! silent one reads and never writes (`Behavior::Silent`).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Behavior, Sluice, Upstream};
use sluice::upstream::{BreakerState, Member};
use sluice_testkit::{eventually, eventually_async, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const PERIOD: Duration = Duration::from_millis(150);
const REQUEST: &[u8] = b"ping\n";
/// Generous: every wait ends on its condition, this only bounds a broken build.
const DEADLINE: Duration = Duration::from_secs(10);

/// A round-robin pool of `members`, connect-only health checks, a breaker that opens on the
/// third failure in a row and stays open for the test; `silent` is the rest of the breaker
/// table (empty: the watch is off).
fn config(members: &[&Upstream], silent: &str) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|u| format!(r#"{{ addr = "{}" }}"#, u.addr))
        .collect();
    format!(
        r#"
        [routes.db]
        listen = "127.0.0.1:0"
        pool = "db"
        [pools.db]
        balance = "round_robin"
        members = [{}]
        [pools.db.health]
        interval = "100ms"
        timeout = "200ms"
        [pools.db.breaker]
        consecutive_failures = 3
        open_for = "60s"
        {silent}
        "#,
        members.join(", "),
    )
}

fn member<'a>(sluice: &'a Sluice, upstream: &Upstream) -> &'a std::sync::Arc<Member> {
    sluice
        .pool("db")
        .member(&upstream.addr.to_string())
        .expect("member in the pool")
}

fn is_open(member: &Member) -> bool {
    matches!(
        member.breaker_state(Instant::now()),
        Some(BreakerState::Open { .. })
    )
}

/// Connects and sends the request; the caller reads the answer (or not).
/// Each stream stays open for a whole period (one after another) and the member's breaker
/// stays closed: nothing was counted against it.
async fn assert_uncounted(sluice: &Sluice, upstream: &Upstream, streams: &mut [TcpStream]) {
    for stream in streams.iter_mut() {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(PERIOD, stream.read(&mut byte));
        assert!(read.await.is_err(), "the connection stays open");
    }
    assert_eq!(
        member(sluice, upstream).breaker_state(Instant::now()),
        Some(BreakerState::Closed)
    );
}

async fn ask(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    stream
}

/// Reads the echoed request back.
async fn answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; REQUEST.len()];
    within(DEADLINE, "the echoed request", stream.read_exact(&mut buf))
        .await
        .unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_open_the_members_breaker_and_clients_go_to_the_healthy_one() {
    let silent = Upstream::start(Behavior::Silent).await;
    let healthy = Upstream::start(Behavior::Echo).await;
    let sluice = Sluice::start(&config(
        &[&silent, &healthy],
        &format!(r#"silent_after_request = "{}ms""#, PERIOD.as_millis()),
    ))
    .await;
    let addr = sluice.addr("db");
    let bad = member(&sluice, &silent);

    // Six clients send a request and wait; round robin gives three to each member. Each
    // silent connection counts once, after the period: the third opens the breaker.
    let mut waiting = Vec::new();
    for _ in 0..6 {
        waiting.push(ask(addr).await);
    }
    eventually(DEADLINE, "the silent member's breaker to open", || {
        is_open(bad)
    })
    .await;
    assert_eq!(
        silent.requests(),
        3,
        "three requests reached the silent member"
    );
    eventually(
        DEADLINE,
        "the healthy member to take the other three",
        || healthy.accepted() == 3,
    )
    .await;
    // Health checks still pass it: only the breaker keeps clients away.
    assert!(bad.is_up(), "connect checks cannot see silence");

    // Every new client now lands on the healthy member and gets its bytes back.
    for _ in 0..10 {
        let mut stream = ask(addr).await;
        assert_eq!(answer(&mut stream).await, REQUEST);
    }
    assert_eq!(silent.requests(), 3, "no client reached the silent member");

    // `keep`: every first client is still connected, the silent member's three too (it may
    // yet answer them): three got their answer, the other three still wait.
    let mut answered = 0;
    for stream in &mut waiting {
        let mut buf = vec![0u8; REQUEST.len()];
        if let Ok(r) = tokio::time::timeout(PERIOD, stream.read_exact(&mut buf)).await {
            r.unwrap();
            assert_eq!(buf, REQUEST);
            answered += 1;
        }
    }
    assert_eq!(
        answered, 3,
        "the healthy member's three were answered, the others kept"
    );
    drop(waiting);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_silent_close_ends_the_connection_after_the_period() {
    let silent = Upstream::start(Behavior::Silent).await;
    let sluice = Sluice::start(&config(
        &[&silent],
        &format!(
            r#"silent_after_request = "{}ms"
            on_silent = "close""#,
            PERIOD.as_millis()
        ),
    ))
    .await;
    let started = Instant::now();
    let mut stream = ask(sluice.addr("db")).await;
    let mut rest = Vec::new();
    within(DEADLINE, "sluice to close", stream.read_to_end(&mut rest))
        .await
        .expect("closed with a FIN, not reset");
    let took = started.elapsed();
    assert!(rest.is_empty(), "the member sent nothing");
    assert!(
        took >= PERIOD,
        "closed after the period, not before: {took:?}"
    );
    assert_eq!(silent.requests(), 1, "the request reached the member");
    // One silent connection counted (of the 3 that open it): the next two open it.
    let bad = member(&sluice, &silent);
    assert!(!is_open(bad));
    for _ in 0..2 {
        let mut stream = ask(sluice.addr("db")).await;
        within(DEADLINE, "sluice to close", stream.read_to_end(&mut rest))
            .await
            .unwrap();
    }
    eventually(DEADLINE, "the breaker to open", || is_open(bad)).await;
    sluice.stop().await;
}

/// A silent member with the option off: nothing is counted however long the clients wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_option_off_silence_is_not_counted() {
    let silent = Upstream::start(Behavior::Silent).await;
    let sluice = Sluice::start(
        &config(&[&silent], "").replace("consecutive_failures = 3\n", "consecutive_failures = 1\n"),
    )
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(ask(sluice.addr("db")).await);
    }
    eventually(DEADLINE, "the requests to reach the member", || {
        silent.requests() == 3
    })
    .await;
    // Three times the period the option would have used: a count would have opened it.
    assert_uncounted(&sluice, &silent, &mut streams).await;
    drop(streams);
    sluice.stop().await;
}

/// A member that speaks first (a greeting) and is then slow is never watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_speaks_first_is_never_counted() {
    let greeter = Upstream::start(Behavior::GreetThenSilent(b'g')).await;
    let sluice = Sluice::start(
        &config(
            &[&greeter],
            &format!(
                r#"silent_after_request = "{}ms"
                on_silent = "close""#,
                PERIOD.as_millis()
            ),
        )
        .replace("consecutive_failures = 3\n", "consecutive_failures = 1\n"),
    )
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(sluice.addr("db")).await.unwrap();
        let mut banner = [0u8; 1];
        within(DEADLINE, "the banner", stream.read_exact(&mut banner))
            .await
            .unwrap();
        assert_eq!(&banner, b"g");
        stream.write_all(REQUEST).await.unwrap();
        streams.push(stream);
    }
    eventually(DEADLINE, "the requests to reach the member", || {
        greeter.requests() == 3
    })
    .await;
    // Three periods with the member silent after its banner: `close` would have ended them.
    assert_uncounted(&sluice, &greeter, &mut streams).await;
    drop(streams);
    sluice.stop().await;
}

/// A silent member's breaker opens; once the member answers again, the half-open trial
/// re-admits it (connect-only health checks never saw anything wrong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_half_open_trial_readmits_a_member_that_answers_again() {
    static SILENT: AtomicBool = AtomicBool::new(true);
    let member_up = Upstream::start(Behavior::SilentWhile(&SILENT)).await;
    let sluice = Sluice::start(
        &config(
            &[&member_up],
            &format!(r#"silent_after_request = "{}ms""#, PERIOD.as_millis()),
        )
        .replace(r#"open_for = "60s""#, r#"open_for = "300ms""#),
    )
    .await;
    let addr = sluice.addr("db");
    let m = member(&sluice, &member_up);
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(ask(addr).await);
    }
    eventually(DEADLINE, "the breaker to open", || is_open(m)).await;
    SILENT.store(false, Ordering::SeqCst);
    // Rejected (an empty reply) while open; then the trial reaches the member, which answers.
    eventually_async(
        DEADLINE,
        "a client answered by the recovered member",
        async || {
            let mut stream = ask(addr).await;
            let _ = stream.shutdown().await;
            let mut reply = Vec::new();
            let _ = within(
                DEADLINE,
                "a reply or a close",
                stream.read_to_end(&mut reply),
            )
            .await;
            reply == REQUEST
        },
    )
    .await;
    assert_eq!(m.breaker_state(Instant::now()), Some(BreakerState::Closed));
    assert!(m.is_up(), "health checks never took it out");
    drop(waiting);
    sluice.stop().await;
}
