//! The inference chain's settings for each network: its genesis (reward cycle, minimum
//! stake and bond, withdrawal delay, the models approved from the start) and the VM's
//! configuration. Every node of a network must use the same, so they live here rather
//! than in the node.

use fai_clarity::{Genesis, GenesisModel, VmConfig};
use fai_primitives::amount::COIN;
use fai_primitives::Network;

use crate::chain::ChainConfig;

/// `n` FAI in base units.
const fn fai(n: u64) -> u128 {
    (n as u128).saturating_mul(COIN as u128)
}

/// `n` tenths of a FAI in base units.
const fn fai_tenths(n: u64) -> u128 {
    fai(n).saturating_div(10)
}

impl ChainConfig {
    /// The settings of `network`'s inference chain. `tiny` is fai-tiny's model id,
    /// approved from the start everywhere but mainnet (where models enter by the
    /// registry's vote).
    pub fn for_network(network: Network, tiny: [u8; 32]) -> ChainConfig {
        // (ledger blocks per reward cycle, minimum stake, minimum bond, withdrawal delay)
        let (cycle_length, min_stake, min_bond, withdraw_delay) = match network {
            // Two-minute blocks: a day per cycle, a week's delay.
            Network::Mainnet => (720, fai(1_000), fai(100), 5_040),
            // One-minute blocks: a day per cycle.
            Network::Testnet => (1_440, fai(10), fai(1), 2_880),
            // Five-second blocks: 100 s per cycle.
            Network::Devnet => (20, fai(1), fai_tenths(1), 40),
            Network::Regtest => (5, fai(1), fai_tenths(1), 10),
        };
        let models = match network {
            Network::Mainnet => Vec::new(),
            _ => vec![GenesisModel {
                id: tiny,
                name: "fai-tiny".into(),
                arch: "llama".into(),
                context_length: 2048,
                method: "replay".into(),
            }],
        };
        ChainConfig {
            network,
            vm: VmConfig::for_network(network),
            genesis: Genesis {
                cycle_length: u128::from(cycle_length),
                min_stake,
                min_bond,
                withdraw_delay,
                models,
            },
            cycle_length,
            max_block_bytes: crate::block::MAX_BLOCK_BYTES,
        }
    }
}
