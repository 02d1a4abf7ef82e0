//! Drill and soak reports as JUnit XML, for the test reporters of CI systems (GitLab, Jenkins,
//! GitHub actions that read JUnit). Pure: a report in, a string out; `main.rs` writes the file.
//!
//! The mapping, the same for a drill and a soak (`KIND` is `drill` or `soak`):
//!
//! - `<testsuites>` holds one `<testsuite name="KIND NAME">`. Both carry `timestamp` (when the
//!   run started, UTC) and `time` (how long it took, in seconds), and the counts. The suite's
//!   `<properties>` are `seed`, `injector` and `file` (the scenario or soak file).
//! - One `<testcase>` per bound, in the text report's order: `name` is the bound's key as the
//!   file writes it (`ejected_within`; a soak's `rss_growth_mib`/`rss_growth_ratio` pair is one
//!   bound, `rss_growth`, as in the text report), `classname` is `sluice.KIND.NAME`. Its `time`
//!   is 0: every bound is judged once the run is over, and the run's own time is the suite's
//!   (reporters that add up their cases would otherwise count it once per bound).
//! - A missed bound has `<failure message="measured X, bound KEY = LIMIT">`, and the verdict
//!   line of the text report as its text. A bound with nothing to measure is missed (see
//!   `verdict`), so it is a `<failure>` here too: nothing is ever `<skipped>`.
//! - The suite's `<system-out>` is the text report's record over time: a drill's timeline, a
//!   soak's faults and samples; then the verdict lines and the result.
//!
//! A run that could not finish has no report, and so no JUnit either.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use thiserror::Error;

use super::report::Report;
use super::soak::SoakReport;
use super::text::{render_timeline, render_verdicts, verdict_line};
use super::verdict::Verdict;

/// The XML writer failed (it writes to memory, so this is not an I/O error).
#[derive(Debug, Error)]
#[error("rendering the JUnit report: {0}")]
pub struct RenderError(#[from] quick_junit::SerializeError);

/// A drill report as JUnit XML: `<testsuite name="drill NAME">`, one testcase per bound, the
/// timeline in `<system-out>`.
pub fn drill(r: &Report) -> Result<String, RenderError> {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = render_timeline(&mut out, &r.events)
        .and_then(|()| writeln!(out))
        .and_then(|()| render_verdicts(&mut out, &r.verdicts, r.passed));
    render(&Run {
        kind: "drill",
        name: &r.scenario,
        file: &r.file,
        seed: r.seed,
        injector: &r.injector,
        started_at: r.started_at,
        elapsed: r.elapsed,
        verdicts: &r.verdicts,
        out,
    })
}

/// A soak report as JUnit XML: `<testsuite name="soak NAME">`, one testcase per bound, the
/// faults and samples in `<system-out>`.
pub fn soak(r: &SoakReport) -> Result<String, RenderError> {
    use super::soak::text::{faults, samples};

    let mut out = String::new();
    let _ = faults(r, &mut out)
        .and_then(|()| samples(r, &mut out))
        .and_then(|()| writeln!(out))
        .and_then(|()| render_verdicts(&mut out, &r.verdicts, r.passed));
    render(&Run {
        kind: "soak",
        name: &r.soak,
        file: &r.file,
        seed: r.seed,
        injector: &r.injector,
        started_at: r.started_at,
        elapsed: r.elapsed,
        verdicts: &r.verdicts,
        out,
    })
}

/// What a drill and a soak report have in common, as far as JUnit goes.
struct Run<'a> {
    /// `drill` or `soak`.
    kind: &'static str,
    name: &'a str,
    file: &'a str,
    seed: u64,
    injector: &'a str,
    started_at: SystemTime,
    elapsed: Duration,
    verdicts: &'a [Verdict],
    /// The suite's `<system-out>`.
    out: String,
}

fn render(run: &Run<'_>) -> Result<String, RenderError> {
    let name = format!("{} {}", run.kind, run.name);
    let classname = format!("sluice.{}.{}", run.kind, run.name);
    let timestamp = DateTime::<Utc>::from(run.started_at).fixed_offset();

    let mut suite = TestSuite::new(name.as_str());
    suite
        .set_timestamp(timestamp)
        .set_time(run.elapsed)
        .add_properties([
            Property::new("seed", run.seed.to_string()),
            Property::new("injector", run.injector),
            Property::new("file", run.file),
        ])
        .add_test_cases(run.verdicts.iter().map(|v| case(v, &classname)))
        .set_system_out(run.out.as_str());

    let mut report = quick_junit::Report::new(name.as_str());
    report
        .set_timestamp(timestamp)
        .set_time(run.elapsed)
        .add_test_suite(suite);
    Ok(report.to_string()?)
}

fn case(v: &Verdict, classname: &str) -> TestCase {
    let status = if v.pass {
        TestCaseStatus::success()
    } else {
        let mut failed = TestCaseStatus::non_success(NonSuccessKind::Failure);
        failed
            .set_message(format!(
                "measured {}, bound {} = {}",
                v.measured, v.bound, v.limit
            ))
            .set_description(verdict_line(v));
        failed
    };
    let mut case = TestCase::new(v.bound, status);
    case.set_classname(classname).set_time(Duration::ZERO);
    case
}

#[cfg(test)]
mod tests;
