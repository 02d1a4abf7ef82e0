//! Hot reload: read and validate the config file beside the running one, then apply it.
//!
//! Triggers: SIGHUP (wired in `main`), `POST /reload` (admin API), and `--watch` (polls the
//! file). Reloads are serialized by the runtime's lock; nothing on the connection path takes it.
//! A file with any problem changes nothing: every problem is logged with the same message
//! `sluice check` prints, counted as `result="error"`, and kept for `/status`.
//!
//! The [`Reloader`] publishes each applied config's view to the admin API's
//! [`admin::SharedView`] and serves `POST /reload` as its [`admin::Reload`]; it holds nothing
//! of the admin state, so no `Arc` cycle keeps a finished run alive.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::ServerError;
use super::runtime::Runtime;
use crate::admin::{self, ReloadFailure, ReloadOutcome};
use crate::config::{self, ConfigErrors};
use crate::dns::{self, Dns};
use crate::telemetry::metrics as m;

/// Why a reload changed nothing.
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The new file is invalid; every problem, one per line.
    #[error("{0}")]
    Config(ConfigErrors),
    /// A new listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] ServerError),
    /// The server runs without a config file (`sluice forward`).
    #[error("nothing to reload: sluice was started without a config file")]
    NoFile,
}

/// A handle that reloads the running server; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::sync::Mutex<Runtime>,
    /// The validated file the runtime runs, before DNS entries are expanded into members;
    /// changed only while `runtime` is locked.
    file: Mutex<config::Config>,
    /// Each DNS entry's answer: every apply expands the file with the current ones.
    dns: Arc<Dns>,
    path: Option<PathBuf>,
    /// What `/status` shows, republished after each applied config.
    view: admin::SharedView,
    last: Mutex<Option<ReloadOutcome>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

// === impl Reloader ===

impl Reloader {
    /// `runtime` runs `file` expanded with the answers `dns` holds.
    pub(super) fn new(runtime: Runtime, file: config::Config, dns: Arc<Dns>) -> Self {
        let path = runtime.config.source.clone();
        let view = admin::SharedView::new(runtime.admin_view());
        Self {
            inner: Arc::new(Inner {
                runtime: tokio::sync::Mutex::new(runtime),
                file: Mutex::new(file),
                dns,
                path,
                view,
                last: Mutex::new(None),
            }),
        }
    }

    pub(super) fn runtime(&self) -> &tokio::sync::Mutex<Runtime> {
        &self.inner.runtime
    }

    /// The view the admin API reads; this handle keeps it current.
    pub(super) fn view(&self) -> admin::SharedView {
        self.inner.view.clone()
    }

    /// Whether there is a file to reload from.
    pub fn has_file(&self) -> bool {
        self.inner.path.is_some()
    }

