//! Redials over a `tower-test` mock stack under a paused clock: the virtual time between the
//! mock's requests is the backoff schedule.

use std::net::SocketAddr;
use std::time::Duration;

use tower::BoxError;
use tower_test::mock;

use super::*;
use crate::connect::{LimitScope, MemberId};
use crate::upstream::NoEligibleMember;

fn unbox(e: BoxError) -> ConnectError {
    *e.downcast().expect("the tests only send ConnectErrors")
}

fn config(attempts: u32, jitter: bool, budget_ms: u64) -> RetryConfig {
    RetryConfig {
        attempts,
        min_backoff: Duration::from_millis(25),
        max_backoff: Duration::from_secs(1),
        jitter,
        budget: Duration::from_millis(budget_ms),
    }
}

fn member(index: usize) -> MemberId {
    let addr: SocketAddr = format!("10.0.0.{index}:5432").parse().unwrap();
    MemberId {
        index,
        name: addr.to_string().into(),
        addr,
    }
}

fn refused(index: usize, _tried: &[usize]) -> Result<(), ConnectError> {
    Err(ConnectError::Refused {
        member: member(index),
    })
}

/// A pool of one member that refuses: a pick excluding it finds nobody.
fn one_refusing_member(_: usize, tried: &[usize]) -> Result<(), ConnectError> {
    if tried.is_empty() {
        refused(0, tried)
    } else {
        no_member(tried.len())
    }
}

fn no_member(tried: usize) -> Result<(), ConnectError> {
    Err(NoEligibleMember {
        pool: "db".into(),
        tried,
    }
    .into())
}

/// What the mock stack saw of one request.
#[derive(Debug)]
struct Seen {
    result: Result<(), ConnectError>,
    /// When each attempt reached the stack, from the request's start.
    at: Vec<Duration>,
    /// The `tried` list of each attempt.
    tried: Vec<Vec<usize>>,
    /// When each call that was not answered `NoEligibleMember` reached the stack.
    connects_at: Vec<Duration>,
}

impl Seen {
    /// Time between connects (calls that reached a member; picks that found nobody left are
    /// not connects).
    fn gaps_ms(&self) -> Vec<u128> {
        self.connects_at
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect()
    }

    fn failed_on(&self) -> Option<usize> {
        self.result.as_ref().err()?.member().map(|m| m.index)
    }
}

/// Sends one request through `layer` over a mock that answers attempt `n` with `answer(n)`.
async fn drive(
    layer: &RetryLayer,
    answer: impl Fn(usize, &[usize]) -> Result<(), ConnectError>,
) -> Seen {
    let (mock, mut handle) = mock::pair();
    let svc = layer.layer(mock.map_err(unbox as fn(BoxError) -> ConnectError));
    let request = ConnectRequest {
        client: "192.0.2.1:40000".parse().unwrap(),
        local: "127.0.0.1:6432".parse().unwrap(),
        tried: Vec::new(),
        attempts: Default::default(),
        socket: None,
    };
    let start = Instant::now();
    let task = tokio::spawn(svc.oneshot(request));
    let (mut at, mut tried, mut connects_at) = (Vec::new(), Vec::new(), Vec::new());
    // Ends when the request is done and has dropped every clone of the mock.
    while let Some((request, send)) = handle.next_request().await {
        at.push(start.elapsed());
        let result = answer(at.len() - 1, &request.tried);
        if !matches!(result, Err(ConnectError::NoEligibleMember(_))) {
            connects_at.push(start.elapsed());
        }
        tried.push(request.tried);
        match result {
            Ok(()) => send.send_response(()),
            Err(e) => send.send_error(e),
        }
    }
    let result = task.await.unwrap();
    Seen {
        result,
        at,
        tried,
        connects_at,
    }
}

fn layer(config: RetryConfig, seed: u64) -> RetryLayer {
    RetryLayer::new("pg".into(), config, seed)
}

#[tokio::test(start_paused = true)]
async fn each_redial_goes_at_once_to_a_member_not_yet_tried() {
    let seen = drive(&layer(config(4, false, 5_000), 1), refused).await;
    assert_eq!(
        seen.gaps_ms(),
        [0, 0, 0],
        "no backoff before another member"
    );
    assert_eq!(seen.tried, [vec![], vec![0], vec![0, 1], vec![0, 1, 2]]);
    assert_eq!(seen.failed_on(), Some(3), "the last error is returned");
}

