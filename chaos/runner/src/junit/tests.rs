//! The JUnit XML is read back as a tree (roxmltree) and checked element by element, as a CI
//! reporter would read it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use roxmltree::{Document, Node};

use crate::measure::{BytesCheck, ClientTotals, Ejection, Measures, Redials};
use crate::report::{Event, MemberInfo, Report, TrafficInfo};
use crate::scenario::{Bounds, MemberSpec};
use crate::soak::{Gauge, Resources, Sample, Schedule, SoakReport, Tally, Warmup};
use crate::verdict::{Verdict, verdicts};
use crate::wire::ServerKind;

/// 2026-01-01T00:00:00.123Z.
fn started_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_600_123)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn members() -> Vec<MemberInfo> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| MemberInfo {
            name: (*name).into(),
            server: ServerKind::Echo,
            source: "echo".into(),
            tier: 0,
            weight: 1,
            server_addr: addr(41000 + i as u16),
            proxy: format!("drill-member-down-{name}-1-0"),
            proxy_addr: addr(42000 + i as u16),
        })
        .collect()
}

fn traffic() -> TrafficInfo {
    TrafficInfo {
        command: None,
        every: None,
        clients: 16,
        rate: 100.0,
        payload_min: 16384,
        payload_max: 16384,
        duration: Duration::from_secs(8),
        timeout: Duration::from_secs(3),
        client_first: false,
    }
}

fn event(at_ms: u64, kind: &'static str, text: &str) -> Event {
    Event {
        at: Duration::from_millis(at_ms),
        kind,
        text: text.into(),
    }
}

/// A member-down drill: b is killed at 2s and ejected 310ms later; 800 clients, all ok. The
/// verdicts are judged by `verdict::verdicts` against `ejected_within`.
fn drill_report(ejected_within: Duration) -> Report {
    let specs: Vec<MemberSpec> = ["a", "b", "c"]
        .iter()
        .map(|name| MemberSpec {
            name: (*name).into(),
            server: ServerKind::Echo,
            source: crate::scenario::MemberSource::Builtin,
            proxy: None,
            tier: 0,
            weight: 1,
        })
        .collect();
    let measures = Measures {
        clients: ClientTotals {
            total: 800,
            ok: 800,
            failed: 0,
            by_outcome: BTreeMap::from([("ok", 800)]),
        },
        ejections: vec![Ejection {
            member: 1,
            fault_at: Duration::from_secs(2),
            after: Some(Duration::from_millis(310)),
        }],
        returns: vec![],
        backup: vec![],
        failed_after_ejection: 0,
        refused: 0,
        transitions: vec![0, 2, 0],
        slow_shares: vec![],
        bytes: BytesCheck {
            verified: 800,
            payload_bytes: 800 * 16384,
            access_agrees: 800,
            ..BytesCheck::default()
        },
        redials: Redials::default(),
    };
    let bounds = Bounds {
        ejected_within: Some(ejected_within.into()),
        max_client_failure_ratio: Some(0.01),
        all_bytes_intact: true,
        ..Bounds::default()
    };
    let verdicts = verdicts(&bounds, &measures, &specs);
    let passed = verdicts.iter().all(|v| v.pass);
    Report {
        scenario: "member-down".into(),
        file: "member-down.toml".into(),
        description: Some("one of three members is killed at 2s".into()),
        started_at: started_at(),
        elapsed: Duration::from_millis(9_876),
        seed: 42,
        injector: "sluice-toxiproxy 2.12.0 at 127.0.0.1:40000 (embedded)".into(),
        listen: addr(40001),
        balance: "round_robin".into(),
        members: members(),
        traffic: traffic(),
        events: vec![
            event(0, "traffic", "starts"),
            event(2_000, "fault", "kill b"),
            event(2_310, "member", "b up → down"),
            event(8_000, "traffic", "ends (800 clients)"),
        ],
        per_second: vec![],
        measures,
        verdicts,
        passed,
        injected: vec![],
        clients: vec![],
    }
}

fn parse(xml: &str) -> Document<'_> {
    Document::parse(xml).unwrap_or_else(|e| panic!("not XML ({e}):\n{xml}"))
}

fn children<'a, 'i>(node: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    node.children().filter(Node::is_element).collect()
}

fn tags(nodes: &[Node<'_, '_>]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.tag_name().name().to_string())
        .collect()
}

fn attr<'a>(node: Node<'a, '_>, name: &str) -> &'a str {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name}", node.tag_name().name()))
}

