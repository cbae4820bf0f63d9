//! `infer-node bench network`: a local network of N nodes (separate processes on
//! loopback, regtest with fast blocks) under a steady load of inference transactions on
//! the built-in model or a generated one (`--model`, [`MODELS`]), against the same
//! requests run straight on the engine in the same run.
//!
//! Every node mines and stakes (so all of them verify, up to the five largest stakes);
//! the first two serve the model as inference nodes, and the first funds a dev wallet
//! that funds the load. Once the wallet is funded, both servers are registered and the
//! verifier set is full, the wallet funds `senders` wallets on the inference layer, and
//! the load starts: `requests` transactions, round robin over the senders (consecutive
//! nonces each, at most 48 of a sender waiting for a block), sent over RPC to the two
//! servers by `clients` clients at once (16 by default). It ends when every one is settled on the first node:
//! final (accepted, rejected or undecided), refunded because its vote window closed
//! without a quorum (`refunded_late`), or dropped; a request a server refuses as busy
//! (503) is counted in `refused_busy` and sent again a second later, as a wallet does
//! (dropping it would leave a gap in its sender's nonces).
//!
//! Each node's engine gets its share of the machine's cores (`engine.threads`, at least
//! one; `threads_per_node`), as `infer-node devnet` gives them.
//!
//! `settled_per_sec` counts the final ones over that time; `engine_per_sec` is the same
//! requests generated one after the other by the engine in this process, with one
//! node's threads; `ratio` is the
//! first over the second. Mining, every verifier's replay and the servers' engines share
//! this machine's cores, so the work bounds the ratio: each inference is generated once
//! and replayed by every verifier of the set, so at best `limit_ratio` = 1 / (1 +
//! replays per inference × replay cost ratio), with the replay cost ratio (replay over
//! generation of the same answers) measured in the same run; `efficiency` is `ratio`
//! over `limit_ratio`. Settle latency is given in seconds from the receipt and in ledger
//! blocks from the anchor of the inference block carrying the inference to the anchor of
//! the one settling it.
//!
//! A short run is mostly its start and its end (served in a second or two, then settled
//! ledger blocks later while the cores idle), so the run also gives its steady part
//! ([`steady`]): the rate at which requests settled from the first settlement to the last
//! request served, while the network both served and settled, and the same over the
//! engine and the limit; a run of several thousand requests has one.

mod steady;

use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use fai_inference_chain::types::{Prompt, Sampling};
use fai_primitives::{Address, Amount, Network};
use serde::Serialize;

use fai_api::blocking::Client as Node;
use fai_node::devnet::{self, Member, Options};
use fai_wallet::{self as wallet, InferRequest};

const PASSPHRASE: &str = "bench-network";
const MAX_TOKENS: u32 = 16;
/// Requests in flight at once (spread over the serving nodes), unless `--clients` says
/// otherwise.
pub const CLIENTS: usize = 16;
/// A sender's inferences served but not in a block yet, at most (nodes hold 64).
const MAX_WAITING: u64 = 48;
/// Busy refusals of one request before the run fails (each is followed by a second's
/// wait).
const MAX_REFUSALS: u32 = 120;
/// Wallets the load is signed by, unless `--senders` says otherwise.
pub const SENDERS: usize = 8;

/// What `bench network` runs.
pub struct NetworkOptions {
    /// Nodes (2 to 8).
    pub nodes: usize,
    /// Inference transactions sent.
    pub requests: usize,
    /// Wallets the load is signed by.
    pub senders: usize,
    /// Requests in flight at once.
    pub clients: usize,
    /// The model served and verified: [`MODELS`].
    pub model: String,
    /// Keep the nodes' data directories and logs.
    pub keep: bool,
}

/// The models a run can serve: the built-in one, or a generated one (byte vocabulary,
/// Q8_0, random weights) approved at the regtest network's genesis
/// (`inference.genesis_models`), on which inference costs more against the network's
/// own costs (signatures, the VM, storage, sealing) than on fai-tiny: `wide` (512 wide, 4
/// layers) and the `bench engine` shapes `100m` and `100m-gqa`.
pub const MODELS: [&str; 4] = ["fai-tiny", "wide", "100m", "100m-gqa"];

