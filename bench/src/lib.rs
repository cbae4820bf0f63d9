//! What `infer-node bench ...` measures. Every benchmark measures the physical limit of
//! the same machine in the same run and reports its figure as a ratio to it, so that the
//! numbers mean something on a noisy machine; each returns a serialisable report (the
//! command prints it as a line for people or, with `--json`, for scripts).
//!
//! - [`ledger`]: the miner's hash rate (`pow`) and block connection (`validate`);
//! - [`engine`]: decoding against the memory roofline, batched decoding, replay cost and
//!   the fraud suite (`engine`, `verify`); [`gpu`]: the checks for a GPU machine;
//! - [`poi`]: assembling and verifying an inference block;
//! - [`rpc`] and [`gossip`]: time to first token through the RPC, gossip latency;
//! - [`network`]: a local network of node processes under load;
//! - [`growth`]: connecting a ledger block (and accepting the inference block it brings)
//!   after a long history against a short one.
//!
//! Depends on the node library (it runs real nodes, in process or as processes) and the
//! protocol crates; nothing but the command line depends on it.

pub mod engine;
pub mod gossip;
pub mod gpu;
pub mod growth;
pub mod ledger;
pub mod network;
pub mod poi;
pub mod rpc;
