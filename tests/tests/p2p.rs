//! Nodes on loopback, each the real binary in its own process with its own data
//! directory: blocks and transactions gossip to every node, a late node syncs the ledger
//! from scratch while the network keeps mining, and a peer that sends an invalid block
//! is banned.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fai_tests::{bin, cli, free_port, http, http_with, json, wait, Node};
use futures::StreamExt;
use libp2p::{gossipsub, identity, noise, tcp, yamux, Multiaddr, PeerId, SwarmBuilder};

const TOKEN: &str = "test-admin-token-0123456789";

struct Peer {
    node: Node,
    log: PathBuf,
}

/// Starts a regtest node named `name` in `dir`; `mine_to` turns mining on.
fn start(dir: &Path, name: &str, mine_to: Option<&str>, bootstrap: &[String]) -> Peer {
    start_on(free_port(), dir, name, mine_to, bootstrap)
}

fn start_on(
    port: u16,
    dir: &Path,
    name: &str,
    mine_to: Option<&str>,
    bootstrap: &[String],
) -> Peer {
    start_with(port, dir, name, mine_to, 100, bootstrap, "")
}

/// `mine_to`: mine, paying that address ("" for the node's own key), resting `pace_ms`
/// after each block; `extra`: more TOML.
fn start_with(
    port: u16,
    dir: &Path,
    name: &str,
    mine_to: Option<&str>,
    pace_ms: u64,
    bootstrap: &[String],
    extra: &str,
) -> Peer {
    let mining = match mine_to {
        Some(address) => format!(
            "[mining]\nenabled = true\nthreads = 1\nblock_interval_ms = {pace_ms}\naddress = \"{address}\"\n"
        ),
        None => String::new(),
    };
    let peers: Vec<String> = bootstrap.iter().map(|b| format!("\"{b}\"")).collect();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[rpc]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{TOKEN}\"\n\n[p2p]\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nbootstrap = [{}]\n\n{mining}\n{extra}",
            dir.join(name).display(),
            peers.join(", ")
        ),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(bin())
        .args(["start", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let peer = Peer {
        node: Node { child, port },
        log,
    };
    // A node that did not come up says why in its log (a port taken between the choice
    // and the bind, say).
    if !wait(60, &|| peer.info().is_some()) {
        panic!(
            "timed out after 60 s waiting for {name}'s RPC on port {port}; its log ends:\n{}",
            tail(&peer)
        );
    }
    peer
}

impl Peer {
    fn info(&self) -> Option<serde_json::Value> {
        std::net::TcpStream::connect(("127.0.0.1", self.node.port)).ok()?;
        let (status, body) = http(self.node.port, "GET", "/v2/info", b"");
        (status == 200).then(|| json(&body))
    }

    fn height(&self) -> u64 {
        self.info()
            .and_then(|i| i["ledger"]["height"].as_u64())
            .unwrap_or(0)
    }

    fn hash_at(&self, height: u64) -> Option<String> {
        let (status, body) = http(
            self.node.port,
            "GET",
            &format!("/v2/ledger/blocks/{height}"),
            b"",
        );
        (status == 200).then(|| json(&body)["hash"].as_str().unwrap_or("").to_string())
    }

    fn peers(&self) -> u64 {
        self.info().and_then(|i| i["peers"].as_u64()).unwrap_or(0)
    }

    /// The node's p2p address, `/ip4/127.0.0.1/tcp/N/p2p/<id>`.
    fn address(&self) -> String {
        let mut address = None;
        wait_for("a p2p listen address", 30, &|| {
            self.info()
                .and_then(|i| i["p2p"]["listen"][0].as_str().map(str::to_string))
                .is_some()
        });
        if let Some(info) = self.info() {
            address = info["p2p"]["listen"][0].as_str().map(str::to_string);
        }
        address.unwrap()
    }

    fn balance(&self, address: &str) -> u64 {
        let (_, body) = http(
            self.node.port,
            "GET",
            &format!("/v2/ledger/accounts/{address}"),
            b"",
        );
        json(&body)["balance_units"].as_u64().unwrap_or(0)
    }

    fn admin(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, body) = http_with(self.node.port, method, path, Some(TOKEN), body.as_bytes());
        (status, json(&body))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn wait_for(what: &str, seconds: u64, check: &dyn Fn() -> bool) {
    if !wait(seconds, check) {
        panic!("timed out after {seconds} s waiting for {what}");
    }
}

/// The end of a node's log, for failure messages.
fn tail(peer: &Peer) -> String {
    let log = peer.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("block connected") || std::env::var("FULL_TAIL").is_ok())
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A configuration for the wallet commands: keystores in `dir/wallets`, sending to the
/// node whose RPC listens on `port`.
fn wallet_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("wallets.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[rpc]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.join("wallets").display()
        ),
    )
    .unwrap();
    path
}

