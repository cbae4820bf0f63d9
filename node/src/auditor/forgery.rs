//! The forged answer an audit plants: random tokens from a fresh sender, which the
//! node signs as served, and the audit's salt, all derived from a seed only the node
//! can compute.

use fai_inference_chain::served::ServedInference;
use fai_inference_chain::types::{Inference, InferenceStub, Prompt, ResultReceipt, Sampling};
use fai_primitives::{Amount, Hash256, SecretKey, Signature};

use super::{Auditor, ANSWER_TOKENS, EXPIRY_BLOCKS, PROMPT_TOKENS};

impl Auditor {
    /// The forged answer of an audit (random tokens, signed by this node as served), from
    /// a fresh sender, and the audit's salt; none when the seed makes no valid key.
    pub(super) fn forgery(
        &self,
        seed: &[u8; 32],
        tip_height: u32,
    ) -> Option<(ServedInference, [u8; 32])> {
        let part = |what: &[u8]| Hash256::sha256d_parts(&[what, seed]).0;
        let salt = part(b"salt");
        let sender = SecretKey::from_bytes(&part(b"sender")).ok()?;
        let vocab = u32::try_from(self.model.tokenizer.vocab_size())
            .ok()?
            .max(1);
        let tokens_from = |what: &[u8], n: usize| -> Vec<u32> {
            (0..n)
                .map(|i| {
                    let h = Hash256::sha256d_parts(&[what, seed, &(i as u64).to_le_bytes()]).0;
                    u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % vocab
                })
                .collect()
        };
        let prompt = Prompt {
            system: String::new(),
            context: Vec::new(),
            input: self
                .model
                .tokenizer
                .decode(&tokens_from(b"prompt", PROMPT_TOKENS)),
        };
        let tokens = tokens_from(b"answer", ANSWER_TOKENS as usize);
        let output = self.model.tokenizer.decode(&tokens);
        // What its tokens cost at this node's price, as a buyer would offer.
        let per_million = u128::from(self.price.units());
        let fee = per_million
            .saturating_mul(u128::from(ANSWER_TOKENS))
            .div_ceil(1_000_000)
            .max(1);
        let max_fee = Amount::from_units(u64::try_from(fee).ok()?).ok()?;
        let mut stub = InferenceStub {
            sender: sender.public_key(),
            nonce: 0,
            chain_id: self.chain_id,
            model: self.model.id.0,
            prompt_hash: prompt.hash(),
            sampling: Sampling {
                max_tokens: ANSWER_TOKENS,
                temperature_milli: 0,
                top_p_milli: 1000,
                top_k: 0,
                seed: u64::from_le_bytes(part(b"seed")[..8].try_into().ok()?),
                stop: Vec::new(),
            },
            max_fee,
            expiry: tip_height.saturating_add(EXPIRY_BLOCKS),
            signature: Signature([0; 64]),
        };
        stub.sign(&sender);
        let receipt = ResultReceipt::new_signed(stub.txid(), &output, &tokens, &self.key);
        let served = ServedInference {
            inference: Inference { stub, receipt },
            prompt,
            output,
            tokens,
        };
        served.check().ok()?;
        Some((served, salt))
    }
}
