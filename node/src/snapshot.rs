//! What the node shows of its chains and pools without asking the chain task: a
//! [`ChainSnapshot`] in a `tokio::sync::watch` channel, replaced by the chain task after
//! each command that changed it and read by `/v2/info` and `/metrics`, so that a long
//! validation never stalls them.

use fai_primitives::Hash256;

/// The chains' tips and the pools' sizes, as of the last change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainSnapshot {
    pub ledger_height: u32,
    pub ledger_tip: Hash256,
    /// The active chain's work, big-endian (what peers compare).
    pub ledger_work: [u8; 32],
    /// Base units the ledger has issued.
    pub supply_units: u64,
    /// The inference tip's height as of the ledger tip.
    pub inference_height: u32,
    /// That tip's id; None without an inference chain.
    pub inference_tip: Option<[u8; 32]>,
    pub mempool_txs: usize,
    pub vm_pool_txs: usize,
    /// Served inferences waiting for a block.
    pub results_waiting: usize,
    /// The producer waits: a commit for a peer's tenure block.
    pub producer_waiting: bool,
    /// Blocks the verifiers are behind on the canonical inference branch
    /// (`ChainState::votes_behind`).
    pub votes_behind: u32,
}
