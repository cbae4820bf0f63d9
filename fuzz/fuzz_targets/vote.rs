//! Verifiers' votes, as the vote topic and blocks carry them, then tallied.
#![no_main]
use fai_inference_chain::quorum::{tally, Vote};
use fai_primitives::{Hash160, Hash256};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(vote) = infer_node_fuzz::decode_canonical::<Vote>(data) {
        let set = [Hash160([1; 20]), vote.verifier.hash160()];
        let _ = tally(&set, &Hash256([0; 32]), 3, std::slice::from_ref(&vote));
    }
});
