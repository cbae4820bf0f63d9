//! The inference-node role: register once on the ledger, commit a bid at every ledger
//! block, and produce the tenure block whenever the sortition picks this node.
//!
//! It runs on the chain task (`crate::chain_task::ChainState`), in the command that
//! connects a ledger block, right after the inference chain has read it and before the
//! miner sees the new tip, so that the commit for the next block is in the mempool when the next
//! template is built. Every step is best effort: a failure is logged and retried at the
//! next ledger block; nothing here can stop the node.
//!
//! - Register: a ledger transaction whose data output carries the register op (the VRF
//!   key, the node's address, the models it serves). It is found again in the block that
//!   mines it, which gives its reference (height, index).
//! - Commit: at each new tip, a transaction with the commit op (the register reference,
//!   the inference tip it builds on, the VRF output over the tip's seed) paying the bid
//!   equally to the verifier set that block requires, or burning it while there is none.
//!   When another node won the tip's sortition, the commit waits for that node's tenure
//!   block (0.6 of the ledger's target spacing at most), so that it names that block as
//!   its parent: committed on the block before, a win would orphan it.
//! - Produce: when the sortition at a new ledger block names this node, build, run and
//!   sign the tenure block on the parent the commit named, accept it, and gossip it.
//!   The block carries every vote the node holds on the blocks of its vote window that
//!   the branch has not carried (`InferenceChain::votes_to_carry`): a block whose votes
//!   reach a quorum settles in it. Nothing waits for votes: those that come late go into
//!   a later block of the window. The commit for the next block follows the tenure.
//!   A ledger block stored beside the tip at its height (found at the same time as the
//!   tip, elsewhere) is read too, and a tenure won there is produced as well
//!   ([`Producer::on_competing_tip`]): the peers that keep that block wait for it.

use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::chain::InferenceChain;
use fai_inference_chain::ops::{build_register, Op, RegisterRef};
use fai_inference_chain::sortition::next_seed;
use fai_inference_chain::sortition::Bid;
use fai_ledger::mempool::Mempool;

use crate::replay_cost::ReplayCosts;
use crate::result_pool::ResultPool;
use crate::vm_mempool::VmMempool;
use crate::vote_pool::VotePool;
use fai_inference_chain::types::Inference;
use fai_inference_chain::vmtx::SignedVmTx;
use fai_ledger::sighash::sign_transaction;
use fai_ledger::tx::SEQUENCE_FINAL;
use fai_ledger::{Chainstate, OutPoint, OutputKind, Transaction, TxIn, TxOut, Txid, Unlock};
use fai_primitives::{Amount, Encode, Hash160, Hash256, SecretKey, Signature};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use tracing::{info, warn};

/// The bytes of VM transactions one produced block carries at most.
const MAX_VM_TX_BYTES: usize = 512 * 1024;
/// Inferences one produced block carries at most.
const MAX_BLOCK_INFERENCES: usize = 1_000;
/// And at most this many per second of the ledger's target spacing. Every verifier of the
/// set replays the whole block before it commits to its vote, and the commitments must be
/// carried before the block's commit phase ends, which ledger blocks that come in a burst
/// can end within about one spacing. On regtest (one-second blocks, five verifiers on two
/// cores) a block of 1,000 took its verifiers 1.0-1.25 s, and `bench network` at 6,000
/// requests refunded one so when four ledger blocks came in that time (at a mean spacing
/// of 1.2 s, four or more arrivals in 1.25 s have a chance of about 2%; in 0.6 s, 0.2%).
/// The longer spacings of the other networks keep the first limit.
const MAX_BLOCK_INFERENCES_PER_SPACING_S: usize = 500;

/// The inferences a produced block carries at most, with the ledger's target spacing in
/// seconds.
fn max_block_inferences(target_spacing_s: u64) -> usize {
    let per_spacing = usize::try_from(target_spacing_s)
        .unwrap_or(usize::MAX)
        .saturating_mul(MAX_BLOCK_INFERENCES_PER_SPACING_S);
    MAX_BLOCK_INFERENCES.min(per_spacing).max(1)
}
/// Room left in a block for its header and the lengths of its lists (a header is a
/// few hundred bytes).
const BLOCK_FRAME_BYTES: usize = 1_024;
/// When a block with every waiting inference fails, how many are tried one by one.
const MAX_RETRIED_INFERENCES: usize = 64;

/// The pools a produced block takes from.
pub struct Pools<'a> {
    pub vm: &'a mut VmMempool,
    pub results: &'a mut ResultPool,
    pub votes: &'a VotePool,
    /// What the served inferences cost the verifiers to replay (a block's inferences keep
    /// to a budget of it: `crate::replay_cost`).
    pub costs: &'a ReplayCosts,
}

/// How many of this node's last commits a tenure won beside the tip may name.
const RECENT_COMMITS: usize = 8;

/// The longest wait of a commit for the tenure block another node won, per second of
/// the ledger's target spacing.
const COMMIT_WAIT_MS_PER_SPACING_S: u64 = 600;

/// What one produced block has room for, beside its votes and VM transactions.
#[derive(Debug, Clone, Copy)]
struct Room {
    /// Inferences ([`max_block_inferences`]).
    inferences: usize,
    /// Bytes of inferences.
    bytes: usize,
    /// Microseconds of the verifiers' replay ([`crate::replay_cost`]).
    replay_us: u64,
}

/// The served inferences that go into a block at `height` after `vm_txs`: per sender,
/// the run of consecutive nonces from its account's (`account_nonce`, in the parent's
/// state; None: left out) past its VM transactions, up to the first answer expired at
/// `height`; within `room`, by `cost` (the replay time of one; the first inference goes
/// in whatever its cost, or one costlier than a block's budget would never).
///
/// The runs are taken in turns, one inference of each sender per round, in an order
/// drawn from `salt` (the tenure's anchor) anew at each block: taken run after run in the
/// pool's order, the same sender came first block after block, and a buyer who kept a
/// long run waiting filled every block while the others' answers waited, and expired,
/// served for nothing. A run ends at its first answer that does not fit (those after it
/// need it first); the others go on.
fn select_inferences(
    results: &ResultPool,
    vm_txs: &[SignedVmTx],
    mut account_nonce: impl FnMut([u8; 20]) -> Option<u64>,
    height: u32,
    salt: &[u8; 32],
    room: Room,
    mut cost: impl FnMut(&Inference) -> u64,
) -> Vec<Inference> {
    let mut after_vm: std::collections::HashMap<[u8; 20], u64> = Default::default();
    for tx in vm_txs {
        let next = after_vm.entry(tx.sender.hash160().0).or_default();
        *next = (*next).max(tx.nonce.saturating_add(1));
    }
    let mut senders: Vec<([u8; 32], [u8; 20])> = results
        .senders()
        .into_iter()
        .map(|sender| (Hash256::sha256d_parts(&[salt, &sender]).0, sender))
        .collect();
    senders.sort_unstable();
    // A sender's account is read only while its run could still get a turn: each run
    // takes at most one inference a round, so past `room.inferences` of them the rest
    // would never be reached (reading every sender's account, a VM read each, cost
    // every block as much as the pool holds senders).
    let mut runs = Vec::new();
    for (_, sender) in senders {
        if runs.len() >= room.inferences {
            break;
        }
        let Some(from) = after_vm
            .get(&sender)
            .copied()
            .or_else(|| account_nonce(sender))
        else {
            continue;
        };
        let mut run = results
            .run_from(sender, from)
            .take_while(move |inf| inf.stub.expiry >= height)
            .peekable();
        if run.peek().is_some() {
            runs.push(run);
        }
    }
    let (mut out, mut bytes, mut replay) = (Vec::new(), 0usize, 0u64);
    while !runs.is_empty() && out.len() < room.inferences {
        runs.retain_mut(|run| {
            if out.len() >= room.inferences {
                return true;
            }
            let Some(inf) = run.next() else {
                return false;
            };
            let with_bytes = bytes.saturating_add(inf.to_bytes().len());
            let with_replay = replay.saturating_add(cost(inf));
            if with_bytes > room.bytes || (with_replay > room.replay_us && !out.is_empty()) {
                return false;
            }
            (bytes, replay) = (with_bytes, with_replay);
            out.push(inf.clone());
            true
        });
    }
    out
}

