//! The relay over real loopback sockets, in both modes (`copy::*` and `splice::*`, generated
//! by [`in_both_modes!`]): bytes in equal bytes out each way, half-close both ways, resets, the
//! idle timeout, the cut, and that no socket or pipe outlives its relay. Then what only the
//! splice path has: its fallback to copy on sockets that cannot splice.
//!
//! Every wait is bound by a deadline ([`within`]); nothing sleeps to let the relay catch up.

mod relay_support;

use std::io;
use std::time::Duration;

use relay_support::*;
use sluice::relay::{RelayEnd, RelayMode, Side};
#[cfg(target_os = "linux")]
use sluice::relay::{buffers_in_flight, pipes_in_flight, splice_fallbacks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Generates `copy::$name` and `splice::$name` for each `async fn $name(mode: RelayMode)`,
/// with the given test attributes, so the whole suite runs against both byte movers.
macro_rules! in_both_modes {
    ($($(#[$attr:meta])+ $name:ident;)+) => {
        mod copy {
            $($(#[$attr])+ async fn $name() { super::$name(super::RelayMode::Copy).await })+
        }
        mod splice {
            $($(#[$attr])+ async fn $name() { super::$name(super::RelayMode::Splice).await })+
        }
    };
}

in_both_modes! {
    #[tokio::test] one_byte_each_way;
    #[tokio::test] sixty_four_kib_each_way;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)] sixty_four_mib_each_way;
    #[tokio::test] held_bytes_go_first_and_are_counted;
    #[tokio::test] client_half_close_still_lets_the_reply_through;
    #[tokio::test] upstream_half_close_still_lets_the_client_send;
    #[tokio::test] upstream_reset_ends_the_relay_and_closes_the_client;
    #[tokio::test] client_reset_ends_the_relay_and_closes_the_upstream;
    #[tokio::test] an_idle_connection_is_closed_after_the_timeout;
    #[tokio::test] a_half_closed_connection_still_times_out;
    #[tokio::test] traffic_one_way_keeps_the_connection_open;
    #[tokio::test] cut_reports_the_bytes_so_far;
    #[cfg(target_os = "linux")] #[tokio::test] no_socket_outlives_its_relay;
}

// === byte-exactness ===

/// Sends `size` bytes each way at the same time and checks both arrive whole.
async fn round_trip(mode: RelayMode, size: usize) {
    transfer(Conn::start(settings(mode)).await, size).await;
}

/// Sends `size` bytes each way through `conn` at once, checks both arrive whole, then that the
/// relay completed with exact counts.
async fn transfer(conn: Conn, size: usize) {
    let (client_rd, client_wr) = conn.client.into_split();
    let (upstream_rd, upstream_wr) = conn.upstream.into_split();
    // About 2 s for 64 MiB in a debug build on 2 cores, mostly making and summing the bytes;
    // the deadline only has to catch a stall.
    let deadline = DEADLINE + Duration::from_secs((size >> 20) as u64);
    let (sent_up, got_up, sent_down, got_down) = within_for(deadline, "transfer", async {
        tokio::join!(
            send(client_wr, 1, size),
            receive(upstream_rd, size),
            send(upstream_wr, 2, size),
            receive(client_rd, size),
        )
    })
    .await;
    assert_eq!(sent_up, got_up, "client -> upstream");
    assert_eq!(sent_down, got_down, "upstream -> client");

    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!(
        (report.bytes_up, report.bytes_down),
        (size as u64, size as u64)
    );
    assert!(report.first_close.is_some());
}

async fn one_byte_each_way(mode: RelayMode) {
    round_trip(mode, 1).await;
}

async fn sixty_four_kib_each_way(mode: RelayMode) {
    round_trip(mode, 64 * 1024).await;
}

async fn sixty_four_mib_each_way(mode: RelayMode) {
    let started = Instant::now();
    round_trip(mode, 64 * 1024 * 1024).await;
    println!("64 MiB each way in {:?}", started.elapsed());
}

// === held bytes and half-close ===

async fn held_bytes_go_first_and_are_counted(mode: RelayMode) {
    let _shared = SOCKETS.read().await;
    let mut ends = Ends::new().await;
    // Already in the relay's receive queue when it starts, yet must follow the held bytes.
    ends.client.write_all(b" world").await.unwrap();
    let mut conn = ends.spawn(b"hello", settings(mode));

    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, b"hello world");
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, b"");

    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!((report.bytes_up, report.bytes_down), (11, 0));
}

async fn client_half_close_still_lets_the_reply_through(mode: RelayMode) {
    let mut conn = Conn::start(settings(mode)).await;
    conn.client.write_all(&[7; 1000]).await.unwrap();
    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, [7; 1000]);

    // The upstream saw the FIN; its own direction is still open.
    assert!(!conn.relay.is_finished());
    let reply = vec![9; 50_000];
    conn.upstream.write_all(&reply).await.unwrap();
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, reply);

    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!(report.first_close, Some(Side::Client));
    assert_eq!((report.bytes_up, report.bytes_down), (1000, 50_000));
}

async fn upstream_half_close_still_lets_the_client_send(mode: RelayMode) {
    let mut conn = Conn::start(settings(mode)).await;
    conn.upstream.write_all(&[3; 3000]).await.unwrap();
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, [3; 3000]);

    assert!(!conn.relay.is_finished());
    conn.client.write_all(&[4; 700]).await.unwrap();
    let mut got = [0; 700];
    within("late bytes", conn.upstream.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, [4; 700]);
    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");

    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!(report.first_close, Some(Side::Upstream));
    assert_eq!((report.bytes_up, report.bytes_down), (700, 3000));
}

// === resets ===

async fn upstream_reset_ends_the_relay_and_closes_the_client(mode: RelayMode) {
    let mut conn = Conn::start(settings(mode)).await;
    conn.upstream.set_zero_linger().unwrap();
    drop(conn.upstream);

    // The relay closes the client socket on its way out; the client must notice promptly.
    assert_eq!(read_to_end(&mut conn.client).await, b"");
    let report = within("relay", conn.relay).await.unwrap();
    match &report.end {
        RelayEnd::Error { side, error } => {
            assert_eq!(*side, Side::Upstream);
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        }
        end => panic!("expected an upstream error, got {end:?}"),
    }
    assert_eq!(report.first_close, Some(Side::Upstream));
}

async fn client_reset_ends_the_relay_and_closes_the_upstream(mode: RelayMode) {
    let mut conn = Conn::start(settings(mode)).await;
    conn.client.write_all(b"request").await.unwrap();
    let mut got = [0; 7];
    within("request", conn.upstream.read_exact(&mut got))
        .await
        .unwrap();
    conn.client.set_zero_linger().unwrap();
    drop(conn.client);

    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
    let report = within("relay", conn.relay).await.unwrap();
    assert!(
        matches!(
            report.end,
            RelayEnd::Error {
                side: Side::Client,
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(
        (report.bytes_up, report.first_close),
        (7, Some(Side::Client))
    );
}

// === idle timeout and cut ===

async fn an_idle_connection_is_closed_after_the_timeout(mode: RelayMode) {
    let idle = Duration::from_millis(200);
    let mut conn = Conn::start(idle_after(mode, idle)).await;
    let started = Instant::now();

    assert_eq!(read_to_end(&mut conn.client).await, b"");
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::IdleTimeout), "{report:?}");
    assert!(
        started.elapsed() >= idle,
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(
        (report.bytes_up, report.bytes_down, report.first_close),
        (0, 0, None)
    );
}

async fn a_half_closed_connection_still_times_out(mode: RelayMode) {
    let mut conn = Conn::start(idle_after(mode, Duration::from_millis(200))).await;
    // The upstream half-closes and then never reads or closes: without the timer both of the
    // relay's sockets would stay open (FIN_WAIT2 towards the client, CLOSE_WAIT upstream).
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, b"");

    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::IdleTimeout), "{report:?}");
    assert_eq!(report.first_close, Some(Side::Upstream));
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
}

async fn traffic_one_way_keeps_the_connection_open(mode: RelayMode) {
    let mut conn = Conn::start(idle_after(mode, Duration::from_millis(200))).await;
    let mut pacing = tokio::time::interval(Duration::from_millis(50));
    // Pacing the traffic, not synchronizing: each byte is waited for before the next tick.
    for _ in 0..12 {
        pacing.tick().await;
        conn.client.write_all(b"x").await.unwrap();
        let mut byte = [0];
        within("byte", conn.upstream.read_exact(&mut byte))
            .await
            .unwrap();
    }
    assert!(!conn.relay.is_finished(), "cut while busy");

    conn.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
    conn.upstream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut conn.client).await, b"");
    let report = conn.report().await;
    assert!(matches!(report.end, RelayEnd::Completed), "{report:?}");
    assert_eq!((report.bytes_up, report.bytes_down), (12, 0));
}

