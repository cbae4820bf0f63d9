//! The engine's Llama forward pass, on candle's quantised matmuls, or on x86-64 CPUs the
//! engine's own kernels for Q8_0, Q4_0 and Q4_K ([`crate::matrix`]).
//!
//! Unlike candle-transformers' `quantized_llama`, [`Llama::forward`] returns the logits of
//! every position it is given, so a verifier can score a whole claimed output in one
//! teacher-forced pass, and the weights are shared read-only (`&self`) while each
//! sequence keeps its own [`KvCache`], so one loaded model serves many requests.
//!
//! Layer by layer: RMS norm, attention with rotary embeddings and grouped key/value heads,
//! residual; RMS norm, SwiGLU feed-forward, residual; then a final norm and the output
//! projection. GGUF names: `token_embd`, `blk.N.attn_{norm,q,k,v,output}`,
//! `blk.N.ffn_{norm,gate,up,down}`, `output_norm`, `output` (tied to the embeddings when
//! absent).
//!
//! Two architectures share this code: `llama` (Llama 2/3, Mistral, TinyLlama: rotary
//! embedding on interleaved pairs, as llama.cpp's converter lays out the weights) and
//! `qwen2` (rotary embedding on the two halves of each head, NEOX style, and biases on
//! the query, key and value projections, `blk.N.attn_{q,k,v}.bias`).

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor, D};

use crate::attention::{Heads, HostKv, RopeTable};
use crate::error::{EngineError, Result};
use crate::gguf::meta_u32;
use crate::matrix::Matrix;

pub mod host;
use host::HostLayer;

/// The architectures this forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    /// The `general.architecture` name, which also prefixes the hyper-parameter keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// Rotary embedding on the halves of a head (NEOX) rather than interleaved pairs.
    pub fn rope_halves(self) -> bool {
        self == Arch::Qwen2
    }

    fn default_rope_base(self) -> f32 {
        match self {
            Arch::Llama => 10_000.0,
            Arch::Qwen2 => 1_000_000.0,
        }
    }
}

/// Hyper-parameters of a Llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ff_dim: usize,
    pub context_length: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads.max(1)
    }

    /// Reads the `<arch>.*` metadata of a GGUF file whose architecture is `arch`.
    pub fn from_gguf(content: &Content, path: &Path, arch: &str) -> Result<Self> {
        let arch = match arch {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(EngineError::UnknownArchitecture {
                    path: path.to_path_buf(),
                    arch: other.to_string(),
                })
            }
        };
        let prefix = arch.name();
        let u = |k: &str| meta_u32(content, path, &format!("{prefix}.{k}")).map(|v| v as usize);
        let f = |k: &str, default: f32| {
            content
                .metadata
                .get(&format!("{prefix}.{k}"))
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(default)
        };
        let vocab_size = match content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims().first().copied().unwrap_or(0),
            None => {
                return Err(EngineError::MissingTensor {
                    path: path.to_path_buf(),
                    name: "token_embd.weight".into(),
                })
            }
        };
        let config = LlamaConfig {
            arch,
            vocab_size,
            dim: u("embedding_length")?,
            n_layers: u("block_count")?,
            n_heads: u("attention.head_count")?,
            n_kv_heads: u("attention.head_count_kv")?,
            ff_dim: u("feed_forward_length")?,
            context_length: u("context_length")?,
            rope_base: f("rope.freq_base", arch.default_rope_base()),
            rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5),
        };
        let bad = |what: &str| EngineError::NotGguf {
            path: path.to_path_buf(),
            detail: format!("inconsistent hyper-parameters: {what}"),
        };
        if config.n_heads == 0 || config.n_kv_heads == 0 || config.dim % config.n_heads != 0 {
            return Err(bad("embedding length not divisible by head count"));
        }
        if config.n_heads % config.n_kv_heads != 0 || config.head_dim() % 2 != 0 {
            return Err(bad("head counts"));
        }
        if config.context_length == 0 || config.context_length > 1 << 20 {
            return Err(bad("context length"));
        }
        Ok(config)
    }
}

struct Layer {
    attn_norm: Tensor,
    /// Query, key and value projections.
    qkv: Projection,
    /// Query, key and value biases (Qwen2).
    biases: Option<[Tensor; 3]>,
    wo: Matrix,
    ffn_norm: Tensor,
    /// Gate and up projections.
    gate_up: Projection,
    w_down: Matrix,
}

