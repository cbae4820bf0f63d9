//! `infer-node wallet serve`: a local OpenAI-compatible server. Each chat completion is
//! turned into an inference transaction signed with the wallet's key and sent to the
//! node's `POST /v2/inference`; the node's token stream comes back as OpenAI chunks (with
//! `stream: true`) or as one completion. Existing OpenAI clients work unchanged with
//! `base_url = http://127.0.0.1:7081/v1` and the server's API key: it spends this wallet's
//! FAI, so every request must carry the key (made at the first start, shown once, kept
//! in `wallets/NAME.serve-key` readable by its owner only), and requests a web page makes
//! (an `Origin` or a cross-site `Sec-Fetch-Site` header, or, on loopback, a `Host` that
//! is not a loopback name: DNS rebinding) are refused before the key is even looked at.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/v1/models` | the node's models, by name |
//! | POST | `/v1/chat/completions` | a completion, or server-sent chunks ending in `[DONE]` |
//!
//! Errors use OpenAI's shape: `{"error": {"message", "type", "code"}}`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fai_inference_chain::types::{Role, Turn};
use fai_primitives::Amount;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{self as wallet, InferRequest, Wallet};

/// What the proxy needs.
pub struct Proxy {
    /// The node's RPC address.
    pub rpc: String,
    /// Its client.
    node: fai_api::Client,
    pub wallet: Wallet,
    /// The wallet's name, shown at start.
    pub name: String,
    /// The most one request may cost.
    pub max_fee: Amount,
    /// Tokens when the request names none.
    pub default_max_tokens: u32,
    /// The last inference nonce used, so that requests served at once take distinct
    /// nonces before the node has heard of the earlier ones (held while asking the node:
    /// it serialises nonce allocation).
    last_nonce: tokio::sync::Mutex<Option<u64>>,
    /// The key every request must carry (`Authorization: Bearer KEY`).
    api_key: String,
    /// Whether the server listens on loopback only: then a request must name a loopback
    /// host.
    loopback: bool,
}

/// The prefix of a `wallet serve` API key (then 64 hex digits).
const KEY_PREFIX: &str = "fai-sk-";

/// Where the API key of `wallet serve` for wallet `name` is kept.
pub fn api_key_path(data_dir: &Path, name: &str) -> Result<PathBuf> {
    let wallet = wallet::wallet_path(data_dir, name)?;
    Ok(wallet.with_extension("serve-key"))
}

/// The API key of `wallet serve` for wallet `name`: the one kept in
/// [`api_key_path`], or a new one (32 random bytes) stored there readable by its owner
/// only. Returns it and whether it was made now (then the caller shows it, once).
pub fn api_key(data_dir: &Path, name: &str) -> Result<(String, bool)> {
    use std::io::{Read, Write};
    let path = api_key_path(data_dir, name)?;
    match std::fs::File::open(&path) {
        Ok(file) => {
            let mut text = String::new();
            file.take(256)
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let key = text.trim().to_string();
            let well_formed = key
                .strip_prefix(KEY_PREFIX)
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !well_formed {
                anyhow::bail!(
                    "{} does not hold a wallet serve API key; delete it to make a new one",
                    path.display()
                );
            }
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut secret);
            let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
            let mut file = wallet::keystore::create_private_file(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(key.as_bytes())?;
            file.sync_all()?;
            Ok((key, true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl Proxy {
    /// A proxy for `wallet` to the node at `rpc`, which requests must reach with
    /// `api_key`.
    pub fn new(
        rpc: String,
        wallet: Wallet,
        name: String,
        max_fee: Amount,
        api_key: String,
    ) -> Result<Self> {
        Ok(Proxy {
            node: fai_api::Client::new(&rpc)?,
            rpc,
            wallet,
            name,
            max_fee,
            default_max_tokens: 256,
            last_nonce: tokio::sync::Mutex::new(None),
            api_key,
            loopback: true,
        })
    }

    async fn next_nonce(&self) -> Result<u64> {
        let mut last = self.last_nonce.lock().await;
        let from_node = self
            .node
            .inference_account(&self.wallet.address.to_string())
            .await?
            .next_nonce;
        let next = match *last {
            Some(l) => from_node.max(l.saturating_add(1)),
            None => from_node,
        };
        *last = Some(next);
        Ok(next)
    }
}

/// An OpenAI-style error.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.0.is_client_error() {
            "invalid_request_error"
        } else {
            "api_error"
        };
        let body = json!({"error": {"message": self.2, "type": kind, "code": self.1}});
        let mut response = (self.0, Json(body)).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            // About a block on the fastest networks; clients back off further on their own.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "invalid_request", message.into())
}

/// A failure of the node: a refusal as busy (503: its verifiers are behind, or its
/// engine is full) is passed on as 503, which OpenAI clients retry after a pause; the
/// rest is a bad gateway.
fn upstream(e: anyhow::Error) -> ApiError {
    let busy = e
        .downcast_ref::<fai_api::Error>()
        .and_then(fai_api::Error::status)
        == Some(503);
    if busy {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_busy",
            format!("{e:#}"),
        );
    }
    ApiError(StatusCode::BAD_GATEWAY, "node_error", format!("{e:#}"))
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

/// The fields of a chat completion request the network uses; others are ignored.
#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
}

/// A message's text: a string, or the text parts of a list of content parts.
fn text_of(content: &Option<Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(part["text"].as_str().unwrap_or_default()),
                    _ => return Err(invalid("only text content is supported")),
                }
            }
            Ok(text)
        }
        Some(_) => Err(invalid(
            "message content must be a string or a list of parts",
        )),
    }
}

