//! The state the node's services share ([`Node`]: the ledger chainstate and mempool, the
//! inference chain, the pools of VM transactions, served inferences and votes, the
//! roles) and what happens when the active chain changes (`on_chain_events`). Starting
//! and stopping the services is `crate::daemon`'s.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use fai_ledger::chainstate::{ChainEvent, SCHEMA};
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_ledger::{ChainParams, Chainstate};
use fai_primitives::{Amount, Encode, Network};
use fai_storage::RocksStore;
use tracing::{info, warn};

use crate::p2p::{P2pHandle, Topic};
use fai_inference_chain::chain::InferenceChain;

/// State shared by the node's services.
pub struct Node {
    pub chain: Mutex<Chainstate>,
    pub mempool: Mutex<Mempool>,
    /// Bumped whenever the active tip changes, so miners drop stale work.
    pub tip_generation: AtomicU64,
    /// Bumped whenever a commit for the tip enters the mempool after the tip, so that
    /// miners rebuild their template with it.
    pub commit_generation: AtomicU64,
    /// Cancelled when the node stops: every service thread and task ends on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The network, once it runs (absent with `p2p.enabled = false`).
    pub p2p: OnceLock<P2pHandle>,
    /// The proof-of-inference chain, once open; fed every ledger block connected.
    pub inference: OnceLock<Mutex<InferenceChain>>,
    /// Signed VM transactions waiting for an inference block.
    pub vm_mempool: Mutex<crate::vm_mempool::VmMempool>,
    /// The inference-node role, when `inference.produce` is on.
    pub producer: OnceLock<Mutex<crate::producer::Producer>>,
    /// Peg-in, registry entry and stake of the node key, when a role needs them.
    pub roles: OnceLock<Mutex<crate::roles::Roles>>,
    /// Served inferences waiting for a block. Lock order: after the VM pool.
    pub results: Mutex<crate::result_pool::ResultPool>,
    /// Verifiers' votes waiting for the child block. Lock order: after the results.
    pub votes: Mutex<crate::vote_pool::VotePool>,
    /// The verifier thread, which votes on the blocks of the sets the node key is in.
    pub verifier: OnceLock<crate::verify_service::VerifierHandle>,
    /// Where the node's own waits and block times read the time.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The tips and pool sizes as of the last change, for readers that must not wait for
    /// a lock (`/v2/info`, `/metrics`): [`Node::snapshot`].
    snapshot: tokio::sync::watch::Sender<crate::snapshot::ChainSnapshot>,
    /// Held while the pools' sizes are read and sent, so that an older reading never
    /// replaces a newer one. Taken holding no pool.
    noting_pools: Mutex<()>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// A node over `chain` with an empty mempool; the network, the inference chain and
    /// the producer are set once they run.
    pub fn new(chain: Chainstate, mempool: MempoolConfig) -> Self {
        let snapshot = crate::snapshot::ChainSnapshot::default().with_tips(&chain, None);
        Node {
            chain: Mutex::new(chain),
            mempool: Mutex::new(Mempool::new(mempool)),
            tip_generation: AtomicU64::new(0),
            commit_generation: AtomicU64::new(0),
            shutdown: tokio_util::sync::CancellationToken::new(),
            p2p: OnceLock::new(),
            inference: OnceLock::new(),
            vm_mempool: Default::default(),
            producer: OnceLock::new(),
            roles: OnceLock::new(),
            results: Default::default(),
            votes: Default::default(),
            verifier: OnceLock::new(),
            clock: crate::clock::system(),
            snapshot: tokio::sync::watch::Sender::new(snapshot),
            noting_pools: Mutex::new(()),
        }
    }

    /// The tips and pool sizes as of the last change, read without a lock.
    pub fn snapshot(&self) -> crate::snapshot::ChainSnapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that sees every new snapshot.
    pub fn watch_snapshot(&self) -> tokio::sync::watch::Receiver<crate::snapshot::ChainSnapshot> {
        self.snapshot.subscribe()
    }

    /// Takes the tips into the snapshot; the caller holds the ledger (and the inference
    /// chain, when it runs).
    pub fn note_tips(&self, ledger: &Chainstate, inference: Option<&InferenceChain>) {
        self.snapshot.send_if_modified(|s| {
            let new = s.with_tips(ledger, inference);
            let changed = new != *s;
            *s = new;
            changed
        });
    }

    /// Takes the pools' sizes into the snapshot after one of them changed. Locks each
    /// pool in turn (never two at once): call it holding none of them.
    pub fn note_pools(&self) {
        let _one_at_a_time = lock(&self.noting_pools);
        let mempool_txs = self.mempool().len();
        let vm_pool_txs = self.vm_mempool().len();
        let results_waiting = self.results().len();
        self.snapshot.send_if_modified(|s| {
            let changed = (s.mempool_txs, s.vm_pool_txs, s.results_waiting)
                != (mempool_txs, vm_pool_txs, results_waiting);
            s.mempool_txs = mempool_txs;
            s.vm_pool_txs = vm_pool_txs;
            s.results_waiting = results_waiting;
            changed
        });
    }

