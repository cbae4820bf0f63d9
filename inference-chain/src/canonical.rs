//! The canonical inference chain by height: which block the canonical branch holds at
//! each height, so that serving a peer "the blocks from height h" costs what it returns
//! rather than a walk from the tip.
//!
//! The owner of the chain moves the index whenever the canonical tip moves
//! ([`CanonicalIndex::follow`]); the walk goes down from the new tip only until it meets
//! a block the index already holds at that height, so a move costs the blocks that
//! changed (one for a new block, the fork's depth for a reorganisation, the whole chain
//! once when the index is built).

use crate::block::InferenceBlock;
use crate::chain::InferenceChain;

/// Block ids of the canonical branch, by height (the genesis block at 0).
#[derive(Debug, Default, Clone)]
pub struct CanonicalIndex {
    ids: Vec<[u8; 32]>,
}

/// A block's id and height.
pub type Placed = ([u8; 32], u32);

impl CanonicalIndex {
    /// The canonical tip's id (none before the index is built).
    pub fn tip(&self) -> Option<&[u8; 32]> {
        self.ids.last()
    }

    /// Moves the index to the branch ending at `tip` on `chain`.
    pub fn follow(&mut self, chain: &InferenceChain, tip: &[u8; 32]) {
        let Some(record) = chain.block(tip) else {
            return;
        };
        self.follow_with((record.id, record.height), |id| {
            let parent = chain.block(id)?.block.as_ref()?.header.parent;
            chain.block(&parent).map(|p| (p.id, p.height))
        });
    }

    /// Moves the index to the branch ending at `tip`, where `parent_of` gives a block's
    /// parent (none for the genesis block). Returns how many blocks were looked up.
    pub fn follow_with(
        &mut self,
        tip: Placed,
        parent_of: impl Fn(&[u8; 32]) -> Option<Placed>,
    ) -> usize {
        let mut new_side = Vec::new();
        let mut at = Some(tip);
        let mut looked_up = 0usize;
        while let Some((id, height)) = at {
            let Ok(h) = usize::try_from(height) else {
                return looked_up;
            };
            if self.ids.get(h) == Some(&id) {
                break;
            }
            new_side.push(id);
            if height == 0 {
                break;
            }
            looked_up = looked_up.saturating_add(1);
            at = parent_of(&id).filter(|(_, ph)| ph.checked_add(1) == Some(height));
        }
        // The lowest block of the new side sits right above the fork (or is the genesis).
        let Some(lowest) = usize::try_from(tip.1)
            .ok()
            .and_then(|t| t.checked_add(1))
            .and_then(|t| t.checked_sub(new_side.len()))
        else {
            return looked_up;
        };
        if lowest > self.ids.len() || (lowest > 0 && at.is_none()) {
            // A gap: a parent is missing. Nothing sensible to serve from it.
            self.ids.clear();
            return looked_up;
        }
        self.ids.truncate(lowest);
        self.ids.extend(new_side.into_iter().rev());
        looked_up
    }

    /// Whether the canonical branch holds block `id` at `height`.
    pub fn holds(&self, height: u32, id: &[u8; 32]) -> bool {
        self.ids_from(height, 1) == [*id]
    }

    /// The ids from `height` on, `max` at most.
    pub fn ids_from(&self, height: u32, max: usize) -> &[[u8; 32]] {
        let start = usize::try_from(height)
            .unwrap_or(usize::MAX)
            .min(self.ids.len());
        let end = start.saturating_add(max).min(self.ids.len());
        self.ids.get(start..end).unwrap_or(&[])
    }

    /// The canonical blocks from `height` on (the genesis block has no body and is never
    /// among them), `max` at most.
    pub fn blocks_from<'c>(
        &self,
        chain: &'c InferenceChain,
        height: u32,
        max: usize,
    ) -> Vec<&'c InferenceBlock> {
        self.ids_from(height.max(1), max)
            .iter()
            .filter_map(|id| chain.block(id)?.block.as_ref())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::HashMap;

    /// A tree of blocks: id -> (parent, height).
    struct Tree(HashMap<[u8; 32], Placed>);

    fn id(branch: u8, height: u32) -> [u8; 32] {
        let mut id = [branch; 32];
        id[..4].copy_from_slice(&height.to_le_bytes());
        id
    }

    impl Tree {
        /// A branch `branch` from `from` (a block at height `from.1`) up to `to`.
        fn grow(&mut self, branch: u8, from: Placed, to: u32) -> Placed {
            let mut parent = from;
            for h in from.1 + 1..=to {
                let me = (id(branch, h), h);
                self.0.insert(me.0, parent);
                parent = me;
            }
            parent
        }
    }

    #[test]
    fn following_the_tip_costs_the_blocks_that_changed_and_serving_costs_what_is_served() {
        let genesis = (id(0, 0), 0);
        let mut tree = Tree(HashMap::new());
        let tip = tree.grow(1, genesis, 10_000);
        let lookups = Cell::new(0usize);
        let parent_of = |tree: &Tree, i: &[u8; 32]| {
            lookups.set(lookups.get() + 1);
            tree.0.get(i).copied()
        };
        let mut index = CanonicalIndex::default();
        // Built once: the whole chain.
        index.follow_with(tip, |i| parent_of(&tree, i));
        assert_eq!(lookups.get(), 10_000);
        assert_eq!(index.ids_from(0, 1), &[genesis.0]);
        assert_eq!(index.tip(), Some(&tip.0));

        // One more block: one lookup, not a walk from the tip down.
        let next = tree.grow(1, tip, 10_001);
        lookups.set(0);
        index.follow_with(next, |i| parent_of(&tree, i));
        assert_eq!(lookups.get(), 1);
        assert_eq!(index.tip(), Some(&next.0));

        // A reorganisation three blocks deep: the new side and the fork point.
        let fork = (id(1, 9_998), 9_998);
        let other = tree.grow(2, fork, 10_002);
        lookups.set(0);
        index.follow_with(other, |i| parent_of(&tree, i));
        assert_eq!(lookups.get(), 4);
        assert_eq!(
            index.ids_from(9_998, 10),
            &[
                fork.0,
                id(2, 9_999),
                id(2, 10_000),
                id(2, 10_001),
                id(2, 10_002)
            ]
        );

        // Back to a shorter branch: the index ends at its tip.
        lookups.set(0);
        index.follow_with(next, |i| parent_of(&tree, i));
        assert_eq!(lookups.get(), 3);
        assert_eq!(index.tip(), Some(&next.0));
        assert_eq!(index.ids_from(10_001, 64), &[next.0]);

        // A peer asking for everything from height 1 gets a response's worth, read
        // from the index: 64 ids, nothing walked.
        lookups.set(0);
        let served = index.ids_from(1, 64);
        assert_eq!(served.len(), 64);
        assert_eq!(served.first(), Some(&id(1, 1)));
        assert_eq!(lookups.get(), 0);
        assert!(index.ids_from(20_000, 64).is_empty());
    }

    #[test]
    fn a_missing_parent_leaves_an_empty_index_rather_than_a_gap() {
        let genesis = (id(0, 0), 0);
        let mut tree = Tree(HashMap::new());
        let tip = tree.grow(1, genesis, 10);
        tree.0.remove(&id(1, 5));
        let mut index = CanonicalIndex::default();
        index.follow_with(tip, |i| tree.0.get(i).copied());
        assert!(index.tip().is_none());
        assert!(index.ids_from(0, 64).is_empty());
    }
}
