//! What a drill or a soak runs against: one member server per scenario member on 127.0.0.1:0,
//! one injector proxy in front of each, and sluice in this process with its route on
//! 127.0.0.1:0 and its pool pointing at the proxies.
//!
//! [`Rig::start`] builds it in that order and undoes what it built if a step fails;
//! [`Rig::teardown`] stops sluice (if still running), deletes the proxies and stops the
//! servers. [`with_rig`] wraps both around a drill or soak body, with the injector. Every wait
//! is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::warn;

use super::admin::Admin;
use super::control::Control;
use super::injector::Injector;
use super::observe;
use super::report::MemberInfo;
use super::scenario::{Scenario, Target};
use super::timeline::Targets;
use super::upstream::Upstream;
use super::{DrillError, RunOptions};
use sluice::upstream::Pool;
use sluice::{RunSummary, Server, Shutdown};

/// How long sluice may take to drain after traffic before its connections are cut.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a `[target]` sluice may take to see every member up once the proxies listen.
const TARGET_READY: Duration = Duration::from_secs(15);
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Starts the fault injector and the rig for `scenario` (seeded from `options`), runs `body` on
/// them, then tears both down whatever `body` returned.
pub(super) async fn with_rig<T>(
    scenario: &Scenario,
    options: &RunOptions,
    body: impl for<'r> AsyncFnOnce(u64, &'r Injector, &mut Rig<'r>) -> Result<T, DrillError>,
) -> Result<T, DrillError> {
    let seed = options.seed_for(scenario);
    let injector = Injector::start(&options.injector).await?;
    let result = match Rig::start(scenario, seed, &injector).await {
        Ok(mut rig) => {
            let result = body(seed, &injector, &mut rig).await;
            rig.teardown().await;
            result
        }
        Err(e) => Err(e),
    };
    injector.stop().await;
    result
}

/// Members, proxies and a running sluice.
pub(super) struct Rig<'a> {
    scenario: &'a Scenario,
    injector: &'a Injector,
    pub servers: Vec<Upstream>,
    /// Proxy name per member.
    pub proxies: Vec<String>,
    /// What sluice dials, per member.
    pub proxy_addrs: Vec<SocketAddr>,
    /// Where sluice listens.
    pub listen: SocketAddr,
    pub balance: String,
    /// sluice's pool, in this process; `None` with `[target]`.
    pub pool: Option<Arc<Pool>>,
    /// Operator actions (drain, reload) on sluice.
    control: Control,
    shutdown: Shutdown,
    running: Option<JoinHandle<RunSummary>>,
}

impl<'a> Rig<'a> {
    /// Starts the servers, creates the proxies (`/populate`) and runs sluice with `seed`.
    pub async fn start(
        scenario: &'a Scenario,
        seed: u64,
        injector: &'a Injector,
    ) -> Result<Self, DrillError> {
        let mut servers = Vec::new();
        for (i, m) in scenario.members.iter().enumerate() {
            match Upstream::start(i as u32, m).await {
                Ok(server) => servers.push(server),
                Err(error) => {
                    kill_all(&servers).await;
                    return Err(DrillError::Member {
                        member: m.name.clone(),
                        error,
                    });
                }
            }
        }
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let proxies: Vec<String> = scenario
            .members
            .iter()
            .map(|m| proxy_name(&scenario.name, &m.name, run))
            .collect();
        let shutdown = Shutdown::new();
        let bound = match &scenario.target {
            Some(target) => aim(scenario, target, injector, &servers, &proxies).await,
            None => bind(scenario, seed, injector, &servers, &proxies, &shutdown).await,
        };
        match bound {
            Ok(bound) => Ok(Self {
                scenario,
                injector,
                servers,
                proxies,
                proxy_addrs: bound.proxy_addrs,
                listen: bound.listen,
                balance: bound.balance,
                pool: bound.pool,
                shutdown,
                running: bound.running,
                control: bound.control,
            }),
            Err(e) => {
                delete_proxies(injector, &proxies).await;
                kill_all(&servers).await;
                Err(e)
            }
        }
    }

    /// What the timeline acts on.
    pub fn targets(&self) -> Targets<'_> {
        Targets {
            api: self.injector.api(),
            proxies: &self.proxies,
            servers: &self.servers,
            members: &self.scenario.members,
            proxy_addrs: &self.proxy_addrs,
            control: &self.control,
        }
    }

    /// Says whether sluice holds no connection to any member.
    /// A running sluice's connections are not visible: it counts as idle.
    pub fn idle(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let Some(pool) = self.pool.clone() else {
            return Arc::new(|| true);
        };
        Arc::new(move || pool.members().iter().all(|m| m.active() == 0))
    }

    /// The members as the report describes them.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.scenario
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberInfo {
                name: m.name.clone(),
                server: m.server,
                source: m.source.describe(m.server),
                tier: m.tier,
                weight: m.weight,
                server_addr: self.servers[i].addr(),
                proxy: self.proxies[i].clone(),
                proxy_addr: self.proxy_addrs[i],
            })
            .collect()
    }

    /// Shuts sluice down so every access line is written, cutting what is still open after
    /// [`DRAIN`]. A no-op once done.
    pub async fn stop_sluice(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        self.shutdown.stop();
        if tokio::time::timeout(DRAIN, &mut running).await.is_err() {
            warn!("sluice did not drain within {DRAIN:?} after traffic; cutting");
            self.shutdown.cut_now();
            let _ = tokio::time::timeout(DRAIN, running).await;
        }
    }

    /// Stops sluice, deletes the proxies and stops the member servers.
    pub async fn teardown(mut self) {
        self.stop_sluice().await;
        delete_proxies(self.injector, &self.proxies).await;
        kill_all(&self.servers).await;
    }
}

