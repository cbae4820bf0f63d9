//! The verifier quorum: the five verifiers of the reward cycle vote on every inference of
//! a block and sign their votes with the block id. A block is final when a majority of the
//! set (3 of 5) has signed. A verdict accepts, rejects (grossly or not), or abstains (the
//! verifier could not judge: it lacks the model or the text); each inference is accepted
//! when more than half of the set (not only of the signers, whom the producer picks)
//! accepted it, rejected when more than half of the set rejected it, and undecided
//! otherwise (refunded, nobody paid or slashed). Signatures from outside the
//! set, over another block, with the wrong number of verdicts or that do not verify are
//! ignored; a verifier counts once.
//!
//! Votes come in two phases (decision 0004): a verifier first publishes a
//! [`VoteCommit`], a hash of its vote with a secret salt, and reveals the [`Vote`]
//! itself (salt included) only once the commitments had to be carried; a revealed vote
//! counts only beside its verifier's matching commitment, so nobody can copy a verdict
//! before committing to its own.

use fai_primitives::codec::{Decode, Encode, Reader};
use fai_primitives::{CodecError, Hash160, Hash256, PublicKey, SecretKey, Signature};

use crate::types::MAX_BLOCK_RECEIPTS;
use fai_primitives::sig_cache::verify_cached;

/// One verifier's judgement of one inference (one byte in a vote: 0 to 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The answer is not what the model gives: a token no device within the drift bound
    /// of this verifier's would choose.
    Reject,
    Accept,
    /// The verifier could not judge: it does not hold the model, or the text never
    /// reached it. Counts as a signature for finality, for neither side of the decision.
    Abstain,
    /// A rejection every verifier within the drift bound of this one makes alike: the
    /// answer breaks a rule that needs no logits, or a token is a mismatch even at twice
    /// the bound (decision 0004). Counts as a rejection.
    RejectGross,
}

impl Verdict {
    /// Whether this verdict rejects (grossly or not).
    pub fn rejects(self) -> bool {
        matches!(self, Verdict::Reject | Verdict::RejectGross)
    }
}

impl Verdict {
    fn byte(self) -> u8 {
        match self {
            Verdict::Reject => 0,
            Verdict::Accept => 1,
            Verdict::Abstain => 2,
            Verdict::RejectGross => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Verdict::Reject),
            1 => Some(Verdict::Accept),
            2 => Some(Verdict::Abstain),
            3 => Some(Verdict::RejectGross),
            _ => None,
        }
    }
}

impl From<bool> for Verdict {
    fn from(accepted: bool) -> Self {
        if accepted {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }
}

/// What the votes decide about one inference of a final block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// More than half of the verifier set accepted it: the node is paid.
    Accepted,
    /// More than half of the verifier set rejected it: refunded, the node slashed.
    Rejected,
    /// Neither (abstentions, or a split): refunded, nobody paid or slashed.
    Undecided,
}

/// One verifier's signed verdicts on one block: the reveal of its [`VoteCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub verifier: PublicKey,
    pub block: Hash256,
    /// One verdict per inference of the block, in order.
    pub verdicts: Vec<Verdict>,
    /// The secret that made the commitment unguessable (from 4^n verdicts) until now.
    pub salt: [u8; 32],
    pub signature: Signature,
}

