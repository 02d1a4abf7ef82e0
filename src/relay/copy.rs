//! One direction of a relay: held bytes first, then the byte mover, then, on end of stream, a
//! shutdown of the sink's write half.
//!
//! Two movers keep the same contract (count every byte written, touch the activity clock,
//! report whose socket failed): the user-space copy here, through a pooled buffer, and on Linux
//! `splice.rs`, which hands a direction back to the copy if splice turns out unusable.
//! Running both directions, timeouts and the cut belong to `mod.rs`.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::{Duration, Instant};

use super::Side;
use super::buffer::{BufferPool, PooledBuf};
#[cfg(target_os = "linux")]
use super::splice::Splice;

/// What both directions of one relay share.
pub(super) struct Env<'a> {
    pub(super) pool: &'a BufferPool,
    /// Never zero: a zero-length read would look like end of stream.
    pub(super) buffer_size: usize,
    pub(super) activity: Activity,
    /// Directions that reached end of stream; the second one to get there skips its shutdown.
    pub(super) directions_ended: AtomicU8,
    /// Where splice pipes come from; `None` copies (`RelayMode::Copy`).
    #[cfg(target_os = "linux")]
    pub(super) splice: Option<Splice<'a>>,
    /// Watch for a member that stays silent after the client spoke; `None` = off.
    pub(super) silent: Option<Silent<'a>>,
}

/// The silent-member watch of one relay (see [`SilentWatch`](super::SilentWatch)): what each
/// direction saw first, stamped once per direction before its copy begins, never in the copy.
pub(super) struct Silent<'a> {
    pub(super) watch: super::SilentWatch<'a>,
    /// Nanoseconds after `Activity::start` at which the client's first bytes were written to
    /// the member, plus one; zero until then.
    client_spoke: AtomicU64,
    /// The member's socket became readable (a byte, its FIN or an error): it is not silent.
    member_spoke: AtomicBool,
}

/// Where the silent watch stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SilentCheck {
    /// The member spoke first, or after the client within the period: stop watching.
    Answered,
    /// Neither has spoken: nothing to time yet (no timer for this).
    Waiting,
    /// The period ends at this instant.
    At(Instant),
    /// The client's first bytes reached the member this long ago and nothing came back.
    Silent(Duration),
}

/// When a byte last moved in either direction.
///
/// Stored as nanoseconds since the relay began, so both directions can update it through a
/// shared reference while the relay future stays `Send`.
pub(super) struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
}

/// How far the copy took a direction, short of an error.
#[derive(Debug, PartialEq, Eq)]
enum Copied {
    /// To the source's end of stream.
    Eof,
    /// Until the traffic looked bulk: the caller splices from here.
    Bulk,
}

/// How far splice took a direction, short of an error.
// Off Linux nothing splices, so nothing reaches end of stream that way.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) enum Spliced {
    /// To the source's end of stream.
    Eof,
    /// Not at all (`RelayMode::Copy`, no splice here) or part of the way: copy the rest.
    CopyTheRest,
}

/// A failed read, write or shutdown, and whose socket it was on.
pub(super) struct Fault {
    pub(super) side: Side,
    pub(super) error: io::Error,
}

/// One direction: reads from `from`, writes to the other side.
pub(super) struct Flow<'a> {
    pub(super) from: Side,
    pub(super) src: ReadHalf<'a>,
    pub(super) dst: WriteHalf<'a>,
    /// Bytes read from `src` before the relay began; written before anything else. Also
    /// where a splice that gives up leaves the bytes still in its pipe.
    pub(super) held: Vec<u8>,
    /// Bytes written to the sink, exact even when the flow is dropped mid-write.
    pub(super) bytes: u64,
}

// === impl Env ===

impl Env<'_> {
    /// When a direction starts splicing: `None` never, `Some(0)` at once, `Some(n)` after `n`
    /// reads in a row filled the copy buffer.
    fn splice_after(&self) -> Option<u32> {
        #[cfg(target_os = "linux")]
        return self.splice.as_ref().map(|splice| splice.after_full_reads);
        #[cfg(not(target_os = "linux"))]
        None
    }
}

// === impl Silent ===

impl<'a> Silent<'a> {
    pub(super) fn new(watch: super::SilentWatch<'a>) -> Self {
        Self {
            watch,
            client_spoke: AtomicU64::new(0),
            member_spoke: AtomicBool::new(false),
        }
    }

