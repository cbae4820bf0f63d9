//! The forward pass on the CPU, in host loops: the rows of a batch live in plain vectors
//! from the embedding lookup to the final norm, and only the matrix products and
//! attention go to the worker pool.
//!
//! Through candle, each norm, bias, activation and residual of a decode step was its own
//! tensor operation (allocation, dispatch, and for some a round of the worker pool): a
//! fixed cost per token, per layer, that the matrix kernels made the larger part of a
//! 4-bit decode step. Here they are loops over a row at a time, in a fixed order, so a
//! row's result still does not depend on the other rows of the pass (batching and a
//! verifier's teacher-forced pass change no bit).

use candle_core::{DType, Tensor};

use super::{BatchItem, Llama, Span};
use crate::attention;
use crate::error::{EngineError, Result};

/// Host copies of a layer's norms and biases (f32, `[dim]` or `[width]`).
pub(super) struct HostLayer {
    pub(super) attn_norm: Vec<f32>,
    pub(super) ffn_norm: Vec<f32>,
    pub(super) biases: Option<[Vec<f32>; 3]>,
}

impl HostLayer {
    pub(super) fn new(
        attn_norm: &Tensor,
        ffn_norm: &Tensor,
        biases: Option<&[Tensor; 3]>,
    ) -> Result<Self> {
        let host = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
        };
        Ok(HostLayer {
            attn_norm: host(attn_norm)?,
            ffn_norm: host(ffn_norm)?,
            biases: match biases {
                Some([q, k, v]) => Some([host(q)?, host(k)?, host(v)?]),
                None => None,
            },
        })
    }
}

/// `x / rms(x) * weight` for each row of `x` (`[rows][weight.len()]`), into `out`.
pub(super) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.clear();
    out.resize(x.len(), 0.0);
    if weight.is_empty() {
        return;
    }
    let width = weight.len();
    by_rows(out, x, width, |out, x| {
        for (row, o) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            let scale = 1.0 / (sum_of_squares(row) / width as f32 + eps).sqrt();
            for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
                *o = v * scale * w;
            }
        }
    });
}

/// The sum of the squares of `row`, in eight partial sums (lane `i` takes the values at
/// `i` mod 8) added as a tree, then the tail: a fixed order that vectorises (one running
/// sum was a chain of additions, each waiting on the last).
fn sum_of_squares(row: &[f32]) -> f32 {
    let mut partial = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (p, v) in partial.iter_mut().zip(chunk) {
            *p += v * v;
        }
    }
    let [p0, p1, p2, p3, p4, p5, p6, p7] = partial;
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    (((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))) + tail
}

/// Rows handed to one worker of the pool by [`by_rows`].
const POOL_ROWS: usize = 16;

/// `f` over consecutive rows of `a` (written) and `b` (read), both `width` wide: on
/// candle's worker pool in parts of [`POOL_ROWS`] rows when there are several parts (a
/// verifier's pass over hundreds of positions), else here. Each row's result does not
/// depend on the split.
fn by_rows(a: &mut [f32], b: &[f32], width: usize, f: impl Fn(&mut [f32], &[f32]) + Sync) {
    let part = POOL_ROWS * width.max(1);
    if a.len() <= part {
        return f(a, b);
    }
    let parts: Vec<(&mut [f32], &[f32])> = a.chunks_mut(part).zip(b.chunks(part)).collect();
    fai_kernels::pool::each_part(parts, |(a, b)| f(a, b));
}

/// The buffers of one forward pass, handed from layer to layer (and kept by the thread
/// for its next pass while they are small: see [`Scratch::SPARE_BYTES`]).
#[derive(Default)]
struct Scratch {
    acts: fai_kernels::Activations,
    fused: Vec<f32>,
    h: Vec<f32>,
    qkv: [Vec<f32>; 3],
    y: Vec<f32>,
    projected: Vec<f32>,
    gate_up: [Vec<f32>; 2],
}

impl Scratch {
    /// The most a thread keeps between passes: a decode step's or a verifier's
    /// few-hundred-position pass fits; a long prompt's buffers are freed.
    const SPARE_BYTES: usize = 64 << 20;

    fn bytes(&self) -> usize {
        let floats = [&self.fused, &self.h, &self.y, &self.projected]
            .into_iter()
            .chain(&self.qkv)
            .chain(&self.gate_up)
            .map(Vec::capacity)
            .sum::<usize>();
        floats * 4 + self.acts.heap_bytes()
    }
}

