//! What an inference costs the verifiers to replay, as this node measured it, and the
//! budgets of replay time that the blocks it produces and the requests it serves keep to.
//!
//! Every verifier of a block's set replays all of its inferences before it commits to
//! its vote, and must do so within the block's commit phase (`COMMIT_PHASE` ledger
//! blocks, about one spacing when blocks come in a burst). What a block costs them is
//! the replay time of its inferences, which depends on the model and on the tokens, not
//! on how many there are: on a model eight times wider than fai-tiny a block of 104
//! inferences already took the verifiers longer than its phase, and was refunded.
//!
//! So the node counts replay time, not inferences:
//! - its verifier measures how long each model's replays take, per unit of work (an
//!   output token, plus [`PROMPT_UNITS`] for the prompt, which a producer does not see),
//!   once at start on made-up answers (`crate::verify_service::calibrate`, counted at
//!   four times its measure, taken idle) and then on every block it judges, and [`ReplayCosts`] keeps a moving average per model (that
//!   follows a slower replay faster than a quicker one);
//! - the producer fills a block up to [`block_budget`] of estimated replay time (half
//!   the ledger's target spacing), besides the cap on its count;
//! - a serving or relaying node refuses new requests with 503 while the replay time
//!   of what the network has served and not yet put in a block, of what this node is
//!   serving, and of the blocks its verifier has not yet judged is [`ADMIT_BLOCKS`]
//!   blocks' budget or more ([`admits`]).
//!
//! A model whose replay this node could not measure counts at a prior: a block's budget over [`PRIOR_PER_BLOCK`], so a block carries at most
//! that many inferences on it. None of this is a rule of consensus: each node measures
//! its own verifier, which stands for the others of the set.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The units of work a prompt counts for, beside one per output token: the producer
/// sees only the output's token count.
pub const PROMPT_UNITS: u64 = 16;

/// The share of the ledger's target spacing that the replay of one block may take
/// (numerator, denominator): half, so that a verifier judges a block within its commit
/// phase even when the next ones come in a burst, and keeps time for the rest.
const BLOCK_SHARE: (u64, u64) = (1, 2);

/// Inferences on a model not yet measured here that a block carries at most.
pub const PRIOR_PER_BLOCK: u64 = 32;

/// How many blocks' budget of replay time may wait (not yet in a block, being served,
/// or not yet judged by this node's verifier) before new requests are refused.
pub const ADMIT_BLOCKS: u64 = 2;

/// The weight of a new measurement in the moving average: half when it is higher (a
/// slower replay is believed at once: the node is loaded, or the first measure was taken
/// idle), a quarter when lower.
const WEIGHT_UP: f64 = 0.5;
const WEIGHT_DOWN: f64 = 0.25;

/// The units of replay work of an answer of `tokens` output tokens.
pub fn units(tokens: u32) -> u64 {
    PROMPT_UNITS.saturating_add(u64::from(tokens))
}

/// The replay time one block may take, in microseconds, with the ledger's target
/// spacing in seconds.
pub fn block_budget(target_spacing_s: u64) -> u64 {
    target_spacing_s
        .saturating_mul(1_000_000)
        .saturating_mul(BLOCK_SHARE.0)
        / BLOCK_SHARE.1
}

/// Whether new requests may be served while `pending_us` of replay time waits.
pub fn admits(pending_us: u64, target_spacing_s: u64) -> bool {
    pending_us < block_budget(target_spacing_s).saturating_mul(ADMIT_BLOCKS)
}

/// How many times its measure a calibration counts for, until the first block's replay
/// replaces it: it was taken on one batch with nothing else running, and a block is
/// replayed while the engine serves and (on a machine shared by several nodes, as
/// `bench network` runs them) other verifiers replay the same block. On 2 cores with 5
/// nodes, the first block replays took 2 to 4 times what calibration measured.
const CALIBRATION_MARGIN: f64 = 4.0;

