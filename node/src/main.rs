//! `infer-node`: the full node of the FAI network.
//!
//! Commands: `start` runs the node, `init` prepares a data directory, `keys` manages key
//! files, `wallet` holds FAI and buys inference, `models` lists and runs the models this
//! node can serve, `devnet` starts a local network, `openapi` prints the RPC's reference,
//! `bench` measures this machine. Errors are printed with their causes and the process
//! exits with status 1.

mod banner;
mod bench;
mod bench_engine;
mod bench_gossip;
mod bench_gpu;
mod bench_network;
mod bench_poi;
mod bench_rpc;
mod config;
mod devnet;
mod http_client;
mod inference;
mod keys;
mod mining;
mod model_store;
mod models;
mod node;
mod p2p;
mod producer;
mod result_pool;
mod roles;
mod rpc;
mod served;
// The verifier service that calls it arrives with networking (p2p votes); tested now.
#[cfg_attr(not(test), allow(dead_code))]
mod verifier;
mod verify_service;
mod vm_mempool;
mod vote_pool;
mod wallet;
mod wallet_serve;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fai_primitives::Address;
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// The full node of the FAI network: a proof-of-work ledger of FAI, and the
/// proof-of-inference chain where anyone with a GPU or CPU sells LLM inference and anyone
/// with a wallet buys it.
#[derive(Parser)]
#[command(name = "infer-node", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Without it, the built-in devnet configuration is used.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Data directory; overrides node.data_dir of the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    datadir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node until Ctrl-C: the ledger and its miner, peers, the inference chain,
    /// the RPC and the inference engine, and the roles the configuration turns on
    /// (inference node, verifier).
    Start,
    /// Create the data directory, its node key and the genesis block, then exit.
    Init,
    /// Create or show keys kept in the data directory.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Wallets: a BIP39 mnemonic in a passphrase-encrypted keystore (wallets/NAME.json).
    /// The passphrase is asked for, or read from FAI_WALLET_PASSPHRASE.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// List the models this node can run, or run one.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Measure what this machine does: mining, block validation, inference (engine,
    /// replay, GPU), inference blocks, the RPC, gossip and a local network under load.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the RPC's OpenAPI document (JSON), or with --markdown the RPC reference
    /// (docs/rpc.md).
    Openapi {
        #[arg(long)]
        markdown: bool,
    },
    /// Run a local network of N devnet nodes, each its own process with its own data
    /// directory and ports, wired to each other; Ctrl-C stops them all.
    Devnet {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Node i's RPC port is this plus i.
        #[arg(long, default_value_t = 7100)]
        rpc_port: u16,
        /// Node i's p2p port is this plus i.
        #[arg(long, default_value_t = 27100)]
        p2p_port: u16,
    },
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Make a wallet with a fresh 24-word mnemonic (write it down: it is the wallet).
    New {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a wallet from a mnemonic read from standard input.
    Import {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Sign a message with the wallet's key, to prove that you hold the address.
    SignMessage {
        message: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// The wallet's balance on the ledger, from the node's RPC.
    Balance {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Send FAI on the ledger: `wallet send ADDRESS "1.5 FAI"`.
    Send {
        to: String,
        amount: String,
        /// The fee paid to the miner.
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Register this wallet's key as an inference node on the ledger (its VRF key, derived
    /// from the wallet key, its address, the models it serves). A node with
    /// `inference.produce` does this for its own key.
    Register {
        /// Model ids (hex) served; default: the node's first model.
        #[arg(long)]
        model: Vec<String>,
        #[arg(long, default_value = "0.0001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Bid for the sortition of the next ledger block, as the inference node registered
    /// at HEIGHT:INDEX (the register transaction's block height and position there).
    Commit {
        register: String,
        #[arg(long, default_value = "0.001 FAI")]
        bid: String,
        #[arg(long, default_value = "0.0001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Move FAI from the ledger to the inference layer (credited six ledger blocks later).
    PegIn {
        amount: String,
        /// The inference-layer address credited; default: this wallet's.
        #[arg(long)]
        to: Option<String>,
        /// The fee paid to the miner.
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Pay FAI on the inference layer.
    Transfer {
        to: String,
        amount: String,
        #[arg(long, default_value = "")]
        memo: String,
        /// The fee paid to the block producer.
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stake FAI in the staking contract for whole reward cycles (the five largest stakes
    /// are the verifier set).
    Stake {
        amount: String,
        #[arg(long, default_value_t = 1)]
        cycles: u32,
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw the whole stake once its lock has ended.
    Unstake {
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Rate an inference you paid for, 1 to 5.
    Rate {
        txid: String,
        score: u32,
        #[arg(long, default_value = "0.00001 FAI")]
        fee: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Ask for an inference: the answer streams to the terminal, then the signed receipt.
    Infer {
        prompt: String,
        /// Model id (hex); default: the first model the node serves.
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value = "0.001 FAI")]
        max_fee: String,
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Sampling seed; default: random.
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "")]
        system: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Serve an OpenAI-compatible API (/v1/chat/completions, /v1/models) on loopback that
    /// signs each request with this wallet and sends it to the node.
    Serve {
        #[arg(long, default_value = "127.0.0.1:7081")]
        listen: String,
        /// The most one request may cost.
        #[arg(long, default_value = "0.001 FAI")]
        max_fee: String,
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// The wallet's recent transactions on both layers.
    History {
        /// Ledger blocks to look back.
        #[arg(long, default_value_t = 1000)]
        blocks: u32,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a wallet's address.
    Address {
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Show the models in the store with their ids.
    List,
    /// Check a GGUF model file, compute its id and add it to the store (models.toml).
    Import {
        path: PathBuf,
        /// A Hugging Face tokenizer.json to use instead of the file's own vocabulary.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Name in the store (default: the file's general.name).
        #[arg(long)]
        name: Option<String>,
        /// Price per million output tokens.
        #[arg(long, default_value = "0 FAI")]
        price: String,
    },
    /// Generate an answer and stream it to the terminal.
    Run {
        /// "fai-tiny" (built in; its text is nonsense by design) or a GGUF file.
        model: String,
        prompt: String,
        #[arg(long, default_value = "")]
        system: String,
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// 0 keeps every token.
        #[arg(long, default_value_t = 0)]
        top_k: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop when the answer ends with this (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: fai_engine::DeviceChoice,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a new key file (keys/NAME.key); an existing key is never overwritten.
    New {
        #[arg(long, default_value = "wallet")]
        name: String,
    },
    /// Show a key's address and public key.
    Show {
        #[arg(long, default_value = keys::NODE_KEY)]
        name: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// A local network of N nodes (processes) under a steady load of inference
    /// transactions: settled per second against the engine alone.
    Network {
        /// Nodes (2 to 8); all mine and stake, the first two serve.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Inference transactions sent.
        #[arg(long, default_value_t = 400)]
        requests: usize,
        /// Keep the nodes' data directories and logs (always kept on a failure).
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// Miner hash rate per thread against the raw SHA-256 compression rate.
    Pow {
        /// Hashing threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Print JSON instead of a line for people.
        #[arg(long)]
        json: bool,
    },
    /// Inference speed against the device's memory-bandwidth roofline, and batched
    /// decoding at 1, 8, 32 and 64 streams.
    Engine {
        #[arg(long, default_value_t = 128)]
        prefill: usize,
        #[arg(long, default_value_t = 64)]
        decode: usize,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: fai_engine::DeviceChoice,
        /// The model's shape: 100m, 100m-gqa, 1b or 8b (byte vocabulary, generated on the spot).
        #[arg(long, default_value = "100m")]
        shape: String,
        /// The storage types measured (repeatable): q8_0, q4_0, q4_k; default all three.
        #[arg(long)]
        dtype: Vec<String>,
        /// Stream counts of the batched figures, comma-separated; empty skips them.
        #[arg(long, default_value = "1,8,32,64")]
        streams: String,
        #[arg(long)]
        json: bool,
    },
    /// The cost of verifying a 256-token output against generating it (alone and
    /// batched), and the fraud suite on fai-tiny and a model 8x wider.
    Verify {
        #[arg(long, default_value_t = 256)]
        tokens: u32,
        /// Prompts in the fraud suite (two cases of each kind per prompt).
        #[arg(long, default_value_t = 50)]
        prompts: usize,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: fai_engine::DeviceChoice,
        #[arg(long)]
        json: bool,
    },
    /// The checks for a GPU machine, in priority order, each result written as soon as
    /// it is known: CUDA against CPU (answers made on one replayed on the other), then
    /// the engine and verify benchmarks on the GPU at the 1B and 8B shapes.
    GpuCheck {
        /// The device checked (the CPU is the reference).
        #[arg(long, default_value = "cuda")]
        device: fai_engine::DeviceChoice,
        /// A file that receives one JSON line per result (besides stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Answers per model and mode in the agreement checks.
        #[arg(long, default_value_t = 100)]
        answers: usize,
        /// Stop after the agreement checks.
        #[arg(long)]
        quick: bool,
    },
    /// Assembling and verifying an inference block of receipts against raw signature checks.
    Poi {
        /// Receipts in the block.
        #[arg(long, default_value_t = 1000)]
        receipts: usize,
        /// Repetitions; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Time to first token through POST /v2/inference against the engine's own, and the
    /// time a transaction takes to reach all of five local nodes by gossip.
    Rpc {
        /// Requests measured (the median is reported).
        #[arg(long, default_value_t = 15)]
        requests: usize,
        /// Transactions gossiped (the median and 99th percentile are reported).
        #[arg(long, default_value_t = 200)]
        gossip_txs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Connecting a block of 2,000 transactions against raw signature verification.
    Validate {
        /// Transactions in the block.
        #[arg(long, default_value_t = 2000)]
        txs: usize,
        /// Repetitions; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The VM payload of a wallet command of the inference layer, and a phrase saying it.
fn vm_payload(
    cmd: &WalletCommand,
    network: fai_primitives::Network,
) -> Result<(fai_inference_chain::vmtx::VmPayload, String)> {
    use fai_clarity::Value;
    Ok(match cmd {
        WalletCommand::Transfer {
            to, amount, memo, ..
        } => {
            let to = Address::parse_for(to, network)?;
            let amount: fai_primitives::Amount = amount.parse().context("amount")?;
            anyhow::ensure!(memo.len() <= 34, "--memo may have at most 34 bytes");
            (
                fai_inference_chain::vmtx::VmPayload::Transfer {
                    to: to.key_hash,
                    amount,
                    memo: memo.as_bytes().to_vec(),
                },
                format!("sent {amount} to {to}"),
            )
        }
        WalletCommand::Stake { amount, cycles, .. } => {
            let amount: fai_primitives::Amount = amount.parse().context("amount")?;
            anyhow::ensure!((1..=12).contains(cycles), "--cycles must be 1 to 12");
            (
                wallet::boot_call(
                    "staking",
                    "stake",
                    &[
                        Value::UInt(u128::from(amount.units())),
                        Value::UInt(u128::from(*cycles)),
                    ],
                ),
                format!("staked {amount} for {cycles} cycle(s)"),
            )
        }
        WalletCommand::Unstake { .. } => (
            wallet::boot_call("staking", "unstake", &[]),
            "unstaked".to_string(),
        ),
        WalletCommand::Rate { txid, score, .. } => {
            anyhow::ensure!((1..=5).contains(score), "the score must be 1 to 5");
            let tx: fai_primitives::Hash256 = txid.parse().context("the inference txid")?;
            let tx = Value::buff_from(tx.0.to_vec()).map_err(|e| anyhow::anyhow!("{e}"))?;
            (
                wallet::boot_call("reputation", "rate", &[tx, Value::UInt(u128::from(*score))]),
                format!("rated {txid} {score}/5"),
            )
        }
        _ => anyhow::bail!("not an inference-layer command"),
    })
}

/// How this program was started, with the flags that name its configuration and data:
/// a wallet command to the same node needs them.
fn invocation(cli: &Cli) -> String {
    let mut out = std::env::args()
        .next()
        .unwrap_or_else(|| "infer-node".to_string());
    if let Some(config) = &cli.config {
        out.push_str(&format!(" --config {}", config.display()));
    }
    if let Some(dir) = &cli.datadir {
        out.push_str(&format!(" --datadir {}", dir.display()));
    }
    out
}

/// Prints a benchmark's report: its JSON with `json`, else the line for people.
fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    line: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", line());
    }
    Ok(())
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.datadir {
        config.node.data_dir = dir.display().to_string();
    }
    Ok(config)
}

fn init_logging(level: &str) {
    // libp2p's own chatter (its peer id, a lone node's failed DHT bootstrap) stays out of
    // the log unless RUST_LOG asks for it; the node logs what operators need.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},libp2p_swarm=warn,libp2p_kad=error")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Openapi { markdown } => {
            let doc = rpc::docs::openapi_json();
            if *markdown {
                print!("{}", rpc::docs::markdown(&doc));
            } else {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
            Ok(())
        }
        Command::Devnet {
            nodes,
            rpc_port,
            p2p_port,
        } => {
            init_logging("info");
            let base = match &cli.datadir {
                Some(dir) => dir.clone(),
                None => crate::config::expand_home("~/.infer-node/devnet-nodes"),
            };
            let program = std::env::current_exe().context("cannot find this program's path")?;
            devnet::run(
                &devnet::Options {
                    nodes: *nodes,
                    base,
                    rpc_port: *rpc_port,
                    p2p_port: *p2p_port,
                },
                &program,
            )
        }
        Command::Start => {
            let config = load_config(&cli)?;
            init_logging(&config.log.level);
            node::run(config, invocation(&cli))
        }
        Command::Init => {
            let config = load_config(&cli)?;
            let network = config.network();
            let dir = config.data_dir();
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
            let (key, created) = keys::load_or_create(&dir, keys::NODE_KEY)?;
            let chain = node::open_chain(&dir, network)?;
            println!("data directory: {}", dir.display());
            println!("network:        {network}");
            println!("genesis:        {}", chain.params().genesis_hash());
            println!("ledger height:  {}", chain.height());
            println!(
                "node key:       {} ({})",
                Address::from_public_key(network, &key.public_key()),
                if created { "created" } else { "existing" }
            );
            Ok(())
        }
        Command::Keys(cmd) => {
            let config = load_config(&cli)?;
            let network = config.network();
            let dir = config.data_dir();
            let (name, key, created) = match cmd {
                KeysCommand::New { name } => (name, keys::create(&dir, name)?, true),
                KeysCommand::Show { name } => (name, keys::load(&dir, name)?, false),
            };
            if created {
                println!("created {}", keys::key_path(&dir, name)?.display());
            }
            println!("name:       {name}");
            println!(
                "address:    {}",
                Address::from_public_key(network, &key.public_key())
            );
            println!("public key: {}", key.public_key());
            Ok(())
        }
        Command::Wallet(cmd) => {
            let config = load_config(&cli)?;
            let network = config.network();
            let dir = config.data_dir();
            let (name, address, mnemonic, json) = match cmd {
                WalletCommand::New { name, json } => {
                    let pass = wallet::passphrase(true)?;
                    let (w, m) = wallet::create(&dir, name, network, &pass)?;
                    (name, w.address, Some(m.to_string()), *json)
                }
                WalletCommand::Import { name, json } => {
                    let mut phrase = String::new();
                    std::io::stdin().read_line(&mut phrase)?;
                    let pass = wallet::passphrase(true)?;
                    (
                        name,
                        wallet::import(&dir, name, network, &phrase, &pass)?.address,
                        None,
                        *json,
                    )
                }
                WalletCommand::Address { name, json } => {
                    (name, wallet::address(&dir, name, network)?, None, *json)
                }
                WalletCommand::Balance { name, json } => {
                    let address = wallet::address(&dir, name, network)?;
                    let mut v = http_client::call(
                        &config.rpc.listen,
                        "GET",
                        &format!("/v2/ledger/accounts/{address}"),
                        None,
                    )?;
                    let layer2 = http_client::call(
                        &config.rpc.listen,
                        "GET",
                        &format!("/v2/inference-chain/accounts/{address}"),
                        None,
                    )?;
                    if *json {
                        v["inference"] = layer2;
                        println!("{v}");
                    } else {
                        println!(
                            "ledger:          {} spendable, {} base units maturing, {} outputs, at height {}",
                            v["balance"].as_str().unwrap_or("?"),
                            v["immature_units"],
                            v["utxos"],
                            v["height"]
                        );
                        let units = layer2["balance_units"].as_u64().unwrap_or(0);
                        println!(
                            "inference layer: {}, nonce {}, stake {}",
                            fai_primitives::Amount::from_units(units)
                                .unwrap_or(fai_primitives::Amount::ZERO),
                            layer2["nonce"],
                            if layer2["stake"].is_null() {
                                "none".to_string()
                            } else {
                                layer2["stake"].to_string()
                            }
                        );
                        println!("address:         {address}");
                    }
                    return Ok(());
                }
                WalletCommand::Send {
                    to,
                    amount,
                    fee,
                    name,
                    json,
                } => {
                    let to = Address::parse_for(to, network)?;
                    let amount: fai_primitives::Amount = amount.parse().context("amount")?;
                    let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let txid = wallet::send(&config.rpc.listen, network, &w, to, amount, fee)?;
                    if *json {
                        println!("{}", serde_json::json!({"txid": txid}));
                    } else {
                        println!("sent {amount} to {to}: transaction {txid}");
                    }
                    return Ok(());
                }
                WalletCommand::Transfer {
                    name, fee, json, ..
                }
                | WalletCommand::Stake {
                    name, fee, json, ..
                }
                | WalletCommand::Unstake { name, fee, json }
                | WalletCommand::Rate {
                    name, fee, json, ..
                } => {
                    let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
                    let (payload, what) = vm_payload(cmd, network)?;
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let txid = wallet::vm_send(&config.rpc.listen, &w, payload, fee)?;
                    if *json {
                        println!("{}", serde_json::json!({"txid": txid}));
                    } else {
                        println!("{what}: inference-layer transaction {txid} (it runs in the next inference block)");
                    }
                    return Ok(());
                }
                WalletCommand::History { blocks, name, json } => {
                    let address = wallet::address(&dir, name, network)?;
                    let v = http_client::call(
                        &config.rpc.listen,
                        "GET",
                        &format!("/v2/accounts/{address}/history?blocks={blocks}"),
                        None,
                    )?;
                    if *json {
                        println!("{v}");
                        return Ok(());
                    }
                    println!(
                        "{address}, ledger blocks {} to {}:",
                        v["from_height"], v["to_height"]
                    );
                    // (list, its height field, its amount field)
                    for (layer, height, amount) in [
                        ("ledger", "height", "received_units"),
                        ("inference", "inference_height", "amount_units"),
                    ] {
                        for item in v[layer].as_array().into_iter().flatten() {
                            let units = item[amount].as_u64().unwrap_or(0);
                            println!(
                                "  {layer:<9} height {:>7}  {:<9} {}  {}",
                                item[height],
                                item["kind"].as_str().unwrap_or("?"),
                                item["txid"].as_str().unwrap_or("?"),
                                fai_primitives::Amount::from_units(units)
                                    .unwrap_or(fai_primitives::Amount::ZERO)
                            );
                        }
                    }
                    return Ok(());
                }
                WalletCommand::Register {
                    model,
                    fee,
                    name,
                    json,
                } => {
                    let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
                    let mut models = Vec::new();
                    for m in model {
                        let id: [u8; 32] = hex::decode(m)
                            .ok()
                            .and_then(|b| b.try_into().ok())
                            .context("--model must be 64 hex digits")?;
                        models.push(id);
                    }
                    if models.is_empty() {
                        let info = http_client::call(&config.rpc.listen, "GET", "/v2/info", None)?;
                        let id = info["models"][0]["id"]
                            .as_str()
                            .and_then(|h| hex::decode(h).ok())
                            .and_then(|b| b.try_into().ok())
                            .context("the node serves no model; name one with --model")?;
                        models.push(id);
                    }
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let txid = wallet::register(&config.rpc.listen, network, &w, &models, fee)?;
                    if *json {
                        println!("{}", serde_json::json!({"txid": txid}));
                    } else {
                        println!("register sent: ledger transaction {txid}; once mined, commit with `wallet commit HEIGHT:INDEX` (its block height and position)");
                    }
                    return Ok(());
                }
                WalletCommand::Commit {
                    register,
                    bid,
                    fee,
                    name,
                    json,
                } => {
                    let (height, index) = register
                        .split_once(':')
                        .context("the register reference is HEIGHT:INDEX")?;
                    let register = fai_inference_chain::ops::RegisterRef {
                        height: height.parse().context("the register height")?,
                        tx_index: index.parse().context("the register index")?,
                    };
                    let bid: fai_primitives::Amount = bid.parse().context("--bid")?;
                    anyhow::ensure!(bid.units() > 0, "--bid must be more than zero");
                    let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let txid = wallet::commit(&config.rpc.listen, network, &w, register, bid, fee)?;
                    if *json {
                        println!("{}", serde_json::json!({"txid": txid}));
                    } else {
                        println!("commit sent: ledger transaction {txid}, bidding {bid} for the next ledger block");
                    }
                    return Ok(());
                }
                WalletCommand::PegIn {
                    amount,
                    to,
                    fee,
                    name,
                    json,
                } => {
                    let amount: fai_primitives::Amount = amount.parse().context("amount")?;
                    let fee: fai_primitives::Amount = fee.parse().context("--fee")?;
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let to = match to {
                        Some(t) => Address::parse_for(t, network)?,
                        None => w.address,
                    };
                    let txid = wallet::peg_in(&config.rpc.listen, network, &w, to, amount, fee)?;
                    if *json {
                        println!(
                            "{}",
                            serde_json::json!({"txid": txid, "to": to.to_string()})
                        );
                    } else {
                        println!("pegged in {amount} for {to}: ledger transaction {txid}; the inference layer credits it six ledger blocks after it is mined");
                    }
                    return Ok(());
                }
                WalletCommand::Infer {
                    prompt,
                    model,
                    max_fee,
                    max_tokens,
                    temperature,
                    seed,
                    system,
                    name,
                    json,
                } => {
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let request = wallet::InferRequest {
                        system: system.clone(),
                        context: Vec::new(),
                        prompt: prompt.clone(),
                        model: model.clone(),
                        max_fee: max_fee.parse().context("--max-fee")?,
                        max_tokens: *max_tokens,
                        temperature: *temperature,
                        seed: seed.unwrap_or_else(rand::random),
                        nonce: wallet::next_nonce(&config.rpc.listen, &w.address)?,
                    };
                    let mut out = std::io::stdout().lock();
                    let quiet = *json;
                    let result = wallet::infer(&config.rpc.listen, &w, &request, |piece| {
                        if !quiet {
                            use std::io::Write;
                            let _ = out.write_all(models::printable(piece).as_bytes());
                            let _ = out.flush();
                        }
                    })?;
                    drop(out);
                    if *json {
                        println!("{}", result);
                    } else {
                        println!(
                            "\n[receipt: transaction {}, {} tokens, node {}]",
                            result["txid"].as_str().unwrap_or("?"),
                            result["tokens"],
                            result["node"].as_str().unwrap_or("?")
                        );
                    }
                    return Ok(());
                }
                WalletCommand::Serve {
                    listen,
                    max_fee,
                    name,
                } => {
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let proxy = wallet_serve::Proxy::new(
                        config.rpc.listen.clone(),
                        w,
                        name.clone(),
                        max_fee.parse().context("--max-fee")?,
                    );
                    return wallet_serve::run(proxy, listen);
                }
                WalletCommand::SignMessage {
                    message,
                    name,
                    json,
                } => {
                    let pass = wallet::passphrase(false)?;
                    let w = wallet::open(&dir, name, network, &pass)?;
                    let signature = w.key.sign(&wallet::message_digest(message));
                    let public_key = w.key.public_key().to_string();
                    let signature = hex::encode(signature.0);
                    if *json {
                        println!(
                            "{}",
                            serde_json::json!({"address": w.address.to_string(), "public_key": public_key, "signature": signature})
                        );
                    } else {
                        println!(
                            "address:    {}\npublic key: {public_key}\nsignature:  {signature}",
                            w.address
                        );
                    }
                    return Ok(());
                }
            };
            if json {
                let mut v = serde_json::json!({"name": name, "address": address.to_string()});
                if let Some(m) = &mnemonic {
                    v["mnemonic"] = serde_json::json!(m);
                }
                println!("{v}");
            } else {
                println!("wallet:  {name}");
                println!("address: {address}");
                if let Some(m) = mnemonic {
                    println!("mnemonic (write it down; anyone who has it owns the wallet):\n  {m}");
                }
            }
            Ok(())
        }
        Command::Models(cmd) => {
            let config = load_config(&cli)?;
            let dir = config.data_dir();
            match cmd {
                ModelsCommand::List => models::list(&dir),
                ModelsCommand::Import {
                    path,
                    tokenizer,
                    name,
                    price,
                } => models::import(&dir, path, tokenizer.as_deref(), name.as_deref(), price),
                ModelsCommand::Run {
                    model,
                    prompt,
                    system,
                    max_tokens,
                    temperature,
                    top_p,
                    top_k,
                    seed,
                    stop,
                    device,
                } => models::run(
                    &dir,
                    model,
                    system,
                    prompt,
                    fai_engine::SamplingParams {
                        max_tokens: *max_tokens,
                        temperature: *temperature,
                        top_p: *top_p,
                        top_k: *top_k,
                        seed: *seed,
                        stop: stop.clone(),
                    },
                    *device,
                ),
            }
        }
        Command::Bench(BenchCommand::Pow {
            threads,
            seconds,
            json,
        }) => {
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let r = bench::pow(threads, *seconds);
            print_report(*json, &r, || {
                format!(
                    "pow: {:.2} MH/s per thread ({:.2} MH/s on {} threads); raw SHA-256 {:.2} M compressions/s per thread; ratio {:.3} (goal >= 0.9)",
                    r.hashes_per_sec / 1e6,
                    r.total_hashes_per_sec / 1e6,
                    r.threads,
                    r.sha256_compressions_per_sec / 1e6,
                    r.ratio
                )
            })?;
            Ok(())
        }
        Command::Bench(BenchCommand::Engine {
            prefill,
            decode,
            device,
            shape,
            dtype,
            streams,
            json,
        }) => {
            let mut opts = bench_engine::EngineOptions::new(
                *device,
                shape,
                (*prefill).clamp(1, 900),
                (*decode).clamp(1, 100),
            );
            opts.streams = streams
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<usize>().map(|n| n.clamp(1, 256)))
                .collect::<Result<_, _>>()
                .context("--streams: numbers separated by commas")?;
            if !dtype.is_empty() {
                opts.dtypes = dtype
                    .iter()
                    .map(|d| bench_engine::parse_dtype(d))
                    .collect::<Result<_>>()?;
            }
            let r = bench_engine::engine(&opts)?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{}", bench_engine::engine_lines(&r));
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Verify {
            tokens,
            prompts,
            device,
            json,
        }) => {
            let r =
                bench_engine::verify(*device, (*tokens).clamp(1, 900), (*prompts).clamp(2, 500))?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{}", bench_engine::verify_lines(&r));
            }
            Ok(())
        }
        Command::Bench(BenchCommand::GpuCheck {
            device,
            out,
            answers,
            quick,
        }) => bench_gpu::run(*device, out.as_deref(), (*answers).clamp(1, 1000), *quick),
        Command::Bench(BenchCommand::Poi {
            receipts,
            runs,
            json,
        }) => {
            anyhow::ensure!(
                (1..=10_000).contains(receipts),
                "--receipts must be between 1 and 10000"
            );
            let r = bench_poi::poi(*receipts, *runs)?;
            print_report(*json, &r, || {
                format!(
                    "poi: block of {} receipts assembled in {:.1} ms, verified in {:.1} ms = {:.0} receipts/s; raw ECDSA verify {:.0}/s on one thread; ratio {:.2} (goal >= 0.5; {} threads)",
                    r.receipts,
                    r.assemble_ms,
                    r.verify_ms,
                    r.receipts_per_sec,
                    r.sig_verifies_per_sec,
                    r.ratio,
                    r.threads
                )
            })?;
            Ok(())
        }
        Command::Bench(BenchCommand::Network {
            nodes,
            requests,
            keep,
            json,
        }) => {
            anyhow::ensure!(
                (1..=1000).contains(requests),
                "--requests must be between 1 and 1000"
            );
            let r = bench_network::network(*nodes, *requests, *keep)?;
            print_report(*json, &r, || {
                format!(
                    "network: {:.2} inference transactions settled per second over {} nodes ({} requests: {} accepted, {} rejected, {} without quorum, {} dropped, in {:.1} s; settled {:.2} s after the receipt at the median); the engine alone: {:.2} per second; ratio {:.2} (goal >= 0.5)",
                    r.settled_per_sec, r.nodes, r.requests, r.accepted, r.rejected, r.unconfirmed, r.dropped, r.seconds, r.settle_latency_s, r.engine_per_sec, r.ratio
                )
            })?;
            Ok(())
        }
        Command::Bench(BenchCommand::Rpc {
            requests,
            gossip_txs,
            json,
        }) => {
            anyhow::ensure!(
                (1..=1000).contains(requests),
                "--requests must be between 1 and 1000"
            );
            anyhow::ensure!(
                (1..=5000).contains(gossip_txs),
                "--gossip-txs must be between 1 and 5000"
            );
            let r = bench_rpc::rpc(*requests)?;
            let g = bench_gossip::gossip(*gossip_txs)?;
            if *json {
                let mut all = serde_json::to_value(&r)?;
                if let (Some(all), serde_json::Value::Object(g)) =
                    (all.as_object_mut(), serde_json::to_value(&g)?)
                {
                    all.extend(g);
                }
                println!("{all}");
            } else {
                println!(
                    "rpc: time to first token {:.2} ms through POST /v2/inference, {:.2} ms in the engine; overhead {:.2} ms (median of {}; goal <= 2 ms)",
                    r.rpc_ttft_ms, r.engine_ttft_ms, r.overhead_ms, r.requests
                );
                println!(
                    "gossip: a transaction reaches all {} nodes in {:.2} ms (median), {:.2} ms (p99) over {} transactions; one hop's floor {:.2} ms; ratio {:.2}",
                    g.nodes, g.gossip_p50_ms, g.gossip_p99_ms, g.transactions, g.gossip_floor_ms, g.gossip_ratio
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Validate { txs, runs, json }) => {
            anyhow::ensure!(
                *txs >= 1 && *txs <= 5000,
                "--txs must be between 1 and 5000"
            );
            let r = bench::validate(*txs, *runs)?;
            print_report(*json, &r, || {
                format!(
                    "validate: {} txs connected in {:.1} ms = {:.0} txs/s; raw ECDSA verify {:.0}/s on one thread; ratio {:.2} (goal >= 0.7; {} threads)",
                    r.transactions,
                    r.connect_seconds * 1e3,
                    r.txs_per_sec,
                    r.sig_verifies_per_sec,
                    r.ratio,
                    r.threads
                )
            })?;
            Ok(())
        }
    }
}
