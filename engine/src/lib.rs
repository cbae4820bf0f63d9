//! The inference engine of infer-node: Llama-family models in GGUF files run on candle,
//! token sampling that a seed makes reproducible, and generation that streams tokens as
//! they are produced.
//!
//! - [`gguf`]: opening a model file with clear errors (missing, truncated, unknown
//!   architecture, too large), and the model id every node agrees on.
//! - [`model`]: the engine's own Llama forward pass on candle's quantised matmuls; it
//!   returns the logits of every position, which verification needs.
//! - `matrix`: a weight matrix and its kernel (candle's, or `fai-kernels`' for Q4_0 on
//!   x86 CPUs, the same bits on every instruction set).
//! - [`device`]: the CPU or a CUDA GPU, chosen by the operator, and its memory.
//! - [`tokenizer`], [`chat`]: text to tokens and back, and the chat prompt format.
//! - [`sampling`]: greedy and ChaCha-seeded sampling with temperature, top-k and top-p.
//! - [`generate`]: the generation loop with the KV cache, stop strings and cancellation.
//! - [`tiny`]: the built-in `fai-tiny` model, made from a fixed seed and written as GGUF.
//!
//! The engine depends on `fai-primitives` and `fai-kernels` only; CPU work here is blocking and belongs on
//! worker threads, never on an async runtime.

pub mod attention;
pub mod chat;
pub mod device;
pub mod error;
pub mod fraud;
pub mod generate;
pub mod gguf;
mod matrix;
pub mod model;
pub mod sampling;
pub mod scheduler;
pub mod tiny;
pub mod tokenizer;
pub mod verify;

pub use device::{DeviceChoice, DeviceInfo};
pub use error::{EngineError, Result};
pub use generate::{generate, FinishReason, GenerateRequest, Generation};
pub use gguf::{LoadedModel, ModelId};
pub use sampling::{Sampler, SamplingParams};
pub use verify::{Judge, Replay, Verdict, Verifier};
