//! The chainstate: every stored block with its index entry, the UTXO set of the active
//! chain, undo data, and most-work fork choice with reorganisations of any depth the
//! node has blocks for.
//!
//! Each block connected or disconnected is one atomic write batch (UTXO changes, undo
//! data, tip, supply), so a crash leaves the database at some block boundary; on the next
//! start the node resumes from there and finishes any reorganisation it was in.
//!
//! Fork choice: the valid chain with the most cumulative work wins; among equal work, the
//! branch seen first stays. A branch with less work is stored and kept aside when it was
//! asked for (the sync fetches a branch whose headers show more work); a block nobody
//! asked for (gossip) is stored only if its chain has at least the active chain's work,
//! so that cheap blocks of a fork from far back cannot fill the disk. The best candidate
//! is read from a set ordered by work, not found by scanning every stored block.

mod index;
mod orphans;

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use fai_primitives::{Amount, Decode, Encode, Hash256};
use fai_storage::{KeyValueStore, Schema, Table, WriteBatch, META_COLUMN};
use primitive_types::U256;
use tracing::{info, warn};

pub use index::{BlockStatus, IndexEntry};
pub use orphans::{OrphanPool, MAX_ORPHANS};

use crate::block::Block;
use crate::coins::{BlockUndo, Coin, UtxoView};
use crate::params::{ChainParams, MEDIAN_TIME_SPAN};
use crate::pow::{target_from_compact, work_from_target};
use crate::tx::OutPoint;
use crate::validation::connect::connect_block;
use crate::validation::header::{check_header, median_time, required_bits, HeaderContext};
use crate::validation::stateless::check_block;
use crate::{ChainError, ConsensusError};

const HEADERS: Table<Hash256, IndexEntry> = Table::new("block_index");
const BLOCKS: Table<Hash256, Block> = Table::new("blocks");
const UNDO: Table<Hash256, BlockUndo> = Table::new("undo");
const UTXO: Table<OutPoint, Coin> = Table::new("utxo");
/// The UTXO set again, by owner: hash160 of a pay-to-key-hash output's key, then the
/// outpoint -> the coin. Written in the same batches as `utxo`, so that a node finds the
/// coins of one key without reading the whole set.
const COINS_BY_KEY: &str = "coins_by_key";
/// The most coins [`Chainstate::coins_of`] returns for one key.
pub const MAX_COINS_OF: usize = 100_000;

const KEY_GENESIS: &[u8] = b"genesis";
const KEY_TIP: &[u8] = b"tip";
const KEY_SUPPLY: &[u8] = b"supply";

/// The ledger's tables and their layout version.
pub const SCHEMA: Schema = Schema {
    columns: &["block_index", "blocks", "undo", "utxo", COINS_BY_KEY],
    // 2: the coins by owner (`coins_by_key`).
    format_version: 2,
};

/// The key of `outpoint` in [`COINS_BY_KEY`], when its output pays to a key hash.
fn owner_key(output: &crate::tx::TxOut, outpoint: &OutPoint) -> Option<Vec<u8>> {
    match output.kind {
        crate::tx::OutputKind::PayToKeyHash(owner) => {
            let mut key = owner.0.to_vec();
            outpoint.encode_to(&mut key);
            Some(key)
        }
        _ => None,
    }
}

/// A change of the active chain, in the order it happened.
#[derive(Debug, Clone)]
pub enum ChainEvent {
    Connected { height: u32, block: Arc<Block> },
    Disconnected { height: u32, block: Arc<Block> },
}

/// What became of a block handed to [`Chainstate::accept_block`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Already stored.
    Duplicate,
    /// Parent unknown: kept in the orphan pool.
    Orphan,
    /// Stored; its branch has no more work than the active chain.
    SideBranch,
    /// Stored and the active chain moved (to it or to a branch it completed).
    TipChanged,
}

/// The chain state over a key-value store.
pub struct Chainstate {
    params: ChainParams,
    store: Arc<dyn KeyValueStore>,
    index: HashMap<Hash256, IndexEntry>,
    /// The stored blocks not known to be invalid, by chain work and then arrival (first
    /// seen first): the last is the best candidate for the active tip.
    candidates: BTreeSet<(U256, Reverse<u64>, Hash256)>,
    /// Hashes of the active chain by height.
    active: Vec<Hash256>,
    supply: Amount,
    orphans: OrphanPool,
    next_sequence: u64,
    /// Changes of the active chain not yet taken by [`Chainstate::take_events`].
    events: Vec<ChainEvent>,
}

