//! Cross-layer operations: tagged data outputs of ledger transactions that the inference
//! chain reads. Every op starts with the magic `FI` and a kind byte; its length is exact.
//!
//! | op | layout after `FI` | bytes |
//! | --- | --- | --- |
//! | register | `R`, VRF public key (32), inference address hash160 (20), model count (1, 0..=3), 8-byte model id prefixes | 56..=80 |
//! | commit | `C`, register reference: ledger height (u32 LE) and transaction index (u16 LE), parent inference block (32), VRF output over the current seed (first 32 bytes) | 73 |
//! | peg-in | `P`, inference address hash160 (20) | 23 |
//!
//! A commit pays its bid in the same transaction's pay-to-key-hash outputs to the current
//! verifier set, split equally; a peg-in locks the value of its own data output on the
//! ledger (that output can never be spent) and credits it on the inference layer six
//! confirmations later. Consensus ignores malformed ops; wallets build them with the
//! `build_*` functions, which check everything first.

use fai_primitives::Hash160;

/// The first bytes of every op.
pub const MAGIC: [u8; 2] = *b"FI";
/// Model prefixes a register op may carry (80-byte data outputs).
pub const MAX_REGISTER_MODELS: usize = 3;
/// Confirmations before a peg-in is credited on the inference layer.
pub const PEG_IN_CONFIRMATIONS: u32 = 6;

/// Where a register op sits on the ledger: the block height and the transaction's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisterRef {
    pub height: u32,
    pub tx_index: u16,
}

/// A cross-layer operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// An inference node announces its VRF key, its inference-layer address and the
    /// models it serves (by the first 8 bytes of their ids).
    Register {
        vrf_key: [u8; 32],
        address: Hash160,
        models: Vec<[u8; 8]>,
    },
    /// A bid for the sortition of the block it is in, building on `parent`. `seed` is
    /// the bidder's VRF output over the current seed: if it wins, its first block must
    /// prove it (it is that block's randomness in the VM; the next seed does not depend
    /// on it). `after` is the first four bytes of the ledger
    /// block the bid follows: it counts only in a block whose parent that is (the seed
    /// it proved is that block's).
    Commit {
        register: RegisterRef,
        parent: [u8; 32],
        seed: [u8; 32],
        after: [u8; 4],
    },
    /// Locks the output's value on the ledger for `address` on the inference layer.
    PegIn { address: Hash160 },
}

/// What a commit for the block after ledger block `tip` names of it (`Op::Commit`'s
/// `after`): the hash's first four bytes.
pub fn commit_after(tip: &fai_primitives::Hash256) -> [u8; 4] {
    let mut after = [0u8; 4];
    if let Some(head) = tip.0.get(..4) {
        after.copy_from_slice(head);
    }
    after
}

/// Why an op cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("a register op carries at most {MAX_REGISTER_MODELS} models, not {0}")]
    TooManyModels(usize),
    #[error("a register op needs at least one model")]
    NoModels,
}

