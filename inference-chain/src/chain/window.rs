//! Votes in a window of blocks, in two phases (decision 0004). The commitments to the
//! votes on block N count when blocks of its branch anchored at most [`COMMIT_PHASE`]
//! ledger blocks after N's anchor carry them (blocks N+1 and N+2 when every ledger block
//! has a tenure), and on up to [`COMMIT_PHASE_MAX`] while the branch carried fewer than a
//! quorum of them and holds a block at every ledger height since that elected a producer
//! (see [`may_commit`]);
//! the votes themselves (reveals) when the blocks after, up to
//! N+[`VOTE_WINDOW`], carry them, each beside its verifier's commitment carried before.
//! N settles in the first of those blocks that brings the reveals carried on it to a
//! quorum of its verifier set; when the window closes (block N+K) without one, its
//! inferences are refunded there. No verdict needs to be public before the commit phase
//! closes, so a verifier that copies others' verdicts has to commit before it can see
//! one.
//!
//! Why the phase counts ledger blocks and not inference blocks: a producer may build on
//! an older parent than the tip (its commit names any block anchored below its tenure).
//! Counted in inference blocks, a producer that won the tenure after N+2 could build on
//! N+1, after the reveals went out, and carry a copier's commitment at depth 2; anchored
//! past N's anchor + [`COMMIT_PHASE`], its block can carry none unless the phase runs
//! on, which needs a block at every ledger height since that elected a producer on its
//! own branch.
//!
//! A block may carry a commitment or a reveal only on an ancestor inside the window (in
//! the phase above) that has not settled yet on its branch, from a verifier of that
//! ancestor's set, signed, and not carried before on the branch (nor twice in the
//! block); a reveal also needs one verdict per inference and must open its verifier's
//! commitment. A block that carries anything else is invalid, so every carried vote was
//! checked once, when its block was accepted, and "settled" is a count of carried
//! reveals.
//!
//! Everything here reads the branch by walking parents from a given block: the window is
//! at most [`VOTE_WINDOW`] blocks, so nothing needs to be stored beside the blocks.

use fai_clarity::Value;
use fai_ledger::Chainstate;
use fai_primitives::{Hash160, Hash256};

use super::{invalid, BlockError, BlockRecord, InferenceChain};
use crate::quorum::{quorum, tally, Tally, Vote, VoteCommit};
use crate::settlement::Settlement;

/// How many blocks after block N may carry the votes on N (a consensus constant).
pub const VOTE_WINDOW: u32 = 6;

/// How many ledger blocks after block N's anchor the blocks that carry the commitments to
/// the votes on N may be anchored whatever they carried before (the first blocks of its
/// window; a consensus constant). Two, not one: a verifier whose replay takes longer than
/// one block's spacing still commits in time.
pub const COMMIT_PHASE: u32 = 2;

/// How many ledger blocks after block N's anchor its commit phase may run on while its
/// branch carries commitments from fewer than a quorum of N's set and has a block at
/// every electing ledger height from N's anchor + [`COMMIT_PHASE`] on (a consensus constant):
/// ledger blocks that come close together (a burst, or a heavy block to replay) then
/// leave the verifiers time to judge N instead of refunding it.
pub const COMMIT_PHASE_MAX: u32 = 4;

