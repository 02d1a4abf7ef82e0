//! The `sluice` command: CLI parsing, logging setup, signals and exit codes.
//!
//! Exit codes: 0 after a clean run or a valid `check`; 64 (`EX_USAGE`) for a bad config or bad
//! arguments; 1 for a runtime failure such as a port already in use.
//!
//! Under systemd (`Type=notify`, `NOTIFY_SOCKET` set) sluice reports `READY=1` once every
//! listener is bound, `RELOADING=1` then `READY=1` around a SIGHUP reload, and `STOPPING=1`
//! at the first stop signal; without `NOTIFY_SOCKET` every notification is a no-op. A process
//! started by a SIGUSR2 upgrade (`sluice::server::upgrade`) sends `MAINPID=` with its `READY=1`.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use sd_notify::NotifyState;
use sluice::budget;
use sluice::config::{self, Config};
use sluice::server::{Reloader, Workers, upgrade};
use sluice::telemetry::access_log::{self, ReopenableFile};
use sluice::telemetry::json_layer;
use sluice::{Server, Shutdown};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::{EnvFilter, fmt};

const EX_USAGE: u8 = 64;
/// Where `sluice run` looks when no `--config` is given, in order.
const DEFAULT_CONFIGS: [&str; 2] = ["config/sluice.toml", "/etc/sluice/sluice.toml"];

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "A resilient, upstream-aware TCP port forwarder"
)]
struct Cli {
    /// Log format on stderr; RUST_LOG sets the filter (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run with a config file (default: config/sluice.toml, then /etc/sluice/sluice.toml).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Reload the config file when it changes (checked every second); SIGHUP and
        /// `POST /reload` work either way.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config file and print a summary, or every problem found (exit 64).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also print each pool's worst-case failover budget (detect, eject, failover, return)
        /// with its arithmetic.
        #[arg(long)]
        explain: bool,
        /// Print the summary and every pool's budget as one JSON document (implies --explain).
        #[arg(long)]
        json: bool,
        /// Treat warnings (an unused pool, health checks and breaker both off, ...) as
        /// failures: exit 1 when there is any. For CI.
        #[arg(long)]
        strict: bool,
    },
    /// Forward one listen address to upstreams without a config file.
    Forward {
        /// Address to listen on, e.g. 127.0.0.1:8080 (repeatable).
        #[arg(long, required = true)]
        listen: Vec<String>,
        /// Primary upstream host:port (repeatable).
        #[arg(long, required = true)]
        upstream: Vec<String>,
        /// Backup upstream host:port, used when no primary is healthy (repeatable).
        #[arg(long)]
        backup: Vec<String>,
    },
    /// Print a shell completion script to stdout.
    ///
    /// For example `sluice completions bash > /etc/bash_completion.d/sluice`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    ///
    /// For example `sluice man > /usr/local/share/man/man1/sluice.1`.
    Man,
    /// Run a chaos drill scenario and judge it (hands off to the `sluice-chaos` executable;
    /// `sluice drill --help` lists its options).
    #[command(disable_help_flag = true)]
    Drill {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run a soak, a long drill with faults drawn from the seed (hands off to `sluice-chaos`).
    #[command(disable_help_flag = true)]
    Soak {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let config = match &cli.command {
        Command::Completions { shell } => return completions(*shell),
        Command::Man => return man(),
        Command::Check {
            config,
            explain,
            json,
            strict,
        } => return check(config, *explain || *json, *json, *strict),
        Command::Drill { args } => return hand_off(cli.log_format, "drill", args),
        Command::Soak { args } => return hand_off(cli.log_format, "soak", args),
        Command::Run { config, .. } => load(config.as_deref()),
        Command::Forward {
            listen,
            upstream,
            backup,
        } => config::forward(listen, upstream, backup),
    };
    let config = match config {
        Ok(c) => c,
        Err(errors) => {
            // Logging is not set up yet (it depends on the config): plain stderr, one per line.
            // One write: a new binary started by SIGUSR2 shares stderr with the old process,
            // and `eprintln!` writes piece by piece, so the old one's lines would land inside.
            let _ = std::io::stderr().write_all(format!("{errors}\n").as_bytes());
            return ExitCode::from(EX_USAGE);
        }
    };
    let access_log = match config
        .access_log
        .as_deref()
        .map(ReopenableFile::open)
        .transpose()
    {
        Ok(file) => file,
        Err(e) => {
            let path = config
                .access_log
                .as_deref()
                .unwrap_or(Path::new(""))
                .display();
            // One write, as for a bad config above.
            let line = format!(
                "{}: access_log = {path:?}: cannot open: {e}\n",
                config.source_name()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            return ExitCode::FAILURE;
        }
    };
    init_logging(cli.log_format, access_log.clone());
    let watch = matches!(cli.command, Command::Run { watch: true, .. });
    match serve(config, access_log, watch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's own exit code for bad arguments is 2; sluice documents 64 (`EX_USAGE`), the code a
/// bad config also gets, so a wrapper script needs one test for "the operator's input is
/// wrong". `--help` and `--version` are not errors: their text goes to stdout, exit 0.
fn usage_error(e: &clap::Error) -> ExitCode {
    // A closed stdout (`sluice --help | head`) is not worth a panic.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(EX_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// `sluice completions SHELL`: the completion script clap derives from the CLI definition, so it
/// never drifts from the real flags.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut out);
    let _ = std::io::stdout().lock().write_all(&out);
    ExitCode::SUCCESS
}

/// `sluice man`: sluice(1) in roff, generated from the same CLI definition as `--help`.
fn man() -> ExitCode {
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
        eprintln!("sluice man: {e}");
        return ExitCode::FAILURE;
    }
    let _ = std::io::stdout().lock().write_all(&out);
    ExitCode::SUCCESS
}

/// Tells systemd (or any `NOTIFY_SOCKET` listener) about a state change. A failed send is
/// logged and otherwise ignored: a service manager that cannot be told is no reason to stop
/// forwarding.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        let states: Vec<String> = states.iter().map(ToString::to_string).collect();
        warn!(error = %e, states = states.join(" "), "cannot notify the service manager");
    }
}

/// `sluice check`: the summary line, then with `explain` each pool's failover budget (see
/// `sluice::budget`), or all of it as one JSON document with `json`. Exit 0, or 64 with every
/// problem of a bad file.
fn check(path: &Path, explain: bool, json: bool, strict: bool) -> ExitCode {
    let config = match config::from_file(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut warnings = startup_warnings(&config, sluice::resources::hard_fd_limit());
    warnings.extend(dns_warnings(&config));
    for warning in &warnings {
        eprintln!("{warning}");
    }
    if strict && !warnings.is_empty() {
        eprintln!(
            "{}: {} warning(s) and --strict: failing",
            config.source_name(),
            warnings.len()
        );
        return ExitCode::FAILURE;
    }
    let mut out = String::new();
    if json {
        let pools: Vec<_> = budget::explain(&config)
            .iter()
            .map(|b| b.to_json())
            .collect();
        let doc = serde_json::json!({
            "source": config.source_name(),
            "ok": true,
            "summary": config.summary(),
            "pools": pools,
        });
        out = format!("{doc:#}\n");
    } else {
        out.push_str(&format!(
            "{}: ok: {}\n",
            config.source_name(),
            config.summary()
        ));
        if explain {
            for pool in budget::explain(&config) {
                out.push_str(&format!("\n{pool}"));
            }
        }
    }
    // A reader that stops early (`| head`) is not an error of the config: the exit code
    // stays the verdict on the file.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    ExitCode::SUCCESS
}

/// The executable `sluice drill` and `sluice soak` run: the chaos tooling is a crate of its
/// own (`chaos/runner`), so the forwarder carries none of it.
const CHAOS: &str = "sluice-chaos";

/// `sluice drill ARGS` runs `sluice-chaos drill ARGS` in this process's place (exec), the way
/// `cargo foo` runs `cargo-foo`: next to this executable first (an install or a `target/`
/// directory keeps them together), then on PATH. Exit 1 naming what is missing otherwise.
fn hand_off(format: LogFormat, subcommand: &str, args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;

    let Some(chaos) = find_chaos() else {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(CHAOS)))
            .map_or_else(|| CHAOS.to_string(), |p| p.display().to_string());
        eprintln!(
            "sluice {subcommand}: needs the {CHAOS} executable, found neither at {beside} nor \
             on PATH; install it beside sluice (`cargo install --path chaos/runner`, or copy \
             target/release/{CHAOS} next to sluice)"
        );
        return ExitCode::FAILURE;
    };
    let format = match format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    let err = std::process::Command::new(&chaos)
        .args(["--log-format", format, subcommand])
        .args(args)
        .exec();
    eprintln!("sluice {subcommand}: cannot run {}: {err}", chaos.display());
    ExitCode::FAILURE
}

