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
