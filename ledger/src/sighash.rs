//! The signature digest of a transaction input, in the manner of BIP 143: the hashes of
//! all prevouts, all sequences and all outputs are computed once per transaction, so
//! signing or verifying n inputs hashes O(n) bytes, not O(n^2).
//!
//! Digest of input i = sha256d(magic | version | hash_prevouts | hash_sequences |
//! prevout_i | spent value | spent key hash | sequence_i | hash_outputs | lock_time).
//! The network magic keeps a signature from being replayed on another network; committing
//! to the spent value lets a signer know the fee without fetching the parent.

use fai_primitives::{Encode, Hash160, Hash256, SecretKey};

use crate::tx::{Transaction, TxOut, Unlock};

/// The per-transaction hashes shared by the digests of all its inputs.
pub struct SighashCache<'a> {
    tx: &'a Transaction,
    hash_prevouts: Hash256,
    hash_sequences: Hash256,
    hash_outputs: Hash256,
}

impl<'a> SighashCache<'a> {
    pub fn new(tx: &'a Transaction) -> Self {
        let mut prevouts = Vec::with_capacity(tx.inputs.len().saturating_mul(36));
        let mut sequences = Vec::with_capacity(tx.inputs.len().saturating_mul(4));
        for input in &tx.inputs {
            input.prevout.encode_to(&mut prevouts);
            input.sequence.encode_to(&mut sequences);
        }
        let mut outputs = Vec::new();
        for output in &tx.outputs {
            output.encode_to(&mut outputs);
        }
        SighashCache {
            tx,
            hash_prevouts: Hash256::sha256d(&prevouts),
            hash_sequences: Hash256::sha256d(&sequences),
            hash_outputs: Hash256::sha256d(&outputs),
        }
    }

    /// The digest input `index` signs, spending an output of `value` to `key_hash`.
    /// `None` if the transaction has no such input.
    pub fn digest(
        &self,
        magic: [u8; 4],
        index: usize,
        spent_value: u64,
        spent_key_hash: &Hash160,
    ) -> Option<Hash256> {
        let input = self.tx.inputs.get(index)?;
        let mut pre = Vec::with_capacity(4 + 4 + 32 * 3 + 36 + 8 + 20 + 4 + 4);
        pre.extend_from_slice(&magic);
        self.tx.version.encode_to(&mut pre);
        self.hash_prevouts.encode_to(&mut pre);
        self.hash_sequences.encode_to(&mut pre);
        input.prevout.encode_to(&mut pre);
        spent_value.encode_to(&mut pre);
        spent_key_hash.encode_to(&mut pre);
        input.sequence.encode_to(&mut pre);
        self.hash_outputs.encode_to(&mut pre);
        self.tx.lock_time.encode_to(&mut pre);
        Some(Hash256::sha256d(&pre))
    }
}

/// Why inputs could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("{inputs} inputs but {spent} spent outputs and keys were given")]
    CountMismatch { inputs: usize, spent: usize },
    #[error("input {0} spends a data output, which nothing can spend")]
    Unspendable(usize),
    #[error("input {0}: the key does not match the spent output's address")]
    WrongKey(usize),
}

/// Signs every input of `tx`: `spent[i]` is the output input i spends and the key that
/// owns it. Fills in each input's unlock.
pub fn sign_transaction(
    tx: &mut Transaction,
    magic: [u8; 4],
    spent: &[(TxOut, SecretKey)],
) -> Result<(), SignError> {
    if spent.len() != tx.inputs.len() {
        return Err(SignError::CountMismatch {
            inputs: tx.inputs.len(),
            spent: spent.len(),
        });
    }
    let mut unlocks = Vec::with_capacity(spent.len());
    {
        let cache = SighashCache::new(tx);
        for (i, (out, key)) in spent.iter().enumerate() {
            let crate::tx::OutputKind::PayToKeyHash(key_hash) = &out.kind else {
                return Err(SignError::Unspendable(i));
            };
            let pubkey = key.public_key();
            if pubkey.hash160() != *key_hash {
                return Err(SignError::WrongKey(i));
            }
            let digest = cache.digest(magic, i, out.value.units(), key_hash).ok_or(
                SignError::CountMismatch {
                    inputs: tx.inputs.len(),
                    spent: spent.len(),
                },
            )?;
            unlocks.push(Unlock::Key {
                pubkey,
                signature: key.sign(&digest),
            });
        }
    }
    for (input, unlock) in tx.inputs.iter_mut().zip(unlocks) {
        input.unlock = unlock;
    }
    Ok(())
}
