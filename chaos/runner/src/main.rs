//! `sluice-chaos`: chaos drills and soaks from the command line. `sluice drill` and
//! `sluice soak` run this executable in their place, so either spelling works.
//!
//! Exit codes: 0 when every bound is met; 1 when one is missed, the drill cannot run or a
//! report file (`--json`, `--junit`) cannot be written; 64 (`EX_USAGE`) for a bad scenario
//! file or bad arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice::telemetry::json_layer;
use tracing_subscriber::{EnvFilter, fmt};

const EX_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-chaos",
    version,
    about = "Chaos drills and soaks for sluice, judged against their bounds"
)]
struct Cli {
    /// Log format on stderr; RUST_LOG sets the filter (default: error).
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
    /// Run a chaos drill scenario and judge it against its bounds (exit 1 when one is missed).
    Drill {
        /// Scenario file, e.g. chaos/scenarios/member-down.toml.
        scenario: PathBuf,
        #[command(flatten)]
        reports: Reports,
        /// Seed for every random decision (overrides the config's `seed`).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run a soak: a long drill with faults drawn from the seed, judged on bytes, client
    /// waits, open fds and RSS (exit 1 when a bound is missed).
    Soak {
        /// Soak file, e.g. chaos/soak/soak.toml.
        file: PathBuf,
        #[command(flatten)]
        reports: Reports,
        /// Seed for every random decision, the fault schedule included.
        #[arg(long)]
        seed: Option<u64>,
    },
}

/// Report files besides the text on stdout; `--json` and `--junit` may be given together.
#[derive(Args, Debug)]
struct Reports {
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the report as JUnit XML to this file, for CI test reporters: one testcase
    /// per bound, a <failure> on each missed one. Written whenever the run finished, passed
    /// (exit 0) or not (exit 1). A drill or soak that cannot run (exit 64 for a bad file,
    /// 1 when e.g. the fault injector fails) writes no JUnit file and leaves FILE as it was.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Drill {
            scenario,
            reports,
            seed,
        } => drill(cli.log_format, scenario, reports, *seed),
        Command::Soak {
            file,
            reports,
            seed,
        } => soak(cli.log_format, file, reports, *seed),
    }
}

/// `drill`: 0 when every bound is met, 1 when one is missed, the drill cannot run or a report
/// file cannot be written, 64 for a bad scenario file.
fn drill(format: LogFormat, path: &Path, reports: &Reports, seed: Option<u64>) -> ExitCode {
    let scenario = match sluice_chaos::Scenario::from_file(path) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_drill_logging(format);
    let options = drill_options(seed);
    let report = block_on(sluice_chaos::run(&scenario, &options), "drill", path);
    match report {
        Ok(r) => publish(&r, r.passed, reports, sluice_chaos::junit::drill),
        Err(code) => code,
    }
}

/// `soak`: exit codes as for `drill`.
fn soak(format: LogFormat, path: &Path, reports: &Reports, seed: Option<u64>) -> ExitCode {
    let soak = match sluice_chaos::soak::Soak::from_file(path) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_drill_logging(format);
    let options = drill_options(seed);
    match block_on(sluice_chaos::soak::run(&soak, &options), "soak", path) {
        Ok(r) => publish(&r, r.passed, reports, sluice_chaos::junit::soak),
        Err(code) => code,
    }
}

fn drill_options(seed: Option<u64>) -> sluice_chaos::RunOptions {
    sluice_chaos::RunOptions {
        seed,
        injector: sluice_chaos::InjectorChoice::from_env(),
        ..Default::default()
    }
}

/// Runs a drill or soak on a fresh runtime; a failure to run is printed and mapped to its
/// exit code (64 for a bad scenario, 1 otherwise).
fn block_on<T>(
    run: impl std::future::Future<Output = Result<T, sluice_chaos::DrillError>>,
    what: &str,
    path: &Path,
) -> Result<T, ExitCode> {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|rt| {
            rt.block_on(run)
                .with_context(|| format!("{what} {}", path.display()))
        });
    result.map_err(|e| {
        eprintln!("{e:#}");
        let usage = e
            .downcast_ref::<sluice_chaos::DrillError>()
            .is_some_and(sluice_chaos::DrillError::is_usage);
        ExitCode::from(if usage { EX_USAGE } else { 1 })
    })
}

/// Prints the report and writes the report files asked for, each attempted whatever became of
/// the other; 0 when the report passed and every file was written.
fn publish<R: std::fmt::Display + serde::Serialize>(
    report: &R,
    passed: bool,
    reports: &Reports,
    junit: fn(&R) -> Result<String, sluice_chaos::junit::RenderError>,
) -> ExitCode {
    println!("{report}");
    let mut written = true;
    if let Some(file) = &reports.json {
        let json = serde_json::to_vec_pretty(report).context("rendering the JSON report");
        written &= write_report(file, "JSON", json);
    }
    if let Some(file) = &reports.junit {
        let xml = junit(report).map(String::into_bytes).map_err(Into::into);
        written &= write_report(file, "JUnit", xml);
    }
    if passed && written {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes one rendered report; prints why not, once, and returns false when it could not.
fn write_report(file: &Path, what: &str, rendered: anyhow::Result<Vec<u8>>) -> bool {
    let written = rendered.and_then(|bytes| {
        std::fs::write(file, bytes)
            .with_context(|| format!("writing the {what} report to {}", file.display()))
    });
    match written {
        Ok(()) => true,
        Err(e) => {
            eprintln!("{e:#}");
            false
        }
    }
}

/// A drill prints its report on stdout; sluice's own logs go to stderr at `error` unless
/// RUST_LOG says otherwise (a drill makes sluice log every fault it survives). Access lines
/// go only to the drill's tap, which reads redials and byte counts from them.
fn init_drill_logging(format: LogFormat) {
    use tracing_subscriber::prelude::*;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error"));
    let stderr = match format {
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => json_layer().with_writer(std::io::stderr).boxed(),
    };
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(sluice_chaos::access::layer())
        .init();
}
