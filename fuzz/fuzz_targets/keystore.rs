//! Keystore files, as `wallet` commands read them from disk.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fai_wallet::keystore::parse(data);
});