/// Writes the generated model `model` into `dir`; none for the built-in fai-tiny.
fn write_model(model: &str, dir: &Path) -> Result<Option<std::path::PathBuf>> {
    use candle_core::quantized::GgmlDType;
    use fai_engine::tiny::{write_gguf, TinySpec};
    let spec = match model {
        "fai-tiny" => return Ok(None),
        "wide" => TinySpec::wide(),
        "100m" | "100m-gqa" => TinySpec::bench_shape(model, GgmlDType::Q8_0)
            .with_context(|| format!("no benchmark shape {model:?}"))?,
        _ => bail!("--model {model:?}: use one of {MODELS:?}"),
    };
    let path = dir.join(format!("{}.gguf", spec.name));
    write_gguf(&spec, &path)?;
    Ok(Some(path))
}

#[derive(Serialize)]
pub struct NetworkReport {
    pub nodes: usize,
    /// The model served: one of [`MODELS`].
    pub model: String,
    pub requests: usize,
    /// Settled and accepted by the verifiers.
    pub accepted: usize,
    /// Settled and rejected (refunded).
    pub rejected: usize,
    /// Final but undecided (the verifiers abstained or split): refunded.
    pub undecided: usize,
    /// Refunded because its vote window closed without a quorum of votes: served for
    /// nothing.
    pub refunded_late: usize,
    /// Refusals by a busy server (503), each tried again a second later (one request
    /// may be refused more than once).
    pub refused_busy: usize,
    /// Never put in a block (refused by the producer or expired).
    pub dropped: usize,
    pub senders: usize,
    /// Requests in flight at once.
    pub clients: usize,
    /// Engine threads of each node (its share of the machine's cores), and of the
    /// engine alone that the network is measured against.
    pub threads_per_node: usize,
    /// From the first request sent to the last one settled.
    pub seconds: f64,
    pub settled_per_sec: f64,
    pub engine_per_sec: f64,
    pub ratio: f64,
    /// Verifiers that replay each inference (the set's size).
    pub replays_per_inference: usize,
    /// Replaying the requests' answers over generating them, on the engine in this run.
    pub replay_cost_ratio: f64,
    /// 1 / (1 + replays per inference × replay cost ratio): the ratio the work allows.
    pub limit_ratio: f64,
    /// `ratio` / `limit_ratio`.
    pub efficiency: f64,
    /// Seconds from a request's receipt to its settlement, at the median.
    pub settle_latency_s: f64,
    /// The same at the 95th percentile.
    pub settle_p95_s: f64,
    /// Ledger blocks from the anchor of the inference block carrying a request to the
    /// anchor of the one settling it, at the median and the 95th percentile.
    pub settle_p50_blocks: f64,
    pub settle_p95_blocks: f64,
    /// The busiest node's chain task: the share of the load's seconds it was busy
    /// (near 1: every block, vote and answer of that node waited for it).
    pub chain_busy_share: f64,
    /// Milliseconds a command queued for its node's chain task during the load, on
    /// average over every node's commands.
    pub chain_queued_ms: f64,
    /// From the first request sent to the last one served (its receipt).
    pub sent_seconds: f64,
    /// Seconds per ledger block on the first node over the run: the pace settlement
    /// follows (a request settles 3 ledger blocks after its block's anchor at the
    /// earliest).
    pub ledger_spacing_s: f64,
    /// The share of the machine's cores busy (every process: nodes, miners, this
    /// benchmark) from the first request sent to the end of the wait for the last
    /// settlement, from /proc/stat; null where it cannot be read. Well under 1: the run
    /// waited on the ledger's pace, not on the work.
    pub cpu_busy_share: Option<f64>,
    /// The steady window (from the first settlement to the last request served), in
    /// seconds; null when the run had none of at least three ledger blocks (all served
    /// before much settled: a short run).
    pub steady_seconds: Option<f64>,
    /// Requests settled with a final verdict per second within the steady window.
    pub steady_settled_per_sec: Option<f64>,
    /// `steady_settled_per_sec` over `engine_per_sec`.
    pub steady_ratio: Option<f64>,
    /// `steady_ratio` over `limit_ratio`.
    pub steady_efficiency: Option<f64>,
    /// The share of the machine's cores busy within the steady window.
    pub steady_cpu_busy_share: Option<f64>,
    /// Cores the node processes kept busy within the steady window (every thread: chain
    /// tasks, verifiers, engines, networking, miners), from /proc; null without a
    /// window or elsewhere than Linux.
    pub steady_nodes_cores: Option<f64>,
    /// Milliseconds of CPU the nodes spent per request settled within the steady window.
    pub nodes_cpu_ms_per_settled: Option<f64>,
    /// The inference work in one request, in milliseconds of one core: generating it and
    /// every verifier replaying it, on the engine alone in this run.
    pub work_ms_per_inference: f64,
    /// `work_ms_per_inference` over `nodes_cpu_ms_per_settled`: the share of the nodes'
    /// CPU time that went to inference work (the rest: signatures, the VM, storage,
    /// networking, serialisation). Unlike `efficiency`, it does not depend on how long
    /// the run waited on the ledger.
    pub work_share: Option<f64>,
}

