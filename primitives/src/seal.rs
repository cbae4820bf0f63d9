//! Sealing to nodes: what only the named recipients can read.
//!
//! Every node has one sealing key pair (X25519), derived from its node key so that there
//! is nothing new to keep safe, and publishes the public half in the node registry
//! (`set-sealing-key`). Sealing is HPKE (RFC 9180) in base mode with the suite
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
//!
//! [`seal_for_many`] seals one message to several recipients (a served inference's text
//! to the verifiers of its block): the message is encrypted once under a fresh content
//! key with ChaCha20-Poly1305, and that key is sealed with HPKE to each recipient, so
//! that the sealed message grows by 100 bytes per recipient rather than by a copy.
//! The caller's `aad` (what the message belongs to) binds both layers: a sealed text
//! moved under another inference does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core09::{OsRng, TryRngCore};

use crate::codec::{Decode, Encode, Reader};
use crate::{CodecError, Hash160, SecretKey};

/// The bytes of a sealing public key, of an encapsulated key, and of an AEAD tag.
pub const SEALING_KEY_LEN: usize = 32;
pub const ENC_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
/// A content key sealed to one recipient: the key and its tag.
pub const WRAPPED_KEY_LEN: usize = 32 + TAG_LEN;

/// The HPKE `info` of a content key sealed to a recipient.
const WRAP_INFO: &[u8] = b"fai-seal/v1 content key";
/// Domain of the seed a node's sealing key pair is derived from.
const DERIVE_TAG: &[u8] = b"fai-seal/v1 sealing key of a node key";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not a valid sealing public key")]
    BadKey,
    #[error("sealing failed")]
    Seal,
    #[error("not sealed to this key")]
    NotARecipient,
    #[error("the sealed message does not open (wrong key, or changed)")]
    Open,
    /// The recipient's sealed content key opened, and the message did not open under it:
    /// the sealer's doing (it sealed one key and encrypted under another, or changed the
    /// message).
    #[error("the content key opened and the message does not open under it")]
    Content,
}

/// A node's sealing public key (X25519), as the node registry holds it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SealingKey(pub [u8; SEALING_KEY_LEN]);

impl SealingKey {
    fn kem_key(&self) -> Result<<X25519HkdfSha256 as Kem>::PublicKey, SealError> {
        <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&self.0).map_err(|_| SealError::BadKey)
    }
}

/// Whom a message is sealed to: each recipient's address and sealing key.
pub type Recipients = Vec<(Hash160, SealingKey)>;

/// A node's sealing secret key, derived from its node key.
pub struct SealingSecret {
    secret: <X25519HkdfSha256 as Kem>::PrivateKey,
    public: SealingKey,
}

impl SealingSecret {
    /// The sealing key pair of `node`: HPKE's DeriveKeyPair over a hash of the node key
    /// under a domain of its own (the node key itself signs; it never meets X25519).
    pub fn derive(node: &SecretKey) -> Self {
        let mut seed = DERIVE_TAG.to_vec();
        seed.extend_from_slice(&node.to_bytes());
        let ikm = crate::hash::sha256(&seed);
        let (secret, public) = X25519HkdfSha256::derive_keypair(&ikm);
        let mut bytes = [0u8; SEALING_KEY_LEN];
        bytes.copy_from_slice(&public.to_bytes());
        SealingSecret {
            secret,
            public: SealingKey(bytes),
        }
    }

    pub fn public(&self) -> SealingKey {
        self.public
    }
}

