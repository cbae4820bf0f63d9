//! Models made from a seed: the built-in `fai-tiny` that serves the devnet and the tests,
//! larger ones for benchmarks, and models with real-style vocabularies (SentencePiece,
//! byte-level BPE) and the `qwen2` architecture for tests. Each is a real GGUF file,
//! written deterministically (same spec, same bytes, same model id on every machine) and
//! loaded by the same code as any downloaded model.
//!
//! Its weights are random, so its text is nonsense by design: it exists so that every
//! node can run, verify and settle inference without downloading anything.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::chat::PLAIN_TEMPLATE;
use crate::error::{EngineError, Result};
use crate::gguf::read_content;
use crate::model::Arch;
use crate::tokenizer::ByteTokenizer;

/// The file name of the built-in model in a model directory.
pub const FAI_TINY_FILE: &str = "fai-tiny.gguf";

/// The vocabulary written into a generated model.
#[derive(Debug, Clone)]
pub enum TinyVocab {
    /// `fai-tiny`'s byte tokenizer.
    Bytes,
    /// `size` tokens described by `tokenizer.ggml.*` entries (model, tokens, types...).
    Metadata {
        size: usize,
        entries: Vec<(String, Value)>,
    },
}

impl TinyVocab {
    pub fn size(&self) -> usize {
        match self {
            TinyVocab::Bytes => ByteTokenizer::VOCAB_SIZE,
            TinyVocab::Metadata { size, .. } => *size,
        }
    }
}

/// The shape and seed of a generated model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub name: String,
    pub arch: Arch,
    pub vocab: TinyVocab,
    /// The chat template stored in the file.
    pub chat_template: String,
    pub seed: u64,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ff_dim: usize,
    pub context_length: usize,
    /// Storage of the matrices (Q8_0, Q4_0 or F32).
    pub dtype: GgmlDType,
    /// Scale of the output projection: larger makes the next-token distribution peakier.
    pub output_scale: f32,
}

impl TinySpec {
    /// `fai-tiny`: 64-wide, 2 layers, byte vocabulary, 2,048 tokens of context.
    pub fn fai_tiny() -> Self {
        TinySpec {
            name: "fai-tiny".into(),
            arch: Arch::Llama,
            vocab: TinyVocab::Bytes,
            chat_template: PLAIN_TEMPLATE.into(),
            seed: 0x00fa_1717,
            dim: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            ff_dim: 128,
            context_length: 2048,
            dtype: GgmlDType::Q8_0,
            output_scale: 6.0,
        }
    }

    /// A model 8x wider than fai-tiny (512 wide, 4 layers, 8 query and 2 key/value
    /// heads), Q8_0, byte vocabulary: wide enough for near-ties between kernels, which
    /// fai-tiny's peaked logits hide, to show. The tests and `bench verify` use it.
    pub fn wide() -> Self {
        TinySpec {
            name: "fai-wide-512".into(),
            seed: 2,
            dim: 512,
            n_layers: 4,
            n_heads: 8,
            n_kv_heads: 2,
            ff_dim: 1536,
            context_length: 1024,
            ..TinySpec::fai_tiny()
        }
    }

    /// The benchmark shapes, byte vocabulary: `100m` (768 wide, 12 layers, about 85M
    /// weights), `100m-gqa` (the same with 4 key/value heads for 12 query heads), `1b` (2048 wide, 22 layers, grouped key/value heads: TinyLlama's body),
    /// `8b` (4096 wide, 32 layers: Llama 3 8B's body).
    pub fn bench_shape(shape: &str, dtype: GgmlDType) -> Option<Self> {
        let (dim, n_layers, n_heads, n_kv_heads, ff_dim) = match shape {
            "100m" => (768, 12, 12, 12, 2048),
            "100m-gqa" => (768, 12, 12, 4, 2048),
            "1b" => (2048, 22, 32, 4, 5632),
            "8b" => (4096, 32, 32, 8, 14336),
            _ => return None,
        };
        Some(TinySpec {
            name: format!("bench-{shape}-{dtype:?}").to_lowercase(),
            seed: 0xbe7c,
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            ff_dim,
            context_length: 1024,
            dtype,
            output_scale: 6.0,
            ..TinySpec::fai_tiny()
        })
    }

    /// The number of weights.
    pub fn parameters(&self) -> usize {
        let v = self.vocab.size();
        let hd = self.dim / self.n_heads;
        let kv = self.n_kv_heads * hd;
        let per_layer =
            2 * self.dim + self.dim * self.dim * 2 + 2 * self.dim * kv + 3 * self.dim * self.ff_dim;
        2 * v * self.dim + self.dim + self.n_layers * per_layer
    }
}

