use std::num::NonZeroU32;
use std::time::Duration;

use tokio_test::{assert_pending, assert_ready, assert_ready_err, task};
use tower_test::mock::Handle;

use super::*;
use crate::connect::testing::{MockInner, Upstream, mock, request};

type Mocked = Handle<ConnectRequest, Connected>;

const QUEUE: OnLimit = OnLimit::Queue {
    timeout: Duration::from_secs(1),
};

fn route_limited(on_limit: OnLimit, max: usize) -> (Admission<MockInner>, ConnectionLimit, Mocked) {
    let limit = ConnectionLimit::route(max);
    let (inner, handle) = mock();
    let svc = AdmissionLayer::new(on_limit, None, Some(limit.clone()), None).layer(inner);
    (svc, limit, handle)
}

/// Calls once; when the request reaches the inner service it answers with `upstream`.
async fn admit(
    svc: &Admission<MockInner>,
    handle: &mut Mocked,
    client: &str,
    upstream: Connected,
) -> Result<Connected, ConnectError> {
    let mut call = task::spawn(svc.clone().oneshot(request(client)));
    if let Poll::Ready(result) = call.poll() {
        return result;
    }
    let (_, respond) = handle
        .next_request()
        .await
        .expect("request reached the inner service");
    respond.send_response(upstream);
    assert_ready!(call.poll())
}

fn is_limit(err: &ConnectError, scope: LimitScope, max: usize) -> bool {
    matches!(err, ConnectError::LimitReached { scope: s, max: m } if *s == scope && *m == max)
}

