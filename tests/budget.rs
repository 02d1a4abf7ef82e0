//! The failover budget (`sluice check --explain`, `sluice::budget`) held to reality: a real
//! sluice health-checks a real loopback member; the member dies (refuses, or is blackholed) and
//! comes back; how long the pool takes to mark it down and up again must stay within what the
//! budget explains for the same config. The promise is an upper bound, so that is the assertion;
//! the fastest the schedule allows is asserted too, so a member flipped for another reason (a
//! first probe, a wrong fault) cannot pass unnoticed.
//!
//! Why this cannot flake: the member dies right after a passed probe (it starts down and is
//! killed as soon as its first probe brings it up), the budget's worst case. Reality reaches the
//! bound only if five jittered waits (±50%) all draw within a few milliseconds of their maxima:
//! for the draws to leave less than 50 ms between measured and explained, about 1 in 250,000
//! runs, and the budget's slack (grid and timer rounding, 5 × 13.5 ms) is not even counted.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use common::Sluice;
use sluice::budget::{self, ByFault};
use sluice_testkit::{eventually, settle};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Five probes to go down or up, jittered by ±50%: see the module doc.
const HEALTH: &str = r#"
    interval = "400ms"
    fast_interval = "200ms"
    timeout = "100ms"
    rise = 5
    fall = 5
    jitter = "50%"
    init_state = "down"
"#;

/// Longest any one wait below may take: far above every bound, only there to end a hung test.
const DEADLINE: Duration = Duration::from_secs(10);

/// A loopback member at a fixed address that serves, refuses (no listener: the kernel answers
/// a SYN with RST) or is blackholed (a listener with a full accept queue: the kernel drops
/// every SYN, so each probe waits out its timeout, as with a host that vanished).
struct Member {
    addr: SocketAddr,
    state: State,
}

enum State {
    Serving {
        stop: CancellationToken,
        task: JoinHandle<TcpListener>,
    },
    Refusing,
    Blackholed {
        listener: TcpListener,
        filler: JoinHandle<io::Result<TcpStream>>,
    },
}

/// A listener with backlog 0: a single connection waiting to be accepted fills its queue.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(0)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

impl Member {
    fn start() -> Self {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        Self {
            addr,
            state: serve(listener),
        }
    }

    /// Stops accepting and hands the listener back.
    async fn stop_serving(&mut self) -> TcpListener {
        let State::Serving { stop, task } = std::mem::replace(&mut self.state, State::Refusing)
        else {
            panic!("member {} is not serving", self.addr);
        };
        stop.cancel();
        task.await.unwrap()
    }

    async fn refuse(&mut self) {
        drop(self.stop_serving().await);
    }

    /// Fills the accept queue with one connection nobody accepts. Not awaited: if something
    /// filled the queue first (a probe whose handshake completed), the filler's SYN is dropped
    /// like every other, and the member is just as blackholed.
    async fn blackhole(&mut self) {
        let listener = self.stop_serving().await;
        let filler = tokio::spawn(TcpStream::connect(self.addr));
        self.state = State::Blackholed { listener, filler };
    }

    /// Serves again on the same address: the held listener, or a new one on the same port.
    async fn restore(&mut self) {
        let listener = match std::mem::replace(&mut self.state, State::Refusing) {
            State::Blackholed { listener, filler } => {
                // Still connecting only if its SYN was dropped; the accept loop takes it if not.
                filler.abort();
                listener
            }
            State::Refusing => {
                let addr = self.addr;
                settle(DEADLINE, async || listen(addr), Result::is_ok)
                    .await
                    .unwrap_or_else(|e| panic!("cannot listen on {addr} again: {e}"))
            }
            State::Serving { .. } => panic!("member {} is serving already", self.addr),
        };
        self.state = serve(listener);
    }
}

/// Accepts and closes (a filler left from a blackhole, or a probe that completed), until
/// stopped; then returns the listener, still open.
fn serve(listener: TcpListener) -> State {
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return listener,
                    accepted = listener.accept() => drop(accepted),
                }
            }
        }
    });
    State::Serving { stop, task }
}

/// How a member dies in a test.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Refuse,
    Blackhole,
}

impl Fault {
    fn pick(self, bounds: ByFault) -> Duration {
        match self {
            Self::Refuse => bounds.refused,
            Self::Blackhole => bounds.blackhole,
        }
    }
}

/// Starts sluice over a live member and one that `fault` kills right after its first passed
/// probe and later restores; asserts both flips against the budget explained for the config.
async fn held_to_the_budget(fault: Fault) {
    let mut dying = Member::start();
    let live = Member::start();
    let text = format!(
        r#"
        [routes.db]
        listen = "127.0.0.1:0"
        pool = "db"
        [pools.db]
        members = [{{ addr = "{}" }}, {{ addr = "{}" }}]
        [pools.db.health]
        {HEALTH}
        "#,
        dying.addr, live.addr
    );
    let config = sluice::config::from_str(&text, None).unwrap();
    let health = config.pools[0].health.clone().unwrap();
    let explained = budget::explain(&config).remove(0);
    let (detect, returns) = (explained.detect.unwrap(), explained.returns);
    let sluice = Sluice::start_config(config, Vec::new()).await;
    let members = sluice.pool("db").members().to_vec();

    // Starting down, the member is up as soon as its first probe passed: kill it then.
    eventually(DEADLINE, "the first probe to bring the member up", || {
        members[0].is_up()
    })
    .await;
    let killed_at = Instant::now();
    match fault {
        Fault::Refuse => dying.refuse().await,
        Fault::Blackhole => dying.blackhole().await,
    }
    eventually(DEADLINE, "the dead member to go down", || {
        !members[0].is_up()
    })
    .await;
    let down_after = killed_at.elapsed();

    let restored_at = Instant::now();
    dying.restore().await;
    eventually(DEADLINE, "the member to come back up", || {
        members[0].is_up()
    })
    .await;
    let up_after = restored_at.elapsed();

    let bound = fault.pick(detect);
    let back_bound = fault.pick(returns);
    eprintln!(
        "{fault:?}: down after {down_after:?} (explained <= {}), up again after {up_after:?} \
         (explained <= {})",
        budget::format_duration(bound),
        budget::format_duration(back_bound),
    );
    assert!(
        down_after <= bound,
        "{fault:?}: down after {down_after:?}, over the explained {bound:?}"
    );
    assert!(
        up_after <= back_bound,
        "{fault:?}: up again after {up_after:?}, over the explained {back_bound:?}"
    );
    // The fastest the schedule allows: a probe right at the kill, then `fall - 1` waits of
    // fast_interval at its shortest; blackholed, every one of the `fall` probes waits out its
    // timeout. Anything quicker was not these probes.
    let shortest_wait = health.fast_interval.mul_f64(1.0 - health.jitter);
    let probe = match fault {
        Fault::Refuse => Duration::ZERO,
        Fault::Blackhole => health.timeout,
    };
    let fastest = shortest_wait * (health.fall - 1) + probe * health.fall;
    assert!(
        down_after >= fastest,
        "{fault:?}: down after {down_after:?}, faster than the schedule allows ({fastest:?})"
    );
    assert!(members[1].is_up(), "the live member stayed up");
    sluice.stop().await;
}

#[tokio::test]
async fn refused_member_goes_down_and_returns_within_the_explained_budget() {
    held_to_the_budget(Fault::Refuse).await;
}

#[tokio::test]
async fn blackholed_member_goes_down_and_returns_within_the_explained_budget() {
    held_to_the_budget(Fault::Blackhole).await;
}