/// Whether a block anchored at ledger height `anchor_height` may carry commitments to
/// votes on `voted` (one of its window): it is in `voted`'s commit phase. `carried`: the
/// commitments on `voted` its branch carried, for a verifier set of `set_size`;
/// `unbroken`: whether the blocks below it hold one block for every ledger height from
/// `voted`'s anchor + [`COMMIT_PHASE`] to its own anchor - 1 that elected a producer
/// ([`unbroken_run`]). The
/// phase is up to [`COMMIT_PHASE`] ledger blocks after `voted`'s anchor, and on up to
/// [`COMMIT_PHASE_MAX`] while fewer than a quorum committed, on an unbroken run.
///
/// Why the run must be unbroken: a producer may build on an older parent than the tip.
/// Without it, once the tip's branch had carried a quorum and the verifiers revealed, a
/// block anchored at N's anchor + 4 could build on N+2, whose branch carried fewer,
/// and carry a copier's commitment. With it, that takes a block at every height between,
/// withheld from the tip's branch: tenures won inside the phase and after, as for a copier
/// under the fixed phase alone (docs/consensus.md).
pub fn may_commit(
    voted: &BlockRecord,
    anchor_height: u32,
    carried: usize,
    set_size: usize,
    unbroken: bool,
) -> bool {
    let fixed = voted.anchor_height.saturating_add(COMMIT_PHASE);
    let longest = voted.anchor_height.saturating_add(COMMIT_PHASE_MAX);
    anchor_height <= fixed
        || (anchor_height <= longest && unbroken && set_size > 0 && carried < quorum(set_size))
}

/// Whether `anchors` (those of the blocks below a new block anchored at `anchor_height`,
/// its parent's first) hold one block for every ledger height from `fixed_end` to
/// `anchor_height` - 1 that may have elected a producer (`elected`: its ledger block
/// carries a commit): the parent anchored at `anchor_height` - 1, its parent at
/// `anchor_height` - 2, and so on down to `fixed_end`, passing over the heights whose
/// ledger block carries no commit (it elects nobody: no block can be built there, on any
/// branch). True when `anchor_height` <= `fixed_end` (nothing to hold).
///
/// Why those heights are passed over: ledger blocks that come close together often carry
/// no commit (the producers' next commits are not out yet), and those bursts are what
/// the phase runs on for. A producer building on an older parent, on the same ledger
/// branch, still breaks the run: every block it leaves out of its branch was built at a
/// height that elected its producer.
pub fn unbroken_run(
    anchors: impl IntoIterator<Item = u32>,
    fixed_end: u32,
    anchor_height: u32,
    elected: impl Fn(u32) -> bool,
) -> bool {
    let mut anchors = anchors.into_iter().peekable();
    let mut next = anchor_height;
    while next > fixed_end {
        // next > fixed_end >= 0, so this does not underflow.
        let want = next.saturating_sub(1);
        if anchors.peek() == Some(&want) {
            anchors.next();
        } else if elected(want) {
            return false;
        }
        next = want;
    }
    true
}

const _: () = assert!(COMMIT_PHASE >= 1 && COMMIT_PHASE <= COMMIT_PHASE_MAX);
// Reveals need a block after the longest commit phase.
const _: () = assert!(COMMIT_PHASE_MAX < VOTE_WINDOW);

// Five verifiers (the staking contract's SET-SIZE) on every block of the window fit in a
// block, votes and commitments alike (with tenures left empty, any block of the window
// may be in either phase): a producer never builds a block its peers cannot decode.
const _: () = assert!((VOTE_WINDOW as u64) * 5 <= crate::block::MAX_BLOCK_VOTES);
const _: () = assert!((VOTE_WINDOW as u64) * 5 <= crate::block::MAX_BLOCK_COMMITS);

/// From how many blocks behind ([`InferenceChain::votes_behind`]) a serving node refuses
/// new requests as busy: the first block that could settle (past the fixed commit phase)
/// and one more, so that what it served before still has the rest of the window to gather
/// its reveals, which need no more replay.
pub const BUSY_BEHIND: u32 = COMMIT_PHASE + 2;

/// A block of the window below a new block, as its branch has it so far.
#[derive(Debug, Clone)]
pub struct WindowBlock<'c> {
    pub rec: &'c BlockRecord,
    /// Its verifier set (the set of its cycle, in its state).
    pub set: Vec<Hash160>,
    /// The commitments to votes on it the branch carried so far, oldest block first.
    pub commits: Vec<VoteCommit>,
    /// The votes (reveals) on it the branch carried so far, oldest block first.
    pub carried: Vec<Vote>,
    /// The new block's distance from it (1: its child).
    pub depth: u32,
    /// Whether the new block is in its commit phase (else in its reveal phase).
    pub committing: bool,
    /// Whether the carried votes reached the quorum of its set already.
    pub settled: bool,
    /// Whether the new block is the last one that may carry votes on it.
    pub closes: bool,
}

