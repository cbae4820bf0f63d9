//! Tokenizers: text to token ids for the model, and token ids back to bytes for the
//! stream. One [`Tokenizer`] type serves every model:
//!
//! - `fai-tiny`'s byte tokenizer ([`ByteTokenizer`]): one token per byte, then BOS, EOS;
//! - a vocabulary in the GGUF metadata (`tokenizer.ggml.model` `llama` or `gpt2`,
//!   see [`gguf_vocab`]);
//! - a `tokenizer.json` given beside the model file (Hugging Face's format).
//!
//! The last two encode through the `tokenizers` crate. Decoding never goes through it:
//! each token's bytes are worked out once at load time ([`Tokenizer::token_bytes`]), so a
//! streamed answer is the concatenation of its tokens' bytes, cut only at whole UTF-8
//! characters ([`StreamDecoder`]).

mod byte_level;
mod bytes;
pub mod gguf_vocab;

use std::path::Path;

use candle_core::quantized::gguf_file::Content;

pub use bytes::{ByteTokenizer, StreamDecoder};

use crate::error::{EngineError, Result};
use gguf_vocab::{GgufVocab, TYPE_BYTE, TYPE_CONTROL, TYPE_UNKNOWN, TYPE_USER_DEFINED};

/// The largest `tokenizer.json` read (real ones are a few megabytes).
pub const MAX_TOKENIZER_JSON: u64 = 64 << 20;

/// Names of end-of-turn tokens that end generation besides the end-of-text token.
const END_OF_TURN: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

enum Encoder {
    Bytes,
    Hf(Box<tokenizers::Tokenizer>),
}

/// A model's tokenizer.
pub struct Tokenizer {
    encoder: Encoder,
    /// The bytes of each token id; empty for control tokens.
    pieces: Vec<Vec<u8>>,
    /// SentencePiece byte-fallback tokens (`<0xNN>`), which spell bytes that have no piece.
    fallback: std::collections::HashSet<u32>,
    bos: Option<u32>,
    ends: Vec<u32>,
    add_bos: bool,
    bos_text: String,
    eos_text: String,
    /// What the model id hashes for the tokenizer.
    identity: Vec<u8>,
    /// `fai-bytes`, `llama`, `gpt2` or `tokenizer.json`.
    kind: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab", &self.pieces.len())
            .field("bos", &self.bos)
            .field("ends", &self.ends)
            .finish()
    }
}

