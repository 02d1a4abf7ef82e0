//! The fault injector a drill talks to: a Toxiproxy at `TOXIPROXY_URL`, or a
//! `sluice-toxiproxy` the runner starts on 127.0.0.1 port 0 and stops by PID.
//!
//! The binary is looked up, in order: `$SLUICE_TOXIPROXY` (a path), next to the current
//! executable (`target/*/sluice` beside `target/*/sluice-toxiproxy`), one directory up (test
//! binaries live in `target/*/deps`), and otherwise it is built with
//! `cargo build -p sluice-toxiproxy` in this source tree, whose output names the executable.
//! The runner waits for the ready line, `listening on ADDR`, under a deadline.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::toxiproxy::{Toxiproxy, ToxiproxyError};

const BINARY: &str = "sluice-toxiproxy";
/// Time allowed from spawn to the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the injector comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InjectorChoice {
    /// Start `sluice-toxiproxy` (found or built as the module doc says).
    #[default]
    Spawn,
    /// Use a running Toxiproxy API (`TOXIPROXY_URL`).
    Url(String),
}

impl InjectorChoice {
    /// `TOXIPROXY_URL` when set and not empty, else [`InjectorChoice::Spawn`].
    pub fn from_env() -> Self {
        match std::env::var("TOXIPROXY_URL") {
            Ok(url) if !url.trim().is_empty() => Self::Url(url),
            _ => Self::Spawn,
        }
    }
}

/// The injector could not be started or reached.
#[derive(Debug, Error)]
pub enum InjectorError {
    #[error(transparent)]
    Api(#[from] ToxiproxyError),
    #[error("cannot find {BINARY}: {0}")]
    NotFound(String),
    #[error("cannot start {path}: {reason}")]
    Start { path: PathBuf, reason: String },
}

/// A running injector; [`Injector::stop`] ends a spawned one.
#[derive(Debug)]
pub struct Injector {
    api: Toxiproxy,
    /// The process we started; `None` for `TOXIPROXY_URL`.
    child: Option<(Child, PathBuf)>,
    pub version: String,
}

// === impl Injector ===

impl Injector {
    pub async fn start(choice: &InjectorChoice) -> Result<Self, InjectorError> {
        let (api, child) = match choice {
            InjectorChoice::Url(url) => (Toxiproxy::from_url(url)?, None),
            InjectorChoice::Spawn => {
                let path = find_binary().await?;
                let (child, api) = spawn(&path).await?;
                (api, Some((child, path)))
            }
        };
        let version = api.version().await?;
        Ok(Self {
            api,
            child,
            version,
        })
    }

    pub fn api(&self) -> &Toxiproxy {
        &self.api
    }

    /// `sluice-toxiproxy 2.12.0 at 127.0.0.1:PORT (pid N)` or `Toxiproxy 2.x at TOXIPROXY_URL`.
    pub fn describe(&self) -> String {
        match &self.child {
            Some((child, path)) => format!(
                "{} {} at {} (pid {}, started by the runner)",
                path.file_name()
                    .map_or(BINARY.into(), |n| n.to_string_lossy()),
                self.version,
                self.api.addr(),
                child.id().map_or("?".to_string(), |p| p.to_string()),
            ),
            None => format!(
                "Toxiproxy {} at {} (TOXIPROXY_URL)",
                self.version,
                self.api.addr()
            ),
        }
    }

    /// Stops a spawned injector by its PID and reaps it; a `TOXIPROXY_URL` one is left alone.
    pub async fn stop(self) {
        if let Some((mut child, _)) = self.child {
            // Kill (SIGKILL to this PID) and wait: the injector keeps no state worth flushing.
            let _ = child.kill().await;
        }
    }
}

async fn spawn(path: &Path) -> Result<(Child, Toxiproxy), InjectorError> {
    let start_err = |reason: String| InjectorError::Start {
        path: path.to_path_buf(),
        reason,
    };
    let mut command = Command::new(path);
    command
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A drill kills members on purpose; the injector's per-connection warnings are noise.
        .env(
            "RUST_LOG",
            std::env::var("SLUICE_TOXIPROXY_LOG").unwrap_or_else(|_| "error".into()),
        )
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| start_err(e.to_string()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| start_err("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
    let line = match ready {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => return Err(start_err("exited before its ready line".into())),
        Ok(Err(e)) => return Err(start_err(format!("reading its ready line: {e}"))),
        Err(_) => return Err(start_err(format!("no ready line within {READY_TIMEOUT:?}"))),
    };
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| start_err(format!("unexpected ready line {line:?}")))?;
    Ok((child, Toxiproxy::new(addr)))
}

/// The `sluice-toxiproxy` binary, built if it cannot be found.
pub async fn find_binary() -> Result<PathBuf, InjectorError> {
    if let Some(path) = std::env::var_os("SLUICE_TOXIPROXY") {
        return Ok(PathBuf::from(path));
    }
    if let Ok(exe) = std::env::current_exe() {
        let candidates = exe.ancestors().skip(1).take(2).map(|dir| dir.join(BINARY));
        if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    build().await
}

/// `cargo build -p sluice-toxiproxy` in the tree this crate was built from; the compiler's
/// JSON messages name the executable, wherever the target directory is.
async fn build() -> Result<PathBuf, InjectorError> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    if !manifest.is_file() {
        return Err(InjectorError::NotFound(format!(
            "not next to this executable, and no source tree at {} to build it; set \
             SLUICE_TOXIPROXY or TOXIPROXY_URL",
            manifest.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = std::env::current_exe().is_ok_and(|exe| {
        exe.ancestors()
            .any(|d| d.file_name().is_some_and(|n| n == "release"))
    });
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-p",
            BINARY,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let output = command
        .output()
        .await
        .map_err(|e| InjectorError::NotFound(format!("running cargo build: {e}")))?;
    if !output.status.success() {
        return Err(InjectorError::NotFound(format!(
            "cargo build -p {BINARY} failed ({})",
            output.status
        )));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("executable")?.as_str().map(PathBuf::from))
        .find(|p| p.file_name().is_some_and(|n| n == BINARY))
        .ok_or_else(|| InjectorError::NotFound("cargo build named no executable".into()))
}