    /// Reads the config file again and applies it; returns a summary of what changed.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        let Some(path) = self.inner.path.clone() else {
            return Err(ReloadError::NoFile);
        };
        let parsed = tokio::task::spawn_blocking(move || config::from_file(&path))
            .await
            .expect("config parsing does not panic");
        let result = match parsed {
            Ok(new) => self.apply(new).await,
            Err(errors) => Err(ReloadError::Config(errors)),
        };
        self.record(&result);
        result
    }

    /// Applies an already validated config (tests and embedders), its DNS entries expanded
    /// with the answers held now; entries it adds are resolved at once and join then.
    pub async fn apply(&self, new: config::Config) -> Result<String, ReloadError> {
        let mut runtime = self.inner.runtime.lock().await;
        let expanded = dns::expand(&new, &self.inner.dns.answers());
        let changes = runtime.apply(expanded, true)?;
        self.inner.dns.configure(&new);
        *self.inner.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        self.inner.view.store(runtime.admin_view());
        Ok(changes.summary())
    }

    /// Every DNS entry: its addresses, when it was last resolved and will be next, and the
    /// last error (what `/status` shows under `dns`).
    pub fn dns_status(&self) -> Vec<dns::EntryStatus> {
        self.inner.dns.status()
    }

    /// Keeps DNS entries current until `stop`: asks each name again when its TTL runs out
    /// (or its backoff after a failure) and, when an answer changed, applies the file again
    /// expanded with the new answers, the way a reload does: members that stay keep their
    /// state, members whose address left take no new connections, live ones keep flowing.
    pub async fn keep_dns_current(self, stop: CancellationToken) {
        let dns = Arc::clone(&self.inner.dns);
        loop {
            let queries = self.file().dns_queries();
            if dns.resolve_due(&queries).await {
                self.refresh_dns().await;
            }
            let next = dns.next_due();
            tokio::select! {
                () = stop.cancelled() => return,
                () = dns.changed() => {}
                () = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    fn file(&self) -> config::Config {
        self.inner
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-expands the running file with the current answers.
    async fn refresh_dns(&self) {
        let mut runtime = self.inner.runtime.lock().await;
        let expanded = dns::expand(&self.file(), &self.inner.dns.answers());
        match runtime.apply(expanded, true) {
            Ok(changes) => {
                if !changes.is_empty() {
                    info!(changes = %changes.summary(), "members follow DNS");
                }
                self.inner.view.store(runtime.admin_view());
            }
            // Unreachable in practice: the listeners are the running ones.
            Err(error) => error!(%error, "cannot apply a DNS change"),
        }
    }

    /// A running pool by name (after reloads, the current one).
    pub async fn pool(&self, name: &str) -> Option<Arc<crate::upstream::Pool>> {
        self.inner.runtime.lock().await.pools.get(name).cloned()
    }

    /// The last reload's result, if any reload was tried.
    pub fn last(&self) -> Option<ReloadOutcome> {
        self.inner
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, result: &Result<String, ReloadError>) {
        let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let outcome = match result {
            Ok(summary) => {
                info!(changes = %summary, "config reloaded");
                metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "ok").increment(1);
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                metrics::gauge!(m::CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS)
                    .set(now.as_secs_f64());
                ReloadOutcome {
                    ok: true,
                    at,
                    detail: summary.clone(),
                }
            }
            Err(e) => {
                match e {
                    // One log line per problem, worded as `sluice check` words it.
                    ReloadError::Config(errors) => {
                        for problem in errors.iter() {
                            error!(problem = %problem, "reload rejected; still running the previous config");
                        }
                    }
                    other => {
                        error!(error = %other, "reload failed; still running the previous config")
                    }
                }
                metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "error").increment(1);
                ReloadOutcome {
                    ok: false,
                    at,
                    detail: e.to_string(),
                }
            }
        };
        *self.inner.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }

    /// Reloads whenever the file changes, polling every `every`, until `stop`. Polling needs
    /// no platform watcher and catches editors that replace the file by renaming.
    ///
    /// A change is applied only once the file is stable: its bytes unchanged for
    /// `SETTLE` (500 ms) (a file written in place in two steps is never read between them). A
    /// config that would close a listener (a route or listen address gone) must then stay
    /// unchanged for one more `SETTLE`: a half-written file whose first half is itself
    /// valid must not take a listener down even briefly.
    pub async fn watch(self, every: Duration, stop: CancellationToken) {
        let Some(path) = self.inner.path.clone() else {
            return;
        };
        let mut seen = stamp(&path);
        // When the change being settled began: a file that never stops changing is applied
        // after MAX_SETTLE rather than never.
        let mut pending_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let now = stamp(&path);
            if now == seen || now.is_none() {
                continue;
            }
            info!(path = %path.display(), "config file changed; waiting for it to settle");
            let since = *pending_since.get_or_insert_with(tokio::time::Instant::now);
            let settled = tokio::select! {
                () = stop.cancelled() => return,
                settled = settled(&path, since) => settled,
            };
            let Some((text, read_stamp)) = settled else {
                seen = stamp(&path);
                pending_since = None;
                continue;
            };
            // The stamp from before the read that gave `text`: a write after it is seen by
            // the next poll, never mistaken for what is applied now.
            seen = read_stamp;
            let overdue = since.elapsed() >= MAX_SETTLE;
            let parsed = config::from_str(&text, Some(&path));
            if let Ok(new) = &parsed
                && !overdue
                && let removed = self.closes_listeners(new).await
                && !removed.is_empty()
            {
                info!(
                    path = %path.display(),
                    closing = %removed.join(", "),
                    "the change closes listeners; applying it once the file is unchanged for {SETTLE:?} more"
                );
                let confirmed = tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(SETTLE) => read(&path).await,
                };
                if confirmed.as_deref() != Some(text.as_str()) {
                    // Changed again: the next poll sees it and settles afresh.
                    continue;
                }
            }
            pending_since = None;
            info!(path = %path.display(), "config file changed; reloading");
            let result = match parsed {
                Ok(new) => self.apply(new).await,
                Err(errors) => Err(ReloadError::Config(errors)),
            };
            self.record(&result);
        }
    }

    /// `route addr` for every listener the running config has and `new` does not.
    async fn closes_listeners(&self, new: &config::Config) -> Vec<String> {
        let listeners = |c: &config::Config| -> Vec<(String, std::net::SocketAddr)> {
            c.routes
                .iter()
                .flat_map(|r| r.listen.iter().map(move |a| (r.name.clone(), *a)))
                .collect()
        };
        let wanted = listeners(new);
        let runtime = self.inner.runtime.lock().await;
        listeners(&runtime.config)
            .into_iter()
            .filter(|l| !wanted.contains(l))
            .map(|(route, addr)| format!("{route} {addr}"))
            .collect()
    }
}