fn bad(path: &Path, detail: impl Into<String>) -> EngineError {
    EngineError::BadTokenizer {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn meta_id(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

/// `<0xAB>` → 0xAB.
fn byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The bytes of a SentencePiece-style token: `▁` is a space, `<0xNN>` a byte.
fn metaspace_bytes(token: &str) -> Vec<u8> {
    byte_token(token)
        .map(|b| vec![b])
        .unwrap_or_else(|| token.replace('\u{2581}', " ").into_bytes())
}

impl Tokenizer {
    /// `fai-tiny`'s byte tokenizer.
    pub fn bytes() -> Self {
        let mut pieces: Vec<Vec<u8>> = (0u8..=255).map(|b| vec![b]).collect();
        pieces.push(Vec::new());
        pieces.push(Vec::new());
        Tokenizer {
            encoder: Encoder::Bytes,
            pieces,
            fallback: Default::default(),
            bos: Some(ByteTokenizer::BOS),
            ends: vec![ByteTokenizer::EOS],
            add_bos: true,
            bos_text: String::new(),
            eos_text: String::new(),
            identity: ByteTokenizer::KIND.as_bytes().to_vec(),
            kind: ByteTokenizer::KIND.into(),
        }
    }

    /// The tokenizer carried in the GGUF metadata of the model at `path`.
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let kind = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| EngineError::MissingMetadata {
                path: path.to_path_buf(),
                key: "tokenizer.ggml.model".into(),
            })?;
        if kind == ByteTokenizer::KIND {
            return Ok(Self::bytes());
        }
        if kind != "llama" && kind != "gpt2" {
            return Err(EngineError::UnsupportedTokenizer {
                path: path.to_path_buf(),
                kind,
            });
        }
        let vocab = GgufVocab::read(content, path, &kind)?;
        let json = vocab.to_tokenizer_json(path)?;
        let bytes = serde_json::to_vec(&json).map_err(|e| bad(path, e.to_string()))?;
        let hf = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| bad(path, e.to_string()))?;
        let byte_map = byte_level::char_bytes();
        let pieces = vocab
            .tokens
            .iter()
            .zip(&vocab.types)
            .map(|(token, ty)| match *ty {
                TYPE_CONTROL | TYPE_UNKNOWN => Vec::new(),
                TYPE_USER_DEFINED => token.as_bytes().to_vec(),
                TYPE_BYTE => metaspace_bytes(token),
                _ if kind == "gpt2" => byte_level::token_to_bytes(token, &byte_map)
                    .unwrap_or_else(|| token.as_bytes().to_vec()),
                _ => metaspace_bytes(token),
            })
            .collect();
        let specials: Vec<bool> = vocab.types.iter().map(|t| *t == TYPE_CONTROL).collect();
        let fallback = (0u32..)
            .zip(&vocab.types)
            .filter(|(_, t)| **t == TYPE_BYTE)
            .map(|(id, _)| id)
            .collect();
        Self::assemble(
            Encoder::Hf(Box::new(hf)),
            pieces,
            fallback,
            &vocab.tokens,
            &specials,
            content,
            kind == "llama",
            kind.as_bytes().to_vec(),
            kind,
        )
    }

    /// The tokenizer of a `tokenizer.json` file, for the model whose metadata is
    /// `content` (its BOS and EOS ids are used where it names them).
    pub fn from_json_file(path: &Path, content: &Content) -> Result<Self> {
        let io = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_TOKENIZER_JSON {
            return Err(bad(
                path,
                format!("{len} bytes, more than {MAX_TOKENIZER_JSON}"),
            ));
        }
        let raw = std::fs::read(path).map_err(io)?;
        let json: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| bad(path, format!("not JSON: {e}")))?;
        let hf = tokenizers::Tokenizer::from_bytes(&raw).map_err(|e| bad(path, e.to_string()))?;
        let byte_level = json
            .get("decoder")
            .is_some_and(|d| d.to_string().contains("ByteLevel"))
            || json
                .get("pre_tokenizer")
                .is_some_and(|d| d.to_string().contains("ByteLevel"));
        let size = hf.get_vocab_size(true);
        if size == 0 || size > gguf_vocab::MAX_VOCAB {
            return Err(bad(path, format!("{size} tokens")));
        }
        let specials_set: std::collections::HashSet<u32> = hf
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        let byte_map = byte_level::char_bytes();
        let mut tokens = Vec::with_capacity(size);
        let mut specials = Vec::with_capacity(size);
        let mut pieces = Vec::with_capacity(size);
        let mut fallback = std::collections::HashSet::new();
        for id in 0..size as u32 {
            let token = hf.id_to_token(id).unwrap_or_default();
            if !byte_level && byte_token(&token).is_some() {
                fallback.insert(id);
            }
            let special = specials_set.contains(&id);
            pieces.push(if special {
                Vec::new()
            } else if byte_level {
                byte_level::token_to_bytes(&token, &byte_map)
                    .unwrap_or_else(|| token.as_bytes().to_vec())
            } else {
                metaspace_bytes(&token)
            });
            specials.push(special);
            tokens.push(token);
        }
        let llama_like = !byte_level;
        Self::assemble(
            Encoder::Hf(Box::new(hf)),
            pieces,
            fallback,
            &tokens,
            &specials,
            content,
            llama_like,
            raw,
            "tokenizer.json".into(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        encoder: Encoder,
        pieces: Vec<Vec<u8>>,
        fallback: std::collections::HashSet<u32>,
        tokens: &[String],
        specials: &[bool],
        content: &Content,
        add_bos_default: bool,
        identity: Vec<u8>,
        kind: String,
    ) -> Result<Self> {
        let find = |names: &[&str]| {
            tokens
                .iter()
                .position(|t| names.contains(&t.as_str()))
                .and_then(|i| u32::try_from(i).ok())
        };
        let bos = meta_id(content, "tokenizer.ggml.bos_token_id")
            .or_else(|| find(&["<s>", "<|begin_of_text|>", "<bos>"]));
        let eos = meta_id(content, "tokenizer.ggml.eos_token_id")
            .or_else(|| find(&["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"]));
        let mut ends: Vec<u32> = eos.into_iter().collect();
        ends.extend(meta_id(content, "tokenizer.ggml.eot_token_id"));
        for (i, token) in tokens.iter().enumerate() {
            if specials.get(i).copied().unwrap_or(false) && END_OF_TURN.contains(&token.as_str()) {
                ends.extend(u32::try_from(i).ok());
            }
        }
        ends.sort_unstable();
        ends.dedup();
        let text = |id: Option<u32>| {
            id.and_then(|i| tokens.get(i as usize))
                .cloned()
                .unwrap_or_default()
        };
        let add_bos = content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(add_bos_default)
            && bos.is_some();
        Ok(Tokenizer {
            encoder,
            pieces,
            fallback,
            bos_text: text(bos),
            eos_text: text(eos),
            bos,
            ends,
            add_bos,
            identity,
            kind,
        })
    }

    /// The tokens of `text` (a rendered chat prompt: special-token text such as
    /// `<|im_start|>` becomes its token), after BOS where the model wants one.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = match &self.encoder {
            Encoder::Bytes => text.bytes().map(u32::from).collect(),
            Encoder::Hf(hf) => hf
                .encode(text, false)
                .map_err(|e| EngineError::Tokenize(e.to_string()))?
                .get_ids()
                .to_vec(),
        };
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// The bytes of a token; control tokens and unknown ids have none.
    pub fn token_bytes(&self, token: u32) -> &[u8] {
        self.pieces
            .get(token as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
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

    /// The first of `words` that is a single token (not a byte fallback), as that token:
    /// the judge reads the logits of its answer words this way.
    pub fn token_of(&self, words: &[&str]) -> Option<u32> {
        words.iter().find_map(|w| {
            (0u32..)
                .zip(&self.pieces)
                .find(|(id, p)| p.as_slice() == w.as_bytes() && !self.fallback.contains(id))
                .map(|(id, _)| id)
        })
    }

    /// Whether `token` ends generation (end of text or end of turn).
    pub fn is_end(&self, token: u32) -> bool {
        self.ends.contains(&token)
    }

    /// The tokens that end generation.
    pub fn end_tokens(&self) -> &[u32] {
        &self.ends
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The text of BOS and EOS, for chat templates (`bos_token`, `eos_token`).
    pub fn bos_text(&self) -> &str {
        &self.bos_text
    }

    pub fn eos_text(&self) -> &str {
        &self.eos_text
    }

    /// The number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// What the model id hashes for this tokenizer: the `tokenizer.json` bytes, or the
    /// kind name where the vocabulary sits in the weights file (hashed with it).
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_tokenizer_round_trips_and_ends_at_eos() {
        let t = Tokenizer::bytes();
        let toks = t.encode("héllo").unwrap();
        assert_eq!(toks[0], ByteTokenizer::BOS);
        assert_eq!(toks.len(), 1 + "héllo".len());
        assert_eq!(t.decode(&toks), "héllo");
        assert_eq!(t.token_bytes(ByteTokenizer::EOS), b"");
        assert_eq!(t.token_bytes(u32::MAX), b"");
        assert!(t.is_end(ByteTokenizer::EOS) && !t.is_end(ByteTokenizer::BOS));
        assert_eq!(t.token_of(&["YES", "Y"]), Some(u32::from(b'Y')));
    }

    #[test]
    fn byte_tokens_and_metaspace_pieces_spell_their_bytes() {
        assert_eq!(byte_token("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_token("<0x0A"), None);
        assert_eq!(byte_token("<0xZZ>"), None);
        assert_eq!(metaspace_bytes("\u{2581}the"), b" the");
        assert_eq!(metaspace_bytes("<0xE2>"), vec![0xE2]);
    }
}
