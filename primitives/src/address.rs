//! Addresses: the hash160 of a compressed secp256k1 key, written in bech32m with the
//! network's HRP ("fai1...", "tfai1...", "dfai1...", "rfai1..."). The same key and
//! address serve on both layers.
//!
//! The payload is one version byte (0) followed by the 20-byte key hash, so later address
//! kinds can be added without ambiguity.

use std::fmt;
use std::str::FromStr;

use bech32::{primitives::decode::CheckedHrpstring, Bech32m, Hrp};
use thiserror::Error;

use crate::hash::Hash160;
use crate::keys::PublicKey;
use crate::network::Network;

const VERSION_KEY_HASH: u8 = 0;

/// A pay-to-key-hash address on one network.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Address {
    pub network: Network,
    pub key_hash: Hash160,
}

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("invalid address {0:?}: not bech32m text with a valid checksum")]
    Encoding(String),
    #[error("invalid address {0:?}: unknown network prefix")]
    UnknownPrefix(String),
    #[error("invalid address {0:?}: unsupported address version or length")]
    Payload(String),
    #[error("address {address:?} is for {found}, this node runs {expected}")]
    WrongNetwork {
        address: String,
        found: Network,
        expected: Network,
    },
}

impl Address {
    pub fn new(network: Network, key_hash: Hash160) -> Self {
        Address { network, key_hash }
    }

    pub fn from_public_key(network: Network, key: &PublicKey) -> Self {
        Address::new(network, key.hash160())
    }

    /// Parses `s` and requires it to belong to `network`.
    pub fn parse_for(s: &str, network: Network) -> Result<Self, AddressError> {
        let a: Address = s.parse()?;
        if a.network != network {
            return Err(AddressError::WrongNetwork {
                address: s.to_string(),
                found: a.network,
                expected: network,
            });
        }
        Ok(a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = [0u8; 21];
        data[0] = VERSION_KEY_HASH;
        data[1..].copy_from_slice(&self.key_hash.0);
        let hrp = Hrp::parse_unchecked(self.network.hrp());
        match bech32::encode::<Bech32m>(hrp, &data) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown = || s.chars().take(100).collect::<String>();
        let checked = CheckedHrpstring::new::<Bech32m>(s.trim())
            .map_err(|_| AddressError::Encoding(shown()))?;
        let hrp = checked.hrp().to_lowercase();
        let network =
            Network::from_hrp(&hrp).ok_or_else(|| AddressError::UnknownPrefix(shown()))?;
        let data: Vec<u8> = checked.byte_iter().collect();
        match data.split_first() {
            Some((&VERSION_KEY_HASH, hash)) => {
                let key_hash: [u8; 20] = hash
                    .try_into()
                    .map_err(|_| AddressError::Payload(shown()))?;
                Ok(Address::new(network, Hash160(key_hash)))
            }
            _ => Err(AddressError::Payload(shown())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use proptest::prelude::*;

    #[test]
    fn each_network_has_its_own_prefix_and_round_trips() {
        let key = SecretKey::generate().public_key();
        for n in Network::ALL {
            let a = Address::from_public_key(n, &key);
            let s = a.to_string();
            assert!(s.starts_with(&format!("{}1", n.hrp())), "{s}");
            assert_eq!(s.parse::<Address>().unwrap(), a);
            assert_eq!(Address::parse_for(&s, n).unwrap(), a);
        }
        let main = Address::from_public_key(Network::Mainnet, &key).to_string();
        assert!(matches!(
            Address::parse_for(&main, Network::Devnet),
            Err(AddressError::WrongNetwork { .. })
        ));
    }

    #[test]
    fn a_typo_is_caught_by_the_checksum() {
        let a = Address::new(Network::Devnet, Hash160([7; 20])).to_string();
        let mut chars: Vec<char> = a.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            typo.parse::<Address>(),
            Err(AddressError::Encoding(_))
        ));
    }

    #[test]
    fn bech32_not_bech32m_and_foreign_prefixes_are_refused() {
        let hrp = Hrp::parse("dfai").unwrap();
        let mut data = vec![0u8];
        data.extend_from_slice(&[1u8; 20]);
        let legacy = bech32::encode::<bech32::Bech32>(hrp, &data).unwrap();
        assert!(matches!(
            legacy.parse::<Address>(),
            Err(AddressError::Encoding(_))
        ));
        let btc = bech32::encode::<Bech32m>(Hrp::parse("bc").unwrap(), &data).unwrap();
        assert!(matches!(
            btc.parse::<Address>(),
            Err(AddressError::UnknownPrefix(_))
        ));
        let short = bech32::encode::<Bech32m>(hrp, &data[..10]).unwrap();
        assert!(matches!(
            short.parse::<Address>(),
            Err(AddressError::Payload(_))
        ));
    }

    proptest! {
        #[test]
        fn parsing_any_text_never_panics(s in ".{0,120}") {
            let _ = s.parse::<Address>();
        }
    }
}
