//! `infer-node models`: the models this node can run. Today the store holds the
//! built-in `fai-tiny` (written into `<data_dir>/models/` on first use) and any GGUF file
//! named by path; `run` streams the answer to the terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use candle_core::Device;
use fai_engine::tiny::ensure_fai_tiny;
use fai_engine::{generate, GenerateRequest, LoadedModel, SamplingParams};

/// The folder of model files in a data directory.
pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models")
}

/// The file of `model`: "fai-tiny" (made on first use) or a path to a GGUF file.
pub fn resolve(data_dir: &Path, model: &str) -> Result<PathBuf> {
    if model == "fai-tiny" {
        return ensure_fai_tiny(&models_dir(data_dir)).context("cannot write the built-in model");
    }
    let path = PathBuf::from(model);
    anyhow::ensure!(
        path.exists(),
        "no model {model:?}: give \"fai-tiny\" or the path of a GGUF file"
    );
    Ok(path)
}

/// `text` with control characters (other than newline and tab) shown as U+FFFD, so a
/// model's output cannot drive the terminal with escape sequences.
fn printable(text: &str) -> String {
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

/// Prints the built-in model's id, file and shape.
pub fn list(data_dir: &Path) -> Result<()> {
    let path = resolve(data_dir, "fai-tiny")?;
    let model = LoadedModel::load(&path, &Device::Cpu)?;
    let c = &model.model.config;
    println!(
        "{:<10} {}  context {}  {} layers x {} wide  {}",
        model.name,
        model.id,
        c.context_length,
        c.n_layers,
        c.dim,
        path.display()
    );
    Ok(())
}

/// Generates an answer to `prompt` and streams it to stdout.
pub fn run(
    data_dir: &Path,
    model: &str,
    system: &str,
    prompt: &str,
    sampling: SamplingParams,
) -> Result<()> {
    let path = resolve(data_dir, model)?;
    let model = LoadedModel::load(&path, &Device::Cpu)?;
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
        "[{} tokens in {:.2} s, {:.0} tokens/s, finished: {:?}; model {}]",
        result.tokens.len(),
        secs,
        result.tokens.len() as f64 / secs.max(1e-9),
        result.finish,
        model.id
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
