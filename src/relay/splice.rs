//! Linux zero-copy for one direction: source socket → pipe → sink socket with `splice(2)`, so
//! the bytes never enter user space.
//!
//! It replaces the copy loop of `copy.rs` inside `Flow::run` and keeps its contract: every byte
//! that reaches the sink is counted, each syscall that moves bytes touches the activity clock,
//! and a failure names the socket it happened on. Held bytes before, the shutdown after, and
//! everything that spans both directions stay with the caller.
//!
//! The loop alternates: splice from the source into an *empty* pipe, then splice the pipe out
//! until it is empty again. Filling only an empty pipe matters: with a non-empty pipe, `EAGAIN`
//! from the source could mean "pipe full" instead of "no data", and clearing the socket's read
//! readiness on that would stall the direction for good. Readiness comes from tokio
//! (`poll_*_ready`, then `try_io`, which clears it when the syscall says `WouldBlock`).
//!
//! Pipe lifecycle: taken from the pool when the source turns readable, given back as soon as
//! it is empty and the source would block (so an idle direction holds none), closed instead if
//! the direction ends with bytes still in it (`pipe.rs`).
//!
//! Fallback: if a splice fails with `EINVAL`, `ENOSYS` or `EOPNOTSUPP` (an fd that cannot
//! splice; a socket opened `O_APPEND` is one) before any spliced byte reached the sink, or no
//! pipe can be created (nothing is in flight then, whenever it happens), the direction moves
//! whatever is in its pipe to `held` and tells the caller to copy from then on. It is logged
//! once, at debug, per direction.
//!
//! No `unsafe` here: rustix wraps `splice`, `pipe2` and `fcntl` safely over `BorrowedFd`s.
//! Writing to a reset peer raises `SIGPIPE` (splice has no `MSG_NOSIGNAL`); Rust's runtime
//! ignores that signal before `main`, so the splice gets `EPIPE` like `write` does.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use rustix::io::Errno;
use rustix::pipe::{SpliceFlags, splice};
use tokio::io::Interest;

use super::RelayMode;
use super::copy::{Env, Fault, Flow, Spliced};
use super::pipe::{PipePool, PooledPipe};

/// Never block on the pipe (the sockets are non-blocking already); `MOVE` is only a hint.
const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

/// In `Auto` mode a direction copies until this many reads in a row fill its copy buffer, as
/// HAProxy's `splice-auto` waits for a channel to look like a streamer. Request/response
/// traffic (one short read each way) never splices: a pipe would cost two splices and a pipe
/// from the pool for every message where a copy costs a read and a write. Profiled with wrk,
/// `Connection: close`, a 1 KiB reply: splicing from the first byte spent 22% of sluice's CPU
/// in `splice(2)`.
pub(super) const AUTO_FULL_READS: u32 = 2;

/// Directions that gave up on splice, for `relay::splice_fallbacks`.
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// How one relay splices: shared by both its directions.
#[derive(Debug)]
pub(super) struct Splice<'a> {
    pub(super) pipes: &'a PipePool,
    /// `F_SETPIPE_SZ` for new pipes; `None` keeps the kernel's default.
    pub(super) pipe_size: Option<usize>,
    /// Reads in a row that must fill the copy buffer before a direction splices; 0 splices
    /// from the first byte (`RelayMode::Splice`), [`AUTO_FULL_READS`] in `RelayMode::Auto`.
    pub(super) after_full_reads: u32,
    /// Test hook: the first splice of each direction fails with `EINVAL`.
    #[cfg(test)]
    pub(super) fail_first: bool,
}

/// What the poll loop stops for.
enum Stop {
    Eof,
    Fallback(io::Error),
}

// === impl Splice ===

impl Splice<'static> {
    /// Splicing for `mode` with the global pool, or `None` for `RelayMode::Copy`.
    pub(super) fn for_mode(mode: RelayMode, pipe_size: Option<usize>) -> Option<Self> {
        match mode {
            RelayMode::Copy => None,
            RelayMode::Auto | RelayMode::Splice => Some(Splice {
                pipes: PipePool::global(),
                pipe_size,
                after_full_reads: if mode == RelayMode::Auto {
                    AUTO_FULL_READS
                } else {
                    0
                },
                #[cfg(test)]
                fail_first: false,
            }),
        }
    }
}

/// Directions that fell back from splice to copy since the process started.
pub(super) fn fallbacks() -> u64 {
    FALLBACKS.load(Ordering::Relaxed)
}

// === impl Flow ===

