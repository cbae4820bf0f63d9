//! Chain parameters of the four networks: magic bytes, genesis block, proof-of-work
//! limits, spacing, difficulty half-life, issuance and size limits.
//!
//! Genesis blocks are built by code from these constants and pay no one: their coinbase has
//! one zero-value data output, so the supply starts at zero. Genesis is valid by definition
//! (its hash is pinned by a test) and needs no proof of work.

use fai_primitives::supply::{halving_subsidy, LEDGER_INITIAL_SUBSIDY};
use fai_primitives::{Amount, Hash256, Network};
use primitive_types::U256;

use crate::block::{Block, BlockHeader};
use crate::difficulty::AsertParams;
use crate::pow::target_from_compact;
use crate::tx::{Transaction, TxOut};

/// The consensus parameters of one network.
#[derive(Debug, Clone)]
pub struct ChainParams {
    pub network: Network,
    /// Four bytes that start every signature digest (and, later, every p2p message).
    pub magic: [u8; 4],
    pub genesis_time: u32,
    /// The genesis target, also the target of blocks 1 and 2 and the anchor target of the
    /// difficulty adjustment.
    pub genesis_bits: u32,
    pub genesis_message: &'static str,
    /// The easiest target any block may have.
    pub pow_limit_bits: u32,
    /// Regtest only: every block uses `pow_limit_bits`.
    pub no_retarget: bool,
    /// Seconds between blocks the difficulty adjustment aims at.
    pub target_spacing: u64,
    /// Seconds of schedule drift that double or halve the target.
    pub half_life: u64,
    /// How far a block's time may be ahead of the validating node's clock.
    pub max_future_block_time: u32,
    /// Blocks between subsidy halvings.
    pub halving_interval: u64,
    /// Confirmations before a coinbase output can be spent.
    pub coinbase_maturity: u32,
    /// The largest encoded block, in bytes.
    pub max_block_size: usize,
}

/// How many previous blocks the median-time-past rule looks at.
pub const MEDIAN_TIME_SPAN: usize = 11;

const MAINNET: ChainParams = ChainParams {
    network: Network::Mainnet,
    magic: [0xfa, 0x1e, 0xd9, 0x01],
    genesis_time: 1_793_491_200, // 2026-11-01 00:00:00 UTC
    genesis_bits: 0x1e00_ffff,
    genesis_message: "FAI mainnet: inference for everyone, owned by no one",
    pow_limit_bits: 0x1e0f_ffff,
    no_retarget: false,
    target_spacing: 120,
    half_life: 86_400,
    max_future_block_time: 7_200,
    halving_interval: 2_100_000,
    coinbase_maturity: 100,
    max_block_size: 1_000_000,
};

const TESTNET: ChainParams = ChainParams {
    network: Network::Testnet,
    magic: [0xfa, 0x1e, 0xd9, 0x02],
    genesis_time: 1_793_491_201,
    genesis_bits: 0x1e00_ffff,
    genesis_message: "FAI testnet",
    pow_limit_bits: 0x1f00_ffff,
    no_retarget: false,
    target_spacing: 60,
    half_life: 3_600,
    max_future_block_time: 600,
    halving_interval: 2_100_000,
    coinbase_maturity: 100,
    max_block_size: 1_000_000,
};

const DEVNET: ChainParams = ChainParams {
    network: Network::Devnet,
    magic: [0xfa, 0x1e, 0xd9, 0x03],
    genesis_time: 1_793_491_202,
    genesis_bits: 0x1e00_ffff,
    genesis_message: "FAI devnet",
    // The floor is the genesis difficulty (about 1.5 s of one core): a devnet restarted
    // after a pause catches up with its schedule at that pace, not in a burst.
    pow_limit_bits: 0x1e00_ffff,
    no_retarget: false,
    target_spacing: 5,
    half_life: 120,
    max_future_block_time: 60,
    halving_interval: 2_100_000,
    // A devnet is for trying things: its rewards are spendable within a minute.
    coinbase_maturity: 10,
    max_block_size: 1_000_000,
};

const REGTEST: ChainParams = ChainParams {
    network: Network::Regtest,
    magic: [0xfa, 0x1e, 0xd9, 0x04],
    genesis_time: 1_793_491_203,
    genesis_bits: 0x207f_ffff,
    genesis_message: "FAI regtest",
    pow_limit_bits: 0x207f_ffff,
    no_retarget: true,
    target_spacing: 1,
    half_life: 3_600,
    max_future_block_time: 7_200,
    halving_interval: 150,
    coinbase_maturity: 100,
    max_block_size: 1_000_000,
};

