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
        // U+FFFD stands for bytes not yet known to be a character while text streams, so
        // a stop string holding it could match a verifier's text and not the generator's.
        if self
            .stop
            .iter()
            .any(|s| s.contains(char::REPLACEMENT_CHARACTER))
        {
            return Err(EngineError::InvalidSampling(
                "a stop string may not contain U+FFFD".into(),
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
        // Highest logit first, lower id first among equals: a total order (ids differ),
        // so selecting the first `top_k` and sorting only those gives the order a full
        // sort would, at a fraction of its cost for a large vocabulary.
        let rank = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if self.top_k > 0 && self.top_k < order.len() {
            order.select_nth_unstable_by(self.top_k - 1, rank);
            order.truncate(self.top_k);
        }
        order.sort_unstable_by(rank);
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

impl Sampler {
    /// Whether `claimed` is a near-tie: some logits within `drift` (per logit, in raw
    /// logit units) of `logits` would make this sampler pick `claimed` with the draw `u`
    /// (`None` for greedy). Numeric drift between devices, kernels, batch shapes and
    /// thread counts moves logits by that much at most; a token it can flip is never
    /// evidence against the node that produced it.
    ///
    /// Greedy: `claimed`'s logit is within `2 * drift` of the largest. Sampled: the
    /// draw lies in the widest interval `claimed` can have under such logits: its lower
    /// edge when every token surely ranked above it is lowered and the rest raised, its
    /// upper edge when every token that may rank above it is raised and the rest lowered,
    /// stretched by top-p's renormalisation (to the unit line's end where top-k could cut
    /// right after it); a token that top-k or top-p exclude under every such logits never
    /// is.
    pub fn could_pick(&self, logits: &[f32], u: Option<f64>, claimed: u32, drift: f32) -> bool {
        let Some(&value) = logits.get(claimed as usize) else {
            return false;
        };
        if !value.is_finite() {
            return false;
        }
        let drift = f64::from(drift.max(0.0));
        let Some(u) = u else {
            let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            return f64::from(value) + 2.0 * drift >= f64::from(best);
        };
        let t = self.temperature.max(1e-6);
        let e = drift / t;
        let sc = f64::from(value) / t;
        let scaled = |l: f32| f64::from(l) / t;
        let max = logits
            .iter()
            .map(|l| scaled(*l))
            .filter(|s| s.is_finite())
            .fold(sc, f64::max);
        let weight = |s: f64, shift: f64| (s + shift - max).exp();
        // Surely above: ranked before `claimed` under every drift; possibly above: under some.
        let (mut surely, mut possibly) = (0usize, 0usize);
        let (mut w_surely_low, mut w_others_high) = (0f64, weight(sc, e));
        let mut w_possibly_high = 0f64;
        let mut rest_low: Vec<f64> = Vec::new();
        for (i, l) in logits.iter().enumerate() {
            if i == claimed as usize || !l.is_finite() {
                continue;
            }
            let s = scaled(*l);
            if s - sc > 2.0 * e {
                surely += 1;
                w_surely_low += weight(s, -e);
            } else {
                w_others_high += weight(s, e);
            }
            if s - sc >= -2.0 * e {
                possibly += 1;
                w_possibly_high += weight(s, e);
            } else {
                rest_low.push(weight(s, -e));
            }
        }
        if self.top_k > 0 && surely >= self.top_k {
            return false;
        }
        let lo = w_surely_low / (w_surely_low + w_others_high);
        if self.top_p < 1.0 && lo >= self.top_p {
            return false;
        }
        // Top-k keeps only the highest of the tokens after `claimed`.
        let w_rest_low: f64 = if self.top_k > 0 {
            rest_low.sort_by(|a, b| b.total_cmp(a));
            let kept = self.top_k.saturating_sub(possibly + 1);
            rest_low.iter().take(kept).sum()
        } else {
            rest_low.iter().sum()
        };
        let through = w_possibly_high + weight(sc, e);
        let hi_untruncated = through / (through + w_rest_low);
        // Top-p keeps a prefix holding at least `top_p` of the mass and renormalises over
        // it, which stretches every edge by at most 1 / top_p (to the end of the line
        // where `claimed` may be the last token kept); top-k may cut right after it.
        let hi = if self.top_k > 0 && possibly + 1 >= self.top_k {
            1.0
        } else {
            (hi_untruncated / self.top_p).min(1.0)
        };
        u >= lo && u <= hi
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

    /// Decision 0004's safety argument: what one verifier finds to be a mismatch even at
    /// twice the drift bound, every verifier whose logits are within the bound of its
    /// own finds to be a mismatch at the bound (a hard mismatch), so a gross rejection is
    /// shared by every honest verifier. Random rows, perturbations within the bound,
    /// draws and tokens, greedy and sampled.
    #[test]
    fn a_stop_string_holding_a_replacement_character_is_refused() {
        let mut p = params(0.0, 0, 1.0, 0);
        p.stop = vec!["a\u{fffd}".into()];
        assert!(matches!(p.validate(), Err(EngineError::InvalidSampling(_))));
        p.stop = vec!["END".into()];
        assert!(p.validate().is_ok());
    }

    #[test]
    fn a_mismatch_at_twice_the_bound_is_a_mismatch_for_every_verifier_within_the_bound() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let drift = 0.15f32;
        let (mut gross, mut checked) = (0usize, 0usize);
        for case in 0..20_000 {
            let n = rng.gen_range(2..40);
            let spread = [0.5f32, 2.0, 8.0][case % 3];
            let row: Vec<f32> = (0..n).map(|_| rng.gen_range(-spread..spread)).collect();
            let other: Vec<f32> = row
                .iter()
                .map(|l| l + rng.gen_range(-drift..=drift))
                .collect();
            let sampling = match case % 4 {
                0 => params(0.0, 0, 1.0, 0),
                1 => params(0.7, 0, 1.0, 0),
                2 => params(1.0, 8, 0.9, 0),
                _ => params(0.3, 3, 1.0, 0),
            };
            let sampler = Sampler::new(&sampling);
            let u = (!sampler.is_greedy()).then(|| rng.gen_range(0.0..1.0));
            let token = rng.gen_range(0..n) as u32;
            if !sampler.could_pick(&row, u, token, 2.0 * drift) {
                gross += 1;
                assert!(
                    !sampler.could_pick(&other, u, token, drift),
                    "case {case}: {row:?} / {other:?}, u {u:?}, token {token}"
                );
            }
            checked += 1;
        }
        assert!(gross > checked / 10, "{gross} of {checked}");
    }

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

    /// Top-k by selection keeps the tokens and order a full sort would: the highest
    /// logits, lower ids first among equal ones (rows full of ties, as quantised logits
    /// have), whatever `top_k`.
    #[test]
    fn top_k_by_selection_keeps_the_full_sorts_tokens_in_its_order() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        for case in 0..2_000 {
            let n = rng.gen_range(1..300);
            // Few distinct values: many ties. All within 4 of each other, so that no
            // probability rounds to nothing and top-p 1 keeps every token top-k does.
            let levels = [2, 8, 1_000][case % 3];
            let logits: Vec<f32> = (0..n)
                .map(|_| rng.gen_range(0..levels) as f32 * (4.0 / levels as f32) - 2.0)
                .collect();
            let top_k = [0u32, 1, 2, 40, n as u32, n as u32 + 5][case % 6];
            let s = Sampler::new(&params(0.7, top_k, 1.0, 0));
            let mut full: Vec<(u32, f32)> = logits
                .iter()
                .enumerate()
                .map(|(i, l)| (i as u32, *l))
                .collect();
            full.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if top_k > 0 {
                full.truncate(top_k as usize);
            }
            let want: Vec<u32> = full.iter().map(|t| t.0).collect();
            let got: Vec<u32> = s.intervals(&logits).iter().map(|t| t.0).collect();
            assert_eq!(got, want, "case {case}: top_k {top_k}, {logits:?}");
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

    #[test]
    fn greedy_near_ties_are_within_twice_the_drift_of_the_best() {
        let s = Sampler::new(&params(0.0, 0, 1.0, 0));
        let logits = [2.0, 1.95, 1.0];
        assert!(s.could_pick(&logits, None, 1, 0.05));
        assert!(!s.could_pick(&logits, None, 1, 0.02));
        assert!(!s.could_pick(&logits, None, 2, 0.05));
        assert!(
            !s.could_pick(&logits, None, 7, 0.05),
            "out of the vocabulary"
        );
    }

    #[test]
    fn sampled_near_ties_cover_a_swap_of_equal_tokens_and_nothing_far() {
        // Tokens 0 and 1 are nearly equal: drift may swap their order, so with a draw
        // in the first's interval either may be chosen; token 3 is far from the draw.
        let logits = [3.0, 2.99, 1.0, 0.0];
        let s = Sampler::new(&params(1.0, 0, 1.0, 0));
        let iv = s.intervals(&logits);
        let u = iv[0].1 + 0.01;
        assert_eq!(iv[0].0, 0);
        assert!(s.could_pick(&logits, Some(u), 1, 0.05));
        assert!(!s.could_pick(&logits, Some(u), 3, 0.05));
        assert!(!s.could_pick(&logits, Some(u), 2, 0.05));
        // A draw just past an edge may pick the token on the other side.
        let edge = iv[1].2;
        assert!(s.could_pick(&logits, Some(edge + 1e-4), 1, 0.05));
        assert!(!s.could_pick(&logits, Some(edge + 0.2), 1, 0.05));
    }

    #[test]
    fn sampled_near_ties_respect_top_k_and_top_p() {
        let logits = [5.0, 4.0, 3.0, 0.0, -2.0];
        // Top-2: token 2 is surely outside, whatever the draw.
        let s = Sampler::new(&params(1.0, 2, 1.0, 0));
        assert!(!s.could_pick(&logits, Some(0.99), 2, 0.05));
        // Top-3 with token 2 possibly the last kept: the draw at the end of the line is its.
        let s = Sampler::new(&params(1.0, 3, 1.0, 0));
        assert!(s.could_pick(&logits, Some(0.999), 2, 0.05));
        // Top-p 0.5: token 0 alone holds more than half; token 3 is never kept.
        let s = Sampler::new(&params(1.0, 0, 0.5, 0));
        assert!(!s.could_pick(&logits, Some(0.999), 3, 0.05));
    }

    #[test]
    fn every_choice_under_drifted_logits_is_a_near_tie_of_the_true_ones() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let drift = 0.05f32;
        let mut flips = 0;
        for case in 0..4000 {
            let n = 6 + case % 40;
            // Few distinct values: ties and near-ties are common.
            let logits: Vec<f32> = (0..n).map(|_| rng.gen_range(0..8) as f32 * 0.3).collect();
            let moved: Vec<f32> = logits
                .iter()
                .map(|l| l + rng.gen_range(-drift..=drift))
                .collect();
            let p = params(
                [0.0, 0.2, 0.7, 1.0, 1.5][case % 5],
                [0, 3, 10][case % 3],
                [1.0, 0.9, 0.6][case % 3],
                case as u64,
            );
            let mut a = Sampler::new(&p);
            let mut b = Sampler::new(&p);
            let (chosen, draw) = a.sample_traced(&moved);
            let (derived, _) = b.sample_traced(&logits);
            if chosen != derived {
                flips += 1;
                assert!(
                    b.could_pick(&logits, draw, chosen, drift),
                    "case {case}: {logits:?} {moved:?} {p:?} {draw:?}: {chosen} not a near-tie"
                );
            }
        }
        assert!(flips > 100, "the drift flipped only {flips} choices");
    }
}
