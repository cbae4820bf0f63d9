//! `infer-node start`: opens the data directory, the ledger chainstate and the mempool,
//! starts the services the configuration asks for, and runs until Ctrl-C or SIGTERM.
//!
//! Services: the miner (one OS thread that drives N hashing threads), the p2p network
//! (ledger blocks, transactions, inference blocks, served inferences and votes), the
//! proof-of-inference chain fed every ledger block, the inference-node role (register,
//! bid, produce tenure blocks) and the verifier (replays the blocks of the sets the node
//! key is in, votes), the RPC server on the async runtime with the inference engine's
//! workers behind it. Every service is listed and spawned here; when a critical one
//! fails, the node stops with its error.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use fai_ledger::chainstate::{ChainEvent, SCHEMA};
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_ledger::{ChainParams, Chainstate};
use fai_primitives::{Address, Amount, Encode, Network};
use fai_storage::RocksStore;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::p2p::{P2pHandle, Topic};
use crate::{keys, mining};
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
    pub shutdown: AtomicBool,
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
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// A node over `chain` with an empty mempool; the network, the inference chain and
    /// the producer are set once they run.
    pub fn new(chain: Chainstate, mempool: MempoolConfig) -> Self {
        Node {
            chain: Mutex::new(chain),
            mempool: Mutex::new(Mempool::new(mempool)),
            tip_generation: AtomicU64::new(0),
            commit_generation: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            p2p: OnceLock::new(),
            inference: OnceLock::new(),
            vm_mempool: Default::default(),
            producer: OnceLock::new(),
            roles: OnceLock::new(),
            results: Default::default(),
            votes: Default::default(),
            verifier: OnceLock::new(),
            clock: crate::clock::system(),
        }
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
        drop(inference);
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
            self.send_commits(producer.take_outbox());
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

/// Ctrl-C and SIGTERM, as streams on `runtime`.
pub fn stop_signals(
    runtime: &tokio::runtime::Runtime,
) -> Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)> {
    use tokio::signal::unix::{signal, SignalKind};
    let _guard = runtime.enter();
    Ok((
        signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
        signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
    ))
}

