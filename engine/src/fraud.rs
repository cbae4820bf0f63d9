//! The fraud suite: honest results and five kinds of forgery, to measure how well a
//! verification method tells them apart. Used by the tests (which hold `replay` to 99%
//! detection with no false rejections) and by `infer-node bench verify`.
//!
//! Forgeries of an honest (request, output) pair:
//! - `other-model`: the output of another model (another seed) for the same request;
//! - `random-tokens`: uniformly random byte tokens of the same length;
//! - `other-prompt`: the honest output of a different prompt;
//! - `edited-10pct`: the honest output with 10% of its tokens replaced;
//! - `hotter-sampling`: sampled at a temperature 1.0 higher than the request declares.

use std::sync::atomic::AtomicBool;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::Result;
use crate::generate::{generate, GenerateRequest};
use crate::gguf::LoadedModel;
use crate::sampling::SamplingParams;
use crate::verify::Verifier;

/// The kinds of case in the suite, honest first.
pub const KINDS: [&str; 6] = [
    "honest",
    "other-model",
    "random-tokens",
    "other-prompt",
    "edited-10pct",
    "hotter-sampling",
];

/// One result to verify.
#[derive(Debug, Clone)]
pub struct Case {
    pub kind: &'static str,
    pub request: GenerateRequest,
    pub output: Vec<u32>,
}

/// The "other model" of the suite: fai-tiny's shape with another seed.
pub fn other_model_spec() -> crate::tiny::TinySpec {
    crate::tiny::TinySpec {
        seed: 4242,
        ..crate::tiny::TinySpec::fai_tiny()
    }
}

/// Outputs shorter than this are left out: there is too little to judge.
const MIN_TOKENS: usize = 12;

fn run(model: &LoadedModel, request: &GenerateRequest) -> Result<Vec<u32>> {
    Ok(generate(model, request, &AtomicBool::new(false), |_| {})?.tokens)
}

/// Builds the suite over `prompts`, each asked greedily and with seeded sampling.
pub fn build(
    model: &LoadedModel,
    other: &LoadedModel,
    prompts: &[String],
    max_tokens: u32,
    seed: u64,
) -> Result<Vec<Case>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut honest: Vec<(GenerateRequest, Vec<u32>)> = Vec::new();
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
    }
    let mut cases = Vec::new();
    let n = honest.len();
    for (i, (request, output)) in honest.iter().enumerate() {
        cases.push(Case {
            kind: "honest",
            request: request.clone(),
            output: output.clone(),
        });
        let mut forged: Vec<(&'static str, Vec<u32>)> = vec![("other-model", run(other, request)?)];
        forged.push((
            "random-tokens",
            (0..output.len()).map(|_| rng.gen_range(0..256)).collect(),
        ));
        if n > 1 {
            let (_, theirs) = &honest[(i + 1 + rng.gen_range(0..n - 1)) % n];
            forged.push(("other-prompt", theirs.clone()));
        }
        let mut edited = output.clone();
        for _ in 0..(output.len() / 10).max(1) {
            let at = rng.gen_range(0..edited.len());
            edited[at] = (edited[at] + rng.gen_range(1..256)) % 256;
        }
        forged.push(("edited-10pct", edited));
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
}

impl Row {
    pub fn rate(&self) -> f64 {
        if self.cases == 0 {
            0.0
        } else {
            self.rejected as f64 / self.cases as f64
        }
    }
}

/// Verifies every case with `verifier` and counts rejections per kind.
pub fn evaluate(verifier: &dyn Verifier, model: &LoadedModel, cases: &[Case]) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = KINDS
        .iter()
        .map(|k| Row {
            method: verifier.name(),
            kind: k,
            cases: 0,
            rejected: 0,
        })
        .collect();
    for case in cases {
        let verdict = verifier.verify(model, &case.request, &case.output)?;
        if let Some(row) = rows.iter_mut().find(|r| r.kind == case.kind) {
            row.cases += 1;
            row.rejected += usize::from(!verdict.accepted);
        }
    }
    Ok(rows)
}