impl Op {
    /// The data output's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        match self {
            Op::Register {
                vrf_key,
                address,
                models,
            } => {
                out.push(b'R');
                out.extend_from_slice(vrf_key);
                out.extend_from_slice(&address.0);
                out.push(u8::try_from(models.len()).unwrap_or(u8::MAX));
                for m in models {
                    out.extend_from_slice(m);
                }
            }
            Op::Commit {
                register,
                parent,
                seed,
                after,
            } => {
                out.push(b'C');
                out.extend_from_slice(&register.height.to_le_bytes());
                out.extend_from_slice(&register.tx_index.to_le_bytes());
                out.extend_from_slice(parent);
                out.extend_from_slice(seed);
                out.extend_from_slice(after);
            }
            Op::PegIn { address } => {
                out.push(b'P');
                out.extend_from_slice(&address.0);
            }
        }
        out
    }

    /// Parses a data output; anything that is not exactly a well-formed op is `None`.
    pub fn parse(data: &[u8]) -> Option<Op> {
        let rest = data.strip_prefix(&MAGIC)?;
        let (&kind, body) = rest.split_first()?;
        match kind {
            b'R' => {
                let vrf_key: [u8; 32] = body.get(..32)?.try_into().ok()?;
                let address: [u8; 20] = body.get(32..52)?.try_into().ok()?;
                let count = usize::from(*body.get(52)?);
                let prefixes = body.get(53..)?;
                if count == 0
                    || count > MAX_REGISTER_MODELS
                    || prefixes.len() != count.checked_mul(8)?
                {
                    return None;
                }
                let models = prefixes
                    .chunks_exact(8)
                    .map(|c| c.try_into().ok())
                    .collect::<Option<Vec<[u8; 8]>>>()?;
                Some(Op::Register {
                    vrf_key,
                    address: Hash160(address),
                    models,
                })
            }
            b'C' if body.len() == 74 => Some(Op::Commit {
                register: RegisterRef {
                    height: u32::from_le_bytes(body.get(..4)?.try_into().ok()?),
                    tx_index: u16::from_le_bytes(body.get(4..6)?.try_into().ok()?),
                },
                parent: body.get(6..38)?.try_into().ok()?,
                seed: body.get(38..70)?.try_into().ok()?,
                after: body.get(70..74)?.try_into().ok()?,
            }),
            b'P' if body.len() == 20 => Some(Op::PegIn {
                address: Hash160(body.try_into().ok()?),
            }),
            _ => None,
        }
    }
}

/// A register op, checked.
pub fn build_register(
    vrf_key: [u8; 32],
    address: Hash160,
    models: &[[u8; 32]],
) -> Result<Op, OpError> {
    if models.is_empty() {
        return Err(OpError::NoModels);
    }
    if models.len() > MAX_REGISTER_MODELS {
        return Err(OpError::TooManyModels(models.len()));
    }
    Ok(Op::Register {
        vrf_key,
        address,
        models: models
            .iter()
            .map(|m| {
                let mut p = [0u8; 8];
                p.copy_from_slice(m.get(..8).unwrap_or(&[0; 8]));
                p
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ops_round_trip_and_fit_a_data_output() {
        let ops = [
            build_register([1; 32], Hash160([2; 20]), &[[3; 32], [4; 32], [5; 32]]).unwrap(),
            Op::Commit {
                register: RegisterRef {
                    height: 77,
                    tx_index: 3,
                },
                parent: [6; 32],
                seed: [8; 32],
                after: [9; 4],
            },
            Op::PegIn {
                address: Hash160([7; 20]),
            },
        ];
        for op in ops {
            let bytes = op.encode();
            assert!(
                bytes.len() <= fai_ledger::tx::MAX_DATA_OUTPUT,
                "{}",
                bytes.len()
            );
            assert_eq!(Op::parse(&bytes), Some(op));
        }
    }

    #[test]
    fn malformed_ops_are_ignored_and_wallets_are_told() {
        let peg = Op::PegIn {
            address: Hash160([7; 20]),
        }
        .encode();
        assert_eq!(Op::parse(&peg[..peg.len() - 1]), None);
        let mut longer = peg.clone();
        longer.push(0);
        assert_eq!(Op::parse(&longer), None);
        let mut wrong_magic = peg.clone();
        wrong_magic[0] = b'X';
        assert_eq!(Op::parse(&wrong_magic), None);
        assert_eq!(Op::parse(b"FIZ"), None);
        assert_eq!(Op::parse(b""), None);
        // A register op whose count disagrees with its prefixes.
        let mut reg = build_register([1; 32], Hash160([2; 20]), &[[3; 32]])
            .unwrap()
            .encode();
        reg[55] = 2;
        assert_eq!(Op::parse(&reg), None);
        assert_eq!(
            build_register([1; 32], Hash160([2; 20]), &[[3; 32]; 4]),
            Err(OpError::TooManyModels(4))
        );
        assert_eq!(
            build_register([1; 32], Hash160([2; 20]), &[]),
            Err(OpError::NoModels)
        );
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Some(op) = Op::parse(&data) {
                prop_assert_eq!(op.encode(), data);
            }
        }
    }
}
