//! Relay: copies bytes both ways between a client and its upstream until both directions end.
//!
//! It owns the two sockets for the life of the connection: half-close (a FIN from one side
//! becomes `shutdown(Write)` towards the other while the reverse direction keeps flowing), the
//! idle timeout, the shutdown cut, and byte counts per direction. Both sockets are closed when
//! [`relay`] returns, whatever the reason. It leaves socket options (`TCP_NODELAY`), logging the
//! outcome and metrics to the caller, which gets everything it needs in the [`RelayReport`].
//!
//! Each direction is a `copy::Flow`. It moves bytes through a pooled buffer (`buffer.rs`) or,
//! on Linux, with `splice(2)` through a pooled pipe (`splice.rs`, `pipe.rs`): from the first
//! byte in `Splice` mode, once the direction looks bulk (reads in a row fill the buffer) in
//! `Auto` mode, never in `Copy` mode; a direction whose splice turns out unusable copies. Buffer
//! and pipe are held only while bytes are in flight.

mod buffer;
mod copy;
#[cfg(target_os = "linux")]
mod pipe;
#[cfg(target_os = "linux")]
mod splice;

pub use crate::config::RelayMode;
use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::time::later;

use buffer::BufferPool;
use copy::{Activity, Env, Fault, Flow, Silent, SilentCheck};

/// Per-route relay settings.
#[derive(Clone, Copy, Debug)]
pub struct RelaySettings {
    /// Cut the connection after this long with no byte in either direction; `None` = never.
    ///
    /// The timer keeps running after one side has sent its FIN, so a peer that never finishes
    /// its half cannot pin both sockets (one in `FIN_WAIT2`, one in `CLOSE_WAIT`) forever.
    /// With `None`, such a connection lives until the cut. `Some(Duration::ZERO)` ends the relay
    /// at once.
    pub idle_timeout: Option<Duration>,
    /// Size in bytes of a pooled copy buffer, borrowed only while data is in flight: the most
    /// one read moves. Zero is treated as 1.
    pub buffer_size: usize,
    /// Splice, copy, or copy until a direction looks bulk and then splice (`Auto`). On Linux
    /// both splicing modes fall back to copy per direction if splice fails before a spliced
    /// byte moved; elsewhere they copy.
    pub mode: RelayMode,
    /// Capacity in bytes asked of each splice pipe (`F_SETPIPE_SZ`, rounded up by the kernel
    /// to a power-of-two number of pages); `None` keeps the kernel's default (64 KiB). A size
    /// the kernel refuses leaves the default.
    pub pipe_size: Option<usize>,
}

/// Watch for a member that accepted and then says nothing: the client has spoken and the
/// member has sent nothing (no byte, no FIN) for `after` since the client's first bytes were
/// handed to its socket.
///
/// Armed only by the client: a member that speaks first (a server-greeting protocol) is never
/// watched. The relay's one timer does the timing, so the watch adds no timer and nothing to
/// the copy loop; each direction stamps what it saw first once, before its copy begins.
#[derive(Clone, Copy)]
pub struct SilentWatch<'a> {
    /// The period; not zero.
    pub after: Duration,
    /// End the connection when the period runs out ([`RelayEnd::Silent`]); otherwise it goes
    /// on and the member may still answer.
    pub close: bool,
    /// Called once, from the relay's task, when the period runs out, with the time since the
    /// client's first bytes reached the member.
    pub on_silent: &'a (dyn Fn(Duration) + Sync),
}

impl std::fmt::Debug for SilentWatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SilentWatch")
            .field("after", &self.after)
            .field("close", &self.close)
            .finish_non_exhaustive()
    }
}

/// Which end of a relayed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The accepted connection.
    Client,
    /// The connection sluice dialed to a pool member.
    Upstream,
}

/// Why the relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both directions reached end of stream and were shut down in order.
    Completed,
    /// Nothing moved in either direction for the idle timeout.
    IdleTimeout,
    /// The cut token fired (shutdown grace ran out).
    Cut,
    /// The member stayed silent after the client spoke, and the [`SilentWatch`] closes.
    Silent,
    /// A read, write or shutdown failed on `side`'s socket (reset, broken pipe...). The other
    /// direction is abandoned.
    Error { side: Side, error: io::Error },
}