impl WindowBlock<'_> {
    /// The commitment of `verifier` its branch carried, if any.
    fn commit_of(&self, verifier: &fai_primitives::PublicKey) -> Option<&VoteCommit> {
        self.commits.iter().find(|c| c.verifier == *verifier)
    }

    fn inferences(&self) -> usize {
        self.rec.block.as_ref().map_or(0, |b| b.inferences.len())
    }
}

/// What a new block does for one block of its window.
#[derive(Debug, Clone)]
pub struct DueSettlement {
    pub rec_id: [u8; 32],
    /// Whether the votes make it final (else everything is refunded).
    pub is_final: bool,
    /// The votes that decide it (carried before and in the new block).
    pub votes: Vec<Vote>,
}

impl InferenceChain {
    /// The blocks a child of `parent` anchored at ledger height `anchor_height` may carry
    /// votes on, newest first: `parent` and its ancestors up to [`VOTE_WINDOW`] blocks
    /// (genesis, which has no inferences, excluded), with the commitments and votes on
    /// each that the blocks between carried. `branch`: a ledger block at height
    /// `anchor_height` - 1 or above on the child's ledger branch (its anchor), which says
    /// which ledger blocks lie below the child (whose sortitions elected someone).
    pub fn vote_window<'c>(
        &'c self,
        ledger: &Chainstate,
        parent: &'c BlockRecord,
        anchor_height: u32,
        branch: &Hash256,
    ) -> Vec<WindowBlock<'c>> {
        let mut recs: Vec<&BlockRecord> = Vec::new();
        let mut at = Some(parent);
        while let Some(rec) = at {
            if recs.len() >= VOTE_WINDOW as usize {
                break;
            }
            let Some(block) = rec.block.as_ref() else {
                break;
            };
            recs.push(rec);
            at = self.blocks.get(&block.header.parent);
        }
        let mut out = Vec::with_capacity(recs.len());
        for (i, rec) in recs.iter().enumerate() {
            // Blocks between it and the new one, oldest first.
            let between = || {
                recs.get(..i)
                    .unwrap_or_default()
                    .iter()
                    .rev()
                    .filter_map(|r| r.block.as_ref())
            };
            let carried: Vec<Vote> = between()
                .flat_map(|b| b.votes.iter().filter(|v| v.block.0 == rec.id).cloned())
                .collect();
            let commits: Vec<VoteCommit> = between()
                .flat_map(|b| b.commits.iter().filter(|c| c.block.0 == rec.id).cloned())
                .collect();
            let set = self.verifier_set(ledger, rec, rec.cycle);
            let settled = !set.is_empty() && carried.len() >= quorum(set.len());
            let depth = u32::try_from(i.saturating_add(1)).unwrap_or(u32::MAX);
            let fixed_end = rec.anchor_height.saturating_add(COMMIT_PHASE);
            let above = recs
                .get(..i)
                .unwrap_or_default()
                .iter()
                .map(|r| r.anchor_height);
            // Only asked within the longest phase: past it nothing may commit, and the
            // run's heights (each a lookup) are at most COMMIT_PHASE_MAX - COMMIT_PHASE.
            // A height not read counts as electing: the run is broken, never stretched.
            let unbroken = anchor_height <= rec.anchor_height.saturating_add(COMMIT_PHASE_MAX)
                && unbroken_run(above, fixed_end, anchor_height, |h| {
                    self.may_elect(ledger, branch, h).unwrap_or(true)
                });
            let committing = may_commit(rec, anchor_height, commits.len(), set.len(), unbroken);
            out.push(WindowBlock {
                rec,
                set,
                commits,
                carried,
                depth,
                committing,
                settled,
                closes: depth == VOTE_WINDOW,
            });
        }
        out
    }

    /// Whether no block built from now on can carry a commitment to a vote on `voted`
    /// (short of tenures won and withheld, as for the fixed phase): when a verifier may
    /// reveal its vote on `voted`, and a verifier that has not judged it yet skips it.
    /// As consensus reckons it for a child of `tip` (a later block, or one on an older
    /// parent, could only break the unbroken run the phase needs past [`COMMIT_PHASE`]);
    /// for a block off `tip`'s branch, once the longest phase is over.
    pub fn commit_phase_over(
        &self,
        ledger: &Chainstate,
        voted: &BlockRecord,
        tip: &BlockRecord,
    ) -> bool {
        // A child's anchor is at least this; a later one only shortens the phase.
        let child = tip.anchor_height.saturating_add(1);
        let fixed_end = voted.anchor_height.saturating_add(COMMIT_PHASE);
        if child <= fixed_end {
            return false;
        }
        if child > voted.anchor_height.saturating_add(COMMIT_PHASE_MAX) {
            return true;
        }
        match self.branch_down_to(voted, tip) {
            Some((carried, anchors)) => {
                // A height not read counts as electing nobody here: the verifier then
                // holds its reveal (the safe side), where consensus would break the run.
                let unbroken = unbroken_run(anchors, fixed_end, child, |h| {
                    self.may_elect(ledger, &tip.anchor, h).unwrap_or(false)
                });
                let set = self.verifier_set(ledger, voted, voted.cycle);
                !may_commit(voted, child, carried, set.len(), unbroken)
            }
            None => false,
        }
    }

    /// Whether the ledger block at `height` on `branch`'s ledger branch may have elected
    /// a producer, so that a block could be anchored there: whether it carries any commit
    /// op, valid or not (None when the tracker has not read it; every ancestor of a
    /// block it read has been read). A fact of the ledger alone: whether a commit there
    /// won depends on the verifier set a node read it with, which can differ between
    /// nodes while one syncs, and consensus must not.
    fn may_elect(&self, ledger: &Chainstate, branch: &Hash256, height: u32) -> Option<bool> {
        ledger
            .ancestor(branch, height)
            .and_then(|hash| self.tracker.record(&hash))
            .map(|r| r.has_commits)
    }

    /// The commitments to votes on `voted` that the blocks after it up to `tip` carried,
    /// and those blocks' anchors, `tip`'s first; None when `voted` is not among `tip`'s
    /// last [`VOTE_WINDOW`] ancestors (or `tip`).
    fn branch_down_to(&self, voted: &BlockRecord, tip: &BlockRecord) -> Option<(usize, Vec<u32>)> {
        let mut carried = 0usize;
        let mut anchors = Vec::new();
        let mut at = Some(tip);
        for _ in 0..=VOTE_WINDOW {
            let rec = at?;
            if rec.id == voted.id {
                return Some((carried, anchors));
            }
            let block = rec.block.as_ref()?;
            carried = carried.saturating_add(
                block
                    .commits
                    .iter()
                    .filter(|c| c.block.0 == voted.id)
                    .count(),
            );
            anchors.push(rec.anchor_height);
            at = self.blocks.get(&block.header.parent);
        }
        None
    }

    /// How far the verifiers are behind on the branch of `tip`: the number of blocks
    /// built after the oldest block of the window that carries inferences, has a
    /// verifier set, and has not settled yet (0 when every such block settled, or the
    /// oldest open one is `tip` itself). At [`VOTE_WINDOW`] its inferences are refunded,
    /// so a serving node refuses new requests well before (`BUSY_BEHIND`).
    pub fn votes_behind(&self, ledger: &Chainstate, tip: &BlockRecord) -> u32 {
        let child_anchor = tip.anchor_height.saturating_add(1);
        self.vote_window(ledger, tip, child_anchor, &tip.anchor)
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                !w.settled
                    && !w.set.is_empty()
                    && w.rec
                        .block
                        .as_ref()
                        .is_some_and(|b| !b.inferences.is_empty())
            })
            .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
            .max()
            .unwrap_or(0)
    }

    /// Whether a block of the window of `tip` that carries inferences and has not settled
    /// is past its fixed commit phase ([`COMMIT_PHASE`]) without the commitments of a
    /// quorum of its set: its verifiers did not judge it in time. The phase runs on for
    /// it (to [`COMMIT_PHASE_MAX`]), but a serving node then refuses new requests as busy,
    /// as at [`BUSY_BEHIND`], so as not to add to their backlog (and past the longest
    /// phase the block will be refunded, served for nothing).
    pub fn commits_missed(&self, ledger: &Chainstate, tip: &BlockRecord) -> bool {
        let child_anchor = tip.anchor_height.saturating_add(1);
        self.vote_window(ledger, tip, child_anchor, &tip.anchor)
            .iter()
            .any(|w| {
                !w.settled
                    && child_anchor > w.rec.anchor_height.saturating_add(COMMIT_PHASE)
                    && !w.set.is_empty()
                    && w.inferences() > 0
                    && w.commits.len() < quorum(w.set.len())
            })
    }

    /// Checks the commitments and votes a child of the window's top carries (see the
    /// module documentation), and returns what the child settles, oldest block first.
    pub fn due_settlements(
        window: &[WindowBlock<'_>],
        commits: &[VoteCommit],
        votes: &[Vote],
    ) -> Result<Vec<DueSettlement>, BlockError> {
        let find = |block: &Hash256| {
            window
                .iter()
                .enumerate()
                .find(|(_, w)| w.rec.id == block.0)
                .ok_or_else(|| {
                    invalid(format!(
                        "a vote or commitment on block {block}, which is not in the window of {VOTE_WINDOW} blocks"
                    ))
                })
        };
        let mut committed: Vec<Vec<&VoteCommit>> = vec![Vec::new(); window.len()];
        for commit in commits {
            let (at, w) = find(&commit.block)?;
            let list = committed
                .get_mut(at)
                .ok_or_else(|| invalid("vote window"))?;
            if !w.committing
                || w.settled
                || !w.set.contains(&commit.verifier.hash160())
                || w.commit_of(&commit.verifier).is_some()
                || list.iter().any(|c| c.verifier == commit.verifier)
                || !commit.signature_valid()
            {
                return Err(invalid(format!(
                    "a commitment on block {} by {} is past the commit phase, from outside its set, carried twice or badly signed",
                    commit.block,
                    commit.verifier.hash160()
                )));
            }
            list.push(commit);
        }
        let mut new: Vec<Vec<Vote>> = vec![Vec::new(); window.len()];
        for vote in votes {
            let (at, w) = find(&vote.block)?;
            if w.settled {
                return Err(invalid(format!(
                    "a vote on block {}, which its votes settled already",
                    vote.block
                )));
            }
            let who = vote.verifier.hash160();
            let list = new.get_mut(at).ok_or_else(|| invalid("vote window"))?;
            let opens = w
                .commit_of(&vote.verifier)
                .is_some_and(|c| c.opens_to(vote));
            if w.committing
                || !w.set.contains(&who)
                || vote.verdicts.len() != w.inferences()
                || w.carried
                    .iter()
                    .chain(list.iter())
                    .any(|v| v.verifier == vote.verifier)
                || !opens
                || !vote.signature_valid()
            {
                return Err(invalid(format!(
                    "a vote on block {} by {who} is in the commit phase, from outside its set, carried twice, of the wrong length, without its commitment or badly signed",
                    vote.block
                )));
            }
            list.push(vote.clone());
        }
        let mut due = Vec::new();
        for (w, added) in window.iter().zip(new).rev() {
            if w.settled {
                continue;
            }
            let count = w.carried.len().saturating_add(added.len());
            let is_final = !w.set.is_empty() && count >= quorum(w.set.len());
            if is_final || w.closes {
                let mut votes = w.carried.clone();
                votes.extend(added);
                due.push(DueSettlement {
                    rec_id: w.rec.id,
                    is_final,
                    votes,
                });
            }
        }
        Ok(due)
    }

    /// The commitments from `offered` a child of `parent` anchored at ledger block
    /// `anchor` may carry: for each block of the window in its commit phase, the offered
    /// commitments to votes on it that the branch has not carried, checked as consensus
    /// checks them. Nothing for an anchor the ledger does not hold.
    pub fn commits_to_carry(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        anchor: &Hash256,
        offered: impl Fn(&Hash256) -> Vec<VoteCommit>,
    ) -> Vec<VoteCommit> {
        let Some(anchor_height) = ledger.entry(anchor).map(|e| e.height) else {
            return Vec::new();
        };
        let window = self.vote_window(ledger, parent, anchor_height, anchor);
        let mut out: Vec<VoteCommit> = Vec::new();
        for w in window.iter().rev().filter(|w| w.committing && !w.settled) {
            for commit in offered(&Hash256(w.rec.id)) {
                let known = w.commit_of(&commit.verifier).is_some()
                    || out
                        .iter()
                        .any(|c| c.block == commit.block && c.verifier == commit.verifier);
                if out.len() < crate::block::MAX_BLOCK_COMMITS as usize
                    && commit.block.0 == w.rec.id
                    && !known
                    && w.set.contains(&commit.verifier.hash160())
                    && commit.signature_valid()
                {
                    out.push(commit);
                }
            }
        }
        out
    }

    /// The votes from `offered` a child of `parent` anchored at ledger block `anchor` may
    /// carry: for each block of the window in its reveal phase and not settled yet, the
    /// offered votes on it that the branch has not carried and whose commitment it did,
    /// checked as consensus checks them. What a producer puts in its block. Nothing for an
    /// anchor the ledger does not hold.
    pub fn votes_to_carry(
        &self,
        ledger: &Chainstate,
        parent: &BlockRecord,
        anchor: &Hash256,
        offered: impl Fn(&Hash256) -> Vec<Vote>,
    ) -> Vec<Vote> {
        let Some(anchor_height) = ledger.entry(anchor).map(|e| e.height) else {
            return Vec::new();
        };
        let window = self.vote_window(ledger, parent, anchor_height, anchor);
        let mut out: Vec<Vote> = Vec::new();
        for w in window.iter().rev().filter(|w| !w.committing && !w.settled) {
            for vote in offered(&Hash256(w.rec.id)) {
                let who = vote.verifier.hash160();
                let known = w
                    .carried
                    .iter()
                    .chain(out.iter())
                    .any(|v| v.block == vote.block && v.verifier == vote.verifier);
                if out.len() < crate::block::MAX_BLOCK_VOTES as usize
                    && vote.block.0 == w.rec.id
                    && !known
                    && w.set.contains(&who)
                    && vote.verdicts.len() == w.inferences()
                    && w.commit_of(&vote.verifier)
                        .is_some_and(|c| c.opens_to(&vote))
                    && vote.signature_valid()
                {
                    out.push(vote);
                }
            }
        }
        out
    }

    /// Where block `rec` settles on the branch of its descendants `after` (its child
    /// first, then its child's child, ...): the index in `after` of the block that settles
    /// it, and the tally of the votes carried up to there. None while the window is
    /// open without a quorum (or `after` does not reach far enough).
    pub fn settled_on(
        &self,
        ledger: &Chainstate,
        rec: &BlockRecord,
        after: &[&BlockRecord],
    ) -> Option<(usize, Tally, Vec<Vote>)> {
        let block = rec.block.as_ref()?;
        let set = self.verifier_set(ledger, rec, rec.cycle);
        let need = quorum(set.len());
        let mut votes: Vec<Vote> = Vec::new();
        for (i, child) in after.iter().take(VOTE_WINDOW as usize).enumerate() {
            let carried = child.block.as_ref()?;
            votes.extend(
                carried
                    .votes
                    .iter()
                    .filter(|v| v.block.0 == rec.id)
                    .cloned(),
            );
            let closes = i.saturating_add(1) == VOTE_WINDOW as usize;
            if (!set.is_empty() && votes.len() >= need) || closes {
                let t = tally(&set, &Hash256(rec.id), block.inferences.len(), &votes);
                return Some((i, t, votes));
            }
        }
        None
    }

    /// How the inferences of block `rec` are settled by `votes`: whether they make it
    /// final, and per inference what they decided and where its max fee goes. Without
    /// finality, or for an undecided inference, the max fee is refunded in full and
    /// nobody is paid or slashed.
    pub fn settlements(
        &self,
        ledger: &Chainstate,
        rec: &BlockRecord,
        votes: &[Vote],
    ) -> Result<(bool, Vec<(crate::quorum::Outcome, Settlement)>), BlockError> {
        use crate::quorum::Outcome;
        let Some(block) = &rec.block else {
            return Ok((false, Vec::new()));
        };
        let set = self.verifier_set(ledger, rec, rec.cycle);
        let t = tally(&set, &Hash256(rec.id), block.inferences.len(), votes);
        let mut out = Vec::with_capacity(block.inferences.len());
        for (inf, outcome) in block.inferences.iter().zip(&t.outcomes) {
            let max_fee = inf.stub.max_fee.units();
            if !t.is_final || *outcome == Outcome::Undecided {
                let refund = Settlement {
                    refund: max_fee,
                    ..Settlement::default()
                };
                out.push((Outcome::Undecided, refund));
                continue;
            }
            let node_value: Value = self.vm.principal(inf.receipt.node.hash160().0).into();
            let entry = match self.read(
                ledger,
                rec,
                "node-registry",
                "get-node",
                std::slice::from_ref(&node_value),
            )? {
                Value::Optional(o) => o.data.map(|d| *d),
                _ => None,
            };
            let field = |name: &str| {
                entry
                    .as_ref()
                    .and_then(|e| super::tuple_uint(e, name))
                    .map_or(0, |v| u64::try_from(v).unwrap_or(u64::MAX))
            };
            let s = crate::settlement::settle(
                *outcome == Outcome::Accepted,
                max_fee,
                field("price"),
                inf.receipt.tokens,
                field("bond"),
            );
            out.push((*outcome, s));
        }
        Ok((t.is_final, out))
    }
}

