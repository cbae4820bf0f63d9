//! The devnet a newcomer starts, against the real binary: `infer-node start` with no
//! configuration (what `make run` runs) prints its banner and makes a dev wallet; a
//! node with a dev wallet funds it, and the wallet buys an inference that the node
//! serves, verifies and settles by itself; `infer-node devnet --nodes N` runs N nodes
//! wired to each other and stops them all.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fai_tests::{bin, cli, free_port, http, json, wait, Node};

/// Collects a child's standard output as it comes (a thread per child).
fn capture(child: &mut Child) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let sink = out.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    out
}

/// A GET's JSON answer; null while the node is not up or answers otherwise than 200.
fn get(port: u16, path: &str) -> serde_json::Value {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        return serde_json::Value::Null;
    }
    let (status, body) = http(port, "GET", path, b"");
    if status != 200 {
        return serde_json::Value::Null;
    }
    json(&body)
}

/// `make run` is `infer-node start` with the built-in devnet configuration: its banner
/// says what runs, where the RPC listens and the exact command of a first inference,
/// with the dev wallet it made (encrypted, mode 0600, opened by that passphrase).
#[test]
fn the_builtin_devnet_prints_its_banner_and_makes_the_dev_wallet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("devnet");
    let data_flag = data.to_str().unwrap();
    let mut child = Command::new(bin())
        .args(["--datadir", data_flag, "start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = capture(&mut child);
    let _node = Node { child, port: 7080 };
    assert!(
        wait(60, &|| out.lock().unwrap().contains("first inference")),
        "no banner: {}",
        out.lock().unwrap()
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = out.lock().unwrap().clone();
    assert!(
        text.contains(&format!("on devnet, data in {data_flag}")),
        "{text}"
    );
    for part in [
        "miner (1 thread)",
        "inference node (bid 0.001 FAI per ledger block, price 0.01 FAI per million tokens)",
        "verifier (stake 1 FAI)",
        "model fai-tiny",
        "rpc:   http://127.0.0.1:7080/v2/info",
        "p2p:   /ip4/127.0.0.1/tcp/27090/p2p/",
    ] {
        assert!(text.contains(part), "{part:?} not in the banner:\n{text}");
    }
    let command = format!(
        "FAI_WALLET_PASSPHRASE=devnet-wallet {} --datadir {data_flag} wallet infer \"hello\"\n",
        bin().display()
    );
    assert!(
        text.contains(&command),
        "the banner does not give {command:?}:\n{text}"
    );

    // The wallet the banner names exists, with that passphrase.
    let keystore = data.join("wallets").join("default.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keystore).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let shown = cli(
        &["--datadir", data_flag, "wallet", "address", "--json"],
        "devnet-wallet",
    );
    assert!(shown.status.success());
    let address = json(&String::from_utf8_lossy(&shown.stdout))["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(address.starts_with("dfai1"), "{address}");
    assert!(text.contains(&address), "{text}");
    let opened = cli(
        &[
            "--datadir",
            data_flag,
            "wallet",
            "sign-message",
            "hi",
            "--json",
        ],
        "devnet-wallet",
    );
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    // The node answers on the port the banner gave.
    assert_eq!(get(7080, "/v2/info")["network"], "devnet");
}

fn regtest_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
network = "regtest"
data_dir = "{}"

[mining]
enabled = true
threads = 1
block_interval_ms = 100

[rpc]
listen = "127.0.0.1:{port}"

[inference]
produce = true
stake = "1 FAI"

[dev_wallet]
name = "dev"
passphrase = "devnet-wallet"
ledger = "10 FAI"
inference = "5 FAI"
"#,
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

/// One node does everything: mines, pegs in, stakes, registers, wins sortitions, funds
/// its dev wallet on both layers, serves the wallet's inference, verifies it alone (it
/// is the whole verifier set) and settles it.
#[test]
fn a_lone_node_funds_its_dev_wallet_which_buys_a_settled_inference() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = regtest_config(dir.path(), port);
    let config_flag = config.to_str().unwrap();
    let mut child = Command::new(bin())
        .args(["start", "--config", config_flag])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = capture(&mut child);
    let _node = Node { child, port };
    assert!(
        wait(60, &|| out.lock().unwrap().contains("first inference")),
        "no banner"
    );
    let address = {
        let shown = cli(
            &[
                "--config",
                config_flag,
                "wallet",
                "address",
                "--name",
                "dev",
                "--json",
            ],
            "devnet-wallet",
        );
        json(&String::from_utf8_lossy(&shown.stdout))["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ledger = || {
        get(port, &format!("/v2/ledger/accounts/{address}"))["balance_units"]
            .as_u64()
            .unwrap_or(0)
    };
    let inference = || {
        get(port, &format!("/v2/inference-chain/accounts/{address}"))["balance_units"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        wait(240, &|| ledger() == 1_000_000_000
            && inference() == 500_000_000),
        "the dev wallet was not funded: {} on the ledger, {} on the inference layer",
        ledger(),
        inference()
    );

    let infer = cli(
        &[
            "--config",
            config_flag,
            "wallet",
            "infer",
            "hello",
            "--name",
            "dev",
            "--max-fee",
            "0.001 FAI",
            "--max-tokens",
            "16",
            "--json",
        ],
        "devnet-wallet",
    );
    assert!(
        infer.status.success(),
        "{}",
        String::from_utf8_lossy(&infer.stderr)
    );
    let receipt = json(&String::from_utf8_lossy(&infer.stdout));
    let txid = receipt["txid"].as_str().unwrap().to_string();
    let tokens = receipt["tokens"].as_u64().unwrap();
    let state = || get(port, &format!("/v2/inference/{txid}"));
    assert!(
        wait(120, &|| state()["state"] == "settled"),
        "not settled: {}",
        state()
    );
    let s = state();
    assert_eq!(s["accepted"], true, "{s}");
    assert_eq!(s["final"], true, "{s}");
    // One base unit per token at 0.01 FAI per million; the rest of the max fee back.
    assert_eq!(s["settlement"]["fee_units"], tokens, "{s}");
    assert_eq!(s["settlement"]["refund_units"], 100_000 - tokens, "{s}");
    assert!(
        wait(30, &|| inference() == 500_000_000 - tokens),
        "the wallet paid {} for {tokens} tokens",
        500_000_000 - inference()
    );
}

/// Two consecutive free ports on loopback.
fn free_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let base = free_port();
        let Some(last) = base.checked_add(n) else {
            continue;
        };
        if (base..last).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// `infer-node devnet --nodes 2`: two processes with their own data directories and
/// ports, connected to each other; SIGTERM stops both and the command exits cleanly.
#[test]
fn the_devnet_command_runs_wired_nodes_and_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    let rpc = free_ports(2);
    let p2p = free_ports(2);
    let mut child = Command::new(bin())
        .args([
            "--datadir",
            dir.path().to_str().unwrap(),
            "devnet",
            "--nodes",
            "2",
            "--rpc-port",
            &rpc.to_string(),
            "--p2p-port",
            &p2p.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = capture(&mut child);
    let peers = |port: u16| get(port, "/v2/info")["peers"].as_u64().unwrap_or(0);
    let connected = wait(90, &|| peers(rpc) >= 1 && peers(rpc + 1) >= 1);
    let text = out.lock().unwrap().clone();
    assert!(connected, "the two nodes did not connect:\n{text}");
    assert!(text.contains("devnet of 2 nodes"), "{text}");
    assert!(text.contains("node-0 | "), "node logs are prefixed: {text}");
    assert!(text.contains("node-1 | "), "{text}");
    assert!(
        dir.path().join("node-0/wallets/default.json").exists(),
        "node-0 keeps the dev wallet"
    );
    assert!(!dir.path().join("node-1/wallets").exists());

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the devnet did not stop");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    // Both nodes are gone: their RPC ports refuse connections.
    for port in [rpc, rpc + 1] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a node still answers on {port}"
        );
    }
}
