//! Rules a block must satisfy against the UTXO set, and the changes it makes to it.
//!
//! Inputs are resolved in block order (a transaction may spend an output created earlier in
//! the same block); signatures are then verified in parallel over the machine's cores,
//! and the first failure in block order is reported, so every node names the same error.

use std::collections::{HashMap, HashSet};

use fai_primitives::supply::{schedule_total, LEDGER_INITIAL_SUBSIDY};
use fai_primitives::{Amount, Hash160};
use rayon::prelude::*;

use super::ConsensusError;
use crate::block::Block;
use crate::coins::{BlockUndo, Coin, SpentCoin, UtxoView};
use crate::params::ChainParams;
use crate::sighash::SighashCache;
use crate::tx::{
    OutPoint, OutputKind, Transaction, Txid, Unlock, LOCKTIME_THRESHOLD, SEQUENCE_FINAL,
};
use crate::ChainError;

/// The effect of connecting a block.
#[derive(Debug, Clone, Default)]
pub struct BlockChanges {
    /// Coins spent, in order: the undo data.
    pub undo: BlockUndo,
    /// Spendable outputs created and not spent within the block.
    pub created: Vec<(OutPoint, Coin)>,
    /// Total fees paid by the block's transactions.
    pub fees: Amount,
}

/// Whether `tx`'s lock time allows it in a block at `height` whose parent's median time
/// past is `median_time_past`.
pub fn is_final(tx: &Transaction, height: u32, median_time_past: u32) -> bool {
    if tx.lock_time == 0 {
        return true;
    }
    let limit = if tx.lock_time < LOCKTIME_THRESHOLD {
        height
    } else {
        median_time_past
    };
    tx.lock_time < limit || tx.inputs.iter().all(|i| i.sequence == SEQUENCE_FINAL)
}

/// The most the ledger can ever issue under `params`' schedule.
pub fn ledger_supply_cap(params: &ChainParams) -> Amount {
    let total = schedule_total(LEDGER_INITIAL_SUBSIDY, params.halving_interval);
    u64::try_from(total)
        .ok()
        .and_then(|t| Amount::from_units(t).ok())
        .unwrap_or(Amount::MAX)
}

/// One input's signature to check.
pub(crate) struct SigJob {
    input: usize,
    value: u64,
    key_hash: Hash160,
}

/// What one input resolves to, and the fee of each transaction.
struct Resolved {
    jobs: Vec<Vec<SigJob>>,
    changes: BlockChanges,
}

/// Checks `block` at `height` against `view` and returns the coins it spends and creates.
/// `supply_before` is the ledger supply issued up to the parent; the block's `minted`
/// amount is returned in its undo data.
///
/// Errors: a [`ConsensusError`] naming the broken rule, or a storage error from the view.
pub fn connect_block(
    block: &Block,
    height: u32,
    median_time_past: u32,
    view: &dyn UtxoView,
    params: &ChainParams,
    supply_before: Amount,
) -> Result<BlockChanges, ChainError> {
    let coinbase = block
        .transactions
        .first()
        .ok_or(ConsensusError::FirstTxNotCoinbase)?;
    let found = coinbase.coinbase_height();
    if found != Some(height) {
        return Err(ConsensusError::BadCoinbaseHeight {
            expected: height,
            found,
        }
        .into());
    }
    for tx in &block.transactions {
        if !is_final(tx, height, median_time_past) {
            return Err(ConsensusError::NonFinal(tx.txid()).into());
        }
    }

    let Resolved { jobs, mut changes } = resolve_inputs(block, height, view, params)?;
    verify_signatures(block, &jobs, params)?;

    let subsidy = params.block_subsidy(height);
    let allowed = subsidy
        .checked_add(changes.fees)
        .ok_or(ConsensusError::SupplyCapExceeded)?;
    let claimed = coinbase
        .output_value()
        .ok_or_else(|| ConsensusError::OutputsOutOfRange(coinbase.txid()))?;
    if claimed > allowed {
        return Err(ConsensusError::CoinbaseTooLarge { claimed, allowed }.into());
    }
    // New money is what the coinbase takes beyond the fees it collects.
    let minted = claimed.checked_sub(changes.fees).unwrap_or(Amount::ZERO);
    let supply_after = supply_before
        .checked_add(minted)
        .ok_or(ConsensusError::SupplyCapExceeded)?;
    if supply_after > ledger_supply_cap(params) {
        return Err(ConsensusError::SupplyCapExceeded.into());
    }
    changes.undo.minted = minted;

    let cb_txid = coinbase.txid();
    for (vout, out) in coinbase.outputs.iter().enumerate() {
        if out.is_spendable() {
            let vout = u32::try_from(vout).map_err(|_| ConsensusError::FirstTxNotCoinbase)?;
            changes.created.push((
                OutPoint::new(cb_txid, vout),
                Coin {
                    output: out.clone(),
                    height,
                    coinbase: true,
                },
            ));
        }
    }
    Ok(changes)
}

