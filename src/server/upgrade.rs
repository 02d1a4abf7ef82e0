//! Binary upgrade without refusing a connection (SIGUSR2), as nginx's USR2, HAProxy's `-x` and
//! Envoy's hot restart do it: the listening sockets are kernel objects, so a second process
//! that holds them accepts from the same queues, and nothing is closed in between.
//!
//! Old process ([`on_sigusr2`]): binds a Unix socket at a fresh path (mode 0600), starts the
//! binary on disk ([`Binary`], resolved at startup) with the same arguments plus
//! `SLUICE_UPGRADE_FROM=<path>`, checks that the peer which connects is that child
//! (`SO_PEERCRED`), and sends it a duplicate of every listening socket (each route's, one per
//! worker with `reuse_port`, and the admin one) with `SCM_RIGHTS`, each described by the route
//! and the configured address it serves. When the child writes `ready` the old process stops
//! accepting and drains as after SIGTERM ([`Shutdown::hand_over`]); if it exits or stays
//! silent for [`READY_TIMEOUT`], the old one kills it, logs why, and keeps serving.
//!
//! New process ([`receive`]): takes the sockets before binding; `Runtime` uses them for the
//! addresses its config still has (by local address, or by route and address for port 0),
//! binds what is new, and closes what it does not need. Once serving it calls
//! [`Parent::ready`]. Member state is not handed over: the new process starts from each pool's
//! `init_state` and its first probes, as at a cold start.
//!
//! Everything here is safe code: rustix's `sendmsg`/`recvmsg` hand out `OwnedFd`s.

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Child;
use tokio::signal::unix::Signal;
use tracing::{error, info, warn};

use super::{Reloader, Shutdown};

/// The environment variable that tells a new process where its parent's sockets wait.
pub const ENV: &str = "SLUICE_UPGRADE_FROM";
/// How long the new process has to report ready before the old one kills it.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors per message, below the kernel's `SCM_MAX_FD` (253).
const FDS_PER_MESSAGE: usize = 200;
/// How long the new process waits for its parent's sockets.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upgrade did not happen; the old process keeps serving.
#[derive(Debug, Error)]
pub enum UpgradeError {
    #[error("shutting down: nothing to hand over")]
    Stopping,
    #[error("cannot create the upgrade socket {path}: {error}")]
    Socket { path: PathBuf, error: io::Error },
    #[error("cannot duplicate a listening socket: {0}")]
    Duplicate(io::Error),
    #[error("cannot start {binary}: {error}")]
    Spawn { binary: PathBuf, error: io::Error },
    #[error("the new process (pid {pid}) exited {status} before reporting ready")]
    Exited { pid: u32, status: String },
    #[error("the new process (pid {pid}) did not report ready within {after:?}; killed it")]
    Timeout { pid: u32, after: Duration },
    #[error("cannot hand the listening sockets to the new process (pid {pid}): {error}")]
    Handshake { pid: u32, error: io::Error },
    #[error("cannot receive the listening sockets from {path}: {error}")]
    Receive { path: PathBuf, error: io::Error },
}

/// What one handed-over descriptor serves: a route's listen address as configured (port 0
/// stays 0), or the admin listener (`route: None`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    pub route: Option<String>,
    pub listen: SocketAddr,
}

/// The executable and arguments this process was started with, resolved at startup: after
/// the file is replaced, `/proc/self/exe` names the deleted inode, while the path names the
/// new binary. A path with a `/` in `argv[0]` is kept as given (a symlink switched to a new
/// release is followed at upgrade time); a bare name is what `current_exe` found.
#[derive(Clone, Debug)]
pub struct Binary {
    pub path: PathBuf,
    pub args: Vec<OsString>,
}

impl Binary {
    pub fn current() -> io::Result<Self> {
        let mut args = std::env::args_os();
        let path = match args.next() {
            Some(argv0) if argv0.as_bytes().contains(&b'/') => std::env::current_dir()?.join(argv0),
            _ => std::env::current_exe()?,
        };
        Ok(Self {
            path,
            args: args.collect(),
        })
    }
}

/// The old process's handle on its listening sockets, for [`on_sigusr2`].
#[derive(Clone)]
pub struct Handoff {
    reloader: Reloader,
}

