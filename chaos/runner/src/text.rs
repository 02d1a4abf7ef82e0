//! The report as text: a header, the timeline, clients per second, bytes, verdicts. The
//! timeline and verdict sections are shared with the soak's text and with `junit`.

use std::fmt::{self, Write};

use super::measure::{BytesCheck, ClientTotals};
use super::report::{Event, MemberInfo, Report, TrafficInfo, human};
use super::verdict::Verdict;

/// Failed command runs listed in the text report; the JSON report has them all.
const FAILED_RUNS_SHOWN: usize = 10;

pub(super) fn render(r: &Report, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    render_setup(
        f,
        &Setup {
            kind: "drill",
            name: &r.scenario,
            file: &r.file,
            description: r.description.as_deref(),
            seed: r.seed,
            injector: &r.injector,
            listen: r.listen,
            balance: &r.balance,
            members: &r.members,
            traffic: &r.traffic,
        },
    )?;

    writeln!(f)?;
    render_timeline(f, &r.events)?;

    writeln!(f, "\nclients per second (by arrival)")?;
    let mut line = String::new();
    for s in &r.per_second {
        let mark = if s.failed > 0 { "!" } else { " " };
        let _ = write!(
            line,
            " {:>3}s {:>4} ok {:>3} failed{mark}",
            s.second, s.ok, s.failed
        );
        if (s.second + 1) % 4 == 0 {
            writeln!(f, "{line}")?;
            line.clear();
        }
    }
    if !line.is_empty() {
        writeln!(f, "{line}")?;
    }

    let m = &r.measures;
    render_clients(f, &m.clients)?;
    if m.redials.observed {
        writeln!(
            f,
            "redials   {} successful connections needed more than one member (access log)",
            m.redials.count
        )?;
    } else {
        writeln!(
            f,
            "redials   not observed (the access-log tap is not installed)"
        )?;
    }
    let b = &m.bytes;
    if r.traffic.command.is_none() {
        render_bytes(f, b)?;
    }
    let failed_runs = r.clients.iter().filter(|c| c.detail.is_some());
    for c in failed_runs.clone().take(FAILED_RUNS_SHOWN) {
        writeln!(
            f,
            "failed    run {} at {}: {}",
            c.id,
            human(c.start),
            c.detail.as_deref().unwrap_or_default()
        )?;
    }
    let more = failed_runs.count().saturating_sub(FAILED_RUNS_SHOWN);
    if more > 0 {
        writeln!(f, "          ... and {more} more (every one is in --json)")?;
    }
    for d in &b.disagreements {
        writeln!(
            f,
            "          client {} ({}): sent {} received {}, access log up {} down {} ({})",
            d.client,
            d.local.map_or("?".into(), |l| l.to_string()),
            d.sent,
            d.received,
            d.access_up,
            d.access_down,
            d.access_outcome
        )?;
    }
    let name = |i: usize| r.members.get(i).map_or("?", |m| m.name.as_str());
    for e in &m.ejections {
        let after = e
            .after
            .map_or("not ejected (still in rotation)".into(), |d| {
                format!("ejected after {}", human(d))
            });
        writeln!(
            f,
            "ejection  {} faulted at {:.3}s, {after}",
            name(e.member),
            e.fault_at.as_secs_f64()
        )?;
    }
    for x in &m.returns {
        let back = x
            .back_after
            .map_or("not back".into(), |d| format!("back after {}", human(d)));
        let serves = x.serves_after.map_or("served no client".into(), |d| {
            format!("served a client after {}", human(d))
        });
        writeln!(
            f,
            "return    {} restored at {:.3}s, {back}, {serves}",
            name(x.member),
            x.restored_at.as_secs_f64()
        )?;
    }
    for x in &m.backup {
        let served = x
            .served_after
            .map_or("backup served no client".into(), |d| {
                format!("backup served after {}", human(d))
            });
        writeln!(
            f,
            "failover  every primary faulted at {:.3}s, {served}",
            x.primaries_down_at.as_secs_f64()
        )?;
    }

    writeln!(f)?;
    render_verdicts(f, &r.verdicts, r.passed)
}

/// The timeline section: one line per event, offsets from the start of traffic.
pub(crate) fn render_timeline(f: &mut impl Write, events: &[Event]) -> fmt::Result {
    writeln!(f, "timeline")?;
    for e in events {
        writeln!(
            f,
            "  {:>9.3}s  {:<8} {}",
            e.at.as_secs_f64(),
            e.kind,
            e.text
        )?;
    }
    Ok(())
}

