//! Signed VM transactions (transfers, contract calls, deployments on the inference layer)
//! waiting for an inference block: checked on entry (signature, chain id, evidence that
//! holds, nonce not spent and at most [`MAX_NONCE_GAP`] past the sender's waiting run, the
//! sender's balance covering what this and its waiting transactions spend), bounded in
//! count (when full, a higher fee rate evicts the lowest among the last of each sender's
//! run), dropped after [`EXPIRY_BLOCKS`] ledger blocks, and picked by the producer in nonce
//! order per sender. So funded accounts cannot pin the pool with transactions that will
//! never run.

use std::collections::{BTreeMap, HashMap};

use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::chain::{InferenceChain, MAX_AUDITS_PER_BLOCK};
use fai_inference_chain::vmtx::{SignedVmTx, VmPayload};

use crate::result_pool::ResultPool;
use fai_ledger::Chainstate;
use fai_primitives::codec::Encode;
use fai_primitives::Hash256;
use thiserror::Error;

/// Transactions kept at most.
pub const MAX_TXS: usize = 5_000;
/// Transactions of one sender kept at most.
pub const MAX_PER_SENDER: usize = 64;
/// The smallest fee accepted, in base units.
pub const MIN_FEE: u64 = 1_000;
/// Nonces a transaction may skip past its sender's waiting run (the ones skipped may
/// arrive later, out of order).
pub const MAX_NONCE_GAP: u64 = 4;
/// Ledger blocks a transaction may wait; then it and its sender's later ones are dropped.
pub const EXPIRY_BLOCKS: u32 = 720;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VmMempoolError {
    #[error("the signature does not verify")]
    BadSignature,
    #[error("chain id {0:#010x} is not this network's")]
    WrongChain(u32),
    #[error("nonce {given} is already used (the account's next nonce is {next})")]
    NonceUsed { given: u64, next: u64 },
    #[error("transaction {0} is already waiting")]
    Known(Hash256),
    #[error("another transaction of this sender already waits with nonce {0}")]
    NonceTaken(u64),
    #[error("fee {0} base units is below the minimum of {MIN_FEE}")]
    FeeTooLow(u64),
    #[error("the sender's balance {balance} base units does not cover the {needed} that this and its waiting transactions spend")]
    CannotPay { balance: u128, needed: u128 },
    #[error("nonce {given} skips too many: the sender's next is {next} (at most {MAX_NONCE_GAP} may be skipped)")]
    NonceGap { given: u64, next: u64 },
    #[error("the pool is full")]
    Full,
    #[error("the inference chain cannot be read: {0}")]
    Chain(String),
    #[error("the evidence does not hold: {0}")]
    BadEvidence(&'static str),
}

/// The pool.
#[derive(Default)]
pub struct VmMempool {
    by_id: HashMap<Hash256, SignedVmTx>,
    /// Sender key hash -> nonce -> txid.
    by_sender: HashMap<[u8; 20], BTreeMap<u64, Hash256>>,
    /// The ledger height each waiting transaction entered at.
    entered: HashMap<Hash256, u32>,
    /// The highest ledger height seen.
    height: u32,
}

/// A sender's account as the pool checks a transaction against it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Account {
    pub balance: u128,
    /// The account's next nonce at the tip.
    pub nonce: u64,
    /// What its served inferences not yet in a block may still charge.
    pub reserved: u128,
}

/// What a transaction takes from its sender's balance at most: its fee, and a transfer's
/// amount.
fn spends(tx: &SignedVmTx) -> u128 {
    let amount = match &tx.payload {
        VmPayload::Transfer { amount, .. } => amount.units(),
        _ => 0,
    };
    u128::from(tx.fee.units()).saturating_add(u128::from(amount))
}

/// Fee per byte, scaled, for eviction.
fn fee_rate(tx: &SignedVmTx) -> u128 {
    let size = tx.to_bytes().len().max(1) as u128;
    u128::from(tx.fee.units()).saturating_mul(1_000) / size
}