/// Writes the model of `spec` as GGUF to `path` (through a temporary file, so a crash
/// never leaves half a model behind).
pub fn write_gguf(spec: &TinySpec, path: &Path) -> Result<()> {
    let device = Device::Cpu;
    let mut rng = ChaCha20Rng::seed_from_u64(spec.seed);
    let v = spec.vocab.size();
    let hd = spec.dim / spec.n_heads.max(1);
    let kv = spec.n_kv_heads * hd;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let matrix = |rng: &mut ChaCha20Rng,
                  name: String,
                  rows: usize,
                  cols: usize,
                  scale: f32|
     -> Result<(String, QTensor)> {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
            .collect();
        let t = Tensor::from_vec(data, (rows, cols), &device)?;
        Ok((name, QTensor::quantize(&t, spec.dtype)?))
    };
    let ones = |name: String, n: usize| -> Result<(String, QTensor)> {
        let t = Tensor::ones(n, candle_core::DType::F32, &device)?;
        Ok((name, QTensor::quantize(&t, GgmlDType::F32)?))
    };
    let fan = |n: usize| 1.0 / (n as f32).sqrt();
    tensors.push(matrix(
        &mut rng,
        "token_embd.weight".into(),
        v,
        spec.dim,
        1.0,
    )?);
    for i in 0..spec.n_layers {
        let p = format!("blk.{i}");
        tensors.push(ones(format!("{p}.attn_norm.weight"), spec.dim)?);
        tensors.push(matrix(
            &mut rng,
            format!("{p}.attn_q.weight"),
            spec.dim,
            spec.dim,
            fan(spec.dim),
        )?);
        tensors.push(matrix(
            &mut rng,
            format!("{p}.attn_k.weight"),
            kv,
            spec.dim,
            fan(spec.dim),
        )?);
        tensors.push(matrix(
            &mut rng,
            format!("{p}.attn_v.weight"),
            kv,
            spec.dim,
            fan(spec.dim),
        )?);
        tensors.push(matrix(
            &mut rng,
            format!("{p}.attn_output.weight"),
            spec.dim,
            spec.dim,
            fan(spec.dim),
        )?);
        if spec.arch == Arch::Qwen2 {
            for (name, n) in [("attn_q", spec.dim), ("attn_k", kv), ("attn_v", kv)] {
                let data: Vec<f32> = (0..n).map(|_| rng.gen_range(-0.5f32..0.5)).collect();
                let t = Tensor::from_vec(data, n, &device)?;
                tensors.push((
                    format!("{p}.{name}.bias"),
                    QTensor::quantize(&t, GgmlDType::F32)?,
                ));
            }
        }
        tensors.push(ones(format!("{p}.ffn_norm.weight"), spec.dim)?);
        tensors.push(matrix(
            &mut rng,
            format!("{p}.ffn_gate.weight"),
            spec.ff_dim,
            spec.dim,
            fan(spec.dim),
        )?);
        tensors.push(matrix(
            &mut rng,
            format!("{p}.ffn_up.weight"),
            spec.ff_dim,
            spec.dim,
            fan(spec.dim),
        )?);
        tensors.push(matrix(
            &mut rng,
            format!("{p}.ffn_down.weight"),
            spec.dim,
            spec.ff_dim,
            fan(spec.ff_dim),
        )?);
    }
    tensors.push(ones("output_norm.weight".into(), spec.dim)?);
    tensors.push(matrix(
        &mut rng,
        "output.weight".into(),
        v,
        spec.dim,
        spec.output_scale * fan(spec.dim),
    )?);

    let u = |x: usize| Value::U32(u32::try_from(x).unwrap_or(u32::MAX));
    let a = spec.arch.name();
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(spec.name.clone())),
        (format!("{a}.context_length"), u(spec.context_length)),
        (format!("{a}.embedding_length"), u(spec.dim)),
        (format!("{a}.block_count"), u(spec.n_layers)),
        (format!("{a}.feed_forward_length"), u(spec.ff_dim)),
        (format!("{a}.attention.head_count"), u(spec.n_heads)),
        (format!("{a}.attention.head_count_kv"), u(spec.n_kv_heads)),
        (format!("{a}.rope.dimension_count"), u(hd)),
        (format!("{a}.rope.freq_base"), Value::F32(10_000.0)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
    ];
    match &spec.vocab {
        TinyVocab::Bytes => metadata.extend([
            (
                "tokenizer.ggml.model".into(),
                Value::String(ByteTokenizer::KIND.into()),
            ),
            (
                "tokenizer.ggml.bos_token_id".into(),
                u(ByteTokenizer::BOS as usize),
            ),
            (
                "tokenizer.ggml.eos_token_id".into(),
                u(ByteTokenizer::EOS as usize),
            ),
        ]),
        TinyVocab::Metadata { entries, .. } => metadata.extend(entries.iter().cloned()),
    }
    metadata.push((
        "tokenizer.chat_template".into(),
        Value::String(spec.chat_template.clone()),
    ));
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();

    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("gguf.partial");
    {
        let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
        gguf_file::write(&mut w, &md, &ts)?;
        std::io::Write::flush(&mut w).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// The path of `fai-tiny` in `dir`, writing it first if it is not there or was written
/// by an older build (another chat template).
pub fn ensure_fai_tiny(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(FAI_TINY_FILE);
    let current = path.exists()
        && read_content(&path).is_ok_and(|c| {
            c.metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .is_some_and(|t| t == PLAIN_TEMPLATE)
        });
    if !current {
        write_gguf(&TinySpec::fai_tiny(), &path)?;
    }
    Ok(path)
}
