//! Verifiers' votes waiting to be carried, in their two phases (decision 0004): the
//! commitments, which the blocks of the voted block's commit phase carry
//! (`InferenceChain::commits_to_carry`), and the votes that reveal them, which the blocks
//! after carry (`InferenceChain::votes_to_carry`); the votes that reach a quorum are
//! the voted block's finality certificate.
//!
//! Both are checked before they come in (signature, a known block, a verifier of that
//! block's set; a vote has one verdict per inference); the pool keeps one commitment and
//! one vote per verifier and block, for the last [`MAX_BLOCKS`] blocks voted on.

use std::collections::{HashMap, VecDeque};

use fai_inference_chain::quorum::{Vote, VoteCommit};
use fai_primitives::{Hash160, Hash256, PublicKey};

/// Blocks whose votes are kept.
pub const MAX_BLOCKS: usize = 256;
/// Votes kept per block: the verifier set has five members.
pub const MAX_VOTES_PER_BLOCK: usize = 8;

/// What the pool keeps per block and verifier.
trait Signed: Clone {
    fn block(&self) -> Hash256;
    fn verifier(&self) -> &PublicKey;
}

impl Signed for Vote {
    fn block(&self) -> Hash256 {
        self.block
    }
    fn verifier(&self) -> &PublicKey {
        &self.verifier
    }
}

impl Signed for VoteCommit {
    fn block(&self) -> Hash256 {
        self.block
    }
    fn verifier(&self) -> &PublicKey {
        &self.verifier
    }
}

/// One item per verifier and block, for the last [`MAX_BLOCKS`] blocks.
struct PerBlock<T> {
    items: HashMap<Hash256, Vec<T>>,
    order: VecDeque<Hash256>,
}

