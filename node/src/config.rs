//! The node's configuration: a TOML file with one table per part of the node. Unknown
//! keys are refused with the key's name and line, so a typo never passes silently.
//! Networks, amounts, addresses, multiaddresses and the log level are parsed into their
//! types as the file is read (an error names the key and its line); the checks that
//! relate keys (an address of the configured network, say) run right after. With no file, the devnet
//! configuration built into the binary is used.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use fai_primitives::{Amount, Network};
use serde::{Deserialize, Deserializer};

/// A value read from its text form through its type's `FromStr`.
fn parsed<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    // The error shows the key's line and value; the type says what is wrong with it.
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// An optional value read through its type's `FromStr`: empty is none.
fn optional<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// A list of values read through their type's `FromStr`.
fn parsed_list<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// A peer to dial: a multiaddress ending in `/p2p/<peer id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    pub peer: libp2p::PeerId,
    pub address: libp2p::Multiaddr,
}

impl FromStr for PeerAddress {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let (peer, address) = fai_network::parse_peer_address(text)?;
        Ok(PeerAddress { peer, address })
    }
}

impl Display for PeerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.address.fmt(f)
    }
}

/// An optional amount: empty is none, and zero is refused (leave it empty instead).
fn optional_amount<'de, D>(d: D) -> std::result::Result<Option<Amount>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let amount: Amount = text.parse().map_err(serde::de::Error::custom)?;
    if amount.units() == 0 {
        return Err(serde::de::Error::custom(
            "must be more than zero (or empty)",
        ));
    }
    Ok(Some(amount))
}

/// `thousandths` thousandths of a FAI.
fn milli_fai(thousandths: u64) -> Amount {
    Amount::ONE_FAI
        .checked_mul(thousandths)
        .and_then(|a| a.checked_div(1000))
        .unwrap_or(Amount::ZERO)
}

/// The devnet configuration, built in.
pub const DEVNET_TOML: &str = include_str!("../../conf/devnet.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    #[serde(default)]
    pub mining: MiningSection,
    #[serde(default)]
    pub mempool: MempoolSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub rpc: RpcSection,
    #[serde(default)]
    pub engine: EngineSection,
    #[serde(default)]
    pub p2p: P2pSection,
    #[serde(default)]
    pub inference: InferenceSection,
    #[serde(default)]
    pub dev_wallet: DevWalletSection,
    #[serde(default)]
    pub testing: TestingSection,
    /// Warnings about deprecated keys found while parsing, logged at start.
    #[serde(skip)]
    pub deprecations: Vec<String>,
}

/// The inference engine: where it runs, what it serves, how much work it takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// `auto` (a CUDA GPU when the binary has CUDA and one is present, else the CPU),
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Models of the model store this node sells inference on (each must be approved in
    /// the model registry); the built-in fai-tiny by default.
    #[serde(default = "default_serve")]
    pub serve: Vec<String>,
    /// Engine worker threads per served model, each decoding a batch of requests.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Inference requests that may wait for a worker before the node answers "busy".
    #[serde(default)]
    pub queue: Option<usize>,
    /// Requests a worker decodes together (continuous batching); 1 decodes one at a time.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// CPU threads the engine's tensor operations use (generation and the verifier's
    /// replays share them); the machine's cores by default. Nodes that share a machine
    /// split its cores: threads that outnumber the cores spin while they wait for each
    /// other.
    #[serde(default)]
    pub threads: Option<usize>,
}

fn default_device() -> String {
    "auto".into()
}
fn default_serve() -> Vec<String> {
    vec!["fai-tiny".into()]
}
fn default_max_batch() -> usize {
    fai_engine::scheduler::DEFAULT_MAX_BATCH
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            device: default_device(),
            serve: default_serve(),
            workers: None,
            queue: None,
            max_batch: default_max_batch(),
            threads: None,
        }
    }
}

impl EngineSection {
    /// Worker threads per model.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or(1)
    }

    /// Requests that may wait.
    pub fn queue(&self) -> usize {
        self.queue.unwrap_or_else(default_queue)
    }

    /// The device asked for.
    pub fn device(&self) -> Result<fai_engine::DeviceChoice> {
        self.device.parse().context("engine.device")
    }
}

