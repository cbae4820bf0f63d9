//! A request sealed to the node that serves it: the sender's signed stub in the clear
//! (any node checks the signature, chain, fee, nonce, expiry and funds from it, and a
//! relay forwards it to `to` unread), the prompt and a reply key sealed with HPKE to the
//! serving node's sealing key (`fai_primitives::seal`). The serving node seals the events
//! of the answer's stream (tokens, receipt, error) with the reply key, one after the
//! other ([`StreamKey`]), so that only the buyer reads them.

use fai_primitives::codec::{Decode, Encode, Reader};
use fai_primitives::seal::{seal_to, SealError, Sealed, SealingKey, SealingSecret, StreamKey};
use fai_primitives::{CodecError, Hash160};

use crate::types::{InferenceStub, InferenceTx, Prompt};

/// The HPKE `info` of a sealed request.
const REQUEST_INFO: &[u8] = b"fai-sealed-request/v1";

/// The most bytes of a sealed prompt and reply key (a whole prompt, the key, the frame
/// and the tag).
pub const MAX_SEALED_REQUEST_BYTES: u64 = crate::types::MAX_SYSTEM_BYTES
    + crate::types::MAX_INPUT_BYTES
    + crate::types::MAX_CONTEXT_BYTES as u64
    + 4 * 1024;

/// An inference request sealed to its serving node (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedRequest {
    pub stub: InferenceStub,
    /// The serving node's address: the one the prompt is sealed to.
    pub to: Hash160,
    /// The prompt and the reply key, sealed.
    pub sealed: Sealed,
}

/// What the sealed prompt is bound to: the signed stub and the serving node.
fn aad(stub: &InferenceStub, to: &Hash160) -> Vec<u8> {
    let mut aad = stub.txid().0.to_vec();
    aad.extend_from_slice(&to.0);
    aad
}

impl SealedRequest {
    /// Seals `tx`'s prompt and a fresh reply key to node `to`, whose sealing key is
    /// `key`; the request and the reply key (to open the answer's events with).
    pub fn seal(
        tx: &InferenceTx,
        to: Hash160,
        key: &SealingKey,
    ) -> Result<(SealedRequest, StreamKey), SealError> {
        let reply = StreamKey::generate();
        let mut plain = tx.prompt.to_bytes();
        plain.extend_from_slice(&reply.0);
        let sealed = seal_to(key, REQUEST_INFO, &aad(&tx.stub, &to), &plain)?;
        Ok((
            SealedRequest {
                stub: tx.stub.clone(),
                to,
                sealed,
            },
            reply,
        ))
    }

    /// The request and its reply key, opened by the serving node with its sealing
    /// secret; the reason if it does not open or its prompt is not the one the sender
    /// signed.
    pub fn open(&self, secret: &SealingSecret) -> Result<(InferenceTx, StreamKey), String> {
        let plain = secret
            .open(&self.sealed, REQUEST_INFO, &aad(&self.stub, &self.to))
            .map_err(|e| format!("the sealed request does not open here: {e}"))?;
        let mut r = Reader::new(&plain);
        let prompt = Prompt::decode_from(&mut r)
            .map_err(|e| format!("the sealed prompt does not decode: {e}"))?;
        let reply = r
            .read_array::<32>()
            .and_then(|k| r.finish().map(|()| StreamKey(k)))
            .map_err(|e| format!("the sealed reply key does not decode: {e}"))?;
        let tx = InferenceTx {
            stub: self.stub.clone(),
            prompt,
        };
        if !tx.is_consistent() {
            return Err("the sealed prompt is not the one the sender signed".into());
        }
        Ok((tx, reply))
    }
}

impl Encode for SealedRequest {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.stub.encode_to(out);
        self.to.encode_to(out);
        out.extend_from_slice(&self.sealed.enc);
        fai_primitives::codec::write_var_bytes(out, &self.sealed.ciphertext);
    }
}

impl Decode for SealedRequest {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(SealedRequest {
            stub: Decode::decode_from(r)?,
            to: Decode::decode_from(r)?,
            sealed: Sealed {
                enc: r.read_array()?,
                ciphertext: r.read_var_bytes("sealed request", MAX_SEALED_REQUEST_BYTES)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use fai_primitives::SecretKey;

    use super::*;

    fn tx(user: &SecretKey, input: &str) -> InferenceTx {
        crate::types::test_tx(user, 0, input)
    }

    #[test]
    fn only_the_serving_node_opens_a_sealed_request_and_only_its_signed_prompt() {
        let user = SecretKey::from_bytes(&[1; 32]).unwrap();
        let (node, relay) = (
            SecretKey::from_bytes(&[2; 32]).unwrap(),
            SecretKey::from_bytes(&[3; 32]).unwrap(),
        );
        let (node_secret, relay_secret) =
            (SealingSecret::derive(&node), SealingSecret::derive(&relay));
        let to = node.public_key().hash160();
        let asked = tx(&user, "a question nobody else may read");
        let (sealed, reply) = SealedRequest::seal(&asked, to, &node_secret.public()).unwrap();
        let bytes = sealed.to_bytes();
        assert!(!bytes
            .windows(asked.prompt.input.len())
            .any(|w| w == asked.prompt.input.as_bytes()));
        let back = SealedRequest::from_bytes(&bytes).unwrap();
        assert_eq!(back, sealed);
        let (opened, key) = back.open(&node_secret).unwrap();
        assert_eq!(opened, asked);
        assert_eq!(key, reply);
        // A relay (any other node) cannot open it.
        assert!(sealed.open(&relay_secret).is_err());
        // Sent on to another node than the one sealed to: it does not open there either,
        // nor does it for the right node once the address is changed.
        let mut moved = sealed.clone();
        moved.to = relay.public_key().hash160();
        assert!(moved.open(&node_secret).is_err());
        // Another signed stub over the sealed prompt (a relay swapping the request):
        // bound to the first stub, it does not open.
        let other = tx(&user, "another question");
        let mut swapped = sealed.clone();
        swapped.stub = other.stub.clone();
        assert!(swapped.open(&node_secret).is_err());
        // A prompt that is not the signed one, sealed by someone who knows the node's key.
        let mut lying = asked.clone();
        lying.prompt.input = "not what was signed".into();
        let (lie, _) = SealedRequest::seal(&lying, to, &node_secret.public()).unwrap();
        assert_eq!(
            lie.open(&node_secret).unwrap_err(),
            "the sealed prompt is not the one the sender signed"
        );
        assert!(SealedRequest::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
