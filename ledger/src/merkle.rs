//! The merkle root of a block's txids, built as Bitcoin builds it: pairs hashed with
//! sha256d, the last node of an odd level paired with itself.
//!
//! That rule lets two different transaction lists share a root (CVE-2012-2459): [a, b, c]
//! and [a, b, c, c]. [`root`] therefore also reports whether any level hashed two equal
//! adjacent nodes, and consensus rejects such a "mutated" block, so a valid block can never
//! be confused with a corrupted copy of it.

use fai_primitives::Hash256;

/// The root of `leaves` and whether the tree contains two identical siblings.
/// The root of no leaves is zero.
pub fn root(leaves: &[Hash256]) -> (Hash256, bool) {
    let mut level: Vec<Hash256> = leaves.to_vec();
    let mut mutated = false;
    if level.is_empty() {
        return (Hash256::ZERO, false);
    }
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            let (left, right) = match pair {
                [l, r] => {
                    if l == r {
                        mutated = true;
                    }
                    (l, r)
                }
                [l] => (l, l),
                _ => continue,
            };
            next.push(Hash256::sha256d_parts(&[&left.0, &right.0]));
        }
        level = next;
    }
    (level.first().copied().unwrap_or(Hash256::ZERO), mutated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash256 {
        Hash256([n; 32])
    }

    #[test]
    fn one_leaf_is_its_own_root() {
        assert_eq!(root(&[h(1)]), (h(1), false));
    }

    #[test]
    fn odd_levels_duplicate_the_last_node() {
        let (r3, m3) = root(&[h(1), h(2), h(3)]);
        let (r4, m4) = root(&[h(1), h(2), h(3), h(3)]);
        assert_eq!(r3, r4, "the known ambiguity");
        assert!(!m3);
        assert!(m4, "the duplicated list is flagged as mutated");
        let ab = Hash256::sha256d_parts(&[&h(1).0, &h(2).0]);
        let cc = Hash256::sha256d_parts(&[&h(3).0, &h(3).0]);
        assert_eq!(r3, Hash256::sha256d_parts(&[&ab.0, &cc.0]));
    }
}
