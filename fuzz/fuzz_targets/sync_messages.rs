//! The sync protocol's requests and responses; the first byte says which.
#![no_main]
use fai_network::protocol::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let _ = infer_node_fuzz::decode_canonical::<Request>(rest);
    } else {
        let _ = infer_node_fuzz::decode_canonical::<Response>(rest);
    }
});