async fn cut_reports_the_bytes_so_far(mode: RelayMode) {
    let mut conn = Conn::start(settings(mode)).await;
    conn.client.write_all(&[1; 100]).await.unwrap();
    conn.upstream.write_all(&[2; 200]).await.unwrap();
    let (mut up, mut down) = ([0; 100], [0; 200]);
    within("up", conn.upstream.read_exact(&mut up))
        .await
        .unwrap();
    within("down", conn.client.read_exact(&mut down))
        .await
        .unwrap();

    conn.cut.cancel();
    let report = within("relay", conn.relay).await.unwrap();
    assert!(matches!(report.end, RelayEnd::Cut), "{report:?}");
    assert_eq!(
        (report.bytes_up, report.bytes_down, report.first_close),
        (100, 200, None)
    );
    assert_eq!(read_to_end(&mut conn.client).await, b"");
    assert_eq!(read_to_end(&mut conn.upstream).await, b"");
}

// === resources ===

#[cfg(target_os = "linux")]
async fn no_socket_outlives_its_relay(mode: RelayMode) {
    let _alone = SOCKETS.write().await;
    let before = open_tcp_sockets();

    for i in 0..200 {
        // Every way a relay can end, in turn; only the last two wait for the idle timer.
        let settings = match i % 5 {
            3 | 4 => idle_after(mode, Duration::from_millis(20)),
            _ => settings(mode),
        };
        let mut conn = Ends::new().await.spawn(b"held", settings);
        if i == 0 {
            assert!(
                open_tcp_sockets() >= before + 4,
                "counting sockets does not work"
            );
        }
        match i % 5 {
            0 => {
                conn.client.shutdown().await.unwrap();
                read_to_end(&mut conn.upstream).await;
                conn.upstream.write_all(b"bye").await.unwrap();
                conn.upstream.shutdown().await.unwrap();
                read_to_end(&mut conn.client).await;
            }
            1 => {
                conn.upstream.set_zero_linger().unwrap();
                drop(conn.upstream);
                read_to_end(&mut conn.client).await;
            }
            2 => conn.cut.cancel(),
            3 => {
                // Half-closed, then left idle.
                conn.upstream.shutdown().await.unwrap();
            }
            _ => {}
        }
        within("relay", conn.relay).await.unwrap();
    }

    let deadline = Instant::now() + DEADLINE;
    let mut now_open = open_tcp_sockets();
    while now_open > before && Instant::now() < deadline {
        tokio::task::yield_now().await;
        now_open = open_tcp_sockets();
    }
    assert!(
        now_open <= before,
        "{now_open} sockets open, {before} before the relays"
    );
    assert_eq!(buffers_in_flight(), 0);
    assert_eq!(pipes_in_flight(), 0);
}

// === splice only ===

/// A socket with `O_APPEND` set takes `write` as usual but refuses splice into it (`EINVAL`):
/// a real fd on which each direction must give up splicing, with bytes already in its pipe,
/// and still deliver every byte by copying.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_falls_back_to_copy_on_sockets_that_refuse_it() {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};

    let _shared = SOCKETS.read().await;
    let ends = Ends::new().await;
    for socket in [&ends.relay_client, &ends.relay_upstream] {
        let flags = fcntl_getfl(socket).unwrap();
        fcntl_setfl(socket, flags | OFlags::APPEND).unwrap();
    }
    let fallbacks = splice_fallbacks();
    transfer(ends.spawn(b"", settings(RelayMode::Splice)), 1 << 20).await;
    // No other test here makes splice fail, so both of these are this relay's directions.
    assert!(
        splice_fallbacks() >= fallbacks + 2,
        "{} fallbacks, {fallbacks} before",
        splice_fallbacks()
    );
}
