//! Unit tests for what the integration tests cannot see: buffer and pipe lending, the future's
//! size, the idle timer's re-arming under a paused clock, and the splice path with a pipe pool
//! of its own (reuse, fallback through a failure hook, pipes holding bytes at a cut).
//! Behaviour over sockets in every mode is in `tests/relay.rs`.

use super::*;

use sluice_testkit::settle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Duration;

const SETTINGS: RelaySettings = RelaySettings {
    idle_timeout: None,
    buffer_size: 16 * 1024,
    mode: RelayMode::Auto,
    pipe_size: None,
};

/// Two connected loopback sockets.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (dialed.unwrap(), accepted.unwrap().0)
}

/// (client, relay's client end, relay's upstream end, upstream)
async fn ends() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
    let (client, relay_client) = pair().await;
    let (relay_upstream, upstream) = pair().await;
    (client, relay_client, relay_upstream, upstream)
}

#[tokio::test]
async fn relay_future_size() {
    let (_client, relay_client, relay_upstream, _upstream) = ends().await;
    let cut = CancellationToken::new();
    let fut = relay(relay_client, relay_upstream, Vec::new(), SETTINGS, &cut);
    let size = std::mem::size_of_val(&fut);
    println!("relay future: {size} bytes");
    // Per-connection state (960 bytes in a debug build, 944 in release with rustc 1.95, splice
    // path included); copy buffers and pipes are pooled, not in here, so only a gross
    // regression should trip this.
    assert!(size <= 1536, "relay future grew to {size} bytes");
}

#[tokio::test]
async fn an_idle_relay_holds_no_buffer_and_no_pipe() {
    // The pool is global: relays of other tests may borrow from it too, but only briefly, so
    // "eventually none lent" still shows that this idle relay holds none.
    let (mut client, relay_client, relay_upstream, mut upstream) = ends().await;
    let cut = CancellationToken::new();
    let task = {
        let cut = cut.clone();
        tokio::spawn(async move {
            relay(
                relay_client,
                relay_upstream,
                b"held".to_vec(),
                SETTINGS,
                &cut,
            )
            .await
        })
    };

    client.write_all(b"ping").await.unwrap();
    let mut got = [0; 8];
    upstream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"heldping");
    upstream.write_all(b"pong").await.unwrap();
    client.read_exact(&mut got[..4]).await.unwrap();
    assert_eq!(&got[..4], b"pong");

    // The relay may still be between handing over the last write and giving the buffer (or,
    // splicing in `Auto` mode, the pipe) back.
    settle(
        Duration::from_secs(5),
        async || (buffers_in_flight(), pipes_in_flight()),
        |&held| held == (0, 0),
    )
    .await;
    assert_eq!(buffers_in_flight(), 0, "an idle relay still holds a buffer");
    assert_eq!(pipes_in_flight(), 0, "an idle relay still holds a pipe");
    assert!(!task.is_finished());

    cut.cancel();
    let report = task.await.unwrap();
    assert!(matches!(report.end, RelayEnd::Cut), "{report:?}");
    assert_eq!((report.bytes_up, report.bytes_down), (8, 4));
}

fn idle_settings(idle: Duration) -> RelaySettings {
    RelaySettings {
        idle_timeout: Some(idle),
        ..SETTINGS
    }
}

// A paused clock jumps to the next timer as soon as the runtime has nothing to do, so these
// measure exactly when the relay gave up.
#[tokio::test(start_paused = true)]
async fn idle_timeout_fires_after_exactly_the_timeout() {
    let idle = Duration::from_secs(300);
    let (_client, relay_client, relay_upstream, _upstream) = ends().await;
    let started = Instant::now();
    let cut = CancellationToken::new();
    let report = relay(
        relay_client,
        relay_upstream,
        Vec::new(),
        idle_settings(idle),
        &cut,
    )
    .await;
    assert!(matches!(report.end, RelayEnd::IdleTimeout), "{report:?}");
    assert_eq!(started.elapsed(), idle);
    assert_eq!(report.first_close, None);
}

