//! Token sampling, reproducible from a seed.
//!
//! At temperature 0 the next token is the arg-max of the logits (the lowest id among
//! equals). Otherwise, for each token:
//!
//! 1. divide the logits by the temperature;
//! 2. order tokens by logit, highest first (lower id first among equals);
//! 3. keep the first `top_k` (0 keeps all);
//! 4. softmax over those (in f64), then keep the shortest prefix whose probabilities sum to
//!    at least `top_p`;
//! 5. draw one number u in [0, 1) from ChaCha20 seeded with `seed` (53 random bits) and take
//!    the first token whose cumulative probability, renormalised over the kept prefix,
//!    exceeds u.
//!
//! One draw per sampled token, in order: the same request with the same seed on the same
//! build yields the same tokens, and a verifier that replays the logits can re-derive each
//! choice.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::{EngineError, Result};

/// How tokens are chosen and when generation stops.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub max_tokens: u32,
    /// 0 is greedy.
    pub temperature: f32,
    /// Nucleus mass kept, in (0, 1].
    pub top_p: f32,
    /// Most tokens considered; 0 means all.
    pub top_k: u32,
    pub seed: u64,
    /// Generation stops when the text ends with one of these; it is not returned.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Checks the ranges of every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0 && self.temperature <= 100.0) {
            return Err(EngineError::InvalidSampling(format!(
                "temperature {} is not between 0 and 100",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(EngineError::InvalidSampling(format!(
                "top_p {} is not in (0, 1]",
                self.top_p
            )));
        }
        if self.stop.len() > 16 || self.stop.iter().any(|s| s.is_empty() || s.len() > 256) {
            return Err(EngineError::InvalidSampling(
                "at most 16 stop strings of 1 to 256 bytes".into(),
            ));
        }
        Ok(())
    }
}

/// Chooses tokens from logits.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f64,
    top_p: f64,
    top_k: usize,
    rng: ChaCha20Rng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Sampler {
            temperature: f64::from(params.temperature),
            top_p: f64::from(params.top_p),
            top_k: usize::try_from(params.top_k).unwrap_or(usize::MAX),
            rng: ChaCha20Rng::seed_from_u64(params.seed),
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The next token.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        self.sample_traced(logits).0
    }

    /// The next token and, when sampling (not greedy), the uniform draw that chose it.
    pub fn sample_traced(&mut self, logits: &[f32]) -> (u32, Option<f64>) {
        if self.is_greedy() {
            return (argmax(logits), None);
        }
        let candidates = self.intervals(logits);
        let u: f64 = self.rng.gen();
        let token = candidates
            .iter()
            .find(|(_, _, hi)| u < *hi)
            .or(candidates.last())
            .map_or(0, |(t, _, _)| *t);
        (token, Some(u))
    }

    /// The tokens sampling may pick from (steps 1 to 4), each with its interval [lo, hi)
    /// of the unit line, renormalised over the kept tokens: a draw u picks the token whose
    /// interval holds it.
    pub fn intervals(&self, logits: &[f32]) -> Vec<(u32, f64, f64)> {
        let mut order: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u32, f64::from(*l) / self.temperature.max(1e-6)))
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.top_k > 0 {
            order.truncate(self.top_k);
        }
        let max = order.first().map_or(0.0, |(_, l)| *l);
        let mut probs: Vec<(u32, f64)> = order
            .into_iter()
            .map(|(t, l)| (t, (l - max).exp()))
            .collect();
        let sum: f64 = probs.iter().map(|(_, p)| p).sum();
        for (_, p) in probs.iter_mut() {
            *p /= sum;
        }
        let mut acc = 0.0;
        let keep = probs
            .iter()
            .position(|(_, p)| {
                acc += p;
                acc >= self.top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        let kept: f64 = probs.iter().map(|(_, p)| p).sum();
        let mut lo = 0.0;
        probs
            .into_iter()
            .map(|(t, p)| {
                let hi = lo + p / kept;
                let item = (t, lo, hi);
                lo = hi;
                item
            })
            .collect()
    }
}

/// The index of the largest logit (the lowest among equals; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, l) in logits.iter().enumerate() {
        if let Some(b) = logits.get(best) {
            if *l > *b || b.is_nan() && !l.is_nan() {
                best = i;
            }
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: u32, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            seed,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_the_arg_max_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(&params(0.0, 0, 1.0, 1));
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens_and_another_seed_others() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(&params(1.0, 0, 1.0, seed));
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_choices() {
        let logits = [5.0, 4.0, 3.0, 0.0, -2.0];
        let s = Sampler::new(&params(1.0, 2, 1.0, 0));
        let c: Vec<u32> = s.intervals(&logits).iter().map(|c| c.0).collect();
        assert_eq!(c, vec![0, 1]);
        let last = s.intervals(&logits).last().unwrap().2;
        assert!(
            (last - 1.0).abs() < 1e-12,
            "the intervals cover the unit line"
        );
        let s = Sampler::new(&params(1.0, 0, 0.5, 0));
        let c = s.intervals(&logits);
        assert_eq!(c.len(), 1, "the top token alone holds over half the mass");
        let mut s = Sampler::new(&params(1.0, 2, 1.0, 3));
        for _ in 0..100 {
            assert!(s.sample(&logits) < 2);
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(params(-1.0, 0, 1.0, 0).validate().is_err());
        assert!(params(f32::NAN, 0, 1.0, 0).validate().is_err());
        assert!(params(1.0, 0, 0.0, 0).validate().is_err());
        assert!(params(1.0, 0, 1.5, 0).validate().is_err());
        assert!(params(0.7, 40, 0.9, 0).validate().is_ok());
    }
}
