//! Health-driven ejection and tier failover end to end: 3 primaries + 1 backup on loopback.
//!
//! Each upstream answers its id byte, so every client knows which member served it; a client
//! sent to a dead member gets an empty reply (refused connect, client closed at once).

mod common;

use std::time::Duration;

use common::{Behavior, Sluice, Upstream, read_all};
use sluice_testkit::{eventually, eventually_async, settle};
use tokio::net::TcpListener;
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(100);
const FAST: Duration = Duration::from_millis(50);
const TIMEOUT: Duration = Duration::from_millis(200);
const RISE: u32 = 2;
const FALL: u32 = 2;

fn config(primaries: &[&Upstream], backup: &Upstream) -> String {
    let mut members: Vec<String> = primaries
        .iter()
        .map(|u| format!(r#"{{ addr = "{}" }}"#, u.addr))
        .collect();
    members.push(format!(r#"{{ addr = "{}", tier = 1 }}"#, backup.addr));
    format!(
        r#"
        [routes.db]
        listen = "127.0.0.1:0"
        pool = "db"
        [pools.db]
        members = [{}]
        [pools.db.health]
        interval = "{}ms"
        fast_interval = "{}ms"
        timeout = "{}ms"
        rise = {RISE}
        fall = {FALL}
        jitter = "0%"
        "#,
        members.join(", "),
        INTERVAL.as_millis(),
        FAST.as_millis(),
        TIMEOUT.as_millis(),
    )
}

/// Which member served one new client (`None`: it was sent to a dead member).
async fn served_by(sluice: &Sluice) -> Option<u8> {
    read_all(sluice.addr("db"))
        .await
        .ok()
        .and_then(|r| r.first().copied())
}

async fn rebind(addr: std::net::SocketAddr) -> TcpListener {
    settle(
        Duration::from_secs(5),
        async || TcpListener::bind(addr).await,
        Result::is_ok,
    )
    .await
    .unwrap_or_else(|e| panic!("cannot rebind {addr}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_primary_is_ejected_backup_takes_over_and_primaries_return() {
    let a = Upstream::start(Behavior::Identify(b'a')).await;
    let b = Upstream::start(Behavior::Identify(b'b')).await;
    let c = Upstream::start(Behavior::Identify(b'c')).await;
    let z = Upstream::start(Behavior::Identify(b'z')).await;
    let sluice = Sluice::start(&config(&[&a, &b, &c], &z)).await;
    let members: Vec<_> = sluice.pool("db").members().to_vec();
    for _ in 0..30 {
        let who = served_by(&sluice).await;
        assert!(
            matches!(who, Some(b'a' | b'b' | b'c')),
            "healthy primaries only, got {who:?}"
        );
    }

    // 1. Kill one primary: clients keep arriving; the last one sent to it marks ejection.
    let killed_at = Instant::now();
    let a_addr = a.kill().await;
    let mut last_to_dead = None;
    eventually_async(Duration::from_secs(5), "member a to go down", async || {
        if !members[0].is_up() {
            return true;
        }
        if served_by(&sluice).await.is_none() {
            last_to_dead = Some(killed_at.elapsed());
        }
        false
    })
    .await;
    let ejected_after = killed_at.elapsed();
    let bound = INTERVAL * FALL + TIMEOUT + Duration::from_millis(300);
    eprintln!(
        "ejection: member down after {ejected_after:?}, last client sent to it at {last_to_dead:?} (bound {bound:?})"
    );
    assert!(
        ejected_after <= bound,
        "ejection took {ejected_after:?} > {bound:?}"
    );
    for _ in 0..30 {
        // Neither the dead member nor the backup: two healthy primaries are enough.
        let who = served_by(&sluice).await;
        assert!(
            matches!(who, Some(b'b' | b'c')),
            "no client may reach the dead member, got {who:?}"
        );
    }

    // 2. Kill the other primaries: the backup tier serves.
    let (b_addr, c_addr) = (b.kill().await, c.kill().await);
    let all_killed = Instant::now();
    eventually(Duration::from_secs(5), "all primaries down", || {
        members[..3].iter().all(|m| !m.is_up())
    })
    .await;
    eprintln!(
        "failover: every primary down {:?} after the kill",
        all_killed.elapsed()
    );
    for _ in 0..20 {
        assert_eq!(served_by(&sluice).await, Some(b'z'), "the backup serves");
    }

    // 3. Primaries come back on the same ports: new clients return to them.
    let restarted = [
        Upstream::serve(rebind(a_addr).await, Behavior::Identify(b'a')),
        Upstream::serve(rebind(b_addr).await, Behavior::Identify(b'b')),
        Upstream::serve(rebind(c_addr).await, Behavior::Identify(b'c')),
    ];
    let back_at = Instant::now();
    eventually(Duration::from_secs(5), "primaries up again", || {
        members[..3].iter().all(|m| m.is_up())
    })
    .await;
    let returned_after = back_at.elapsed();
    let bound = INTERVAL * RISE + TIMEOUT + Duration::from_millis(300);
    eprintln!("return: primaries up {returned_after:?} after restart (bound {bound:?})");
    assert!(
        returned_after <= bound,
        "return took {returned_after:?} > {bound:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let who = served_by(&sluice).await;
        assert!(
            matches!(who, Some(b'a' | b'b' | b'c')),
            "back on primaries, got {who:?}"
        );
        seen.insert(who.unwrap());
    }
    assert_eq!(seen.len(), 3, "every restarted primary gets clients");
    drop(restarted);
    sluice.stop().await;
}

#[tokio::test]
async fn min_healthy_adds_the_backup_tier_when_primaries_are_too_few() {
    let a = Upstream::start(Behavior::Identify(b'a')).await;
    let b = Upstream::start(Behavior::Identify(b'b')).await;
    let z = Upstream::start(Behavior::Identify(b'z')).await;
    let text =
        config(&[&a, &b], &z).replace("[pools.db.health]", "min_healthy = 2\n[pools.db.health]");
    let sluice = Sluice::start(&text).await;
    let members: Vec<_> = sluice.pool("db").members().to_vec();
    for _ in 0..20 {
        assert_ne!(served_by(&sluice).await, Some(b'z'));
    }
    b.kill().await;
    eventually(Duration::from_secs(5), "b down", || !members[1].is_up()).await;
    let mut seen = [0usize; 2];
    for _ in 0..40 {
        match served_by(&sluice).await {
            Some(b'a') => seen[0] += 1,
            Some(b'z') => seen[1] += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // One primary left with min_healthy = 2: the backup is added beside it, not instead of it.
    assert_eq!(seen, [20, 20]);
    sluice.stop().await;
}

/// A member that died with clients arriving opened its breaker; when the probes bring it back
/// it must take clients at once, not sit out the rest of `open_for` (here a minute) up and never
/// picked.
#[tokio::test]
async fn member_back_by_health_checks_is_picked_though_its_breaker_opened_while_it_was_dead() {
    let a = Upstream::start(Behavior::Identify(b'a')).await;
    let b = Upstream::start(Behavior::Identify(b'b')).await;
    let text = format!(
        r#"
        [routes.db]
        listen = "127.0.0.1:0"
        pool = "db"
        [pools.db]
        members = [{{ addr = "{}" }}, {{ addr = "{}" }}]
        [pools.db.breaker]
        consecutive_failures = 1
        open_for = "1m"
        [pools.db.health]
        interval = "300ms"
        fast_interval = "100ms"
        timeout = "200ms"
        rise = 1
        fall = 5
        jitter = "0%"
        init_state = "down"
        "#,
        a.addr, b.addr
    );
    let sluice = Sluice::start(&text).await;
    let members: Vec<_> = sluice.pool("db").members().to_vec();
    let is_open = |m: &sluice::upstream::Member| {
        matches!(
            m.breaker_state(Instant::now()),
            Some(sluice::upstream::BreakerState::Open { .. })
        )
    };

    // Down until the first probe passes: once both are up, the first-probe rule is behind us
    // and only `fall` failures in a row take a member down.
    eventually(Duration::from_secs(5), "first probes pass", || {
        members.iter().all(|m| m.is_up())
    })
    .await;
    let a_addr = a.kill().await;
    // Clients round-robin onto the dead member until one of them opens its breaker (and is
    // redialled to b); the probes need at least 4 × 100 ms more to take it down (fall = 5),
    // while two clients are enough.
    eventually_async(Duration::from_secs(5), "a's breaker to open", async || {
        if is_open(&members[0]) {
            return true;
        }
        assert_eq!(served_by(&sluice).await, Some(b'b'), "redialled to b");
        assert!(
            members[0].is_up(),
            "the breaker should open before the probes take a down"
        );
        false
    })
    .await;
    eventually(Duration::from_secs(5), "a down", || !members[0].is_up()).await;

    let _a = Upstream::serve(rebind(a_addr).await, Behavior::Identify(b'a'));
    eventually(Duration::from_secs(5), "a up again", || members[0].is_up()).await;
    assert!(
        !is_open(&members[0]) && members[0].is_eligible(Instant::now()),
        "back up means admitted: {:?}",
        members[0].breaker_state(Instant::now())
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(served_by(&sluice).await);
    }
    assert_eq!(seen, [Some(b'a'), Some(b'b')].into_iter().collect());
    sluice.stop().await;
}
