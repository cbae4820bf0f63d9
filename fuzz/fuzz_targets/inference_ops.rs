//! The inference layer's ops in ledger data outputs (register, commit, peg-in): parsed,
//! and what parses encodes back to the same bytes.
#![no_main]
use fai_inference_chain::ops::Op;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(op) = Op::parse(data) {
        assert!(
            op.encode() == data,
            "an op parsed from bytes that are not its encoding"
        );
    }
});
