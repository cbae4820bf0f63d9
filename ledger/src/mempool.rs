//! The mempool: transactions checked against the UTXO set of the active tip, waiting for
//! a block.
//!
//! - A transaction must spend confirmed coins (no chains of unconfirmed transactions yet)
//!   and pass every consensus rule a block would apply to it, signatures included.
//! - Two transactions spending the same coin conflict: the second is refused (no
//!   replacement).
//! - Transactions are ordered by fee rate (base units per 1,000 bytes) for block templates.
//! - The pool is bounded in bytes: past the bound the lowest fee rates are evicted, and a
//!   new transaction that would be the first to go is refused.
//! - When blocks are disconnected, their transactions come back, and the whole pool is
//!   checked again against the new tip.

use std::collections::{BTreeSet, HashMap};

use fai_primitives::Amount;

use crate::chainstate::{ChainEvent, Chainstate};
use crate::coins::UtxoView;
use crate::tx::{OutPoint, Transaction, Txid};
use crate::validation::connect::{is_final, resolve_tx, verify_transaction};
use crate::validation::stateless::check_transaction;
use crate::{ChainError, ConsensusError};

/// The largest transaction the mempool relays and mines, in bytes.
pub const MAX_STANDARD_TX_SIZE: usize = 100_000;

/// Limits of a mempool.
#[derive(Debug, Clone, Copy)]
pub struct MempoolConfig {
    /// Total encoded bytes of the transactions kept.
    pub max_bytes: usize,
    /// The lowest fee rate accepted, in base units per 1,000 bytes.
    pub min_fee_rate: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_bytes: 64 * 1024 * 1024,
            min_fee_rate: 1_000,
        }
    }
}

/// Why a transaction was not taken into the mempool.
#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    #[error("a coinbase transaction cannot be relayed")]
    Coinbase,
    #[error("transaction {0} is already in the mempool")]
    AlreadyKnown(Txid),
    #[error("transaction {txid} spends {outpoint:?}, already spent by {other} in the mempool")]
    Conflict {
        txid: Txid,
        outpoint: OutPoint,
        other: Txid,
    },
    #[error("transaction of {size} bytes exceeds the relay limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("fee {fee} is below the minimum of {required} for {size} bytes")]
    FeeTooLow {
        fee: Amount,
        required: Amount,
        size: usize,
    },
    #[error("the mempool is full and this fee rate ({0} units/kB) is too low to enter it")]
    Full(u64),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl From<ConsensusError> for MempoolError {
    fn from(e: ConsensusError) -> Self {
        MempoolError::Chain(ChainError::Consensus(e))
    }
}

/// A transaction in the pool.
#[derive(Debug, Clone)]
pub struct MempoolEntry {
    pub tx: Transaction,
    pub txid: Txid,
    pub size: usize,
    pub fee: Amount,
    /// Base units per 1,000 bytes.
    pub fee_rate: u64,
}

/// The pool of unconfirmed transactions.
#[derive(Debug, Default)]
pub struct Mempool {
    config: MempoolConfig,
    entries: HashMap<Txid, MempoolEntry>,
    spends: HashMap<OutPoint, Txid>,
    by_rate: BTreeSet<(u64, Txid)>,
    bytes: usize,
}