/// The verdicts section, as drills and soaks both report it: one line per bound, then the
/// result (no newline after it).
pub(crate) fn render_verdicts(
    f: &mut impl Write,
    verdicts: &[Verdict],
    passed: bool,
) -> fmt::Result {
    writeln!(f, "verdicts")?;
    for v in verdicts {
        writeln!(f, "  {}", verdict_line(v))?;
    }
    let met = verdicts.iter().filter(|v| v.pass).count();
    let result = if passed { "PASS" } else { "FAIL" };
    write!(
        f,
        "result    {result} ({met} of {} bounds met)",
        verdicts.len()
    )
}

/// `FAIL  ejected_within = 1s: b not ejected`.
pub(crate) fn verdict_line(v: &Verdict) -> String {
    let mark = if v.pass { "PASS" } else { "FAIL" };
    format!("{mark}  {} = {}: {}", v.bound, v.limit, v.measured)
}

/// What a drill or a soak ran, against what, with which traffic: the first lines of both
/// reports.
pub(crate) struct Setup<'a> {
    /// `drill` or `soak`.
    pub kind: &'a str,
    pub name: &'a str,
    pub file: &'a str,
    pub description: Option<&'a str>,
    pub seed: u64,
    pub injector: &'a str,
    pub listen: std::net::SocketAddr,
    pub balance: &'a str,
    pub members: &'a [MemberInfo],
    pub traffic: &'a TrafficInfo,
}

pub(crate) fn render_setup(f: &mut fmt::Formatter<'_>, s: &Setup<'_>) -> fmt::Result {
    writeln!(f, "{} {} ({})", s.kind, s.name, s.file)?;
    if let Some(d) = s.description {
        writeln!(f, "  {}", d.trim())?;
    }
    writeln!(f, "seed      {}", s.seed)?;
    writeln!(f, "injector  {}", s.injector)?;
    writeln!(f, "sluice    {} ({})", s.listen, s.balance)?;
    for m in s.members {
        writeln!(
            f,
            "member    {:<8} {} tier {} weight {}: sluice → {} (proxy {}) → {}",
            m.name, m.source, m.tier, m.weight, m.proxy_addr, m.proxy, m.server_addr
        )?;
    }
    let t = s.traffic;
    if let Some(command) = &t.command {
        return match t.every {
            Some(every) => writeln!(
                f,
                "traffic   `{command}` every {}, {}, timeout {} (each run is one client)",
                human(every),
                human(t.duration),
                human(t.timeout)
            ),
            None => writeln!(
                f,
                "traffic   `{command}` once, at most {} (its exit status is a verdict)",
                human(t.duration)
            ),
        };
    }
    let payload = if t.payload_min == t.payload_max {
        format!("{} B", t.payload_min)
    } else {
        format!("{}-{} B", t.payload_min, t.payload_max)
    };
    writeln!(
        f,
        "traffic   {} clients at most, {}/s, {payload} payloads, {}, timeout {}{}",
        t.clients,
        t.rate,
        human(t.duration),
        human(t.timeout),
        if t.client_first {
            ", client speaks first"
        } else {
            ""
        }
    )
}

/// The clients line (totals, then the failed ones by outcome), as drills and soaks both report it.
pub(crate) fn render_clients(f: &mut fmt::Formatter<'_>, c: &ClientTotals) -> fmt::Result {
    let outcomes: Vec<String> = c
        .by_outcome
        .iter()
        .filter(|(k, _)| **k != "ok")
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let detail = if outcomes.is_empty() {
        String::new()
    } else {
        format!(" ({})", outcomes.join(", "))
    };
    writeln!(
        f,
        "\nclients   {} in all: {} ok, {} failed{detail}",
        c.total, c.ok, c.failed
    )
}

/// The bytes check, as drills and soaks both report it.
pub(crate) fn render_bytes(f: &mut fmt::Formatter<'_>, b: &BytesCheck) -> fmt::Result {
    writeln!(
        f,
        "bytes     {} connections verified by checksum, {:.1} MB of payload; {} corrupt",
        b.verified,
        b.payload_bytes as f64 / 1e6,
        b.corrupt
    )?;
    writeln!(
        f,
        "          access log agrees on bytes both ways for {}, disagrees for {}, missing for {}",
        b.access_agrees, b.access_disagrees, b.access_missing
    )
}