#[cfg(test)]
mod tests {
    use super::unbroken_run;

    /// The run from height 10 (the fixed phase's end) below a block anchored at 14:
    /// every height that elected a producer needs its block on the branch; the others
    /// are passed over, and a block the branch holds at such a height changes nothing.
    #[test]
    fn a_run_needs_a_block_at_every_height_that_elected_a_producer() {
        let all = |_: u32| true;
        let none_at_12 = |h: u32| h != 12;
        assert!(unbroken_run([13, 12, 11, 10, 9], 10, 14, all));
        assert!(unbroken_run([], 10, 10, all), "nothing to hold");
        assert!(
            !unbroken_run([13, 11, 10], 10, 14, all),
            "12 elected, no block"
        );
        assert!(unbroken_run([13, 11, 10], 10, 14, none_at_12));
        assert!(unbroken_run([13, 12, 11, 10], 10, 14, none_at_12));
        assert!(
            !unbroken_run([13, 11], 10, 14, none_at_12),
            "10 elected, no block"
        );
        assert!(
            !unbroken_run([11, 10], 10, 14, none_at_12),
            "an older parent leaves 13 out"
        );
        let only_10 = |h: u32| h == 10;
        assert!(unbroken_run([10, 8], 10, 14, only_10));
        assert!(!unbroken_run([9, 8], 10, 14, only_10));
    }
}
