//! secp256k1 keys and ECDSA signatures, on libsecp256k1.
//!
//! Signatures travel as 64 compact bytes (r || s). Verification accepts only low-S
//! signatures, so a third party cannot change a signed transaction's id.

use std::fmt;
use std::str::FromStr;

use secp256k1::{ecdsa, Message, SECP256K1};
use thiserror::Error;

use crate::codec::{CodecError, Decode, Encode, Reader};
use crate::hash::{Hash160, Hash256};

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("invalid secret key: expected 64 hex characters of a valid secp256k1 scalar")]
    InvalidSecretKey,
    #[error("invalid public key: expected 33 bytes of a compressed secp256k1 point")]
    InvalidPublicKey,
}

/// A secp256k1 secret key. Its `Debug` form does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(secp256k1::SecretKey);

/// A compressed secp256k1 public key (33 bytes on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(secp256k1::PublicKey);

/// A compact ECDSA signature (r || s), kept as raw bytes until verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        SecretKey(secp256k1::SecretKey::new(&mut rand::thread_rng()))
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        secp256k1::SecretKey::from_slice(bytes)
            .map(SecretKey)
            .map_err(|_| KeyError::InvalidSecretKey)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.secret_bytes()
    }

    /// The key as 64 hex characters, for key files.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key(SECP256K1))
    }

    /// Signs a 32-byte digest (RFC 6979 nonces, low-S).
    pub fn sign(&self, digest: &Hash256) -> Signature {
        let msg = Message::from_digest(digest.0);
        Signature(SECP256K1.sign_ecdsa(&msg, &self.0).serialize_compact())
    }
}

impl FromStr for SecretKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 32] = hex::decode(s.trim())
            .map_err(|_| KeyError::InvalidSecretKey)?
            .try_into()
            .map_err(|_| KeyError::InvalidSecretKey)?;
        SecretKey::from_bytes(&bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<hidden>)")
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 33 {
            return Err(KeyError::InvalidPublicKey);
        }
        secp256k1::PublicKey::from_slice(bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPublicKey)
    }

    pub fn to_bytes(&self) -> [u8; 33] {
        self.0.serialize()
    }

    /// The hash160 of the compressed key: what an address commits to.
    pub fn hash160(&self) -> Hash160 {
        Hash160::hash(&self.to_bytes())
    }

    /// True if `sig` is a valid low-S signature of `digest` by this key.
    pub fn verify(&self, digest: &Hash256, sig: &Signature) -> bool {
        let Ok(sig) = ecdsa::Signature::from_compact(&sig.0) else {
            return false;
        };
        let msg = Message::from_digest(digest.0);
        SECP256K1.verify_ecdsa(&msg, &sig, &self.0).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Encode for PublicKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

impl Decode for PublicKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let bytes: [u8; 33] = r.read_array()?;
        PublicKey::from_bytes(&bytes).map_err(|_| CodecError::Invalid {
            what: "public key",
            reason: "not a compressed secp256k1 point",
        })
    }
}

impl Encode for Signature {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Signature {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Signature(r.read_array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let sk = SecretKey::generate();
        let pk = sk.public_key();
        let d = Hash256::sha256d(b"message");
        let sig = sk.sign(&d);
        assert!(pk.verify(&d, &sig));
        assert!(!pk.verify(&Hash256::sha256d(b"other"), &sig));
        assert!(!SecretKey::generate().public_key().verify(&d, &sig));
        let mut bad = sig;
        bad.0[10] ^= 1;
        assert!(!pk.verify(&d, &bad));
    }

    #[test]
    fn high_s_signatures_are_refused() {
        // Negate s: (r, n - s) is the malleated twin of a valid signature.
        let sk = SecretKey::generate();
        let d = Hash256::sha256d(b"m");
        let sig = sk.sign(&d);
        let n = hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
            .unwrap();
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig.0[32..]);
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let v = n[i] as i16 - s[i] as i16 - borrow;
            borrow = if v < 0 { 1 } else { 0 };
            out[i] = (v + 256 * borrow) as u8;
        }
        let mut high = sig;
        high.0[32..].copy_from_slice(&out);
        assert!(!sk.public_key().verify(&d, &high));
    }

    #[test]
    fn keys_round_trip_through_text_and_bytes() {
        let sk = SecretKey::generate();
        assert_eq!(sk.to_hex().parse::<SecretKey>().unwrap(), sk);
        assert!("00".parse::<SecretKey>().is_err());
        assert!("0".repeat(64).parse::<SecretKey>().is_err());
        let pk = sk.public_key();
        assert_eq!(PublicKey::from_bytes_exact(&pk.to_bytes()), pk);
        assert!(PublicKey::decode_from(&mut Reader::new(&[5u8; 33])).is_err());
        assert!(!format!("{sk:?}").contains(&sk.to_hex()));
    }

    impl PublicKey {
        fn from_bytes_exact(b: &[u8; 33]) -> PublicKey {
            PublicKey::decode_from(&mut Reader::new(b)).unwrap()
        }
    }
}