impl Vote {
    /// The verdicts' digest, without the salt: what the commitment hides.
    fn content_digest(&self) -> Hash256 {
        let mut out = b"fai-vote/v1".to_vec();
        self.verifier.encode_to(&mut out);
        self.block.encode_to(&mut out);
        out.extend_from_slice(
            &u32::try_from(self.verdicts.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend(self.verdicts.iter().map(|v| v.byte()));
        Hash256::sha256d(&out)
    }

    /// What the verifier signs: the verdicts and the salt.
    pub fn signing_digest(&self) -> Hash256 {
        Hash256::sha256d_parts(&[b"fai-vote/v2", &self.content_digest().0, &self.salt])
    }

    /// The commitment this vote reveals.
    pub fn commitment(&self) -> Hash256 {
        Hash256::sha256d_parts(&[b"fai-vote-commit/v1", &self.content_digest().0, &self.salt])
    }

    /// A signed vote. Its salt is derived from a signature of the verifier's over the
    /// verdicts: nobody without the key can compute it, and signing the same verdicts
    /// again gives the same salt (a verifier that replays a block again after a restart
    /// reveals what it committed to).
    pub fn new(key: &SecretKey, block: Hash256, verdicts: Vec<Verdict>) -> Self {
        let mut v = Vote {
            verifier: key.public_key(),
            block,
            verdicts,
            salt: [0; 32],
            signature: Signature([0; 64]),
        };
        let secret = key.sign(&Hash256::sha256d_parts(&[
            b"fai-vote-salt/v1",
            &v.content_digest().0,
        ]));
        v.salt = Hash256::sha256d(&secret.0).0;
        v.signature = key.sign(&v.signing_digest());
        v
    }

    /// Whether the verifier signed this vote.
    pub fn signature_valid(&self) -> bool {
        verify_cached(&self.verifier, &self.signing_digest(), &self.signature)
    }
}

impl Encode for Vote {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.verifier.encode_to(out);
        self.block.encode_to(out);
        fai_primitives::codec::write_len(out, self.verdicts.len());
        out.extend(self.verdicts.iter().map(|v| v.byte()));
        self.salt.encode_to(out);
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
            .map(|b| {
                Verdict::from_byte(*b).ok_or(CodecError::Invalid {
                    what: "verdict",
                    reason: "not 0, 1, 2 or 3",
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Vote {
            verifier,
            block,
            verdicts,
            salt: r.read_array()?,
            signature: Decode::decode_from(r)?,
        })
    }
}

/// A verifier's commitment to its vote on a block, published before any vote on it can
/// be seen: the first phase of a vote (decision 0004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteCommit {
    pub verifier: PublicKey,
    pub block: Hash256,
    /// [`Vote::commitment`] of the vote it will reveal.
    pub commitment: Hash256,
    pub signature: Signature,
}

impl VoteCommit {
    pub fn signing_digest(&self) -> Hash256 {
        let mut out = b"fai-vote-commit-message/v1".to_vec();
        self.verifier.encode_to(&mut out);
        self.block.encode_to(&mut out);
        self.commitment.encode_to(&mut out);
        Hash256::sha256d(&out)
    }

    /// The signed commitment to `vote` (made with the same key).
    pub fn of(key: &SecretKey, vote: &Vote) -> Self {
        let mut c = VoteCommit {
            verifier: key.public_key(),
            block: vote.block,
            commitment: vote.commitment(),
            signature: Signature([0; 64]),
        };
        c.signature = key.sign(&c.signing_digest());
        c
    }

    /// Whether the verifier signed this commitment.
    pub fn signature_valid(&self) -> bool {
        verify_cached(&self.verifier, &self.signing_digest(), &self.signature)
    }

    /// Whether `vote` is what this commits to (same verifier, block and digest).
    pub fn opens_to(&self, vote: &Vote) -> bool {
        self.verifier == vote.verifier
            && self.block == vote.block
            && self.commitment == vote.commitment()
    }
}

impl Encode for VoteCommit {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.verifier.encode_to(out);
        self.block.encode_to(out);
        self.commitment.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for VoteCommit {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(VoteCommit {
            verifier: Decode::decode_from(r)?,
            block: Decode::decode_from(r)?,
            commitment: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

/// What a verifier gossips on the vote topic: a commitment or its reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteMessage {
    Commit(VoteCommit),
    Reveal(Vote),
}

impl Encode for VoteMessage {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            VoteMessage::Commit(c) => {
                out.push(0);
                c.encode_to(out);
            }
            VoteMessage::Reveal(v) => {
                out.push(1);
                v.encode_to(out);
            }
        }
    }
}

impl Decode for VoteMessage {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.read_u8()? {
            0 => Ok(VoteMessage::Commit(Decode::decode_from(r)?)),
            1 => Ok(VoteMessage::Reveal(Decode::decode_from(r)?)),
            _ => Err(CodecError::Invalid {
                what: "vote message",
                reason: "neither a commitment (0) nor a reveal (1)",
            }),
        }
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
    /// Where their votes are in the votes tallied, in the same order.
    pub counted: Vec<usize>,
    pub is_final: bool,
    /// Per inference: what the signers decided (meaningful once final).
    pub outcomes: Vec<Outcome>,
    /// Per inference: more than half the verifier set (not only of the signers) rejected
    /// it grossly.
    pub grossly_rejected: Vec<bool>,
}

/// Counts `votes` for `block` (with `inferences` inferences) by the verifier `set`.
pub fn tally(set: &[Hash160], block: &Hash256, inferences: usize, votes: &[Vote]) -> Tally {
    let mut signers: Vec<Hash160> = Vec::new();
    let mut accepts = vec![0usize; inferences];
    let mut rejects = vec![0usize; inferences];
    let mut gross = vec![0usize; inferences];
    let mut counted = Vec::new();
    for (at, vote) in votes.iter().enumerate() {
        let who = vote.verifier.hash160();
        if !set.contains(&who)
            || signers.contains(&who)
            || vote.block != *block
            || vote.verdicts.len() != inferences
            || !vote.signature_valid()
        {
            continue;
        }
        signers.push(who);
        counted.push(at);
        for (((a, r), g), verdict) in accepts
            .iter_mut()
            .zip(rejects.iter_mut())
            .zip(gross.iter_mut())
            .zip(&vote.verdicts)
        {
            match verdict {
                Verdict::Accept => *a = a.saturating_add(1),
                Verdict::Reject => *r = r.saturating_add(1),
                Verdict::RejectGross => {
                    *r = r.saturating_add(1);
                    *g = g.saturating_add(1);
                }
                Verdict::Abstain => {}
            }
        }
    }
    let is_final = !set.is_empty() && signers.len() >= quorum(set.len());
    let outcomes = accepts
        .iter()
        .zip(&rejects)
        .map(|(a, r)| {
            // Against the whole set, not the signers: the producer picks which votes
            // it carries, and with the signers' majority two dishonest verifiers and
            // one honest one would decide against the two honest votes left out
            // (a forgery paid, or an honest node slashed).
            if a.saturating_mul(2) > set.len() {
                Outcome::Accepted
            } else if r.saturating_mul(2) > set.len() {
                Outcome::Rejected
            } else {
                Outcome::Undecided
            }
        })
        .collect();
    // Of the whole set, not of the signers: the producer that carries the votes chooses
    // which of them count, and must not be able to make two gross rejections out of five
    // verifiers a majority (decision 0004).
    let grossly_rejected = gross
        .iter()
        .map(|g| g.saturating_mul(2) > set.len())
        .collect();
    Tally {
        signers,
        counted,
        is_final,
        outcomes,
        grossly_rejected,
    }
}
