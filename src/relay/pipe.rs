//! Splice pipes, lent to a relay direction only while bytes are in flight through it.
//!
//! A pipe is two fds plus kernel bookkeeping, so, like the copy buffers in `buffer.rs`, a
//! direction takes one when its source turns readable and gives it back once it is empty and
//! the source has nothing more: an idle connection holds no pipe. HAProxy does the same (it
//! keeps a pipe only while data sits in it). Given-back pipes wait on a bounded free list so
//! busy relays do not pay `pipe2` + `fcntl` per burst.
//!
//! A pipe still holding bytes is never pooled: [`PooledPipe`] tracks how many bytes it holds
//! and, when dropped non-empty (a cut or an error mid-transfer), closes the pipe so its stale
//! bytes die with it. When to take and give back is decided in `splice.rs`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::pipe::{PipeFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with};

/// Empty pipes kept for reuse. 64 pipes are 128 fds, a modest share of a default 1024-fd
/// limit, and enough for that many directions to start a burst without a syscall; past it,
/// extra pipes are closed (a `pipe2` costs about as much as one small splice).
pub(crate) const MAX_FREE_PIPES: usize = 64;

/// A bounded free list of empty pipes. One lock per take and per give-back, never held
/// across an `.await` or a syscall.
#[derive(Debug)]
pub(crate) struct PipePool {
    state: Mutex<State>,
    max_free: usize,
}

#[derive(Debug)]
struct State {
    free: Vec<Pipe>,
    /// Pipes lent out now.
    lent: usize,
    /// Pipes ever created, so tests can see reuse.
    created: u64,
}

#[derive(Debug)]
struct Pipe {
    reader: OwnedFd,
    writer: OwnedFd,
    /// The `pipe_size` it was made for (`None`: kernel default); pipes are reused per size.
    requested: Option<usize>,
    /// Its real capacity in bytes, the most one splice into it can move.
    capacity: usize,
}

/// A pipe borrowed from a [`PipePool`]; on drop it goes back if empty, else it is closed.
#[derive(Debug)]
pub(crate) struct PooledPipe<'p> {
    /// Always `Some` until dropped.
    pipe: Option<Pipe>,
    /// Bytes spliced in and not yet out.
    pending: usize,
    pool: &'p PipePool,
}

// === impl PipePool ===

impl PipePool {
    /// A pool keeping at most `max_free` empty pipes.
    pub(crate) const fn new(max_free: usize) -> Self {
        Self {
            state: Mutex::new(State {
                free: Vec::new(),
                lent: 0,
                created: 0,
            }),
            max_free,
        }
    }

