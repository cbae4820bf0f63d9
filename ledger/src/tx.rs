//! Ledger transactions: inputs that spend earlier outputs with a secp256k1 signature,
//! outputs that pay an address (by its key hash) or carry up to 80 bytes of data.
//!
//! Wire form (all integers little-endian, lists CompactSize-prefixed):
//! `version u32 | inputs | outputs | lock_time u32`; an input is
//! `txid 32 | vout u32 | sequence u32 | unlock`, where the unlock of a coinbase (null
//! outpoint) is a byte string of 4 to 100 bytes and any other unlock is a compressed public
//! key (33) and a compact signature (64). An output is `value u64 | tag u8 | payload`:
//! tag 0 pays a 20-byte key hash, tag 1 carries data.
//!
//! The txid is the sha256d of the whole encoding. Signatures are fixed-size and low-S, so
//! nobody but the signer can change a txid.

use std::fmt;

use fai_primitives::codec::{write_var_bytes, write_vec};
use fai_primitives::{
    Amount, CodecError, Decode, Encode, Hash160, Hash256, PublicKey, Reader, Signature,
};

/// The most data an output can carry.
pub const MAX_DATA_OUTPUT: usize = 80;

/// Bounds of a coinbase's unlock bytes: the 4-byte height, then extra nonce and message.
pub const MIN_COINBASE_DATA: usize = 4;
pub const MAX_COINBASE_DATA: usize = 100;

/// A lock time below this is a block height, at or above it a Unix time.
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// A sequence number that opts an input out of lock-time enforcement.
pub const SEQUENCE_FINAL: u32 = u32::MAX;

/// Decoding bound on inputs and outputs of one transaction (far above what fits a block).
const MAX_TX_ITEMS: u64 = 100_000;

/// A transaction id: the sha256d of the transaction's encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Txid(pub Hash256);

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Txid({})", self.0)
    }
}

/// A reference to one output of an earlier transaction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct OutPoint {
    pub txid: Txid,
    pub vout: u32,
}

impl OutPoint {
    /// The outpoint a coinbase input names: no transaction, index `u32::MAX`.
    pub const NULL: OutPoint = OutPoint {
        txid: Txid(Hash256::ZERO),
        vout: u32::MAX,
    };

    pub fn new(txid: Txid, vout: u32) -> Self {
        OutPoint { txid, vout }
    }

    pub fn is_null(&self) -> bool {
        *self == OutPoint::NULL
    }
}

/// What unlocks an input.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Unlock {
    /// The input of a coinbase: the block height (4 bytes LE), then free bytes.
    Coinbase(Vec<u8>),
    /// The key whose hash the spent output pays, and its signature of the sighash.
    Key {
        pubkey: PublicKey,
        signature: Signature,
    },
}

/// A transaction input.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TxIn {
    pub prevout: OutPoint,
    pub sequence: u32,
    pub unlock: Unlock,
}

/// Where an output's value goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OutputKind {
    /// Spendable by the key whose hash160 this is.
    PayToKeyHash(Hash160),
    /// Unspendable data (at most [`MAX_DATA_OUTPUT`] bytes); any value here is locked forever.
    Data(Vec<u8>),
}

/// A transaction output.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TxOut {
    pub value: Amount,
    pub kind: OutputKind,
}

impl TxOut {
    pub fn pay(value: Amount, key_hash: Hash160) -> Self {
        TxOut {
            value,
            kind: OutputKind::PayToKeyHash(key_hash),
        }
    }

    pub fn data(value: Amount, bytes: Vec<u8>) -> Self {
        TxOut {
            value,
            kind: OutputKind::Data(bytes),
        }
    }

    /// Whether this output enters the UTXO set.
    pub fn is_spendable(&self) -> bool {
        matches!(self.kind, OutputKind::PayToKeyHash(_))
    }
}

/// A ledger transaction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transaction {
    pub version: u32,
    pub inputs: Vec<TxIn>,
    pub outputs: Vec<TxOut>,
    pub lock_time: u32,
}