/// What a finished relay reports for logs and metrics.
#[derive(Debug)]
pub struct RelayReport {
    /// Bytes written to the upstream (client -> upstream), including `held` bytes.
    pub bytes_up: u64,
    /// Bytes written to the client (upstream -> client).
    pub bytes_down: u64,
    /// Who sent FIN (or failed) first, if anyone did. `None` after an idle timeout or a cut
    /// that came while both directions were open.
    pub first_close: Option<Side>,
    pub end: RelayEnd,
}

// === impl Side ===

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

/// Copy buffers currently lent to relays, i.e. directions with bytes in flight. Idle
/// connections hold none, so this stays near zero on a quiet forwarder whatever its
/// connection count.
pub fn buffers_in_flight() -> usize {
    BufferPool::global().lent()
}

/// Splice pipes lent to relays, i.e. directions with bytes in flight through a pipe. Like
/// [`buffers_in_flight`], near zero on a quiet forwarder. Always zero off Linux.
pub fn pipes_in_flight() -> usize {
    #[cfg(target_os = "linux")]
    return pipe::PipePool::global().lent();
    #[cfg(not(target_os = "linux"))]
    0
}

/// Empty splice pipes kept for reuse, two fds each; at most 64. Zero off Linux.
pub fn pipes_pooled() -> usize {
    #[cfg(target_os = "linux")]
    return pipe::PipePool::global().free();
    #[cfg(not(target_os = "linux"))]
    0
}

/// Relay directions that could not splice and copied instead, since the process started.
pub fn splice_fallbacks() -> u64 {
    #[cfg(target_os = "linux")]
    return splice::fallbacks();
    #[cfg(not(target_os = "linux"))]
    0
}

/// Relays until both directions are done, the idle timeout fires or `cut` is cancelled.
///
/// `held` are client bytes read before the upstream was connected; they go out first and count
/// in `bytes_up`. Both sockets are dropped, and so closed, before this returns; a cut or timeout
/// does not shut them down gracefully first (unread data makes the kernel send a reset).
///
/// The returned future is the whole per-connection state: 960 bytes in a debug build, 944 in
/// release with rustc 1.95 (the `relay_future_size` unit test prints it). It holds no copy
/// buffer and no pipe while the connection is idle.
pub fn relay(
    client: TcpStream,
    upstream: TcpStream,
    held: Vec<u8>,
    settings: RelaySettings,
    cut: &CancellationToken,
) -> impl Future<Output = RelayReport> + Send + '_ {
    relay_watched(client, upstream, held, settings, None, cut)
}

/// [`relay`] with a [`SilentWatch`] on the member (`None`: exactly [`relay`]).
pub fn relay_watched<'a>(
    client: TcpStream,
    upstream: TcpStream,
    held: Vec<u8>,
    settings: RelaySettings,
    silent: Option<SilentWatch<'a>>,
    cut: &'a CancellationToken,
) -> impl Future<Output = RelayReport> + Send + 'a {
    let env = Env {
        pool: BufferPool::global(),
        buffer_size: settings.buffer_size.max(1),
        activity: Activity::new(),
        directions_ended: Default::default(),
        #[cfg(target_os = "linux")]
        splice: splice::Splice::for_mode(settings.mode, settings.pipe_size),
        silent: silent.map(Silent::new),
    };
    run(client, upstream, held, settings.idle_timeout, env, cut)
}

