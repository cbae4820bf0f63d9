//! ECVRF-EDWARDS25519-SHA512-TAI, the verifiable random function of RFC 9381 (suite 0x03):
//! edwards25519, SHA-512, hashing to the curve by try-and-increment.
//!
//! The holder of a secret key computes, for any input `alpha`, a proof `pi` (80 bytes)
//! whose hash `beta` (64 bytes) is pseudorandom; anyone with the public key checks the
//! proof and gets the same `beta`. The sortition of infer-node uses it so that the winner
//! of a tenure proves the randomness its block brings without being able to choose it.
//!
//! Procedure (the RFC's section 5 with this suite's choices):
//! - secret scalar `x`: the clamped first half of SHA-512(secret key), public key
//!   `Y = x·B`;
//! - `H = 8·string_to_point(SHA-512(0x03 ‖ 0x01 ‖ Y ‖ alpha ‖ ctr ‖ 0x00)[..32])` for the
//!   first counter `ctr = 0, 1, ..` that gives a valid point;
//! - `Gamma = x·H`; nonce `k = SHA-512(second half of SHA-512(sk) ‖ H) mod q`;
//! - `c` = the first 16 bytes of SHA-512(0x03 ‖ 0x02 ‖ Y ‖ H ‖ Gamma ‖ k·B ‖ k·H ‖ 0x00),
//!   little-endian; `s = k + c·x mod q`; `pi = Gamma ‖ c ‖ s`;
//! - `beta = SHA-512(0x03 ‖ 0x03 ‖ 8·Gamma ‖ 0x00)`.
//!
//! Verification refuses a public key of small order, a `Gamma` that is not a point and an
//! `s` that is not reduced, then recomputes `c` from `U = s·B − c·Y`, `V = s·H − c·Gamma`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use sha2::{Digest, Sha512};

/// Group operations of edwards25519 and its scalar field. They are modular, so they cannot
/// overflow; the crate's lint against unchecked arithmetic is lifted here and only here.
#[allow(clippy::arithmetic_side_effects)]
mod group {
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;

    /// `n·p`.
    pub fn mul(p: &EdwardsPoint, n: &Scalar) -> EdwardsPoint {
        p * n
    }

    /// `a·p − b·q`.
    pub fn mul_sub(a: &Scalar, p: &EdwardsPoint, b: &Scalar, q: &EdwardsPoint) -> EdwardsPoint {
        a * p - b * q
    }

    /// `k + c·x mod q`.
    pub fn mul_add(k: &Scalar, c: &Scalar, x: &Scalar) -> Scalar {
        k + c * x
    }
}

const SUITE: u8 = 0x03;
/// Bytes of the challenge.
const C_LEN: usize = 16;
/// Bytes of a proof: Gamma, c, s.
pub const PROOF_LEN: usize = 32 + C_LEN + 32;

/// Why a proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VrfError {
    #[error("the VRF public key is not a valid point of edwards25519")]
    BadPublicKey,
    #[error("the VRF public key has small order")]
    WeakPublicKey,
    #[error("the VRF proof is malformed")]
    MalformedProof,
    #[error("the VRF proof does not verify")]
    InvalidProof,
    #[error("no input hashes to the curve (counter exhausted)")]
    HashToCurve,
}

/// A VRF secret key (the 32-byte seed of RFC 8032).
#[derive(Clone)]
pub struct SecretKey {
    seed: [u8; 32],
    scalar: Scalar,
    public: PublicKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {:?})", self.public)
    }
}

/// A VRF public key (a compressed edwards25519 point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// A VRF proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof(pub [u8; PROOF_LEN]);

/// A VRF output (`beta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Output(pub [u8; 64]);

impl SecretKey {
    /// The key of a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let h: [u8; 64] = Sha512::digest(seed).into();
        let mut half = [0u8; 32];
        half.copy_from_slice(h.get(..32).unwrap_or(&[0; 32]));
        let scalar = Scalar::from_bytes_mod_order(clamp_integer(half));
        let public = PublicKey(EdwardsPoint::mul_base(&scalar).compress().to_bytes());
        SecretKey {
            seed,
            scalar,
            public,
        }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The proof for `alpha`.
    pub fn prove(&self, alpha: &[u8]) -> Result<Proof, VrfError> {
        let h = encode_to_curve(&self.public.0, alpha)?;
        let h_string = h.compress().to_bytes();
        let gamma = group::mul(&h, &self.scalar);
        let hashed: [u8; 64] = Sha512::digest(self.seed).into();
        let k_digest: [u8; 64] = Sha512::new()
            .chain_update(hashed.get(32..).unwrap_or(&[]))
            .chain_update(h_string)
            .finalize()
            .into();
        let k = Scalar::from_bytes_mod_order_wide(&k_digest);
        let public = CompressedEdwardsY(self.public.0)
            .decompress()
            .ok_or(VrfError::BadPublicKey)?;
        let c = challenge(&[
            public,
            h,
            gamma,
            EdwardsPoint::mul_base(&k),
            group::mul(&h, &k),
        ]);
        let s = group::mul_add(&k, &c, &self.scalar);
        let mut pi = [0u8; PROOF_LEN];
        let (g, rest) = pi.split_at_mut(32);
        g.copy_from_slice(&gamma.compress().to_bytes());
        let (c_out, s_out) = rest.split_at_mut(C_LEN);
        c_out.copy_from_slice(c.as_bytes().get(..C_LEN).unwrap_or(&[0; C_LEN]));
        s_out.copy_from_slice(s.as_bytes());
        Ok(Proof(pi))
    }
}

