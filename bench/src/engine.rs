//! `infer-node bench engine` and `bench verify`: the inference engine against the
//! physical limit of the device, measured in the same run.
//!
//! - `engine`: a Llama model of the chosen shape generated on the spot (Q8_0, Q4_0 and
//!   Q4_K, the same architecture code as any model): prefill and decode tokens per second,
//!   and the roofline: decode must read every weight once per token, so it cannot beat
//!   the device's memory bandwidth (a copy probe on the same device) divided by the
//!   weight bytes. `ratio` = decode / roofline. Then batched decoding: tokens per second
//!   over all streams at 1, 8, 32 and 64 streams, and the speed-up over one stream.
//! - `verify`: for full-length outputs of the 100M model, the time of `replay` (alone and
//!   batched over several answers) and `judge` over the time to generate, and the fraud
//!   suite's table (every kind of forgery of [`fai_engine::fraud`]) on fai-tiny and a
//!   model 8x wider: the share rejected, the forgeries replay accepts because every
//!   difference is a near-tie, and the detection among the rest.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use fai_engine::fraud;
use fai_engine::generate::generate_batch;
use fai_engine::model::BatchItem;
use fai_engine::sampling::argmax;
use fai_engine::tiny::{write_gguf, TinySpec};
use fai_engine::{
    generate, DeviceChoice, GenerateRequest, Judge, LoadedModel, Replay, SamplingParams, Verifier,
};
use serde::Serialize;

/// The shapes `--shape` accepts.
pub const SHAPES: [&str; 4] = ["100m", "100m-gqa", "1b", "8b"];

/// Writes and loads the benchmark model of `shape` and `dtype`; returns it with the bytes
/// a decode step reads.
fn load_bench_model(
    dir: &Path,
    shape: &str,
    dtype: GgmlDType,
    device: &Device,
) -> Result<(LoadedModel, u64, usize)> {
    let spec = TinySpec::bench_shape(shape, dtype)
        .with_context(|| format!("no benchmark shape {shape:?}: use one of {SHAPES:?}"))?;
    let path = dir.join(format!("{}.gguf", spec.name));
    write_gguf(&spec, &path)?;
    let model = LoadedModel::load(&path, device)?;
    // Decode reads every matrix once per token; the embedding table only one row.
    let embed = (258 * spec.dim) as u64 * dtype.type_size() as u64 / dtype.block_size() as u64;
    let bytes = std::fs::metadata(&path)?.len().saturating_sub(embed);
    Ok((model, bytes, spec.parameters()))
}

/// Memory bandwidth of a large copy on `device`, bytes per second (reads plus writes):
/// host memory for the CPU, device memory (device to device) for a GPU.
fn copy_bandwidth(device: &Device) -> Result<f64> {
    if device.is_cpu() {
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
        return Ok(2.0 * size as f64 / best);
    }
    let floats = 256usize << 20;
    let src = Tensor::ones(floats, DType::F32, device)?;
    drop(src.copy()?);
    device.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let t = Instant::now();
        let dst = src.copy()?;
        device.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(dst);
    }
    Ok(2.0 * (floats * 4) as f64 / best)
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
pub struct BatchRow {
    pub dtype: String,
    pub streams: usize,
    /// Decoded tokens per second over all streams.
    pub tokens_per_sec: f64,
    /// Over one stream's rate in the same run.
    pub speedup: f64,
}

#[derive(Serialize)]
pub struct EngineReport {
    pub device: String,
    pub shape: String,
    pub bandwidth_bytes_per_sec: f64,
    pub threads: usize,
    /// The first model's figures, repeated at the top level for scripts.
    pub decode_tokens_per_sec: f64,
    pub prefill_tokens_per_sec: f64,
    pub roofline_tokens_per_sec: f64,
    pub ratio: f64,
    pub models: Vec<EngineRow>,
    pub batched: Vec<BatchRow>,
}

/// Options of `bench engine`.
pub struct EngineOptions {
    pub device: DeviceChoice,
    pub shape: String,
    pub dtypes: Vec<GgmlDType>,
    pub prefill: usize,
    pub decode: usize,
    /// Stream counts of the batched figures; empty skips them.
    pub streams: Vec<usize>,
}

impl EngineOptions {
    pub fn new(device: DeviceChoice, shape: &str, prefill: usize, decode: usize) -> Self {
        EngineOptions {
            device,
            shape: shape.to_string(),
            dtypes: vec![GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4K],
            prefill,
            decode,
            streams: vec![1, 8, 32, 64],
        }
    }
}

