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