/// A model's cost per unit of work, in microseconds, and whether it is the calibration's
/// (with its margin) rather than a block's.
#[derive(Debug, Clone, Copy)]
struct Rate {
    us_per_unit: f64,
    calibrated: bool,
}

/// The replay time, in microseconds, of an answer of `tokens` at `rate` microseconds per
/// unit, or at the prior when the rate is not known.
fn cost_at(rate: Option<f64>, tokens: u32, target_spacing_s: u64) -> u64 {
    match rate {
        // A float to integer cast saturates (and NaN is 0).
        Some(rate) => (rate * units(tokens) as f64).ceil() as u64,
        None => block_budget(target_spacing_s) / PRIOR_PER_BLOCK,
    }
}

/// Microseconds per unit, if `units` is not 0.
fn per_unit(units: u64, took: Duration) -> Option<f64> {
    if units == 0 {
        return None;
    }
    let sample = took.as_secs_f64() * 1e6 / units as f64;
    sample.is_finite().then_some(sample)
}

/// The replay cost per unit of work of each model, as this node's verifier measured it
/// (shared between the verifier thread, which writes, and the chain task, which reads).
#[derive(Debug, Default)]
pub struct ReplayCosts {
    /// By model id.
    measured: Mutex<HashMap<[u8; 32], Rate>>,
    /// `testing.replay_us_per_unit` (test builds): every model costs this, whatever
    /// was measured.
    fixed: Option<u64>,
}

impl ReplayCosts {
    /// Costs that every model has at `us_per_unit`, whatever is measured (tests of
    /// what the budgets do, which must not depend on how loaded the machine is).
    pub fn fixed(us_per_unit: u64) -> Self {
        ReplayCosts {
            measured: Mutex::default(),
            fixed: Some(us_per_unit),
        }
    }

    /// `units` of work on `model` were replayed in `took`, in a block.
    pub fn record(&self, model: [u8; 32], units: u64, took: Duration) {
        self.note(model, units, took, false);
    }

    /// `units` of work on `model` were replayed in `took` by a calibration: counted at
    /// [`CALIBRATION_MARGIN`] times that until a block's replay is measured.
    pub fn record_calibration(&self, model: [u8; 32], units: u64, took: Duration) {
        self.note(model, units, took, true);
    }

    /// A block's measure replaces a calibration's and moves a block's average (up by
    /// [`WEIGHT_UP`], down by [`WEIGHT_DOWN`]); a calibration's only sets a model not
    /// measured yet.
    fn note(&self, model: [u8; 32], units: u64, took: Duration, calibration: bool) {
        let Some(sample) = per_unit(units, took) else {
            return;
        };
        let fresh = if calibration {
            Rate {
                us_per_unit: sample * CALIBRATION_MARGIN,
                calibrated: true,
            }
        } else {
            Rate {
                us_per_unit: sample,
                calibrated: false,
            }
        };
        let mut measured = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        let rate = match measured.entry(model) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(fresh);
                return;
            }
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        };
        if calibration {
            return;
        }
        if rate.calibrated {
            *rate = fresh;
            return;
        }
        let weight = if sample > rate.us_per_unit {
            WEIGHT_UP
        } else {
            WEIGHT_DOWN
        };
        rate.us_per_unit = rate.us_per_unit * (1.0 - weight) + sample * weight;
    }

    /// The microseconds per unit this node counts for `model`, if known.
    pub fn per_unit(&self, model: &[u8; 32]) -> Option<f64> {
        if let Some(fixed) = self.fixed {
            return Some(fixed as f64);
        }
        self.measured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
            .map(|r| r.us_per_unit)
    }

    /// A view at one target spacing, for the many estimates one block or check makes.
    pub fn at(&self, target_spacing_s: u64) -> CostsAt<'_> {
        CostsAt {
            costs: self,
            spacing: target_spacing_s,
            rates: HashMap::new(),
        }
    }
}

/// [`ReplayCosts`] read once per model, at one target spacing.
pub struct CostsAt<'a> {
    costs: &'a ReplayCosts,
    spacing: u64,
    rates: HashMap<[u8; 32], Option<f64>>,
}

