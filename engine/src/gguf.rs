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

/// Device memory a model needs loaded, in bytes: its weights as stored, the embedding
/// table widened to f32, and the rotary tables.
pub fn memory_needed(config: &LlamaConfig, file_bytes: u64) -> u64 {
    let f32s = |n: usize| (n as u64).saturating_mul(4);
    let embeddings = f32s(config.vocab_size.saturating_mul(config.dim));
    let rope = f32s(config.context_length.saturating_mul(config.head_dim()));
    file_bytes.saturating_add(embeddings).saturating_add(rope)
}

/// Refuses a model that needs more memory than `device` has free (when that is known).
pub fn check_fits(name: &str, device: &crate::device::DeviceInfo, needed: u64) -> Result<()> {
    match device.memory_free {
        Some(available) if needed > available => Err(EngineError::DoesNotFit {
            name: name.to_string(),
            device: device.kind.clone(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
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
        let file_bytes = std::fs::metadata(path).map_err(io(path))?.len();
        check_fits(
            &name,
            &crate::device::describe(device),
            memory_needed(&config, file_bytes),
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceInfo;

    #[test]
    fn a_model_larger_than_the_free_memory_is_refused_with_what_it_needs() {
        let gpu = DeviceInfo {
            kind: "cuda:0".into(),
            memory_total: Some(8 << 30),
            memory_free: Some(6 << 30),
        };
        let err = check_fits("llama-8b", &gpu, 9 << 30)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("llama-8b") && err.contains("9216 MiB"),
            "{err}"
        );
        assert!(
            err.contains("cuda:0") && err.contains("6144 MiB are free"),
            "{err}"
        );
        assert!(check_fits("small", &gpu, 1 << 30).is_ok());
        let unknown = DeviceInfo {
            memory_free: None,
            ..gpu
        };
        assert!(check_fits("any", &unknown, u64::MAX).is_ok());
    }
}
