//! The data plane's threads: one single-threaded tokio runtime per worker, each with its own
//! event loop, running its own accept loops and every connection those accept.
//!
//! Why not tokio's multi-threaded scheduler: on a 2-core machine shared with the load generator
//! and the upstream (the bench's connection-rate scenario), it left 10-13% of the CPU idle
//! while connections waited. Connections hop between workers (work stealing), and waking a
//! parked worker costs a futex call and a context switch before the task runs. nginx, HAProxy
//! and Envoy all run one event loop per worker thread, a connection staying on the thread that
//! accepted it; with `workers = 1` sluice's rate already matched HAProxy's (11.6-11.9k vs
//! 10.7-11.9k conn/s, idle 4%). One runtime per worker keeps that with any worker count.
//!
//! The control plane (health checks, admin API, reloads, signals) runs on the thread that
//! called [`crate::server::Server::run`], as Envoy's main thread does, so probing never
//! competes with a worker's connections for its event loop.

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Running worker threads; [`Workers::stop`] ends them.
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

// === impl Workers ===

impl Workers {
    /// Starts `count` worker threads (at least one), named `sluice-worker-N`, each driving a
    /// single-threaded runtime with I/O and timers until [`Workers::stop`].
    pub fn start(count: usize) -> io::Result<Self> {
        let stop = CancellationToken::new();
        let mut workers = Self {
            handles: Vec::new(),
            threads: Vec::new(),
            stop: stop.clone(),
        };
        for n in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.handles.push(runtime.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sluice-worker-{n}"))
                // A current-thread runtime runs its tasks only inside `block_on`.
                .spawn(move || runtime.block_on(stop.cancelled()))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Where to spawn: one handle per worker.
    pub fn handles(&self) -> Vec<Handle> {
        self.handles.clone()
    }

    /// Ends every worker's event loop and joins its thread (dropping does the same). Tasks
    /// still on a worker are dropped, closing their sockets; call it after the server's drain.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            // A worker that panicked has already reported it on stderr.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_runs_spawned_tasks_on_its_own_thread() {
        let workers = Workers::start(2).unwrap();
        let names: Vec<String> = workers
            .handles()
            .iter()
            .map(|handle| {
                let task = handle.spawn(async {
                    std::thread::current()
                        .name()
                        .unwrap_or_default()
                        .to_string()
                });
                wait_for(task).unwrap()
            })
            .collect();
        assert_eq!(names, ["sluice-worker-0", "sluice-worker-1"]);
        workers.stop();
    }

    /// Waits for a task from a plain thread: a throwaway runtime only to poll the handle.
    fn wait_for<T>(task: tokio::task::JoinHandle<T>) -> Result<T, tokio::task::JoinError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(task)
    }
}
