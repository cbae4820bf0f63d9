//! Opening a GGUF model file: checks that say what is wrong with a file (missing,
//! truncated, not GGUF, unknown architecture, too large for memory), the Llama
//! hyper-parameters, and the model id.
//!
//! The model id is sha256("fai-model-id/v1" | sha256(weights file) | sha256(tokenizer) |
//! sha256(chat template)): every node that holds the same files computes the same id, and
//! any change to weights, vocabulary or prompt format makes another model.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Device;
use sha2::{Digest, Sha256};

use crate::chat::{ChatTemplate, Turn};
use crate::error::{EngineError, Result};
use crate::model::{Llama, LlamaConfig};
use crate::tokenizer::Tokenizer;

/// The digest that names a model on the network.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId(pub [u8; 32]);

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelId({self})")
    }
}

impl ModelId {
    /// The id of a model from the digests of its parts.
    pub fn from_parts(weights_sha256: &[u8; 32], tokenizer: &[u8], template: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"fai-model-id/v1");
        h.update(weights_sha256);
        h.update(Sha256::digest(tokenizer));
        h.update(Sha256::digest(template.as_bytes()));
        ModelId(h.finalize().into())
    }
}

/// A model ready to run: its weights on a device, tokenizer, template and id.
pub struct LoadedModel {
    pub id: ModelId,
    pub path: PathBuf,
    pub name: String,
    pub model: Llama,
    pub tokenizer: Tokenizer,
    /// The template's source, as hashed into the id.
    pub chat_template: String,
    pub chat: ChatTemplate,
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The sha256 of a file, read in chunks.
pub fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut file = BufReader::new(File::open(path).map_err(io(path))?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or(&[]));
    }
    Ok(h.finalize().into())
}

/// Memory the system can still give, from /proc/meminfo (None where unknown).
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The header of a GGUF file, checked against the file's real size.
pub fn read_content(path: &Path) -> Result<Content> {
    let mut file = File::open(path).map_err(io(path))?;
    let actual = file.metadata().map_err(io(path))?.len();
    let content = Content::read(&mut file).map_err(|e| EngineError::NotGguf {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut needed = content.tensor_data_offset;
    for info in content.tensor_infos.values() {
        let elems = info.shape.elem_count() as u64;
        let block = info.ggml_dtype.block_size().max(1) as u64;
        let bytes = elems / block * info.ggml_dtype.type_size() as u64;
        needed = needed.max(content.tensor_data_offset + info.offset + bytes);
    }
    if needed > actual {
        return Err(EngineError::Truncated {
            path: path.to_path_buf(),
            needed,
            actual,
        });
    }
    if let Some(available) = available_memory() {
        if actual > available {
            return Err(EngineError::TooLarge {
                path: path.to_path_buf(),
                needed: actual,
                available,
            });
        }
    }
    Ok(content)
}

/// Reads metadata `key` as a string.
pub fn meta_string(content: &Content, path: &Path, key: &str) -> Result<String> {
    match content.metadata.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(EngineError::MissingMetadata {
            path: path.to_path_buf(),
            key: key.to_string(),
        }),
    }
}

/// Reads metadata `key` as an unsigned integer.
pub fn meta_u32(content: &Content, path: &Path, key: &str) -> Result<u32> {
    content
        .metadata
        .get(key)
        .and_then(|v| {
            v.to_u32()
                .ok()
                .or_else(|| v.to_u64().ok().and_then(|x| u32::try_from(x).ok()))
        })
        .ok_or_else(|| EngineError::MissingMetadata {
            path: path.to_path_buf(),
            key: key.to_string(),
        })
}

impl LoadedModel {
    /// Loads the GGUF model at `path` onto `device`, with the tokenizer in its metadata.
    ///
    /// Errors: [`EngineError`] naming the file and what is wrong with it.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_with(path, None, device)
    }

    /// Loads the GGUF model at `path`; `tokenizer_json`, when given, replaces the
    /// vocabulary of the GGUF metadata (a Hugging Face `tokenizer.json`).
    pub fn load_with(path: &Path, tokenizer_json: Option<&Path>, device: &Device) -> Result<Self> {
        let content = read_content(path)?;
        let arch = meta_string(&content, path, "general.architecture")?;
        let config = LlamaConfig::from_gguf(&content, path, &arch)?;
        let tokenizer = match tokenizer_json {
            Some(json) => Tokenizer::from_json_file(json, &content)?,
            None => Tokenizer::from_gguf(&content, path)?,
        };
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(EngineError::BadTokenizer {
                path: tokenizer_json.unwrap_or(path).to_path_buf(),
                detail: format!(
                    "{} tokens, the model's embeddings have {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let chat_template =
            meta_string(&content, path, "tokenizer.chat_template").unwrap_or_default();
        let chat = ChatTemplate::new(&chat_template)?;
        let name = meta_string(&content, path, "general.name").unwrap_or_else(|_| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let mut file = File::open(path).map_err(io(path))?;
        let model = Llama::load(&content, &mut file, path, config, device)?;
        let weights = file_sha256(path)?;
        let id = ModelId::from_parts(&weights, tokenizer.identity(), &chat_template);
        Ok(LoadedModel {
            id,
            path: path.to_path_buf(),
            name,
            model,
            tokenizer,
            chat_template,
            chat,
        })
    }

    /// The prompt tokens for `input` after `system` and `context`, in the model's chat
    /// format.
    pub fn chat_tokens(&self, system: &str, context: &[Turn], input: &str) -> Result<Vec<u32>> {
        let text = self.chat.render(
            system,
            context,
            input,
            self.tokenizer.bos_text(),
            self.tokenizer.eos_text(),
        )?;
        self.tokenizer.encode(&text)
    }
}
