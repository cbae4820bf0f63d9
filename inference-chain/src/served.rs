//! A served inference with its text: the stub and receipt that go into a block, and the
//! prompt, output and token ids that verifiers replay (never on the wire in the clear). [`ServedInference::check`] ties
//! the text to the signed hashes.
//!
//! The text is private to the buyer, the serving node and the verifiers of the block that
//! carries it: the result topic, the payload fetch and every node's store carry a
//! [`SealedServed`], the text sealed to the verifier set (`fai_primitives::seal`) and
//! signed by the serving node. Only a verifier opens it, in memory, to replay it.

use fai_primitives::codec::{write_var_bytes, Decode, Encode, Reader};
use fai_primitives::seal::{seal_for_many, MultiSealed, SealError, SealingKey, SealingSecret};
use fai_primitives::{CodecError, Hash160, Hash256, SecretKey, Signature};

use crate::types::{Inference, Prompt, ResultReceipt, MAX_OUTPUT_TOKENS};
use fai_primitives::sig_cache::verify_cached;

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
        check_signatures(&self.inference)?;
        self.check_text()
    }

    /// Whether the text matches the signed hashes, the signatures being verified already
    /// (a verifier's text, opened from its payload store, for an inference of a block
    /// its chain accepted); the reason if not.
    pub fn check_text(&self) -> Result<(), &'static str> {
        let (stub, receipt) = (&self.inference.stub, &self.inference.receipt);
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
    /// The text sealed to `verifiers` (address, sealing key) and signed by `node`, the
    /// key that signed the receipt.
    pub fn seal(
        &self,
        node: &SecretKey,
        verifiers: &[(Hash160, SealingKey)],
    ) -> Result<SealedServed, SealError> {
        let mut text = Vec::new();
        self.encode_text(&mut text);
        let sealed = seal_for_many(verifiers, &text_aad(&self.inference), &text)?;
        let mut out = SealedServed {
            inference: self.inference.clone(),
            sealed,
            signature: Signature([0; 64]),
        };
        out.signature = node.sign(&out.signing_digest());
        Ok(out)
    }

    /// The text alone: prompt, output and output tokens.
    fn encode_text(&self, out: &mut Vec<u8>) {
        self.prompt.encode_to(out);
        write_var_bytes(out, self.output.as_bytes());
        fai_primitives::codec::write_len(out, self.tokens.len());
        for t in &self.tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }

    /// Decodes the text of `inference` (what [`ServedInference::encode_text`] wrote).
    fn decode_text(inference: Inference, r: &mut Reader<'_>) -> Result<Self, CodecError> {
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

/// The sender's signature of the stub, and the receipt's of the same transaction.
fn check_signatures(inference: &Inference) -> Result<(), &'static str> {
    let (stub, receipt) = (&inference.stub, &inference.receipt);
    if !stub.signature_valid() {
        return Err("the sender's signature does not verify");
    }
    if !receipt.signature_valid() || receipt.tx != stub.txid() {
        return Err("the receipt is not signed for this transaction");
    }
    Ok(())
}

/// What a sealed text is bound to: its transaction and the receipt that signs it, so that
/// sealed text moved under another inference or answer does not open.
fn text_aad(inference: &Inference) -> Vec<u8> {
    let mut aad = b"fai-sealed-text/v1".to_vec();
    aad.extend_from_slice(&inference.stub.txid().0);
    aad.extend_from_slice(&inference.receipt.signing_digest().0);
    aad
}

/// The most bytes of sealed text: a whole prompt, the longest output and its tokens, and
/// the frame of their lengths and the AEAD tag.
pub const MAX_SEALED_TEXT_BYTES: u64 = crate::types::MAX_SYSTEM_BYTES
    + crate::types::MAX_INPUT_BYTES
    + crate::types::MAX_CONTEXT_BYTES as u64
    + MAX_OUTPUT_BYTES
    + 4 * MAX_OUTPUT_TOKENS as u64
    + 4 * 1024;