/// What [`restore_abandoned`] put back in the pools: taken out again when no block is
/// built on them after all (the left-out blocks stay on the canonical chain then).
#[derive(Default)]
struct Restored {
    vm_txs: Vec<Hash256>,
    inferences: Vec<Hash256>,
}

impl Restored {
    fn undo(self, vm: &mut VmMempool, results: &mut ResultPool) {
        for id in &self.vm_txs {
            vm.remove(id);
        }
        for txid in &self.inferences {
            results.remove(txid);
        }
    }
}

/// When the commit named an older parent than the canonical tip (it went out before the
/// last tenure block arrived), the block built on it leaves the tip's branch out: what
/// those blocks carried goes back to the pools, to be carried again, and is not lost.
fn restore_abandoned(
    chain: &InferenceChain,
    ledger: &Chainstate,
    parent: &[u8; 32],
    vm: &mut VmMempool,
    results: &mut ResultPool,
) -> Restored {
    let mut restored = Restored::default();
    for block in chain.abandoned_by(ledger, parent) {
        for tx in &block.vm_txs {
            if vm.restore(tx.clone()) {
                restored.vm_txs.push(tx.txid());
            }
        }
        for inf in &block.inferences {
            if let Ok(txid) = results.add(inf.clone()) {
                restored.inferences.push(txid);
            }
        }
        info!(
            target: "infer_node::producer",
            id = %block.header.id(),
            vm_txs = block.vm_txs.len(),
            inferences = block.inferences.len(),
            "building beside an inference block: its transactions go back to the pools"
        );
    }
    restored
}

/// How many ledger blocks below the tip that elected nobody a commit looks through for the
/// last tenure whose block it should wait for.
const TENURE_LOOKBACK: usize = 4;

/// The tenure whose block a commit made now should wait for, so as to build on it: the
/// newest ledger block, from `tip` down through those whose sortition elected nobody (at
/// most [`TENURE_LOOKBACK`] of them), whose sortition elected someone, when the canonical
/// inference tip is anchored below it and the winner is not this node (`is_mine`: its own
/// tenure block is produced before it commits, or never) nor its tenure contested (two
/// blocks or more are here: it counts as empty). Looking past `tip` matters in
/// bursts: a ledger block that carries no commit often follows the one before within
/// milliseconds, and a commit made on the inference tip as it was then names a parent
/// older than the tenure block still on its way, so its block is built beside that one
/// and breaks the run of blocks that block's commit phase may need to run on (its
/// verifiers' late commitments are not carried, and it is refunded; `bench network`, 800
/// requests). The awaited ledger block, or None.
fn tenure_to_await(
    ledger: &Chainstate,
    chain: &InferenceChain,
    tip: &Hash256,
    is_mine: impl Fn(&Bid) -> bool,
) -> Option<Hash256> {
    let mut recent = Vec::with_capacity(TENURE_LOOKBACK.saturating_add(1));
    let mut at = *tip;
    for _ in 0..=TENURE_LOOKBACK {
        let (Some(entry), Some(record)) = (ledger.entry(&at), chain.tracker().record(&at)) else {
            break;
        };
        // A tenure with two blocks or more is contested and counts as empty: nothing
        // more is coming, and waiting for it would only hold the commit back (it is
        // treated as this node's own, which is not waited for either).
        let contested = chain.tenure_blocks(&at).len() >= 2;
        let won = record
            .sortition
            .winner
            .as_ref()
            .map(|bid| contested || is_mine(bid));
        recent.push((at, entry.height, won));
        if entry.height == 0 {
            break;
        }
        at = entry.header.prev;
    }
    let heights: Vec<(u32, Option<bool>)> = recent.iter().map(|(_, h, w)| (*h, *w)).collect();
    let index = awaited_index(&heights, chain.tip(ledger).anchor_height)?;
    recent.get(index).map(|(hash, _, _)| *hash)
}

/// [`tenure_to_await`] on `recent` (ledger heights, newest first, each with None when its
/// sortition elected nobody, else whether its block is not to be waited for: it elected
/// this node, or the tenure is contested) and the canonical inference tip's anchor height:
/// the index of the newest that elected someone, when its block is to be waited for and
/// it is above that anchor.
fn awaited_index(recent: &[(u32, Option<bool>)], tip_anchor_height: u32) -> Option<usize> {
    let (index, (height, mine)) = recent
        .iter()
        .enumerate()
        .find(|(_, (_, won))| won.is_some())?;
    (*height > tip_anchor_height && *mine == Some(false)).then_some(index)
}

/// Where the ledger block a tenure block is anchored in stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Branch {
    /// The active chain's tip.
    Active,
    /// Stored beside the active chain, at the tip's height.
    Beside,
}

