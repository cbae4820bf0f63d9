//! A local network of real `infer-node` processes on loopback for the end-to-end tests:
//! each node its own data directory, ports, log file and configuration; nodes 1.. dial
//! node 0. Nodes can be killed (SIGKILL) and started again on the same directory. On a
//! failure the directory is kept and its path printed, with the tail of every log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{bin, free_port, http_with, json, wait};

/// The admin token every node of a test network accepts.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// What one node does.
#[derive(Clone, Debug)]
pub struct Role {
    pub mine: bool,
    /// Registers and commits as an inference node.
    pub produce: bool,
    /// Stakes 1 FAI and so verifies (the five largest stakes do).
    pub stake: bool,
    /// A dev wallet (name, FAI paid to it on the ledger) this node makes and funds.
    pub wallet: Option<(&'static str, &'static str)>,
    /// Serves forged answers (a `test-cheats` build).
    pub forge: bool,
}

pub struct Member {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub rpc: u16,
    pub p2p: u16,
    child: Option<Child>,
}

pub struct Net {
    dir: Option<tempfile::TempDir>,
    pub nodes: Vec<Member>,
    /// Node 0's p2p address with its peer id.
    bootstrap: String,
}

/// The wallets' passphrase.
pub const PASSPHRASE: &str = "e2e-wallet-pass";

fn config_text(
    role: &Role,
    dir: &Path,
    rpc: u16,
    p2p: u16,
    bootstrap: &str,
    pace_ms: u64,
) -> String {
    let (wallet, gift) = role.wallet.unwrap_or(("", ""));
    let bootstrap = crate::toml_list(bootstrap);
    format!(
        r#"[node]
network = "regtest"
data_dir = "{data}"

[mining]
enabled = {mine}
threads = 1
block_interval_ms = {pace_ms}

[log]
level = "info"

[rpc]
listen = "127.0.0.1:{rpc}"
admin_token = "{ADMIN_TOKEN}"

[p2p]
listen = "/ip4/127.0.0.1/tcp/{p2p}"
bootstrap = [{bootstrap}]

{roles}"#,
        data = dir.display(),
        mine = role.mine,
        roles = crate::roles_toml(
            role.produce,
            role.stake,
            (wallet, gift, ""),
            PASSPHRASE,
            crate::Conduct {
                forge: role.forge,
                ..Default::default()
            }
        ),
    )
}

impl Net {
    /// Starts node 0, then the others dialling it. Miners rest `pace_ms` after each block.
    pub fn start(roles: &[Role], pace_ms: u64) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let mut net = Net {
            dir: Some(dir),
            nodes: Vec::new(),
            bootstrap: String::new(),
        };
        for (i, role) in roles.iter().enumerate() {
            let home = net.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let (rpc, p2p) = (free_port(), free_port());
            let config = home.join("infer-node.toml");
            std::fs::write(
                &config,
                config_text(role, &home.join("data"), rpc, p2p, &net.bootstrap, pace_ms),
            )
            .unwrap();
            net.nodes.push(Member {
                dir: home,
                config,
                rpc,
                p2p,
                child: None,
            });
            net.spawn(i);
            if i == 0 {
                assert!(
                    wait(120, &|| net.get(0, "/v2/info")["p2p"]["peer_id"]
                        .is_string()),
                    "node 0 did not start"
                );
                let peer = net.get(0, "/v2/info")["p2p"]["peer_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                net.bootstrap = format!("/ip4/127.0.0.1/tcp/{p2p}/p2p/{peer}");
            }
        }
        net
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Starts node `i` (again), its output appended to its log.
    pub fn spawn(&mut self, i: usize) {
        let m = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("node.log"))
            .unwrap();
        let child = Command::new(bin())
            .args(["start", "--config"])
            .arg(&m.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        m.child = Some(child);
    }

    /// kill -9 node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A GET's JSON answer from node `i`; null while it does not answer 200.
    pub fn get(&self, i: usize, path: &str) -> Value {
        let port = self.nodes[i].rpc;
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return Value::Null;
        }
        let (status, body) = http_with(port, "GET", path, None, b"");
        if status != 200 {
            return Value::Null;
        }
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// An admin call to node `i`; returns the status.
    pub fn admin(&self, i: usize, method: &str, path: &str, body: &str) -> u16 {
        http_with(
            self.nodes[i].rpc,
            method,
            path,
            Some(ADMIN_TOKEN),
            body.as_bytes(),
        )
        .0
    }

    /// The CLI against node `i`'s configuration (its wallets and RPC).
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(bin())
            .arg("--config")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("FAI_WALLET_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(json(&String::from_utf8_lossy(&out.stdout)))
    }

    pub fn ledger_height(&self, i: usize) -> u64 {
        self.get(i, "/v2/info")["ledger"]["height"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Node `i`'s own address (its node key).
    pub fn address(&self, i: usize) -> String {
        self.get(i, "/v2/info")["address"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits for `check`, else fails with `what` and the state it saw.
    pub fn wait_for(&self, seconds: u64, what: &str, check: &dyn Fn() -> bool) {
        if !wait(seconds, check) {
            panic!("timed out after {seconds} s waiting for {what}");
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if crate::keep_on_failure(&mut self.dir, "the nodes' data and logs are").is_some() {
            for m in &self.nodes {
                let log = std::fs::read_to_string(m.dir.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {} (last lines)", m.dir.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
