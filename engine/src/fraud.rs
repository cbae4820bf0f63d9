//! The fraud suite: honest results and every kind of forgery a serving node could try, to
//! measure how well a verification method tells them apart. Used by the tests (which hold
//! `replay` to 99% detection with no false rejections) and by `infer-node bench verify`,
//! which prints the table per model.
//!
//! Honest results are greedy and sampled answers, and sampled answers the model ended
//! itself (end-of-text before `max_tokens`). Forgeries of an honest (request, output):
//! - `other-model`: the output of another model (the same shape from another seed);
//! - `lower-precision`: the output of the same weights stored at a lower precision (Q4_0),
//!   counted only for answers of at least [`LOWER_PRECISION_MIN_TOKENS`] tokens: a cheaper
//!   model that agrees on most tokens;
//! - `random-tokens`: random tokens of the same length;
//! - `other-prompt`: the honest output of a different prompt;
//! - `other-system-prompt`: the answer to the same input under another system prompt;
//! - `other-seed`: a sampled answer drawn with another seed;
//! - `edited-1pct`, `edited-2pct`, `edited-3pct`, `edited-10pct`: the honest output with
//!   that share of its tokens (at least one) replaced by other tokens;
//! - `padded-past-end`: an answer the model ended, continued past its end to `max_tokens`
//!   with the likeliest tokens that are not an end (to be paid for more tokens);
//! - `cut-short`: an answer cut at half its length (to save the work), claiming the model
//!   ended it there;
//! - `hotter-sampling`: sampled at a temperature 1.0 higher than the request declares.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::{EngineError, Result};
use crate::generate::{generate, last_row, prompt_tokens, FinishReason, GenerateRequest};
use crate::gguf::LoadedModel;
use crate::model::BatchItem;
use crate::sampling::{argmax, SamplingParams};
use crate::tiny::{write_gguf, TinySpec};
use crate::verify::{Replay, Verifier};

/// The kinds of case in the suite, honest first.
pub const KINDS: [&str; 14] = [
    "honest",
    "other-model",
    "lower-precision",
    "random-tokens",
    "other-prompt",
    "other-system-prompt",
    "other-seed",
    "edited-1pct",
    "edited-2pct",
    "edited-3pct",
    "edited-10pct",
    "padded-past-end",
    "cut-short",
    "hotter-sampling",
];

/// Lower-precision answers shorter than this are left out: a cheaper model is caught over
/// long answers (on a short one it may agree with the real one everywhere).
pub const LOWER_PRECISION_MIN_TOKENS: usize = 64;

/// The system prompt of the `other-system-prompt` forgeries.
const OTHER_SYSTEM: &str = "You are a pirate and answer in riddles.";

/// Sampled tries per prompt to find an answer the model ends itself.
const END_TRIES: u64 = 16;

/// One result to verify.
#[derive(Debug, Clone)]
pub struct Case {
    pub kind: &'static str,
    pub request: GenerateRequest,
    pub output: Vec<u32>,
}

/// The models a forger uses instead of the real one.
pub struct Forgers {
    /// The same shape from another seed.
    pub other: LoadedModel,
    /// The same weights at a lower precision.
    pub lower: LoadedModel,
}

impl Forgers {
    /// The forgers' models of `spec`: its shape with another seed, and its weights stored
    /// as Q4_0. Written into `dir` and loaded on `device`.
    pub fn for_spec(spec: &TinySpec, dir: &Path, device: &Device) -> Result<Self> {
        let other = TinySpec {
            name: format!("{}-other", spec.name),
            seed: spec.seed ^ 0x4242,
            ..spec.clone()
        };
        let lower = TinySpec {
            name: format!("{}-q4", spec.name),
            dtype: GgmlDType::Q4_0,
            ..spec.clone()
        };
        let load = |s: &TinySpec| -> Result<LoadedModel> {
            let path = dir.join(format!("{}.gguf", s.name));
            write_gguf(s, &path)?;
            LoadedModel::load(&path, device)
        };
        Ok(Forgers {
            other: load(&other)?,
            lower: load(&lower)?,
        })
    }
}

/// Outputs shorter than this are left out: there is too little to judge.
const MIN_TOKENS: usize = 12;

fn run(model: &LoadedModel, request: &GenerateRequest) -> Result<Vec<u32>> {
    Ok(generate(model, request, &AtomicBool::new(false), |_| {})?.tokens)
}