/// Why a sealed text did not open for a verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unopened {
    /// Not sealed to it, its sealed key does not open, or the serving node did not sign
    /// it: this verifier cannot judge.
    NotForMe(String),
    /// Its key opened and the text under it does not open or decode: the serving node,
    /// which signed these sealed bytes, sent this verifier no answer to judge.
    SealersFault(String),
}

impl std::fmt::Display for Unopened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unopened::NotForMe(why) | Unopened::SealersFault(why) => f.write_str(why),
        }
    }
}

/// A served inference with its text sealed to the verifiers of the block that will carry
/// it, signed by the serving node: what the result topic, the payload fetch and every
/// node's store carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedServed {
    pub inference: Inference,
    pub sealed: MultiSealed,
    /// The serving node's (the receipt's key) over [`SealedServed::signing_digest`]:
    /// nobody else can pass sealed bytes off as this answer's text, which the nodes that
    /// cannot open it would otherwise keep and forward in its place.
    pub signature: Signature,
}

impl SealedServed {
    /// What the serving node signs: the receipt's digest and the sealed bytes'.
    pub fn signing_digest(&self) -> Hash256 {
        let mut sealed = Vec::new();
        self.sealed.encode_to(&mut sealed);
        Hash256::sha256d_parts(&[
            b"fai-sealed-served/v1",
            &self.inference.receipt.signing_digest().0,
            &Hash256::sha256d(&sealed).0,
        ])
    }

    /// What a node that cannot open it checks: the sender's, the receipt's and the
    /// serving node's signatures. The reason if one fails.
    pub fn check(&self) -> Result<(), &'static str> {
        check_signatures(&self.inference)?;
        let (stub, receipt) = (&self.inference.stub, &self.inference.receipt);
        if receipt.tokens > stub.sampling.max_tokens {
            return Err("more tokens than the request allows");
        }
        if !verify_cached(&receipt.node, &self.signing_digest(), &self.signature) {
            return Err("the sealed text is not signed by the serving node");
        }
        Ok(())
    }

    /// Whether verifier `id` can open it.
    pub fn is_for(&self, id: &Hash160) -> bool {
        self.sealed.is_for(id)
    }

    /// The text, opened by verifier `id` with its sealing secret (in memory only), not
    /// yet checked against the signed hashes ([`ServedInference::check`]: what does not
    /// match is the serving node's doing, since it signed the sealed bytes). Why not, if
    /// it does not open.
    pub fn open(&self, id: &Hash160, secret: &SealingSecret) -> Result<ServedInference, Unopened> {
        self.check()
            .map_err(|why| Unopened::NotForMe(why.to_string()))?;
        self.open_unchecked(id, secret)
    }

    /// [`SealedServed::open`] for `carried`, an inference whose sender's and receipt's
    /// signatures the caller verified (a verifier's: an inference of a block its chain
    /// accepted): the text must be for that very inference and signed by its serving
    /// node (the one signature verified here, of the three `open` verifies), else it
    /// does not open. A verifier opens the text of every inference it judges; verifying
    /// the other two again cost it more than the replays of fai-tiny's answers.
    pub fn open_carried(
        &self,
        carried: &Inference,
        id: &Hash160,
        secret: &SealingSecret,
    ) -> Result<ServedInference, Unopened> {
        if self.inference != *carried {
            return Err(Unopened::NotForMe(
                "the sealed text is for another inference".into(),
            ));
        }
        if !verify_cached(
            &carried.receipt.node,
            &self.signing_digest(),
            &self.signature,
        ) {
            return Err(Unopened::NotForMe(
                "the sealed text is not signed by the serving node".into(),
            ));
        }
        self.open_unchecked(id, secret)
    }

    /// The text, opened, with no signature verified.
    fn open_unchecked(
        &self,
        id: &Hash160,
        secret: &SealingSecret,
    ) -> Result<ServedInference, Unopened> {
        let text = self
            .sealed
            .open(id, secret, &text_aad(&self.inference))
            .map_err(|e| match e {
                SealError::Content => Unopened::SealersFault(e.to_string()),
                _ => Unopened::NotForMe(e.to_string()),
            })?;
        let mut r = Reader::new(&text);
        ServedInference::decode_text(self.inference.clone(), &mut r)
            .and_then(|s| r.finish().map(|()| s))
            .map_err(|e| Unopened::SealersFault(format!("the sealed text does not decode: {e}")))
    }

    /// Keeps it for the verifiers, until the block that settles it is six deep (or
    /// [`crate::payloads::UNSETTLED_TTL`] ledger blocks after `height`, when it arrives).
    pub fn store(
        &self,
        store: &crate::payloads::PayloadStore,
        height: u32,
    ) -> Result<(), fai_storage::StorageError> {
        store.put_sealed(self, height)
    }
}

