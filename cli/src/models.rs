//! `infer-node models`: lists the model store, imports a GGUF file, runs a model.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use fai_node::models;

use crate::{load_config, Cli};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Show the models in the store with their ids.
    List,
    /// Check a GGUF model file, compute its id and add it to the store (models.toml).
    Import {
        path: PathBuf,
        /// A Hugging Face tokenizer.json to use instead of the file's own vocabulary.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Name in the store (default: the file's general.name).
        #[arg(long)]
        name: Option<String>,
        /// Price per million output tokens.
        #[arg(long, default_value = "0 FAI")]
        price: String,
    },
    /// Generate an answer and stream it to the terminal.
    Run {
        /// "fai-tiny" (built in; its text is nonsense by design) or a GGUF file.
        model: String,
        prompt: String,
        #[arg(long, default_value = "")]
        system: String,
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// 0 keeps every token.
        #[arg(long, default_value_t = 0)]
        top_k: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop when the answer ends with this (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: fai_engine::DeviceChoice,
    },
}

pub fn run(cli: &Cli, cmd: &ModelsCommand) -> Result<()> {
    let config = load_config(cli)?;
    let dir = config.data_dir();
    match cmd {
        ModelsCommand::List => models::list(&dir),
        ModelsCommand::Import {
            path,
            tokenizer,
            name,
            price,
        } => models::import(&dir, path, tokenizer.as_deref(), name.as_deref(), price),
        ModelsCommand::Run {
            model,
            prompt,
            system,
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop,
            device,
        } => models::run(
            &dir,
            model,
            system,
            prompt,
            fai_engine::SamplingParams {
                max_tokens: *max_tokens,
                temperature: *temperature,
                top_p: *top_p,
                top_k: *top_k,
                seed: *seed,
                stop: stop.clone(),
            },
            *device,
        ),
    }
}
