//! The verifier quorum: the five verifiers of the reward cycle vote on every inference of
//! a block and sign their votes with the block id. A block is final when a majority of the
//! set (3 of 5) has signed; each inference is accepted when a strict majority of those
//! signers accepted it. Signatures from outside the set, over another block, with the
//! wrong number of verdicts or that do not verify are ignored; a verifier counts once.

use fai_primitives::codec::{Decode, Encode, Reader};
use fai_primitives::{CodecError, Hash160, Hash256, PublicKey, SecretKey, Signature};

use crate::types::MAX_BLOCK_RECEIPTS;

/// One verifier's signed verdicts on one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub verifier: PublicKey,
    pub block: Hash256,
    /// One verdict per inference of the block, in order: true accepts.
    pub verdicts: Vec<bool>,
    pub signature: Signature,
}

impl Vote {
    pub fn signing_digest(&self) -> Hash256 {
        let mut out = b"fai-vote/v1".to_vec();
        self.verifier.encode_to(&mut out);
        self.block.encode_to(&mut out);
        out.extend_from_slice(
            &u32::try_from(self.verdicts.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend(self.verdicts.iter().map(|v| u8::from(*v)));
        Hash256::sha256d(&out)
    }

    /// A signed vote.
    pub fn new(key: &SecretKey, block: Hash256, verdicts: Vec<bool>) -> Self {
        let mut v = Vote {
            verifier: key.public_key(),
            block,
            verdicts,
            signature: Signature([0; 64]),
        };
        v.signature = key.sign(&v.signing_digest());
        v
    }
}

impl Encode for Vote {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.verifier.encode_to(out);
        self.block.encode_to(out);
        fai_primitives::codec::write_len(out, self.verdicts.len());
        out.extend(self.verdicts.iter().map(|v| u8::from(*v)));
        self.signature.encode_to(out);
    }
}

impl Decode for Vote {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let verifier = Decode::decode_from(r)?;
        let block = Decode::decode_from(r)?;
        let n = r.read_len("verdicts", MAX_BLOCK_RECEIPTS)?;
        let verdicts = r
            .read_slice(n)?
            .iter()
            .map(|b| match b {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(CodecError::Invalid {
                    what: "verdict",
                    reason: "neither 0 nor 1",
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Vote {
            verifier,
            block,
            verdicts,
            signature: Decode::decode_from(r)?,
        })
    }
}

/// The signatures a set of `n` verifiers needs for finality.
pub fn quorum(n: usize) -> usize {
    n.checked_div(2).unwrap_or(0).saturating_add(1)
}

/// What the votes decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The verifiers whose votes counted, in the order they came.
    pub signers: Vec<Hash160>,
    pub is_final: bool,
    /// Per inference: accepted by a strict majority of the signers.
    pub accepted: Vec<bool>,
}

/// Counts `votes` for `block` (with `inferences` inferences) by the verifier `set`.
pub fn tally(set: &[Hash160], block: &Hash256, inferences: usize, votes: &[Vote]) -> Tally {
    let mut signers: Vec<Hash160> = Vec::new();
    let mut accepts = vec![0usize; inferences];
    for vote in votes {
        let who = vote.verifier.hash160();
        if !set.contains(&who)
            || signers.contains(&who)
            || vote.block != *block
            || vote.verdicts.len() != inferences
            || !vote
                .verifier
                .verify(&vote.signing_digest(), &vote.signature)
        {
            continue;
        }
        signers.push(who);
        for (count, verdict) in accepts.iter_mut().zip(&vote.verdicts) {
            if *verdict {
                *count = count.saturating_add(1);
            }
        }
    }
    let is_final = !set.is_empty() && signers.len() >= quorum(set.len());
    let accepted = accepts
        .iter()
        .map(|a| a.saturating_mul(2) > signers.len())
        .collect();
    Tally {
        signers,
        is_final,
        accepted,
    }
}
