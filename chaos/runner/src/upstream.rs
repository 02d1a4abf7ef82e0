//! What stands behind each member's fault proxy: a built-in server ([`MemberServer`]), the
//! user's running upstream (an address the drill never stops), or a command the drill starts
//! on a free loopback port and owns by its PID.
//!
//! A started command runs through `sh -c` in a process group of its own, so `kill` ends the
//! shell and what it started (SIGKILL to that group, which the drill created) and nothing else.
//! Start waits until the port accepts, under [`READY_TIMEOUT`], and fails with the tail of the
//! command's stderr when it exits or never listens.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::members::MemberServer;
use super::scenario::{MemberSource, MemberSpec};

/// From spawning a `start` command to its port accepting connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of a command's stderr kept for error messages.
const STDERR_TAIL: usize = 10;

/// One member's upstream.
#[derive(Debug)]
pub enum Upstream {
    Builtin(MemberServer),
    /// The user's upstream: faults go through its proxy only (validation refuses kill/restart).
    Addr(SocketAddr),
    Process(Box<Process>),
}

impl Upstream {
    pub async fn start(index: u32, spec: &MemberSpec) -> io::Result<Self> {
        match &spec.source {
            MemberSource::Builtin => Ok(Self::Builtin(
                MemberServer::start(index, spec.server).await?,
            )),
            MemberSource::Addr(addr) => Ok(Self::Addr(*addr)),
            MemberSource::Start(command) => {
                Ok(Self::Process(Box::new(Process::start(command).await?)))
            }
        }
    }

    /// Where the member's proxy dials.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Builtin(s) => s.addr(),
            Self::Addr(addr) => *addr,
            Self::Process(p) => p.addr,
        }
    }

    /// Stops a built-in server or a started command; a no-op for `addr` and when stopped.
    pub async fn kill(&self) {
        match self {
            Self::Builtin(s) => s.kill().await,
            Self::Addr(_) => {}
            Self::Process(p) => p.kill().await,
        }
    }

    /// Brings a killed member back on the same port.
    pub async fn restart(&self) -> Result<(), String> {
        match self {
            Self::Builtin(s) => s
                .restart()
                .map_err(|e| format!("cannot listen on {} again: {e}", s.addr())),
            Self::Addr(addr) => Err(format!("{addr} is the user's upstream; it cannot restart")),
            Self::Process(p) => p.restart().await.map_err(|e| e.to_string()),
        }
    }
}

/// A `start` command on its port.
#[derive(Debug)]
pub struct Process {
    template: String,
    addr: SocketAddr,
    child: tokio::sync::Mutex<Option<Child>>,
}

impl Process {
    async fn start(template: &str) -> io::Result<Self> {
        let addr = super::ports::fixed_loopback()?;
        let child = spawn_ready(template, addr).await?;
        Ok(Self {
            template: template.to_string(),
            addr,
            child: tokio::sync::Mutex::new(Some(child)),
        })
    }

    /// SIGKILL to the command's process group, then reaps the shell.
    async fn kill(&self) {
        if let Some(mut child) = self.child.lock().await.take() {
            kill_group(&child);
            let _ = child.wait().await;
        }
    }

    async fn restart(&self) -> io::Result<()> {
        let mut slot = self.child.lock().await;
        if slot.is_none() {
            *slot = Some(spawn_ready(&self.template, self.addr).await?);
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.get_mut().as_ref() {
            kill_group(child);
        }
    }
}

/// SIGKILL to the process group `child` leads (one the drill created with `process_group(0)`):
/// the shell and whatever it started.
pub(crate) fn kill_group(child: &Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

async fn spawn_ready(template: &str, addr: SocketAddr) -> io::Result<Child> {
    let command = super::workload::substitute(template, addr);
    let mut child = Command::new("sh")
        .args(["-c", &command])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{command}`: {e}")))?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut reader = None;
    if let Some(stderr) = child.stderr.take() {
        let tail = Arc::clone(&tail);
        reader = Some(tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }));
    }
    let failed = |child: &Child, why: String| {
        kill_group(child);
        let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
        io::Error::other(format!(
            "`{command}` {why}; its stderr ends: {:?}",
            tail.join("\n")
        ))
    };
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            // The pipe ends when the command's last process exits: then every line is read.
            if let Some(reader) = reader.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
            }
            return Err(failed(
                &child,
                format!("exited ({status}) before {addr} accepted"),
            ));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(child);
        }
        if tokio::time::Instant::now() >= deadline {
            let err = failed(
                &child,
                format!("did not accept on {addr} within {READY_TIMEOUT:?}"),
            );
            let _ = child.wait().await;
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
