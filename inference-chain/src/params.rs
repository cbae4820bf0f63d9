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
            configured_models: Vec::new(),
        }
    }

    /// The same with `models` approved from the start as well (a model already approved
    /// is not approved twice). Only a regtest network takes models from its
    /// configuration: elsewhere the registry's vote is the only way in, so this refuses.
    pub fn with_genesis_models(mut self, models: Vec<GenesisModel>) -> Result<Self, String> {
        if models.is_empty() {
            return Ok(self);
        }
        if self.network != Network::Regtest {
            return Err(format!(
                "models approved at genesis by configuration are for regtest only, not {}",
                self.network
            ));
        }
        let mut models = models;
        // The order listed does not matter: both the approvals and the genesis id take
        // the models in the order of their ids.
        models.sort_by_key(|m| m.id);
        for model in models {
            if self.genesis.models.iter().any(|m| m.id == model.id) {
                continue;
            }
            self.configured_models.push(model.clone());
            self.genesis.models.push(model);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: u8) -> GenesisModel {
        GenesisModel {
            id: [id; 32],
            name: format!("model-{id}"),
            arch: "llama".into(),
            context_length: 1024,
            method: "replay".into(),
        }
    }

    #[test]
    fn only_regtest_approves_models_from_its_configuration() {
        for network in [Network::Mainnet, Network::Testnet, Network::Devnet] {
            let err = ChainConfig::for_network(network, [1; 32])
                .with_genesis_models(vec![model(7)])
                .unwrap_err();
            assert!(err.contains("regtest only"), "{err}");
            // Nothing listed: the network's own genesis.
            assert!(ChainConfig::for_network(network, [1; 32])
                .with_genesis_models(Vec::new())
                .is_ok());
        }
        let c = ChainConfig::for_network(Network::Regtest, [1; 32])
            .with_genesis_models(vec![model(8), model(1), model(7), model(8)])
            .unwrap();
        // fai-tiny (id [1; 32]) is approved once, and each configured model once, in the
        // order of their ids.
        let ids: Vec<[u8; 32]> = c.genesis.models.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![[1; 32], [7; 32], [8; 32]]);
        let configured: Vec<[u8; 32]> = c.configured_models.iter().map(|m| m.id).collect();
        assert_eq!(configured, vec![[7; 32], [8; 32]]);
    }
}