    /// Where the watch stands at `now`.
    pub(super) fn check(&self, activity: &Activity, now: Instant) -> SilentCheck {
        // Relaxed: both directions and the timer run in the relay's one task.
        if self.member_spoke.load(Ordering::Relaxed) {
            return SilentCheck::Answered;
        }
        match self.client_spoke.load(Ordering::Relaxed) {
            0 => SilentCheck::Waiting,
            nanos => {
                let spoke = activity.start + Duration::from_nanos(nanos - 1);
                let deadline = crate::time::later(spoke, self.watch.after);
                if deadline <= now {
                    SilentCheck::Silent(now.saturating_duration_since(spoke))
                } else {
                    SilentCheck::At(deadline)
                }
            }
        }
    }

    /// Stamps the client's first bytes and wakes the relay's task, whose timer then arms for
    /// the period (a flow cannot reach the timer; this poll's waker is the relay's own).
    async fn stamp_client(&self, activity: &Activity) {
        let nanos = u64::try_from(activity.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.client_spoke.store(nanos + 1, Ordering::Relaxed);
        poll_fn(|cx| {
            cx.waker().wake_by_ref();
            Poll::Ready(())
        })
        .await;
    }
}

// === impl Activity ===

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    pub(super) fn start(&self) -> Instant {
        self.start
    }

    /// One clock read per read or write syscall: far cheaper than resetting a timer each time.
    pub(super) fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: only this relay's own task reads it, for a timer that tolerates staleness.
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(super) fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

// === impl Flow ===

impl<'a> Flow<'a> {
    pub(super) fn new(from: Side, src: ReadHalf<'a>, dst: WriteHalf<'a>, held: Vec<u8>) -> Self {
        Self {
            from,
            src,
            dst,
            held,
            bytes: 0,
        }
    }

    /// Moves bytes until the source reaches end of stream, then shuts down the sink's write half
    /// so the peer sees the FIN while the other direction may go on.
    pub(super) async fn run(&mut self, env: &Env<'_>) -> Result<(), Fault> {
        let mut at_eof = false;
        if let Some(silent) = &env.silent {
            at_eof = self.watch_first(env, silent).await?;
        } else {
            self.write_held(env).await?;
        }
        let at_eof = at_eof
            || match env.splice_after() {
                Some(0) => false,
                bulk_after => self.copy(env, bulk_after).await? == Copied::Eof,
            };
        if !at_eof && let Spliced::CopyTheRest = self.splice(env).await? {
            // A splice that gave up may have left bytes from its pipe in `held`.
            self.write_held(env).await?;
            self.copy(env, None).await?;
        }
        // The last direction to end does not shut down: the relay returns and closes both
        // sockets at once, and close() sends the same FIN (nothing is left unread on either
        // socket, since both have given end of stream, so it is not a RST). One syscall fewer
        // per connection, as HAProxy does. Relaxed: both directions run in this one task.
        if env.directions_ended.fetch_add(1, Ordering::Relaxed) == 1 {
            tracing::trace!(from = ?self.from, "end of stream in both directions");
            return Ok(());
        }
        tracing::trace!(from = ?self.from, "end of stream, shutting down the peer's write half");
        let to = self.from.peer();
        self.dst.shutdown().await.map_err(|e| self.fault(to, e))
    }

