//! The block index: one entry per block the node stores, with its height, the total work
//! of the chain it ends, and whether it was found invalid.

use fai_primitives::{CodecError, Decode, Encode, Reader};
use primitive_types::U256;

use crate::block::BlockHeader;

/// What the node knows of a block's validity.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockStatus {
    /// Checked on its own and against its parent header; not yet connected.
    HeaderValid,
    /// Connected to the UTXO set once: every rule held.
    Connected,
    /// Broke a rule when connected, or descends from a block that did.
    Failed,
}

/// A block index entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IndexEntry {
    pub header: BlockHeader,
    pub height: u32,
    /// Total work of the chain from genesis through this block.
    pub chain_work: U256,
    pub status: BlockStatus,
    /// Arrival order: among branches of equal work the one seen first wins.
    pub sequence: u64,
}

impl Encode for IndexEntry {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        self.height.encode_to(out);
        self.chain_work.to_big_endian().encode_to(out);
        out.push(match self.status {
            BlockStatus::HeaderValid => 0,
            BlockStatus::Connected => 1,
            BlockStatus::Failed => 2,
        });
        self.sequence.encode_to(out);
    }
}

impl Decode for IndexEntry {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let header = BlockHeader::decode_from(r)?;
        let height = r.read_u32()?;
        let work: [u8; 32] = r.read_array()?;
        let status = match r.read_u8()? {
            0 => BlockStatus::HeaderValid,
            1 => BlockStatus::Connected,
            2 => BlockStatus::Failed,
            _ => {
                return Err(CodecError::Invalid {
                    what: "block status",
                    reason: "unknown value",
                })
            }
        };
        Ok(IndexEntry {
            header,
            height,
            chain_work: U256::from_big_endian(&work),
            status,
            sequence: r.read_u64()?,
        })
    }
}
