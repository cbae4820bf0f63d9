//! Verifiers' votes waiting to be carried: a block of the voted block's vote window
//! carries them (`InferenceChain::votes_to_carry` picks those its branch may still carry),
//! and the votes that reach a quorum are its finality certificate.
//!
//! Votes are checked before they come in (signature, a known block, a verifier of that
//! block's set, one verdict per inference); the pool keeps one vote per verifier and
//! block, for the last [`MAX_BLOCKS`] blocks voted on.

use std::collections::{HashMap, VecDeque};

use fai_inference_chain::quorum::Vote;
use fai_primitives::{Hash160, Hash256};

/// Blocks whose votes are kept.
pub const MAX_BLOCKS: usize = 256;
/// Votes kept per block: the verifier set has five members.
pub const MAX_VOTES_PER_BLOCK: usize = 8;

#[derive(Default)]
pub struct VotePool {
    votes: HashMap<Hash256, Vec<Vote>>,
    order: VecDeque<Hash256>,
}

impl VotePool {
    /// Adds a checked vote; false if this verifier's vote on the block is known already
    /// (or the block has all the votes it can use).
    pub fn add(&mut self, vote: Vote) -> bool {
        let who: Hash160 = vote.verifier.hash160();
        let block = vote.block;
        let list = self.votes.entry(block).or_default();
        if list.len() >= MAX_VOTES_PER_BLOCK || list.iter().any(|v| v.verifier.hash160() == who) {
            return false;
        }
        if list.is_empty() {
            self.order.push_back(block);
        }
        list.push(vote);
        while self.order.len() > MAX_BLOCKS {
            if let Some(old) = self.order.pop_front() {
                self.votes.remove(&old);
            }
        }
        true
    }

    /// The votes on `block`.
    pub fn votes_on(&self, block: &Hash256) -> Vec<Vote> {
        self.votes.get(block).cloned().unwrap_or_default()
    }

    /// Every vote here as (block, verifier), in no order.
    pub fn keys(&self) -> Vec<(Hash256, Hash160)> {
        self.votes
            .iter()
            .flat_map(|(block, list)| list.iter().map(|v| (*block, v.verifier.hash160())))
            .collect()
    }

    /// How many votes on `block` are here.
    pub fn count_on(&self, block: &Hash256) -> usize {
        self.votes.get(block).map_or(0, Vec::len)
    }

    /// Whether `verifier` has voted on `block`.
    pub fn has_voted(&self, block: &Hash256, verifier: &Hash160) -> bool {
        self.votes
            .get(block)
            .is_some_and(|l| l.iter().any(|v| v.verifier.hash160() == *verifier))
    }
}

#[cfg(test)]
mod tests {
    use fai_inference_chain::quorum::Verdict;
    use fai_primitives::SecretKey;

    use super::*;

    #[test]
    fn one_vote_per_verifier_and_block_and_old_blocks_go() {
        let keys: Vec<SecretKey> = (1..=3u8)
            .map(|i| SecretKey::from_bytes(&[i; 32]).unwrap())
            .collect();
        let mut pool = VotePool::default();
        let block = Hash256([7; 32]);
        assert!(pool.add(Vote::new(&keys[0], block, vec![Verdict::Accept])));
        assert!(
            !pool.add(Vote::new(&keys[0], block, vec![Verdict::Reject])),
            "a second vote of one verifier"
        );
        assert!(pool.add(Vote::new(&keys[1], block, vec![Verdict::Reject])));
        assert_eq!(pool.votes_on(&block).len(), 2);
        assert!(pool.has_voted(&block, &keys[1].public_key().hash160()));
        assert!(!pool.has_voted(&block, &keys[2].public_key().hash160()));
        for i in 0..MAX_BLOCKS as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            id[31] = 1;
            pool.add(Vote::new(&keys[2], Hash256(id), vec![]));
        }
        assert!(
            pool.votes_on(&block).is_empty(),
            "the oldest block's votes are dropped"
        );
    }
}
