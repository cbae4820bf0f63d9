//! The RPC against a running node (the real binary on loopback), through its client:
//! every endpoint's success path, its bad-input paths, and a streamed inference whose
//! tokens arrive as events before a signed receipt.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fai_inference_chain::types::{InferenceStub, InferenceTx, Prompt, ResultReceipt, Sampling};
use fai_primitives::codec::{Decode, Encode};
use fai_primitives::{Amount, SecretKey, Signature};

use fai_tests::{bin, cli, free_port, http, json, Node};

/// A regtest node that serves requests whatever the sender can pay: these tests are
/// about the RPC, and their sender has no funds (see
/// `a_request_the_sender_cannot_pay_for_is_refused`).
fn start(dir: &Path) -> Node {
    start_with(dir, "[testing]\nserve_unfunded = true\n")
}

fn start_with(dir: &Path, extra: &str) -> Node {
    let port = free_port();
    let config = dir.join("regtest.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[rpc]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = 262144\n\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["start", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = Node { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return node;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the node's RPC never came up");
}

fn signed_tx(
    model: [u8; 32],
    chain_id: u32,
    nonce: u64,
    input: &str,
    max_tokens: u32,
) -> InferenceTx {
    signed_tx_expiring(model, chain_id, nonce, input, max_tokens, 100)
}

/// A signed inference transaction that may go into inference blocks up to `expiry`.
fn signed_tx_expiring(
    model: [u8; 32],
    chain_id: u32,
    nonce: u64,
    input: &str,
    max_tokens: u32,
    expiry: u32,
) -> InferenceTx {
    let key = SecretKey::from_bytes(&[7; 32]).unwrap();
    let prompt = Prompt {
        system: "be brief".into(),
        context: vec![],
        input: input.into(),
    };
    let mut stub = InferenceStub {
        sender: key.public_key(),
        nonce,
        chain_id,
        model,
        prompt_hash: prompt.hash(),
        sampling: Sampling {
            max_tokens,
            temperature_milli: 800,
            top_p_milli: 1000,
            top_k: 40,
            seed: 5,
            stop: vec![],
        },
        max_fee: Amount::from_units(10_000).unwrap(),
        expiry,
        signature: Signature([0; 64]),
    };
    stub.sign(&key);
    InferenceTx { stub, prompt }
}

fn body_of(tx: &InferenceTx) -> Vec<u8> {
    serde_json::json!({"tx": hex::encode(tx.to_bytes())})
        .to_string()
        .into_bytes()
}

/// Server-sent events: (event, data) pairs.
fn events(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Chunked transfer framing is interleaved; events are "event: x\ndata: y\n\n".
    let mut event = String::new();
    for line in body.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((event.clone(), d.to_string()));
        }
    }
    out
}

