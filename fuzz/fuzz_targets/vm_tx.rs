//! Signed VM transactions, as the vm-tx topic, the RPC and blocks carry them: decoded,
//! then turned into the VM's form (which decodes each Clarity argument).
#![no_main]
use fai_inference_chain::vmtx::SignedVmTx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(tx) = infer_node_fuzz::decode_canonical::<SignedVmTx>(data) {
        let _ = tx.signature_valid();
        let _ = tx.to_vm();
    }
});
