//! The access log: one line per finished connection.
//!
//! A line is a `tracing` event with target [`TARGET`], so it is formatted like every other log
//! line (`--log-format text|json`) and inherits the connection span's `conn_id`. Where it goes
//! is the subscriber's business: stderr with the rest by default, or only to the file of
//! `access_log = "path"` through [`ReopenableFile`], which SIGUSR1 reopens after logrotate moved
//! the old file away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing_subscriber::fmt::MakeWriter;

/// The `tracing` target of access-log events.
pub const TARGET: &str = "sluice::access";

/// Everything one access-log line says about a finished connection.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// The connection's id, as in its span (so a file-only access log still joins the logs).
    pub conn_id: u64,
    /// Wall-clock time the connection was accepted.
    pub start: SystemTime,
    pub client: SocketAddr,
    pub route: &'a str,
    /// The member that served it (the last one tried when the connect failed).
    pub member: Option<&'a str>,
    /// Members picked for it: 1 without redials, 0 when refused before selection.
    pub attempts: u32,
    /// Handshake time with the serving member.
    pub connect_time: Option<Duration>,
    pub duration: Duration,
    /// Client to member.
    pub bytes_up: u64,
    /// Member to client.
    pub bytes_down: u64,
    pub outcome: &'static str,
    /// Two letters, HAProxy tcplog style (see `route::outcome`).
    pub termination: &'static str,
    /// Who sent FIN first: `client`, `upstream`, or absent.
    pub first_close: Option<&'static str>,
}

/// Writes one access-log line.
pub fn emit(r: &AccessRecord<'_>) {
    tracing::info!(
        target: TARGET,
        conn_id = r.conn_id,
        start = %humantime::format_rfc3339_millis(r.start),
        client = %r.client,
        route = r.route,
        member = r.member,
        attempts = r.attempts,
        connect_ms = r.connect_time.map(millis),
        duration_ms = millis(r.duration),
        bytes_up = r.bytes_up,
        bytes_down = r.bytes_down,
        outcome = r.outcome,
        termination = r.termination,
        first_close = r.first_close,
        "access"
    );
}

/// Milliseconds with microsecond resolution, as log readers expect.
fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// An append-only log file that can be reopened at the same path (for logrotate's `create`
/// mode: the old file was renamed, the next line must go to a new file).
#[derive(Clone, Debug)]
pub struct ReopenableFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl ReopenableFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    /// Opens the path again; lines after this go to the new file.
    pub fn reopen(&self) -> io::Result<()> {
        let new = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// One formatted line at a time: the lock is held only for the write of a finished line.
pub struct LineWriter<'a> {
    file: &'a Mutex<File>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl<'a> MakeWriter<'a> for ReopenableFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { file: &self.file }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_a_rotated_path() {
        let dir = std::env::temp_dir().join(format!("sluice-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = ReopenableFile::open(&path).unwrap();
        log.make_writer().write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        log.make_writer().write_all(b"two\n").unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("access.log.1")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