/// Runs `infer-node wallet ARGS --name NAME --json --config CONFIG`, which must succeed;
/// its JSON answer.
fn wallet_json(config: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["wallet"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--name",
        name,
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    let out = cli(&all, "passphrase");
    assert!(
        out.status.success(),
        "wallet {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wallet(config: &Path, name: &str) -> String {
    wallet_json(config, name, &["new"])["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Three nodes in a line (a <- b <- c): a's blocks reach c, c's transaction reaches the
/// miner a, c discovers a through the DHT, and a fourth node started later with an
/// empty data directory syncs the whole ledger while a keeps mining.
#[test]
fn three_nodes_gossip_and_a_late_node_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The wallets send through node c's RPC.
    let c_port = free_port();
    let c_config = wallet_config(d, c_port);
    let alice = wallet(&c_config, "alice");
    let bob = wallet(&c_config, "bob");

    let a = start(d, "a", Some(&alice), &[]);
    let b = start(d, "b", None, &[a.address()]);
    let c = start_on(c_port, d, "c", None, &[b.address()]);

    // Blocks mined by a reach c, through b.
    wait_for("a to mine 110 blocks", 180, &|| a.height() >= 110);
    wait_for("c to have a's block 110", 120, &|| {
        c.hash_at(110).is_some() && c.hash_at(110) == a.hash_at(110)
    });
    assert_eq!(b.hash_at(110), a.hash_at(110));
    // c was told only of b, and found a through the DHT.
    wait_for("c to connect to a as well", 60, &|| c.peers() >= 2);

    // A payment sent to c, a node that does not mine, is mined by a.
    let out = cli(
        &[
            "wallet",
            "send",
            &bob,
            "1 FAI",
            "--name",
            "alice",
            "--json",
            "--config",
            c_config.to_str().unwrap(),
        ],
        "passphrase",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("bob's payment to be mined by a", 60, &|| {
        a.balance(&bob) == 100_000_000
    });
    wait_for("b and c to see it", 60, &|| {
        b.balance(&bob) == 100_000_000 && c.balance(&bob) == 100_000_000
    });

    // A late node with an empty data directory catches up while a keeps mining.
    let start_height = a.height();
    let late = start(d, "late", None, &[a.address()]);
    assert!(
        wait(180, &|| late.height() >= start_height),
        "the late node is at {} of {start_height}; its log:\n{}",
        late.height(),
        tail(&late)
    );
    wait_for("the late node to agree with a", 60, &|| {
        late.hash_at(start_height) == a.hash_at(start_height)
    });
    assert_eq!(late.balance(&bob), 100_000_000);
    let log = late.log();
    assert!(log.contains("syncing the ledger"), "{log}");
    assert!(log.contains("ledger sync done"), "{log}");
}

/// A peer (this test, on libp2p) gossips a block that breaks consensus: the node refuses
/// it, bans the peer, closes the connection and refuses to talk to it again.
#[test]
fn a_peer_that_sends_an_invalid_block_is_banned() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "honest", None, &[]);
    let (_, address) = {
        let text = node.address();
        let address: Multiaddr = text.parse().unwrap();
        (text, address)
    };
    let genesis = node.hash_at(0).unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = identity::Keypair::generate_ed25519();
    let me = PeerId::from(key.public());
    let banned = runtime.block_on(async {
        let mut swarm = test_swarm(key, |key| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .unwrap();
            let behaviour: gossipsub::Behaviour = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                config,
            )
            .unwrap();
            behaviour
        });
        let topic = gossipsub::IdentTopic::new("/fai/regtest/ledger-block/1");
        swarm.behaviour_mut().subscribe(&topic).unwrap();
        swarm.dial(address.clone()).unwrap();

        // Wait until the node has told us it listens on the block topic.
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let libp2p::swarm::SwarmEvent::Behaviour(gossipsub::Event::Subscribed {
                    topic: t,
                    ..
                }) = swarm.select_next_some().await
                {
                    if t == topic.hash() {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "the node never subscribed to the block topic"
        );

        // A block on genesis whose merkle root is wrong (and whose nonce is whatever).
        let prev: fai_primitives::Hash256 = genesis.parse().unwrap();
        let block = fai_ledger::Block {
            header: fai_ledger::BlockHeader {
                version: 1,
                prev,
                merkle_root: fai_primitives::Hash256([0x11; 32]),
                time: 1_793_491_300,
                bits: 0x207f_ffff,
                nonce: 1,
            },
            transactions: vec![fai_ledger::testkit::coinbase(
                1,
                fai_primitives::Hash160([3; 20]),
                fai_primitives::Amount::from_units(1).unwrap(),
            )],
        };
        use fai_primitives::Encode;
        swarm
            .behaviour_mut()
            .publish(topic.clone(), block.to_bytes())
            .unwrap();

        // The node closes the connection.
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let libp2p::swarm::SwarmEvent::ConnectionClosed { .. } =
                    swarm.select_next_some().await
                {
                    return;
                }
            }
        })
        .await
        .is_ok()
    });
    assert!(banned, "the node kept the connection open");

    let (status, peers) = node.admin("GET", "/v2/admin/peers", "");
    assert_eq!(status, 200, "{peers}");
    let bans = peers["bans"].as_array().unwrap();
    let ban = bans
        .iter()
        .find(|b| b["peer_id"] == me.to_string())
        .unwrap_or_else(|| panic!("no ban for {me}: {peers}"));
    assert!(ban["reason"].as_str().unwrap().contains("block"), "{ban}");
    assert!(ban["seconds_left"].as_u64().unwrap() > 3000, "{ban}");
    assert!(node.log().contains("peer banned"));
    // The node still serves and its chain did not take the block.
    assert_eq!(node.height(), 0);

    // The operator lifts the ban; a second lift is a 404; bad input is a 400.
    let (status, _) = node.admin("DELETE", &format!("/v2/admin/bans/{me}"), "");
    assert_eq!(status, 200);
    let (status, _) = node.admin("DELETE", &format!("/v2/admin/bans/{me}"), "");
    assert_eq!(status, 404);
    let (status, body) = node.admin(
        "POST",
        "/v2/admin/bans",
        "{\"peer_id\": \"nope\", \"seconds\": 5}",
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = node.admin(
        "POST",
        "/v2/admin/bans",
        &format!("{{\"peer_id\": \"{me}\", \"seconds\": 60}}"),
    );
    assert_eq!(status, 200);
    let (_, peers) = node.admin("GET", "/v2/admin/peers", "");
    assert!(peers["bans"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["peer_id"] == me.to_string()));
}

