//! Settlement of one inference, in FAI base units, and the producer's subsidy.
//!
//! - Accepted: fee = min(max fee, price per million tokens × tokens / 1,000,000, rounded
//!   down); the serving node gets 90% of it (rounded down), the block producer the rest of
//!   the fee, the sender the rest of the max fee.
//! - Rejected: the sender gets the whole max fee back; the serving node's bond is slashed
//!   by three times the fee it would have earned, capped at the bond.
//!
//! The amounts always add up: node + producer + refund = max fee.

use fai_primitives::supply::{halving_subsidy, HALVING_INTERVAL, INFERENCE_INITIAL_SUBSIDY};
use fai_primitives::Amount;

/// Where one inference's max fee goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settlement {
    pub fee: u64,
    pub node: u64,
    pub producer: u64,
    pub refund: u64,
    /// Burnt from the node's bond (rejected results only).
    pub slash: u64,
}

/// The fee of `tokens` output tokens at `price` per million, within `max_fee`.
pub fn fee(max_fee: u64, price_per_million: u64, tokens: u32) -> u64 {
    let owed = u128::from(price_per_million)
        .saturating_mul(u128::from(tokens))
        .checked_div(1_000_000)
        .unwrap_or(0);
    u64::try_from(owed).unwrap_or(u64::MAX).min(max_fee)
}

/// Settles one inference.
pub fn settle(
    accepted: bool,
    max_fee: u64,
    price_per_million: u64,
    tokens: u32,
    bond: u64,
) -> Settlement {
    let fee = fee(max_fee, price_per_million, tokens);
    if accepted {
        let node = u64::try_from(
            u128::from(fee)
                .saturating_mul(9)
                .checked_div(10)
                .unwrap_or(0),
        )
        .unwrap_or(0);
        Settlement {
            fee,
            node,
            producer: fee.saturating_sub(node),
            refund: max_fee.saturating_sub(fee),
            slash: 0,
        }
    } else {
        Settlement {
            fee,
            node: 0,
            producer: 0,
            refund: max_fee,
            slash: fee.saturating_mul(3).min(bond),
        }
    }
}

/// The subsidy of a final inference block anchored at ledger height `height`.
pub fn producer_subsidy(height: u32) -> Amount {
    halving_subsidy(
        INFERENCE_INITIAL_SUBSIDY,
        u64::from(height),
        HALVING_INTERVAL,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_accepted_result_pays_node_producer_and_refunds_the_rest() {
        // 2,000 units per million tokens, 500 tokens: fee 1 unit.
        let s = settle(true, 10_000, 2_000, 500, 0);
        assert_eq!(
            s,
            Settlement {
                fee: 1,
                node: 0,
                producer: 1,
                refund: 9_999,
                slash: 0
            }
        );
        // 1 FAI per million, 250,000 tokens: 0.25 FAI; 90% / 10%.
        let s = settle(true, 100_000_000, 100_000_000, 250_000, 0);
        assert_eq!(
            s,
            Settlement {
                fee: 25_000_000,
                node: 22_500_000,
                producer: 2_500_000,
                refund: 75_000_000,
                slash: 0
            }
        );
        // Capped by the max fee.
        let s = settle(true, 1_000, 100_000_000, 250_000, 0);
        assert_eq!((s.fee, s.node, s.producer, s.refund), (1_000, 900, 100, 0));
        // Rounding: 7 units split 6 / 1.
        let s = settle(true, 7, 7_000_000, 1, 0);
        assert_eq!((s.node, s.producer), (6, 1));
    }

    #[test]
    fn a_rejected_result_refunds_everything_and_slashes_within_the_bond() {
        let s = settle(false, 1_000, 100_000, 5_000, 10_000);
        assert_eq!(
            s,
            Settlement {
                fee: 500,
                node: 0,
                producer: 0,
                refund: 1_000,
                slash: 1_500
            }
        );
        let s = settle(false, 1_000, 100_000, 5_000, 700);
        assert_eq!(s.slash, 700, "capped at the bond");
        let s = settle(false, 1_000, 0, 5_000, 700);
        assert_eq!(s.slash, 0);
    }

    #[test]
    fn the_subsidy_halves() {
        assert_eq!(producer_subsidy(1).units(), 350_000_000);
        assert_eq!(producer_subsidy(2_100_000).units(), 175_000_000);
    }

    proptest! {
        #[test]
        fn amounts_always_add_up(accepted: bool, max_fee in 0u64..=2_100_000_000_000_000, price in 0u64..=u64::MAX, tokens: u32, bond: u64) {
            let s = settle(accepted, max_fee, price, tokens, bond);
            prop_assert_eq!(s.node as u128 + s.producer as u128 + s.refund as u128, max_fee as u128);
            prop_assert!(s.fee <= max_fee);
            prop_assert!(s.slash <= bond);
            if accepted { prop_assert_eq!(s.node + s.producer, s.fee); }
        }
    }
}