thread_local! {
    /// This thread's buffers from its last forward pass.
    static SPARE: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// The first `n` values of `rows` and the rest.
fn cut_rows(rows: &[f32], n: usize) -> Result<(&[f32], &[f32])> {
    rows.split_at_checked(n).ok_or_else(super::cache_mismatch)
}

/// `x += y`, element by element.
fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// Adds `bias` to each row of `x`.
fn add_bias(x: &mut [f32], bias: &[f32]) {
    if bias.is_empty() {
        return;
    }
    for row in x.chunks_exact_mut(bias.len()) {
        add(row, bias);
    }
}

impl Llama {
    /// [`Llama::forward_batch`] on the CPU, for `spans` over the tokens `all`.
    pub(super) fn forward_host(
        &self,
        items: &mut [BatchItem<'_, '_>],
        spans: &[Span],
        all: &[u32],
    ) -> Result<Vec<Tensor>> {
        let (Some(hosts), Some(norm)) = (&self.host_layers, &self.host_norm) else {
            return Err(EngineError::Device(
                "the host forward pass runs on the CPU only".into(),
            ));
        };
        let dim = self.config.dim;
        let rows = all.len();
        let ids = Tensor::new(all, &self.device)?;
        let mut x: Vec<f32> = self
            .embeddings
            .index_select(&ids, 0)?
            .flatten_all()?
            .to_vec1()?;
        let eps = self.config.rms_eps;
        let mut s = SPARE.with(|spare| std::mem::take(&mut *spare.borrow_mut()));
        for (l, (layer, host)) in self.layers.iter().zip(hosts).enumerate() {
            rms_norm(&x, &host.attn_norm, eps, &mut s.h);
            layer
                .qkv
                .forward_into(&s.h, rows, &mut s.acts, &mut s.fused, &mut s.qkv)?;
            let [q, k, v] = &mut s.qkv;
            if let Some([bq, bk, bv]) = &host.biases {
                add_bias(q, bq);
                add_bias(k, bk);
                add_bias(v, bv);
            }
            self.host_attention(l, q, k, v, spans, items, &mut s.y)?;
            layer
                .wo
                .forward_into(&s.y, rows, &mut s.acts, &mut s.projected)?;
            by_rows(&mut x, &s.projected, dim, add);
            rms_norm(&x, &host.ffn_norm, eps, &mut s.h);
            layer
                .gate_up
                .forward_into(&s.h, rows, &mut s.acts, &mut s.fused, &mut s.gate_up)?;
            let [gate, up] = &mut s.gate_up;
            let ff = gate.len() / rows.max(1);
            by_rows(gate, up, ff, fai_kernels::vector::silu_mul);
            layer
                .w_down
                .forward_into(gate, rows, &mut s.acts, &mut s.projected)?;
            by_rows(&mut x, &s.projected, dim, add);
        }
        if s.bytes() <= Scratch::SPARE_BYTES {
            SPARE.with(|spare| *spare.borrow_mut() = s);
        }
        for (span, item) in spans.iter().zip(items.iter_mut()) {
            item.cache.len = span.start + span.seq;
        }
        // Only the rows that become logits go through the final norm and the output.
        let mut picked = Vec::new();
        for s in spans {
            let first = (s.offset + s.seq - s.rows) * dim;
            let rows = x
                .get(first..first + s.rows * dim)
                .ok_or(EngineError::NoTokens)?;
            picked.extend_from_slice(rows);
        }
        let picked_rows = picked.len() / dim.max(1);
        let mut h = Vec::new();
        rms_norm(&picked, norm, eps, &mut h);
        let logits = self.output.forward_host(&h, picked_rows)?;
        let vocab = logits.len() / picked_rows.max(1);
        let logits = Tensor::from_vec(logits, (picked_rows, vocab), &self.device)?;
        let mut out = Vec::with_capacity(spans.len());
        let mut at = 0;
        for s in spans {
            out.push(logits.narrow(0, at, s.rows)?);
            at += s.rows;
        }
        Ok(out)
    }

    /// Attention of layer `l` for every item on the CPU (`q`, `k`, `v`: the rows of all
    /// items, `[rows][width]`), in host loops over their caches ([`crate::attention`]),
    /// where a position's arithmetic does not depend on how many positions the pass
    /// holds. Writes `[rows][query width]` into `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn host_attention(
        &self,
        l: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        spans: &[Span],
        items: &mut [BatchItem<'_, '_>],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let rope = self
            .host_rope
            .as_ref()
            .ok_or_else(|| EngineError::Device("host attention runs on the CPU only".into()))?;
        let heads = self.heads();
        let width = heads.query * heads.dim;
        let kv_width = heads.kv * heads.dim;
        let total: usize = spans.iter().map(|s| s.seq).sum();
        out.clear();
        out.resize(total * width, 0.0);
        // Each item's rows, cut off the front of the batch's buffers in order.
        let (mut q_rest, mut k_rest, mut v_rest, mut out_rest) = (q, k, v, &mut out[..]);
        let mut steps = Vec::with_capacity(spans.len());
        for (span, item) in spans.iter().zip(items.iter_mut()) {
            let (q, qr) = cut_rows(q_rest, span.seq * width)?;
            let (k, kr) = cut_rows(k_rest, span.seq * kv_width)?;
            let (v, vr) = cut_rows(v_rest, span.seq * kv_width)?;
            let (o, or) = super::split_rows(out_rest, span.seq * width)?;
            (q_rest, k_rest, v_rest, out_rest) = (qr, kr, vr, or);
            let Some(super::LayerKv::Host(cache)) = item.cache.layers.get_mut(l) else {
                return Err(super::cache_mismatch());
            };
            steps.push(attention::Step {
                cache,
                start: span.start,
                q,
                k,
                v,
                out: o,
            });
        }
        attention::attend_all(heads, rope, &mut steps)?;
        Ok(())
    }
}
