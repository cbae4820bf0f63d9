//! Records the node reads back from its database: the ledger's block index and coins,
//! the VM's block records and the inference chain's blocks; the first byte says which.
#![no_main]
use fai_clarity::store::BlockInfo;
use fai_inference_chain::chain::BlockRecord;
use fai_ledger::chainstate::IndexEntry;
use fai_ledger::coins::{BlockUndo, Coin};
use infer_node_fuzz::decode_stable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => drop(decode_stable::<IndexEntry>(rest)),
        1 => drop(decode_stable::<Coin>(rest)),
        2 => drop(decode_stable::<BlockUndo>(rest)),
        3 => drop(decode_stable::<BlockInfo>(rest)),
        _ => drop(BlockRecord::decode_with_id([0; 32], rest)),
    }
});
