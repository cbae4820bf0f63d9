//! Proof of work: compact targets ("bits"), the work a target represents, and the
//! SHA256d header hash with the midstate trick the miner uses.
//!
//! A header hash, read as a little-endian 256-bit number, must not exceed the target its
//! `bits` encode. Compact form: the high byte is a base-256 exponent, the low 23 bits a
//! mantissa, bit 23 a sign that must be clear, as in Bitcoin.

use fai_primitives::Hash256;
use primitive_types::U256;
use sha2::digest::generic_array::GenericArray;

use crate::block::HEADER_SIZE;

/// `v << s`. uint's shifts yield zero past 256 bits and never panic; the lint that asks
/// for checked arithmetic cannot see that, hence these two wrappers.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn shl(v: U256, s: usize) -> U256 {
    if s >= 256 {
        U256::zero()
    } else {
        v << s
    }
}

/// `v >> s`, zero past 256 bits.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn shr(v: U256, s: usize) -> U256 {
    if s >= 256 {
        U256::zero()
    } else {
        v >> s
    }
}

/// Why a compact target is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    #[error("compact target {0:#010x} is negative")]
    Negative(u32),
    #[error("compact target {0:#010x} overflows 256 bits")]
    Overflow(u32),
    #[error("compact target {0:#010x} is zero")]
    Zero(u32),
}

/// The target encoded by `bits`.
pub fn target_from_compact(bits: u32) -> Result<U256, CompactError> {
    let exponent = bits >> 24;
    let mantissa = bits & 0x007f_ffff;
    if bits & 0x0080_0000 != 0 && mantissa != 0 {
        return Err(CompactError::Negative(bits));
    }
    let target = if exponent <= 3 {
        U256::from(mantissa >> (8u32.saturating_mul(3u32.saturating_sub(exponent))))
    } else {
        let shift = 8u32.saturating_mul(exponent.saturating_sub(3));
        let m = U256::from(mantissa);
        if mantissa != 0 && m.bits().saturating_add(shift as usize) > 256 {
            return Err(CompactError::Overflow(bits));
        }
        shl(m, shift as usize)
    };
    if target.is_zero() {
        return Err(CompactError::Zero(bits));
    }
    Ok(target)
}

/// The compact form of `target` (rounded down to 23 bits of mantissa).
pub fn compact_from_target(target: U256) -> u32 {
    let mut size = u32::try_from(target.bits().div_ceil(8)).unwrap_or(32);
    let mut compact: u32 = if size <= 3 {
        (target.low_u64() << (8u32.saturating_mul(3u32.saturating_sub(size)))) as u32
    } else {
        shr(
            target,
            8usize.saturating_mul(size.saturating_sub(3) as usize),
        )
        .low_u32()
    };
    if compact & 0x0080_0000 != 0 {
        compact >>= 8;
        size = size.saturating_add(1);
    }
    compact | (size << 24)
}

/// The expected number of hashes to meet `target`: 2^256 / (target + 1).
pub fn work_from_target(target: U256) -> U256 {
    // 2^256 does not fit; (2^256 - target - 1) / (target + 1) + 1 is the same number.
    let denom = target.saturating_add(U256::one());
    (!target)
        .checked_div(denom)
        .unwrap_or_default()
        .saturating_add(U256::one())
}

/// The work a header's bits claim (zero for bits that do not decode): what its proof of
/// work, once checked, proves was spent.
pub fn header_work(header: &crate::block::BlockHeader) -> U256 {
    target_from_compact(header.bits)
        .map(work_from_target)
        .unwrap_or_default()
}

/// Whether `hash` meets `target`.
pub fn hash_meets_target(hash: &Hash256, target: &U256) -> bool {
    U256::from_little_endian(&hash.0) <= *target
}

/// The length of a header in bits, as SHA-256 padding writes it.
const HEADER_BITS: u64 = 640;

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// One SHA-256 compression of a 64-byte block into `state`.
#[inline]
pub fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, &[*GenericArray::from_slice(block)]);
}

/// Hashes one header many times with different nonces, two compressions per try: the
/// first 64 header bytes never change, so their compression (the midstate) is done once.
#[derive(Clone)]
pub struct MidstateHasher {
    midstate: [u32; 8],
    /// Header bytes 64..80 followed by SHA-256 padding for an 80-byte message.
    tail: [u8; 64],
    /// Top 32 bits of the target, for a cheap first comparison.
    target: U256,
    target_top: u32,
}

