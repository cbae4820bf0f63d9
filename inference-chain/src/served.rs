//! A served inference with its text: the stub and receipt that go into a block, and the
//! prompt, output and token ids that verifiers replay. The result topic and the payload
//! fetch carry it; [`ServedInference::check`] ties the text to the signed hashes.

use fai_primitives::codec::{write_var_bytes, Decode, Encode, Reader};
use fai_primitives::CodecError;

use crate::types::{Inference, Prompt, ResultReceipt, MAX_OUTPUT_TOKENS};

/// The longest output text a served inference may carry (32,768 tokens of up to 16 bytes).
pub const MAX_OUTPUT_BYTES: u64 = 512 * 1024;

/// A served inference with its text: what the result topic carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedInference {
    pub inference: Inference,
    pub prompt: Prompt,
    pub output: String,
    /// The output's token ids, what verifiers replay.
    pub tokens: Vec<u32>,
}

impl ServedInference {
    /// Whether the text matches the hashes and both signatures verify; the reason if not.
    pub fn check(&self) -> Result<(), &'static str> {
        let (stub, receipt) = (&self.inference.stub, &self.inference.receipt);
        if !stub.signature_valid() {
            return Err("the sender's signature does not verify");
        }
        if !receipt.signature_valid() || receipt.tx != stub.txid() {
            return Err("the receipt is not signed for this transaction");
        }
        if stub.prompt_hash != self.prompt.hash() {
            return Err("the prompt does not match its hash");
        }
        if receipt.output_hash != ResultReceipt::hash_output(&self.output) {
            return Err("the output does not match its hash");
        }
        if self.tokens.len() != receipt.tokens as usize || receipt.tokens > stub.sampling.max_tokens
        {
            return Err("the token count is not the receipt's");
        }
        if receipt.tokens_hash != ResultReceipt::hash_tokens(&self.tokens) {
            return Err("the output tokens do not match their hash");
        }
        Ok(())
    }
}

impl ServedInference {
    /// Keeps the text for verifiers, until the block that settles it is six deep (or
    /// [`crate::payloads::UNSETTLED_TTL`] ledger blocks after `height`, when it arrives).
    pub fn store_text(
        &self,
        store: &crate::payloads::PayloadStore,
        height: u32,
    ) -> Result<(), fai_storage::StorageError> {
        let txid = self.inference.stub.txid();
        let receipt = self.inference.receipt.signing_digest();
        store.put_all(
            &txid,
            &receipt,
            &self.prompt,
            &self.output,
            &self.tokens,
            height,
        )
    }
}

impl Encode for ServedInference {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.inference.encode_to(out);
        self.prompt.encode_to(out);
        write_var_bytes(out, self.output.as_bytes());
        fai_primitives::codec::write_len(out, self.tokens.len());
        for t in &self.tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
}

impl Decode for ServedInference {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let inference = Decode::decode_from(r)?;
        let prompt = Decode::decode_from(r)?;
        let output =
            String::from_utf8(r.read_var_bytes("output", MAX_OUTPUT_BYTES)?).map_err(|_| {
                CodecError::Invalid {
                    what: "output",
                    reason: "not UTF-8",
                }
            })?;
        let n = r.read_len("output tokens", u64::from(MAX_OUTPUT_TOKENS))?;
        let bytes = r.read_slice(n.saturating_mul(4))?;
        let tokens = bytes
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_le_bytes))
            .collect();
        Ok(ServedInference {
            inference,
            prompt,
            output,
            tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use fai_primitives::{Amount, SecretKey, Signature};

    use super::*;
    use crate::types::{InferenceStub, Sampling};

    fn served(key: &SecretKey, node: &SecretKey, nonce: u64) -> ServedInference {
        let prompt = Prompt {
            input: format!("question {nonce}"),
            ..Prompt::default()
        };
        let mut stub = InferenceStub {
            sender: key.public_key(),
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
            max_fee: Amount::from_units(1_000).unwrap(),
            expiry: 100,
            signature: Signature([0; 64]),
        };
        stub.sign(key);
        let output = "an answer".to_string();
        let mut receipt = ResultReceipt {
            tx: stub.txid(),
            output_hash: ResultReceipt::hash_output(&output),
            tokens_hash: ResultReceipt::hash_tokens(&[5, 6, 7]),
            tokens: 3,
            node: node.public_key(),
            signature: Signature([0; 64]),
        };
        receipt.sign(node);
        ServedInference {
            inference: Inference { stub, receipt },
            prompt,
            output,
            tokens: vec![5, 6, 7],
        }
    }

    #[test]
    fn a_served_inference_round_trips_and_its_text_must_match() {
        let (user, node) = (
            SecretKey::from_bytes(&[4; 32]).unwrap(),
            SecretKey::from_bytes(&[5; 32]).unwrap(),
        );
        let s = served(&user, &node, 0);
        assert_eq!(s.check(), Ok(()));
        let back = ServedInference::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        let mut other = s.clone();
        other.output.push('!');
        assert_eq!(other.check(), Err("the output does not match its hash"));
        let mut other = s.clone();
        other.prompt.input.push('?');
        assert_eq!(other.check(), Err("the prompt does not match its hash"));
        let mut other = s.clone();
        other.tokens.pop();
        assert_eq!(other.check(), Err("the token count is not the receipt's"));
        let mut other = s.clone();
        other.tokens[1] = 9;
        assert_eq!(
            other.check(),
            Err("the output tokens do not match their hash")
        );
        let bytes = s.to_bytes();
        assert!(ServedInference::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
