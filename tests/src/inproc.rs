//! An in-process test network: N nodes in this process, each started as `infer-node start`
//! starts one (`fai_node::daemon::start`) on a runtime of its own, with real libp2p over
//! loopback, real RocksDB in temporary directories and the engine on fai-tiny. Time is an
//! input: every node reads one [`ManualClock`] that moves only when the test says so
//! ([`InProcNet::advance`]), and blocks are mined on demand ([`InProcNet::mine`]), so what
//! a test sees does not depend on how loaded the machine is. Only waiting for the network
//! to carry messages ([`InProcNet::settle`]) reads the machine's clock, for its deadline.
//!
//! Nodes can be stopped (every service joined, the databases closed) and started again
//! on the same directory. On a failure the directory is kept and its path printed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fai_node::clock::ManualClock;
use fai_node::config::Config;
use fai_node::daemon::{RunningNode, StartOptions};

/// Where the network's clock starts, in seconds since the epoch (2030-03-17): later than
/// every network's genesis.
pub const START_TIME: u64 = 1_900_000_000;

/// How long [`InProcNet::settle`] waits for the network at most.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// How long [`InProcNet::partition`]'s bans last (until [`InProcNet::heal`] in practice).
const PARTITION: Duration = Duration::from_secs(3_600);

/// The address mined blocks pay.
const PAYOUT: fai_primitives::Hash160 = fai_primitives::Hash160([0x5a; 20]);

/// One node: its directory, its p2p port once known, and the running node when it runs.
struct Member {
    data: PathBuf,
    p2p_port: u16,
    running: Option<RunningNode>,
}

/// The network.
pub struct InProcNet {
    dir: Option<tempfile::TempDir>,
    clock: Arc<ManualClock>,
    members: Vec<Member>,
    /// Node 0's p2p address with its peer id, which the others dial.
    bootstrap: String,
}

fn config_text(data: &std::path::Path, p2p_port: u16, bootstrap: &str) -> String {
    let bootstrap = crate::toml_list(bootstrap);
    format!(
        r#"[p2p]
listen = "/ip4/127.0.0.1/tcp/{p2p_port}"
bootstrap = [{bootstrap}]

[node]
network = "regtest"
data_dir = "{data}"

[mining]
enabled = false

[rpc]
enabled = false
"#,
        data = data.display(),
    )
}

/// The RPC is off in this network's nodes: starting it is never asked for.
fn no_rpc(_: fai_node::daemon::RpcContext<'_>) -> anyhow::Result<std::net::SocketAddr> {
    anyhow::bail!("the in-process network runs its nodes without the RPC")
}

impl InProcNet {
    /// Starts `n` nodes: node 0 first, then the others dialling it.
    pub fn start(n: usize) -> InProcNet {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut net = InProcNet {
            clock: Arc::new(ManualClock::new(START_TIME)),
            members: Vec::new(),
            bootstrap: String::new(),
            dir: Some(dir),
        };
        for i in 0..n {
            let data = net.path().join(format!("node-{i}"));
            net.members.push(Member {
                data,
                p2p_port: 0,
                running: None,
            });
            net.start_node(i);
        }
        net
    }

    fn path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    /// The running node `i`; panics when it is stopped.
    pub fn node(&self, i: usize) -> &Arc<fai_node::node::Node> {
        &self.members[i]
            .running
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is stopped"))
            .node
    }

