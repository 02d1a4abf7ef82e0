//! The arithmetic on small configs, each number asserted exactly.

use std::time::Duration;

use super::*;
use crate::config::from_str;

const MS: Duration = Duration::from_millis(1);
const US: Duration = Duration::from_micros(1);

/// One route `web` over pool `web` with `members` (TOML inline tables) and extra pool keys.
fn budget(members: &str, pool_extra: &str, route_extra: &str) -> PoolBudget {
    let text = format!(
        r#"
        [routes.web]
        listen = "127.0.0.1:0"
        pool = "web"
        {route_extra}
        [pools.web]
        members = [{members}]
        {pool_extra}
        "#
    );
    let config = from_str(&text, None).unwrap_or_else(|e| panic!("{e}"));
    let mut budgets = explain(&config);
    assert_eq!(budgets.len(), 1);
    budgets.remove(0)
}

const TWO: &str = r#"{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }"#;
const TWO_AND_BACKUP: &str = r#"{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }, { addr = "127.0.0.1:9101", tier = 1 }"#;

fn by_fault(refused: Duration, blackhole: Duration) -> Option<ByFault> {
    Some(ByFault { refused, blackhole })
}

#[test]
fn defaults() {
    let b = budget(TWO, "", "");
    // interval 2s, fast_interval 500ms, timeout 1s, fall 3, rise 2, jitter 10%;
    // grid min(2s, 500ms) / 16 = 31.25ms, capped at 20ms; slack 20ms + 1ms.
    // detect refused = 2s × 1.1 + 2 × 500ms × 1.1 + 3 × 21ms = 2.2s + 1.1s + 63ms.
    // blackhole = that + 3 × (1s + 1ms).
    assert_eq!(b.detect, by_fault(3363 * MS, 6366 * MS));
    assert_eq!(b.ejected_within(), Some(6366 * MS));
    assert_eq!(b.breaker_opens_after, Some(5));
    // return refused = 2 × (550ms + 21ms); blackhole = 1s + 1ms + that.
    assert_eq!(b.returns, by_fault(1142 * MS, 2143 * MS).unwrap());
    assert_eq!(b.returns_within(), Some(2143 * MS));
    assert_eq!(b.failover, Failover::SingleTier);
    assert_eq!(b.backup_serves_within(), None);
    assert_eq!(b.full_weight, None);
    // connect_timeout 2s; attempts 3 with backoffs 25ms, 50ms, each up to doubled by jitter:
    // 3 × 2s + 150ms = 6.15s, under budget 5s + 2s.
    assert_eq!(
        b.clients,
        [ClientWait {
            route: "web".into(),
            per_dead_pick: 2000 * MS,
            no_live_member: ByFault {
                refused: 150 * MS,
                blackhole: 6150 * MS,
            },
        }]
    );
}

#[test]
fn fast_checks_without_jitter() {
    let b = budget(
        TWO,
        r#"[pools.web.health]
        interval = "100ms"
        fast_interval = "50ms"
        timeout = "200ms"
        fall = 2
        rise = 3
        jitter = "0%""#,
        "",
    );
    // grid 50ms / 16 = 3.125ms, slack 4.125ms.
    // detect refused = 100ms + 1 × 50ms + 2 × 4.125ms; blackhole + 2 × 201ms.
    assert_eq!(b.detect, by_fault(158_250 * US, 560_250 * US));
    // return refused = 3 × (50ms + 4.125ms); blackhole + 201ms.
    assert_eq!(b.returns, by_fault(162_375 * US, 363_375 * US).unwrap());
}

#[test]
fn blackhole_waits_every_probe_timeout_and_fall_one_probes_once() {
    let b = budget(
        TWO,
        r#"[pools.web.health]
        interval = "1s"
        timeout = "3s"
        fall = 1
        rise = 1
        jitter = "50%""#,
        "",
    );
    // fast_interval defaults to 500ms; grid 500ms / 16 = 31.25ms, capped at 20ms.
    // refused = 1s × 1.5 + 0 × fast + 1 × 21ms; blackhole + 1 × (3s + 1ms).
    assert_eq!(b.detect, by_fault(1521 * MS, 4522 * MS));
    // return refused = 1 × (500ms × 1.5 + 21ms); blackhole + 3s + 1ms.
    assert_eq!(b.returns, by_fault(771 * MS, 3772 * MS).unwrap());
}

#[test]
fn backup_tier_serves_once_detect_has_taken_enough_primaries() {
    let b = budget(TWO_AND_BACKUP, "", "");
    assert_eq!(b.failover, Failover::Within(6366 * MS));
    assert_eq!(b.backup_serves_within(), Some(6366 * MS));
    let text = b.to_string();
    assert!(
        text.contains("once 2 of 2 primaries are down (min_healthy 1)"),
        "{text}"
    );

    let three = r#"{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }, { addr = "127.0.0.1:9003" }, { addr = "127.0.0.1:9101", tier = 1 }"#;
    let b = budget(three, "min_healthy = 2", "");
    assert_eq!(b.backup_serves_within(), Some(6366 * MS));
    assert!(
        b.to_string()
            .contains("once 2 of 3 primaries are down (min_healthy 2)")
    );
}