/// Two miners; one is also an inference node. It registers, bids at every ledger block,
/// wins the tenures (it is the only bidder) and produces inference blocks, which the other
/// node accepts by gossip; a wallet's peg-in is credited on the
/// inference layer of both six ledger blocks after it is mined.
#[test]
fn an_inference_node_produces_blocks_and_a_peg_in_is_credited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The wallet sends to the producer, which mines most blocks: a payment sent to the
    // slow miner can wait long for a block of its own that wins (the relay of a
    // transaction whose coins a peer has not seen yet is not retried).
    let a_port = free_port();
    let b_port = free_port();
    let wallets = wallet_config(d, a_port);
    let alice = wallet(&wallets, "alice");

    let a = start_with(
        a_port,
        d,
        "producer",
        Some(""),
        100,
        &[],
        "[inference]\nproduce = true\nbid = \"0.001 FAI\"\naudit_every = 0\n",
    );
    // The follower mines too (Alice's coins), ten times slower: the ledger forks rarely,
    // as on a network where block times are long against propagation.
    let b = start_with(
        b_port,
        d,
        "follower",
        Some(&alice),
        1000,
        &[a.address()],
        "",
    );
    let layer2 = |p: &Peer| json(&http(p.node.port, "GET", "/v2/inference-chain", b"").1);
    let inference_height = |p: &Peer| layer2(p)["tip"]["height"].as_u64().unwrap_or(0);

    assert!(
        wait(180, &|| inference_height(&a) >= 3),
        "no inference blocks; the producer's log:\n{}",
        tail(&a)
    );
    assert!(
        wait(60, &|| inference_height(&b) >= 3),
        "the follower did not take the inference blocks; its log:\n{}",
        tail(&b)
    );
    assert!(a.log().contains("registered as an inference node"));

    // Alice pegs in once her mining rewards (from the follower's blocks) have matured.
    wait_for("alice's coins to mature", 120, &|| {
        a.balance(&alice) >= 500_000_000
    });
    wallet_json(&wallets, "alice", &["peg-in", "5 FAI"]);
    let credited = |p: &Peer| {
        let (_, body) = http(
            p.node.port,
            "GET",
            &format!("/v2/inference-chain/accounts/{alice}"),
            b"",
        );
        json(&body)["balance_units"].as_u64().unwrap_or(0)
    };
    assert!(
        wait(120, &|| credited(&a) == 500_000_000),
        "the peg-in was not credited on the producer; its log:\n{}",
        tail(&a)
    );
    wait_for("the follower to credit it too", 60, &|| {
        credited(&b) == 500_000_000
    });

    // On the inference layer: Alice pays Bob and stakes, by VM transactions run in the
    // producer's blocks; the follower sees the result.
    let bob = wallet(&wallets, "bob");
    let w = wallets.to_str().unwrap();
    let vm = |args: &[&str]| wallet_json(&wallets, "alice", args);
    vm(&["transfer", &bob, "1 FAI"]);
    // The stake takes the next nonce while the transfer still waits.
    vm(&["stake", "2 FAI", "--cycles", "1"]);
    let account = |p: &Peer, who: &str| {
        let (_, body) = http(
            p.node.port,
            "GET",
            &format!("/v2/inference-chain/accounts/{who}"),
            b"",
        );
        json(&body)
    };
    assert!(
        wait(60, &|| account(&b, &bob)["balance_units"] == 100_000_000),
        "bob was not paid: {}; the producer's log:\n{}",
        account(&b, &bob),
        tail(&a)
    );
    wait_for("alice's stake", 60, &|| {
        account(&b, &alice)["stake"]["amount"] == 200_000_000
    });
    let alice_now = account(&a, &alice);
    assert_eq!(alice_now["nonce"], 2, "{alice_now}");
    // 5 FAI pegged in, 1 paid, 2 staked (locked in the contract), two fees of 1,000 units.
    assert_eq!(
        alice_now["balance_units"],
        500_000_000 - 300_000_000 - 2_000,
        "{alice_now}"
    );
    // The producer is listed as an inference node, and its blocks can be read back.
    let (status, body) = http(a.node.port, "GET", "/v2/inference-nodes", b"");
    assert_eq!(status, 200, "{body}");
    let nodes = json(&body);
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes[0]["models"].as_array().unwrap().len(), 1, "{nodes}");
    let (status, body) = http(a.node.port, "GET", "/v2/inference-chain/blocks/1", b"");
    assert_eq!(status, 200, "{body}");
    let first = json(&body);
    assert_eq!(first["height"], 1, "{first}");
    assert_eq!(first["producer"], nodes[0]["address"], "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    let (status, body) = http(
        b.node.port,
        "GET",
        &format!("/v2/inference-chain/blocks/{id}"),
        b"",
    );
    assert_eq!(
        (status, json(&body)["height"].clone()),
        (200, serde_json::json!(1)),
        "{body}"
    );
    let (status, _) = http(
        a.node.port,
        "GET",
        "/v2/inference-chain/blocks/99999999",
        b"",
    );
    assert_eq!(status, 404);
    let (status, _) = http(a.node.port, "GET", "/v2/inference-chain/blocks/zz", b"");
    assert_eq!(status, 400);
    // Alice's history shows both layers.
    let out = cli(
        &[
            "wallet", "history", "--name", "alice", "--json", "--config", w,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = |layer: &str| -> Vec<String> {
        history[layer]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds("ledger").contains(&"peg-in".to_string()), "{history}");
    assert!(
        kinds("ledger").contains(&"coinbase".to_string()),
        "{history}"
    );
    assert_eq!(
        kinds("inference"),
        vec!["called staking.stake".to_string(), "sent".to_string()],
        "{history}"
    );
    // Alice registers her key as an inference node from her wallet, then bids: the
    // sortition of a ledger block names her, with her bid and register reference.
    let register_txid = vm(&["register"])["txid"].as_str().unwrap().to_string();
    let listed = || {
        json(&http(a.node.port, "GET", "/v2/inference-nodes", b"").1)
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["address"] == alice.as_str())
            .cloned()
    };
    wait_for("alice's register to be mined", 60, &|| listed().is_some());
    let height = listed().unwrap()["registered_at"].as_u64().unwrap();
    let block = json(
        &http(
            a.node.port,
            "GET",
            &format!("/v2/ledger/blocks/{height}"),
            b"",
        )
        .1,
    );
    let index = block["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t == register_txid.as_str())
        .unwrap();
    let reference = format!("{height}:{index}");
    // Her commit is a valid ledger transaction and is mined. (It counts in the sortition
    // only if mined in the block right after the tip it proves, which blocks every
    // 100 ms do not leave time for.)
    let commit = vm(&["commit", &reference, "--bid", "0.5 FAI"])["txid"]
        .as_str()
        .unwrap()
        .to_string();
    let mined = || {
        let tip = a.height();
        (tip.saturating_sub(20)..=tip).any(|h| {
            json(&http(a.node.port, "GET", &format!("/v2/ledger/blocks/{h}"), b"").1)
                ["transactions"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == commit.as_str()))
        })
    };
    wait_for("alice's commit to be mined", 60, &mined);
    // Every ledger block shows its sortition; those mined with the producer's commit in
    // them name it the winner. (A block the follower mines while the producer is still
    // making its tenure block carries no commit and names none.)
    let tip = a.height();
    let blocks: Vec<serde_json::Value> = (tip.saturating_sub(10)..=tip)
        .map(|h| json(&http(a.node.port, "GET", &format!("/v2/ledger/blocks/{h}"), b"").1))
        .collect();
    for block in &blocks {
        let sortition = &block["sortition"];
        assert!(sortition["total_bid_units"].is_u64(), "{block}");
        assert!(
            sortition["winner"].is_null() || sortition["winner"]["address"].is_string(),
            "{block}"
        );
    }
    assert!(
        blocks
            .iter()
            .any(|b| b["sortition"]["winner"]["address"].is_string()
                && b["sortition"]["total_bid_units"].as_u64().unwrap() >= 100_000),
        "no recent block names a winner: {blocks:?}"
    );

    // A malformed VM transaction is refused with the reason.
    let (status, body) = http(
        a.node.port,
        "POST",
        "/v2/inference-chain/transactions",
        b"{\"tx\": \"00\"}",
    );
    assert_eq!(status, 400, "{body}");
    let credited = |p: &Peer| account(p, &alice)["balance_units"].as_u64().unwrap_or(0);

    // A node started now, with an empty data directory, syncs both chains: the ledger
    // headers first, then the inference blocks it missed, and the same account state.
    let target = inference_height(&a);
    let late = start(d, "late", None, &[a.address()]);
    assert!(
        wait(120, &|| inference_height(&late) >= target),
        "the late node's inference chain is at {} of {target}; its log:\n{}",
        inference_height(&late),
        tail(&late)
    );
    assert_eq!(credited(&late), 500_000_000 - 300_000_000 - 2_000);
    assert_eq!(account(&late, &bob)["balance_units"], 100_000_000);
    assert!(late.log().contains("syncing inference blocks"));
}

