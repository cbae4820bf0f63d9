//! Served inferences (stub, receipt and the text sealed to the verifiers), as the result
//! topic and the payload fetch carry them.
#![no_main]
use fai_inference_chain::served::SealedServed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(served) = infer_node_fuzz::decode_canonical::<SealedServed>(data) {
        let _ = served.check();
    }
});
