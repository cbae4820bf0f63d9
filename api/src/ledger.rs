//! The ledger's routes: blocks, the mempool, accounts and their coins, history.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v2/ledger/blocks/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LedgerBlock {
    /// The sortition this block held; null when the inference chain is not open.
    pub sortition: Option<Sortition>,
    pub hash: String,
    pub height: u32,
    /// Whether it is on the active chain.
    pub active: bool,
    /// The parent's hash.
    pub prev: String,
    /// Unix seconds.
    pub time: u32,
    /// The compact target (hex of 4 bytes).
    pub bits: String,
    /// Transaction ids, coinbase first.
    pub transactions: Vec<String>,
}

/// The commits a ledger block held and who won.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Sortition {
    pub total_bid_units: u64,
    pub winner: Option<SortitionWinner>,
}

/// The winner of a sortition.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SortitionWinner {
    pub address: String,
    pub bid_units: u64,
    /// The register transaction it bid as: `HEIGHT:INDEX`.
    pub register: String,
}

/// `GET /v2/mempool`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MempoolInfo {
    /// Ledger transactions waiting.
    pub transactions: usize,
    /// Their serialised size.
    pub bytes: usize,
    /// Inference-layer VM transactions waiting.
    pub vm_transactions: usize,
    /// Served inferences waiting for an inference block.
    pub inferences: usize,
}

/// `GET /v2/ledger/accounts/{address}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LedgerAccount {
    pub address: String,
    /// The spendable balance, as text (`1.5 FAI`).
    pub balance: String,
    pub balance_units: u64,
    /// Coinbase outputs not yet mature.
    pub immature_units: u64,
    /// Unspent outputs, spendable or not.
    pub utxos: usize,
    /// The ledger height this was read at.
    pub height: u32,
}

/// One unspent output (`GET /v2/ledger/accounts/{address}/utxos`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Utxo {
    pub txid: String,
    pub vout: u32,
    pub value_units: u64,
    /// The height of the block that created it.
    pub height: u32,
    pub coinbase: bool,
    /// False for a coinbase output not yet mature.
    pub spendable: bool,
}

/// `GET /v2/accounts/{address}/history`, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct History {
    pub address: String,
    /// The ledger heights scanned.
    pub from_height: u32,
    pub to_height: u32,
    pub ledger: Vec<LedgerHistoryItem>,
    pub inference: Vec<InferenceHistoryItem>,
}

/// A ledger transaction that paid or spent from the address.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LedgerHistoryItem {
    pub height: u32,
    pub txid: String,
    /// `coinbase`, `peg-in`, `sent` or `received`.
    pub kind: String,
    /// What its outputs paid to the address.
    pub received_units: u64,
}

/// An inference-layer VM transaction sent by or paying the address.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InferenceHistoryItem {
    pub inference_height: u32,
    pub txid: String,
    /// `sent`, `received`, `deployed NAME`, `called NAME.FUNCTION` or `reported an equivocation`.
    pub kind: String,
    /// What a transfer moved (0 otherwise).
    pub amount_units: u64,
    /// The other side of a transfer.
    pub counterparty: Option<String>,
    pub nonce: u64,
}