/// The silent watch times from the client's first bytes (not from the connect), reports once,
/// and with `close` ends the relay exactly one period later; an idle timeout still applies.
#[tokio::test(start_paused = true)]
async fn silent_watch_times_from_the_clients_first_bytes() {
    use std::sync::Mutex;
    let period = Duration::from_secs(2);
    let (mut client, relay_client, relay_upstream, mut upstream) = ends().await;
    let started = Instant::now();
    let seen: &'static Mutex<Vec<Duration>> = Box::leak(Box::default());
    let on_silent: &'static (dyn Fn(Duration) + Sync) =
        Box::leak(Box::new(|after| seen.lock().unwrap().push(after)));
    let task = tokio::spawn(async move {
        let cut = CancellationToken::new();
        let watch = SilentWatch {
            after: period,
            close: true,
            on_silent,
        };
        let report = relay_watched(
            relay_client,
            relay_upstream,
            Vec::new(),
            idle_settings(Duration::from_secs(300)),
            Some(watch),
            &cut,
        );
        (report.await, Instant::now())
    });
    // Neither side speaks for many periods: nothing to time.
    tokio::time::sleep(period * 10).await;
    assert!(seen.lock().unwrap().is_empty());
    client.write_all(b"request").await.unwrap();
    let mut got = [0u8; 7];
    upstream.read_exact(&mut got).await.unwrap();

    let (report, ended) = task.await.unwrap();
    assert!(matches!(report.end, RelayEnd::Silent), "{report:?}");
    assert_eq!(ended - started, period * 11);
    assert_eq!(*seen.lock().unwrap(), vec![period]);
    assert_eq!(report.bytes_up, 7);
}

/// A member that answers within the period is never reported.
#[tokio::test(start_paused = true)]
async fn silent_watch_stops_when_the_member_answers() {
    let (mut client, relay_client, relay_upstream, mut upstream) = ends().await;
    let on_silent = |_: Duration| panic!("the member answered");
    let watch = SilentWatch {
        after: Duration::from_secs(2),
        close: true,
        on_silent: &on_silent,
    };
    let cut = CancellationToken::new();
    let relay = relay_watched(
        relay_client,
        relay_upstream,
        Vec::new(),
        idle_settings(Duration::from_secs(300)),
        Some(watch),
        &cut,
    );
    let peers = async {
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        upstream.write_all(b"pong").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // Long past the period, then both close.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(client);
        drop(upstream);
    };
    let (report, ()) = tokio::join!(relay, peers);
    assert!(
        !matches!(report.end, RelayEnd::Silent | RelayEnd::IdleTimeout),
        "{report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn traffic_pushes_the_idle_deadline_back_by_what_is_left() {
    let idle = Duration::from_secs(300);
    let (mut client, relay_client, relay_upstream, mut upstream) = ends().await;
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let cut = CancellationToken::new();
        let report = relay(
            relay_client,
            relay_upstream,
            Vec::new(),
            idle_settings(idle),
            &cut,
        );
        (report.await, Instant::now())
    });

    tokio::time::sleep(Duration::from_secs(100)).await;
    client.write_all(b"x").await.unwrap();
    let mut byte = [0];
    upstream.read_exact(&mut byte).await.unwrap();

    let (report, ended) = task.await.unwrap();
    assert!(matches!(report.end, RelayEnd::IdleTimeout), "{report:?}");
    assert_eq!(report.bytes_up, 1);
    // Re-armed for the remainder (100s + 300s), not for a whole period from the first expiry.
    assert_eq!(ended - started, Duration::from_secs(400));
}

// === splice ===

#[cfg(target_os = "linux")]
mod splicing {
    //! The splice path with a pool of the test's own, so pipe counts are this test's alone.

    use super::*;
    use crate::relay::copy::{Activity, Env};
    use crate::relay::pipe::PipePool;
    use crate::relay::splice::{self, AUTO_FULL_READS, Splice};

