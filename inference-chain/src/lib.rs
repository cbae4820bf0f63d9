//! Proof of Inference: the inference chain's rules as pure functions over data.
//!
//! - [`ops`]: the cross-layer operations carried in ledger data outputs (register, commit,
//!   peg-in), parsed strictly.
//! - [`ledger_ops`]: a ledger block read for the inference layer: registers, valid bids,
//!   peg-ins.
//! - [`sortition`]: the sortition hash, the draw weighted by commitments, and the VRF
//!   proof that carries the seed from tenure to tenure.
//! - [`tracker`]: the sortition records of every ledger block read, by hash, so that
//!   both sides of a fork coexist and a reorganisation needs no undo.
//! - [`types`], [`block`]: inference transactions (their text-free stubs in blocks),
//!   result receipts, block headers, with bounded canonical encodings.
//! - [`vmtx`]: signed VM transactions (transfer, deploy, call) with Clarity arguments.
//! - [`quorum`]: the verifiers' votes, finality at 3 of 5, per-inference majorities.
//! - [`settlement`]: fees, shares, refunds, slashing and the producer subsidy.
//! - [`chain`]: the chain itself: blocks of sortition winners checked, run through the
//!   VM (settlement of the parent, peg-ins, cycles, VM transactions, fee escrow) and
//!   stored; the canonical tip as of any ledger block.
//! - [`canonical`]: the canonical branch by height, moved as the tip moves, so that a
//!   peer's request for blocks from a height costs what it returns.
//! - [`params`]: each network's settings of the chain (genesis, VM).
//! - [`served`]: a served inference with its text, as the result topic carries it.
//! - [`payloads`]: the store of prompts and outputs, reclaimed six ledger blocks after
//!   finality.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod block;
pub mod canonical;
pub mod chain;
pub mod ledger_ops;
pub mod ops;
pub mod params;
pub mod payloads;
pub mod quorum;
pub mod sealed_request;
pub mod served;
pub mod settlement;
pub mod sortition;
pub mod tracker;
pub mod types;
pub mod vmtx;
