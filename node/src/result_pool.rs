//! Served inferences waiting for an inference block, and the nonces of those still being
//! served.
//!
//! When a node has served an inference (the stream ended with a receipt), it keeps the
//! stub and receipt here, stores the text in the chain's payload store, and gossips
//! `ServedInference` (stub, receipt and text; fai-inference-chain's `served`) so that every inference node can put it
//! in a block and every verifier can replay it. The pool is bounded: per sender and in
//! all.
//!
//! The escrow of an inference spends its sender's account nonce, the same counter VM
//! transactions use; [`ResultPool::next_nonce`] with the VM pool's gives a wallet the
//! next free one.

use std::collections::{BTreeMap, HashMap};

use fai_inference_chain::types::Inference;
use fai_primitives::Hash256;

/// Inferences kept for one sender.
pub const MAX_PER_SENDER: usize = 64;
/// Inferences kept in all.
pub const MAX_TOTAL: usize = 10_000;
/// The most output tokens an answer still being served counts for in
/// [`ResultPool::pending_work`] (once served, it counts for those it took).
pub const SERVING_TOKENS_COUNTED: u32 = 256;
/// Inference heights past its expiry that an answer no block carried is still kept: a
/// block built beside the tip, or on an older parent than the tip (a commit that named
/// it), sits lower than the tip and may still carry it.
pub const EXPIRED_KEPT_HEIGHTS: u32 = 3;

/// Whether an answer expiring at inference height `expiry` is past keeping once the next
/// block of the canonical branch is at `next_height` ([`EXPIRED_KEPT_HEIGHTS`]).
pub fn expired_for_good(expiry: u32, next_height: u32) -> bool {
    expiry.saturating_add(EXPIRED_KEPT_HEIGHTS) < next_height
}

/// Why the pool does not take an inference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("inference {0} is known already")]
    Known(Hash256),
    #[error("nonce {nonce} of this sender is taken by a waiting transaction")]
    NonceTaken { nonce: u64 },
    #[error("this sender has {MAX_PER_SENDER} inferences waiting already")]
    SenderFull,
}

/// A nonce held for an inference still being served (no receipt yet), or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Serving(Serving),
    Waiting(Hash256),
}

/// An inference being served: its transaction id, max fee, and the model and most
/// tokens it may take (what its replay may cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    pub txid: Hash256,
    pub max_fee: u64,
    pub model: [u8; 32],
    pub max_tokens: u32,
}

impl Slot {
    fn txid(&self) -> Hash256 {
        match self {
            Slot::Serving(s) => s.txid,
            Slot::Waiting(t) => *t,
        }
    }
}

/// Inferences waiting for a block, by sender and nonce.
#[derive(Default)]
pub struct ResultPool {
    /// Each with its place in `order`.
    waiting: HashMap<Hash256, (u64, Inference)>,
    by_sender: HashMap<[u8; 20], BTreeMap<u64, Slot>>,
    /// The waiting ones by insertion, for eviction when full: removing one is a lookup
    /// (a scan of a queue made pruning a sender's run after each block quadratic).
    order: BTreeMap<u64, Hash256>,
    /// The place the next one added takes in `order`.
    next_place: u64,
}

impl ResultPool {
    /// Holds `nonce` of `sender` for an inference that is being served, which may cost
    /// the sender its max fee.
    pub fn reserve(
        &mut self,
        sender: [u8; 20],
        nonce: u64,
        serving: Serving,
    ) -> Result<(), PoolError> {
        let txid = serving.txid;
        let slots = self.by_sender.entry(sender).or_default();
        if let Some(slot) = slots.get(&nonce) {
            return Err(if slot.txid() == txid {
                PoolError::Known(txid)
            } else {
                PoolError::NonceTaken { nonce }
            });
        }
        if slots.len() >= MAX_PER_SENDER {
            return Err(PoolError::SenderFull);
        }
        slots.insert(nonce, Slot::Serving(serving));
        Ok(())
    }

