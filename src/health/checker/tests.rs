//! Paused-clock tests of the checker task against scripted probes. Jitter is zero, so every
//! delay is exact and each test can name the virtual millisecond a member flips at.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::Checker;
use crate::config::{HealthConfig, MemberConfig};
use crate::health::ProbeFailure;
use crate::upstream::Member;

const MS: Duration = Duration::from_millis(1);
const DOWN: &str = "sluice_member_health_transitions_total{pool=db,member=10.0.0.1:5432,to=down}";
const UP: &str = "sluice_member_health_transitions_total{pool=db,member=10.0.0.1:5432,to=up}";
const GAUGE: &str = "sluice_member_up{pool=db,member=10.0.0.1:5432}";
const DURATION: &str = "sluice_health_check_duration_seconds{pool=db,member=10.0.0.1:5432}";

fn config(rise: u32, fall: u32) -> HealthConfig {
    HealthConfig {
        interval: Duration::from_secs(2),
        fast_interval: Duration::from_millis(500),
        jitter: 0.0,
        rise,
        fall,
        ..HealthConfig::default()
    }
}

/// A running checker whose probe returns `outcomes` in order (then successes), each after
/// `probe_takes`, and records the virtual time of each call.
struct Harness {
    start: Instant,
    member: Arc<Member>,
    calls: Arc<Mutex<Vec<Duration>>>,
    recorder: Arc<TestRecorder>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Harness {
    fn start(
        init_up: bool,
        config: HealthConfig,
        outcomes: &[bool],
        probe_takes: Duration,
    ) -> Self {
        Self::start_seeded(1, init_up, config, outcomes, probe_takes)
    }

    fn start_seeded(
        seed: u64,
        init_up: bool,
        config: HealthConfig,
        outcomes: &[bool],
        probe_takes: Duration,
    ) -> Self {
        let start = Instant::now();
        let member_config = MemberConfig {
            name: "10.0.0.1:5432".into(),
            addr: "10.0.0.1:5432".parse().unwrap(),
            weight: 1,
            tier: 0,
        };
        let member = Arc::new(Member::new(0, &member_config, init_up, start));
        let recorder = Arc::new(TestRecorder::default());
        let checker = metrics::with_local_recorder(&*recorder, || {
            Checker::new("db".into(), Arc::clone(&member), Arc::new(config), seed)
        });
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut outcomes: VecDeque<bool> = outcomes.iter().copied().collect();
        let probe_calls = Arc::clone(&calls);
        let probe = move || {
            probe_calls.lock().unwrap().push(start.elapsed());
            let ok = outcomes.pop_front().unwrap_or(true);
            async move {
                sleep(probe_takes).await;
                if ok {
                    Ok(())
                } else {
                    Err(ProbeFailure::Refused)
                }
            }
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(checker.run(probe, shutdown.clone()));
        Self {
            start,
            member,
            calls,
            recorder,
            shutdown,
            task,
        }
    }

    /// Lets virtual time run to `ms` after the start.
    async fn at(&self, ms: u64) {
        sleep_until(self.start + MS * ms as u32).await;
    }

    fn calls_ms(&self) -> Vec<u128> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let cancelled_at = Instant::now();
        tokio::time::timeout(Duration::from_secs(3600), self.task)
            .await
            .expect("checker stopped on shutdown")
            .expect("checker did not panic");
        // Not a timer firing later: the task noticed the cancellation by itself.
        assert_eq!(cancelled_at.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn falls_after_fall_failures_at_fast_interval() {
    let h = Harness::start(
        true,
        config(2, 3),
        &[true, false, false, false],
        Duration::ZERO,
    );
    h.at(2999).await;
    assert!(h.member.is_up(), "two failures are not enough");
    assert_eq!(h.recorder.gauge(GAUGE), 1.0, "exported from the start");
    h.at(3001).await;
    assert!(!h.member.is_up());
    // Normal interval while stable, fast interval once the first failure is counted.
    assert_eq!(h.calls_ms(), [0, 2000, 2500, 3000]);
    assert_eq!((h.recorder.counter(DOWN), h.recorder.counter(UP)), (1, 0));
    assert_eq!(h.recorder.gauge(GAUGE), 0.0);
    assert_eq!(h.recorder.samples(DURATION).len(), 4);
    h.at(4001).await;
    assert_eq!(
        h.calls_ms(),
        [0, 2000, 2500, 3000, 3500, 4000],
        "down: fast"
    );
    assert_eq!(h.recorder.counter(DOWN), 1, "counted once");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rises_after_rise_successes_then_slows_down() {
    let h = Harness::start(false, config(2, 3), &[false, true, true], Duration::ZERO);
    h.at(999).await;
    assert!(!h.member.is_up());
    h.at(1001).await;
    assert!(h.member.is_up());
    assert_eq!(h.calls_ms(), [0, 500, 1000]);
    h.at(3001).await;
    assert_eq!(
        h.calls_ms(),
        [0, 500, 1000, 3000],
        "up and stable: normal interval"
    );
    assert_eq!((h.recorder.counter(UP), h.recorder.gauge(GAUGE)), (1, 1.0));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn first_probe_decides_for_init_up() {
    let h = Harness::start(true, config(2, 3), &[false], Duration::ZERO);
    h.at(1).await;
    assert!(!h.member.is_up(), "down after one failure, not fall");
    assert_eq!(
        (h.recorder.counter(DOWN), h.recorder.gauge(GAUGE)),
        (1, 0.0)
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn first_probe_decides_for_init_down() {
    let h = Harness::start(false, config(2, 3), &[true], Duration::ZERO);
    assert_eq!(h.recorder.gauge(GAUGE), 0.0);
    h.at(1).await;
    assert!(h.member.is_up(), "up after one success, not rise");
    assert_eq!(h.recorder.counter(UP), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn interval_counts_from_the_end_of_a_probe() {
    let h = Harness::start(true, config(2, 3), &[], MS * 300);
    h.at(4601).await;
    assert_eq!(h.calls_ms(), [0, 2300, 4600]);
    let samples = h.recorder.samples(DURATION);
    assert_eq!(samples, [0.3, 0.3]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_a_sleeping_checker() {
    let h = Harness::start(true, config(2, 3), &[], Duration::ZERO);
    h.at(1000).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_a_checker_mid_probe() {
    let h = Harness::start(true, config(2, 3), &[], Duration::from_secs(3600));
    h.at(1000).await;
    assert_eq!(h.calls_ms(), [0]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn jittered_schedule_is_reproducible_from_the_seed() {
    let jittered = || HealthConfig {
        jitter: 0.5,
        ..config(2, 3)
    };
    let a = Harness::start_seeded(7, true, jittered(), &[], Duration::ZERO);
    let b = Harness::start_seeded(7, true, jittered(), &[], Duration::ZERO);
    let c = Harness::start_seeded(8, true, jittered(), &[], Duration::ZERO);
    a.at(30_000).await;
    let calls = a.calls.lock().unwrap().clone();
    assert_eq!(calls, *b.calls.lock().unwrap());
    assert_ne!(
        calls,
        *c.calls.lock().unwrap(),
        "another seed, another schedule"
    );
    // First probe within 2 × 0.5 × 500ms, then every 2s × (1 ± 0.5).
    assert!(calls[0] <= MS * 500, "{calls:?}");
    for gap in calls.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= MS * 1000 && gap <= MS * 3000, "{calls:?}");
    }
    for h in [a, b, c] {
        h.stop().await;
    }
}

/// Keeps every metric in memory, keyed `name{label=value,...}`.
#[derive(Default)]
struct TestRecorder {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
    samples: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

impl TestRecorder {
    fn value(&self, key: &str) -> Arc<AtomicU64> {
        let mut values = self.values.lock().unwrap();
        Arc::clone(values.entry(key.to_string()).or_default())
    }

    fn counter(&self, key: &str) -> u64 {
        self.value(key).load(Ordering::Relaxed)
    }

    fn gauge(&self, key: &str) -> f64 {
        f64::from_bits(self.value(key).load(Ordering::Relaxed))
    }

    fn samples(&self, key: &str) -> Vec<f64> {
        let samples = self.samples.lock().unwrap();
        samples
            .get(key)
            .map(|s| s.0.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(&render(key)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(&render(key)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut samples = self.samples.lock().unwrap();
        Histogram::from_arc(Arc::clone(samples.entry(render(key)).or_default()))
    }
}

/// `sluice check --explain` (crate::budget) states this schedule's worst case: a member that
/// dies right after a passed probe goes down exactly the budget's slack (probe grid and timer
/// rounding, both absent here) before the explained bound, whether it refuses or is blackholed.
#[tokio::test(start_paused = true)]
async fn worst_case_detect_is_the_explained_bound_less_its_slack() {
    let file = crate::config::from_str(
        r#"
        [routes.db]
        listen = "127.0.0.1:0"
        pool = "db"
        [pools.db]
        members = [{ addr = "10.0.0.1:5432" }]
        [pools.db.health]
        interval = "2s"
        fast_interval = "500ms"
        jitter = "0%"
        rise = 2
        fall = 3
        "#,
        None,
    )
    .unwrap();
    let health = file.pools[0].health.clone().unwrap();
    assert_eq!(
        health,
        config(2, 3),
        "the harness runs the explained config"
    );
    let detect = crate::budget::explain(&file)[0].detect.unwrap();
    let timer = crate::budget::TIMER_RESOLUTION;
    let slack = (crate::health::probe_grid_tick(&health) + timer) * health.fall;

    // Refused: passed at 0, dead at once; three failures at fast_interval after interval.
    let refused = Harness::start(
        true,
        config(2, 3),
        &[true, false, false, false],
        Duration::ZERO,
    );
    let down_at = detect.refused - slack;
    assert_eq!(down_at, MS * 3000);
    refused.at(2999).await;
    assert!(refused.member.is_up());
    refused.at(3001).await;
    assert!(!refused.member.is_up());
    refused.stop().await;

    // Blackholed: every probe takes the whole timeout; dead right after the passed one ends.
    let timeout = health.timeout;
    let blackhole = Harness::start(true, config(2, 3), &[true, false, false, false], timeout);
    let dead_at = timeout;
    let down_after = detect.blackhole - slack - timer * health.fall;
    assert_eq!(down_after, MS * 6000);
    let down_at = (dead_at + down_after).as_millis() as u64;
    blackhole.at(down_at - 1).await;
    assert!(blackhole.member.is_up());
    blackhole.at(down_at + 1).await;
    assert!(!blackhole.member.is_up());
    blackhole.stop().await;
}