#[tokio::test(start_paused = true)]
async fn retrying_a_member_already_tried_backs_off_doubling() {
    let seen = drive(&layer(config(4, false, 5_000), 1), one_refusing_member).await;
    assert_eq!(seen.gaps_ms(), [25, 50, 100]);
    // Each connect goes to the one member; each pick after it finds nobody left.
    assert_eq!(
        seen.tried,
        [vec![], vec![0], vec![], vec![0], vec![], vec![0], vec![]]
    );
    assert_eq!(seen.failed_on(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped_at_max() {
    let mut c = config(7, false, 60_000);
    c.max_backoff = Duration::from_millis(150);
    let seen = drive(&layer(c, 1), one_refusing_member).await;
    assert_eq!(seen.gaps_ms(), [25, 50, 100, 150, 150, 150]);
}

#[tokio::test(start_paused = true)]
async fn stops_when_the_next_wait_would_pass_the_budget() {
    // 0 → 25ms → 75ms; a 100ms wait would end at 175ms > 100ms.
    let seen = drive(&layer(config(10, false, 100), 1), one_refusing_member).await;
    assert_eq!(seen.gaps_ms(), [25, 50]);
    assert_eq!(seen.failed_on(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn one_attempt_never_redials() {
    let seen = drive(&layer(config(1, false, 5_000), 1), one_refusing_member).await;
    assert_eq!(seen.at.len(), 1);
    assert_eq!(seen.failed_on(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn errors_that_forbid_a_redial_return_at_once() {
    let limit = || {
        Err(ConnectError::LimitReached {
            scope: LimitScope::Route,
            max: 10,
        })
    };
    let seen = drive(&layer(config(3, false, 5_000), 1), |_, _| limit()).await;
    assert_eq!(seen.at.len(), 1);
    assert!(matches!(
        seen.result,
        Err(ConnectError::LimitReached { .. })
    ));

    let seen = drive(&layer(config(3, false, 5_000), 1), |_, _| no_member(0)).await;
    assert_eq!(seen.at.len(), 1);
    assert!(matches!(
        seen.result,
        Err(ConnectError::NoEligibleMember(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn no_member_left_returns_the_last_member_error() {
    // Member 0 refuses; then nobody is eligible, not even after clearing the tried list (its
    // breaker opened, say): the member's error is the answer.
    let answer = |n, t: &[usize]| {
        if n == 0 {
            refused(0, t)
        } else {
            no_member(t.len())
        }
    };
    let seen = drive(&layer(config(3, false, 5_000), 1), answer).await;
    assert_eq!(seen.tried, [vec![], vec![0], vec![]]);
    assert_eq!(seen.at[2] - seen.at[1], Duration::from_millis(25));
    assert!(matches!(seen.result, Err(ConnectError::Refused { .. })));
    assert_eq!(seen.failed_on(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_redial_that_connects_succeeds() {
    let answer = |n, _: &[usize]| {
        if n == 0 {
            Err(ConnectError::CircuitOpen { member: member(4) })
        } else {
            Ok(())
        }
    };
    let seen = drive(&layer(config(3, false, 5_000), 1), answer).await;
    assert!(seen.result.is_ok());
    assert_eq!(seen.tried, [vec![], vec![4]]);
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_repeats_across_runs() {
    let schedule = |seed| async move {
        let layer = layer(config(5, true, 60_000), seed);
        // Two requests per run: each gets its own stream, and the run as a whole repeats.
        let first = drive(&layer, one_refusing_member).await.gaps_ms();
        let second = drive(&layer, one_refusing_member).await.gaps_ms();
        (first, second)
    };
    let (a1, a2) = schedule(42).await;
    let (b1, b2) = schedule(42).await;
    assert_eq!((&a1, &a2), (&b1, &b2));
    assert_ne!(a1, a2, "requests draw different jitter");
    assert_ne!(a1, schedule(43).await.0, "another seed, another schedule");
    // backon's jitter adds up to 100%: each wait lies in [d, 2d).
    for (gap, base) in a1.iter().zip([25, 50, 100, 200]) {
        assert!(
            (base..2 * base).contains(gap),
            "{gap}ms for a {base}ms backoff"
        );
    }
}

/// The layers as the route will stack them, over real loopback sockets: member 0 refuses, so
/// its breaker opens and the redial connects to member 1; the next client skips member 0.
#[tokio::test]
async fn real_stack_redials_past_a_refusing_member() {
    use crate::config::{AllDown, BalanceKind, BreakerConfig, MemberConfig, PoolConfig};
    use crate::connect::{CircuitBreakerLayer, ConnectTimeoutLayer, SelectLayer, TcpConnect};
    use crate::upstream::{BreakerState, Pool};

    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = refusing.local_addr().unwrap();
    drop(refusing);
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let member = |addr: SocketAddr| MemberConfig {
        name: addr.to_string(),
        addr,
        weight: 1,
        tier: 0,
    };
    let pool = std::sync::Arc::new(Pool::new(
        &PoolConfig {
            name: "db".into(),
            balance: BalanceKind::RoundRobin,
            members: vec![member(dead), member(live.local_addr().unwrap())],
            dns: Vec::new(),
            health: None,
            min_healthy: 1,
            all_down: AllDown::Reject,
            slow_start: None,
            breaker: Some(BreakerConfig {
                consecutive_failures: 1,
                ..Default::default()
            }),
            member_max_connections: None,
            early_close: None,
            socket: Default::default(),
            silent: None,
            on_member_down: Default::default(),
            on_primary_return: Default::default(),
            max_connection_lifetime: None,
        },
        1,
    ));
    let mut retry = config(3, false, 5_000);
    retry.min_backoff = Duration::from_millis(1);
    let stack = tower::ServiceBuilder::new()
        .layer(RetryLayer::new("pg".into(), retry, 1))
        .layer(SelectLayer::new(std::sync::Arc::clone(&pool)))
        .layer(CircuitBreakerLayer::new())
        .layer(ConnectTimeoutLayer::new(Duration::from_secs(2)))
        .service(TcpConnect::default());
    let request = ConnectRequest {
        client: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:6432".parse().unwrap(),
        tried: Vec::new(),
        attempts: Default::default(),
        socket: None,
    };
    for _ in 0..2 {
        let connected = stack.clone().oneshot(request.clone()).await.unwrap();
        assert_eq!(connected.member().index(), 1);
        let opened = pool.members()[0].breaker_state(Instant::now());
        assert!(
            matches!(opened, Some(BreakerState::Open { .. })),
            "{opened:?}"
        );
    }
}
