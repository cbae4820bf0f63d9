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

/// Posts `body` to `path` and calls `on_event(event, data)` for each server-sent event as
/// it arrives (chunked transfer decoded). A non-2xx answer becomes an error with the
/// node's message.
pub fn stream_events(
    address: &str,
    path: &str,
    body: &Value,
    mut on_event: impl FnMut(&str, &str) -> Result<()>,
) -> Result<()> {
    use std::io::BufRead;
    let mut s = TcpStream::connect(address).with_context(|| {
        format!("cannot reach the node's RPC at {address}; is `infer-node start` running?")
    })?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = std::io::BufReader::new(s.take(MAX_ANSWER));
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("the node sent no HTTP status")?;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if line.to_ascii_lowercase().starts_with("transfer-encoding:")
            && line.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    // The payload, de-chunked, as it arrives.
    let mut payload = Vec::new();
    let mut pending = String::new();
    let mut event = String::from("message");
    let mut handle = |bytes: &[u8], pending: &mut String, event: &mut String| -> Result<()> {
        pending.push_str(&String::from_utf8_lossy(bytes));
        while let Some(at) = pending.find('\n') {
            let line: String = pending.drain(..=at).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(e) = line.strip_prefix("event:") {
                *event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                on_event(event, d.trim_start())?;
            }
        }
        Ok(())
    };
    if !(200..300).contains(&status) {
        r.read_to_end(&mut payload)?;
        let text = String::from_utf8_lossy(&payload);
        let msg = text
            .lines()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        bail!("the node refused ({status}): {msg}");
    }
    if !chunked {
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            handle(&buf[..n], &mut pending, &mut event)?;
        }
    }
    loop {
        let mut size = String::new();
        if r.read_line(&mut size)? == 0 {
            return Ok(());
        }
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size from the node")?;
        if n as u64 > MAX_ANSWER {
            bail!("the node sent a chunk of {n} bytes");
        }
        if n == 0 {
            return Ok(());
        }
        let mut chunk = vec![0u8; n];
        r.read_exact(&mut chunk)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        handle(&chunk, &mut pending, &mut event)?;
    }
}