/// A message sealed to one recipient: the encapsulated key and the ciphertext (its tag
/// at the end).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sealed {
    pub enc: [u8; ENC_LEN],
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` to `to` with HPKE, under `info` (what kind of message) and bound to
/// `aad`.
pub fn seal_to(
    to: &SealingKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, SealError> {
    let mut rng = OsRng.unwrap_err();
    let (enc, ciphertext) = hpke::single_shot_seal::<
        hpke::aead::ChaCha20Poly1305,
        hpke::kdf::HkdfSha256,
        X25519HkdfSha256,
        _,
    >(
        &OpModeS::<X25519HkdfSha256>::Base,
        &to.kem_key()?,
        info,
        plaintext,
        aad,
        &mut rng,
    )
    .map_err(|_| SealError::Seal)?;
    let enc = <[u8; ENC_LEN]>::try_from(enc.to_bytes().as_slice()).map_err(|_| SealError::Seal)?;
    Ok(Sealed { enc, ciphertext })
}

impl SealingSecret {
    /// Opens what [`seal_to`] sealed to this key under `info` and `aad`.
    pub fn open(&self, sealed: &Sealed, info: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| SealError::Open)?;
        hpke::single_shot_open::<
            hpke::aead::ChaCha20Poly1305,
            hpke::kdf::HkdfSha256,
            X25519HkdfSha256,
        >(
            &OpModeR::Base,
            &self.secret,
            &enc,
            info,
            &sealed.ciphertext,
            aad,
        )
        .map_err(|_| SealError::Open)
    }
}

/// A key for the messages of one stream in one direction (the answer to a sealed
/// request): message `i` is sealed under nonce `i`, so that none can be dropped,
/// repeated or reordered without the next failing to open.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey(pub [u8; 32]);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(..)")
    }
}

impl StreamKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand_core09::RngCore::fill_bytes(&mut OsRng.unwrap_err(), &mut key);
        StreamKey(key)
    }

    fn nonce(index: u64) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        for (n, b) in nonce.iter_mut().zip(index.to_le_bytes()) {
            *n = b;
        }
        nonce
    }

    /// Message `index` of the stream, sealed.
    pub fn seal(&self, index: u64, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        ChaCha20Poly1305::new((&self.0).into())
            .encrypt(&Self::nonce(index).into(), plaintext)
            .map_err(|_| SealError::Seal)
    }

    /// Message `index` of the stream, opened.
    pub fn open(&self, index: u64, ciphertext: &[u8]) -> Result<Vec<u8>, SealError> {
        ChaCha20Poly1305::new((&self.0).into())
            .decrypt(&Self::nonce(index).into(), ciphertext)
            .map_err(|_| SealError::Open)
    }
}

/// One recipient of a [`MultiSealed`] message: its address, the encapsulated key and
/// the content key sealed to it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Recipient {
    pub id: Hash160,
    pub enc: [u8; ENC_LEN],
    pub wrapped: [u8; WRAPPED_KEY_LEN],
}

/// A message sealed to several recipients (see the module's documentation).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MultiSealed {
    pub recipients: Vec<Recipient>,
    /// The message under the content key, its tag at the end.
    pub ciphertext: Vec<u8>,
}

/// Seals `plaintext` to each of `to` (address, sealing key), bound to `aad`. A
/// recipient whose key cannot be sealed to (not a valid X25519 key, or one of low order:
/// anyone can publish 32 bytes) is left out rather than failing the rest.
pub fn seal_for_many(
    to: &[(Hash160, SealingKey)],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<MultiSealed, SealError> {
    let mut content_key = [0u8; 32];
    rand_core09::RngCore::fill_bytes(&mut OsRng.unwrap_err(), &mut content_key);
    let cipher = ChaCha20Poly1305::new((&content_key).into());
    // The content key seals one message only: a fixed nonce is safe.
    let ciphertext = cipher
        .encrypt(
            &[0u8; 12].into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Seal)?;
    let mut recipients = Vec::with_capacity(to.len());
    for (id, key) in to {
        let Ok(sealed) = seal_to(key, WRAP_INFO, aad, &content_key) else {
            continue;
        };
        let wrapped = <[u8; WRAPPED_KEY_LEN]>::try_from(sealed.ciphertext.as_slice())
            .map_err(|_| SealError::Seal)?;
        recipients.push(Recipient {
            id: *id,
            enc: sealed.enc,
            wrapped,
        });
    }
    Ok(MultiSealed {
        recipients,
        ciphertext,
    })
}

impl MultiSealed {
    /// Whether `id` is among the recipients.
    pub fn is_for(&self, id: &Hash160) -> bool {
        self.recipients.iter().any(|r| r.id == *id)
    }

    /// The message, opened by recipient `id` with its sealing secret; bound to `aad`.
    pub fn open(
        &self,
        id: &Hash160,
        secret: &SealingSecret,
        aad: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let recipient = self
            .recipients
            .iter()
            .find(|r| r.id == *id)
            .ok_or(SealError::NotARecipient)?;
        let key = secret.open(
            &Sealed {
                enc: recipient.enc,
                ciphertext: recipient.wrapped.to_vec(),
            },
            WRAP_INFO,
            aad,
        )?;
        let key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| SealError::Content)?;
        ChaCha20Poly1305::new((&key).into())
            .decrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: &self.ciphertext,
                    aad,
                },
            )
            .map_err(|_| SealError::Content)
    }
}

/// The most recipients one sealed message may name on the wire.
pub const MAX_RECIPIENTS: u64 = 16;

impl MultiSealed {
    /// Encodes: the recipients (each address, encapsulated key, sealed content key), then
    /// the ciphertext with its length.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        crate::codec::write_len(out, self.recipients.len());
        for r in &self.recipients {
            r.id.encode_to(out);
            out.extend_from_slice(&r.enc);
            out.extend_from_slice(&r.wrapped);
        }
        crate::codec::write_var_bytes(out, &self.ciphertext);
    }

    /// Decodes what [`MultiSealed::encode_to`] wrote, the ciphertext `max_ciphertext`
    /// bytes at most.
    pub fn decode_from(r: &mut Reader<'_>, max_ciphertext: u64) -> Result<Self, CodecError> {
        let n = r.read_len("sealed recipients", MAX_RECIPIENTS)?;
        let mut recipients = Vec::with_capacity(n);
        for _ in 0..n {
            let id = Hash160::decode_from(r)?;
            let enc = r.read_array::<ENC_LEN>()?;
            let wrapped = r.read_array::<WRAPPED_KEY_LEN>()?;
            recipients.push(Recipient { id, enc, wrapped });
        }
        let ciphertext = r.read_var_bytes("sealed text", max_ciphertext)?;
        Ok(MultiSealed {
            recipients,
            ciphertext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8) -> (Hash160, SecretKey) {
        let key = SecretKey::from_bytes(&[i; 32]).unwrap();
        (key.public_key().hash160(), key)
    }

    #[test]
    fn only_the_named_recipients_open_a_sealed_message_and_only_under_its_aad() {
        let (a, ka) = node(1);
        let (b, kb) = node(2);
        let (c, kc) = node(3);
        let (sa, sb, sc) = (
            SealingSecret::derive(&ka),
            SealingSecret::derive(&kb),
            SealingSecret::derive(&kc),
        );
        assert_eq!(
            SealingSecret::derive(&ka).public(),
            sa.public(),
            "derived again, the same key"
        );
        assert_ne!(sa.public(), sb.public());
        let message = b"a prompt and its answer".to_vec();
        let sealed = seal_for_many(
            &[(a, sa.public()), (b, sb.public())],
            b"inference 1",
            &message,
        )
        .unwrap();
        assert!(!sealed
            .ciphertext
            .windows(8)
            .any(|w| message.windows(8).any(|m| m == w)));
        assert_eq!(sealed.open(&a, &sa, b"inference 1").unwrap(), message);
        assert_eq!(sealed.open(&b, &sb, b"inference 1").unwrap(), message);
        // Not a recipient; a recipient's entry opened with another key; another aad.
        assert_eq!(
            sealed.open(&c, &sc, b"inference 1"),
            Err(SealError::NotARecipient)
        );
        let mut stolen = sealed.clone();
        stolen.recipients[0].id = c;
        assert_eq!(stolen.open(&c, &sc, b"inference 1"), Err(SealError::Open));
        assert_eq!(sealed.open(&a, &sa, b"inference 2"), Err(SealError::Open));
        let mut changed = sealed.clone();
        changed.ciphertext[0] ^= 1;
        assert_eq!(
            changed.open(&a, &sa, b"inference 1"),
            Err(SealError::Content)
        );
        // A recipient that published a key of low order (all zeros) cannot be sealed to:
        // it is left out, and the others still get the message.
        let with_bad = seal_for_many(
            &[(c, SealingKey([0; 32])), (a, sa.public())],
            b"inference 1",
            &message,
        )
        .unwrap();
        assert!(!with_bad.is_for(&c));
        assert_eq!(with_bad.open(&a, &sa, b"inference 1").unwrap(), message);
        // The wire form round-trips and is bounded.
        let mut bytes = Vec::new();
        sealed.encode_to(&mut bytes);
        let back = MultiSealed::decode_from(&mut Reader::new(&bytes), 1024).unwrap();
        assert_eq!(back, sealed);
        assert!(MultiSealed::decode_from(&mut Reader::new(&bytes), 8).is_err());
        assert!(
            MultiSealed::decode_from(&mut Reader::new(&bytes[..bytes.len() - 1]), 1024).is_err()
        );
    }

    #[test]
    fn one_recipient_and_a_stream_open_only_with_their_key_in_their_order() {
        let (_, ka) = node(1);
        let (_, kb) = node(2);
        let (sa, sb) = (SealingSecret::derive(&ka), SealingSecret::derive(&kb));
        let sealed = seal_to(&sa.public(), b"info", b"aad", b"a prompt").unwrap();
        assert_eq!(sa.open(&sealed, b"info", b"aad").unwrap(), b"a prompt");
        assert_eq!(sb.open(&sealed, b"info", b"aad"), Err(SealError::Open));
        assert_eq!(sa.open(&sealed, b"other", b"aad"), Err(SealError::Open));
        assert_eq!(sa.open(&sealed, b"info", b"other"), Err(SealError::Open));
        let key = StreamKey::generate();
        let first = key.seal(0, b"token one").unwrap();
        let second = key.seal(1, b"token two").unwrap();
        assert_eq!(key.open(0, &first).unwrap(), b"token one");
        assert_eq!(key.open(1, &second).unwrap(), b"token two");
        assert_eq!(key.open(1, &first), Err(SealError::Open), "out of order");
        assert_eq!(StreamKey::generate().open(0, &first), Err(SealError::Open));
    }
}
