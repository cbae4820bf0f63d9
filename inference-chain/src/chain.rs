//! The inference chain: follows the ledger, accepts the blocks of sortition winners, runs
//! them through the Clarity VM, and settles each block's inferences in the first
//! descendant that brings the verifiers' votes on it to a quorum (its finality
//! certificate), within a window of [`VOTE_WINDOW`] blocks (see `window`).
//!
//! One block per tenure: the winner of the sortition at ledger block L produces one block
//! anchored at L, on the parent its commit named. A winner that signs more (equivocates)
//! has two stored, a third and later only when a later winning commit builds on it; such
//! a tenure is contested and counts as empty (the canonical tip as of L is below it)
//! unless a later tenure's block builds on one of its blocks. What a block at height h
//! executes, in order:
//! 1. settlement of the blocks of its vote window (its parent and up to
//!    [`VOTE_WINDOW`] − 1 blocks above; the blocks anchored up to [`COMMIT_PHASE`]
//!    ledger blocks after the voted one's carry commitments, and on up to
//!    [`COMMIT_PHASE_MAX`] while fewer than a majority of the set committed and the
//!    branch has a block at every ledger height since; votes are revealed in the blocks
//!    after) whose carried votes reach a majority of their
//!    verifier set with this block's: each inference is paid (90% node, 10% to the
//!    settled block's producer, rest back to the sender) or refunded with the node's bond
//!    slashed, reputation is recorded, and that block's producer earns the subsidy; a
//!    block whose window closes here without a majority has everything refunded and
//!    nobody earns anything;
//! 2. the peg-ins of its ledger branch newly six blocks deep (mints);
//! 3. `staking.begin-cycle` when its ledger anchor starts a new reward cycle;
//! 4. `node-registry.hold` for each node whose inferences it carries: the node cannot
//!    withdraw its bond before the last block of this block's vote window, so a rejected
//!    answer always finds the bond to slash;
//! 5. its VM transactions, each paying its fee to the producer (evidence of a producer
//!    that signed two blocks for one tenure burns that producer's node bond, once);
//! 6. the escrow of its inferences' max fees, each spending its sender's next nonce (the
//!    account nonce VM transactions use too), so no inference is charged twice.
//!
//! Every one of these must succeed (a contract call may return `(err ..)`); the state
//! root after them must be the header's. The VM keys the block's state by its execution
//! id (the header without state root and signature), so it can run before the root is
//! known.
//!
//! With a payload store, the text of the inferences a block settles is marked with the
//! block's ledger height and deleted six ledger blocks later.
//!
//! The canonical tip as of a ledger block is the block anchored at the nearest ledger
//! ancestor that has one; blocks on a losing ledger branch stay stored but are no longer
//! on any canonical chain, and neither is their state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use clarity::vm::types::{PrincipalData, SequenceData, StandardPrincipalData};
use fai_clarity::{BlockInfo, BlockOp, ClarityVm, Genesis, GenesisModel, Value, VmConfig};
use fai_ledger::Chainstate;
use fai_primitives::codec::{Decode, Encode, Reader};
use fai_primitives::{CodecError, Hash160, Hash256, Network, SecretKey, Signature};
use fai_storage::{KeyValueStore, WriteBatch};
use sha2::{Digest, Sha256};

mod window;
pub use window::{
    may_commit, unbroken_run, DueSettlement, WindowBlock, BUSY_BEHIND, COMMIT_PHASE,
    COMMIT_PHASE_MAX, VOTE_WINDOW,
};

use crate::block::{InferenceBlock, InferenceHeader};
use crate::payloads::PayloadStore;
use crate::quorum::{Outcome, Verdict, Vote, VoteCommit};
use crate::settlement::producer_subsidy;
use crate::sortition::{tenure_proof_matches, Bid};
use crate::tracker::{SortitionRecord, SortitionTracker};
use crate::types::Inference;
use crate::vmtx::{Evidence, SignedVmTx, VmPayload};

/// Why a block is refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("ledger: {0}")]
    Ledger(#[from] fai_ledger::ChainError),
    #[error("contract VM: {0}")]
    Vm(#[from] fai_clarity::ClarityError),
    #[error("invalid block: {0}")]
    Invalid(String),
    /// The block fails a check that depends on this node's view of the sortitions (the
    /// ledger branch it follows, the verifier sets of the inference blocks it has): a
    /// node on another branch, or missing an inference block, may see it valid. Not the
    /// sender's fault; it may be accepted later.
    #[error("not verifiable on this node's view yet: {0}")]
    Unverifiable(String),
}

fn invalid(msg: impl Into<String>) -> BlockError {
    BlockError::Invalid(msg.into())
}

fn unverifiable(msg: impl Into<String>) -> BlockError {
    BlockError::Unverifiable(msg.into())
}

/// What a chain needs to know.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub network: Network,
    pub vm: VmConfig,
    pub genesis: Genesis,
    /// Ledger blocks per reward cycle (the same as `genesis.cycle_length`).
    pub cycle_length: u32,
    /// The largest block, encoded ([`crate::block::MAX_BLOCK_BYTES`] on every network;
    /// tests lower it).
    pub max_block_bytes: usize,
    /// The models a regtest network's configuration approves at genesis besides its
    /// rules' own ([`ChainConfig::with_genesis_models`]), in the order of their ids: every
    /// field of each enters the genesis block's id, so that nodes listing other models,
    /// or the same files under other names, share no chain.
    pub configured_models: Vec<GenesisModel>,
}

/// A stored block and what its children need of it.
#[derive(Debug, Clone)]
pub struct BlockRecord {
    pub id: [u8; 32],
    /// The id its state is stored under in the VM.
    pub exec_id: [u8; 32],
    pub height: u32,
    pub anchor: Hash256,
    pub anchor_height: u32,
    /// Ledger height through which peg-ins are credited on this chain.
    pub pegged_through: u32,
    pub cycle: u32,
    pub producer: [u8; 20],
    /// None for the genesis block.
    pub block: Option<InferenceBlock>,
}

/// How many inference blocks after the audited one an audit's reveal may come; later,
/// it punishes nobody (and nodes need not look further down for its votes).
pub const AUDIT_WINDOW: usize = 64;

/// The most audit reveals one block may carry: each whose commitment exists costs a
/// tally of a block's votes (signature checks), so a block full of them must not be
/// what slows every node down.
pub const MAX_AUDITS_PER_BLOCK: usize = 16;

/// What an audit's reveal proves (see `InferenceChain::audit`).
struct Audit {
    commitment: Hash256,
    txid: Hash256,
    audited_height: u32,
    /// The ledger height the commitment was made at, when it was.
    committed_at: Option<u128>,
    offenders: Vec<Hash160>,
}

/// The column of accepted inference blocks: id -> record (see [`BlockRecord`]).
pub const INFERENCE_BLOCKS_COLUMN: &str = "inference_blocks";

/// Verdicts per call of the reputation contract's `record-results` (its list's bound).
pub const RECORD_RESULTS_MAX: usize = 1000;

/// How many blocks [`InferenceChain::abandoned_by`] walks down at most.
pub const MAX_ABANDONED_WALK: usize = 64;

/// How many blocks of one tenure are stored (an equivocating producer's siblings) unless
/// a later winning commit builds on one more.
pub const MAX_SIBLINGS: usize = 2;