    /// Lets go of a nonce held for an inference that failed.
    pub fn release(&mut self, sender: [u8; 20], nonce: u64, txid: Hash256) {
        if let Some(slots) = self.by_sender.get_mut(&sender) {
            if matches!(slots.get(&nonce), Some(Slot::Serving(s)) if s.txid == txid) {
                slots.remove(&nonce);
            }
            if slots.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
    }

    /// Adds a served inference (its nonce may be held by [`ResultPool::reserve`]).
    pub fn add(&mut self, inference: Inference) -> Result<Hash256, PoolError> {
        let txid = inference.stub.txid();
        if self.waiting.contains_key(&txid) {
            return Err(PoolError::Known(txid));
        }
        let sender = inference.stub.sender.hash160().0;
        let nonce = inference.stub.nonce;
        let slots = self.by_sender.entry(sender).or_default();
        match slots.get(&nonce) {
            Some(Slot::Serving(s)) if s.txid == txid => {}
            Some(_) => return Err(PoolError::NonceTaken { nonce }),
            None if slots.len() >= MAX_PER_SENDER => return Err(PoolError::SenderFull),
            None => {}
        }
        slots.insert(nonce, Slot::Waiting(txid));
        let place = self.next_place;
        self.next_place = place.saturating_add(1);
        self.waiting.insert(txid, (place, inference));
        self.order.insert(place, txid);
        while self.waiting.len() > MAX_TOTAL {
            match self.order.first_key_value().map(|(_, t)| *t) {
                Some(old) => self.remove(&old),
                None => break,
            }
        }
        Ok(txid)
    }

    pub fn contains(&self, txid: &Hash256) -> bool {
        self.waiting.contains_key(txid)
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// The ids of the waiting inferences, in no order.
    pub fn txids(&self) -> Vec<Hash256> {
        self.waiting.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Forgets an inference (included in a block, or given up on).
    pub fn remove(&mut self, txid: &Hash256) {
        let Some((place, inf)) = self.waiting.remove(txid) else {
            return;
        };
        self.order.remove(&place);
        let sender = inf.stub.sender.hash160().0;
        if let Some(slots) = self.by_sender.get_mut(&sender) {
            if slots.get(&inf.stub.nonce).map(Slot::txid) == Some(*txid) {
                slots.remove(&inf.stub.nonce);
            }
            if slots.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
    }

    /// Forgets the waiting answers that expired [`EXPIRED_KEPT_HEIGHTS`] before the
    /// canonical branch's next block at `next_height` (no block near the tip can carry
    /// them), and how many: each held its sender's nonce, so that the sender could not
    /// buy at that nonce again and nothing after it could be carried, until the pool was
    /// full enough to evict it.
    pub fn forget_expired(&mut self, next_height: u32) -> usize {
        let expired: Vec<Hash256> = self
            .waiting
            .iter()
            .filter(|(_, (_, inf))| expired_for_good(inf.stub.expiry, next_height))
            .map(|(txid, _)| *txid)
            .collect();
        for txid in &expired {
            self.remove(txid);
        }
        expired.len()
    }

    /// Forgets what a sender's account nonce has passed (included elsewhere, or the
    /// nonce went to a VM transaction).
    pub fn prune_sender(&mut self, sender: [u8; 20], account_nonce: u64) {
        let stale: Vec<Hash256> = match self.by_sender.get(&sender) {
            Some(slots) => slots
                .range(..account_nonce)
                .filter_map(|(_, s)| match s {
                    Slot::Waiting(t) => Some(*t),
                    Slot::Serving(..) => None,
                })
                .collect(),
            None => return,
        };
        for t in stale {
            self.remove(&t);
        }
    }

    /// What `sender` may still be charged for the inferences held here: the max fees of
    /// those being served and of those waiting for a block (none is escrowed yet).
    pub fn pending_fees(&self, sender: [u8; 20]) -> u128 {
        let Some(slots) = self.by_sender.get(&sender) else {
            return 0;
        };
        slots
            .values()
            .map(|slot| match slot {
                Slot::Serving(s) => u128::from(s.max_fee),
                Slot::Waiting(t) => self
                    .waiting
                    .get(t)
                    .map_or(0, |(_, inf)| u128::from(inf.stub.max_fee.units())),
            })
            .fold(0, u128::saturating_add)
    }

    /// Whether `nonce` of `sender` is held.
    pub fn holds(&self, sender: [u8; 20], nonce: u64) -> bool {
        self.by_sender
            .get(&sender)
            .is_some_and(|s| s.contains_key(&nonce))
    }

    /// The waiting inferences of `sender` from `nonce` on, consecutive, in nonce order.
    pub fn run_from(&self, sender: [u8; 20], nonce: u64) -> impl Iterator<Item = &Inference> + '_ {
        let slots = self.by_sender.get(&sender);
        std::iter::successors(Some(nonce), |n| n.checked_add(1)).map_while(move |n| {
            match slots?.get(&n)? {
                Slot::Waiting(t) => self.waiting.get(t).map(|(_, inf)| inf),
                Slot::Serving(..) => None,
            }
        })
    }

    /// The replay work of what a block could take from here, as `cost` (model, output
    /// tokens) puts it: per sender, the run of held nonces from its account's
    /// (`account_nonce`), those waiting for a block at the tokens they took, those
    /// being served at the most they may take, up to [`SERVING_TOKENS_COUNTED`]. What
    /// waits behind a missing nonce or an answer expired for a block at `next_height`
    /// is not counted: no block can carry it, and counted, a sender holding nonces
    /// past a gap it never fills (or answers that expire before a block carries them)
    /// would have every node refuse every request as busy. Nor is a long answer being
    /// served counted at all its max tokens: one request asking for thousands would
    /// have the node refuse everyone else while it runs.
    pub fn pending_work(
        &self,
        next_height: u32,
        mut account_nonce: impl FnMut([u8; 20]) -> u64,
        mut cost: impl FnMut(&[u8; 32], u32) -> u64,
    ) -> u64 {
        let mut total = 0u64;
        for (sender, slots) in &self.by_sender {
            let mut next = account_nonce(*sender);
            for (nonce, slot) in slots.range(next..) {
                if *nonce != next {
                    break;
                }
                let work = match slot {
                    Slot::Serving(s) => cost(&s.model, s.max_tokens.min(SERVING_TOKENS_COUNTED)),
                    Slot::Waiting(t) => match self.waiting.get(t) {
                        Some((_, inf)) if inf.stub.expiry >= next_height => {
                            cost(&inf.stub.model, inf.receipt.tokens)
                        }
                        _ => break,
                    },
                };
                total = total.saturating_add(work);
                next = next.saturating_add(1);
            }
        }
        total
    }

    /// The senders with inferences waiting.
    pub fn senders(&self) -> Vec<[u8; 20]> {
        self.by_sender.keys().copied().collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use fai_inference_chain::served::ServedInference;
    use fai_inference_chain::types::{InferenceStub, Prompt, ResultReceipt, Sampling};
    use fai_primitives::{Amount, SecretKey, Signature};

    use super::*;

    fn served(key: &SecretKey, node: &SecretKey, nonce: u64) -> ServedInference {
        served_expiring(key, node, nonce, 100)
    }

    /// `key`'s inference at `nonce`, expiring at inference height `expiry`, served by
    /// `node` (3 tokens, on model [1; 32]).
    pub(crate) fn served_expiring(
        key: &SecretKey,
        node: &SecretKey,
        nonce: u64,
        expiry: u32,
    ) -> ServedInference {
        let prompt = Prompt {
            input: format!("question {nonce}"),
            ..Prompt::default()
        };
        let mut stub = InferenceStub {
            sender: key.public_key(),
            nonce,
            chain_id: 7,
            model: [1; 32],
            prompt_hash: prompt.hash(),
            sampling: Sampling {
                max_tokens: 8,
                temperature_milli: 0,
                top_p_milli: 1000,
                top_k: 0,
                seed: 0,
                stop: vec![],
            },
            max_fee: Amount::from_units(1_000).unwrap(),
            expiry,
            signature: Signature([0; 64]),
        };
        stub.sign(key);
        let output = "an answer".to_string();
        let mut receipt = ResultReceipt {
            tx: stub.txid(),
            output_hash: ResultReceipt::hash_output(&output),
            tokens_hash: ResultReceipt::hash_tokens(&[5, 6, 7]),
            tokens: 3,
            node: node.public_key(),
            signature: Signature([0; 64]),
        };
        receipt.sign(node);
        ServedInference {
            inference: Inference { stub, receipt },
            prompt,
            output,
            tokens: vec![5, 6, 7],
        }
    }

    /// A hold for `txid` at `max_fee`, on model [9; 32] and at most 10 tokens.
    fn serving(txid: Hash256, max_fee: u64) -> Serving {
        Serving {
            txid,
            max_fee,
            model: [9; 32],
            max_tokens: 10,
        }
    }

    #[test]
    fn nonces_are_held_while_serving_and_runs_are_consecutive() {
        let (user, node) = (
            SecretKey::from_bytes(&[4; 32]).unwrap(),
            SecretKey::from_bytes(&[5; 32]).unwrap(),
        );
        let sender = user.public_key().hash160().0;
        let mut pool = ResultPool::default();
        let a = served(&user, &node, 0).inference;
        let b = served(&user, &node, 1).inference;
        let d = served(&user, &node, 3).inference;
        pool.reserve(sender, 0, serving(a.stub.txid(), 7)).unwrap();
        assert!(pool.holds(sender, 0));
        assert_eq!(
            pool.reserve(sender, 0, serving(b.stub.txid(), 7)),
            Err(PoolError::NonceTaken { nonce: 0 })
        );
        assert!(
            pool.run_from(sender, 0).next().is_none(),
            "still being served"
        );
        pool.add(a.clone()).unwrap();
        pool.add(b.clone()).unwrap();
        pool.add(d).unwrap();
        assert_eq!(pool.add(b.clone()), Err(PoolError::Known(b.stub.txid())));
        let run: Vec<u64> = pool.run_from(sender, 0).map(|i| i.stub.nonce).collect();
        assert_eq!(run, vec![0, 1], "nonce 2 is missing: 3 waits");
        pool.prune_sender(sender, 2);
        assert!(!pool.contains(&a.stub.txid()) && !pool.contains(&b.stub.txid()));
        assert_eq!(pool.len(), 1);
        // A failed serve lets its nonce go.
        pool.reserve(sender, 2, serving(Hash256([9; 32]), 7))
            .unwrap();
        pool.release(sender, 2, Hash256([9; 32]));
        assert!(!pool.holds(sender, 2));
    }

    /// Runs of a sender carried block after block: each prune removes a run, and the
    /// eviction order holds exactly the waiting ones, an inference added again after
    /// its removal (a reorganisation) once, at its new place.
    #[test]
    fn pruning_run_after_run_keeps_the_eviction_order_exact() {
        let (user, node) = (
            SecretKey::from_bytes(&[6; 32]).unwrap(),
            SecretKey::from_bytes(&[7; 32]).unwrap(),
        );
        let sender = user.public_key().hash160().0;
        let mut pool = ResultPool::default();
        for wave in 0..12u64 {
            for nonce in wave * 40..(wave + 1) * 40 {
                pool.add(served(&user, &node, nonce).inference).unwrap();
            }
            assert_eq!(pool.len(), 40);
            assert_eq!(pool.run_from(sender, wave * 40).count(), 40);
            pool.prune_sender(sender, (wave + 1) * 40);
            assert!(pool.is_empty());
            assert!(pool.order.is_empty(), "{} left", pool.order.len());
        }
        let again = served(&user, &node, 480).inference;
        let later = served(&user, &node, 481).inference;
        pool.add(again.clone()).unwrap();
        pool.remove(&again.stub.txid());
        pool.add(later.clone()).unwrap();
        pool.add(again.clone()).unwrap();
        let order: Vec<Hash256> = pool.order.values().copied().collect();
        assert_eq!(order, vec![later.stub.txid(), again.stub.txid()]);
    }

    /// A buyer and a node, the buyer's inference at nonce 0 served by the node, the
    /// buyer's address, and an empty pool.
    fn buyer_with_one_served() -> (SecretKey, SecretKey, Inference, [u8; 20], ResultPool) {
        let (buyer, node) = (
            SecretKey::from_bytes(&[2; 32]).unwrap(),
            SecretKey::from_bytes(&[3; 32]).unwrap(),
        );
        let a = served(&buyer, &node, 0).inference;
        let sender = a.stub.sender.hash160().0;
        (buyer, node, a, sender, ResultPool::default())
    }

    /// What a sender may still be charged: the max fees of what is being served for it
    /// and of what waits for a block; a released hold no longer counts.
    #[test]
    fn pending_fees_count_served_and_waiting_inferences() {
        let (_, _, a, sender, mut pool) = buyer_with_one_served();
        assert_eq!(pool.pending_fees(sender), 0);
        pool.reserve(sender, 5, serving(Hash256([5; 32]), 300))
            .unwrap();
        pool.add(a.clone()).unwrap();
        let waiting = u128::from(a.stub.max_fee.units());
        assert_eq!(pool.pending_fees(sender), 300 + waiting);
        pool.release(sender, 5, Hash256([5; 32]));
        assert_eq!(pool.pending_fees(sender), waiting);
        pool.remove(&a.stub.txid());
        assert_eq!(pool.pending_fees(sender), 0);
    }

    /// The replay work a block could take: what waits at the tokens it took, what is
    /// being served at its most, from the sender's account nonce on up to the first
    /// nonce nobody holds; neither once gone.
    #[test]
    fn pending_work_counts_the_run_from_the_account_nonce() {
        let (buyer, node, a, sender, mut pool) = buyer_with_one_served();
        // 1,000 per token on a's model, 7 per token on the held one's ([9; 32]).
        let model_a = a.stub.model;
        let cost = |model: &[u8; 32], tokens: u32| {
            u64::from(tokens) * if *model == model_a { 1_000 } else { 7 }
        };
        let at = |n: u64| move |_: [u8; 20]| n;
        // Blocks from height 50 on (the test answers expire at 100).
        let h = 50;
        assert_eq!(pool.pending_work(h, at(0), cost), 0);
        pool.reserve(sender, 1, serving(Hash256([5; 32]), 300))
            .unwrap();
        assert_eq!(pool.pending_work(h, at(0), cost), 0, "nonce 0 is missing");
        assert_eq!(pool.pending_work(h, at(1), cost), 70);
        pool.add(a.clone()).unwrap();
        assert_eq!(pool.pending_work(h, at(0), cost), 3_000 + 70);
        // Past a gap (nonce 2), nothing counts.
        pool.add(served(&buyer, &node, 3).inference).unwrap();
        assert_eq!(pool.pending_work(h, at(0), cost), 3_000 + 70);
        assert_eq!(pool.pending_work(h, at(3), cost), 3_000);
        pool.release(sender, 1, Hash256([5; 32]));
        assert_eq!(pool.pending_work(h, at(0), cost), 3_000);
        // Past its expiry, an answer and its run count for nothing.
        assert_eq!(pool.pending_work(101, at(0), cost), 0);
        pool.remove(&a.stub.txid());
        assert_eq!(pool.pending_work(h, at(0), cost), 0);
        // A long answer being served counts for at most SERVING_TOKENS_COUNTED tokens.
        let mut long = serving(Hash256([6; 32]), 300);
        long.max_tokens = 30_000;
        pool.reserve(sender, 0, long).unwrap();
        assert_eq!(
            pool.pending_work(h, at(0), cost),
            7 * u64::from(SERVING_TOKENS_COUNTED)
        );
    }

    /// An answer that expired waiting for a block lets its nonce go: the buyer can buy
    /// at it again (and what follows can be carried). Before, it held the nonce until
    /// 10,000 others evicted it.
    #[test]
    fn an_expired_answer_frees_its_nonce() {
        let (buyer, node, _, sender, mut pool) = buyer_with_one_served();
        let short = served_expiring(&buyer, &node, 0, 50).inference;
        let long = served_expiring(&buyer, &node, 1, 60).inference;
        pool.add(short.clone()).unwrap();
        pool.add(long.clone()).unwrap();
        let again = serving(Hash256([8; 32]), 5);
        assert_eq!(
            pool.reserve(sender, 0, again),
            Err(PoolError::NonceTaken { nonce: 0 })
        );
        // A block at 50 can still carry it, and one a little below the tip too.
        let kept = 50 + EXPIRED_KEPT_HEIGHTS;
        assert_eq!(pool.forget_expired(50), 0);
        assert_eq!(pool.forget_expired(kept), 0);
        assert!(pool.contains(&short.stub.txid()));
        assert_eq!(pool.forget_expired(kept + 1), 1);
        assert!(!pool.contains(&short.stub.txid()) && pool.contains(&long.stub.txid()));
        pool.reserve(sender, 0, again).unwrap();
        assert_eq!(pool.forget_expired(61 + EXPIRED_KEPT_HEIGHTS), 1);
        assert_eq!(pool.len(), 0);
        assert!(pool.order.is_empty());
        assert!(
            pool.holds(sender, 0),
            "a hold for an answer being served stays"
        );
    }
}
