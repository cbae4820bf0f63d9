//! The end-to-end suites (`tests/*.rs`) and the helpers they share: the path of the
//! `infer-node` binary they drive, free ports, requests through the node's client, the CLI with a
//! wallet passphrase, a child process killed on drop, (`net`) a local network of node
//! processes, and (`inproc`) a network of nodes in this process on a manual clock.
//!
//! The binary is not built by this package (Cargo builds a package's binaries only for its
//! own tests): `cargo test --workspace` builds it with the `infer-node` package, whose own
//! CLI tests need it, and `make test-e2e` builds it first. `INFER_NODE_BIN` names another.
//! `cargo test -p fai-tests` alone runs against whatever binary was built last: build it
//! first. The forging-node scenario needs a binary with `test-cheats` and runs only with
//! this package's `test-cheats` feature (`make test` turns both on).

pub mod inproc;
pub mod net;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::Duration;

/// The `infer-node` binary under test: `INFER_NODE_BIN`, else the one Cargo built next to
/// this test (`target/<profile>/infer-node`). Panics, saying how to build it, when it is
/// missing.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = match std::env::var_os("INFER_NODE_BIN") {
            Some(path) => PathBuf::from(path),
            None => {
                // A test runs as target/<profile>/deps/<name>-<hash>.
                let exe = std::env::current_exe().expect("the test's own path");
                let profile_dir = exe
                    .parent()
                    .and_then(Path::parent)
                    .expect("a test runs in target/<profile>/deps");
                profile_dir.join(format!("infer-node{}", std::env::consts::EXE_SUFFIX))
            }
        };
        assert!(
            path.is_file(),
            "no infer-node binary at {}: build it first (cargo build -p infer-node --features test-cheats), \
             or name one in INFER_NODE_BIN",
            path.display()
        );
        path
    })
}

/// A running node, killed when dropped.
pub struct Node {
    pub child: Child,
    pub port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// While the thread panics (a test failed), keeps `dir` on disk and says where it is.
pub fn keep_on_failure(dir: &mut Option<tempfile::TempDir>, what: &str) -> Option<PathBuf> {
    if !std::thread::panicking() {
        return None;
    }
    let kept = dir.take()?.keep();
    eprintln!("{what} kept in {}", kept.display());
    Some(kept)
}

/// What a test node does wrong, or checks, beyond its roles.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conduct {
    /// Serves forged answers (a `test-cheats` build).
    pub forge: bool,
    /// Votes to accept everything without replaying (a `test-cheats` build).
    pub lazy: bool,
    /// `inference.audit_every`: 0 (no audits, so that nothing but what a test does
    /// moves balances), unless a test audits.
    pub audit_every: u32,
    /// `testing.replay_us_per_unit`: what every replay is counted at (0: measured; a
    /// `test-cheats` build otherwise).
    pub replay_us_per_unit: u64,
}

/// The `[inference]`, `[dev_wallet]` and `[testing]` sections of a test node's
/// configuration: whether it produces and stakes (1 FAI), its dev wallet (name, ledger
/// gift, inference-layer gift; an empty name for none), and its conduct.
pub fn roles_toml(
    produce: bool,
    stake: bool,
    wallet: (&str, &str, &str),
    passphrase: &str,
    conduct: Conduct,
) -> String {
    let Conduct {
        forge,
        lazy,
        audit_every,
        replay_us_per_unit,
    } = conduct;
    let (name, ledger, inference) = wallet;
    let stake = if stake { "1 FAI" } else { "" };
    format!(
        r#"[inference]
produce = {produce}
stake = "{stake}"
audit_every = {audit_every}

[dev_wallet]
name = "{name}"
passphrase = "{passphrase}"
ledger = "{ledger}"
inference = "{inference}"

[testing]
forge_outputs = {forge}
lazy_verifier = {lazy}
replay_us_per_unit = {replay_us_per_unit}
"#
    )
}

/// The size of the verifier set and the number of registered inference nodes, read
/// through `get` (a node's `GET`, as JSON).
pub fn roles_on_chain(get: &dyn Fn(&str) -> serde_json::Value) -> (usize, usize) {
    let chain = get("/v2/inference-chain");
    let set = chain["verifier_set"].as_array().map_or(0, Vec::len);
    let registered = get("/v2/inference-nodes").as_array().map_or(0, Vec::len);
    (set, registered)
}