/// The UTXO set as stored.
struct StoredUtxos<'a>(&'a dyn KeyValueStore);

impl UtxoView for StoredUtxos<'_> {
    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, ChainError> {
        Ok(UTXO.get(self.0, outpoint)?)
    }
}

impl Chainstate {
    /// Opens the chainstate in `store`, creating genesis in a new one.
    ///
    /// Errors: [`ChainError::WrongNetwork`] when the store holds another network's chain,
    /// [`ChainError::Corrupt`] when the stored index does not hang together, and storage
    /// errors.
    pub fn open(store: Arc<dyn KeyValueStore>, params: ChainParams) -> Result<Self, ChainError> {
        let genesis = params.genesis_block();
        let genesis_hash = genesis.hash();
        let mut chain = Chainstate {
            params,
            store,
            index: HashMap::new(),
            candidates: BTreeSet::new(),
            active: Vec::new(),
            supply: Amount::ZERO,
            orphans: OrphanPool::default(),
            next_sequence: 0,
            events: Vec::new(),
        };
        match chain.meta_hash(KEY_GENESIS)? {
            Some(found) if found != genesis_hash => {
                return Err(ChainError::WrongNetwork {
                    network: chain.params.network.name(),
                    expected: genesis_hash,
                    found,
                });
            }
            Some(_) => chain.load()?,
            None => chain.init_genesis(genesis)?,
        }
        // Finish a reorganisation a crash may have cut short.
        for (bad, e) in chain.activate_best_chain()? {
            warn!(target: "infer_node::ledger", block = %bad, "stored block failed to connect: {e}");
        }
        Ok(chain)
    }

    /// Puts an index entry in memory, keeping the candidates in step.
    fn put_entry(&mut self, hash: Hash256, entry: IndexEntry) {
        if let Some(old) = self.index.get(&hash) {
            self.candidates
                .remove(&(old.chain_work, Reverse(old.sequence), hash));
        }
        if entry.status != BlockStatus::Failed {
            self.candidates
                .insert((entry.chain_work, Reverse(entry.sequence), hash));
        }
        self.index.insert(hash, entry);
    }

    fn init_genesis(&mut self, genesis: Block) -> Result<(), ChainError> {
        let hash = genesis.hash();
        let target = target_from_compact(genesis.header.bits).map_err(ConsensusError::from)?;
        let entry = IndexEntry {
            header: genesis.header,
            height: 0,
            chain_work: work_from_target(target),
            status: BlockStatus::Connected,
            sequence: 0,
        };
        let mut batch = WriteBatch::new();
        HEADERS.put(&mut batch, &hash, &entry);
        BLOCKS.put(&mut batch, &hash, &genesis);
        UNDO.put(&mut batch, &hash, &BlockUndo::default());
        batch.put(META_COLUMN, KEY_GENESIS.to_vec(), hash.to_bytes());
        batch.put(META_COLUMN, KEY_TIP.to_vec(), hash.to_bytes());
        batch.put(META_COLUMN, KEY_SUPPLY.to_vec(), Amount::ZERO.to_bytes());
        self.store.write(batch)?;
        self.put_entry(hash, entry);
        self.active = vec![hash];
        self.next_sequence = 1;
        Ok(())
    }

    fn load(&mut self) -> Result<(), ChainError> {
        for (hash, entry) in HEADERS.entries(self.store.as_ref())? {
            self.next_sequence = self.next_sequence.max(entry.sequence.saturating_add(1));
            self.put_entry(hash, entry);
        }
        let tip = self
            .meta_hash(KEY_TIP)?
            .ok_or_else(|| ChainError::Corrupt("no tip recorded".into()))?;
        let mut active = Vec::new();
        let mut cursor = tip;
        loop {
            let entry = self
                .index
                .get(&cursor)
                .ok_or_else(|| ChainError::Corrupt(format!("active block {cursor} not indexed")))?;
            active.push(cursor);
            if entry.height == 0 {
                break;
            }
            cursor = entry.header.prev;
        }
        active.reverse();
        self.active = active;
        self.supply = match self.store.get(META_COLUMN, KEY_SUPPLY)? {
            Some(bytes) => Amount::from_bytes(&bytes)
                .map_err(|e| ChainError::Corrupt(format!("stored supply: {e}")))?,
            None => return Err(ChainError::Corrupt("no supply recorded".into())),
        };
        Ok(())
    }

