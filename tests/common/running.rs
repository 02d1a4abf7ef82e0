//! The `sluice` binary as a user runs it, as a child process with JSON logs on stderr.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

/// A `sluice --log-format json run` child process and its stderr, line by line. Dropped
/// without `stop` (a failed assertion), it kills the child so no sluice outlives the test.
pub struct Running {
    /// Every route's first listen address, in the order of their "listening" lines.
    pub addrs: Vec<SocketAddr>,
    /// The admin listener's address, when `[admin]` is set.
    pub admin: Option<SocketAddr>,
    /// The log lines read while waiting for the listeners (the startup lines).
    pub startup: Vec<serde_json::Value>,
    child: Option<Child>,
    pub lines: UnboundedReceiver<serde_json::Value>,
    pub addr: SocketAddr,
}

impl Running {
    /// Starts sluice on `config` and waits for its "listening" line (which names the port).
    pub async fn start(config: &Path) -> Self {
        Self::start_with(config, &[]).await
    }

    /// [`Running::start`] under a launcher: `launcher[0] launcher[1..] sluice ...`, e.g.
    /// `["prlimit", "--nofile=200:200", "--"]` to run it with a lowered descriptor limit.
    pub async fn start_with(config: &Path, launcher: &[&str]) -> Self {
        let sluice = env!("CARGO_BIN_EXE_sluice");
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(sluice);
                c
            }
            None => Command::new(sluice),
        };
        let mut child = command
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let json: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
                if tx.send(json).is_err() {
                    break;
                }
            }
        });
        // Routes log "listening" as they bind; the admin listener, when set, after them.
        let wants_admin = std::fs::read_to_string(config).is_ok_and(|t| t.contains("[admin]"));
        let (addrs, admin, startup) = tokio::time::timeout(Duration::from_secs(10), async {
            let (mut addrs, mut admin, mut startup) = (Vec::new(), None, Vec::new());
            loop {
                let json = lines.recv().await.expect("sluice exited before listening");
                startup.push(json.clone());
                let addr = || {
                    json["addr"]
                        .as_str()
                        .unwrap()
                        .parse::<SocketAddr>()
                        .unwrap()
                };
                if json["message"] == "listening" {
                    addrs.push(addr());
                } else if json["message"] == "admin listening" {
                    admin = Some(addr());
                }
                if !addrs.is_empty() && (admin.is_some() || !wants_admin) {
                    return (addrs, admin, startup);
                }
            }
        })
        .await
        .expect("no listening line within 10s");
        Self {
            child: Some(child),
            lines,
            addr: addrs[0],
            addrs,
            admin,
            startup,
        }
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(
            Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Sends SIGTERM, checks the exit code is 0, and returns every remaining log line.
    pub async fn stop(mut self) -> Vec<serde_json::Value> {
        self.signal("-TERM");
        let mut child = self.child.take().expect("running");
        let exit = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            exit.code(),
            Some(0),
            "sluice exits 0 after SIGTERM (killed by signal {:?})",
            std::os::unix::process::ExitStatusExt::signal(&exit)
        );
        // The child has exited, so its stderr reaches EOF and the channel closes after the
        // last line.
        let mut rest = Vec::new();
        while let Some(line) = self.lines.recv().await {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