    /// A pool that outlives the spawned relay.
    fn pool(max_free: usize) -> &'static PipePool {
        Box::leak(Box::new(PipePool::new(max_free)))
    }

    fn spawn(
        (relay_client, relay_upstream): (TcpStream, TcpStream),
        held: &[u8],
        pipes: &'static PipePool,
        fail_first: bool,
        after_full_reads: u32,
    ) -> (CancellationToken, tokio::task::JoinHandle<RelayReport>) {
        let cut = CancellationToken::new();
        let env = Env {
            pool: BufferPool::global(),
            buffer_size: SETTINGS.buffer_size,
            activity: Activity::new(),
            directions_ended: Default::default(),
            splice: Some(Splice {
                pipes,
                pipe_size: None,
                after_full_reads,
                fail_first,
            }),
            silent: None,
        };
        let task = tokio::spawn({
            let (cut, held) = (cut.clone(), held.to_vec());
            async move { run(relay_client, relay_upstream, held, None, env, &cut).await }
        });
        (cut, task)
    }

    /// `size` bytes each way at once, then both sides close; returns the relay's report.
    async fn exchange(pipes: &'static PipePool, fail_first: bool, size: usize) -> RelayReport {
        let (client, relay_client, relay_upstream, upstream) = ends().await;
        let (_cut, task) = spawn(
            (relay_client, relay_upstream),
            b"held",
            pipes,
            fail_first,
            0,
        );
        let (mut client_rd, mut client_wr) = client.into_split();
        let (mut upstream_rd, mut upstream_wr) = upstream.into_split();
        let (up, down) = (vec![1; size], vec![2; size]);
        let mut expected_up = b"held".to_vec();
        expected_up.extend_from_slice(&up);

        let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
        let ((), (), _, _) = tokio::join!(
            async {
                client_wr.write_all(&up).await.unwrap();
                client_wr.shutdown().await.unwrap();
            },
            async {
                upstream_wr.write_all(&down).await.unwrap();
                upstream_wr.shutdown().await.unwrap();
            },
            upstream_rd.read_to_end(&mut got_up),
            client_rd.read_to_end(&mut got_down),
        );
        assert!(got_up == expected_up, "client -> upstream bytes differ");
        assert!(got_down == down, "upstream -> client bytes differ");
        let report = task.await.unwrap();
        assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
        assert_eq!(
            (report.bytes_up, report.bytes_down),
            (size as u64 + 4, size as u64)
        );
        report
    }

    #[tokio::test]
    async fn a_failing_first_splice_falls_back_to_copy_for_every_byte() {
        let pipes = pool(4);
        let fallbacks = splice::fallbacks();
        exchange(pipes, true, 1 << 20).await;
        assert!(
            splice::fallbacks() >= fallbacks + 2,
            "both directions fell back"
        );
        // Each direction took a pipe, failed on it, and gave it back empty.
        assert_eq!(pipes.lent(), 0);
        assert_eq!(pipes.free() as u64, pipes.created());
    }

    #[tokio::test]
    async fn relays_reuse_pooled_pipes() {
        let pipes = pool(4);
        for _ in 0..10 {
            exchange(pipes, false, 256 * 1024).await;
        }
        // At most one pipe per direction at a time, each back in the pool once idle.
        assert!(
            (1..=2).contains(&pipes.created()),
            "{} pipes",
            pipes.created()
        );
        assert_eq!(pipes.lent(), 0);
        assert!(pipes.free() <= 4);
    }

    #[tokio::test]
    async fn a_pipe_holding_bytes_at_the_cut_is_closed_not_pooled() {
        let pipes = pool(4);
        let (mut client, relay_client, relay_upstream, _upstream) = ends().await;
        let (cut, task) = spawn((relay_client, relay_upstream), b"", pipes, false, 0);
        // The upstream never reads: the relay fills its pipe and then waits to empty it.
        let writer = tokio::spawn(async move {
            let chunk = vec![0; 64 * 1024];
            while client.write_all(&chunk).await.is_ok() {}
        });

        // On this single-threaded runtime the relay is never mid-poll while this task runs,
        // and between polls it holds a pipe only if bytes sit in it (an empty one goes back
        // before it waits on its source). So one lent pipe means one pipe holding bytes.
        settle(
            Duration::from_secs(10),
            async || pipes.lent(),
            |&lent| lent == 1,
        )
        .await;
        assert_eq!(
            pipes.lent(),
            1,
            "the relay never stalled with bytes in its pipe"
        );

        cut.cancel();
        let report = task.await.unwrap();
        assert!(matches!(report.end, RelayEnd::Cut), "{report:?}");
        assert_eq!((pipes.lent(), pipes.free(), pipes.created()), (0, 0, 1));
        writer.await.unwrap();
    }

    /// `Auto`: request/response messages are copied (no pipe is ever taken), then a bulk
    /// transfer on the same connection fills the buffer twice in a row and splices.
    #[tokio::test]
    async fn auto_copies_messages_and_splices_a_bulk_transfer() {
        let pipes = pool(4);
        let (mut client, relay_client, relay_upstream, mut upstream) = ends().await;
        let (_cut, task) = spawn(
            (relay_client, relay_upstream),
            b"",
            pipes,
            false,
            AUTO_FULL_READS,
        );
        let (request, reply) = ([1u8; 100], [2u8; 1000]);
        for _ in 0..20 {
            client.write_all(&request).await.unwrap();
            let mut got = [0u8; 100];
            upstream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, request);
            upstream.write_all(&reply).await.unwrap();
            let mut got = [0u8; 1000];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, reply);
        }
        assert_eq!(pipes.created(), 0, "messages never take a pipe");

        let bulk: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (mut got, ()) = tokio::join!(
            async {
                let mut got = vec![0; bulk.len()];
                client.read_exact(&mut got).await.unwrap();
                got
            },
            async {
                upstream.write_all(&bulk).await.unwrap();
                upstream.shutdown().await.unwrap();
            },
        );
        assert!(got == bulk, "bulk bytes differ");
        assert!(pipes.created() >= 1, "the bulk transfer spliced");
        client.shutdown().await.unwrap();
        got.clear();
        assert_eq!(upstream.read_to_end(&mut got).await.unwrap(), 0);
        let report = task.await.unwrap();
        assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
        assert_eq!(
            (report.bytes_up, report.bytes_down),
            (20 * 100, 20 * 1000 + (4 << 20))
        );
        assert_eq!(pipes.lent(), 0);
    }
}
