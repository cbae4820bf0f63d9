//! Signed VM transactions of the inference chain: token transfer, contract deploy,
//! contract call and evidence of misbehaviour, with a fee, in one bounded canonical
//! encoding. Call arguments travel as
//! Clarity's consensus serialisation (SIP-005) and must decode and re-encode to the same
//! bytes.

use fai_clarity::{Payload, Value, VmTransaction};
use fai_primitives::codec::{write_len, write_var_bytes, Decode, Encode, Reader};
use fai_primitives::{Amount, CodecError, Hash160, Hash256, PublicKey, SecretKey, Signature};

use crate::block::InferenceHeader;
use fai_primitives::sig_cache::verify_cached;

pub const MAX_MEMO_BYTES: u64 = 34;
pub const MAX_NAME_BYTES: u64 = 40;
pub const MAX_FUNCTION_BYTES: u64 = 128;
pub const MAX_SOURCE_BYTES: u64 = 128 * 1024;
pub const MAX_ARGS: u64 = 16;
pub const MAX_ARG_BYTES: u64 = 64 * 1024;

/// What a VM transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmPayload {
    Transfer {
        to: Hash160,
        amount: Amount,
        memo: Vec<u8>,
    },
    Deploy {
        name: String,
        source: String,
    },
    Call {
        issuer: Hash160,
        name: String,
        function: String,
        /// Each argument in Clarity's consensus serialisation.
        args: Vec<Vec<u8>>,
    },
    /// Evidence that the consensus checks and punishes (see [`Evidence`]).
    Evidence(Box<Evidence>),
}

/// What a participant can be punished for, as a user reports it.
// Always boxed (in `VmPayload::Evidence`): the smaller variant wastes nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Two blocks signed by one producer for one tenure (the same ledger anchor), the one
    /// with the smaller id first.
    TenureEquivocation {
        first: InferenceHeader,
        second: InferenceHeader,
    },
    /// The reveal of an audit (decision 0004): inference `index` of block `block` was a
    /// planted forgery, committed to in the staking contract as sha256d(salt ‖ txid ‖
    /// the revealing account) before that block. The verifiers whose counted votes accepted it, while more than
    /// half the signers rejected it grossly, lose a tenth of their stake.
    Audit {
        block: Hash256,
        index: u32,
        salt: [u8; 32],
    },
}

impl Evidence {
    /// Evidence of the two headers, if they conflict (in either order).
    pub fn tenure_equivocation(a: InferenceHeader, b: InferenceHeader) -> Option<Evidence> {
        let (first, second) = if a.id().0 <= b.id().0 { (a, b) } else { (b, a) };
        let evidence = Evidence::TenureEquivocation { first, second };
        evidence.check().is_ok().then_some(evidence)
    }

    /// Whether the evidence holds as far as it can be checked without the chain: for an
    /// equivocation everything (both statements signed by the same key, for the same
    /// tenure, different, in order); an audit is checked against the chain when carried.
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            Evidence::TenureEquivocation { .. } => self.equivocation().map(|_| ()),
            Evidence::Audit { index, .. } => {
                if u64::from(*index) >= crate::types::MAX_BLOCK_RECEIPTS {
                    return Err("no block holds that many inferences");
                }
                Ok(())
            }
        }
    }

    /// The commitment an audit reveals: sha256d(salt ‖ txid ‖ revealer). Naming the
    /// account that will reveal it means a reveal copied from the pool by anyone else
    /// matches no commitment: the revealer's reward cannot be taken from it.
    pub fn audit_commitment(salt: &[u8; 32], txid: &Hash256, revealer: &Hash160) -> Hash256 {
        Hash256::sha256d_parts(&[salt, &txid.0, &revealer.0])
    }

    /// The equivocating producer's address and the tenure's ledger anchor, if this is
    /// evidence of an equivocation that holds.
    pub fn equivocation(&self) -> Result<(Hash160, Hash256), &'static str> {
        match self {
            Evidence::Audit { .. } => Err("not an equivocation"),
            Evidence::TenureEquivocation { first, second } => {
                if first.producer != second.producer {
                    return Err("the blocks have different producers");
                }
                if first.ledger_anchor != second.ledger_anchor
                    || first.ledger_height != second.ledger_height
                {
                    return Err("the blocks are for different tenures");
                }
                if first.id().0 >= second.id().0 {
                    return Err("the blocks are the same or out of order");
                }
                if !first.signature_valid() || !second.signature_valid() {
                    return Err("a block's signature does not verify");
                }
                Ok((first.producer.hash160(), Hash256(first.ledger_anchor)))
            }
        }
    }
}

