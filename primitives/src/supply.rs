//! The issuance schedule of FAI on both layers, kept in one place so that the 21,000,000
//! FAI cap can be checked against the sum of the two.
//!
//! The ledger pays 1.5 FAI per block and the inference chain 3.5 FAI per accepted tenure
//! block (at most one per ledger height); both halve every [`HALVING_INTERVAL`] blocks.
//! 5 FAI per height x 2,100,000 x (1 + 1/2 + 1/4 + ...) = 21,000,000 FAI.

use crate::amount::{Amount, COIN};

/// Blocks between halvings on both layers (a chain parameter; this is mainnet's).
pub const HALVING_INTERVAL: u64 = 2_100_000;

/// The ledger block subsidy before any halving: 1.5 FAI.
pub const LEDGER_INITIAL_SUBSIDY: u64 = 3 * COIN / 2;

/// The inference tenure block subsidy before any halving: 3.5 FAI.
pub const INFERENCE_INITIAL_SUBSIDY: u64 = 7 * COIN / 2;

/// The subsidy at `height` of a schedule that starts at `initial` base units and halves
/// every `interval` blocks. Zero after 64 halvings, and zero for a zero interval.
pub fn halving_subsidy(initial: u64, height: u64, interval: u64) -> Amount {
    let halvings = height.checked_div(interval).unwrap_or(u64::MAX);
    let units = u32::try_from(halvings)
        .ok()
        .and_then(|h| initial.checked_shr(h))
        .unwrap_or(0);
    Amount::from_units(units).unwrap_or(Amount::ZERO)
}

/// Everything a halving schedule will ever pay, in base units.
pub fn schedule_total(initial: u64, interval: u64) -> u128 {
    let mut total: u128 = 0;
    let mut subsidy = initial;
    while subsidy > 0 {
        total = total.saturating_add(u128::from(subsidy).saturating_mul(u128::from(interval)));
        subsidy >>= 1;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::MAX_MONEY;

    #[test]
    fn subsidies_halve_on_schedule() {
        let l = |h| halving_subsidy(LEDGER_INITIAL_SUBSIDY, h, HALVING_INTERVAL).units();
        assert_eq!(l(0), 150_000_000);
        assert_eq!(l(HALVING_INTERVAL - 1), 150_000_000);
        assert_eq!(l(HALVING_INTERVAL), 75_000_000);
        assert_eq!(l(HALVING_INTERVAL * 64), 0);
        assert_eq!(l(u64::MAX), 0);
        assert_eq!(halving_subsidy(LEDGER_INITIAL_SUBSIDY, 5, 0).units(), 0);
    }

    /// The whole schedule of both layers, block by block, stays within 21,000,000 FAI.
    #[test]
    fn both_layers_together_never_exceed_the_cap() {
        let ledger = schedule_total(LEDGER_INITIAL_SUBSIDY, HALVING_INTERVAL);
        let inference = schedule_total(INFERENCE_INITIAL_SUBSIDY, HALVING_INTERVAL);
        let total = ledger + inference;
        assert!(total <= u128::from(MAX_MONEY), "{total} > {MAX_MONEY}");
        // Rounding of the halvings loses less than one FAI per layer.
        assert!(u128::from(MAX_MONEY) - total < 2 * u128::from(COIN));
        // The closed form agrees with summing era by era through the subsidy function.
        let mut by_era: u128 = 0;
        for era in 0..70u64 {
            let h = era * HALVING_INTERVAL;
            let per_height = halving_subsidy(LEDGER_INITIAL_SUBSIDY, h, HALVING_INTERVAL).units()
                + halving_subsidy(INFERENCE_INITIAL_SUBSIDY, h, HALVING_INTERVAL).units();
            by_era += u128::from(per_height) * u128::from(HALVING_INTERVAL);
        }
        assert_eq!(by_era, total);
    }
}
