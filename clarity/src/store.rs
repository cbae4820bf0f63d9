//! Contract state on the node's key-value store, addressed by inference block.
//!
//! **Choice: a versioned key space.** Every value the VM writes in block B at height h is
//! stored under `kind | len(key) | key | h | B` and never overwritten. To read key k as
//! seen from a block, the store walks k's versions from the greatest height at or below
//! the reading height downwards and takes the first whose block is on the reading chain
//! (`chain[h] == B`). Blocks on an orphaned fork therefore simply stop being visible:
//! when the ledger reorganises and the inference chain follows, state follows the
//! surviving chain with nothing to undo, and `at-block` can read any past block.
//!
//! Cost: a read is one reverse seek (plus one step per orphaned version of that key above
//! the answer); a write is one entry per changed key per block; old versions and orphaned
//! ones stay on disk until pruned (not done yet: the space grows with the number of
//! writes, as in a MARF). The chain of block ids by height is kept in memory for the
//! tips read last ([`crate::ancestry`]: 32 bytes a block, shared between a block and its
//! descendants), so that opening a view does not walk the block index down to genesis.
//!
//! Writes of the block being executed stay in memory ([`BlockStore`]) and reach the disk
//! in one atomic batch with the block's index entry when the block is committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use clarity::types::chainstate::{BlockHeaderHash, StacksBlockId};
use clarity::util::hash::Sha512Trunc256Sum;
use clarity::vm::database::clarity_store::{make_contract_hash_key, ContractCommitment};
use clarity::vm::database::{ClarityBackingStore, ClarityDeserializable};
use clarity::vm::errors::{CheckErrors, InterpreterResult, RuntimeErrorType};
use clarity::vm::types::QualifiedContractIdentifier;
use fai_primitives::codec::{Decode, Encode, Reader};
use fai_primitives::CodecError;
use fai_storage::{KeyValueStore, WriteBatch};
use sha2::{Digest, Sha256};

use crate::ancestry::{Ancestry, AncestryCache};
use crate::error::{ClarityError, Result};

/// The column of versioned values (data and contract metadata).
pub const STATE_COLUMN: &str = "clarity_state";
/// The column of the block index: id -> [`BlockInfo`], and consensus hash -> id.
pub const BLOCKS_COLUMN: &str = "clarity_blocks";

const KIND_DATA: u8 = b'd';
const KIND_META: u8 = b'm';
const INDEX_BLOCK: u8 = b'b';
const INDEX_CONSENSUS: u8 = b'c';
const INDEX_ROOT: u8 = b'r';

/// What the VM knows of an inference block: its place in the chain and its ledger anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub id: [u8; 32],
    /// The parent's id; the genesis block names itself.
    pub parent: [u8; 32],
    pub height: u32,
    /// The ledger block the inference block is anchored to.
    pub ledger_hash: [u8; 32],
    pub ledger_height: u32,
    /// Unix time of the ledger anchor.
    pub time: u64,
    pub vrf_seed: [u8; 32],
    /// Hash160 of the producer's key.
    pub producer: [u8; 20],
    /// Ledger FAI (base units) the producer's winning commit paid, and all commits of
    /// its sortition together.
    pub commit_spent: u64,
    pub commit_total: u64,
    /// The inference subsidy the block earned.
    pub reward: u64,
}

impl Encode for BlockInfo {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.id.encode_to(out);
        self.parent.encode_to(out);
        self.height.encode_to(out);
        self.ledger_hash.encode_to(out);
        self.ledger_height.encode_to(out);
        self.time.encode_to(out);
        self.vrf_seed.encode_to(out);
        self.producer.encode_to(out);
        self.commit_spent.encode_to(out);
        self.commit_total.encode_to(out);
        self.reward.encode_to(out);
    }
}

impl Decode for BlockInfo {
    fn decode_from(r: &mut Reader<'_>) -> std::result::Result<Self, CodecError> {
        Ok(BlockInfo {
            id: Decode::decode_from(r)?,
            parent: Decode::decode_from(r)?,
            height: Decode::decode_from(r)?,
            ledger_hash: Decode::decode_from(r)?,
            ledger_height: Decode::decode_from(r)?,
            time: Decode::decode_from(r)?,
            vrf_seed: Decode::decode_from(r)?,
            producer: Decode::decode_from(r)?,
            commit_spent: Decode::decode_from(r)?,
            commit_total: Decode::decode_from(r)?,
            reward: Decode::decode_from(r)?,
        })
    }
}