/// The machine's busy and total CPU time so far (all cores, in clock ticks), from the
/// first line of /proc/stat; None where it cannot be read (not Linux).
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total = ticks.iter().take(8).fold(0u64, |a, t| a.saturating_add(*t));
    // Idle and waiting for input/output.
    let idle = ticks
        .get(3)
        .copied()
        .unwrap_or(0)
        .saturating_add(ticks.get(4).copied().unwrap_or(0));
    Some((total.saturating_sub(idle), total))
}

/// Linux's unit of process CPU times in /proc (`sysconf(_SC_CLK_TCK)`): 100 a second
/// on x86 and ARM, whatever the kernel's own tick.
const USER_HZ: f64 = 100.0;

/// CPU seconds process `pid` used so far, its threads' user and system time together
/// (fields 14 and 15 of /proc/PID/stat); none where it cannot be read (not Linux, or
/// gone).
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(cpu_ticks_of(&stat)? as f64 / USER_HZ)
}

/// User and system ticks of a /proc/PID/stat line.
fn cpu_ticks_of(stat: &str) -> Option<u64> {
    // The command name, field 2, is in parentheses and may hold spaces and parentheses:
    // count from after the last one (field 3 first).
    let rest = stat.get(stat.rfind(')')?.checked_add(1)?..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field.checked_sub(3)?)?.parse::<u64>().ok();
    ticks(14)?.checked_add(ticks(15)?)
}

/// CPU seconds the processes `pids` used so far, together; none if one cannot be read.
fn processes_cpu_seconds(pids: &[u32]) -> Option<f64> {
    pids.iter()
        .map(|p| process_cpu_seconds(*p))
        .sum::<Option<f64>>()
}

/// A node's chain task figures from its `/metrics`: busy seconds, queued seconds and
/// commands, since it started.
fn chain_load(node: &Node) -> (f64, f64, f64) {
    let text = node.metrics().unwrap_or_default();
    let figure = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        figure("infer_chain_busy_seconds_total"),
        figure("infer_chain_queued_seconds_total"),
        figure("infer_chain_commands_total"),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Final and accepted: paid.
    Accepted,
    /// Final and rejected by the verifiers: refunded.
    Rejected,
    /// Final, nobody decided: refunded.
    Undecided,
    /// Its vote window closed without a quorum: refunded.
    RefundedLate,
    /// Never put in a block.
    Dropped,
}

/// The prompt and sampling of request `i`: different prompts and seeds, the same length.
fn request(i: usize) -> (Prompt, Sampling) {
    let prompt = Prompt {
        system: String::new(),
        context: vec![],
        input: format!("Question {i}: what does a verifier check?"),
    };
    let sampling = Sampling {
        max_tokens: MAX_TOKENS,
        temperature_milli: 700,
        top_p_milli: 1000,
        top_k: 40,
        seed: i as u64,
        stop: vec![],
    };
    (prompt, sampling)
}

