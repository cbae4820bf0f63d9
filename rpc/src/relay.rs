//! Relay: an inference request for a model this node is not registered to serve goes to
//! a registered node that serves it, and its answer streams back through this node.
//!
//! A node is worth relaying to when the node registry lists it for the model (bond
//! deposited, not leaving), its price covers the request's max tokens within the
//! sender's max fee, and it is not this node. Among those, the cheapest wins, then the
//! best acceptance record; a request sealed to a node goes to that node, unread. The
//! request goes unchanged (the sender signed it), and its
//! events (tokens, the serving node's receipt, or an error) are passed on as they
//! arrive; the serving node pools, gossips and gets paid for the result. Without such a
//! node, this node serves the request itself.
//!
//! The request travels on a libp2p stream (`/fai/<network>/relay/1`) when the chosen
//! node is a connected peer (its status proves which node key runs it), else to the RPC
//! address it registered. On the stream, each side writes frames: a kind byte, a
//! big-endian u32 length, then that many bytes (`fai_network::relay_frames`). The
//! relaying node sends one request frame (the transaction's bytes, or a sealed request's
//! under its own kind); the serving node answers with event frames (`token`, `receipt`,
//! `error` or `sealed`, the same JSON data as the event stream) and closes it.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fai_api as api;
use fai_clarity::Value;
use fai_inference_chain::sealed_request::SealedRequest;
use fai_inference_chain::types::{InferenceStub, InferenceTx};
use fai_network::relay_frames::{
    decode_event, event_kind, read_frame, write_frame, FRAME_ERROR, FRAME_REQUEST,
    FRAME_SEALED_REQUEST, FRAME_TOKEN, MAX_EVENT_BYTES, MAX_REQUEST_BYTES,
};
use fai_primitives::codec::Encode;
use fai_primitives::Hash160;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};

use fai_node::p2p::protocol::relay_protocol;

use super::layer2::{registered_nodes, value_json};
use super::RpcState;
use fai_node::chain_task::ChainState;

/// Where a relayed request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: Hash160,
    /// Its RPC: `host:port` (plain HTTP) or an `https://` URL of a host.
    pub address: String,
    pub price_per_million: u64,
}

/// What a relay forwards: a transaction in the clear, or a request sealed to the node it
/// goes to (which the relay cannot read).
pub enum Forwarded {
    Plain(InferenceTx),
    Sealed(SealedRequest),
}

impl Forwarded {
    fn stub(&self) -> &InferenceStub {
        match self {
            Forwarded::Plain(tx) => &tx.stub,
            Forwarded::Sealed(r) => &r.stub,
        }
    }

    /// The request frame's kind and bytes.
    fn frame(&self) -> (u8, Vec<u8>) {
        match self {
            Forwarded::Plain(tx) => (FRAME_REQUEST, tx.to_bytes()),
            Forwarded::Sealed(r) => (FRAME_SEALED_REQUEST, r.to_bytes()),
        }
    }
}

/// `node` as a relay target for `stub`: registered for its model, with a valid address
/// and a price within the max fee; with its acceptance score.
fn candidate(st: &ChainState, node: Hash160, stub: &InferenceStub) -> Option<(Target, u64)> {
    let ledger = &st.ledger;
    let chain = st.inference.as_ref()?;
    let principal = |who: Hash160| -> Value { chain.vm().principal(who.0).into() };
    let read = |contract: &str, function: &str, who: Hash160| {
        fai_node::inference::read_boot(chain, ledger, contract, function, &[principal(who)])
    };
    if !fai_node::inference::serves(chain, ledger, node, stub.model) {
        return None;
    }
    let entry = read("node-registry", "get-node", node).map(|v| value_json(&v))?;
    let (price, address) = (entry["price"].as_u64()?, entry["address"].as_str()?);
    // `http://host:port` as nodes register themselves (kept as `host:port`), or an
    // `https://` host behind a TLS proxy; anything else is skipped.
    let address = api::client::relay_target(address)?;
    let owed = fai_inference_chain::settlement::fee(u64::MAX, price, stub.sampling.max_tokens);
    if owed > stub.max_fee.units() {
        return None;
    }
    let acceptance = read("reputation", "get-score", node)
        .and_then(|v| value_json(&v)["acceptance"].as_u64())
        .unwrap_or(0);
    Some((
        Target {
            node,
            address,
            price_per_million: price,
        },
        acceptance,
    ))
}