impl<T> Default for PerBlock<T> {
    fn default() -> Self {
        PerBlock {
            items: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<T: Signed> PerBlock<T> {
    fn add(&mut self, item: T) -> bool {
        let block = item.block();
        let list = self.items.entry(block).or_default();
        if list.len() >= MAX_VOTES_PER_BLOCK || list.iter().any(|v| v.verifier() == item.verifier())
        {
            return false;
        }
        if list.is_empty() {
            self.order.push_back(block);
        }
        list.push(item);
        while self.order.len() > MAX_BLOCKS {
            if let Some(old) = self.order.pop_front() {
                self.items.remove(&old);
            }
        }
        true
    }

    fn on(&self, block: &Hash256) -> Vec<T> {
        self.items.get(block).cloned().unwrap_or_default()
    }

    fn keys(&self) -> Vec<(Hash256, Hash160)> {
        self.items
            .iter()
            .flat_map(|(block, list)| list.iter().map(|v| (*block, v.verifier().hash160())))
            .collect()
    }

    fn has(&self, block: &Hash256, verifier: &Hash160) -> bool {
        self.items
            .get(block)
            .is_some_and(|l| l.iter().any(|v| v.verifier().hash160() == *verifier))
    }
}

#[derive(Default)]
pub struct VotePool {
    votes: PerBlock<Vote>,
    commits: PerBlock<VoteCommit>,
}

impl VotePool {
    /// Adds a checked vote; false if this verifier's vote on the block is known already
    /// (or the block has all the votes it can use).
    pub fn add(&mut self, vote: Vote) -> bool {
        self.votes.add(vote)
    }

    /// Adds a checked commitment; false if this verifier's commitment on the block is
    /// known already (or the block has all it can use).
    pub fn add_commit(&mut self, commit: VoteCommit) -> bool {
        self.commits.add(commit)
    }

    /// The votes on `block`.
    pub fn votes_on(&self, block: &Hash256) -> Vec<Vote> {
        self.votes.on(block)
    }

    /// The commitments to votes on `block`.
    pub fn commits_on(&self, block: &Hash256) -> Vec<VoteCommit> {
        self.commits.on(block)
    }

    /// Every vote here as (block, verifier), in no order.
    pub fn keys(&self) -> Vec<(Hash256, Hash160)> {
        self.votes.keys()
    }

    /// Every commitment here as (block, verifier), in no order.
    pub fn commit_keys(&self) -> Vec<(Hash256, Hash160)> {
        self.commits.keys()
    }

    /// How many votes on `block` are here.
    pub fn count_on(&self, block: &Hash256) -> usize {
        self.votes.items.get(block).map_or(0, Vec::len)
    }

    /// Whether `verifier` has voted on `block`.
    pub fn has_voted(&self, block: &Hash256, verifier: &Hash160) -> bool {
        self.votes.has(block, verifier)
    }

    /// Whether `verifier` has committed to a vote on `block`.
    pub fn has_committed(&self, block: &Hash256, verifier: &Hash160) -> bool {
        self.commits.has(block, verifier)
    }
}

/// What to do with a held vote, as the chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Keep it secret: the canonical branch does not hold the end of the voted block's
    /// commit phase yet (or does not hold the voted block).
    Hold,
    /// Reveal it: every commitment on the block had to be carried by now.
    Reveal,
    /// Forget it: the block's window has closed.
    Forget,
}

/// This node's own votes, committed to and kept secret until the commit phase of the
/// voted block is over on the canonical branch (decision 0004: a vote revealed earlier
/// could be copied by a verifier that has not committed yet). At most [`MAX_HELD`].
#[derive(Default)]
pub struct HeldVotes {
    votes: VecDeque<Vote>,
}

/// Votes held at once: a verifier votes once per block, and a block's vote leaves
/// within the window.
pub const MAX_HELD: usize = 64;

impl HeldVotes {
    /// Holds `vote` (the oldest goes when full).
    pub fn hold(&mut self, vote: Vote) {
        if self.votes.len() >= MAX_HELD {
            self.votes.pop_front();
        }
        self.votes.push_back(vote);
    }

    /// The held votes that `due` says to reveal, which leave with those to forget.
    pub fn take_due(&mut self, due: impl Fn(&Vote) -> Due) -> Vec<Vote> {
        let mut out = Vec::new();
        self.votes.retain(|v| match due(v) {
            Due::Hold => true,
            Due::Reveal => {
                out.push(v.clone());
                false
            }
            Due::Forget => false,
        });
        out
    }

    pub fn len(&self) -> usize {
        self.votes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use fai_inference_chain::quorum::Verdict;
    use fai_primitives::SecretKey;

    use super::*;

    #[test]
    fn one_vote_and_one_commitment_per_verifier_and_block_and_old_blocks_go() {
        let keys: Vec<SecretKey> = (1..=3u8)
            .map(|i| SecretKey::from_bytes(&[i; 32]).unwrap())
            .collect();
        let mut pool = VotePool::default();
        let block = Hash256([7; 32]);
        let first = Vote::new(&keys[0], block, vec![Verdict::Accept]);
        assert!(pool.add_commit(VoteCommit::of(&keys[0], &first)));
        assert!(pool.add(first.clone()));
        let second = Vote::new(&keys[0], block, vec![Verdict::Reject]);
        assert!(!pool.add(second.clone()), "a second vote of one verifier");
        assert!(
            !pool.add_commit(VoteCommit::of(&keys[0], &second)),
            "a second commitment of one verifier"
        );
        assert_eq!(
            pool.commits_on(&block),
            vec![VoteCommit::of(&keys[0], &first)]
        );
        assert!(pool.add(Vote::new(&keys[1], block, vec![Verdict::Reject])));
        assert_eq!(pool.votes_on(&block).len(), 2);
        assert!(pool.has_voted(&block, &keys[1].public_key().hash160()));
        assert!(!pool.has_voted(&block, &keys[2].public_key().hash160()));
        assert!(pool.has_committed(&block, &keys[0].public_key().hash160()));
        assert!(!pool.has_committed(&block, &keys[1].public_key().hash160()));
        for i in 0..MAX_BLOCKS as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            id[31] = 1;
            let vote = Vote::new(&keys[2], Hash256(id), vec![]);
            pool.add_commit(VoteCommit::of(&keys[2], &vote));
            pool.add(vote);
        }
        assert!(
            pool.votes_on(&block).is_empty() && pool.commits_on(&block).is_empty(),
            "the oldest block's votes and commitments are dropped"
        );
    }

    #[test]
    fn held_votes_leave_when_due_and_are_bounded() {
        let key = SecretKey::from_bytes(&[1; 32]).unwrap();
        let vote = |i: u8| Vote::new(&key, Hash256([i; 32]), vec![]);
        let mut held = HeldVotes::default();
        for i in 0..3 {
            held.hold(vote(i));
        }
        let due = |v: &Vote| match v.block.0[0] {
            0 => Due::Reveal,
            1 => Due::Forget,
            _ => Due::Hold,
        };
        assert_eq!(held.take_due(due), vec![vote(0)]);
        assert_eq!(held.len(), 1, "the forgotten one left too");
        assert!(held.take_due(due).is_empty());
        for i in 0..(MAX_HELD as u8 + 5) {
            held.hold(vote(i.wrapping_add(10)));
        }
        assert_eq!(held.len(), MAX_HELD);
    }
}