fn fee_rate(fee: Amount, size: usize) -> u64 {
    let size = u128::try_from(size.max(1)).unwrap_or(u128::MAX);
    let rate = u128::from(fee.units())
        .saturating_mul(1_000)
        .checked_div(size)
        .unwrap_or(0);
    u64::try_from(rate).unwrap_or(u64::MAX)
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Self {
        Mempool {
            config,
            ..Mempool::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of the transactions held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.entries.get(txid)
    }

    /// Whether a waiting transaction spends `outpoint`.
    pub fn spends(&self, outpoint: &OutPoint) -> bool {
        self.spends.contains_key(outpoint)
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    /// Checks `tx` against the active tip of `chain` and adds it.
    ///
    /// Errors: [`MempoolError`] saying why; the pool is unchanged on error.
    pub fn accept(&mut self, tx: Transaction, chain: &Chainstate) -> Result<Txid, MempoolError> {
        if tx.is_coinbase() {
            return Err(MempoolError::Coinbase);
        }
        let params = chain.params();
        check_transaction(&tx, params.max_block_size)?;
        let txid = tx.txid();
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::AlreadyKnown(txid));
        }
        let size = tx.size();
        if size > MAX_STANDARD_TX_SIZE {
            return Err(MempoolError::TooLarge {
                size,
                max: MAX_STANDARD_TX_SIZE,
            });
        }
        for input in &tx.inputs {
            if let Some(other) = self.spends.get(&input.prevout) {
                return Err(MempoolError::Conflict {
                    txid,
                    outpoint: input.prevout,
                    other: *other,
                });
            }
        }
        let (height, _, mtp) = chain.next_block_context()?;
        if !is_final(&tx, height, mtp) {
            return Err(ConsensusError::NonFinal(txid).into());
        }
        let utxos = chain.utxos();
        let (fee, jobs) = resolve_tx(&tx, txid, height, params, |op| utxos.coin(op))?;
        verify_transaction(&tx, &jobs, params.magic)?;
        let required = Amount::from_units(
            self.config
                .min_fee_rate
                .saturating_mul(u64::try_from(size).unwrap_or(u64::MAX))
                .checked_div(1_000)
                .unwrap_or(0),
        )
        .unwrap_or(Amount::MAX);
        if fee < required {
            return Err(MempoolError::FeeTooLow {
                fee,
                required,
                size,
            });
        }
        let rate = fee_rate(fee, size);
        self.insert(MempoolEntry {
            tx,
            txid,
            size,
            fee,
            fee_rate: rate,
        });
        let mut evicted_self = false;
        while self.bytes > self.config.max_bytes {
            let Some(&(_, lowest)) = self.by_rate.iter().next() else {
                break;
            };
            evicted_self |= lowest == txid;
            self.remove(&lowest);
        }
        if evicted_self {
            return Err(MempoolError::Full(rate));
        }
        Ok(txid)
    }

    fn insert(&mut self, entry: MempoolEntry) {
        for input in &entry.tx.inputs {
            self.spends.insert(input.prevout, entry.txid);
        }
        self.by_rate.insert((entry.fee_rate, entry.txid));
        self.bytes = self.bytes.saturating_add(entry.size);
        self.entries.insert(entry.txid, entry);
    }

    /// Removes a transaction; returns it if it was there.
    pub fn remove(&mut self, txid: &Txid) -> Option<MempoolEntry> {
        let entry = self.entries.remove(txid)?;
        for input in &entry.tx.inputs {
            if self.spends.get(&input.prevout) == Some(txid) {
                self.spends.remove(&input.prevout);
            }
        }
        self.by_rate.remove(&(entry.fee_rate, entry.txid));
        self.bytes = self.bytes.saturating_sub(entry.size);
        Some(entry)
    }

    /// The best-paying transactions that fit in `max_bytes`, highest fee rate first.
    pub fn select(&self, max_bytes: usize) -> Vec<&MempoolEntry> {
        let mut total = 0usize;
        let mut out = Vec::new();
        for (_, txid) in self.by_rate.iter().rev() {
            let Some(e) = self.entries.get(txid) else {
                continue;
            };
            let next = total.saturating_add(e.size);
            if next <= max_bytes {
                total = next;
                out.push(e);
            }
        }
        out
    }

    /// Brings the pool in line with changes of the active chain: transactions of connected
    /// blocks (and those that conflict with them) leave; after any disconnection, the
    /// transactions of disconnected blocks come back and every entry is checked again.
    pub fn apply_chain_events(&mut self, events: &[ChainEvent], chain: &Chainstate) {
        self.apply_chain_events_returning(events, chain, |_| true);
    }

    /// [`Mempool::apply_chain_events`], where only the disconnected transactions
    /// `returns` keeps come back (a caller drops those only their branch made useful).
    pub fn apply_chain_events_returning(
        &mut self,
        events: &[ChainEvent],
        chain: &Chainstate,
        returns: impl Fn(&Transaction) -> bool,
    ) {
        let mut returned = Vec::new();
        for event in events {
            match event {
                ChainEvent::Connected { block, .. } => {
                    for tx in &block.transactions {
                        self.remove(&tx.txid());
                        for input in &tx.inputs {
                            if let Some(other) = self.spends.get(&input.prevout).copied() {
                                self.remove(&other);
                            }
                        }
                    }
                }
                ChainEvent::Disconnected { block, .. } => {
                    returned.extend(
                        block
                            .transactions
                            .iter()
                            .skip(1)
                            .filter(|tx| returns(tx))
                            .cloned(),
                    );
                }
            }
        }
        if returned.is_empty() {
            return;
        }
        let kept: Vec<Transaction> = self.entries.drain().map(|(_, e)| e.tx).collect();
        self.spends.clear();
        self.by_rate.clear();
        self.bytes = 0;
        for tx in returned.into_iter().chain(kept) {
            // Transactions that the new chain confirmed or made invalid fall out here.
            let _ = self.accept(tx, chain);
        }
    }
}