#[test]
fn the_rpc_answers_streams_inference_and_refuses_bad_requests_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let port = node.port;

    let (status, body) = http(port, "GET", "/v2/info", b"");
    assert_eq!(status, 200, "{body}");
    let info = json(&body);
    assert_eq!(info["network"], "regtest");
    assert_eq!(info["ledger"]["height"], 0);
    let chain_id = info["chain_id"].as_u64().unwrap() as u32;
    let model_hex = info["models"][0]["id"].as_str().unwrap().to_string();
    let model: [u8; 32] = hex::decode(&model_hex).unwrap().try_into().unwrap();

    // Ledger blocks by height and by hash; unknown and malformed ids.
    let (status, body) = http(port, "GET", "/v2/ledger/blocks/0", b"");
    assert_eq!(status, 200, "{body}");
    let genesis = json(&body);
    let hash = genesis["hash"].as_str().unwrap().to_string();
    let (status, body) = http(port, "GET", &format!("/v2/ledger/blocks/{hash}"), b"");
    assert_eq!((status, json(&body)["height"].as_u64()), (200, Some(0)));
    let (status, body) = http(port, "GET", "/v2/ledger/blocks/999", b"");
    assert_eq!(status, 404);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .contains("height 999"));
    let (status, body) = http(port, "GET", "/v2/ledger/blocks/not-a-hash", b"");
    assert_eq!(status, 400);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .contains("neither a height nor"));
    let (status, body) = http(port, "GET", "/v2/mempool", b"");
    assert_eq!(
        (status, json(&body)["transactions"].as_u64()),
        (200, Some(0))
    );
    let (status, body) = http(port, "GET", "/v2/nothing", b"");
    assert_eq!(status, 404);
    assert!(json(&body)["error"].is_string());
    // A query string that does not parse is refused with a JSON error like any bad input.
    let me = json(&http(port, "GET", "/v2/info", b"").1)["address"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v2/accounts/{me}/history?blocks=-1");
    let (status, body) = http(port, "GET", &path, b"");
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"].as_str().unwrap().contains("blocks"),
        "{body}"
    );

    // The inference layer at genesis: no blocks past it, no verifier set yet, fai-tiny
    // approved from the start; an empty account; read-only contract calls.
    let (status, body) = http(port, "GET", "/v2/inference-chain", b"");
    assert_eq!(status, 200, "{body}");
    let layer2 = json(&body);
    assert_eq!(layer2["tip"]["height"], 0, "{layer2}");
    assert_eq!(layer2["tip"]["id"], layer2["genesis"], "{layer2}");
    assert_eq!(layer2["verifier_set"], serde_json::json!([]), "{layer2}");
    assert_eq!(layer2["liquid_supply_units"], 0, "{layer2}");
    // `/v2/info` shows the same tip, from the snapshot.
    assert_eq!(info["inference"]["height"], 0, "{info}");
    assert_eq!(info["inference"]["tip"], layer2["tip"]["id"], "{info}");
    // `/v2/inference-nodes` (which a wallet asks before every request) is read once per
    // pair of tips, then answered again without the chain task: fifty asks cost far
    // fewer than fifty of its commands.
    let commands = || {
        let (status, text) = http(port, "GET", "/metrics", b"");
        assert_eq!(status, 200);
        text.lines()
            .find_map(|l| l.strip_prefix("infer_chain_commands_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the chain task's command count")
    };
    let listed = http(port, "GET", "/v2/inference-nodes", b"");
    assert_eq!(listed.0, 200, "{}", listed.1);
    let before = commands();
    for _ in 0..50 {
        assert_eq!(http(port, "GET", "/v2/inference-nodes", b""), listed);
    }
    let done = commands() - before;
    assert!(done < 25.0, "{done} chain task commands for 50 asks");
    let (status, body) = http(port, "GET", "/v2/models", b"");
    assert_eq!(status, 200, "{body}");
    let models = json(&body);
    assert_eq!(models[0]["name"], "fai-tiny", "{models}");
    assert_eq!(models[0]["approved"], true, "{models}");
    assert_eq!(models[0]["registry"]["method"], "replay", "{models}");
    let someone = fai_primitives::Address::from_public_key(
        fai_primitives::Network::Regtest,
        &SecretKey::from_bytes(&[9; 32]).unwrap().public_key(),
    );
    let (status, body) = http(
        port,
        "GET",
        &format!("/v2/inference-chain/accounts/{someone}"),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let account = json(&body);
    assert_eq!(
        (account["balance_units"].as_u64(), account["nonce"].as_u64()),
        (Some(0), Some(0)),
        "{account}"
    );
    assert!(account["stake"].is_null(), "{account}");
    assert!(account["inference_node"].is_null(), "{account}");
    let (status, _) = http(port, "GET", "/v2/inference-chain/accounts/fai1nope", b"");
    assert_eq!(status, 400);
    // staking.get-cycle-length, then bad calls.
    let call = |body: &str| http(port, "POST", "/v2/contracts/call-read", body.as_bytes());
    let (status, body) = call(r#"{"contract": "staking", "function": "get-cycle-length"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["json"], 5, "{body}");
    // get-stake of a principal: the argument is a Clarity value's consensus bytes.
    let mut principal = vec![0x05, 26];
    principal.extend_from_slice(&someone.key_hash.0);
    let (status, body) = call(&format!(
        r#"{{"contract": "staking", "function": "get-stake", "args": ["{}"]}}"#,
        hex::encode(&principal)
    ));
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["json"].is_null(), "{body}");
    assert_eq!(json(&body)["result"], "09", "none: {body}");
    for (bad, why) in [
        (r#"{"contract": "staking"}"#, "the body must be"),
        (
            r#"{"contract": "nope", "function": "f"}"#,
            "contract call failed",
        ),
        (
            r#"{"contract": "staking", "function": "get-stake", "args": ["zz"]}"#,
            "not hex",
        ),
        (
            r#"{"contract": "staking", "function": "get-stake", "args": ["ff00"]}"#,
            "argument 0",
        ),
        (
            r#"{"contract": "staking", "function": "no-such-function"}"#,
            "contract call failed",
        ),
        ("not json", "malformed JSON"),
    ] {
        let (status, body) = call(bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            json(&body)["error"].as_str().unwrap().contains(why),
            "{bad}: {body}"
        );
    }

    // A streamed inference: token events, then the signed receipt.
    let tx = signed_tx(model, chain_id, 0, "tell me about blocks", 60);
    let (status, body) = http(port, "POST", "/v2/inference", &body_of(&tx));
    assert_eq!(status, 200, "{body}");
    let evs = events(&body);
    let tokens: Vec<String> = evs
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| json(d)["text"].as_str().unwrap().to_string())
        .collect();
    assert!(tokens.len() > 1, "{body}");
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "receipt", "{body}");
    let receipt_json = json(data);
    let receipt =
        ResultReceipt::from_bytes(&hex::decode(receipt_json["receipt"].as_str().unwrap()).unwrap())
            .unwrap();
    assert!(receipt.signature_valid());
    assert_eq!(receipt.tx, tx.stub.txid());
    let text: String = tokens.concat();
    assert_eq!(receipt.output_hash, ResultReceipt::hash_output(&text));
    assert_eq!(receipt_json["text"].as_str().unwrap(), text);

    // Sealed to this node (its key from /v2/info): the answer comes back as `sealed`
    // events only, which open in order with the request's reply key into tokens and the
    // receipt; the body holds neither the answer nor the prompt in the clear.
    let sealed_tx = signed_tx(model, chain_id, 1, "a question for this node only", 60);
    let info = json(&http(port, "GET", "/v2/info", b"").1);
    let node_key = fai_primitives::seal::SealingKey(
        <[u8; 32]>::try_from(hex::decode(info["sealing_key"].as_str().unwrap()).unwrap()).unwrap(),
    );
    let to = info["address"]
        .as_str()
        .unwrap()
        .parse::<fai_primitives::Address>()
        .unwrap()
        .key_hash;
    let (request, reply) =
        fai_inference_chain::sealed_request::SealedRequest::seal(&sealed_tx, to, &node_key)
            .unwrap();
    let sealed_body = serde_json::json!({"sealed": hex::encode(request.to_bytes())})
        .to_string()
        .into_bytes();
    assert!(!String::from_utf8_lossy(&sealed_body).contains("a question for this node only"));
    let (status, body) = http(port, "POST", "/v2/inference", &sealed_body);
    assert_eq!(status, 200, "{body}");
    let evs = events(&body);
    assert!(evs.iter().all(|(e, _)| e == "sealed"), "{body}");
    let opened: Vec<fai_api::InferenceEvent> = evs
        .iter()
        .enumerate()
        .map(|(i, (_, d))| {
            let bytes = hex::decode(json(d)["sealed"].as_str().unwrap()).unwrap();
            let plain = reply.open(i as u64, &bytes).unwrap();
            fai_api::InferenceEvent::from_sealed_plaintext(&plain).unwrap()
        })
        .collect();
    let mut answer = String::new();
    let mut sealed_receipt = None;
    for event in &opened {
        match event {
            fai_api::InferenceEvent::Token(t) => answer.push_str(&t.text),
            fai_api::InferenceEvent::Receipt(r) => sealed_receipt = Some(r.clone()),
            other => panic!("{other:?}"),
        }
    }
    let sealed_receipt = sealed_receipt.expect("a receipt");
    assert_eq!(sealed_receipt.text.as_deref(), Some(answer.as_str()));
    assert_eq!(sealed_receipt.txid, sealed_tx.stub.txid().to_string());
    assert!(answer.len() > 8 && !body.contains(&answer), "{body}");
    // Out of order, an event does not open.
    let second = hex::decode(json(&evs[1].1)["sealed"].as_str().unwrap()).unwrap();
    assert!(reply.open(0, &second).is_err());
    // The same sealed request again (a relay replaying it): its answer would be sealed
    // again under the same reply key and nonces; refused.
    let (status, body) = http(port, "POST", "/v2/inference", &sealed_body);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("served already"), "{body}");
    // Sealed to another node: this node cannot open it, and it is not registered
    // anywhere to relay to.
    let other =
        fai_primitives::seal::SealingSecret::derive(&SecretKey::from_bytes(&[9; 32]).unwrap());
    let (elsewhere, _) = fai_inference_chain::sealed_request::SealedRequest::seal(
        &signed_tx(model, chain_id, 2, "for another node", 60),
        fai_primitives::Hash160([9; 20]),
        &other.public(),
    )
    .unwrap();
    let (status, body) = http(
        port,
        "POST",
        "/v2/inference",
        serde_json::json!({"sealed": hex::encode(elsewhere.to_bytes())})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a registered node"), "{body}");

    // The wallet does the same from the command line: streamed, then the checked receipt.
    let config = dir.path().join("regtest.toml");
    let c = config.to_str().unwrap();
    let made = cli(
        &["wallet", "new", "--name", "u", "--config", c],
        "passphrase-u",
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = cli(
        &[
            "wallet",
            "infer",
            "what is a block?",
            "--name",
            "u",
            "--max-tokens",
            "30",
            "--seed",
            "4",
            "--json",
            "--config",
            c,
        ],
        "passphrase-u",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["tokens"].as_u64().unwrap() >= 1, "{v}");
    let out = cli(
        &[
            "wallet",
            "infer",
            "and a ledger?",
            "--name",
            "u",
            "--config",
            c,
        ],
        "passphrase-u",
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("[receipt: transaction"), "{shown}");
    let out = cli(
        &[
            "wallet",
            "infer",
            "x",
            "--name",
            "u",
            "--model",
            &"00".repeat(32),
            "--config",
            c,
        ],
        "passphrase-u",
    );
    // A model nobody approved: refused before any node is looked for.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not approved"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Its state, by id.
    let (status, body) = http(
        port,
        "GET",
        &format!("/v2/inference/{}", tx.stub.txid()),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    // Served, and waiting for an inference block (this node produces none).
    assert_eq!(json(&body)["state"], "pending", "{body}");
    // (Four: the plain one, the sealed one and the wallet's two.)
    assert_eq!(
        json(&http(port, "GET", "/v2/mempool", b"").1)["inferences"],
        4
    );
    let (status, _) = http(
        port,
        "GET",
        &format!("/v2/inference/{}", "ab".repeat(32)),
        b"",
    );
    assert_eq!(status, 404);

    // Refusals, each a JSON error that says what was wrong.
    let refuse = |body: Vec<u8>, code: u16, says: &str| {
        let (status, text) = http(port, "POST", "/v2/inference", &body);
        assert_eq!(status, code, "{text}");
        let err = json(&text)["error"].as_str().unwrap().to_string();
        assert!(err.contains(says), "{err} should say {says}");
    };
    refuse(b"{not json".to_vec(), 400, "malformed JSON");
    refuse(b"{\"tx\": \"zz\"}".to_vec(), 400, "not hex");
    refuse(
        b"{\"tx\": \"00\"}".to_vec(),
        400,
        "bad inference transaction",
    );
    let mut tampered = signed_tx(model, chain_id, 1, "x", 10);
    tampered.stub.max_fee = Amount::from_units(1).unwrap();
    refuse(body_of(&tampered), 400, "signature");
    refuse(
        body_of(&signed_tx(model, chain_id + 1, 2, "x", 10)),
        400,
        "chain id",
    );
    refuse(
        body_of(&signed_tx([9; 32], chain_id, 3, "x", 10)),
        400,
        "is not approved",
    );
    // Attack: an inference that can pay nothing, served anyway (a node with a price of
    // zero took it before).
    let mut free = signed_tx(model, chain_id, 5, "x", 10);
    free.stub.max_fee = Amount::ZERO;
    free.stub.sign(&SecretKey::from_bytes(&[7; 32]).unwrap());
    refuse(body_of(&free), 400, "above zero");
    refuse(body_of(&tx), 409, "already submitted");
    // The same sender's nonce 0 again, for another prompt: the first one holds it.
    refuse(
        body_of(&signed_tx(model, chain_id, 0, "another question", 10)),
        409,
        "nonce 0 of this sender is taken",
    );
    // 32,768 tokens at this node's price (0.01 FAI per million) cost more than the
    // 10,000 units the transaction offers.
    refuse(
        body_of(&signed_tx(model, chain_id, 4, "x", 32_768)),
        400,
        "fee too low",
    );
    let huge = format!("{{\"tx\": \"{}\"}}", "0".repeat(300_000));
    refuse(huge.into_bytes(), 413, "cannot read the body");

    // The OpenAPI document lists every endpoint, and the operator's guide lists exactly
    // the document's endpoints (a guide cut short fails here).
    let (status, body) = http(port, "GET", "/v2/openapi.json", b"");
    assert_eq!(status, 200);
    let doc = json(&body);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v2/info",
        "/v2/ledger/blocks/{id}",
        "/v2/mempool",
        "/v2/ledger/accounts/{address}",
        "/v2/ledger/accounts/{address}/utxos",
        "/v2/transactions",
        "/v2/inference",
        "/v2/inference/{txid}",
        "/v2/admin/shutdown",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator.md"))
            .unwrap();
    let mut listed = std::collections::HashSet::new();
    for line in guide.lines().filter(|l| {
        l.starts_with("| GET |") || l.starts_with("| POST |") || l.starts_with("| DELETE |")
    }) {
        let path = line.split('`').nth(1).unwrap();
        let path = path.replace("{height or hash}", "{id}");
        assert!(
            paths.contains_key(&path) || path == "/v2/openapi.json",
            "docs/operator.md lists {path}, which the OpenAPI document lacks"
        );
        listed.insert(path);
    }
    // And the other way: every endpoint is in the guide's table.
    for path in paths.keys() {
        assert!(
            listed.contains(path.as_str()),
            "the OpenAPI document has {path}, which docs/operator.md does not list"
        );
    }

    // Admin calls are off without a token.
    let (status, body) = http(port, "POST", "/v2/admin/shutdown", b"");
    assert_eq!(status, 403, "{body}");

    // Metrics count what happened; the node still serves.
    let (status, body) = http(port, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(
        body.contains("infer_engine_jobs_total{outcome=\"finished\"} 4"),
        "{body}"
    );
    assert!(
        body.contains("infer_rpc_inference_requests_total{answer=\"accepted\"} 4"),
        "{body}"
    );
    for gauge in [
        "infer_inference_height 0",
        "infer_vm_pool_transactions 0",
        "infer_p2p_peers 0",
        "infer_p2p_syncing 0",
    ] {
        assert!(body.contains(gauge), "{gauge} missing: {body}");
    }
    // The chain task did the node's commands (the four inferences' among them) and
    // says how long they queued.
    let figure = |name: &str| -> f64 {
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {body}"));
        line[name.len()..].trim().parse().expect("a number")
    };
    assert!(figure("infer_chain_commands_total") >= 4.0, "{body}");
    assert!(figure("infer_chain_busy_seconds_total") > 0.0, "{body}");
    // Present as numbers (their values depend on timing): `figure` fails otherwise.
    for name in [
        "infer_chain_queued_seconds_total",
        "infer_chain_queue_commands",
        "infer_chain_longest_queued_seconds",
    ] {
        figure(name);
    }
    assert_eq!(http(port, "GET", "/v2/info", b"").0, 200);
}

/// A mining node pays a wallet; the wallet sees its balance and sends FAI through the RPC
/// to another wallet, whose balance shows it once mined.
#[test]
fn a_wallet_is_paid_by_mining_and_sends_through_the_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!(
        "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[rpc]\nlisten = \"127.0.0.1:{port}\"\n",
        dir.path().join("data").display()
    );
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, &base).unwrap();
    let c = plain.to_str().unwrap();
    let alice = cli(
        &["wallet", "new", "--name", "alice", "--json", "--config", c],
        "passphrase-a",
    );
    assert!(
        alice.status.success(),
        "{}",
        String::from_utf8_lossy(&alice.stderr)
    );
    let alice: serde_json::Value = serde_json::from_slice(&alice.stdout).unwrap();
    let alice = alice["address"].as_str().unwrap().to_string();
    let bob = cli(
        &["wallet", "new", "--name", "bob", "--json", "--config", c],
        "passphrase-b",
    );
    let bob: serde_json::Value = serde_json::from_slice(&bob.stdout).unwrap();
    let bob = bob["address"].as_str().unwrap().to_string();

    let mining = dir.path().join("mining.toml");
    std::fs::write(
        &mining,
        format!("{base}\n[mining]\nenabled = true\nthreads = 1\nblock_interval_ms = 20\naddress = \"{alice}\"\n"),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["start", "--config", mining.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _node = Node { child, port };
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}");
    };
    let height = || {
        TcpStream::connect(("127.0.0.1", port)).ok()?;
        json(&http(port, "GET", "/v2/info", b"").1)["ledger"]["height"].as_u64()
    };
    wait_for("102 blocks", &|| height().is_some_and(|h| h >= 102));

    let out = cli(
        &[
            "wallet", "balance", "--name", "alice", "--json", "--config", c,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let balance: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        balance["balance_units"].as_u64().unwrap() >= 150_000_000,
        "{balance}"
    );

    let out = cli(
        &[
            "wallet", "send", &bob, "1 FAI", "--name", "alice", "--json", "--config", c,
        ],
        "passphrase-a",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["txid"].as_str().unwrap().len(), 64);
    let bob_units = || {
        json(&http(port, "GET", &format!("/v2/ledger/accounts/{bob}"), b"").1)["balance_units"]
            .as_u64()
    };
    wait_for("bob's payment to be mined", &|| {
        bob_units() == Some(100_000_000)
    });

    // A peg-in: a ledger transaction whose data output carries the amount and the op.
    // The height is read before it is sent: blocks come every 20 ms, so on a loaded
    // machine the peg-in can be mined before a height read after the send.
    let sent_at = height().unwrap();
    let out = cli(
        &[
            "wallet", "peg-in", "2 FAI", "--to", &bob, "--name", "alice", "--json", "--config", c,
        ],
        "passphrase-a",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pegged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peg_txid = pegged["txid"].as_str().unwrap().to_string();
    assert_eq!(pegged["to"], bob.as_str());
    let mined_in = || {
        let tip = height()?;
        (sent_at..=tip).find(|h| {
            json(&http(port, "GET", &format!("/v2/ledger/blocks/{h}"), b"").1)["transactions"]
                .as_array()
                .is_some_and(|txs| txs.iter().any(|t| t == peg_txid.as_str()))
        })
    };
    wait_for("the peg-in to be mined", &|| mined_in().is_some());
    // Both layers in the wallet's balance; the inference layer credits the peg-in only
    // in an inference block six ledger blocks on (none is produced here).
    let out = cli(
        &[
            "wallet", "balance", "--name", "bob", "--json", "--config", c,
        ],
        "",
    );
    let both: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(both["balance_units"], 100_000_000, "{both}");
    assert_eq!(both["inference"]["nonce"], 0, "{both}");
    assert!(both["inference"]["balance_units"].is_u64(), "{both}");
    let out = cli(
        &[
            "wallet", "peg-in", "0 FAI", "--name", "alice", "--config", c,
        ],
        "passphrase-a",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("zero"));

    // Refusals: more than Alice has, a wrong passphrase, garbage transactions.
    let out = cli(
        &[
            "wallet",
            "send",
            &bob,
            "1000000 FAI",
            "--name",
            "alice",
            "--config",
            c,
        ],
        "passphrase-a",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not enough spendable"));
    let out = cli(
        &[
            "wallet", "send", &bob, "1 FAI", "--name", "alice", "--config", c,
        ],
        "wrong one",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    let (status, body) = http(port, "POST", "/v2/transactions", b"{\"tx\": \"00\"}");
    assert_eq!(status, 400);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .contains("bad transaction"));
    let (status, body) = http(port, "GET", "/v2/ledger/accounts/not-an-address", b"");
    assert_eq!(status, 400, "{body}");

    // An inference transaction whose expiry (inference height 0) has passed is refused.
    let info = json(&http(port, "GET", "/v2/info", b"").1);
    let model: [u8; 32] = hex::decode(info["models"][0]["id"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let chain_id = info["chain_id"].as_u64().unwrap() as u32;
    let late = signed_tx_expiring(model, chain_id, 0, "too late", 8, 0);
    let (status, body) = http(port, "POST", "/v2/inference", &body_of(&late));
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

/// With a token, `POST /v2/admin/shutdown` stops the node cleanly; a wrong token is 401.
#[test]
fn an_admin_with_the_token_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("admin.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[rpc]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"0123456789abcdef-secret\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["start", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Node { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the RPC never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let node_rpc = fai_api::blocking::Client::new(&format!("127.0.0.1:{port}")).unwrap();
    let refused = node_rpc.admin_shutdown("guess").unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused}");
    assert!(
        node_rpc
            .admin_shutdown("0123456789abcdef-secret")
            .unwrap()
            .shutting_down
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node serves every model of `engine.serve` on the configured device: `/v2/info` lists
/// them and the device; a model not approved in the registry is refused by name until it
/// is; a name that is not in the store stops the node at start with a clear error.
#[test]
fn a_node_serves_the_models_of_engine_serve_and_names_its_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spec = fai_engine::tiny::TinySpec {
        name: "second".into(),
        seed: 77,
        ..fai_engine::tiny::TinySpec::fai_tiny()
    };
    let file = dir.path().join("second.gguf");
    fai_engine::tiny::write_gguf(&spec, &file).unwrap();
    let port = free_port();
    let config = dir.path().join("regtest.toml");
    let write = |serve: &str| {
        std::fs::write(
            &config,
            format!(
                "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[rpc]\nlisten = \"127.0.0.1:{port}\"\n\n[engine]\ndevice = \"cpu\"\nserve = [{serve}]\n",
                data.display()
            ),
        )
        .unwrap();
    };
    write("\"fai-tiny\", \"nope\"");
    let c = config.to_str().unwrap();
    let out = cli(&["start", "--config", c], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("engine.serve") && err.contains("nope"),
        "{err}"
    );

    let out = cli(
        &[
            "models",
            "import",
            file.to_str().unwrap(),
            "--name",
            "second",
            "--config",
            c,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write("\"fai-tiny\", \"second\"");
    let child = Command::new(bin())
        .args(["start", "--config", c])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _node = Node { child, port };
    assert!(fai_tests::wait(60, &|| TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    let info = json(&http(port, "GET", "/v2/info", b"").1);
    let names: Vec<&str> = info["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fai-tiny", "second"], "{info}");
    assert_eq!(info["engine"]["device"], "cpu", "{info}");
    assert!(
        info["engine"]["memory_total_bytes"].as_u64().unwrap() > 0,
        "{info}"
    );
    let second = info["models"][1]["id"].as_str().unwrap();
    let model: [u8; 32] = hex::decode(second).unwrap().try_into().unwrap();
    let chain_id = info["chain_id"].as_u64().unwrap() as u32;
    let (status, body) = http(
        port,
        "POST",
        "/v2/inference",
        &body_of(&signed_tx(model, chain_id, 0, "hello", 10)),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not approved"), "{body}");
    let models = json(&http(port, "GET", "/v2/models", b"").1);
    assert_eq!(models.as_array().unwrap().len(), 2, "{models}");
}

/// Attack: free inference. A fresh key with no funds on the inference layer signs
/// requests and is served (64 nonces per key, unlimited keys); before, nothing checked
/// that the sender could pay. Now the node refuses it with 402 and says why.
#[test]
fn a_request_the_sender_cannot_pay_for_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), "");
    let info = json(&http(node.port, "GET", "/v2/info", b"").1);
    let chain_id = info["chain_id"].as_u64().unwrap() as u32;
    let model: [u8; 32] = hex::decode(info["models"][0]["id"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let tx = signed_tx(model, chain_id, 0, "answer me for free", 8);
    let (status, body) = http(node.port, "POST", "/v2/inference", &body_of(&tx));
    assert_eq!(status, 402, "{body}");
    let error = json(&body)["error"].as_str().unwrap().to_string();
    assert!(error.contains("balance of 0"), "{error}");
    // The nonce is not held: the sender may try again once funded.
    let (status, body) = http(node.port, "POST", "/v2/inference", &body_of(&tx));
    assert_eq!(status, 402, "{body}");
}
