//! Signed VM transactions (transfers, contract calls, deployments on the inference layer)
//! waiting for an inference block: checked on entry (signature, chain id, evidence that
//! holds, nonce not spent, fee and sender's balance), bounded in count, and picked by the producer in
//! nonce order per sender.

use std::collections::{BTreeMap, HashMap};

use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::chain::InferenceChain;
use fai_inference_chain::vmtx::{SignedVmTx, VmPayload};
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
    #[error("the sender's balance {balance} base units does not cover the fee {fee}")]
    CannotPay { balance: u128, fee: u64 },
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
}

impl VmMempool {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Checks `tx` against the inference tip as of the ledger's tip and keeps it.
    pub fn accept(
        &mut self,
        tx: SignedVmTx,
        chain_id: u32,
        chain: &InferenceChain,
        ledger: &Chainstate,
    ) -> Result<Hash256, VmMempoolError> {
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
        let tip = chain.tip(ledger).exec_id;
        let (balance, next) = chain
            .vm()
            .account(&tip, ledger, sender)
            .map_err(|e| VmMempoolError::Chain(e.to_string()))?;
        if tx.nonce < next {
            return Err(VmMempoolError::NonceUsed {
                given: tx.nonce,
                next,
            });
        }
        if balance < u128::from(tx.fee.units()) {
            return Err(VmMempoolError::CannotPay {
                balance,
                fee: tx.fee.units(),
            });
        }
        let queue = self.by_sender.entry(sender).or_default();
        if queue.contains_key(&tx.nonce) {
            return Err(VmMempoolError::NonceTaken(tx.nonce));
        }
        if queue.len() >= MAX_PER_SENDER || self.by_id.len() >= MAX_TXS {
            return Err(VmMempoolError::Full);
        }
        queue.insert(tx.nonce, id);
        self.by_id.insert(id, tx);
        Ok(id)
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
    /// in all.
    pub fn select(
        &self,
        chain: &InferenceChain,
        ledger: &Chainstate,
        at: &[u8; 32],
        max_bytes: usize,
    ) -> Vec<SignedVmTx> {
        let tip = *at;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (sender, queue) in &self.by_sender {
            let Ok((_, mut next)) = chain.vm().account(&tip, ledger, *sender) else {
                continue;
            };
            while let Some(tx) = queue.get(&next).and_then(|id| self.by_id.get(id)) {
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
        true
    }

    /// Forgets transactions a block carried.
    pub fn remove_included(&mut self, block: &InferenceBlock) {
        for tx in &block.vm_txs {
            self.remove(&tx.txid());
        }
    }

    pub fn remove(&mut self, id: &Hash256) {
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
    use fai_inference_chain::vmtx::VmPayload;
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
}
