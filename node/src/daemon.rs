//! Starting and stopping a node: [`start`] opens the data directory, the ledger
//! chainstate, the inference chain and the pools, starts the services the configuration
//! asks for and hands back a [`RunningNode`]; [`RunningNode::stop`] cancels the node's
//! `shutdown` token, waits for every thread and task, and closes the databases.
//! `infer-node start` is [`run`]: start, wait for Ctrl-C, SIGTERM, an admin's request or
//! a failed service, stop. Tests start several nodes in one process the same way, each
//! on its own runtime, with a clock of their own.
//!
//! Services: the chain task (one thread that owns the chains and the pools, and runs the
//! inference-node role and its timers; `crate::chain_task`), the miner (one OS thread
//! that drives N hashing threads), the p2p network (ledger blocks, transactions,
//! inference blocks, served inferences and votes; a task), the verifier thread, the RPC
//! server with the inference engine's workers behind it. Tasks go through one
//! `TaskTracker`, threads are joined on stop, the chain task last.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_primitives::{Address, Amount, Network};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::chain_task::ChainState;
use crate::clock::Clock;
use crate::config::Config;
use crate::node::{open_chain, Node};
use crate::{keys, mining};

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

/// How a node is started besides its configuration.
#[derive(Clone)]
pub struct StartOptions {
    /// The command line that started it, for the banner.
    pub invocation: String,
    /// Starts the RPC server (`fai_rpc::start`).
    pub start_rpc: StartRpc,
    /// Where the node reads the time.
    pub clock: Arc<dyn Clock>,
    /// Prints the banner on stdout.
    pub banner: bool,
}

impl StartOptions {
    /// The machine's clock and the banner: what `infer-node start` uses.
    pub fn new(invocation: String, start_rpc: StartRpc) -> Self {
        StartOptions {
            invocation,
            start_rpc,
            clock: crate::clock::system(),
            banner: true,
        }
    }
}

