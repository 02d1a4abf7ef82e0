//! What the admin API needs of the server it serves, as small handles the server wires in.
//!
//! Admin imports nothing of the server: it reads a [`SharedView`] the server publishes to, a
//! [`Draining`] flag, and reloads through a [`Reload`] trait object. None of these points back
//! at the admin state, so the server's state and the admin's form no `Arc` cycle and are freed
//! when a run ends.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::View;

/// The routes-and-pools view, published whole by the server (at startup and after each
/// reload) and read by `/status` and the member actions, so a request sees one config, never
/// half of two. Cheap to clone; every clone reads and writes the same view.
#[derive(Clone)]
pub struct SharedView(Arc<ArcSwap<View>>);

/// Whether the server has begun to drain: from then on `/healthz` answers 503 and `/status`
/// says `draining`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Draining(CancellationToken);

/// How the admin API reloads the server (`POST /reload`) and reads the last result
/// (`/status`). The server implements it on its reload handle.
pub trait Reload: Send + Sync {
    /// Reads the config file again and applies it; `Ok` carries what changed
    /// (`routes +1 -0 ~1, pools ..., listeners ..., members ...`).
    fn reload(&self) -> BoxFuture<'_, Result<String, ReloadFailure>>;

    /// The last reload's result; `None` until a reload was tried.
    fn last(&self) -> Option<ReloadOutcome>;

    /// Every DNS entry of the config: its addresses, when it was resolved and will be next,
    /// the last error. Empty for a config without DNS names.
    fn dns(&self) -> Vec<crate::dns::EntryStatus> {
        Vec::new()
    }
}

/// Why a reload changed nothing, in the terms the API answers with.
#[derive(Debug)]
pub enum ReloadFailure {
    /// The file is invalid: every problem, worded as `sluice check` words it (answered 422).
    Invalid(Vec<String>),
    /// Anything else, such as a new listen address that could not be bound (answered 409).
    Failed(String),
}

/// The last reload's result, for `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadOutcome {
    pub ok: bool,
    /// RFC 3339 wall-clock time of the attempt.
    pub at: String,
    /// On success, what changed (`routes +1 -0 ~1, ...`); on failure, every problem.
    pub detail: String,
}

// === impl SharedView ===

impl SharedView {
    pub fn new(view: View) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(view)))
    }

    /// Replaces the view (after a reload); requests already holding the old one finish on it.
    pub fn store(&self, view: View) {
        self.0.store(Arc::new(view));
    }

    pub(super) fn load(&self) -> Arc<View> {
        self.0.load_full()
    }
}

impl fmt::Debug for SharedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedView").field(&self.0.load()).finish()
    }
}

// === impl Draining ===

impl Draining {
    /// Draining once `started` is cancelled (the server's stop signal).
    pub fn new(started: CancellationToken) -> Self {
        Self(started)
    }

    pub fn is_draining(&self) -> bool {
        self.0.is_cancelled()
    }
}
