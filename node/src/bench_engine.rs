//! `infer-node bench engine` and `bench verify`: the inference engine against the
//! physical limit of this machine, measured in the same run.
//!
//! - `engine`: a ~100M-parameter Llama model generated on the spot (Q8_0, Q4_0 and Q4_K, the
//!   same architecture code as any model): prefill and decode tokens per second, and the
//!   roofline: decode must read every weight once per token, so it cannot beat memory
//!   bandwidth (a copy probe) divided by the weight bytes. `ratio` = decode / roofline.
//! - `verify`: for 256-token outputs of the same model, the time of `replay` and `judge`
//!   over the time to generate, and the fraud suite's table on fai-tiny.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Result;
use candle_core::quantized::GgmlDType;
use candle_core::Device;
use fai_engine::fraud;
use fai_engine::sampling::argmax;
use fai_engine::tiny::{ensure_fai_tiny, write_gguf, TinySpec};
use fai_engine::{generate, GenerateRequest, Judge, LoadedModel, Replay, SamplingParams, Verifier};
use serde::Serialize;

/// The benchmark model: 768 wide, 12 layers, byte vocabulary: about 85M parameters.
fn bench_spec(dtype: GgmlDType) -> TinySpec {
    TinySpec {
        name: format!("bench-100m-{dtype:?}").to_lowercase(),
        seed: 0xbe7c,
        dim: 768,
        n_layers: 12,
        n_heads: 12,
        n_kv_heads: 12,
        ff_dim: 2048,
        context_length: 1024,
        dtype,
        output_scale: 6.0,
        ..TinySpec::fai_tiny()
    }
}

fn load_bench_model(dir: &Path, dtype: GgmlDType) -> Result<(LoadedModel, u64)> {
    let spec = bench_spec(dtype);
    let path = dir.join(format!("{}.gguf", spec.name));
    write_gguf(&spec, &path)?;
    let model = LoadedModel::load(&path, &Device::Cpu)?;
    // Decode reads every matrix once per token; the embedding table only one row.
    let embed = (258 * spec.dim) as u64 * dtype.type_size() as u64 / dtype.block_size() as u64;
    let bytes = std::fs::metadata(&path)?.len().saturating_sub(embed);
    Ok((model, bytes))
}

/// Memory bandwidth of a large copy, bytes per second (reads plus writes).
fn copy_bandwidth() -> f64 {
    let size = 256 << 20;
    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    dst.copy_from_slice(&src); // fault the pages in first
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * size as f64 / best
}

#[derive(Serialize)]
pub struct EngineRow {
    pub dtype: String,
    pub parameters: usize,
    pub weight_bytes: u64,
    pub prefill_tokens_per_sec: f64,
    pub decode_tokens_per_sec: f64,
    pub roofline_tokens_per_sec: f64,
    pub ratio: f64,
}

#[derive(Serialize)]
pub struct EngineReport {
    pub bandwidth_bytes_per_sec: f64,
    pub threads: usize,
    /// The Q8_0 figures, repeated at the top level for scripts.
    pub decode_tokens_per_sec: f64,
    pub prefill_tokens_per_sec: f64,
    pub roofline_tokens_per_sec: f64,
    pub ratio: f64,
    pub models: Vec<EngineRow>,
}