impl BlockInfo {
    /// The 20-byte consensus hash Clarity's burnchain lookups go through: the id's head.
    pub fn consensus_hash(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (o, b) in out.iter_mut().zip(self.id.iter()) {
            *o = *b;
        }
        out
    }
}

/// The versioned contract state of one database.
#[derive(Clone)]
pub struct ClarityStore {
    kv: Arc<dyn KeyValueStore>,
    /// The chains of the tips read last, shared by every clone of this store.
    ancestry: Arc<AncestryCache>,
}

fn versioned_prefix(kind: u8, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len().saturating_add(5));
    out.push(kind);
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn versioned_key(kind: u8, key: &str, height: u32, block: &[u8; 32]) -> Vec<u8> {
    let mut out = versioned_prefix(kind, key);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(block);
    out
}

fn metadata_key(contract: &QualifiedContractIdentifier, key: &str) -> String {
    format!("{contract}::{key}")
}

fn corrupt(detail: impl Into<String>) -> ClarityError {
    ClarityError::Storage(fai_storage::StorageError::Corrupt {
        column: STATE_COLUMN,
        detail: detail.into(),
    })
}

impl ClarityStore {
    pub fn new(kv: Arc<dyn KeyValueStore>) -> Self {
        ClarityStore {
            kv,
            ancestry: Arc::default(),
        }
    }