    /// The silent watch's part of a direction, once per connection and before the copy (so the
    /// copy loop is the same with the watch on or off). From the member: waits until its socket
    /// is readable (a byte, a FIN or an error all mean it is not silent) without reading. From
    /// the client: writes `held`, or else moves the first chunk itself, then stamps the moment
    /// the client's bytes were handed to the member's socket. Timing from there, not from their
    /// arrival, keeps any delay of sluice's own out of the member's period. Returns whether the
    /// source already reached end of stream (a client that closes without a byte never arms).
    async fn watch_first(&mut self, env: &Env<'_>, silent: &Silent<'_>) -> Result<bool, Fault> {
        if self.from == Side::Upstream {
            self.write_held(env).await?;
            poll_fn(|cx| self.src.as_ref().poll_read_ready(cx))
                .await
                .map_err(|e| self.fault(self.from, e))?;
            silent.member_spoke.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        if !self.held.is_empty() {
            self.write_held(env).await?;
            silent.stamp_client(&env.activity).await;
            return Ok(false);
        }
        let (buf, n) = poll_fn(|cx| read_pooled(&mut self.src, cx, env))
            .await
            .map_err(|e| self.fault(self.from, e))?;
        if n == 0 {
            return Ok(true);
        }
        env.activity.touch();
        let mut rest = &buf[..n];
        poll_fn(|cx| self.poll_write_all(cx, &mut rest, env)).await?;
        silent.stamp_client(&env.activity).await;
        Ok(false)
    }

    /// Writes out and releases `held`: the connection may stay open, and idle, for hours.
    async fn write_held(&mut self, env: &Env<'_>) -> Result<(), Fault> {
        let held = std::mem::take(&mut self.held);
        let mut rest = &held[..];
        poll_fn(|cx| self.poll_write_all(cx, &mut rest, env)).await
    }

    /// Off Linux there is no splice.
    #[cfg(not(target_os = "linux"))]
    async fn splice(&mut self, _env: &Env<'_>) -> Result<Spliced, Fault> {
        Ok(Spliced::CopyTheRest)
    }

    /// Copies through a pooled buffer until the source reaches end of stream, or, with
    /// `bulk_after: Some(n)`, until `n` reads in a row have filled the whole buffer.
    async fn copy(&mut self, env: &Env<'_>, bulk_after: Option<u32>) -> Result<Copied, Fault> {
        let mut full_reads = 0;
        loop {
            let (buf, n) = poll_fn(|cx| read_pooled(&mut self.src, cx, env))
                .await
                .map_err(|e| self.fault(self.from, e))?;
            if n == 0 {
                return Ok(Copied::Eof);
            }
            env.activity.touch();
            // Writing all of it before reading again is the backpressure: a slow sink stops
            // reads, the kernel buffers fill and the sender's window closes.
            let mut rest = &buf[..n];
            poll_fn(|cx| self.poll_write_all(cx, &mut rest, env)).await?;
            full_reads = if n == env.buffer_size {
                full_reads + 1
            } else {
                0
            };
            if bulk_after.is_some_and(|after| full_reads >= after) {
                return Ok(Copied::Bulk);
            }
        }
    }

    /// Writes all of `rest` to the sink, counting each partial write as it lands.
    fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        rest: &mut &[u8],
        env: &Env<'_>,
    ) -> Poll<Result<(), Fault>> {
        while !rest.is_empty() {
            let n = match ready!(Pin::new(&mut self.dst).poll_write(cx, rest)) {
                Ok(0) => io::Result::Err(io::ErrorKind::WriteZero.into()),
                written => written,
            }
            .map_err(|e| self.fault(self.from.peer(), e))?;
            self.bytes += n as u64;
            env.activity.touch();
            *rest = &rest[n..];
        }
        Poll::Ready(Ok(()))
    }

    pub(super) fn fault(&self, side: Side, error: io::Error) -> Fault {
        tracing::trace!(?side, %error, "relay I/O failed");
        Fault { side, error }
    }
}

/// Waits until `src` is readable, then borrows a buffer and reads into it; zero bytes read
/// means end of stream.
///
/// Readiness comes first so that a waiting connection holds no buffer. If the readiness was
/// spurious the buffer goes straight back and `poll_read` has registered the waker.
/// `poll_read` rather than `try_read`: after a short read tokio clears the readiness, so the
/// next poll parks at once instead of costing a read that fails with `WouldBlock` (one syscall
/// saved per message on request/response traffic). `poll_read_ready` rather than `readable()`:
/// each read half has one reader, and the waker slot keeps the future smaller than a waiter
/// node would.
fn read_pooled<'p>(
    src: &mut ReadHalf<'_>,
    cx: &mut Context<'_>,
    env: &Env<'p>,
) -> Poll<io::Result<(PooledBuf<'p>, usize)>> {
    ready!(src.as_ref().poll_read_ready(cx))?;
    let mut buf = env.pool.take(env.buffer_size);
    let mut read_buf = ReadBuf::new(&mut buf);
    ready!(Pin::new(src).poll_read(cx, &mut read_buf))?;
    let n = read_buf.filled().len();
    Poll::Ready(Ok((buf, n)))
}
