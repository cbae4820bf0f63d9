//! The networks a node can join. Each has its own address prefix (bech32m HRP); the
//! ledger crate adds the consensus parameters (genesis, magic, spacing) for each.

use std::fmt;
use std::str::FromStr;

/// One of the four networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    Mainnet,
    Testnet,
    Devnet,
    Regtest,
}

impl Network {
    pub const ALL: [Network; 4] = [
        Network::Mainnet,
        Network::Testnet,
        Network::Devnet,
        Network::Regtest,
    ];

    /// The human-readable part of this network's addresses.
    pub fn hrp(self) -> &'static str {
        match self {
            Network::Mainnet => "fai",
            Network::Testnet => "tfai",
            Network::Devnet => "dfai",
            Network::Regtest => "rfai",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Devnet => "devnet",
            Network::Regtest => "regtest",
        }
    }

    /// The chain id every transaction of this network signs over (inference and VM
    /// transactions; Clarity contracts read it as `chain-id`), so that a transaction
    /// signed for one network is invalid on every other. Test networks set the high bit,
    /// as Stacks does.
    pub fn chain_id(self) -> u32 {
        match self {
            Network::Mainnet => 0x0000_0001,
            Network::Testnet => 0x8000_0000,
            Network::Devnet => 0x8000_0001,
            Network::Regtest => 0x8000_0002,
        }
    }

    /// The network whose addresses start with `hrp`.
    pub fn from_hrp(hrp: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.hrp() == hrp)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of mainnet, testnet, devnet, regtest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}: expected mainnet, testnet, devnet or regtest")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Network::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| UnknownNetwork(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_network_has_its_own_chain_id_and_only_mainnet_lacks_the_test_bit() {
        let ids: Vec<u32> = Network::ALL.iter().map(|n| n.chain_id()).collect();
        for (i, a) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(a), "{ids:?}");
        }
        for n in Network::ALL {
            assert_eq!(
                n.chain_id() & 0x8000_0000 == 0,
                n == Network::Mainnet,
                "{n}"
            );
        }
    }
}
