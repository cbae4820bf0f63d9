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
//!   newer one is full it becomes the older one and the older one is dropped. A hit in
//!   the older one moves the entry to the newer one, so what was checked last stays
//!   longest. An attacker who floods it with valid signatures of their
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

/// Entries the process-wide cache holds at most (at most about 9 MiB: two hash sets of
/// 65,536 entries of 32 bytes).
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
        if self.hit(&entry) {
            return true;
        }
        let valid = key.verify(digest, sig);
        if valid {
            self.insert(entry);
        }
        valid
    }

    /// Whether `entry` is held; one found in the older generation moves to the newer.
    fn hit(&self, entry: &[u8; 32]) -> bool {
        // A poisoned lock (a panic elsewhere while it was held) only costs the cache.
        let Ok(mut g) = self.generations.lock() else {
            return false;
        };
        if g.newer.contains(entry) {
            return true;
        }
        if !g.older.remove(entry) {
            return false;
        }
        self.add(&mut g, *entry);
        true
    }

    fn insert(&self, entry: [u8; 32]) {
        if let Ok(mut g) = self.generations.lock() {
            self.add(&mut g, entry);
        }
    }

    fn add(&self, g: &mut Generations, entry: [u8; 32]) {
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
        assert_eq!(cache.len(), 1);
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

    /// The cache answers from memory: an entry put there for a triple that does not
    /// verify (which `verify` never does) is taken as verified. Hence the salt and a
    /// full hash as the key.
    #[test]
    fn a_held_entry_is_answered_without_verifying() {
        let cache = SignatureCache::new(64);
        let (key, _, sig) = signed(6);
        let wrong = Hash256([7; 32]);
        assert!(!cache.verify(&key, &wrong, &sig));
        cache.insert(cache.entry(&key, &wrong, &sig));
        assert!(cache.verify(&key, &wrong, &sig));
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
        // The last one checked is still there; the first ones went.
        let (k, d, s) = &all[19];
        assert!(cache.hit(&cache.entry(k, d, s)));
        let (k, d, s) = &all[0];
        assert!(!cache.hit(&cache.entry(k, d, s)));
        // One hit in the older generation moves to the newer: it outlives the
        // generation it was in.
        let (k, d, s) = &all[12];
        let kept = cache.entry(k, d, s);
        assert!(cache.hit(&kept));
        for (k, d, s) in (20..24).map(signed) {
            assert!(cache.verify(&k, &d, &s));
        }
        assert!(cache.hit(&kept));
    }

    #[test]
    fn two_caches_key_the_same_signature_apart() {
        let (a, b) = (SignatureCache::new(8), SignatureCache::new(8));
        let (k, d, s) = signed(5);
        assert_ne!(a.entry(&k, &d, &s), b.entry(&k, &d, &s));
    }
}
