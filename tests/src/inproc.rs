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

/// The regtest ledger's target spacing, in seconds: what [`InProcNet::step`] moves the
/// clock by.
pub const SPACING: u64 = 1;

/// How long [`InProcNet::settle`] waits for the network at most.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// How long [`InProcNet::partition`]'s bans last (until [`InProcNet::heal`] in practice).
const PARTITION: Duration = Duration::from_secs(3_600);

/// One node: what it does, its directory, its p2p port once known, the configuration
/// file the command line uses with it, and the running node when it runs.
struct Member {
    setup: Setup,
    data: PathBuf,
    p2p_port: u16,
    config: PathBuf,
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

/// What one node does besides following the chains.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Registers and commits as an inference node, and sells inference.
    pub produce: bool,
    /// Stakes 1 FAI and so verifies (the five largest stakes do).
    pub stake: bool,
    /// A dev wallet the node makes and funds: its name, what it is paid on the ledger and
    /// what is pegged in for it on the inference layer.
    pub wallet: Option<(&'static str, &'static str, &'static str)>,
    /// Serves forged answers (a `test-cheats` build).
    pub forge: bool,
    /// Votes to accept everything without replaying (a `test-cheats` build).
    pub lazy: bool,
    /// `inference.audit_every` (0: no audits).
    pub audit_every: u32,
    /// A GGUF file the node serves and replays instead of fai-tiny, and approves at
    /// genesis (`inference.genesis_models`): every node of a network must name the same.
    pub model: Option<PathBuf>,
    /// `testing.replay_us_per_unit` (a `test-cheats` build; 0: replays are measured).
    pub replay_us_per_unit: u64,
}

/// The wallets' passphrase.
pub const PASSPHRASE: &str = "inproc-wallet-pass";

fn config_text(
    setup: &Setup,
    data: &std::path::Path,
    p2p_port: u16,
    rpc: std::net::SocketAddr,
    bootstrap: &str,
) -> String {
    let bootstrap = crate::toml_list(bootstrap);
    let roles = crate::roles_toml(
        setup.produce,
        setup.stake,
        setup.wallet.unwrap_or(("", "", "")),
        PASSPHRASE,
        crate::Conduct {
            forge: setup.forge,
            lazy: setup.lazy,
            audit_every: setup.audit_every,
            replay_us_per_unit: setup.replay_us_per_unit,
        },
    );
    let (engine, roles) = match &setup.model {
        Some(path) => {
            let path = format!("{:?}", path.display().to_string());
            (
                format!("[engine]\nserve = [{path}]\n"),
                roles.replacen(
                    "[inference]\n",
                    &format!("[inference]\ngenesis_models = [{path}]\n"),
                    1,
                ),
            )
        }
        None => (String::new(), roles),
    };
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
listen = "{rpc}"

{engine}
{roles}"#,
        data = data.display(),
    )
}

/// What a node shows of its state, for [`InProcNet::settle`]: nodes that agree on all of
/// it have every message the others sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub ledger: (u32, fai_primitives::Hash256),
    pub inference: (u32, [u8; 32]),
    pub mempool: usize,
    pub vm_pool: usize,
    pub results: usize,
    /// Votes here on the inference tip.
    pub tip_votes: usize,
    /// A digest of what the pools hold: the ids in the mempool, the VM pool and the
    /// result pool, and every vote's and vote commitment's block and verifier (equal
    /// sizes can hide different contents).
    pub pools: fai_primitives::Hash256,
}

/// The digest of `View::pools`: of each list sorted, in turn.
fn pools_digest(st: &fai_node::chain_task::ChainState) -> fai_primitives::Hash256 {
    let mut mempool: Vec<[u8; 32]> = st
        .mempool
        .select(usize::MAX)
        .iter()
        .map(|e| e.txid.0 .0)
        .collect();
    let mut vm: Vec<[u8; 32]> = st.vm_pool.ids().iter().map(|h| h.0).collect();
    let mut results: Vec<[u8; 32]> = st.results.txids().iter().map(|h| h.0).collect();
    let mut votes: Vec<([u8; 32], [u8; 20])> =
        st.votes.keys().iter().map(|(b, v)| (b.0, v.0)).collect();
    let mut commits: Vec<([u8; 32], [u8; 20])> = st
        .votes
        .commit_keys()
        .iter()
        .map(|(b, v)| (b.0, v.0))
        .collect();
    let mut bytes = Vec::new();
    for list in [&mut mempool, &mut vm, &mut results] {
        list.sort_unstable();
        bytes.extend(list.len().to_le_bytes());
        list.iter().for_each(|id| bytes.extend(id));
    }
    for list in [&mut votes, &mut commits] {
        list.sort_unstable();
        bytes.extend(list.len().to_le_bytes());
        for (block, verifier) in list.iter() {
            bytes.extend(block);
            bytes.extend(verifier);
        }
    }
    fai_primitives::Hash256::sha256d(&bytes)
}

