//! What the node's services share ([`Node`]): the handle to the chain task, which owns
//! the chains and the pools (`crate::chain_task`), the snapshot of them readers see
//! without asking it, the network's handle, the clock and the shutdown token. Starting
//! and stopping the services is `crate::daemon`'s.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use fai_ledger::chainstate::SCHEMA;
use fai_ledger::{ChainParams, Chainstate};
use fai_primitives::Network;
use fai_storage::RocksStore;

use fai_network::{P2pHandle, Topic};

use crate::chain_task::{ChainHandle, Outlets};
use crate::snapshot::ChainSnapshot;

/// What the node's services share: the handle to the chain task (which owns the
/// chains and the pools), the snapshot of them it keeps, the network's handle, the
/// clock and the shutdown token.
pub struct Node {
    /// Commands to the chain task, and its events.
    pub chain: ChainHandle,
    /// Bumped whenever the active tip changes, so miners drop stale work.
    pub tip_generation: AtomicU64,
    /// Bumped whenever a commit for the tip enters the mempool after the tip, so that
    /// miners rebuild their template with it.
    pub commit_generation: AtomicU64,
    /// Cancelled when the node stops: every service thread and task ends on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The network, once it runs (absent with `p2p.enabled = false`).
    pub p2p: OnceLock<P2pHandle>,
    /// The verifier thread, when it runs (its backlog, for [`Node::idle`]).
    pub verifier: OnceLock<crate::verify_queue::VerifierHandle>,
    /// Where the node's own waits and block times read the time.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The chains' tips and the pools' sizes as of the chain task's last command, for
    /// readers that must not wait for it (`/v2/info`, `/metrics`): [`Node::snapshot`].
    snapshot: tokio::sync::watch::Sender<ChainSnapshot>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Node {
    /// A node whose chain task is reached through `chain`; the network and the verifier
    /// are set once they run.
    pub fn new(chain: ChainHandle, clock: Arc<dyn crate::clock::Clock>) -> Self {
        Node {
            chain,
            tip_generation: AtomicU64::new(0),
            commit_generation: AtomicU64::new(0),
            shutdown: tokio_util::sync::CancellationToken::new(),
            p2p: OnceLock::new(),
            verifier: OnceLock::new(),
            clock,
            snapshot: tokio::sync::watch::Sender::new(Default::default()),
        }
    }

    /// The tips and pool sizes as of the chain task's last command, read without asking
    /// it.
    pub fn snapshot(&self) -> ChainSnapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that sees every new snapshot.
    pub fn watch_snapshot(&self) -> tokio::sync::watch::Receiver<ChainSnapshot> {
        self.snapshot.subscribe()
    }

    /// Whether nothing this node has to do is under way or waiting: no command for the
    /// chain task (messages from peers included), no block for the verifier's vote, no
    /// tenure waiting for votes and no commit for a tenure block. A test on the
    /// in-process network waits for every node to be idle (and for them to agree) before
    /// it moves the clock or mines.
    pub fn idle(&self) -> bool {
        // Read upstream first: a message counts as validating, and a block as voting,
        // until a command for it is queued (which counts as pending until its effects
        // are out), so no piece of work is missed between two readings.
        let validating = self
            .p2p
            .get()
            .map_or(0, |p| p.status.validating.load(Ordering::SeqCst));
        let voting = self.verifier.get().map_or(0, |v| v.backlog());
        validating == 0
            && self.chain.pending() == 0
            && voting == 0
            && !self.snapshot.borrow().producer_waiting
    }

    /// Gossips `data` on `topic` when the network runs.
    pub fn publish(&self, topic: Topic, data: Vec<u8>) {
        if let Some(p2p) = self.p2p.get() {
            p2p.publish(topic, data);
        }
    }
}

/// The verifier asks for text it lacks through the node's network.
impl crate::verify_service::TextSource for Node {
    fn ask_for_text(&self, block: fai_primitives::Hash256, servers: Vec<fai_primitives::Hash160>) {
        if let Some(p2p) = self.p2p.get() {
            p2p.fetch_payloads(block, servers);
        }
    }
}

/// What the chain task's commands made goes out through the node: gossip through its
/// network, the miners' signals, the snapshot readers see.
impl Outlets for Node {
    fn gossip(&self, topic: Topic, data: Vec<u8>) {
        self.publish(topic, data);
    }

    fn commit_added(&self) {
        self.commit_generation.fetch_add(1, Ordering::SeqCst);
    }

    fn tip_moved(&self) {
        self.tip_generation.fetch_add(1, Ordering::SeqCst);
    }

    fn publish_snapshot(&self, snapshot: ChainSnapshot) {
        self.snapshot.send_if_modified(|s| {
            let changed = *s != snapshot;
            *s = snapshot;
            changed
        });
    }