/// The one `<testsuite>` under `<testsuites>`, after checking the root's counts.
fn only_suite<'a, 'i>(doc: &'a Document<'i>, tests: &str, failures: &str) -> Node<'a, 'i> {
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(attr(root, "tests"), tests);
    assert_eq!(attr(root, "failures"), failures);
    assert_eq!(attr(root, "errors"), "0");
    let suites = children(root);
    assert_eq!(tags(&suites), ["testsuite"]);
    let suite = suites[0];
    assert_eq!(attr(suite, "tests"), tests);
    assert_eq!(attr(suite, "failures"), failures);
    assert_eq!(attr(suite, "errors"), "0");
    assert_eq!(attr(suite, "skipped"), "0");
    suite
}

fn properties(suite: Node<'_, '_>) -> BTreeMap<String, String> {
    let props = children(suite)
        .into_iter()
        .find(|n| n.has_tag_name("properties"))
        .expect("<properties>");
    children(props)
        .into_iter()
        .map(|p| {
            assert!(p.has_tag_name("property"));
            (attr(p, "name").to_string(), attr(p, "value").to_string())
        })
        .collect()
}

fn cases<'a, 'i>(suite: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    children(suite)
        .into_iter()
        .filter(|n| n.has_tag_name("testcase"))
        .collect()
}

fn system_out(suite: Node<'_, '_>) -> String {
    let out = children(suite)
        .into_iter()
        .find(|n| n.has_tag_name("system-out"))
        .expect("<system-out>");
    out.text().unwrap_or_default().to_string()
}

#[test]
fn a_passing_drill_is_one_suite_of_passing_cases() {
    let report = drill_report(Duration::from_secs(1));
    assert!(report.passed);
    let xml = super::drill(&report).unwrap();
    let doc = parse(&xml);
    let suite = only_suite(&doc, "3", "0");

    assert_eq!(attr(doc.root_element(), "name"), "drill member-down");
    assert_eq!(attr(suite, "name"), "drill member-down");
    for node in [doc.root_element(), suite] {
        assert_eq!(attr(node, "timestamp"), "2026-01-01T00:00:00.123+00:00");
        assert_eq!(attr(node, "time"), "9.876");
    }
    assert_eq!(
        tags(&children(suite)),
        [
            "properties",
            "testcase",
            "testcase",
            "testcase",
            "system-out"
        ]
    );
    let props = properties(suite);
    assert_eq!(props["seed"], "42");
    assert_eq!(
        props["injector"],
        "sluice-toxiproxy 2.12.0 at 127.0.0.1:40000 (embedded)"
    );
    assert_eq!(props["file"], "member-down.toml");
    assert_eq!(props.len(), 3);

    let cases = cases(suite);
    let names: Vec<&str> = cases.iter().map(|c| attr(*c, "name")).collect();
    assert_eq!(
        names,
        [
            "ejected_within",
            "max_client_failure_ratio",
            "all_bytes_intact"
        ]
    );
    for case in &cases {
        assert_eq!(attr(*case, "classname"), "sluice.drill.member-down");
        assert_eq!(attr(*case, "time"), "0.000");
        assert!(children(*case).is_empty(), "a passing case has no children");
    }

    let out = system_out(suite);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "timeline",
            "      0.000s  traffic  starts",
            "      2.000s  fault    kill b",
            "      2.310s  member   b up → down",
            "      8.000s  traffic  ends (800 clients)",
        ]
    );
    assert!(lines.contains(&"  PASS  ejected_within = 1s: b ejected after 310ms (slowest)"));
    assert_eq!(lines.last(), Some(&"result    PASS (3 of 3 bounds met)"));
}

#[test]
fn a_missed_bound_is_a_failure_naming_what_was_measured_and_the_bound() {
    let report = drill_report(Duration::from_millis(100));
    assert!(!report.passed);
    let xml = super::drill(&report).unwrap();
    let doc = parse(&xml);
    let suite = only_suite(&doc, "3", "1");

    let cases = cases(suite);
    let missed = cases[0];
    assert_eq!(attr(missed, "name"), "ejected_within");
    let inner = children(missed);
    assert_eq!(tags(&inner), ["failure"]);
    assert_eq!(
        attr(inner[0], "message"),
        "measured b ejected after 310ms (slowest), bound ejected_within = 100ms"
    );
    assert_eq!(
        inner[0].text(),
        Some("FAIL  ejected_within = 100ms: b ejected after 310ms (slowest)")
    );
    for met in &cases[1..] {
        assert!(children(*met).is_empty(), "{:?} passed", attr(*met, "name"));
    }
    assert!(system_out(suite).ends_with("result    FAIL (2 of 3 bounds met)"));
}