    fn meta_hash(&self, key: &[u8]) -> Result<Option<Hash256>, ChainError> {
        match self.store.get(META_COLUMN, key)? {
            None => Ok(None),
            Some(bytes) => Hash256::from_bytes(&bytes).map(Some).map_err(|e| {
                ChainError::Corrupt(format!("meta {}: {e}", String::from_utf8_lossy(key)))
            }),
        }
    }

    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Height of the active tip.
    pub fn height(&self) -> u32 {
        u32::try_from(self.active.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    pub fn tip_hash(&self) -> Hash256 {
        self.active.last().copied().unwrap_or(Hash256::ZERO)
    }

    pub fn tip(&self) -> Result<&IndexEntry, ChainError> {
        self.entry(&self.tip_hash())
            .ok_or_else(|| ChainError::Corrupt("tip not indexed".into()))
    }

    /// The ledger supply issued by the active chain.
    pub fn supply(&self) -> Amount {
        self.supply
    }

    pub fn entry(&self, hash: &Hash256) -> Option<&IndexEntry> {
        self.index.get(hash)
    }

    /// The active chain's block hash at `height`.
    pub fn hash_at(&self, height: u32) -> Option<Hash256> {
        self.active.get(usize::try_from(height).ok()?).copied()
    }

    pub fn is_active(&self, hash: &Hash256) -> bool {
        self.entry(hash)
            .is_some_and(|e| self.hash_at(e.height) == Some(*hash))
    }

    pub fn block(&self, hash: &Hash256) -> Result<Option<Block>, ChainError> {
        Ok(BLOCKS.get(self.store.as_ref(), hash)?)
    }

    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// The UTXO set of the active chain.
    pub fn utxos(&self) -> impl UtxoView + '_ {
        StoredUtxos(self.store.as_ref())
    }

    /// Every unspent coin; for tests and small chains (it reads the whole set).
    pub fn all_coins(&self) -> Result<Vec<(OutPoint, Coin)>, ChainError> {
        Ok(UTXO.entries(self.store.as_ref())?)
    }

    /// The unspent coins paying to key hash `owner` (at most [`MAX_COINS_OF`]), read
    /// from the index by owner: what a node spending its own coins or a wallet asking for
    /// its coins needs, at a cost that does not grow with the UTXO set.
    pub fn coins_of(
        &self,
        owner: &fai_primitives::Hash160,
    ) -> Result<Vec<(OutPoint, Coin)>, ChainError> {
        let mut upper = owner.0.to_vec();
        upper.extend([0xff; 64]);
        let rows = self
            .store
            .scan_back(COINS_BY_KEY, &owner.0, &upper, MAX_COINS_OF)?;
        let corrupt = |what: &str| ChainError::Corrupt(format!("coins by key: {what}"));
        rows.into_iter()
            .map(|(key, value)| {
                let at = key.get(20..).ok_or_else(|| corrupt("a short key"))?;
                let outpoint = OutPoint::from_bytes(at).map_err(|e| corrupt(&e.to_string()))?;
                let coin = Coin::from_bytes(&value).map_err(|e| corrupt(&e.to_string()))?;
                Ok((outpoint, coin))
            })
            .collect()
    }

    /// Median time past of the block `hash` and its ten ancestors.
    pub fn median_time_past(&self, hash: &Hash256) -> u32 {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cursor = self.index.get(hash);
        while let Some(e) = cursor {
            times.push(e.header.time);
            if times.len() == MEDIAN_TIME_SPAN || e.height == 0 {
                break;
            }
            cursor = self.index.get(&e.header.prev);
        }
        median_time(&times)
    }

    /// Height, required bits and median time past for a block on top of the tip.
    pub fn next_block_context(&self) -> Result<(u32, u32, u32), ChainError> {
        let tip = self.tip()?;
        let height = tip
            .height
            .checked_add(1)
            .ok_or_else(|| ChainError::Corrupt("height overflow".into()))?;
        let bits = self.required_bits(&self.tip_hash())?;
        Ok((height, bits, self.median_time_past(&self.tip_hash())))
    }

    /// The bits a child of the stored block `parent` must carry.
    pub fn required_bits(&self, parent: &Hash256) -> Result<u32, ChainError> {
        let entry = self
            .entry(parent)
            .ok_or_else(|| ChainError::Corrupt(format!("block {parent} not indexed")))?;
        Ok(required_bits(
            &self.params,
            entry.height,
            entry.header.time,
            self.anchor_time(parent),
        ))
    }

    /// The time of block 1 on the branch of `hash` (the difficulty anchor).
    fn anchor_time(&self, hash: &Hash256) -> Option<u32> {
        let anchor = self.ancestor(hash, 1)?;
        self.entry(&anchor).map(|e| e.header.time)
    }

    /// The ancestor of `hash` at `height`: through the active chain's height index as soon
    /// as the walk back reaches it, so only side-branch blocks are visited one by one.
    pub fn ancestor(&self, hash: &Hash256, height: u32) -> Option<Hash256> {
        let mut cursor = *hash;
        loop {
            let entry = self.index.get(&cursor)?;
            if entry.height == height {
                return Some(cursor);
            }
            if entry.height < height {
                return None;
            }
            if self.hash_at(entry.height) == Some(cursor) {
                return self.hash_at(height);
            }
            cursor = entry.header.prev;
        }
    }

    /// Validates and stores `block`, moves the active chain to the most-work valid branch,
    /// and then does the same for any orphans that were waiting for it. `now` is the
    /// node's clock in Unix seconds. Changes of the active chain are queued for
    /// [`Chainstate::take_events`], whatever the result.
    ///
    /// Errors: the broken [`ConsensusError`] (nothing of the active chain changes; a block
    /// that failed only when connected is kept, marked invalid, so it is not fetched
    /// again), [`ChainError::InvalidAncestor`], or a storage error.
    pub fn accept_block(&mut self, block: Block, now: u64) -> Result<BlockOutcome, ChainError> {
        self.accept_block_with(block, now, None)
    }

    /// [`Chainstate::accept_block`] for a block nobody asked for (gossip): stored only if
    /// its chain has at least the active chain's work, else refused with
    /// [`ChainError::TooLittleWork`] and not stored (a fork from far back drops to the
    /// proof-of-work limit, so its blocks cost nearly nothing to make). A branch that
    /// really has more work reaches the node through the sync, which asks for it.
    pub fn accept_unrequested_block(
        &mut self,
        block: Block,
        now: u64,
    ) -> Result<BlockOutcome, ChainError> {
        let least = self.tip()?.chain_work;
        self.accept_block_with(block, now, Some(least))
    }

    fn accept_block_with(
        &mut self,
        block: Block,
        now: u64,
        least_work: Option<U256>,
    ) -> Result<BlockOutcome, ChainError> {
        let hash = block.hash();
        let outcome = self.accept_one(block, now, least_work)?;
        if outcome == BlockOutcome::Orphan || outcome == BlockOutcome::Duplicate {
            return Ok(outcome);
        }
        let tip_before = self.tip_hash();
        let failures = self.activate_best_chain()?;
        // Orphans waiting for this block, then for those.
        let mut parents = vec![hash];
        while let Some(parent) = parents.pop() {
            for child in self.orphans.take_children(&parent) {
                let child_hash = child.hash();
                // Orphans come from gossip: nobody asked for them, so they are held
                // to the tip's work like any unrequested block (the sync fetches them
                // again if their branch turns out to have more).
                let least = self.tip()?.chain_work;
                match self.accept_one(child, now, Some(least)) {
                    Ok(_) => {
                        for (bad, e) in self.activate_best_chain()? {
                            warn!(target: "infer_node::ledger", block = %bad, "orphan failed to connect: {e}");
                        }
                        parents.push(child_hash);
                    }
                    Err(ChainError::TooLittleWork(_)) => {}
                    Err(e) => {
                        warn!(target: "infer_node::ledger", %child_hash, "orphan rejected: {e}")
                    }
                }
            }
        }
        if self.entry(&hash).map(|e| e.status) == Some(BlockStatus::Failed) {
            return Err(match failures.into_iter().next() {
                Some((_, e)) => ChainError::Consensus(e),
                None => ChainError::InvalidAncestor(hash),
            });
        }
        Ok(if self.tip_hash() != tip_before {
            BlockOutcome::TipChanged
        } else {
            BlockOutcome::SideBranch
        })
    }

    /// Takes the changes of the active chain since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<ChainEvent> {
        std::mem::take(&mut self.events)
    }

