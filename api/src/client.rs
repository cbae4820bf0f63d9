//! The one client of a node's RPC: an async [`Client`] on reqwest, and
//! [`blocking::Client`] for programs without a runtime (the wallet's commands, the devnet
//! launcher, the benchmarks, the tests), which runs the same calls on a runtime of its own.
//!
//! A target is `host:port` (plain HTTP, as `rpc.listen` gives it) or an `http://` or
//! `https://` URL. Answers are bounded: a JSON answer over 16 MiB, an event stream over
//! 16 MiB in all or with a line over 4 MiB are refused, and a node silent for 60 seconds
//! (the RPC's event streams send a keep-alive every 15) ends the call. Redirects are not
//! followed: a node's RPC never redirects. Events of a kind this version does not know are
//! skipped, so that a newer node can add some.

use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
pub use reqwest::Method;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::inference::{
    CallReadRequest, CallReadResult, InferenceAccount, InferenceBlock, InferenceChainInfo,
    InferenceEvent, InferenceNode, InferenceStatus, ModelEntry,
};
use crate::ledger::{History, LedgerAccount, LedgerBlock, MempoolInfo, Utxo};
use crate::node::{
    BanRequest, Banned, ErrorBody, NodeInfo, PeersReport, ShuttingDown, TxAccepted, TxSubmission,
    Unbanned,
};

/// The largest JSON answer read.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// The most an event stream may carry in all.
pub const MAX_STREAM_BYTES: usize = 16 * 1024 * 1024;
/// The longest line of an event stream (one event's data).
pub const MAX_EVENT_LINE_BYTES: usize = 4 * 1024 * 1024;
/// How long a node may stay silent within one answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not a node address: give host:port or an http(s):// URL")]
    BadTarget(String),
    // The causes are part of each message (not error sources), so that a one-line error
    // says everything and a chain of causes does not repeat it.
    #[error("cannot reach the node's RPC at {target}; is `infer-node start` running? ({cause})")]
    Unreachable {
        target: String,
        cause: reqwest::Error,
    },
    #[error("the node refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the node's answer is broken: {0}")]
    Malformed(String),
    #[error("the node's answer is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the connection to the node failed: {0}")]
    Transport(reqwest::Error),
    #[error("cannot start the client's runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Transport(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Runtime(e)
    }
}

impl Error {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An answer read as it came: its status and body (for callers that check refusals).
#[derive(Clone, Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one node's RPC.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// The base URL of a target: `host:port` → `http://host:port`; an `http://` or
/// `https://` URL is kept (without a trailing `/`); anything else is refused.
fn base_url(target: &str) -> Result<String, Error> {
    let target = target.trim();
    let url = if target.starts_with("http://") || target.starts_with("https://") {
        target.trim_end_matches('/').to_string()
    } else {
        format!("http://{target}")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) && !target.is_empty() => Ok(url),
        _ => Err(Error::BadTarget(target.to_string())),
    }
}

/// A registered RPC address a relaying node may send requests to: `http://host:port` (as
/// nodes register themselves; given back as `host:port`) or `https://host[:port]`, and
/// nothing else: no path, query, fragment or credentials that would steer the request.
pub fn relay_target(registered: &str) -> Option<String> {
    let url = reqwest::Url::parse(registered.trim()).ok()?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    let host = url.host_str().filter(|h| !h.is_empty())?;
    match (url.scheme(), url.port_or_known_default()) {
        ("http", Some(port)) if bare => Some(format!("{host}:{port}")),
        ("https", _) if bare => Some(match url.port() {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        }),
        _ => None,
    }
}

