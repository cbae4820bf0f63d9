//! Difficulty adjustment: ASERT ("absolutely scheduled exponentially rising targets",
//! the aserti3-2d algorithm of Bitcoin Cash), recomputed at every block.
//!
//! The schedule is anchored at block 1, the first mined block of a chain: genesis is
//! fixed in code long before a network launches, block 1 is mined when it does. Blocks 1
//! and 2 carry the genesis target; after that, with block 1 at time `t1`, the target of
//! the block after a parent at height `h >= 1` and time `t` is
//!
//! ```text
//! target = genesis_target * 2^((t - t1 - spacing * (h - 1)) / half_life)
//! ```
//!
//! A chain that runs ahead of schedule by one half-life has half the genesis target
//! (twice the difficulty); one behind by a half-life, twice the target. The power of two is
//! computed in 16.16 fixed point with the cubic approximation of aserti3-2d, in integers
//! only, so every node gets the same bits; the result is clamped to the network's
//! proof-of-work limit.
//!
//! Timestamp manipulation is bounded: a block's time must exceed the median of the
//! previous 11 and be at most `max_future_block_time` ahead of the validating node's clock;
//! since the target depends on one timestamp, a lie moves one block's target by at most
//! 2^(max_future_block_time / half_life) (1.06x on mainnet) before honest timestamps undo
//! it. There are no retarget windows, so the time-warp attack on window edges has nothing to
//! act on. A backdated block 1 only makes the chain look late: difficulty then sits at the
//! proof-of-work limit until the chain has caught up with its schedule.

use primitive_types::{U256, U512};

/// The parameters the adjustment uses.
#[derive(Debug, Clone, Copy)]
pub struct AsertParams {
    /// The target of the anchor (the genesis target).
    pub anchor_target: U256,
    /// The time of the anchor block (block 1).
    pub anchor_time: u32,
    pub target_spacing: u64,
    pub half_life: u64,
    pub pow_limit: U256,
}

/// The target required of the block after a parent `blocks_after_anchor` blocks above
/// the anchor, with time `parent_time`.
pub fn next_target(p: &AsertParams, blocks_after_anchor: u32, parent_time: u32) -> U256 {
    let half_life = i128::from(p.half_life.max(1));
    let ideal = i128::from(p.target_spacing).saturating_mul(i128::from(blocks_after_anchor));
    let drift = i128::from(parent_time)
        .saturating_sub(i128::from(p.anchor_time))
        .saturating_sub(ideal);
    // 16.16 fixed-point exponent, floored.
    let exponent = drift.saturating_mul(65_536).div_euclid(half_life);
    let shifts = exponent.div_euclid(65_536);
    let frac = u128::try_from(exponent.rem_euclid(65_536)).unwrap_or(0);
    // 2^frac ~= 1 + (195766423245049 f + 971821376 f^2 + 5127 f^3 + 2^47) / 2^48 (aserti3-2d)
    let poly = 195_766_423_245_049u128
        .saturating_mul(frac)
        .saturating_add(971_821_376u128.saturating_mul(frac.saturating_mul(frac)))
        .saturating_add(5_127u128.saturating_mul(frac.saturating_mul(frac).saturating_mul(frac)))
        .saturating_add(1u128 << 47)
        >> 48;
    // 512-bit intermediate: a target near 2^256 times a 17-bit factor must not overflow.
    let factor = U512::from(65_536u128.saturating_add(poly));
    let Some(scaled) = U512::from(p.anchor_target).checked_mul(factor) else {
        return p.pow_limit;
    };
    // Apply 2^shifts and undo the 16 fractional bits.
    let total_shift = shifts.saturating_sub(16);
    let wide = if total_shift >= 0 {
        let s = usize::try_from(total_shift).unwrap_or(usize::MAX);
        if scaled.bits().saturating_add(s) > 256 {
            return p.pow_limit;
        }
        shl512(scaled, s)
    } else {
        shr512(
            scaled,
            usize::try_from(total_shift.unsigned_abs()).unwrap_or(usize::MAX),
        )
    };
    let Ok(target) = U256::try_from(wide) else {
        return p.pow_limit;
    };
    target.clamp(U256::one(), p.pow_limit)
}

/// `v << s`, zero past 512 bits (uint's shifts never panic; see `pow::shl`).
#[allow(clippy::arithmetic_side_effects)]
fn shl512(v: U512, s: usize) -> U512 {
    if s >= 512 {
        U512::zero()
    } else {
        v << s
    }
}

/// `v >> s`, zero past 512 bits.
#[allow(clippy::arithmetic_side_effects)]
fn shr512(v: U512, s: usize) -> U512 {
    if s >= 512 {
        U512::zero()
    } else {
        v >> s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> AsertParams {
        AsertParams {
            anchor_target: U256::one() << 200,
            anchor_time: 1_000_000,
            target_spacing: 60,
            half_life: 3600,
            pow_limit: U256::one() << 230,
        }
    }

    #[test]
    fn on_schedule_the_target_is_the_anchor_target() {
        let p = params();
        assert_eq!(next_target(&p, 0, p.anchor_time), p.anchor_target);
        assert_eq!(next_target(&p, 100, p.anchor_time + 6000), p.anchor_target);
    }

    #[test]
    fn one_half_life_late_doubles_and_early_halves() {
        let p = params();
        assert_eq!(
            next_target(&p, 100, p.anchor_time + 6000 + 3600),
            p.anchor_target << 1
        );
        assert_eq!(
            next_target(&p, 100, p.anchor_time + 6000 - 3600),
            p.anchor_target >> 1
        );
        assert_eq!(
            next_target(&p, 100, p.anchor_time + 6000 + 7200),
            p.anchor_target << 2
        );
    }

    #[test]
    fn half_a_half_life_is_close_to_the_square_root_of_two() {
        let p = params();
        let t = next_target(&p, 100, p.anchor_time + 6000 + 1800);
        // sqrt(2) * 2^200, within the cubic approximation's error (about 0.013%).
        let ratio = (t >> 180).low_u64() as f64 / (1u64 << 20) as f64;
        let error = (ratio / std::f64::consts::SQRT_2 - 1.0).abs();
        assert!(error < 1.5e-4, "{ratio}");
    }

    #[test]
    fn the_target_stays_within_one_and_the_pow_limit() {
        let p = params();
        assert_eq!(next_target(&p, 0, u32::MAX), p.pow_limit);
        assert_eq!(next_target(&p, u32::MAX, 0), U256::one());
    }

    #[test]
    fn targets_near_the_top_of_the_range_do_not_overflow() {
        let mut p = params();
        p.anchor_target = U256::MAX >> 2;
        p.pow_limit = U256::MAX >> 1;
        assert_eq!(next_target(&p, 10, p.anchor_time + 600), p.anchor_target);
        assert_eq!(
            next_target(&p, 10, p.anchor_time + 600 + 3600),
            p.anchor_target << 1
        );
        assert_eq!(next_target(&p, 10, p.anchor_time + 600 + 7200), p.pow_limit);
        assert_eq!(
            next_target(&p, 10, p.anchor_time + 600 - 3600),
            p.anchor_target >> 1
        );
    }

    #[test]
    fn targets_move_monotonically_with_time() {
        let p = params();
        let mut last = U256::zero();
        for dt in (0..20_000u32).step_by(97) {
            let t = next_target(&p, 50, p.anchor_time + dt);
            assert!(t >= last);
            last = t;
        }
    }
}