/// How many votes on inference block `block` the blocks after it carry, from its child
/// down to `settler` (the block that settled it), read through `get` (a node's `GET`, as
/// JSON). Panics when `settler` is not below `block` within 64 blocks.
pub fn votes_carried(get: impl Fn(&str) -> serde_json::Value, block: &str, settler: &str) -> u64 {
    let mut votes = 0u64;
    let mut at = settler.to_string();
    for _ in 0..64 {
        let b = get(&format!("/v2/inference-chain/blocks/{at}"));
        for entry in b["votes_by_block"].as_array().into_iter().flatten() {
            if entry["block"] == block {
                votes += entry["votes"].as_u64().unwrap_or(0);
            }
        }
        match b["parent"].as_str() {
            Some(parent) if parent == block => return votes,
            Some(parent) => at = parent.to_string(),
            None => break,
        }
    }
    panic!("{settler} is not within 64 blocks below {block}");
}

/// The inference escrow account's address on regtest: no key, only the consensus moves
/// its FAI.
pub fn escrow_address() -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"fai-inference-escrow/v1");
    let mut hash = [0u8; 20];
    hash.copy_from_slice(&digest[..20]);
    fai_primitives::Address::new(
        fai_primitives::Network::Regtest,
        fai_primitives::Hash160(hash),
    )
    .to_string()
}

/// Every FAI on the inference layer is somewhere known: the balances, stakes and bonds of
/// `addresses` (read through `get`, a node's `GET` as JSON) add up to the liquid supply.
pub fn assert_inference_layer_adds_up(
    get: &dyn Fn(&str) -> serde_json::Value,
    addresses: &[String],
) {
    let units = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let supply = units(&get("/v2/inference-chain")["liquid_supply_units"]);
    let mut held = 0u64;
    let mut parts = Vec::new();
    for address in addresses {
        let a = get(&format!("/v2/inference-chain/accounts/{address}"));
        let balance = units(&a["balance_units"]);
        let stake = units(&a["stake"]["amount"]);
        let bond = units(&a["inference_node"]["bond"]);
        parts.push(format!(
            "{address}: {balance} + stake {stake} + bond {bond}"
        ));
        held += balance + stake + bond;
    }
    assert_eq!(
        held,
        supply,
        "the inference layer's FAI do not add up to its liquid supply:\n{}",
        parts.join("\n")
    );
}

/// Inference `i` of a test's series: its prompt and seed, and the `wallet infer`
/// arguments that buy it (12 tokens at most, a max fee of 0.001 FAI, JSON out).
pub struct Purchase {
    prompt: String,
    seed: String,
}

impl Purchase {
    pub fn new(i: usize) -> Self {
        Purchase {
            prompt: format!("Question {i}: what does a verifier check?"),
            seed: i.to_string(),
        }
    }

    /// What it asks.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The arguments with which wallet `name` buys it.
    pub fn args<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        vec![
            "wallet",
            "infer",
            &self.prompt,
            "--name",
            name,
            "--max-fee",
            "0.001 FAI",
            "--max-tokens",
            "12",
            "--seed",
            &self.seed,
            "--json",
        ]
    }
}

/// `p2p.bootstrap`'s TOML value for one address, or none when it is empty.
pub fn toml_list(address: &str) -> String {
    if address.is_empty() {
        String::new()
    } else {
        format!("\"{address}\"")
    }
}

/// Whether `check` holds within `seconds` (asked every 200 ms, and once more at the end).
pub fn wait(seconds: u64, check: &dyn Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request; returns the status and the body.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_with(port, method, path, None, body)
}

/// One request, with a bearer token when given, through the node's typed client (a fresh
/// connection each time: nodes here are killed and restarted on the same port). Panics
/// when the node cannot be reached; a connection that fails on the way gives status 0.
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let node = fai_api::blocking::Client::new(&format!("127.0.0.1:{port}")).unwrap();
    let method = fai_api::client::Method::from_bytes(method.as_bytes()).unwrap();
    let body = (!body.is_empty()).then(|| body.to_vec());
    match node.raw(method, path, body, bearer) {
        Ok(answer) => (answer.status, answer.text()),
        Err(e @ fai_api::Error::Unreachable { .. }) => panic!("{path}: {e}"),
        Err(_) => (0, String::new()),
    }
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

pub fn cli(args: &[&str], pass: &str) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env("FAI_WALLET_PASSPHRASE", pass)
        .output()
        .unwrap()
}
