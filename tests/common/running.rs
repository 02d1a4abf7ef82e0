//! The `sluice` binary as a user runs it, as a child process with JSON logs on stderr.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
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
        Self::launch(config, launcher, &[]).await
    }

    /// [`Running::start`] with extra environment variables (`NOTIFY_SOCKET`).
    pub async fn start_with_env(config: &Path, env: &[(&str, &OsStr)]) -> Self {
        Self::launch(config, &[], env).await
    }

    /// [`Running::start`] from another path to the executable (a copy the test replaces).
    pub async fn start_binary(binary: &Path, config: &Path) -> Self {
        Self::launch_binary(binary.as_os_str(), config, &[], &[]).await
    }

    async fn launch(config: &Path, launcher: &[&str], env: &[(&str, &OsStr)]) -> Self {
        let sluice = OsStr::new(env!("CARGO_BIN_EXE_sluice"));
        Self::launch_binary(sluice, config, launcher, env).await
    }

    async fn launch_binary(
        sluice: &OsStr,
        config: &Path,
        launcher: &[&str],
        env: &[(&str, &OsStr)],
    ) -> Self {
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
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Only errors before logging is set up (a bad config) are plain text: kept as
                // `{"raw": line}` so a test can read them.
                let json: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "raw": line }));
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

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
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

    /// Reads log lines until one matches `what`, and returns it; fails after `within`, or if
    /// sluice exits first.
    pub async fn wait_for_line(
        &mut self,
        within: Duration,
        what: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(within, async {
            while let Some(line) = self.lines.recv().await {
                if what(&line) {
                    return Some(line);
                }
                seen.push(line);
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("sluice exited before the awaited line; it logged {seen:#?}"),
            Err(_) => panic!("no awaited line within {within:?}; sluice logged {seen:#?}"),
        }
    }

    /// Sends SIGTERM, checks the exit code is 0, and returns every remaining log line.
    pub async fn stop(self) -> Vec<serde_json::Value> {
        self.stop_with("-TERM").await
    }

    /// Sends `signal` (as `kill` takes it: `-QUIT`), checks the exit code is 0, and returns
    /// every remaining log line.
    pub async fn stop_with(mut self, signal: &str) -> Vec<serde_json::Value> {
        self.signal(signal);
        let exit = self.wait().await;
        assert_eq!(
            exit.code(),
            Some(0),
            "sluice exits 0 after {signal} (killed by signal {:?})",
            std::os::unix::process::ExitStatusExt::signal(&exit)
        );
        self.rest().await
    }

    /// Waits for the child to exit, however long that takes (a test bounds it with a timeout).
    pub async fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap()
    }

    /// Every log line not read yet. Call it once the child has exited: its stderr reaches EOF
    /// and the channel closes after the last line.
    pub async fn rest(mut self) -> Vec<serde_json::Value> {
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
