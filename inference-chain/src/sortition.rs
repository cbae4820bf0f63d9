//! The sortition: at each ledger block that carries commits, one inference node is drawn
//! to produce the next tenure of inference blocks, in proportion to what it committed.
//!
//! - sortition hash = sha256(previous seed ‖ ledger block hash);
//! - the winner: the first 16 bytes of that hash (little-endian) modulo the total
//!   committed, walked over the bids in ledger order (transaction index, then output);
//! - the next seed = sha256("fai-sortition-seed/v2" ‖ seed ‖ ledger block hash), after
//!   every ledger block, whoever won: the sortition is a function of the ledger alone;
//! - every commit carries its bidder's VRF output over the current seed (first 32 bytes).
//!   The winner's first block carries the VRF proof (RFC 9381, the key of its register
//!   op) and is valid only if the proof's output is the committed one, which becomes the
//!   block's randomness in the VM. A ledger block without commits starts no tenure: the
//!   current tenure goes on, and inference transactions wait in the mempool.
//!
//! Nobody chooses the seed. It once was the winner's committed VRF output, but a commit
//! states that output without proving it (the proof comes with the tenure's block), so a
//! bidder who won and never produced had set the next seed to any value it liked. Now
//! only a miner can move it, by redoing a block's proof of work.

use fai_primitives::{Hash160, Hash256, SecretKey};
use fai_vrf::{Output, Proof, PublicKey, VrfError};
use sha2::{Digest, Sha256};

use crate::ops::RegisterRef;

/// A node's VRF key, derived from its node key: it survives restarts, needs no file of
/// its own, and the wallet can derive it to register the node.
pub fn vrf_key(node_key: &SecretKey) -> fai_vrf::SecretKey {
    let mut seed = b"fai vrf key".to_vec();
    seed.extend_from_slice(&node_key.to_bytes());
    fai_vrf::SecretKey::from_seed(Hash256::sha256d(&seed).0)
}

/// A commit that takes part in a sortition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bid {
    /// The register op the commit names.
    pub register: RegisterRef,
    pub vrf_key: [u8; 32],
    /// The inference node's address (from the register op).
    pub producer: Hash160,
    /// The inference block the winner must build on.
    pub parent: [u8; 32],
    /// FAI base units paid to the verifier set.
    pub amount: u64,
    /// The bidder's VRF output over the current seed, which its block must prove if it
    /// wins.
    pub seed: [u8; 32],
}

/// The outcome of one ledger block's sortition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sortition {
    pub hash: [u8; 32],
    pub winner: Option<Bid>,
    /// All committed in this block.
    pub total: u64,
    /// The seed for the next sortition ([`chain_seed`]).
    pub next_seed: [u8; 32],
}

/// Runs the sortition of a ledger block.
pub fn run(seed: &[u8; 32], ledger_block: &[u8; 32], bids: &[Bid]) -> Sortition {
    let winner = winner(seed, ledger_block, bids).cloned();
    Sortition {
        hash: sortition_hash(seed, ledger_block),
        next_seed: chain_seed(seed, ledger_block),
        total: bids
            .iter()
            .map(|b| b.amount)
            .fold(0u64, u64::saturating_add),
        winner,
    }
}

/// The seed of the inference genesis: sha256 of the network name.
pub fn genesis_seed(network_name: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"fai-sortition-seed/v1")
        .chain_update(network_name.as_bytes())
        .finalize()
        .into()
}

/// The seed after ledger block `ledger_block`, whose sortition ran with `seed`: a hash of
/// both, whoever won and whether its block ever comes.
pub fn chain_seed(seed: &[u8; 32], ledger_block: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"fai-sortition-seed/v2")
        .chain_update(seed)
        .chain_update(ledger_block)
        .finalize()
        .into()
}

/// The sortition hash of a ledger block.
pub fn sortition_hash(seed: &[u8; 32], ledger_block: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(seed)
        .chain_update(ledger_block)
        .finalize()
        .into()
}

/// The index of the winning weight; none when nothing was committed.
pub fn draw(hash: &[u8; 32], weights: &[u64]) -> Option<usize> {
    let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut head = [0u8; 16];
    head.copy_from_slice(hash.get(..16)?);
    let mut point = u128::from_le_bytes(head).checked_rem(total)?;
    for (i, w) in weights.iter().enumerate() {
        let w = u128::from(*w);
        if point < w {
            return Some(i);
        }
        point = point.checked_sub(w)?;
    }
    None
}

