//! The `sluice-toxiproxy` binary: CLI, logging, the ready line, signals and exit codes.
//!
//! Prints exactly one line on stdout, `listening on <addr>`, once the API accepts connections
//! (with `--port 0`, `<addr>` carries the port picked), so a runner can wait for it. Logs go to
//! stderr (`RUST_LOG`, default `info`). SIGTERM or SIGINT stops the API and every proxy, then
//! exits 0. Exit 64 is a usage error (such as a non-loopback host without `--allow-remote`),
//! 1 a runtime failure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use sluice_toxiproxy::{AddrPolicy, Config};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

const EX_USAGE: u8 = 64;

/// Fault injector for sluice's chaos suite, serving the Toxiproxy v2 HTTP API.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to serve the API on. Must be loopback unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Port to serve the API on; 0 picks a free one (printed on the ready line).
    #[arg(long, default_value_t = 8474)]
    port: u16,

    /// Allow a non-loopback API host, and proxies that listen on or dial non-loopback addresses.
    #[arg(long)]
    allow_remote: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let addr = match api_addr(&cli) {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("sluice-toxiproxy: {err:#}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let config = Config {
        policy: AddrPolicy {
            allow_remote: cli.allow_remote,
        },
    };
    match serve(addr, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sluice-toxiproxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The API address, refusing non-loopback hosts unless allowed.
fn api_addr(cli: &Cli) -> anyhow::Result<SocketAddr> {
    let ip: IpAddr = match cli.host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        host => host
            .parse()
            .with_context(|| format!("--host {host:?} is not an IP address"))?,
    };
    if !ip.is_loopback() && !cli.allow_remote {
        bail!("--host {ip} is not a loopback address; pass --allow-remote to serve on it");
    }
    Ok(SocketAddr::new(ip, cli.port))
}

#[tokio::main]
async fn serve(addr: SocketAddr, config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the API on {addr}"))?;
    let bound = listener.local_addr().context("reading the API address")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // println! flushes on the newline only for a terminal; a runner reads a pipe, so flush.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {bound}").context("writing the ready line")?;
        stdout.flush().context("writing the ready line")?;
    }
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    sluice_toxiproxy::run(listener, config, shutdown)
        .await
        .with_context(|| format!("serving the API on {bound}"))
}