/// [`relay`] with its resources chosen, so unit tests can hand in their own pools.
///
/// A plain `fn` around an `async move` block rather than an `async fn`: the block uses its
/// captures in place, where an `async fn` would keep a second copy of every argument (sockets,
/// `env`) in the future.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
fn run<'a>(
    mut client: TcpStream,
    mut upstream: TcpStream,
    held: Vec<u8>,
    idle_timeout: Option<Duration>,
    env: Env<'a>,
    cut: &'a CancellationToken,
) -> impl Future<Output = RelayReport> + Send + 'a {
    async move {
        // Borrowed halves: the sockets stay owned by this frame, so every return path closes them.
        let (client_rd, client_wr) = client.split();
        let (upstream_rd, upstream_wr) = upstream.split();
        let mut up = Flow::new(Side::Client, client_rd, upstream_wr, held);
        let mut down = Flow::new(Side::Upstream, upstream_rd, client_wr, Vec::new());

        let mut first_close = None;
        let end = {
            let mut up_done = false;
            let mut down_done = false;
            let mut up_copy = pin!(up.run(&env));
            let mut down_copy = pin!(down.run(&env));
            let mut cancelled = pin!(cut.cancelled());
            // One timer for the whole connection. Traffic only stamps `env.activity`; when the
            // timer fires early it is re-armed for what is left, so a busy connection costs one
            // timer event per idle period instead of a timer reset per read. The silent watch
            // shares it: once the client has spoken (the `armed` branch) it fires at the earlier
            // of the two deadlines until the member speaks or the period runs out.
            let mut watching = env.silent.is_some();
            let mut armed = false;
            let mut timed = idle_timeout.is_some();
            let mut idle = pin!(tokio::time::sleep_until(later(
                env.activity.start(),
                idle_timeout.unwrap_or(Duration::ZERO)
            )));

            loop {
                // Biased: checking the cut first costs nothing and makes it win over more traffic.
                let done = tokio::select! {
                    biased;
                    () = &mut cancelled => break RelayEnd::Cut,
                    r = &mut up_copy, if !up_done => {
                        up_done = true;
                        r.map(|()| Side::Client)
                    }
                    r = &mut down_copy, if !down_done => {
                        down_done = true;
                        r.map(|()| Side::Upstream)
                    }
                    // Ready once either side has spoken; the client's stamp wakes this task.
                    check = poll_fn(|_| match env.silent.as_ref() {
                        Some(s) => match s.check(&env.activity, Instant::now()) {
                            SilentCheck::Waiting => Poll::Pending,
                            check => Poll::Ready(check),
                        },
                        None => Poll::Pending,
                    }), if watching && !armed => {
                        armed = true;
                        match check {
                            SilentCheck::Answered => watching = false,
                            SilentCheck::At(at) => {
                                let at = if timed { at.min(idle.deadline()) } else { at };
                                idle.as_mut().reset(at);
                                timed = true;
                            }
                            // The period already ran out (a stalled task): the timer branch
                            // reports it at once.
                            SilentCheck::Silent(_) | SilentCheck::Waiting => {
                                idle.as_mut().reset(Instant::now());
                                timed = true;
                            }
                        }
                        continue;
                    }
                    () = &mut idle, if timed => {
                        let now = Instant::now();
                        let mut next = None;
                        if let Some(timeout) = idle_timeout {
                            let deadline = later(env.activity.last(), timeout);
                            if deadline <= now {
                                break RelayEnd::IdleTimeout;
                            }
                            next = Some(deadline);
                        }
                        if let Some(silent) = env.silent.as_ref().filter(|_| watching) {
                            match silent.check(&env.activity, now) {
                                SilentCheck::Answered => watching = false,
                                SilentCheck::Waiting => {}
                                SilentCheck::At(at) => {
                                    next = Some(next.map_or(at, |n: Instant| n.min(at)));
                                }
                                SilentCheck::Silent(after) => {
                                    watching = false;
                                    (silent.watch.on_silent)(after);
                                    if silent.watch.close {
                                        break RelayEnd::Silent;
                                    }
                                }
                            }
                        }
                        match next {
                            Some(at) => idle.as_mut().reset(at),
                            None => timed = false,
                        }
                        continue;
                    }
                };
                match done {
                    Ok(fin_from) => {
                        first_close.get_or_insert(fin_from);
                    }
                    Err(Fault { side, error }) => {
                        first_close.get_or_insert(side);
                        break RelayEnd::Error { side, error };
                    }
                }
                if up_done && down_done {
                    break RelayEnd::Completed;
                }
            }
        };
        RelayReport {
            bytes_up: up.bytes,
            bytes_down: down.bytes,
            first_close,
            end,
        }
    }
}

#[cfg(test)]
mod tests;
