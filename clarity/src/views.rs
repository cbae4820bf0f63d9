//! What contracts see of the chains: the VM's `HeadersDB` over the inference block index
//! (`block-height`, `get-block-info?`, and the ledger height behind every balance) and its
//! `BurnStateDB` over the ledger chain (`burn-block-height`, `get-burn-block-info?`).
//!
//! Mapping: the VM's Stacks block id is the inference block id; its burnchain is the
//! ledger: burn header hash = ledger block hash (internal byte order), burn height =
//! ledger height; a sortition id is the inference block id, and a consensus hash is the
//! first 20 bytes of it.

use clarity::types::chainstate::{
    BlockHeaderHash, BurnchainHeaderHash, ConsensusHash, SortitionId, StacksAddress, StacksBlockId,
    VRFSeed,
};
use clarity::types::{StacksEpoch as GenericEpoch, StacksEpochId, PEER_VERSION_EPOCH_2_1};
use clarity::util::hash::Hash160;
use clarity::vm::ast::ASTRules;
use clarity::vm::costs::ExecutionCost;
use clarity::vm::database::clarity_db::StacksEpoch;
use clarity::vm::database::{BurnStateDB, HeadersDB};
use clarity::vm::types::TupleData;
use fai_primitives::Hash256;

use crate::store::{BlockInfo, ClarityStore};
use crate::EPOCH;

/// A read-only view of the ledger chain.
pub trait LedgerView {
    /// The hash of the block at `height` on the branch that ends at block `of` (`of`
    /// itself at its own height); none above it or for an unknown block.
    fn ancestor(&self, of: &[u8; 32], height: u32) -> Option<[u8; 32]>;
}

impl LedgerView for fai_ledger::chainstate::Chainstate {
    fn ancestor(&self, of: &[u8; 32], height: u32) -> Option<[u8; 32]> {
        fai_ledger::chainstate::Chainstate::ancestor(self, &Hash256(*of), height).map(|h| h.0)
    }
}

/// The inference block index as the VM's headers database.
pub struct Headers<'a> {
    pub store: &'a ClarityStore,
    /// The address version byte of principals on this network.
    pub address_version: u8,
}

impl Headers<'_> {
    fn info(&self, id: &StacksBlockId) -> Option<BlockInfo> {
        match self.store.block(&id.0) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(target: "infer_node::clarity", "block index read failed: {e}");
                None
            }
        }
    }
}

impl HeadersDB for Headers<'_> {
    fn get_stacks_block_header_hash_for_block(
        &self,
        id: &StacksBlockId,
    ) -> Option<BlockHeaderHash> {
        self.info(id).map(|i| BlockHeaderHash(i.id))
    }

    fn get_burn_header_hash_for_block(&self, id: &StacksBlockId) -> Option<BurnchainHeaderHash> {
        self.info(id).map(|i| BurnchainHeaderHash(i.ledger_hash))
    }

    fn get_consensus_hash_for_block(&self, id: &StacksBlockId) -> Option<ConsensusHash> {
        self.info(id).map(|i| ConsensusHash(i.consensus_hash()))
    }

    fn get_vrf_seed_for_block(&self, id: &StacksBlockId) -> Option<VRFSeed> {
        self.info(id).map(|i| VRFSeed(i.vrf_seed))
    }

    fn get_burn_block_time_for_block(&self, id: &StacksBlockId) -> Option<u64> {
        self.info(id).map(|i| i.time)
    }

    fn get_burn_block_height_for_block(&self, id: &StacksBlockId) -> Option<u32> {
        self.info(id).map(|i| i.ledger_height)
    }

    fn get_miner_address(&self, id: &StacksBlockId) -> Option<StacksAddress> {
        self.info(id)
            .map(|i| StacksAddress::new(self.address_version, Hash160(i.producer)))
    }

    fn get_burnchain_tokens_spent_for_block(&self, id: &StacksBlockId) -> Option<u128> {
        self.info(id).map(|i| u128::from(i.commit_total))
    }

    fn get_burnchain_tokens_spent_for_winning_block(&self, id: &StacksBlockId) -> Option<u128> {
        self.info(id).map(|i| u128::from(i.commit_spent))
    }

    fn get_tokens_earned_for_block(&self, id: &StacksBlockId) -> Option<u128> {
        self.info(id).map(|i| u128::from(i.reward))
    }
}

/// The ledger chain as the VM's burnchain.
pub struct Burnchain<'a> {
    pub store: &'a ClarityStore,
    pub ledger: &'a dyn LedgerView,
}

fn epoch() -> StacksEpoch {
    GenericEpoch {
        epoch_id: EPOCH,
        start_height: 0,
        end_height: u64::MAX,
        block_limit: ExecutionCost::max_value(),
        network_epoch: PEER_VERSION_EPOCH_2_1,
    }
}

impl BurnStateDB for Burnchain<'_> {
    fn get_v1_unlock_height(&self) -> u32 {
        0
    }

    fn get_v2_unlock_height(&self) -> u32 {
        0
    }

    fn get_pox_3_activation_height(&self) -> u32 {
        0
    }

    fn get_burn_block_height(&self, sortition_id: &SortitionId) -> Option<u32> {
        self.store
            .block(&sortition_id.0)
            .ok()
            .flatten()
            .map(|i| i.ledger_height)
    }

    fn get_burn_start_height(&self) -> u32 {
        0
    }

    fn get_pox_prepare_length(&self) -> u32 {
        1
    }

    fn get_pox_reward_cycle_length(&self) -> u32 {
        1
    }

    fn get_pox_rejection_fraction(&self) -> u64 {
        0
    }

    fn get_burn_header_hash(
        &self,
        height: u32,
        sortition_id: &SortitionId,
    ) -> Option<BurnchainHeaderHash> {
        let anchor = self.store.block(&sortition_id.0).ok().flatten()?;
        self.ledger
            .ancestor(&anchor.ledger_hash, height)
            .map(BurnchainHeaderHash)
    }

    fn get_sortition_id_from_consensus_hash(&self, hash: &ConsensusHash) -> Option<SortitionId> {
        self.store
            .block_by_consensus_hash(&hash.0)
            .ok()
            .flatten()
            .map(|i| SortitionId(i.id))
    }

    fn get_stacks_epoch(&self, _height: u32) -> Option<StacksEpoch> {
        Some(epoch())
    }

    fn get_stacks_epoch_by_epoch_id(&self, epoch_id: &StacksEpochId) -> Option<StacksEpoch> {
        (*epoch_id == EPOCH).then(epoch)
    }

    fn get_ast_rules(&self, _height: u32) -> ASTRules {
        ASTRules::PrecheckSize
    }

    fn get_pox_payout_addrs(
        &self,
        _height: u32,
        _sortition_id: &SortitionId,
    ) -> Option<(Vec<TupleData>, u128)> {
        None
    }
}
