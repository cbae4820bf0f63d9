//! Signatures this process verified already.
//!
//! A node checks the same signature more than once: an inference's sender and receipt
//! signatures when its answer is gossiped and again when a block carries it, the sealed
//! text's signature at gossip and again when a verifier opens it, a VM transaction's in
//! the pool and in the block. On a node that verifies, these checks were a third of its
//! chain task's time. [`SignatureCache`] remembers the checks that succeeded, so that the
//! second one is a hash and a lookup.
//!
//! - Only successes are kept: a bad signature is verified each time it comes, and cannot
//!   fill the cache with entries that someone else's check would hit.
//! - An entry is a SHA-256 of a secret random salt, the digest, the key and the
//!   signature: a hit means this very triple verified (a collision would be one of
//!   SHA-256), and nobody outside the process can aim entries at the set's buckets.
//! - The memory is bounded: two generations of at most half the capacity each; when the
//!   newer one is full it becomes the older one and the older one is dropped, so what was
//!   checked last stays longest. An attacker who floods it with valid signatures of their
//!   own only makes honest checks verify again.
//!
//! [`PublicKey::verify`] does not use it, so that what measures verification measures
//! verification; the signed types' `signature_valid` checks go through
//! [`verify_cached`].

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use sha2::{Digest, Sha256};

use crate::hash::Hash256;
use crate::keys::{PublicKey, Signature};

/// Entries the process-wide cache holds at most (about 6 MiB).
pub const CAPACITY: usize = 1 << 17;

/// Verified signatures, by salted hash (see the module's documentation).
pub struct SignatureCache {
    salt: [u8; 32],
    /// Entries per generation at most.
    half: usize,
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    newer: HashSet<[u8; 32]>,
    older: HashSet<[u8; 32]>,
}

impl SignatureCache {
    /// An empty cache of at most `capacity` entries (at least two), with a fresh salt.
    pub fn new(capacity: usize) -> Self {
        let mut salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut salt);
        SignatureCache {
            salt,
            half: (capacity / 2).max(1),
            generations: Mutex::new(Generations::default()),
        }
    }

    fn entry(&self, key: &PublicKey, digest: &Hash256, sig: &Signature) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(digest.0);
        h.update(key.to_bytes());
        h.update(sig.0);
        h.finalize().into()
    }

    /// Whether `sig` is a valid signature of `digest` by `key` ([`PublicKey::verify`]),
    /// from the cache if this triple verified before.
    pub fn verify(&self, key: &PublicKey, digest: &Hash256, sig: &Signature) -> bool {
        let entry = self.entry(key, digest, sig);
        if self.contains(&entry) {
            return true;
        }
        let valid = key.verify(digest, sig);
        if valid {
            self.insert(entry);
        }
        valid
    }

    fn contains(&self, entry: &[u8; 32]) -> bool {
        // A poisoned lock (a panic elsewhere while it was held) only costs the cache.
        self.generations
            .lock()
            .is_ok_and(|g| g.newer.contains(entry) || g.older.contains(entry))
    }

    fn insert(&self, entry: [u8; 32]) {
        let Ok(mut g) = self.generations.lock() else {
            return;
        };
        if g.newer.len() >= self.half {
            g.older = std::mem::take(&mut g.newer);
        }
        g.newer.insert(entry);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.generations
            .lock()
            .map_or(0, |g| g.newer.len().saturating_add(g.older.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

static PROCESS: LazyLock<SignatureCache> = LazyLock::new(|| SignatureCache::new(CAPACITY));

/// [`SignatureCache::verify`] on the process-wide cache.
pub fn verify_cached(key: &PublicKey, digest: &Hash256, sig: &Signature) -> bool {
    PROCESS.verify(key, digest, sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn signed(n: u8) -> (PublicKey, Hash256, Signature) {
        let key = SecretKey::generate();
        let digest = Hash256([n; 32]);
        (key.public_key(), digest, key.sign(&digest))
    }

    #[test]
    fn a_hit_needs_the_same_key_digest_and_signature() {
        let cache = SignatureCache::new(64);
        let (key, digest, sig) = signed(1);
        assert!(cache.verify(&key, &digest, &sig));
        assert_eq!(cache.len(), 1);
        assert!(cache.verify(&key, &digest, &sig));
        assert_eq!(cache.len(), 1, "the second check hit");
        // Each part changed: verified afresh, and refused.
        let (other_key, other_digest, other_sig) = signed(2);
        assert!(!cache.verify(&other_key, &digest, &sig));
        assert!(!cache.verify(&key, &other_digest, &sig));
        assert!(!cache.verify(&key, &digest, &other_sig));
        let mut flipped = sig;
        flipped.0[10] ^= 1;
        assert!(!cache.verify(&key, &digest, &flipped));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_failed_check_is_never_remembered() {
        let cache = SignatureCache::new(64);
        let (key, _, sig) = signed(3);
        let wrong = Hash256([4; 32]);
        for _ in 0..3 {
            assert!(!cache.verify(&key, &wrong, &sig));
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn it_holds_at_most_its_capacity_and_keeps_the_newest() {
        let cache = SignatureCache::new(8);
        let all: Vec<_> = (0..20).map(signed).collect();
        for (k, d, s) in &all {
            assert!(cache.verify(k, d, s));
            assert!(cache.len() <= 8);
        }
        // The last one checked is still there.
        let (k, d, s) = &all[19];
        let entry = cache.entry(k, d, s);
        assert!(cache.contains(&entry));
        // The first ones went.
        let (k, d, s) = &all[0];
        assert!(!cache.contains(&cache.entry(k, d, s)));
    }

    #[test]
    fn two_caches_key_the_same_signature_apart() {
        let (a, b) = (SignatureCache::new(8), SignatureCache::new(8));
        let (k, d, s) = signed(5);
        assert_ne!(a.entry(&k, &d, &s), b.entry(&k, &d, &s));
    }
}
