//! The payload store: the text of inferences (prompt, output and output tokens), sealed
//! to the verifiers of their block (`crate::served::SealedServed`: no node that is not one
//! of them can read it), kept only as long as verification and disputes need it. When a block becomes final its inferences are
//! marked with the ledger height of finality; once the ledger is [`RECLAIM_DEPTH`] blocks
//! past that height the text is deleted (the paper's disk reclamation). Blocks keep the
//! hashes forever.
//!
//! Layout in [`PAYLOADS_COLUMN`]: `s ‖ txid ‖ receipt digest` → the sealed text
//! (`SealedServed`), `e ‖ height (u32 BE) ‖ txid` → nothing (arrivals, for expiry),
//! `f ‖ height (u32 BE) ‖ txid ‖ settling block id` → nothing (the reclamation index, in
//! height order).
//!
//! Text is deleted only when the block that settled it is still canonical: a block can
//! be left behind by a reorganisation after it settled its parent's inferences, and
//! those go back to the pools, where verifiers need their text again.

use std::sync::Arc;

use fai_primitives::codec::{Decode, Encode};
use fai_primitives::Hash256;
use fai_storage::{KeyValueStore, StorageError, WriteBatch};

use crate::served::SealedServed;

pub const PAYLOADS_COLUMN: &str = "payloads";
/// Ledger blocks after finality before text is deleted.
pub const RECLAIM_DEPTH: u32 = 6;
/// Answers of one transaction deleted at once when its text is reclaimed.
const MAX_ANSWERS_KEPT: usize = 64;
/// Ledger blocks after its arrival that text no block settled is kept: far past any
/// settlement (a block's child settles it), so that text of inferences never carried,
/// or carried by a branch that lost and never settled again, does not stay for ever.
pub const UNSETTLED_TTL: u32 = 1_000;

fn entry_key(height: u32, txid: &Hash256) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&txid.0);
    k
}

fn key(prefix: u8, txid: &Hash256) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&txid.0);
    k
}

/// An answer's key: its transaction id and the digest of the receipt that signs it, so
/// that another node's receipt for the same request (a rival's, gossiped first) never
/// takes the place of the answer a block carries.
fn answer_key(prefix: u8, txid: &Hash256, receipt: &Hash256) -> Vec<u8> {
    let mut k = key(prefix, txid);
    k.extend_from_slice(&receipt.0);
    k
}

fn final_key(height: u32, txid: &Hash256, block: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![b'f'];
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&txid.0);
    k.extend_from_slice(block);
    k
}

/// Sealed text by transaction id and receipt digest (`ResultReceipt::signing_digest`):
/// a rival's answer to the same request never takes the place of the one a block carries.
#[derive(Clone)]
pub struct PayloadStore {
    kv: Arc<dyn KeyValueStore>,
}

impl PayloadStore {
    pub fn new(kv: Arc<dyn KeyValueStore>) -> Self {
        PayloadStore { kv }
    }

    /// Stores a served inference's sealed text under its transaction and receipt;
    /// `height` is the ledger height it arrives at (it expires [`UNSETTLED_TTL`] blocks
    /// later whatever happens).
    pub fn put_sealed(&self, sealed: &SealedServed, height: u32) -> Result<(), StorageError> {
        let txid = sealed.inference.stub.txid();
        let receipt = sealed.inference.receipt.signing_digest();
        let mut b = WriteBatch::new();
        b.put(PAYLOADS_COLUMN, entry_key(height, &txid), Vec::new());
        b.put(
            PAYLOADS_COLUMN,
            answer_key(b's', &txid, &receipt),
            sealed.to_bytes(),
        );
        self.kv.write(b)
    }

    /// The sealed text of the answer signed by `receipt`, if it is here.
    pub fn sealed(
        &self,
        txid: &Hash256,
        receipt: &Hash256,
    ) -> Result<Option<SealedServed>, StorageError> {
        match self
            .kv
            .get(PAYLOADS_COLUMN, &answer_key(b's', txid, receipt))?
        {
            None => Ok(None),
            Some(bytes) => {
                SealedServed::from_bytes(&bytes)
                    .map(Some)
                    .map_err(|e| StorageError::Corrupt {
                        column: PAYLOADS_COLUMN,
                        detail: format!("sealed text of {txid}: {e}"),
                    })
            }
        }
    }

    /// Whether the sealed text of the answer signed by `receipt` is here.
    pub fn has_answer(&self, txid: &Hash256, receipt: &Hash256) -> bool {
        matches!(
            self.kv
                .get(PAYLOADS_COLUMN, &answer_key(b's', txid, receipt)),
            Ok(Some(_))
        )
    }

    /// Whether any text of transaction `txid` is here.
    pub fn holds_any(&self, txid: &Hash256) -> Result<bool, StorageError> {
        Ok(!self.answer_keys(b's', txid, 1)?.is_empty())
    }

