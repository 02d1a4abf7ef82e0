//! Active health checking: one heartbeat task per member.
//! TODO(#4): stub; the health helper replaces this module.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;
use crate::upstream::Member;

/// Starts the heartbeat task of one member. It probes until `shutdown` is cancelled, flipping
/// `member`'s health after `rise` successes or `fall` failures. `seed` drives its jitter.
pub fn spawn_checker(
    pool: Arc<str>,
    member: Arc<Member>,
    config: Arc<HealthConfig>,
    seed: u64,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let _ = (pool, member, config, seed);
    tokio::spawn(async move { shutdown.cancelled().await })
}
