//! Rules a header must satisfy given its ancestors: the required difficulty, a time after
//! the median of the previous 11 blocks, and not too far in the future.

use super::ConsensusError;
use crate::block::BlockHeader;
use crate::difficulty::next_target;
use crate::params::ChainParams;
use crate::pow::compact_from_target;

/// What a header is checked against: facts about its parent's chain.
#[derive(Debug, Clone, Copy)]
pub struct HeaderContext {
    pub parent_height: u32,
    pub parent_time: u32,
    /// Time of block 1 on the parent's branch (`None` when the parent is genesis).
    pub anchor_time: Option<u32>,
    /// Median time of the parent and up to 10 of its ancestors.
    pub median_time_past: u32,
    /// The validating node's clock, in Unix seconds.
    pub now: u64,
}

/// The bits the block after a parent at (`parent_height`, `parent_time`) must carry, on a
/// branch whose block 1 has `anchor_time` (see [`crate::difficulty`]).
pub fn required_bits(
    params: &ChainParams,
    parent_height: u32,
    parent_time: u32,
    anchor_time: Option<u32>,
) -> u32 {
    if params.no_retarget {
        return params.pow_limit_bits;
    }
    match (parent_height.checked_sub(1), anchor_time) {
        (Some(after_anchor), Some(anchor)) => compact_from_target(next_target(
            &params.asert(anchor),
            after_anchor,
            parent_time,
        )),
        _ => params.genesis_bits,
    }
}

/// Checks version, difficulty and time of `header` in its context.
pub fn check_header(
    header: &BlockHeader,
    ctx: &HeaderContext,
    params: &ChainParams,
) -> Result<(), ConsensusError> {
    if header.version < 1 {
        return Err(ConsensusError::BadVersion(header.version));
    }
    let expected = required_bits(params, ctx.parent_height, ctx.parent_time, ctx.anchor_time);
    if header.bits != expected {
        return Err(ConsensusError::BadDifficulty {
            found: header.bits,
            expected,
        });
    }
    if header.time <= ctx.median_time_past {
        return Err(ConsensusError::TimeTooOld {
            time: header.time,
            median: ctx.median_time_past,
        });
    }
    let limit = ctx
        .now
        .saturating_add(u64::from(params.max_future_block_time));
    if u64::from(header.time) > limit {
        return Err(ConsensusError::TimeTooNew {
            time: header.time,
            limit,
        });
    }
    Ok(())
}

/// The median of up to 11 timestamps (the parent's and its ancestors').
pub fn median_time(times: &[u32]) -> u32 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::target_from_compact;
    use fai_primitives::Network;

    #[test]
    fn blocks_one_and_two_carry_the_genesis_bits_wherever_the_clock_is() {
        let p = ChainParams::for_network(Network::Devnet);
        // Genesis is weeks old when the network launches: no effect on the first blocks.
        let late = p.genesis_time + 30 * 86_400;
        assert_eq!(required_bits(&p, 0, p.genesis_time, None), p.genesis_bits);
        assert_eq!(required_bits(&p, 1, late, Some(late)), p.genesis_bits);
        // On schedule from block 1: still the genesis target.
        let on_time = late + 10 * p.target_spacing as u32;
        assert_eq!(required_bits(&p, 11, on_time, Some(late)), p.genesis_bits);
        // One half-life ahead of schedule: half the target.
        let early = on_time - p.half_life as u32;
        let t = target_from_compact(required_bits(&p, 11, early, Some(late))).unwrap();
        let g = target_from_compact(p.genesis_bits).unwrap();
        assert_eq!(t, g >> 1);
    }

    #[test]
    fn regtest_never_retargets() {
        let p = ChainParams::for_network(Network::Regtest);
        assert_eq!(required_bits(&p, 500, 1, Some(2)), p.pow_limit_bits);
    }

    #[test]
    fn the_median_of_eleven_times() {
        assert_eq!(median_time(&[5, 1, 9]), 5);
        assert_eq!(median_time(&[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]), 4);
        assert_eq!(median_time(&[]), 0);
    }
}
