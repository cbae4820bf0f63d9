//! What the fuzz targets share: decoding under the rules every decoder must keep.

use fai_primitives::codec::{Decode, Encode};

/// Decodes `data` as a `T`. A decoder may refuse any input, but never panic, and what it
/// accepts must be the value's one encoding: a value decoded is encoded back to exactly
/// the bytes it came from (else two byte strings would be one transaction or block, and
/// peers would relay both).
pub fn decode_canonical<T: Encode + Decode>(data: &[u8]) -> Option<T> {
    let value = T::from_bytes(data).ok()?;
    assert!(
        value.to_bytes() == data,
        "{} decoded from bytes that are not its encoding",
        std::any::type_name::<T>()
    );
    Some(value)
}

/// Decodes `data` as a `T` where several encodings may mean one value (records on disk):
/// what it accepts must encode to bytes that decode to the same encoding again.
pub fn decode_stable<T: Encode + Decode>(data: &[u8]) -> Option<T> {
    let value = T::from_bytes(data).ok()?;
    let bytes = value.to_bytes();
    let again = T::from_bytes(&bytes).expect("a value's encoding decodes");
    assert!(again.to_bytes() == bytes, "encoding is not stable");
    Some(value)
}