impl Handoff {
    pub(super) fn new(reloader: Reloader) -> Self {
        Self { reloader }
    }

    async fn sockets(&self) -> Result<Vec<(Entry, OwnedFd)>, UpgradeError> {
        self.reloader.runtime().lock().await.handoff_sockets()
    }
}

/// SIGUSR2: upgrade to the binary on disk. A SIGUSR2 while one is in progress, or after this
/// process handed over, is logged and ignored; after a failure the next one tries again.
pub async fn on_sigusr2(
    mut usr2: Signal,
    handoff: Handoff,
    binary: Option<Binary>,
    shutdown: Shutdown,
) {
    let pid = std::process::id();
    while usr2.recv().await.is_some() {
        let Some(binary) = &binary else {
            error!(
                pid,
                "SIGUSR2: cannot upgrade: the path of this binary was not found at startup"
            );
            continue;
        };
        if shutdown.is_stopping() {
            warn!(pid, "SIGUSR2 ignored: shutting down");
            continue;
        }
        info!(pid, binary = %binary.path.display(), "SIGUSR2: upgrading to the binary on disk");
        let started = tokio::time::Instant::now();
        let attempt = hand_over(&handoff, binary);
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                result = &mut attempt => break result,
                Some(()) = usr2.recv() => warn!(pid, "SIGUSR2 ignored: an upgrade is in progress"),
            }
        };
        match result {
            Ok(new_pid) => {
                let ready_ms = started.elapsed().as_millis() as u64;
                info!(
                    pid,
                    new_pid,
                    ready_ms,
                    "upgrade: the new process is serving; this one stops accepting and drains"
                );
                shutdown.hand_over();
                while usr2.recv().await.is_some() {
                    warn!(
                        pid,
                        new_pid, "SIGUSR2 ignored: this process has handed over and is draining"
                    );
                }
                return;
            }
            Err(e) => error!(pid, error = %e, "upgrade failed; this process keeps serving"),
        }
    }
}

/// Starts `binary` and hands it the sockets; `Ok(pid)` once it reported ready. On any
/// failure the child is gone (killed if still running) and the socket file removed.
async fn hand_over(handoff: &Handoff, binary: &Binary) -> Result<u32, UpgradeError> {
    let sockets = handoff.sockets().await?;
    let path = std::env::temp_dir().join(format!("sluice-upgrade-{}.sock", std::process::id()));
    let socket_error = |error| UpgradeError::Socket {
        path: path.clone(),
        error,
    };
    // A file left by a killed predecessor with our pid would fail the bind.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(socket_error(e)),
        _ => {}
    }
    let listener = UnixListener::bind(&path).map_err(socket_error)?;
    let _remove = RemoveOnDrop(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_error)?;
    let child = tokio::process::Command::new(&binary.path)
        .args(&binary.args)
        .env(ENV, &path)
        .spawn()
        .map_err(|error| UpgradeError::Spawn {
            binary: binary.path.clone(),
            error,
        })?;
    info!(
        pid = std::process::id(),
        new_pid = child.id(),
        sockets = sockets.len(),
        "upgrade: started the new process"
    );
    await_ready(child, &listener, &sockets, READY_TIMEOUT).await
}

/// Hands `sockets` to `child` once it connects to `listener` and waits for its `ready`, for at
/// most `timeout`; `Ok(pid)` then. A child that exits first, hangs up, or stays silent is
/// killed if still running and reaped before the error is returned.
async fn await_ready(
    mut child: Child,
    listener: &UnixListener,
    sockets: &[(Entry, OwnedFd)],
    timeout: Duration,
) -> Result<u32, UpgradeError> {
    let pid = child.id().unwrap_or_default();
    let attempt = tokio::time::timeout(timeout, async {
        tokio::select! {
            status = child.wait() => Err(exited(pid, status)),
            result = handshake(listener, pid, sockets) => result,
        }
    })
    .await;
    let error = match attempt {
        Ok(Ok(())) => return Ok(pid),
        Ok(Err(e)) => e,
        Err(_) => UpgradeError::Timeout {
            pid,
            after: timeout,
        },
    };
    // A child that hung up is usually exiting: its status says why better than the hang-up.
    let error = match error {
        UpgradeError::Handshake { .. } => {
            match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(status) => exited(pid, status),
                Err(_) => error,
            }
        }
        other => other,
    };
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    Err(error)
}