impl Encode for Evidence {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Evidence::TenureEquivocation { first, second } => {
                out.push(0);
                first.encode_to(out);
                second.encode_to(out);
            }
            Evidence::Audit { block, index, salt } => {
                out.push(1);
                block.encode_to(out);
                index.encode_to(out);
                out.extend_from_slice(salt);
            }
        }
    }
}

impl Decode for Evidence {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.read_u8()? {
            0 => Ok(Evidence::TenureEquivocation {
                first: Decode::decode_from(r)?,
                second: Decode::decode_from(r)?,
            }),
            1 => Ok(Evidence::Audit {
                block: Decode::decode_from(r)?,
                index: r.read_u32()?,
                salt: Decode::decode_from(r)?,
            }),
            _ => Err(CodecError::Invalid {
                what: "evidence",
                reason: "unknown kind",
            }),
        }
    }
}

/// A signed VM transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVmTx {
    pub sender: PublicKey,
    pub nonce: u64,
    pub chain_id: u32,
    /// Paid to the block's producer.
    pub fee: Amount,
    pub payload: VmPayload,
    pub signature: Signature,
}

fn read_string(r: &mut Reader<'_>, what: &'static str, max: u64) -> Result<String, CodecError> {
    String::from_utf8(r.read_var_bytes(what, max)?).map_err(|_| CodecError::Invalid {
        what,
        reason: "not UTF-8",
    })
}

/// A Clarity value's consensus bytes.
pub fn value_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = value.serialize_write(&mut out);
    out
}

/// A Clarity value from its consensus bytes, which must be canonical.
pub fn value_from_bytes(bytes: &[u8]) -> Result<Value, CodecError> {
    let bad = |reason| CodecError::Invalid {
        what: "contract call argument",
        reason,
    };
    let value = Value::try_deserialize_bytes_untyped(&bytes.to_vec())
        .map_err(|_| bad("not a Clarity value"))?;
    if value_bytes(&value) != bytes {
        return Err(bad("not the canonical encoding of its value"));
    }
    Ok(value)
}

impl Encode for VmPayload {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            VmPayload::Transfer { to, amount, memo } => {
                out.push(0);
                to.encode_to(out);
                amount.encode_to(out);
                write_var_bytes(out, memo);
            }
            VmPayload::Deploy { name, source } => {
                out.push(1);
                write_var_bytes(out, name.as_bytes());
                write_var_bytes(out, source.as_bytes());
            }
            VmPayload::Call {
                issuer,
                name,
                function,
                args,
            } => {
                out.push(2);
                issuer.encode_to(out);
                write_var_bytes(out, name.as_bytes());
                write_var_bytes(out, function.as_bytes());
                write_len(out, args.len());
                for a in args {
                    write_var_bytes(out, a);
                }
            }
            VmPayload::Evidence(evidence) => {
                out.push(3);
                evidence.encode_to(out);
            }
        }
    }
}

impl Decode for VmPayload {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.read_u8()? {
            0 => Ok(VmPayload::Transfer {
                to: Decode::decode_from(r)?,
                amount: Decode::decode_from(r)?,
                memo: r.read_var_bytes("memo", MAX_MEMO_BYTES)?,
            }),
            1 => Ok(VmPayload::Deploy {
                name: read_string(r, "contract name", MAX_NAME_BYTES)?,
                source: read_string(r, "contract source", MAX_SOURCE_BYTES)?,
            }),
            2 => {
                let issuer = Decode::decode_from(r)?;
                let name = read_string(r, "contract name", MAX_NAME_BYTES)?;
                let function = read_string(r, "function name", MAX_FUNCTION_BYTES)?;
                let n = r.read_len("arguments", MAX_ARGS)?;
                let args = (0..n)
                    .map(|_| r.read_var_bytes("argument", MAX_ARG_BYTES))
                    .collect::<Result<Vec<_>, _>>()?;
                for a in &args {
                    value_from_bytes(a)?;
                }
                Ok(VmPayload::Call {
                    issuer,
                    name,
                    function,
                    args,
                })
            }
            3 => Ok(VmPayload::Evidence(Box::new(Decode::decode_from(r)?))),
            _ => Err(CodecError::Invalid {
                what: "VM payload",
                reason: "unknown kind",
            }),
        }
    }
}