/// Raw bytes over the sync protocol, for a test peer that speaks it by hand.
#[derive(Clone, Default)]
struct RawCodec;

#[async_trait::async_trait]
impl libp2p::request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        use futures::AsyncReadExt;
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn read_response<T>(&mut self, p: &Self::Protocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        self.read_request(p, io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        p: &Self::Protocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.write_request(p, io, res).await
    }
}

/// A libp2p peer that speaks the sync protocol in raw bytes, dialling `address` (which
/// ends in the node's peer id); call inside a tokio runtime.
fn raw_sync_peer(
    key: identity::Keypair,
    address: &Multiaddr,
) -> (
    libp2p::Swarm<libp2p::request_response::Behaviour<RawCodec>>,
    PeerId,
) {
    use libp2p::request_response::{self, ProtocolSupport};
    let mut swarm = test_swarm(key, |_| {
        request_response::Behaviour::with_codec(
            RawCodec,
            [(
                libp2p::StreamProtocol::new("/fai/regtest/sync/1"),
                ProtocolSupport::Full,
            )],
            request_response::Config::default().with_max_concurrent_streams(1000),
        )
    });
    let peer = peer_in(address);
    swarm.dial(address.clone()).unwrap();
    (swarm, peer)
}

/// A swarm over TCP (noise, yamux) with `key` as identity, carrying what `behaviour`
/// makes: the raw peers these tests play.
fn test_swarm<B: libp2p::swarm::NetworkBehaviour>(
    key: identity::Keypair,
    behaviour: impl FnOnce(&identity::Keypair) -> B,
) -> libp2p::Swarm<B> {
    SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| behaviour(key))
        .unwrap()
        .build()
}

