//! The node's side of the peer-to-peer network: the loop (one tokio task) that owns the
//! swarm of `fai-network` and serves peers' requests from the chain ([`service`]), and
//! the checks of gossip and synced blocks against the chain, run on the chain task
//! ([`validate`]), and the answers to peers' requests, read there too ([`answer`]).
//!
//! Every message is validated before gossipsub forwards it; a peer that sends invalid data
//! loses score and is banned for `p2p.ban_seconds`. The rest of the node talks to the
//! loop through a [`P2pHandle`].

pub use fai_network::*;

pub mod answer;
pub mod service;
pub mod validate;