impl SignedVmTx {
    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        self.sender.encode_to(out);
        self.nonce.encode_to(out);
        self.chain_id.encode_to(out);
        self.fee.encode_to(out);
        self.payload.encode_to(out);
    }

    pub fn signing_digest(&self) -> Hash256 {
        let mut out = b"fai-vm-tx/v1".to_vec();
        self.encode_unsigned(&mut out);
        Hash256::sha256d(&out)
    }

    pub fn txid(&self) -> Hash256 {
        let mut out = b"fai-vm-txid/v1".to_vec();
        self.encode_to(&mut out);
        Hash256::sha256d(&out)
    }

    /// A signed transaction.
    pub fn new(
        key: &SecretKey,
        nonce: u64,
        chain_id: u32,
        fee: Amount,
        payload: VmPayload,
    ) -> Self {
        let mut tx = SignedVmTx {
            sender: key.public_key(),
            nonce,
            chain_id,
            fee,
            payload,
            signature: Signature([0; 64]),
        };
        tx.signature = key.sign(&tx.signing_digest());
        tx
    }

    pub fn signature_valid(&self) -> bool {
        verify_cached(&self.sender, &self.signing_digest(), &self.signature)
    }

    /// The transaction as the VM runs it.
    pub fn to_vm(&self) -> Result<VmTransaction, CodecError> {
        let payload = match &self.payload {
            VmPayload::Transfer { to, amount, memo } => Payload::Transfer {
                to: to.0,
                amount: u128::from(amount.units()),
                memo: memo.clone(),
            },
            VmPayload::Deploy { name, source } => Payload::Deploy {
                name: name.clone(),
                source: source.clone(),
            },
            VmPayload::Call {
                issuer,
                name,
                function,
                args,
            } => Payload::Call {
                issuer: issuer.0,
                name: name.clone(),
                function: function.clone(),
                args: args
                    .iter()
                    .map(|a| value_from_bytes(a))
                    .collect::<Result<_, _>>()?,
            },
            VmPayload::Evidence(_) => {
                return Err(CodecError::Invalid {
                    what: "VM payload",
                    reason: "evidence is run by the consensus, not the VM",
                })
            }
        };
        Ok(VmTransaction {
            sender: self.sender.hash160().0,
            nonce: self.nonce,
            payload,
        })
    }
}

impl SignedVmTx {
    /// Whether this transaction reveals an audit (a block carries at most
    /// [`crate::chain::MAX_AUDITS_PER_BLOCK`]).
    pub fn reveals_audit(&self) -> bool {
        matches!(&self.payload, VmPayload::Evidence(e) if matches!(**e, Evidence::Audit { .. }))
    }
}

impl Encode for SignedVmTx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_unsigned(out);
        self.signature.encode_to(out);
    }
}

impl Decode for SignedVmTx {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(SignedVmTx {
            sender: Decode::decode_from(r)?,
            nonce: r.read_u64()?,
            chain_id: r.read_u32()?,
            fee: Decode::decode_from(r)?,
            payload: Decode::decode_from(r)?,
            signature: Decode::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_and_arguments_must_be_canonical_clarity_values() {
        let key = SecretKey::from_bytes(&[4; 32]).unwrap();
        let args = vec![
            value_bytes(&Value::UInt(500)),
            value_bytes(&Value::buff_from(vec![1, 2, 3]).unwrap()),
        ];
        let tx = SignedVmTx::new(
            &key,
            3,
            1,
            Amount::from_units(10).unwrap(),
            VmPayload::Call {
                issuer: Hash160([0; 20]),
                name: "staking".into(),
                function: "stake".into(),
                args,
            },
        );
        assert!(tx.signature_valid());
        let decoded = SignedVmTx::from_bytes(&tx.to_bytes()).unwrap();
        assert_eq!(decoded, tx);
        let vm = decoded.to_vm().unwrap();
        assert_eq!(vm.sender, key.public_key().hash160().0);
        match vm.payload {
            Payload::Call { args, .. } => assert_eq!(args[0], Value::UInt(500)),
            other => panic!("{other:?}"),
        }
        // Not a value; a value with trailing bytes.
        assert!(value_from_bytes(&[0xff, 0]).is_err());
        let mut trailing = value_bytes(&Value::UInt(1));
        trailing.push(0);
        assert!(value_from_bytes(&trailing).is_err());
        // A memo over 34 bytes does not decode.
        let long_memo = SignedVmTx::new(
            &key,
            0,
            1,
            Amount::ZERO,
            VmPayload::Transfer {
                to: Hash160([1; 20]),
                amount: Amount::from_units(1).unwrap(),
                memo: vec![0; 35],
            },
        );
        assert!(SignedVmTx::from_bytes(&long_memo.to_bytes()).is_err());
    }
}
