//! The inference layer's routes: inference and its events, the state of one, the chain,
//! its blocks, accounts, inference nodes, models and read-only contract calls.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One server-sent event of `POST /v2/inference`, told apart by its event name:
/// `relayed` first when the request goes to another node, `token` as text is produced,
/// then one `receipt` or `error`. Its data is the variant's JSON.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
#[serde(untagged)]
pub enum InferenceEvent {
    Relayed(Relayed),
    Token(Token),
    Receipt(Receipt),
    Error(ErrorEvent),
    /// The answer to a sealed request: one of the others, sealed with the reply key.
    Sealed(SealedEvent),
}

/// The event names of [`InferenceEvent`] (a client skips others).
pub const EVENT_NAMES: [&str; 5] = ["relayed", "token", "receipt", "error", "sealed"];

impl InferenceEvent {
    /// Reads an event from its name and its data; an unknown name, or data that does not
    /// fit the name's shape, is an error that says so.
    pub fn parse(name: &str, data: &str) -> Result<Self, String> {
        let shape = |e: serde_json::Error| format!("a {name:?} event that is not valid: {e}");
        match name {
            "relayed" => serde_json::from_str(data).map(Self::Relayed).map_err(shape),
            "token" => serde_json::from_str(data).map(Self::Token).map_err(shape),
            "receipt" => serde_json::from_str(data).map(Self::Receipt).map_err(shape),
            "error" => serde_json::from_str(data).map(Self::Error).map_err(shape),
            "sealed" => serde_json::from_str(data).map(Self::Sealed).map_err(shape),
            other => Err(format!("an unknown event {other:?}")),
        }
    }

    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Relayed(_) => "relayed",
            Self::Token(_) => "token",
            Self::Receipt(_) => "receipt",
            Self::Error(_) => "error",
            Self::Sealed(_) => "sealed",
        }
    }

    /// What a sealed event holds: the event's name, a newline, then its data.
    pub fn sealed_plaintext(&self) -> Vec<u8> {
        let mut out = self.name().as_bytes().to_vec();
        out.push(b'\n');
        out.extend_from_slice(self.data().as_bytes());
        out
    }

    /// The event a sealed event held (see [`InferenceEvent::sealed_plaintext`]); never
    /// another sealed one.
    pub fn from_sealed_plaintext(plain: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(plain).map_err(|_| "a sealed event that is not UTF-8")?;
        let (name, data) = text
            .split_once('\n')
            .ok_or("a sealed event without its name")?;
        if name == "sealed" {
            return Err("a sealed event inside a sealed event".into());
        }
        Self::parse(name, data)
    }

    /// The event's data (JSON).
    pub fn data(&self) -> String {
        // Plain structs of strings and numbers: serialising them cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An `error` event.
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error(ErrorEvent {
            error: message.into(),
            status: None,
        })
    }
}

/// `relayed`: where the request went.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Relayed {
    /// The serving node's address.
    pub node: String,
    /// `libp2p` (a stream to `peer`) or `http` (its registered RPC `address`).
    pub via: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `sealed`: an event of the answer to a sealed request, sealed with the request's reply
/// key (ChaCha20-Poly1305, nonce = the index of the sealed event in the stream, from 0):
/// its name, a newline and its data.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SealedEvent {
    /// Hex.
    pub sealed: String,
}

/// `POST /v2/inference` with a request sealed to its serving node (instead of `tx`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SealedSubmission {
    /// The sealed request's bytes, in hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})+$")]
    pub sealed: String,
}

/// `token`: the next piece of the answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Token {
    pub text: String,
}

/// `error`: the inference failed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorEvent {
    pub error: String,
    /// The HTTP status the serving node refused a relayed request with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// A signed result receipt (the `receipt` event, and in the state of an inference).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Receipt {
    pub txid: String,
    /// SHA-256 of the answer's text (hex).
    pub output_hash: String,
    /// SHA-256 of the answer's token ids, each 4 little-endian bytes (hex): what
    /// verifiers replay.
    pub tokens_hash: String,
    /// Output tokens generated.
    pub tokens: u32,
    /// The serving node's public key (hex).
    pub node: String,
    /// The receipt's bytes (hex), as they go into a block.
    pub receipt: String,
    /// The answer (the `receipt` event only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `GET /v2/inference/{txid}`: the fields after `state` appear as the state has them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InferenceStatus {
    pub txid: String,
    /// `serving`, `pending` (waiting for a block), `in_block`, `settled`, `dropped` or
    /// `failed`.
    pub state: String,
    /// The block that carries it (`in_block`, `settled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_units: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// Whether this node still holds its prompt or output (deleted six ledger blocks after
    /// settlement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_held: Option<bool>,
    /// The block that settles it (`settled`): the first of its vote window to bring its
    /// votes to a quorum, or the last of the window without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_in: Option<BlockRef>,
    /// Whether a quorum of verifiers voted within its vote window (false: refunded
    /// without one).
    #[serde(rename = "final", default, skip_serializing_if = "Option::is_none")]
    pub is_final: Option<bool>,
    /// Whether the verifiers accepted it (paid); false when rejected or undecided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// What the verifiers decided: `accepted` (paid), `rejected` (refunded, the node
    /// slashed) or `undecided` (refunded, nobody paid or slashed: the verifiers could not
    /// judge it, or the block had no quorum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementAmounts>,
    /// Why it failed (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InferenceStatus {
    /// A state with no details.
    pub fn new(txid: String, state: &str) -> Self {
        InferenceStatus {
            txid,
            state: state.to_string(),
            block: None,
            max_fee_units: None,
            receipt: None,
            payload_held: None,
            settled_in: None,
            is_final: None,
            accepted: None,
            outcome: None,
            settlement: None,
            error: None,
        }
    }
}