    /// Checks and stores one block without moving the tip; with `least_work`, only if its
    /// chain has that much work.
    fn accept_one(
        &mut self,
        block: Block,
        now: u64,
        least_work: Option<U256>,
    ) -> Result<BlockOutcome, ChainError> {
        let hash = block.hash();
        if let Some(e) = self.index.get(&hash) {
            return match e.status {
                BlockStatus::Failed => Err(ChainError::InvalidAncestor(hash)),
                _ => Ok(BlockOutcome::Duplicate),
            };
        }
        if self.orphans.contains(&hash) {
            return Ok(BlockOutcome::Duplicate);
        }
        check_block(&block, &self.params)?;
        let Some(parent) = self.index.get(&block.header.prev).cloned() else {
            let size = block.to_bytes().len();
            self.orphans.insert(block, size);
            return Ok(BlockOutcome::Orphan);
        };
        if parent.status == BlockStatus::Failed {
            return Err(ChainError::InvalidAncestor(block.header.prev));
        }
        let ctx = HeaderContext {
            parent_height: parent.height,
            parent_time: parent.header.time,
            anchor_time: self.anchor_time(&block.header.prev),
            median_time_past: self.median_time_past(&block.header.prev),
            now,
        };
        check_header(&block.header, &ctx, &self.params)?;
        let target = target_from_compact(block.header.bits).map_err(ConsensusError::from)?;
        let work = parent.chain_work.saturating_add(work_from_target(target));
        if let Some(least) = least_work {
            if work < least {
                return Err(ChainError::TooLittleWork(hash));
            }
        }
        let entry = IndexEntry {
            header: block.header,
            height: parent
                .height
                .checked_add(1)
                .ok_or_else(|| ChainError::Corrupt("height overflow".into()))?,
            chain_work: work,
            status: BlockStatus::HeaderValid,
            sequence: self.next_sequence,
        };
        self.next_sequence = self.next_sequence.saturating_add(1);
        let mut batch = WriteBatch::new();
        HEADERS.put(&mut batch, &hash, &entry);
        BLOCKS.put(&mut batch, &hash, &block);
        self.store.write(batch)?;
        self.put_entry(hash, entry);
        Ok(BlockOutcome::SideBranch)
    }