impl Encode for SealedServed {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.inference.encode_to(out);
        self.sealed.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SealedServed {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(SealedServed {
            inference: Decode::decode_from(r)?,
            sealed: MultiSealed::decode_from(r, MAX_SEALED_TEXT_BYTES)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use fai_primitives::{SecretKey, Signature};

    use super::*;

    fn served(key: &SecretKey, node: &SecretKey, nonce: u64) -> ServedInference {
        let crate::types::InferenceTx { stub, prompt } =
            crate::types::test_tx(key, nonce, &format!("question {nonce}"));
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

    /// Signatures are checked through the process's cache of verified ones: an answer
    /// whose signatures passed, then changed under the same signatures (a relay raising
    /// the token count it is paid for, or the fee the sender offered), is refused.
    #[test]
    fn an_answer_changed_after_its_signatures_passed_is_refused() {
        let (user, node) = (
            SecretKey::from_bytes(&[4; 32]).unwrap(),
            SecretKey::from_bytes(&[5; 32]).unwrap(),
        );
        let s = served(&user, &node, 7);
        assert_eq!(check_signatures(&s.inference), Ok(()));
        assert_eq!(check_signatures(&s.inference), Ok(()));
        let mut more = s.inference.clone();
        more.receipt.tokens += 1;
        assert_eq!(
            check_signatures(&more),
            Err("the receipt is not signed for this transaction")
        );
        let mut raised = s.inference.clone();
        raised.stub.max_fee = raised
            .stub
            .max_fee
            .checked_add(raised.stub.max_fee)
            .unwrap();
        assert_eq!(
            check_signatures(&raised),
            Err("the sender's signature does not verify")
        );
    }

    #[test]
    fn a_served_inference_round_trips_and_its_text_must_match() {
        let (user, node) = (
            SecretKey::from_bytes(&[4; 32]).unwrap(),
            SecretKey::from_bytes(&[5; 32]).unwrap(),
        );
        let s = served(&user, &node, 0);
        assert_eq!(s.check(), Ok(()));
        // Its text as it is sealed: the bytes round-trip, and cut short they do not decode.
        let mut bytes = Vec::new();
        s.encode_text(&mut bytes);
        let back = ServedInference::decode_text(s.inference.clone(), &mut Reader::new(&bytes));
        assert_eq!(back.unwrap(), s);
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
        let cut = &bytes[..bytes.len() - 1];
        assert!(ServedInference::decode_text(s.inference.clone(), &mut Reader::new(cut)).is_err());
    }

    #[test]
    fn sealed_text_opens_for_the_verifiers_only_and_is_bound_to_its_serving_node() {
        let (user, node) = (
            SecretKey::from_bytes(&[4; 32]).unwrap(),
            SecretKey::from_bytes(&[5; 32]).unwrap(),
        );
        let verifiers: Vec<(SecretKey, SealingSecret)> = (10..13u8)
            .map(|i| {
                let k = SecretKey::from_bytes(&[i; 32]).unwrap();
                let s = SealingSecret::derive(&k);
                (k, s)
            })
            .collect();
        let id = |k: &SecretKey| k.public_key().hash160();
        let to: Vec<(Hash160, SealingKey)> = verifiers[..2]
            .iter()
            .map(|(k, s)| (id(k), s.public()))
            .collect();
        let served = served(&user, &node, 0);
        let sealed = served.seal(&node, &to).unwrap();
        assert_eq!(sealed.check(), Ok(()));
        let bytes = sealed.to_bytes();
        assert_eq!(SealedServed::from_bytes(&bytes).unwrap(), sealed);
        for needle in [&b"question 0"[..], b"an answer"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
        for (k, s) in &verifiers[..2] {
            assert_eq!(sealed.open(&id(k), s), Ok(served.clone()));
        }
        assert_eq!(served.check(), Ok(()));
        let (outsider, outsider_secret) = &verifiers[2];
        assert!(!sealed.is_for(&id(outsider)));
        assert!(sealed.open(&id(outsider), outsider_secret).is_err());
        // A rival re-seals other text for the same answer: its signature is not the
        // serving node's, so nodes that cannot open it refuse it.
        let rival = SecretKey::from_bytes(&[6; 32]).unwrap();
        let mut forged = served.clone();
        forged.output = "another answer".into();
        let forged = forged.seal(&rival, &to).unwrap();
        assert_eq!(
            forged.check(),
            Err("the sealed text is not signed by the serving node")
        );
        // The serving node itself sealing text that does not match its receipt: it
        // opens, and the hashes catch it.
        let mut wrong = served.clone();
        wrong.output = "another answer".into();
        let wrong = wrong.seal(&node, &to).unwrap();
        assert_eq!(wrong.check(), Ok(()));
        let (k0, s0) = &verifiers[0];
        assert_eq!(
            wrong.open(&id(k0), s0).map(|t| t.check()),
            Ok(Err("the output does not match its hash"))
        );
        // Sealed text moved under another answer does not open.
        let other = served_other(&user, &node);
        let mut moved = sealed.clone();
        moved.inference = other.inference.clone();
        moved.signature = node.sign(&moved.signing_digest());
        assert!(matches!(
            moved.open(&id(k0), s0),
            Err(Unopened::NotForMe(_))
        ));
        // The node seals one content key and encrypts under another (or changes the
        // bytes after sealing, and signs them): its own doing.
        let mut garbled = sealed.clone();
        garbled.sealed.ciphertext[0] ^= 1;
        garbled.signature = node.sign(&garbled.signing_digest());
        assert!(matches!(
            garbled.open(&id(k0), s0),
            Err(Unopened::SealersFault(_))
        ));
        assert!(SealedServed::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    /// A verifier opens the text of an inference its chain accepted verifying only the
    /// serving node's signature of the sealed text: text for another inference, or
    /// sealed by anyone but the serving node (a relay's swapped answer), does not open
    /// for it (it abstains: blaming the node would slash it for another's text).
    #[test]
    fn text_for_a_carried_inference_opens_only_when_its_node_sealed_it() {
        let (user, node) = (
            SecretKey::from_bytes(&[4; 32]).unwrap(),
            SecretKey::from_bytes(&[5; 32]).unwrap(),
        );
        let me = SecretKey::from_bytes(&[10; 32]).unwrap();
        let (id, secret) = (me.public_key().hash160(), SealingSecret::derive(&me));
        let to = [(id, secret.public())];
        let served = served(&user, &node, 0);
        let carried = served.inference.clone();
        let sealed = served.seal(&node, &to).unwrap();
        assert_eq!(
            sealed.open_carried(&carried, &id, &secret),
            Ok(served.clone())
        );
        // Sealed by a relay (whatever it holds): not the serving node's signature.
        let relay = SecretKey::from_bytes(&[6; 32]).unwrap();
        let by_relay = served.seal(&relay, &to).unwrap();
        assert_eq!(
            by_relay.open_carried(&carried, &id, &secret),
            Err(Unopened::NotForMe(
                "the sealed text is not signed by the serving node".into()
            ))
        );
        // The serving node's text for another of its answers.
        let other = served_other(&user, &node).seal(&node, &to).unwrap();
        assert_eq!(
            other.open_carried(&carried, &id, &secret),
            Err(Unopened::NotForMe(
                "the sealed text is for another inference".into()
            ))
        );
    }

    fn served_other(user: &SecretKey, node: &SecretKey) -> ServedInference {
        served(user, node, 1)
    }
}