/// sluice, running, with its pool filled with the proxies.
struct Bound {
    proxy_addrs: Vec<SocketAddr>,
    listen: SocketAddr,
    balance: String,
    pool: Option<Arc<Pool>>,
    /// The sluice this process runs; `None` with `[target]`.
    running: Option<JoinHandle<RunSummary>>,
    control: Control,
}

/// `[target]`: the proxies on the addresses the running sluice's pool lists, checked against
/// its `/status` before anything is faulted.
async fn aim(
    scenario: &Scenario,
    target: &Target,
    injector: &Injector,
    servers: &[Upstream],
    proxies: &[String],
) -> Result<Bound, DrillError> {
    let proxy_addrs: Vec<SocketAddr> = scenario
        .members
        .iter()
        .map(|m| {
            m.proxy
                .ok_or_else(|| DrillError::Setup(format!("member {} has no proxy", m.name)))
        })
        .collect::<Result<_, _>>()?;
    let wanted: Vec<(String, String, String)> = proxies
        .iter()
        .zip(&proxy_addrs)
        .zip(servers)
        .map(|((p, listen), s)| (p.clone(), listen.to_string(), s.addr().to_string()))
        .collect();
    injector.api().populate(&wanted).await?;
    let admin = Admin { addr: target.admin };
    // The running sluice probes the new proxies on its own schedule: traffic starts once it
    // sees every member up, so the first fault meets a steady pool.
    let deadline = tokio::time::Instant::now() + TARGET_READY;
    let view = loop {
        let view = admin
            .pool(target.pool.as_deref(), target.listen, &proxy_addrs)
            .await
            .map_err(DrillError::Setup)?;
        let all_up = view.members.iter().all(|m| m.is_some_and(|s| !s.ejected()));
        let listed = view.members.iter().all(Option::is_some);
        if all_up || !listed {
            break view;
        }
        if tokio::time::Instant::now() >= deadline {
            let down: Vec<&str> = scenario
                .members
                .iter()
                .zip(&view.members)
                .filter(|(_, s)| s.is_some_and(|s| s.ejected()))
                .map(|(m, _)| m.name.as_str())
                .collect();
            return Err(DrillError::Setup(format!(
                "the running sluice still has {} down or ejected {TARGET_READY:?} after the \
                 proxies came up; is each proxy's upstream answering its health check?",
                down.join(", ")
            )));
        }
        tokio::time::sleep(observe::ADMIN_EVERY).await;
    };
    let missing: Vec<String> = scenario
        .members
        .iter()
        .zip(&proxy_addrs)
        .zip(&view.members)
        .filter(|(_, state)| state.is_none())
        .map(|((m, addr), _)| format!("{addr} (member {})", m.name))
        .collect();
    if !missing.is_empty() {
        return Err(DrillError::Setup(format!(
            "the running sluice's pool {:?} does not list the proxies {}: add them to its \
             members (sluice dials the proxies, they dial your upstreams)",
            view.name,
            missing.join(", ")
        )));
    }
    Ok(Bound {
        proxy_addrs,
        listen: target.listen,
        balance: view.balance,
        pool: None,
        running: None,
        control: Control::Admin {
            admin,
            pool: view.name,
        },
    })
}

async fn bind(
    scenario: &Scenario,
    seed: u64,
    injector: &Injector,
    servers: &[Upstream],
    proxies: &[String],
    shutdown: &Shutdown,
) -> Result<Bound, DrillError> {
    let wanted: Vec<(String, String, String)> = proxies
        .iter()
        .zip(servers)
        .map(|(p, s)| (p.clone(), "127.0.0.1:0".to_string(), s.addr().to_string()))
        .collect();
    let created = injector.api().populate(&wanted).await?;
    let mut proxy_addrs = Vec::new();
    for p in proxies {
        let listen = created
            .iter()
            .find(|c| &c.name == p)
            .and_then(|c| c.listen.parse::<SocketAddr>().ok())
            .ok_or_else(|| DrillError::Setup(format!("/populate did not answer proxy {p}")))?;
        proxy_addrs.push(listen);
    }
    let sluice = scenario
        .sluice
        .as_ref()
        .ok_or_else(|| DrillError::Setup("no sluice config to run".into()))?;
    let config = sluice
        .config(&scenario.members, &proxy_addrs, seed)
        .map_err(DrillError::Scenario)?;
    let balance = config
        .pool(&sluice.pool)
        .map_or("?", |p| p.balance.as_str())
        .to_string();
    let applied = config.clone();
    let server = Server::bind(config).await?;
    let control = Control::InProcess {
        reloader: server.reloader(),
        pool: sluice.pool.clone(),
        config: Box::new(applied),
    };
    let listen = *server
        .local_addrs(&sluice.route)
        .first()
        .ok_or_else(|| DrillError::Setup("sluice bound no address".into()))?;
    let pool = server
        .pool(&sluice.pool)
        .ok_or_else(|| DrillError::Setup("sluice has no drilled pool".into()))?;
    let running = tokio::spawn(server.run(shutdown.clone()));
    Ok(Bound {
        proxy_addrs,
        listen,
        balance,
        pool: Some(pool),
        running: Some(running),
        control,
    })
}

async fn delete_proxies(injector: &Injector, proxies: &[String]) {
    for p in proxies {
        if let Err(e) = injector.api().delete_proxy(p).await {
            warn!(proxy = p, error = %e, "cannot delete a drill proxy");
        }
    }
}

async fn kill_all(servers: &[Upstream]) {
    for s in servers {
        s.kill().await;
    }
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
