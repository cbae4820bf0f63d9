//! Relay: an inference request for a model this node is not registered to serve goes to
//! a registered node that serves it, and its answer streams back through this node.
//!
//! A node is worth relaying to when the node registry lists it for the model (bond
//! deposited, not leaving), its price covers the request's max tokens within the
//! sender's max fee, and it is not this node. Among those, the cheapest wins, then the
//! best acceptance record. The request goes unchanged (the sender signed it) to the RPC
//! address the node registered, and its events (tokens, the serving node's receipt, or
//! an error) are passed on as they arrive; the serving node pools, gossips and gets paid
//! for the result. Without such a node, this node serves the request itself.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fai_clarity::Value;
use fai_inference_chain::types::InferenceTx;
use fai_primitives::codec::Encode;
use fai_primitives::Hash160;
use serde_json::json;

use super::layer2::{registered_nodes, value_json};
use super::RpcState;

/// Where a relayed request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: Hash160,
    /// `host:port` of its RPC.
    pub address: String,
    pub price_per_million: u64,
}

/// The registered node to relay `tx` to, if this node is not registered for its model
/// and another is, within the max fee.
pub fn choose(s: &RpcState, tx: &InferenceTx) -> Option<Target> {
    let ledger = s.node.chain();
    let chain = s.node.inference()?;
    let model = tx.stub.model;
    let principal = |who: Hash160| -> Value { chain.vm().principal(who.0).into() };
    let read = |contract: &str, function: &str, who: Hash160| {
        crate::inference::read_boot(&chain, &ledger, contract, function, &[principal(who)])
    };
    let me = s.key.public_key().hash160();
    if crate::inference::serves(&chain, &ledger, me, model) {
        return None;
    }
    let mut best: Option<(Target, u64)> = None;
    for (node, _, _) in registered_nodes(&chain, &ledger) {
        if node == me || !crate::inference::serves(&chain, &ledger, node, model) {
            continue;
        }
        let Some(entry) = read("node-registry", "get-node", node).map(|v| value_json(&v)) else {
            continue;
        };
        let (Some(price), Some(address)) = (entry["price"].as_u64(), entry["address"].as_str())
        else {
            continue;
        };
        let Some(address) = address.strip_prefix("http://").map(str::to_string) else {
            continue;
        };
        let owed =
            fai_inference_chain::settlement::fee(u64::MAX, price, tx.stub.sampling.max_tokens);
        if owed > tx.stub.max_fee.units() {
            continue;
        }
        let acceptance = read("reputation", "get-score", node)
            .and_then(|v| value_json(&v)["acceptance"].as_u64())
            .unwrap_or(0);
        let better = match &best {
            None => true,
            Some((b, b_acceptance)) => {
                (price, std::cmp::Reverse(acceptance))
                    < (b.price_per_million, std::cmp::Reverse(*b_acceptance))
            }
        };
        if better {
            best = Some((
                Target {
                    node,
                    address,
                    price_per_million: price,
                },
                acceptance,
            ));
        }
    }
    best.map(|(t, _)| t)
}

/// Sends `tx` to `target` and streams its events back: first `relayed` (where it went),
/// then the serving node's `token`, `receipt` or `error` events.
pub fn relay(s: Arc<RpcState>, tx: InferenceTx, target: Target) -> Response {
    let (events, rx) = tokio::sync::mpsc::channel::<(String, String)>(256);
    let network = s.network;
    let first = (
        "relayed".to_string(),
        json!({
            "node": fai_primitives::Address::new(network, target.node).to_string(),
            "address": target.address,
        })
        .to_string(),
    );
    let body = json!({"tx": hex::encode(tx.to_bytes())});
    let txid = tx.stub.txid();
    tokio::task::spawn_blocking(move || {
        let _ = events.blocking_send(first);
        let result = crate::http_client::stream_events(
            &target.address,
            "/v2/inference",
            &body,
            |event, data| {
                events
                    .blocking_send((event.to_string(), data.to_string()))
                    .map_err(|_| anyhow::anyhow!("the client went away"))
            },
        );
        if let Err(e) = result {
            tracing::warn!(target: "infer_node::rpc", %txid, to = %target.address, "relay failed: {e}");
            let _ = events.blocking_send((
                "error".into(),
                json!({"error": format!("relayed to {}: {e}", target.address)}).to_string(),
            ));
        }
    });
    let stream = tokio_stream_of(rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<(String, String)>,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|(event, data)| Ok(SseEvent::default().event(event).data(data))))
    })
}