fn find_chaos() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(CHAOS)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(CHAOS));
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

fn load(path: Option<&Path>) -> Result<Config, config::ConfigErrors> {
    if let Some(path) = path {
        return config::from_file(path);
    }
    let found = DEFAULT_CONFIGS.iter().map(Path::new).find(|p| p.exists());
    match found {
        Some(path) => config::from_file(path),
        None => Err(config::ConfigError::at_file(
            "sluice",
            format!(
                "no config found at {}; pass --config FILE",
                DEFAULT_CONFIGS.join(" or ")
            ),
        )
        .into()),
    }
}

/// Runs the server: the data plane on `workers` threads with an event loop each (see
/// `sluice::server::Workers`), the control plane (health checks, admin, reloads, signals) on
/// this thread.
fn serve(config: Config, access_log: Option<ReopenableFile>, watch: bool) -> anyhow::Result<()> {
    size_for_fd_limit(&config);
    // Resolved now: once the file is replaced, /proc/self/exe names the deleted inode.
    let binary = upgrade::Binary::current()
        .inspect_err(
            |e| warn!(error = %e, "cannot find this binary's path; SIGUSR2 upgrades are off"),
        )
        .ok();
    // Started by a SIGUSR2 upgrade: the old process's listening sockets, taken before binding.
    let parent = upgrade::receive().context("taking over from the old process")?;
    let (parent, inherited) = parent.unzip();
    let workers = Workers::start(config.worker_count()).context("starting the worker threads")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(async {
        // Before binding: once a "listening" line is out, a supervisor or a test may signal,
        // and a signal with no handler yet takes its default action (SIGTERM and SIGQUIT end
        // the process at once, SIGHUP and SIGUSR1 too).
        let signals = Signals::install();
        let source = config.source_name();
        // Not an upgrade: sockets from systemd (socket activation), if it passed any.
        let inherited = inherited.unwrap_or_else(upgrade::Inherited::from_systemd);
        let mut server = Server::bind_inheriting(config, workers.handles(), inherited)
            .await
            .with_context(|| format!("starting from {source}"))?;
        if watch {
            server = server.watch(Duration::from_secs(1));
        }
        let shutdown = Shutdown::new();
        tokio::spawn(reload_on_sighup(signals.hup, server.reloader()));
        tokio::spawn(watch_signals(signals.stop, shutdown.clone()));
        tokio::spawn(reopen_on_sigusr1(signals.usr1, access_log));
        match signals.usr2 {
            Some(usr2) => {
                let upgrade = upgrade::on_sigusr2(usr2, server.handoff(), binary, shutdown.clone());
                tokio::spawn(upgrade);
            }
            None => error!("cannot install the SIGUSR2 handler; binary upgrades are off"),
        }
        // Every listener (and the admin one) is bound: a client connecting now is queued by the
        // kernel and accepted as soon as `run` starts the accept loops, so this is ready.
        match parent {
            // systemd follows the new process (needs `NotifyAccess=all`), then the old one
            // stops accepting and drains.
            Some(parent) => {
                let pid = std::process::id();
                notify(&[NotifyState::MainPid(pid), NotifyState::Ready]);
                // An old process that is gone cannot drain, but this one serves either way.
                match parent.ready() {
                    Ok(()) => info!(pid, "upgrade: serving; the old process drains"),
                    Err(e) => {
                        warn!(pid, error = %e, "upgrade: serving, but cannot tell the old process")
                    }
                }
            }
            None => notify(&[NotifyState::Ready]),
        }
        let summary = server.run(shutdown).await;
        if summary.cut > 0 {
            warn!(cut = summary.cut, "connections cut at shutdown");
        }
        Ok(())
    });
    // After the drain: nothing is left on the workers but what the cut already ended.
    workers.stop();
    result
}