/// An inference block by id and height.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BlockRef {
    pub id: String,
    pub height: u32,
}

/// Where an inference's max fee went.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SettlementAmounts {
    /// What the sender paid: nothing when refunded.
    pub fee_units: u64,
    pub node_units: u64,
    pub producer_units: u64,
    pub refund_units: u64,
    /// Taken from the serving node's bond (a rejected answer).
    pub slashed_units: u64,
}

/// `GET /v2/inference-chain`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InferenceChainInfo {
    pub tip: InferenceTip,
    /// The genesis block's id (hex).
    pub genesis: String,
    /// The current cycle's verifier set (addresses).
    pub verifier_set: Vec<String>,
    pub liquid_supply_units: u64,
    pub next_commit: NextCommit,
}

/// The inference tip as of the ledger tip.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InferenceTip {
    pub id: String,
    pub height: u32,
    /// The ledger block it is anchored to (hash).
    pub ledger_anchor: String,
    pub ledger_anchor_height: u32,
    pub cycle: u32,
    /// Its producer's address.
    pub producer: String,
}

/// What a commit in the next ledger block proves, pays and follows.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NextCommit {
    /// The VRF seed to prove (hex); null before the first sortition.
    pub seed: Option<String>,
    /// The addresses the bid pays.
    pub pays: Vec<String>,
    /// The ledger tip it follows (hex).
    pub after: String,
}

/// `GET /v2/inference-chain/blocks/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct InferenceBlock {
    pub id: String,
    pub height: u32,
    /// Null for genesis.
    pub parent: Option<String>,
    pub ledger_anchor: String,
    pub ledger_anchor_height: u32,
    pub cycle: u32,
    pub producer: String,
    pub state_root: Option<String>,
    pub vm_transactions: Vec<String>,
    /// Inferences carried.
    pub inferences: usize,
    /// Verifiers' commitments to their votes carried (on the blocks of its vote window
    /// in their commit phase: its parent and the block above it).
    pub commits: usize,
    /// Verifiers' votes carried (on the blocks of its vote window past their commit
    /// phase, at most `VOTE_WINDOW` blocks up).
    pub votes: usize,
    /// The same commitments and votes by the block they vote on, in the order they come.
    pub votes_by_block: Vec<VotesOnBlock>,
}

/// How many commitments and votes on one block an inference block carries.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct VotesOnBlock {
    /// The id of the block voted on.
    pub block: String,
    pub commits: usize,
    pub votes: usize,
}

/// One registered inference node (`GET /v2/inference-nodes`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InferenceNode {
    pub address: String,
    /// The ledger height of its register transaction.
    pub registered_at: u32,
    /// Model id prefixes (hex of 8 bytes).
    pub models: Vec<String>,
    /// Its node-registry entry (price, bond): a Clarity value as JSON.
    pub registry: Value,
    /// Its reputation score: a Clarity value as JSON.
    pub reputation: Value,
    /// The X25519 key requests to it are sealed to (hex), once it published one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key: Option<String>,
}

/// `GET /v2/inference-chain/accounts/{address}`; the Clarity values are rendered as JSON
/// (a uint as a number, or as a string past 2^64; none as null; a tuple as an object).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InferenceAccount {
    pub address: String,
    pub balance_units: u64,
    /// The account's nonce on chain.
    pub nonce: u64,
    /// The next nonce free for a new transaction, past those waiting here.
    pub next_nonce: u64,
    /// Its stake (staking contract), or null.
    pub stake: Value,
    /// Its reputation record, or null.
    pub reputation: Value,
    /// Its node-registry entry, or null.
    pub inference_node: Value,
}

/// One model served here (`GET /v2/models`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ModelEntry {
    pub name: String,
    pub id: String,
    pub context_length: usize,
    pub served_here: bool,
    /// Its model-registry entry, or null when not registered.
    pub registry: Value,
    /// Whether it is approved (a Clarity bool as JSON).
    pub approved: Value,
}

/// `POST /v2/contracts/call-read`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CallReadRequest {
    /// A boot contract's name (`staking`) or `ADDRESS.NAME`.
    pub contract: String,
    pub function: String,
    /// Clarity values (hex of their consensus encoding); at most 16.
    #[serde(default)]
    pub args: Vec<String>,
}

/// The result of a read-only call.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CallReadResult {
    /// The Clarity value (hex).
    pub result: String,
    /// The same as JSON.
    pub json: Value,
}