/// The peer id at the end of a `/p2p/` address.
fn peer_in(address: &Multiaddr) -> PeerId {
    match address.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => panic!("no peer id in {address}"),
    }
}

/// Opens a relay stream to the node at `address`, writes `frame` to it, and reads
/// back what the node answers until it closes the stream.
fn raw_relay(address: &str, frame: Vec<u8>) -> Vec<u8> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let address: Multiaddr = address.parse().unwrap();
    let peer = peer_in(&address);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut swarm = test_swarm(identity::Keypair::generate_ed25519(), |_| {
            libp2p_stream::Behaviour::new()
        });
        let mut control = swarm.behaviour().new_control();
        swarm.dial(address).unwrap();
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let exchange = async {
            let mut stream = control
                .open_stream(peer, libp2p::StreamProtocol::new("/fai/regtest/relay/1"))
                .await
                .unwrap();
            stream.write_all(&frame).await.unwrap();
            stream.flush().await.unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            answer
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .expect("the node neither answered nor closed the relay stream")
    })
}

/// Bad relayed requests on a libp2p stream: bytes that are no inference transaction get
/// an error frame that says so; a frame announcing more than the limit is not read (the
/// stream is closed unanswered); the node keeps serving.
#[test]
fn a_malformed_relayed_request_is_answered_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "relayer", None, &[]);
    let address = node.address();
    // Frame: kind 0 (request), big-endian length, bytes.
    let mut garbage = vec![0u8, 0, 0, 0, 5];
    garbage.extend_from_slice(b"hello");
    let answer = raw_relay(&address, garbage);
    assert_eq!(answer.first(), Some(&3), "an error frame: {answer:?}");
    let error: serde_json::Value = serde_json::from_slice(answer.get(5..).unwrap()).unwrap();
    assert_eq!(error["status"], 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("bad inference transaction"),
        "{error}"
    );
    // 64 MiB announced: refused before reading.
    let huge = vec![0u8, 4, 0, 0, 0];
    assert!(raw_relay(&address, huge).is_empty());
    assert!(node.info().is_some(), "the node still serves its RPC");
}