/// What the role needs to know.
pub struct Producer {
    key: SecretKey,
    address: Hash160,
    vrf: fai_vrf::SecretKey,
    models: Vec<[u8; 32]>,
    /// Paid per ledger block to the verifier set.
    bid: Amount,
    fee: Amount,
    register: Option<RegisterRef>,
    /// The register transaction sent and not yet found in a block, with the ledger
    /// height it was sent at.
    pending_register: Option<(Txid, u32)>,
    /// The last ledger blocks whose tenure this node has produced (a reorg can bring
    /// one back as the tip; it is not produced twice).
    produced: std::collections::VecDeque<Hash256>,
    /// Ledger transactions made (register, commits) to gossip.
    outbox: Vec<Vec<u8>>,
    /// Whether the lack of a spendable coin was logged already.
    told_unfunded: bool,
    /// The ledger tip whose commit waits for the tenure block another node won there (or
    /// at the last ledger block that elected someone, [`tenure_to_await`]), and since when.
    awaiting: Option<(Hash256, Instant)>,
    /// The ledger block whose tenure block that commit waits for.
    awaited: Option<Hash256>,
    /// The last one whose wait ran out: not waited for again at the ledger blocks after it
    /// that elect nobody (its block is not coming; each new wait could cost a sortition).
    gave_up_on: Option<Hash256>,
    /// Where the waits above read the time.
    clock: Arc<dyn Clock>,
    /// The last commits made, as (parent, seed): a tenure won beside the tip is produced
    /// only for one of them. Such a ledger block's transactions are not validated until
    /// it joins the active chain, and a forged commit there naming this node's register
    /// could otherwise set it to work on any parent.
    committed: std::collections::VecDeque<([u8; 32], [u8; 32])>,
    /// The change of this node's last payment: the next one spends it first, found by
    /// its outpoint. Finding coins through the ledger's index by owner walks past every
    /// coin this node spent since the store last compacted (a commit in every ledger
    /// block leaves one behind each time), which made each commit slower than the last.
    last_change: Option<OutPoint>,
}

impl Producer {
    pub fn new(
        key: SecretKey,
        vrf: fai_vrf::SecretKey,
        models: Vec<[u8; 32]>,
        bid: Amount,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let address = key.public_key().hash160();
        Producer {
            key,
            address,
            vrf,
            models,
            bid,
            fee: Amount::from_units(10_000).unwrap_or(Amount::ZERO),
            register: None,
            pending_register: None,
            produced: Default::default(),
            outbox: Vec::new(),
            told_unfunded: false,
            awaiting: None,
            awaited: None,
            gave_up_on: None,
            clock,
            committed: Default::default(),
            last_change: None,
        }
    }

    /// How long since `since`, on the producer's clock.
    fn waited(&self, since: Instant) -> Duration {
        self.clock.now().saturating_duration_since(since)
    }

    /// Reacts to a new ledger tip: finds the register, produces a won tenure, commits for
    /// the next block. Returns the blocks produced, for gossip.
    pub fn on_tip(
        &mut self,
        ledger: &Chainstate,
        chain: &mut InferenceChain,
        mempool: &mut Mempool,
        pools: Pools<'_>,
    ) -> Vec<InferenceBlock> {
        let tip = ledger.tip_hash();
        self.find_register(ledger);
        let mut produced = Vec::new();
        self.awaiting = None;
        self.awaited = None;
        if self.register.is_none() {
            if self.pending_register.is_none() {
                self.send_register(ledger, mempool);
            }
            return produced;
        }
        produced.extend(self.produce(ledger, chain, pools, tip, Branch::Active));
        self.commit_after_tenure(ledger, chain, mempool, tip);
        produced
    }

    /// Reacts to a ledger block stored beside the active chain at the tip's height (two
    /// blocks found at once; this node keeps the first it saw): when its sortition picked
    /// this node, the tenure block is produced there too, on the parent the commit named.
    /// Which of the two the ledger keeps is not known yet; the peers that saw the other
    /// first wait for this block, and without it that tenure brings no block to their
    /// branch (the commit phase of the blocks before cannot run on past it, and what they
    /// served would be refunded). Only for a commit this node made (that block's
    /// transactions are checked only once it joins the active chain), and the pools are
    /// only read: what the active branch carries stays there. No commit follows: the next
    /// commit goes out on the active tip, as always.
    pub fn on_competing_tip(
        &mut self,
        ledger: &Chainstate,
        chain: &mut InferenceChain,
        pools: Pools<'_>,
        anchor: Hash256,
    ) -> Option<InferenceBlock> {
        let winner = self.winning_bid(chain, &anchor)?;
        if !self.committed.contains(&(winner.parent, winner.seed)) {
            warn!(target: "infer_node::producer", %anchor, "a ledger block beside the tip elects this node with a commit it did not make: not producing there");
            return None;
        }
        self.produce(ledger, chain, pools, anchor, Branch::Beside)
    }

    /// The address of the node key this producer signs with.
    pub fn address(&self) -> Hash160 {
        self.address
    }

    /// Whether a commit waits for another node's tenure block.
    pub fn is_waiting(&self) -> bool {
        self.awaiting.is_some()
    }

    /// Test builds only (`test-cheats`): equivocates. A second block for the tenure
    /// this node produced at ledger block `anchor`, signed like the first, on the same
    /// parent with the same inferences and votes but one VM transaction of its own that
    /// the first does not carry; offered to this node's chain and returned, for a test to
    /// gossip.
    #[cfg(feature = "test-cheats")]
    pub fn equivocate(
        &self,
        ledger: &Chainstate,
        chain: &mut InferenceChain,
        anchor: Hash256,
    ) -> Result<InferenceBlock, String> {
        let first = chain
            .tenure_blocks(&anchor)
            .first()
            .and_then(|id| chain.block(id))
            .and_then(|r| r.block.clone())
            .ok_or("no block of that tenure")?;
        let parent = chain
            .block(&first.header.parent)
            .ok_or("the parent is unknown")?
            .exec_id;
        let (_, nonce) = chain
            .vm()
            .account(&parent, ledger, self.address.0)
            .map_err(|e| e.to_string())?;
        let payload = fai_inference_chain::vmtx::VmPayload::Transfer {
            to: Hash160([0xee; 20]),
            amount: Amount::from_units(1).map_err(|e| e.to_string())?,
            memo: b"equivocation".to_vec(),
        };
        let chain_id = ledger.params().network.chain_id();
        let tx = SignedVmTx::new(&self.key, nonce, chain_id, Amount::ZERO, payload);
        let block = chain
            .produce(
                ledger,
                anchor,
                &self.key,
                &self.vrf,
                vec![tx],
                first.inferences.clone(),
                first.commits.clone(),
                first.votes.clone(),
            )
            .map_err(|e| e.to_string())?;
        if let Err(e) = chain.accept(ledger, block.clone()) {
            warn!(target: "infer_node::producer", "own second block refused: {e}");
        }
        Ok(block)
    }

    /// Ends the wait for a tenure block that did not come in time, remembering which (it
    /// is not waited for again); the ledger tip the commit was for.
    fn give_up(&mut self) -> Option<Hash256> {
        let (at, _) = self.awaiting.take()?;
        self.gave_up_on = self.awaited.take();
        Some(at)
    }

    /// The ledger block whose tenure block a commit on `tip` waits for
    /// ([`tenure_to_await`]), unless its wait ran out before.
    fn must_wait(
        &self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        tip: &Hash256,
    ) -> Option<Hash256> {
        let is_mine =
            |bid: &Bid| Some(bid.register) == self.register && bid.producer == self.address;
        tenure_to_await(ledger, chain, tip, is_mine).filter(|a| Some(*a) != self.gave_up_on)
    }