/// Hashes `alpha` to a point of the prime-order subgroup (try-and-increment).
fn encode_to_curve(public: &[u8; 32], alpha: &[u8]) -> Result<EdwardsPoint, VrfError> {
    for ctr in 0u8..=255 {
        let digest = Sha512::new()
            .chain_update([SUITE, 0x01])
            .chain_update(public)
            .chain_update(alpha)
            .chain_update([ctr, 0x00])
            .finalize();
        let mut candidate = [0u8; 32];
        candidate.copy_from_slice(digest.get(..32).unwrap_or(&[0; 32]));
        if let Some(point) = CompressedEdwardsY(candidate).decompress() {
            return Ok(point.mul_by_cofactor());
        }
    }
    Err(VrfError::HashToCurve)
}

/// The challenge scalar of five points (16 bytes, little-endian).
fn challenge(points: &[EdwardsPoint; 5]) -> Scalar {
    let mut hasher = Sha512::new().chain_update([SUITE, 0x02]);
    for p in points {
        hasher.update(p.compress().to_bytes());
    }
    let digest = hasher.chain_update([0x00]).finalize();
    let mut c = [0u8; 32];
    for (o, b) in c.iter_mut().zip(digest.iter().take(C_LEN)) {
        *o = *b;
    }
    Scalar::from_bytes_mod_order(c)
}

/// `beta` of a proof's `Gamma`.
fn gamma_to_hash(gamma: &EdwardsPoint) -> Output {
    let digest: [u8; 64] = Sha512::new()
        .chain_update([SUITE, 0x03])
        .chain_update(gamma.mul_by_cofactor().compress().to_bytes())
        .chain_update([0x00])
        .finalize()
        .into();
    Output(digest)
}

struct Decoded {
    gamma: EdwardsPoint,
    c: Scalar,
    s: Scalar,
}

fn decode(pi: &Proof) -> Result<Decoded, VrfError> {
    let (g, rest) = pi.0.split_at(32);
    let (c_bytes, s_bytes) = rest.split_at(C_LEN);
    let gamma = CompressedEdwardsY(g.try_into().map_err(|_| VrfError::MalformedProof)?)
        .decompress()
        .ok_or(VrfError::MalformedProof)?;
    let mut c = [0u8; 32];
    for (o, b) in c.iter_mut().zip(c_bytes) {
        *o = *b;
    }
    let s_arr: [u8; 32] = s_bytes.try_into().map_err(|_| VrfError::MalformedProof)?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_arr))
        .ok_or(VrfError::MalformedProof)?;
    Ok(Decoded {
        gamma,
        c: Scalar::from_bytes_mod_order(c),
        s,
    })
}

/// `beta` of a proof, without checking it (use [`verify`] for anything that matters).
pub fn proof_to_hash(pi: &Proof) -> Result<Output, VrfError> {
    Ok(gamma_to_hash(&decode(pi)?.gamma))
}

/// Checks `pi` for `alpha` under `public` and returns its output.
pub fn verify(public: &PublicKey, pi: &Proof, alpha: &[u8]) -> Result<Output, VrfError> {
    let y = CompressedEdwardsY(public.0)
        .decompress()
        .ok_or(VrfError::BadPublicKey)?;
    if y.is_small_order() {
        return Err(VrfError::WeakPublicKey);
    }
    let d = decode(pi)?;
    let h = encode_to_curve(&public.0, alpha)?;
    let base = curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    let u = group::mul_sub(&d.s, &base, &d.c, &y);
    let v = group::mul_sub(&d.s, &h, &d.c, &d.gamma);
    if challenge(&[y, h, d.gamma, u, v]) == d.c {
        Ok(gamma_to_hash(&d.gamma))
    } else {
        Err(VrfError::InvalidProof)
    }
}