    /// The stored, not-failed block with the most work (first seen among equals).
    fn best_candidate(&self) -> Option<(Hash256, U256)> {
        self.candidates
            .iter()
            .next_back()
            .map(|(work, _, hash)| (*hash, *work))
    }

    /// Moves the active chain to the best candidate, marking blocks that fail to connect
    /// (and their descendants) as failed and trying again until the tip is the best valid
    /// chain.
    /// Returns the blocks that failed, with the rule each broke.
    fn activate_best_chain(&mut self) -> Result<Vec<(Hash256, ConsensusError)>, ChainError> {
        let mut failures = Vec::new();
        loop {
            let tip_work = self.tip()?.chain_work;
            let Some((best, best_work)) = self.best_candidate() else {
                break;
            };
            if best_work <= tip_work || best == self.tip_hash() {
                break;
            }
            match self.reorganise_to(best) {
                Ok(()) => {}
                Err((bad, ChainError::Consensus(e))) => {
                    warn!(target: "infer_node::ledger", block = %bad, "block failed to connect: {e}");
                    self.mark_failed(bad)?;
                    failures.push((bad, e));
                }
                Err((_, e)) => return Err(e),
            }
        }
        Ok(failures)
    }

    /// Disconnects back to the fork point with `target`'s branch, then connects that
    /// branch. On failure, returns the block that could not be connected.
    fn reorganise_to(&mut self, target: Hash256) -> Result<(), (Hash256, ChainError)> {
        let mut path = Vec::new();
        let mut cursor = target;
        while !self.is_active(&cursor) {
            path.push(cursor);
            let Some(e) = self.index.get(&cursor) else {
                return Err((
                    cursor,
                    ChainError::Corrupt(format!("block {cursor} not indexed")),
                ));
            };
            cursor = e.header.prev;
        }
        let fork = cursor;
        let depth = self.active.len();
        while self.tip_hash() != fork {
            let event = self.disconnect_tip().map_err(|e| (fork, e))?;
            self.events.push(event);
        }
        let disconnected = depth.saturating_sub(self.active.len());
        if disconnected > 0 {
            info!(target: "infer_node::ledger", depth = disconnected, fork = %fork, new_tip = %target, "reorganising");
        }
        for hash in path.into_iter().rev() {
            let event = self.connect(hash).map_err(|e| (hash, e))?;
            self.events.push(event);
        }
        Ok(())
    }