/// Resolves and checks the inputs of a non-coinbase `tx` at `height`: each coin exists
/// (through `lookup`), is mature, is paid to the key that unlocks it, and the inputs cover
/// the outputs. Returns the fee and the signatures still to verify.
pub(crate) fn resolve_tx(
    tx: &Transaction,
    txid: Txid,
    height: u32,
    params: &ChainParams,
    mut lookup: impl FnMut(&OutPoint) -> Result<Option<Coin>, ChainError>,
) -> Result<(Amount, Vec<SigJob>), ChainError> {
    let mut jobs = Vec::with_capacity(tx.inputs.len());
    let mut value_in = Amount::ZERO;
    for (index, input) in tx.inputs.iter().enumerate() {
        let missing = || ConsensusError::MissingInput {
            txid,
            outpoint: input.prevout,
        };
        let coin = lookup(&input.prevout)?.ok_or_else(missing)?;
        if coin.coinbase {
            let confirmations = height.saturating_sub(coin.height);
            if confirmations < params.coinbase_maturity {
                return Err(ConsensusError::ImmatureCoinbase {
                    txid,
                    confirmations,
                    required: params.coinbase_maturity,
                }
                .into());
            }
        }
        let OutputKind::PayToKeyHash(key_hash) = coin.output.kind else {
            return Err(missing().into());
        };
        let Unlock::Key { pubkey, .. } = &input.unlock else {
            return Err(ConsensusError::NullPrevout(txid).into());
        };
        if pubkey.hash160() != key_hash {
            return Err(ConsensusError::KeyMismatch { txid, input: index }.into());
        }
        value_in = value_in
            .checked_add(coin.output.value)
            .ok_or(ConsensusError::OutputsOutOfRange(txid))?;
        jobs.push(SigJob {
            input: index,
            value: coin.output.value.units(),
            key_hash,
        });
    }
    let value_out = tx
        .output_value()
        .ok_or(ConsensusError::OutputsOutOfRange(txid))?;
    let fee = value_in
        .checked_sub(value_out)
        .ok_or(ConsensusError::InputsBelowOutputs(txid))?;
    Ok((fee, jobs))
}

fn resolve_inputs(
    block: &Block,
    height: u32,
    view: &dyn UtxoView,
    params: &ChainParams,
) -> Result<Resolved, ChainError> {
    let mut created: HashMap<OutPoint, Coin> = HashMap::new();
    let mut order: Vec<OutPoint> = Vec::new();
    let mut spent_from_view: HashSet<OutPoint> = HashSet::new();
    let mut undo = BlockUndo::default();
    let mut fees = Amount::ZERO;
    let mut jobs = Vec::with_capacity(block.transactions.len());

    for tx in block.transactions.iter().skip(1) {
        let txid = tx.txid();
        let (fee, tx_jobs) = resolve_tx(tx, txid, height, params, |outpoint| {
            // An output of an earlier transaction of this block, else a coin of the view
            // not yet spent by this block.
            if let Some(c) = created.remove(outpoint) {
                return Ok(Some(c));
            }
            if !spent_from_view.insert(*outpoint) {
                return Ok(None);
            }
            let coin = view.coin(outpoint)?;
            if let Some(c) = &coin {
                undo.spent.push(SpentCoin {
                    outpoint: *outpoint,
                    coin: c.clone(),
                });
            }
            Ok(coin)
        })?;
        fees = fees
            .checked_add(fee)
            .ok_or(ConsensusError::SupplyCapExceeded)?;
        for (vout, out) in tx.outputs.iter().enumerate() {
            if out.is_spendable() {
                let vout =
                    u32::try_from(vout).map_err(|_| ConsensusError::OutputsOutOfRange(txid))?;
                let op = OutPoint::new(txid, vout);
                order.push(op);
                created.insert(
                    op,
                    Coin {
                        output: out.clone(),
                        height,
                        coinbase: false,
                    },
                );
            }
        }
        jobs.push(tx_jobs);
    }
    // Keep creation order for a deterministic write order.
    let created = order
        .into_iter()
        .filter_map(|op| created.remove(&op).map(|c| (op, c)))
        .collect();
    Ok(Resolved {
        jobs,
        changes: BlockChanges {
            undo,
            created,
            fees,
        },
    })
}

fn verify_signatures(
    block: &Block,
    jobs: &[Vec<SigJob>],
    params: &ChainParams,
) -> Result<(), ConsensusError> {
    let results: Vec<Result<(), ConsensusError>> = block
        .transactions
        .par_iter()
        .skip(1)
        .zip(jobs.par_iter())
        .map(|(tx, tx_jobs)| verify_transaction(tx, tx_jobs, params.magic))
        .collect();
    results.into_iter().collect()
}

pub(crate) fn verify_transaction(
    tx: &Transaction,
    jobs: &[SigJob],
    magic: [u8; 4],
) -> Result<(), ConsensusError> {
    let cache = SighashCache::new(tx);
    let txid = || tx.txid();
    for job in jobs {
        let bad = || ConsensusError::BadSignature {
            txid: txid(),
            input: job.input,
        };
        let Some(Unlock::Key { pubkey, signature }) = tx.inputs.get(job.input).map(|i| &i.unlock)
        else {
            return Err(bad());
        };
        let digest = cache
            .digest(magic, job.input, job.value, &job.key_hash)
            .ok_or_else(bad)?;
        if !pubkey.verify(&digest, signature) {
            return Err(bad());
        }
    }
    Ok(())
}
