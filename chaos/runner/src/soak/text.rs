//! The soak report as text: the setup, the drawn faults, samples over time, clients, bytes,
//! resources, verdicts.

use std::fmt::{self, Write};

use super::report::{SoakReport, mib};
use crate::text::{Setup, render_bytes, render_clients, render_setup, render_verdicts};
use crate::verdict::fmt_ms;

pub(super) fn render(r: &SoakReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    render_setup(
        f,
        &Setup {
            kind: "soak",
            name: &r.soak,
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
    let w = &r.warmup;
    writeln!(
        f,
        "warm-up   {} of clean traffic: {} clients, {} ok (not counted below)",
        fmt_ms(w.duration),
        w.clients,
        w.ok
    )?;
    faults(r, f)?;
    samples(r, f)?;
    clients(r, f)?;
    resources(r, f)?;

    writeln!(f)?;
    render_verdicts(f, &r.verdicts, r.passed)
}

/// The drawn faults by kind and member, and each member's health flips.
pub(crate) fn faults(r: &SoakReport, f: &mut impl Write) -> fmt::Result {
    let s = &r.schedule;
    let skipped = s.injected.iter().filter(|i| i.at.is_none()).count();
    let skipped = if skipped > 0 {
        format!(", {skipped} steps skipped")
    } else {
        String::new()
    };
    writeln!(
        f,
        "faults    {} drawn from the seed (schedule {}){skipped}",
        s.faults.len(),
        s.fingerprint
    )?;
    let kinds: Vec<String> = s
        .by_kind
        .iter()
        .map(|(k, c)| format!("{} {} ({})", k.as_str(), c.faults, fmt_secs(c.total)))
        .collect();
    for chunk in kinds.chunks(4) {
        writeln!(f, "          {}", chunk.join(", "))?;
    }
    let per_member: Vec<String> = r
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let n = s.faults.iter().filter(|x| x.member == i).count();
            format!("{} {n}", m.name)
        })
        .collect();
    writeln!(f, "          on members: {}", per_member.join(", "))?;
    let health: Vec<String> = r
        .transitions
        .iter()
        .map(|t| {
            format!(
                "{} {} flips, breaker opened {}×",
                t.member, t.health, t.breaker_opened
            )
        })
        .collect();
    writeln!(f, "health    {}", health.join("; "))
}

/// Counts, fds and RSS over time, from the start of traffic (a blank line first).
pub(crate) fn samples(r: &SoakReport, f: &mut impl Write) -> fmt::Result {
    writeln!(
        f,
        "\nsamples (from the start of traffic; fds net of pooled splice pipes)"
    )?;
    writeln!(
        f,
        "  {:>8} {:>8} {:>8} {:>7} {:>5} {:>6} {:>5} {:>10}",
        "at", "done", "ok", "failed", "open", "fds", "pipes", "rss"
    )?;
    let last = r.samples.len().saturating_sub(1);
    for (i, s) in r.samples.iter().enumerate() {
        let tag = if i == last { "  (settled)" } else { "" };
        writeln!(
            f,
            "  {:>8} {:>8} {:>8} {:>7} {:>5} {:>6} {:>5} {:>10}{tag}",
            fmt_secs(s.at),
            s.done,
            s.ok,
            s.failed,
            s.open,
            s.gauge.net_fds(),
            s.gauge.pooled_pipes,
            mib(s.gauge.rss)
        )?;
    }
    Ok(())
}

fn clients(r: &SoakReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let t = &r.tally;
    render_clients(f, &t.clients)?;
    if let Some(s) = t.slowest {
        writeln!(
            f,
            "wait      slowest client {} waited {} ({}); the clients' timeout is {}",
            s.client,
            fmt_ms(s.wait),
            s.outcome.as_str(),
            fmt_ms(r.traffic.timeout)
        )?;
    }
    writeln!(
        f,
        "by fault  on the member reached, at arrival (planned times)"
    )?;
    for (fault, n) in &t.by_fault {
        let note = if *fault == "no_banner" {
            "  (ended before any member's banner)"
        } else {
            ""
        };
        writeln!(
            f,
            "          {fault:<12} {:>7} ok {:>7} failed{note}",
            n.ok, n.failed
        )?;
    }
    let b = &t.bytes;
    render_bytes(f, b)?;
    if t.unmatched_lines > 0 {
        writeln!(
            f,
            "          {} access lines matched no client (accepted after the client gave up)",
            t.unmatched_lines
        )?;
    }
    for d in &b.disagreements {
        writeln!(
            f,
            "          client {}: sent {} received {}, access log up {} down {} ({})",
            d.client, d.sent, d.received, d.access_up, d.access_down, d.access_outcome
        )?;
    }
    writeln!(
        f,
        "redials   {} successful connections needed more than one member (access log)",
        t.redials
    )?;
    let mut line = String::new();
    for (k, v) in &t.sluice_outcomes {
        let _ = write!(line, "{}{k} {v}", if line.is_empty() { "" } else { ", " });
    }
    writeln!(f, "sluice    outcomes (access log): {line}")
}

fn resources(r: &SoakReport, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let res = &r.resources;
    let (b, a) = (res.before, res.after);
    writeln!(
        f,
        "fds       before {} ({} pooled pipes), after {} ({} pooled pipes): {} → {} net; \
         settled {} after traffic",
        b.fds,
        b.pooled_pipes,
        a.fds,
        a.pooled_pipes,
        b.net_fds(),
        a.net_fds(),
        fmt_ms(res.settled_in)
    )?;
    writeln!(f, "rss       before {}, after {}", mib(b.rss), mib(a.rss))
}

/// `12s`, `1m 40s`: sample times and fault totals, to the second.
fn fmt_secs(d: std::time::Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
