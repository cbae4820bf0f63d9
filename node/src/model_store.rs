//! The model store: `<data_dir>/models.toml` lists the models this node serves, each with
//! its file, the model id computed from it, its context window and the operator's price.
//! The built-in `fai-tiny` is always there. Unknown keys are refused, as in the node
//! configuration.
//!
//! ```toml
//! [[model]]
//! name = "tinyllama-q8"
//! id = "5c0f…"                      # sha256 model id, checked when the model loads
//! path = "/models/tinyllama.Q8_0.gguf"
//! tokenizer = "/models/tinyllama.tokenizer.json"  # optional: replaces the GGUF vocabulary
//! context_length = 2048
//! price_per_million_tokens = "0.5 FAI"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fai_primitives::Amount;
use serde::{Deserialize, Serialize};

/// The file of the store in a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("models.toml")
}

/// One model of the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub id: String,
    pub path: PathBuf,
    /// A Hugging Face tokenizer.json used instead of the GGUF file's own vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    pub context_length: usize,
    /// FAI per million output tokens, as "0.5 FAI".
    pub price_per_million_tokens: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    model: Vec<ModelEntry>,
}

/// The models a node serves.
#[derive(Debug, Default)]
pub struct ModelStore {
    pub models: Vec<ModelEntry>,
}

impl ModelStore {
    /// Reads the store of `data_dir`; a missing file is an empty store.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = store_path(data_dir);
        if !path.exists() {
            return Ok(ModelStore::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: StoreFile = toml::from_str(&text)
            .with_context(|| format!("invalid model store {}", path.display()))?;
        for m in &file.model {
            m.price_per_million_tokens
                .parse::<Amount>()
                .with_context(|| {
                    format!(
                        "model {} in {}: price_per_million_tokens",
                        m.name,
                        path.display()
                    )
                })?;
        }
        Ok(ModelStore { models: file.model })
    }

    /// Writes the store (through a temporary file, so a crash never leaves half of it).
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = store_path(data_dir);
        let text = toml::to_string_pretty(&StoreFile {
            model: self.models.clone(),
        })?;
        std::fs::create_dir_all(data_dir)?;
        let tmp = path.with_extension("toml.partial");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn find(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Adds a model; a name or id already in the store is refused.
    pub fn add(&mut self, entry: ModelEntry) -> Result<()> {
        if let Some(m) = self
            .models
            .iter()
            .find(|m| m.name == entry.name || m.id == entry.id)
        {
            bail!(
                "the store already has {} (id {}); choose another --name or remove it from models.toml",
                m.name,
                m.id
            );
        }
        if entry.name == "fai-tiny" {
            bail!("\"fai-tiny\" is the built-in model's name; choose another --name");
        }
        self.models.push(entry);
        Ok(())
    }
}