    /// This node's bid, when the sortition at ledger block `anchor` picked it.
    fn winning_bid(&self, chain: &InferenceChain, anchor: &Hash256) -> Option<Bid> {
        chain
            .tracker()
            .record(anchor)
            .and_then(|r| r.sortition.winner.clone())
            .filter(|w| Some(w.register) == self.register && w.producer == self.address)
    }

    /// Commits for the block after `tip` now, or once the tenure block won at `tip` by
    /// another node is here.
    fn commit_after_tenure(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        mempool: &mut Mempool,
        tip: Hash256,
    ) {
        if let Some(anchor) = self.must_wait(ledger, chain, &tip) {
            self.awaiting = Some((tip, self.clock.now()));
            self.awaited = Some(anchor);
        } else {
            self.commit_now(ledger, chain, mempool, tip);
        }
    }

    /// After an inference block was accepted: the awaited tenure block is here, commit.
    /// Whether a commit was made.
    pub fn on_inference_block(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        mempool: &mut Mempool,
    ) -> bool {
        let tip = ledger.tip_hash();
        match self.awaiting {
            Some((at, _)) if at == tip && self.must_wait(ledger, chain, &tip).is_none() => {
                self.awaiting = None;
                self.awaited = None;
                self.commit_now(ledger, chain, mempool, tip)
            }
            _ => false,
        }
    }

    /// Whether the awaited tenure block is overdue: then [`Producer::on_overdue`] commits
    /// without it.
    pub fn overdue(&self, target_spacing: u64) -> bool {
        let limit =
            Duration::from_millis(target_spacing.saturating_mul(COMMIT_WAIT_MS_PER_SPACING_S));
        self.awaiting
            .is_some_and(|(_, since)| self.waited(since) >= limit)
    }

    /// Commits on the tip as it is, the winner's tenure block not having come in time.
    /// Whether a commit was made.
    pub fn on_overdue(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        mempool: &mut Mempool,
    ) -> bool {
        let Some(at) = self.give_up() else {
            return false;
        };
        if at != ledger.tip_hash() {
            return false;
        }
        info!(target: "infer_node::producer", tip = %at, "the tenure block did not come in time; committing on the block before it");
        self.commit_now(ledger, chain, mempool, at)
    }

    fn commit_now(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        mempool: &mut Mempool,
        tip: Hash256,
    ) -> bool {
        match self.commit(ledger, chain, mempool, tip) {
            Ok(_) => true,
            Err(e) => {
                warn!(target: "infer_node::producer", "no commit for the next ledger block: {e}");
                false
            }
        }
    }