    /// The index entry of block `id`.
    pub fn block(&self, id: &[u8; 32]) -> Result<Option<BlockInfo>> {
        let mut key = vec![INDEX_BLOCK];
        key.extend_from_slice(id);
        match self.kv.get(BLOCKS_COLUMN, &key)? {
            None => Ok(None),
            Some(bytes) => BlockInfo::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| corrupt(format!("block index entry: {e}"))),
        }
    }

    /// The block whose consensus hash is `hash`.
    pub fn block_by_consensus_hash(&self, hash: &[u8; 20]) -> Result<Option<BlockInfo>> {
        let mut key = vec![INDEX_CONSENSUS];
        key.extend_from_slice(hash);
        match self.kv.get(BLOCKS_COLUMN, &key)? {
            None => Ok(None),
            Some(id) => {
                let id: [u8; 32] = id
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("consensus hash index entry"))?;
                self.block(&id)
            }
        }
    }

    /// The ids of the chain ending at `tip`, by height (genesis first): from the cached
    /// chain nearest below it, with one index read per block above that one (one for a
    /// new child of a cached tip).
    pub fn chain_to(&self, tip: &[u8; 32]) -> Result<Ancestry> {
        if let Some(chain) = self.ancestry.get(tip) {
            return Ok(chain);
        }
        // Walked from the tip down, until a block on a cached chain (or genesis). A
        // parent's height is its child's less one: it is looked for in the cache before
        // its index entry is read.
        let mut above = Vec::new();
        let mut at = *tip;
        let mut expected: Option<u32> = None;
        let mut chain = loop {
            if let Some(below) = expected.and_then(|h| self.ancestry.containing(&at, h as usize)) {
                break below;
            }
            let info = self
                .block(&at)?
                .ok_or_else(|| ClarityError::UnknownBlock(hex::encode(at)))?;
            match expected {
                Some(h) if h != info.height => {
                    return Err(corrupt(format!(
                        "block {} is at height {}, its child says {h}",
                        hex::encode(at),
                        info.height
                    )));
                }
                Some(_) => {}
                // The tip itself, on a cached chain: its prefix, and nothing new to keep
                // (keeping it could push out the chain it came from).
                None => {
                    if let Some(below) = self.ancestry.containing(&at, info.height as usize) {
                        return Ok(below);
                    }
                }
            }
            above.push(at);
            match info.height.checked_sub(1) {
                None => break Ancestry::default(),
                Some(h) => expected = Some(h),
            }
            at = info.parent;
        };
        for id in above.into_iter().rev() {
            chain.push(id);
        }
        self.ancestry.insert(*tip, chain.clone());
        Ok(chain)
    }

    /// The newest version of `key` visible from `chain` at heights up to `max_height`.
    fn versioned_get(
        &self,
        kind: u8,
        key: &str,
        chain: &Ancestry,
        max_height: u32,
    ) -> Result<Option<String>> {
        let prefix = versioned_prefix(kind, key);
        let mut upper = versioned_key(kind, key, max_height, &[0xff; 32]);
        loop {
            let batch = self.kv.scan_back(STATE_COLUMN, &prefix, &upper, 16)?;
            let full = batch.len() == 16;
            for (k, v) in &batch {
                let tail = k
                    .get(prefix.len()..)
                    .filter(|t| t.len() == 36)
                    .ok_or_else(|| corrupt("versioned key of the wrong length"))?;
                let (h, id) = tail.split_at(4);
                let height = u32::from_be_bytes(h.try_into().map_err(|_| corrupt("height"))?);
                if chain
                    .get(height as usize)
                    .is_some_and(|c| c.as_slice() == id)
                {
                    let text = String::from_utf8(v.clone())
                        .map_err(|_| corrupt("a value that is not UTF-8"))?;
                    return Ok(Some(text));
                }
            }
            match (full, batch.last()) {
                (true, Some((k, _))) => {
                    // Continue strictly below the last key seen (all versions of a key
                    // have the same length, so this is a decrement of its tail).
                    upper = k.clone();
                    for b in upper.iter_mut().rev() {
                        match b.checked_sub(1) {
                            Some(lower) => {
                                *b = lower;
                                break;
                            }
                            None => *b = 0xff,
                        }
                    }
                    if upper >= *k {
                        return Ok(None);
                    }
                }
                _ => return Ok(None),
            }
        }
    }

    /// A view for executing block `info` on top of its parent (writes stay in memory
    /// until [`ClarityStore::commit`]); for the genesis block the parent is none.
    pub fn block_store(&self, info: BlockInfo) -> Result<BlockStore> {
        let chain = if info.height == 0 {
            Ancestry::default()
        } else {
            let chain = self.chain_to(&info.parent)?;
            if chain.len() != info.height as usize {
                return Err(ClarityError::UnknownBlock(format!(
                    "{} is not at height {} above its parent",
                    hex::encode(info.id),
                    info.height
                )));
            }
            chain
        };
        let side = clarity::rusqlite::Connection::open_in_memory()
            .map_err(|e| ClarityError::Vm(format!("cannot open the VM's scratch database: {e}")))?;
        Ok(BlockStore {
            side,
            store: self.clone(),
            chain,
            open: info,
            reading: None,
            data: BTreeMap::new(),
            metadata: BTreeMap::new(),
            error: None,
        })
    }

    /// The state root after block `id`.
    pub fn state_root(&self, id: &[u8; 32]) -> Result<Option<[u8; 32]>> {
        let mut key = vec![INDEX_ROOT];
        key.extend_from_slice(id);
        match self.kv.get(BLOCKS_COLUMN, &key)? {
            None => Ok(None),
            Some(v) => v
                .as_slice()
                .try_into()
                .map(Some)
                .map_err(|_| corrupt("state root of the wrong length")),
        }
    }

    /// Writes the block's index entry and every value it wrote, atomically, and returns
    /// the block's state root: sha256("fai-state/v1" ‖ parent's root ‖ each data write in
    /// key order, length-prefixed), a commitment to the whole state by induction.
    /// Contract metadata (analysis, the parsed contract) is left out, as Stacks keeps it
    /// out of its MARF: the VM serialises it from hash maps, in no fixed order, and it is
    /// derived from the source, whose hash is data.
    pub fn commit(&self, mut block: BlockStore) -> Result<[u8; 32]> {
        block.take_error()?;
        let root = self.root_of(&block)?;
        self.write(block, root)?;
        Ok(root)
    }

    /// The state root `block` has once committed (see [`ClarityStore::commit`]),
    /// without writing anything: a block whose root differs from its header's can be
    /// refused without a trace. A storage failure during its execution must have been
    /// taken first ([`BlockStore::take_error`]).
    pub(crate) fn root_of(&self, block: &BlockStore) -> Result<[u8; 32]> {
        if block.error.is_some() {
            return Err(ClarityError::Vm(
                "the block's storage failure was not looked at".into(),
            ));
        }
        let info = &block.open;
        let parent_root = if info.height == 0 {
            [0; 32]
        } else {
            self.state_root(&info.parent)?
                .ok_or_else(|| ClarityError::UnknownBlock(hex::encode(info.parent)))?
        };
        let mut h = Sha256::new();
        h.update(b"fai-state/v1");
        h.update(parent_root);
        for (k, v) in &block.data {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        Ok(h.finalize().into())
    }

    /// Writes the block's index entry, its state root and every value it wrote, in one
    /// batch.
    fn write(&self, block: BlockStore, root: [u8; 32]) -> Result<()> {
        let info = block.open;
        let mut batch = WriteBatch::new();
        let mut rkey = vec![INDEX_ROOT];
        rkey.extend_from_slice(&info.id);
        batch.put(BLOCKS_COLUMN, rkey, root.to_vec());
        let mut key = vec![INDEX_BLOCK];
        key.extend_from_slice(&info.id);
        batch.put(BLOCKS_COLUMN, key, info.to_bytes());
        let mut ckey = vec![INDEX_CONSENSUS];
        ckey.extend_from_slice(&info.consensus_hash());
        batch.put(BLOCKS_COLUMN, ckey, info.id.to_vec());
        for (k, v) in block.data {
            batch.put(
                STATE_COLUMN,
                versioned_key(KIND_DATA, &k, info.height, &info.id),
                v.into_bytes(),
            );
        }
        for (k, v) in block.metadata {
            batch.put(
                STATE_COLUMN,
                versioned_key(KIND_META, &k, info.height, &info.id),
                v.into_bytes(),
            );
        }
        self.kv.write(batch)?;
        Ok(())
    }
}