/// The `p`th percentile of `values` (sorted here); 0 when empty.
fn percentile(values: &mut [f64], p: usize) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = values.len().saturating_mul(p) / 100;
    values
        .get(at.min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

/// `n` consecutive free loopback ports.
fn free_ports(n: usize) -> Result<u16> {
    for _ in 0..100 {
        let base = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let Some(last) = usize::from(base).checked_add(n) else {
            continue;
        };
        if last > 65_535 {
            continue;
        }
        let all_free = (usize::from(base)..last)
            .filter_map(|p| u16::try_from(p).ok())
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free ports on loopback")
}

/// A miner's rest after its block, for `nodes` miners to make about a block a second.
fn nodes_pause(nodes: usize) -> i64 {
    i64::try_from(nodes).unwrap_or(8).saturating_mul(1_000)
}

/// The nodes' configuration: regtest, about a ledger block a second, two servers, a
/// funded wallet on the first; a generated model (`model`, its file's path) served,
/// replayed and approved at genesis by every node.
fn tweak(nodes: usize, model: Option<&str>, i: usize, table: &mut toml::Table) {
    let mut set = |section: &str, key: &str, value: toml::Value| {
        if let Some(t) = table.get_mut(section).and_then(toml::Value::as_table_mut) {
            t.insert(key.into(), value);
        }
    };
    set("node", "network", "regtest".into());
    // Each miner rests after its block, so that the network makes about one ledger
    // block a second: time for every verifier to replay and vote before the next
    // inference block settles the last.
    set(
        "mining",
        "block_interval_ms",
        toml::Value::Integer(nodes_pause(nodes)),
    );
    set("inference", "produce", (i < 2).into());
    if let Some(path) = model {
        set("engine", "serve", toml::Value::Array(vec![path.into()]));
        set(
            "inference",
            "genesis_models",
            toml::Value::Array(vec![path.into()]),
        );
    }
    if i == 0 {
        set("dev_wallet", "passphrase", PASSPHRASE.into());
        set("dev_wallet", "ledger", "".into());
        set("dev_wallet", "inference", "20 FAI".into());
    }
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

pub fn network(options: &NetworkOptions) -> Result<NetworkReport> {
    let NetworkOptions {
        nodes,
        requests,
        senders,
        clients,
        ref model,
        keep,
    } = *options;
    if !MODELS.contains(&model.as_str()) {
        bail!("--model {model:?}: use one of {MODELS:?}");
    }
    if !(2..=8).contains(&nodes) {
        bail!("--nodes must be between 2 and 8");
    }
    if !(1..=64).contains(&senders) {
        bail!("--senders must be between 1 and 64");
    }
    if !(1..=64).contains(&clients) {
        bail!("--clients must be between 1 and 64");
    }
    // Each node gets its share of the cores (`engine.threads`), and the engine alone is
    // measured with one node's share: candle reads this once, at its first tensor
    // operation, and no other thread of this run has started yet.
    std::env::set_var(
        "CANDLE_NUM_THREADS",
        devnet::engine_threads_per_node(nodes).to_string(),
    );
    let dir = tempfile::tempdir()?;
    let program = std::env::current_exe().context("cannot find this program's path")?;
    let o = Options {
        nodes,
        base: dir.path().to_path_buf(),
        rpc_port: free_ports(nodes)?,
        p2p_port: free_ports(nodes)?,
    };
    let model_file = write_model(model, dir.path())?;
    let model_path = match &model_file {
        Some(path) => Some(
            path.to_str()
                .context("the temporary directory's path is not UTF-8")?
                .to_string(),
        ),
        None => None,
    };
    let members = devnet::prepare(&o, &|i, table| {
        tweak(nodes, model_path.as_deref(), i, table)
    })?;
    let mut children: Vec<(String, Child)> = Vec::new();
    let outcome = (|| {
        for m in &members {
            let log = dir.path().join(format!("{}.log", m.name));
            children.push((m.name.clone(), devnet::spawn(&program, m, Some(&log))?));
        }
        let pids: Vec<u32> = children.iter().map(|(_, c)| c.id()).collect();
        measure(
            &members,
            &pids,
            dir.path(),
            (model, model_file.as_deref()),
            requests,
            senders,
            clients,
        )
    })();
    devnet::stop(&mut children);
    if keep && outcome.is_ok() {
        let kept = dir.keep();
        eprintln!("the nodes' data and logs are kept in {}", kept.display());
        return outcome;
    }
    if outcome.is_err() {
        // Kept for a look at what went wrong.
        let kept = dir.keep();
        return outcome
            .with_context(|| format!("the nodes' data and logs are kept in {}", kept.display()));
    }
    outcome
}

fn measure(
    members: &[Member],
    pids: &[u32],
    dir: &Path,
    (model_name, model_file): (&str, Option<&Path>),
    requests: usize,
    sender_count: usize,
    clients: usize,
) -> Result<NetworkReport> {
    let first = members.first().context("no nodes")?;
    let servers: Vec<&Member> = members.iter().take(2).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for m in members {
        runtime.block_on(devnet::wait_for_rpc(&m.rpc, Duration::from_secs(120)))?;
    }
    let data0 = dir.join("node-0");
    let w = wallet::open(&data0, "default", Network::Regtest, PASSPHRASE)?;
    let address = w.address.to_string();
    let needed = Amount::from_units(100_000u64.saturating_mul(requests as u64))?;
    eprintln!("bench network: waiting for the wallet's peg-in, the servers' registration and the verifier set");
    let status = Mutex::new(String::new());
    let node0 = Node::new(&first.rpc)?;
    let ready = wait_until("the network to be ready", Duration::from_secs(600), || {
        let funded = node0
            .inference_account(&address)
            .is_ok_and(|a| a.balance_units >= needed.units());
        let registered = node0.inference_nodes().map_or(0, |n| n.len());
        let verifiers = node0.inference_chain().map_or(0, |c| c.verifier_set.len());
        if let Ok(mut s) = status.lock() {
            *s = format!("wallet funded: {funded}, servers registered: {registered} of {}, verifiers: {verifiers} of {}", servers.len(), members.len().min(5));
        }
        funded && registered >= servers.len() && verifiers >= members.len().min(5)
    });
    if let Err(e) = ready {
        bail!(
            "{e} ({})",
            status.lock().map(|s| s.clone()).unwrap_or_default()
        );
    }

    // The load: consecutive nonces, two clients, each to its own server.
    // Senders: a node keeps 64 inferences of one sender waiting for a block at most, so
    // the load comes from several, funded from the dev wallet on the inference layer.
    let senders: Vec<wallet::Wallet> = (0..sender_count)
        .map(|_| {
            let key = fai_primitives::SecretKey::generate();
            let address = Address::from_public_key(Network::Regtest, &key.public_key());
            wallet::Wallet { key, address }
        })
        .collect();
    let share = needed
        .units()
        .div_ceil(sender_count as u64)
        .saturating_add(1_000_000);
    for s in &senders {
        let payload = fai_inference_chain::vmtx::VmPayload::Transfer {
            to: s.address.key_hash,
            amount: Amount::from_units(share)?,
            memo: Vec::new(),
        };
        wallet::vm_send(
            &node0,
            &w,
            payload,
            Amount::from_units(fai_node::vm_mempool::MIN_FEE)?,
        )?;
    }
    let balance = |a: &Address| {
        node0
            .inference_account(&a.to_string())
            .map_or(0, |v| v.balance_units)
    };
    wait_until("the senders' funding", Duration::from_secs(120), || {
        senders.iter().all(|s| balance(&s.address) >= share)
    })?;
    let nonces: Vec<u64> = senders
        .iter()
        .map(|s| wallet::next_nonce(&node0, &s.address))
        .collect::<Result<_>>()?;
    let receipts: Mutex<Vec<(usize, String, Instant)>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let refused_busy = std::sync::atomic::AtomicUsize::new(0);
    // Each sender's nonce the first node last said its inferences reached.
    let included: Vec<AtomicU64> = nonces.iter().map(|n| AtomicU64::new(*n)).collect();
    let all_nodes: Vec<Node> = members
        .iter()
        .map(|m| Node::new(&m.rpc))
        .collect::<Result<_, _>>()?;
    let load_before: Vec<(f64, f64, f64)> = all_nodes.iter().map(chain_load).collect();
    let ledger_height = || node0.info().map(|i| i.ledger.height).ok();
    let (cpu_before, ledger_before) = (cpu_times(), ledger_height());

    let node_pids = pids.to_vec();
    let mut watch = steady::TipWatch::start(&first.rpc, cpu_times, move || {
        processes_cpu_seconds(&node_pids)
    })?;
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (senders, nonces) = (&senders, &nonces);
    std::thread::scope(|s| {
        for _ in 0..clients {
            let (receipts, failures, next) = (&receipts, &failures, &next);
            let (refused_busy, included) = (&refused_busy, &included);
            let servers = &servers;
            s.spawn(move || {
                // Each client thread its own connections.
                let clients = Node::new(&first.rpc).and_then(|f| {
                    let servers: Result<Vec<Node>, _> =
                        servers.iter().map(|m| Node::new(&m.rpc)).collect();
                    Ok((f, servers?))
                });
                let (first_node, server_nodes) = match clients {
                    Ok(c) => c,
                    Err(e) => {
                        if let Ok(mut v) = failures.lock() {
                            v.push(format!("client: {e}"));
                        }
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= requests {
                        break;
                    }
                    let Some(server) = server_nodes.get(i % server_nodes.len()) else {
                        break;
                    };
                    let (Some(sender), Some(&first_nonce)) =
                        (senders.get(i % sender_count), nonces.get(i % sender_count))
                    else {
                        break;
                    };
                    let nonce = first_nonce.saturating_add((i / sender_count) as u64);
                    // A sender may have 64 inferences waiting for a block: keep under that.
                    // The first node is asked how many are in only when the last answer
                    // leaves no room: asking before every request was three contract
                    // reads on that node's chain task per request, load the run measured.
                    let sender_address = sender.address.to_string();
                    let Some(known) = included.get(i % sender_count) else {
                        break;
                    };
                    let waited =
                        wait_until("room for the sender", Duration::from_secs(120), || {
                            let room = |n: u64| nonce.saturating_sub(n) < MAX_WAITING;
                            if room(known.load(Ordering::Relaxed)) {
                                return true;
                            }
                            let now = first_node
                                .inference_account(&sender_address)
                                .map_or(first_nonce, |a| a.nonce);
                            known.fetch_max(now, Ordering::Relaxed);
                            room(now)
                        });
                    if let Err(e) = waited {
                        if let Ok(mut v) = failures.lock() {
                            v.push(format!("request {i}: {e}"));
                        }
                        break;
                    }
                    {
                        let (prompt, sampling) = request(i);
                        let req = InferRequest {
                            system: prompt.system,
                            context: prompt.context,
                            prompt: prompt.input,
                            model: None,
                            max_fee: Amount::from_units(100_000).unwrap_or(Amount::ZERO),
                            max_tokens: sampling.max_tokens,
                            temperature: 0.7,
                            seed: sampling.seed,
                            nonce,
                        };
                        // A busy refusal is tried again a second later, as a wallet
                        // does: giving up would leave a gap in the sender's nonces
                        // that no later request of its could be carried past.
                        let mut refusals = 0;
                        loop {
                            match wallet::infer(server, sender, &req, |_| {}) {
                                Ok(r) => {
                                    let txid = r.receipt.txid;
                                    if let Ok(mut v) = receipts.lock() {
                                        v.push((i, txid, Instant::now()));
                                    }
                                }
                                Err(e)
                                    if format!("{e:#}").contains("503")
                                        && refusals < MAX_REFUSALS =>
                                {
                                    refusals += 1;
                                    refused_busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    std::thread::sleep(Duration::from_secs(1));
                                    continue;
                                }
                                Err(e) => {
                                    if let Ok(mut v) = failures.lock() {
                                        v.push(format!("request {i}: {e:#}"));
                                    }
                                }
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    if let Some(f) = failures.first() {
        bail!(
            "{} of {requests} requests failed; the first: {f}",
            failures.len()
        );
    }
    let receipts = receipts.into_inner().unwrap_or_default();
    // Each ends settled (final, accepted or not) or dropped (it never reached a block).
    let mut ended_at: Vec<Option<(Instant, Ending)>> = vec![None; receipts.len()];
    // Ledger blocks from the carrying inference block's anchor to the settling one's.
    let mut block_lags: Vec<f64> = Vec::new();
    let mut anchors: std::collections::HashMap<String, u32> = Default::default();
    let mut anchor_of = |id: &str| -> Option<u32> {
        if let Some(h) = anchors.get(id) {
            return Some(*h);
        }
        let h = node0.inference_block(id).ok()?.ledger_anchor_height;
        anchors.insert(id.to_string(), h);
        Some(h)
    };
    let pending = |ended_at: &[Option<(Instant, Ending)>]| {
        receipts
            .iter()
            .zip(ended_at)
            .filter(|(_, e)| e.is_none())
            .map(|((i, txid, _), _)| format!("{i}:{txid}"))
            .take(5)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let waited = wait_until("every request to settle", Duration::from_secs(300), || {
        for (slot, (_, txid, _)) in ended_at.iter_mut().zip(&receipts) {
            if slot.is_some() {
                continue;
            }
            if let Ok(state) = node0.inference_status(txid) {
                // Settled when the settling block reached the first node, where the
                // watch saw it arrive (else now).
                let mut at = Instant::now();
                let ending = match state.state.as_str() {
                    "settled" => {
                        if let (Some(b), Some(s)) = (&state.block, &state.settled_in) {
                            if let (Some(from), Some(to)) = (anchor_of(&b.id), anchor_of(&s.id)) {
                                block_lags.push(f64::from(to.saturating_sub(from)));
                            }
                            at = watch.seen(&s.id).map_or(at, |seen| seen.min(at));
                        }
                        Some(
                            match (state.is_final == Some(true), state.outcome.as_deref()) {
                                (true, Some("accepted")) => Ending::Accepted,
                                (true, Some("rejected")) => Ending::Rejected,
                                (true, _) => Ending::Undecided,
                                (false, _) => Ending::RefundedLate,
                            },
                        )
                    }
                    "dropped" | "failed" => Some(Ending::Dropped),
                    _ => None,
                };
                *slot = ending.map(|e| (at, e));
            }
        }
        ended_at.iter().all(Option::is_some)
    });
    watch.stop();
    if let Err(e) = waited {
        bail!("{e}; still open: {}", pending(&ended_at));
    }
    let (cpu_after, ledger_after) = (cpu_times(), ledger_height());

    let cpu_busy_share = match (cpu_before, cpu_after) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            Some(busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64)
        }
        _ => None,
    };
    let ledger_spacing_s = match (ledger_before, ledger_after) {
        (Some(h0), Some(h1)) if h1 > h0 => started.elapsed().as_secs_f64() / f64::from(h1 - h0),
        _ => 0.0,
    };
    let last_served = receipts
        .iter()
        .map(|(_, _, got)| *got)
        .max()
        .unwrap_or(started);
    let sent_seconds = last_served.duration_since(started).as_secs_f64();
    let count = |what: Ending| {
        ended_at
            .iter()
            .flatten()
            .filter(|(_, e)| *e == what)
            .count()
    };
    let (accepted, rejected, undecided, refunded_late, dropped) = (
        count(Ending::Accepted),
        count(Ending::Rejected),
        count(Ending::Undecided),
        count(Ending::RefundedLate),
        count(Ending::Dropped),
    );
    let settled_at: Vec<Option<(Instant, bool)>> = ended_at
        .iter()
        .map(|e| e.and_then(|(t, e)| (e != Ending::Dropped).then_some((t, e == Ending::Accepted))))
        .collect();
    let ended = settled_at
        .iter()
        .flatten()
        .map(|(t, _)| *t)
        .max()
        .unwrap_or(started);
    let seconds = ended.duration_since(started).as_secs_f64();
    let mut latencies: Vec<f64> = settled_at
        .iter()
        .zip(&receipts)
        .filter_map(|(s, (_, _, got))| s.map(|(t, _)| t.duration_since(*got).as_secs_f64()))
        .collect();
    let settle_latency_s = percentile(&mut latencies, 50);
    let settle_p95_s = percentile(&mut latencies, 95);
    let settle_p50_blocks = percentile(&mut block_lags, 50);
    let settle_p95_blocks = percentile(&mut block_lags, 95);
    let load_seconds = started.elapsed().as_secs_f64().max(1e-9);
    let (mut busiest, mut queued, mut commands) = (0.0f64, 0.0, 0.0);
    for (node, before) in all_nodes.iter().zip(&load_before) {
        let after = chain_load(node);
        busiest = busiest.max((after.0 - before.0) / load_seconds);
        queued += after.1 - before.1;
        commands += after.2 - before.2;
    }
    let chain_queued_ms = if commands > 0.0 {
        queued / commands * 1e3
    } else {
        0.0
    };

    // The same requests straight on the engine, one after the other, then their answers
    // replayed as a verifier replays them.
    let model_path = match model_file {
        Some(path) => path.to_path_buf(),
        None => fai_engine::tiny::ensure_fai_tiny(&dir.join("engine-models"))?,
    };
    let model = fai_engine::LoadedModel::load(&model_path, &Device::Cpu)?;
    let engine_started = Instant::now();
    let mut answers = Vec::with_capacity(requests);
    for i in 0..requests {
        let (prompt, sampling) = request(i);
        let r = fai_node::verifier::request(&prompt, &sampling);
        let out = fai_engine::generate(&model, &r, &AtomicBool::new(false), |_| {})?;
        answers.push((r, out.tokens));
    }
    let engine_seconds = engine_started.elapsed().as_secs_f64();
    let replay_started = Instant::now();
    let replay = fai_engine::Replay::default();
    for (r, tokens) in &answers {
        fai_engine::Verifier::verify(&replay, &model, r, tokens)?;
    }
    let replay_seconds = replay_started.elapsed().as_secs_f64();
    let replay_cost_ratio = replay_seconds / engine_seconds.max(1e-9);
    let replays_per_inference = members.len().min(5);
    let limit_ratio = 1.0 / (1.0 + replays_per_inference as f64 * replay_cost_ratio);
    // Settled with a final verdict; those refunded for want of votes do not count.
    let settled_per_sec = (accepted + rejected + undecided) as f64 / seconds.max(1e-9);
    let engine_per_sec = requests as f64 / engine_seconds.max(1e-9);
    // The steady part: final settlements from the first one to the last request served,
    // over three ledger blocks at least.
    let finals: Vec<Instant> = ended_at
        .iter()
        .flatten()
        .filter(|(_, e)| matches!(e, Ending::Accepted | Ending::Rejected | Ending::Undecided))
        .map(|(t, _)| *t)
        .collect();
    let steady = steady::steady(&finals, last_served, 3.0 * ledger_spacing_s.max(1.0));
    let steady_ratio = steady.map(|s| s.settled_per_sec / engine_per_sec);
    // What the nodes spent per final settlement in the steady window (after it, the
    // nodes also answer this benchmark's status polls), against the inference work in
    // it: one generation and a replay by every verifier (the engine alone, one thread).
    let steady_nodes_cpu = steady.and_then(|s| watch.nodes_cpu_between(s.from, s.to));
    let nodes_cpu_ms_per_settled = steady
        .zip(steady_nodes_cpu)
        .filter(|(s, _)| s.settled_per_sec > 0.0)
        .map(|(s, (cpu, wall))| cpu * 1e3 / (s.settled_per_sec * wall));
    let work_ms_per_inference = (engine_seconds + replays_per_inference as f64 * replay_seconds)
        * 1e3
        / requests.max(1) as f64;
    Ok(NetworkReport {
        nodes: members.len(),
        model: model_name.to_string(),
        requests,
        accepted,
        rejected,
        undecided,
        refunded_late,
        refused_busy: refused_busy.into_inner(),
        dropped,
        senders: sender_count,
        clients,
        threads_per_node: devnet::engine_threads_per_node(members.len()),
        seconds,
        settled_per_sec,
        engine_per_sec,
        ratio: settled_per_sec / engine_per_sec,
        replays_per_inference,
        replay_cost_ratio,
        limit_ratio,
        efficiency: settled_per_sec / engine_per_sec / limit_ratio,
        settle_latency_s,
        settle_p95_s,
        settle_p50_blocks,
        settle_p95_blocks,
        chain_busy_share: busiest,
        chain_queued_ms,
        sent_seconds,
        ledger_spacing_s,
        cpu_busy_share,
        steady_seconds: steady.map(|s| s.seconds),
        steady_settled_per_sec: steady.map(|s| s.settled_per_sec),
        steady_ratio,
        steady_efficiency: steady_ratio.map(|r| r / limit_ratio),
        steady_cpu_busy_share: steady.and_then(|s| watch.cpu_busy_between(s.from, s.to)),
        steady_nodes_cores: steady_nodes_cpu.map(|(cpu, wall)| cpu / wall),
        nodes_cpu_ms_per_settled,
        work_ms_per_inference,
        work_share: nodes_cpu_ms_per_settled.map(|c| work_ms_per_inference / c.max(1e-9)),
    })
}

#[cfg(test)]
mod tests {
    use super::{cpu_ticks_of, cpu_times, process_cpu_seconds};

    /// User plus system ticks are fields 14 and 15, counted past a command name that
    /// holds spaces and parentheses; a short or garbled line reads as none.
    #[test]
    fn process_ticks_read_past_an_odd_command_name() {
        let line = "4242 (infer (node) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 269 0 0 20 0 9 0 12 0 0";
        assert_eq!(cpu_ticks_of(line), Some(1000));
        assert_eq!(cpu_ticks_of("4242 (x) S 1 2 3"), None);
        assert_eq!(cpu_ticks_of("garbage"), None);
        assert_eq!(cpu_ticks_of("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 2"), None);
    }

    /// On Linux this process's own CPU time reads and never goes back.
    #[test]
    #[cfg(target_os = "linux")]
    fn own_process_time_reads() {
        let first = process_cpu_seconds(std::process::id()).expect("/proc/self/stat");
        let second = process_cpu_seconds(std::process::id()).expect("/proc/self/stat");
        assert!(first >= 0.0 && second >= first);
    }

    /// On Linux the machine's CPU time reads, busy within total, and never goes back.
    #[test]
    #[cfg(target_os = "linux")]
    fn cpu_time_reads_and_grows() {
        let (busy0, total0) = cpu_times().expect("/proc/stat");
        assert!(busy0 <= total0 && total0 > 0);
        let (busy1, total1) = cpu_times().expect("/proc/stat");
        assert!(busy1 >= busy0 && total1 >= total0 && busy1 <= total1);
    }
}