/// Misbehaviour for tests of the network's defences: refused unless the program was
/// built with the `test-cheats` feature (never in a release an operator runs), and on
/// mainnet and testnet always.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingSection {
    /// Serve forged outputs: the tokens of each answer are replaced by others, which
    /// the receipt signs as if generated.
    #[serde(default)]
    pub forge_outputs: bool,
    /// Serve requests whatever the sender can pay (tests of other things than payment).
    #[serde(default)]
    pub serve_unfunded: bool,
    /// Verify lazily: vote to accept every inference without replaying it (what the
    /// verifiers' audits catch).
    #[serde(default)]
    pub lazy_verifier: bool,
    /// Count every model's replay at this many microseconds per unit of work instead of
    /// what the verifier measures (0: measured), so that a test of the replay budgets
    /// does not depend on how loaded the machine is.
    #[serde(default)]
    pub replay_us_per_unit: u64,
}

/// A wallet for trying the network, made by the node at its first start and funded
/// from its mining rewards: devnet and regtest only (its passphrase is in the file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevWalletSection {
    /// The wallet's name (wallets/NAME.json in the data dir); empty: no dev wallet.
    #[serde(default)]
    pub name: String,
    /// Its keystore's passphrase, at least 8 characters.
    #[serde(default)]
    pub passphrase: String,
    /// Paid to it on the ledger while it has no ledger coin and an untouched
    /// inference-layer account.
    #[serde(default, deserialize_with = "optional_amount")]
    pub ledger: Option<Amount>,
    /// Pegged in for it on the inference layer in the same transaction.
    #[serde(default, deserialize_with = "optional_amount")]
    pub inference: Option<Amount>,
}

impl DevWalletSection {
    /// The wallet's name and what to fund it with on each layer, when there is one.
    pub fn gift(&self) -> Option<(String, Amount, Amount)> {
        if self.name.is_empty() {
            return None;
        }
        Some((
            self.name.clone(),
            self.ledger.unwrap_or(Amount::ZERO),
            self.inference.unwrap_or(Amount::ZERO),
        ))
    }
}

/// The inference-node role on the proof-of-inference chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSection {
    /// Register as an inference node, bid at every ledger block, produce won tenures.
    #[serde(default)]
    pub produce: bool,
    /// The bid paid at every ledger block, e.g. "0.001 FAI".
    #[serde(default = "default_bid", deserialize_with = "parsed")]
    pub bid: Amount,
    /// The price per million output tokens listed in the node registry; requests whose
    /// max fee does not cover it for their max tokens are refused.
    #[serde(default = "default_price", deserialize_with = "parsed")]
    pub price: Amount,
    /// The bond deposited in the node registry; empty: the network's minimum.
    #[serde(default, deserialize_with = "optional_amount")]
    pub bond: Option<Amount>,
    /// Stake this much as a verifier (the five largest stakes verify); empty: no stake.
    #[serde(default, deserialize_with = "optional_amount")]
    pub stake: Option<Amount>,
    /// What the node moves from the ledger to the inference layer (at least what the
    /// bond, the stake and their fees need) when it has too little there.
    #[serde(default = "default_peg_in", deserialize_with = "parsed")]
    pub peg_in: Amount,
    /// An inference node audits the verifiers (decision 0004): at each new inference tip
    /// it plants a forgery with a chance of one in this many (0: never), and has the
    /// verifiers that accept it slashed.
    #[serde(default = "default_audit_every")]
    pub audit_every: u32,
    /// Regtest only: models the inference chain approves at genesis besides fai-tiny,
    /// each a name in the model store or a GGUF file's path. They enter the genesis
    /// block's id: every node of the network must list the same ones.
    #[serde(default)]
    pub genesis_models: Vec<String>,
}

fn default_audit_every() -> u32 {
    100
}

fn default_bid() -> Amount {
    milli_fai(1)
}

fn default_price() -> Amount {
    milli_fai(10)
}

fn default_peg_in() -> Amount {
    milli_fai(5_000)
}

impl Default for InferenceSection {
    fn default() -> Self {
        InferenceSection {
            produce: false,
            bid: default_bid(),
            price: default_price(),
            bond: None,
            stake: None,
            peg_in: default_peg_in(),
            audit_every: default_audit_every(),
            genesis_models: Vec::new(),
        }
    }
}