/// Node `to` as the target of a request sealed to it, if it is registered for the
/// model within the max fee.
pub fn target(st: &ChainState, stub: &InferenceStub, to: Hash160) -> Option<Target> {
    candidate(st, to, stub).map(|(t, _)| t)
}

/// The registered node to relay `tx` to, if this node is not registered for its model
/// and another is, within the max fee.
pub fn choose(st: &ChainState, me: Hash160, tx: &InferenceTx) -> Option<Target> {
    let ledger = &st.ledger;
    let chain = st.inference.as_ref()?;
    if fai_node::inference::serves(chain, ledger, me, tx.stub.model) {
        return None;
    }
    let mut best: Option<(Target, u64)> = None;
    for (node, _, _) in registered_nodes(chain, ledger) {
        if node == me {
            continue;
        }
        let Some((target, acceptance)) = candidate(st, node, &tx.stub) else {
            continue;
        };
        let price = target.price_per_million;
        let better = match &best {
            None => true,
            Some((b, b_acceptance)) => {
                (price, std::cmp::Reverse(acceptance))
                    < (b.price_per_million, std::cmp::Reverse(*b_acceptance))
            }
        };
        if better {
            best = Some((target, acceptance));
        }
    }
    best.map(|(t, _)| t)
}

/// Sends `tx` to `target` and streams its events back: first `relayed` (where it went
/// and how: `via` is `libp2p` with the peer id, or `http` with the address), then the
/// serving node's `token`, `receipt` or `error` events.
pub fn relay(s: Arc<RpcState>, tx: Forwarded, target: Target) -> Response {
    let (events, rx) = tokio::sync::mpsc::channel::<api::InferenceEvent>(256);
    tokio::spawn(async move {
        let node = fai_primitives::Address::new(s.network, target.node).to_string();
        let p2p = s.node.p2p.get().cloned();
        let peer = p2p.as_ref().and_then(|p| p.peer_of(target.node));
        if let (Some(p2p), Some(peer)) = (p2p, peer) {
            match open_relay_stream(&p2p, peer, s.network, &tx).await {
                Ok(stream) => {
                    let first = api::InferenceEvent::Relayed(api::Relayed {
                        node,
                        via: "libp2p".into(),
                        peer: Some(peer.to_string()),
                        address: None,
                    });
                    if events.send(first).await.is_ok() {
                        pass_on_stream(stream, &events, tx.stub().txid()).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(target: "infer_node::rpc", %peer, "relay stream not opened ({e}); using the registered address")
                }
            }
        }
        let first = api::InferenceEvent::Relayed(api::Relayed {
            node,
            via: "http".into(),
            peer: None,
            address: Some(target.address.clone()),
        });
        if events.send(first).await.is_ok() {
            relay_over_http(&tx, &target, &events).await;
        }
    });
    let stream = tokio_stream_of(rx);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Relays over the serving node's registered RPC address (`host:port`, or an
/// `https://` URL), passing its events on until its stream ends.
async fn relay_over_http(
    tx: &Forwarded,
    target: &Target,
    events: &tokio::sync::mpsc::Sender<api::InferenceEvent>,
) {
    let txid = tx.stub().txid();
    let result = async {
        let client = api::Client::new(&target.address)?;
        let stream = match tx {
            Forwarded::Plain(tx) => {
                futures::future::Either::Left(client.inference(&tx.to_bytes()).await?)
            }
            Forwarded::Sealed(r) => {
                futures::future::Either::Right(client.inference_sealed(&r.to_bytes()).await?)
            }
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if events.send(event?).await.is_err() {
                break; // the client went away
            }
        }
        Ok::<(), api::Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(target: "infer_node::rpc", %txid, to = %target.address, "relay failed: {e}");
        let _ = events
            .send(api::InferenceEvent::error(format!(
                "relayed to {}: {e}",
                target.address
            )))
            .await;
    }
}

/// How long opening a relay stream and sending the request may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the serving node may stay silent between two events (it may queue the
/// request behind others before the first token).
const EVENT_TIMEOUT: Duration = Duration::from_secs(300);
/// The most bytes one relayed answer may carry in all.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;
/// Relayed requests served at once; more streams are closed unanswered.
const MAX_SERVED_STREAMS: usize = 32;

/// Opens a relay stream to `peer` and sends it `tx`.
async fn open_relay_stream(
    p2p: &fai_node::p2p::P2pHandle,
    peer: libp2p::PeerId,
    network: fai_primitives::Network,
    tx: &Forwarded,
) -> anyhow::Result<libp2p::Stream> {
    let mut control = p2p
        .streams()
        .ok_or_else(|| anyhow::anyhow!("this node opens no streams"))?;
    let open = async {
        let mut stream = control
            .open_stream(peer, relay_protocol(network))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (kind, bytes) = tx.frame();
        write_frame(&mut stream, kind, &bytes).await?;
        stream.flush().await?;
        anyhow::Ok(stream)
    };
    tokio::time::timeout(OPEN_TIMEOUT, open)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))?
}

