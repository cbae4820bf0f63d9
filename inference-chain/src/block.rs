//! Inference blocks: a header that anchors the block in the ledger and commits to its
//! content, and a body of VM transactions, inferences (stubs and receipts: hashes, never
//! text) and verifiers' commitments and votes on the blocks of its vote window (its
//! parent and the blocks above it, see `crate::chain::VOTE_WINDOW`).
//!
//! The block id is sha256d of the header without the producer's signature; the producer
//! signs the id. A tenure's first block carries the VRF proof of the output its commit stated.

use fai_primitives::codec::{write_vec, Decode, Encode, Reader};
use fai_primitives::{CodecError, Hash256, PublicKey, SecretKey, Signature};
use fai_vrf::{Proof, PROOF_LEN};

use crate::quorum::{Vote, VoteCommit};
use crate::types::{merkle_root, Inference, MAX_BLOCK_RECEIPTS};
use crate::vmtx::SignedVmTx;
use fai_primitives::sig_cache::verify_cached;

/// The header of an inference block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceHeader {
    pub version: u32,
    pub height: u32,
    pub parent: [u8; 32],
    /// The ledger block the tenure was won in.
    pub ledger_anchor: [u8; 32],
    pub ledger_height: u32,
    /// Merkle root of the VM transactions' ids.
    pub tx_root: Hash256,
    /// Merkle root of the inferences (stub txid, then receipt hash).
    pub results_root: Hash256,
    /// Merkle root of the verifiers' commitments carried in the body.
    pub commits_root: Hash256,
    /// Merkle root of the verifiers' votes carried in the body.
    pub votes_root: Hash256,
    /// The contract state after the block.
    pub state_root: [u8; 32],
    /// Present in a tenure's first block.
    pub vrf_proof: Option<Proof>,
    pub producer: PublicKey,
    pub signature: Signature,
}

impl InferenceHeader {
    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        self.version.encode_to(out);
        self.height.encode_to(out);
        self.parent.encode_to(out);
        self.ledger_anchor.encode_to(out);
        self.ledger_height.encode_to(out);
        self.tx_root.encode_to(out);
        self.results_root.encode_to(out);
        self.commits_root.encode_to(out);
        self.votes_root.encode_to(out);
        self.state_root.encode_to(out);
        match &self.vrf_proof {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.0);
            }
        }
        self.producer.encode_to(out);
    }

    /// The block id.
    pub fn id(&self) -> Hash256 {
        let mut out = b"fai-inference-block/v1".to_vec();
        self.encode_unsigned(&mut out);
        Hash256::sha256d(&out)
    }

    pub fn sign(&mut self, key: &SecretKey) {
        self.signature = key.sign(&self.id());
    }

    pub fn signature_valid(&self) -> bool {
        verify_cached(&self.producer, &self.id(), &self.signature)
    }
}

impl Encode for InferenceHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        self.signature.encode_to(out);
    }
}

impl Decode for InferenceHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(InferenceHeader {
            version: r.read_u32()?,
            height: r.read_u32()?,
            parent: r.read_array()?,
            ledger_anchor: r.read_array()?,
            ledger_height: r.read_u32()?,
            tx_root: Decode::decode_from(r)?,
            results_root: Decode::decode_from(r)?,
            commits_root: Decode::decode_from(r)?,
            votes_root: Decode::decode_from(r)?,
            state_root: r.read_array()?,
            vrf_proof: match r.read_u8()? {
                0 => None,
                1 => Some(Proof(r.read_array::<PROOF_LEN>()?)),
                _ => {
                    return Err(CodecError::Invalid {
                        what: "VRF proof flag",
                        reason: "neither 0 nor 1",
                    })
                }
            },
            producer: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

/// An inference block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceBlock {
    pub header: InferenceHeader,
    /// VM transactions, in execution order.
    pub vm_txs: Vec<SignedVmTx>,
    pub inferences: Vec<Inference>,
    /// Verifiers' commitments to their votes on the blocks of the vote window in their
    /// commit phase.
    pub commits: Vec<VoteCommit>,
    /// Verifiers' votes (reveals of carried commitments) on the blocks of the vote window
    /// in their reveal phase and not settled yet: the block whose votes reach a quorum
    /// here is final, and settled here.
    pub votes: Vec<Vote>,
}

/// Votes one block may carry: five verifiers on each block of the vote window, with
/// room for larger sets.
pub const MAX_BLOCK_VOTES: u64 = 128;

/// Commitments one block may carry: five verifiers on each block of the commit phase,
/// with room for larger sets.
pub const MAX_BLOCK_COMMITS: u64 = 128;

/// VM transactions one block may carry.
pub const MAX_BLOCK_VM_TXS: u64 = 5_000;

/// The largest inference block, encoded, on every network (a consensus rule): below what
/// one gossip message (`inference-block` topic, 2.1 MB) and one sync response (10 MiB)
/// carry, so that every valid block can reach every node. Producers fill blocks up to it.
pub const MAX_BLOCK_BYTES: usize = 2_000_000;

impl InferenceBlock {
    /// The transactions root of `txs`.
    pub fn tx_root_of(txs: &[SignedVmTx]) -> Hash256 {
        merkle_root(&txs.iter().map(SignedVmTx::txid).collect::<Vec<_>>())
    }

    /// The commitments root of `commits`.
    pub fn commits_root_of(commits: &[VoteCommit]) -> Hash256 {
        merkle_root(
            &commits
                .iter()
                .map(VoteCommit::signing_digest)
                .collect::<Vec<_>>(),
        )
    }

    /// The votes root of `votes`.
    pub fn votes_root_of(votes: &[Vote]) -> Hash256 {
        merkle_root(&votes.iter().map(Vote::signing_digest).collect::<Vec<_>>())
    }

    /// Whether the header's roots commit to this body.
    pub fn roots_match(&self) -> bool {
        self.header.tx_root == Self::tx_root_of(&self.vm_txs)
            && self.header.results_root == Self::results_root_of(&self.inferences)
            && self.header.commits_root == Self::commits_root_of(&self.commits)
            && self.header.votes_root == Self::votes_root_of(&self.votes)
    }

    /// The results root of `inferences`.
    pub fn results_root_of(inferences: &[Inference]) -> Hash256 {
        let leaves: Vec<Hash256> = inferences
            .iter()
            .map(|i| Hash256::sha256d_parts(&[&i.stub.txid().0, &i.receipt.signing_digest().0]))
            .collect();
        merkle_root(&leaves)
    }
}

impl Encode for InferenceBlock {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        write_vec(out, &self.vm_txs);
        write_vec(out, &self.inferences);
        write_vec(out, &self.commits);
        write_vec(out, &self.votes);
    }
}

impl Decode for InferenceBlock {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(InferenceBlock {
            header: Decode::decode_from(r)?,
            vm_txs: r.read_vec("VM transactions", MAX_BLOCK_VM_TXS, 100)?,
            // A stub and a receipt take well over 200 bytes.
            inferences: r.read_vec("inferences", MAX_BLOCK_RECEIPTS, 200)?,
            // A verifier key, block id, commitment and signature: 161 bytes.
            commits: r.read_vec("commitments", MAX_BLOCK_COMMITS, 161)?,
            // A verifier key, block id, salt and signature: 161 bytes and more.
            votes: r.read_vec("votes", MAX_BLOCK_VOTES, 161)?,
        })
    }
}