    fn connect(&mut self, hash: Hash256) -> Result<ChainEvent, ChainError> {
        let block = self
            .block(&hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("block {hash} indexed but not stored")))?;
        let mut entry = self
            .index
            .get(&hash)
            .cloned()
            .ok_or_else(|| ChainError::Corrupt(format!("block {hash} not indexed")))?;
        let mtp = self.median_time_past(&block.header.prev);
        let changes = connect_block(
            &block,
            entry.height,
            mtp,
            &StoredUtxos(self.store.as_ref()),
            &self.params,
            self.supply,
        )?;
        let supply = self
            .supply
            .checked_add(changes.undo.minted)
            .ok_or(ConsensusError::SupplyCapExceeded)?;
        let mut batch = WriteBatch::new();
        for spent in &changes.undo.spent {
            UTXO.delete(&mut batch, &spent.outpoint);
            if let Some(key) = owner_key(&spent.coin.output, &spent.outpoint) {
                batch.delete(COINS_BY_KEY, key);
            }
        }
        for (outpoint, coin) in &changes.created {
            UTXO.put(&mut batch, outpoint, coin);
            if let Some(key) = owner_key(&coin.output, outpoint) {
                batch.put(COINS_BY_KEY, key, coin.to_bytes());
            }
        }
        UNDO.put(&mut batch, &hash, &changes.undo);
        entry.status = BlockStatus::Connected;
        HEADERS.put(&mut batch, &hash, &entry);
        batch.put(META_COLUMN, KEY_TIP.to_vec(), hash.to_bytes());
        batch.put(META_COLUMN, KEY_SUPPLY.to_vec(), supply.to_bytes());
        self.store.write(batch)?;
        let height = entry.height;
        self.put_entry(hash, entry);
        self.active.push(hash);
        self.supply = supply;
        Ok(ChainEvent::Connected {
            height,
            block: Arc::new(block),
        })
    }

    fn disconnect_tip(&mut self) -> Result<ChainEvent, ChainError> {
        let hash = self.tip_hash();
        let entry = self.tip()?.clone();
        if entry.height == 0 {
            return Err(ChainError::Corrupt("cannot disconnect genesis".into()));
        }
        let block = self
            .block(&hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("active block {hash} not stored")))?;
        let undo = UNDO
            .get(self.store.as_ref(), &hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("no undo data for active block {hash}")))?;
        let mut batch = WriteBatch::new();
        for tx in &block.transactions {
            let txid = tx.txid();
            for (vout, out) in tx.outputs.iter().enumerate() {
                if out.is_spendable() {
                    let vout = u32::try_from(vout)
                        .map_err(|_| ChainError::Corrupt("output index".into()))?;
                    let outpoint = OutPoint::new(txid, vout);
                    UTXO.delete(&mut batch, &outpoint);
                    if let Some(key) = owner_key(out, &outpoint) {
                        batch.delete(COINS_BY_KEY, key);
                    }
                }
            }
        }
        for spent in &undo.spent {
            UTXO.put(&mut batch, &spent.outpoint, &spent.coin);
            if let Some(key) = owner_key(&spent.coin.output, &spent.outpoint) {
                batch.put(COINS_BY_KEY, key, spent.coin.to_bytes());
            }
        }
        let supply = self
            .supply
            .checked_sub(undo.minted)
            .ok_or_else(|| ChainError::Corrupt("supply below a block's issuance".into()))?;
        UNDO.delete(&mut batch, &hash);
        batch.put(META_COLUMN, KEY_TIP.to_vec(), entry.header.prev.to_bytes());
        batch.put(META_COLUMN, KEY_SUPPLY.to_vec(), supply.to_bytes());
        self.store.write(batch)?;
        self.active.pop();
        self.supply = supply;
        Ok(ChainEvent::Disconnected {
            height: entry.height,
            block: Arc::new(block),
        })
    }

    /// Marks `bad` and every stored descendant as failed, on disk and in memory.
    fn mark_failed(&mut self, bad: Hash256) -> Result<(), ChainError> {
        let Some(bad_entry) = self.index.get(&bad) else {
            return Ok(());
        };
        let bad_height = bad_entry.height;
        let mut failed = Vec::new();
        for (hash, entry) in &self.index {
            let mut cursor = (*hash, entry);
            while cursor.1.height > bad_height {
                match self.index.get(&cursor.1.header.prev) {
                    Some(p) => cursor = (cursor.1.header.prev, p),
                    None => break,
                }
            }
            if cursor.0 == bad {
                failed.push(*hash);
            }
        }
        let mut batch = WriteBatch::new();
        for hash in failed {
            if let Some(e) = self.index.get_mut(&hash) {
                e.status = BlockStatus::Failed;
                HEADERS.put(&mut batch, &hash, e);
                self.candidates
                    .remove(&(e.chain_work, Reverse(e.sequence), hash));
            }
        }
        self.store.write(batch)?;
        Ok(())
    }
}
