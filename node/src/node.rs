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

use crate::chain_task::ChainHandle;
use crate::p2p::{P2pHandle, Topic};

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
    pub verifier: OnceLock<crate::verify_service::VerifierHandle>,
    /// Where the node's own waits and block times read the time.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The chains' tips and the pools' sizes as of the chain task's last command, for
    /// readers that must not wait for it (`/v2/info`, `/metrics`): [`Node::snapshot`].
    snapshot: tokio::sync::watch::Sender<crate::snapshot::ChainSnapshot>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes one off a count of work in flight when dropped, however the work ends (a panic
/// included), so that [`Node::idle`] cannot be left waiting on it.
pub(crate) struct CountDown<'a>(pub(crate) &'a std::sync::atomic::AtomicUsize);

impl Drop for CountDown<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
    pub fn snapshot(&self) -> crate::snapshot::ChainSnapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that sees every new snapshot.
    pub fn watch_snapshot(&self) -> tokio::sync::watch::Receiver<crate::snapshot::ChainSnapshot> {
        self.snapshot.subscribe()
    }

    /// Where the chain task puts each new snapshot.
    pub(crate) fn snapshot_sender(
        &self,
    ) -> &tokio::sync::watch::Sender<crate::snapshot::ChainSnapshot> {
        &self.snapshot
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

/// Opens (creating if needed) the ledger of `network` in `data_dir`.
pub fn open_chain(data_dir: &Path, network: Network) -> Result<Chainstate> {
    let path = data_dir.join("ledger");
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let store = RocksStore::open(&path, SCHEMA)
        .with_context(|| format!("cannot open the ledger database in {}", path.display()))?;
    Chainstate::open(Arc::new(store), ChainParams::for_network(network))
        .with_context(|| format!("cannot load the ledger in {}", path.display()))
}
