//! The ledger layer of infer-node: a Bitcoin-style proof-of-work chain of FAI.
//!
//! - [`tx`], [`block`], [`merkle`], [`sighash`]: the data and how it is hashed and signed.
//! - [`pow`], [`difficulty`], [`params`]: proof of work, the ASERT difficulty adjustment and
//!   the parameters of each network.
//! - [`validation`]: the consensus rules, as pure functions over data and a UTXO view.
//! - [`chainstate`]: the block index, UTXO set, fork choice and reorganisations, on the
//!   storage crate.
//! - [`mempool`]: unconfirmed transactions, ordered by fee rate and bounded in size.
//! - [`miner`]: block templates and the multi-threaded nonce search.
//!
//! Nothing in this crate knows about tokio or the network: the node wires it up.
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
pub mod chainstate;
pub mod coins;
pub mod difficulty;
pub mod mempool;
pub mod merkle;
pub mod miner;
pub mod params;
pub mod pow;
pub mod sighash;
pub mod testkit;
pub mod tx;
pub mod validation;

use fai_primitives::Hash256;

pub use block::{Block, BlockHeader};
pub use chainstate::{BlockOutcome, ChainEvent, Chainstate};
pub use coins::{Coin, UtxoView};
pub use params::ChainParams;
pub use tx::{OutPoint, OutputKind, Transaction, TxIn, TxOut, Txid, Unlock};
pub use validation::ConsensusError;

/// Errors of the ledger layer.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("consensus rule broken: {0}")]
    Consensus(#[from] ConsensusError),
    #[error(transparent)]
    Storage(#[from] fai_storage::StorageError),
    #[error("block {0} is invalid or descends from an invalid block")]
    InvalidAncestor(Hash256),
    #[error(
        "this data directory holds a chain with genesis {found}, not the {network} chain \
         (genesis {expected}); use another data directory for {network}"
    )]
    WrongNetwork {
        network: &'static str,
        expected: Hash256,
        found: Hash256,
    },
    #[error("corrupt chain data: {0}")]
    Corrupt(String),
    /// Not the sender's fault as such (a block can come late); it is not stored.
    #[error("block {0} is on a branch with less work than the active chain; not stored")]
    TooLittleWork(Hash256),
}

impl ChainError {
    /// The consensus rule this error reports, if it is one.
    pub fn consensus(&self) -> Option<&ConsensusError> {
        match self {
            ChainError::Consensus(e) => Some(e),
            _ => None,
        }
    }
}