impl Flow<'_> {
    /// Splices until end of stream, an error, or a fallback to copy; with `RelayMode::Copy`,
    /// falls back at once.
    pub(super) async fn splice(&mut self, env: &Env<'_>) -> Result<Spliced, Fault> {
        let Some(splice) = &env.splice else {
            return Ok(Spliced::CopyTheRest);
        };
        let mut pipe = None;
        // Held bytes are counted already; fallback is allowed until a splice writes one.
        let start = self.bytes;
        match poll_fn(|cx| self.poll_splice(cx, &mut pipe, start, splice, env)).await? {
            Stop::Eof => Ok(Spliced::Eof),
            Stop::Fallback(error) => {
                FALLBACKS.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(from = ?self.from, %error, "cannot splice; copying this direction");
                if let Some(pipe) = &mut pipe {
                    self.take_back(pipe)?;
                }
                Ok(Spliced::CopyTheRest)
            }
        }
    }

    fn poll_splice<'p>(
        &mut self,
        cx: &mut Context<'_>,
        slot: &mut Option<PooledPipe<'p>>,
        start: u64,
        splice_with: &Splice<'p>,
        env: &Env<'_>,
    ) -> Poll<Result<Stop, Fault>> {
        let (from, to) = (self.from, self.from.peer());
        let may_fall_back = |bytes: u64, e: &io::Error| {
            bytes == start
                && matches!(
                    Errno::from_io_error(e),
                    Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)
                )
        };
        loop {
            if let Some(pipe) = slot.as_mut().filter(|p| p.pending() > 0) {
                let dst = self.dst.as_ref();
                ready!(dst.poll_write_ready(cx)).map_err(|e| self.fault(to, e))?;
                let out = dst.try_io(Interest::WRITABLE, || {
                    Ok(splice(
                        pipe.reader(),
                        None,
                        dst,
                        None,
                        pipe.pending(),
                        FLAGS,
                    )?)
                });
                match out {
                    Ok(0) => {
                        return Poll::Ready(Err(self.fault(to, io::ErrorKind::WriteZero.into())));
                    }
                    Ok(n) => {
                        pipe.drained(n);
                        self.bytes += n as u64;
                        env.activity.touch();
                    }
                    // Readiness is cleared: the next `poll_write_ready` parks.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if may_fall_back(self.bytes, &e) => {
                        return Poll::Ready(Ok(Stop::Fallback(e)));
                    }
                    Err(e) => return Poll::Ready(Err(self.fault(to, e))),
                }
                continue;
            }

            // The pipe is empty (or there is none): wait for the source.
            let src = self.src.as_ref();
            match src.poll_read_ready(cx) {
                Poll::Pending => {
                    // Idle: give the empty pipe back rather than hold it while waiting.
                    *slot = None;
                    return Poll::Pending;
                }
                Poll::Ready(ready) => ready.map_err(|e| self.fault(from, e))?,
            }
            let pipe = match slot {
                Some(pipe) => pipe,
                None => match splice_with.pipes.take(splice_with.pipe_size) {
                    Ok(pipe) => slot.insert(pipe),
                    // Out of fds or memory for a pipe: nothing is in flight, so copy instead.
                    Err(e) => return Poll::Ready(Ok(Stop::Fallback(e))),
                },
            };
            #[cfg(test)]
            if splice_with.fail_first && self.bytes == start {
                return Poll::Ready(Ok(Stop::Fallback(Errno::INVAL.into())));
            }
            let len = pipe.capacity();
            let moved = src.try_io(Interest::READABLE, || {
                Ok(splice(src, None, pipe.writer(), None, len, FLAGS)?)
            });
            match moved {
                Ok(0) => return Poll::Ready(Ok(Stop::Eof)),
                Ok(n) => {
                    pipe.filled(n);
                    env.activity.touch();
                }
                // No data (the pipe was empty, so it cannot be "pipe full"): readiness cleared.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if may_fall_back(self.bytes, &e) => {
                    return Poll::Ready(Ok(Stop::Fallback(e)));
                }
                Err(e) => return Poll::Ready(Err(self.fault(from, e))),
            }
        }
    }

    /// Moves the bytes a failed splice left in the pipe to `held`, for the copy to write
    /// first. One allocation, once per fallback; reading never blocks: the bytes are there.
    fn take_back(&mut self, pipe: &mut PooledPipe<'_>) -> Result<(), Fault> {
        debug_assert!(self.held.is_empty(), "held bytes go out before splicing");
        self.held = vec![0; pipe.pending()];
        let mut filled = 0;
        while filled < self.held.len() {
            match pipe.read(&mut self.held[filled..]) {
                Ok(0) => return Err(self.fault(self.from, io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => filled += n,
                // Our own pipe failed; the bytes came from the source, so blame it.
                Err(e) => return Err(self.fault(self.from, e)),
            }
        }
        Ok(())
    }
}