impl Client {
    /// A client of the node at `target` (`host:port` or an http(s) URL).
    pub fn new(target: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Client {
            base: base_url(target)?,
            http,
        })
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        if e.is_connect() {
            Error::Unreachable {
                target: self.base.clone(),
                cause: e,
            }
        } else {
            Error::Transport(e)
        }
    }

    /// Sends a request and reads the whole answer (at most `MAX_ANSWER_BYTES`), whatever
    /// its status.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<RawAnswer, Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = read_bounded(response, MAX_ANSWER_BYTES).await?;
        Ok(RawAnswer { status, body })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        bearer: Option<&str>,
    ) -> Result<T, Error> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Malformed(e.to_string()))?;
        let answer = self.raw(method, path, body, bearer).await?;
        if !(200..300).contains(&answer.status) {
            return Err(refusal(answer.status, &answer.body));
        }
        serde_json::from_slice(&answer.body).map_err(|e| Error::Malformed(format!("{path}: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.call(Method::GET, path, None::<&()>, None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        self.call(Method::POST, path, Some(body), None).await
    }

    /// `GET /v2/info`.
    pub async fn info(&self) -> Result<NodeInfo, Error> {
        self.get("/v2/info").await
    }

    /// `GET /v2/mempool`.
    pub async fn mempool(&self) -> Result<MempoolInfo, Error> {
        self.get("/v2/mempool").await
    }

    /// `GET /v2/ledger/blocks/{id}`: a height or a hash.
    pub async fn ledger_block(&self, id: &str) -> Result<LedgerBlock, Error> {
        self.get(&format!("/v2/ledger/blocks/{id}")).await
    }

    /// `GET /v2/ledger/accounts/{address}`.
    pub async fn ledger_account(&self, address: &str) -> Result<LedgerAccount, Error> {
        self.get(&format!("/v2/ledger/accounts/{address}")).await
    }

    /// `GET /v2/ledger/accounts/{address}/utxos`.
    pub async fn utxos(&self, address: &str) -> Result<Vec<Utxo>, Error> {
        self.get(&format!("/v2/ledger/accounts/{address}/utxos"))
            .await
    }

    /// `POST /v2/transactions`: a signed ledger transaction.
    pub async fn submit_transaction(&self, tx: &[u8]) -> Result<TxAccepted, Error> {
        self.post("/v2/transactions", &submission(tx)).await
    }

    /// `GET /v2/accounts/{address}/history` over the last `blocks` ledger blocks.
    pub async fn history(&self, address: &str, blocks: u32) -> Result<History, Error> {
        self.get(&format!("/v2/accounts/{address}/history?blocks={blocks}"))
            .await
    }

    /// `POST /v2/inference`: the events of a signed inference transaction as they come.
    pub async fn inference(
        &self,
        tx: &[u8],
    ) -> Result<impl Stream<Item = Result<InferenceEvent, Error>> + Send + 'static, Error> {
        self.post_inference(&serde_json::json!(submission(tx)))
            .await
    }

    /// `POST /v2/inference` of a request sealed to its serving node: its events as they
    /// come (the serving node's sealed, a relay's in the clear).
    pub async fn inference_sealed(
        &self,
        sealed: &[u8],
    ) -> Result<impl Stream<Item = Result<InferenceEvent, Error>> + Send + 'static, Error> {
        self.post_inference(&serde_json::json!(crate::SealedSubmission {
            sealed: hex::encode(sealed)
        }))
        .await
    }

    async fn post_inference(
        &self,
        body: &serde_json::Value,
    ) -> Result<impl Stream<Item = Result<InferenceEvent, Error>> + Send + 'static, Error> {
        let response = self
            .http
            .post(format!("{}/v2/inference", self.base))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = read_bounded(response, MAX_ANSWER_BYTES).await?;
            return Err(refusal(status.as_u16(), &body));
        }
        Ok(events(response))
    }

    /// `GET /v2/inference/{txid}`.
    pub async fn inference_status(&self, txid: &str) -> Result<InferenceStatus, Error> {
        self.get(&format!("/v2/inference/{txid}")).await
    }

    /// `GET /v2/inference-chain`.
    pub async fn inference_chain(&self) -> Result<InferenceChainInfo, Error> {
        self.get("/v2/inference-chain").await
    }

    /// `GET /v2/inference-chain/blocks/{id}`: a height or a block id.
    pub async fn inference_block(&self, id: &str) -> Result<InferenceBlock, Error> {
        self.get(&format!("/v2/inference-chain/blocks/{id}")).await
    }

    /// `GET /v2/inference-nodes`.
    pub async fn inference_nodes(&self) -> Result<Vec<InferenceNode>, Error> {
        self.get("/v2/inference-nodes").await
    }

    /// `GET /v2/inference-chain/accounts/{address}`.
    pub async fn inference_account(&self, address: &str) -> Result<InferenceAccount, Error> {
        self.get(&format!("/v2/inference-chain/accounts/{address}"))
            .await
    }

    /// `POST /v2/inference-chain/transactions`: a signed VM transaction.
    pub async fn submit_vm_transaction(&self, tx: &[u8]) -> Result<TxAccepted, Error> {
        self.post("/v2/inference-chain/transactions", &submission(tx))
            .await
    }

    /// `GET /v2/models`.
    pub async fn models(&self) -> Result<Vec<ModelEntry>, Error> {
        self.get("/v2/models").await
    }

    /// `POST /v2/contracts/call-read`.
    pub async fn call_read(&self, request: &CallReadRequest) -> Result<CallReadResult, Error> {
        self.post("/v2/contracts/call-read", request).await
    }

    /// `GET /metrics`: OpenMetrics text.
    pub async fn metrics(&self) -> Result<String, Error> {
        let answer = self.raw(Method::GET, "/metrics", None, None).await?;
        if answer.status != 200 {
            return Err(refusal(answer.status, &answer.body));
        }
        Ok(answer.text())
    }

    /// `GET /v2/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.get("/v2/openapi.json").await
    }

    /// `POST /v2/admin/shutdown`.
    pub async fn admin_shutdown(&self, token: &str) -> Result<ShuttingDown, Error> {
        self.call(Method::POST, "/v2/admin/shutdown", None::<&()>, Some(token))
            .await
    }

    /// `GET /v2/admin/peers`.
    pub async fn admin_peers(&self, token: &str) -> Result<PeersReport, Error> {
        self.call(Method::GET, "/v2/admin/peers", None::<&()>, Some(token))
            .await
    }

    /// `POST /v2/admin/bans`.
    pub async fn admin_ban(&self, token: &str, request: &BanRequest) -> Result<Banned, Error> {
        self.call(Method::POST, "/v2/admin/bans", Some(request), Some(token))
            .await
    }

    /// `DELETE /v2/admin/bans/{peer_id}`.
    pub async fn admin_unban(&self, token: &str, peer_id: &str) -> Result<Unbanned, Error> {
        self.call(
            Method::DELETE,
            &format!("/v2/admin/bans/{peer_id}"),
            None::<&()>,
            Some(token),
        )
        .await
    }
}