/// How many ledger blocks after a tenure's anchor are searched for a winning commit that
/// builds on a sibling beyond [`MAX_SIBLINGS`].
pub const MAX_SIBLING_WALK: u32 = 64;

/// How many withdrawn blocks the chain keeps in memory (the oldest go first).
pub const MAX_RETIRED: usize = 256;

impl Encode for BlockRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.exec_id.encode_to(out);
        self.height.encode_to(out);
        self.anchor.encode_to(out);
        self.anchor_height.encode_to(out);
        self.pegged_through.encode_to(out);
        self.cycle.encode_to(out);
        self.producer.encode_to(out);
        match &self.block {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                b.encode_to(out);
            }
        }
    }
}

impl BlockRecord {
    /// Decodes a stored record (the value under its id in [`INFERENCE_BLOCKS_COLUMN`]).
    pub fn decode_with_id(id: [u8; 32], bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let rec = BlockRecord {
            id,
            exec_id: r.read_array()?,
            height: r.read_u32()?,
            anchor: Decode::decode_from(&mut r)?,
            anchor_height: r.read_u32()?,
            pegged_through: r.read_u32()?,
            cycle: r.read_u32()?,
            producer: r.read_array()?,
            block: match r.read_u8()? {
                0 => None,
                _ => Some(Decode::decode_from(&mut r)?),
            },
        };
        r.finish()?;
        Ok(rec)
    }
}

/// The account that holds inference fees between inclusion and settlement; nobody has
/// its key (the hash of a tag).
pub fn escrow_account() -> [u8; 20] {
    let h: [u8; 32] = Sha256::digest(b"fai-inference-escrow/v1").into();
    let mut out = [0u8; 20];
    out.copy_from_slice(h.get(..20).unwrap_or(&[0; 20]));
    out
}

/// The execution id of a header: its hash without the state root and signature.
pub fn execution_id(h: &InferenceHeader) -> [u8; 32] {
    let mut copy = h.clone();
    copy.state_root = [0; 32];
    copy.signature = Signature([0; 64]);
    let mut out = b"fai-inference-exec/v1".to_vec();
    out.extend_from_slice(&copy.id().0);
    Hash256::sha256d(&out).0
}

/// The standard principals of a Clarity list (nothing if `v` is not a list).
fn principals(v: Value) -> Vec<Hash160> {
    match v {
        Value::Sequence(SequenceData::List(list)) => list
            .data
            .iter()
            .filter_map(standard_hash)
            .map(Hash160)
            .collect(),
        _ => Vec::new(),
    }
}

fn standard_hash(v: &Value) -> Option<[u8; 20]> {
    match v {
        Value::Principal(PrincipalData::Standard(StandardPrincipalData(_, h))) => Some(*h),
        _ => None,
    }
}

/// The winning bid of `record` if `h` is the block it elected: the producer won, the
/// parent is the one the winning commit named, and the VRF proof proves the committed
/// seed. A mismatch is unverifiable, not invalid: on another reading of the sortition
/// (other verifier sets) the block may be the elected one.
fn elected(record: &SortitionRecord, h: &InferenceHeader) -> Result<Bid, BlockError> {
    let winner = record
        .sortition
        .winner
        .clone()
        .ok_or_else(|| unverifiable("no sortition winner at the anchor"))?;
    if h.producer.hash160() != winner.producer {
        return Err(unverifiable("the producer did not win the sortition"));
    }
    if h.parent != winner.parent {
        return Err(unverifiable(
            "the parent is not the one the winning commit named",
        ));
    }
    let proof = h
        .vrf_proof
        .ok_or_else(|| invalid("a tenure's block must carry its VRF proof"))?;
    if !tenure_proof_matches(&winner, &record.seed, &proof) {
        return Err(unverifiable(
            "the VRF proof does not prove the committed seed",
        ));
    }
    Ok(winner)
}

