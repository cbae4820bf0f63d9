//! Vocabularies carried in GGUF metadata (`tokenizer.ggml.*`), turned into the
//! `tokenizer.json` form that the `tokenizers` crate reads, so a GGUF file with its own
//! vocabulary and a GGUF file with a separate `tokenizer.json` go through one encoder.
//!
//! - `llama` (SentencePiece BPE: Llama 2, Mistral, TinyLlama): the vocabulary has a score
//!   per token and no merge list. Merges are derived the way SentencePiece applies them:
//!   a pair of pieces may merge when their concatenation is a token, and pairs whose
//!   result scores higher merge first. Spaces become `▁`, one is put before the text, and
//!   bytes missing from the vocabulary fall back to `<0xNN>` tokens.
//! - `gpt2` (byte-level BPE: Llama 3, Qwen2): the vocabulary and an ordered merge list;
//!   text is split by the pre-tokenizer regex the model was trained with
//!   (`tokenizer.ggml.pre`), then mapped to byte characters.
//!
//! Control and user-defined tokens become added tokens: text such as `<|im_start|>` in a
//! rendered chat template encodes to its single token.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Value as Json};

use crate::error::{EngineError, Result};

/// GGUF token types.
pub(crate) const TYPE_NORMAL: i32 = 1;
pub(crate) const TYPE_UNKNOWN: i32 = 2;
pub(crate) const TYPE_CONTROL: i32 = 3;
pub(crate) const TYPE_USER_DEFINED: i32 = 4;
pub(crate) const TYPE_BYTE: i32 = 6;

/// The most tokens a vocabulary may have (the largest real ones hold about 260,000).
pub const MAX_VOCAB: usize = 1 << 20;

/// Llama 3's split: contractions, words with one leading non-letter, numbers of up to
/// three digits, punctuation runs, newlines, spaces.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: as Llama 3's, but one digit at a time.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The vocabulary of a GGUF file.
#[derive(Debug, Clone)]
pub(crate) struct GgufVocab {
    pub kind: String,
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub scores: Vec<f32>,
    pub merges: Vec<String>,
    pub pre: Option<String>,
    pub add_space_prefix: bool,
}

fn bad(path: &Path, detail: impl Into<String>) -> EngineError {
    EngineError::BadTokenizer {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn array<'a>(content: &'a Content, key: &str) -> Option<&'a Vec<Value>> {
    content.metadata.get(key).and_then(|v| v.to_vec().ok())
}