pub fn engine(prefill_tokens: usize, decode_tokens: usize) -> Result<EngineReport> {
    let dir = tempfile::tempdir()?;
    let bandwidth = copy_bandwidth();
    let mut models = Vec::new();
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4K] {
        let (model, bytes) = load_bench_model(dir.path(), dtype)?;
        let prompt: Vec<u32> = (0..prefill_tokens).map(|i| (i * 7 % 256) as u32).collect();
        // Warm up once, then measure: the best of three runs, as the bandwidth probe.
        model.model.forward_last(
            &prompt[..8.min(prompt.len())],
            &mut model.model.new_cache(),
            1,
        )?;
        let (mut prefill, mut decode) = (0f64, 0f64);
        for _ in 0..3 {
            let mut cache = model.model.new_cache();
            let t = Instant::now();
            let logits = model.model.forward_last(&prompt, &mut cache, 1)?;
            prefill = prefill.max(prompt.len() as f64 / t.elapsed().as_secs_f64());
            let mut token = argmax(&logits.get(0)?.to_vec1::<f32>()?);
            let t = Instant::now();
            for _ in 0..decode_tokens {
                let row = model
                    .model
                    .forward_last(&[token], &mut cache, 1)?
                    .get(0)?
                    .to_vec1::<f32>()?;
                token = argmax(&row);
            }
            decode = decode.max(decode_tokens as f64 / t.elapsed().as_secs_f64());
        }
        let roofline = bandwidth / bytes as f64;
        models.push(EngineRow {
            dtype: format!("{dtype:?}"),
            parameters: bench_spec(dtype).parameters(),
            weight_bytes: bytes,
            prefill_tokens_per_sec: prefill,
            decode_tokens_per_sec: decode,
            roofline_tokens_per_sec: roofline,
            ratio: decode / roofline,
        });
    }
    let q8 = &models[0];
    Ok(EngineReport {
        bandwidth_bytes_per_sec: bandwidth,
        threads: candle_core::utils::get_num_threads(),
        decode_tokens_per_sec: q8.decode_tokens_per_sec,
        prefill_tokens_per_sec: q8.prefill_tokens_per_sec,
        roofline_tokens_per_sec: q8.roofline_tokens_per_sec,
        ratio: q8.ratio,
        models,
    })
}

#[derive(Serialize)]
pub struct FraudRow {
    pub method: String,
    pub kind: String,
    pub cases: usize,
    pub rejected: usize,
    pub rate: f64,
}

#[derive(Serialize)]
pub struct VerifyReport {
    pub output_tokens: usize,
    pub generate_seconds: f64,
    pub replay_seconds: f64,
    pub judge_seconds: f64,
    pub replay_cost_ratio: f64,
    pub judge_cost_ratio: f64,
    pub replay_accepted: bool,
    pub fraud: Vec<FraudRow>,
}

pub fn verify(output_tokens: u32, fraud_prompts: usize) -> Result<VerifyReport> {
    let dir = tempfile::tempdir()?;
    let (model, _) = load_bench_model(dir.path(), GgmlDType::Q8_0)?;
    let request = GenerateRequest {
        system: "You are a helpful assistant.".into(),
        input: "Explain how a proof-of-work chain decides which branch wins.".into(),
        sampling: SamplingParams {
            max_tokens: output_tokens,
            temperature: 0.7,
            top_k: 40,
            seed: 9,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    };
    // The output must be full length for the figure to mean what it says: retry seeds
    // until the random model does not stop early.
    let mut request = request;
    let (generation, generate_seconds) = loop {
        let t = Instant::now();
        let g = generate(&model, &request, &AtomicBool::new(false), |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        if g.tokens.len() as u32 == output_tokens || request.sampling.seed > 40 {
            break (g, secs);
        }
        request.sampling.seed += 1;
    };
    let t = Instant::now();
    let verdict = Replay::default().verify(&model, &request, &generation.tokens)?;
    let replay_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    Judge.verify(&model, &request, &generation.tokens)?;
    let judge_seconds = t.elapsed().as_secs_f64();

    let tiny = LoadedModel::load(&ensure_fai_tiny(dir.path())?, &Device::Cpu)?;
    let other_path = dir.path().join("other.gguf");
    write_gguf(&fraud::other_model_spec(), &other_path)?;
    let other = LoadedModel::load(&other_path, &Device::Cpu)?;
    let prompts: Vec<String> = (0..fraud_prompts)
        .map(|i| format!("question {i}: what is {i} times {}?", i + 3))
        .collect();
    let cases = fraud::build(&tiny, &other, &prompts, 48, 17)?;
    let mut table = Vec::new();
    for verifier in [&Replay::default() as &dyn Verifier, &Judge] {
        for row in fraud::evaluate(verifier, &tiny, &cases)? {
            table.push(FraudRow {
                method: row.method.into(),
                kind: row.kind.into(),
                cases: row.cases,
                rejected: row.rejected,
                rate: row.rate(),
            });
        }
    }
    Ok(VerifyReport {
        output_tokens: generation.tokens.len(),
        generate_seconds,
        replay_seconds,
        judge_seconds,
        replay_cost_ratio: replay_seconds / generate_seconds,
        judge_cost_ratio: judge_seconds / generate_seconds,
        replay_accepted: verdict.accepted,
        fraud: table,
    })
}
