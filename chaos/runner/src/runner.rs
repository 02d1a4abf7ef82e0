//! Runs one scenario end to end and tears everything down, whatever happened.
//!
//! Order: the injector (spawned or `TOXIPROXY_URL`), one server per member on 127.0.0.1:0, one
//! proxy per member (`/populate`), sluice in this process with its route on 127.0.0.1:0 and its
//! pool pointing at the proxies; then, from one instant `t0`, traffic, the timeline and the
//! state sampler together. When traffic is done sluice is shut down (so every access line is
//! written), the proxies are deleted, the servers stopped and a spawned injector killed by PID.
//! Every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::injector::{Injector, InjectorChoice};
use super::measure::Inputs;
use super::report::{self, Report, Setup, Started};
use super::rig::{self, Rig};
use super::scenario::Scenario;
use super::{DrillError, access, admin, observe, timeline, traffic, workload};

/// How long a `[target]` drill waits, once its traffic ended, for the route's connections to
/// close (and their access lines to be written) before it stops reading the access log.
const TARGET_IDLE_WAIT: Duration = Duration::from_secs(3);

/// Knobs for one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Overrides the sluice config's `seed` (drawn at random when neither is set).
    pub seed: Option<u64>,
    /// Overrides `traffic.duration`; timeline steps planned after it are skipped.
    pub duration: Option<Duration>,
    pub injector: InjectorChoice,
}

impl RunOptions {
    /// The seed a run uses: `--seed`, else the config's, else a random one.
    pub fn seed_for(&self, scenario: &Scenario) -> u64 {
        self.seed
            .or(scenario.sluice.as_ref().and_then(|s| s.seed))
            .unwrap_or_else(rand::random)
    }
}

/// Runs `scenario`; `Ok` holds the report whether or not its bounds were met.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, DrillError> {
    let start = Started::now();
    rig::with_rig(scenario, options, async |seed, injector, rig| {
        drill(scenario, options, start, seed, injector, rig).await
    })
    .await
}

async fn drill(
    scenario: &Scenario,
    options: &RunOptions,
    start: Started,
    seed: u64,
    injector: &Injector,
    rig: &mut Rig<'_>,
) -> Result<Report, DrillError> {
    let tap = access::subscribe(rig.proxy_addrs.iter().map(|a| a.to_string()));
    // A [target] sluice's access lines are in its file: followed from its end, from now.
    let stop_following = CancellationToken::new();
    let follower = scenario
        .target
        .as_ref()
        .and_then(|t| t.access_log.clone())
        .map(|path| {
            let members = rig.proxy_addrs.iter().map(|a| a.to_string()).collect();
            tokio::spawn(access::follow(path, members, stop_following.clone()))
        });
    let duration = options.duration.unwrap_or(scenario.traffic.duration);
    let mut load = scenario.traffic.clone();
    load.duration = duration;
    let t0 = Instant::now();
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(observe::sample(
        match (&rig.pool, &scenario.target) {
            (Some(pool), _) => observe::Observed::Pool(Arc::clone(pool)),
            (None, target) => observe::Observed::Admin {
                admin: admin::Admin {
                    addr: target.as_ref().map_or(rig.listen, |t| t.admin),
                },
                pool: target.as_ref().and_then(|t| t.pool.clone()),
                listen: rig.listen,
                proxies: rig.proxy_addrs.clone(),
            },
        },
        t0,
        stop_sampling.clone(),
    ));
    let (clients, injected) = tokio::join!(
        async {
            match &load.command {
                Some(command) => workload::run(rig.listen, command, &load, t0).await,
                None => traffic::run(rig.listen, &load, seed, t0, Some(rig.idle())).await,
            }
        },
        timeline::play(&scenario.timeline, t0, duration, rig.targets()),
    );
    stop_sampling.cancel();
    let history = sampler.await.unwrap_or_default();

    rig.stop_sluice().await;
    if let Some(target) = scenario.target.as_ref().filter(|t| t.access_log.is_some()) {
        let admin = admin::Admin { addr: target.admin };
        let deadline = Instant::now() + TARGET_IDLE_WAIT;
        if !admin.wait_route_idle(rig.listen, deadline).await {
            tracing::warn!(
                listen = %rig.listen,
                "the target's route still had open connections {TARGET_IDLE_WAIT:?} after the \
                 traffic ended; access lines written after now are not attributed"
            );
        }
    }
    stop_following.cancel();
    let access = match follower {
        Some(follower) => match follower.await {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                return Err(DrillError::Setup(format!(
                    "following the target's access_log: {e}"
                )));
            }
            Err(e) => return Err(DrillError::Setup(e.to_string())),
        },
        None => tap.take(),
    };
    let followed = scenario
        .target
        .as_ref()
        .is_some_and(|t| t.access_log.is_some());
    let mut clients = clients;
    if load.command.is_some() {
        workload::attribute(&mut clients, &access, t0, &rig.proxy_addrs);
    }
    let injected = injected?;

    let setup = Setup {
        started: start,
        seed,
        injector: injector.describe(),
        listen: rig.listen,
        balance: rig.balance.clone(),
        members: rig.members(),
        duration,
    };
    let inputs = Inputs {
        scenario,
        injected: &injected,
        history: &history,
        clients: &clients,
        access: &access,
        // A [target] sluice's lines come from its access_log file, or not at all.
        tapped: followed || (access::is_installed() && rig.pool.is_some()),
        t0,
    };
    Ok(report::build(setup, &inputs))
}
