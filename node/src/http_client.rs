//! A minimal HTTP/1.1 client for the wallet's calls to a node's RPC (JSON in, JSON out;
//! one request per connection). Bounded: answers over 16 MiB are refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Sends `method path` with an optional JSON body to `address` (host:port) and returns
/// the JSON answer; a non-2xx answer becomes an error with the node's message.
pub fn call(address: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut s = TcpStream::connect(address).with_context(|| {
        format!("cannot reach the node's RPC at {address}; is `infer-node start` running?")
    })?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .context("the node sent no HTTP answer")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("the node sent no HTTP status")?;
    let value: Value = serde_json::from_str(payload.trim())
        .with_context(|| format!("the node's answer is not JSON (status {status})"))?;
    if !(200..300).contains(&status) {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        bail!("the node refused ({status}): {msg}");
    }
    Ok(value)
}
