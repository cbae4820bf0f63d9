//! `infer-node bench gpu-check`: what a lent GPU machine must tell us, in priority order,
//! each result printed (and appended to `--out`) as one JSON line as soon as it is known,
//! so that a run cut short still reports everything before the cut:
//!
//! 1. the device and its memory;
//! 2. logits of the same tokens on the GPU and on the CPU (largest difference);
//! 3. agreement: answers made on the GPU (alone and decoded in a batch) replayed on the
//!    CPU, and answers made on the CPU replayed on the GPU, greedy and sampled, on
//!    fai-tiny and a model 8x wider: rejections (must be 0) and near-tie flips;
//! 4. `bench engine` at the 1B shape (Q8_0, Q4_K) with batched decoding;
//! 5. `bench verify` on the GPU;
//! 6. `bench engine` at the 8B shape (Q4_K, then Q8_0) where memory allows.
//!
//! A failing step is reported as `{"check": ..., "error": ...}` and the next one runs.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::Device;
use fai_engine::generate::generate_batch;
use fai_engine::tiny::{ensure_fai_tiny, write_gguf, TinySpec};
use fai_engine::{DeviceChoice, GenerateRequest, LoadedModel, Replay, SamplingParams};
use serde_json::{json, Value};

/// Where results go: stdout, and a file when given (flushed after each line).
struct Sink {
    file: Option<std::fs::File>,
}

impl Sink {
    fn emit(&mut self, v: Value) {
        let line = v.to_string();
        println!("{line}");
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }

    /// Runs a step; its error becomes a result line instead of ending the check.
    fn step(&mut self, name: &str, f: impl FnOnce(&mut Sink) -> Result<()>) {
        if let Err(e) = f(self) {
            self.emit(json!({"check": name, "error": format!("{e:#}")}));
        }
    }
}