/// Raises the soft descriptor limit to the hard one and says what it carries; a configured
/// `max_connections` beyond that is a warning (the cap without one is derived from it).
fn size_for_fd_limit(config: &Config) {
    use sluice::resources::{self, Capacity};
    let limit = match resources::raise_fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot raise the descriptor limit; keeping the soft limit");
            let soft = resources::current_fd_limit();
            resources::FdLimit {
                soft,
                hard: resources::hard_fd_limit(),
                raised_from: None,
            }
        }
    };
    let capacity = Capacity::for_config(limit.soft, config);
    info!(
        fd_limit = limit.soft,
        raised_from = limit.raised_from,
        connections = capacity.connections,
        max_connections = config.max_connections.unwrap_or(capacity.connections),
        "descriptor limit"
    );
    for warning in startup_warnings(config, limit.soft) {
        warn!("{warning}");
    }
}

/// What `check` prints and `run` logs before starting: the config's own warnings, and a
/// `max_connections` the descriptor limit `fd_limit` cannot carry.
fn startup_warnings(config: &Config, fd_limit: u64) -> Vec<String> {
    let file = config.source_name();
    let mut out: Vec<String> = config::warnings(config)
        .iter()
        .map(|w| w.render(&file))
        .collect();
    let capacity = sluice::resources::Capacity::for_config(fd_limit, config);
    if let Some(warning) = sluice::resources::cap_warning(config.max_connections, capacity) {
        out.push(format!("{file}: warning: {warning}"));
    }
    out
}