fn exited(pid: u32, status: io::Result<std::process::ExitStatus>) -> UpgradeError {
    let status = match status {
        Ok(status) => format!("with {status}"),
        Err(e) => format!("(cannot read its status: {e})"),
    };
    UpgradeError::Exited { pid, status }
}

/// Accepts the child's connection (any other peer is turned away), sends every socket, and
/// waits for `ready`.
async fn handshake(
    listener: &UnixListener,
    pid: u32,
    sockets: &[(Entry, OwnedFd)],
) -> Result<(), UpgradeError> {
    let error = |error| UpgradeError::Handshake { pid, error };
    let stream = loop {
        let (stream, _) = listener.accept().await.map_err(error)?;
        match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(cred) if cred.pid.as_raw_pid() as u32 == pid => break stream,
            Ok(cred) => warn!(
                peer = cred.pid.as_raw_pid(),
                expected = pid,
                "upgrade socket: not the new process; turned away"
            ),
            Err(e) => {
                warn!(error = %e, "upgrade socket: cannot read the peer's credentials; turned away")
            }
        }
    };
    for chunk in sockets.chunks(FDS_PER_MESSAGE) {
        let entries: Vec<&Entry> = chunk.iter().map(|(entry, _)| entry).collect();
        let mut line = serde_json::to_vec(&entries).expect("entries serialize");
        line.push(b'\n');
        let fds: Vec<_> = chunk.iter().map(|(_, fd)| fd.as_fd()).collect();
        send_with_fds(&stream, &line, &fds).await.map_err(error)?;
    }
    let mut stream = BufReader::new(stream);
    stream.write_all(b"end\n").await.map_err(error)?;
    let mut reply = String::new();
    stream.read_line(&mut reply).await.map_err(error)?;
    if reply == "ready\n" {
        Ok(())
    } else {
        Err(error(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "it hung up before reporting ready",
        )))
    }
}

async fn send_with_fds(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::other("ancillary buffer too small"));
            }
            rustix::net::sendmsg(
                stream,
                &[IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from)
        })
        .await?;
    // The descriptors went with the first byte; the rest, if any, is plain data.
    let mut rest = &bytes[sent..];
    while !rest.is_empty() {
        stream.writable().await?;
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// The new process's connection to its parent, to report ready on.
pub struct Parent {
    stream: std::os::unix::net::UnixStream,
}

impl Parent {
    /// Tells the parent every listener is serving: it stops accepting and drains.
    pub fn ready(mut self) -> io::Result<()> {
        self.stream.write_all(b"ready\n")
    }
}

/// A listening socket handed over by the old process.
pub(super) struct InheritedSocket {
    entry: Entry,
    local: SocketAddr,
    socket: std::net::TcpListener,
}

/// The sockets the old process handed over, not yet claimed by a listener.
#[derive(Default)]
pub struct Inherited {
    sockets: Vec<InheritedSocket>,
}

impl Inherited {
    /// Every inherited socket for a route's `listen` address: by local address for a fixed
    /// port, by route and configured address for port 0. Set non-blocking for tokio.
    pub(super) fn take_route(
        &mut self,
        listen: SocketAddr,
        route: &str,
    ) -> Vec<std::net::TcpListener> {
        self.take(|s| {
            if listen.port() == 0 {
                s.entry.route.as_deref() == Some(route) && s.entry.listen == listen
            } else {
                s.local == listen
            }
        })
    }

    /// The inherited admin listener for `listen`, matched like [`Inherited::take_route`].
    pub(super) fn take_admin(&mut self, listen: SocketAddr) -> Option<std::net::TcpListener> {
        self.take(|s| {
            if listen.port() == 0 {
                s.entry.route.is_none() && s.entry.listen == listen
            } else {
                s.local == listen
            }
        })
        .pop()
    }

    fn take(&mut self, wanted: impl Fn(&InheritedSocket) -> bool) -> Vec<std::net::TcpListener> {
        let (taken, kept) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(wanted);
        self.sockets = kept;
        taken
            .into_iter()
            .map(|s: InheritedSocket| s.socket)
            .collect()
    }

    /// Listening sockets systemd passed (socket activation: `LISTEN_FDS`, checked against
    /// `LISTEN_PID` by the listenfd crate, so a child that merely inherited the variables
    /// takes nothing). Each serves the route (or admin listener) whose address it is bound
    /// to; one no address names is closed with a log line. Empty without socket activation.
    pub fn from_systemd() -> Self {
        let mut fds = listenfd::ListenFd::from_env();
        let mut sockets = Vec::new();
        for i in 0..fds.len() {
            let socket = match fds.take_tcp_listener(i) {
                Ok(Some(socket)) => socket,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, index = i, "socket activation: passed descriptor is not a TCP listener; ignored");
                    continue;
                }
            };
            match socket.local_addr().and_then(|local| {
                socket.set_nonblocking(true)?;
                Ok(local)
            }) {
                Ok(local) => {
                    info!(addr = %local, "socket activation: using a listening socket from systemd");
                    sockets.push(InheritedSocket {
                        entry: Entry {
                            route: None,
                            listen: local,
                        },
                        local,
                        socket,
                    });
                }
                Err(e) => {
                    warn!(error = %e, index = i, "socket activation: unusable socket; ignored")
                }
            }
        }
        Self { sockets }
    }

    /// Closes what no listener claimed (the new config dropped those addresses).
    pub(super) fn close_unused(&mut self) {
        for s in self.sockets.drain(..) {
            info!(addr = %s.local, route = s.entry.route.as_deref().unwrap_or("admin"), "upgrade: closing an inherited socket the config no longer listens on");
        }
    }
}

