//! `infer-node models`: the models this node can run: the built-in `fai-tiny` (written
//! into `<data_dir>/models/` on first use) and those imported into the store
//! (`models.toml`); `run` streams an answer to the terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use candle_core::Device;
use fai_clarity::GenesisModel;
use fai_engine::tiny::ensure_fai_tiny;
use fai_engine::{generate, GenerateRequest, LoadedModel, SamplingParams};

use crate::model_store::{ModelEntry, ModelStore};

/// The folder of model files in a data directory.
pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models")
}

/// The files of a model: its GGUF file and, optionally, a tokenizer.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub path: PathBuf,
    pub tokenizer: Option<PathBuf>,
}

impl ModelFiles {
    /// Loads the model on the CPU (to read its id and metadata).
    pub fn load(&self) -> Result<LoadedModel> {
        self.load_on(&Device::Cpu)
    }

    /// Loads the model on `device`.
    pub fn load_on(&self, device: &Device) -> Result<LoadedModel> {
        Ok(LoadedModel::load_with(
            &self.path,
            self.tokenizer.as_deref(),
            device,
        )?)
    }
}

/// The id of the built-in model (written into the store on first use).
pub fn fai_tiny_id(data_dir: &Path) -> Result<[u8; 32]> {
    Ok(resolve(data_dir, "fai-tiny")?.load()?.id.0)
}

/// The files of `model`: "fai-tiny" (made on first use), a name in the store, or a path
/// to a GGUF file.
pub fn resolve(data_dir: &Path, model: &str) -> Result<ModelFiles> {
    if model == "fai-tiny" {
        let path =
            ensure_fai_tiny(&models_dir(data_dir)).context("cannot write the built-in model")?;
        return Ok(ModelFiles {
            path,
            tokenizer: None,
        });
    }
    if let Some(entry) = ModelStore::load(data_dir)?.find(model) {
        return Ok(ModelFiles {
            path: entry.path.clone(),
            tokenizer: entry.tokenizer.clone(),
        });
    }
    let path = PathBuf::from(model);
    anyhow::ensure!(
        path.exists(),
        "no model {model:?}: give \"fai-tiny\", a name from `infer-node models list`, or the path of a GGUF file"
    );
    Ok(ModelFiles {
        path,
        tokenizer: None,
    })
}

/// The models `names` lists (names in the store or GGUF files' paths), as the inference
/// chain approves them at genesis (`inference.genesis_models`, regtest only): id, name,
/// architecture and context from each file, with the `replay` method.
pub fn genesis_models(data_dir: &Path, names: &[String]) -> Result<Vec<GenesisModel>> {
    names
        .iter()
        .map(|name| {
            let model = resolve(data_dir, name)
                .and_then(|files| files.load())
                .with_context(|| format!("inference.genesis_models: model {name:?}"))?;
            let config = &model.model.config;
            // What the model registry takes (string-ascii 64, at most 2^20 tokens).
            anyhow::ensure!(
                !model.name.is_empty() && model.name.len() <= 64 && model.name.is_ascii(),
                "inference.genesis_models: model {name:?} is named {:?}: the registry takes 1 to 64 ASCII characters (set general.name in the file)",
                model.name
            );
            anyhow::ensure!(
                (1..=1 << 20).contains(&config.context_length),
                "inference.genesis_models: model {name:?} has a context of {} tokens: the registry takes 1 to 1048576",
                config.context_length
            );
            Ok(GenesisModel {
                id: model.id.0,
                name: model.name.clone(),
                arch: config.arch.name().to_string(),
                context_length: config.context_length as u128,
                method: "replay".into(),
            })
        })
        .collect()
}

/// Checks the GGUF file at `path` (with `tokenizer`, a tokenizer.json, when given),
/// computes its id and adds it to the store.
pub fn import(
    data_dir: &Path,
    path: &Path,
    tokenizer: Option<&Path>,
    name: Option<&str>,
    price: &str,
) -> Result<()> {
    price.parse::<fai_primitives::Amount>().context("--price")?;
    let canonical = |p: &Path| {
        p.canonicalize()
            .with_context(|| format!("cannot read {}", p.display()))
    };
    let files = ModelFiles {
        path: canonical(path)?,
        tokenizer: tokenizer.map(canonical).transpose()?,
    };
    let model = files.load()?;
    let path = files.path;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| model.name.clone());
    let mut store = ModelStore::load(data_dir)?;
    store.add(ModelEntry {
        name: name.clone(),
        id: model.id.to_string(),
        path: path.clone(),
        tokenizer: files.tokenizer,
        context_length: model.model.config.context_length,
        price_per_million_tokens: price.to_string(),
    })?;
    store.save(data_dir)?;
    println!("imported {name}: id {} ({})", model.id, path.display());
    Ok(())
}

/// `text` with control characters (other than newline and tab) shown as U+FFFD, so a
/// model's output cannot drive the terminal with escape sequences.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Prints every model with its id, context, price and file.
pub fn list(data_dir: &Path) -> Result<()> {
    let files = resolve(data_dir, "fai-tiny")?;
    let tiny = files.load()?;
    let path = files.path;
    println!(
        "{:<16} {}  context {:>6}  price {:>10}/M tokens  {}",
        tiny.name,
        tiny.id,
        tiny.model.config.context_length,
        "0 FAI",
        path.display()
    );
    for m in ModelStore::load(data_dir)?.models {
        println!(
            "{:<16} {}  context {:>6}  price {:>10}/M tokens  {}",
            m.name,
            m.id,
            m.context_length,
            m.price_per_million_tokens,
            m.path.display()
        );
    }
    Ok(())
}

/// Generates an answer to `prompt` and streams it to stdout.
pub fn run(
    data_dir: &Path,
    model: &str,
    system: &str,
    prompt: &str,
    sampling: SamplingParams,
    device: fai_engine::DeviceChoice,
) -> Result<()> {
    let files = resolve(data_dir, model)?;
    let device = device.open()?;
    let loaded = files.load_on(&device)?;
    let path = files.path;
    // A stored model must still be the file it was imported as.
    if let Some(entry) = ModelStore::load(data_dir)?.find(model) {
        anyhow::ensure!(
            entry.id == loaded.id.to_string(),
            "model {model}: {} has changed since it was imported (id {} now, {} in models.toml)",
            path.display(),
            loaded.id,
            entry.id
        );
    }
    let model = loaded;
    let request = GenerateRequest {
        system: system.to_string(),
        context: Vec::new(),
        input: prompt.to_string(),
        sampling,
    };
    let mut out = std::io::stdout().lock();
    let started = std::time::Instant::now();
    let result = generate(&model, &request, &AtomicBool::new(false), |piece| {
        let _ = out.write_all(printable(piece).as_bytes());
        let _ = out.flush();
    })?;
    let secs = started.elapsed().as_secs_f64();
    writeln!(out)?;
    eprintln!(
        "[{} tokens in {:.2} s, {:.0} tokens/s, finished: {:?}; model {} on {}]",
        result.tokens.len(),
        secs,
        result.tokens.len() as f64 / secs.max(1e-9),
        result.finish,
        model.id,
        fai_engine::device::describe(&device).kind
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_never_reach_the_terminal() {
        assert_eq!(
            super::printable("a\u{1b}[2Jb\nc\td\u{7}"),
            "a\u{fffd}[2Jb\nc\td\u{fffd}"
        );
    }
}