impl ChainParams {
    /// The parameters of `network`.
    pub fn for_network(network: Network) -> ChainParams {
        match network {
            Network::Mainnet => MAINNET,
            Network::Testnet => TESTNET,
            Network::Devnet => DEVNET,
            Network::Regtest => REGTEST,
        }
    }

    pub fn genesis_block(&self) -> Block {
        let mut data = 0u32.to_le_bytes().to_vec();
        data.extend(self.genesis_message.bytes().take(96));
        let coinbase = Transaction::coinbase(
            data,
            vec![TxOut::data(
                Amount::ZERO,
                self.network.name().as_bytes().to_vec(),
            )],
        );
        let merkle_root = coinbase.txid().0;
        Block {
            header: BlockHeader {
                version: 1,
                prev: Hash256::ZERO,
                merkle_root,
                time: self.genesis_time,
                bits: self.genesis_bits,
                nonce: 0,
            },
            transactions: vec![coinbase],
        }
    }

    pub fn genesis_hash(&self) -> Hash256 {
        self.genesis_block().hash()
    }

    pub fn pow_limit(&self) -> U256 {
        target_from_compact(self.pow_limit_bits).unwrap_or(U256::MAX)
    }

    /// The difficulty adjustment's parameters for a chain whose block 1 has `anchor_time`.
    pub fn asert(&self, anchor_time: u32) -> AsertParams {
        AsertParams {
            anchor_target: target_from_compact(self.genesis_bits).unwrap_or(U256::MAX),
            anchor_time,
            target_spacing: self.target_spacing,
            half_life: self.half_life,
            pow_limit: self.pow_limit(),
        }
    }

    /// The ledger subsidy of the block at `height` (genesis pays nothing).
    pub fn block_subsidy(&self, height: u32) -> Amount {
        if height == 0 {
            return Amount::ZERO;
        }
        halving_subsidy(
            LEDGER_INITIAL_SUBSIDY,
            u64::from(height),
            self.halving_interval,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::target_from_compact;

    #[test]
    fn each_network_has_its_own_genesis_and_magic() {
        let all: Vec<ChainParams> = Network::ALL
            .into_iter()
            .map(ChainParams::for_network)
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.genesis_hash(), b.genesis_hash());
                assert_ne!(a.magic, b.magic);
            }
            assert!(target_from_compact(a.genesis_bits).unwrap() <= a.pow_limit());
            let g = a.genesis_block();
            let (root, mutated) = g.compute_merkle_root();
            assert_eq!(root, g.header.merkle_root);
            assert!(!mutated);
            assert!(g.transactions[0]
                .outputs
                .iter()
                .all(|o| !o.is_spendable() && o.value == Amount::ZERO));
        }
    }

    #[test]
    fn genesis_hashes_are_pinned() {
        // A change here is a new chain: every stored database becomes foreign.
        let hashes: Vec<String> = Network::ALL
            .into_iter()
            .map(|n| ChainParams::for_network(n).genesis_hash().to_string())
            .collect();
        assert_eq!(
            hashes,
            [
                "3e4d6e1c84aefe5b42c3385291d68d88a4c9e84b56b8509324dac246dd2f90d1",
                "c376d2f7aa278506a9c1be7d37edc3a33cd1bd0b9feded8f80268d0d34b567d8",
                "09e1edc52372356c78482cd2bb8ec57130f396ec5aa22787a5a52fbb21507f50",
                "9870f721c475b09c19397deb4e588d1d61bd9d83eb9d59b5b0f0eeebafa5519a",
            ]
        );
    }

    #[test]
    fn mainnet_subsidy_is_one_and_a_half_fai_halving_at_2_1_million() {
        let p = ChainParams::for_network(Network::Mainnet);
        assert_eq!(p.block_subsidy(0), Amount::ZERO);
        assert_eq!(p.block_subsidy(1).to_string(), "1.5 FAI");
        assert_eq!(p.block_subsidy(2_099_999).to_string(), "1.5 FAI");
        assert_eq!(p.block_subsidy(2_100_000).to_string(), "0.75 FAI");
    }
}