/// In a process started by an upgrade (`SLUICE_UPGRADE_FROM` set): connects to the old
/// process and receives its listening sockets. `None` in a process started otherwise.
pub fn receive() -> Result<Option<(Parent, Inherited)>, UpgradeError> {
    match std::env::var_os(ENV) {
        Some(path) => receive_from(Path::new(&path)).map(Some),
        None => Ok(None),
    }
}

fn receive_from(path: &Path) -> Result<(Parent, Inherited), UpgradeError> {
    let error = |error| UpgradeError::Receive {
        path: path.to_path_buf(),
        error,
    };
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(error)?;
    stream
        .set_read_timeout(Some(RECEIVE_TIMEOUT))
        .map_err(error)?;
    let (bytes, fds) = receive_all(&stream).map_err(error)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| *l != "end") {
        let chunk: Vec<Entry> = serde_json::from_str(line)
            .map_err(|e| error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        entries.extend(chunk);
    }
    if entries.len() != fds.len() {
        let message = format!(
            "{} sockets described, {} received",
            entries.len(),
            fds.len()
        );
        return Err(error(io::Error::new(io::ErrorKind::InvalidData, message)));
    }
    let mut sockets = Vec::new();
    for (entry, fd) in entries.into_iter().zip(fds) {
        let socket = std::net::TcpListener::from(fd);
        match socket.local_addr().and_then(|local| {
            socket.set_nonblocking(true)?;
            Ok(local)
        }) {
            Ok(local) => sockets.push(InheritedSocket {
                entry,
                local,
                socket,
            }),
            Err(e) => {
                warn!(error = %e, listen = %entry.listen, "upgrade: an inherited descriptor is not a usable listening socket; closed")
            }
        }
    }
    info!(
        pid = std::process::id(),
        sockets = sockets.len(),
        "upgrade: received the listening sockets of the old process"
    );
    Ok((Parent { stream }, Inherited { sockets }))
}

