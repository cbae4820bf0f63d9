//! Ledger transactions, as gossip, the RPC and blocks carry them: decoded, then the
//! context-free consensus checks.
#![no_main]
use fai_ledger::validation::stateless::check_transaction;
use fai_ledger::Transaction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(tx) = infer_node_fuzz::decode_canonical::<Transaction>(data) {
        let _ = check_transaction(&tx, 100_000);
        let _ = tx.txid();
    }
});
