//! What the node shows of its chains and pools without a lock: a [`ChainSnapshot`] in a
//! `tokio::sync::watch` channel, replaced by whoever changes what it holds (a new ledger
//! tip, an accepted inference block, a transaction or inference entering a pool) and read
//! by `/v2/info` and `/metrics`, so that a long validation holding the ledger's lock
//! never stalls them.

use fai_ledger::Chainstate;
use fai_primitives::Hash256;

use fai_inference_chain::chain::InferenceChain;

/// The chains' tips and the pools' sizes, as of the last change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainSnapshot {
    pub ledger_height: u32,
    pub ledger_tip: Hash256,
    /// Base units the ledger has issued.
    pub supply_units: u64,
    /// The inference tip's height as of the ledger tip.
    pub inference_height: u32,
    pub mempool_txs: usize,
    pub vm_pool_txs: usize,
    /// Served inferences waiting for a block.
    pub results_waiting: usize,
}

impl ChainSnapshot {
    /// Takes the tips of `ledger` and `inference` (when it runs), keeping the pools'.
    pub fn with_tips(&self, ledger: &Chainstate, inference: Option<&InferenceChain>) -> Self {
        ChainSnapshot {
            ledger_height: ledger.height(),
            ledger_tip: ledger.tip_hash(),
            supply_units: ledger.supply().units(),
            inference_height: inference.map_or(0, |c| c.tip(ledger).height),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fai_ledger::mempool::MempoolConfig;
    use fai_ledger::ChainParams;
    use fai_primitives::{Hash160, Network};
    use fai_storage::MemoryStore;

    use crate::clock::ManualClock;
    use crate::node::Node;

    /// The snapshot follows the tip, and reading it takes no lock: it is read here while
    /// this thread holds the ledger's (a lock would never be granted).
    #[test]
    fn the_snapshot_follows_the_tip_and_is_read_while_the_ledger_is_locked() {
        let store = Arc::new(MemoryStore::open(fai_ledger::chainstate::SCHEMA).unwrap());
        let chain = fai_ledger::Chainstate::open(store, ChainParams::for_network(Network::Regtest))
            .unwrap();
        let mut node = Node::new(
            chain,
            MempoolConfig {
                max_bytes: 1 << 20,
                min_fee_rate: 1_000,
            },
        );
        let clock = Arc::new(ManualClock::new(1_900_000_000));
        node.clock = clock.clone();
        let genesis = node.chain().tip_hash();
        assert_eq!(
            (node.snapshot().ledger_height, node.snapshot().ledger_tip),
            (0, genesis)
        );
        let mut mined = Vec::new();
        for _ in 0..3 {
            clock.advance(std::time::Duration::from_secs(1));
            mined.push(crate::mining::mine_one(&node, Hash160([1; 20])).unwrap());
        }
        let ledger = node.chain();
        let seen = node.snapshot();
        assert_eq!((seen.ledger_height, seen.ledger_tip), (3, mined[2]));
        assert_eq!(seen.supply_units, ledger.supply().units());
        assert!(seen.supply_units > 0);
        drop(ledger);
    }
}