/// Projections that read the same input, fused into one matrix when their storage types
/// agree: the rows of quantised blocks are simply stacked, so one matmul call (one pass
/// of the worker pool) replaces several, and each output is a view of the fused result.
/// Every output row is the same dot product as unfused, so results do not change.
enum Projection {
    Fused { matrix: Matrix, rows: Vec<usize> },
    Separate(Vec<Matrix>),
}

impl Projection {
    fn new(parts: Vec<QTensor>, device: &Device) -> Result<Self> {
        let same_dtype = parts.windows(2).all(|w| match w {
            [a, b] => a.dtype() == b.dtype(),
            _ => true,
        });
        let dims: Vec<(usize, usize)> = parts
            .iter()
            .map(|p| p.shape().dims2())
            .collect::<candle_core::Result<_>>()?;
        let same_cols = dims.windows(2).all(|w| match w {
            [a, b] => a.1 == b.1,
            _ => true,
        });
        let first = parts.first().map(|p| p.dtype());
        if let (true, true, Some(dtype), Some(&(_, cols))) =
            (same_dtype, same_cols, first, dims.first())
        {
            let mut bytes = Vec::new();
            for p in &parts {
                bytes.extend_from_slice(&p.data()?);
            }
            let rows: Vec<usize> = dims.iter().map(|d| d.0).collect();
            let total = rows.iter().sum();
            let fused = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtype,
                &bytes,
                vec![total, cols],
                device,
            )?;
            return Ok(Projection::Fused {
                matrix: Matrix::new(fused)?,
                rows,
            });
        }
        Ok(Projection::Separate(
            parts.into_iter().map(Matrix::new).collect::<Result<_>>()?,
        ))
    }

    /// The `N` outputs for `x`.
    fn forward<const N: usize>(&self, x: &Tensor) -> Result<[Tensor; N]> {
        let outputs: Vec<Tensor> = match self {
            Projection::Fused { matrix, rows } => {
                let y = matrix.forward(x)?;
                let mut start = 0;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(y.narrow(D::Minus1, start, *r)?);
                    start += r;
                }
                out
            }
            Projection::Separate(ms) => ms.iter().map(|m| m.forward(x)).collect::<Result<_>>()?,
        };
        outputs.try_into().map_err(|v: Vec<Tensor>| {
            EngineError::Compute(candle_core::Error::Msg(format!(
                "projection has {} outputs, {N} expected",
                v.len()
            )))
        })
    }

    /// The `N` outputs for `x` (`[rows][cols]` in host memory), each `[rows][its width]`,
    /// into `outs`; `acts` and `fused` are the pass's reused buffers.
    fn forward_into<const N: usize>(
        &self,
        x: &[f32],
        rows: usize,
        acts: &mut fai_kernels::Activations,
        fused: &mut Vec<f32>,
        outs: &mut [Vec<f32>; N],
    ) -> Result<()> {
        let count = match self {
            Projection::Fused { rows: widths, .. } => widths.len(),
            Projection::Separate(ms) => ms.len(),
        };
        if count != N {
            return Err(EngineError::Compute(candle_core::Error::Msg(format!(
                "projection has {count} outputs, {N} expected"
            ))));
        }
        match self {
            Projection::Fused {
                matrix,
                rows: widths,
            } => {
                if matrix.forward_parts(x, rows, acts, widths, outs)? {
                    return Ok(());
                }
                matrix.forward_into(x, rows, acts, fused)?;
                let total: usize = widths.iter().sum();
                for (o, w) in outs.iter_mut().zip(widths) {
                    o.clear();
                    o.reserve(w * rows);
                }
                for row in fused.chunks_exact(total.max(1)) {
                    let mut start = 0;
                    for (o, w) in outs.iter_mut().zip(widths) {
                        o.extend_from_slice(&row[start..start + w]);
                        start += w;
                    }
                }
            }
            Projection::Separate(ms) => {
                for (m, o) in ms.iter().zip(outs.iter_mut()) {
                    m.forward_into(x, rows, acts, o)?;
                }
            }
        }
        Ok(())
    }
}

/// A loaded Llama model.
pub struct Llama {
    pub config: LlamaConfig,
    embeddings: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Matrix,
    cos: Tensor,
    sin: Tensor,
    /// The rotary tables in host memory, for attention on the CPU (None on a GPU).
    host_rope: Option<RopeTable>,
    /// Each layer's norms and biases in host memory, for the CPU's pass (None on a GPU).
    host_layers: Option<Vec<HostLayer>>,
    /// The final norm in host memory (None on a GPU).
    host_norm: Option<Vec<f32>>,
    device: Device,
}

