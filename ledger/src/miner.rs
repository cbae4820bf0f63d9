//! Mining: a block template from the tip and the mempool, and the nonce search over
//! several threads.
//!
//! Each thread mines its own coinbase (the thread number and a round counter are the
//! coinbase's extra nonce), so threads never search the same header. A thread hashes
//! through the midstate: the first 64 header bytes are compressed once per merkle root,
//! leaving two SHA-256 compressions per nonce. The search stops as soon as the caller's
//! `should_stop` says so (the tip changed, the template is stale, or the node shuts down).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use fai_primitives::{Amount, Hash160, Hash256};
use primitive_types::U256;

use crate::block::{Block, BlockHeader};
use crate::chainstate::Chainstate;
use crate::mempool::Mempool;
use crate::merkle;
use crate::pow::{target_from_compact, MidstateHasher};
use crate::tx::{Transaction, TxIn, TxOut, Unlock};
use crate::{ChainError, ConsensusError};

/// Nonces hashed between two looks at `should_stop`.
pub const SCAN_BATCH: u32 = 1 << 16;

/// Bytes kept free in a template for the coinbase and the header.
const COINBASE_RESERVE: usize = 1_000;

/// The coinbase tag after the height and extra nonce.
const COINBASE_TAG: &[u8] = b"/infer-node/";

/// A block ready for the nonce search.
#[derive(Debug, Clone)]
pub struct BlockTemplate {
    pub block: Block,
    pub height: u32,
    pub target: U256,
    pub fees: Amount,
    txids: Vec<Hash256>,
}

impl BlockTemplate {
    /// Builds a template on the active tip of `chain` with the best transactions of
    /// `mempool`, paying subsidy and fees to `payout`. `now` is the clock in Unix seconds.
    pub fn build(
        chain: &Chainstate,
        mempool: &Mempool,
        payout: Hash160,
        now: u64,
    ) -> Result<Self, ChainError> {
        let params = chain.params();
        let (height, bits, mtp) = chain.next_block_context()?;
        let target = target_from_compact(bits).map_err(ConsensusError::from)?;
        let budget = params.max_block_size.saturating_sub(COINBASE_RESERVE);
        let selected = mempool.select(budget);
        let fees = Amount::checked_sum(selected.iter().map(|e| e.fee))
            .ok_or(ConsensusError::SupplyCapExceeded)?;
        let reward = params
            .block_subsidy(height)
            .checked_add(fees)
            .ok_or(ConsensusError::SupplyCapExceeded)?;
        let mut data = height.to_le_bytes().to_vec();
        data.extend_from_slice(&0u64.to_le_bytes());
        data.extend_from_slice(COINBASE_TAG);
        let coinbase = Transaction::coinbase(data, vec![TxOut::pay(reward, payout)]);
        let mut transactions = vec![coinbase];
        transactions.extend(selected.into_iter().map(|e| e.tx.clone()));
        let txids: Vec<Hash256> = transactions.iter().map(|t| t.txid().0).collect();
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        let header = BlockHeader {
            version: 1,
            prev: chain.tip_hash(),
            merkle_root: merkle::root(&txids).0,
            time: now.max(mtp.saturating_add(1)),
            bits,
            nonce: 0,
        };
        Ok(BlockTemplate {
            block: Block {
                header,
                transactions,
            },
            height,
            target,
            fees,
            txids,
        })
    }

    /// Writes `extra` into the coinbase and updates the merkle root.
    pub fn set_extra_nonce(&mut self, extra: u64) {
        if let Some(TxIn {
            unlock: Unlock::Coinbase(data),
            ..
        }) = self
            .block
            .transactions
            .first_mut()
            .and_then(|cb| cb.inputs.first_mut())
        {
            if let Some(slot) = data.get_mut(4..12) {
                slot.copy_from_slice(&extra.to_le_bytes());
            }
        }
        if let (Some(cb), Some(first)) = (self.block.transactions.first(), self.txids.first_mut()) {
            *first = cb.txid().0;
        }
        self.block.header.merkle_root = merkle::root(&self.txids).0;
    }
}

/// Hashes `count` nonces from `start`; the first that meets the target, if any.
pub fn scan(hasher: &MidstateHasher, start: u32, count: u32) -> Option<u32> {
    let mut nonce = start;
    let mut left = count;
    while left > 0 {
        if hasher.check(nonce) {
            return Some(nonce);
        }
        nonce = nonce.wrapping_add(1);
        left = left.saturating_sub(1);
    }
    None
}

/// Searches for a block on `threads` threads until one is found or `should_stop` returns
/// true (checked every [`SCAN_BATCH`] nonces by each thread).
pub fn solve(
    template: &BlockTemplate,
    threads: usize,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Option<Block> {
    let threads = threads.max(1);
    let found = AtomicBool::new(false);
    let result: Mutex<Option<Block>> = Mutex::new(None);
    std::thread::scope(|s| {
        for worker in 0..threads {
            let (found, result) = (&found, &result);
            s.spawn(move || {
                let stride = u64::try_from(threads).unwrap_or(1);
                let mut extra = u64::try_from(worker).unwrap_or(0);
                loop {
                    let mut t = template.clone();
                    t.set_extra_nonce(extra);
                    let hasher = MidstateHasher::new(&t.block.header.to_array(), t.target);
                    let mut start: u32 = 0;
                    loop {
                        if found.load(Ordering::Relaxed) || should_stop() {
                            return;
                        }
                        if let Some(nonce) = scan(&hasher, start, SCAN_BATCH) {
                            t.block.header.nonce = nonce;
                            found.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = result.lock() {
                                slot.get_or_insert(t.block);
                            }
                            return;
                        }
                        match start.checked_add(SCAN_BATCH) {
                            Some(next) => start = next,
                            None => break,
                        }
                    }
                    extra = extra.saturating_add(stride);
                }
            });
        }
    });
    result.into_inner().ok().flatten()
}