/// Runs the node until it is told to stop.
pub fn run(config: Config, invocation: String, start_rpc: StartRpc) -> Result<()> {
    // The runtime and the signal handlers first: a Ctrl-C or SIGTERM during a slow start
    // (opening the databases) is then a clean stop once the start is done.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (mut interrupt, mut term) = stop_signals(&runtime)?;
    let network = config.network();
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let (node_key, created) = keys::load_or_create(&data_dir, keys::NODE_KEY)?;
    let node_address = Address::from_public_key(network, &node_key.public_key());
    if created {
        info!(target: "infer_node", address = %node_address, "created the node key");
    }
    let chain = open_chain(&data_dir, network)?;
    // The configuration checked that it is an address of this network.
    let payout = config.mining.address.unwrap_or(node_address);
    let tip = chain.tip()?.clone();
    info!(
        target: "infer_node",
        version = env!("CARGO_PKG_VERSION"),
        %network,
        data_dir = %data_dir.display(),
        height = tip.height,
        tip = %chain.tip_hash(),
        "infer-node starting"
    );
    let node = Arc::new(Node::new(
        chain,
        MempoolConfig {
            max_bytes: config.mempool.max_bytes,
            min_fee_rate: config.mempool.min_fee_rate,
        },
    ));

    for warning in &config.deprecations {
        tracing::warn!(target: "infer_node", "configuration: {warning}");
    }
    // The models of engine.serve, on the engine's device. The built-in model is approved
    // at genesis of the inference chain on every network but mainnet.
    let loaded = crate::served::LoadedModels::load(&data_dir, &config.engine)?;
    let tiny_id = crate::models::fai_tiny_id(&data_dir)?;
    {
        let chain = node.chain();
        let inference = crate::inference::open(&data_dir, network, &chain, tiny_id)?;
        let _ = node.inference.set(Mutex::new(inference));
    }
    if config.inference.produce {
        let bid = config.inference.bid;
        let vrf = fai_inference_chain::sortition::vrf_key(&node_key);
        info!(target: "infer_node", %bid, "inference node: registering, then bidding at every ledger block");
        let producer = crate::producer::Producer::new(
            node_key.clone(),
            vrf,
            loaded.ids(),
            bid,
            node.clock.clone(),
        );
        let _ = node.producer.set(Mutex::new(producer));
    }
    let stake = config.inference.stake;
    let dev_wallet = dev_wallet(&config, &data_dir, network)?;
    if config.inference.produce || stake.is_some() || dev_wallet.is_some() {
        let genesis =
            fai_inference_chain::chain::ChainConfig::for_network(network, tiny_id).genesis;
        let min_bond = u64::try_from(genesis.min_bond)
            .ok()
            .and_then(|b| Amount::from_units(b).ok())
            .unwrap_or(Amount::ZERO);
        let offer = config.inference.produce.then(|| crate::roles::Offer {
            models: loaded.ids(),
            price: config.inference.price,
            bond: config.inference.bond.unwrap_or(min_bond),
            address: format!("http://{}", config.rpc.listen),
        });
        if let Some(stake) = stake {
            info!(target: "infer_node", %stake, "verifier: staking once the node key has FAI on the inference layer");
        }
        let mut roles = crate::roles::Roles::new(
            node_key.clone(),
            network.chain_id(),
            offer,
            stake,
            config.inference.peg_in,
        );
        if let Some(w) = &dev_wallet {
            roles = roles.with_gift(crate::roles::Gift {
                to: Address::parse_for(&w.address, network)?.key_hash,
                ledger: w.ledger,
                inference: w.inference,
            });
        }
        let _ = node.roles.set(Mutex::new(roles));
    }
    let mut verifier_thread = None;
    if let Some(payloads) = node.inference().and_then(|c| c.payloads().cloned()) {
        let (handle, thread) = crate::verify_service::start(
            node.clone(),
            node_key.clone(),
            loaded.models.clone(),
            payloads,
        )
        .context("cannot start the verifier thread")?;
        let _ = node.verifier.set(handle);
        verifier_thread = Some(thread);
    }

    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Error>();

    // Services.
    let mut threads = Vec::new();
    if config.mining.enabled {
        info!(target: "infer_node", threads = config.mining.threads, address = %payout, "mining");
        let node = node.clone();
        let threads_n = config.mining.threads;
        let pause = std::time::Duration::from_millis(config.mining.block_interval_ms);
        let failed = failed_tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name("miner".into())
                .spawn(move || {
                    if let Err(e) = mining::run(&node, payout.key_hash, threads_n, pause) {
                        let _ = failed.send(e.context("the miner stopped"));
                    }
                })
                .context("cannot start the miner thread")?,
        );
    } else {
        info!(target: "infer_node", "mining is off (mining.enabled = false)");
    }
    if node.producer.get().is_some() {
        let node = node.clone();
        threads.push(
            std::thread::Builder::new()
                .name("producer-timer".into())
                .spawn(move || {
                    while !node.shutdown.load(Ordering::SeqCst) {
                        node.producer_tick();
                        std::thread::sleep(std::time::Duration::from_millis(25));
                    }
                })
                .context("cannot start the producer's timer thread")?,
        );
    }
    let mut network_task = None;
    let mut validator = None;
    if config.p2p.enabled {
        let identity = crate::p2p::identity(&node_key)?;
        let running = crate::p2p::service::start(
            &runtime,
            node.clone(),
            network,
            identity,
            Some(&node_key),
            &config.p2p,
        )?;
        let _ = node.p2p.set(running.handle);
        network_task = Some(running.task);
        validator = Some(running.validator);
    } else {
        info!(target: "infer_node", "the p2p network is off (p2p.enabled = false)");
    }
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    if config.rpc.enabled {
        let rpc = start_rpc(RpcContext {
            runtime: &runtime,
            config: &config,
            loaded: &loaded,
            network,
            node: &node,
            key: node_key.clone(),
            failed: failed_tx.clone(),
            shutdown: shutdown_tx,
        })?;
        let peer_id = crate::p2p::identity(&node_key)?.public().to_peer_id();
        let banner = crate::banner::Banner {
            version: env!("CARGO_PKG_VERSION"),
            network: network.to_string(),
            data_dir: data_dir.display().to_string(),
            mining: config.mining.enabled.then_some(config.mining.threads),
            produce: node.producer.get().map(|_| config.inference.bid),
            price: config.inference.price,
            stake,
            models: loaded
                .models
                .iter()
                .map(|m| (m.name.clone(), m.id.to_string()))
                .collect(),
            device: loaded.device.to_string(),
            rpc: rpc.to_string(),
            p2p: config.p2p.enabled.then(|| {
                (
                    config.p2p.listen_address(network).to_string(),
                    peer_id.to_string(),
                )
            }),
            wallet: dev_wallet,
            invocation,
        };
        println!("{}", banner.render());
    }

    let outcome = runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => { info!(target: "infer_node", "Ctrl-C: shutting down"); Ok(()) }
            _ = term.recv() => { info!(target: "infer_node", "SIGTERM: shutting down"); Ok(()) }
            Some(e) = failed_rx.recv() => Err(e),
            Some(r) = async { match network_task.as_mut() { Some(t) => Some(t.await), None => None } } => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.context("the p2p network stopped")),
                Err(e) => Err(anyhow::anyhow!("the p2p network task failed: {e}")),
            },
            Some(()) = shutdown_rx.recv() => { info!(target: "infer_node", "admin shutdown: shutting down"); Ok(()) }
        }
    });
    node.shutdown.store(true, Ordering::SeqCst);
    for t in threads.into_iter().chain(verifier_thread) {
        if t.join().is_err() {
            error!(target: "infer_node", "a service thread panicked");
        }
    }
    // Stop every task (the RPC, the network loop) and the threads that hold the node, so
    // that the databases close here and not while the process exits.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Some(v) = validator {
        if v.join().is_err() {
            error!(target: "infer_node", "the p2p validator thread panicked");
        }
    }
    {
        let chain = node.chain();
        info!(target: "infer_node", height = chain.height(), tip = %chain.tip_hash(), "stopped");
    }
    drop(node);
    outcome
}

