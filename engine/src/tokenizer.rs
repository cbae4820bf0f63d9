//! Tokenizers. Today: the byte-level tokenizer of `fai-tiny` (one token per byte, then
//! the special tokens). Real models' tokenizers (tokenizer.json, GGUF vocabularies) plug in
//! behind the same type.

/// The byte-level tokenizer: tokens 0..=255 are bytes, then BOS and EOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    pub const BOS: u32 = 256;
    pub const EOS: u32 = 257;
    pub const VOCAB_SIZE: usize = 258;
    /// The name recorded in GGUF metadata (`tokenizer.ggml.model`).
    pub const KIND: &'static str = "fai-bytes";

    /// The tokens of `text`, after BOS.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        std::iter::once(Self::BOS)
            .chain(text.bytes().map(u32::from))
            .collect()
    }

    /// The bytes of a token; special tokens have none.
    pub fn token_bytes(&self, token: u32) -> &'static [u8] {
        const BYTES: [u8; 256] = {
            let mut b = [0u8; 256];
            let mut i = 0;
            while i < 256 {
                b[i] = i as u8;
                i += 1;
            }
            b
        };
        match usize::try_from(token) {
            Ok(t) if t < 256 => BYTES.get(t..t + 1).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The text of `tokens` (invalid UTF-8 replaced).
    pub fn decode(&self, tokens: &[u32]) -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .flat_map(|t| self.token_bytes(*t))
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
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
    fn bytes_round_trip() {
        let t = ByteTokenizer;
        let toks = t.encode("héllo");
        assert_eq!(toks[0], ByteTokenizer::BOS);
        assert_eq!(toks.len(), 1 + "héllo".len());
        assert_eq!(t.decode(&toks), "héllo");
        assert_eq!(t.token_bytes(ByteTokenizer::EOS), b"");
        assert_eq!(t.token_bytes(u32::MAX), b"");
    }

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
