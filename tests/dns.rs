//! Members from DNS against a real authoritative server: hickory's, in process, serving an
//! in-memory zone `sluice.test.` on 127.0.0.1 (UDP and TCP, a kernel-chosen port) that each
//! test edits. Members listen on 127.0.0.2 and 127.0.0.3 (all of 127/8 is local on Linux) on
//! one port, so a name can move between two real servers; each greets with its own tag byte
//! and then echoes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server as DnsServer;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use sluice::config;
use sluice::{Server, Shutdown};
use sluice_testkit::{checksum, eventually, eventually_async, payload, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;

const ORIGIN: &str = "sluice.test.";

/// The authoritative server and its zone.
struct Zone {
    handler: Arc<InMemoryZoneHandler>,
    server: DnsServer<Catalog>,
    addr: SocketAddr,
    serial: u32,
}

impl Zone {
    async fn start() -> Self {
        let origin = Name::from_str(ORIGIN).unwrap();
        let handler = Arc::new(InMemoryZoneHandler::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        ));
        let soa = SOA::new(
            Name::from_str("ns.sluice.test.").unwrap(),
            Name::from_str("admin.sluice.test.").unwrap(),
            1,
            60,
            60,
            60,
            // Negative answers may be cached for this long: none.
            0,
        );
        handler
            .upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1)
            .await;
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![Arc::clone(&handler) as Arc<dyn ZoneHandler>],
        );
        // UDP and TCP on one port: the kernel picks the UDP one, TCP may find it taken.
        let (udp, tcp, addr) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp, addr);
            }
        };
        let mut server = DnsServer::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4096);
        Self {
            handler,
            server,
            addr,
            serial: 1,
        }
    }

    /// Replaces the `rtype` records of `name` (relative to the zone) with `data`.
    async fn set(&mut self, name: &str, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        let name = Name::from_str(&format!("{name}.{ORIGIN}")).unwrap();
        self.serial += 1;
        self.handler
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&name), rtype));
        for rdata in data {
            self.handler
                .upsert(Record::from_rdata(name.clone(), ttl, rdata), self.serial)
                .await;
        }
    }

    async fn set_a(&mut self, name: &str, ttl: u32, ips: &[Ipv4Addr]) {
        let data = ips.iter().map(|ip| RData::A(A(*ip))).collect();
        self.set(name, RecordType::A, ttl, data).await;
    }

    /// Stops answering: the sockets close.
    async fn stop(&mut self) {
        self.server.shutdown_gracefully().await.unwrap();
    }
}

