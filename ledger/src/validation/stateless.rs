//! Rules a transaction or block must satisfy without any chain context.

use std::collections::HashSet;

use fai_primitives::Encode;

use super::ConsensusError;
use crate::block::{Block, BlockHeader};
use crate::params::ChainParams;
use crate::pow::{hash_meets_target, target_from_compact};
use crate::tx::{
    OutputKind, Transaction, Unlock, MAX_COINBASE_DATA, MAX_DATA_OUTPUT, MIN_COINBASE_DATA,
};

/// Checks a transaction's shape: inputs and outputs present, size, values within the cap,
/// data outputs within 80 bytes, no input spent twice, coinbase data length, no null
/// outpoint outside a coinbase.
pub fn check_transaction(tx: &Transaction, max_size: usize) -> Result<(), ConsensusError> {
    let txid = tx.txid();
    if tx.inputs.is_empty() {
        return Err(ConsensusError::NoInputs(txid));
    }
    if tx.outputs.is_empty() {
        return Err(ConsensusError::NoOutputs(txid));
    }
    let size = tx.size();
    if size > max_size {
        return Err(ConsensusError::TxTooLarge {
            txid,
            size,
            max: max_size,
        });
    }
    if tx.output_value().is_none() {
        return Err(ConsensusError::OutputsOutOfRange(txid));
    }
    for out in &tx.outputs {
        if let OutputKind::Data(d) = &out.kind {
            if d.len() > MAX_DATA_OUTPUT {
                return Err(ConsensusError::DataOutputTooLarge { txid, len: d.len() });
            }
        }
    }
    let mut seen = HashSet::with_capacity(tx.inputs.len());
    for input in &tx.inputs {
        if !seen.insert(input.prevout) {
            return Err(ConsensusError::DuplicateInput {
                txid,
                outpoint: input.prevout,
            });
        }
    }
    if tx.is_coinbase() {
        if let Some(Unlock::Coinbase(data)) = tx.inputs.first().map(|i| &i.unlock) {
            if !(MIN_COINBASE_DATA..=MAX_COINBASE_DATA).contains(&data.len()) {
                return Err(ConsensusError::CoinbaseDataLength(data.len()));
            }
        }
    } else if tx
        .inputs
        .iter()
        .any(|i| i.prevout.is_null() || matches!(i.unlock, Unlock::Coinbase(_)))
    {
        return Err(ConsensusError::NullPrevout(txid));
    }
    Ok(())
}

/// Checks a block on its own: proof of work against its bits (within the network's
/// limit), size, exactly one coinbase first, every transaction's shape, no duplicate
/// transaction, and the merkle root (unmutated), checked first.
pub fn check_block(block: &Block, params: &ChainParams) -> Result<(), ConsensusError> {
    check_proof_of_work(block, params)?;
    // The merkle root first: a mutated or mismatched block says nothing about the real
    // block with this header, so no other rule's verdict about it should be remembered.
    let (root, mutated) = block.compute_merkle_root();
    if mutated {
        return Err(ConsensusError::MutatedMerkle);
    }
    if root != block.header.merkle_root {
        return Err(ConsensusError::BadMerkleRoot);
    }
    let size = block.to_bytes().len();
    if size > params.max_block_size {
        return Err(ConsensusError::BlockTooLarge {
            size,
            max: params.max_block_size,
        });
    }
    match block.transactions.first() {
        Some(tx) if tx.is_coinbase() => {}
        _ => return Err(ConsensusError::FirstTxNotCoinbase),
    }
    if let Some(pos) = block
        .transactions
        .iter()
        .skip(1)
        .position(Transaction::is_coinbase)
    {
        return Err(ConsensusError::ExtraCoinbase(pos.saturating_add(1)));
    }
    let mut txids = HashSet::with_capacity(block.transactions.len());
    for tx in &block.transactions {
        check_transaction(tx, params.max_block_size)?;
        let txid = tx.txid();
        if !txids.insert(txid) {
            return Err(ConsensusError::DuplicateTransaction(txid));
        }
    }
    Ok(())
}

/// The header's hash meets the target its bits encode, and that target is within the
/// network's limit.
pub fn check_proof_of_work(block: &Block, params: &ChainParams) -> Result<(), ConsensusError> {
    check_header_proof_of_work(&block.header, params)
}

/// [`check_proof_of_work`] on a header alone (headers-first sync checks a peer's headers
/// before it downloads their blocks).
pub fn check_header_proof_of_work(
    header: &BlockHeader,
    params: &ChainParams,
) -> Result<(), ConsensusError> {
    let target = target_from_compact(header.bits)?;
    if target > params.pow_limit() {
        return Err(ConsensusError::TargetAboveLimit);
    }
    if !hash_meets_target(&header.hash(), &target) {
        return Err(ConsensusError::HighHash);
    }
    Ok(())
}