/// The winning bid of a ledger block.
pub fn winner<'a>(seed: &[u8; 32], ledger_block: &[u8; 32], bids: &'a [Bid]) -> Option<&'a Bid> {
    let weights: Vec<u64> = bids.iter().map(|b| b.amount).collect();
    draw(&sortition_hash(seed, ledger_block), &weights).and_then(|i| bids.get(i))
}

/// What a commit states of its bidder's VRF output (the first 32 bytes), which the
/// winner's block proves.
pub fn next_seed(output: &Output) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(output.0.get(..32).unwrap_or(&[0; 32]));
    seed
}

/// Checks the VRF proof of a tenure's first block against the winner's key and the seed,
/// and returns the output it proves (what the winning commit must have stated).
pub fn check_tenure_proof(
    vrf_key: &[u8; 32],
    seed: &[u8; 32],
    proof: &Proof,
) -> Result<[u8; 32], VrfError> {
    fai_vrf::verify(&PublicKey(*vrf_key), proof, seed).map(|o| next_seed(&o))
}

/// Whether a winning bid's tenure proof is valid and proves the seed it committed.
pub fn tenure_proof_matches(bid: &Bid, seed: &[u8; 32], proof: &Proof) -> bool {
    check_tenure_proof(&bid.vrf_key, seed, proof).is_ok_and(|s| s == bid.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack: a bidder commits with an output it chose (commits state it unproven) and,
    /// winning, never produces. Before, its stated output became the next seed, so the
    /// bidder picked the seed of the next draw. Now the next seed is the same whatever
    /// the winner stated, and changes with the ledger block.
    #[test]
    fn the_winner_cannot_choose_the_next_seed() {
        let seed = genesis_seed("regtest");
        let bid = |stated: u8| Bid {
            register: RegisterRef {
                height: 1,
                tx_index: 1,
            },
            vrf_key: [1; 32],
            producer: Hash160([2; 20]),
            parent: [0; 32],
            amount: 10,
            seed: [stated; 32],
        };
        let honest = run(&seed, &[7; 32], &[bid(0x11)]);
        let chosen = run(&seed, &[7; 32], &[bid(0x66)]);
        assert!(honest.winner.is_some() && chosen.winner.is_some());
        assert_eq!(honest.next_seed, chosen.next_seed);
        assert_ne!(chosen.next_seed, [0x66; 32]);
        assert_eq!(chosen.next_seed, chain_seed(&seed, &[7; 32]));
        // Nobody bid: the seed still moves with the ledger.
        assert_eq!(run(&seed, &[7; 32], &[]).next_seed, chosen.next_seed);
        assert_ne!(run(&seed, &[8; 32], &[]).next_seed, chosen.next_seed);
    }

    #[test]
    fn nothing_committed_draws_nobody() {
        assert_eq!(draw(&[7; 32], &[]), None);
        assert_eq!(draw(&[7; 32], &[0, 0]), None);
        assert_eq!(draw(&[7; 32], &[0, 5, 0]), Some(1));
    }

    /// Over 10,000 seeds the wins follow the committed weights: chi-square with three
    /// degrees of freedom under 16.27 (p = 0.001), at a fixed set of seeds.
    #[test]
    fn draws_follow_the_committed_weights() {
        let weights = [10u64, 20, 30, 40];
        let total: u64 = weights.iter().sum();
        let mut counts = [0u64; 4];
        let block = [0xab; 32];
        for i in 0u32..10_000 {
            let seed: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            counts[draw(&sortition_hash(&seed, &block), &weights).unwrap()] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .zip(weights)
            .map(|(&o, w)| {
                let e = 10_000.0 * w as f64 / total as f64;
                (o as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 16.27, "chi-square {chi2} for counts {counts:?}");
        assert!(counts.iter().all(|c| *c > 0));
    }

    #[test]
    fn the_tenure_proof_gives_the_next_seed_and_rejects_forgeries() {
        let key = fai_vrf::SecretKey::from_seed([5; 32]);
        let seed = genesis_seed("regtest");
        let proof = key.prove(&seed).unwrap();
        let next = check_tenure_proof(&key.public().0, &seed, &proof).unwrap();
        assert_ne!(next, seed);
        // Another key, another seed, or a changed proof: refused.
        let other = fai_vrf::SecretKey::from_seed([6; 32]);
        assert!(check_tenure_proof(&other.public().0, &seed, &proof).is_err());
        assert!(check_tenure_proof(&key.public().0, &[0; 32], &proof).is_err());
        let mut bad = proof;
        bad.0[40] ^= 1;
        assert!(check_tenure_proof(&key.public().0, &seed, &bad).is_err());
    }
}