/// The system text, earlier turns and the final user message of a conversation.
fn conversation(messages: &[Message]) -> Result<(String, Vec<Turn>, String), ApiError> {
    let (last, earlier) = messages
        .split_last()
        .ok_or_else(|| invalid("messages must not be empty"))?;
    if last.role != "user" {
        return Err(invalid("the last message must have the role \"user\""));
    }
    let mut system = Vec::new();
    let mut turns = Vec::new();
    for m in earlier {
        let text = text_of(&m.content)?;
        match m.role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => turns.push(Turn {
                role: Role::User,
                text,
            }),
            "assistant" => turns.push(Turn {
                role: Role::Assistant,
                text,
            }),
            other => {
                return Err(invalid(format!(
                    "messages with role {other:?} are not supported"
                )))
            }
        }
    }
    Ok((system.join("\n\n"), turns, text_of(&last.content)?))
}

/// The node's models: (name, id hex).
async fn node_models(p: &Proxy) -> Result<Vec<(String, String)>, ApiError> {
    let info = p.node.info().await.map_err(|e| upstream(e.into()))?;
    Ok(info.models.into_iter().map(|m| (m.name, m.id)).collect())
}

async fn models(State(p): State<Arc<Proxy>>) -> Result<Json<Value>, ApiError> {
    let models = node_models(&p).await?;
    Ok(Json(json!({
        "object": "list",
        "data": models.iter().map(|(name, id)| json!({
            "id": name, "object": "model", "created": 0, "owned_by": "fai-network", "fai_model_id": id,
        })).collect::<Vec<_>>(),
    })))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn chat(State(p): State<Arc<Proxy>>, body: Bytes) -> Result<Response, ApiError> {
    let request: ChatRequest =
        serde_json::from_slice(&body).map_err(|e| invalid(format!("malformed request: {e}")))?;
    let (system, context, input) = conversation(&request.messages)?;
    let models = node_models(&p).await?;
    let Some((name, id)) = models
        .into_iter()
        .find(|(name, id)| *name == request.model || *id == request.model)
    else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the node serves no model {:?}; see /v1/models",
                request.model
            ),
        ));
    };
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(p.default_max_tokens);
    if max_tokens == 0 || max_tokens > 8192 {
        return Err(invalid("max_tokens must be 1 to 8192"));
    }
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(invalid("temperature must be between 0 and 2"));
    }
    let nonce = p.next_nonce().await.map_err(upstream)?;
    let infer = InferRequest {
        system,
        context,
        prompt: input,
        model: Some(id),
        max_fee: p.max_fee,
        max_tokens,
        temperature,
        seed: request.seed.unwrap_or_else(rand::random),
        nonce,
    };
    let created = now();
    let (pieces_tx, pieces_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let proxy = p.clone();
    let job = tokio::task::spawn_blocking(move || {
        let node = fai_api::blocking::Client::new(&proxy.rpc)?;
        wallet::infer(&node, &proxy.wallet, &infer, |piece| {
            let _ = pieces_tx.send(piece.to_string());
        })
    });
    let finish = move |answer: &wallet::Answer| {
        if answer.receipt.tokens >= max_tokens {
            "length"
        } else {
            "stop"
        }
    };

    if !request.stream {
        let answer = job
            .await
            .map_err(|e| upstream(anyhow::anyhow!("worker failed: {e}")))?
            .map_err(upstream)?;
        let text = answer.receipt.text.clone().unwrap_or_default();
        let tokens = answer.receipt.tokens;
        return Ok(Json(json!({
            "id": format!("chatcmpl-{}", answer.receipt.txid),
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish(&answer),
            }],
            "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
            "fai_receipt": answer,
        }))
        .into_response());
    }

    let chunk = {
        let name = name.clone();
        move |delta: Value, finish_reason: Value| {
            json!({
                "id": format!("chatcmpl-{nonce}-{created}"),
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            })
        }
    };
    // Nothing is sent before the node took the request: a refusal (busy above all)
    // becomes the answer's status, not an error inside a stream that began well.
    let mut job = job;
    let mut pieces_rx = pieces_rx;
    let early = tokio::select! {
        piece = pieces_rx.recv() => Ok(piece),
        done = &mut job => Err(done),
    };
    let (head, job) = match early {
        Ok(piece) => (piece, job),
        Err(done) => {
            let answer = done
                .map_err(|e| upstream(anyhow::anyhow!("worker failed: {e}")))?
                .map_err(upstream)?;
            (None, tokio::spawn(async move { Ok(answer) }))
        }
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let head = head.map(|piece| chunk(json!({"content": piece}), Value::Null));
    let pieces = futures::stream::iter(head).chain(tokio_stream_of(pieces_rx).map({
        let chunk = chunk.clone();
        move |piece| chunk(json!({"content": piece}), Value::Null)
    }));
    let tail = futures::stream::once(async move {
        match job.await {
            Ok(Ok(receipt)) => vec![chunk(json!({}), json!(finish(&receipt)))],
            Ok(Err(e)) => vec![json!({"error": {"message": format!("{e:#}"), "type": "api_error", "code": "node_error"}})],
            Err(e) => vec![json!({"error": {"message": format!("worker failed: {e}"), "type": "api_error", "code": "node_error"}})],
        }
    })
    .flat_map(futures::stream::iter);
    let events = futures::stream::once(async move { first })
        .chain(pieces)
        .chain(tail)
        .map(|v| Ok::<_, Infallible>(Event::default().data(v.to_string())))
        .chain(futures::stream::once(async {
            Ok(Event::default().data("[DONE]"))
        }));
    Ok(Sse::new(events).into_response())
}

