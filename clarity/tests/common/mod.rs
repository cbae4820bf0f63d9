//! Shared helpers: a real regtest ledger, the VM on RocksDB in a temporary directory, and
//! inference blocks anchored to the ledger.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use fai_clarity::{
    BlockInfo, BlockOp, ClarityVm, Genesis, GenesisModel, Payload, Value, VmConfig, VmTransaction,
};
use fai_ledger::chainstate::{Chainstate, SCHEMA};
use fai_ledger::params::ChainParams;
use fai_ledger::testkit;
use fai_primitives::{Hash160, Network};
use fai_storage::{MemoryStore, RocksStore, Schema};

pub const CLARITY_SCHEMA: Schema = Schema {
    columns: &[fai_clarity::STATE_COLUMN, fai_clarity::BLOCKS_COLUMN],
    format_version: 1,
};

pub const FAI_TINY_ID: [u8; 32] = [0x7a; 32];

/// A regtest ledger with `blocks` blocks above genesis.
pub fn ledger(blocks: u32) -> Chainstate {
    let store = Arc::new(MemoryStore::open(SCHEMA).unwrap());
    let mut chain = Chainstate::open(store, ChainParams::for_network(Network::Regtest)).unwrap();
    testkit::extend(&mut chain, blocks, Hash160([9; 20]), 2_000_000_000).unwrap();
    chain
}

pub fn open_store(dir: &Path) -> Arc<RocksStore> {
    Arc::new(RocksStore::open(dir, CLARITY_SCHEMA).unwrap())
}

pub fn vm_on(store: Arc<RocksStore>, config: VmConfig) -> ClarityVm {
    ClarityVm::new(store, config)
}

pub fn genesis_settings() -> Genesis {
    Genesis {
        cycle_length: 10,
        min_stake: 100,
        min_bond: 50,
        withdraw_delay: 5,
        models: vec![GenesisModel {
            id: FAI_TINY_ID,
            name: "fai-tiny".into(),
            arch: "llama".into(),
            context_length: 2048,
            method: "replay".into(),
        }],
    }
}

/// The genesis inference block, anchored to ledger block 1.
pub fn genesis_info(ledger: &Chainstate) -> BlockInfo {
    BlockInfo {
        id: [0xb0; 32],
        parent: [0xb0; 32],
        height: 0,
        ledger_hash: ledger.hash_at(1).unwrap().0,
        ledger_height: 1,
        time: 1_700_000_000,
        vrf_seed: [0; 32],
        producer: [0; 20],
        commit_spent: 0,
        commit_total: 0,
        reward: 0,
    }
}

/// A child of `parent` named by `tag`, anchored at `ledger_height`.
pub fn child(parent: &BlockInfo, tag: u8, ledger: &Chainstate, ledger_height: u32) -> BlockInfo {
    let mut id = [tag; 32];
    id[0] = parent.height as u8 + 1;
    BlockInfo {
        id,
        parent: parent.id,
        height: parent.height + 1,
        ledger_hash: ledger.hash_at(ledger_height).unwrap().0,
        ledger_height,
        time: parent.time + 5,
        vrf_seed: [tag; 32],
        producer: [tag; 20],
        commit_spent: 10,
        commit_total: 20,
        reward: 350_000_000,
    }
}

pub const ALICE: [u8; 20] = [0xa1; 20];
pub const BOB: [u8; 20] = [0xb2; 20];

pub fn mint(to: [u8; 20], amount: u128) -> BlockOp {
    BlockOp::Mint { to, amount }
}

pub fn tx(sender: [u8; 20], nonce: u64, payload: Payload) -> BlockOp {
    BlockOp::Tx(VmTransaction {
        sender,
        nonce,
        payload,
    })
}

pub fn deploy(sender: [u8; 20], nonce: u64, name: &str, source: &str) -> BlockOp {
    tx(
        sender,
        nonce,
        Payload::Deploy {
            name: name.into(),
            source: source.into(),
        },
    )
}

pub fn call(
    sender: [u8; 20],
    nonce: u64,
    issuer: [u8; 20],
    name: &str,
    function: &str,
    args: Vec<Value>,
) -> BlockOp {
    tx(
        sender,
        nonce,
        Payload::Call {
            issuer,
            name: name.into(),
            function: function.into(),
            args,
        },
    )
}
