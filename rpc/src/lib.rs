//! The RPC server: REST under `/v2` (loopback by default), server-sent events for
//! streamed inference, metrics on `/metrics` (`metrics.rs`). Its bodies are the types of
//! `fai-api`; `/v2/openapi.json` and docs/rpc.md are written from the handlers'
//! annotations (`docs.rs`).
//!
//! Owns the answers to clients and the relay of requests to other nodes. Reads the node's
//! state through `fai-node` (today its locks; the chain task's queries once it exists);
//! nothing in the node depends on this crate: the daemon is handed [`start`].
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/v2/info` | network, chain id, version, ledger height and tip, peers, sync state, served models |
//! | GET | `/v2/ledger/blocks/{height or hash}` | a ledger block's header fields and transaction ids |
//! | GET | `/v2/mempool` | ledger mempool size |
//! | GET | `/v2/ledger/accounts/{address}` | spendable and immature balance on the ledger |
//! | GET | `/v2/ledger/accounts/{address}/utxos` | the address's unspent outputs |
//! | POST | `/v2/transactions` | body `{"tx": "<hex of a signed ledger transaction>"}`: into the mempool, answers its id |
//! | POST | `/v2/inference` | body `{"tx": "<hex of a signed inference transaction>"}` or `{"sealed": "<hex of a request sealed to its serving node>"}`; an event stream: `token` events (`{"text": ..}`) as they are produced, then one `receipt` (the signed result receipt) or `error`, each inside a `sealed` event for a sealed request; relayed to a registered node serving the model when this node is not registered for it, or to the node a sealed request is sealed to (`relayed` first: `via` libp2p or http) |
//! | GET | `/v2/inference/{txid}` | the state of an inference: `serving`, `pending`, `in_block`, `settled` (final or not, accepted or not, the amounts), `dropped` or `failed` |
//! | GET | `/v2/inference-chain` | the inference tip, genesis id, verifier set, liquid supply |
//! | GET | `/v2/inference-chain/blocks/{height or id}` | an inference block: header fields, VM transaction ids, counts of inferences and votes |
//! | GET | `/v2/inference-nodes` | registered inference nodes: models, registry entry (price, bond), reputation |
//! | GET | `/v2/inference-chain/accounts/{address}` | balance, nonce, stake, reputation and node registration on the inference layer |
//! | POST | `/v2/inference-chain/transactions` | body `{"tx": "<hex of a signed VM transaction>"}`: into the VM pool (and gossip), answers its id |
//! | GET | `/v2/accounts/{address}/history` | the address's ledger and inference-layer transactions in the last `?blocks=` ledger blocks |
//! | GET | `/v2/models` | the served models with their registry entry and approval |
//! | POST | `/v2/contracts/call-read` | a read-only contract call: `{"contract", "function", "args": [hex Clarity values]}` |
//! | GET | `/metrics` | the node's figures in OpenMetrics text (what Prometheus scrapes) |
//! | GET | `/v2/openapi.json` | the OpenAPI document of all of the above, generated from this module |
//! | POST | `/v2/admin/shutdown` | with `Authorization: Bearer <rpc.admin_token>`: stops the node cleanly |
//! | GET | `/v2/admin/peers` | admin: connected peers (address, direction, score, height) and bans |
//! | POST | `/v2/admin/bans` | admin: body `{"peer_id": "...", "seconds": N}` bans a peer |
//! | DELETE | `/v2/admin/bans/{peer_id}` | admin: lifts a ban |
//!
//! Every refusal is a 4xx (or 503 when the engine's queue is full) with a JSON body
//! `{"error": "..."}` that says what was wrong; the node keeps serving.

mod admin;
pub mod docs;
mod history;
pub mod layer2;
mod metrics;
pub mod relay;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fai_api as api;
use fai_engine::scheduler::Event;
use fai_engine::{EngineError, LoadedModel};
use fai_inference_chain::quorum::Outcome;
use fai_inference_chain::sealed_request::SealedRequest;
use fai_inference_chain::types::{InferenceStub, InferenceTx, ResultReceipt};
use fai_primitives::codec::{Decode, Encode};
use fai_primitives::{Hash256, Network, SecretKey};
use futures_util::StreamExt;
use serde_json::Value;

use fai_node::chain_task::ChainState;
use fai_node::daemon::RpcContext;
use fai_node::node::Node;
use fai_node::verifier;

/// Inferences remembered for `GET /v2/inference/{txid}`.
const REMEMBERED: usize = 10_000;

#[derive(Debug, Clone)]
enum InferenceState {
    Running,
    Done(Box<ResultReceipt>),
    Failed(String),
}

#[derive(Default)]
struct InferenceLog {
    states: HashMap<Hash256, InferenceState>,
    order: VecDeque<Hash256>,
}

impl InferenceLog {
    /// Records a new inference; false if it was submitted before.
    /// Marks `txid` running; false when it runs or ran already. One that failed (refused
    /// for want of funds, a busy engine, a client gone) may be tried again.
    fn start(&mut self, txid: Hash256) -> bool {
        match self.states.get(&txid) {
            Some(InferenceState::Failed(_)) => {
                self.states.insert(txid, InferenceState::Running);
                return true;
            }
            Some(_) => return false,
            None => {}
        }
        self.states.insert(txid, InferenceState::Running);
        self.order.push_back(txid);
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.states.remove(&old);
            }
        }
        true
    }

    fn set(&mut self, txid: Hash256, state: InferenceState) {
        if let Some(s) = self.states.get_mut(&txid) {
            *s = state;
        }
    }
}

/// What the handlers share.
pub struct RpcState {
    /// The admin token and where a shutdown request goes; none: admin calls are off.
    pub admin: Option<(String, tokio_util::sync::CancellationToken)>,
    pub node: Arc<Node>,
    pub network: Network,
    /// The models served here, each with its scheduler, and the device they run on.
    pub engines: Arc<fai_node::served::Engines>,
    pub key: SecretKey,
    /// The sealing key derived from `key`: requests sealed to this node open with it.
    sealing: fai_primitives::seal::SealingSecret,
    /// The sealed requests served lately (their encapsulated keys): one sent again (a
    /// relay replaying it after a failure) would have its answer sealed again under the
    /// same reply key and nonces, and is refused.
    sealed_served: Mutex<SeenRecently>,
    /// The verifiers this node's last answer was sealed to, as the chain task named
    /// them: the next answer is sealed to them off the chain task.
    sealed_to: Arc<Mutex<fai_primitives::seal::Recipients>>,
    /// This node's price per million output tokens: a request whose max fee does not
    /// cover its max tokens at this price is refused.
    pub price: fai_primitives::Amount,
    /// `testing.forge_outputs` (test builds only): answers are forged.
    pub forge_outputs: bool,
    /// `testing.serve_unfunded` (test builds only) and `bench rpc`: requests are served
    /// whatever the sender's balance.
    pub serve_unfunded: bool,
    /// Where served inferences' text is kept (the inference chain's payload store).
    payloads: Option<fai_inference_chain::payloads::PayloadStore>,
    log: Mutex<InferenceLog>,
    metrics: metrics::Metrics,
    /// The last `/v2/inference-nodes` answer and the tips (ledger, inference) it was
    /// read at.
    inference_nodes: Mutex<Option<(ChainTips, Vec<api::InferenceNode>)>>,
}

/// A ledger tip and the inference tip as of it (none without an inference chain).
pub(crate) type ChainTips = (fai_primitives::Hash256, Option<[u8; 32]>);

impl RpcState {
    /// The `/v2/inference-nodes` answer read at `tips`, if it is the one kept.
    pub(crate) fn inference_nodes_at(&self, tips: &ChainTips) -> Option<Vec<api::InferenceNode>> {
        let kept = self.inference_nodes.lock().ok()?;
        kept.as_ref()
            .filter(|(at, _)| at == tips)
            .map(|(_, nodes)| nodes.clone())
    }

    /// Keeps the `/v2/inference-nodes` answer read at `tips`.
    pub(crate) fn keep_inference_nodes(&self, tips: ChainTips, nodes: Vec<api::InferenceNode>) {
        if let Ok(mut kept) = self.inference_nodes.lock() {
            *kept = Some((tips, nodes));
        }
    }

    pub fn new(
        node: Arc<Node>,
        network: Network,
        engines: Arc<fai_node::served::Engines>,
        key: SecretKey,
    ) -> Self {
        let payloads = node
            .chain
            .call_blocking(|st| st.inference.as_ref().and_then(|c| c.payloads().cloned()))
            .ok()
            .flatten();
        let metrics = metrics::Metrics::new(node.clone(), engines.clone());
        RpcState {
            admin: None,
            node,
            network,
            engines,
            sealing: fai_primitives::seal::SealingSecret::derive(&key),
            sealed_served: Mutex::new(SeenRecently::default()),
            sealed_to: Arc::default(),
            key,
            price: fai_primitives::Amount::ZERO,
            forge_outputs: false,
            serve_unfunded: false,
            payloads,
            log: Mutex::new(InferenceLog::default()),
            metrics,
            inference_nodes: Mutex::new(None),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, InferenceLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A refusal: a status and a message, sent as `{"error": message}`.
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for a refusal as busy.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 503 with `Retry-After`: the node refuses new work for now.
    fn busy(retry_after_s: u64, message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(retry_after_s.max(1)),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(api::ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        response
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg.into())
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "infer-node RPC", description = "REST under /v2; errors are {\"error\": \"...\"}"),
    components(schemas(api::InferenceEvent, api::SealedSubmission)),
    paths(info, openapi, ledger_block, mempool, account, utxos, submit_transaction, inference, inference_state, metrics, layer2::chain_info, layer2::block, layer2::inference_nodes, layer2::account, layer2::submit_vm_transaction, history::history, layer2::models, layer2::call_read, admin::admin_shutdown, admin::admin_peers, admin::admin_ban, admin::admin_unban),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The `bearer` security scheme of the admin calls.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(get, path = "/v2/openapi.json", tag = "node", responses((status = 200, description = "this document (OpenAPI 3.1)", body = Value)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// The router of the RPC.
pub fn router(state: Arc<RpcState>, max_body: usize) -> Router {
    Router::new()
        .route("/v2/info", get(info))
        .route("/v2/ledger/blocks/{id}", get(ledger_block))
        .route("/v2/mempool", get(mempool))
        .route("/v2/ledger/accounts/{address}", get(account))
        .route("/v2/ledger/accounts/{address}/utxos", get(utxos))
        .route("/v2/transactions", post(submit_transaction))
        .route("/v2/inference", post(inference))
        .route("/v2/inference/{txid}", get(inference_state))
        .route("/v2/inference-chain", get(layer2::chain_info))
        .route("/v2/inference-chain/blocks/{id}", get(layer2::block))
        .route("/v2/inference-nodes", get(layer2::inference_nodes))
        .route(
            "/v2/inference-chain/accounts/{address}",
            get(layer2::account),
        )
        .route(
            "/v2/inference-chain/transactions",
            post(layer2::submit_vm_transaction),
        )
        .route("/v2/models", get(layer2::models))
        .route("/v2/accounts/{address}/history", get(history::history))
        .route("/v2/contracts/call-read", post(layer2::call_read))
        .route("/metrics", get(metrics))
        .route("/v2/openapi.json", get(openapi))
        .route("/v2/admin/shutdown", post(admin::admin_shutdown))
        .route("/v2/admin/peers", get(admin::admin_peers))
        .route("/v2/admin/bans", post(admin::admin_ban))
        .route(
            "/v2/admin/bans/{peer_id}",
            axum::routing::delete(admin::admin_unban),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such endpoint; see /v2/info")
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

#[utoipa::path(get, path = "/v2/info", tag = "node", responses((status = 200, description = "network, chain id, version, ledger height, tip and supply issued, the inference tip (height and id), this node's address, peers, sync state, served models, the engine's device and its memory", body = api::NodeInfo)))]
async fn info(State(s): State<Arc<RpcState>>) -> Json<api::NodeInfo> {
    // From the snapshot: a long command on the chain task does not hold this up.
    let snapshot = s.node.snapshot();
    let (height, tip, supply) = (
        snapshot.ledger_height,
        snapshot.ledger_tip.to_string(),
        snapshot.supply_units,
    );
    let (peers, sync, p2p) = match s.node.p2p.get() {
        Some(net) => {
            let status = &net.status;
            let syncing = status.syncing.load(Ordering::Relaxed);
            let peer_id = status.peer_id.lock().map(|p| p.clone()).unwrap_or_default();
            let listen = status.listen.lock().map(|l| l.clone()).unwrap_or_default();
            (
                status.peers.load(Ordering::Relaxed),
                if syncing { "syncing" } else { "synced" },
                Some(api::P2pInfo {
                    peer_id,
                    listen,
                    best_peer_height: status.best_peer_height.load(Ordering::Relaxed),
                }),
            )
        }
        None => (0, "offline", None),
    };
    Json(api::NodeInfo {
        network: s.network.to_string(),
        chain_id: s.network.chain_id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ledger: api::LedgerSummary {
            height,
            tip,
            supply_units: supply,
        },
        inference: snapshot.inference_tip.map(|id| api::InferenceSummary {
            height: snapshot.inference_height,
            tip: hex::encode(id),
        }),
        address: fai_primitives::Address::new(s.network, s.key.public_key().hash160()).to_string(),
        sealing_key: hex::encode(s.sealing.public().0),
        peers,
        sync: sync.to_string(),
        p2p,
        models: s
            .engines
            .engines
            .iter()
            .map(|e| api::ServedModel {
                name: e.model.name.clone(),
                id: e.model.id.to_string(),
                context_length: e.model.model.config.context_length,
            })
            .collect(),
        engine: api::EngineInfo {
            device: s.engines.device.kind.clone(),
            memory_total_bytes: s.engines.device.memory_total,
            memory_free_bytes: s.engines.device.memory_free,
        },
    })
}

#[utoipa::path(get, path = "/v2/ledger/blocks/{id}", tag = "ledger", params(("id" = String, Path, description = "a height or a block hash", pattern = "^([0-9]{1,10}|[0-9a-fA-F]{64})$")), responses((status = 200, description = "header fields, transaction ids, and the sortition it held (total bid, winner with its bid and register reference)", body = api::LedgerBlock), (status = 400, description = "neither a height nor a hash", body = api::ErrorBody), (status = 404, description = "no such block", body = api::ErrorBody)))]
async fn ledger_block(
    State(s): State<Arc<RpcState>>,
    Path(id): Path<String>,
) -> Result<Json<api::LedgerBlock>, ApiError> {
    let network = s.network;
    s.node
        .chain
        .call(move |st| ledger_block_at(st, network, &id))
        .await
        .map_err(stopping)?
}

/// `GET /v2/ledger/blocks/{id}`, on the chain task.
fn ledger_block_at(
    st: &ChainState,
    network: Network,
    id: &str,
) -> Result<Json<api::LedgerBlock>, ApiError> {
    let chain = &st.ledger;
    let hash = if !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_digit()) {
        let height: u32 = id
            .parse()
            .map_err(|_| bad(format!("height {id} is out of range")))?;
        chain.hash_at(height).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no ledger block at height {height}"),
            )
        })?
    } else {
        id.parse::<Hash256>()
            .map_err(|_| bad(format!("{id:?} is neither a height nor a block hash")))?
    };
    let entry = chain
        .entry(&hash)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no ledger block {hash}")))?
        .clone();
    let block = chain
        .block(&hash)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("block {hash} is not stored"))
        })?;
    // The sortition this block held: the commits in it and who won.
    let sortition = st.inference.as_ref().and_then(|c| {
        c.tracker().record(&hash).map(|r| api::Sortition {
            total_bid_units: r.sortition.total,
            winner: r.sortition.winner.as_ref().map(|w| api::SortitionWinner {
                address: fai_primitives::Address::new(network, w.producer).to_string(),
                bid_units: w.amount,
                register: format!("{}:{}", w.register.height, w.register.tx_index),
            }),
        })
    });
    Ok(Json(api::LedgerBlock {
        sortition,
        hash: hash.to_string(),
        height: entry.height,
        active: chain.is_active(&hash),
        prev: entry.header.prev.to_string(),
        time: entry.header.time,
        bits: format!("{:08x}", entry.header.bits),
        transactions: block
            .transactions
            .iter()
            .map(|t| t.txid().to_string())
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v2/mempool", tag = "ledger", responses((status = 200, description = "ledger transactions and bytes waiting, VM transactions and served inferences waiting", body = api::MempoolInfo)))]
async fn mempool(State(s): State<Arc<RpcState>>) -> Result<Json<api::MempoolInfo>, ApiError> {
    let info = s
        .node
        .chain
        .call(|st| api::MempoolInfo {
            transactions: st.mempool.len(),
            bytes: st.mempool.bytes(),
            vm_transactions: st.vm_pool.len(),
            inferences: st.results.len(),
        })
        .await
        .map_err(stopping)?;
    Ok(Json(info))
}

/// An address's coins, with what decides which are spendable.
struct AccountCoins {
    tip: u32,
    maturity: u32,
    coins: Vec<(fai_ledger::OutPoint, fai_ledger::Coin)>,
}

/// The coins of `address` (checked against the network).
async fn coins_of(s: &RpcState, address: &str) -> Result<AccountCoins, ApiError> {
    let a =
        fai_primitives::Address::parse_for(address, s.network).map_err(|e| bad(e.to_string()))?;
    s.node
        .chain
        .call(move |st| {
            let chain = &st.ledger;
            let coins = chain
                .coins_of(&a.key_hash)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok(AccountCoins {
                tip: chain.height(),
                maturity: chain.params().coinbase_maturity,
                coins,
            })
        })
        .await
        .map_err(stopping)?
}

fn spendable(coin: &fai_ledger::Coin, tip: u32, maturity: u32) -> bool {
    !coin.coinbase || tip.saturating_add(1).saturating_sub(coin.height) >= maturity
}

#[utoipa::path(get, path = "/v2/ledger/accounts/{address}", tag = "ledger", params(("address" = String, Path, description = "a bech32m address of this network")), responses((status = 200, description = "spendable and maturing balance", body = api::LedgerAccount), (status = 400, description = "not an address of this network", body = api::ErrorBody)))]
async fn account(
    State(s): State<Arc<RpcState>>,
    Path(address): Path<String>,
) -> Result<Json<api::LedgerAccount>, ApiError> {
    let AccountCoins {
        tip,
        maturity,
        coins,
    } = coins_of(&s, &address).await?;
    let (mut ready, mut immature) = (0u64, 0u64);
    for (_, c) in &coins {
        let v = c.output.value.units();
        if spendable(c, tip, maturity) {
            ready = ready.saturating_add(v);
        } else {
            immature = immature.saturating_add(v);
        }
    }
    let fai = |u: u64| {
        fai_primitives::Amount::from_units(u)
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    Ok(Json(api::LedgerAccount {
        address,
        balance: fai(ready),
        balance_units: ready,
        immature_units: immature,
        utxos: coins.len(),
        height: tip,
    }))
}

#[utoipa::path(get, path = "/v2/ledger/accounts/{address}/utxos", tag = "ledger", params(("address" = String, Path, description = "a bech32m address of this network")), responses((status = 200, description = "unspent outputs", body = Vec<api::Utxo>), (status = 400, description = "not an address of this network", body = api::ErrorBody)))]
async fn utxos(
    State(s): State<Arc<RpcState>>,
    Path(address): Path<String>,
) -> Result<Json<Vec<api::Utxo>>, ApiError> {
    let AccountCoins {
        tip,
        maturity,
        coins,
    } = coins_of(&s, &address).await?;
    Ok(Json(
        coins
            .iter()
            .map(|(op, c)| api::Utxo {
                txid: op.txid.to_string(),
                vout: op.vout,
                value_units: c.output.value.units(),
                height: c.height,
                coinbase: c.coinbase,
                spendable: spendable(c, tip, maturity),
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v2/transactions", tag = "ledger", request_body(content = api::TxSubmission, description = "a signed ledger transaction in hex"), responses((status = 200, description = "the transaction id", body = api::TxAccepted), (status = 400, description = "malformed, invalid or refused by the mempool", body = api::ErrorBody), (status = 413, description = "body over rpc.max_body_bytes", body = api::ErrorBody)))]
async fn submit_transaction(
    State(s): State<Arc<RpcState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::TxAccepted>, ApiError> {
    let bytes = hex_field(
        body,
        "the body must be {\"tx\": \"<hex of a signed ledger transaction>\"}",
    )?;
    let tx = fai_ledger::Transaction::from_bytes(&bytes)
        .map_err(|e| bad(format!("bad transaction: {e}")))?;
    let txid = s
        .node
        .chain
        .call(move |st| {
            let txid = st
                .mempool
                .accept(tx, &st.ledger)
                .map_err(|e| bad(format!("transaction refused: {e}")))?;
            st.publish(fai_node::p2p::Topic::LedgerTx, bytes);
            Ok::<_, ApiError>(txid)
        })
        .await
        .map_err(stopping)??;
    Ok(Json(api::TxAccepted {
        txid: txid.to_string(),
    }))
}

/// A request body read as JSON.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            format!("cannot read the body: {}", e.body_text()),
        )
    })?;
    serde_json::from_slice(&body).map_err(|e| bad(format!("malformed JSON: {e}")))
}

/// The bytes of the `"tx"` field (hex) of a JSON request body; `usage` tells the client
/// what the body must be.
fn hex_field(body: Result<Bytes, BytesRejection>, usage: &str) -> Result<Vec<u8>, ApiError> {
    let v = json_body(body)?;
    if !v.is_object() {
        return Err(bad(usage));
    }
    let submission: api::TxSubmission = serde_json::from_value(v).map_err(|_| bad(usage))?;
    hex::decode(submission.tx).map_err(|_| bad("\"tx\" is not hex"))
}

/// What serving `tx` here needs beyond [`parse_inference`]: this node's model, and a max
/// fee that covers the max tokens at this node's price.
fn check_served_here(s: &RpcState, tx: &InferenceTx) -> Result<(), ApiError> {
    if s.engines.get(&tx.stub.model).is_none() {
        return Err(bad(format!(
            "this node does not serve model {}, nor does a registered node within the max fee; it serves {}",
            hex::encode(tx.stub.model),
            s.engines.describe()
        )));
    }
    let owed = fai_inference_chain::settlement::fee(
        u64::MAX,
        s.price.units(),
        tx.stub.sampling.max_tokens,
    );
    if tx.stub.max_fee.units() < owed {
        return Err(bad(format!(
            "fee too low: the max fee {} does not cover {} tokens at this node's price of {} per million (at least {})",
            tx.stub.max_fee,
            tx.stub.sampling.max_tokens,
            s.price,
            fai_primitives::Amount::from_units(owed).unwrap_or(fai_primitives::Amount::MAX),
        )));
    }
    Ok(())
}

/// Whether `sender` can pay a request of `max_fee`: its balance at the tip covers it and
/// everything this node knows it may still be charged (inferences served here or
/// gossiped and not yet in a block, its waiting VM transactions); 402 if not.
fn check_funds(
    st: &fai_node::chain_task::ChainState,
    sender: [u8; 20],
    max_fee: u64,
) -> Result<(), ApiError> {
    let (balance, account_nonce) = st.inference.as_ref().map_or((0, 0), |chain| {
        let tip = chain.tip(&st.ledger).exec_id;
        chain
            .vm()
            .account(&tip, &st.ledger, sender)
            .unwrap_or((0, 0))
    });
    let needed = u128::from(max_fee)
        .saturating_add(st.results.pending_fees(sender))
        .saturating_add(st.vm_pool.pending_spends(sender, account_nonce));
    if balance < needed {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            format!("the sender's balance of {balance} base units on the inference layer does not cover the {needed} this request and its pending ones may cost (peg in or wait for settlements)"),
        ));
    }
    Ok(())
}

/// 503 with `Retry-After` while the verifiers are behind (`ChainState::verifiers_busy`),
/// or while the replay work waiting for them is more than they judge in
/// [`fai_node::replay_cost::ADMIT_BLOCKS`] blocks (`ChainState::replay_backlog_full`):
/// what this node would serve now could not gather its votes within the vote window, or
/// would push the blocks after it past what their verifiers judge within their commit
/// phases, and would be refunded, served for nothing. Retry after a block or so.
fn check_not_busy(st: &fai_node::chain_task::ChainState) -> Result<(), ApiError> {
    let spacing = st.ledger.params().target_spacing;
    let why = if st.commits_missed() {
        format!(
            "a majority of a block's verifiers had not committed to their votes {} ledger blocks after it (its commit phase runs on, but new requests would add to their backlog)",
            fai_inference_chain::chain::COMMIT_PHASE
        )
    } else if st.verifiers_busy() {
        format!(
            "the verifiers are {} inference blocks behind (new requests are refused from {}, before the {}-block vote window refunds what was served)",
            st.votes_behind(),
            fai_inference_chain::chain::BUSY_BEHIND,
            fai_inference_chain::chain::VOTE_WINDOW,
        )
    } else if let Some(pending_us) = st.replay_backlog_full() {
        let pending = pending_us as f64 / 1e6;
        let budget = fai_node::replay_cost::block_budget(spacing) as f64 / 1e6;
        format!(
            "the inferences served and not yet judged would take the verifiers {pending:.2} s to replay, more than the {} blocks of {budget:.2} s each they judge in time",
            fai_node::replay_cost::ADMIT_BLOCKS,
        )
    } else {
        return Ok(());
    };
    Err(ApiError::busy(
        spacing,
        format!("busy: {why}; retry in about {spacing} s"),
    ))
}

/// The last [`SeenRecently::KEPT`] values inserted, to tell one seen before.
#[derive(Default)]
struct SeenRecently {
    set: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl SeenRecently {
    const KEPT: usize = 65_536;

    /// Whether `value` is new (it is remembered from now on).
    fn insert(&mut self, value: [u8; 32]) -> bool {
        if !self.set.insert(value) {
            return false;
        }
        self.order.push_back(value);
        if self.order.len() > Self::KEPT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// What `POST /v2/inference` was given: a transaction in the clear, or one sealed to the
/// node that is to serve it.
pub(crate) enum Submitted {
    Plain(InferenceTx),
    Sealed(SealedRequest),
}

/// Parses and checks an inference transaction, or a sealed request, from a request body.
async fn parse_inference(
    s: &RpcState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Submitted, ApiError> {
    const USAGE: &str = "the body must be {\"tx\": \"<hex of a signed inference transaction>\"} or {\"sealed\": \"<hex of a request sealed to its serving node>\"}";
    let v = json_body(body)?;
    if v.get("sealed").is_some() {
        let submission: api::SealedSubmission =
            serde_json::from_value(v).map_err(|_| bad(USAGE))?;
        let bytes = hex::decode(submission.sealed).map_err(|_| bad("\"sealed\" is not hex"))?;
        return check_sealed(s, &bytes).await.map(Submitted::Sealed);
    }
    if !v.is_object() {
        return Err(bad(USAGE));
    }
    let submission: api::TxSubmission = serde_json::from_value(v).map_err(|_| bad(USAGE))?;
    let bytes = hex::decode(submission.tx).map_err(|_| bad("\"tx\" is not hex"))?;
    check_inference(s, &bytes).await.map(Submitted::Plain)
}

/// Decodes and checks a signed inference transaction: signature, chain, expiry, nonce
/// and model approval (what any node can check, serving the model or not).
async fn check_inference(s: &RpcState, bytes: &[u8]) -> Result<InferenceTx, ApiError> {
    let tx = InferenceTx::from_bytes(bytes)
        .map_err(|e| bad(format!("bad inference transaction: {e}")))?;
    if !tx.is_consistent() {
        return Err(bad(
            "the signature does not verify or the prompt does not match its hash",
        ));
    }
    check_stub(s, &tx.stub).await?;
    Ok(tx)
}

/// Decodes a request sealed to its serving node and checks its stub as
/// [`check_inference`] does (the prompt is checked against its hash where it is opened).
async fn check_sealed(s: &RpcState, bytes: &[u8]) -> Result<SealedRequest, ApiError> {
    let request =
        SealedRequest::from_bytes(bytes).map_err(|e| bad(format!("bad sealed request: {e}")))?;
    if !request.stub.signature_valid() {
        return Err(bad("the sender's signature does not verify"));
    }
    check_stub(s, &request.stub).await?;
    Ok(request)
}

/// The checks of a signed stub any node can make: fee, chain, expiry, nonce and model
/// approval.
async fn check_stub(s: &RpcState, stub: &InferenceStub) -> Result<(), ApiError> {
    if stub.max_fee.units() == 0 {
        return Err(bad(
            "max_fee must be above zero: an inference that can pay nothing is not served",
        ));
    }
    if stub.chain_id != s.network.chain_id() {
        return Err(bad(format!(
            "chain id {:#x} is not this network's ({:#x})",
            stub.chain_id,
            s.network.chain_id()
        )));
    }
    let sender = stub.sender.hash160().0;
    let model = stub.model;
    let (height, account_nonce, approved) = s
        .node
        .chain
        .call(move |st| {
            let approved = layer2::model_approved(st, model);
            let Some(chain) = st.inference.as_ref() else {
                return Ok((0, 0, approved));
            };
            let tip = chain.tip(&st.ledger);
            let nonce = chain
                .vm()
                .account(&tip.exec_id, &st.ledger, sender)
                .map(|(_, n)| n)
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the inference chain cannot be read: {e}"),
                    )
                })?;
            Ok((tip.height, nonce, approved))
        })
        .await
        .map_err(stopping)??;
    // The earliest block that could carry it is the next one.
    if stub.expiry <= height {
        return Err(bad(format!(
            "the transaction expired at inference height {} (the inference chain is at {height})",
            stub.expiry
        )));
    }
    if stub.nonce < account_nonce {
        return Err(bad(format!(
            "nonce {} was used already: the sender's account is at nonce {account_nonce}",
            stub.nonce
        )));
    }
    if !approved {
        return Err(bad(format!(
            "model {} is not approved in the model registry",
            hex::encode(stub.model)
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v2/inference", tag = "inference", request_body(content = api::TxSubmission, description = "a signed inference transaction in hex, or instead {\"sealed\": hex} (SealedSubmission): a request sealed to the node that is to serve it (its key from the node registry or /v2/info), which only that node can open; relays forward it unread"), responses((status = 200, description = "server-sent events, each's data the JSON of its kind: token {text}, then receipt or error; relayed {node, via, peer or address} first when the request goes to a registered node serving the model; for a sealed request, the serving node's events are each a sealed {sealed} event instead, opened in order with the request's reply key", content_type = "text/event-stream", body = api::InferenceEvent), (status = 400, description = "malformed, badly signed, wrong chain, unserved or unapproved model, a max fee of zero, or expired", body = api::ErrorBody), (status = 402, description = "the sender's balance on the inference layer does not cover this max fee and what its pending inferences and VM transactions may cost", body = api::ErrorBody), (status = 409, description = "already submitted", body = api::ErrorBody), (status = 413, description = "body over rpc.max_body_bytes", body = api::ErrorBody), (status = 503, description = "busy, with Retry-After: the engine queue is full, or the verifiers are behind: a majority of a block's verifiers had not committed to their votes 2 ledger blocks after it (its commit phase runs on), or they are 4 or more inference blocks behind (what is served now might not settle within the vote window), or the inferences served and not yet judged would take the verifiers two blocks' replay budget or more (half the ledger's target spacing each, at the replay times this node's verifier measured)", body = api::ErrorBody)))]
async fn inference(
    State(s): State<Arc<RpcState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tx = match parse_inference(&s, body).await {
        Ok(Submitted::Plain(tx)) => tx,
        Ok(Submitted::Sealed(request)) => return sealed_inference(s, request).await,
        Err(e) => {
            s.metrics.inference_request(metrics::Answer::Refused);
            return e.into_response();
        }
    };
    // Not registered for this model while another node is: relay to it, if the sender
    // can pay (checked here too, so that unfunded requests cost neither the relay's
    // streams nor the serving node's attention).
    let target = {
        let (me, tx) = (s.key.public_key().hash160(), tx.clone());
        let serve_unfunded = s.serve_unfunded;
        s.node
            .chain
            .call(move |st| {
                let target = relay::choose(st, me, &tx);
                if target.is_some() {
                    check_not_busy(st)?;
                }
                if target.is_some() && !serve_unfunded {
                    check_funds(st, tx.stub.sender.hash160().0, tx.stub.max_fee.units())?;
                }
                Ok::<_, ApiError>(target)
            })
            .await
            .map_err(stopping)
    };
    let target = match target {
        Ok(Ok(target)) => target,
        Ok(Err(e)) | Err(e) => {
            s.metrics.inference_request(if e.retry_after.is_some() {
                metrics::Answer::Busy
            } else {
                metrics::Answer::Refused
            });
            return e.into_response();
        }
    };
    if let Some(target) = target {
        s.metrics.inference_request(metrics::Answer::Accepted);
        return relay::relay(s, relay::Forwarded::Plain(tx), target);
    }
    match serve_here(&s, tx).await {
        Ok(events) => event_stream(events),
        Err(e) => e.into_response(),
    }
}

/// The events of an answer as server-sent events.
fn event_stream(
    events: impl futures::Stream<Item = api::InferenceEvent> + Send + 'static,
) -> Response {
    Sse::new(events.map(|event| -> Result<SseEvent, Infallible> {
        Ok(SseEvent::default().event(event.name()).data(event.data()))
    }))
    .keep_alive(KeepAlive::default())
    .into_response()
}

/// A request sealed to a node: served here when it is this node's (opened with its
/// sealing key, the answer's events sealed with the request's reply key), else relayed
/// unread to the node it is sealed to, if that node is registered for its model within
/// the max fee and the sender can pay.
async fn sealed_inference(s: Arc<RpcState>, request: SealedRequest) -> Response {
    let me = s.key.public_key().hash160();
    if request.to == me {
        return match serve_sealed(&s, &request).await {
            Ok(events) => event_stream(events),
            Err(e) => e.into_response(),
        };
    }
    let target = {
        let (stub, to) = (request.stub.clone(), request.to);
        let serve_unfunded = s.serve_unfunded;
        s.node
            .chain
            .call(move |st| {
                let Some(target) = relay::target(st, &stub, to) else {
                    return Err(bad(format!(
                        "the request is sealed to {to}, which is not a registered node serving model {} within the max fee",
                        hex::encode(stub.model)
                    )));
                };
                check_not_busy(st)?;
                if !serve_unfunded {
                    check_funds(st, stub.sender.hash160().0, stub.max_fee.units())?;
                }
                Ok::<_, ApiError>(target)
            })
            .await
            .map_err(stopping)
    };
    match target {
        Ok(Ok(target)) => {
            s.metrics.inference_request(metrics::Answer::Accepted);
            relay::relay(s, relay::Forwarded::Sealed(request), target)
        }
        Ok(Err(e)) | Err(e) => {
            s.metrics.inference_request(if e.retry_after.is_some() {
                metrics::Answer::Busy
            } else {
                metrics::Answer::Refused
            });
            e.into_response()
        }
    }
}

/// Opens a request sealed to this node and serves it: its events sealed, one after the
/// other, with the request's reply key (only the buyer reads them).
pub(crate) async fn serve_sealed(
    s: &Arc<RpcState>,
    request: &SealedRequest,
) -> Result<impl futures::Stream<Item = api::InferenceEvent> + Send + 'static, ApiError> {
    let (tx, reply) = request.open(&s.sealing).map_err(|why| {
        s.metrics.inference_request(metrics::Answer::Refused);
        bad(why)
    })?;
    let first_time = s
        .sealed_served
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(request.sealed.enc);
    if !first_time {
        s.metrics.inference_request(metrics::Answer::Refused);
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this sealed request was served already: seal it again (a fresh reply key)",
        ));
    }
    let events = serve_here(s, tx).await?;
    let mut index = 0u64;
    Ok(events.map(move |event| {
        let sealed = reply.seal(index, &event.sealed_plaintext());
        index = index.saturating_add(1);
        match sealed {
            Ok(bytes) => api::InferenceEvent::Sealed(api::SealedEvent {
                sealed: hex::encode(bytes),
            }),
            Err(e) => api::InferenceEvent::error(format!("the answer could not be sealed: {e}")),
        }
    }))
}

/// Runs a checked inference transaction on this node's engine: the events (`token`,
/// then `receipt` or `error`, each with its JSON data) as they come. The result is
/// pooled and gossiped once done. Refused (and counted) when this node does not serve
/// the model at that fee, the transaction was submitted already, its nonce is taken,
/// or the engine is full.
async fn serve_here(
    s: &Arc<RpcState>,
    tx: InferenceTx,
) -> Result<impl futures::Stream<Item = api::InferenceEvent> + Send + 'static, ApiError> {
    let refused = |e: ApiError| {
        s.metrics.inference_request(if e.retry_after.is_some() {
            metrics::Answer::Busy
        } else {
            metrics::Answer::Refused
        });
        e
    };
    check_served_here(s, &tx).map_err(refused)?;
    let txid = tx.stub.txid();
    if !s.log().start(txid) {
        return Err(refused(ApiError::new(
            StatusCode::CONFLICT,
            format!("inference {txid} was already submitted"),
        )));
    }
    let sender = tx.stub.sender.hash160().0;
    let nonce = tx.stub.nonce;
    let max_fee = tx.stub.max_fee.units();
    let (model, max_tokens) = (tx.stub.model, tx.stub.sampling.max_tokens);
    // Freed again if the request ends before its answer is pooled (the client went away).
    let held = HeldNonce {
        state: s.clone(),
        sender,
        nonce,
        txid,
        armed: true,
    };
    // Served only if the sender can pay: its balance at the tip covers this max fee and
    // everything this node knows it may still be charged (inferences served here or
    // gossiped and not yet in a block, its waiting VM transactions). The nonce is held
    // from now on, so that no other transaction takes it.
    let serve_unfunded = s.serve_unfunded;
    let reserved = s
        .node
        .chain
        .call(move |st| {
            let conflict = |e: fai_node::result_pool::PoolError| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{e}; ask GET /v2/inference-chain/accounts/{{address}} for next_nonce"),
                )
            };
            if st.vm_pool.holds(sender, nonce) {
                return Err(conflict(fai_node::result_pool::PoolError::NonceTaken {
                    nonce,
                }));
            }
            check_not_busy(st)?;
            if !serve_unfunded {
                check_funds(st, sender, max_fee)?;
            }
            let serving = fai_node::result_pool::Serving {
                txid,
                max_fee,
                model,
                max_tokens,
            };
            st.results.reserve(sender, nonce, serving).map_err(conflict)
        })
        .await
        .map_err(stopping)?;
    if let Err(e) = reserved {
        held.done();
        s.log().set(txid, InferenceState::Failed(e.message.clone()));
        return Err(refused(e));
    }
    let Some(engine) = s.engines.get(&tx.stub.model) else {
        held.done();
        release(&s.node, sender, nonce, txid);
        return Err(refused(bad("model not served here")));
    };
    let model = engine.model.clone();
    let job = match engine
        .scheduler
        .submit(verifier::request(&tx.prompt, &tx.stub.sampling))
    {
        Ok(job) => job,
        Err(e) => {
            held.done();
            release(&s.node, sender, nonce, txid);
            s.log().set(txid, InferenceState::Failed(e.to_string()));
            let error = match e {
                // The engine's queue drains in about a request's time.
                EngineError::Busy { .. } => ApiError::busy(1, e.to_string()),
                _ => bad(e.to_string()),
            };
            return Err(refused(error));
        }
    };
    s.metrics.inference_request(metrics::Answer::Accepted);
    let state = s.clone();
    let mut held = Some(held);
    Ok(job.map(move |event| match cancelled_as_failed(event) {
        Event::Text(text) => api::InferenceEvent::Token(api::Token { text }),
        Event::Done(g) => {
            let g = if state.forge_outputs {
                forged(&model, g)
            } else {
                g
            };
            let receipt = ResultReceipt::new_signed(txid, &g.text, &g.tokens, &state.key);
            let served = fai_inference_chain::served::ServedInference {
                inference: fai_inference_chain::types::Inference {
                    stub: tx.stub.clone(),
                    receipt: receipt.clone(),
                },
                prompt: tx.prompt.clone(),
                output: g.text.clone(),
                tokens: g.tokens.clone(),
            };
            // Pooled (queued on the chain task) before the log says done, so that a
            // status query between the two finds it pending, not dropped.
            publish_result(&state, served);
            state
                .log()
                .set(txid, InferenceState::Done(Box::new(receipt.clone())));
            if let Some(h) = held.take() {
                h.done();
            }
            api::InferenceEvent::Receipt(receipt_body(&receipt, Some(g.text)))
        }
        Event::Failed(e) => {
            if let Some(h) = held.take() {
                h.done();
            }
            release(&state.node, sender, nonce, txid);
            state.log().set(txid, InferenceState::Failed(e.clone()));
            api::InferenceEvent::error(e)
        }
    }))
}

/// An answer cut off before its end is a failure, never signed: verifiers would reject
/// its claimed end (a job is only cancelled once nobody reads its stream).
fn cancelled_as_failed(event: Event) -> Event {
    match event {
        Event::Done(g) if g.finish == fai_engine::FinishReason::Cancelled => {
            Event::Failed("the answer was cancelled before its end".into())
        }
        other => other,
    }
}

/// `testing.forge_outputs`: every token replaced by its neighbour in the vocabulary and
/// the text spelled from those, so that the answer is self-consistent (its tokens spell
/// it, its receipt signs it) and yet not what the model generates.
fn forged(model: &LoadedModel, mut g: fai_engine::Generation) -> fai_engine::Generation {
    for t in &mut g.tokens {
        *t = if *t > 0 { *t - 1 } else { 1 };
    }
    g.text = model.tokenizer.decode(&g.tokens);
    g
}

/// Seals a served inference's text to the verifiers that will vote on it, keeps the
/// sealed text for them, puts the inference in the pool for the next block, and gossips
/// it to the other producers and verifiers. Nothing of the text is kept in the clear.
///
/// Sealing (a key agreement per verifier and a signature) is done here, off the chain
/// task, to the verifiers the chain task named for the last answer; the chain task seals
/// again only if the set it names now differs (a new tip or cycle).
fn publish_result(s: &RpcState, served: fai_inference_chain::served::ServedInference) {
    let txid = served.inference.stub.txid();
    let key = s.key.clone();
    let guess = s.sealed_to.lock().map(|r| r.clone()).unwrap_or_default();
    let early = if guess.is_empty() {
        None
    } else {
        served.seal(&key, &guess).ok().map(|sealed| (guess, sealed))
    };
    let sealed_to = s.sealed_to.clone();
    // Queued before the receipt reaches the buyer: a later query finds it pooled.
    let _ = s.node.chain.run(move |st| {
        let recipients = st.sealing_recipients();
        let sealed = match early {
            Some((to, sealed)) if to == recipients => sealed,
            _ => match served.seal(&key, &recipients) {
                Ok(sealed) => {
                    if let Ok(mut last) = sealed_to.lock() {
                        last.clone_from(&recipients);
                    }
                    sealed
                }
                Err(e) => {
                    tracing::warn!(target: "infer_node::rpc", %txid, "served inference not sealed: {e}");
                    return;
                }
            },
        };
        if recipients.is_empty() {
            tracing::warn!(target: "infer_node::rpc", %txid, "no verifier has published a sealing key: nobody can check this answer");
        }
        let height = st.ledger.height();
        if let Some(Err(e)) = st
            .inference
            .as_ref()
            .and_then(|c| c.payloads())
            .map(|store| sealed.store(store, height))
        {
            tracing::warn!(target: "infer_node::rpc", %txid, "cannot store the inference's sealed text: {e}");
        }
        if let Err(e) = st.results.add(served.inference) {
            tracing::warn!(target: "infer_node::rpc", %txid, "served inference not pooled: {e}");
            return;
        }
        st.publish(fai_node::p2p::Topic::Result, sealed.to_bytes());
    });
}

/// A request's nonce, held from its reservation until its answer is pooled or its failure
/// handled; a request that ends otherwise (the client hung up while the nonce was being
/// reserved or the answer generated) frees it when this is dropped, and is logged as
/// failed. The release is queued on the chain task after the reservation.
struct HeldNonce {
    state: Arc<RpcState>,
    sender: [u8; 20],
    nonce: u64,
    txid: Hash256,
    armed: bool,
}

impl HeldNonce {
    /// The request's end was handled.
    fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for HeldNonce {
    fn drop(&mut self) {
        if self.armed {
            release(&self.state.node, self.sender, self.nonce, self.txid);
            self.state.log().set(
                self.txid,
                InferenceState::Failed("the request ended before it was answered".into()),
            );
        }
    }
}

/// Frees the nonce a request held (it was not served).
fn release(node: &Node, sender: [u8; 20], nonce: u64, txid: Hash256) {
    let _ = node
        .chain
        .run(move |st| st.results.release(sender, nonce, txid));
}

/// The answer when the chain task is gone: the node is stopping.
pub(crate) fn stopping(e: fai_node::chain_task::Unavailable) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn receipt_body(r: &ResultReceipt, text: Option<String>) -> api::Receipt {
    api::Receipt {
        txid: r.tx.to_string(),
        output_hash: r.output_hash.to_string(),
        tokens_hash: r.tokens_hash.to_string(),
        tokens: r.tokens,
        node: r.node.to_string(),
        receipt: hex::encode(r.to_bytes()),
        text,
    }
}

#[utoipa::path(get, path = "/v2/inference/{txid}", tag = "inference", params(("txid" = String, Path, description = "inference transaction id (64 hex digits)", pattern = "^[0-9a-fA-F]{64}$")), responses((status = 200, description = "serving, pending (waiting for a block), in_block, settled (final or refunded without a quorum; accepted, and where the max fee went), dropped or failed; once in a block, whether this node still holds its text (payload_held)", body = api::InferenceStatus), (status = 400, description = "not a transaction id", body = api::ErrorBody), (status = 404, description = "unknown to this node", body = api::ErrorBody)))]
async fn inference_state(
    State(s): State<Arc<RpcState>>,
    Path(txid): Path<String>,
) -> Result<Json<api::InferenceStatus>, ApiError> {
    let id: Hash256 = txid
        .parse()
        .map_err(|_| bad(format!("{txid:?} is not a transaction id")))?;
    // The log first: an answer is pooled before the log says it is done, so a query
    // that reads "serving" here finds it pooled below if it finished meanwhile.
    let served = s.log().states.get(&id).cloned();
    let state = s.clone();
    let (on_chain, pending) = s
        .node
        .chain
        .call(move |st| (find_on_chain(&state, st, id), st.results.contains(&id)))
        .await
        .map_err(stopping)?;
    if let Some(v) = on_chain? {
        return Ok(Json(v));
    }
    let status = |state: &str| api::InferenceStatus::new(id.to_string(), state);
    Ok(Json(match served {
        _ if pending => status("pending"),
        Some(InferenceState::Running) => status("serving"),
        Some(InferenceState::Done(r)) => {
            // Served, and no longer waiting: dropped (expired, or its fee could not be
            // escrowed) before a block took it.
            api::InferenceStatus {
                receipt: Some(receipt_body(&r, None)),
                ..status("dropped")
            }
        }
        Some(InferenceState::Failed(e)) => api::InferenceStatus {
            error: Some(e),
            ..status("failed")
        },
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("inference {id} is unknown to this node (not served here, not waiting, not in the last {SEARCHED_BLOCKS} inference blocks)"),
            ))
        }
    }))
}

/// Whether this node still keeps the inference's sealed text (prompt, output and tokens: they
/// are deleted six ledger blocks after the block settling it).
fn payload_held(s: &RpcState, id: &Hash256) -> bool {
    s.payloads
        .as_ref()
        .is_some_and(|store| matches!(store.holds_any(id), Ok(true)))
}

/// Inference blocks searched back from the tip for `GET /v2/inference/{txid}`.
const SEARCHED_BLOCKS: usize = 10_000;

/// The inference's place on the canonical inference chain: the block that carries it and
/// the block of its vote window that settles it.
fn find_on_chain(
    s: &RpcState,
    st: &ChainState,
    id: Hash256,
) -> Result<Option<api::InferenceStatus>, ApiError> {
    let ledger = &st.ledger;
    let Some(chain) = st.inference.as_ref() else {
        return Ok(None);
    };
    // The blocks after the one looked at, nearest first: where its votes may be.
    let mut after: std::collections::VecDeque<&fai_inference_chain::chain::BlockRecord> =
        std::collections::VecDeque::new();
    let mut at = chain.tip(ledger).id;
    for _ in 0..SEARCHED_BLOCKS {
        let Some(rec) = chain.block(&at) else { break };
        let Some(block) = &rec.block else { break };
        if let Some((index, inf)) = block
            .inferences
            .iter()
            .enumerate()
            .find(|(_, i)| i.stub.txid() == id)
        {
            let mut v = api::InferenceStatus {
                block: Some(api::BlockRef {
                    id: hex::encode(rec.id),
                    height: rec.height,
                }),
                max_fee_units: Some(inf.stub.max_fee.units()),
                receipt: Some(receipt_body(&inf.receipt, None)),
                payload_held: Some(payload_held(s, &id)),
                ..api::InferenceStatus::new(id.to_string(), "in_block")
            };
            let after: Vec<_> = after.iter().copied().collect();
            let Some((settled_at, _, votes)) = chain.settled_on(ledger, rec, &after) else {
                return Ok(Some(v));
            };
            let Some(settler) = after.get(settled_at) else {
                return Ok(Some(v));
            };
            let (is_final, list) = chain
                .settlements(ledger, rec, &votes)
                .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            let Some((outcome, st)) = list.get(index) else {
                return Ok(Some(v));
            };
            let accepted = is_final && *outcome == Outcome::Accepted;
            v.state = "settled".to_string();
            v.settled_in = Some(api::BlockRef {
                id: hex::encode(settler.id),
                height: settler.height,
            });
            v.is_final = Some(is_final);
            v.accepted = Some(accepted);
            v.outcome = Some(
                match outcome {
                    Outcome::Accepted if is_final => "accepted",
                    Outcome::Rejected if is_final => "rejected",
                    _ => "undecided",
                }
                .to_string(),
            );
            v.settlement = Some(api::SettlementAmounts {
                // What the sender paid: nothing when refunded (a rejected inference's
                // fee only sizes the node's slash).
                fee_units: if accepted { st.fee } else { 0 },
                node_units: st.node,
                producer_units: st.producer,
                refund_units: st.refund,
                slashed_units: st.slash,
            });
            return Ok(Some(v));
        }
        after.push_front(rec);
        after.truncate(fai_inference_chain::chain::VOTE_WINDOW as usize);
        at = block.header.parent;
    }
    Ok(None)
}

#[utoipa::path(get, path = "/metrics", tag = "node", responses((status = 200, description = "the node's gauges and counters (ledger and inference heights, pools, peers, the chain task's queue and busy time, engine jobs, inference requests by answer) in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(s): State<Arc<RpcState>>) -> Response {
    match s.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the metrics cannot be written: {e}"),
        )
        .into_response(),
    }
}

/// Starts the engine's workers on the served models, and the RPC server with the relay of
/// peers' requests; returns the address it listens on (`fai_node::daemon::StartRpc`).
pub fn start(ctx: RpcContext<'_>) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context;
    let RpcContext {
        runtime,
        config,
        loaded,
        network,
        node,
        key,
        failed,
        tasks,
    } = ctx;
    let engines = Arc::new(fai_node::served::Engines::start(loaded, &config.engine));
    let listener = std::net::TcpListener::bind(config.rpc.listen)
        .with_context(|| format!("cannot listen on {} (rpc.listen)", config.rpc.listen))?;
    listener
        .set_nonblocking(true)
        .context("cannot configure the RPC socket")?;
    let address = listener.local_addr().context("RPC socket")?;
    tracing::info!(target: "infer_node", models = %engines.describe(), device = %engines.device, "serving");
    let mut state = crate::RpcState::new(node.clone(), network, engines.clone(), key);
    let ids: Vec<[u8; 32]> = engines.engines.iter().map(|e| e.model.id.0).collect();
    let approved: Vec<bool> = node
        .chain
        .call_blocking(move |st| {
            ids.iter()
                .map(|id| crate::layer2::model_approved(st, *id))
                .collect()
        })
        .unwrap_or_default();
    for (e, approved) in engines.engines.iter().zip(approved) {
        if !approved {
            tracing::warn!(
                target: "infer_node",
                model = %e.model.name,
                id = %e.model.id,
                "this model is not approved in the model registry: requests for it are refused until it is"
            );
        }
    }
    state.price = config.inference.price;
    state.forge_outputs = config.testing.forge_outputs;
    state.serve_unfunded = config.testing.serve_unfunded;
    if state.serve_unfunded {
        tracing::warn!(target: "infer_node", "testing.serve_unfunded: this node serves requests whatever the sender can pay");
    }
    if state.forge_outputs {
        tracing::warn!(target: "infer_node", "testing.forge_outputs: this node serves forged answers");
    }
    if !config.rpc.admin_token.is_empty() {
        state.admin = Some((config.rpc.admin_token.clone(), node.shutdown.clone()));
    }
    let state = Arc::new(state);
    // Relayed requests from peers, on libp2p streams.
    let stop = node.shutdown.clone();
    tasks.spawn_on(
        {
            let stop = stop.clone();
            let state = state.clone();
            async move {
                tokio::select! {
                    () = crate::relay::serve_streams(state) => {}
                    () = stop.cancelled() => {}
                }
            }
        },
        runtime.handle(),
    );
    let app = crate::router(state, config.rpc.max_body_bytes);
    tasks.spawn_on(
        async move {
            let served = async {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            };
            if let Err(e) = served.await {
                let _ = failed.send(anyhow::Error::new(e).context("the RPC server stopped"));
            }
        },
        runtime.handle(),
    );
    tracing::info!(target: "infer_node", "RPC listening on http://{address}/v2/info");
    Ok(address)
}

#[cfg(test)]
mod tests {
    use fai_engine::scheduler::Scheduler;
    use fai_inference_chain::types::{InferenceStub, Prompt, Sampling};
    use fai_ledger::mempool::{Mempool, MempoolConfig};
    use fai_primitives::{Amount, Signature};

    use super::*;

    /// A refusal as busy tells the client when to come back; other errors do not.
    #[test]
    fn a_busy_refusal_carries_retry_after() {
        let busy = ApiError::busy(5, "busy").into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "5");
        let at_least_one = ApiError::busy(0, "busy").into_response();
        assert_eq!(at_least_one.headers()[header::RETRY_AFTER], "1");
        let other = bad("no").into_response();
        assert!(other.headers().get(header::RETRY_AFTER).is_none());
    }

    fn signed(key: &SecretKey, model: [u8; 32], nonce: u64, input: &str) -> InferenceTx {
        let prompt = Prompt {
            system: "be brief".into(),
            context: vec![],
            input: input.into(),
        };
        let mut stub = InferenceStub {
            sender: key.public_key(),
            nonce,
            chain_id: Network::Regtest.chain_id(),
            model,
            prompt_hash: prompt.hash(),
            sampling: Sampling {
                max_tokens: 60,
                temperature_milli: 800,
                top_p_milli: 1000,
                top_k: 40,
                seed: 5,
                stop: vec![],
            },
            max_fee: Amount::from_units(10_000).unwrap(),
            expiry: 100,
            signature: Signature([0; 64]),
        };
        stub.sign(key);
        InferenceTx { stub, prompt }
    }

    /// A buyer who hangs up while the answer is being generated: the nonce its request
    /// held is free again (it stayed held until the node restarted, so the buyer's later
    /// transactions could not be carried), and the request is logged as failed.
    #[test]
    fn a_buyer_who_hangs_up_frees_the_nonce_its_request_held() {
        let dir = tempfile::tempdir().unwrap();
        let device = candle_core::Device::Cpu;
        let model = Arc::new(
            LoadedModel::load(
                &fai_engine::tiny::ensure_fai_tiny(dir.path()).unwrap(),
                &device,
            )
            .unwrap(),
        );
        let chain = fai_node::node::open_chain(&dir.path().join("data"), Network::Regtest).unwrap();
        let mempool = Mempool::new(MempoolConfig {
            max_bytes: 1 << 20,
            min_fee_rate: 1_000,
        });
        let state = ChainState::new(chain, mempool, fai_node::clock::system());
        let (node, _task) = fai_node::node::start_bare(state).unwrap();
        let engines = Arc::new(fai_node::served::Engines {
            device: fai_engine::device::describe(&device),
            engines: vec![fai_node::served::Engine {
                model: model.clone(),
                scheduler: Arc::new(Scheduler::start(model.clone(), 1, 8)),
            }],
        });
        let mut rpc = RpcState::new(
            node.clone(),
            Network::Regtest,
            engines,
            SecretKey::generate(),
        );
        // The buyer has no funds: this test is about the nonce its request holds.
        rpc.serve_unfunded = true;
        let rpc = Arc::new(rpc);
        let buyer = SecretKey::generate();
        let sender = buyer.public_key().hash160().0;
        let tx = signed(&buyer, model.id.0, 0, "tell me about blocks");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let Ok(events) = serve_here(&rpc, tx.clone()).await else {
                panic!("the request was refused");
            };
            let mut events = Box::pin(events);
            let first = events.next().await.unwrap();
            assert!(matches!(first, api::InferenceEvent::Token(_)), "{first:?}");
            // The buyer hangs up: the stream is dropped before its end.
        });
        let held = node
            .chain
            .call_blocking(move |st| st.results.holds(sender, 0))
            .unwrap();
        assert!(!held, "the nonce is still held for an answer nobody took");
        assert!(
            matches!(
                rpc.log().states.get(&tx.stub.txid()),
                Some(InferenceState::Failed(_))
            ),
            "the request is not logged as failed"
        );
        // The buyer can use the nonce again.
        let again = signed(&buyer, model.id.0, 0, "tell me about chains");
        runtime.block_on(async {
            let events = serve_here(&rpc, again).await;
            assert!(events.is_ok(), "nonce 0 refused again");
        });
    }
}
