//! Inference transactions (stub and prompt), as `POST /v2/inference` and relay request
//! frames carry them.
#![no_main]
use fai_inference_chain::types::InferenceTx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(tx) = infer_node_fuzz::decode_canonical::<InferenceTx>(data) {
        let _ = tx.is_consistent();
        let _ = tx.stub.signature_valid();
    }
});