impl VmMempool {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Checks `tx` against the inference tip as of the ledger's tip, and against the
    /// inferences of its sender that `results` holds (their nonces, and the max fees they
    /// may still charge), and keeps it.
    pub fn accept(
        &mut self,
        tx: SignedVmTx,
        chain_id: u32,
        chain: &InferenceChain,
        ledger: &Chainstate,
        results: &ResultPool,
    ) -> Result<Hash256, VmMempoolError> {
        let sender = tx.sender.hash160().0;
        let tip = chain.tip(ledger).exec_id;
        let (balance, next) = chain
            .vm()
            .account(&tip, ledger, sender)
            .map_err(|e| VmMempoolError::Chain(e.to_string()))?;
        if results.holds(sender, tx.nonce) {
            return Err(VmMempoolError::NonceTaken(tx.nonce));
        }
        let account = Account {
            balance,
            nonce: next,
            reserved: results.pending_fees(sender),
        };
        self.admit(tx, chain_id, account, ledger.height())
    }

    /// The pool's rules for `tx`, its sender's `account` at the tip, at ledger height
    /// `height`.
    pub fn admit(
        &mut self,
        tx: SignedVmTx,
        chain_id: u32,
        account: Account,
        height: u32,
    ) -> Result<Hash256, VmMempoolError> {
        let Account {
            balance,
            nonce: account_nonce,
            reserved,
        } = account;
        self.expire(height);
        if tx.chain_id != chain_id {
            return Err(VmMempoolError::WrongChain(tx.chain_id));
        }
        if !tx.signature_valid() {
            return Err(VmMempoolError::BadSignature);
        }
        // Evidence that does not hold would make the block carrying it invalid.
        if let VmPayload::Evidence(evidence) = &tx.payload {
            evidence.check().map_err(VmMempoolError::BadEvidence)?;
        }
        let id = tx.txid();
        if self.by_id.contains_key(&id) {
            return Err(VmMempoolError::Known(id));
        }
        if tx.fee.units() < MIN_FEE {
            return Err(VmMempoolError::FeeTooLow(tx.fee.units()));
        }
        let sender = tx.sender.hash160().0;
        if tx.nonce < account_nonce {
            return Err(VmMempoolError::NonceUsed {
                given: tx.nonce,
                next: account_nonce,
            });
        }
        let next = self.next_nonce(sender, account_nonce);
        if tx.nonce > next.saturating_add(MAX_NONCE_GAP) {
            return Err(VmMempoolError::NonceGap {
                given: tx.nonce,
                next,
            });
        }
        let waiting = self.pending_spends(sender, account_nonce);
        // Served inferences not yet in a block will take their max fees from the same
        // balance: a transaction that leaves too little for them is refused (else the
        // escrow fails and the serving node is never paid).
        let needed = waiting.saturating_add(spends(&tx)).saturating_add(reserved);
        if balance < needed {
            return Err(VmMempoolError::CannotPay { balance, needed });
        }
        let queue_len = self.by_sender.get(&sender).map_or(0, BTreeMap::len);
        if self
            .by_sender
            .get(&sender)
            .is_some_and(|q| q.contains_key(&tx.nonce))
        {
            return Err(VmMempoolError::NonceTaken(tx.nonce));
        }
        if queue_len >= MAX_PER_SENDER {
            return Err(VmMempoolError::Full);
        }
        if self.by_id.len() >= MAX_TXS && !self.evict_for(&tx) {
            return Err(VmMempoolError::Full);
        }
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(tx.nonce, id);
        self.by_id.insert(id, tx);
        self.entered.insert(id, height);
        Ok(id)
    }

    /// What the waiting transactions of `sender` from `account_nonce` on spend at most
    /// (fees and transfers; those below it ran already and are on their way out).
    pub fn pending_spends(&self, sender: [u8; 20], account_nonce: u64) -> u128 {
        self.by_sender
            .get(&sender)
            .into_iter()
            .flat_map(|q| q.range(account_nonce..).map(|(_, id)| id))
            .filter_map(|id| self.by_id.get(id))
            .map(spends)
            .fold(0, u128::saturating_add)
    }

