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
    /// Adds bytes; returns the text that is now complete. The pieces of a stream, put
    /// together with [`StreamDecoder::finish`], are exactly the lossy decoding of all its
    /// bytes at once (what a verifier computes from the tokens): each invalid sequence
    /// becomes one U+FFFD as soon as it is known to be invalid, and an incomplete one
    /// waits for the next bytes.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(
                        self.pending.get(..valid).unwrap_or(&[]),
                    ));
                    match e.error_len() {
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            let end = valid.saturating_add(len).min(self.pending.len());
                            self.pending.drain(..end);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
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

    /// An invalid byte followed by the start of a valid character: the character is
    /// kept whole once its other bytes come, as decoding all bytes at once does.
    #[test]
    fn an_invalid_byte_does_not_spoil_the_character_after_it() {
        let mut d = StreamDecoder::default();
        let euro = "€".as_bytes();
        let mut text = d.push(&[0xff, euro[0]]);
        text.push_str(&d.push(&euro[1..]));
        text.push_str(&d.finish());
        assert_eq!(text, "\u{fffd}€");
    }

    /// Streamed in any pieces, random bytes give exactly their lossy decoding at once.
    #[test]
    fn streamed_text_equals_the_decoding_of_all_bytes() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let len = (next() % 40) as usize;
            // Bytes biased to UTF-8 lead and continuation bytes.
            let bytes: Vec<u8> = (0..len)
                .map(|_| match next() % 4 {
                    0 => (next() % 128) as u8,
                    1 => 0x80 | (next() % 64) as u8,
                    2 => 0xc0 | (next() % 64) as u8,
                    _ => (next() % 256) as u8,
                })
                .collect();
            let mut d = StreamDecoder::default();
            let mut text = String::new();
            let mut at = 0;
            while at < bytes.len() {
                let take = 1 + (next() % 4) as usize;
                let end = (at + take).min(bytes.len());
                text.push_str(&d.push(&bytes[at..end]));
                at = end;
            }
            text.push_str(&d.finish());
            assert_eq!(text, String::from_utf8_lossy(&bytes), "{bytes:?}");
        }
    }
}