#[test]
fn health_off_leaves_ejection_to_the_breaker_and_promises_no_time() {
    let b = budget(TWO_AND_BACKUP, "[pools.web.health]\nenabled = false", "");
    assert_eq!(b.detect, None);
    assert_eq!(b.ejected_within(), None);
    assert_eq!(b.failover, Failover::NoBound);
    assert_eq!(b.backup_serves_within(), None);
    // The breaker's longest open period: it may have re-opened just before the member returned.
    assert_eq!(b.returns_within(), Some(Duration::from_secs(120)));
    let text = b.to_string();
    assert!(text.contains("detect    no bound"), "{text}");
    assert!(
        text.contains("only clients eject a member: the breaker opens on consecutive_failures 5 failed connects in a row"),
        "{text}"
    );

    let b = budget(
        TWO,
        "[pools.web.health]\nenabled = false\n[pools.web.breaker]\nenabled = false",
        "",
    );
    assert_eq!((b.detect, b.breaker_opens_after), (None, None));
    assert_eq!(b.returns_within(), Some(Duration::ZERO), "never taken out");
    assert!(
        b.to_string()
            .contains("never: health checks and breaker are off")
    );
}

#[test]
fn retry_budget_caps_a_client_with_no_live_member() {
    let b = budget(
        r#"{ addr = "127.0.0.1:9001" }"#,
        "",
        r#"connect_timeout = "1s"
        retry = { attempts = 10, min_backoff = "100ms", max_backoff = "1s", jitter = false, budget = "2s" }"#,
    );
    // Uncapped: 10 × 1s + (100 + 200 + 400 + 800 + 5 × 1000)ms = 16.5s; no attempt starts
    // after budget 2s, so at most 2s + one 1s connect. Refused: the backoffs alone, 6.5s,
    // capped at 2s.
    let c = &b.clients[0];
    assert_eq!(c.per_dead_pick, 1000 * MS);
    assert_eq!(
        c.no_live_member,
        ByFault {
            refused: 2000 * MS,
            blackhole: 3000 * MS,
        }
    );
    assert!(
        b.to_string().contains(
            "no live member = attempts 10 × connect_timeout 1s + backoffs (100ms + 200ms + … + 1s: 9 waits, 6.5s), capped at budget 2s + connect_timeout 1s"
        ),
        "{b}"
    );
}

#[test]
fn one_attempt_fails_the_client_instead_of_redialling() {
    let b = budget(TWO, "", "retry = { attempts = 1 }");
    let c = &b.clients[0];
    assert_eq!(c.per_dead_pick, 2000 * MS);
    assert_eq!(c.no_live_member.blackhole, 2000 * MS);
    assert_eq!(c.no_live_member.refused, Duration::ZERO);
    assert!(
        b.to_string()
            .contains("then it fails (attempts 1: no redial)")
    );
}

#[test]
fn slow_start_adds_its_ramp_to_full_weight() {
    let b = budget(TWO, r#"slow_start = "30s""#, "");
    assert_eq!(b.returns_within(), Some(2143 * MS));
    assert_eq!(b.full_weight, Some(32_143 * MS));
}

#[test]
fn every_route_of_a_pool_gets_its_client_lines() {
    let config = from_str(
        r#"
        [routes.a]
        listen = "127.0.0.1:0"
        pool = "p"
        connect_timeout = "300ms"
        [routes.b]
        listen = "127.0.0.1:1"
        pool = "p"
        [pools.p]
        members = [{ addr = "127.0.0.1:9001" }]
        [pools.idle]
        members = [{ addr = "127.0.0.1:9002" }]
        "#,
        None,
    )
    .unwrap();
    let budgets = explain(&config);
    let names: Vec<&str> = budgets.iter().map(|b| b.pool.as_str()).collect();
    assert_eq!(names, ["idle", "p"]);
    assert!(budgets[0].routes.is_empty() && budgets[0].clients.is_empty());
    let waits: Vec<(&str, Duration)> = budgets[1]
        .clients
        .iter()
        .map(|c| (c.route.as_str(), c.per_dead_pick))
        .collect();
    assert_eq!(waits, [("a", 300 * MS), ("b", 2000 * MS)]);
}

#[test]
fn durations_read_as_the_config_writes_them() {
    let cases = [
        (Duration::ZERO, "0s"),
        (2 * Duration::from_secs(1), "2s"),
        (3363 * MS, "3.363s"),
        (621_750 * US, "621.75ms"),
        (21 * MS, "21ms"),
        (625 * US, "625µs"),
        (Duration::from_nanos(7), "7ns"),
        (Duration::from_secs(120), "2m"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_millis(90_500), "90.5s"),
    ];
    for (d, text) in cases {
        assert_eq!(format_duration(d), text, "{d:?}");
    }
}

#[test]
fn json_carries_the_three_bounds_in_milliseconds() {
    let b = budget(TWO_AND_BACKUP, "", "");
    let json = b.to_json();
    assert_eq!(json["ejected_within_ms"], 6366.0);
    assert_eq!(json["backup_serves_within_ms"], 6366.0);
    assert_eq!(json["returns_within_ms"], 2143.0);
    assert_eq!(json["detect_ms"]["refused"], 3363.0);
    assert_eq!(json["clients"][0]["no_live_member_ms"]["blackhole"], 6150.0);
    assert_eq!(json["failover"], "within");
    let lines = json["lines"].as_array().unwrap();
    assert_eq!(lines.len(), b.lines.len());
    assert_eq!(lines[1]["label"], "detect");
    assert_eq!(lines[1]["bound_ms"], 3363.0);
    assert!(
        lines.iter().any(|l| l["bound_ms"].is_null()),
        "notes have no bound"
    );
}
