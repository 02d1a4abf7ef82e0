//! Runs one soak: the drill's rig (injector, members behind proxies, sluice in process), then
//! three phases.
//!
//! 1. Warm-up: clean traffic for `soak.warmup`, so what sluice and the process build once
//!    (runtime workers, allocator arenas, the splice pipe pool, the access tap) exists before
//!    the starting fd count and RSS are read, once sluice holds no connection.
//! 2. Soak: from `t0`, the traffic (every client handed to the [`Ledger`] as it finishes),
//!    the drawn timeline, a sampler of member states, and a monitor that feeds access lines to
//!    the ledger and samples fds, RSS and counts every `sample_every`.
//! 3. Settle: with traffic over and every fault lifted, wait (up to `soak.settle`) for sluice
//!    to hold no connection, no pipe in flight and the fd count to come back, then read the
//!    ending fds and RSS, before sluice is stopped (so both readings see the same listeners,
//!    tasks and injector).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::gauge::Gauge;
use super::ledger::Ledger;
use super::plan::Soak;
use super::report::{self, Ran, Resources, Sample, SoakReport, SoakSetup};
use super::schedule;
use crate::access::{self, Subscription};
use crate::injector::Injector;
use crate::report::Started;
use crate::rig::{self, Rig};
use crate::scenario::Traffic;
use crate::{DrillError, RunOptions, observe, timeline, traffic};

/// How often the monitor hands access lines to the ledger.
const DRAIN_EVERY: Duration = Duration::from_millis(250);
/// How long sluice may take to let go of the warm-up's connections.
const WARMUP_IDLE: Duration = Duration::from_secs(10);
/// fds allowed above the start while settling, when `fd_growth` is not set.
const DEFAULT_FD_SETTLE: u64 = 16;

/// Runs `soak`; `Ok` holds the report whether or not its bounds were met.
pub async fn run(soak: &Soak, options: &RunOptions) -> Result<SoakReport, DrillError> {
    let start = Started::now();
    rig::with_rig(&soak.scenario, options, async |seed, injector, rig| {
        phases(soak, options, start, seed, injector, rig).await
    })
    .await
}

async fn phases(
    soak: &Soak,
    options: &RunOptions,
    start: Started,
    seed: u64,
    injector: &Injector,
    rig: &mut Rig<'_>,
) -> Result<SoakReport, DrillError> {
    let scenario = &soak.scenario;
    let plan = &soak.plan;
    let duration = options.duration.unwrap_or(scenario.traffic.duration);
    let faults = schedule::draw(seed, plan, scenario.members.len(), duration);
    let steps = schedule::steps(&faults);
    let tap = Arc::new(access::subscribe(
        rig.proxy_addrs.iter().map(|a| a.to_string()),
    ));

    let warmup = warm_up(rig, &scenario.traffic, plan.warmup, seed).await;
    let before = gauge()?;

    let t0 = Instant::now();
    // A client or line still unpaired after this is given up on: a line can trail its client
    // by a held close (slow_close, a timeout toxic holding the proxy's side) for as long as
    // the fault lasts.
    let horizon = scenario.traffic.timeout * 2 + plan.fault_length.1 + Duration::from_secs(30);
    let ledger = Arc::new(Mutex::new(Ledger::new(
        t0,
        scenario.members.len(),
        &faults,
        horizon,
    )));
    let _ = tap.take();
    let stop = CancellationToken::new();
    let Some(pool) = rig.pool.clone() else {
        return Err(DrillError::Setup(
            "a soak runs its own sluice: [target] is for drills".into(),
        ));
    };
    let open = {
        let pool = Arc::clone(&pool);
        move || pool.members().iter().map(|m| m.active()).sum::<u64>()
    };
    let monitor = tokio::spawn(monitor(
        Arc::clone(&ledger),
        Arc::clone(&tap),
        open.clone(),
        t0,
        plan.sample_every,
        stop.clone(),
    ));
    let sampler = tokio::spawn(observe::sample(
        observe::Observed::Pool(pool),
        t0,
        stop.clone(),
    ));
    let mut load = scenario.traffic.clone();
    load.duration = duration;
    let on_client = {
        let ledger = Arc::clone(&ledger);
        move |c| lock(&ledger).client(&c)
    };
    let (started, injected) = tokio::join!(
        traffic::run_each(rig.listen, &load, seed, t0, None, on_client),
        timeline::play(&steps, t0, duration, rig.targets()),
    );
    let traffic_done = t0.elapsed();

    let fd_settle = soak.bounds.fd_growth.unwrap_or(DEFAULT_FD_SETTLE);
    let (after, settled_in) = settle(&open, before, fd_settle, plan.settle).await?;
    stop.cancel();
    let mut samples = monitor.await.unwrap_or_default();
    samples.push(sample(&lock(&ledger), open(), after, t0.elapsed()));
    let history = sampler.await.unwrap_or_default();

    rig.stop_sluice().await;
    let tally = {
        let mut ledger = lock(&ledger);
        for a in tap.take() {
            ledger.access(&a);
        }
        ledger.finish()
    };
    let injected = injected?;

    let setup = SoakSetup {
        started: start,
        seed,
        injector: injector.describe(),
        listen: rig.listen,
        balance: rig.balance.clone(),
        members: rig.members(),
        duration,
        traffic_done,
        fingerprint: schedule::fingerprint(&steps, &scenario.members),
        tapped: access::is_installed(),
    };
    let resources = Resources {
        before,
        after,
        settled_in,
    };
    let ran = Ran {
        warmup,
        started,
        faults,
        injected,
        history: &history,
        samples,
        tally,
        resources,
    };
    Ok(report::build(soak, setup, ran))
}

