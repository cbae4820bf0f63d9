//! The infer-node daemon as a library: the services `infer-node start` runs and the
//! state they share.
//!
//! Owns: the node's configuration (`config`), its data directory's keys and model store,
//! the chain task that owns the chains and the pools (`chain_task`), what the services
//! share (`node::Node`) and the services around it: the miner, the p2p
//! network, the inference-node role (producer, roles), the verifier, the pools of served
//! inferences, votes and VM transactions, and the devnet launcher. The RPC server is a
//! crate above this one (`fai-rpc`), handed to [`daemon::run`] or [`daemon::start`].
//!
//! Depends on the protocol crates (primitives, ledger, inference-chain, clarity, vrf),
//! storage, the engine, the RPC's types (`fai-api`) and the wallet's keystore (the dev
//! wallet). Must not depend on the RPC server (`fai-rpc`), the benchmarks
//! (`fai-bench`) or the command line (`infer-node`): they depend on this crate.

pub mod auditor;
pub mod banner;
pub mod chain_task;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod devnet;
pub mod inference;
pub mod keys;
pub mod mining;
pub mod model_store;
pub mod models;
pub mod node;
pub mod p2p;
pub mod producer;
pub mod replay_cost;
pub mod result_pool;
pub mod roles;
pub mod served;
pub mod snapshot;
pub mod verifier;
pub mod verify_queue;
pub mod verify_service;
pub mod vm_mempool;
pub mod vote_pool;