/// Request `i` of the agreement set: greedy or sampled, short (12 tokens) or long (64).
fn request(i: usize, sampled: bool) -> GenerateRequest {
    GenerateRequest {
        input: format!("check {i}: what does block {} hold?", i * 17 + 3),
        sampling: SamplingParams {
            max_tokens: if i % 4 == 0 { 12 } else { 64 },
            temperature: if sampled {
                [0.3, 0.7, 1.0, 1.3][i % 4]
            } else {
                0.0
            },
            top_k: if sampled { [0, 40, 8, 0][i % 4] } else { 0 },
            top_p: if sampled {
                [1.0, 0.95, 1.0, 0.9][i % 4]
            } else {
                1.0
            },
            seed: 500 + i as u64,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    }
}

/// Answers to `requests` made on `made`, replayed on `check`: (rejected, near-tie flips,
/// tokens).
fn replay_elsewhere(
    made: &[Vec<u32>],
    requests: &[GenerateRequest],
    check: &LoadedModel,
) -> Result<(usize, usize, usize)> {
    let replay = Replay::default();
    let cases: Vec<(&GenerateRequest, &[u32])> = requests
        .iter()
        .zip(made)
        .map(|(r, o)| (r, o.as_slice()))
        .collect();
    let (mut rejected, mut near, mut tokens) = (0, 0, 0);
    for s in replay.measure_batch(check, &cases) {
        let s = s?;
        rejected += usize::from(!replay.judge_stats(&s).accepted);
        near += s.near_ties;
        tokens += s.tokens;
    }
    Ok((rejected, near, tokens))
}

fn agreement(sink: &mut Sink, dir: &Path, gpu: &Device, answers: usize) -> Result<()> {
    let wide = dir.join("wide.gguf");
    write_gguf(&TinySpec::wide(), &wide)?;
    for path in [ensure_fai_tiny(dir)?, wide] {
        let on_cpu = Arc::new(LoadedModel::load(&path, &Device::Cpu)?);
        let on_gpu = Arc::new(LoadedModel::load(&path, gpu)?);
        let gpu_kind = fai_engine::device::describe(gpu).kind;
        // Logits of the same tokens.
        let tokens = on_cpu.chat_tokens("", &[], "the same tokens on two devices")?;
        let a = on_cpu
            .model
            .forward(&tokens, &mut on_cpu.model.new_cache())?
            .to_vec2::<f32>()?;
        let b = on_gpu
            .model
            .forward(&tokens, &mut on_gpu.model.new_cache())?
            .to_vec2::<f32>()?;
        let diff = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        sink.emit(json!({"check": "logits", "model": on_cpu.name, "device": gpu_kind, "positions": tokens.len(), "max_abs_diff": diff}));
        for sampled in [false, true] {
            let requests: Vec<GenerateRequest> =
                (0..answers).map(|i| request(i, sampled)).collect();
            let mode = if sampled { "sampled" } else { "greedy" };
            let alone = |m: &LoadedModel| -> Result<Vec<Vec<u32>>> {
                requests
                    .iter()
                    .map(|r| Ok(fai_engine::generate(m, r, &Default::default(), |_| {})?.tokens))
                    .collect()
            };
            let batch = |m: &LoadedModel| -> Result<Vec<Vec<u32>>> {
                Ok(generate_batch(m, &requests)?
                    .into_iter()
                    .map(|g| g.tokens)
                    .collect())
            };
            let runs: [(&str, &str, Vec<Vec<u32>>, &LoadedModel); 3] = [
                ("alone", gpu_kind.as_str(), alone(&on_gpu)?, &on_cpu),
                ("batch", gpu_kind.as_str(), batch(&on_gpu)?, &on_cpu),
                ("alone", "cpu", alone(&on_cpu)?, &on_gpu),
            ];
            for (how, made_on, made, checker) in runs {
                let (rejected, near_ties, tokens) = replay_elsewhere(&made, &requests, checker)?;
                sink.emit(json!({
                    "check": "agreement", "model": on_cpu.name, "mode": mode, "decoded": how,
                    "made_on": made_on, "replayed_on": fai_engine::device::describe(checker.model.device()).kind,
                    "answers": answers, "tokens": tokens, "near_ties": near_ties, "rejected": rejected,
                }));
            }
        }
    }
    Ok(())
}

pub fn run(device: DeviceChoice, out: Option<&Path>, answers: usize, quick: bool) -> Result<()> {
    let file = out
        .map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot write {}", p.display()))
        })
        .transpose()?;
    let mut sink = Sink { file };
    let gpu = match device.open() {
        Ok(d) => d,
        Err(e) => {
            sink.emit(json!({"check": "device", "error": e.to_string()}));
            return Err(e.into());
        }
    };
    let info = fai_engine::device::describe(&gpu);
    sink.emit(json!({
        "check": "device", "device": info.kind, "memory_total_bytes": info.memory_total,
        "memory_free_bytes": info.memory_free, "cuda_built": fai_engine::device::CUDA_BUILT,
    }));
    let dir = tempfile::tempdir()?;
    sink.step("agreement", |s| agreement(s, dir.path(), &gpu, answers));
    if quick {
        return Ok(());
    }
    let engine = |sink: &mut Sink, shape: &str, dtypes: Vec<GgmlDType>| {
        let name = format!("engine-{shape}");
        sink.step(&name, |s| {
            let mut opts = crate::engine::EngineOptions::new(device, shape, 128, 64);
            opts.dtypes = dtypes;
            let r = crate::engine::engine(&opts)?;
            s.emit(json!({"check": name, "report": r}));
            Ok(())
        });
    };
    engine(&mut sink, "1b", vec![GgmlDType::Q8_0, GgmlDType::Q4K]);
    sink.step("verify", |s| {
        let r = crate::engine::verify(device, 256, 20)?;
        s.emit(json!({"check": "verify", "report": r}));
        Ok(())
    });
    engine(&mut sink, "8b", vec![GgmlDType::Q4K]);
    engine(&mut sink, "8b", vec![GgmlDType::Q8_0]);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_agreement_check_runs_and_reports_no_rejection_on_the_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        super::run(fai_engine::DeviceChoice::Cpu, Some(&out), 4, true).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.iter().all(|l| l.get("error").is_none()), "{text}");
        let agreements: Vec<_> = lines.iter().filter(|l| l["check"] == "agreement").collect();
        // Two models, two modes, three ways each.
        assert_eq!(agreements.len(), 12, "{text}");
        assert!(
            agreements
                .iter()
                .all(|l| l["rejected"] == 0 && l["tokens"].as_u64().unwrap() > 0),
            "{text}"
        );
        let logits: Vec<_> = lines.iter().filter(|l| l["check"] == "logits").collect();
        assert!(
            logits
                .iter()
                .all(|l| l["max_abs_diff"].as_f64().unwrap() == 0.0),
            "the CPU agrees with itself: {text}"
        );
    }
}