/// The VM's view of the store while one block executes (or a read-only call runs on top
/// of a block). Reads see the block's own writes, then the versions on its chain.
///
/// The VM's store interface cannot return errors; a storage failure during execution is
/// kept here and fails the block when it is committed.
pub struct BlockStore {
    /// The VM's interface asks for an SQLite connection; this one stays empty.
    side: clarity::rusqlite::Connection,
    store: ClarityStore,
    /// Ids of the parent chain by height: `chain[h]` for `h < open.height`.
    chain: Ancestry,
    open: BlockInfo,
    /// Under `at-block`: the height of the block being read; its chain is a prefix.
    reading: Option<u32>,
    data: BTreeMap<String, String>,
    metadata: BTreeMap<String, String>,
    error: Option<ClarityError>,
}

impl BlockStore {
    pub fn info(&self) -> &BlockInfo {
        &self.open
    }

    /// The storage failure met while the block executed, if any (then the block fails).
    pub fn take_error(&mut self) -> Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether the VM wrote anything.
    pub fn is_dirty(&self) -> bool {
        !self.data.is_empty() || !self.metadata.is_empty()
    }

    fn read(&mut self, kind: u8, key: &str) -> Option<String> {
        let own = match kind {
            KIND_DATA => &self.data,
            _ => &self.metadata,
        };
        let max_height = match self.reading {
            None => {
                if let Some(v) = own.get(key) {
                    return Some(v.clone());
                }
                self.open.height.checked_sub(1)?
            }
            Some(h) => h,
        };
        match self.store.versioned_get(kind, key, &self.chain, max_height) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(target: "infer_node::clarity", "contract state read failed: {e}");
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn block_id_at(&self, height: u32) -> Option<StacksBlockId> {
        if height == self.open.height {
            return Some(StacksBlockId(self.open.id));
        }
        self.chain.get(height as usize).map(|id| StacksBlockId(*id))
    }
}

impl ClarityBackingStore for BlockStore {
    fn put_all(&mut self, items: Vec<(String, String)>) {
        for (k, v) in items {
            self.data.insert(k, v);
        }
    }

    fn get(&mut self, key: &str) -> Option<String> {
        self.read(KIND_DATA, key)
    }

    fn get_with_proof(&mut self, key: &str) -> Option<(String, Vec<u8>)> {
        self.get(key).map(|v| (v, Vec::new()))
    }

    fn set_block_hash(&mut self, bhh: StacksBlockId) -> InterpreterResult<StacksBlockId> {
        let previous = match self.reading {
            None => StacksBlockId(self.open.id),
            Some(h) => self.block_id_at(h).unwrap_or(StacksBlockId(self.open.id)),
        };
        if bhh.0 == self.open.id {
            self.reading = None;
            return Ok(previous);
        }
        match self.chain.height_of(&bhh.0) {
            Some(h) => {
                self.reading = Some(u32::try_from(h).unwrap_or(u32::MAX));
                Ok(previous)
            }
            None => Err(RuntimeErrorType::UnknownBlockHeaderHash(BlockHeaderHash(bhh.0)).into()),
        }
    }

    fn get_block_at_height(&mut self, height: u32) -> Option<StacksBlockId> {
        self.block_id_at(height)
    }

    fn get_current_block_height(&mut self) -> u32 {
        self.reading.unwrap_or(self.open.height)
    }

