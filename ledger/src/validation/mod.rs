//! The consensus rules of the ledger, as pure functions.
//!
//! - [`stateless`]: what a transaction or block must satisfy on its own (sizes, values,
//!   proof of work, merkle root, coinbase shape).
//! - [`header`]: what a header must satisfy given its parent (difficulty, median time
//!   past, future limit).
//! - [`connect`]: what a block must satisfy against the UTXO set (inputs exist and are
//!   mature, signatures, fees, subsidy, lock times), and the coins it spends and creates.
//!
//! Every rule has its own [`ConsensusError`] variant so that a rejection says which rule.

pub mod connect;
pub mod header;
pub mod stateless;

use fai_primitives::Amount;

use crate::tx::{OutPoint, Txid};

/// A broken consensus rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    // Transactions on their own.
    #[error("transaction {0} has no inputs")]
    NoInputs(Txid),
    #[error("transaction {0} has no outputs")]
    NoOutputs(Txid),
    #[error("transaction {txid} is {size} bytes, above the limit of {max}")]
    TxTooLarge { txid: Txid, size: usize, max: usize },
    #[error("transaction {0} pays out more than the 21,000,000 FAI supply")]
    OutputsOutOfRange(Txid),
    #[error("transaction {txid} has a data output of {len} bytes, above the limit of 80")]
    DataOutputTooLarge { txid: Txid, len: usize },
    #[error("transaction {txid} spends {outpoint:?} twice")]
    DuplicateInput { txid: Txid, outpoint: OutPoint },
    #[error("transaction {0} has a null outpoint but is not a coinbase")]
    NullPrevout(Txid),
    #[error("coinbase data of {0} bytes, expected 4 to 100")]
    CoinbaseDataLength(usize),

    // Blocks on their own.
    #[error("block hash does not meet its target")]
    HighHash,
    #[error("bad compact target: {0}")]
    BadBits(#[from] crate::pow::CompactError),
    #[error("target above the network's proof-of-work limit")]
    TargetAboveLimit,
    #[error("block is {size} bytes, above the limit of {max}")]
    BlockTooLarge { size: usize, max: usize },
    #[error("the first transaction of a block must be a coinbase")]
    FirstTxNotCoinbase,
    #[error("a block has exactly one coinbase, at position 0; found another at {0}")]
    ExtraCoinbase(usize),
    #[error("merkle root does not match the transactions")]
    BadMerkleRoot,
    #[error("the merkle tree hashes two identical siblings (a duplicated transaction list)")]
    MutatedMerkle,
    #[error("transaction {0} appears twice in the block")]
    DuplicateTransaction(Txid),

    // Headers in context.
    #[error("block version {0} is not accepted (minimum 1)")]
    BadVersion(u32),
    #[error("wrong difficulty: bits {found:#010x}, expected {expected:#010x}")]
    BadDifficulty { found: u32, expected: u32 },
    #[error("block time {time} is not after the median time past {median}")]
    TimeTooOld { time: u32, median: u32 },
    #[error("block time {time} is more than the allowed drift ahead of now ({limit})")]
    TimeTooNew { time: u32, limit: u64 },

    // Blocks against the UTXO set.
    #[error("coinbase commits to height {found:?}, the block is at height {expected}")]
    BadCoinbaseHeight { expected: u32, found: Option<u32> },
    #[error("transaction {0} is not final at this height and time")]
    NonFinal(Txid),
    #[error("transaction {txid} spends {outpoint:?}, which is missing or already spent")]
    MissingInput { txid: Txid, outpoint: OutPoint },
    #[error("transaction {txid} spends a coinbase output with {confirmations} confirmations; {required} are required")]
    ImmatureCoinbase {
        txid: Txid,
        confirmations: u32,
        required: u32,
    },
    #[error("transaction {0} spends less than it pays out")]
    InputsBelowOutputs(Txid),
    #[error("transaction {txid} input {input}: the public key does not match the spent address")]
    KeyMismatch { txid: Txid, input: usize },
    #[error("transaction {txid} input {input}: invalid signature")]
    BadSignature { txid: Txid, input: usize },
    #[error("coinbase pays {claimed}, more than subsidy plus fees of {allowed}")]
    CoinbaseTooLarge { claimed: Amount, allowed: Amount },
    #[error("block would raise the ledger supply above its share of the 21,000,000 FAI cap")]
    SupplyCapExceeded,
}