fn tuple_uint(v: &Value, name: &str) -> Option<u128> {
    match v {
        Value::Tuple(t) => match t.get(name).ok()? {
            Value::UInt(n) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

/// The inference chain on one database.
pub struct InferenceChain {
    kv: Arc<dyn KeyValueStore>,
    vm: ClarityVm,
    config: ChainConfig,
    tracker: SortitionTracker,
    blocks: HashMap<[u8; 32], BlockRecord>,
    /// The stored blocks of each tenure, by ledger anchor, in id order: one, or the
    /// siblings of an equivocating producer (the first is the anchor's block).
    anchored: HashMap<Hash256, Vec<[u8; 32]>>,
    /// The anchors of `anchored` by ledger height, so that the tip as of a ledger block
    /// is found without walking every ledger block down to the last anchored one (with a
    /// long ledger history and few tenure blocks, that walk grew with the history).
    anchor_heights: BTreeMap<u32, Vec<Hash256>>,
    /// Blocks withdrawn because the sortition of their anchor, read again, no longer
    /// elects them (see [`InferenceChain::on_ledger_block`]): deleted from disk, kept in
    /// memory (at most [`MAX_RETIRED`]) so that what they carried can go back to the pools.
    retired: HashMap<[u8; 32], BlockRecord>,
    genesis_id: [u8; 32],
    payloads: Option<PayloadStore>,
}

impl InferenceChain {
    /// Keeps the text of inferences in `store` and reclaims it once settled and six
    /// ledger blocks deep.
    pub fn with_payloads(mut self, store: PayloadStore) -> Self {
        self.payloads = Some(store);
        self
    }

    pub fn payloads(&self) -> Option<&PayloadStore> {
        self.payloads.as_ref()
    }

    /// Opens the chain: builds the genesis state anchored at the ledger's genesis the
    /// first time, and loads the blocks accepted before. The sortition records are not
    /// stored: feed the ledger's blocks to [`InferenceChain::on_ledger_block`] (the tip is
    /// enough; its unread ancestors are read first).
    pub fn open(
        kv: Arc<dyn KeyValueStore>,
        config: ChainConfig,
        ledger: &Chainstate,
    ) -> Result<Self, BlockError> {
        let vm = ClarityVm::new(kv.clone(), config.vm.clone());
        let mut genesis_hash = Sha256::new()
            .chain_update(b"fai-inference-genesis/v1")
            .chain_update(config.network.to_string().as_bytes());
        for m in &config.configured_models {
            genesis_hash.update(m.id);
            for text in [&m.name, &m.arch, &m.method] {
                genesis_hash.update(u64::try_from(text.len()).unwrap_or(u64::MAX).to_le_bytes());
                genesis_hash.update(text.as_bytes());
            }
            genesis_hash.update(m.context_length.to_le_bytes());
        }
        let genesis_id: [u8; 32] = genesis_hash.finalize().into();
        let anchor = ledger
            .hash_at(0)
            .ok_or_else(|| invalid("the ledger has no genesis"))?;
        if vm.store().block(&genesis_id)?.is_none() {
            // Blocks stored without this genesis belong to another one: the network's
            // configured models changed under a data directory that holds a chain.
            let stored = kv
                .scan(INFERENCE_BLOCKS_COLUMN)
                .map_err(|e| invalid(format!("block store: {e}")))?;
            if !stored.is_empty() {
                return Err(invalid(
                    "the stored inference chain has another genesis (were the models approved at genesis changed?)",
                ));
            }
            let info = BlockInfo {
                id: genesis_id,
                parent: genesis_id,
                height: 0,
                ledger_hash: anchor.0,
                ledger_height: 0,
                time: 0,
                vrf_seed: [0; 32],
                producer: [0; 20],
                commit_spent: 0,
                commit_total: 0,
                reward: 0,
            };
            vm.genesis(info, ledger, &config.genesis, &[])?;
        }
        let genesis = BlockRecord {
            id: genesis_id,
            exec_id: genesis_id,
            height: 0,
            anchor,
            anchor_height: 0,
            pegged_through: 0,
            cycle: u32::MAX,
            producer: [0; 20],
            block: None,
        };
        let mut blocks = HashMap::new();
        blocks.insert(genesis_id, genesis);
        let mut anchored: HashMap<Hash256, Vec<[u8; 32]>> = HashMap::new();
        let mut anchor_heights: BTreeMap<u32, Vec<Hash256>> = BTreeMap::new();
        for (key, value) in kv
            .scan(INFERENCE_BLOCKS_COLUMN)
            .map_err(|e| invalid(format!("block store: {e}")))?
        {
            let id: [u8; 32] = key
                .as_slice()
                .try_into()
                .map_err(|_| invalid("block store: a key of the wrong length"))?;
            let rec = BlockRecord::decode_with_id(id, &value)
                .map_err(|e| invalid(format!("block store: block {}: {e}", hex::encode(id))))?;
            let ids = anchored.entry(rec.anchor).or_default();
            ids.push(id);
            ids.sort_unstable();
            index_anchor(&mut anchor_heights, rec.anchor_height, rec.anchor);
            blocks.insert(id, rec);
        }
        Ok(InferenceChain {
            kv,
            vm,
            tracker: SortitionTracker::new(&config.network.to_string()),
            config,
            blocks,
            anchored,
            anchor_heights,
            retired: HashMap::new(),
            genesis_id,
            payloads: None,
        })
    }

    pub fn vm(&self) -> &ClarityVm {
        &self.vm
    }

    pub fn tracker(&self) -> &SortitionTracker {
        &self.tracker
    }

    pub fn genesis_id(&self) -> [u8; 32] {
        self.genesis_id
    }

    pub fn block(&self, id: &[u8; 32]) -> Option<&BlockRecord> {
        self.blocks.get(id)
    }

    /// The block of the tenure won at ledger block `anchor`; none while it has none, or
    /// when its producer equivocated (two or more stored): such a tenure is contested and
    /// counts as if it had produced nothing, so that every node that has seen any two of
    /// its blocks, whichever, agrees (a later tenure's block built on one of them then
    /// decides the chain).
    fn at_anchor(&self, anchor: &Hash256) -> Option<&[u8; 32]> {
        match self.anchored.get(anchor).map(Vec::as_slice) {
            Some([only]) => Some(only),
            _ => None,
        }
    }

    /// The stored blocks of the tenure won at ledger block `anchor`: more than one when
    /// its producer signed several (each is evidence against it).
    pub fn tenure_blocks(&self, anchor: &Hash256) -> &[[u8; 32]] {
        self.anchored.get(anchor).map_or(&[], Vec::as_slice)
    }

    /// Whether the winning commit of a ledger block on the active chain within
    /// [`MAX_SIBLING_WALK`] blocks after `anchor_height` names block `id` as its parent.
    fn named_by_a_later_winner(
        &self,
        ledger: &Chainstate,
        anchor_height: u32,
        id: &[u8; 32],
    ) -> bool {
        let last = anchor_height
            .saturating_add(MAX_SIBLING_WALK)
            .min(ledger.height());
        (anchor_height.saturating_add(1)..=last)
            .filter_map(|h| ledger.hash_at(h))
            .filter_map(|hash| self.tracker.record(&hash))
            .any(|r| r.sortition.winner.as_ref().is_some_and(|w| w.parent == *id))
    }

    /// A stored block, or one withdrawn since start-up (see [`InferenceChain::retired`]).
    fn any_block(&self, id: &[u8; 32]) -> Option<&BlockRecord> {
        self.blocks.get(id).or_else(|| self.retired.get(id))
    }

    /// Whether block `id` was withdrawn since start-up: a later reading of its anchor's
    /// sortition did not elect it.
    pub fn retired(&self, id: &[u8; 32]) -> bool {
        self.retired.contains_key(id)
    }

    fn cycle(&self, ledger_height: u32) -> u32 {
        ledger_height
            .checked_div(self.config.cycle_length)
            .unwrap_or(0)
    }

    /// The canonical tip as of ledger block `ledger_hash`.
    pub fn tip_as_of(&self, ledger: &Chainstate, ledger_hash: &Hash256) -> &BlockRecord {
        let genesis = self.blocks.get(&self.genesis_id);
        let Some(height) = ledger.entry(ledger_hash).map(|e| e.height) else {
            return genesis
                .or_else(|| self.blocks.values().next())
                .unwrap_or_else(|| unreachable_record());
        };
        // Only the heights where some branch has a tenure block can hold the answer.
        for (h, anchors) in self.anchor_heights.range(..=height).rev() {
            let Some(hash) = ledger.ancestor(ledger_hash, *h) else {
                continue;
            };
            if !anchors.contains(&hash) {
                continue;
            }
            if let Some(rec) = self.at_anchor(&hash).and_then(|id| self.blocks.get(id)) {
                return rec;
            }
        }
        genesis.unwrap_or_else(|| unreachable_record())
    }

    /// The canonical tip as of the ledger's active tip.
    pub fn tip(&self, ledger: &Chainstate) -> &BlockRecord {
        self.tip_as_of(ledger, &ledger.tip_hash())
    }

    /// The blocks of the canonical branch that a block built on `parent` leaves out: from
    /// the tip down to the last block `parent`'s branch shares, newest first; empty when
    /// `parent` is the tip or one of its descendants. A producer whose commit named an
    /// older parent than the tip (it committed before the last tenure block arrived)
    /// puts their transactions back in its pools, so that what they carried is not lost
    /// with them. The walk stops after [`MAX_ABANDONED_WALK`] steps.
    pub fn abandoned_by(&self, ledger: &Chainstate, parent: &[u8; 32]) -> Vec<&InferenceBlock> {
        self.left_behind(&self.tip(ledger).id, parent)
    }

    /// The blocks of the branch ending at `old` that the branch ending at `new` does not
    /// hold: from `old` down to the last block both share, newest first; empty when `new`
    /// is `old` or one of its descendants (or either is unknown). The walk stops after
    /// [`MAX_ABANDONED_WALK`] steps.
    pub fn left_behind(&self, old: &[u8; 32], new: &[u8; 32]) -> Vec<&InferenceBlock> {
        self.fork_sides(old, new).0
    }

    /// The two sides of the fork between the branches ending at `old` and `new`: the
    /// blocks each holds that the other does not, newest first. After the canonical tip
    /// moves from `old` to `new` (a reorganisation of either layer), what the first side
    /// carried and the second did not goes back to the pools. The walk stops after
    /// [`MAX_ABANDONED_WALK`] steps.
    pub fn fork_sides(
        &self,
        old: &[u8; 32],
        new: &[u8; 32],
    ) -> (Vec<&InferenceBlock>, Vec<&InferenceBlock>) {
        let (mut left_out, mut right_out) = (Vec::new(), Vec::new());
        let (Some(mut left), Some(mut right)) = (self.any_block(old), self.any_block(new)) else {
            return (left_out, right_out);
        };
        for _ in 0..MAX_ABANDONED_WALK {
            if left.id == right.id {
                break;
            }
            // Step down the higher side (the old one on a tie, then the new).
            let step_left = left.height >= right.height;
            let side = if step_left { left } else { right };
            let Some(parent_id) = side.block.as_ref().map(|b| b.header.parent) else {
                break; // the genesis: no common block
            };
            let Some(next) = self.any_block(&parent_id) else {
                break;
            };
            if step_left {
                left_out.extend(left.block.as_ref());
                left = next;
            } else {
                right_out.extend(right.block.as_ref());
                right = next;
            }
        }
        (left_out, right_out)
    }

    /// The verifier set of `cycle` in the state of block `at`; empty if not recorded.
    pub fn verifier_set(&self, ledger: &Chainstate, at: &BlockRecord, cycle: u32) -> Vec<Hash160> {
        let cycle = [Value::UInt(u128::from(cycle))];
        match self.read_staking(ledger, at, "get-verifier-set", &cycle) {
            Some(Value::Response(r)) if r.committed => principals(*r.data),
            _ => Vec::new(),
        }
    }

    /// The staking contract's leaders (the largest stakes, the next cycle's set as it
    /// stands) in the state of block `at`.
    fn staking_leaders(&self, ledger: &Chainstate, at: &BlockRecord) -> Vec<Hash160> {
        self.read_staking(ledger, at, "get-leaders", &[])
            .map(principals)
            .unwrap_or_default()
    }

    /// A read-only function of the staking contract, in the state of block `at`.
    fn read_staking(
        &self,
        ledger: &Chainstate,
        at: &BlockRecord,
        function: &str,
        args: &[Value],
    ) -> Option<Value> {
        self.vm
            .call_read_only(
                &at.exec_id,
                ledger,
                [0; 20],
                [0; 20],
                "staking",
                function,
                args,
            )
            .ok()
            .map(|(v, _)| v)
    }

    /// The sealing key `who` published in the node registry, in the state of block `at`.
    pub fn sealing_key(
        &self,
        ledger: &Chainstate,
        at: &BlockRecord,
        who: Hash160,
    ) -> Option<fai_primitives::seal::SealingKey> {
        let result = self.vm.call_read_only(
            &at.exec_id,
            ledger,
            [0; 20],
            [0; 20],
            "node-registry",
            "get-sealing-key",
            &[self.vm.principal(who.0).into()],
        );
        match result {
            Ok((Value::Optional(o), _)) => match o.data.as_deref() {
                Some(Value::Sequence(SequenceData::Buffer(b))) => {
                    <[u8; 32]>::try_from(b.data.as_slice())
                        .ok()
                        .map(fai_primitives::seal::SealingKey)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whom a text served on tip `at` is sealed to: the verifier set of its cycle and the
    /// staking leaders as they stand (the next cycle's set, recorded only when its first
    /// block runs: a block anchored past the cycle's end is voted on by it), each member
    /// with the sealing key it published; a member without one cannot be sealed to (it
    /// abstains on the inference).
    pub fn sealing_recipients(
        &self,
        ledger: &Chainstate,
        at: &BlockRecord,
    ) -> fai_primitives::seal::Recipients {
        let mut members = self.verifier_set(ledger, at, at.cycle);
        for next in self.staking_leaders(ledger, at) {
            if !members.contains(&next) {
                members.push(next);
            }
        }
        members
            .into_iter()
            .filter_map(|m| self.sealing_key(ledger, at, m).map(|k| (m, k)))
            .collect()
    }

    /// Reads ledger block `hash` of the active chain (and its unread ancestors) for the
    /// sortitions ([`InferenceChain::read_ledger_block`]), then reclaims the payload
    /// store up to its height.
    pub fn on_ledger_block(
        &mut self,
        ledger: &Chainstate,
        hash: &Hash256,
    ) -> Result<(), BlockError> {
        self.read_ledger_block(ledger, hash)?;
        if let (Some(store), Some(entry)) = (&self.payloads, ledger.entry(hash)) {
            let mut walk = CanonicalWalk::from_tip(self, ledger);
            store
                .reclaim(entry.height, |block| walk.holds(block))
                .map_err(|e| invalid(format!("payload store: {e}")))?;
        }
        Ok(())
    }

    /// Reads stored ledger block `hash` (and its unread ancestors) for the sortitions,
    /// whether or not it is on the active chain: a block beside the tip (found at the
    /// same time as the tip's) has its sortition read too, so that a tenure won there is
    /// produced, and its block accepted, before the ledger learns which of the two wins.
    pub fn read_ledger_block(
        &mut self,
        ledger: &Chainstate,
        hash: &Hash256,
    ) -> Result<(), BlockError> {
        let mut pending = Vec::new();
        let mut at = *hash;
        while self.tracker.record(&at).is_none() {
            let entry = ledger
                .entry(&at)
                .ok_or_else(|| invalid(format!("unknown ledger block {at}")))?;
            pending.push(at);
            if entry.height == 0 {
                break;
            }
            at = entry.header.prev;
        }
        for hash in pending.into_iter().rev() {
            let Some(entry) = ledger.entry(&hash) else {
                continue;
            };
            let (height, parent) = (entry.height, entry.header.prev);
            let set = if height == 0 {
                Vec::new()
            } else {
                self.commit_set(ledger, &parent)
            };
            let record = self.tracker.connect(ledger, &hash, &|_| set.clone())?;
            // A block accepted on an earlier reading of this sortition (made before an
            // inference block that sets the commits' verifier set arrived) that this
            // reading does not elect is withdrawn with its descendants, so that every
            // node keeps the same block for the anchor whatever order blocks came in.
            // Siblings share their producer and parent: one checked speaks for all.
            let stale = self
                .anchored
                .get(&hash)
                .and_then(|ids| ids.first())
                .and_then(|id| self.blocks.get(id))
                .and_then(|rec| rec.block.as_ref())
                .is_some_and(|b| elected(record, &b.header).is_err());
            if stale {
                for id in self.anchored.get(&hash).cloned().unwrap_or_default() {
                    self.retire(&id)?;
                }
            }
        }
        Ok(())
    }

    /// Withdraws block `id` and every stored descendant: out of the canonical index by
    /// anchor and off the disk, kept in memory among the retired. Their VM state stays,
    /// as a losing branch's does, unreachable. Scans the stored blocks (a withdrawal
    /// takes a sortition read again with another verifier set: rare).
    fn retire(&mut self, id: &[u8; 32]) -> Result<(), BlockError> {
        let Some(first) = self.blocks.get(id).map(|r| r.height) else {
            return Ok(());
        };
        let mut later: Vec<(u32, [u8; 32], [u8; 32])> = self
            .blocks
            .values()
            .filter(|r| r.height > first)
            .filter_map(|r| r.block.as_ref().map(|b| (r.height, r.id, b.header.parent)))
            .collect();
        later.sort_unstable();
        let mut gone: HashSet<[u8; 32]> = HashSet::from([*id]);
        for (_, child, parent) in later {
            if gone.contains(&parent) {
                gone.insert(child);
            }
        }
        let mut batch = WriteBatch::new();
        for id in &gone {
            batch.delete(INFERENCE_BLOCKS_COLUMN, id.to_vec());
        }
        self.kv
            .write(batch)
            .map_err(|e| invalid(format!("block store: {e}")))?;
        for id in gone {
            if let Some(rec) = self.blocks.remove(&id) {
                if let Some(ids) = self.anchored.get_mut(&rec.anchor) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        self.anchored.remove(&rec.anchor);
                        if let Some(at) = self.anchor_heights.get_mut(&rec.anchor_height) {
                            at.retain(|a| *a != rec.anchor);
                            if at.is_empty() {
                                self.anchor_heights.remove(&rec.anchor_height);
                            }
                        }
                    }
                }
                self.retired.insert(id, rec);
            }
        }
        if self.retired.len() > MAX_RETIRED {
            let mut by_age: Vec<(u32, [u8; 32])> =
                self.retired.values().map(|r| (r.height, r.id)).collect();
            by_age.sort_unstable();
            let excess = self.retired.len().saturating_sub(MAX_RETIRED);
            for (_, id) in by_age.into_iter().take(excess) {
                self.retired.remove(&id);
            }
        }
        Ok(())
    }

    /// The addresses a commit in the ledger block after `parent` must pay, equally: the
    /// verifier set of that block's cycle as recorded at the canonical tip `parent` sees.
    /// Empty (the bid is burnt) while the cycle has no recorded set, as in its first block.
    pub fn commit_set(&self, ledger: &Chainstate, parent: &Hash256) -> Vec<Hash160> {
        let Some(height) = ledger.entry(parent).map(|e| e.height.saturating_add(1)) else {
            return Vec::new();
        };
        let tip = self.tip_as_of(ledger, parent);
        self.verifier_set(ledger, tip, self.cycle(height))
    }

    /// The seed a commit in the ledger block after `ledger_hash` must prove (its VRF input).
    pub fn seed_after(&self, ledger_hash: &Hash256) -> Option<[u8; 32]> {
        self.tracker
            .record(ledger_hash)
            .map(|r| r.sortition.next_seed)
    }

    fn read(
        &self,
        ledger: &Chainstate,
        at: &BlockRecord,
        contract: &str,
        function: &str,
        args: &[Value],
    ) -> Result<Value, BlockError> {
        Ok(self
            .vm
            .call_read_only(
                &at.exec_id,
                ledger,
                [0; 20],
                [0; 20],
                contract,
                function,
                args,
            )?
            .0)
    }

    /// A block larger than the consensus limit is invalid, however valid its contents:
    /// it could not reach every node.
    pub fn check_size(&self, block: &InferenceBlock) -> Result<(), BlockError> {
        let size = block.to_bytes().len();
        if size > self.config.max_block_bytes {
            return Err(invalid(format!(
                "the block is {size} bytes; the limit is {}",
                self.config.max_block_bytes
            )));
        }
        Ok(())
    }

    /// The largest block, encoded.
    pub fn max_block_bytes(&self) -> usize {
        self.config.max_block_bytes
    }

    /// Checks a block against the sortition, its parent and its contents, runs it, and
    /// stores it. Returns its id.
    pub fn accept(
        &mut self,
        ledger: &Chainstate,
        block: InferenceBlock,
    ) -> Result<[u8; 32], BlockError> {
        let h = &block.header;
        let id = h.id().0;
        if self.blocks.contains_key(&id) {
            return Ok(id);
        }
        self.check_size(&block)?;
        if !h.signature_valid() {
            return Err(invalid("the producer's signature does not verify"));
        }
        if !block.roots_match() {
            return Err(invalid("the header's roots do not match the body"));
        }
        let anchor = Hash256(h.ledger_anchor);
        // The sortition record: what this node read of the anchor with the verifier sets
        // it knows. Checks against it are unverifiable, not invalid, when they fail.
        let record = self
            .tracker
            .record(&anchor)
            .ok_or_else(|| unverifiable("the ledger anchor is not on this node's branch"))?
            .clone();
        if record.ledger_height != h.ledger_height {
            return Err(invalid("ledger height differs from the anchor's"));
        }
        let winner = elected(&record, h)?;
        // A second block for the tenure (its producer equivocated) is stored beside the
        // first, so that nodes that got them in either order hold the same blocks; a
        // third and later only when a later winning commit builds on it.
        let siblings = self.anchored.get(&anchor).map_or(0, Vec::len);
        if siblings >= MAX_SIBLINGS && !self.named_by_a_later_winner(ledger, h.ledger_height, &id) {
            return Err(unverifiable(format!(
                "the tenure has {siblings} blocks already and no later winner builds on this one"
            )));
        }
        let parent = self
            .blocks
            .get(&h.parent)
            .ok_or_else(|| invalid("unknown parent block"))?
            .clone();
        if parent.anchor_height >= h.ledger_height
            || ledger.ancestor(&anchor, parent.anchor_height) != Some(parent.anchor)
        {
            return Err(invalid("the parent is not on the anchor's ledger branch"));
        }
        if Some(h.height) != parent.height.checked_add(1) {
            return Err(invalid("height is not the parent's plus one"));
        }
        self.check_inferences(ledger, &parent, h.height, &block.inferences)?;
        for tx in &block.vm_txs {
            if !tx.signature_valid() || tx.chain_id != self.config.network.chain_id() {
                return Err(invalid("a VM transaction's signature or chain id is wrong"));
            }
        }
        let exec_id = execution_id(h);
        let ops = self.block_ops(ledger, &parent, &block, anchor)?;
        // Run in memory; written only once every check passed (a refused variant of a
        // block leaves nothing on disk).
        let executed = self.execute(
            ledger,
            &parent,
            h,
            &winner,
            record.sortition.total,
            &ops.ops,
        )?;
        let result = &executed.result;
        if let Some((i, e)) = result
            .outcomes
            .iter()
            .enumerate()
            .find_map(|(i, o)| o.as_ref().err().map(|e| (i, e)))
        {
            return Err(invalid(format!("operation {i} of the block failed: {e}")));
        }
        if result.state_root != h.state_root {
            return Err(invalid("the state root differs from the header's"));
        }
        executed.commit()?;
        if let Some(store) = &self.payloads {
            store
                .mark_final(&ops.settled, h.ledger_height, &id)
                .map_err(|e| invalid(format!("payload store: {e}")))?;
        }
        let rec_anchor_height = h.ledger_height;
        let rec = BlockRecord {
            id,
            exec_id,
            height: h.height,
            anchor,
            anchor_height: h.ledger_height,
            pegged_through: ops.pegged_through,
            cycle: self.cycle(h.ledger_height),
            producer: winner.producer.0,
            block: Some(block),
        };
        let mut batch = WriteBatch::new();
        batch.put(INFERENCE_BLOCKS_COLUMN, id.to_vec(), rec.to_bytes());
        self.kv
            .write(batch)
            .map_err(|e| invalid(format!("block store: {e}")))?;
        let ids = self.anchored.entry(anchor).or_default();
        ids.push(id);
        ids.sort_unstable();
        index_anchor(&mut self.anchor_heights, rec_anchor_height, anchor);
        self.retired.remove(&id);
        self.blocks.insert(id, rec);
        let anchor_height = rec_anchor_height;
        self.reread_sortitions_after(ledger, anchor_height)?;
        Ok(id)
    }

    /// After a block anchored at ledger height `anchor_height` is accepted: the ledger
    /// blocks after it on the active chain were read with the verifier sets known then
    /// (a syncing node reads the ledger before the inference blocks). Where a set differs
    /// from the one the chain gives now, the records from there on are read again.
    fn reread_sortitions_after(
        &mut self,
        ledger: &Chainstate,
        anchor_height: u32,
    ) -> Result<(), BlockError> {
        let mut sets: HashMap<([u8; 32], u32), Vec<Hash160>> = HashMap::new();
        let Some(first) = anchor_height.checked_add(1) else {
            return Ok(());
        };
        let mut stale = None;
        // The canonical tip as of each parent, walking up: it changes where a block is
        // anchored (only ledger blocks on the active chain are looked at).
        let Some(mut tip) = ledger
            .hash_at(anchor_height)
            .map(|h| self.tip_as_of(ledger, &h))
        else {
            return Ok(());
        };
        for height in first..=ledger.height() {
            let (Some(hash), Some(parent)) = (
                ledger.hash_at(height),
                ledger.hash_at(height.saturating_sub(1)),
            ) else {
                break;
            };
            let Some(record) = self.tracker.record(&hash) else {
                break;
            };
            if let Some(rec) = self.at_anchor(&parent).and_then(|id| self.blocks.get(id)) {
                tip = rec;
            }
            let cycle = self.cycle(height);
            let set = sets
                .entry((tip.exec_id, cycle))
                .or_insert_with(|| self.verifier_set(ledger, tip, cycle));
            if *set != record.commit_set {
                stale = Some(height);
                break;
            }
        }
        if let Some(height) = stale {
            self.tracker.forget_from(height);
            self.on_ledger_block(ledger, &ledger.tip_hash())?;
        }
        Ok(())
    }

    /// Checks a block's inferences against its parent's state. Whether a model is
    /// approved and whether a node serves it are read once per model and per node and
    /// model (each read runs a contract, which the VM loads anew every time: a block of
    /// a thousand inferences from two nodes read them two thousand times before).
    fn check_inferences(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        height: u32,
        list: &[Inference],
    ) -> Result<(), BlockError> {
        let mut seen = HashSet::new();
        let mut approved: HashMap<[u8; 32], bool> = HashMap::new();
        let mut serving: HashMap<([u8; 20], [u8; 32]), bool> = HashMap::new();
        for inf in list {
            let txid = inf.stub.txid();
            if !seen.insert(txid) {
                return Err(invalid("an inference appears twice"));
            }
            let s = &inf.stub;
            if !s.signature_valid() || !inf.receipt.signature_valid() || inf.receipt.tx != txid {
                return Err(invalid("an inference's signatures do not verify"));
            }
            if s.chain_id != self.config.network.chain_id() || s.expiry < height {
                return Err(invalid("an inference is for another chain or expired"));
            }
            if inf.receipt.tokens > s.sampling.max_tokens {
                return Err(invalid("a receipt claims more tokens than allowed"));
            }
            let model = || Value::buff_from(s.model.to_vec()).map_err(|e| invalid(e.to_string()));
            let is_approved = match approved.get(&s.model) {
                Some(known) => *known,
                None => {
                    let read =
                        self.read(ledger, parent, "model-registry", "is-approved", &[model()?])?
                            == Value::Bool(true);
                    approved.insert(s.model, read);
                    read
                }
            };
            if !is_approved {
                return Err(invalid("an inference names a model that is not approved"));
            }
            let node = inf.receipt.node.hash160().0;
            let serves = match serving.get(&(node, s.model)) {
                Some(known) => *known,
                None => {
                    let who: Value = self.vm.principal(node).into();
                    let read =
                        self.read(ledger, parent, "node-registry", "serves", &[who, model()?])?
                            == Value::Bool(true);
                    serving.insert((node, s.model), read);
                    read
                }
            };
            if !serves {
                return Err(invalid("an inference's node does not serve its model"));
            }
        }
        Ok(())
    }

    /// Runs a block's operations in the VM on top of `parent`, keyed by the header's
    /// execution id, without writing them: the caller commits the block once it is
    /// valid.
    fn execute(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        header: &InferenceHeader,
        winner: &crate::sortition::Bid,
        commit_total: u64,
        ops: &[BlockOp],
    ) -> Result<fai_clarity::ExecutedBlock, BlockError> {
        let anchor = Hash256(header.ledger_anchor);
        let info = BlockInfo {
            id: execution_id(header),
            parent: parent.exec_id,
            height: header.height,
            ledger_hash: anchor.0,
            ledger_height: header.ledger_height,
            time: ledger
                .entry(&anchor)
                .map(|e| u64::from(e.header.time))
                .unwrap_or(0),
            vrf_seed: winner.seed,
            producer: winner.producer.0,
            commit_spent: winner.amount,
            commit_total,
            reward: producer_subsidy(header.ledger_height).units(),
        };
        Ok(self.vm.run_block(info, ledger, ops)?)
    }

    /// The VM operations of a block (see the module documentation).
    fn block_ops(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        block: &InferenceBlock,
        anchor: Hash256,
    ) -> Result<BlockOps, BlockError> {
        let escrow = escrow_account();
        let mut ops = Vec::new();
        let mut settled = Vec::new();
        let system = |contract: &str, function: &str, args: Vec<Value>| BlockOp::System {
            contract: contract.into(),
            function: function.into(),
            args,
        };
        // 1. Settlement of the blocks of the window whose votes reach a quorum here, or
        // whose window closes here without one.
        let window = self.vote_window(ledger, parent, block.header.ledger_height, &anchor);
        for due in Self::due_settlements(&window, &block.commits, &block.votes)? {
            let Some(rec) = window
                .iter()
                .find(|w| w.rec.id == due.rec_id)
                .map(|w| w.rec)
            else {
                continue;
            };
            let Some(pb) = &rec.block else {
                continue;
            };
            let (is_final, list) = self.settlements(ledger, rec, &due.votes)?;
            // The verdicts for the reputation contract, recorded in one call per
            // RECORD_RESULTS_MAX after the payments.
            let mut verdicts: Vec<Value> = Vec::new();
            for (inf, (outcome, s)) in pb.inferences.iter().zip(&list) {
                settled.push(inf.stub.txid());
                let sender = inf.stub.sender.hash160().0;
                let node = inf.receipt.node.hash160().0;
                // Not final, or nobody decided: the max fee goes back, nothing else.
                if !is_final || *outcome == Outcome::Undecided {
                    ops.push(BlockOp::Move {
                        from: escrow,
                        to: sender,
                        amount: u128::from(s.refund),
                    });
                    continue;
                }
                let node_value: Value = self.vm.principal(node).into();
                for (to, amount) in [
                    (node, s.node),
                    (rec.producer, s.producer),
                    (sender, s.refund),
                ] {
                    if amount > 0 {
                        ops.push(BlockOp::Move {
                            from: escrow,
                            to,
                            amount: u128::from(amount),
                        });
                    }
                }
                if s.slash > 0 {
                    ops.push(system(
                        "node-registry",
                        "slash",
                        vec![node_value.clone(), Value::UInt(u128::from(s.slash))],
                    ));
                }
                let txid = Value::buff_from(inf.stub.txid().0.to_vec())
                    .map_err(|e| invalid(e.to_string()))?;
                let field = |name: &str, value: Value| {
                    clarity::vm::ClarityName::try_from(name.to_string())
                        .map(|n| (n, value))
                        .map_err(|e| invalid(e.to_string()))
                };
                let tuple = clarity::vm::types::TupleData::from_data(vec![
                    field("tx", txid)?,
                    field("sender", self.vm.principal(sender).into())?,
                    field("node", node_value)?,
                    field("accepted", Value::Bool(*outcome == Outcome::Accepted))?,
                ])
                .map_err(|e| invalid(e.to_string()))?;
                verdicts.push(Value::from(tuple));
            }
            for chunk in verdicts.chunks(RECORD_RESULTS_MAX) {
                let list = Value::list_from(chunk.to_vec()).map_err(|e| invalid(e.to_string()))?;
                ops.push(system("reputation", "record-results", vec![list]));
            }
            if is_final {
                ops.push(BlockOp::Mint {
                    to: rec.producer,
                    amount: u128::from(producer_subsidy(rec.anchor_height).units()),
                });
            }
        }
        // 2. Peg-ins newly six blocks deep on this branch.
        let (pegged_through, peg_ins) =
            self.tracker
                .confirmed_peg_ins(ledger, &anchor, parent.pegged_through);
        for (to, amount) in peg_ins {
            ops.push(BlockOp::Mint {
                to: to.0,
                amount: u128::from(amount),
            });
        }
        // 3. A new reward cycle records its verifier set.
        let cycle = self.cycle(block.header.ledger_height);
        if cycle != parent.cycle {
            ops.push(system(
                "staking",
                "begin-cycle",
                vec![Value::UInt(u128::from(cycle))],
            ));
        }
        // 4. The bonds of the nodes whose inferences this block carries stay until its
        // vote window closes, before any transaction could withdraw one.
        let held_until = block
            .header
            .height
            .checked_add(VOTE_WINDOW)
            .ok_or_else(|| invalid("the block height overflows"))?;
        let mut holding = HashSet::new();
        for inf in &block.inferences {
            let node = inf.receipt.node.hash160().0;
            if holding.insert(node) {
                ops.push(system(
                    "node-registry",
                    "hold",
                    vec![
                        self.vm.principal(node).into(),
                        Value::UInt(u128::from(held_until)),
                    ],
                ));
            }
        }
        // 5. VM transactions and their fees.
        let audits = block.vm_txs.iter().filter(|tx| tx.reveals_audit()).count();
        if audits > MAX_AUDITS_PER_BLOCK {
            return Err(invalid(format!(
                "{audits} audit reveals; a block carries at most {MAX_AUDITS_PER_BLOCK}"
            )));
        }
        let producer = block.header.producer.hash160().0;
        for tx in &block.vm_txs {
            if let VmPayload::Evidence(evidence) = &tx.payload {
                ops.extend(self.evidence_ops(ledger, parent, tx, evidence, producer)?);
                continue;
            }
            let vm_tx = tx.to_vm().map_err(|e| invalid(e.to_string()))?;
            // A producer's own transaction pays its fee to itself: nothing moves.
            if tx.fee.units() > 0 && vm_tx.sender != producer {
                ops.push(BlockOp::Move {
                    from: vm_tx.sender,
                    to: producer,
                    amount: u128::from(tx.fee.units()),
                });
            }
            ops.push(BlockOp::Tx(vm_tx));
        }
        // 6. Escrow of this block's inference fees.
        for inf in &block.inferences {
            ops.push(BlockOp::Escrow {
                from: inf.stub.sender.hash160().0,
                to: escrow,
                amount: u128::from(inf.stub.max_fee.units()),
                nonce: inf.stub.nonce,
            });
        }
        Ok(BlockOps {
            ops,
            pegged_through,
            settled,
        })
    }

    /// The operations of a transaction carrying evidence: its fee to the producer, then
    /// the punishment, which spends the reporter's nonce. Evidence that does not hold
    /// makes the block invalid.
    fn evidence_ops(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        tx: &SignedVmTx,
        evidence: &Evidence,
        producer: [u8; 20],
    ) -> Result<Vec<BlockOp>, BlockError> {
        evidence
            .check()
            .map_err(|e| invalid(format!("evidence: {e}")))?;
        let reporter = tx.sender.hash160().0;
        let mut ops = Vec::new();
        if tx.fee.units() > 0 && reporter != producer {
            ops.push(BlockOp::Move {
                from: reporter,
                to: producer,
                amount: u128::from(tx.fee.units()),
            });
        }
        let (contract, function, args) = match evidence {
            Evidence::TenureEquivocation { .. } => {
                let (offender, anchor) = evidence
                    .equivocation()
                    .map_err(|e| invalid(format!("evidence: {e}")))?;
                let anchor =
                    Value::buff_from(anchor.0.to_vec()).map_err(|e| invalid(e.to_string()))?;
                (
                    "node-registry",
                    "slash-equivocation",
                    vec![self.vm.principal(offender.0).into(), anchor],
                )
            }
            Evidence::Audit { block, index, salt } => {
                let audit = self.audit(ledger, parent, block, *index, salt, &Hash160(reporter));
                let commitment = Value::buff_from(audit.commitment.0.to_vec())
                    .map_err(|e| invalid(e.to_string()))?;
                let offenders = Value::list_from(
                    audit
                        .offenders
                        .iter()
                        .map(|o| self.vm.principal(o.0).into())
                        .collect(),
                )
                .map_err(|e| invalid(e.to_string()))?;
                let txid =
                    Value::buff_from(audit.txid.0.to_vec()).map_err(|e| invalid(e.to_string()))?;
                (
                    "staking",
                    "slash-verifiers",
                    vec![
                        commitment,
                        txid,
                        Value::UInt(u128::from(audit.audited_height)),
                        self.vm.principal(reporter).into(),
                        offenders,
                    ],
                )
            }
        };
        ops.push(BlockOp::Report {
            reporter,
            nonce: tx.nonce,
            contract: contract.into(),
            function: function.into(),
            args,
        });
        Ok(ops)
    }

    /// What an audit's reveal proves on the branch of `parent`: the commitment it
    /// reveals, the audited block's ledger height, and the verifiers whose counted votes
    /// (carried on this branch up to the block that settled the audited one) accepted the audited
    /// inference while more than half the verifier set rejected it grossly. Nobody, when the
    /// audited block is not on this branch within [`AUDIT_WINDOW`] blocks, is not settled
    /// yet, or has no such inference: the report then only spends its nonce and fee (the
    /// staking contract refuses an empty list), so that no state of the chain can make a
    /// block that carries it invalid.
    fn audit(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        audited: &Hash256,
        index: u32,
        salt: &[u8; 32],
        revealer: &Hash160,
    ) -> Audit {
        let mut audit = Audit {
            commitment: Hash256([0; 32]),
            txid: Hash256([0; 32]),
            audited_height: 0,
            committed_at: None,
            offenders: Vec::new(),
        };
        let Some(rec) = self.block(&audited.0) else {
            return audit;
        };
        let Some(inf) = rec
            .block
            .as_ref()
            .and_then(|b| b.inferences.get(index as usize))
        else {
            return audit;
        };
        audit.txid = inf.stub.txid();
        audit.commitment = Evidence::audit_commitment(salt, &audit.txid, revealer);
        audit.audited_height = rec.anchor_height;
        // Nothing to count for a reveal that matches no commitment (checked first: it is
        // one read, the tally below is signature checks).
        let committed = Value::buff_from(audit.commitment.0.to_vec())
            .ok()
            .and_then(|c| {
                self.read(ledger, parent, "staking", "get-audit-commit", &[c])
                    .ok()
            });
        audit.committed_at = match committed {
            Some(Value::Optional(o)) => match o.data.as_deref() {
                Some(Value::UInt(at)) => Some(*at),
                _ => None,
            },
            _ => None,
        };
        if audit.committed_at.is_none() {
            return audit;
        }
        // The blocks after it on this branch (walked down from the parent, at most the
        // audit window), then where its votes settled it.
        let mut after: Vec<&BlockRecord> = Vec::new();
        let mut at = parent;
        loop {
            if at.height <= rec.height {
                break;
            }
            if after.len() >= AUDIT_WINDOW {
                return audit;
            }
            after.push(at);
            match at.block.as_ref().and_then(|b| self.block(&b.header.parent)) {
                Some(below) => at = below,
                None => return audit,
            }
        }
        if at.id != rec.id {
            return audit;
        }
        after.reverse();
        let Some((_, t, votes)) = self.settled_on(ledger, rec, &after) else {
            return audit;
        };
        if !t.is_final
            || !t
                .grossly_rejected
                .get(index as usize)
                .copied()
                .unwrap_or(false)
        {
            return audit;
        }
        audit.offenders = t
            .counted
            .iter()
            .filter_map(|at| votes.get(*at))
            .filter(|v| v.verdicts.get(index as usize) == Some(&Verdict::Accept))
            .map(|v| v.verifier.hash160())
            .collect();
        audit
    }

    /// The verifiers the reveal of an audit (inference `index` of block `audited`, its
    /// salt, by `revealer`) would punish in a child of `parent`: empty when the chain does
    /// not bear it out (see `audit`). What a planter checks before it reveals.
    pub fn audit_offenders(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        audited: &Hash256,
        index: u32,
        salt: &[u8; 32],
        revealer: &Hash160,
    ) -> Vec<Hash160> {
        let audit = self.audit(ledger, parent, audited, index, salt, revealer);
        // The staking contract also wants the commitment made before the audited block's
        // anchor (its ledger height then); a later one would only spend the reveal's fee.
        let in_time = audit
            .committed_at
            .is_some_and(|at| at < u128::from(audit.audited_height));
        if in_time {
            audit.offenders
        } else {
            Vec::new()
        }
    }

    /// Builds, runs and signs the block of the tenure won at ledger block `anchor`: what a
    /// winning inference node does.
    #[allow(clippy::too_many_arguments)]
    pub fn produce(
        &mut self,
        ledger: &Chainstate,
        anchor: Hash256,
        producer: &SecretKey,
        vrf: &fai_vrf::SecretKey,
        vm_txs: Vec<SignedVmTx>,
        inferences: Vec<Inference>,
        commits: Vec<VoteCommit>,
        votes: Vec<Vote>,
    ) -> Result<InferenceBlock, BlockError> {
        let record = self
            .tracker
            .record(&anchor)
            .ok_or_else(|| invalid("unknown ledger anchor"))?
            .clone();
        let winner = record
            .sortition
            .winner
            .clone()
            .ok_or_else(|| invalid("no sortition winner at the anchor"))?;
        let parent = self
            .blocks
            .get(&winner.parent)
            .ok_or_else(|| invalid("unknown parent block"))?
            .clone();
        let proof = vrf
            .prove(&record.seed)
            .map_err(|e| invalid(e.to_string()))?;
        let mut header = InferenceHeader {
            version: 1,
            height: parent.height.saturating_add(1),
            parent: parent.id,
            ledger_anchor: anchor.0,
            ledger_height: record.ledger_height,
            tx_root: InferenceBlock::tx_root_of(&vm_txs),
            results_root: InferenceBlock::results_root_of(&inferences),
            commits_root: InferenceBlock::commits_root_of(&commits),
            votes_root: InferenceBlock::votes_root_of(&votes),
            state_root: [0; 32],
            vrf_proof: Some(proof),
            producer: producer.public_key(),
            signature: Signature([0; 64]),
        };
        let block = InferenceBlock {
            header: header.clone(),
            vm_txs,
            inferences,
            commits,
            votes,
        };
        // Run it once to learn the state root (nothing is written: the block's state is
        // stored when it is accepted).
        let ops = self.block_ops(ledger, &parent, &block, anchor)?;
        let result = self
            .execute(
                ledger,
                &parent,
                &header,
                &winner,
                record.sortition.total,
                &ops.ops,
            )?
            .result;
        if let Some(e) = result.outcomes.iter().find_map(|o| o.as_ref().err()) {
            return Err(invalid(format!("an operation of the block fails: {e}")));
        }
        header.state_root = result.state_root;
        header.sign(producer);
        Ok(InferenceBlock { header, ..block })
    }
}

/// The canonical branch as of the ledger tip, walked down from its tip only as far as
/// the questions asked of it need (each block visited once).
struct CanonicalWalk<'c> {
    chain: &'c InferenceChain,
    next: Option<&'c BlockRecord>,
    seen: HashSet<[u8; 32]>,
}

impl<'c> CanonicalWalk<'c> {
    fn from_tip(chain: &'c InferenceChain, ledger: &Chainstate) -> Self {
        CanonicalWalk {
            chain,
            next: Some(chain.tip(ledger)),
            seen: HashSet::new(),
        }
    }

    /// Whether block `id` is on the canonical branch.
    fn holds(&mut self, id: &[u8; 32]) -> bool {
        if self.seen.contains(id) {
            return true;
        }
        let Some(target) = self.chain.blocks.get(id) else {
            return false;
        };
        while let Some(record) = self.next {
            if record.height < target.height {
                return false;
            }
            self.seen.insert(record.id);
            self.next = record
                .block
                .as_ref()
                .and_then(|b| self.chain.blocks.get(&b.header.parent));
            if record.id == *id {
                return true;
            }
        }
        false
    }
}

struct BlockOps {
    ops: Vec<BlockOp>,
    pegged_through: u32,
    /// The parent's inferences this block settles (paid or refunded): their text may go
    /// once the ledger is six blocks past this block's anchor.
    settled: Vec<Hash256>,
}

/// Notes that a block is anchored at ledger block `anchor`, at ledger height `height`.
fn index_anchor(index: &mut BTreeMap<u32, Vec<Hash256>>, height: u32, anchor: Hash256) {
    let at = index.entry(height).or_default();
    if !at.contains(&anchor) {
        at.push(anchor);
    }
}

fn unreachable_record() -> &'static BlockRecord {
    // The genesis record is inserted by `open` and never removed; this is only reached
    // if that invariant is broken, and then a harmless empty record is better than a panic.
    static EMPTY: std::sync::OnceLock<BlockRecord> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| BlockRecord {
        id: [0; 32],
        exec_id: [0; 32],
        height: 0,
        anchor: Hash256([0; 32]),
        anchor_height: 0,
        pegged_through: 0,
        cycle: 0,
        producer: [0; 20],
        block: None,
    })
}

#[cfg(test)]
mod tests {
    /// A settlement's calls of the reputation contract's `record-results` fit its list.
    #[test]
    fn record_results_calls_fit_the_contracts_list() {
        let bound = format!("(list {} ", super::RECORD_RESULTS_MAX);
        assert!(fai_clarity::boot::REPUTATION.contains(&bound), "{bound}");
    }
}