    /// The ledger transactions made since the last call, to gossip.
    pub fn take_outbox(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.outbox)
    }

    /// Looks for the pending register transaction in the last blocks of the active chain.
    fn find_register(&mut self, ledger: &Chainstate) {
        let Some((txid, sent_at)) = self.pending_register else {
            return;
        };
        let height = ledger.height();
        for h in (sent_at.saturating_add(1)..=height).rev() {
            let Some(block) = ledger
                .hash_at(h)
                .and_then(|b| ledger.block(&b).ok().flatten())
            else {
                continue;
            };
            if let Some(index) = block.transactions.iter().position(|t| t.txid() == txid) {
                let Ok(tx_index) = u16::try_from(index) else {
                    continue;
                };
                self.register = Some(RegisterRef {
                    height: h,
                    tx_index,
                });
                self.pending_register = None;
                info!(target: "infer_node::producer", height = h, tx_index, "registered as an inference node");
                return;
            }
        }
        // Not mined within ten blocks (evicted, or lost in a reorg): send it again.
        if height > sent_at.saturating_add(10) {
            self.pending_register = None;
        }
    }

    fn send_register(&mut self, ledger: &Chainstate, mempool: &mut Mempool) {
        let op = match build_register(self.vrf.public().0, self.address, &self.models) {
            Ok(op) => op,
            Err(e) => {
                warn!(target: "infer_node::producer", "cannot build the register op: {e}");
                return;
            }
        };
        match self.pay(
            ledger,
            mempool,
            vec![TxOut::data(Amount::ZERO, op.encode())],
        ) {
            Ok(txid) => {
                info!(target: "infer_node::producer", %txid, "register transaction sent");
                self.pending_register = Some((txid, ledger.height()));
            }
            Err(e) if !self.told_unfunded => {
                self.told_unfunded = true;
                info!(target: "infer_node::producer", "cannot register yet ({e}); waiting for a spendable coin of the node key");
            }
            Err(_) => {}
        }
    }

    fn commit(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        mempool: &mut Mempool,
        tip: Hash256,
    ) -> Result<Txid, String> {
        let register = self.register.ok_or("not registered")?;
        let seed = chain
            .seed_after(&tip)
            .ok_or("the tip's sortition is unknown")?;
        let proof = self.vrf.prove(&seed).map_err(|e| e.to_string())?;
        let output = fai_vrf::proof_to_hash(&proof).map_err(|e| e.to_string())?;
        let (parent, seed) = (chain.tip(ledger).id, next_seed(&output));
        let op = Op::Commit {
            register,
            parent,
            seed,
            after: fai_inference_chain::ops::commit_after(&tip),
        };
        // The verifier set but this node: it does not pay itself (its change comes back
        // to its own address).
        let payees: Vec<Hash160> = chain
            .commit_set(ledger, &tip)
            .into_iter()
            .filter(|v| *v != self.address)
            .collect();
        let mut outputs: Vec<TxOut> = Vec::new();
        if payees.is_empty() {
            outputs.push(TxOut::data(self.bid, op.encode()));
        } else {
            let n = u64::try_from(payees.len()).unwrap_or(1);
            let each = Amount::from_units(self.bid.units() / n).map_err(|e| e.to_string())?;
            outputs.extend(payees.iter().map(|v| TxOut::pay(each, *v)));
            outputs.push(TxOut::data(Amount::ZERO, op.encode()));
        }
        let txid = self.pay(ledger, mempool, outputs)?;
        if self.committed.len() >= RECENT_COMMITS {
            self.committed.pop_front();
        }
        self.committed.push_back((parent, seed));
        Ok(txid)
    }

    fn produce(
        &mut self,
        ledger: &Chainstate,
        chain: &mut InferenceChain,
        pools: Pools<'_>,
        anchor: Hash256,
        branch: Branch,
    ) -> Option<InferenceBlock> {
        let winner = self.winning_bid(chain, &anchor)?;
        if self.produced.contains(&anchor) {
            return None;
        }
        // A block of this tenure is stored already (made before a restart, or by another
        // process with this key): a second would be an equivocation, which burns the bond.
        if !chain.tenure_blocks(&anchor).is_empty() {
            warn!(target: "infer_node::producer", %anchor, "the tenure has its block already: not producing another");
            self.produced.push_back(anchor);
            return None;
        }
        if self.produced.len() >= 256 {
            self.produced.pop_front();
        }
        self.produced.push_back(anchor);
        let Pools {
            vm,
            results,
            votes,
            costs,
        } = pools;
        let Some(parent_rec) = chain.block(&winner.parent) else {
            warn!(target: "infer_node::producer", %anchor, "cannot produce the tenure block: its parent is unknown");
            return None;
        };
        let (parent_state, height) = (parent_rec.exec_id, parent_rec.height.saturating_add(1));
        // Every commitment and vote here on a block of the window (in its commit or its
        // reveal phase) that the branch has not carried: the blocks the votes bring to a
        // quorum settle in this one.
        if chain.tracker().record(&anchor).is_none() {
            warn!(target: "infer_node::producer", %anchor, "cannot produce the tenure block: its anchor is unknown");
            return None;
        }
        let carried_commits =
            chain.commits_to_carry(ledger, parent_rec, &anchor, |id| votes.commits_on(id));
        let carried_votes =
            chain.votes_to_carry(ledger, parent_rec, &anchor, |id| votes.votes_on(id));
        // Beside the active chain the pools are only read: what the canonical branch
        // carries stays carried there (and a restore can evict from a full pool).
        let restored = match branch {
            Branch::Active => restore_abandoned(chain, ledger, &winner.parent, vm, results),
            Branch::Beside => Restored::default(),
        };
        // Within the consensus limit on a block's size: the commitments and votes, then VM
        // transactions (a quarter of the block at most), then inferences.
        let max_bytes = chain.max_block_bytes();
        let votes_bytes = carried_votes
            .iter()
            .map(|v| v.to_bytes().len())
            .chain(carried_commits.iter().map(|c| c.to_bytes().len()))
            .fold(BLOCK_FRAME_BYTES, usize::saturating_add);
        let mut vm_txs = vm.select(
            chain,
            ledger,
            &parent_state,
            MAX_VM_TX_BYTES.min(max_bytes / 4),
        );
        let used = vm_txs
            .iter()
            .map(|t| t.to_bytes().len())
            .fold(votes_bytes, usize::saturating_add);
        let spacing = ledger.params().target_spacing;
        let mut costs = costs.at(spacing);
        let room = Room {
            inferences: max_block_inferences(spacing),
            bytes: max_bytes.saturating_sub(used),
            replay_us: costs.block_budget(),
        };
        let inferences = select_inferences(
            results,
            &vm_txs,
            |sender| {
                let account = chain.vm().account(&parent_state, ledger, sender);
                account.ok().map(|(_, nonce)| nonce)
            },
            height,
            anchor.as_bytes(),
            room,
            |inf| costs.cost(&inf.stub.model, inf.receipt.tokens),
        );
        let mut attempt = |vm_txs: &[SignedVmTx], infs: &[Inference]| {
            chain.produce(
                ledger,
                anchor,
                &self.key,
                &self.vrf,
                vm_txs.to_vec(),
                infs.to_vec(),
                carried_commits.clone(),
                carried_votes.clone(),
            )
        };
        let block = match attempt(&vm_txs, &inferences) {
            Ok(b) => Ok(b),
            Err(e) => {
                // Something waiting cannot run (a sender spent the fee or the max fee
                // meanwhile, a nonce went to another transaction): without the VM
                // transactions if they fail on their own, then the inferences one by
                // one, dropping those that fail.
                warn!(target: "infer_node::producer", "a waiting transaction cannot run: {e}");
                // Beside the active chain, what fails on that branch's state is left in
                // the pools: it may still run on the active one.
                let mut last = attempt(&vm_txs, &[]);
                if last.is_err() && !vm_txs.is_empty() {
                    for tx in vm_txs.iter().filter(|_| branch == Branch::Active) {
                        vm.remove(&tx.txid());
                    }
                    vm_txs.clear();
                    last = attempt(&vm_txs, &[]);
                }
                let mut taken: Vec<Inference> = Vec::new();
                for inf in inferences.iter().take(MAX_RETRIED_INFERENCES) {
                    taken.push(inf.clone());
                    match attempt(&vm_txs, &taken) {
                        Ok(b) => last = Ok(b),
                        Err(e) => {
                            warn!(target: "infer_node::producer", txid = %inf.stub.txid(), "inference dropped: {e}");
                            if branch == Branch::Active {
                                results.remove(&inf.stub.txid());
                            }
                            taken.pop();
                        }
                    }
                }
                last
            }
        };
        let block = match block {
            Ok(b) => b,
            Err(e) => {
                warn!(target: "infer_node::producer", %anchor, "cannot produce the tenure block: {e}");
                restored.undo(vm, results);
                return None;
            }
        };
        match chain.accept(ledger, block.clone()) {
            Ok(id) => {
                info!(
                    target: "infer_node::producer",
                    height = block.header.height,
                    id = %hex::encode(id),
                    ledger_height = block.header.ledger_height,
                    beside_the_tip = branch == Branch::Beside,
                    "inference block produced"
                );
                Some(block)
            }
            Err(e) => {
                warn!(target: "infer_node::producer", "own tenure block refused: {e}");
                restored.undo(vm, results);
                None
            }
        }
    }

    /// Pays `outputs` from this node's spendable coins (change back to it) into the
    /// mempool, to gossip; returns the transaction id.
    fn pay(
        &mut self,
        ledger: &Chainstate,
        mempool: &mut Mempool,
        outputs: Vec<TxOut>,
    ) -> Result<Txid, String> {
        let paid = pay_preferring(
            ledger,
            mempool,
            &self.key,
            self.fee,
            outputs,
            self.last_change,
        )?;
        self.outbox.push(paid.bytes);
        self.last_change = paid.change;
        Ok(paid.txid)
    }
}

/// Inputs one payment of the node takes at most.
const MAX_INPUTS: usize = 100;

/// Pays `outputs` from the spendable coins of `key` not spent in the mempool, the
/// largest first (change back to it), with `fee` plus 200 base units per input; into
/// the mempool. Returns the transaction id and bytes.
pub fn pay_from(
    ledger: &Chainstate,
    mempool: &mut Mempool,
    key: &SecretKey,
    fee: Amount,
    outputs: Vec<TxOut>,
) -> Result<(Txid, Vec<u8>), String> {
    pay_preferring(ledger, mempool, key, fee, outputs, None).map(|p| (p.txid, p.bytes))
}

/// A payment made: its id, its bytes, and its change output if it has one.
pub struct Paid {
    pub txid: Txid,
    pub bytes: Vec<u8>,
    pub change: Option<OutPoint>,
}

