//! What a ledger block means for the inference layer: the register ops it carries, the
//! valid commits (bids) of its sortition, and its peg-ins. A pure function of the block,
//! its height, the verifier set and the registers already on the ledger: after a ledger
//! reorganisation the node simply reads the new branch's blocks again.
//!
//! Rules:
//! - only a transaction's first op counts; coinbases carry none;
//! - a commit must be signed by the register's key (its transaction's first input is
//!   unlocked by the key whose hash the register op names) and name a register op at a
//!   lower ledger height, and the block it is in
//!   must follow the ledger block it names (its first four bytes): a commit mined late
//!   or on another branch proved another seed and is no bid; each register bids at
//!   most once per block (the first valid commit);
//! - a commit pays its bid in the same transaction: with a verifier set, the same nonzero
//!   amount to every member's address (pay-to-key-hash outputs) but the committer's own
//!   (the register's address: what goes there is change), the bid being the sum; without
//!   a set (before anyone stakes), or with a set of the committer alone, the value of the
//!   op's own data output, burnt;
//! - a peg-in credits the value of its own data output (which can never be spent) to the
//!   inference address it names; a zero value is no peg-in.

use fai_ledger::{Block, OutputKind, Transaction, Unlock};
use fai_primitives::{Hash160, Hash256};

use crate::ops::{Op, RegisterRef};
use crate::sortition::Bid;

/// A register op on the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub at: RegisterRef,
    pub vrf_key: [u8; 32],
    pub address: Hash160,
    pub models: Vec<[u8; 8]>,
}

/// The inference layer's reading of one ledger block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerBlockOps {
    pub registers: Vec<Register>,
    pub bids: Vec<Bid>,
    pub peg_ins: Vec<(Hash160, u64)>,
}

/// Whether a ledger transaction's op is a commit (only a transaction's first op counts).
pub fn carries_commit(tx: &Transaction) -> bool {
    let first_op = tx.outputs.iter().find_map(|o| match &o.kind {
        OutputKind::Data(d) => Op::parse(d),
        OutputKind::PayToKeyHash(_) => None,
    });
    matches!(first_op, Some(Op::Commit { .. }))
}

/// Whether a transaction (not the coinbase) of the ledger block at `height` built on
/// `prev` carries a commit that may elect its producer there, as [`read_block`] reads
/// bids: made on that very parent (a commit mined a block late names another), for a
/// register made before and found on this branch (`registers`), by that register's key.
/// Whether it wins depends on more (the verifier set it must pay, the other bids); this is
/// a fact of the ledger alone, the same on every reading.
pub fn carries_commit_on(
    tx: &Transaction,
    height: u32,
    prev: &Hash256,
    registers: impl Fn(&RegisterRef) -> Option<Register>,
) -> bool {
    let first_op = tx.outputs.iter().find_map(|o| match &o.kind {
        OutputKind::Data(d) => Op::parse(d),
        OutputKind::PayToKeyHash(_) => None,
    });
    let Some(Op::Commit {
        register, after, ..
    }) = first_op
    else {
        return false;
    };
    register.height < height
        && after == crate::ops::commit_after(prev)
        && registers(&register).is_some_and(|r| committer(tx) == Some(r.address))
}

/// The key hash whose signature unlocks a transaction's first input.
fn committer(tx: &Transaction) -> Option<Hash160> {
    match &tx.inputs.first()?.unlock {
        Unlock::Key { pubkey, .. } => Some(pubkey.hash160()),
        Unlock::Coinbase(_) => None,
    }
}

/// Reads the ops of `block` at `height`, given the `verifiers` of the current cycle and a
/// lookup of registers already on the chain.
pub fn read_block(
    block: &Block,
    height: u32,
    verifiers: &[Hash160],
    registers: impl Fn(&RegisterRef) -> Option<Register>,
) -> LedgerBlockOps {
    let mut out = LedgerBlockOps::default();
    for (index, tx) in block.transactions.iter().enumerate().skip(1) {
        let Some((op, op_value)) = tx.outputs.iter().find_map(|o| match &o.kind {
            OutputKind::Data(d) => Op::parse(d).map(|op| (op, o.value.units())),
            OutputKind::PayToKeyHash(_) => None,
        }) else {
            continue;
        };
        let Ok(tx_index) = u16::try_from(index) else {
            continue;
        };
        match op {
            Op::Register {
                vrf_key,
                address,
                models,
            } => out.registers.push(Register {
                at: RegisterRef { height, tx_index },
                vrf_key,
                address,
                models,
            }),
            Op::PegIn { address } => {
                if op_value > 0 {
                    out.peg_ins.push((address, op_value));
                }
            }
            Op::Commit {
                register,
                parent,
                seed,
                after,
            } => {
                if register.height >= height
                    || crate::ops::commit_after(&block.header.prev) != after
                    || out.bids.iter().any(|b| b.register == register)
                {
                    continue;
                }
                let Some(reg) = registers(&register) else {
                    continue;
                };
                // Only the register's key commits for it: anyone else's commit naming it
                // (a rival's, with a higher fee, mined first) would otherwise take the
                // register's one bid of the block and censor it.
                if committer(tx) != Some(reg.address) {
                    continue;
                }
                // The committer does not pay itself: what goes to its own address is
                // change, and a set of itself alone is no set.
                let payees: Vec<&Hash160> =
                    verifiers.iter().filter(|v| **v != reg.address).collect();
                let amount = if payees.is_empty() {
                    op_value
                } else {
                    let paid: Vec<u64> = payees
                        .iter()
                        .map(|v| {
                            tx.outputs
                                .iter()
                                .filter(|o| o.kind == OutputKind::PayToKeyHash(**v))
                                .map(|o| o.value.units())
                                .fold(0u64, u64::saturating_add)
                        })
                        .collect();
                    let first = paid.first().copied().unwrap_or(0);
                    if first == 0 || paid.iter().any(|p| *p != first) {
                        continue;
                    }
                    paid.iter().copied().fold(0u64, u64::saturating_add)
                };
                if amount == 0 {
                    continue;
                }
                out.bids.push(Bid {
                    register,
                    vrf_key: reg.vrf_key,
                    producer: reg.address,
                    parent,
                    amount,
                    seed,
                });
            }
        }
    }
    out
}