impl MidstateHasher {
    pub fn new(header: &[u8; HEADER_SIZE], target: U256) -> Self {
        let mut midstate = SHA256_IV;
        let mut first = [0u8; 64];
        first.copy_from_slice(&header[..64]);
        compress(&mut midstate, &first);
        let mut tail = [0u8; 64];
        tail[..16].copy_from_slice(&header[64..]);
        tail[16] = 0x80;
        tail[56..].copy_from_slice(&HEADER_BITS.to_be_bytes());
        MidstateHasher {
            midstate,
            tail,
            target,
            target_top: shr(target, 224).low_u32(),
        }
    }

    /// The sha256d of the header with `nonce` written into it.
    #[inline]
    pub fn hash(&self, nonce: u32) -> [u32; 8] {
        let mut tail = self.tail;
        tail[12..16].copy_from_slice(&nonce.to_le_bytes());
        let mut first = self.midstate;
        compress(&mut first, &tail);
        let mut second_block = [0u8; 64];
        for (chunk, word) in second_block.chunks_exact_mut(4).zip(first.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        second_block[32] = 0x80;
        second_block[62] = 0x01; // length: 256 bits
        let mut second = SHA256_IV;
        compress(&mut second, &second_block);
        second
    }

    /// Whether the header with `nonce` meets the target.
    #[inline]
    pub fn check(&self, nonce: u32) -> bool {
        let state = self.hash(nonce);
        // The most significant 32 bits of the little-endian number are the last 4 digest
        // bytes, which are state[7] in big-endian order.
        let top = state[7].swap_bytes();
        if top != self.target_top {
            return top < self.target_top;
        }
        hash_meets_target(&state_to_hash(&state), &self.target)
    }
}

/// The digest bytes of a final SHA-256 state.
pub fn state_to_hash(state: &[u32; 8]) -> Hash256 {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash256(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trips_bitcoin_values() {
        let t = target_from_compact(0x1d00ffff).unwrap();
        assert_eq!(t, U256::from(0xffffu64) << 208);
        assert_eq!(compact_from_target(t), 0x1d00ffff);
        assert_eq!(
            compact_from_target(target_from_compact(0x207fffff).unwrap()),
            0x207fffff
        );
        assert_eq!(
            target_from_compact(0x03123456).unwrap(),
            U256::from(0x123456u64)
        );
        assert_eq!(compact_from_target(U256::from(0x80u64)), 0x02008000);
    }

    #[test]
    fn bad_compact_targets_are_refused() {
        assert_eq!(
            target_from_compact(0x04923456),
            Err(CompactError::Negative(0x04923456))
        );
        assert_eq!(
            target_from_compact(0xff123456),
            Err(CompactError::Overflow(0xff123456))
        );
        assert_eq!(
            target_from_compact(0x01003456),
            Err(CompactError::Zero(0x01003456))
        );
        assert_eq!(target_from_compact(0), Err(CompactError::Zero(0)));
    }

    #[test]
    fn work_is_two_to_the_256_over_target_plus_one() {
        assert_eq!(work_from_target(U256::MAX), U256::one());
        // target 2^255 - 1: 2^256 / 2^255 = 2
        assert_eq!(work_from_target((U256::one() << 255) - 1), U256::from(2));
        assert_eq!(
            work_from_target(target_from_compact(0x1d00ffff).unwrap()),
            U256::from(0x1_0001_0001u64)
        );
    }

    #[test]
    fn midstate_hash_equals_plain_sha256d() {
        let mut header = [0u8; 80];
        for (i, b) in header.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let hasher = MidstateHasher::new(&header, U256::MAX);
        for nonce in [0u32, 1, 0xdead_beef, u32::MAX] {
            header[76..].copy_from_slice(&nonce.to_le_bytes());
            assert_eq!(
                state_to_hash(&hasher.hash(nonce)),
                Hash256::sha256d(&header)
            );
        }
    }

    #[test]
    fn midstate_check_agrees_with_the_full_comparison() {
        let header = [3u8; 80];
        // A target of about 1 in 16 hashes exercises both outcomes and the tie path.
        let target = U256::MAX >> 4;
        let hasher = MidstateHasher::new(&header, target);
        let mut full = header;
        let mut hits = 0;
        for nonce in 0..2000u32 {
            full[76..].copy_from_slice(&nonce.to_le_bytes());
            let expect = hash_meets_target(&Hash256::sha256d(&full), &target);
            assert_eq!(hasher.check(nonce), expect, "nonce {nonce}");
            hits += usize::from(expect);
        }
        assert!(hits > 50 && hits < 250, "{hits}");
    }
}