impl InProcNet {
    /// Starts `n` nodes that only follow the chains: node 0 first, then the others
    /// dialling it.
    pub fn start(n: usize) -> InProcNet {
        InProcNet::start_with(&vec![Setup::default(); n])
    }

    /// Starts a node per setup: node 0 first, then the others dialling it.
    pub fn start_with(setups: &[Setup]) -> InProcNet {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut net = InProcNet {
            clock: Arc::new(ManualClock::new(START_TIME)),
            members: Vec::new(),
            bootstrap: String::new(),
            dir: Some(dir),
        };
        for (i, setup) in setups.iter().enumerate() {
            let home = net.path().join(format!("node-{i}"));
            net.members.push(Member {
                setup: setup.clone(),
                data: home.join("data"),
                p2p_port: 0,
                config: home.join("infer-node.toml"),
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

    /// Node `i`, running; panics when it is stopped.
    pub fn running_node(&self, i: usize) -> &RunningNode {
        self.members[i]
            .running
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is stopped"))
    }

    /// The state of node `i`; panics when it is stopped.
    pub fn node(&self, i: usize) -> &Arc<fai_node::node::Node> {
        &self.running_node(i).node
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &std::path::Path {
        match self.members.get(i) {
            Some(m) => &m.data,
            None => self.fail(&format!("no node {i}")),
        }
    }

    /// Node `i`'s RPC port.
    pub fn rpc_port(&self, i: usize) -> u16 {
        self.running_node(i).rpc.map_or(0, |a| a.port())
    }

    /// `GET path` on node `i`'s RPC, as JSON.
    pub fn get(&self, i: usize, path: &str) -> serde_json::Value {
        let (_, body) = crate::http(self.rpc_port(i), "GET", path, b"");
        crate::json(&body)
    }

    /// The `infer-node` command line against node `i` (its wallets, its RPC); the JSON it
    /// printed, or its error output.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<serde_json::Value, String> {
        let out = std::process::Command::new(crate::bin())
            .arg("--config")
            .arg(&self.members[i].config)
            .args(args)
            .env("FAI_WALLET_PASSPHRASE", PASSPHRASE)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(crate::json(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Starts node `i` on its directory (again, after [`InProcNet::stop`]), on the port it
    /// listened on before if it had one.
    pub fn start_node(&mut self, i: usize) {
        let m = &self.members[i];
        let (data, port) = (m.data.clone(), m.p2p_port);
        let bootstrap = if i == 0 { "" } else { &self.bootstrap };
        let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let text = config_text(&m.setup, &data, port, any_port, bootstrap);
        let config =
            Config::parse(&text, "the test network").expect("the test network's configuration");
        let options = StartOptions {
            invocation: format!("in-process node {i}"),
            start_rpc: fai_rpc::start,
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
        // The command line reaches it through a configuration naming its RPC's port.
        let rpc = running.rpc.unwrap_or(any_port);
        let text = config_text(&self.members[i].setup, &data, port, rpc, bootstrap);
        if let Some(home) = self.members[i].config.parent() {
            std::fs::create_dir_all(home).expect("the node's directory");
        }
        std::fs::write(&self.members[i].config, text).expect("the node's configuration file");
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

    /// Mines one block on node `i`'s tip now, paying node `i`; its hash.
    pub fn mine(&self, i: usize) -> fai_primitives::Hash256 {
        let payout = self.running_node(i).payout.key_hash;
        fai_node::mining::mine_one(self.node(i), payout)
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
        self.node(i)
            .chain
            .call_blocking(|st| (st.ledger.height(), st.ledger.tip_hash()))
            .unwrap_or_else(|e| self.fail(&format!("node {i}: {e}")))
    }

    /// What node `i` shows of its state.
    pub fn view(&self, i: usize) -> View {
        // One reading on the chain task: the tips and the pools as of the same moment.
        let view = self.node(i).chain.call_blocking(|st| {
            let inference = st
                .inference
                .as_ref()
                .map(|c| {
                    let t = c.tip(&st.ledger);
                    (t.height, t.id)
                })
                .unwrap_or_default();
            View {
                ledger: (st.ledger.height(), st.ledger.tip_hash()),
                inference,
                mempool: st.mempool.len(),
                vm_pool: st.vm_pool.len(),
                results: st.results.len(),
                tip_votes: st.votes.count_on(&fai_primitives::Hash256(inference.1)),
                pools: pools_digest(st),
            }
        });
        view.unwrap_or_else(|e| self.fail(&format!("node {i}: {e}")))
    }

    /// Waits until every running node is idle (nothing queued for its chain task or its
    /// verifier, no tenure waiting for votes, no commit for a tenure block) and all show
    /// the same [`View`], which is returned; fails the test after a deadline on the
    /// machine's clock (the network carries messages in real time; nothing else here
    /// does). A message still on the wire shows: its sender's view has it already.
    pub fn settle(&self) -> View {
        self.settle_among(&self.running())
    }

    /// [`InProcNet::settle`] among `nodes` only (one side of a partition).
    pub fn settle_among(&self, nodes: &[usize]) -> View {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        let idle = || nodes.iter().all(|i| self.node(*i).idle());
        loop {
            let before = idle();
            let views: Vec<View> = nodes.iter().map(|i| self.view(*i)).collect();
            if let Some(first) = views.first() {
                if before && views.iter().all(|v| v == first) && idle() {
                    return first.clone();
                }
            }
            if Instant::now() > deadline {
                let busy: Vec<usize> = nodes
                    .iter()
                    .copied()
                    .filter(|i| !self.node(*i).idle())
                    .collect();
                self.fail(&format!(
                    "the nodes do not settle: busy {busy:?}, views {views:#?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One step of the network's life: the clock moves by the ledger's spacing, the nodes
    /// settle, node `miner` mines a block, they settle again.
    pub fn step(&self, miner: usize) -> View {
        self.advance(SPACING);
        self.settle();
        self.mine(miner);
        self.settle()
    }

    /// One step of one side of a partition: node `miner` mines a block, the tenure block
    /// is awaited when a node of `side` won the tenure, and only then does the clock move
    /// by the spacing, past the producers' waits for a tenure block won across the split
    /// (which never comes); the side settles. Moving the clock before the tenure block
    /// came would let a producer commit on its parent and, winning next, orphan it.
    pub fn step_among(&self, miner: usize, side: &[usize]) -> View {
        self.mine(miner);
        let on_side: Vec<fai_primitives::Hash160> = side
            .iter()
            .filter_map(|i| self.node(*i).verifier.get().map(|v| v.address))
            .collect();
        let deadline = Instant::now() + SETTLE_DEADLINE;
        for i in side {
            loop {
                let on_side = on_side.clone();
                let awaits_this_side = self
                    .node(*i)
                    .chain
                    .call_blocking(move |st| {
                        let waiting = st.producer.as_ref().is_some_and(|p| p.is_waiting());
                        let winner = st.inference.as_ref().and_then(|c| {
                            c.tracker()
                                .record(&st.ledger.tip_hash())
                                .and_then(|r| r.sortition.winner.as_ref())
                                .map(|w| w.producer)
                        });
                        waiting && winner.is_some_and(|w| on_side.contains(&w))
                    })
                    .unwrap_or_else(|e| self.fail(&format!("node {i}: {e}")));
                if !awaits_this_side {
                    break;
                }
                if Instant::now() > deadline {
                    self.fail(&format!(
                        "node {i} never got the tenure block won on its side"
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.advance(SPACING);
        self.settle_among(side)
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

    /// Lifts every ban between running nodes and waits until each is connected to every
    /// other again (gossip sent before would miss the node still dialling).
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
        let peers = |i: usize| {
            self.node(i).p2p.get().map_or(0, |p| {
                p.status.peers.load(std::sync::atomic::Ordering::SeqCst)
            })
        };
        let deadline = Instant::now() + SETTLE_DEADLINE;
        while running.iter().any(|i| peers(*i) < running.len() - 1) {
            if Instant::now() > deadline {
                self.fail("the nodes did not connect again after the partition");
            }
            std::thread::sleep(Duration::from_millis(20));
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
