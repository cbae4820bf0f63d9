//! The node's side of the peer-to-peer network: the loop (one tokio task) that owns the
//! swarm of `fai-network` and serves peers' requests from the chain ([`service`]), and
//! the thread that checks gossip and synced blocks against the chain ([`validate`]).
//!
//! Every message is validated before gossipsub forwards it; a peer that sends invalid data
//! loses score and is banned for `p2p.ban_seconds`. The rest of the node talks to the
//! loop through a [`P2pHandle`].

pub use fai_network::*;

pub mod service;
pub mod validate;