#[test]
fn a_bound_with_nothing_to_measure_fails_as_in_the_text_report() {
    let mut report = drill_report(Duration::from_secs(1));
    // No restore was measured: verdict.rs fails the bound, so JUnit has a failure, no skip.
    let bounds = Bounds {
        returns_within: Some(Duration::from_secs(2).into()),
        ..Bounds::default()
    };
    report.verdicts = verdicts(&bounds, &report.measures, &[]);
    report.passed = false;
    let xml = super::drill(&report).unwrap();
    let doc = parse(&xml);
    let suite = only_suite(&doc, "1", "1");
    let case = cases(suite)[0];
    assert_eq!(attr(case, "name"), "returns_within");
    let inner = children(case);
    assert_eq!(tags(&inner), ["failure"]);
    assert_eq!(
        attr(inner[0], "message"),
        "measured nothing to measure, bound returns_within = 2s"
    );
    assert!(doc.descendants().all(|n| !n.has_tag_name("skipped")));
}

#[test]
fn text_that_xml_must_escape_reads_back_unchanged() {
    let mut report = drill_report(Duration::from_secs(1));
    let measured = r#"member <b> & "c" failed 'twice'"#;
    report.verdicts = vec![Verdict {
        bound: "max_transitions",
        limit: "1".into(),
        measured: measured.into(),
        pass: false,
    }];
    report.passed = false;
    report.events = vec![event(1_000, "fault", "add_toxic <latency> & more")];
    let xml = super::drill(&report).unwrap();
    let doc = parse(&xml);
    let suite = only_suite(&doc, "1", "1");
    let failure = children(cases(suite)[0])[0];
    assert_eq!(
        attr(failure, "message"),
        format!("measured {measured}, bound max_transitions = 1")
    );
    assert!(
        system_out(suite)
            .lines()
            .any(|l| l == "      1.000s  fault    add_toxic <latency> & more")
    );
}

#[test]
fn a_soak_is_a_suite_of_its_bounds_with_faults_and_samples_as_output() {
    let gauge = Gauge {
        fds: 20,
        pooled_pipes: 2,
        rss: 9 << 20,
    };
    let verdict = |bound, pass| Verdict {
        bound,
        limit: "16".into(),
        measured: "+0".into(),
        pass,
    };
    let report = SoakReport {
        soak: "soak-ci".into(),
        file: "soak-ci.toml".into(),
        description: None,
        started_at: started_at(),
        elapsed: Duration::from_millis(22_500),
        seed: 42,
        injector: "sluice-toxiproxy (embedded)".into(),
        listen: addr(40001),
        balance: "p2c".into(),
        members: members(),
        traffic: traffic(),
        warmup: Warmup {
            duration: Duration::from_secs(2),
            clients: 640,
            ok: 640,
        },
        started: 5440,
        traffic_done: Duration::from_secs(17),
        schedule: Schedule {
            fingerprint: "722547903b55d490".into(),
            faults: vec![],
            by_kind: BTreeMap::new(),
            injected: vec![],
        },
        transitions: vec![],
        samples: vec![Sample {
            at: Duration::from_secs(1),
            done: 320,
            ok: 320,
            failed: 0,
            open: 3,
            gauge,
        }],
        tally: Tally::default(),
        resources: Resources {
            before: gauge,
            after: gauge,
            settled_in: Duration::from_millis(101),
        },
        verdicts: vec![verdict("fd_growth", true), verdict("rss_growth", false)],
        passed: false,
    };
    let xml = super::soak(&report).unwrap();
    let doc = parse(&xml);
    let suite = only_suite(&doc, "2", "1");
    assert_eq!(attr(suite, "name"), "soak soak-ci");
    assert_eq!(attr(suite, "time"), "22.500");
    assert_eq!(properties(suite)["file"], "soak-ci.toml");
    let cases = cases(suite);
    let names: Vec<&str> = cases.iter().map(|c| attr(*c, "name")).collect();
    assert_eq!(names, ["fd_growth", "rss_growth"]);
    assert!(
        cases
            .iter()
            .all(|c| attr(*c, "classname") == "sluice.soak.soak-ci")
    );
    assert_eq!(tags(&children(cases[1])), ["failure"]);
    let out = system_out(suite);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("faults    0 drawn from the seed (schedule 722547903b55d490)"));
    assert!(lines.iter().any(|l| l.starts_with("samples (")));
    assert!(lines.contains(&"  FAIL  rss_growth = 16: +0"));
}
