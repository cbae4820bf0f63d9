//! Ledger blocks: an 80-byte header and a list of transactions, the first a coinbase.
//!
//! Header wire form, 80 bytes: `version u32 | prev 32 | merkle_root 32 | time u32 |
//! bits u32 | nonce u32`. The block hash is the sha256d of those 80 bytes.

use fai_primitives::codec::write_vec;
use fai_primitives::{CodecError, Decode, Encode, Hash256, Reader};

use crate::merkle;
use crate::tx::Transaction;

/// The encoded size of a header.
pub const HEADER_SIZE: usize = 80;

/// Decoding bound on the transactions of one block (a 1 MB block holds fewer than 20,000).
const MAX_BLOCK_TXS: u64 = 100_000;

/// A block header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BlockHeader {
    pub version: u32,
    pub prev: Hash256,
    pub merkle_root: Hash256,
    pub time: u32,
    pub bits: u32,
    pub nonce: u32,
}

impl BlockHeader {
    pub fn to_array(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let bytes = self.to_bytes();
        out.copy_from_slice(&bytes);
        out
    }

    pub fn hash(&self) -> Hash256 {
        Hash256::sha256d(&self.to_bytes())
    }
}

impl Encode for BlockHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.version.encode_to(out);
        self.prev.encode_to(out);
        self.merkle_root.encode_to(out);
        self.time.encode_to(out);
        self.bits.encode_to(out);
        self.nonce.encode_to(out);
    }
}

impl Decode for BlockHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(BlockHeader {
            version: r.read_u32()?,
            prev: Hash256::decode_from(r)?,
            merkle_root: Hash256::decode_from(r)?,
            time: r.read_u32()?,
            bits: r.read_u32()?,
            nonce: r.read_u32()?,
        })
    }
}

/// A full block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
}

impl Block {
    pub fn hash(&self) -> Hash256 {
        self.header.hash()
    }

    /// The encoded size in bytes.
    pub fn size(&self) -> usize {
        self.to_bytes().len()
    }

    /// The merkle root of the transactions and whether the tree was mutated (see [`merkle`]).
    pub fn compute_merkle_root(&self) -> (Hash256, bool) {
        let ids: Vec<Hash256> = self.transactions.iter().map(|t| t.txid().0).collect();
        merkle::root(&ids)
    }
}

impl Encode for Block {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        write_vec(out, &self.transactions);
    }
}

impl Decode for Block {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Block {
            header: BlockHeader::decode_from(r)?,
            transactions: r.read_vec("transactions", MAX_BLOCK_TXS, 10)?,
        })
    }
}
