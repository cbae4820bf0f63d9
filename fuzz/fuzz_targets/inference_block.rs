//! Inference blocks, as gossip and the sync carry them: decoded, then what is checked
//! before any state is read (roots, signatures).
#![no_main]
use fai_inference_chain::block::InferenceBlock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(block) = infer_node_fuzz::decode_canonical::<InferenceBlock>(data) {
        let _ = block.roots_match();
        let _ = block.header.signature_valid();
        let _ = block.header.id();
    }
});