/// [`pay_from`], spending `prefer` alone when it is a spendable coin of `key` that
/// covers the payment (the change of the payer's last payment, found without a walk of
/// the index by owner), else coins from that index.
pub fn pay_preferring(
    ledger: &Chainstate,
    mempool: &mut Mempool,
    key: &SecretKey,
    fee: Amount,
    mut outputs: Vec<TxOut>,
    prefer: Option<OutPoint>,
) -> Result<Paid, String> {
    use fai_ledger::coins::UtxoView;
    let address = key.public_key().hash160();
    let sending = outputs
        .iter()
        .try_fold(Amount::ZERO, |sum, o| sum.checked_add(o.value))
        .ok_or("amounts overflow")?;
    let maturity = ledger.params().coinbase_maturity;
    let height = ledger.height();
    let spendable = |o: &OutPoint, c: &fai_ledger::coins::Coin| {
        c.output.kind == OutputKind::PayToKeyHash(address)
            && (!c.coinbase || height.saturating_sub(c.height) >= maturity)
            && !mempool.spends(o)
    };
    let one_input = sending
        .checked_add(fee)
        .and_then(|n| n.checked_add(Amount::from_units(200).ok()?))
        .ok_or("amounts overflow")?;
    let preferred = prefer
        .and_then(|o| Some((o, ledger.utxos().coin(&o).ok().flatten()?)))
        .filter(|(o, c)| spendable(o, c) && c.output.value >= one_input);
    let mut candidates: Vec<_> = match preferred {
        Some(coin) => vec![coin],
        None => ledger
            .coins_of(&address)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(o, c)| spendable(o, c))
            .collect(),
    };
    candidates.sort_by_key(|(_, c)| std::cmp::Reverse(c.output.value));
    let (mut picked, mut total) = (Vec::new(), Amount::ZERO);
    let mut need = sending.checked_add(fee).ok_or("amounts overflow")?;
    for (outpoint, coin) in candidates.into_iter().take(MAX_INPUTS) {
        total = total
            .checked_add(coin.output.value)
            .ok_or("amounts overflow")?;
        picked.push((outpoint, coin.output));
        let per_input = Amount::from_units(200u64.saturating_mul(picked.len() as u64))
            .map_err(|e| e.to_string())?;
        need = sending
            .checked_add(fee)
            .and_then(|n| n.checked_add(per_input))
            .ok_or("amounts overflow")?;
        if total >= need {
            break;
        }
    }
    if picked.is_empty() || total < need {
        return Err(format!("not enough spendable coins ({total} of {need})"));
    }
    let change = total.checked_sub(need).ok_or("underflow")?;
    let change_at = if change.units() > 0 {
        outputs.push(TxOut::pay(change, address));
        u32::try_from(outputs.len().saturating_sub(1)).ok()
    } else {
        None
    };
    let tx = sign(ledger, &picked, key, outputs)?;
    let bytes = tx.to_bytes();
    let txid = mempool.accept(tx, ledger).map_err(|e| e.to_string())?;
    Ok(Paid {
        txid,
        bytes,
        change: change_at.map(|vout| OutPoint { txid, vout }),
    })
}