fn submission(tx: &[u8]) -> TxSubmission {
    TxSubmission {
        tx: hex::encode(tx),
    }
}

/// A refusal's error: the node's `{"error": ...}` message, or its text.
fn refusal(status: u16, body: &[u8]) -> Error {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    let message = if message.is_empty() {
        "no message".to_string()
    } else {
        message.chars().take(1000).collect()
    };
    Error::Refused { status, message }
}

/// Reads a body of at most `limit` bytes.
async fn read_bounded(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Error::TooLarge { limit });
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(Error::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The inference events of a `text/event-stream` answer: at most `MAX_STREAM_BYTES` in
/// all and `MAX_EVENT_LINE_BYTES` in one line (the parser rescans a line it holds, so a line
/// without end would cost quadratic time); events of an unknown kind are skipped.
fn events(
    response: reqwest::Response,
) -> impl Stream<Item = Result<InferenceEvent, Error>> + Send + 'static {
    use eventsource_stream::Eventsource;
    let (mut seen, mut line) = (0usize, 0usize);
    let bytes = response
        .bytes_stream()
        .map_err(Error::Transport)
        .and_then(move |chunk| {
            seen = seen.saturating_add(chunk.len());
            line = match chunk.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
                Some(end) => chunk.len().saturating_sub(end.saturating_add(1)),
                None => line.saturating_add(chunk.len()),
            };
            let over = if seen > MAX_STREAM_BYTES {
                Some(MAX_STREAM_BYTES)
            } else if line > MAX_EVENT_LINE_BYTES {
                Some(MAX_EVENT_LINE_BYTES)
            } else {
                None
            };
            async move {
                match over {
                    Some(limit) => Err(Error::TooLarge { limit }),
                    None => Ok(chunk),
                }
            }
        });
    bytes.eventsource().filter_map(|event| {
        let item = match event {
            Ok(e) if !crate::inference::EVENT_NAMES.contains(&e.event.as_str()) => None,
            Ok(e) => Some(InferenceEvent::parse(&e.event, &e.data).map_err(Error::Malformed)),
            Err(eventsource_stream::EventStreamError::Transport(e)) => Some(Err(e)),
            Err(e) => Some(Err(Error::Malformed(e.to_string()))),
        };
        std::future::ready(item)
    })
}

pub mod blocking {
    //! The same calls for programs without an async runtime: each runs to its end on the
    //! client's own single-threaded runtime. Not for use on a runtime's worker thread
    //! (call it from `spawn_blocking` there, or use the async client).

    use super::*;

    /// A blocking client of one node's RPC.
    pub struct Client {
        inner: super::Client,
        runtime: tokio::runtime::Runtime,
    }

