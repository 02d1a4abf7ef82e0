//! Copy buffers lent to a relay direction only while bytes are in flight.
//!
//! A relayed connection is idle most of its life. Holding a 16 KiB buffer per direction for
//! all of it would make 100k idle connections cost 3 GiB, so a direction borrows a buffer after
//! its socket turns readable and gives it back as soon as the bytes are written out. This module
//! owns the free list; when and how long a buffer is held is decided in `copy.rs`.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Free buffers kept for reuse, in bytes over all sizes. Enough for a few hundred copies in
/// flight at once to recycle without touching the allocator; past that, extra buffers go back
/// to the allocator, which handles bursts fine on its own.
const MAX_FREE_BYTES: usize = 4 * 1024 * 1024;

/// A bounded free list of copy buffers.
///
/// One lock is taken per borrow and per return. It is held for a few instructions and never
/// across an `.await`.
#[derive(Debug)]
pub(crate) struct BufferPool {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Buffers of possibly different sizes (routes may set different `buffer_size`s).
    free: Vec<Box<[u8]>>,
    free_bytes: usize,
    /// Buffers currently lent out, so tests can show an idle relay holds none.
    lent: usize,
}

/// A buffer borrowed from a [`BufferPool`]; returns itself when dropped.
pub(crate) struct PooledBuf<'p> {
    buf: Box<[u8]>,
    pool: &'p BufferPool,
}

// === impl BufferPool ===

impl BufferPool {
    pub(crate) const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                free: Vec::new(),
                free_bytes: 0,
                lent: 0,
            }),
        }
    }

    /// The process-wide pool every relay uses.
    pub(crate) fn global() -> &'static BufferPool {
        static GLOBAL: BufferPool = BufferPool::new();
        &GLOBAL
    }

    /// Lends a buffer of exactly `size` bytes (`size` must be non-zero), reusing a free one when
    /// there is one of that size.
    pub(crate) fn take(&self, size: usize) -> PooledBuf<'_> {
        debug_assert!(size > 0, "a zero-length read would look like end of stream");
        let reused = {
            let mut state = self.lock();
            state.lent += 1;
            // Searching from the end finds the common single-size case at once.
            let found = state.free.iter().rposition(|b| b.len() == size);
            found.map(|i| {
                state.free_bytes -= size;
                state.free.swap_remove(i)
            })
        };
        // Allocate outside the lock; zeroed memory comes cheaply from calloc.
        let buf = reused.unwrap_or_else(|| vec![0; size].into_boxed_slice());
        PooledBuf { buf, pool: self }
    }

    /// Buffers currently lent out.
    pub(crate) fn lent(&self) -> usize {
        self.lock().lent
    }

    /// Buffers waiting on the free list.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.lock().free.len()
    }

    fn give_back(&self, buf: Box<[u8]>) {
        let mut state = self.lock();
        state.lent -= 1;
        if state.free_bytes + buf.len() <= MAX_FREE_BYTES {
            state.free_bytes += buf.len();
            state.free.push(buf);
            return;
        }
        // Free the memory after the lock is released.
        drop(state);
        drop(buf);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is a single step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl PooledBuf ===

impl Deref for PooledBuf<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for PooledBuf<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Drop for PooledBuf<'_> {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused() {
        let pool = BufferPool::new();
        let ptr = {
            let buf = pool.take(1024);
            assert_eq!((buf.len(), pool.lent(), pool.free()), (1024, 1, 0));
            buf.as_ptr()
        };
        assert_eq!((pool.lent(), pool.free()), (0, 1));
        let again = pool.take(1024);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!((pool.lent(), pool.free()), (1, 0));
    }

    #[test]
    fn sizes_are_not_mixed_up() {
        let pool = BufferPool::new();
        drop(pool.take(1024));
        let other = pool.take(2048);
        assert_eq!(other.len(), 2048);
        assert_eq!(
            pool.free(),
            1,
            "the 1 KiB buffer stays free for its own size"
        );
        assert_eq!(pool.take(1024).len(), 1024);
    }

    #[test]
    fn the_free_list_is_bounded() {
        let pool = BufferPool::new();
        let size = 64 * 1024;
        let held: Vec<_> = (0..2 * MAX_FREE_BYTES / size)
            .map(|_| pool.take(size))
            .collect();
        drop(held);
        assert_eq!(pool.lent(), 0);
        assert_eq!(pool.free(), MAX_FREE_BYTES / size);
    }
}
