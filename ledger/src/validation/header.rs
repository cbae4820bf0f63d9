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
    /// Median time of the parent and up to 10 of its ancestors.
    pub median_time_past: u32,
    /// The validating node's clock, in Unix seconds.
    pub now: u64,
}

/// The bits the block after a parent at (`parent_height`, `parent_time`) must carry.
pub fn required_bits(params: &ChainParams, parent_height: u32, parent_time: u32) -> u32 {
    if params.no_retarget {
        return params.pow_limit_bits;
    }
    compact_from_target(next_target(&params.asert(), parent_height, parent_time))
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
    let expected = required_bits(params, ctx.parent_height, ctx.parent_time);
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