/// Accepts on `listener`: each client gets `tag`, then its bytes echoed.
fn serve(listener: TcpListener, tag: u8) {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if s.write_all(&[tag]).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Two members on 127.0.0.2 and 127.0.0.3, same port, tags b'2' and b'3'.
async fn two_members() -> u16 {
    for _ in 0..20 {
        let a = TcpListener::bind((IP2, 0)).await.unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind((IP3, port)).await {
            serve(a, b'2');
            serve(b, b'3');
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

fn config(zone: &Zone, members: &str) -> config::Config {
    let text = format!(
        r#"
[dns]
servers = ["{}"]
min_ttl = "100ms"
timeout = "300ms"
[routes.db]
listen = "127.0.0.1:0"
pool = "db"
[pools.db]
members = [{members}]
health = {{ enabled = false }}
"#,
        zone.addr
    );
    config::from_str(&text, None).unwrap()
}

struct Running {
    addr: SocketAddr,
    reloader: sluice::server::Reloader,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<sluice::server::RunSummary>,
}

async fn start(config: config::Config) -> Running {
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addrs("db")[0];
    let reloader = server.reloader();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Running {
        addr,
        reloader,
        shutdown,
        task,
    }
}

impl Running {
    async fn members(&self) -> Vec<(String, u8)> {
        let pool = self.reloader.pool("db").await.unwrap();
        pool.members()
            .iter()
            .map(|m| (m.name().to_string(), m.tier()))
            .collect()
    }

    async fn stop(self) {
        self.shutdown.cut_now();
        within(Duration::from_secs(10), "sluice stops", self.task)
            .await
            .unwrap();
    }
}

/// Connects through sluice and returns the stream and the tag of the member it reached.
async fn connect(addr: SocketAddr) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut tag = [0u8];
    within(
        Duration::from_secs(5),
        "the member's tag",
        s.read_exact(&mut tag),
    )
    .await
    .unwrap();
    (s, tag[0])
}

async fn echo_exact(s: &mut TcpStream, len: usize, seed: u64) {
    let data = payload(len, seed);
    let (mut r, mut w) = s.split();
    let write = async {
        w.write_all(&data).await.unwrap();
    };
    let mut back = vec![0u8; len];
    let read = async {
        r.read_exact(&mut back).await.unwrap();
    };
    within(Duration::from_secs(10), "echo", async {
        tokio::join!(write, read)
    })
    .await;
    assert_eq!(
        checksum(&back),
        checksum(&data),
        "bytes through the live connection"
    );
}

const IP2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const IP3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_change_moves_new_clients_while_a_live_connection_keeps_flowing() {
    let port = two_members().await;
    let mut zone = Zone::start().await;
    const TTL: u32 = 1;
    zone.set_a("db", TTL, &[IP2]).await;
    let sluice = start(config(
        &zone,
        &format!(r#"{{ addr = "db.sluice.test:{port}" }}"#),
    ))
    .await;
    assert_eq!(
        sluice.members().await,
        [(format!("db.sluice.test:{port} (127.0.0.2)"), 0)]
    );
    let (mut live, tag) = connect(sluice.addr).await;
    assert_eq!(tag, b'2');
    echo_exact(&mut live, 64 * 1024, 1).await;

    zone.set_a("db", TTL, &[IP3]).await;
    let changed = Instant::now();
    let deadline = Duration::from_secs(u64::from(TTL)) + Duration::from_secs(5);
    let moved = loop {
        let (_, tag) = connect(sluice.addr).await;
        if tag == b'3' {
            break changed.elapsed();
        }
        assert!(
            changed.elapsed() < deadline,
            "new clients still reach 127.0.0.2 {:?} after the change",
            changed.elapsed()
        );
        tokio::task::yield_now().await;
    };
    eprintln!("DNS change -> first client on the new address: {moved:?} (TTL {TTL}s)");
    // TTL, plus one query (timeout 300ms, two attempts), plus scheduling slack.
    assert!(
        moved < Duration::from_secs(u64::from(TTL)) + Duration::from_millis(1600),
        "took {moved:?}"
    );
    assert_eq!(
        sluice.members().await,
        [(format!("db.sluice.test:{port} (127.0.0.3)"), 0)]
    );
    // Every new client goes to the new address; the old connection keeps flowing.
    for _ in 0..5 {
        assert_eq!(connect(sluice.addr).await.1, b'3');
    }
    echo_exact(&mut live, 256 * 1024, 2).await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_a_records_make_two_members_and_a_reload_keeps_them() {
    let port = two_members().await;
    let mut zone = Zone::start().await;
    zone.set_a("db", 60, &[IP2, IP3]).await;
    let members = format!(r#"{{ addr = "db.sluice.test:{port}", weight = 2 }}"#);
    let sluice = start(config(&zone, &members)).await;
    let expected = vec![
        (format!("db.sluice.test:{port} (127.0.0.2)"), 0),
        (format!("db.sluice.test:{port} (127.0.0.3)"), 0),
    ];
    assert_eq!(sluice.members().await, expected);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(connect(sluice.addr).await.1);
    }
    assert_eq!(seen, [b'2', b'3'].into());
    // A reload of the same file expands with the answers held: no member leaves.
    let before = sluice.reloader.pool("db").await.unwrap();
    let (mut live, _) = connect(sluice.addr).await;
    let summary = sluice
        .reloader
        .apply(config(&zone, &members))
        .await
        .unwrap();
    assert!(summary.ends_with("members +0 -0 ~0"), "{summary}");
    assert_eq!(sluice.members().await, expected);
    let after = sluice.reloader.pool("db").await.unwrap();
    let active =
        |p: &sluice::upstream::Pool| -> u64 { p.members().iter().map(|m| m.active()).sum() };
    assert_eq!(active(&after), active(&before), "member state is adopted");
    echo_exact(&mut live, 4096, 3).await;
    let status = sluice.reloader.dns_status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].name, format!("db.sluice.test:{port}"));
    assert_eq!(
        status[0].addresses,
        [
            SocketAddr::new(IpAddr::V4(IP2), port),
            SocketAddr::new(IpAddr::V4(IP3), port)
        ]
    );
    assert!(status[0].last_resolved.is_some() && status[0].last_error.is_none());
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_priorities_become_tiers_and_a_dead_tier_0_fails_over_to_tier_1() {
    // Only 127.0.0.3 listens: the tier-0 target on 127.0.0.2 refuses.
    let listener = loop {
        let l = TcpListener::bind((IP3, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        if TcpListener::bind((IP2, port)).await.is_ok() {
            break l;
        }
    };
    let port = listener.local_addr().unwrap().port();
    serve(listener, b'3');
    let mut zone = Zone::start().await;
    zone.set_a("a", 60, &[IP2]).await;
    zone.set_a("b", 60, &[IP3]).await;
    let target = |n: &str| Name::from_str(&format!("{n}.{ORIGIN}")).unwrap();
    zone.set(
        "_db._tcp",
        RecordType::SRV,
        60,
        vec![
            RData::SRV(SRV::new(10, 5, port, target("a"))),
            RData::SRV(SRV::new(20, 0, port, target("b"))),
        ],
    )
    .await;
    let sluice = start(config(&zone, r#"{ srv = "_db._tcp.sluice.test" }"#)).await;
    assert_eq!(
        sluice.members().await,
        [
            (format!("_db._tcp.sluice.test (127.0.0.2:{port})"), 0),
            (format!("_db._tcp.sluice.test (127.0.0.3:{port})"), 1),
        ]
    );
    let pool = sluice.reloader.pool("db").await.unwrap();
    assert_eq!(pool.members()[0].weight(), 5);
    assert_eq!(pool.members()[1].weight(), 1, "SRV weight 0 counts as 1");
    for _ in 0..3 {
        let (mut s, tag) = connect(sluice.addr).await;
        assert_eq!(tag, b'3', "the dead tier-0 target fails over to tier 1");
        echo_exact(&mut s, 1024, 4).await;
    }
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_at_start_becomes_a_member_when_it_appears() {
    let port = two_members().await;
    let mut zone = Zone::start().await;
    let sluice = start(config(
        &zone,
        &format!(r#"{{ addr = "late.sluice.test:{port}" }}"#),
    ))
    .await;
    assert!(sluice.members().await.is_empty());
    let status = sluice.reloader.dns_status();
    assert!(status[0].addresses.is_empty());
    assert!(status[0].last_error.is_some(), "{status:?}");
    // Running, without members: a client is refused, not hung.
    let mut s = TcpStream::connect(sluice.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = within(Duration::from_secs(5), "refusal", s.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)));

    zone.set_a("late", 1, &[IP2]).await;
    let reloader = sluice.reloader.clone();
    eventually_async(
        Duration::from_secs(10),
        "the name becomes a member",
        async || reloader.pool("db").await.unwrap().members().len() == 1,
    )
    .await;
    assert_eq!(connect(sluice.addr).await.1, b'2');
    assert!(sluice.reloader.dns_status()[0].last_error.is_none());
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_server_that_stops_answering_keeps_the_last_good_members() {
    let port = two_members().await;
    let mut zone = Zone::start().await;
    zone.set_a("db", 1, &[IP2, IP3]).await;
    let sluice = start(config(
        &zone,
        &format!(r#"{{ addr = "db.sluice.test:{port}" }}"#),
    ))
    .await;
    assert_eq!(sluice.members().await.len(), 2);
    zone.stop().await;
    let reloader = sluice.reloader.clone();
    eventually(Duration::from_secs(10), "a failed query", || {
        reloader.dns_status()[0].last_error.is_some()
    })
    .await;
    let status = sluice.reloader.dns_status();
    assert!(status[0].stale, "{status:?}");
    assert_eq!(status[0].addresses.len(), 2);
    assert_eq!(
        sluice.members().await.len(),
        2,
        "the last good answer is held"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(connect(sluice.addr).await.1);
    }
    assert_eq!(seen, [b'2', b'3'].into());
    sluice.stop().await;
}