/// The peer-to-peer network (libp2p over TCP with noise and yamux).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Multiaddress to listen on. Empty: the network's default (see
    /// [`P2pSection::listen_address`]).
    #[serde(default, deserialize_with = "optional")]
    pub listen: Option<libp2p::Multiaddr>,
    /// Peers to contact at start, as multiaddresses ending in `/p2p/<peer id>`.
    #[serde(default, deserialize_with = "parsed_list")]
    pub bootstrap: Vec<PeerAddress>,
    /// Connections kept open at most, in and out together.
    #[serde(default = "default_max_peers")]
    pub max_peers: u32,
    /// How long a peer that sent invalid data stays banned, in seconds.
    #[serde(default = "default_ban_seconds")]
    pub ban_seconds: u64,
    /// Sync and payload requests served per peer and second (a burst of 4x is allowed).
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
}

fn default_max_peers() -> u32 {
    50
}
fn default_ban_seconds() -> u64 {
    3600
}
fn default_requests_per_second() -> u32 {
    100
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            enabled: true,
            listen: None,
            bootstrap: Vec::new(),
            max_peers: default_max_peers(),
            ban_seconds: default_ban_seconds(),
            requests_per_second: default_requests_per_second(),
        }
    }
}

impl P2pSection {
    /// The address to listen on: `listen`, or the network's default (all interfaces on
    /// mainnet and testnet, loopback on devnet, a free loopback port on regtest).
    pub fn listen_address(&self, network: Network) -> libp2p::Multiaddr {
        use libp2p::multiaddr::Protocol;
        if let Some(listen) = &self.listen {
            return listen.clone();
        }
        let (ip, port) = match network {
            Network::Mainnet => ([0, 0, 0, 0], 7090),
            Network::Testnet => ([0, 0, 0, 0], 17090),
            Network::Devnet => ([127, 0, 0, 1], 27090),
            Network::Regtest => ([127, 0, 0, 1], 0),
        };
        libp2p::Multiaddr::empty()
            .with(Protocol::Ip4(ip.into()))
            .with(Protocol::Tcp(port))
    }
}

/// The RPC server (REST under /v2, loopback by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address and port to listen on.
    #[serde(default = "default_rpc_listen", deserialize_with = "parsed")]
    pub listen: std::net::SocketAddr,
    /// The largest request body accepted, in bytes.
    #[serde(default = "default_rpc_body")]
    pub max_body_bytes: usize,
    /// Deprecated: `engine.workers`.
    #[serde(default)]
    pub engine_workers: Option<usize>,
    /// Deprecated: `engine.queue`.
    #[serde(default)]
    pub engine_queue: Option<usize>,
    /// Bearer token of the admin calls (`/v2/admin/...`); empty turns them off.
    #[serde(default)]
    pub admin_token: String,
}

fn yes() -> bool {
    true
}
fn default_rpc_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 7080))
}
fn default_rpc_body() -> usize {
    1024 * 1024
}
fn default_queue() -> usize {
    8
}

impl Default for RpcSection {
    fn default() -> Self {
        RpcSection {
            enabled: true,
            listen: default_rpc_listen(),
            max_body_bytes: default_rpc_body(),
            engine_workers: None,
            engine_queue: None,
            admin_token: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// mainnet, testnet, devnet or regtest.
    #[serde(deserialize_with = "parsed")]
    pub network: Network,
    /// Where the chain, keys and logs live; "~" is the home directory.
    pub data_dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiningSection {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "one")]
    pub threads: usize,
    /// Pause after each block found, in milliseconds (paces regtest, where a block takes
    /// a few hashes).
    #[serde(default)]
    pub block_interval_ms: u64,
    /// Reward address; empty means the node key's address.
    #[serde(default, deserialize_with = "optional")]
    pub address: Option<fai_primitives::Address>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolSection {
    #[serde(default = "default_mempool_bytes")]
    pub max_bytes: usize,
    #[serde(default = "default_min_fee_rate")]
    pub min_fee_rate: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// error, warn, info, debug or trace.
    #[serde(default = "default_level", deserialize_with = "parsed")]
    pub level: tracing::Level,
}

fn one() -> usize {
    1
}
fn default_mempool_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_min_fee_rate() -> u64 {
    1_000
}
fn default_level() -> tracing::Level {
    tracing::Level::INFO
}

impl Default for MiningSection {
    fn default() -> Self {
        MiningSection {
            enabled: false,
            threads: 1,
            block_interval_ms: 0,
            address: None,
        }
    }
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            max_bytes: default_mempool_bytes(),
            min_fee_rate: default_min_fee_rate(),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_level(),
        }
    }
}

