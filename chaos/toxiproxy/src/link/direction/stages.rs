//! The toxics that turn one chunk into several steps: bandwidth pacing, the byte limit and the
//! slicer. Each passes what it lets through on to the next stage with `emit` as it goes, so
//! later toxics and the socket see the pieces one at a time, with the pauses between them.

use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::{Direction, Flow, Stage, hold};
use crate::link::{Chunk, effects};
use crate::toxic::kind::Slicer;

impl<W: AsyncWrite + Unpin + Send> Direction<'_, W> {
    /// Toxiproxy's bandwidth toxic: debt grows by each chunk's cost; a chunk bigger than one
    /// 100 ms step goes out a step at a time, the rest after the remaining debt.
    pub(super) async fn bandwidth(
        &mut self,
        chain: &[Stage],
        i: usize,
        mut chunk: Chunk,
        rate: i64,
    ) -> Flow {
        let toxic = chain[i].toxic.clone();
        let step = effects::bandwidth_step(rate);
        self.state(toxic.uid).debt_ns += effects::bandwidth_cost_ns(chunk.data.len(), rate);
        while chunk.data.len() > step {
            if !hold(
                &self.toxics,
                &toxic,
                Instant::now() + Duration::from_millis(100),
            )
            .await
            {
                return self.emit(chain, i + 1, chunk).await;
            }
            let head = Chunk {
                data: chunk.data.split_to(step),
                at: chunk.at,
            };
            self.state(toxic.uid).debt_ns -= 100_000_000;
            let flow = self.emit(chain, i + 1, head).await;
            if flow != Flow::Continue {
                return flow;
            }
        }
        let start = Instant::now();
        let debt = self.state(toxic.uid).debt_ns;
        if debt > 0 {
            hold(
                &self.toxics,
                &toxic,
                start + Duration::from_nanos(debt as u64),
            )
            .await;
        }
        // Oversleeping leaves a credit, so the average rate holds over many chunks.
        let slept = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.state(toxic.uid).debt_ns -= slept;
        self.emit(chain, i + 1, chunk).await
    }

    /// Lets through what is left of the limit, then closes once it is used up.
    pub(super) async fn limit_data(
        &mut self,
        chain: &[Stage],
        i: usize,
        mut chunk: Chunk,
        limit: i64,
    ) -> Flow {
        let uid = chain[i].toxic.uid;
        let remaining = (limit - self.state(uid).sent).max(0) as usize;
        chunk.data.truncate(remaining);
        let len = chunk.data.len() as i64;
        if len > 0 {
            let flow = self.emit(chain, i + 1, chunk).await;
            self.state(uid).sent += len;
            if flow != Flow::Continue {
                return flow;
            }
        }
        if limit - self.state(uid).sent <= 0 {
            Flow::Close(i)
        } else {
            Flow::Continue
        }
    }

    /// Sends the chunk as slices, pausing `delay` µs after each one.
    pub(super) async fn slice(
        &mut self,
        chain: &[Stage],
        i: usize,
        chunk: Chunk,
        s: Slicer,
    ) -> Flow {
        let toxic = chain[i].toxic.clone();
        let bounds = effects::slice_bounds(chunk.data.len(), &s, &mut rand::rng());
        let pause = Duration::from_micros(s.delay.max(0) as u64);
        for (start, end) in bounds {
            let slice = Chunk {
                data: chunk.data.slice(start..end),
                at: chunk.at,
            };
            let flow = self.emit(chain, i + 1, slice).await;
            if flow != Flow::Continue {
                return flow;
            }
            if !hold(&self.toxics, &toxic, Instant::now() + pause).await {
                // Interrupted: the rest goes through in one piece.
                let rest = Chunk {
                    data: chunk.data.slice(end..),
                    at: chunk.at,
                };
                return self.emit(chain, i + 1, rest).await;
            }
        }
        Flow::Continue
    }
}
