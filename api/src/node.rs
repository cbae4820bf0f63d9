//! What every route shares, and the node's own routes: `/v2/info`, the admin calls.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every refusal's body (4xx, or 503 when the node is busy): what was wrong.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
}

/// A signed transaction submitted in hex: to the ledger (`POST /v2/transactions`), to the
/// inference layer (`POST /v2/inference-chain/transactions`) or for inference
/// (`POST /v2/inference`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TxSubmission {
    /// The transaction's bytes, in hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})+$")]
    pub tx: String,
}

/// A transaction accepted into a pool.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TxAccepted {
    /// Its id (hex).
    pub txid: String,
}

/// `GET /v2/info`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NodeInfo {
    /// `mainnet`, `testnet`, `regtest` or `devnet`.
    pub network: String,
    /// The chain id that signed transactions carry.
    pub chain_id: u32,
    /// The node's version.
    pub version: String,
    pub ledger: LedgerSummary,
    /// The canonical inference tip as of the ledger tip; null when the inference chain
    /// is not open.
    #[serde(default)]
    pub inference: Option<InferenceSummary>,
    /// The node key's address.
    pub address: String,
    /// The X25519 key requests to this node are sealed to (hex).
    pub sealing_key: String,
    /// Connected peers.
    pub peers: usize,
    /// `synced`, `syncing` or `offline` (no p2p network).
    pub sync: String,
    /// The p2p network; null when it is off.
    pub p2p: Option<P2pInfo>,
    /// The models served here.
    pub models: Vec<ServedModel>,
    pub engine: EngineInfo,
}

/// The active ledger tip.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LedgerSummary {
    pub height: u32,
    /// Its hash (hex).
    pub tip: String,
    /// FAI issued so far, in base units.
    pub supply_units: u64,
}

/// The canonical inference tip, as `/v2/info` shows it (read without waiting for the
/// chain task; `/v2/inference-chain` has the rest).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InferenceSummary {
    pub height: u32,
    /// Its id (hex).
    pub tip: String,
}

/// This node on the p2p network.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct P2pInfo {
    pub peer_id: String,
    /// The multiaddresses it listens on.
    pub listen: Vec<String>,
    /// The highest ledger height a peer has announced.
    pub best_peer_height: u32,
}

/// A model served here.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ServedModel {
    pub name: String,
    /// The model id (hex of 32 bytes).
    pub id: String,
    pub context_length: usize,
}

/// The device the engine runs on.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EngineInfo {
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub memory_total_bytes: Option<u64>,
    pub memory_free_bytes: Option<u64>,
}

/// `POST /v2/admin/shutdown`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ShuttingDown {
    pub shutting_down: bool,
}

/// `GET /v2/admin/peers`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PeersReport {
    pub peers: Vec<PeerReport>,
    pub bans: Vec<BanReport>,
}

/// One connected peer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PeerReport {
    pub peer_id: String,
    /// Its address (multiaddress).
    pub address: String,
    /// Whether it dialled us.
    pub inbound: bool,
    /// Its score: misbehaviour lowers it; at the threshold it is banned.
    pub score: i32,
    /// The ledger height it announced.
    pub height: Option<u32>,
}

/// One ban.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BanReport {
    pub peer_id: String,
    pub seconds_left: u64,
    pub reason: String,
}

/// `POST /v2/admin/bans`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BanRequest {
    pub peer_id: String,
    /// 1 to 31,536,000 (a year).
    pub seconds: u64,
}

/// A ban placed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Banned {
    /// The peer id.
    pub banned: String,
    pub seconds: u64,
}

/// A ban lifted.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Unbanned {
    /// The peer id.
    pub unbanned: String,
}
