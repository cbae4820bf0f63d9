//! The data of the inference layer: inference transactions, their stubs in blocks, result
//! receipts, block headers and verifier signatures, each with one canonical, bounded
//! encoding.
//!
//! Limits (far above the reference implementation's 128 bytes): a system prompt and an
//! input of up to 64 KiB each, up to 64 earlier turns of up to 64 KiB each and 256 KiB in
//! all, four stop strings of 64 bytes, 32,768 output tokens.
//!
//! Blocks carry hashes only: an inference transaction enters a block as its
//! [`InferenceStub`], which replaces the prompt text (system, context, input) by its
//! hash. The sender signs the stub's fields, so a block's transactions can be checked
//! without the text, and the text can be dropped once the block is settled.

use fai_primitives::codec::{write_len, write_var_bytes, write_vec, Decode, Encode, Reader};
use fai_primitives::sig_cache::verify_cached;
use fai_primitives::{Amount, CodecError, Hash256, PublicKey, SecretKey, Signature};
use sha2::{Digest, Sha256};

pub const MAX_SYSTEM_BYTES: u64 = 64 * 1024;
pub const MAX_INPUT_BYTES: u64 = 64 * 1024;
pub const MAX_TURN_BYTES: u64 = 64 * 1024;
pub const MAX_CONTEXT_TURNS: u64 = 64;
pub const MAX_CONTEXT_BYTES: usize = 256 * 1024;
pub const MAX_STOPS: u64 = 4;
pub const MAX_STOP_BYTES: u64 = 64;
pub const MAX_OUTPUT_TOKENS: u32 = 32_768;
/// Receipts one block may carry.
pub const MAX_BLOCK_RECEIPTS: u64 = 10_000;

fn tagged_hash(tag: &[u8], bytes: &[u8]) -> Hash256 {
    Hash256::sha256d_parts(&[tag, bytes])
}

fn read_string(r: &mut Reader<'_>, what: &'static str, max: u64) -> Result<String, CodecError> {
    String::from_utf8(r.read_var_bytes(what, max)?).map_err(|_| CodecError::Invalid {
        what,
        reason: "not UTF-8",
    })
}

/// Who said an earlier turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User = 0,
    Assistant = 1,
}

/// An earlier turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

impl Encode for Turn {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(self.role as u8);
        write_var_bytes(out, self.text.as_bytes());
    }
}

impl Decode for Turn {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let role = match r.read_u8()? {
            0 => Role::User,
            1 => Role::Assistant,
            _ => {
                return Err(CodecError::Invalid {
                    what: "turn role",
                    reason: "neither user nor assistant",
                })
            }
        };
        Ok(Turn {
            role,
            text: read_string(r, "context turn", MAX_TURN_BYTES)?,
        })
    }
}

/// The text a user sends: what the payload store keeps until it may be reclaimed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    pub system: String,
    pub context: Vec<Turn>,
    pub input: String,
}

impl Encode for Prompt {
    fn encode_to(&self, out: &mut Vec<u8>) {
        write_var_bytes(out, self.system.as_bytes());
        write_vec(out, &self.context);
        write_var_bytes(out, self.input.as_bytes());
    }
}

impl Decode for Prompt {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let system = read_string(r, "system prompt", MAX_SYSTEM_BYTES)?;
        let context: Vec<Turn> = r.read_vec("context", MAX_CONTEXT_TURNS, 2)?;
        let total: usize = context.iter().map(|t| t.text.len()).sum();
        if total > MAX_CONTEXT_BYTES {
            return Err(CodecError::TooLarge {
                what: "context",
                len: total as u64,
                max: MAX_CONTEXT_BYTES as u64,
            });
        }
        Ok(Prompt {
            system,
            context,
            input: read_string(r, "input", MAX_INPUT_BYTES)?,
        })
    }
}

impl Prompt {
    /// The hash a stub carries instead of the text.
    pub fn hash(&self) -> Hash256 {
        tagged_hash(b"fai-prompt/v1", &self.to_bytes())
    }
}

/// Sampling as declared by the sender (fixed point, so every node reads the same).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sampling {
    pub max_tokens: u32,
    /// Temperature in thousandths (0 = greedy), at most 5,000.
    pub temperature_milli: u32,
    /// top-p in thousandths, 1..=1,000.
    pub top_p_milli: u32,
    /// 0 = no top-k.
    pub top_k: u32,
    pub seed: u64,
    pub stop: Vec<String>,
}