impl Config {
    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        // The path names the key (`mining.address`); toml's error shows its line and value.
        let mut config: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let key = e.path().to_string();
                anyhow::Error::new(e.into_inner()).context(format!("{key}: not a valid value"))
            })
            .with_context(|| format!("invalid configuration in {origin}"))?;
        config
            .migrate()
            .with_context(|| format!("invalid configuration in {origin}"))?;
        config
            .check()
            .with_context(|| format!("invalid configuration in {origin}"))?;
        Ok(config)
    }

    /// Reads the file at `path`, or the built-in devnet configuration for `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            None => Config::parse(DEVNET_TOML, "the built-in devnet configuration"),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read configuration file {}", p.display()))?;
                Config::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Moves deprecated keys to their new place, with a warning for each.
    fn migrate(&mut self) -> Result<()> {
        for (old, new, value, target) in [
            (
                "rpc.engine_workers",
                "engine.workers",
                self.rpc.engine_workers.take(),
                &mut self.engine.workers,
            ),
            (
                "rpc.engine_queue",
                "engine.queue",
                self.rpc.engine_queue.take(),
                &mut self.engine.queue,
            ),
        ] {
            let Some(value) = value else { continue };
            if target.is_some() {
                bail!("{old} and {new} are both set: keep only {new}");
            }
            *target = Some(value);
            self.deprecations.push(format!(
                "{old} is deprecated: write it as {new} = {value} in [engine]"
            ));
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if self.mining.threads == 0 || self.mining.threads > 1024 {
            bail!(
                "mining.threads must be between 1 and 1024, not {}",
                self.mining.threads
            );
        }
        if self.rpc.max_body_bytes < 1024 || self.rpc.max_body_bytes > 64 * 1024 * 1024 {
            bail!("rpc.max_body_bytes must be between 1024 and 67108864");
        }
        if !self.rpc.admin_token.is_empty() && self.rpc.admin_token.len() < 16 {
            bail!("rpc.admin_token must have at least 16 characters (or be empty to turn admin calls off)");
        }
        if self.engine.workers() == 0 || self.engine.workers() > 64 || self.engine.queue() > 4096 {
            bail!("engine.workers must be 1 to 64 and engine.queue at most 4096");
        }
        if self.engine.max_batch == 0 || self.engine.max_batch > 256 {
            bail!("engine.max_batch must be 1 to 256");
        }
        if self.engine.threads.is_some_and(|t| t == 0 || t > 1024) {
            bail!("engine.threads must be 1 to 1024 (or left out for the machine's cores)");
        }
        self.engine.device()?;
        if self.engine.serve.len() > 64 {
            bail!("engine.serve lists at most 64 models");
        }
        for name in &self.engine.serve {
            if name.is_empty() || name.len() > 128 {
                bail!("engine.serve: a model name has 1 to 128 characters");
            }
        }
        if !self.inference.genesis_models.is_empty() && self.network() != Network::Regtest {
            bail!("inference.genesis_models is for regtest only: elsewhere models are approved by the model registry's vote");
        }
        if self.inference.genesis_models.len() > 16 {
            bail!("inference.genesis_models lists at most 16 models");
        }
        for name in &self.inference.genesis_models {
            if name.is_empty() || name.len() > 128 {
                bail!("inference.genesis_models: a model name has 1 to 128 characters");
            }
        }
        if self.inference.bid.units() == 0 {
            bail!("inference.bid must be more than zero");
        }
        if self.inference.peg_in.units() == 0 {
            bail!("inference.peg_in must be more than zero");
        }
        if self.dev_wallet.gift().is_some() {
            if !matches!(self.network(), Network::Devnet | Network::Regtest) {
                bail!("dev_wallet is for devnet and regtest only: its passphrase is in the configuration");
            }
            if self.dev_wallet.passphrase.len() < 8 {
                bail!("dev_wallet.passphrase must have at least 8 characters");
            }
        }
        for (on, key) in [
            (self.testing.forge_outputs, "testing.forge_outputs"),
            (self.testing.serve_unfunded, "testing.serve_unfunded"),
            (self.testing.lazy_verifier, "testing.lazy_verifier"),
            (
                self.testing.replay_us_per_unit > 0,
                "testing.replay_us_per_unit",
            ),
        ] {
            if !on {
                continue;
            }
            if !cfg!(feature = "test-cheats") {
                bail!("{key} needs a program built with the test-cheats feature");
            }
            if !matches!(self.network(), Network::Devnet | Network::Regtest) {
                bail!("{key} is for devnet and regtest only");
            }
        }
        if self.mining.block_interval_ms > 3_600_000 {
            bail!("mining.block_interval_ms must be at most 3600000 (an hour)");
        }
        if self.p2p.max_peers == 0 || self.p2p.max_peers > 10_000 {
            bail!("p2p.max_peers must be between 1 and 10000");
        }
        if self.p2p.requests_per_second == 0 {
            bail!("p2p.requests_per_second must be at least 1");
        }
        if self.mempool.max_bytes < 1_000_000 {
            bail!("mempool.max_bytes must be at least 1000000 (one block)");
        }
        if let Some(address) = &self.mining.address {
            if address.network != self.network() {
                bail!(
                    "mining.address {address} is an address of {}, not of {}",
                    address.network,
                    self.network()
                );
            }
        }
        Ok(())
    }

    pub fn network(&self) -> Network {
        self.node.network
    }

    /// The data directory with "~" expanded.
    pub fn data_dir(&self) -> PathBuf {
        expand_home(&self.node.data_dir)
    }
}

