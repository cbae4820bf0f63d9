//! Checking another node's output at a fraction of the cost of producing it.
//!
//! One trait, [`Verifier`], and two methods:
//!
//! - [`Replay`]: one teacher-forced forward pass over prompt + claimed output gives the
//!   verifier's own logits at every claimed position. Each claimed token is re-derived with
//!   the request's declared sampling and seed (the same ChaCha draws, in the same order).
//!   An exact re-derivation is a match. Numeric drift (another kernel, batch shape or GPU
//!   moves logits by a few hundredths) is tolerated: a greedy claim whose logit is within
//!   `drift_logit` of the best, or a sampled claim whose interval of the unit line lies
//!   within `drift_prob` of the draw. Anything else is a hard mismatch. The verdict weighs
//!   the match rate, the tolerated rate and the mean log-probability of the claims.
//! - [`Judge`] (the paper's): a prompt asks the same model whether the output answers the
//!   input, and one forward pass compares the next-token logits of "YES" and "NO".

use candle_core::Tensor;

use crate::error::Result;
use crate::generate::{prompt_tokens, GenerateRequest};
use crate::gguf::LoadedModel;
use crate::model::log_softmax;
use crate::sampling::Sampler;

/// A verifier's decision about one result, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub method: &'static str,
    pub accepted: bool,
    /// In [0, 1]; higher is more convincing.
    pub score: f64,
    pub reasons: Vec<String>,
}

/// A way to check that `output` is what `model` produces for `request`.
pub trait Verifier {
    fn name(&self) -> &'static str;

    /// Errors: the request and output do not fit the model, or a tensor operation failed.
    fn verify(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<Verdict>;
}

/// Teacher-forced re-derivation of every claimed token.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Greedy: how far below the best logit a claimed token may be and count as drift.
    pub drift_logit: f32,
    /// Sampled: how far (on the unit line) the draw may miss the claimed token's interval.
    pub drift_prob: f64,
    /// The least share of tokens re-derived exactly, for greedy requests: drift only
    /// flips near-ties there.
    pub greedy_min_match_rate: f64,
    /// The same for sampled requests, where drift near an interval edge flips more often.
    pub sampled_min_match_rate: f64,
    /// The least share of tokens exact or within drift.
    pub min_tolerated_rate: f64,
    /// The lowest mean log-probability (natural log) of the claimed tokens.
    pub min_mean_logprob: f64,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            drift_logit: 0.1,
            drift_prob: 0.05,
            greedy_min_match_rate: 0.97,
            sampled_min_match_rate: 0.85,
            min_tolerated_rate: 0.95,
            min_mean_logprob: -4.0,
        }
    }
}

/// What a replay measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayStats {
    pub tokens: usize,
    pub exact: usize,
    pub tolerated: usize,
    pub mean_logprob: f64,
}

impl Replay {
    /// Whether a claimed token that was not re-derived is explained by numeric drift.
    fn within_drift(
        &self,
        row: &[f32],
        intervals: &[(u32, f64, f64)],
        draw: Option<f64>,
        claimed: u32,
    ) -> bool {
        let Some(&value) = row.get(claimed as usize) else {
            return false;
        };
        match draw {
            None => {
                let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                value >= best - self.drift_logit
            }
            Some(u) => intervals
                .iter()
                .find(|(t, _, _)| *t == claimed)
                .is_some_and(|(_, lo, hi)| u >= lo - self.drift_prob && u < hi + self.drift_prob),
        }
    }