impl Encode for Sampling {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.max_tokens.encode_to(out);
        self.temperature_milli.encode_to(out);
        self.top_p_milli.encode_to(out);
        self.top_k.encode_to(out);
        self.seed.encode_to(out);
        write_len(out, self.stop.len());
        for s in &self.stop {
            write_var_bytes(out, s.as_bytes());
        }
    }
}

impl Decode for Sampling {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let s = Sampling {
            max_tokens: r.read_u32()?,
            temperature_milli: r.read_u32()?,
            top_p_milli: r.read_u32()?,
            top_k: r.read_u32()?,
            seed: r.read_u64()?,
            stop: {
                let n = r.read_len("stop strings", MAX_STOPS)?;
                (0..n)
                    .map(|_| read_string(r, "stop string", MAX_STOP_BYTES))
                    .collect::<Result<_, _>>()?
            },
        };
        let bad = |reason| CodecError::Invalid {
            what: "sampling",
            reason,
        };
        if s.max_tokens == 0 || s.max_tokens > MAX_OUTPUT_TOKENS {
            return Err(bad("max_tokens outside 1..=32768"));
        }
        if s.temperature_milli > 5_000 {
            return Err(bad("temperature above 5"));
        }
        if s.top_p_milli == 0 || s.top_p_milli > 1_000 {
            return Err(bad("top_p outside (0, 1]"));
        }
        Ok(s)
    }
}

/// An inference transaction without its text: what blocks carry and what the sender
/// signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceStub {
    pub sender: PublicKey,
    pub nonce: u64,
    pub chain_id: u32,
    pub model: [u8; 32],
    pub prompt_hash: Hash256,
    pub sampling: Sampling,
    pub max_fee: Amount,
    /// The last inference height at which the transaction may be included.
    pub expiry: u32,
    pub signature: Signature,
}

impl InferenceStub {
    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        self.sender.encode_to(out);
        self.nonce.encode_to(out);
        self.chain_id.encode_to(out);
        self.model.encode_to(out);
        self.prompt_hash.encode_to(out);
        self.sampling.encode_to(out);
        self.max_fee.encode_to(out);
        self.expiry.encode_to(out);
    }

    /// What the sender signs.
    pub fn signing_digest(&self) -> Hash256 {
        let mut out = Vec::new();
        self.encode_unsigned(&mut out);
        tagged_hash(b"fai-inference-tx/v1", &out)
    }

    /// The transaction's id.
    pub fn txid(&self) -> Hash256 {
        tagged_hash(b"fai-inference-txid/v1", &self.to_bytes())
    }

    pub fn sign(&mut self, key: &SecretKey) {
        self.signature = key.sign(&self.signing_digest());
    }

    pub fn signature_valid(&self) -> bool {
        verify_cached(&self.sender, &self.signing_digest(), &self.signature)
    }
}

impl Encode for InferenceStub {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        self.signature.encode_to(out);
    }
}

impl Decode for InferenceStub {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(InferenceStub {
            sender: Decode::decode_from(r)?,
            nonce: r.read_u64()?,
            chain_id: r.read_u32()?,
            model: r.read_array()?,
            prompt_hash: Decode::decode_from(r)?,
            sampling: Decode::decode_from(r)?,
            max_fee: Decode::decode_from(r)?,
            expiry: r.read_u32()?,
            signature: Decode::decode_from(r)?,
        })
    }
}

/// A whole inference transaction, as a wallet sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceTx {
    pub stub: InferenceStub,
    pub prompt: Prompt,
}

impl InferenceTx {
    /// Whether the stub names this prompt and the sender signed it.
    pub fn is_consistent(&self) -> bool {
        self.stub.prompt_hash == self.prompt.hash() && self.stub.signature_valid()
    }
}

impl Encode for InferenceTx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.stub.encode_to(out);
        self.prompt.encode_to(out);
    }
}

impl Decode for InferenceTx {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(InferenceTx {
            stub: Decode::decode_from(r)?,
            prompt: Decode::decode_from(r)?,
        })
    }
}

/// What a serving node signs about its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultReceipt {
    pub tx: Hash256,
    /// The answer's text ([`ResultReceipt::hash_output`]): what the buyer checks.
    pub output_hash: Hash256,
    /// The answer's token ids ([`ResultReceipt::hash_tokens`]): what verifiers replay. A
    /// text has many token sequences (invalid bytes all read as U+FFFD, and most
    /// vocabularies spell a word several ways), so without this anyone relaying the
    /// answer could swap the ids for others that spell the same text and have the
    /// verifiers reject an honest node.
    pub tokens_hash: Hash256,
    pub tokens: u32,
    pub node: PublicKey,
    pub signature: Signature,
}

