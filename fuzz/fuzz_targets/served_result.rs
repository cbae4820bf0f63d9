//! Served inferences (stub, receipt and text), as the result topic carries them.
#![no_main]
use fai_inference_chain::served::ServedInference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(served) = infer_node_fuzz::decode_canonical::<ServedInference>(data) {
        let _ = served.check();
    }
});