    /// The process-wide pool every relay uses.
    pub(crate) fn global() -> &'static PipePool {
        static GLOBAL: PipePool = PipePool::new(MAX_FREE_PIPES);
        &GLOBAL
    }

    /// Lends an empty pipe made for `requested` bytes (`None`: the kernel's default size),
    /// reusing a free one when there is one. Fails only if a new pipe cannot be created
    /// (`EMFILE`, `ENFILE`...).
    pub(crate) fn take(&self, requested: Option<usize>) -> io::Result<PooledPipe<'_>> {
        let reused = {
            let mut state = self.lock();
            let found = state.free.iter().rposition(|p| p.requested == requested);
            state.lent += usize::from(found.is_some());
            found.map(|i| state.free.swap_remove(i))
        };
        let pipe = match reused {
            Some(pipe) => pipe,
            None => {
                // Create outside the lock: two syscalls, three with a size.
                let pipe = Pipe::create(requested)?;
                let mut state = self.lock();
                state.lent += 1;
                state.created += 1;
                pipe
            }
        };
        Ok(PooledPipe {
            pipe: Some(pipe),
            pending: 0,
            pool: self,
        })
    }

    /// Pipes lent out now.
    pub(crate) fn lent(&self) -> usize {
        self.lock().lent
    }

    /// Empty pipes waiting on the free list (two fds each).
    pub(crate) fn free(&self) -> usize {
        self.lock().free.len()
    }

    /// Pipes created so far.
    #[cfg(test)]
    pub(crate) fn created(&self) -> u64 {
        self.lock().created
    }

    fn give_back(&self, pipe: Pipe, pending: usize) {
        let mut state = self.lock();
        state.lent -= 1;
        if pending == 0 && state.free.len() < self.max_free {
            state.free.push(pipe);
            return;
        }
        // Close outside the lock. A pipe with bytes in it is closed so that they can never
        // reach another connection.
        drop(state);
        drop(pipe);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single step, so the state is consistent even after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Pipe ===

impl Pipe {
    fn create(requested: Option<usize>) -> io::Result<Pipe> {
        // Non-blocking so that a mistaken read or write can never park a runtime thread.
        let (reader, writer) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let capacity = match requested.map(|size| fcntl_setpipe_size(&writer, size)) {
            Some(Ok(capacity)) => capacity,
            // Over `fs.pipe-max-size` or the user's pipe quota: a smaller pipe still works.
            other => {
                if let Some(Err(error)) = other {
                    tracing::debug!(?requested, %error, "cannot resize splice pipe; using default");
                }
                fcntl_getpipe_size(&writer)?
            }
        };
        Ok(Pipe {
            reader,
            writer,
            requested,
            capacity: capacity.max(1),
        })
    }
}

// === impl PooledPipe ===

impl PooledPipe<'_> {
    fn pipe(&self) -> &Pipe {
        self.pipe
            .as_ref()
            .expect("a pooled pipe is present until dropped")
    }

    pub(crate) fn reader(&self) -> BorrowedFd<'_> {
        self.pipe().reader.as_fd()
    }

    pub(crate) fn writer(&self) -> BorrowedFd<'_> {
        self.pipe().writer.as_fd()
    }

    /// Bytes it can hold: splice into an empty pipe at most this many.
    pub(crate) fn capacity(&self) -> usize {
        self.pipe().capacity
    }

    /// Bytes in it now.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// `n` bytes were spliced in.
    pub(crate) fn filled(&mut self, n: usize) {
        self.pending += n;
    }

    /// `n` bytes were spliced out.
    pub(crate) fn drained(&mut self, n: usize) {
        debug_assert!(n <= self.pending, "drained more than was in the pipe");
        self.pending -= n;
    }

    /// Reads up to `buf.len()` pending bytes out with `read(2)`, for the fallback to a copy.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.pending);
        let n = rustix::io::read(self.reader(), &mut buf[..want])?;
        self.drained(n);
        Ok(n)
    }
}

impl Drop for PooledPipe<'_> {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            // The count is the only thing keeping stale bytes out of the pool: check it.
            debug_assert!(
                self.pending > 0 || rustix::io::ioctl_fionread(&pipe.reader).is_ok_and(|n| n == 0),
                "a pipe counted empty still holds bytes"
            );
            self.pool.give_back(pipe, self.pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_pipe_is_reused_per_size() {
        let pool = PipePool::new(4);
        let fd = {
            let pipe = pool.take(None).unwrap();
            assert_eq!((pool.lent(), pool.free(), pool.created()), (1, 0, 1));
            std::os::fd::AsRawFd::as_raw_fd(&pipe.reader())
        };
        assert_eq!((pool.lent(), pool.free()), (0, 1));
        let again = pool.take(None).unwrap();
        assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&again.reader()), fd);
        assert_eq!(pool.created(), 1, "reused, not created");

        let sized = pool.take(Some(256 * 1024)).unwrap();
        assert_eq!(
            pool.created(),
            2,
            "a pipe of another size is not handed out"
        );
        assert_eq!(sized.capacity(), 256 * 1024, "F_SETPIPE_SZ applied");
    }

    #[test]
    fn the_free_list_is_bounded() {
        let pool = PipePool::new(4);
        let held: Vec<_> = (0..10).map(|_| pool.take(None).unwrap()).collect();
        assert_eq!((pool.lent(), pool.created()), (10, 10));
        drop(held);
        assert_eq!((pool.lent(), pool.free()), (0, 4));
    }

    #[test]
    fn a_pipe_holding_bytes_is_closed_not_pooled() {
        let pool = PipePool::new(4);
        let mut pipe = pool.take(None).unwrap();
        let n = rustix::io::write(pipe.writer(), b"stale").unwrap();
        pipe.filled(n);
        drop(pipe);
        assert_eq!((pool.lent(), pool.free()), (0, 0));

        // Read out, it is empty again and goes back.
        let mut pipe = pool.take(None).unwrap();
        pipe.filled(rustix::io::write(pipe.writer(), b"bytes").unwrap());
        let mut buf = [0; 16];
        assert_eq!(pipe.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"bytes");
        drop(pipe);
        assert_eq!((pool.free(), pool.created()), (1, 2));
    }
}