    fn failed(&self) {
        self.shutdown.cancel();
    }
}

/// A node over `state` whose chain task runs, and no other service: for benchmarks and
/// tests that drive one part of a node (the network loop, the RPC) by hand.
pub fn start_bare(
    state: crate::chain_task::ChainState,
) -> std::io::Result<(Arc<Node>, crate::chain_task::Running)> {
    let (handle, task) = crate::chain_task::channel_pair();
    let node = Arc::new(Node::new(handle, state.clock.clone()));
    let running = task.start(state, node.clone())?;
    Ok((node, running))
}

/// Opens (creating if needed) the ledger of `network` in `data_dir`.
pub fn open_chain(data_dir: &Path, network: Network) -> Result<Chainstate> {
    let path = data_dir.join("ledger");
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let store = RocksStore::open(&path, SCHEMA)
        .with_context(|| format!("cannot open the ledger database in {}", path.display()))?;
    Chainstate::open(Arc::new(store), ChainParams::for_network(network))
        .with_context(|| format!("cannot load the ledger in {}", path.display()))
}

/// A node on a ledger in memory, its chain task running, on a manual clock.
#[cfg(test)]
pub(crate) mod test_node {
    use std::sync::Arc;

    use fai_ledger::mempool::{Mempool, MempoolConfig};
    use fai_ledger::ChainParams;
    use fai_primitives::Network;
    use fai_storage::MemoryStore;

    use super::{start_bare, Node};
    use crate::chain_task::{ChainState, Running};
    use crate::clock::ManualClock;

    pub(crate) fn bare_node() -> (Arc<Node>, Running, Arc<ManualClock>) {
        let store = Arc::new(MemoryStore::open(fai_ledger::chainstate::SCHEMA).unwrap());
        let ledger =
            fai_ledger::Chainstate::open(store, ChainParams::for_network(Network::Regtest))
                .unwrap();
        let mempool = Mempool::new(MempoolConfig {
            max_bytes: 1 << 20,
            min_fee_rate: 1_000,
        });
        let clock = Arc::new(ManualClock::new(1_900_000_000));
        let (node, running) = start_bare(ChainState::new(ledger, mempool, clock.clone())).unwrap();
        (node, running, clock)
    }
}

#[cfg(test)]
mod tests {
    use super::test_node::bare_node;
    use crate::chain_task::Unavailable;

    /// A command that waits for another would wait for itself: refused, not a hang.
    #[test]
    fn a_command_cannot_wait_for_another() {
        let (node, _running, _) = bare_node();
        let handle = node.chain.clone();
        let inner = node
            .chain
            .call_blocking(move |_| handle.call_blocking(|s| s.ledger.height()))
            .unwrap();
        assert_eq!(inner, Err(Unavailable::Reentrant));
    }

    /// A command that panics loses its answer; the task goes on with the next.
    #[test]
    fn the_task_survives_a_panicking_command() {
        let (node, _running, _) = bare_node();
        let lost = node
            .chain
            .call_blocking(|_| -> u32 { panic!("a bug in a command") });
        assert_eq!(lost, Err(Unavailable::Panicked));
        assert_eq!(node.chain.call_blocking(|s| s.ledger.height()), Ok(0));
        assert_eq!(
            node.chain.pending(),
            0,
            "answers come after the count is down"
        );
        assert!(
            !node.shutdown.is_cancelled(),
            "a failed command does not stop the node"
        );
    }

    /// The task counts its commands, how long they queued and how long it was busy:
    /// a command sent while another holds the task queues at least as long as the hold.
    #[test]
    fn the_task_reports_its_load() {
        let (node, _running, _) = bare_node();
        let before = node.chain.load();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, on_task) = std::sync::mpsc::channel::<()>();
        node.chain
            .run(move |_| {
                let _ = started.send(());
                let _ = held.recv();
            })
            .unwrap();
        on_task.recv().unwrap();
        let waiting = {
            let chain = node.chain.clone();
            std::thread::spawn(move || chain.call_blocking(|s| s.ledger.height()))
        };
        // The second command is queued behind the first: wait until it is sent.
        while node.chain.pending() < 2 {
            std::thread::yield_now();
        }
        let hold = std::time::Duration::from_millis(30);
        std::thread::sleep(hold);
        release.send(()).unwrap();
        assert_eq!(waiting.join().unwrap(), Ok(0));
        let after = node.chain.load();
        assert!(after.commands >= before.commands + 2, "{after:?}");
        assert!(
            after.queued_secs - before.queued_secs >= hold.as_secs_f64(),
            "{after:?}"
        );
        assert!(after.longest_queued_secs >= hold.as_secs_f64(), "{after:?}");
        assert!(
            after.busy_secs - before.busy_secs >= hold.as_secs_f64(),
            "the holding command ran for the hold: {after:?}"
        );
    }

    /// After stop, commands are refused instead of waiting forever.
    #[test]
    fn a_stopped_task_refuses_commands() {
        let (node, running, _) = bare_node();
        assert!(running.stop().is_some());
        assert_eq!(
            node.chain.call_blocking(|s| s.ledger.height()),
            Err(Unavailable::Stopped)
        );
    }
}