/// Clean traffic for `length` (nothing when zero); returns (clients, ok). Then waits, bounded,
/// for sluice to let go of every connection.
async fn warm_up(rig: &Rig<'_>, traffic: &Traffic, length: Duration, seed: u64) -> (u64, u64) {
    let mut counts = (0, 0);
    if !length.is_zero() {
        let mut load = traffic.clone();
        load.duration = length;
        // Another payload stream than the soak's, and no record kept.
        let warm_seed = seed.rotate_left(32) ^ 0x5741_524D;
        traffic::run_each(rig.listen, &load, warm_seed, Instant::now(), None, |c| {
            counts.0 += 1;
            counts.1 += u64::from(c.outcome.is_ok());
        })
        .await;
    }
    let idle = rig.idle();
    let deadline = Instant::now() + WARMUP_IDLE;
    while !(idle() && sluice::relay::pipes_in_flight() == 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counts
}

/// Feeds access lines to the ledger every [`DRAIN_EVERY`] and takes a [`Sample`] every
/// `every`, until `stop`.
async fn monitor(
    ledger: Arc<Mutex<Ledger>>,
    tap: Arc<Subscription>,
    open: impl Fn() -> u64,
    t0: Instant,
    every: Duration,
    stop: CancellationToken,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval_at(t0 + DRAIN_EVERY, DRAIN_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut next_sample = every;
    loop {
        tokio::select! {
            () = stop.cancelled() => return samples,
            _ = ticks.tick() => {}
        }
        let lines = tap.take();
        let at = t0.elapsed();
        let mut ledger = lock(&ledger);
        for a in &lines {
            ledger.access(a);
        }
        ledger.prune(Instant::now());
        if at >= next_sample {
            next_sample += every;
            if let Ok(g) = Gauge::read() {
                samples.push(sample(&ledger, open(), g, at));
            }
        }
    }
}

fn sample(ledger: &Ledger, open: u64, g: Gauge, at: Duration) -> Sample {
    let (done, ok, failed) = ledger.counts();
    Sample {
        at,
        done,
        ok,
        failed,
        open,
        gauge: g,
    }
}

/// Waits until sluice holds no connection and no pipe in flight and the fds are back within
/// `slack` of `before`, or `limit` passes; returns the reading then and how long it took.
async fn settle(
    open: &impl Fn() -> u64,
    before: Gauge,
    slack: u64,
    limit: Duration,
) -> Result<(Gauge, Duration), DrillError> {
    let start = Instant::now();
    loop {
        let g = gauge()?;
        let quiet = open() == 0 && sluice::relay::pipes_in_flight() == 0;
        if (quiet && g.net_fds() <= before.net_fds() + slack) || start.elapsed() >= limit {
            return Ok((g, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn gauge() -> Result<Gauge, DrillError> {
    Gauge::read().map_err(|e| DrillError::Setup(format!("cannot read /proc/self: {e}")))
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    // Every ledger update is self-contained, so a poisoned one is still consistent.
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}