/// Expands a leading "~" to $HOME.
pub fn expand_home(path: &str) -> PathBuf {
    expand_home_in(path, std::env::var_os("HOME"))
}

fn expand_home_in(path: &str, home: Option<std::ffi::OsString>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) => {
            let mut p = PathBuf::from(home);
            p.push(rest.trim_start_matches('/'));
            p
        }
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_outputs_need_a_test_build_and_a_test_network() {
        let with = |network: &str| {
            Config::parse(
                &format!(
                    "[node]\nnetwork = \"{network}\"\ndata_dir = \"/tmp/x\"\n[testing]\nforge_outputs = true\n"
                ),
                "test",
            )
        };
        for network in ["mainnet", "testnet"] {
            let err = format!("{:#}", with(network).unwrap_err());
            assert!(err.contains("testing.forge_outputs"), "{err}");
        }
        let regtest = with("regtest");
        if cfg!(feature = "test-cheats") {
            assert!(regtest.unwrap().testing.forge_outputs);
        } else {
            let err = format!("{:#}", regtest.unwrap_err());
            assert!(err.contains("test-cheats"), "{err}");
        }
    }

    #[test]
    fn every_shipped_config_file_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert_eq!(seen, 3, "devnet, testnet and mainnet.sample");
        let builtin = Config::load(None).unwrap();
        assert_eq!(builtin.network(), Network::Devnet);
        assert!(builtin.mining.enabled);
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let text = DEVNET_TOML.replace("threads = 1", "threads = 1\nthreadz = 2");
        let err = format!("{:#}", Config::parse(&text, "test.toml").unwrap_err());
        assert!(err.contains("threadz"), "{err}");
        assert!(err.contains("test.toml"), "{err}");
        let text = format!("{DEVNET_TOML}\n[rpcc]\nport = 1\n");
        let err = format!("{:#}", Config::parse(&text, "x").unwrap_err());
        assert!(err.contains("rpcc"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let bad_net = DEVNET_TOML.replace("network = \"devnet\"", "network = \"moon\"");
        let err = format!("{:#}", Config::parse(&bad_net, "x").unwrap_err());
        assert!(err.contains("unknown network"), "{err}");
        let bad_addr = DEVNET_TOML.replace("address = \"\"", "address = \"fai1nope\"");
        let err = format!("{:#}", Config::parse(&bad_addr, "x").unwrap_err());
        assert!(err.contains("mining.address"), "{err}");
        assert!(
            err.contains("address = \"fai1nope\"") && err.contains("checksum"),
            "{err}"
        );
        let zero = DEVNET_TOML.replace("threads = 1", "threads = 0");
        assert!(Config::parse(&zero, "x").is_err());
        assert!(Config::parse("not toml [", "x").is_err());
    }

    #[test]
    fn models_approved_at_genesis_by_configuration_are_for_regtest_only() {
        let listed = |text: &str| {
            text.replace(
                "[inference]",
                "[inference]\ngenesis_models = [\"wide.gguf\"]",
            )
        };
        let err = format!(
            "{:#}",
            Config::parse(&listed(DEVNET_TOML), "x").unwrap_err()
        );
        assert!(
            err.contains("inference.genesis_models is for regtest only"),
            "{err}"
        );
        let regtest = DEVNET_TOML.replace("network = \"devnet\"", "network = \"regtest\"");
        let c = Config::parse(&listed(&regtest), "x").unwrap();
        assert_eq!(c.inference.genesis_models, vec!["wide.gguf"]);
        let many = regtest.replace(
            "[inference]",
            &format!(
                "[inference]\ngenesis_models = [{}]",
                vec!["\"m\""; 17].join(", ")
            ),
        );
        let err = format!("{:#}", Config::parse(&many, "x").unwrap_err());
        assert!(err.contains("at most 16"), "{err}");
    }

    #[test]
    fn the_old_engine_keys_still_parse_with_a_warning() {
        let base = "[node]\nnetwork = \"regtest\"\ndata_dir = \"/tmp/x\"\n";
        let old = format!("{base}[rpc]\nengine_workers = 3\nengine_queue = 20\n");
        let c = Config::parse(&old, "old.toml").unwrap();
        assert_eq!((c.engine.workers(), c.engine.queue()), (3, 20));
        assert_eq!(c.deprecations.len(), 2);
        assert!(
            c.deprecations[0].contains("engine.workers"),
            "{:?}",
            c.deprecations
        );
        let both = format!("{old}\n[engine]\nworkers = 2\n");
        let err = format!("{:#}", Config::parse(&both, "x").unwrap_err());
        assert!(err.contains("keep only engine.workers"), "{err}");
        let new = format!(
            "{base}[engine]\ndevice = \"cpu\"\nworkers = 2\nserve = [\"fai-tiny\", \"llama-3b\"]\n"
        );
        let c = Config::parse(&new, "x").unwrap();
        assert!(c.deprecations.is_empty());
        assert_eq!(c.engine.workers(), 2);
        assert_eq!(c.engine.device().unwrap(), fai_engine::DeviceChoice::Cpu);
        assert_eq!(c.engine.serve, vec!["fai-tiny", "llama-3b"]);
        let shipped = Config::load(None).unwrap();
        assert!(
            shipped.deprecations.is_empty(),
            "the shipped files use [engine]"
        );
        assert_eq!(c.engine.threads, None, "the machine's cores");
        let split = format!("{base}[engine]\nthreads = 2\n");
        assert_eq!(Config::parse(&split, "x").unwrap().engine.threads, Some(2));
        let none = format!("{base}[engine]\nthreads = 0\n");
        let err = format!("{:#}", Config::parse(&none, "x").unwrap_err());
        assert!(err.contains("engine.threads"), "{err}");
        let bad = format!("{base}[engine]\ndevice = \"tpu\"\n");
        let err = format!("{:#}", Config::parse(&bad, "x").unwrap_err());
        assert!(
            err.contains("engine.device") && err.contains("cuda:N"),
            "{err}"
        );
    }

    #[test]
    fn amounts_are_parsed_once_when_read_and_errors_name_the_key() {
        let base = "[node]\nnetwork = \"regtest\"\ndata_dir = \"/tmp/x\"\n";
        let c = Config::parse(base, "x").unwrap();
        assert_eq!(c.network(), Network::Regtest);
        assert_eq!(c.inference.bid, "0.001 FAI".parse().unwrap());
        assert_eq!(c.inference.price, "0.01 FAI".parse().unwrap());
        assert_eq!(c.inference.peg_in, "5 FAI".parse().unwrap());
        assert_eq!((c.inference.bond, c.inference.stake), (None, None));
        let c = Config::parse(
            &format!("{base}[inference]\nstake = \"2.5 FAI\"\nbond = \"\"\n"),
            "x",
        )
        .unwrap();
        assert_eq!(c.inference.stake, Some("2.5 FAI".parse().unwrap()));
        assert_eq!(c.inference.bond, None);
        for (section, key, value, says) in [
            ("inference", "bid", "lots", "lots"),
            ("inference", "stake", "0 FAI", "more than zero"),
            ("inference", "peg_in", "", "peg_in"),
            ("dev_wallet", "ledger", "1 FAI 2", "1 FAI 2"),
            ("rpc", "listen", "localhost:7080", "socket address"),
            ("p2p", "listen", "tcp/7090", "multiaddr"),
            ("log", "level", "loud", "level"),
        ] {
            let text = format!("{base}[{section}]\n{key} = \"{value}\"\n");
            let err = format!("{:#}", Config::parse(&text, "x").unwrap_err());
            assert!(
                err.contains(&format!("{section}.{key}")) && err.contains(says),
                "{key} = {value:?}: {err}"
            );
        }
    }

    /// Addresses, multiaddresses and the log level arrive typed; what relates two keys is
    /// checked right after (the mining address must be of the configured network).
    #[test]
    fn addresses_and_levels_are_parsed_once_when_read() {
        let base = "[node]\nnetwork = \"regtest\"\ndata_dir = \"/tmp/x\"\n";
        let c = Config::parse(base, "x").unwrap();
        assert_eq!(c.rpc.listen.to_string(), "127.0.0.1:7080");
        assert_eq!(c.p2p.listen, None);
        assert_eq!(
            c.p2p.listen_address(Network::Regtest).to_string(),
            "/ip4/127.0.0.1/tcp/0"
        );
        assert_eq!(
            (c.mining.address, c.log.level),
            (None, tracing::Level::INFO)
        );
        let peer = libp2p::PeerId::random();
        let mine = fai_primitives::Address::new(Network::Regtest, fai_primitives::Hash160([7; 20]));
        let text = format!(
            "{base}[rpc]\nlisten = \"[::1]:9000\"\n[p2p]\nlisten = \"/ip4/0.0.0.0/tcp/7\"\n\
             bootstrap = [\"/ip4/10.0.0.1/tcp/7090/p2p/{peer}\"]\n\
             [mining]\naddress = \"{mine}\"\n[log]\nlevel = \"debug\"\n"
        );
        let c = Config::parse(&text, "x").unwrap();
        assert_eq!(c.rpc.listen.port(), 9000);
        assert_eq!(c.p2p.listen.unwrap().to_string(), "/ip4/0.0.0.0/tcp/7");
        assert_eq!(c.p2p.bootstrap.len(), 1);
        assert_eq!(c.p2p.bootstrap[0].peer, peer);
        assert_eq!(c.mining.address, Some(mine));
        assert_eq!(c.log.level, tracing::Level::DEBUG);
        let no_peer = format!("{base}[p2p]\nbootstrap = [\"/ip4/10.0.0.1/tcp/7090\"]\n");
        let err = format!("{:#}", Config::parse(&no_peer, "x").unwrap_err());
        assert!(err.contains("/p2p/<peer id>"), "{err}");
        let other =
            fai_primitives::Address::new(Network::Mainnet, fai_primitives::Hash160([7; 20]));
        let elsewhere = format!("{base}[mining]\naddress = \"{other}\"\n");
        let err = format!("{:#}", Config::parse(&elsewhere, "x").unwrap_err());
        assert!(
            err.contains("mining.address") && err.contains("mainnet"),
            "{err}"
        );
    }

    #[test]
    fn home_is_expanded() {
        std::env::set_var("HOME", "/home/op");
        assert_eq!(
            expand_home("~/.infer-node"),
            PathBuf::from("/home/op/.infer-node")
        );
        assert_eq!(expand_home("/abs"), PathBuf::from("/abs"));
    }
}