    macro_rules! forward {
        ($( $(#[$meta:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
            $(
                $(#[$meta])*
                pub fn $name(&self $(, $arg: $ty)*) -> Result<$ret, Error> {
                    self.runtime.block_on(self.inner.$name($($arg),*))
                }
            )*
        };
    }

    impl Client {
        /// A client of the node at `target` (`host:port` or an http(s) URL).
        pub fn new(target: &str) -> Result<Self, Error> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let inner = super::Client::new(target)?;
            Ok(Client { inner, runtime })
        }

        /// The node's base URL.
        pub fn base(&self) -> &str {
            self.inner.base()
        }

        forward! {
            /// `GET /v2/info`.
            fn info(&self) -> NodeInfo;
            /// `GET /v2/mempool`.
            fn mempool(&self) -> MempoolInfo;
            /// `GET /v2/ledger/blocks/{id}`.
            fn ledger_block(&self, id: &str) -> LedgerBlock;
            /// `GET /v2/ledger/accounts/{address}`.
            fn ledger_account(&self, address: &str) -> LedgerAccount;
            /// `GET /v2/ledger/accounts/{address}/utxos`.
            fn utxos(&self, address: &str) -> Vec<Utxo>;
            /// `POST /v2/transactions`.
            fn submit_transaction(&self, tx: &[u8]) -> TxAccepted;
            /// `GET /v2/accounts/{address}/history`.
            fn history(&self, address: &str, blocks: u32) -> History;
            /// `GET /v2/inference/{txid}`.
            fn inference_status(&self, txid: &str) -> InferenceStatus;
            /// `GET /v2/inference-chain`.
            fn inference_chain(&self) -> InferenceChainInfo;
            /// `GET /v2/inference-chain/blocks/{id}`.
            fn inference_block(&self, id: &str) -> InferenceBlock;
            /// `GET /v2/inference-nodes`.
            fn inference_nodes(&self) -> Vec<InferenceNode>;
            /// `GET /v2/inference-chain/accounts/{address}`.
            fn inference_account(&self, address: &str) -> InferenceAccount;
            /// `POST /v2/inference-chain/transactions`.
            fn submit_vm_transaction(&self, tx: &[u8]) -> TxAccepted;
            /// `GET /v2/models`.
            fn models(&self) -> Vec<ModelEntry>;
            /// `POST /v2/contracts/call-read`.
            fn call_read(&self, request: &CallReadRequest) -> CallReadResult;
            /// `GET /metrics`.
            fn metrics(&self) -> String;
            /// `GET /v2/openapi.json`.
            fn openapi(&self) -> serde_json::Value;
            /// `POST /v2/admin/shutdown`.
            fn admin_shutdown(&self, token: &str) -> ShuttingDown;
            /// `GET /v2/admin/peers`.
            fn admin_peers(&self, token: &str) -> PeersReport;
            /// `POST /v2/admin/bans`.
            fn admin_ban(&self, token: &str, request: &BanRequest) -> Banned;
            /// `DELETE /v2/admin/bans/{peer_id}`.
            fn admin_unban(&self, token: &str, peer_id: &str) -> Unbanned;
        }

        /// Sends a request and reads the whole answer, whatever its status.
        pub fn raw(
            &self,
            method: Method,
            path: &str,
            body: Option<Vec<u8>>,
            bearer: Option<&str>,
        ) -> Result<RawAnswer, Error> {
            self.runtime
                .block_on(self.inner.raw(method, path, body, bearer))
        }

        /// `POST /v2/inference`: calls `on_event` with each event as it arrives, until
        /// the stream ends or `on_event` returns false.
        pub fn inference(
            &self,
            tx: &[u8],
            on_event: impl FnMut(InferenceEvent) -> bool,
        ) -> Result<(), Error> {
            self.inference_body(false, tx, on_event)
        }

        /// [`Client::inference`] of a request sealed to its serving node.
        pub fn inference_sealed(
            &self,
            sealed: &[u8],
            on_event: impl FnMut(InferenceEvent) -> bool,
        ) -> Result<(), Error> {
            self.inference_body(true, sealed, on_event)
        }

        fn inference_body(
            &self,
            sealed: bool,
            bytes: &[u8],
            mut on_event: impl FnMut(InferenceEvent) -> bool,
        ) -> Result<(), Error> {
            self.runtime.block_on(async {
                let events = if sealed {
                    futures_util::future::Either::Left(self.inner.inference_sealed(bytes).await?)
                } else {
                    futures_util::future::Either::Right(self.inner.inference(bytes).await?)
                };
                let mut events = std::pin::pin!(events);
                while let Some(event) = events.next().await {
                    if !on_event(event?) {
                        break;
                    }
                }
                Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_host_port_or_urls() {
        assert_eq!(base_url("127.0.0.1:7080").unwrap(), "http://127.0.0.1:7080");
        assert_eq!(
            base_url("https://node.example:443/").unwrap(),
            "https://node.example:443"
        );
        assert_eq!(base_url("http://[::1]:80").unwrap(), "http://[::1]:80");
        for bad in ["", "   ", "http://", "no spaces:80 x"] {
            assert!(base_url(bad).is_err(), "{bad:?} was taken");
        }
    }

    /// A server on loopback that answers one request with `answer`, then closes.
    fn serve_once(answer: Vec<u8>) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut request = [0u8; 8192];
                let _ = s.read(&mut request);
                let _ = s.write_all(&answer);
            }
        });
        address
    }

    fn event_stream(body: &[u8]) -> Vec<u8> {
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(body);
        answer
    }

    fn collect(target: &str) -> Result<Vec<InferenceEvent>, Error> {
        let node = blocking::Client::new(target)?;
        let mut seen = Vec::new();
        node.inference(b"tx", |e| {
            seen.push(e);
            true
        })?;
        Ok(seen)
    }

    #[test]
    fn events_of_an_unknown_kind_are_skipped_and_the_known_ones_read() {
        let body = b": keep-alive\n\nevent: token\ndata: {\"text\":\"hi\"}\n\nevent: news\ndata: {\"x\":1}\n\nevent: error\ndata: {\"error\":\"late\"}\n\n";
        let seen = collect(&serve_once(event_stream(body))).unwrap();
        assert_eq!(
            seen,
            vec![
                InferenceEvent::Token(crate::Token { text: "hi".into() }),
                InferenceEvent::error("late"),
            ]
        );
        let bad = b"event: token\ndata: {\"words\":1}\n\n";
        let err = collect(&serve_once(event_stream(bad))).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err}");
    }

    /// A node that streams one endless line is cut off at the line limit, long before the
    /// stream's limit (the parser would rescan the line at every chunk).
    #[test]
    fn an_event_line_without_end_is_refused() {
        let mut body = b"event: token\ndata: ".to_vec();
        body.resize(MAX_EVENT_LINE_BYTES + 1024, b'a');
        let err = collect(&serve_once(event_stream(&body))).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { limit } if limit == MAX_EVENT_LINE_BYTES),
            "{err}"
        );
    }

    /// A target that answers with a redirect is not followed elsewhere (a relaying node
    /// must not be steered to another address).
    #[test]
    fn redirects_are_not_followed() {
        let target = serve_once(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:9/v2/info\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        );
        let err = blocking::Client::new(&target).unwrap().info().unwrap_err();
        assert_eq!(err.status(), Some(307), "{err}");
    }

    #[test]
    fn only_a_bare_host_and_port_is_a_relay_target() {
        assert_eq!(
            relay_target("http://127.0.0.1:7080").as_deref(),
            Some("127.0.0.1:7080")
        );
        assert_eq!(
            relay_target("http://node.example").as_deref(),
            Some("node.example:80")
        );
        assert_eq!(
            relay_target("https://node.example").as_deref(),
            Some("https://node.example")
        );
        assert_eq!(
            relay_target("https://node.example:8443/").as_deref(),
            Some("https://node.example:8443")
        );
        for bad in [
            "127.0.0.1:7080",
            "http://169.254.169.254:80/latest?x=",
            "https://user:pw@node.example",
            "https://node.example/v1#x",
            "ftp://node.example:21",
            "",
        ] {
            assert_eq!(relay_target(bad), None, "{bad:?} was taken");
        }
    }

    #[test]
    fn a_refusal_carries_the_nodes_message_or_its_text() {
        let e = refusal(400, br#"{"error":"fee too low"}"#);
        assert_eq!(e.to_string(), "the node refused (400): fee too low");
        assert_eq!(e.status(), Some(400));
        let e = refusal(502, b"bad gateway\n");
        assert_eq!(e.to_string(), "the node refused (502): bad gateway");
        let e = refusal(500, b"");
        assert_eq!(e.to_string(), "the node refused (500): no message");
    }
}