impl Transaction {
    /// A coinbase whose input carries `data` (the height first) and pays `outputs`.
    pub fn coinbase(data: Vec<u8>, outputs: Vec<TxOut>) -> Self {
        Transaction {
            version: 1,
            inputs: vec![TxIn {
                prevout: OutPoint::NULL,
                sequence: SEQUENCE_FINAL,
                unlock: Unlock::Coinbase(data),
            }],
            outputs,
            lock_time: 0,
        }
    }

    pub fn txid(&self) -> Txid {
        Txid(Hash256::sha256d(&self.to_bytes()))
    }

    /// The encoded size in bytes.
    pub fn size(&self) -> usize {
        self.to_bytes().len()
    }

    /// A coinbase has exactly one input, with the null outpoint.
    pub fn is_coinbase(&self) -> bool {
        matches!(self.inputs.as_slice(), [only] if only.prevout.is_null())
    }

    /// The sum of the outputs, or `None` past the supply cap.
    pub fn output_value(&self) -> Option<Amount> {
        Amount::checked_sum(self.outputs.iter().map(|o| o.value))
    }

    /// The height a coinbase commits to in its first four unlock bytes.
    pub fn coinbase_height(&self) -> Option<u32> {
        match self.inputs.first().map(|i| &i.unlock) {
            Some(Unlock::Coinbase(data)) => {
                let head: [u8; 4] = data.get(..4)?.try_into().ok()?;
                Some(u32::from_le_bytes(head))
            }
            _ => None,
        }
    }
}

impl Encode for Txid {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.0.encode_to(out);
    }
}

impl Decode for Txid {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Txid(Hash256::decode_from(r)?))
    }
}

impl Encode for OutPoint {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.txid.encode_to(out);
        self.vout.encode_to(out);
    }
}

impl Decode for OutPoint {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(OutPoint {
            txid: Txid::decode_from(r)?,
            vout: r.read_u32()?,
        })
    }
}

impl Encode for TxIn {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.prevout.encode_to(out);
        self.sequence.encode_to(out);
        match &self.unlock {
            Unlock::Coinbase(data) => write_var_bytes(out, data),
            Unlock::Key { pubkey, signature } => {
                pubkey.encode_to(out);
                signature.encode_to(out);
            }
        }
    }
}

impl Decode for TxIn {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let prevout = OutPoint::decode_from(r)?;
        let sequence = r.read_u32()?;
        let unlock = if prevout.is_null() {
            Unlock::Coinbase(r.read_var_bytes("coinbase data", MAX_COINBASE_DATA as u64)?)
        } else {
            Unlock::Key {
                pubkey: PublicKey::decode_from(r)?,
                signature: Signature::decode_from(r)?,
            }
        };
        Ok(TxIn {
            prevout,
            sequence,
            unlock,
        })
    }
}

impl Encode for TxOut {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.value.encode_to(out);
        match &self.kind {
            OutputKind::PayToKeyHash(h) => {
                out.push(0);
                h.encode_to(out);
            }
            OutputKind::Data(d) => {
                out.push(1);
                write_var_bytes(out, d);
            }
        }
    }
}

impl Decode for TxOut {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let value = Amount::decode_from(r)?;
        let kind = match r.read_u8()? {
            0 => OutputKind::PayToKeyHash(Hash160::decode_from(r)?),
            1 => OutputKind::Data(r.read_var_bytes("data output", MAX_DATA_OUTPUT as u64)?),
            _ => {
                return Err(CodecError::Invalid {
                    what: "output",
                    reason: "unknown output kind",
                })
            }
        };
        Ok(TxOut { value, kind })
    }
}

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.version.encode_to(out);
        write_vec(out, &self.inputs);
        write_vec(out, &self.outputs);
        self.lock_time.encode_to(out);
    }
}

impl Decode for Transaction {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Transaction {
            version: r.read_u32()?,
            inputs: r.read_vec("inputs", MAX_TX_ITEMS, 41)?,
            outputs: r.read_vec("outputs", MAX_TX_ITEMS, 9)?,
            lock_time: r.read_u32()?,
        })
    }
}