/// `output` (which the model ended) continued to `max_tokens` with the model's likeliest
/// token that does not end generation, one at a time.
fn continue_past_end(
    model: &LoadedModel,
    request: &GenerateRequest,
    output: &[u32],
) -> Result<Vec<u32>> {
    let mut padded = output.to_vec();
    let mut cache = model.model.new_cache();
    let mut feed = prompt_tokens(model, request)?;
    feed.extend_from_slice(output);
    let context = model.model.config.context_length;
    while padded.len() < request.sampling.max_tokens as usize && cache.len() + feed.len() < context
    {
        let logits = model.model.forward_batch(&mut [BatchItem {
            tokens: &feed,
            cache: &mut cache,
            rows: 1,
        }])?;
        let mut row = last_row(logits.first().ok_or(EngineError::NoTokens)?)?;
        for end in model.tokenizer.end_tokens() {
            if let Some(l) = row.get_mut(*end as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        let next = argmax(&row);
        padded.push(next);
        feed = vec![next];
    }
    Ok(padded)
}

/// `output` with `percent`% of its tokens (at least one) replaced by other tokens that do
/// not end generation.
fn edited(model: &LoadedModel, output: &[u32], percent: usize, rng: &mut ChaCha20Rng) -> Vec<u32> {
    let vocab = u32::try_from(model.model.config.vocab_size).unwrap_or(u32::MAX);
    let mut out = output.to_vec();
    let edits = ((output.len() * percent + 50) / 100).clamp(1, output.len());
    let mut positions: Vec<usize> = (0..out.len()).collect();
    for k in 0..edits {
        let pick = rng.gen_range(k..positions.len());
        positions.swap(k, pick);
        let at = positions[k];
        loop {
            let t = rng.gen_range(0..vocab);
            if t != output[at] && !model.tokenizer.is_end(t) {
                out[at] = t;
                break;
            }
        }
    }
    out
}

/// Builds the suite over `prompts`, each asked greedily and with seeded sampling.
pub fn build(
    model: &LoadedModel,
    forgers: &Forgers,
    prompts: &[String],
    max_tokens: u32,
    seed: u64,
) -> Result<Vec<Case>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut honest: Vec<(GenerateRequest, Vec<u32>)> = Vec::new();
    // Answers the model ended itself, the only ones that can be padded past their end.
    let mut ended: Vec<(GenerateRequest, Vec<u32>)> = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        for sampled in [false, true] {
            let sampling = SamplingParams {
                max_tokens,
                temperature: if sampled { 0.7 } else { 0.0 },
                top_k: if sampled { 40 } else { 0 },
                seed: seed.wrapping_add(i as u64),
                ..SamplingParams::default()
            };
            let request = GenerateRequest {
                system: String::new(),
                context: Vec::new(),
                input: prompt.clone(),
                sampling,
            };
            let output = run(model, &request)?;
            if output.len() >= MIN_TOKENS {
                honest.push((request, output));
            }
        }
        for attempt in 0..END_TRIES {
            let request = GenerateRequest {
                system: String::new(),
                context: Vec::new(),
                input: prompt.clone(),
                sampling: SamplingParams {
                    max_tokens,
                    temperature: 1.0,
                    seed: seed ^ ((i as u64) << 20) ^ attempt,
                    ..SamplingParams::default()
                },
            };
            let g = generate(model, &request, &AtomicBool::new(false), |_| {})?;
            if g.finish == FinishReason::EndOfText && g.tokens.len() >= MIN_TOKENS / 2 {
                ended.push((request, g.tokens));
                break;
            }
        }
    }
    let mut cases = Vec::new();
    let n = honest.len();
    for (i, (request, output)) in honest.iter().enumerate() {
        cases.push(Case {
            kind: "honest",
            request: request.clone(),
            output: output.clone(),
        });
        let mut forged: Vec<(&'static str, Vec<u32>)> =
            vec![("other-model", run(&forgers.other, request)?)];
        let lower = run(&forgers.lower, request)?;
        if lower.len() >= LOWER_PRECISION_MIN_TOKENS {
            forged.push(("lower-precision", lower));
        }
        forged.push((
            "random-tokens",
            (0..output.len())
                .map(|_| rng.gen_range(0..model.model.config.vocab_size as u32))
                .collect(),
        ));
        if n > 1 {
            let (_, theirs) = &honest[(i + 1 + rng.gen_range(0..n - 1)) % n];
            forged.push(("other-prompt", theirs.clone()));
        }
        let mut other_system = request.clone();
        other_system.system = OTHER_SYSTEM.into();
        forged.push(("other-system-prompt", run(model, &other_system)?));
        if request.sampling.temperature > 0.0 {
            let mut other_seed = request.clone();
            other_seed.sampling.seed ^= 0x5eed;
            forged.push(("other-seed", run(model, &other_seed)?));
        }
        for (kind, percent) in [
            ("edited-1pct", 1),
            ("edited-2pct", 2),
            ("edited-3pct", 3),
            ("edited-10pct", 10),
        ] {
            forged.push((kind, edited(model, output, percent, &mut rng)));
        }
        if output.len() == request.sampling.max_tokens as usize {
            forged.push(("cut-short", output[..output.len() / 2].to_vec()));
        }
        let mut hot = request.clone();
        hot.sampling.temperature += 1.0;
        forged.push(("hotter-sampling", run(model, &hot)?));
        // A "forgery" equal to the honest output forges nothing; an empty one says nothing.
        for (kind, forged_output) in forged {
            if forged_output != *output && !forged_output.is_empty() {
                cases.push(Case {
                    kind,
                    request: request.clone(),
                    output: forged_output,
                });
            }
        }
    }
    for (request, output) in ended {
        let padded = continue_past_end(model, &request, &output)?;
        cases.push(Case {
            kind: "honest",
            request: request.clone(),
            output,
        });
        cases.push(Case {
            kind: "padded-past-end",
            request,
            output: padded,
        });
    }
    Ok(cases)
}

/// How a method did on one kind of case.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub method: &'static str,
    pub kind: &'static str,
    pub cases: usize,
    /// Cases rejected: detections for forgeries, false rejections for honest cases.
    pub rejected: usize,
    /// Replay only (0 for other methods): forgeries accepted whose every difference from
    /// what the verifier derives is a near-tie: answers a device drifting within the bound
    /// could give honestly, which replay accepts by design (docs/consensus.md).
    pub near_tie_only: usize,
    /// Replay only: rejections that are gross (a rule broken, or a mismatch even at
    /// twice the drift bound), which every verifier within the bound makes alike.
    pub gross: usize,
}