#[tokio::test(start_paused = true)]
async fn route_limit_rejects_at_once_when_full() {
    let up = Upstream::bind().await;
    let (svc, limit, mut handle) = route_limited(OnLimit::Reject, 2);
    let first = admit(&svc, &mut handle, "10.0.0.1:1", up.connected().await)
        .await
        .unwrap();
    let _second = admit(&svc, &mut handle, "10.0.0.2:1", up.connected().await)
        .await
        .unwrap();
    assert_eq!(limit.available(), 0);

    let mut third = task::spawn(svc.clone().oneshot(request("10.0.0.3:1")));
    let err = assert_ready_err!(third.poll());
    assert!(is_limit(&err, LimitScope::Route, 2), "{err}");

    drop(first);
    admit(&svc, &mut handle, "10.0.0.3:1", up.connected().await)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn route_limit_queue_admits_when_a_connection_ends() {
    let up = Upstream::bind().await;
    let spare = up.connected().await;
    let (svc, limit, mut handle) = route_limited(QUEUE, 2);
    let first = admit(&svc, &mut handle, "10.0.0.1:1", up.connected().await)
        .await
        .unwrap();
    let _second = admit(&svc, &mut handle, "10.0.0.2:1", up.connected().await)
        .await
        .unwrap();

    let mut third = task::spawn(svc.clone().oneshot(request("10.0.0.3:1")));
    assert_pending!(third.poll());
    tokio::time::advance(Duration::from_millis(900)).await;
    assert_pending!(third.poll());
    assert!(
        handle.poll_request().is_pending(),
        "passed while the route was full"
    );

    drop(first);
    assert!(third.is_woken());
    assert_pending!(third.poll());
    let (_, respond) = handle.next_request().await.expect("queued request passed");
    respond.send_response(spare);
    let third = assert_ready!(third.poll()).unwrap();
    assert_eq!(third.permits.len(), 1);
    assert_eq!(limit.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn route_limit_queue_times_out() {
    let up = Upstream::bind().await;
    let (svc, limit, mut handle) = route_limited(QUEUE, 2);
    let _first = admit(&svc, &mut handle, "10.0.0.1:1", up.connected().await)
        .await
        .unwrap();
    let _second = admit(&svc, &mut handle, "10.0.0.2:1", up.connected().await)
        .await
        .unwrap();

    let start = Instant::now();
    let mut third = task::spawn(svc.clone().oneshot(request("10.0.0.3:1")));
    assert_pending!(third.poll());
    tokio::time::advance(Duration::from_secs(1)).await;
    let err = assert_ready_err!(third.poll());
    assert!(is_limit(&err, LimitScope::Route, 2), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(limit.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn global_limit_is_shared_by_routes() {
    let up = Upstream::bind().await;
    let global = ConnectionLimit::global(1);
    let (a_inner, mut a_handle) = mock();
    let (b_inner, mut b_handle) = mock();
    let route_a = AdmissionLayer::new(OnLimit::Reject, None, None, Some(global.clone()));
    let route_b = AdmissionLayer::new(OnLimit::Reject, None, None, Some(global.clone()));
    let (a, b) = (route_a.layer(a_inner), route_b.layer(b_inner));

    let held = admit(&a, &mut a_handle, "10.0.0.1:1", up.connected().await)
        .await
        .unwrap();
    let err = admit(&b, &mut b_handle, "10.0.0.2:1", up.connected().await)
        .await
        .unwrap_err();
    assert!(is_limit(&err, LimitScope::Global, 1), "{err}");

    drop(held);
    admit(&b, &mut b_handle, "10.0.0.2:1", up.connected().await)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn permits_live_as_long_as_the_connection() {
    let up = Upstream::bind().await;
    let (route, global) = (ConnectionLimit::route(3), ConnectionLimit::global(5));
    let (inner, mut handle) = mock();
    let layer = AdmissionLayer::new(
        OnLimit::Reject,
        None,
        Some(route.clone()),
        Some(global.clone()),
    );
    let svc = layer.layer(inner);

    let connected = admit(&svc, &mut handle, "10.0.0.1:1", up.connected().await)
        .await
        .unwrap();
    assert_eq!(connected.permits.len(), 2);
    assert_eq!((route.available(), global.available()), (2, 4));
    drop(connected);
    assert_eq!((route.available(), global.available()), (3, 5));

    // A failed connect gives its slots back at once.
    let mut call = task::spawn(svc.clone().oneshot(request("10.0.0.1:1")));
    assert_pending!(call.poll());
    assert_eq!((route.available(), global.available()), (2, 4));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_error("refused");
    assert_ready_err!(call.poll());
    assert_eq!((route.available(), global.available()), (3, 5));
}

fn client_limited(
    route: Option<ConnectionLimit>,
) -> (AdmissionLayer, Admission<MockInner>, Mocked) {
    let rate = RateLimitConfig {
        per_second: NonZeroU32::new(20).unwrap(),
        burst: NonZeroU32::new(20).unwrap(),
    };
    let layer = AdmissionLayer::new(OnLimit::Reject, Some(rate), route, None);
    let (inner, handle) = mock();
    (layer.clone(), layer.layer(inner), handle)
}

#[tokio::test(start_paused = true)]
async fn client_rate_limits_one_ip_not_others() {
    let (_, svc, mut handle) = client_limited(None);
    let mut passed = Vec::new();
    for n in 1..=30 {
        let mut call = task::spawn(svc.clone().oneshot(request("10.0.0.1:4000")));
        match call.poll() {
            Poll::Pending => passed.push(call),
            Poll::Ready(result) => {
                let err = result.unwrap_err();
                assert!(n > 20, "call {n} refused: {err}");
                assert!(matches!(
                    err,
                    ConnectError::RateLimited {
                        scope: LimitScope::Client,
                        per_second: 20
                    }
                ));
            }
        }
    }
    assert_eq!(passed.len(), 20);
    let mut other = task::spawn(svc.clone().oneshot(request("10.0.0.2:4000")));
    assert_pending!(other.poll());
    for _ in 0..21 {
        handle
            .next_request()
            .await
            .expect("admitted request reached the inner service");
    }
}

#[tokio::test(start_paused = true)]
async fn client_rate_is_checked_before_connection_limits() {
    let route = ConnectionLimit::route(100);
    let (layer, svc, _handle) = client_limited(Some(route.clone()));
    let mut held = Vec::new();
    for _ in 0..25 {
        let mut call = task::spawn(svc.clone().oneshot(request("10.0.0.1:4000")));
        if call.poll().is_pending() {
            held.push(call);
        }
    }
    // Only the 20 that got a client token took a route slot.
    assert_eq!(route.available(), 80);
    assert_eq!(layer.client_rate().map(ClientRateLimit::len), Some(1));
}
