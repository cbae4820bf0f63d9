//! The engine's own CPU kernels: quantised weights (GGUF's Q4_0, Q4_K and Q8_0) times
//! 8-bit quantised activations, and the float loops of attention and the feed-forward.
//!
//! Every instruction set computes the same bits (NaN payloads aside). An output is, per weight row, a sum over
//! 32-value blocks taken in order: the block's integer dot product (exact in any order),
//! times the product of the weight's and the activation's scales, added with one fused
//! multiply-add (Q4_K adds its min term with a second one). The AVX-512 VNNI, AVX2 and
//! scalar kernels all follow that recipe, so a node on an older CPU and a verifier on a
//! newer one agree exactly (the engine's replay depends on it), and the tests hold each
//! kernel to the scalar reference bit for bit.
//!
//! - [`activations`]: input rows quantised to 8 bits per 32-value block.
//! - [`packed`]: a matrix repacked in tiles of 16 rows, and its product, for any
//!   [`packed::Format`]; [`q4_0`], [`q4_k`] and [`q8_0`] are the formats (layout,
//!   scalar reference, x86 kernels).
//! - [`attend`]: attention's scores and weighted values over an f16 cache, keys in
//!   blocks of 16 positions.
//! - [`vector`]: attention's and SwiGLU's float loops, the f16 rounding of the attention
//!   cache and an `exp`, compiled for AVX2 with FMA and F16C where the CPU has them,
//!   with the same bits either way.
//! - [`isa`]: which kernel this CPU runs.
//!
//! This is the workspace's one crate with `unsafe` code: SIMD intrinsics (loads from
//! fixed-size arrays, and from slices within bounds checked first), calls of code compiled for the CPU's features, and the writer
//! through which worker threads fill disjoint parts of one output. Each block states why
//! it is sound.

#[macro_use]
mod product;

pub mod activations;
pub mod attend;
pub mod isa;
pub mod packed;
pub mod pool;
pub mod q4_0;
pub mod q4_k;
pub mod q8_0;
pub mod vector;

#[cfg(target_arch = "x86_64")]
mod x86_attend;
#[cfg(target_arch = "x86_64")]
mod x86_common;
#[cfg(target_arch = "x86_64")]
mod x86_q4_0;
#[cfg(target_arch = "x86_64")]
mod x86_q4_k;
#[cfg(target_arch = "x86_64")]
mod x86_q8_0;
#[cfg(target_arch = "x86_64")]
mod x86_quantize;
#[cfg(target_arch = "x86_64")]
mod x86_vector;

pub use activations::Activations;
pub use isa::Isa;
pub use packed::Packed;
pub use q4_0::PackedQ4_0;
pub use q4_k::PackedQ4K;
pub use q8_0::PackedQ8_0;

/// Values per quantisation block (weights and activations).
pub const BLOCK: usize = 32;

/// Shapes or buffers that do not fit together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("{what}: {got} values, {expected} expected")]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("row length {0} is not a whole number of {BLOCK}-value blocks")]
    RowLength(usize),
    #[error("activations have rows of {got} values, the matrix takes {expected}")]
    Width { got: usize, expected: usize },
    #[error("a {0} x {1} matrix is too large")]
    TooLarge(usize, usize),
    #[error("an output part {0} columns wide is not a whole number of 16-row tiles (only the last may be)")]
    PartWidth(usize),
}

/// How a product is spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// candle's CPU worker pool (the engine's forward pass).
    Pool,
    /// The calling thread only.
    One,
}
