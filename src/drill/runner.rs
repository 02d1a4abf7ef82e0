//! Runs one scenario end to end and tears everything down, whatever happened.
//!
//! Order: the injector (spawned or `TOXIPROXY_URL`), one server per member on 127.0.0.1:0, one
//! proxy per member (`/populate`), sluice in this process with its route on 127.0.0.1:0 and its
//! pool pointing at the proxies; then, from one instant `t0`, traffic, the timeline and the
//! state sampler together. When traffic is done sluice is shut down (so every access line is
//! written), the proxies are deleted, the servers stopped and a spawned injector killed by PID.
//! Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::injector::{Injector, InjectorChoice};
use super::measure::Inputs;
use super::members::MemberServer;
use super::report::{self, MemberInfo, Report, Setup};
use super::scenario::Scenario;
use super::timeline::{self, Targets};
use super::{DrillError, access, observe, traffic};
use crate::{Server, Shutdown};

/// How long sluice may take to drain after traffic before its connections are cut.
const DRAIN: Duration = Duration::from_secs(10);
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Knobs for one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Overrides the sluice config's `seed` (drawn at random when neither is set).
    pub seed: Option<u64>,
    /// Overrides `traffic.duration`; timeline steps planned after it are skipped.
    pub duration: Option<Duration>,
    pub injector: InjectorChoice,
}

/// Runs `scenario`; `Ok` holds the report whether or not its bounds were met.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, DrillError> {
    let seed = options
        .seed
        .or(scenario.sluice.seed)
        .unwrap_or_else(rand::random);
    let injector = Injector::start(&options.injector).await?;
    let result = with_injector(scenario, options, seed, &injector).await;
    injector.stop().await;
    result
}

async fn with_injector(
    scenario: &Scenario,
    options: &RunOptions,
    seed: u64,
    injector: &Injector,
) -> Result<Report, DrillError> {
    let mut servers = Vec::new();
    for (i, m) in scenario.members.iter().enumerate() {
        let server = MemberServer::start(i as u32, m.server)
            .await
            .map_err(|source| DrillError::Member {
                member: m.name.clone(),
                source,
            })?;
        servers.push(server);
    }
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let proxies: Vec<String> = scenario
        .members
        .iter()
        .map(|m| proxy_name(&scenario.name, &m.name, run))
        .collect();
    let result = with_servers(scenario, options, seed, injector, &servers, &proxies).await;
    for p in &proxies {
        if let Err(e) = injector.api().delete_proxy(p).await {
            warn!(proxy = p, error = %e, "cannot delete a drill proxy");
        }
    }
    for s in &servers {
        s.kill().await;
    }
    result
}

async fn with_servers(
    scenario: &Scenario,
    options: &RunOptions,
    seed: u64,
    injector: &Injector,
    servers: &[MemberServer],
    proxies: &[String],
) -> Result<Report, DrillError> {
    let api = injector.api();
    let wanted: Vec<(String, String)> = proxies
        .iter()
        .zip(servers)
        .map(|(p, s)| (p.clone(), s.addr().to_string()))
        .collect();
    let created = api.populate(&wanted).await?;
    let mut proxy_addrs = Vec::new();
    for p in proxies {
        let listen = created
            .iter()
            .find(|c| &c.name == p)
            .and_then(|c| c.listen.parse::<SocketAddr>().ok())
            .ok_or_else(|| DrillError::Setup(format!("/populate did not answer proxy {p}")))?;
        proxy_addrs.push(listen);
    }
    let config = scenario
        .sluice
        .config(&scenario.members, &proxy_addrs, seed)
        .map_err(DrillError::Scenario)?;
    let balance = config
        .pool(&scenario.sluice.pool)
        .map_or("?", |p| p.balance.as_str())
        .to_string();
    let server = Server::bind(config).await?;
    let listen = *server
        .local_addrs(&scenario.sluice.route)
        .first()
        .ok_or_else(|| DrillError::Setup("sluice bound no address".into()))?;
    let pool = server
        .pool(&scenario.sluice.pool)
        .ok_or_else(|| DrillError::Setup("sluice has no drilled pool".into()))?;
    let tap = access::subscribe(proxy_addrs.iter().map(|a| a.to_string()));
    let shutdown = Shutdown::new();
    let running = tokio::spawn(server.run(shutdown.clone()));

    let duration = options.duration.unwrap_or(scenario.traffic.duration);
    let mut load = scenario.traffic.clone();
    load.duration = duration;
    let t0 = Instant::now();
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(observe::sample(
        Arc::clone(&pool),
        t0,
        stop_sampling.clone(),
    ));
    let idle_pool = Arc::clone(&pool);
    let idle: Arc<dyn Fn() -> bool + Send + Sync> =
        Arc::new(move || idle_pool.members().iter().all(|m| m.active() == 0));
    let targets = Targets {
        api,
        proxies,
        servers,
        members: &scenario.members,
    };
    let (clients, injected) = tokio::join!(
        traffic::run(listen, &load, seed, t0, Some(idle)),
        timeline::play(&scenario.timeline, t0, duration, targets),
    );
    stop_sampling.cancel();
    let history = sampler.await.unwrap_or_default();

    shutdown.stop();
    let mut running = running;
    if tokio::time::timeout(DRAIN, &mut running).await.is_err() {
        warn!("sluice did not drain within {DRAIN:?} after traffic; cutting");
        shutdown.cut_now();
        let _ = tokio::time::timeout(DRAIN, running).await;
    }
    let access = tap.take();
    let injected = injected?;

    let members = scenario
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| MemberInfo {
            name: m.name.clone(),
            server: m.server,
            tier: m.tier,
            weight: m.weight,
            server_addr: servers[i].addr(),
            proxy: proxies[i].clone(),
            proxy_addr: proxy_addrs[i],
        })
        .collect();
    let setup = Setup {
        seed,
        injector: injector.describe(),
        listen,
        balance,
        members,
        duration,
    };
    let inputs = Inputs {
        scenario,
        injected: &injected,
        history: &history,
        clients: &clients,
        access: &access,
        tapped: access::is_installed(),
        t0,
    };
    Ok(report::build(setup, &inputs))
}

/// `drill-member-down-b-4242-0`: unique per process and run, so drills sharing one
/// Toxiproxy (tests in parallel, a shared `TOXIPROXY_URL`) never touch each other's proxies.
fn proxy_name(scenario: &str, member: &str, run: u64) -> String {
    let clean: String = scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("drill-{clean}-{member}-{}-{run}", std::process::id())
}
