//! `infer-node`: the full node of the FAI network, one command per file.
//!
//! `start` runs the node (start.rs), `init` prepares a data directory (init.rs), `keys`
//! manages key files, `wallet` holds FAI and buys inference, `models` lists, imports and
//! runs models, `devnet` starts a local network of node processes, `openapi` prints the
//! RPC's reference, `bench` measures this machine. This crate parses the command line and
//! prints; the work is done by the node library (`fai-node`) and the benchmarks
//! (`fai-bench`). Errors are printed with their causes and the process exits with status 1.

mod bench;
mod devnet;
mod init;
mod keys;
mod models;
mod openapi;
mod start;
mod wallet;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use fai_node::config::Config;
use tracing_subscriber::EnvFilter;

/// The full node of the FAI network: a proof-of-work ledger of FAI, and the
/// proof-of-inference chain where anyone with a GPU or CPU sells LLM inference and anyone
/// with a wallet buys it.
#[derive(Parser)]
#[command(name = "infer-node", version, about, long_about = None)]
pub(crate) struct Cli {
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
    Keys(keys::KeysCommand),
    /// Wallets: a BIP39 mnemonic in a passphrase-encrypted keystore (wallets/NAME.json).
    /// The passphrase is asked for, or read from FAI_WALLET_PASSPHRASE.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// List the models this node can run, or run one.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Measure what this machine does: mining, block validation, inference (engine,
    /// replay, GPU), inference blocks, the RPC, gossip and a local network under load.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
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

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Openapi { markdown } => openapi::run(*markdown),
        Command::Devnet {
            nodes,
            rpc_port,
            p2p_port,
        } => devnet::run(&cli, *nodes, *rpc_port, *p2p_port),
        Command::Start => start::run(&cli),
        Command::Init => init::run(&cli),
        Command::Keys(cmd) => keys::run(&cli, cmd),
        Command::Wallet(cmd) => wallet::run(&cli, cmd),
        Command::Models(cmd) => models::run(&cli, cmd),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// How this program was started, with the flags that name its configuration and data:
/// a wallet command to the same node needs them.
pub(crate) fn invocation(cli: &Cli) -> String {
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

pub(crate) fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.datadir {
        config.node.data_dir = dir.display().to_string();
    }
    Ok(config)
}

pub(crate) fn init_logging(level: &str) {
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
