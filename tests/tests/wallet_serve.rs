//! `wallet serve` driven by the official `openai` Python package (installed by
//! `make test`): models, a completion, a streamed completion and OpenAI-style errors,
//! through the proxy to a running node's `POST /v2/inference`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fai_tests::{bin, cli, free_port, Node};

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} never came up");
}

#[test]
fn an_openai_client_uses_the_network_through_wallet_serve() {
    let has_openai = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_openai,
        "this test needs python3 with the openai package: `make test` installs it (pip install openai)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The wallet is not funded: this test is about the OpenAI API, so the node serves
    // it anyway (`testing.serve_unfunded`; a node refuses an unfunded sender with 402).
    let config = dir.path().join("regtest.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[rpc]\nlisten = \"127.0.0.1:{port}\"\n\n[p2p]\nenabled = false\n\n[testing]\nserve_unfunded = true\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = cli(
        &["wallet", "new", "--name", "w", "--config", c],
        "passphrase",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = Command::new(bin())
        .args(["start", "--config", c])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _node = Node { child: node, port };
    wait_port(port, "the node's RPC");

    let proxy_port = free_port();
    let listen = format!("127.0.0.1:{proxy_port}");
    let proxy = Command::new(bin())
        .args([
            "wallet", "serve", "--name", "w", "--listen", &listen, "--config", c,
        ])
        .env("FAI_WALLET_PASSPHRASE", "passphrase")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _proxy = Node {
        child: proxy,
        port: proxy_port,
    };
    wait_port(proxy_port, "wallet serve");
    // The key made at the first start, kept readable by its owner only.
    let key_file = dir.path().join("data/wallets/w.serve-key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Attack: a web page the user opens spends the wallet's FAI through the server (it
    // answered anyone before). Without the key, with a wrong one, from a page (an Origin
    // header, a cross-site fetch) or through a DNS name rebound to loopback: refused.
    let ask = |headers: &str| -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", proxy_port)).unwrap();
        let request = format!("GET /v1/models HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let host = format!("Host: {listen}\r\n");
    let bearer = format!("Authorization: Bearer {key}\r\n");
    for (headers, status, code) in [
        (host.clone(), "401", "invalid_api_key"),
        (
            format!("{host}Authorization: Bearer fai-sk-guess\r\n"),
            "401",
            "invalid_api_key",
        ),
        (
            format!("{host}{bearer}Origin: https://evil.example\r\n"),
            "403",
            "cross_origin",
        ),
        (
            format!("{host}{bearer}Sec-Fetch-Site: cross-site\r\n"),
            "403",
            "cross_origin",
        ),
        (
            format!("Host: evil.example:{proxy_port}\r\n{bearer}"),
            "403",
            "cross_origin",
        ),
        (format!("{host}{bearer}"), "200", "fai-tiny"),
    ] {
        let answer = ask(&headers);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")) && answer.contains(code),
            "{headers:?}: {answer}"
        );
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/openai_client.py");
    let out = Command::new("python3")
        .args([script, &format!("http://{listen}/v1"), &key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the openai client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(seen["wrong_key"], "invalid_api_key", "{seen}");
    assert_eq!(seen["models"], serde_json::json!(["fai-tiny"]), "{seen}");
    let completion = &seen["completion"];
    assert!(
        !completion["content"].as_str().unwrap().is_empty(),
        "{seen}"
    );
    let tokens = completion["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&tokens), "{seen}");
    let expected = if tokens == 12 { "length" } else { "stop" };
    assert_eq!(completion["finish_reason"], expected, "{seen}");

    // The stream arrives in several pieces whose text is the whole answer; the same
    // greedy request without a system prompt may differ from the first, so only its
    // shape is checked.
    let pieces = seen["stream"]["pieces"].as_array().unwrap();
    assert!(pieces.len() >= 2, "{seen}");
    assert!(seen["stream"]["finish_reason"].is_string(), "{seen}");

    assert_eq!(seen["unknown_model"], "model_not_found", "{seen}");
    assert!(
        seen["bad_messages"]
            .as_str()
            .unwrap()
            .contains("last message"),
        "{seen}"
    );
}