    /// The statistics of one replay.
    pub fn measure(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<ReplayStats> {
        request.sampling.validate()?;
        let prompt = prompt_tokens(model, request)?;
        if output.is_empty() {
            return Ok(ReplayStats {
                tokens: 0,
                exact: 0,
                tolerated: 0,
                mean_logprob: 0.0,
            });
        }
        let mut all = prompt.clone();
        all.extend_from_slice(output);
        all.pop();
        // The forward pass refuses a sequence longer than the context window.
        let mut cache = model.model.new_cache();
        let logits: Tensor = model.model.forward_last(&all, &mut cache, output.len())?;
        let logprobs = log_softmax(&logits)?.to_vec2::<f32>()?;
        let rows = logits.to_vec2::<f32>()?;
        let mut sampler = Sampler::new(&request.sampling);
        let (mut exact, mut tolerated, mut lp_sum) = (0usize, 0usize, 0f64);
        for ((row, lp), claimed) in rows.iter().zip(&logprobs).zip(output) {
            let intervals = if sampler.is_greedy() {
                Vec::new()
            } else {
                sampler.intervals(row)
            };
            let (derived, draw) = sampler.sample_traced(row);
            if derived == *claimed {
                exact += 1;
                tolerated += 1;
            } else if self.within_drift(row, &intervals, draw, *claimed) {
                tolerated += 1;
            }
            lp_sum += f64::from(
                lp.get(*claimed as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY)
                    .max(-100.0),
            );
        }
        Ok(ReplayStats {
            tokens: output.len(),
            exact,
            tolerated,
            mean_logprob: lp_sum / output.len() as f64,
        })
    }
}

impl Verifier for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn verify(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<Verdict> {
        let s = self.measure(model, request, output)?;
        if s.tokens == 0 {
            return Ok(Verdict {
                method: "replay",
                accepted: true,
                score: 1.0,
                reasons: vec!["empty output".into()],
            });
        }
        let n = s.tokens as f64;
        let match_rate = s.exact as f64 / n;
        let tolerated_rate = s.tolerated as f64 / n;
        let mut reasons = vec![format!(
            "{} of {} tokens re-derived exactly, {} within drift, mean log-probability {:.2}",
            s.exact,
            s.tokens,
            s.tolerated - s.exact,
            s.mean_logprob
        )];
        let mut accepted = true;
        let min_match = if request.sampling.temperature > 0.0 {
            self.sampled_min_match_rate
        } else {
            self.greedy_min_match_rate
        };
        if match_rate < min_match {
            accepted = false;
            reasons.push(format!("match rate {match_rate:.3} below {min_match}"));
        }
        if tolerated_rate < self.min_tolerated_rate {
            accepted = false;
            reasons.push(format!(
                "{} tokens neither re-derived nor within numeric drift",
                s.tokens - s.tolerated
            ));
        }
        if s.mean_logprob < self.min_mean_logprob {
            accepted = false;
            reasons.push(format!(
                "mean log-probability below {}",
                self.min_mean_logprob
            ));
        }
        Ok(Verdict {
            method: "replay",
            accepted,
            score: match_rate.min(tolerated_rate),
            reasons,
        })
    }
}

/// The paper's judge: the model itself says whether the output answers the input.
#[derive(Debug, Clone, Default)]
pub struct Judge;

/// The instruction the judge gives the model.
pub const JUDGE_SYSTEM: &str =
    "You check answers. Reply YES if the answer responds to the question, NO otherwise.";

impl Verifier for Judge {
    fn name(&self) -> &'static str {
        "judge"
    }

    fn verify(
        &self,
        model: &LoadedModel,
        request: &GenerateRequest,
        output: &[u32],
    ) -> Result<Verdict> {
        let answer = model.tokenizer.decode(output);
        let question = format!(
            "Question: {}\nAnswer: {}\nYES or NO?",
            request.input, answer
        );
        let tokens = model.chat_tokens(JUDGE_SYSTEM, &[], &question)?;
        let mut cache = model.model.new_cache();
        let row = model
            .model
            .forward_last(&tokens, &mut cache, 1)?
            .get(0)?
            .to_vec1::<f32>()?;
        let logit = |words: &[&str]| {
            model
                .tokenizer
                .token_of(words)
                .and_then(|t| row.get(t as usize).copied())
                .unwrap_or(f32::NEG_INFINITY)
        };
        let yes = logit(&["YES", " YES", "Yes", " Yes", "Y", " Y"]);
        let no = logit(&["NO", " NO", "No", " No", "N", " N"]);
        let score = 1.0 / (1.0 + (f64::from(no) - f64::from(yes)).exp());
        Ok(Verdict {
            method: "judge",
            accepted: score >= 0.5,
            score,
            reasons: vec![format!("logit YES {yes:.3} against NO {no:.3}")],
        })
    }
}
