//! The drill's upstream servers: one per scenario member, in this process, on a fixed loopback
//! port ([`ports`](super::ports): one no connection's ephemeral source port can take while the
//! member is down).
//!
//! Each speaks the [`wire`] protocol as an echo or a sink. `kill` stops one the way
//! a crash does (listener closed, every connection dropped) and `restart` brings it back on the
//! same port, so the member's proxy, and sluice behind it, find it again where it was.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::wire::{self, Checksum, ServerKind};

/// How long a sink waits for the client's EOF after its reply before closing anyway.
const LINGER: Duration = Duration::from_secs(5);

/// One member server; killing and restarting keep its address.
#[derive(Debug)]
pub struct MemberServer {
    index: u32,
    kind: ServerKind,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    stop: CancellationToken,
    tasks: TaskTracker,
}

// === impl MemberServer ===

impl MemberServer {
    /// Starts member `index` on 127.0.0.1, on a port below the ephemeral range.
    pub async fn start(index: u32, kind: ServerKind) -> io::Result<Self> {
        let listener = listen(super::ports::fixed_loopback()?)?;
        let addr = listener.local_addr()?;
        let server = Self {
            index,
            kind,
            addr,
            running: Mutex::new(None),
        };
        server.serve(listener);
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and drops every connection; a no-op when already killed.
    pub async fn kill(&self) {
        let running = self.lock().take();
        if let Some(r) = running {
            r.stop.cancel();
            r.tasks.close();
            r.tasks.wait().await;
        }
    }

    /// Listens again on the same address; a no-op when running.
    pub fn restart(&self) -> io::Result<()> {
        if self.lock().is_some() {
            return Ok(());
        }
        let listener = listen(self.addr)?;
        self.serve(listener);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (kind, index) = (self.kind, self.index);
        let conns = tasks.clone();
        let token = stop.clone();
        tasks.spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        // Per-connection accept errors (a peer that reset early) are not fatal.
                        Err(_) => continue,
                    },
                };
                let token = token.clone();
                conns.spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = handle(stream, kind, index) => {}
                    }
                });
            }
        });
        *self.lock() = Some(Running { stop, tasks });
    }
}

/// SO_REUSEADDR so a restart can bind the port its old connections still hold in TIME_WAIT.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn handle(mut stream: TcpStream, kind: ServerKind, index: u32) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    stream.write_all(&wire::banner(kind, index)).await?;
    match kind {
        ServerKind::Echo => {
            let (mut r, mut w) = stream.split();
            tokio::io::copy(&mut r, &mut w).await?;
            w.shutdown().await
        }
        ServerKind::Sink => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len).await?;
            let len = u64::from_be_bytes(len);
            let mut sum = Checksum::default();
            let mut left = len;
            let mut buf = vec![0u8; 16 * 1024];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = stream.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                sum.update(&buf[..n]);
                left -= n as u64;
            }
            stream
                .write_all(&wire::sink_reply(len, sum.value()))
                .await?;
            // We close first: the client sees the reply, then EOF, through sluice's half-close.
            stream.shutdown().await?;
            // Read to the client's EOF so unread bytes do not turn our close into a reset.
            let _ = tokio::time::timeout(LINGER, async {
                while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            })
            .await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn banner_of(addr: SocketAddr) -> io::Result<[u8; wire::BANNER_LEN]> {
        let mut s = TcpStream::connect(addr).await?;
        let mut b = [0u8; wire::BANNER_LEN];
        s.read_exact(&mut b).await?;
        Ok(b)
    }

    #[tokio::test]
    async fn kill_refuses_and_restart_serves_on_the_same_port() {
        let m = MemberServer::start(3, ServerKind::Echo).await.unwrap();
        let b = banner_of(m.addr()).await.unwrap();
        assert_eq!(wire::parse_banner(&b), Some((ServerKind::Echo, 3)));
        m.kill().await;
        assert!(TcpStream::connect(m.addr()).await.is_err());
        m.restart().unwrap();
        assert!(banner_of(m.addr()).await.is_ok());
        m.kill().await;
    }

    #[tokio::test]
    async fn sink_answers_length_and_checksum_then_closes() {
        let m = MemberServer::start(0, ServerKind::Sink).await.unwrap();
        let mut s = TcpStream::connect(m.addr()).await.unwrap();
        let mut b = [0u8; wire::BANNER_LEN];
        s.read_exact(&mut b).await.unwrap();
        let data = wire::payload(50_000, 9);
        s.write_all(&(data.len() as u64).to_be_bytes())
            .await
            .unwrap();
        s.write_all(&data).await.unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, wire::sink_reply(50_000, Checksum::of(&data)));
        m.kill().await;
    }
}