/// A transaction spending coins of `key` into `outputs`, signed.
fn sign(
    ledger: &Chainstate,
    coins: &[(OutPoint, TxOut)],
    key: &SecretKey,
    outputs: Vec<TxOut>,
) -> Result<Transaction, String> {
    let mut tx = Transaction {
        version: 1,
        inputs: coins
            .iter()
            .map(|(outpoint, _)| TxIn {
                prevout: *outpoint,
                sequence: SEQUENCE_FINAL,
                unlock: Unlock::Key {
                    pubkey: key.public_key(),
                    signature: Signature([0; 64]),
                },
            })
            .collect(),
        outputs,
        lock_time: 0,
    };
    let spent: Vec<(TxOut, SecretKey)> = coins
        .iter()
        .map(|(_, coin)| (coin.clone(), key.clone()))
        .collect();
    sign_transaction(&mut tx, ledger.params().magic, &spent).map_err(|e| e.to_string())?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn producer(clock: Arc<ManualClock>) -> Producer {
        let key = SecretKey::generate();
        let vrf = fai_inference_chain::sortition::vrf_key(&key);
        Producer::new(key, vrf, Vec::new(), Amount::ONE_FAI, clock)
    }

    /// A commit waits for the last tenure block still to come, also when the ledger blocks
    /// after it elected nobody (the burst of the refund at 800 requests: ledger 190
    /// elected a peer, 191 came 10 ms later with no commit, and a commit on the inference
    /// tip as it was named the block before 190's, built beside it at 192 and broke its
    /// commit phase's run). It does not wait once that block is the tip, nor past
    /// TENURE_LOOKBACK blocks of no tenure, nor for its own tenure (produced before it
    /// commits, or never).
    #[test]
    fn a_commit_waits_for_the_last_tenure_block_to_come_past_ledger_blocks_without_one() {
        let peer = Some(false);
        // Before: only the newest ledger block's tenure was waited for.
        assert_eq!(awaited_index(&[(191, None), (190, peer)], 189), Some(1));
        assert_eq!(awaited_index(&[(191, None), (190, peer)], 190), None);
        assert_eq!(awaited_index(&[(190, peer)], 189), Some(0));
        assert_eq!(awaited_index(&[(190, peer)], 190), None);
        let four_empty = [
            (194, None),
            (193, None),
            (192, None),
            (191, None),
            (190, peer),
        ];
        assert_eq!(awaited_index(&four_empty, 189), Some(4));
        assert_eq!(awaited_index(&[(192, None), (191, None)], 189), None);
        assert_eq!(awaited_index(&[], 189), None);
        assert_eq!(awaited_index(&[(191, None), (190, Some(true))], 189), None);
        assert_eq!(awaited_index(&[(190, Some(true))], 189), None);
    }

    /// A regtest ledger whose first 12 blocks pay `key`, mature under 101 more, and a
    /// mempool.
    fn funded_ledger(key: &SecretKey) -> (Chainstate, Mempool) {
        use fai_ledger::chainstate::SCHEMA;
        use fai_ledger::params::ChainParams;
        use fai_primitives::Network;
        let store = Arc::new(fai_storage::MemoryStore::open(SCHEMA).unwrap());
        let mut ledger =
            Chainstate::open(store, ChainParams::for_network(Network::Regtest)).unwrap();
        let me = key.public_key().hash160();
        fai_ledger::testkit::extend(&mut ledger, 12, me, 1_900_000_000).unwrap();
        fai_ledger::testkit::extend(&mut ledger, 101, Hash160([7; 20]), 1_900_000_000).unwrap();
        (ledger, empty_mempool())
    }

    fn empty_mempool() -> Mempool {
        Mempool::new(fai_ledger::mempool::MempoolConfig {
            max_bytes: 1 << 20,
            min_fee_rate: 1_000,
        })
    }

    fn inputs_of(bytes: &[u8]) -> Vec<OutPoint> {
        use fai_primitives::Decode;
        Transaction::from_bytes(bytes)
            .unwrap()
            .inputs
            .iter()
            .map(|i| i.prevout)
            .collect()
    }

    /// A producer commits in every ledger block; finding its coins through the index by
    /// owner walked past every coin it had spent since the store last compacted (bench
    /// growth: 70% of a block's time after 12,000 commits). It spends its last change
    /// first, by outpoint; and only a spendable coin of its own that covers the payment.
    #[test]
    fn a_payment_spends_the_last_change_first_when_it_can() {
        let key = SecretKey::generate();
        let (mut ledger, mut mempool) = funded_ledger(&key);
        let fee = Amount::from_units(10_000).unwrap();
        let pay = |amount: u64| {
            vec![TxOut::pay(
                Amount::from_units(amount).unwrap(),
                Hash160([3; 20]),
            )]
        };
        let first = pay_preferring(&ledger, &mut mempool, &key, fee, pay(1_000), None).unwrap();
        let change = first
            .change
            .expect("a payment of 1,000 units from a coinbase has change");
        assert_eq!(change.txid, first.txid);
        // Not mined yet, the change is no coin of the ledger: the index's coins are
        // spent (and not the one the first payment spends).
        let second =
            pay_preferring(&ledger, &mut mempool, &key, fee, pay(1_000), Some(change)).unwrap();
        assert!(!inputs_of(&second.bytes).contains(&change));
        // Mined: the change is spent alone.
        let txs = [&first.bytes, &second.bytes]
            .iter()
            .map(|b| <Transaction as fai_primitives::Decode>::from_bytes(b).unwrap())
            .collect();
        let block = fai_ledger::testkit::mine_on_tip(&ledger, txs, Hash160([7; 20]), None).unwrap();
        ledger.accept_block(block, 1_900_000_000).unwrap();
        mempool = empty_mempool();
        let third =
            pay_preferring(&ledger, &mut mempool, &key, fee, pay(1_000), Some(change)).unwrap();
        assert_eq!(inputs_of(&third.bytes), vec![change]);
        // Spent in the mempool now: another payment does not spend it twice.
        let fourth =
            pay_preferring(&ledger, &mut mempool, &key, fee, pay(1_000), Some(change)).unwrap();
        assert!(!inputs_of(&fourth.bytes).contains(&change));
        // Too small for the payment: the index's coins instead.
        let coin = |o: &OutPoint| {
            use fai_ledger::coins::UtxoView;
            ledger
                .utxos()
                .coin(o)
                .unwrap()
                .unwrap()
                .output
                .value
                .units()
        };
        let big = coin(&change).saturating_mul(2);
        let mut fresh = empty_mempool();
        let large = pay_preferring(&ledger, &mut fresh, &key, fee, pay(big), Some(change)).unwrap();
        assert!(inputs_of(&large.bytes).len() >= 2);
        // Someone else's coin named as the change: not spent (it could not be signed for).
        let theirs = OutPoint {
            txid: ledger
                .block(&ledger.hash_at(13).unwrap())
                .unwrap()
                .unwrap()
                .transactions[0]
                .txid(),
            vout: 0,
        };
        let mut fresh = empty_mempool();
        let paid =
            pay_preferring(&ledger, &mut fresh, &key, fee, pay(1_000), Some(theirs)).unwrap();
        assert!(!inputs_of(&paid.bytes).contains(&theirs));
    }

    /// A block holds what its verifiers replay before the commit phase can end: half as
    /// much on one-second blocks, the full 1,000 from two-second blocks on.
    #[test]
    fn a_block_holds_fewer_inferences_on_a_fast_ledger() {
        assert_eq!(max_block_inferences(1), 500);
        assert_eq!(max_block_inferences(2), 1_000);
        assert_eq!(max_block_inferences(5), 1_000);
        assert_eq!(max_block_inferences(120), 1_000);
        assert_eq!(max_block_inferences(u64::MAX), 1_000);
        assert_eq!(max_block_inferences(0), 1);
    }

    /// A wait that ran out is not started again for the same tenure at the ledger blocks
    /// after it that elect nobody: the producer remembers the one it gave up on.
    #[test]
    fn a_tenure_given_up_on_is_not_waited_for_again() {
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let mut p = producer(clock.clone());
        p.awaiting = Some((Hash256([1; 32]), clock.now()));
        p.awaited = Some(Hash256([9; 32]));
        assert_eq!(p.give_up(), Some(Hash256([1; 32])));
        assert_eq!(p.gave_up_on, Some(Hash256([9; 32])));
        assert_eq!((p.awaiting, p.awaited), (None, None));
        assert_eq!(p.give_up(), None, "nothing awaited any more");
        assert_eq!(p.gave_up_on, Some(Hash256([9; 32])));
    }

    /// The wait for a peer's tenure block (and, the same way, for the parent's votes) is a
    /// share of the block spacing on the producer's clock: exact, however loaded the machine.
    #[test]
    fn the_waits_end_at_their_share_of_the_spacing_on_the_producers_clock() {
        let clock = Arc::new(ManualClock::new(1_700_000_000));
        let mut p = producer(clock.clone());
        let spacing = 10;
        assert!(!p.overdue(spacing), "nothing is awaited yet");
        p.awaiting = Some((Hash256([1; 32]), clock.now()));
        clock.advance(Duration::from_millis(5_999));
        assert!(!p.overdue(spacing));
        clock.advance(Duration::from_millis(1));
        assert!(p.overdue(spacing), "0.6 x the spacing has passed");
        // However long the machine takes, the clock says how long was waited.
        let since = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(p.waited(since), Duration::ZERO);
    }

    /// Buyers 1 to `n`, each with the answers at nonces `0..per_buyer` waiting (the
    /// ones from `expiring_at` on expiring at height 50, the others at 100), in a pool;
    /// and the buyers' addresses.
    fn buyers_waiting(n: u8, per_buyer: u64, expiring_at: u64) -> (ResultPool, Vec<[u8; 20]>) {
        let mut pool = ResultPool::default();
        let senders = (1..=n)
            .map(|b| add_buyer(&mut pool, b, per_buyer, expiring_at))
            .collect();
        (pool, senders)
    }

    /// Adds buyer `b`'s answers at nonces `0..per_buyer` to `pool` (from `expiring_at`
    /// on expiring at height 50, the others at 100); the buyer's address.
    fn add_buyer(pool: &mut ResultPool, b: u8, per_buyer: u64, expiring_at: u64) -> [u8; 20] {
        use crate::result_pool::tests::served_expiring;
        let node = SecretKey::from_bytes(&[99; 32]).unwrap();
        let buyer = SecretKey::from_bytes(&[b; 32]).unwrap();
        for nonce in 0..per_buyer {
            let expiry = if nonce >= expiring_at { 50 } else { 100 };
            let served = served_expiring(&buyer, &node, nonce, expiry);
            pool.add(served.inference).unwrap();
        }
        buyer.public_key().hash160().0
    }

    /// Room for `inferences` and, at one microsecond each, as many of replay; bytes
    /// aplenty.
    fn room_for(inferences: usize) -> Room {
        Room {
            inferences: 1_000,
            bytes: 1 << 20,
            replay_us: inferences as u64,
        }
    }

    fn senders_of(infs: &[Inference]) -> Vec<[u8; 20]> {
        infs.iter().map(|i| i.stub.sender.hash160().0).collect()
    }

    /// The nonces of `sender`'s inferences in `infs`, in their order there.
    fn nonces_of(infs: &[Inference], sender: &[u8; 20]) -> Vec<u64> {
        infs.iter()
            .filter(|i| i.stub.sender.hash160().0 == *sender)
            .map(|i| i.stub.nonce)
            .collect()
    }

    /// A block takes the senders' runs in turns, one inference each per round: four
    /// buyers with 8 answers waiting each and a block with room for 4 carries one of
    /// each (taken run after run, one buyer's run filled it, block after block, the
    /// same buyer first in the pool's order); for 6, two of two buyers. Each run stays
    /// in nonce order.
    #[test]
    fn a_block_takes_the_senders_runs_in_turns() {
        let (pool, senders) = buyers_waiting(4, 8, 8);
        let select = |room: Room, salt: u8| {
            select_inferences(&pool, &[], |_| Some(0), 10, &[salt; 32], room, |_| 1)
        };
        for salt in 0..8 {
            let block = select(room_for(4), salt);
            let mut took = senders_of(&block);
            took.sort();
            let mut each = senders.clone();
            each.sort();
            assert_eq!(took, each, "salt {salt}: not one of each");
            let six = select(room_for(6), salt);
            assert_eq!(six.len(), 6);
            let mut twos = 0;
            for sender in &senders {
                let nonces = nonces_of(&six, sender);
                assert!(nonces == vec![0] || nonces == vec![0, 1], "{nonces:?}");
                twos += usize::from(nonces.len() == 2);
            }
            assert_eq!(twos, 2, "salt {salt}");
        }
        // Accounts are read only for the runs that could get a turn: with room for 2,
        // two of the four.
        let reads = std::cell::Cell::new(0);
        let counting = |_: [u8; 20]| {
            reads.set(reads.get() + 1);
            Some(0)
        };
        let capped_two = Room {
            inferences: 2,
            ..room_for(100)
        };
        let two = select_inferences(&pool, &[], counting, 10, &[0; 32], capped_two, |_| 1);
        assert_eq!((two.len(), reads.get()), (2, 2));
        // The count cap holds as the budget does.
        let capped = Room {
            inferences: 3,
            ..room_for(100)
        };
        assert_eq!(select(capped, 0).len(), 3);
        // With room for all, all 32, each run whole and in order.
        let all = select(room_for(100), 0);
        assert_eq!(all.len(), 32);
        for sender in &senders {
            assert_eq!(nonces_of(&all, sender), (0..8).collect::<Vec<u64>>());
        }
    }

    /// Which sender goes first is drawn anew at each block (from its anchor), so no
    /// buyer is always first: with room for one inference, over 16 anchors each of two
    /// buyers is taken.
    #[test]
    fn the_first_sender_changes_with_the_anchor() {
        let (pool, senders) = buyers_waiting(2, 4, 4);
        let firsts: std::collections::HashSet<[u8; 20]> = (0..16u8)
            .flat_map(|salt| {
                let block =
                    select_inferences(&pool, &[], |_| Some(0), 10, &[salt; 32], room_for(1), |_| 1);
                senders_of(&block)
            })
            .collect();
        assert_eq!(firsts.len(), senders.len());
    }

    /// A run ends at its first answer expired at the block's height (it would fail the
    /// block, and what follows it needs its nonce), at the first that does not fit the
    /// block's bytes, and where its sender's account is not readable; the other runs go
    /// on. The first inference goes in however much it costs.
    #[test]
    fn a_run_ends_at_an_expired_answer_or_one_that_does_not_fit() {
        // Buyers 1 and 2: nonces 0 and 1 expire at 100, 2 and 3 at 50.
        let (pool, senders) = buyers_waiting(2, 4, 2);
        let take = |height: u32, room: Room| {
            select_inferences(&pool, &[], |_| Some(0), height, &[0; 32], room, |_| 1)
        };
        assert_eq!(take(50, room_for(100)).len(), 8);
        let at_51 = take(51, room_for(100));
        assert_eq!(at_51.len(), 4);
        assert!(at_51.iter().all(|i| i.stub.nonce < 2));
        assert!(take(101, room_for(100)).is_empty());
        // From nonce 1 on (buyer 1's account past 0), buyer 1's run is 1 alone; an
        // unreadable account leaves its sender out.
        let nonces = |s: [u8; 20]| if s == senders[0] { Some(1) } else { None };
        let partial = select_inferences(&pool, &[], nonces, 51, &[0; 32], room_for(100), |_| 1);
        assert_eq!(senders_of(&partial), vec![senders[0]]);
        assert_eq!(partial[0].stub.nonce, 1);
        // Bytes for three inferences: three go in, whatever the replay budget.
        let one = take(10, room_for(1))[0].to_bytes().len();
        let three = take(
            10,
            Room {
                bytes: 3 * one + one / 2,
                ..room_for(100)
            },
        );
        assert_eq!(three.len(), 3);
        // One run ending does not end the others: buyer 3's answers expire from nonce 1
        // on, buyer 4's at 100; at height 51 buyer 3 gives nonce 0, buyer 4 all four.
        let mut mixed = ResultPool::default();
        let three = add_buyer(&mut mixed, 3, 4, 1);
        let four = add_buyer(&mut mixed, 4, 4, 4);
        for salt in 0..4u8 {
            let block = select_inferences(
                &mixed,
                &[],
                |_| Some(0),
                51,
                &[salt; 32],
                room_for(100),
                |_| 1,
            );
            assert_eq!(nonces_of(&block, &three), vec![0], "salt {salt}");
            assert_eq!(nonces_of(&block, &four), vec![0, 1, 2, 3], "salt {salt}");
            // Buyer 3's nonce 1 costs more than the budget left: its run ends there,
            // buyer 4's goes on (2 + 3 = 5 of 6).
            let dear = |inf: &Inference| {
                let from_three = inf.stub.sender.hash160().0 == three;
                if from_three && inf.stub.nonce == 1 {
                    10
                } else {
                    1
                }
            };
            let block =
                select_inferences(&mixed, &[], |_| Some(0), 10, &[salt; 32], room_for(6), dear);
            assert_eq!(nonces_of(&block, &three), vec![0], "salt {salt}");
            assert_eq!(nonces_of(&block, &four), vec![0, 1, 2, 3], "salt {salt}");
        }
        // A first inference over the whole budget goes in alone.
        let costly = select_inferences(&pool, &[], |_| Some(0), 10, &[0; 32], room_for(1), |_| 5);
        assert_eq!(costly.len(), 1);
    }
}
