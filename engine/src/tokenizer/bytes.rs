//! The byte tokenizer of `fai-tiny` (one token per byte, then the special tokens), and the
//! stream decoder that turns token bytes into whole characters.

/// The byte tokenizer's constants: tokens 0..=255 are bytes, then BOS and EOS
/// ([`super::Tokenizer::bytes`] is the tokenizer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    pub const BOS: u32 = 256;
    pub const EOS: u32 = 257;
    pub const VOCAB_SIZE: usize = 258;
    /// The name recorded in GGUF metadata (`tokenizer.ggml.model`).
    pub const KIND: &'static str = "fai-bytes";
}

/// Turns a stream of token bytes into text pieces, holding back an incomplete UTF-8
/// sequence until the rest arrives, so a streamed answer never shows half a character.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Adds bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // An invalid sequence (not just an incomplete one) is replaced now.
                if e.error_len().is_some() {
                    let out = String::from_utf8_lossy(&self.pending).into_owned();
                    self.pending.clear();
                    return out;
                }
                let out =
                    String::from_utf8_lossy(self.pending.get(..valid).unwrap_or(&[])).into_owned();
                self.pending.drain(..valid);
                out
            }
        }
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_decoder_never_splits_a_character() {
        let mut d = StreamDecoder::default();
        let e = "é".as_bytes();
        assert_eq!(d.push(&e[..1]), "");
        assert_eq!(d.push(&e[1..]), "é");
        assert_eq!(d.push(b"ab"), "ab");
        assert_eq!(d.push(&[0xff]), "\u{fffd}");
        assert_eq!(d.push(&e[..1]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }
}