/// Parses a `--dtype` name.
pub fn parse_dtype(name: &str) -> Result<GgmlDType> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q4_k" | "q4k" => GgmlDType::Q4K,
        other => anyhow::bail!("no dtype {other:?}: use q8_0, q4_0 or q4_k"),
    })
}

/// One forward pass's logits of one row, on the host (which waits for the device).
fn row(t: &Tensor) -> Result<Vec<f32>> {
    let rows = t.dim(0)?;
    Ok(t.get(rows.saturating_sub(1))?.to_vec1::<f32>()?)
}

/// One batched forward pass: each cache reads its input; the greedy next token of each.
fn greedy_step(
    model: &LoadedModel,
    inputs: &[Vec<u32>],
    caches: &mut [fai_engine::model::KvCache],
) -> Result<Vec<Vec<u32>>> {
    let mut items: Vec<BatchItem<'_, '_>> = inputs
        .iter()
        .zip(caches.iter_mut())
        .map(|(tokens, cache)| BatchItem {
            tokens,
            cache,
            rows: 1,
        })
        .collect();
    model
        .model
        .forward_batch(&mut items)?
        .iter()
        .map(|t| row(t).map(|r| vec![argmax(&r)]))
        .collect()
}

/// Greedy decoding of `streams` sequences together for `steps` steps after a short
/// prompt each: decoded tokens per second over all streams.
fn batched_rate(model: &LoadedModel, streams: usize, steps: usize) -> Result<f64> {
    let mut caches: Vec<_> = (0..streams).map(|_| model.model.new_cache()).collect();
    let prompts: Vec<Vec<u32>> = (0..streams)
        .map(|s| (0..16).map(|i| ((s * 31 + i * 7) % 256) as u32).collect())
        .collect();
    let mut next = greedy_step(model, &prompts, &mut caches)?;
    let t = Instant::now();
    for _ in 0..steps {
        next = greedy_step(model, &next, &mut caches)?;
    }
    Ok((streams * steps) as f64 / t.elapsed().as_secs_f64())
}

pub fn engine(opts: &EngineOptions) -> Result<EngineReport> {
    let dir = tempfile::tempdir()?;
    let device = opts.device.open()?;
    let bandwidth = copy_bandwidth(&device)?;
    let mut models = Vec::new();
    let mut batched = Vec::new();
    for (n, dtype) in opts.dtypes.iter().enumerate() {
        let (model, bytes, parameters) =
            load_bench_model(dir.path(), &opts.shape, *dtype, &device)?;
        let prompt: Vec<u32> = (0..opts.prefill).map(|i| (i * 7 % 256) as u32).collect();
        // Warm up once, then measure: the best of three runs, as the bandwidth probe.
        row(&model.model.forward_last(
            &prompt[..8.min(prompt.len())],
            &mut model.model.new_cache(),
            1,
        )?)?;
        let (mut prefill, mut decode) = (0f64, 0f64);
        for _ in 0..3 {
            let mut cache = model.model.new_cache();
            let t = Instant::now();
            let logits = row(&model.model.forward_last(&prompt, &mut cache, 1)?)?;
            prefill = prefill.max(prompt.len() as f64 / t.elapsed().as_secs_f64());
            let mut token = argmax(&logits);
            let t = Instant::now();
            for _ in 0..opts.decode {
                token = argmax(&row(&model.model.forward_last(&[token], &mut cache, 1)?)?);
            }
            decode = decode.max(opts.decode as f64 / t.elapsed().as_secs_f64());
        }
        let roofline = bandwidth / bytes as f64;
        models.push(EngineRow {
            dtype: format!("{dtype:?}"),
            parameters,
            weight_bytes: bytes,
            prefill_tokens_per_sec: prefill,
            decode_tokens_per_sec: decode,
            roofline_tokens_per_sec: roofline,
            ratio: decode / roofline,
        });
        // Batched decoding on the first dtype only: the ratio between stream counts is
        // the figure, and one model shows it.
        if n == 0 {
            let steps = opts.decode.clamp(4, 32);
            let mut single = None;
            for &streams in &opts.streams {
                let rate = batched_rate(&model, streams, steps)?;
                let one = *single.get_or_insert(rate);
                batched.push(BatchRow {
                    dtype: format!("{dtype:?}"),
                    streams,
                    tokens_per_sec: rate,
                    speedup: rate / one,
                });
            }
        }
    }
    let first = models.first().context("no dtype to measure")?;
    Ok(EngineReport {
        device: fai_engine::device::describe(&device).kind,
        shape: opts.shape.clone(),
        bandwidth_bytes_per_sec: bandwidth,
        threads: candle_core::utils::get_num_threads(),
        decode_tokens_per_sec: first.decode_tokens_per_sec,
        prefill_tokens_per_sec: first.prefill_tokens_per_sec,
        roofline_tokens_per_sec: first.roofline_tokens_per_sec,
        ratio: first.ratio,
        models,
        batched,
    })
}

