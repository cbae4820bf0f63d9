//! A relay stream as a peer writes it: frames read until the end or an error, each
//! decoded as a request (an inference transaction) or an event.
#![no_main]
use fai_inference_chain::types::InferenceTx;
use fai_network::relay_frames::{decode_event, read_frame, FRAME_REQUEST};
use fai_primitives::codec::Decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stream = futures::io::Cursor::new(data);
    // A small limit, so that the fuzzer reaches the limit check as well as the bodies.
    while let Ok(Some((kind, bytes))) = futures::executor::block_on(read_frame(&mut stream, 4096)) {
        if kind == FRAME_REQUEST {
            let _ = InferenceTx::from_bytes(&bytes);
        } else {
            let _ = decode_event(kind, bytes);
        }
    }
});