    /// Whether nothing this node has to do is under way or waiting: no message waits for
    /// the validator, no block for the verifier's vote, no tenure for votes and no commit
    /// for a peer's tenure block. A test on the in-process network waits for every node
    /// to be idle (and for them to agree) before it moves the clock or mines.
    pub fn idle(&self) -> bool {
        let validating = self
            .p2p
            .get()
            .map_or(0, |p| p.status.validating.load(Ordering::SeqCst));
        let voting = self.verifier.get().map_or(0, |v| v.backlog());
        let waiting = self.producer.get().is_some_and(|p| lock(p).is_waiting());
        validating == 0 && voting == 0 && !waiting
    }

    /// The served inferences waiting for a block. Lock order: after the VM pool.
    pub fn results(&self) -> MutexGuard<'_, crate::result_pool::ResultPool> {
        lock(&self.results)
    }

    /// The next free nonce of `sender` on the inference layer: past the account's nonce
    /// and every nonce a waiting VM transaction or inference holds.
    pub fn next_nonce(&self, sender: [u8; 20], account_nonce: u64) -> u64 {
        let vm = self.vm_mempool();
        let results = self.results();
        let mut next = account_nonce;
        while vm.holds(sender, next) || results.holds(sender, next) {
            next = next.saturating_add(1);
        }
        next
    }

    /// The votes waiting for a block. Lock order: last.
    pub fn votes(&self) -> MutexGuard<'_, crate::vote_pool::VotePool> {
        lock(&self.votes)
    }

    /// After an inference block was accepted (produced here, gossiped or synced): its
    /// transactions leave the pools, and the verifier votes on it when the node key is in
    /// its verifier set. The caller holds the ledger and the inference chain.
    pub fn after_inference_block(
        &self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        block: &fai_inference_chain::block::InferenceBlock,
    ) {
        self.vm_mempool().remove_included(block);
        {
            let tip = chain.tip(ledger).exec_id;
            let mut results = self.results();
            let mut senders = std::collections::HashSet::new();
            for inf in &block.inferences {
                results.remove(&inf.stub.txid());
                senders.insert(inf.stub.sender.hash160().0);
            }
            for sender in senders {
                if let Ok((_, nonce)) = chain.vm().account(&tip, ledger, sender) {
                    results.prune_sender(sender, nonce);
                }
            }
        }
        self.note_tips(ledger, Some(chain));
        let Some(verifier) = self.verifier.get() else {
            return;
        };
        let id = block.header.id();
        let Some(record) = chain.block(&id.0) else {
            return;
        };
        if chain
            .verifier_set(ledger, record, record.cycle)
            .contains(&verifier.address)
        {
            verifier.offer(id, block.clone());
        }
    }

    pub fn chain(&self) -> MutexGuard<'_, Chainstate> {
        lock(&self.chain)
    }

    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        lock(&self.mempool)
    }

    /// The VM transaction pool. Lock order: after the inference chain.
    pub fn vm_mempool(&self) -> MutexGuard<'_, crate::vm_mempool::VmMempool> {
        lock(&self.vm_mempool)
    }

    /// The inference chain, when the node runs it. Lock order: the ledger first.
    pub fn inference(&self) -> Option<MutexGuard<'_, InferenceChain>> {
        self.inference.get().map(lock)
    }

    /// Gossips `data` on `topic` when the network runs.
    pub fn publish(&self, topic: Topic, data: Vec<u8>) {
        if let Some(p2p) = self.p2p.get() {
            p2p.publish(topic, data);
        }
    }

    /// Logs and applies changes of the active chain (mempool, miners' work).
    pub fn on_chain_events(&self, chain: &Chainstate, events: &[ChainEvent]) {
        if events.is_empty() {
            return;
        }
        for event in events {
            match event {
                ChainEvent::Connected { height, block } => {
                    let reward = block
                        .transactions
                        .first()
                        .and_then(|cb| cb.output_value())
                        .unwrap_or(Amount::ZERO);
                    info!(
                        target: "infer_node::ledger",
                        height,
                        hash = %block.hash(),
                        reward = %reward,
                        txs = block.transactions.len(),
                        "block connected"
                    );
                }
                ChainEvent::Disconnected { height, block } => {
                    // Nothing to undo in the inference chain: its sortition records are
                    // kept per ledger block, so the other branch's stay valid.
                    info!(target: "infer_node::ledger", height, hash = %block.hash(), "block disconnected");
                }
            }
        }
        let connected = events
            .iter()
            .any(|e| matches!(e, ChainEvent::Connected { .. }));
        let mut inference = self.inference();
        if let Some(inference) = inference.as_mut() {
            for event in events {
                if let ChainEvent::Connected { block, .. } = event {
                    if let Err(e) = inference.on_ledger_block(chain, &block.hash()) {
                        warn!(target: "infer_node::inference", "cannot follow ledger block {}: {e}", block.hash());
                    }
                }
            }
        }
        let mut mempool = self.mempool();
        mempool.apply_chain_events(events, chain);
        // The inference-node role: produce a won tenure, commit for the next block (into
        // the mempool before the miner hears of the new tip).
        let (produced, mut made) = match (inference.as_mut(), self.producer.get()) {
            (Some(inference), Some(producer)) if connected => {
                let mut vm_pool = self.vm_mempool();
                let mut results = self.results();
                let votes = self.votes();
                let mut producer = lock(producer);
                let pools = crate::producer::Pools {
                    vm: &mut vm_pool,
                    results: &mut results,
                    votes: &votes,
                };
                let block = producer.on_tip(chain, inference, &mut mempool, pools);
                (block, producer.take_outbox())
            }
            _ => (Vec::new(), Vec::new()),
        };
        if let Some(inference) = inference.as_ref() {
            for block in &produced {
                self.after_inference_block(chain, inference, block);
            }
        }
        let mut made_vm = Vec::new();
        if let (Some(inference), Some(roles)) = (inference.as_ref(), self.roles.get()) {
            if connected {
                let mut roles = lock(roles);
                roles.on_tip(chain, inference, &mut mempool, &mut self.vm_mempool());
                let m = roles.take_made();
                made.extend(m.ledger);
                made_vm = m.vm;
            }
        }
        drop(mempool);
        self.note_tips(chain, inference.as_deref());
        drop(inference);
        self.note_pools();
        for tx in made {
            self.publish(Topic::LedgerTx, tx);
        }
        for tx in made_vm {
            self.publish(Topic::VmTx, tx);
        }
        for block in produced {
            self.publish(Topic::InferenceBlock, block.to_bytes());
        }
        self.tip_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// After an inference block from a peer was accepted: the producer's commit that
    /// waited for it goes out. The caller holds the ledger and the inference chain.
    pub fn after_peer_inference_block(&self, ledger: &Chainstate, chain: &InferenceChain) {
        let Some(producer) = self.producer.get() else {
            return;
        };
        let mut mempool = self.mempool();
        let mut producer = lock(producer);
        if producer.on_inference_block(ledger, chain, &mut mempool) {
            self.send_commits(producer.take_outbox());
        }
    }

    /// After a vote came in: a tenure of this node waiting for its parent's votes may
    /// go now.
    pub fn after_vote(&self) {
        let Some(producer) = self.producer.get() else {
            return;
        };
        if lock(producer).has_pending_tenure() {
            self.produce_pending_tenure();
        }
    }

    /// Produces the tenure waiting for its parent's votes if it is ready (the votes are
    /// here, or it waited long enough), gossips it and the commit after it.
    fn produce_pending_tenure(&self) {
        let Some(producer) = self.producer.get() else {
            return;
        };
        let ledger = self.chain();
        let Some(mut chain) = self.inference() else {
            return;
        };
        let mut mempool = self.mempool();
        let mut vm = self.vm_mempool();
        let mut results = self.results();
        let votes = self.votes();
        let mut producer = lock(producer);
        if !producer.tenure_ready(&ledger, &chain, &votes) {
            return;
        }
        let pools = crate::producer::Pools {
            vm: &mut vm,
            results: &mut results,
            votes: &votes,
        };
        let block = producer.produce_pending(&ledger, &mut chain, &mut mempool, pools);
        let outbox = producer.take_outbox();
        drop(producer);
        drop(votes);
        drop(results);
        drop(vm);
        drop(mempool);
        if let Some(b) = &block {
            self.after_inference_block(&ledger, &chain, b);
        }
        drop(chain);
        drop(ledger);
        self.note_pools();
        if let Some(b) = block {
            self.publish(Topic::InferenceBlock, b.to_bytes());
        }
        self.send_commits(outbox);
    }

    /// A tenure waiting for votes, or a commit waiting for a tenure block, that waited as
    /// long as it may goes out. Called every few tens of milliseconds by the producer's
    /// timer thread.
    pub fn producer_tick(&self) {
        let Some(producer) = self.producer.get() else {
            return;
        };
        if lock(producer).has_pending_tenure() {
            self.produce_pending_tenure();
        }
        let spacing = self.chain().params().target_spacing;
        if !lock(producer).overdue(spacing) {
            return;
        }
        let ledger = self.chain();
        let Some(chain) = self.inference() else {
            return;
        };
        let mut mempool = self.mempool();
        let mut producer = lock(producer);
        if producer.on_overdue(&ledger, &chain, &mut mempool) {
            let outbox = producer.take_outbox();
            drop((producer, mempool, chain, ledger));
            self.note_pools();
            self.send_commits(outbox);
        }
    }

    fn send_commits(&self, txs: Vec<Vec<u8>>) {
        if txs.is_empty() {
            return;
        }
        self.commit_generation.fetch_add(1, Ordering::SeqCst);
        for tx in txs {
            self.publish(Topic::LedgerTx, tx);
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
