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
//! Fallback: if the very first splice in either step fails with `EINVAL`, `ENOSYS` or
//! `EOPNOTSUPP` (an fd that cannot splice; a socket opened `O_APPEND` is one), or no pipe can
//! be created, the direction drains whatever is in its pipe through a copy buffer and tells
//! the caller to copy from then on. It is logged once, at debug, per direction.
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
use super::copy::{Env, Fault, Flow};
use super::pipe::{PipePool, PooledPipe};

/// Never block on the pipe (the sockets are non-blocking already); `MOVE` is only a hint.
const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

/// Directions that gave up on splice, for `relay::splice_fallbacks`.
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// How one relay splices: shared by both its directions.
#[derive(Debug)]
pub(super) struct Splice<'a> {
    pub(super) pipes: &'a PipePool,
    /// `F_SETPIPE_SZ` for new pipes; `None` keeps the kernel's default.
    pub(super) pipe_size: Option<usize>,
    /// Test hook: the first splice of each direction fails with `EINVAL`.
    #[cfg(test)]
    pub(super) fail_first: bool,
}

/// How a splicing direction ended, short of an error.
pub(super) enum Spliced {
    /// The source reached end of stream.
    Eof,
    /// Splice is unusable for this direction; the pipe is drained, copy the rest.
    Fallback,
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
    /// Splices until end of stream, an error, or a fallback to copy.
    pub(super) async fn splice(
        &mut self,
        splice: &Splice<'_>,
        env: &Env<'_>,
    ) -> Result<Spliced, Fault> {
        let mut pipe = None;
        // Held bytes are counted already; fallback is allowed until a splice writes one.
        let start = self.bytes;
        match poll_fn(|cx| self.poll_splice(cx, &mut pipe, start, splice, env)).await? {
            Stop::Eof => Ok(Spliced::Eof),
            Stop::Fallback(error) => {
                FALLBACKS.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(from = ?self.from, %error, "cannot splice; copying this direction");
                if let Some(pipe) = &mut pipe {
                    self.drain_by_copy(pipe, env).await?;
                }
                Ok(Spliced::Fallback)
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

    /// Hands the bytes already in the pipe to the sink through a copy buffer, so the copy
    /// that follows starts with nothing in flight. Reading never blocks: the bytes are there.
    async fn drain_by_copy(
        &mut self,
        pipe: &mut PooledPipe<'_>,
        env: &Env<'_>,
    ) -> Result<(), Fault> {
        while pipe.pending() > 0 {
            let mut buf = env.pool.take(env.buffer_size);
            let n = match pipe.read(&mut buf) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                read => read,
            }
            // Our own pipe failed: blame the sink, whose bytes are now lost.
            .map_err(|e| self.fault(self.from.peer(), e))?;
            let mut rest = &buf[..n];
            poll_fn(|cx| self.poll_write_all(cx, &mut rest, env)).await?;
        }
        Ok(())
    }
}
