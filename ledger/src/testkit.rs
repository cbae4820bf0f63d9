//! Helpers that build real chains quickly, for tests and `infer-node bench`: blocks on the
//! tip with chosen transactions, mined on the spot (on regtest a block takes a few
//! hashes), and signed spends.

use fai_primitives::{Amount, Hash160, Hash256, SecretKey};

use crate::block::{Block, BlockHeader};
use crate::chainstate::Chainstate;
use crate::merkle;
use crate::sighash::{sign_transaction, SignError};
use crate::tx::{OutPoint, Transaction, TxIn, TxOut, Unlock, SEQUENCE_FINAL};
use crate::ChainError;

/// A block on the active tip of `chain` holding `txs` after a coinbase that pays `reward`
/// (the subsidy when `None`) to `payout`, with the earliest valid time, mined.
pub fn mine_on_tip(
    chain: &Chainstate,
    txs: Vec<Transaction>,
    payout: Hash160,
    reward: Option<Amount>,
) -> Result<Block, ChainError> {
    mine_on(chain, chain.tip_hash(), txs, payout, reward)
}

/// Like [`mine_on_tip`], on any stored block: for building competing branches.
pub fn mine_on(
    chain: &Chainstate,
    parent: Hash256,
    txs: Vec<Transaction>,
    payout: Hash160,
    reward: Option<Amount>,
) -> Result<Block, ChainError> {
    let entry = chain
        .entry(&parent)
        .ok_or_else(|| ChainError::Corrupt(format!("unknown parent {parent}")))?;
    let height = entry.height.saturating_add(1);
    let bits = chain.required_bits(&parent)?;
    let time = chain
        .median_time_past(&parent)
        .saturating_add(1)
        .max(entry.header.time.saturating_add(1));
    let reward = reward.unwrap_or_else(|| chain.params().block_subsidy(height));
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev: parent,
            merkle_root: Hash256::ZERO,
            time,
            bits,
            nonce: 0,
        },
        transactions: vec![coinbase(height, payout, reward)],
    };
    block.transactions.extend(txs);
    Ok(mine(block))
}

/// A coinbase for `height` paying `reward` to `payout`.
pub fn coinbase(height: u32, payout: Hash160, reward: Amount) -> Transaction {
    let mut data = height.to_le_bytes().to_vec();
    data.extend_from_slice(b"test");
    Transaction::coinbase(data, vec![TxOut::pay(reward, payout)])
}

/// Recomputes the merkle root of `block` and searches a nonce for it (any network's
/// target works, but only regtest's is instant).
pub fn mine(mut block: Block) -> Block {
    let ids: Vec<_> = block.transactions.iter().map(|t| t.txid().0).collect();
    block.header.merkle_root = merkle::root(&ids).0;
    reseal(block)
}

/// Searches a nonce for `block` as it is (its merkle root is left alone).
pub fn reseal(block: Block) -> Block {
    let target = crate::pow::target_from_compact(block.header.bits).unwrap_or_default();
    let mut header = block.header;
    let hasher = crate::pow::MidstateHasher::new(&header.to_array(), target);
    if let Some(nonce) = crate::miner::scan(&hasher, 0, u32::MAX) {
        header.nonce = nonce;
    }
    Block {
        header,
        transactions: block.transactions,
    }
}

/// A transaction spending `coins` (each with the key that owns it) into `outputs`, signed.
pub fn spend(
    chain: &Chainstate,
    coins: &[(OutPoint, TxOut, SecretKey)],
    outputs: Vec<TxOut>,
) -> Result<Transaction, SignError> {
    let mut tx = Transaction {
        version: 1,
        inputs: coins
            .iter()
            .map(|(op, _, key)| TxIn {
                prevout: *op,
                sequence: SEQUENCE_FINAL,
                unlock: Unlock::Key {
                    pubkey: key.public_key(),
                    signature: fai_primitives::Signature([0; 64]),
                },
            })
            .collect(),
        outputs,
        lock_time: 0,
    };
    let spent: Vec<(TxOut, SecretKey)> = coins
        .iter()
        .map(|(_, o, k)| (o.clone(), k.clone()))
        .collect();
    sign_transaction(&mut tx, chain.params().magic, &spent)?;
    Ok(tx)
}

/// Mines `count` empty blocks paying `payout`, accepting each; returns them.
pub fn extend(
    chain: &mut Chainstate,
    count: u32,
    payout: Hash160,
    now: u64,
) -> Result<Vec<Block>, ChainError> {
    let mut blocks = Vec::new();
    for _ in 0..count {
        let b = mine_on_tip(chain, Vec::new(), payout, None)?;
        chain.accept_block(b.clone(), now)?;
        blocks.push(b);
    }
    Ok(blocks)
}