impl ResultReceipt {
    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        self.tx.encode_to(out);
        self.output_hash.encode_to(out);
        self.tokens_hash.encode_to(out);
        self.tokens.encode_to(out);
        self.node.encode_to(out);
    }

    pub fn signing_digest(&self) -> Hash256 {
        let mut out = Vec::new();
        self.encode_unsigned(&mut out);
        tagged_hash(b"fai-result-receipt/v2", &out)
    }

    pub fn sign(&mut self, key: &SecretKey) {
        self.signature = key.sign(&self.signing_digest());
    }

    pub fn signature_valid(&self) -> bool {
        verify_cached(&self.node, &self.signing_digest(), &self.signature)
    }

    /// The receipt `key`'s node signs for answering transaction `tx` with `text`, spelled
    /// by `tokens`.
    pub fn new_signed(tx: Hash256, text: &str, tokens: &[u32], key: &SecretKey) -> Self {
        let mut receipt = ResultReceipt {
            tx,
            output_hash: ResultReceipt::hash_output(text),
            tokens_hash: ResultReceipt::hash_tokens(tokens),
            tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
            node: key.public_key(),
            signature: Signature([0; 64]),
        };
        receipt.sign(key);
        receipt
    }

    /// The hash of an output text.
    pub fn hash_output(output: &str) -> Hash256 {
        tagged_hash(b"fai-output/v1", output.as_bytes())
    }

    /// The hash of an output's token ids (each as 4 little-endian bytes).
    pub fn hash_tokens(tokens: &[u32]) -> Hash256 {
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        tagged_hash(b"fai-output-tokens/v1", &bytes)
    }
}

impl Encode for ResultReceipt {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        self.signature.encode_to(out);
    }
}

impl Decode for ResultReceipt {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(ResultReceipt {
            tx: Decode::decode_from(r)?,
            output_hash: Decode::decode_from(r)?,
            tokens_hash: Decode::decode_from(r)?,
            tokens: r.read_u32()?,
            node: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

/// An inference in a block: the transaction's stub and the serving node's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inference {
    pub stub: InferenceStub,
    pub receipt: ResultReceipt,
}

impl Encode for Inference {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.stub.encode_to(out);
        self.receipt.encode_to(out);
    }
}

impl Decode for Inference {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Inference {
            stub: Decode::decode_from(r)?,
            receipt: Decode::decode_from(r)?,
        })
    }
}

/// The merkle root of a list of hashes (sha256d of pairs, the last one paired with
/// itself on odd levels; an empty list is zero).
pub fn merkle_root(leaves: &[Hash256]) -> Hash256 {
    if leaves.is_empty() {
        return Hash256([0; 32]);
    }
    let mut level: Vec<Hash256> = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => Hash256::sha256d_parts(&[&a.0, &b.0]),
                [a] => Hash256::sha256d_parts(&[&a.0, &a.0]),
                _ => Hash256([0; 32]),
            })
            .collect();
    }
    level.first().copied().unwrap_or(Hash256([0; 32]))
}

/// A hash of a 32-byte value with a domain tag, for roots and ids.
pub fn digest(tag: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A small signed inference transaction of `user` at `nonce` asking `input` (chain 7,
/// model [1; 32], 8 greedy tokens): what the crate's unit tests build on.
#[cfg(test)]
pub(crate) fn test_tx(user: &SecretKey, nonce: u64, input: &str) -> InferenceTx {
    let prompt = Prompt {
        input: input.into(),
        ..Prompt::default()
    };
    let mut stub = InferenceStub {
        sender: user.public_key(),
        nonce,
        chain_id: 7,
        model: [1; 32],
        prompt_hash: prompt.hash(),
        sampling: Sampling {
            max_tokens: 8,
            temperature_milli: 0,
            top_p_milli: 1000,
            top_k: 0,
            seed: 0,
            stop: vec![],
        },
        max_fee: Amount::from_units(1_000).unwrap_or(Amount::ZERO),
        expiry: 100,
        signature: Signature([0; 64]),
    };
    stub.sign(user);
    InferenceTx { stub, prompt }
}
