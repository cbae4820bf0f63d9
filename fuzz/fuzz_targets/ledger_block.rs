//! Ledger blocks, as gossip and the sync carry them: decoded, then the context-free
//! consensus checks (regtest proof of work, so that more of them get past it).
#![no_main]
use fai_ledger::validation::stateless::check_block;
use fai_ledger::{Block, ChainParams};
use fai_primitives::Network;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(block) = infer_node_fuzz::decode_canonical::<Block>(data) {
        let _ = check_block(&block, &ChainParams::for_network(Network::Regtest));
    }
});