#[derive(Serialize)]
pub struct FraudRow {
    pub method: String,
    pub model: String,
    pub kind: String,
    pub cases: usize,
    pub rejected: usize,
    /// Rejected among all cases of the kind.
    pub rate: f64,
    /// Replay: forgeries accepted because every difference is a near-tie.
    pub near_tie_only: usize,
    /// Rejected among the forgeries that differ somewhere other than at a near-tie.
    pub detection: f64,
    /// Replay: rejections every verifier within the drift bound makes alike.
    pub gross: usize,
}

#[derive(Serialize)]
pub struct VerifyReport {
    pub device: String,
    pub output_tokens: usize,
    pub generate_seconds: f64,
    pub replay_seconds: f64,
    pub judge_seconds: f64,
    /// One replay over one single-stream generation.
    pub replay_cost_ratio: f64,
    pub judge_cost_ratio: f64,
    pub replay_accepted: bool,
    /// Answers replayed together in `replay_batched_cost_ratio`.
    pub batch: usize,
    /// Replaying `batch` answers in one batched pass, over generating them one by one.
    pub replay_batched_cost_ratio: f64,
    /// The same replay over generating the answers as one batch (continuous batching).
    pub replay_over_batched_generation: f64,
    /// Sealing the answer's text to a verifier set of five and signing it (the serving
    /// node), seconds.
    pub seal_seconds: f64,
    /// Checking, opening and decoding it, and checking it against its hashes (one
    /// verifier), seconds.
    pub open_seconds: f64,
    /// Sealing and opening over generating the answer (goal < 0.01).
    pub seal_cost_ratio: f64,
    pub fraud: Vec<FraudRow>,
}

