//! Shared helpers of the ledger's integration tests: regtest chains on the real storage
//! backends and funded keys.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fai_ledger::chainstate::SCHEMA;
use fai_ledger::testkit;
use fai_ledger::{Block, ChainParams, Chainstate, OutPoint, TxOut};
use fai_primitives::{Hash160, Network, SecretKey};
use fai_storage::MemoryStore;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn regtest_params() -> ChainParams {
    ChainParams::for_network(Network::Regtest)
}

/// A fresh regtest chain in memory.
pub fn regtest() -> Chainstate {
    chain_with(regtest_params())
}

pub fn chain_with(params: ChainParams) -> Chainstate {
    Chainstate::open(Arc::new(MemoryStore::open(SCHEMA).unwrap()), params).unwrap()
}

/// A key and the hash its address commits to.
pub struct Wallet {
    pub key: SecretKey,
    pub hash: Hash160,
}

impl Wallet {
    pub fn new() -> Self {
        let key = SecretKey::generate();
        let hash = key.public_key().hash160();
        Wallet { key, hash }
    }
}

/// A chain of 101 + `extra` blocks whose first `1 + extra` coinbases, paid to `wallet`,
/// are mature; returns the spendable coinbase coins (oldest first).
pub fn funded(chain: &mut Chainstate, wallet: &Wallet, extra: u32) -> Vec<(OutPoint, TxOut)> {
    let blocks = testkit::extend(chain, 101 + extra, wallet.hash, now()).unwrap();
    blocks
        .iter()
        .take(1 + extra as usize)
        .map(coinbase_coin)
        .collect()
}

pub fn coinbase_coin(block: &Block) -> (OutPoint, TxOut) {
    let cb = &block.transactions[0];
    (OutPoint::new(cb.txid(), 0), cb.outputs[0].clone())
}

/// A mined block on the tip with `txs`.
pub fn block_with(chain: &Chainstate, txs: Vec<fai_ledger::Transaction>) -> Block {
    testkit::mine_on_tip(chain, txs, Wallet::new().hash, None).unwrap()
}
