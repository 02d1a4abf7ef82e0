//! One direction of one connection: chunks read from the source pass through the stream's
//! toxic chain, then are written to the destination.
//!
//! Toxiproxy runs one goroutine per toxic joined by channels and rewires them on every change.
//! Here one task walks each chunk through the chain in order instead (`emit` recurses stage by
//! stage, so a slicer's slices and a bandwidth toxic's steps reach the socket one by one, with the
//! pauses between them). Timing follows Toxiproxy: chunks are stamped when read, so latency is
//! measured from arrival and does not pile up behind earlier chunks (the reader runs ahead through
//! a queue, like Toxiproxy's 1024-chunk latency buffer). Chain changes take effect at the next
//! chunk; a wait on a toxic that is removed or updated ends at once and lets the data through, as
//! Toxiproxy's interrupt does. The multi-step toxics (bandwidth, limit_data, slicer) are in
//! `stages.rs`. What happens to the sockets when a direction ends is up to `link`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::{Chunk, effects};
use crate::toxic::kind::ToxicKind;
use crate::toxic::{Chains, Conn, Stream, Toxic};

mod stages;

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Input ended, a toxic closed the stream, or the destination failed: close the destination.
    Closed,
    /// `reset_peer` fired: reset the whole connection.
    Reset,
}

/// What the rest of the chain should do after one stage handled a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The toxic at this index closed the stream; `slow_close` toxics after it still delay.
    Close(usize),
    /// The `reset_peer` at this index fired.
    Reset(usize),
    WriteFailed,
}

/// The chain as this connection applies it: each toxic with its toxicity already rolled.
#[derive(Debug, Clone)]
struct Stage {
    toxic: Arc<Toxic>,
    active: bool,
}

/// Per-connection state of one toxic, kept across updates (same `uid`) as Toxiproxy keeps a
/// stub's state.
#[derive(Debug)]
struct StageState {
    rev: u64,
    active: bool,
    /// `limit_data`: bytes let through so far.
    sent: i64,
    /// `bandwidth`: time owed (positive) or credited (negative), in nanoseconds.
    debt_ns: i64,
}

/// One direction's runtime. `W` is the destination's write half.
pub struct Direction<'a, W> {
    stream: Stream,
    /// This connection, for toxics' targeting.
    conn: Conn,
    toxics: watch::Receiver<Chains>,
    /// When the connection opened; a `timeout` toxic older than that counts from here.
    link_start: Instant,
    chain: Arc<[Stage]>,
    states: HashMap<u64, StageState>,
    out: &'a mut W,
}

impl<'a, W: AsyncWrite + Unpin + Send> Direction<'a, W> {
    /// A direction applying `stream`'s chain from `toxics` and writing to `out`.
    pub fn new(
        stream: Stream,
        conn: Conn,
        toxics: watch::Receiver<Chains>,
        link_start: Instant,
        out: &'a mut W,
    ) -> Self {
        let mut dir = Direction {
            stream,
            conn,
            toxics,
            link_start,
            chain: Arc::from(Vec::new()),
            states: HashMap::new(),
            out,
        };
        dir.sync();
        dir
    }

    /// Runs until the input ends (the queue closes) or a toxic ends the stream.
    pub async fn run(mut self, mut input: mpsc::Receiver<Chunk>) -> End {
        let mut watching = true;
        loop {
            let deadline = self.timeout_deadline();
            // A placeholder keeps the branch well-formed when no timeout toxic is active.
            let (at, idx) = deadline.unwrap_or((self.link_start, 0));
            tokio::select! {
                biased;
                changed = self.toxics.changed(), if watching => match changed {
                    Ok(()) => self.sync(),
                    // The proxy is gone; `link` is about to drop this connection anyway.
                    Err(_) => watching = false,
                },
                () = sleep_until(at), if deadline.is_some() => return self.close(Some(idx)).await,
                chunk = input.recv() => {
                    let Some(chunk) = chunk else { return self.close(None).await };
                    let chain = self.chain.clone();
                    // A timeout toxic closes the stream on time even while data is being held.
                    let flow = tokio::select! {
                        flow = self.emit(&chain, 0, chunk) => flow,
                        () = sleep_until(at), if deadline.is_some() => Flow::Close(idx),
                    };
                    match flow {
                        Flow::Continue => {}
                        Flow::Close(i) => return self.close(Some(i)).await,
                        Flow::Reset(i) => {
                            self.slow_close_delays(Some(i)).await;
                            return End::Reset;
                        }
                        Flow::WriteFailed => return End::Closed,
                    }
                }
            }
        }
    }

    /// Rebuilds the chain from the latest snapshot, rolling toxicity for new or updated toxics.
    fn sync(&mut self) {
        let chains = self.toxics.borrow_and_update().clone();
        let toxics = chains.chain(self.stream);
        let mut rng = rand::rng();
        let mut chain = Vec::with_capacity(toxics.len());
        for toxic in toxics {
            let state = self.states.entry(toxic.uid).or_insert_with(|| StageState {
                rev: toxic.rev,
                active: toxic.selects(self.conn) && effects::roll(toxic.toxicity, &mut rng),
                sent: 0,
                debt_ns: 0,
            });
            if state.rev != toxic.rev {
                state.rev = toxic.rev;
                state.active = toxic.selects(self.conn) && effects::roll(toxic.toxicity, &mut rng);
            }
            chain.push(Stage {
                toxic: toxic.clone(),
                active: state.active,
            });
        }
        self.states
            .retain(|uid, _| toxics.iter().any(|t| t.uid == *uid));
        self.chain = Arc::from(chain);
    }