/// Sampled requests whose answers run to `tokens` (seeds are tried until the random
/// model does not stop early), with each answer and the seconds it took alone.
fn full_length_answers(
    model: &LoadedModel,
    tokens: u32,
    count: usize,
) -> Result<Vec<(GenerateRequest, Vec<u32>, f64)>> {
    let mut out = Vec::new();
    let mut seed = 9u64;
    while out.len() < count && seed < 9 + 40 * count as u64 {
        let request = GenerateRequest {
            system: "You are a helpful assistant.".into(),
            input: format!(
                "Explain how a proof-of-work chain decides which branch wins ({}).",
                out.len()
            ),
            sampling: SamplingParams {
                max_tokens: tokens,
                temperature: 0.7,
                top_k: 40,
                seed,
                ..SamplingParams::default()
            },
            ..GenerateRequest::default()
        };
        seed += 1;
        let t = Instant::now();
        let g = generate(model, &request, &AtomicBool::new(false), |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        if g.tokens.len() as u32 == tokens {
            out.push((request, g.tokens, secs));
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "the benchmark model never produced {tokens} tokens"
    );
    Ok(out)
}

/// The fraud table of `replay` and `judge` on `model` (with the forgers' models of the same
/// shape).
fn fraud_rows(
    model: &LoadedModel,
    forgers: &fraud::Forgers,
    prompts: &[String],
    table: &mut Vec<FraudRow>,
) -> Result<()> {
    let cases = fraud::build(model, forgers, prompts, 64, 17)?;
    let rows = fraud::evaluate_replay(&Replay::default(), model, &cases)?
        .into_iter()
        .chain(fraud::evaluate(&Judge, model, &cases)?);
    for row in rows {
        table.push(FraudRow {
            method: row.method.into(),
            model: model.name.clone(),
            kind: row.kind.into(),
            cases: row.cases,
            rejected: row.rejected,
            rate: row.rate(),
            near_tie_only: row.near_tie_only,
            detection: row.detection(),
            gross: row.gross,
        });
    }
    Ok(())
}

pub fn verify(
    device: DeviceChoice,
    output_tokens: u32,
    fraud_prompts: usize,
) -> Result<VerifyReport> {
    let dir = tempfile::tempdir()?;
    let device = device.open()?;
    let (model, _, _) = load_bench_model(dir.path(), "100m", GgmlDType::Q8_0, &device)?;
    const BATCH: usize = 8;
    let answers = full_length_answers(&model, output_tokens, BATCH)?;
    let (request, tokens, generate_seconds) = &answers[0];
    let replay = Replay::default();
    let t = Instant::now();
    let verdict = replay.verify(&model, request, tokens)?;
    let replay_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    Judge.verify(&model, request, tokens)?;
    let judge_seconds = t.elapsed().as_secs_f64();

    let cases: Vec<(&GenerateRequest, &[u32])> =
        answers.iter().map(|(r, o, _)| (r, o.as_slice())).collect();
    let t = Instant::now();
    let verdicts = replay.verify_batch(&model, &cases);
    let batched_replay = t.elapsed().as_secs_f64();
    for v in verdicts {
        anyhow::ensure!(v?.accepted, "an honest answer failed its batched replay");
    }
    let alone: f64 = answers.iter().map(|(_, _, s)| s).sum();
    let requests: Vec<GenerateRequest> = answers.iter().map(|(r, _, _)| r.clone()).collect();
    let t = Instant::now();
    generate_batch(&model, &requests)?;
    let batched_generation = t.elapsed().as_secs_f64();

    let (seal_seconds, open_seconds) = seal_cost(&model, request, tokens)?;

    let mut table = Vec::new();
    let prompts: Vec<String> = (0..fraud_prompts)
        .map(|i| format!("question {i}: what is {i} times {}?", i + 3))
        .collect();
    for spec in [TinySpec::fai_tiny(), TinySpec::wide()] {
        let path = dir.path().join(format!("{}.gguf", spec.name));
        write_gguf(&spec, &path)?;
        let m = LoadedModel::load(&path, &device)?;
        let forgers = fraud::Forgers::for_spec(&spec, dir.path(), &device)?;
        fraud_rows(&m, &forgers, &prompts, &mut table)?;
    }
    Ok(VerifyReport {
        device: fai_engine::device::describe(&device).kind,
        output_tokens: tokens.len(),
        generate_seconds: *generate_seconds,
        replay_seconds,
        judge_seconds,
        replay_cost_ratio: replay_seconds / generate_seconds,
        judge_cost_ratio: judge_seconds / generate_seconds,
        replay_accepted: verdict.accepted,
        batch: answers.len(),
        replay_batched_cost_ratio: batched_replay / alone,
        replay_over_batched_generation: batched_replay / batched_generation,
        seal_seconds,
        open_seconds,
        seal_cost_ratio: (seal_seconds + open_seconds) / generate_seconds,
        fraud: table,
    })
}

/// Seconds to seal one answer's text to a verifier set of five and sign it (what the
/// serving node does), and to check, open, decode and check it against its hashes (what
/// each verifier does): the mean of 20 runs of each.
fn seal_cost(model: &LoadedModel, request: &GenerateRequest, tokens: &[u32]) -> Result<(f64, f64)> {
    use fai_inference_chain::served::ServedInference;
    use fai_inference_chain::types::{Inference, InferenceStub, Prompt, ResultReceipt, Sampling};
    use fai_primitives::seal::SealingSecret;
    use fai_primitives::{Amount, SecretKey, Signature};
    const RUNS: u32 = 20;
    let (user, node) = (SecretKey::generate(), SecretKey::generate());
    let verifiers: Vec<(SecretKey, SealingSecret)> = (0..5)
        .map(|_| {
            let key = SecretKey::generate();
            let secret = SealingSecret::derive(&key);
            (key, secret)
        })
        .collect();
    let to: Vec<_> = verifiers
        .iter()
        .map(|(k, s)| (k.public_key().hash160(), s.public()))
        .collect();
    let prompt = Prompt {
        system: request.system.clone(),
        context: vec![],
        input: request.input.clone(),
    };
    let output = model.tokenizer.decode(tokens);
    // One answer per run, each its own transaction: the process keeps the signatures it
    // verified (`fai_primitives::sig_cache`), and opening the same answer again would
    // check none of its signatures after the first run.
    let mut answers = Vec::new();
    for nonce in 0..u64::from(RUNS) {
        let mut stub = InferenceStub {
            sender: user.public_key(),
            nonce,
            chain_id: 1,
            model: model.id.0,
            prompt_hash: prompt.hash(),
            sampling: Sampling {
                max_tokens: u32::try_from(tokens.len())?.max(1),
                temperature_milli: 700,
                top_p_milli: 1000,
                top_k: 40,
                seed: request.sampling.seed,
                stop: vec![],
            },
            max_fee: Amount::from_units(1_000)?,
            expiry: 1_000,
            signature: Signature([0; 64]),
        };
        stub.sign(&user);
        let receipt = ResultReceipt::new_signed(stub.txid(), &output, tokens, &node);
        answers.push(ServedInference {
            inference: Inference { stub, receipt },
            prompt: prompt.clone(),
            output: output.clone(),
            tokens: tokens.to_vec(),
        });
    }
    let t = Instant::now();
    let mut sealed = Vec::new();
    for served in &answers {
        sealed.push(served.seal(&node, &to)?);
    }
    let seal = t.elapsed().as_secs_f64() / f64::from(RUNS);
    let (me, secret) = (to.first().context("no verifier")?.0, &verifiers[0].1);
    let t = Instant::now();
    for one in &sealed {
        let opened = one.open(&me, secret).map_err(anyhow::Error::msg)?;
        opened.check().map_err(anyhow::Error::msg)?;
    }
    let open = t.elapsed().as_secs_f64() / f64::from(RUNS);
    Ok((seal, open))
}

/// The lines for people of `bench engine`.
pub fn engine_lines(r: &EngineReport) -> String {
    let mut out = Vec::new();
    for m in &r.models {
        out.push(format!(
            "engine {} {} on {}: {:.1}M params, prefill {:.0} tok/s, decode {:.1} tok/s; roofline {:.1} tok/s ({:.1} GB/s over {:.0} MB); ratio {:.2} (goal >= 0.6 on the CPU)",
            r.shape,
            m.dtype,
            r.device,
            m.parameters as f64 / 1e6,
            m.prefill_tokens_per_sec,
            m.decode_tokens_per_sec,
            m.roofline_tokens_per_sec,
            r.bandwidth_bytes_per_sec / 1e9,
            m.weight_bytes as f64 / 1e6,
            m.ratio
        ));
    }
    for b in &r.batched {
        out.push(format!(
            "engine {} {} on {}: {:>2} streams decode {:.1} tok/s in all, {:.2}x one stream",
            r.shape, b.dtype, r.device, b.streams, b.tokens_per_sec, b.speedup
        ));
    }
    out.join("\n")
}

/// The lines for people of `bench verify`.
pub fn verify_lines(r: &VerifyReport) -> String {
    let mut out = vec![format!(
        "verify on {}: {} tokens generated in {:.2} s; replay {:.3} s (ratio {:.3}), judge {:.3} s (ratio {:.3}); {} answers replayed in one batch: ratio {:.3} over generating them one by one, {:.3} over generating them as a batch (goal <= 0.2)",
        r.device,
        r.output_tokens,
        r.generate_seconds,
        r.replay_seconds,
        r.replay_cost_ratio,
        r.judge_seconds,
        r.judge_cost_ratio,
        r.batch,
        r.replay_batched_cost_ratio,
        r.replay_over_batched_generation
    )];
    out.push(format!(
        "sealing: {:.3} ms to seal the answer to 5 verifiers and sign it, {:.3} ms to open and check it; ratio {:.5} of generating it (goal < 0.01)",
        r.seal_seconds * 1e3,
        r.open_seconds * 1e3,
        r.seal_cost_ratio
    ));
    out.push(format!(
        "  {:<7} {:<14} {:<20} {:>5} {:>9} {:>6} {:>14} {:>10}",
        "method", "model", "kind", "cases", "rejected", "gross", "near-tie-only", "detection"
    ));
    for row in &r.fraud {
        let detection = if row.method == "replay" && row.kind != "honest" {
            format!("{:.1}%", row.detection * 100.0)
        } else {
            "-".into()
        };
        out.push(format!(
            "  {:<7} {:<14} {:<20} {:>5} {:>8.1}% {:>6} {:>14} {:>10}",
            row.method,
            row.model,
            row.kind,
            row.cases,
            row.rate * 100.0,
            row.gross,
            row.near_tie_only,
            detection
        ));
    }
    out.join("\n")
}