/// The runtime a node's tasks run on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Gives the engine's tensor operations `engine.threads` threads (candle reads
/// `CANDLE_NUM_THREADS` once, when it first needs its thread pool). Call it before any
/// other thread starts: it changes the process's environment.
fn apply_engine_threads(config: &Config) {
    if let Some(threads) = config.engine.threads {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
}

/// Runs the node until it is told to stop.
pub fn run(config: Config, options: StartOptions) -> Result<()> {
    apply_engine_threads(&config);
    // The runtime and the signal handlers first: a Ctrl-C or SIGTERM during a slow start
    // (opening the databases) is then a clean stop once the start is done.
    let runtime = runtime()?;
    let (mut interrupt, mut term) = stop_signals(&runtime)?;
    let mut running = start_on(runtime, config, options)?;
    let outcome = running.wait_or(async {
        tokio::select! {
            _ = interrupt.recv() => info!(target: "infer_node", "Ctrl-C: shutting down"),
            _ = term.recv() => info!(target: "infer_node", "SIGTERM: shutting down"),
        }
    });
    running.stop();
    outcome
}

/// A node started in this process; its services run until [`RunningNode::stop`] (or
/// until it is dropped, which stops it).
pub struct RunningNode {
    pub node: Arc<Node>,
    /// The address the RPC server listens on, when it runs.
    pub rpc: Option<std::net::SocketAddr>,
    /// Who the blocks it mines pay (`mining.address`, else the node key).
    pub payout: Address,
    runtime: Option<tokio::runtime::Runtime>,
    tasks: TaskTracker,
    threads: Vec<JoinHandle<()>>,
    /// The chain task, once it runs.
    chain: Option<crate::chain_task::Running>,
    network_task: Option<tokio::task::JoinHandle<Result<()>>>,
    failed: UnboundedReceiver<anyhow::Error>,
}

/// Starts a node on a runtime of its own.
pub fn start(config: Config, options: StartOptions) -> Result<RunningNode> {
    start_on(runtime()?, config, options)
}

/// Starts a node whose tasks run on `runtime`.
pub fn start_on(
    runtime: tokio::runtime::Runtime,
    config: Config,
    options: StartOptions,
) -> Result<RunningNode> {
    let tasks = TaskTracker::new();
    let start_rpc = options.start_rpc;
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
    let mempool = Mempool::new(MempoolConfig {
        max_bytes: config.mempool.max_bytes,
        min_fee_rate: config.mempool.min_fee_rate,
    });
    // The state the chain task will own, completed below before it starts.
    let mut state = ChainState::new(chain, mempool, options.clock.clone());
    let (handle, chain_task) = crate::chain_task::channel_pair();
    let node = Arc::new(Node::new(handle, options.clock.clone()));

    for warning in &config.deprecations {
        tracing::warn!(target: "infer_node", "configuration: {warning}");
    }
    // The models of engine.serve, on the engine's device. The built-in model is approved
    // at genesis of the inference chain on every network but mainnet.
    let loaded = crate::served::LoadedModels::load(&data_dir, &config.engine)?;
    let tiny_id = crate::models::fai_tiny_id(&data_dir)?;
    let configured = crate::models::genesis_models(&data_dir, &config.inference.genesis_models)?;
    state.inference = Some(crate::inference::open(
        &data_dir,
        network,
        &state.ledger,
        tiny_id,
        configured,
    )?);
    if config.testing.replay_us_per_unit > 0 {
        state.replay_costs = Arc::new(crate::replay_cost::ReplayCosts::fixed(
            config.testing.replay_us_per_unit,
        ));
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
        state.producer = Some(producer);
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
        state.roles = Some(roles);
    }
    if let (true, Some(model)) = (
        config.inference.produce && config.inference.audit_every > 0,
        loaded.models.first(),
    ) {
        state.auditor = Some(crate::auditor::Auditor::new(
            node_key.clone(),
            network.chain_id(),
            model.clone(),
            config.inference.price,
            config.inference.audit_every,
        ));
    }
    let (failed_tx, failed_rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Error>();
    // From here on services run: a start that fails stops those already started (the
    // node is dropped, which stops it) before it returns its error.
    let mut running = RunningNode {
        node: node.clone(),
        rpc: None,
        payout,
        runtime: Some(runtime),
        tasks: tasks.clone(),
        threads: Vec::new(),
        chain: None,
        network_task: None,
        failed: failed_rx,
    };
    let runtime = running
        .runtime
        .as_ref()
        .context("the node's runtime is gone")?;
    let payloads = state.inference.as_ref().and_then(|c| c.payloads().cloned());
    if let Some(payloads) = payloads {
        let links = crate::verify_service::Links {
            chain: node.chain.clone(),
            clock: node.clock.clone(),
            shutdown: node.shutdown.clone(),
            text: node.clone(),
            lazy: config.testing.lazy_verifier,
            costs: state.replay_costs.clone(),
            failed: failed_tx.clone(),
        };
        let (handle, thread) =
            crate::verify_service::start(links, node_key.clone(), loaded.models.clone(), payloads)
                .context("cannot start the verifier thread")?;
        state.verifier = Some(handle.clone());
        let _ = node.verifier.set(handle);
        running.threads.push(thread);
    }
    let producing = state.producer.is_some();
    running.chain = Some(
        chain_task
            .start(state, node.clone())
            .context("cannot start the chain task")?,
    );

    if config.mining.enabled {
        info!(target: "infer_node", threads = config.mining.threads, address = %payout, "mining");
        let node = node.clone();
        let threads_n = config.mining.threads;
        let pause = std::time::Duration::from_millis(config.mining.block_interval_ms);
        let failed = failed_tx.clone();
        running.threads.push(
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
    if config.p2p.enabled {
        let identity = crate::p2p::identity(&node_key)?;
        let network = crate::p2p::service::start(
            runtime,
            &tasks,
            node.clone(),
            network,
            identity,
            Some(&node_key),
            &config.p2p,
        )?;
        let _ = node.p2p.set(network.handle);
        running.network_task = Some(network.task);
    } else {
        info!(target: "infer_node", "the p2p network is off (p2p.enabled = false)");
    }
    if config.rpc.enabled {
        let rpc = start_rpc(RpcContext {
            runtime,
            config: &config,
            loaded: &loaded,
            network,
            node: &node,
            key: node_key.clone(),
            failed: failed_tx.clone(),
            tasks: tasks.clone(),
        })?;
        running.rpc = Some(rpc);
        let peer_id = crate::p2p::identity(&node_key)?.public().to_peer_id();
        let banner = crate::banner::Banner {
            version: env!("CARGO_PKG_VERSION"),
            network: network.to_string(),
            data_dir: data_dir.display().to_string(),
            mining: config.mining.enabled.then_some(config.mining.threads),
            produce: producing.then_some(config.inference.bid),
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
            invocation: options.invocation.clone(),
        };
        if options.banner {
            println!("{}", banner.render());
        }
    }

    Ok(running)
}

impl RunningNode {
    /// Waits until `stop` is ready, a critical service fails, the network stops or the
    /// node's `shutdown` token is cancelled (an admin's request); the error of what failed.
    pub fn wait_or(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let Some(runtime) = self.runtime.as_ref() else {
            return Ok(());
        };
        let shutdown = self.node.shutdown.clone();
        let failed = &mut self.failed;
        let network_task = &mut self.network_task;
        let (outcome, network_ended) = runtime.block_on(async {
            tokio::select! {
                () = stop => (Ok(()), false),
                () = shutdown.cancelled() => { info!(target: "infer_node", "shutdown requested: shutting down"); (Ok(()), false) }
                Some(e) = failed.recv() => (Err(e), false),
                Some(r) = async { match network_task.as_mut() { Some(t) => Some(t.await), None => None } } => (match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.context("the p2p network stopped")),
                    Err(e) => Err(anyhow::anyhow!("the p2p network task failed: {e}")),
                }, true),
            }
        });
        if network_ended {
            // A finished task is not awaited again.
            self.network_task = None;
        }
        outcome
    }

    /// Stops every service and waits for them: the node's `shutdown` token is cancelled,
    /// the threads are joined, the tasks end (5 s at most), so that the databases close
    /// here and not while the process exits.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        self.node.shutdown.cancel();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                error!(target: "infer_node", "a service thread panicked");
            }
        }
        self.tasks.close();
        let tasks = self.tasks.clone();
        let waited = runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), tasks.wait()).await
        });
        if waited.is_err() {
            error!(target: "infer_node", "some tasks did not stop within 5 s");
        }
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        // Last, once nothing sends it commands: the chain task ends after those sent,
        // and its state (the databases) closes here.
        match self.chain.take().and_then(|c| c.stop()) {
            Some(state) => {
                info!(target: "infer_node", height = state.ledger.height(), tip = %state.ledger.tip_hash(), "stopped");
            }
            None => info!(target: "infer_node", "stopped"),
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.shutdown_now();
    }
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
    /// Where the server spawns its tasks, so that stopping the node waits for them. The
    /// server stops when the node's `shutdown` token is cancelled (an admin's shutdown
    /// request cancels it).
    pub tasks: TaskTracker,
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
