//! The peer-to-peer network's parts that know nothing of the node's state, on libp2p:
//! TCP with noise and yamux, identify, ping, kademlia discovery from the configured
//! bootstrap peers, gossipsub for new blocks and transactions, and request-response
//! protocols for headers-first sync, inference blocks and payloads.
//!
//! - [`protocol`]: topics, sync messages and their bounded codecs.
//! - [`behaviour`]: the libp2p behaviours and the swarm.
//! - [`sync`]: headers-first catch-up with a peer that has more work.
//! - [`peers`]: scores, bans and request budgets.
//! - here: the [`P2pHandle`] through which the rest of the node talks to the network loop
//!   (commands on a channel, and a status it reads without asking), and peer addresses.
//!
//! Owns the wire: every message's encoding and its bounds. Must not depend on the node
//! (`fai-node`): the network loop that owns the swarm, and the thread that validates what
//! peers send against the chain, live in the node (`node/src/p2p/`) and use these parts,
//! until one chain task owns the node's state and the loop talks to it over channels.

pub mod behaviour;
pub mod peers;
pub mod protocol;
pub mod relay_frames;
pub mod sync;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

pub use protocol::Topic;

/// A request to the network loop.
pub enum Command {
    /// Gossip bytes on a topic (the node's own block or transaction).
    Publish { topic: Topic, data: Vec<u8> },
    /// The connected peers and the bans.
    Peers(oneshot::Sender<PeersReport>),
    /// Ban a peer for a time (an operator's decision).
    Ban { peer: PeerId, time: Duration },
    /// Lift a ban; answers whether there was one.
    Unban(PeerId, oneshot::Sender<bool>),
    /// Ask for the text of inference block `block`'s inferences again: of the first
    /// connected peer run by one of `servers` (in their order), or of another peer when
    /// none of those is connected.
    FetchPayloads {
        block: fai_primitives::Hash256,
        servers: Vec<fai_primitives::Hash160>,
    },
}

/// Servers looked up for one ask at most (a block names a node per inference).
pub const MAX_TEXT_SOURCES: usize = 8;

// What operators are shown of peers and bans (`GET /v2/admin/peers`).
pub use fai_api::{BanReport, PeerReport, PeersReport};

/// What the rest of the node can read about the network without asking the loop.
#[derive(Default)]
pub struct NetStatus {
    pub peer_id: Mutex<String>,
    pub listen: Mutex<Vec<String>>,
    pub peers: AtomicUsize,
    pub syncing: AtomicBool,
    /// The best height a peer announced.
    pub best_peer_height: AtomicU32,
    /// Connected peers by the node key their status proved (its hash).
    pub nodes: Mutex<std::collections::HashMap<fai_primitives::Hash160, PeerId>>,
    /// Messages handed to the validator and not yet checked (queued or being checked).
    pub validating: AtomicUsize,
}

/// The node's side of the network loop.
#[derive(Clone)]
pub struct P2pHandle {
    commands: mpsc::Sender<Command>,
    pub status: Arc<NetStatus>,
    streams: Option<libp2p_stream::Control>,
}

impl P2pHandle {
    pub fn new(commands: mpsc::Sender<Command>, status: Arc<NetStatus>) -> Self {
        P2pHandle {
            commands,
            status,
            streams: None,
        }
    }

    /// Opens and accepts raw streams through `control`.
    pub fn with_streams(mut self, control: libp2p_stream::Control) -> Self {
        self.streams = Some(control);
        self
    }

    /// A handle to open and accept raw streams (relayed inference).
    pub fn streams(&self) -> Option<libp2p_stream::Control> {
        self.streams.clone()
    }

    /// The connected peer run by the node whose key hashes to `node`, if any.
    pub fn peer_of(&self, node: fai_primitives::Hash160) -> Option<PeerId> {
        self.status.nodes.lock().ok()?.get(&node).copied()
    }

    /// Gossips `data` on `topic`; dropped (and logged) when the loop is overwhelmed.
    pub fn publish(&self, topic: Topic, data: Vec<u8>) {
        if self
            .commands
            .try_send(Command::Publish { topic, data })
            .is_err()
        {
            debug!(target: "infer_node::p2p", ?topic, "network loop busy: not gossiped");
        }
    }

    /// Asks peers for the text of `block`'s inferences (see [`Command::FetchPayloads`]);
    /// dropped (and logged) when the loop is overwhelmed, like gossip.
    pub fn fetch_payloads(
        &self,
        block: fai_primitives::Hash256,
        servers: Vec<fai_primitives::Hash160>,
    ) {
        if self
            .commands
            .try_send(Command::FetchPayloads { block, servers })
            .is_err()
        {
            debug!(target: "infer_node::p2p", %block, "network loop busy: text not asked for");
        }
    }

    /// Sends a command and waits for the loop to take it.
    pub async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| anyhow::anyhow!("the network loop has stopped"))
    }
}

/// The node's libp2p identity: an ed25519 key derived from the node key, so the peer id
/// stays the same across restarts and needs no file of its own.
pub fn identity(node_key: &fai_primitives::SecretKey) -> Result<libp2p::identity::Keypair> {
    let mut seed = b"fai p2p identity".to_vec();
    seed.extend_from_slice(&node_key.to_bytes());
    let digest = fai_primitives::Hash256::sha256d(&seed);
    libp2p::identity::Keypair::ed25519_from_bytes(digest.0)
        .map_err(|e| anyhow::anyhow!("cannot derive the p2p identity: {e}"))
}

/// Splits `/ip4/.../tcp/N/p2p/<peer id>` into the peer id and the address.
pub fn parse_peer_address(text: &str) -> Result<(PeerId, Multiaddr)> {
    let address: Multiaddr = text
        .parse()
        .with_context(|| format!("{text:?} is not a multiaddress"))?;
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Ok((peer, address)),
        _ => bail!("{text:?} does not end in /p2p/<peer id>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_need_a_peer_id() {
        let peer = PeerId::random();
        let text = format!("/ip4/127.0.0.1/tcp/7090/p2p/{peer}");
        let (parsed, address) = parse_peer_address(&text).unwrap();
        assert_eq!(parsed, peer);
        assert_eq!(address.to_string(), text);
        let err = parse_peer_address("/ip4/127.0.0.1/tcp/7090").unwrap_err();
        assert!(err.to_string().contains("/p2p/"), "{err}");
        assert!(parse_peer_address("localhost:7090").is_err());
    }
}
