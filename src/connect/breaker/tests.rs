//! The layer over a `tower-test` mock connector, under a paused clock.

use std::time::Duration;

use tokio::time::advance;
use tower::util::MapErr;
use tower::{BoxError, ServiceExt};
use tower_test::mock;

use super::*;
use crate::config::{BreakerConfig, MemberConfig};
use crate::connect::LimitScope;
use crate::upstream::{BreakerState, Member};

type Inner = MapErr<mock::Mock<MemberRequest, ()>, fn(BoxError) -> ConnectError>;
type Handle = mock::Handle<MemberRequest, ()>;

const OPEN_FOR: Duration = Duration::from_secs(10);

fn unbox(e: BoxError) -> ConnectError {
    *e.downcast().expect("the tests only send ConnectErrors")
}

fn setup(breaker: Option<BreakerConfig>) -> (CircuitBreaker<Inner>, Handle, Arc<Member>) {
    let config = MemberConfig {
        name: "10.0.0.1:5432".into(),
        addr: "10.0.0.1:5432".parse().unwrap(),
        weight: 1,
        tier: 0,
    };
    let member = Member::new(0, &config, true, Instant::now()).with_breaker("db", breaker);
    let (mock, handle) = mock::pair();
    let svc = CircuitBreakerLayer::new().layer(mock.map_err(unbox as fn(BoxError) -> ConnectError));
    (svc, handle, Arc::new(member))
}

fn breaker(failures: u32) -> Option<BreakerConfig> {
    Some(BreakerConfig {
        consecutive_failures: failures,
        open_for: OPEN_FOR,
        max_open_for: Duration::from_secs(60),
        half_open_trials: 1,
        early_close: Duration::from_millis(200),
        silent_after_request: Duration::ZERO,
    })
}

fn request(member: &Arc<Member>) -> MemberRequest {
    MemberRequest {
        guard: member.track(),
        client: "192.0.2.1:40000".parse().unwrap(),
        local: "127.0.0.1:6432".parse().unwrap(),
    }
}

fn refused(member: &Member) -> ConnectError {
    ConnectError::Refused {
        member: MemberId::of(member),
    }
}

/// One call whose connect the mock answers with `answer`.
async fn call(
    svc: &mut CircuitBreaker<Inner>,
    handle: &mut Handle,
    member: &Arc<Member>,
    answer: Result<(), ConnectError>,
) -> Result<(), ConnectError> {
    let pending = svc.ready().await.unwrap().call(request(member));
    let (_, send) = handle.next_request().await.expect("reached the connector");
    match answer {
        Ok(()) => send.send_response(()),
        Err(e) => send.send_error(e),
    }
    pending.await
}

fn state(member: &Member) -> BreakerState {
    member.breaker_state(Instant::now()).expect("has a breaker")
}

#[tokio::test(start_paused = true)]
async fn opens_then_fails_fast_then_a_trial_closes_it() {
    let (mut svc, mut handle, member) = setup(breaker(2));
    for _ in 0..2 {
        let err = call(&mut svc, &mut handle, &member, Err(refused(&member))).await;
        assert!(matches!(err, Err(ConnectError::Refused { .. })));
    }
    assert!(matches!(state(&member), BreakerState::Open { .. }));

    let err = svc.ready().await.unwrap().call(request(&member)).await;
    assert!(
        matches!(err, Err(ConnectError::CircuitOpen { .. })),
        "{err:?}"
    );
    assert!(
        handle.poll_request().is_pending(),
        "rejected before the connect"
    );

    advance(OPEN_FOR).await;
    let trial = svc.ready().await.unwrap().call(request(&member));
    let (_, send) = handle.next_request().await.expect("the trial connects");
    // One trial allowed: a second connection meanwhile is refused without connecting.
    let second = svc.ready().await.unwrap().call(request(&member)).await;
    assert!(matches!(second, Err(ConnectError::CircuitOpen { .. })));
    assert!(handle.poll_request().is_pending());
    send.send_response(());
    trial.await.unwrap();
    assert_eq!(state(&member), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_non_member_outcomes_give_the_trial_back() {
    let (mut svc, mut handle, member) = setup(breaker(1));
    call(&mut svc, &mut handle, &member, Err(refused(&member)))
        .await
        .unwrap_err();
    advance(OPEN_FOR).await;

    // The client leaves mid-connect: the trial slot must not leak.
    let abandoned = svc.ready().await.unwrap().call(request(&member));
    let _request = handle.next_request().await.unwrap();
    drop(abandoned);
    let free = BreakerState::HalfOpen {
        trials_in_flight: 0,
    };
    assert_eq!(state(&member), free);

    // A failure that is not the member's says nothing about it.
    let limit = ConnectError::LimitReached {
        scope: LimitScope::Global,
        max: 1,
    };
    call(&mut svc, &mut handle, &member, Err(limit))
        .await
        .unwrap_err();
    assert_eq!(state(&member), free);

    // A failed trial re-opens it for twice as long.
    let start = Instant::now();
    call(&mut svc, &mut handle, &member, Err(refused(&member)))
        .await
        .unwrap_err();
    assert_eq!(
        state(&member),
        BreakerState::Open {
            until: start + 2 * OPEN_FOR
        }
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_breaker_everything_passes() {
    let (mut svc, mut handle, member) = setup(None);
    for _ in 0..10 {
        call(&mut svc, &mut handle, &member, Err(refused(&member)))
            .await
            .unwrap_err();
    }
    call(&mut svc, &mut handle, &member, Ok(())).await.unwrap();
    assert_eq!(member.breaker_state(Instant::now()), None);
}