/// What starting the RPC server needs from the daemon.
pub struct RpcContext<'a> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub config: &'a Config,
    pub loaded: &'a crate::served::LoadedModels,
    pub network: Network,
    pub node: &'a Arc<Node>,
    pub key: fai_primitives::SecretKey,
    /// Where the server reports that it stopped.
    pub failed: tokio::sync::mpsc::UnboundedSender<anyhow::Error>,
    /// Where an admin's shutdown request goes.
    pub shutdown: tokio::sync::mpsc::UnboundedSender<()>,
}

/// Starts the engine's workers on the served models and the RPC server (`fai_rpc::start`:
/// the RPC is a crate above this one); returns the address it listens on.
pub type StartRpc = fn(RpcContext<'_>) -> Result<std::net::SocketAddr>;

/// The configured dev wallet: made at the first start, its address read after.
fn dev_wallet(
    config: &Config,
    data_dir: &Path,
    network: Network,
) -> Result<Option<crate::banner::DevWallet>> {
    let Some((name, ledger, inference)) = config.dev_wallet.gift() else {
        return Ok(None);
    };
    let address = if fai_wallet::wallet_path(data_dir, &name)?.exists() {
        fai_wallet::address(data_dir, &name, network)?
    } else {
        let passphrase = &config.dev_wallet.passphrase;
        let (w, _) = fai_wallet::create(data_dir, &name, network, passphrase)
            .with_context(|| format!("cannot create the dev wallet {name}"))?;
        info!(target: "infer_node", address = %w.address, "created the dev wallet {name}");
        w.address
    };
    Ok(Some(crate::banner::DevWallet {
        name,
        address: address.to_string(),
        passphrase: config.dev_wallet.passphrase.clone(),
        ledger,
        inference,
    }))
}
