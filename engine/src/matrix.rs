//! A weight matrix of the forward pass and the kernel that multiplies by it.
//!
//! Q8_0, Q4_0 and Q4_K matrices on an x86-64 CPU go through the engine's own kernels
//! ([`fai_kernels`]). candle's Q4_0 product there read each weight block once per
//! activation row and decoded at about a quarter of the memory bandwidth, and its kernels
//! for the other two differ by CPU family (up to 0.15 per logit on a Q8_0 model). The
//! engine's kernels read a tile of 16 weight rows once for up to eight activation rows,
//! keep the file's bytes per weight (Q4_K: 4.625 bits against 4.5), and compute the same
//! bits on AVX-512, AVX2 and plain Rust, so among x86-64 CPUs a verifier's CPU never
//! changes a replayed logit. Every other storage type (F16, F32, the other K-quants),
//! device or architecture stays on candle's quantised matmul, and may drift.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use fai_kernels::packed::{Format, TILE_ROWS};
use fai_kernels::{Activations, Packed, PackedQ4K, PackedQ4_0, PackedQ8_0};

use crate::error::{EngineError, Result};

/// A weight matrix, `[rows, cols]`; `forward` maps `[.., cols]` to `[.., rows]`.
pub(crate) enum Matrix {
    /// candle's quantised matmul.
    Candle(QMatMul),
    /// Q4_0 on an x86 CPU, through the engine's kernel.
    Q4_0(PackedQ4_0),
    /// Q4_K on an x86 CPU, through the engine's kernel.
    Q4K(PackedQ4K),
    /// Q8_0 on an x86 CPU, through the engine's kernel.
    Q8_0(PackedQ8_0),
}

impl Matrix {
    /// The matrix of `q`, on the kernel that suits its storage type and device.
    pub(crate) fn new(q: QTensor) -> Result<Self> {
        if cfg!(target_arch = "x86_64") && q.device().is_cpu() {
            let (rows, cols) = q.shape().dims2()?;
            match q.dtype() {
                GgmlDType::Q4_0 => {
                    return Ok(Matrix::Q4_0(PackedQ4_0::from_gguf(&q.data()?, rows, cols)?))
                }
                GgmlDType::Q4K => {
                    return Ok(Matrix::Q4K(PackedQ4K::from_gguf(&q.data()?, rows, cols)?))
                }
                GgmlDType::Q8_0 => {
                    return Ok(Matrix::Q8_0(PackedQ8_0::from_gguf(&q.data()?, rows, cols)?))
                }
                _ => {}
            }
        }
        Ok(Matrix::Candle(QMatMul::from_qtensor(q)?))
    }

    /// `x` (`[rows][cols]` in host memory) times the matrix's transpose:
    /// `[rows][matrix rows]`. The CPU's forward pass.
    pub(crate) fn forward_host(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.forward_into(x, rows, &mut Activations::default(), &mut out)?;
        Ok(out)
    }

    /// As [`Matrix::forward_host`], into `out` (resized), quantising `x` into `acts`:
    /// the forward pass hands the same buffers to every layer. (Freshly allocated, a
    /// teacher-forced pass over a few hundred positions spent a fifth of its time
    /// faulting in new pages.)
    pub(crate) fn forward_into(
        &self,
        x: &[f32],
        rows: usize,
        acts: &mut Activations,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        match self {
            Matrix::Candle(m) => {
                let cols = x.len().checked_div(rows).unwrap_or(0);
                let t = Tensor::from_slice(x, (rows, cols), &candle_core::Device::Cpu)?;
                *out = m
                    .forward(&t)?
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1()?;
                Ok(())
            }
            Matrix::Q4_0(p) => kernel_product(p, x, rows, acts, out),
            Matrix::Q4K(p) => kernel_product(p, x, rows, acts, out),
            Matrix::Q8_0(p) => kernel_product(p, x, rows, acts, out),
        }
    }

    /// As [`Matrix::forward_into`], the output's columns split into consecutive parts of
    /// `widths` columns, each written straight into its own vector of `outs` (a fused
    /// projection's outputs, with no copy). Returns false, having done nothing, where the
    /// engine's kernels do not run this matrix or a part other than the last is not a
    /// whole number of 16-row tiles wide; the caller then splits a whole product.
    pub(crate) fn forward_parts(
        &self,
        x: &[f32],
        rows: usize,
        acts: &mut Activations,
        widths: &[usize],
        outs: &mut [Vec<f32>],
    ) -> Result<bool> {
        let tiled = widths
            .split_last()
            .is_some_and(|(_, rest)| rest.iter().all(|w| w % TILE_ROWS == 0));
        if !tiled || widths.len() != outs.len() {
            return Ok(false);
        }
        match self {
            Matrix::Candle(_) => return Ok(false),
            Matrix::Q4_0(p) => kernel_parts(p, x, rows, acts, widths, outs)?,
            Matrix::Q4K(p) => kernel_parts(p, x, rows, acts, widths, outs)?,
            Matrix::Q8_0(p) => kernel_parts(p, x, rows, acts, widths, outs)?,
        }
        Ok(true)
    }

    /// `x` (`[.., cols]`) times the matrix's transpose: `[.., rows]` (f32 on the CPU).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out_cols = match self {
            Matrix::Candle(m) => return Ok(m.forward(x)?),
            Matrix::Q4_0(p) => p.rows(),
            Matrix::Q4K(p) => p.rows(),
            Matrix::Q8_0(p) => p.rows(),
        };
        let mut shape = x.dims().to_vec();
        shape.pop().ok_or(EngineError::NoTokens)?;
        let rows = shape.iter().product::<usize>();
        let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let out = self.forward_host(&values, rows)?;
        shape.push(out_cols);
        Ok(Tensor::from_vec(out, shape, x.device())?)
    }
}

/// `rows` rows of `x` times `p`'s transpose, on the engine's kernel, into the parts
/// `outs` (resized to `widths` columns each).
fn kernel_parts<F: Format>(
    p: &Packed<F>,
    x: &[f32],
    rows: usize,
    acts: &mut Activations,
    widths: &[usize],
    outs: &mut [Vec<f32>],
) -> Result<()> {
    acts.requantize(x, rows, p.cols())?;
    for (o, w) in outs.iter_mut().zip(widths) {
        o.clear();
        o.resize(rows * w, 0.0);
    }
    let mut parts: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    p.matmul_parts(acts, &mut parts)?;
    Ok(())
}

/// `rows` rows of `x` times `p`'s transpose, on the engine's kernel, into `out`.
fn kernel_product<F: Format>(
    p: &Packed<F>,
    x: &[f32],
    rows: usize,
    acts: &mut Activations,
    out: &mut Vec<f32>,
) -> Result<()> {
    acts.requantize(x, rows, p.cols())?;
    out.clear();
    out.resize(rows * p.rows(), 0.0);
    p.matmul(acts, out)?;
    Ok(())
}