    /// Makes room for `tx` in a full pool: the transaction with the lowest fee rate among
    /// the last of each other sender's queue goes, if `tx` pays a higher rate (taking
    /// the last keeps every run without a gap). Whether one went.
    fn evict_for(&mut self, tx: &SignedVmTx) -> bool {
        let sender = tx.sender.hash160().0;
        let lowest = self
            .by_sender
            .iter()
            .filter(|(s, _)| **s != sender)
            .filter_map(|(_, q)| q.values().next_back())
            .filter_map(|id| self.by_id.get(id).map(|t| (fee_rate(t), *id)))
            .min();
        match lowest {
            Some((rate, id)) if rate < fee_rate(tx) => {
                self.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// Drops what entered more than [`EXPIRY_BLOCKS`] ledger blocks before `height`, and
    /// the sender's later transactions with it (they cannot run without it).
    pub fn expire(&mut self, height: u32) {
        self.height = self.height.max(height);
        let Some(limit) = self.height.checked_sub(EXPIRY_BLOCKS) else {
            return;
        };
        let expired: Vec<([u8; 20], u64)> = self
            .entered
            .iter()
            .filter(|(_, at)| **at < limit)
            .filter_map(|(id, _)| self.by_id.get(id))
            .map(|tx| (tx.sender.hash160().0, tx.nonce))
            .collect();
        for (sender, nonce) in expired {
            let doomed: Vec<Hash256> = self
                .by_sender
                .get(&sender)
                .map(|q| q.range(nonce..).map(|(_, id)| *id).collect())
                .unwrap_or_default();
            for id in doomed {
                self.remove(&id);
            }
        }
    }

    /// The ids of the waiting transactions, in no order.
    pub fn ids(&self) -> Vec<Hash256> {
        self.by_id.keys().copied().collect()
    }

    /// Whether a waiting transaction of `sender` has `nonce`.
    pub fn holds(&self, sender: [u8; 20], nonce: u64) -> bool {
        self.by_sender
            .get(&sender)
            .is_some_and(|q| q.contains_key(&nonce))
    }

    /// The next nonce of `sender` counting its waiting transactions, given the
    /// account's nonce.
    pub fn next_nonce(&self, sender: [u8; 20], account_nonce: u64) -> u64 {
        let mut next = account_nonce;
        if let Some(queue) = self.by_sender.get(&sender) {
            while queue.contains_key(&next) {
                next = next.saturating_add(1);
            }
        }
        next
    }

    /// The waiting transactions of `sender` from `account_nonce` on, consecutive.
    pub fn waiting_run(&self, sender: [u8; 20], account_nonce: u64) -> Vec<SignedVmTx> {
        let mut out = Vec::new();
        let mut next = account_nonce;
        if let Some(queue) = self.by_sender.get(&sender) {
            while let Some(tx) = queue.get(&next).and_then(|id| self.by_id.get(id)) {
                out.push(tx.clone());
                next = next.saturating_add(1);
            }
        }
        out
    }

    /// Transactions that can run next in the state `at` (a block's exec id): per sender,
    /// the run of consecutive nonces from the account's nonce there; at most `max_bytes`
    /// in all, and at most [`MAX_AUDITS_PER_BLOCK`] audit reveals (a sender's run ends
    /// before one more).
    pub fn select(
        &self,
        chain: &InferenceChain,
        ledger: &Chainstate,
        at: &[u8; 32],
        max_bytes: usize,
    ) -> Vec<SignedVmTx> {
        let tip = *at;
        let mut out = Vec::new();
        let (mut bytes, mut audits) = (0usize, 0usize);
        for (sender, queue) in &self.by_sender {
            let Ok((_, mut next)) = chain.vm().account(&tip, ledger, *sender) else {
                continue;
            };
            while let Some(tx) = queue.get(&next).and_then(|id| self.by_id.get(id)) {
                if tx.reveals_audit() {
                    if audits >= MAX_AUDITS_PER_BLOCK {
                        break;
                    }
                    audits += 1;
                }
                let size = tx.to_bytes().len();
                if bytes.saturating_add(size) > max_bytes {
                    return out;
                }
                bytes = bytes.saturating_add(size);
                out.push(tx.clone());
                next = next.saturating_add(1);
            }
        }
        out
    }

    /// Takes back a transaction that a block left out of the canonical chain carried (its
    /// signature was checked when the block was accepted): kept unless it or its nonce
    /// is here already or the pool is full. Whether it can still run is checked when a
    /// block picks it.
    pub fn restore(&mut self, tx: SignedVmTx) -> bool {
        let id = tx.txid();
        if self.by_id.contains_key(&id) || self.by_id.len() >= MAX_TXS {
            return false;
        }
        let queue = self.by_sender.entry(tx.sender.hash160().0).or_default();
        if queue.contains_key(&tx.nonce) || queue.len() >= MAX_PER_SENDER {
            if queue.is_empty() {
                self.by_sender.remove(&tx.sender.hash160().0);
            }
            return false;
        }
        queue.insert(tx.nonce, id);
        self.by_id.insert(id, tx);
        self.entered.insert(id, self.height);
        true
    }

    /// Forgets transactions a block carried.
    pub fn remove_included(&mut self, block: &InferenceBlock) {
        for tx in &block.vm_txs {
            self.remove(&tx.txid());
        }
    }

    pub fn remove(&mut self, id: &Hash256) {
        self.entered.remove(id);
        if let Some(tx) = self.by_id.remove(id) {
            let sender = tx.sender.hash160().0;
            if let Some(queue) = self.by_sender.get_mut(&sender) {
                queue.remove(&tx.nonce);
                if queue.is_empty() {
                    self.by_sender.remove(&sender);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fai_primitives::{Amount, Hash160, SecretKey};

    fn transfer(key: &SecretKey, nonce: u64, amount: u64) -> SignedVmTx {
        SignedVmTx::new(
            key,
            nonce,
            1,
            Amount::from_units(MIN_FEE).unwrap_or(Amount::ZERO),
            VmPayload::Transfer {
                to: Hash160([7; 20]),
                amount: Amount::from_units(amount).unwrap_or(Amount::ZERO),
                memo: vec![],
            },
        )
    }

    /// A left-out block's transactions come back once each, never over a waiting
    /// transaction's nonce, and never past the sender's bound.
    #[test]
    fn restored_transactions_keep_the_pools_rules() {
        let key = SecretKey::from_bytes(&[3; 32]).unwrap();
        let sender = key.public_key().hash160().0;
        let mut pool = VmMempool::default();
        assert!(pool.restore(transfer(&key, 4, 1)));
        assert!(!pool.restore(transfer(&key, 4, 1)), "the same one twice");
        assert!(
            !pool.restore(transfer(&key, 4, 2)),
            "another one with its nonce"
        );
        assert!(pool.restore(transfer(&key, 5, 1)));
        assert_eq!(pool.waiting_run(sender, 4).len(), 2);
        for nonce in 6..100 {
            pool.restore(transfer(&key, nonce, 1));
        }
        assert_eq!(pool.len(), MAX_PER_SENDER);
    }

    fn funds(balance: u128) -> Account {
        Account {
            balance,
            ..Account::default()
        }
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32]).unwrap()
    }

    fn paying(key: &SecretKey, nonce: u64, fee: u64) -> SignedVmTx {
        let mut tx = transfer(key, nonce, 1);
        tx.fee = Amount::from_units(fee).unwrap();
        SignedVmTx::new(key, nonce, 1, tx.fee, tx.payload)
    }

    /// Attack: funded accounts pin the pool with transactions that can never run (nonces
    /// far ahead, or more than the balance pays for); before, only nonces below the next
    /// one and each fee alone were checked, so 79 accounts could hold all 5,000 places.
    #[test]
    fn transactions_that_cannot_run_are_refused() {
        let k = key(3);
        let each = u128::from(MIN_FEE) + 1;
        let mut pool = VmMempool::default();
        // Nonces: the next run, then at most MAX_NONCE_GAP skipped.
        pool.admit(transfer(&k, 0, 1), 1, funds(100 * each), 10)
            .unwrap();
        let err = pool
            .admit(transfer(&k, 6, 1), 1, funds(100 * each), 10)
            .unwrap_err();
        assert_eq!(err, VmMempoolError::NonceGap { given: 6, next: 1 });
        pool.admit(transfer(&k, 5, 1), 1, funds(100 * each), 10)
            .unwrap();
        // The balance covers what all of them spend, not each alone.
        let poor = key(4);
        for nonce in 0..3 {
            pool.admit(transfer(&poor, nonce, 1), 1, funds(3 * each), 10)
                .unwrap();
        }
        let err = pool
            .admit(transfer(&poor, 3, 1), 1, funds(3 * each), 10)
            .unwrap_err();
        assert_eq!(
            err,
            VmMempoolError::CannotPay {
                balance: 3 * each,
                needed: 4 * each
            }
        );
        assert_eq!(pool.len(), 5);
    }

    /// What waits too long goes, and the sender's later nonces with it.
    #[test]
    fn waiting_transactions_expire() {
        let k = key(3);
        let mut pool = VmMempool::default();
        pool.admit(transfer(&k, 0, 1), 1, funds(1 << 40), 10)
            .unwrap();
        pool.admit(transfer(&k, 1, 1), 1, funds(1 << 40), 500)
            .unwrap();
        pool.admit(transfer(&key(4), 0, 1), 1, funds(1 << 40), 600)
            .unwrap();
        pool.expire(10 + EXPIRY_BLOCKS);
        assert_eq!(pool.len(), 3, "not yet");
        pool.expire(11 + EXPIRY_BLOCKS);
        assert_eq!(
            pool.len(),
            1,
            "nonce 0 expired, and nonce 1 cannot run without it"
        );
        assert!(pool.holds(key(4).public_key().hash160().0, 0));
    }

    /// A full pool takes a transaction that pays a higher fee rate, in place of the
    /// lowest among the last of each sender's run; not one that pays the same.
    #[test]
    fn a_full_pool_evicts_for_a_higher_fee_rate() {
        let mut pool = VmMempool::default();
        let senders = MAX_TXS.div_ceil(MAX_PER_SENDER);
        let mut left = MAX_TXS;
        for n in 0..senders {
            let k = key(10 + n as u8);
            for nonce in 0..MAX_PER_SENDER.min(left) as u64 {
                pool.admit(paying(&k, nonce, MIN_FEE), 1, funds(1 << 40), 1)
                    .unwrap();
            }
            left = left.saturating_sub(MAX_PER_SENDER);
        }
        assert_eq!(pool.len(), MAX_TXS);
        let newcomer = key(200);
        let err = pool.admit(paying(&newcomer, 0, MIN_FEE), 1, funds(1 << 40), 1);
        assert_eq!(err, Err(VmMempoolError::Full));
        pool.admit(paying(&newcomer, 0, 2 * MIN_FEE), 1, funds(1 << 40), 1)
            .unwrap();
        assert_eq!(pool.len(), MAX_TXS);
        // Every sender's run still starts at its account nonce and has no gap.
        for n in 0..senders {
            let sender = key(10 + n as u8).public_key().hash160().0;
            let queued = pool.by_sender.get(&sender).map_or(0, BTreeMap::len);
            assert_eq!(pool.waiting_run(sender, 0).len(), queued);
        }
    }

    /// Attack: a buyer is served, then spends its balance with a VM transaction before a
    /// block escrows the inference's max fee: the escrow fails and the serving node is
    /// never paid. Before, the pool checked the transaction's own fee only.
    #[test]
    fn a_transaction_cannot_spend_what_served_inferences_may_charge() {
        let buyer = key(5);
        let (max_fee, amount) = (50_000u128, 40_000u64);
        let needed = u128::from(MIN_FEE) + u128::from(amount);
        let account = |balance: u128| Account {
            balance,
            nonce: 0,
            reserved: max_fee,
        };
        let mut pool = VmMempool::default();
        let err = pool
            .admit(transfer(&buyer, 0, amount), 1, account(needed), 10)
            .unwrap_err();
        assert_eq!(
            err,
            VmMempoolError::CannotPay {
                balance: needed,
                needed: needed + max_fee
            }
        );
        pool.admit(
            transfer(&buyer, 0, amount),
            1,
            account(needed + max_fee),
            10,
        )
        .unwrap();
    }
}