/// Passes the serving node's event frames on until it closes the stream.
async fn pass_on_stream(
    stream: libp2p::Stream,
    events: &tokio::sync::mpsc::Sender<api::InferenceEvent>,
    txid: fai_primitives::Hash256,
) {
    let mut stream = stream.take(MAX_ANSWER_BYTES);
    let mut ended = false;
    let failure = loop {
        let frame =
            match tokio::time::timeout(EVENT_TIMEOUT, read_frame(&mut stream, MAX_EVENT_BYTES))
                .await
            {
                Err(_) => break Some("the serving node went silent".to_string()),
                Ok(Err(e)) => break Some(e.to_string()),
                Ok(Ok(None)) => {
                    break (!ended).then(|| "the serving node closed the stream early".to_string())
                }
                Ok(Ok(Some(frame))) => frame,
            };
        let (kind, bytes) = frame;
        let event = decode_event(kind, bytes);
        let Ok(event) = event else {
            break Some("the serving node sent a malformed frame".to_string());
        };
        ended = kind != FRAME_TOKEN;
        if events.send(event).await.is_err() {
            return; // the client went away
        }
    };
    if let Some(why) = failure {
        tracing::warn!(target: "infer_node::rpc", %txid, "relay failed: {why}");
        let error = api::InferenceEvent::error(format!("relayed over libp2p: {why}"));
        let _ = events.send(error).await;
    }
}

/// Serves relayed requests that peers open streams for, until the network stops:
/// each is checked as `POST /v2/inference` checks it, then run here, its events
/// written back as frames.
pub async fn serve_streams(s: Arc<RpcState>) {
    let Some(mut control) = s.node.p2p.get().and_then(|p| p.streams()) else {
        return;
    };
    let mut incoming = match control.accept(relay_protocol(s.network)) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::warn!(target: "infer_node::rpc", "relayed requests are not served: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SERVED_STREAMS));
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(target: "infer_node::rpc", %peer, "relay stream refused: {MAX_SERVED_STREAMS} in progress");
            continue;
        };
        let s = s.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(s, stream).await {
                tracing::debug!(target: "infer_node::rpc", %peer, "relay stream ended: {e}");
            }
            drop(slot);
        });
    }
}

async fn serve_stream(s: Arc<RpcState>, mut stream: libp2p::Stream) -> io::Result<()> {
    let request = tokio::time::timeout(OPEN_TIMEOUT, read_frame(&mut stream, MAX_REQUEST_BYTES))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))??;
    let checked = match request {
        Some((FRAME_REQUEST, bytes)) => match super::check_inference(&s, &bytes).await {
            Ok(tx) => super::serve_here(&s, tx)
                .await
                .map(futures::future::Either::Left),
            Err(e) => Err(e),
        },
        Some((FRAME_SEALED_REQUEST, bytes)) => match super::check_sealed(&s, &bytes).await {
            Ok(r) if r.to != s.key.public_key().hash160() => {
                Err(super::bad("the request is sealed to another node"))
            }
            Ok(r) => super::serve_sealed(&s, &r)
                .await
                .map(futures::future::Either::Right),
            Err(e) => Err(e),
        },
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the first frame is not a request",
            ))
        }
    };
    match checked {
        Err(e) => {
            let error = api::InferenceEvent::Error(api::ErrorEvent {
                error: e.message,
                status: Some(e.status.as_u16()),
            });
            write_frame(&mut stream, FRAME_ERROR, error.data().as_bytes()).await?;
        }
        Ok(events) => {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                write_frame(
                    &mut stream,
                    event_kind(event.name()),
                    event.data().as_bytes(),
                )
                .await?;
                stream.flush().await?;
            }
        }
    }
    stream.close().await
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<api::InferenceEvent>,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|event| Ok(SseEvent::default().event(event.name()).data(event.data()))))
    })
}
