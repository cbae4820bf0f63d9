//! The `infer-node` binary as an operator uses it: help, init, keys, a mining node that
//! stops cleanly on Ctrl-C and resumes from its stored tip, bad configuration, benchmarks.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_infer-node");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn regtest_config(dir: &Path, mining: bool) -> std::path::PathBuf {
    let path = dir.join("regtest.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n\n[mining]\nenabled = {mining}\nthreads = 1\n\n[rpc]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// A running node whose log lines are collected as they come.
struct Running {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["start", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, log }
    }

    /// Waits up to `limit` for a log line satisfying `f`.
    fn wait_for(&self, limit: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| f(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn interrupt(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "node did not stop on Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().clone();
        (status, log)
    }
}

/// The height field of a log line.
fn height_of(line: &str) -> u32 {
    let at = line.find("height=").expect("height field") + 7;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn help_lists_the_commands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["start", "init", "keys", "bench", "--config", "--datadir"] {
        assert!(help.contains(cmd), "{cmd} missing from:\n{help}");
    }
}

#[test]
fn init_and_keys_manage_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = regtest_config(dir.path(), false);
    let c = config.to_str().unwrap();
    let out = run(&["init", "--config", c]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let init = text(&out.stdout);
    assert!(init.contains("network:        regtest"), "{init}");
    assert!(init.contains("ledger height:  0"), "{init}");
    assert!(dir.path().join("data/keys/node.key").exists());

    let out = run(&["keys", "new", "--name", "alice", "--config", c]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created = text(&out.stdout);
    let address = created
        .lines()
        .find_map(|l| l.strip_prefix("address:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(address.starts_with("rfai1"), "{address}");

    let shown = text(&run(&["keys", "show", "--name", "alice", "--config", c]).stdout);
    assert!(shown.contains(&address));
    let again = run(&["keys", "new", "--name", "alice", "--config", c]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"));
    let missing = run(&["keys", "show", "--name", "bob", "--config", c]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("keys new --name bob"));
}

#[test]
fn a_mining_node_stops_on_ctrl_c_and_resumes_from_its_tip() {
    let dir = tempfile::tempdir().unwrap();
    let config = regtest_config(dir.path(), true);
    let node = Running::start(&config);
    let line = node.wait_for(Duration::from_secs(60), |l| {
        l.contains("block connected") && height_of(l) >= 5
    });
    assert!(
        line.contains("hash=") && line.contains("reward=1.5 FAI"),
        "{line}"
    );
    let (status, log) = node.interrupt();
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        log.join("\n")
    );
    let stopped = log
        .iter()
        .find(|l| l.contains("stopped"))
        .expect("a final log line");
    let stopped_height = height_of(stopped);
    assert!(stopped_height >= 5);

    // Restart without mining: it reports the same tip it stopped at.
    let config = regtest_config(dir.path(), false);
    let node = Running::start(&config);
    let line = node.wait_for(Duration::from_secs(30), |l| {
        l.contains("infer-node starting")
    });
    assert_eq!(height_of(&line), stopped_height, "{line}");
    let (status, _) = node.interrupt();
    assert!(status.success());
}

#[test]
fn a_config_with_an_unknown_key_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\nmining_threads = 4\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = run(&["start", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("mining_threads") && err.contains("bad.toml"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
    let out = run(&["start", "--config", "/nonexistent/x.toml"]);
    assert!(text(&out.stderr).contains("cannot read configuration file"));
}

#[test]
fn benchmarks_print_json_with_their_ratios() {
    let out = run(&[
        "bench",
        "pow",
        "--threads",
        "1",
        "--seconds",
        "0.2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["hashes_per_sec", "sha256_compressions_per_sec", "ratio"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    let out = run(&["bench", "validate", "--txs", "40", "--runs", "1", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["transactions"], 40);
    for key in ["txs_per_sec", "sig_verifies_per_sec", "ratio"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    let out = run(&["bench", "poi", "--receipts", "60", "--runs", "1", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["receipts"], 60);
    for key in [
        "assemble_ms",
        "verify_ms",
        "receipts_per_sec",
        "sig_verifies_per_sec",
        "ratio",
    ] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    let out = run(&["bench", "rpc", "--requests", "3", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["rpc_ttft_ms", "engine_ttft_ms"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert!(v["overhead_ms"].is_number(), "{v}");
    let bad = run(&["bench", "poi", "--receipts", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("--receipts"),
        "{}",
        text(&bad.stderr)
    );
    let human = text(&run(&["bench", "pow", "--threads", "1", "--seconds", "0.1"]).stdout);
    assert!(
        human.starts_with("pow: ") && human.contains("ratio"),
        "{human}"
    );
}

#[test]
fn the_built_in_model_is_listed_and_streams_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = regtest_config(dir.path(), false);
    let c = config.to_str().unwrap();
    let out = run(&["models", "list", "--config", c]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.starts_with("fai-tiny"), "{listed}");
    assert!(dir.path().join("data/models/fai-tiny.gguf").exists());

    let args = [
        "models",
        "run",
        "fai-tiny",
        "hello there",
        "--max-tokens",
        "24",
        "--config",
        c,
    ];
    let first = run(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stderr).contains("tokens/s"));
    let second = run(&args);
    assert_eq!(first.stdout, second.stdout, "greedy answers repeat");
    assert!(first.stdout.len() > 1);

    let missing = run(&["models", "run", "/no/such.gguf", "hi", "--config", c]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/no/such.gguf"));
}

#[test]
fn models_are_imported_into_the_store_listed_and_run_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = regtest_config(dir.path(), false);
    let c = config.to_str().unwrap();
    // A second model file, made the way the built-in one is (another seed).
    let out = run(&["models", "list", "--config", c]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tiny = dir.path().join("data/models/fai-tiny.gguf");
    let copy = dir.path().join("mine.gguf");
    std::fs::copy(&tiny, &copy).unwrap();

    let out = run(&[
        "models",
        "import",
        copy.to_str().unwrap(),
        "--name",
        "mine",
        "--price",
        "0.5 FAI",
        "--config",
        c,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("imported mine"));
    let listed = text(&run(&["models", "list", "--config", c]).stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("mine") && l.contains("0.5 FAI")),
        "{listed}"
    );

    // The same file again (same id) is refused; so is a bad price.
    let again = run(&[
        "models",
        "import",
        copy.to_str().unwrap(),
        "--name",
        "mine2",
        "--config",
        c,
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already has mine"),
        "{}",
        text(&again.stderr)
    );
    let bad_price = run(&[
        "models",
        "import",
        copy.to_str().unwrap(),
        "--price",
        "lots",
        "--config",
        c,
    ]);
    assert!(text(&bad_price.stderr).contains("--price"));

    let by_name = run(&[
        "models",
        "run",
        "mine",
        "hi",
        "--max-tokens",
        "8",
        "--config",
        c,
    ]);
    assert!(by_name.status.success(), "{}", text(&by_name.stderr));

    // The same weights with a tokenizer.json are another model, with their own id.
    let byte_char = |b: u8| {
        let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        if printable(b) {
            char::from(b)
        } else {
            char::from_u32(256 + (0..b).filter(|x| !printable(*x)).count() as u32).unwrap()
        }
    };
    let vocab: serde_json::Map<String, serde_json::Value> = (0..=255u8)
        .map(|b| (byte_char(b).to_string(), serde_json::json!(b)))
        .collect();
    let tokenizer = dir.path().join("tokenizer.json");
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 257, "content": "<|end|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "post_processor": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": []},
    });
    std::fs::write(&tokenizer, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = run(&[
        "models",
        "import",
        copy.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--name",
        "mine-json",
        "--config",
        c,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let store = std::fs::read_to_string(dir.path().join("data/models.toml")).unwrap();
    assert!(store.contains("tokenizer = "), "{store}");
    let by_name = run(&[
        "models",
        "run",
        "mine-json",
        "hi",
        "--max-tokens",
        "8",
        "--config",
        c,
    ]);
    assert!(by_name.status.success(), "{}", text(&by_name.stderr));

    // A file changed after import is refused by name, with both ids shown.
    let mut bytes = std::fs::read(&copy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    let changed = run(&["models", "run", "mine", "hi", "--config", c]);
    assert_eq!(changed.status.code(), Some(1));
    assert!(
        text(&changed.stderr).contains("has changed since it was imported"),
        "{}",
        text(&changed.stderr)
    );

    // A store with an unknown key is refused by name.
    let store = dir.path().join("data/models.toml");
    let text_store = std::fs::read_to_string(&store)
        .unwrap()
        .replace("context_length", "ctx_len");
    std::fs::write(&store, text_store).unwrap();
    let broken = run(&["models", "list", "--config", c]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stderr).contains("ctx_len"),
        "{}",
        text(&broken.stderr)
    );
}

#[test]
fn wallets_are_made_imported_and_shown_with_a_passphrase_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = regtest_config(dir.path(), false);
    let c = config.to_str().unwrap();
    let wallet = |args: &[&str], pass: Option<&str>, stdin: &str| {
        use std::io::Write;
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        match pass {
            Some(p) => cmd.env("FAI_WALLET_PASSPHRASE", p),
            None => cmd.env_remove("FAI_WALLET_PASSPHRASE"),
        };
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = wallet(
        &["wallet", "new", "--json", "--config", c],
        Some("a long passphrase"),
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = v["address"].as_str().unwrap().to_string();
    let mnemonic = v["mnemonic"].as_str().unwrap().to_string();
    assert!(address.starts_with("rfai1"), "{address}");
    assert_eq!(mnemonic.split_whitespace().count(), 24);

    // The address needs no passphrase; a second "new" never overwrites.
    let out = wallet(&["wallet", "address", "--config", c], None, "");
    assert!(
        text(&out.stdout).contains(&address),
        "{}",
        text(&out.stderr)
    );
    let again = wallet(
        &["wallet", "new", "--config", c],
        Some("a long passphrase"),
        "",
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    // Importing the mnemonic elsewhere gives the same address; a bad one is refused.
    let out = wallet(
        &[
            "wallet", "import", "--name", "copy", "--json", "--config", c,
        ],
        Some("another passphrase"),
        &format!("{mnemonic}\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["address"], address.as_str());
    let bad = wallet(
        &["wallet", "import", "--name", "bad", "--config", c],
        Some("another passphrase"),
        "twelve words that are not a mnemonic at all\n",
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("mnemonic"),
        "{}",
        text(&bad.stderr)
    );
    // Signing needs the passphrase; the wrong one is refused.
    let signed = wallet(
        &[
            "wallet",
            "sign-message",
            "it is me",
            "--json",
            "--config",
            c,
        ],
        Some("a long passphrase"),
        "",
    );
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    let v: serde_json::Value = serde_json::from_slice(&signed.stdout).unwrap();
    assert_eq!(v["address"], address.as_str());
    assert_eq!(v["signature"].as_str().unwrap().len(), 128);
    let wrong = wallet(
        &["wallet", "sign-message", "x", "--config", c],
        Some("not the passphrase"),
        "",
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("wrong passphrase"),
        "{}",
        text(&wrong.stderr)
    );
    let short = wallet(
        &["wallet", "new", "--name", "s", "--config", c],
        Some("short"),
        "",
    );
    assert!(
        text(&short.stderr).contains("at least 8"),
        "{}",
        text(&short.stderr)
    );
}

#[test]
fn asking_a_cpu_build_for_cuda_says_how_to_get_it() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = regtest_config(dir.path(), false);
    let c = config.to_str().unwrap();
    let out = run(&[
        "models", "run", "fai-tiny", "hi", "--device", "cuda", "--config", c,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("make build-cuda"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "models", "run", "fai-tiny", "hi", "--device", "tpu", "--config", c,
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("cuda:N"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "models",
        "run",
        "fai-tiny",
        "hi",
        "--max-tokens",
        "4",
        "--device",
        "cpu",
        "--config",
        c,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("on cpu"),
        "{}",
        text(&out.stderr)
    );
}