/// One raw sync request to the node at `address`, and its raw answer.
fn raw_sync_request(address: &str, request: Vec<u8>) -> Vec<u8> {
    use libp2p::request_response;
    let address: Multiaddr = address.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut swarm, peer) = raw_sync_peer(identity::Keypair::generate_ed25519(), &address);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut sent = false;
        while tokio::time::Instant::now() < deadline {
            if !sent && swarm.is_connected(&peer) {
                swarm.behaviour_mut().send_request(&peer, request.clone());
                sent = true;
            }
            let event =
                tokio::time::timeout(Duration::from_secs(1), swarm.select_next_some()).await;
            if let Ok(libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) = event
            {
                return response;
            }
        }
        panic!("no answer to the sync request");
    })
}

/// A peer floods the node with sync requests: past its burst they are refused (the
/// node does not queue them), and a peer that keeps going is banned; the node keeps
/// serving its RPC throughout.
#[test]
fn a_peer_that_floods_sync_requests_is_refused_then_banned() {
    use libp2p::request_response;
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "flooded", None, &[]);
    let address: Multiaddr = node.address().parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = identity::Keypair::generate_ed25519();
    let me = PeerId::from(key.public());
    let (answered, refused, closed) = runtime.block_on(async {
        let (mut swarm, peer) = raw_sync_peer(key, &address);
        let (mut answered, mut refused, mut sent) = (0u32, 0u32, 0u32);
        let mut closed = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline && !closed {
            // Keep 20 requests (a status request is one byte, 0) in flight: under the
            // node's 32 streams per connection, so its rate limit is what answers.
            while sent < answered + refused + 20 && sent < 3_000 && swarm.is_connected(&peer) {
                swarm.behaviour_mut().send_request(&peer, vec![0]);
                sent += 1;
            }
            let event =
                tokio::time::timeout(Duration::from_secs(5), swarm.select_next_some()).await;
            match event {
                Ok(libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => match response.first() {
                    Some(0) => answered += 1,
                    Some(3) => refused += 1,
                    other => panic!("unexpected response kind {other:?}"),
                },
                Ok(libp2p::swarm::SwarmEvent::ConnectionClosed { .. }) => closed = true,
                Ok(_) => {}
                Err(_) if sent >= 3_000 => break,
                Err(_) => {}
            }
        }
        (answered, refused, closed)
    });
    // The burst (four seconds' worth of the default 100 a second) was served, the rest
    // refused, and the flooder was cut off.
    eprintln!("flood: {answered} answered, {refused} refused, closed {closed}");
    assert!(answered >= 300, "answered {answered}");
    assert!(refused > 0, "nothing refused ({answered} answered)");
    assert!(
        closed,
        "the node kept the flooder ({answered} answered, {refused} refused)"
    );
    let (status, peers) = node.admin("GET", "/v2/admin/peers", "");
    assert_eq!(status, 200);
    let ban = peers["bans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["peer_id"] == me.to_string())
        .unwrap_or_else(|| panic!("no ban for the flooder: {peers}"));
    assert!(ban["reason"].as_str().unwrap().contains("rate"), "{ban}");
    assert_eq!(node.height(), 0);
}

/// The whole inference flow on two nodes: the producer pegs in, registers in the node
/// registry and stakes by itself, so it becomes the verifier set; a wallet pegs in and
/// buys an inference from it; the answer streams back, goes into a block, the verifier
/// votes on it, the next block carries the votes (final) and settles the fee: exact
/// amounts on both nodes.
#[test]
fn a_served_inference_is_verified_and_settled_on_both_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a_port = free_port();
    let b_port = free_port();
    let wallets = wallet_config(d, a_port);
    let alice = wallet(&wallets, "alice");
    let a = start_with(
        a_port,
        d,
        "server",
        Some(""),
        400,
        &[],
        // No audits: a forgery planted by chance (1 in 100 tips by default) would go into
        // the block beside the inference this test follows.
        "[inference]\nproduce = true\nstake = \"1 FAI\"\nprice = \"0.01 FAI\"\naudit_every = 0\n",
    );
    let b = start_with(b_port, d, "watcher", Some(&alice), 1000, &[a.address()], "");
    let get = |p: &Peer, path: &str| json(&http(p.node.port, "GET", path, b"").1);

    // The server's own steps: registered with a bond and a price, staked, and named in
    // the verifier set of a cycle.
    assert!(
        wait(240, &|| {
            get(&a, "/v2/inference-chain")["verifier_set"]
                .as_array()
                .is_some_and(|s| s.len() == 1)
        }),
        "the server never became a verifier; its log:\n{}",
        tail(&a)
    );
    let nodes = get(&a, "/v2/inference-nodes");
    let server = nodes[0]["address"].as_str().unwrap().to_string();
    assert_eq!(
        get(&a, "/v2/inference-chain")["verifier_set"][0],
        server.as_str()
    );
    let me = get(&a, &format!("/v2/inference-chain/accounts/{server}"));
    assert_eq!(me["stake"]["amount"], 100_000_000, "{me}");
    assert!(a.log().contains("node-registry.register sent"));

    // Alice moves 5 FAI to the inference layer.
    wait_for("alice's coins to mature", 180, &|| {
        a.balance(&alice) >= 500_000_000
    });
    wallet_json(&wallets, "alice", &["peg-in", "5 FAI"]);
    let balance = |p: &Peer| {
        get(p, &format!("/v2/inference-chain/accounts/{alice}"))["balance_units"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        wait(120, &|| balance(&a) == 500_000_000),
        "the peg-in was not credited; the server's log:\n{}",
        tail(&a)
    );

    // She buys an inference: streamed, then the receipt.
    let receipt = wallet_json(
        &wallets,
        "alice",
        &[
            "infer",
            "what is settled?",
            "--max-fee",
            "0.001 FAI",
            "--max-tokens",
            "24",
            "--seed",
            "9",
        ],
    );
    let txid = receipt["txid"].as_str().unwrap().to_string();
    let tokens = receipt["tokens"].as_u64().unwrap();
    assert!(tokens >= 1);

    // It goes into a block. A verifier that missed the result gossip fetches the text by
    // the block's id: the server answers with the inference and its text sealed to the
    // verifier set (payloads, kind 5, one entry), until it reclaims it. The answer is
    // not in it in the clear: any peer may ask.
    let state = |p: &Peer| get(p, &format!("/v2/inference/{txid}"));
    let mut block = String::new();
    wait_for("the inference in a block", 60, &|| {
        state(&a)["block"]["id"].is_string()
    });
    block.push_str(state(&a)["block"]["id"].as_str().unwrap());
    let fetch_text = || {
        let mut request = vec![4u8];
        request.extend(hex::decode(&block).unwrap());
        raw_sync_request(&a.address(), request)
    };
    let answer = fetch_text();
    assert_eq!(answer.get(..2), Some(&[5u8, 1][..]), "{answer:?}");
    let text = receipt["text"].as_str().unwrap().as_bytes();
    assert!(
        !answer.windows(text.len()).any(|w| w == text),
        "the answer text is in the fetched payload in the clear"
    );
    let fetched = <fai_network::protocol::Response as fai_primitives::Decode>::from_bytes(&answer)
        .unwrap_or_else(|e| panic!("the fetched payload does not decode: {e}"));
    let fai_network::protocol::Response::Payloads(list) = fetched else {
        panic!("not payloads: {fetched:?}");
    };
    assert_eq!(list[0].inference.stub.txid().to_string(), txid);
    assert_eq!(list[0].check(), Ok(()), "signed by the server");
    let server_id = server.parse::<fai_primitives::Address>().unwrap().key_hash;
    let recipients: Vec<_> = list[0].sealed.recipients.iter().map(|r| r.id).collect();
    assert_eq!(
        recipients,
        vec![server_id],
        "sealed to the set, the server alone"
    );

    // It is voted on and settled; both nodes say so.
    assert!(
        wait(120, &|| state(&a)["state"] == "settled"
            && state(&b)["state"] == "settled"),
        "not settled: {} / {}; the server's log:\n{}",
        state(&a),
        state(&b),
        tail(&a)
    );
    let s = state(&b);
    assert_eq!(s["final"], true, "{s}");
    assert_eq!(s["accepted"], true, "{s}");
    // 0.01 FAI per million tokens is one base unit per token: 90% to the server
    // (rounded down), the rest to the producer (the server too), the rest of the 0.001
    // FAI max fee back to Alice.
    let fee = tokens;
    let node_share = fee * 9 / 10;
    assert_eq!(s["settlement"]["fee_units"], fee, "{s}");
    assert_eq!(s["settlement"]["node_units"], node_share, "{s}");
    assert_eq!(s["settlement"]["producer_units"], fee - node_share, "{s}");
    assert_eq!(s["settlement"]["refund_units"], 100_000 - fee, "{s}");
    assert_eq!(s["settlement"]["slashed_units"], 0, "{s}");
    assert_eq!(s, state(&a), "both nodes settle it alike");
    // Alice paid exactly the fee, on both nodes.
    assert!(
        wait(30, &|| balance(&a) == 500_000_000 - fee
            && balance(&b) == 500_000_000 - fee),
        "alice's balance: {} / {}",
        balance(&a),
        balance(&b)
    );
    assert!(a.log().contains("voted"));

    // Once settled and six ledger blocks deep, the text is gone from the server: a
    // fetch gets an empty list.
    assert!(
        wait(60, &|| fetch_text().get(..2) == Some(&[5u8, 0][..])),
        "the server still holds the text"
    );

    // Asked of the watcher, which is not registered for the model, the request is
    // relayed to the server: the answer streams back through the watcher, the receipt
    // is the server's, and it settles like the first.
    let via_b = d.join("wallets-b.toml");
    std::fs::write(
        &via_b,
        std::fs::read_to_string(&wallets)
            .unwrap()
            .replace(&format!(":{a_port}"), &format!(":{b_port}")),
    )
    .unwrap();
    let relayed = wallet_json(
        &via_b,
        "alice",
        &[
            "infer",
            "relay me",
            "--max-fee",
            "0.001 FAI",
            "--max-tokens",
            "16",
            "--seed",
            "3",
        ],
    );
    assert_eq!(
        relayed["node"], receipt["node"],
        "served by the server: {relayed}"
    );
    // It went over a libp2p stream to the server's peer id (the server proved its node
    // key in its status), not to its registered HTTP address.
    assert_eq!(relayed["relayed"]["via"], "libp2p", "{relayed}");
    assert_eq!(
        relayed["relayed"]["peer"],
        a.info().unwrap()["p2p"]["peer_id"],
        "{relayed}"
    );
    let second = relayed["txid"].as_str().unwrap().to_string();
    let state2 = |p: &Peer| get(p, &format!("/v2/inference/{second}"));
    assert!(
        wait(120, &|| state2(&b)["state"] == "settled"),
        "the relayed inference did not settle: {}",
        state2(&b)
    );
    assert_eq!(state2(&b)["accepted"], true, "{}", state2(&b));
    let record = get(&a, &format!("/v2/inference-chain/accounts/{server}"))["reputation"].clone();
    assert!(!record.is_null(), "the server's result is on its record");

    // A sender with nothing on the inference layer is refused by the watcher itself (402)
    // instead of being relayed to the server (before, the watcher relayed it and the
    // server's refusal came back as an error event of a stream that had begun).
    wallet(&via_b, "carol");
    let out = cli(
        &[
            "wallet",
            "infer",
            "a free lunch",
            "--max-fee",
            "0.001 FAI",
            "--name",
            "carol",
            "--json",
            "--config",
            via_b.to_str().unwrap(),
        ],
        "passphrase",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unfunded request was served");
    assert!(
        stderr.contains("refused (402)") && stderr.contains("balance"),
        "{stderr}"
    );
}
