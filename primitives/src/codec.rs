//! The canonical binary codec of infer-node: little-endian integers, Bitcoin's
//! CompactSize for lengths (minimal encodings only), fixed arrays as raw bytes.
//!
//! Decoding is bounded twice over: every length is checked against a caller-given maximum,
//! and no decoder preallocates more than the input could possibly hold, so a hostile length
//! prefix cannot make the node allocate. Every failure is a [`CodecError`]; nothing here
//! panics on any input.

use thiserror::Error;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("unexpected end of data: needed {needed} more bytes, {remaining} left")]
    UnexpectedEnd { needed: usize, remaining: usize },
    #[error("{0} trailing bytes after the end of the value")]
    TrailingBytes(usize),
    #[error("non-canonical length encoding")]
    NonCanonicalLength,
    #[error("{what} too large: {len} exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("invalid {what}: {reason}")]
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
}

/// A value with one canonical byte encoding.
pub trait Encode {
    /// Appends the encoding of `self` to `out`.
    fn encode_to(&self, out: &mut Vec<u8>);

    /// The encoding of `self` as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A value that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Reads one value from the reader, leaving it positioned after the value.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError>;

    /// Decodes a value that must use all of `bytes`: trailing bytes are an error.
    fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A cursor over a byte slice that never reads past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes(self.rest.len()))
        }
    }

    /// The next `n` bytes.
    pub fn read_slice(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.rest.len() {
            return Err(CodecError::UnexpectedEnd {
                needed: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let s = self.read_slice(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn read_u8(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_le_bytes(self.read_array()?))
    }

    pub fn read_u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.read_array()?))
    }

    pub fn read_u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.read_array()?))
    }

    pub fn read_u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }

    /// A CompactSize length, minimally encoded, at most `max`.
    pub fn read_len(&mut self, what: &'static str, max: u64) -> Result<usize, CodecError> {
        let first = self.read_u8()?;
        let (value, min) = match first {
            0xfd => (u64::from(self.read_u16()?), 0xfd),
            0xfe => (u64::from(self.read_u32()?), 0x1_0000),
            0xff => (self.read_u64()?, 0x1_0000_0000),
            b => (u64::from(b), 0),
        };
        if value < min {
            return Err(CodecError::NonCanonicalLength);
        }
        if value > max {
            return Err(CodecError::TooLarge {
                what,
                len: value,
                max,
            });
        }
        usize::try_from(value).map_err(|_| CodecError::TooLarge {
            what,
            len: value,
            max,
        })
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn read_var_bytes(&mut self, what: &'static str, max: u64) -> Result<Vec<u8>, CodecError> {
        let n = self.read_len(what, max)?;
        Ok(self.read_slice(n)?.to_vec())
    }

    /// A length-prefixed list of at most `max` items, each at least `min_item_size` bytes
    /// long. Preallocation is capped by what the remaining input could hold.
    pub fn read_vec<T: Decode>(
        &mut self,
        what: &'static str,
        max: u64,
        min_item_size: usize,
    ) -> Result<Vec<T>, CodecError> {
        let n = self.read_len(what, max)?;
        let fits = self.rest.len().checked_div(min_item_size).unwrap_or(0);
        let mut items = Vec::with_capacity(n.min(fits));
        for _ in 0..n {
            items.push(T::decode_from(self)?);
        }
        Ok(items)
    }
}

/// Appends a CompactSize length.
pub fn write_len(out: &mut Vec<u8>, len: usize) {
    let n = len as u64;
    if n < 0xfd {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xfd);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n <= 0xffff_ffff {
        out.push(0xfe);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        out.push(0xff);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Appends a length-prefixed byte string.
pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a length-prefixed list.
pub fn write_vec<T: Encode>(out: &mut Vec<u8>, items: &[T]) {
    write_len(out, items.len());
    for item in items {
        item.encode_to(out);
    }
}

macro_rules! int_codec {
    ($($t:ty => $read:ident),*) => {$(
        impl Encode for $t {
            fn encode_to(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl Decode for $t {
            fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
                r.$read()
            }
        }
    )*};
}
int_codec!(u8 => read_u8, u16 => read_u16, u32 => read_u32, u64 => read_u64);

impl<const N: usize> Encode for [u8; N] {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<const N: usize> Decode for [u8; N] {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.read_array()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compact_size_boundaries_round_trip() {
        for n in [
            0usize,
            1,
            0xfc,
            0xfd,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
        ] {
            let mut out = Vec::new();
            write_len(&mut out, n);
            let mut r = Reader::new(&out);
            assert_eq!(r.read_len("n", u64::MAX).unwrap(), n);
            r.finish().unwrap();
        }
    }

    #[test]
    fn non_canonical_lengths_are_rejected() {
        let mut r = Reader::new(&[0xfd, 0x10, 0x00]);
        assert_eq!(r.read_len("n", 1000), Err(CodecError::NonCanonicalLength));
        let mut r = Reader::new(&[0xfe, 0xff, 0xff, 0x00, 0x00]);
        assert_eq!(
            r.read_len("n", u64::MAX),
            Err(CodecError::NonCanonicalLength)
        );
    }

    #[test]
    fn a_huge_length_prefix_is_refused_before_any_allocation() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.read_vec::<u64>("items", 1000, 8),
            Err(CodecError::TooLarge { .. })
        ));
        // Within the limit but longer than the input: an error, not an allocation.
        let mut r = Reader::new(&[0xe8]);
        assert!(matches!(
            r.read_vec::<u64>("items", 1000, 8),
            Err(CodecError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        assert_eq!(
            u32::from_bytes(&[1, 0, 0, 0, 9]),
            Err(CodecError::TrailingBytes(1))
        );
        assert_eq!(u32::from_bytes(&[1, 0, 0, 0]), Ok(1));
    }

    proptest! {
        #[test]
        fn var_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut out = Vec::new();
            write_var_bytes(&mut out, &bytes);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.read_var_bytes("b", 600).unwrap(), bytes);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.read_vec::<u32>("items", 10_000, 4);
            let mut r = Reader::new(&bytes);
            let _ = r.read_var_bytes("b", 10_000);
        }
    }
}