/// How long a watched file's bytes must stay the same before a reload reads them.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a watched file may keep changing before its latest bytes are applied anyway.
const MAX_SETTLE: Duration = Duration::from_secs(10);
/// How often a changing file is looked at while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(100);

/// What the watcher compares between polls: modification time, size and inode (a rename
/// brings a new inode with a possibly equal time and size).
fn stamp(path: &PathBuf) -> Option<(Option<SystemTime>, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len(), m.ino()))
}

async fn read(path: &PathBuf) -> Option<String> {
    tokio::fs::read_to_string(path).await.ok()
}

/// The file's text once it has not changed for [`SETTLE`]; `None` when it cannot be read
/// (removed mid-write: the next change starts over).
///
/// Returns the text with the file's stamp taken just before the read that gave it. A file
/// still changing [`MAX_SETTLE`] after `since` gives its latest text (with a warning): a
/// writer that never stops must not freeze the config forever.
async fn settled(
    path: &PathBuf,
    since: tokio::time::Instant,
) -> Option<(String, Option<(Option<SystemTime>, u64, u64)>)> {
    let mut last_stamp = stamp(path);
    let mut last = read(path).await?;
    let mut stable_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let now_stamp = stamp(path);
        let now = read(path).await?;
        if now != last {
            last = now;
            last_stamp = now_stamp;
            stable_since = tokio::time::Instant::now();
        } else if stable_since.elapsed() >= SETTLE {
            return Some((last, last_stamp));
        }
        if since.elapsed() >= MAX_SETTLE {
            tracing::warn!(
                path = %path.display(),
                "config file still changing after {MAX_SETTLE:?}; reloading its latest bytes"
            );
            return Some((last, last_stamp));
        }
    }
}

impl admin::Reload for Reloader {
    fn reload(&self) -> BoxFuture<'_, Result<String, ReloadFailure>> {
        Box::pin(async move {
            Reloader::reload(self).await.map_err(|e| match e {
                ReloadError::Config(errors) => {
                    ReloadFailure::Invalid(errors.iter().map(|e| e.to_string()).collect())
                }
                other => ReloadFailure::Failed(other.to_string()),
            })
        })
    }

    fn last(&self) -> Option<ReloadOutcome> {
        Reloader::last(self)
    }

    fn dns(&self) -> Vec<crate::dns::EntryStatus> {
        self.dns_status()
    }
}
