//! The chain of block ids a contract state read looks through, without walking the
//! block index down to genesis on every VM call.
//!
//! A read of contract state as seen from block B needs B's ancestors by height (see
//! [`crate::store`]: a stored version counts when `chain[h]` is its block). Built from the
//! block index, that is one index read per block of the chain: at a height of 20,000 it
//! cost a VM call 20,000 reads, and every call of every block and RPC query paid it.
//!
//! - [`Ancestry`]: the ids by height, held in shared chunks of [`CHUNK`] ids, so that the
//!   chains of a block and of its child (or of two forks) share all but their last
//!   partial chunk, and a copy is cheap.
//! - [`AncestryCache`]: the ancestries of the few chain tips read last. The ancestry of a
//!   block not among them is built from the nearest cached one it descends from: one
//!   index read per block above it (one for a new child of a cached tip), and a walk to
//!   genesis only when nothing cached is on its chain (the first read after a start). A
//!   block on a cached chain reads that chain's prefix and is not kept apart.
//!
//! Block ids are hashes of the blocks, so an ancestry never changes: nothing is ever
//! invalidated, only evicted.

use std::sync::{Arc, Mutex};

/// Ids per shared chunk.
pub const CHUNK: usize = 1024;

/// Tips whose ancestries are kept.
pub const CACHED_TIPS: usize = 8;

/// Block ids by height from genesis (`get(h)` is the block at height `h`).
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct Ancestry {
    /// Full chunks, each exactly [`CHUNK`] ids: heights `i * CHUNK ..`.
    full: Vec<Arc<[[u8; 32]]>>,
    /// The heights above the full chunks, fewer than [`CHUNK`].
    tail: Vec<[u8; 32]>,
}

impl Ancestry {
    /// How many blocks: the height of the last one plus one.
    pub fn len(&self) -> usize {
        self.full
            .len()
            .saturating_mul(CHUNK)
            .saturating_add(self.tail.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id at `height`.
    pub fn get(&self, height: usize) -> Option<&[u8; 32]> {
        let (chunk, at) = (height / CHUNK, height % CHUNK);
        match self.full.get(chunk) {
            Some(ids) => ids.get(at),
            None if chunk == self.full.len() => self.tail.get(at),
            None => None,
        }
    }

    /// The height of `id` on this chain, if it is on it: a search from the top, where
    /// the blocks read most (`at-block` of a recent block) are.
    pub fn height_of(&self, id: &[u8; 32]) -> Option<usize> {
        let in_tail = self.tail.iter().rposition(|x| x == id);
        let base = self.full.len().saturating_mul(CHUNK);
        if let Some(at) = in_tail {
            return Some(base.saturating_add(at));
        }
        self.full.iter().enumerate().rev().find_map(|(c, ids)| {
            let at = ids.iter().rposition(|x| x == id)?;
            Some(c.saturating_mul(CHUNK).saturating_add(at))
        })
    }

    /// Adds the block above the last.
    pub fn push(&mut self, id: [u8; 32]) {
        self.tail.push(id);
        if self.tail.len() >= CHUNK {
            let full: Arc<[[u8; 32]]> = std::mem::take(&mut self.tail).into();
            self.full.push(full);
        }
    }

    /// The first `len` blocks (all of them if there are fewer).
    pub fn prefix(&self, len: usize) -> Ancestry {
        if len >= self.len() {
            return self.clone();
        }
        let (chunks, rest) = (len / CHUNK, len % CHUNK);
        let full = self.full.get(..chunks).unwrap_or_default().to_vec();
        let partial = match self.full.get(chunks) {
            Some(ids) => ids.get(..rest),
            None => self.tail.get(..rest),
        };
        Ancestry {
            full,
            tail: partial.unwrap_or_default().to_vec(),
        }
    }
}

/// The ancestries of the chain tips read last (see the module's documentation).
#[derive(Default)]
pub struct AncestryCache {
    /// (tip, its ancestry including itself), the one used last at the end.
    tips: Mutex<Vec<([u8; 32], Ancestry)>>,
}

impl AncestryCache {
    /// The ancestry of `tip` if it is cached (then it becomes the newest).
    pub fn get(&self, tip: &[u8; 32]) -> Option<Ancestry> {
        let mut tips = self.tips.lock().ok()?;
        let at = tips.iter().position(|(id, _)| id == tip)?;
        let entry = tips.remove(at);
        let ancestry = entry.1.clone();
        tips.push(entry);
        Some(ancestry)
    }

    /// The chain ending at `id` (at `height`), from a cached ancestry that holds it;
    /// that one becomes the newest (it is the chain being read from).
    pub fn containing(&self, id: &[u8; 32], height: usize) -> Option<Ancestry> {
        let mut tips = self.tips.lock().ok()?;
        let at = tips.iter().rposition(|(_, a)| a.get(height) == Some(id))?;
        let entry = tips.remove(at);
        let chain = entry.1.prefix(height.saturating_add(1));
        tips.push(entry);
        Some(chain)
    }

    /// Keeps `ancestry` as the ancestry of `tip`, the newest; the oldest goes beyond
    /// [`CACHED_TIPS`].
    pub fn insert(&self, tip: [u8; 32], ancestry: Ancestry) {
        let Ok(mut tips) = self.tips.lock() else {
            return;
        };
        tips.retain(|(id, _)| *id != tip);
        tips.push((tip, ancestry));
        while tips.len() > CACHED_TIPS {
            tips.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&(n as u64).to_le_bytes());
        out
    }

    fn chain(from: usize, len: usize) -> Ancestry {
        let mut a = Ancestry::default();
        for n in from..from + len {
            a.push(id(n));
        }
        a
    }

    #[test]
    fn reads_by_height_across_chunks() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let a = chain(0, len);
            assert_eq!(a.len(), len);
            for h in 0..len {
                assert_eq!(a.get(h), Some(&id(h)), "height {h} of {len}");
                assert_eq!(a.height_of(&id(h)), Some(h));
            }
            assert_eq!(a.get(len), None);
            assert_eq!(a.get(len + CHUNK), None);
            assert_eq!(a.height_of(&id(len)), None);
        }
    }

    #[test]
    fn a_prefix_is_the_chain_below_and_grows_apart() {
        let a = chain(0, 2 * CHUNK + 10);
        for len in [0, 5, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 9] {
            let mut p = a.prefix(len);
            assert_eq!(p.len(), len);
            assert_eq!(p, chain(0, len));
            // A fork from there: the original does not see its blocks.
            p.push(id(1_000_000));
            assert_eq!(p.get(len), Some(&id(1_000_000)));
            assert_eq!(a.get(len), Some(&id(len)));
        }
        assert_eq!(a.prefix(a.len() + 5), a);
    }

    #[test]
    fn the_cache_keeps_the_tips_read_last() {
        let cache = AncestryCache::default();
        for n in 0..CACHED_TIPS + 2 {
            cache.insert(id(n), chain(0, n + 1));
        }
        // The two oldest went.
        assert!(cache.get(&id(0)).is_none());
        assert!(cache.get(&id(1)).is_none());
        assert_eq!(cache.get(&id(2)), Some(chain(0, 3)));
        // id(2) was used last: it stays when another comes.
        cache.insert(id(100), chain(0, 1));
        assert!(cache.get(&id(2)).is_some());
        assert!(cache.get(&id(3)).is_none());
        // A block on a cached chain is found with its chain below it.
        assert_eq!(cache.containing(&id(5), 5), Some(chain(0, 6)));
        assert_eq!(cache.containing(&id(5), 4), None);
    }
}
