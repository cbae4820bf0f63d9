//! Errors of the engine. Every error about a model file names the file.

use std::path::PathBuf;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model file {path} is not a valid GGUF file: {detail}")]
    NotGguf { path: PathBuf, detail: String },
    #[error(
        "model file {path} is truncated: its tensors need {needed} bytes, the file has {actual}"
    )]
    Truncated {
        path: PathBuf,
        needed: u64,
        actual: u64,
    },
    #[error("model file {path} has architecture {arch:?}; this engine runs llama (Llama 2/3, Mistral, TinyLlama) and qwen2")]
    UnknownArchitecture { path: PathBuf, arch: String },
    #[error("model file {path} lacks metadata {key}")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("model file {path} lacks tensor {name}")]
    MissingTensor { path: PathBuf, name: String },
    #[error("model file {path} uses tokenizer {kind:?}, which this engine cannot read yet")]
    UnsupportedTokenizer { path: PathBuf, kind: String },
    #[error("tokenizer of model {path} cannot be read: {detail}")]
    BadTokenizer { path: PathBuf, detail: String },
    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("the prompt is {tokens} tokens; the model's context window is {context}")]
    PromptTooLong { tokens: usize, context: usize },
    #[error("busy: {capacity} requests are already waiting; try again or another node")]
    Busy { capacity: usize },
    #[error("nothing to run: no tokens")]
    NoTokens,
    #[error("invalid sampling parameters: {0}")]
    InvalidSampling(String),
    #[error("device: {0}")]
    Device(String),
    #[error(
        "model {name} does not fit: it needs {} MiB of {device} memory, {} MiB are free",
        needed.div_ceil(1 << 20),
        available / (1 << 20)
    )]
    DoesNotFit {
        name: String,
        device: String,
        needed: u64,
        available: u64,
    },
    #[error("tensor computation failed: {0}")]
    Compute(#[from] candle_core::Error),
    #[error("matrix kernel: {0}")]
    Kernel(#[from] fai_kernels::KernelError),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