/// A stream of what an unbounded receiver yields until its sender is dropped.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Whether `host` (a `Host` header: a name or address, maybe with a port) names this
/// machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses what a web page could send, then any request without the API key.
async fn guard(
    State(p): State<Arc<Proxy>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::header;
    let headers = request.headers();
    let from_a_page = headers.contains_key(header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"none");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if from_a_page || (p.loopback && !is_loopback_host(host)) {
        return ApiError(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "requests from web pages are refused: this server spends the wallet's FAI".into(),
        )
        .into_response();
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Every byte compared, so the time taken does not tell how much of a guess was right.
    let same = given.len() == p.api_key.len()
        && given
            .bytes()
            .zip(p.api_key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing or wrong API key: use the key `wallet serve` showed at its first start (kept in wallets/NAME.serve-key)".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// The router of the proxy.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; this server offers /v1/models and /v1/chat/completions".into(),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .layer(axum::middleware::from_fn_with_state(proxy.clone(), guard))
        .with_state(proxy)
}

/// Serves until Ctrl-C.
pub fn run(mut proxy: Proxy, listen: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        proxy.loopback = address.ip().is_loopback();
        eprintln!(
            "OpenAI-compatible server on http://{address}/v1 (wallet {}, node {}, at most {} per request); Ctrl-C stops it",
            proxy.name, proxy.rpc, proxy.max_fee
        );
        let app = router(Arc::new(proxy));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server stopped")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's refusal as busy reaches the OpenAI client as 503 with Retry-After (which
    /// it retries); any other refusal is a bad gateway.
    #[test]
    fn a_busy_node_is_a_503_the_client_retries() {
        let refused = |status| {
            upstream(anyhow::Error::new(fai_api::Error::Refused {
                status,
                message: "busy".into(),
            }))
            .into_response()
        };
        let busy = refused(503);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[axum::http::header::RETRY_AFTER], "1");
        let other = refused(400);
        assert_eq!(other.status(), StatusCode::BAD_GATEWAY);
        assert!(other
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .is_none());
    }

    fn msg(role: &str, content: Value) -> Message {
        Message {
            role: role.into(),
            content: Some(content),
        }
    }

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "127.0.0.1:7081",
            "localhost:7081",
            "LOCALHOST",
            "[::1]:7081",
            "127.5.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:7081",
            "10.0.0.1:7081",
            "[fe80::1]:7081",
            "",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_conversation_becomes_system_turns_and_input() {
        let (system, turns, input) = conversation(&[
            msg("system", json!("be brief")),
            msg("user", json!("hi")),
            msg("assistant", json!("hello")),
            msg(
                "user",
                json!([{"type": "text", "text": "how "}, {"type": "text", "text": "are you"}]),
            ),
        ])
        .map_err(|e| e.2)
        .unwrap();
        assert_eq!(system, "be brief");
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[1].role, Role::Assistant);
        assert_eq!(input, "how are you");
    }

    #[test]
    fn bad_conversations_are_refused_with_a_reason() {
        let err = |m: &[Message]| conversation(m).map(|_| ()).unwrap_err().2;
        assert!(err(&[]).contains("empty"));
        assert!(err(&[msg("assistant", json!("x"))]).contains("last message"));
        assert!(err(&[msg("tool", json!("x")), msg("user", json!("y"))]).contains("tool"));
        assert!(err(&[msg("user", json!([{"type": "image_url"}]))]).contains("text"));
        assert!(err(&[msg("user", json!(5))]).contains("string"));
    }
}