impl Row {
    /// Rejected cases among all.
    pub fn rate(&self) -> f64 {
        if self.cases == 0 {
            0.0
        } else {
            self.rejected as f64 / self.cases as f64
        }
    }

    /// Rejected forgeries among those that differ somewhere other than at a near-tie.
    pub fn detection(&self) -> f64 {
        let beyond = self.cases.saturating_sub(self.near_tie_only);
        if beyond == 0 {
            1.0
        } else {
            self.rejected as f64 / beyond as f64
        }
    }
}

fn empty_rows(method: &'static str) -> Vec<Row> {
    KINDS
        .iter()
        .map(|k| Row {
            method,
            kind: k,
            cases: 0,
            rejected: 0,
            near_tie_only: 0,
            gross: 0,
        })
        .collect()
}

/// Verifies every case with `verifier` and counts rejections per kind.
pub fn evaluate(verifier: &dyn Verifier, model: &LoadedModel, cases: &[Case]) -> Result<Vec<Row>> {
    let mut rows = empty_rows(verifier.name());
    for case in cases {
        let verdict = verifier.verify(model, &case.request, &case.output)?;
        if let Some(row) = rows.iter_mut().find(|r| r.kind == case.kind) {
            row.cases += 1;
            row.rejected += usize::from(!verdict.accepted);
        }
    }
    Ok(rows)
}

/// [`evaluate`] for `replay`, which also counts the forgeries accepted as near-tie-only.
pub fn evaluate_replay(replay: &Replay, model: &LoadedModel, cases: &[Case]) -> Result<Vec<Row>> {
    let mut rows = empty_rows(replay.name());
    for case in cases {
        let stats = replay.measure(model, &case.request, &case.output)?;
        let accepted = replay.judge_stats(&stats).accepted;
        if let Some(row) = rows.iter_mut().find(|r| r.kind == case.kind) {
            row.cases += 1;
            row.rejected += usize::from(!accepted);
            row.near_tie_only +=
                usize::from(accepted && case.kind != "honest" && stats.near_tie_only());
            row.gross += usize::from(!accepted && stats.is_gross());
        }
    }
    Ok(rows)
}