/// Keys and values of the positions a sequence has seen, per layer. On the CPU they live
/// in host vectors that a decode step appends one row to and attention reads in place
/// ([`crate::attention`]); on a GPU in candle buffers that grow by [`KV_CHUNK`] positions
/// and that attention reads through strides. Not `Clone`: the buffers are written in place.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
}

/// One layer's cache, where the model's device wants it.
#[derive(Debug)]
enum LayerKv {
    Host(HostKv),
    Device(candle_nn::kv_cache::KvCache),
}

/// Positions a device cache buffer grows by.
pub const KV_CHUNK: usize = 256;

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn tensor(
    content: &Content,
    file: &mut File,
    path: &Path,
    name: &str,
    device: &Device,
) -> Result<QTensor> {
    if !content.tensor_infos.contains_key(name) {
        return Err(EngineError::MissingTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
        });
    }
    Ok(content.tensor(file, name, device)?)
}

impl Llama {
    /// Loads the weights named by `content` from `file`.
    pub fn load(
        content: &Content,
        file: &mut File,
        path: &Path,
        config: LlamaConfig,
        device: &Device,
    ) -> Result<Self> {
        let mut t = |name: &str| tensor(content, file, path, name, device);
        let embed_q = t("token_embd.weight")?;
        let embeddings = embed_q.dequantize(device)?;
        let norm = t("output_norm.weight")?.dequantize(device)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Matrix::new(t("output.weight")?)?
        } else {
            Matrix::new(embed_q)?
        };
        let mut layers = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let p = format!("blk.{i}");
            let mut q = |n: &str| -> Result<Matrix> { Matrix::new(t(&format!("{p}.{n}.weight"))?) };
            let wo = q("attn_output")?;
            let w_down = q("ffn_down")?;
            let mut qt = |n: &str| t(&format!("{p}.{n}.weight"));
            let qkv = Projection::new(vec![qt("attn_q")?, qt("attn_k")?, qt("attn_v")?], device)?;
            let gate_up = Projection::new(vec![qt("ffn_gate")?, qt("ffn_up")?], device)?;
            let bias_names = ["attn_q", "attn_k", "attn_v"].map(|n| format!("{p}.{n}.bias"));
            let biases = if bias_names
                .iter()
                .any(|n| content.tensor_infos.contains_key(n))
            {
                let [bq, bk, bv] = &bias_names;
                Some([
                    t(bq)?.dequantize(device)?,
                    t(bk)?.dequantize(device)?,
                    t(bv)?.dequantize(device)?,
                ])
            } else {
                None
            };
            layers.push(Layer {
                biases,
                attn_norm: t(&format!("{p}.attn_norm.weight"))?.dequantize(device)?,
                ffn_norm: t(&format!("{p}.ffn_norm.weight"))?.dequantize(device)?,
                qkv,
                wo,
                gate_up,
                w_down,
            });
        }
        let (cos, sin) = rope_tables(&config, device)?;
        let (host_layers, host_norm) = if device.is_cpu() {
            let layers = layers
                .iter()
                .map(|l| HostLayer::new(&l.attn_norm, &l.ffn_norm, l.biases.as_ref()))
                .collect::<Result<Vec<_>>>()?;
            (Some(layers), Some(norm.flatten_all()?.to_vec1::<f32>()?))
        } else {
            (None, None)
        };
        let host_rope = if device.is_cpu() {
            Some(RopeTable::from_tensors(
                &cos,
                &sin,
                config.arch.rope_halves(),
            )?)
        } else {
            None
        };
        Ok(Llama {
            config,
            embeddings,
            layers,
            norm,
            output,
            cos,
            sin,
            host_rope,
            host_layers,
            host_norm,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A cache for a new sequence.
    pub fn new_cache(&self) -> KvCache {
        let layer = || {
            if self.host_rope.is_some() {
                LayerKv::Host(HostKv::default())
            } else {
                LayerKv::Device(candle_nn::kv_cache::KvCache::new(2, KV_CHUNK))
            }
        };
        KvCache {
            layers: (0..self.layers.len()).map(|_| layer()).collect(),
            len: 0,
        }
    }

    fn heads(&self) -> Heads {
        Heads {
            query: self.config.n_heads,
            kv: self.config.n_kv_heads,
            dim: self.config.head_dim(),
        }
    }

    /// Runs `tokens` after the positions already in `cache` and returns the logits of
    /// every one of them, shape `[tokens.len(), vocab]`, as f32.
    ///
    /// Errors: the context window would overflow, or a tensor operation failed.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        self.forward_last(tokens, cache, tokens.len())
    }

    /// Like [`Llama::forward`], but projects only the last `rows` positions to logits
    /// (shape `[rows, vocab]`): the output projection is the largest matrix of a model,
    /// and prefill needs one row, verification only the rows of the claimed output.
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache, rows: usize) -> Result<Tensor> {
        let mut items = [BatchItem {
            tokens,
            cache,
            rows,
        }];
        let mut out = self.forward_batch(&mut items)?;
        out.pop().ok_or(EngineError::NoTokens)
    }

    /// Runs several sequences in one pass: each item's tokens continue its own cache. The
    /// matrices (projections, feed-forward, output) see the rows of every item at once,
    /// so their weights are read once per step rather than once per sequence; attention
    /// runs per item over its own cache. Returns, per item in order, the logits of its
    /// last `rows` positions (`[rows, vocab]`, f32).
    ///
    /// On the CPU each row is computed exactly as it would be alone (a matmul row does
    /// not depend on the other rows), so batching changes no token there.
    ///
    /// Errors: an item with no tokens or that would overflow the context window (nothing
    /// is run then), or a tensor operation failed.
    pub fn forward_batch(&self, items: &mut [BatchItem<'_, '_>]) -> Result<Vec<Tensor>> {
        let mut spans = Vec::with_capacity(items.len());
        let mut all = Vec::new();
        for item in items.iter_mut() {
            if item.tokens.is_empty() {
                return Err(EngineError::NoTokens);
            }
            if item.cache.layers.len() != self.layers.len() {
                *item.cache = self.new_cache();
            }
            let start = item.cache.len;
            let seq = item.tokens.len();
            let end = start.saturating_add(seq);
            if end > self.config.context_length {
                return Err(EngineError::PromptTooLong {
                    tokens: end,
                    context: self.config.context_length,
                });
            }
            spans.push(Span {
                offset: all.len(),
                start,
                seq,
                rows: item.rows.clamp(1, seq),
            });
            all.extend_from_slice(item.tokens);
        }
        if all.is_empty() {
            return Ok(Vec::new());
        }
        if self.host_rope.is_some() {
            return self.forward_host(items, &spans, &all);
        }
        let ids = Tensor::new(all.as_slice(), &self.device)?;
        let mut x = self.embeddings.index_select(&ids, 0)?;
        // Masks and rotary slices for candle's attention.
        let per_item = spans
            .iter()
            .map(|s| {
                Ok(SpanTables {
                    mask: causal_mask(s.seq, s.start, &self.device)?,
                    cos: self.cos.narrow(0, s.start, s.seq)?,
                    sin: self.sin.narrow(0, s.start, s.seq)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.config.rms_eps)?;
            let [mut q, mut k, mut v] = layer.qkv.forward::<3>(&h)?;
            if let Some([bq, bk, bv]) = &layer.biases {
                q = q.broadcast_add(bq)?;
                k = k.broadcast_add(bk)?;
                v = v.broadcast_add(bv)?;
            }
            let y = self.attention_layer(l, [q, k, v], &spans, &per_item, items)?;
            x = (x + layer.wo.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.config.rms_eps)?;
            let [gate, up] = layer.gate_up.forward::<2>(&h)?;
            let gate = candle_nn::ops::silu(&gate)?;
            x = (x + layer.w_down.forward(&(gate * up)?)?)?;
        }
        for (span, item) in spans.iter().zip(items.iter_mut()) {
            item.cache.len = span.start + span.seq;
        }
        // Only the rows that become logits go through the final norm and the output.
        let picked: Vec<Tensor> = spans
            .iter()
            .map(|s| x.narrow(0, s.offset + s.seq - s.rows, s.rows))
            .collect::<candle_core::Result<_>>()?;
        let x = if picked.len() == 1 {
            picked.into_iter().next().ok_or(EngineError::NoTokens)?
        } else {
            Tensor::cat(&picked, 0)?
        };
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.config.rms_eps)?;
        let logits = self.output.forward(&x)?.to_dtype(DType::F32)?;
        let mut out = Vec::with_capacity(spans.len());
        let mut at = 0;
        for s in &spans {
            out.push(logits.narrow(0, at, s.rows)?);
            at += s.rows;
        }
        Ok(out)
    }

    /// Attention of layer `l` for every item (`q`, `k`, `v`: the rows of all items) on a
    /// GPU, per item through candle, returning `[rows, dim]`. (The CPU's is
    /// [`Llama::host_attention`].)
    fn attention_layer(
        &self,
        l: usize,
        [q, k, v]: [Tensor; 3],
        spans: &[Span],
        tables: &[SpanTables],
        items: &mut [BatchItem<'_, '_>],
    ) -> Result<Tensor> {
        let mut outs = Vec::with_capacity(spans.len());
        for ((span, tables), item) in spans.iter().zip(tables).zip(items.iter_mut()) {
            let Some(LayerKv::Device(slot)) = item.cache.layers.get_mut(l) else {
                return Err(cache_mismatch());
            };
            let part = |t: &Tensor| t.narrow(0, span.offset, span.seq);
            outs.push(self.attention(&part(&q)?, &part(&k)?, &part(&v)?, tables, slot)?);
        }
        Ok(if outs.len() == 1 {
            outs.pop().ok_or(EngineError::NoTokens)?
        } else {
            Tensor::cat(&outs, 0)?
        })
    }

    /// Attention of one sequence's new positions (`q`, `k`, `v`: `[seq, heads * hd]`)
    /// over its device cache, which takes the new keys and values, through candle's
    /// matmuls; returns `[seq, dim]`.
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        tables: &SpanTables,
        cache: &mut candle_nn::kv_cache::KvCache,
    ) -> Result<Tensor> {
        let c = &self.config;
        let seq = q.dim(0)?;
        let hd = c.head_dim();
        let heads = |t: &Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((1, seq, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let (q, k, v) = (
            heads(q, c.n_heads)?,
            heads(k, c.n_kv_heads)?,
            heads(v, c.n_kv_heads)?,
        );
        let rope = if c.arch.rope_halves() {
            candle_nn::rotary_emb::rope
        } else {
            candle_nn::rotary_emb::rope_i
        };
        let q = rope(&q, &tables.cos, &tables.sin)?;
        let k = rope(&k, &tables.cos, &tables.sin)?;
        let (k, v) = cache.append(&k, &v)?;
        // The query heads that share a key/value head are consecutive: grouped as the rows
        // of one matrix, they multiply their key/value head where it lies in the cache,
        // which is never copied per step.
        let groups = c.n_kv_heads;
        let rep = c.n_heads / groups;
        let len = k.dim(2)?;
        let q = q.reshape((1, groups, rep * seq, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        // k.t() is a transposed view; the matmul reads it through its strides, no copy.
        let mut att = (q.matmul(&k.t()?)? * scale)?;
        if let Some(m) = &tables.mask {
            att = att
                .reshape((1, groups, rep, seq, len))?
                .broadcast_add(m)?
                .reshape((1, groups, rep * seq, len))?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.reshape((1, c.n_heads, seq, hd))?;
        Ok(y.transpose(1, 2)?.reshape((seq, c.dim))?)
    }
}

/// The first `n` values of `rows` and the rest.
fn split_rows(rows: &mut [f32], n: usize) -> Result<(&mut [f32], &mut [f32])> {
    rows.split_at_mut_checked(n).ok_or_else(cache_mismatch)
}

/// A cache whose layers do not match the model (made by another model or device).
fn cache_mismatch() -> EngineError {
    EngineError::Compute(candle_core::Error::Msg(
        "the sequence's cache does not belong to this model's device".into(),
    ))
}

/// One sequence of a batched forward pass: its new tokens, its cache, and how many of its
/// last positions to return logits for.
pub struct BatchItem<'t, 'c> {
    pub tokens: &'t [u32],
    pub cache: &'c mut KvCache,
    pub rows: usize,
}

/// Where one item's rows sit in the batch, and its positions.
struct Span {
    offset: usize,
    start: usize,
    seq: usize,
    rows: usize,
}

/// The per-item inputs of attention: mask and rotary tables at its positions.
struct SpanTables {
    mask: Option<Tensor>,
    cos: Tensor,
    sin: Tensor,
}

/// The additive causal mask of `seq` new positions after `start` cached ones: 0 where a
/// query may look, minus infinity where it may not. None for a single position.
fn causal_mask(seq: usize, start: usize, device: &Device) -> Result<Option<Tensor>> {
    if seq <= 1 {
        return Ok(None);
    }
    let total = start + seq;
    let data: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(data, (seq, total), device)?))
}

/// Cosine and sine tables of the rotary embedding for every position of the context.
fn rope_tables(c: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = c.head_dim();
    let inv: Vec<f32> = (0..hd)
        .step_by(2)
        .map(|i| 1.0 / c.rope_base.powf(i as f32 / hd as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
    let pos = Tensor::arange(0u32, c.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((c.context_length, 1))?;
    let angles = pos.matmul(&inv)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// The log-softmax of a `[.., vocab]` logits tensor.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(logits, D::Minus1)?)
}