impl GgufVocab {
    /// Reads the `tokenizer.ggml.*` vocabulary of `content`.
    pub fn read(content: &Content, path: &Path, kind: &str) -> Result<Self> {
        let tokens: Vec<String> = array(content, "tokenizer.ggml.tokens")
            .ok_or_else(|| bad(path, "no tokenizer.ggml.tokens"))?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                bad(
                    path,
                    "tokenizer.ggml.tokens holds a value that is not a string",
                )
            })?;
        if tokens.is_empty() || tokens.len() > MAX_VOCAB {
            return Err(bad(path, format!("{} tokens", tokens.len())));
        }
        let types: Vec<i32> = match array(content, "tokenizer.ggml.token_type") {
            Some(a) => a
                .iter()
                .map(|v| v.to_i32())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad(path, "tokenizer.ggml.token_type is not a list of i32"))?,
            None => vec![TYPE_NORMAL; tokens.len()],
        };
        let scores: Vec<f32> = match array(content, "tokenizer.ggml.scores") {
            Some(a) => a
                .iter()
                .map(|v| v.to_f32())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad(path, "tokenizer.ggml.scores is not a list of f32"))?,
            None => Vec::new(),
        };
        let merges: Vec<String> = match array(content, "tokenizer.ggml.merges") {
            Some(a) => a
                .iter()
                .map(|v| v.to_string().cloned())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad(path, "tokenizer.ggml.merges is not a list of strings"))?,
            None => Vec::new(),
        };
        if types.len() != tokens.len() {
            return Err(bad(path, "token types and tokens differ in number"));
        }
        if kind == "llama" && scores.len() != tokens.len() {
            return Err(bad(
                path,
                "a SentencePiece vocabulary needs one score per token",
            ));
        }
        if kind == "gpt2" && merges.is_empty() {
            return Err(bad(
                path,
                "a byte-level BPE vocabulary needs tokenizer.ggml.merges",
            ));
        }
        let pre = content
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let add_space_prefix = content
            .metadata
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(true);
        Ok(GgufVocab {
            kind: kind.to_string(),
            tokens,
            types,
            scores,
            merges,
            pre,
            add_space_prefix,
        })
    }

    fn token_type(&self, id: usize) -> i32 {
        self.types.get(id).copied().unwrap_or(TYPE_NORMAL)
    }

    /// The vocabulary as `tokenizer.json`.
    pub fn to_tokenizer_json(&self, path: &Path) -> Result<Json> {
        let mut vocab = serde_json::Map::new();
        for (id, token) in self.tokens.iter().enumerate() {
            // Some vocabularies repeat a string (unused slots): the first id keeps it.
            if !vocab.contains_key(token) {
                vocab.insert(token.clone(), json!(id));
            }
        }
        let added: Vec<Json> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(id, _)| matches!(self.token_type(*id), TYPE_CONTROL | TYPE_USER_DEFINED))
            .map(|(id, token)| {
                json!({
                    "id": id, "content": token, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false,
                    "special": self.token_type(id) == TYPE_CONTROL,
                })
            })
            .collect();
        let (normalizer, pre_tokenizer, model) = match self.kind.as_str() {
            "llama" => {
                let unk = self
                    .tokens
                    .iter()
                    .enumerate()
                    .find(|(id, _)| self.token_type(*id) == TYPE_UNKNOWN)
                    .map(|(_, t)| t.clone());
                let mut steps = Vec::new();
                if self.add_space_prefix {
                    steps.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
                }
                steps.push(
                    json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}),
                );
                let model = json!({
                    "type": "BPE", "dropout": null, "unk_token": unk,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null,
                    "fuse_unk": true,
                    "byte_fallback": self.types.contains(&TYPE_BYTE),
                    "ignore_merges": false,
                    "vocab": vocab, "merges": self.score_merges(),
                });
                (
                    json!({"type": "Sequence", "normalizers": steps}),
                    Json::Null,
                    model,
                )
            }
            "gpt2" => {
                let merges: Vec<Json> = self
                    .merges
                    .iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| json!([a, b]))
                            .ok_or_else(|| bad(path, format!("merge {m:?} is not two pieces")))
                    })
                    .collect::<Result<_>>()?;
                let split = match self.pre.as_deref() {
                    Some("llama-bpe" | "llama3" | "smaug-bpe" | "dbrx") => Some(LLAMA3_SPLIT),
                    Some("qwen2") => Some(QWEN2_SPLIT),
                    _ => None,
                };
                let pre = match split {
                    Some(regex) => json!({"type": "Sequence", "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
                    ]}),
                    None => {
                        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})
                    }
                };
                let model = json!({
                    "type": "BPE", "dropout": null, "unk_token": null,
                    "continuing_subword_prefix": null, "end_of_word_suffix": null,
                    "fuse_unk": false, "byte_fallback": false,
                    "ignore_merges": split == Some(LLAMA3_SPLIT),
                    "vocab": vocab, "merges": merges,
                });
                (Json::Null, pre, model)
            }
            other => {
                return Err(EngineError::UnsupportedTokenizer {
                    path: path.to_path_buf(),
                    kind: other.to_string(),
                })
            }
        };
        Ok(json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added, "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
            "post_processor": null, "decoder": null, "model": model,
        }))
    }

    /// SentencePiece merges: every split of a normal token into two tokens, the pairs whose
    /// result scores higher first (ties: the lower result id).
    fn score_merges(&self) -> Vec<Json> {
        let ids: HashMap<&str, usize> = self
            .tokens
            .iter()
            .enumerate()
            .rev()
            .map(|(id, t)| (t.as_str(), id))
            .collect();
        let mut merges: Vec<(f32, usize, &str, &str)> = Vec::new();
        for (id, token) in self.tokens.iter().enumerate() {
            if self.token_type(id) != TYPE_NORMAL {
                continue;
            }
            let score = self.scores.get(id).copied().unwrap_or(0.0);
            for (at, _) in token.char_indices().skip(1) {
                let (left, right) = token.split_at(at);
                let known = |p: &str| {
                    ids.get(p)
                        .is_some_and(|i| self.token_type(*i) == TYPE_NORMAL)
                };
                if known(left) && known(right) {
                    merges.push((score, id, left, right));
                }
            }
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        merges
            .into_iter()
            .map(|(_, _, l, r)| json!([l, r]))
            .collect()
    }
}