    /// The keys of the answers (`prefix` b's') of `txid`, `limit` at most.
    fn answer_keys(
        &self,
        prefix: u8,
        txid: &Hash256,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        let upper = answer_key(prefix, txid, &Hash256([0xff; 32]));
        Ok(self
            .kv
            .scan_back(PAYLOADS_COLUMN, &key(prefix, txid), &upper, limit)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Records that block `block`, anchored at ledger height `height`, settled the
    /// inferences `txids`.
    pub fn mark_final(
        &self,
        txids: &[Hash256],
        height: u32,
        block: &[u8; 32],
    ) -> Result<(), StorageError> {
        let mut b = WriteBatch::new();
        for txid in txids {
            b.put(PAYLOADS_COLUMN, final_key(height, txid, block), Vec::new());
        }
        self.kv.write(b)
    }

    /// Deletes the text of every inference settled at least [`RECLAIM_DEPTH`] ledger
    /// blocks below `ledger_height` by a block `canonical` says is still on the canonical
    /// chain; returns how many inferences it reclaimed. A settlement by a block left
    /// behind is forgotten and its text kept: the inference is settled again (and marked
    /// again) by the branch that won, and verifiers may need the text until then.
    pub fn reclaim(
        &self,
        ledger_height: u32,
        mut canonical: impl FnMut(&[u8; 32]) -> bool,
    ) -> Result<usize, StorageError> {
        let expired = self.expire(ledger_height)?;
        let Some(limit) = ledger_height.checked_sub(RECLAIM_DEPTH) else {
            return Ok(expired);
        };
        let mut upper = final_key(limit, &Hash256([0xff; 32]), &[0xff; 32]);
        let mut reclaimed = 0usize;
        loop {
            let found = self.kv.scan_back(PAYLOADS_COLUMN, b"f", &upper, 512)?;
            if found.is_empty() {
                return Ok(reclaimed.saturating_add(expired));
            }
            let mut b = WriteBatch::new();
            for (k, _) in &found {
                let Some(txid) = k.get(5..37).and_then(|t| <[u8; 32]>::try_from(t).ok()) else {
                    continue;
                };
                let txid = Hash256(txid);
                let settled_by = k.get(37..69).and_then(|b| <[u8; 32]>::try_from(b).ok());
                b.delete(PAYLOADS_COLUMN, k.clone());
                if settled_by.is_some_and(|block| !canonical(&block)) {
                    continue;
                }
                self.delete_text(&mut b, &txid)?;
                reclaimed = reclaimed.saturating_add(1);
            }
            let last = found.last().map(|(k, _)| k.clone());
            self.kv.write(b)?;
            match last {
                Some(k) if found.len() == 512 => upper = k,
                _ => return Ok(reclaimed.saturating_add(expired)),
            }
        }
    }

    /// Deletes every sealed answer (a rival's too: at most a few) of `txid`.
    fn delete_text(&self, b: &mut WriteBatch, txid: &Hash256) -> Result<(), StorageError> {
        for k in self.answer_keys(b's', txid, MAX_ANSWERS_KEPT)? {
            b.delete(PAYLOADS_COLUMN, k);
        }
        Ok(())
    }

    /// Deletes text that arrived more than [`UNSETTLED_TTL`] ledger blocks before
    /// `ledger_height`, settled or not; returns how many inferences' text it deleted.
    fn expire(&self, ledger_height: u32) -> Result<usize, StorageError> {
        let Some(limit) = ledger_height.checked_sub(UNSETTLED_TTL.saturating_add(1)) else {
            return Ok(0);
        };
        let mut upper = entry_key(limit, &Hash256([0xff; 32]));
        let mut expired = 0usize;
        loop {
            let found = self.kv.scan_back(PAYLOADS_COLUMN, b"e", &upper, 512)?;
            let mut b = WriteBatch::new();
            // Deleted in this batch already (arrived twice): counted once.
            let mut deleted = std::collections::HashSet::new();
            for (k, _) in &found {
                b.delete(PAYLOADS_COLUMN, k.clone());
                if let Some(txid) = k.get(5..37).and_then(|t| <[u8; 32]>::try_from(t).ok()) {
                    let txid = Hash256(txid);
                    // Text reclaimed after its settlement left its arrival behind.
                    if !deleted.contains(&txid) && self.holds_any(&txid)? {
                        deleted.insert(txid);
                        self.delete_text(&mut b, &txid)?;
                        expired = expired.saturating_add(1);
                    }
                }
            }
            let last = found.last().map(|(k, _)| k.clone());
            self.kv.write(b)?;
            match last {
                Some(k) if found.len() == 512 => upper = k,
                _ => return Ok(expired),
            }
        }
    }
}