    /// Starts node `i` on its directory (again, after [`InProcNet::stop`]), on the port it
    /// listened on before if it had one.
    pub fn start_node(&mut self, i: usize) {
        let (data, port) = (self.members[i].data.clone(), self.members[i].p2p_port);
        let bootstrap = if i == 0 { "" } else { &self.bootstrap };
        let config = Config::parse(&config_text(&data, port, bootstrap), "the test network")
            .expect("the test network's configuration");
        let options = StartOptions {
            invocation: format!("in-process node {i}"),
            start_rpc: no_rpc,
            clock: self.clock.clone(),
            banner: false,
        };
        let running = fai_node::daemon::start(config, options)
            .unwrap_or_else(|e| self.fail(&format!("node {i} did not start: {e:#}")));
        let status = running
            .node
            .p2p
            .get()
            .map(|p| p.status.clone())
            .unwrap_or_else(|| self.fail(&format!("node {i} has no network")));
        self.members[i].running = Some(running);
        // The address it listens on, once the swarm says.
        let deadline = Instant::now() + SETTLE_DEADLINE;
        let listen = loop {
            let listen = status.listen.lock().map(|l| l.clone()).unwrap_or_default();
            if let Some(first) = listen.into_iter().next() {
                break first;
            }
            if Instant::now() > deadline {
                self.fail(&format!("node {i} does not listen"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let port = listen
            .split('/')
            .skip_while(|p| *p != "tcp")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        self.members[i].p2p_port = port;
        if i == 0 {
            self.bootstrap = listen;
        }
    }

    /// Stops node `i`: its services end and its databases close.
    pub fn stop(&mut self, i: usize) {
        if let Some(running) = self.members[i].running.take() {
            running.stop();
        }
    }

    /// Moves every node's clock forward by `secs` seconds.
    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Mines one block on node `i`'s tip now; its hash.
    pub fn mine(&self, i: usize) -> fai_primitives::Hash256 {
        fai_node::mining::mine_one(self.node(i), PAYOUT)
            .unwrap_or_else(|e| self.fail(&format!("node {i} cannot mine: {e:#}")))
    }

    /// The running nodes' indexes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].running.is_some())
            .collect()
    }

    /// The ledger tip (height, hash) of node `i`.
    pub fn ledger_tip(&self, i: usize) -> (u32, fai_primitives::Hash256) {
        let chain = self.node(i).chain();
        (chain.height(), chain.tip_hash())
    }

    /// Waits until every running node has the same ledger tip, then returns it; fails the
    /// test after a deadline on the machine's clock (the network carries messages in real
    /// time; nothing else here does).
    pub fn settle(&self) -> (u32, fai_primitives::Hash256) {
        self.settle_among(&self.running())
    }

    /// [`InProcNet::settle`] among `nodes` only (one side of a partition).
    pub fn settle_among(&self, nodes: &[usize]) -> (u32, fai_primitives::Hash256) {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let tips: Vec<_> = nodes.iter().map(|i| self.ledger_tip(*i)).collect();
            if let Some(first) = tips.first() {
                if tips.iter().all(|t| t == first) {
                    return *first;
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("the nodes do not agree on a ledger tip: {tips:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The p2p peer id of node `i`.
    pub fn peer_id(&self, i: usize) -> libp2p::PeerId {
        let status = self
            .node(i)
            .p2p
            .get()
            .map(|p| p.status.clone())
            .unwrap_or_else(|| self.fail(&format!("node {i} has no network")));
        let text = status.peer_id.lock().map(|p| p.clone()).unwrap_or_default();
        text.parse()
            .unwrap_or_else(|_| self.fail(&format!("node {i}'s peer id {text:?} does not parse")))
    }

    /// Sends a command to node `i`'s network loop.
    fn command(&self, i: usize, command: fai_node::p2p::Command) {
        let handle = self
            .node(i)
            .p2p
            .get()
            .cloned()
            .unwrap_or_else(|| self.fail(&format!("node {i} has no network")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for one command");
        runtime
            .block_on(handle.send(command))
            .unwrap_or_else(|e| self.fail(&format!("node {i}: {e:#}")));
    }

    /// Splits the network: every node of `side` bans every running node outside it, and
    /// they it, so that no message crosses until [`InProcNet::heal`].
    pub fn partition(&self, side: &[usize]) {
        let others: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|i| !side.contains(i))
            .collect();
        for a in side {
            for b in &others {
                for (from, to) in [(*a, *b), (*b, *a)] {
                    let peer = self.peer_id(to);
                    self.command(
                        from,
                        fai_node::p2p::Command::Ban {
                            peer,
                            time: PARTITION,
                        },
                    );
                }
            }
        }
    }

    /// Lifts every ban between running nodes; they dial each other again.
    pub fn heal(&self) {
        let running = self.running();
        for from in &running {
            for to in &running {
                if from != to {
                    let (tx, _rx) = tokio::sync::oneshot::channel();
                    self.command(*from, fai_node::p2p::Command::Unban(self.peer_id(*to), tx));
                }
            }
        }
    }

    /// Fails the test, keeping the network's directory for a look.
    fn fail(&self, why: &str) -> ! {
        let kept = self.path();
        // The directory stays: the test's panic unwinds through Drop, which keeps it.
        panic!("{why} (the network's files are in {})", kept.display())
    }
}

impl Drop for InProcNet {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
        crate::keep_on_failure(&mut self.dir, "the network's files are");
    }
}
