//! The node's RPC as types, and its one client.
//!
//! Owns: every request and response body of the RPC (REST under `/v2`, JSON; serde for
//! the wire, `utoipa::ToSchema` for the OpenAPI document the server publishes), the
//! server-sent events of an inference, and [`Client`] / [`blocking::Client`], which
//! the wallet, the devnet launcher, the benchmarks, the relay and the tests use to talk
//! to a node. Amounts are base units (`*_units`, 1 FAI = 10^8), ids and hashes hex,
//! addresses bech32m.
//!
//! Must not depend on the node, the protocol crates or the engine: a wallet or another
//! program can talk to a node with this crate alone.

pub mod client;
pub mod inference;
pub mod ledger;
pub mod node;

pub use client::{blocking, Client, Error, RawAnswer};
pub use inference::*;
pub use ledger::*;
pub use node::*;
