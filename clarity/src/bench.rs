//! `infer-node bench clarity`: contract calls per second through the VM on the node's
//! RocksDB store against the same calls on an in-memory store, in one run, so that the
//! cost of the storage layer shows as a ratio (1.0: the disk costs nothing).
//!
//! Each store gets a genesis (the boot contracts), a block deploying a small contract
//! that keeps a counter and a map, then `blocks` blocks of `calls_per_block` calls, each
//! reading the counter and writing it and a new map entry (the state grows as a node's
//! does). Blocks are executed and committed as the chain does; only the call blocks are
//! timed.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use fai_ledger::chainstate::Chainstate;
use fai_ledger::params::ChainParams;
use fai_primitives::{Hash160, Network};
use fai_storage::{KeyValueStore, MemoryStore, RocksStore, Schema};

use crate::{
    BlockInfo, BlockOp, ClarityError, ClarityVm, Genesis, Payload, Result, Value, VmConfig,
    VmTransaction,
};

/// The columns of the VM's store.
const SCHEMA: Schema = Schema {
    columns: &[crate::STATE_COLUMN, crate::BLOCKS_COLUMN],
    format_version: 1,
};

const CONTRACT: &str = "
(define-data-var count uint u0)
(define-map seen uint uint)
(define-public (note (n uint))
  (let ((next (+ (var-get count) u1)))
    (var-set count next)
    (map-set seen n next)
    (ok next)))
";

/// The caller of every call, funded at genesis.
const SENDER: [u8; 20] = [0xbe; 20];

/// What `bench clarity` prints.
#[derive(Debug, Clone)]
pub struct ClarityBench {
    pub blocks: u32,
    pub calls: u64,
    pub rocksdb_calls_per_sec: f64,
    pub memory_calls_per_sec: f64,
    /// RocksDB over memory.
    pub ratio: f64,
}

/// Runs the calls on a RocksDB store in `dir` (which must be empty or absent), then on
/// memory.
pub fn contract_calls(dir: &Path, blocks: u32, calls_per_block: u32) -> Result<ClarityBench> {
    let ledger = ledger()?;
    let rocks: Arc<dyn KeyValueStore> = Arc::new(RocksStore::open(dir, SCHEMA)?);
    let memory: Arc<dyn KeyValueStore> = Arc::new(MemoryStore::open(SCHEMA)?);
    let rocksdb_calls_per_sec = calls_per_sec(rocks, &ledger, blocks, calls_per_block)?;
    let memory_calls_per_sec = calls_per_sec(memory, &ledger, blocks, calls_per_block)?;
    Ok(ClarityBench {
        blocks,
        calls: u64::from(blocks).saturating_mul(u64::from(calls_per_block)),
        rocksdb_calls_per_sec,
        memory_calls_per_sec,
        ratio: rocksdb_calls_per_sec / memory_calls_per_sec.max(f64::MIN_POSITIVE),
    })
}

/// A regtest ledger of a few blocks in memory, for the blocks' anchors.
fn ledger() -> Result<Chainstate> {
    let store = Arc::new(MemoryStore::open(fai_ledger::chainstate::SCHEMA)?);
    let mut chain = Chainstate::open(store, ChainParams::for_network(Network::Regtest))
        .map_err(|e| ClarityError::Vm(e.to_string()))?;
    fai_ledger::testkit::extend(&mut chain, 3, Hash160([9; 20]), 2_000_000_000)
        .map_err(|e| ClarityError::Vm(e.to_string()))?;
    Ok(chain)
}

/// Block `height` on top of `parent` (the genesis names itself), anchored at ledger
/// block 1.
fn block(ledger: &Chainstate, parent: Option<&BlockInfo>, height: u32) -> BlockInfo {
    let mut id = [0xc1; 32];
    if let Some(head) = id.get_mut(..4) {
        head.copy_from_slice(&height.to_le_bytes());
    }
    BlockInfo {
        id,
        parent: parent.map_or(id, |p| p.id),
        height,
        ledger_hash: ledger.hash_at(1).map_or([0; 32], |h| h.0),
        ledger_height: 1,
        time: 1_700_000_000u64.saturating_add(u64::from(height)),
        vrf_seed: [0; 32],
        producer: [0; 20],
        commit_spent: 0,
        commit_total: 0,
        reward: 0,
    }
}

/// Executes `ops` as block `info` and fails on any operation that failed.
fn execute(vm: &ClarityVm, ledger: &Chainstate, info: BlockInfo, ops: &[BlockOp]) -> Result<()> {
    let result = vm.execute_block(info, ledger, ops)?;
    match result.outcomes.iter().find_map(|o| o.as_ref().err()) {
        Some(e) => Err(ClarityError::Vm(format!("an operation failed: {e}"))),
        None => Ok(()),
    }
}

fn calls_per_sec(
    kv: Arc<dyn KeyValueStore>,
    ledger: &Chainstate,
    blocks: u32,
    calls_per_block: u32,
) -> Result<f64> {
    let vm = ClarityVm::new(kv, VmConfig::for_network(Network::Regtest));
    let genesis = block(ledger, None, 0);
    let settings = Genesis {
        cycle_length: 10,
        min_stake: 100,
        min_bond: 50,
        withdraw_delay: 5,
        models: Vec::new(),
    };
    let mint = BlockOp::Mint {
        to: SENDER,
        amount: 1_000_000_000,
    };
    let result = vm.genesis(genesis, ledger, &settings, &[mint])?;
    if let Some(e) = result.outcomes.iter().find_map(|o| o.as_ref().err()) {
        return Err(ClarityError::Vm(format!("genesis failed: {e}")));
    }
    let deploy = BlockOp::Tx(VmTransaction {
        sender: SENDER,
        nonce: 0,
        payload: Payload::Deploy {
            name: "bench".into(),
            source: CONTRACT.into(),
        },
    });
    let mut parent = block(ledger, Some(&genesis), 1);
    execute(&vm, ledger, parent, &[deploy])?;
    let mut nonce = 1u64;
    let started = Instant::now();
    for height in 2..blocks.saturating_add(2) {
        let ops: Vec<BlockOp> = (0..calls_per_block)
            .map(|_| {
                let op = BlockOp::Tx(VmTransaction {
                    sender: SENDER,
                    nonce,
                    payload: Payload::Call {
                        issuer: SENDER,
                        name: "bench".into(),
                        function: "note".into(),
                        args: vec![Value::UInt(u128::from(nonce))],
                    },
                });
                nonce = nonce.saturating_add(1);
                op
            })
            .collect();
        let info = block(ledger, Some(&parent), height);
        execute(&vm, ledger, info, &ops)?;
        parent = info;
    }
    let seconds = started.elapsed().as_secs_f64();
    let calls = f64::from(blocks) * f64::from(calls_per_block);
    Ok(calls / seconds.max(f64::MIN_POSITIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench runs the same calls on both stores, and they all succeed.
    #[test]
    fn both_stores_run_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let r = contract_calls(&dir.path().join("vm"), 2, 5).unwrap();
        assert_eq!(r.calls, 10);
        assert!(r.rocksdb_calls_per_sec > 0.0 && r.memory_calls_per_sec > 0.0);
        assert!(r.ratio > 0.0);
    }
}