/// Each DNS entry of `config` that does not resolve now (asked once, bounded by
/// `[dns] timeout`).
fn dns_warnings(config: &Config) -> Vec<String> {
    let file = config.source_name();
    let warnings = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(sluice::dns::warnings(config)),
        Err(e) => {
            return vec![format!(
                "{file}: warning: dns: cannot start a runtime to resolve names: {e}"
            )];
        }
    };
    warnings.iter().map(|w| w.render(&file)).collect()
}

/// The signal streams sluice handles, each `None` when its handler could not be installed
/// (the task that would read it logs that).
struct Signals {
    /// SIGTERM, SIGINT, SIGQUIT.
    stop: Option<[Signal; 3]>,
    hup: Option<Signal>,
    usr1: Option<Signal>,
    usr2: Option<Signal>,
}

impl Signals {
    /// Installs every handler; from here on these signals are queued for their tasks.
    fn install() -> Self {
        let stop = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::quit(),
        ]
        .map(signal);
        let stop = match stop {
            [Ok(term), Ok(int), Ok(quit)] => Some([term, int, quit]),
            _ => None,
        };
        Self {
            stop,
            hup: signal(SignalKind::hangup()).ok(),
            usr1: signal(SignalKind::user_defined1()).ok(),
            usr2: signal(SignalKind::user_defined2()).ok(),
        }
    }
}

/// First SIGTERM/SIGINT/SIGQUIT: graceful stop. Second: cut live connections now.
///
/// SIGQUIT drains like SIGTERM, as nginx's does: its default action would end sluice at once
/// (with a core dump) and cut every connection without a log line.
async fn watch_signals(signals: Option<[Signal; 3]>, shutdown: Shutdown) {
    let Some([mut term, mut int, mut quit]) = signals else {
        error!("cannot install signal handlers; stop sluice with SIGKILL");
        return;
    };
    let mut seen = 0;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = quit.recv() => "SIGQUIT",
        };
        seen += 1;
        if seen == 1 {
            info!(signal = name, "shutdown requested: draining");
            notify(&[NotifyState::Stopping]);
            shutdown.stop();
        } else {
            warn!(
                signal = name,
                "second shutdown signal: cutting live connections"
            );
            shutdown.cut_now();
            return;
        }
    }
}

/// SIGHUP reloads the config file; a bad file is logged and changes nothing. systemd hears
/// `RELOADING=1` before and `READY=1` after, whatever the outcome (a failed reload leaves the
/// old config serving). `MONOTONIC_USEC` goes with `RELOADING=1`: `Type=notify-reload`
/// (systemd 253+) rejects a reload notification without it.
async fn reload_on_sighup(hup: Option<Signal>, reloader: Reloader) {
    let Some(mut hup) = hup else {
        error!("cannot install the SIGHUP handler; reload with POST /reload instead");
        return;
    };
    while hup.recv().await.is_some() {
        info!("SIGHUP: reloading the config");
        match NotifyState::monotonic_usec_now() {
            Ok(now) => notify(&[NotifyState::Reloading, now]),
            Err(e) => warn!(error = %e, "cannot read the monotonic clock for RELOADING=1"),
        }
        // The reloader logs the outcome (every problem of a bad file, or what changed).
        let _ = reloader.reload().await;
        notify(&[NotifyState::Ready]);
    }
}

/// SIGUSR1 reopens the access log at its path, after logrotate has moved the old file.
/// Without an access log file the signal is still caught: its default action would kill sluice.
async fn reopen_on_sigusr1(usr1: Option<Signal>, file: Option<ReopenableFile>) {
    let Some(mut usr1) = usr1 else {
        error!("cannot install the SIGUSR1 handler; the access log will not be reopened");
        return;
    };
    while usr1.recv().await.is_some() {
        let Some(file) = &file else {
            info!("SIGUSR1: no access_log file is configured; nothing to reopen");
            continue;
        };
        match file.reopen() {
            Ok(()) => info!(path = %file.path().display(), "access log reopened"),
            Err(e) => error!(
                path = %file.path().display(),
                error = %e,
                "cannot reopen the access log; still writing to the old file"
            ),
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (default `info`). Access lines go there too, unless an
/// access log file is configured: then they go only to the file, always at info.
fn init_logging(format: LogFormat, access_log: Option<ReopenableFile>) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if access_log.is_some() {
        let off = format!("{}=off", access_log::TARGET);
        filter = filter.add_directive(off.parse().expect("a valid directive"));
    }
    let stderr = match format {
        // Colours only for a person at a terminal; a pipe or a log collector gets plain text.
        LogFormat::Text => fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => json_layer().with_writer(std::io::stderr).boxed(),
    };
    let file = access_log.map(|file| {
        let layer = match format {
            LogFormat::Text => fmt::layer().with_ansi(false).with_writer(file).boxed(),
            LogFormat::Json => json_layer().with_writer(file).boxed(),
        };
        layer.with_filter(Targets::new().with_target(access_log::TARGET, LevelFilter::INFO))
    });
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(file)
        .init();
}