/// Reads until the old process's `end` line, keeping every descriptor in order.
fn receive_all(stream: &std::os::unix::net::UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let (mut bytes, mut fds) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    while !bytes.ends_with(b"end\n") {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            stream,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            return Err(io::Error::other(
                "descriptors truncated (ancillary buffer too small)",
            ));
        }
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if got.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the old process hung up before sending every socket",
            ));
        }
        bytes.extend_from_slice(&buf[..got.bytes]);
    }
    Ok((bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "sluice-upgrade-test-{name}-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn listeners(count: usize) -> Vec<std::net::TcpListener> {
        (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect()
    }

    /// More sockets than fit one message (`FDS_PER_MESSAGE`), a route on port 0 and the admin
    /// listener: every one arrives, in order, and is matched back the way `Runtime` asks.
    #[tokio::test]
    async fn sockets_cross_to_the_new_process_and_match_by_route_or_address() {
        let path = socket_path("round-trip");
        let listener = UnixListener::bind(&path).unwrap();
        let fixed = listeners(FDS_PER_MESSAGE + 50);
        let port_0 = listeners(2);
        let admin = listeners(1);
        let any = "127.0.0.1:0".parse().unwrap();
        let mut sockets = Vec::new();
        for s in &fixed {
            let entry = Entry {
                route: Some("fixed".into()),
                listen: s.local_addr().unwrap(),
            };
            sockets.push((entry, OwnedFd::from(s.try_clone().unwrap())));
        }
        for s in &port_0 {
            let entry = Entry {
                route: Some("web".into()),
                listen: any,
            };
            sockets.push((entry, OwnedFd::from(s.try_clone().unwrap())));
        }
        let entry = Entry {
            route: None,
            listen: any,
        };
        sockets.push((entry, OwnedFd::from(admin[0].try_clone().unwrap())));

        let new = std::thread::spawn({
            let path = path.clone();
            move || {
                let (parent, inherited) = receive_from(&path).unwrap();
                parent.ready().unwrap();
                inherited
            }
        });
        // The "child" is this process: the peer check compares against its pid.
        tokio::time::timeout(
            Duration::from_secs(10),
            handshake(&listener, std::process::id(), &sockets),
        )
        .await
        .expect("the handshake completes")
        .unwrap();
        let mut inherited = new.join().unwrap();
        let _ = std::fs::remove_file(&path);

        assert_eq!(inherited.sockets.len(), fixed.len() + 3);
        let wanted = fixed[FDS_PER_MESSAGE + 10].local_addr().unwrap();
        let taken = inherited.take_route(wanted, "renamed");
        assert_eq!(
            taken.len(),
            1,
            "a fixed address matches whatever route serves it"
        );
        assert_eq!(taken[0].local_addr().unwrap(), wanted);
        assert!(inherited.take_route(any, "other").is_empty());
        let web = inherited.take_route(any, "web");
        let web: Vec<_> = web.iter().map(|s| s.local_addr().unwrap()).collect();
        let sent: Vec<_> = port_0.iter().map(|s| s.local_addr().unwrap()).collect();
        assert_eq!(
            web, sent,
            "port 0 matches by route and address, every socket"
        );
        let admin_taken = inherited.take_admin(any).expect("the admin socket");
        assert_eq!(
            admin_taken.local_addr().unwrap(),
            admin[0].local_addr().unwrap()
        );
        assert_eq!(inherited.sockets.len(), fixed.len() - 1);
    }

    /// A new process that never reports ready is killed when the timeout runs out (the
    /// paused clock jumps there once nothing else can happen) and reaped.
    #[tokio::test(start_paused = true)]
    async fn a_silent_new_process_is_killed_after_the_timeout() {
        let path = socket_path("silent");
        let listener = UnixListener::bind(&path).unwrap();
        let child = tokio::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let error = await_ready(child, &listener, &[], READY_TIMEOUT)
            .await
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(error, UpgradeError::Timeout { pid: p, after } if p == pid && after == READY_TIMEOUT),
            "{error}"
        );
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the child {pid} was killed and reaped"
        );
    }

    /// A new process that exits first (a bad config exits 64) is reported with its status.
    #[tokio::test]
    async fn a_new_process_that_exits_is_reported_with_its_status() {
        let path = socket_path("exits");
        let listener = UnixListener::bind(&path).unwrap();
        let child = tokio::process::Command::new("sh")
            .args(["-c", "exit 64"])
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let error = await_ready(child, &listener, &[], READY_TIMEOUT)
            .await
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            error.to_string(),
            format!(
                "the new process (pid {pid}) exited with exit status: 64 before reporting ready"
            )
        );
    }
}
