//! Coins (unspent outputs with the height that created them), the read-only view of the
//! UTXO set that consensus checks against, and the undo data that lets a block be
//! disconnected.

use std::collections::HashMap;

use fai_primitives::codec::write_vec;
use fai_primitives::{Amount, CodecError, Decode, Encode, Reader};

use crate::tx::{OutPoint, TxOut};

/// An unspent output and where it came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Coin {
    pub output: TxOut,
    pub height: u32,
    pub coinbase: bool,
}

/// Read access to the UTXO set. Consensus code sees the chain through this alone.
pub trait UtxoView {
    /// The coin at `outpoint`, if it is unspent.
    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, crate::ChainError>;
}

impl UtxoView for HashMap<OutPoint, Coin> {
    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, crate::ChainError> {
        Ok(self.get(outpoint).cloned())
    }
}

/// What a block spent, in order, so that disconnecting it can put the coins back.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct BlockUndo {
    pub spent: Vec<SpentCoin>,
    /// New money the block's coinbase issued (its subsidy claim), taken off the supply
    /// when the block is disconnected.
    pub minted: Amount,
}

/// One coin a block spent.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SpentCoin {
    pub outpoint: OutPoint,
    pub coin: Coin,
}

impl Encode for Coin {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.output.encode_to(out);
        self.height.encode_to(out);
        out.push(u8::from(self.coinbase));
    }
}

impl Decode for Coin {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let output = TxOut::decode_from(r)?;
        let height = r.read_u32()?;
        let coinbase = match r.read_u8()? {
            0 => false,
            1 => true,
            _ => {
                return Err(CodecError::Invalid {
                    what: "coin",
                    reason: "coinbase flag is not 0 or 1",
                })
            }
        };
        Ok(Coin {
            output,
            height,
            coinbase,
        })
    }
}

impl Encode for SpentCoin {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.outpoint.encode_to(out);
        self.coin.encode_to(out);
    }
}

impl Decode for SpentCoin {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(SpentCoin {
            outpoint: OutPoint::decode_from(r)?,
            coin: Coin::decode_from(r)?,
        })
    }
}

impl Encode for BlockUndo {
    fn encode_to(&self, out: &mut Vec<u8>) {
        write_vec(out, &self.spent);
        self.minted.encode_to(out);
    }
}

impl Decode for BlockUndo {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(BlockUndo {
            spent: r.read_vec("spent coins", 1_000_000, 70)?,
            minted: Amount::decode_from(r)?,
        })
    }
}
