//! Blocks whose parent the node has not seen yet, kept until the parent arrives. The pool
//! is bounded in count and bytes; when full, the oldest orphan goes first.

use std::collections::{HashMap, VecDeque};

use fai_primitives::Hash256;

use crate::block::Block;

/// The most orphans kept.
pub const MAX_ORPHANS: usize = 256;
/// The most bytes of orphans kept.
pub const MAX_ORPHAN_BYTES: usize = 64 * 1024 * 1024;

/// A bounded pool of orphan blocks.
#[derive(Debug, Default)]
pub struct OrphanPool {
    blocks: HashMap<Hash256, (Block, usize)>,
    arrival: VecDeque<Hash256>,
    bytes: usize,
}

impl OrphanPool {
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn contains(&self, hash: &Hash256) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Adds an orphan of `size` bytes, evicting the oldest ones past the bounds.
    pub fn insert(&mut self, block: Block, size: usize) {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) || size > MAX_ORPHAN_BYTES {
            return;
        }
        self.blocks.insert(hash, (block, size));
        self.arrival.push_back(hash);
        self.bytes = self.bytes.saturating_add(size);
        while self.blocks.len() > MAX_ORPHANS || self.bytes > MAX_ORPHAN_BYTES {
            let Some(old) = self.arrival.pop_front() else {
                break;
            };
            if let Some((_, s)) = self.blocks.remove(&old) {
                self.bytes = self.bytes.saturating_sub(s);
            }
        }
    }

    /// Removes and returns the orphans whose parent is `parent`.
    pub fn take_children(&mut self, parent: &Hash256) -> Vec<Block> {
        let children: Vec<Hash256> = self
            .blocks
            .iter()
            .filter(|(_, (b, _))| b.header.prev == *parent)
            .map(|(h, _)| *h)
            .collect();
        let mut out = Vec::with_capacity(children.len());
        for h in children {
            if let Some((b, s)) = self.blocks.remove(&h) {
                self.bytes = self.bytes.saturating_sub(s);
                self.arrival.retain(|x| *x != h);
                out.push(b);
            }
        }
        out
    }
}