impl CostsAt<'_> {
    /// The estimated replay time, in microseconds, of an answer of `tokens` output
    /// tokens on `model`; a model not measured here counts at the prior (a block's
    /// budget over [`PRIOR_PER_BLOCK`]).
    pub fn cost(&mut self, model: &[u8; 32], tokens: u32) -> u64 {
        let rate = *self
            .rates
            .entry(*model)
            .or_insert_with(|| self.costs.per_unit(model));
        cost_at(rate, tokens, self.spacing)
    }

    /// The replay time one block may take, in microseconds.
    pub fn block_budget(&self) -> u64 {
        block_budget(self.spacing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: [u8; 32] = [7; 32];

    #[test]
    fn a_model_not_measured_costs_a_share_of_the_block_budget() {
        let costs = ReplayCosts::default();
        assert_eq!(block_budget(1), 500_000);
        assert_eq!(block_budget(120), 60_000_000);
        assert_eq!(costs.at(1).cost(&MODEL, 1_000), 500_000 / PRIOR_PER_BLOCK);
        assert_eq!(costs.at(1).cost(&MODEL, 0), 500_000 / PRIOR_PER_BLOCK);
    }

    #[test]
    fn measurements_set_the_cost_per_unit_and_move_it_up_by_half_down_by_a_quarter() {
        let costs = ReplayCosts::default();
        // 100 units in 10 ms: 100 us per unit.
        costs.record(MODEL, 100, Duration::from_millis(10));
        assert_eq!(costs.per_unit(&MODEL), Some(100.0));
        assert_eq!(costs.at(1).cost(&MODEL, 4), 100 * (PROMPT_UNITS + 4));
        // Then 500 us per unit: half of the way.
        costs.record(MODEL, 10, Duration::from_millis(5));
        assert_eq!(costs.per_unit(&MODEL), Some(300.0));
        // Then 100 again: a quarter of the way down.
        costs.record(MODEL, 100, Duration::from_millis(10));
        assert_eq!(costs.per_unit(&MODEL), Some(250.0));
        // Nothing replayed tells nothing.
        costs.record(MODEL, 0, Duration::from_secs(1));
        assert_eq!(costs.per_unit(&MODEL), Some(250.0));
        // Another model is still unmeasured.
        assert_eq!(costs.per_unit(&[8; 32]), None);
        let mut at = costs.at(1);
        assert_eq!(at.cost(&MODEL, 4), 250 * (PROMPT_UNITS + 4));
        assert_eq!(at.cost(&[8; 32], 4), 500_000 / PRIOR_PER_BLOCK);
    }

    #[test]
    fn a_calibration_counts_four_times_until_a_block_replaces_it() {
        let costs = ReplayCosts::default();
        costs.record_calibration(MODEL, 100, Duration::from_millis(10));
        assert_eq!(costs.per_unit(&MODEL), Some(400.0));
        // A block's measure replaces it, lower or higher.
        costs.record(MODEL, 100, Duration::from_millis(20));
        assert_eq!(costs.per_unit(&MODEL), Some(200.0));
        // A later calibration does not undo what blocks measured.
        costs.record_calibration(MODEL, 100, Duration::from_millis(1));
        assert_eq!(costs.per_unit(&MODEL), Some(200.0));
    }

    #[test]
    fn fixed_costs_ignore_measurements() {
        let costs = ReplayCosts::fixed(3);
        costs.record(MODEL, 1, Duration::from_secs(1));
        assert_eq!(costs.at(1).cost(&MODEL, 4), 3 * (PROMPT_UNITS + 4));
    }

    #[test]
    fn requests_are_admitted_below_two_blocks_of_pending_replay() {
        assert!(admits(0, 1));
        assert!(admits(999_999, 1));
        assert!(!admits(1_000_000, 1));
        assert!(!admits(u64::MAX, 1));
    }
}