    /// The earliest close time among active `timeout` toxics with a non-zero timeout.
    fn timeout_deadline(&self) -> Option<(Instant, usize)> {
        let start = self.link_start;
        self.chain
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active)
            .filter_map(|(i, s)| match s.toxic.kind {
                ToxicKind::Timeout(t) if t.timeout > 0 => {
                    let from = s.toxic.since.max(start);
                    Some((from + Duration::from_millis(t.timeout as u64), i))
                }
                _ => None,
            })
            .min()
    }

    /// Passes `chunk` through stage `i` and every stage after it, then writes it out.
    fn emit<'s>(
        &'s mut self,
        chain: &'s [Stage],
        i: usize,
        mut chunk: Chunk,
    ) -> Pin<Box<dyn Future<Output = Flow> + Send + 's>> {
        Box::pin(async move {
            let Some(stage) = chain.get(i) else {
                return self.write(chunk).await;
            };
            if !stage.active {
                return self.emit(chain, i + 1, chunk).await;
            }
            let toxic = &stage.toxic;
            match &toxic.kind {
                // The listener-level extensions have done their work before any data flows.
                ToxicKind::Noop
                | ToxicKind::SlowClose(_)
                | ToxicKind::ConnectTimeout
                | ToxicKind::SlowAccept(_) => self.emit(chain, i + 1, chunk).await,
                ToxicKind::Latency(l) => {
                    let delay = effects::latency_delay(l, &mut rand::rng());
                    hold(&self.toxics, toxic, chunk.at + delay).await;
                    chunk.at = Instant::now();
                    self.emit(chain, i + 1, chunk).await
                }
                ToxicKind::Bandwidth(b) if b.rate > 0 => {
                    self.bandwidth(chain, i, chunk, b.rate).await
                }
                ToxicKind::Bandwidth(_) => self.emit(chain, i + 1, chunk).await,
                // Black hole: the data is dropped; `run` closes the stream when time is up.
                ToxicKind::Timeout(_) => Flow::Continue,
                ToxicKind::ResetPeer(t) => {
                    let at = Instant::now() + Duration::from_millis(t.timeout.max(0) as u64);
                    // The chunk that triggered the reset is dropped, as in Toxiproxy.
                    if hold(&self.toxics, toxic, at).await {
                        Flow::Reset(i)
                    } else {
                        Flow::Continue
                    }
                }
                ToxicKind::LimitData(l) => self.limit_data(chain, i, chunk, l.bytes).await,
                ToxicKind::Slicer(s) => self.slice(chain, i, chunk, *s).await,
            }
        })
    }

    async fn write(&mut self, chunk: Chunk) -> Flow {
        if chunk.data.is_empty() {
            return Flow::Continue;
        }
        match self.out.write_all(&chunk.data).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::WriteFailed,
        }
    }

    /// Applies the close delays, then reports the stream closed.
    async fn close(&mut self, after: Option<usize>) -> End {
        self.slow_close_delays(after).await;
        End::Closed
    }

    /// Waits out every active `slow_close` after stage `after` (all of them when `None`): in
    /// Toxiproxy a close travels down the chain and each `slow_close` it passes holds it back.
    async fn slow_close_delays(&mut self, after: Option<usize>) {
        let first = after.map_or(0, |i| i + 1);
        let chain = self.chain.clone();
        for stage in chain.iter().skip(first).filter(|s| s.active) {
            if let ToxicKind::SlowClose(s) = stage.toxic.kind {
                let at = Instant::now() + Duration::from_millis(s.delay.max(0) as u64);
                hold(&self.toxics, &stage.toxic, at).await;
            }
        }
    }

    fn state(&mut self, uid: u64) -> &mut StageState {
        // `sync` creates a state for every toxic in the chain before `emit` can see it.
        self.states.entry(uid).or_insert(StageState {
            rev: 0,
            active: true,
            sent: 0,
            debt_ns: 0,
        })
    }
}

/// Sleeps until `deadline` on behalf of `toxic`. Returns false early if the toxic is removed or
/// updated meanwhile; the caller then lets its data through at once.
async fn hold(toxics: &watch::Receiver<Chains>, toxic: &Toxic, deadline: Instant) -> bool {
    let mut rx = toxics.clone();
    let sleep = sleep_until(deadline);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            changed = rx.changed() => {
                if changed.is_err() {
                    (&mut sleep).await;
                    return true;
                }
                let now = rx.borrow_and_update().find(&toxic.name).map(|t| (t.uid, t.rev));
                if now != Some((toxic.uid, toxic.rev)) {
                    return false;
                }
            }
        }
    }
}
