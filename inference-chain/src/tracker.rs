//! The sortition tracker: reads every ledger block once, in ledger order, and keeps what
//! each means for the inference layer (its registers, its sortition, its peg-ins), keyed
//! by block hash. Records of both sides of a fork coexist; every question is asked "as of"
//! a ledger block, and only records on that block's branch answer. A ledger
//! reorganisation therefore needs no undo: the blocks of the new branch are read (their
//! sortitions run with the seeds of their own ancestors) and the old branch's records are
//! simply no longer asked about.
//!
//! The records are a function of the ledger and of the verifier sets commits must pay,
//! which come from the inference chain as of each block's parent. Each record keeps the
//! set it was read with: a node that reads ledger blocks before the inference blocks
//! anchored in them (a node syncing) reads them again once it has those blocks (see
//! `InferenceChain::accept`). They are rebuilt from the ledger at start-up rather than
//! stored.

use std::collections::HashMap;

use fai_ledger::{ChainError, Chainstate};
use fai_primitives::{Hash160, Hash256};

use crate::ledger_ops::{read_block, Register};
use crate::ops::RegisterRef;
use crate::sortition::{self, genesis_seed, Sortition};

/// What one ledger block means for the inference layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortitionRecord {
    pub ledger_hash: Hash256,
    pub ledger_height: u32,
    /// The seed the sortition ran with.
    pub seed: [u8; 32],
    pub sortition: Sortition,
    pub registers: Vec<Register>,
    pub peg_ins: Vec<(Hash160, u64)>,
    /// The verifier set the block's commits had to pay, as this record was read with.
    pub commit_set: Vec<Hash160>,
    /// Whether a transaction of the block carries a commit op made on its parent by a
    /// register's key for that register, found on this branch
    /// (`ledger_ops::carries_commit_on`), whether or not it pays the verifier set: a
    /// fact of the ledger alone (unlike `sortition.winner`, which depends on the verifier
    /// set the record was read with). A block without one elects nobody on any reading.
    pub has_commits: bool,
}

/// Sortition records of the ledger blocks read so far.
#[derive(Debug, Clone)]
pub struct SortitionTracker {
    genesis_seed: [u8; 32],
    records: HashMap<Hash256, SortitionRecord>,
}

impl SortitionTracker {
    pub fn new(network_name: &str) -> Self {
        SortitionTracker {
            genesis_seed: genesis_seed(network_name),
            records: HashMap::new(),
        }
    }

    pub fn record(&self, hash: &Hash256) -> Option<&SortitionRecord> {
        self.records.get(hash)
    }

    /// The register op `at` as seen from ledger block `as_of`: only if the block holding
    /// it is on `as_of`'s branch.
    pub fn register(
        &self,
        ledger: &Chainstate,
        as_of: &Hash256,
        at: &RegisterRef,
    ) -> Option<Register> {
        let hash = ledger.ancestor(as_of, at.height)?;
        self.records
            .get(&hash)?
            .registers
            .iter()
            .find(|r| r.at == *at)
            .cloned()
    }

    /// Reads ledger block `hash` and, first, any ancestor not read yet. `verifiers` gives
    /// the verifier set that commits at a ledger height must pay.
    pub fn connect(
        &mut self,
        ledger: &Chainstate,
        hash: &Hash256,
        verifiers: &dyn Fn(u32) -> Vec<Hash160>,
    ) -> Result<&SortitionRecord, ChainError> {
        // The ancestors not read yet, newest first.
        let mut pending = Vec::new();
        let mut at = *hash;
        while !self.records.contains_key(&at) {
            let entry = ledger
                .entry(&at)
                .ok_or_else(|| ChainError::Corrupt(format!("unknown ledger block {at}")))?;
            pending.push((at, entry.height, entry.header.prev));
            if entry.height == 0 {
                break;
            }
            at = entry.header.prev;
        }
        for (hash, height, parent) in pending.into_iter().rev() {
            let seed = match height {
                0 => self.genesis_seed,
                _ => self
                    .records
                    .get(&parent)
                    .map(|r| r.sortition.next_seed)
                    .unwrap_or(self.genesis_seed),
            };
            let block = ledger
                .block(&hash)?
                .ok_or_else(|| ChainError::Corrupt(format!("ledger block {hash} not stored")))?;
            let set = verifiers(height);
            let lookup = |r: &RegisterRef| {
                if r.height >= height {
                    return None;
                }
                self.register(ledger, &parent, r)
            };
            let ops = read_block(&block, height, &set, lookup);
            let sortition = sortition::run(&seed, &hash.0, &ops.bids);
            let has_commits = block
                .transactions
                .iter()
                .skip(1)
                .any(|tx| crate::ledger_ops::carries_commit_on(tx, height, &parent, lookup));
            self.records.insert(
                hash,
                SortitionRecord {
                    ledger_hash: hash,
                    ledger_height: height,
                    seed,
                    sortition,
                    registers: ops.registers,
                    peg_ins: ops.peg_ins,
                    commit_set: set,
                    has_commits,
                },
            );
        }
        self.records
            .get(hash)
            .ok_or_else(|| ChainError::Corrupt(format!("ledger block {hash} was not read")))
    }

    /// Forgets the records of every ledger block at `height` and above, on every branch,
    /// to read them again (with other commit sets).
    pub fn forget_from(&mut self, height: u32) {
        self.records.retain(|_, r| r.ledger_height < height);
    }

    /// The records of ledger block `tip`'s branch at heights `from..=to`, oldest first
    /// (those not read yet are missing).
    pub fn branch(
        &self,
        ledger: &Chainstate,
        tip: &Hash256,
        from: u32,
        to: u32,
    ) -> Vec<&SortitionRecord> {
        (from..=to)
            .filter_map(|h| ledger.ancestor(tip, h))
            .filter_map(|h| self.records.get(&h))
            .collect()
    }

    /// The peg-ins of `tip`'s branch confirmed by `tip` (six blocks deep) and made at
    /// heights `after+1..`: what an inference block anchored at `tip` credits when its
    /// parent credited through `after`.
    pub fn confirmed_peg_ins(
        &self,
        ledger: &Chainstate,
        tip: &Hash256,
        after: u32,
    ) -> (u32, Vec<(Hash160, u64)>) {
        let Some(tip_height) = ledger.entry(tip).map(|e| e.height) else {
            return (after, Vec::new());
        };
        let Some(through) = tip_height.checked_sub(crate::ops::PEG_IN_CONFIRMATIONS) else {
            return (after, Vec::new());
        };
        if through <= after {
            return (after, Vec::new());
        }
        let peg_ins = self
            .branch(ledger, tip, after.saturating_add(1), through)
            .into_iter()
            .flat_map(|r| r.peg_ins.iter().copied())
            .collect();
        (through, peg_ins)
    }
}