    fn get_open_chain_tip_height(&mut self) -> u32 {
        self.open.height
    }

    fn get_open_chain_tip(&mut self) -> StacksBlockId {
        StacksBlockId(self.open.id)
    }

    fn get_side_store(&mut self) -> &clarity::rusqlite::Connection {
        // Metadata lives in this store; the VM's SQLite helpers are never used.
        &self.side
    }

    fn get_contract_hash(
        &mut self,
        contract: &QualifiedContractIdentifier,
    ) -> InterpreterResult<(StacksBlockId, Sha512Trunc256Sum)> {
        let value = self
            .get(&make_contract_hash_key(contract))
            .ok_or_else(|| CheckErrors::NoSuchContract(contract.to_string()))?;
        if value.len() != 72 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CheckErrors::NoSuchContract(contract.to_string()).into());
        }
        let commitment = ContractCommitment::deserialize(&value);
        let id = self
            .block_id_at(commitment.block_height)
            .ok_or_else(|| CheckErrors::NoSuchContract(contract.to_string()))?;
        Ok((id, commitment.hash))
    }

    fn insert_metadata(&mut self, contract: &QualifiedContractIdentifier, key: &str, value: &str) {
        self.metadata
            .insert(metadata_key(contract, key), value.to_string());
    }

    fn get_metadata(
        &mut self,
        contract: &QualifiedContractIdentifier,
        key: &str,
    ) -> InterpreterResult<Option<String>> {
        // An unknown contract is an error, not "no such field": the VM relies on it.
        if self.get(&make_contract_hash_key(contract)).is_none() {
            return Err(CheckErrors::NoSuchContract(contract.to_string()).into());
        }
        Ok(self.read(KIND_META, &metadata_key(contract, key)))
    }

    fn get_metadata_manual(
        &mut self,
        _at_height: u32,
        contract: &QualifiedContractIdentifier,
        key: &str,
    ) -> InterpreterResult<Option<String>> {
        self.get_metadata(contract, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fai_storage::{KeyValue, MemoryStore, Schema};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The memory store, counting the block index reads.
    struct Counting {
        inner: MemoryStore,
        index_reads: AtomicUsize,
    }

    impl KeyValueStore for Counting {
        fn get(&self, column: &'static str, key: &[u8]) -> fai_storage::Result<Option<Vec<u8>>> {
            if column == BLOCKS_COLUMN {
                self.index_reads.fetch_add(1, Ordering::Relaxed);
            }
            self.inner.get(column, key)
        }
        fn write(&self, batch: WriteBatch) -> fai_storage::Result<()> {
            self.inner.write(batch)
        }
        fn scan(&self, column: &'static str) -> fai_storage::Result<Vec<KeyValue>> {
            self.inner.scan(column)
        }
        fn scan_back(
            &self,
            column: &'static str,
            prefix: &[u8],
            upper: &[u8],
            limit: usize,
        ) -> fai_storage::Result<Vec<KeyValue>> {
            self.inner.scan_back(column, prefix, upper, limit)
        }
    }

    fn counting() -> Arc<Counting> {
        let schema = Schema {
            columns: &[STATE_COLUMN, BLOCKS_COLUMN],
            format_version: 1,
        };
        Arc::new(Counting {
            inner: MemoryStore::open(schema).unwrap(),
            index_reads: AtomicUsize::new(0),
        })
    }

    fn info(height: u32, tag: u8, parent: [u8; 32]) -> BlockInfo {
        let mut id = [tag; 32];
        id[..4].copy_from_slice(&height.to_le_bytes());
        BlockInfo {
            id,
            parent,
            height,
            ledger_hash: [0; 32],
            ledger_height: height,
            time: 0,
            vrf_seed: [0; 32],
            producer: [0; 20],
            commit_spent: 0,
            commit_total: 0,
            reward: 0,
        }
    }

    /// Commits `count` blocks above `from` (tagged `tag`), each writing key `k` = its
    /// height; the last one's info.
    fn grow(store: &ClarityStore, from: BlockInfo, count: u32, tag: u8) -> BlockInfo {
        let mut at = from;
        for _ in 0..count {
            let next = info(at.height + 1, tag, at.id);
            let mut view = store.block_store(next).unwrap();
            view.put_all(vec![("k".into(), next.height.to_string())]);
            store.commit(view).unwrap();
            at = next;
        }
        at
    }

    fn read_k(store: &ClarityStore, tip: &BlockInfo) -> Option<String> {
        let mut view = store
            .block_store(info(tip.height + 1, 0xee, tip.id))
            .unwrap();
        view.get("k")
    }

    #[test]
    fn views_on_a_long_chain_do_not_walk_it_down_to_genesis() {
        let kv = counting();
        let store = ClarityStore::new(kv.clone());
        let genesis = info(0, 0x01, [0; 32]);
        let mut view = store.block_store(genesis).unwrap();
        view.put_all(vec![("k".into(), "0".into())]);
        store.commit(view).unwrap();
        // Growing a chain of 3,000 blocks reads the index about once a block (it was
        // once per block below each: 4.5 million reads).
        let tip = grow(&store, genesis, 3_000, 0x0a);
        let reads = kv.index_reads.swap(0, Ordering::Relaxed);
        assert!(
            reads <= 3 * 3_000,
            "{reads} index reads to build 3,000 blocks"
        );
        // A view on the tip, again and again: no walk.
        for _ in 0..10 {
            assert_eq!(read_k(&store, &tip).as_deref(), Some("3000"));
        }
        let reads = kv.index_reads.swap(0, Ordering::Relaxed);
        assert!(reads <= 10, "{reads} index reads for ten views on the tip");

        // A fork 20 blocks down: its chain is the cached one's below the fork, and its
        // reads see its own writes, not the other branch's.
        let mut fork_base = tip;
        for _ in 0..20 {
            fork_base = store.block(&fork_base.parent).unwrap().unwrap();
        }
        let _ = kv.index_reads.swap(0, Ordering::Relaxed);
        let fork = grow(&store, fork_base, 5, 0x0b);
        assert!(kv.index_reads.swap(0, Ordering::Relaxed) <= 3 * 5 + 25);
        assert_eq!(read_k(&store, &fork).as_deref(), Some("2985"));
        assert_eq!(read_k(&store, &tip).as_deref(), Some("3000"));
        let mut view = store
            .block_store(info(fork.height + 1, 0xee, fork.id))
            .unwrap();
        assert_eq!(
            view.get_block_at_height(2_980),
            Some(StacksBlockId(fork_base.id))
        );
        let fork_first = info(2_981, 0x0b, fork_base.id);
        assert_eq!(
            view.get_block_at_height(2_981),
            Some(StacksBlockId(fork_first.id))
        );

        // Reads at many older blocks of the chain (what vote windows and at-block do)
        // take prefixes of the cached chain and push nothing out: a view on the tip
        // still reads no more than its own entry.
        let mut old = tip;
        for _ in 0..2 * crate::ancestry::CACHED_TIPS {
            old = store.block(&old.parent).unwrap().unwrap();
            assert_eq!(read_k(&store, &old), Some(old.height.to_string()));
        }
        let _ = kv.index_reads.swap(0, Ordering::Relaxed);
        assert_eq!(read_k(&store, &tip).as_deref(), Some("3000"));
        assert!(kv.index_reads.swap(0, Ordering::Relaxed) <= 2);

        // A store opened afresh on the same database walks the chain once, then not.
        let reopened = ClarityStore::new(kv.clone());
        assert_eq!(read_k(&reopened, &tip).as_deref(), Some("3000"));
        let first = kv.index_reads.swap(0, Ordering::Relaxed);
        assert!(
            first > 3_000,
            "the first view walks the chain: {first} reads"
        );
        assert_eq!(read_k(&reopened, &tip).as_deref(), Some("3000"));
        assert!(kv.index_reads.swap(0, Ordering::Relaxed) <= 1);
    }

    #[test]
    fn a_view_reads_each_height_of_its_own_chain() {
        let store = ClarityStore::new(counting());
        let genesis = info(0, 0x01, [0; 32]);
        store.commit(store.block_store(genesis).unwrap()).unwrap();
        let a = grow(&store, genesis, 2 * crate::ancestry::CHUNK as u32 + 3, 0x0a);
        let b = grow(&store, genesis, crate::ancestry::CHUNK as u32 + 1, 0x0b);
        for tip in [a, b] {
            let chain = store.chain_to(&tip.id).unwrap();
            assert_eq!(chain.len(), tip.height as usize + 1);
            let mut at = tip;
            loop {
                assert_eq!(chain.get(at.height as usize), Some(&at.id));
                if at.height == 0 {
                    break;
                }
                at = store.block(&at.parent).unwrap().unwrap();
            }
        }
    }
}
