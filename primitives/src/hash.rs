//! Hash newtypes: [`Hash256`] (SHA-256 applied twice, "sha256d") and [`Hash160`]
//! (RIPEMD-160 of SHA-256), as Bitcoin uses them.
//!
//! A `Hash256` is shown the way Bitcoin shows block hashes and txids: its bytes reversed,
//! in hex, so the leading zeros of proof of work come first.

use std::fmt;
use std::str::FromStr;

use ripemd::Ripemd160;
use sha2::{Digest, Sha256};

use crate::codec::{CodecError, Decode, Encode, Reader};

/// A 32-byte hash, usually the sha256d of something.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash256(pub [u8; 32]);

/// A 20-byte hash: RIPEMD-160 over SHA-256, the hash of a public key in an address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash160(pub [u8; 20]);

/// A hash given as text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hash {input:?}: expected {expected} hex characters")]
pub struct HashParseError {
    input: String,
    expected: usize,
}

/// SHA-256 of `data`, once.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl Hash256 {
    /// The all-zero hash, used as "no parent" and in null outpoints.
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// SHA-256 applied twice to `data`.
    pub fn sha256d(data: &[u8]) -> Self {
        Hash256(Sha256::digest(Sha256::digest(data)).into())
    }

    /// sha256d over several byte strings, as if they were concatenated.
    pub fn sha256d_parts(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        Hash256(Sha256::digest(h.finalize()).into())
    }

    /// The raw bytes, in internal (not display) order.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

impl Hash160 {
    /// RIPEMD-160 of the SHA-256 of `data`.
    pub fn hash(data: &[u8]) -> Self {
        Hash160(Ripemd160::digest(Sha256::digest(data)).into())
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rev = self.0;
        rev.reverse();
        f.write_str(&hex::encode(rev))
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({self})")
    }
}

impl FromStr for Hash256 {
    type Err = HashParseError;

    /// Reads the display form (reversed byte order).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || HashParseError {
            input: s.chars().take(80).collect(),
            expected: 64,
        };
        let mut bytes: [u8; 32] = hex::decode(s)
            .map_err(|_| err())?
            .try_into()
            .map_err(|_| err())?;
        bytes.reverse();
        Ok(Hash256(bytes))
    }
}

impl fmt::Display for Hash160 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash160 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash160({self})")
    }
}

impl Encode for Hash256 {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Hash256 {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Hash256(r.read_array()?))
    }
}

impl Encode for Hash160 {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Hash160 {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Hash160(r.read_array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256d_of_empty_matches_the_known_value() {
        // sha256d("") = 5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456
        let h = Hash256::sha256d(b"");
        assert_eq!(
            hex::encode(h.0),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
        assert_eq!(
            Hash256::sha256d_parts(&[b"ab", b"c"]),
            Hash256::sha256d(b"abc")
        );
    }

    #[test]
    fn hash160_matches_bitcoin_for_a_known_key() {
        // The generator point's compressed key; its hash160 is well known.
        let key = hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .unwrap();
        assert_eq!(
            Hash160::hash(&key).to_string(),
            "751e76e8199196d454941c45d1b3a323f1433bd6"
        );
    }

    #[test]
    fn display_is_reversed_and_parses_back() {
        let mut b = [0u8; 32];
        b[31] = 0xab;
        let h = Hash256(b);
        let s = h.to_string();
        assert!(s.starts_with("ab00"));
        assert_eq!(s.parse::<Hash256>().unwrap(), h);
        assert!("zz".parse::<Hash256>().is_err());
        assert!("00".parse::<Hash256>().is_err());
    }
}
