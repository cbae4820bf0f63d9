//! `infer-node bench`: what this machine does, measured against its own physical limit in
//! the same run, so the figures mean something on a noisy machine.
//!
//! - `pow`: the miner's hash rate per thread, and the raw SHA-256 compression rate of the
//!   same threads. Each header hash costs two compressions (midstate trick), so
//!   `ratio = hashes x 2 / compressions` is the miner's efficiency; 1.0 is the ceiling.
//! - `validate`: connecting a block of 2,000 one-input transactions to a real RocksDB
//!   chainstate, against the raw secp256k1 verification rate of one thread.
//!   `ratio = txs/s / verifies/s`; above 1 means validation runs on several cores.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fai_ledger::chainstate::SCHEMA;
use fai_ledger::miner::scan;
use fai_ledger::pow::{compress, MidstateHasher};
use fai_ledger::testkit::{extend, mine_on_tip, spend};
use fai_ledger::{Block, ChainParams, Chainstate, OutPoint, TxOut};
use fai_primitives::{Amount, Hash256, Network, SecretKey};
use fai_storage::RocksStore;
use primitive_types::U256;
use serde::Serialize;

#[derive(Serialize)]
pub struct PowReport {
    pub threads: usize,
    pub seconds: f64,
    /// Header hashes per second per thread.
    pub hashes_per_sec: f64,
    /// Header hashes per second, all threads.
    pub total_hashes_per_sec: f64,
    /// Raw SHA-256 compressions per second per thread.
    pub sha256_compressions_per_sec: f64,
    pub ratio: f64,
}

/// Runs `work` on `threads` threads for `duration`; returns operations per second per thread.
fn per_thread_rate(
    threads: usize,
    duration: Duration,
    work: impl Fn(&AtomicBool) -> u64 + Sync,
) -> f64 {
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| total.fetch_add(work(&stop), Ordering::Relaxed));
        }
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    total.load(Ordering::Relaxed) as f64 / elapsed / threads as f64
}

pub fn pow(threads: usize, seconds: f64) -> PowReport {
    let duration = Duration::from_secs_f64(seconds.max(0.1));
    // A target no hash meets: the miner's loop runs at full speed and never stops early.
    let header = ChainParams::for_network(Network::Devnet)
        .genesis_block()
        .header
        .to_array();
    let hasher = MidstateHasher::new(&header, U256::zero());
    let batch: u32 = 1 << 16;
    let hashes = per_thread_rate(threads, duration, |stop| {
        let mut n = 0u64;
        let mut start = 0u32;
        while !stop.load(Ordering::Relaxed) {
            std::hint::black_box(scan(&hasher, start, batch));
            start = start.wrapping_add(batch);
            n += u64::from(batch);
        }
        n
    });
    let compressions = per_thread_rate(threads, duration, |stop| {
        let mut state = [0x6a09e667u32; 8];
        let mut block = [7u8; 64];
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..batch {
                compress(&mut state, &block);
                block[0] = block[0].wrapping_add(1);
            }
            n += u64::from(batch);
        }
        std::hint::black_box(state);
        n
    });
    PowReport {
        threads,
        seconds: duration.as_secs_f64(),
        hashes_per_sec: hashes,
        total_hashes_per_sec: hashes * threads as f64,
        sha256_compressions_per_sec: compressions,
        ratio: hashes * 2.0 / compressions,
    }
}

#[derive(Serialize)]
pub struct ValidateReport {
    pub transactions: usize,
    pub runs: usize,
    /// Best of the runs: seconds to accept and connect the block.
    pub connect_seconds: f64,
    pub txs_per_sec: f64,
    /// Raw secp256k1 ECDSA verifications per second on one thread.
    pub sig_verifies_per_sec: f64,
    pub ratio: f64,
    pub threads: usize,
}

/// The chain the validation benchmark replays: 101 empty blocks (so the first coinbase
/// matures), a fan-out transaction to `n` coins, and the measured block of `n` spends.
pub struct ValidateFixture {
    pub setup: Vec<Block>,
    pub measured: Block,
}

pub fn validate_fixture(n: usize) -> Result<ValidateFixture> {
    let params = ChainParams::for_network(Network::Regtest);
    let store = fai_storage::MemoryStore::open(SCHEMA)?;
    let mut chain = Chainstate::open(Arc::new(store), params)?;
    let now = fai_node::node::unix_now();
    let owner = SecretKey::generate();
    let owner_hash = owner.public_key().hash160();
    let mut setup = extend(&mut chain, 101, owner_hash, now)?;
    let first = setup.first().context("no block mined")?;
    let cb = first.transactions.first().context("no coinbase")?;
    let cb_out = cb.outputs.first().context("no coinbase output")?.clone();
    // Fan out: 1.5 FAI into n coins, leaving a fee.
    let each = Amount::from_units(cb_out.value.units() / (n as u64 + 1))?;
    let fan = spend(
        &chain,
        &[(OutPoint::new(cb.txid(), 0), cb_out, owner.clone())],
        (0..n).map(|_| TxOut::pay(each, owner_hash)).collect(),
    )?;
    let fan_id = fan.txid();
    let fan_block = mine_on_tip(&chain, vec![fan], owner_hash, None)?;
    chain.accept_block(fan_block.clone(), now)?;
    setup.push(fan_block);
    // n single-input spends, each to a fresh-looking output, paying a fee.
    let pay = each
        .checked_sub(Amount::from_units(1_000)?)
        .context("coin too small")?;
    let dest = SecretKey::generate().public_key().hash160();
    let txs = (0..n)
        .map(|i| {
            let op = OutPoint::new(fan_id, i as u32);
            spend(
                &chain,
                &[(op, TxOut::pay(each, owner_hash), owner.clone())],
                vec![TxOut::pay(pay, dest)],
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let measured = mine_on_tip(&chain, txs, owner_hash, None)?;
    Ok(ValidateFixture { setup, measured })
}

pub fn validate(n: usize, runs: usize) -> Result<ValidateReport> {
    let fixture = validate_fixture(n)?;
    let now = fai_node::node::unix_now();
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let store = RocksStore::open(dir.path(), SCHEMA)?;
        let mut chain =
            Chainstate::open(Arc::new(store), ChainParams::for_network(Network::Regtest))?;
        for b in &fixture.setup {
            chain.accept_block(b.clone(), now)?;
        }
        let block = fixture.measured.clone();
        let started = Instant::now();
        chain.accept_block(block, now)?;
        let elapsed = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            chain.height() == fixture.setup.len() as u32 + 1,
            "the benchmark block was not connected"
        );
        best = best.min(elapsed);
    }
    let verifies = sig_verify_rate(Duration::from_millis(1500));
    let txs_per_sec = n as f64 / best;
    Ok(ValidateReport {
        transactions: n,
        runs: runs.max(1),
        connect_seconds: best,
        txs_per_sec,
        sig_verifies_per_sec: verifies,
        ratio: txs_per_sec / verifies,
        threads: rayon::current_num_threads(),
    })
}

/// Raw ECDSA verifications per second on this thread.
pub fn sig_verify_rate(duration: Duration) -> f64 {
    let items: Vec<_> = (0..256u32)
        .map(|i| {
            let key = SecretKey::generate();
            let digest = Hash256::sha256d(&i.to_le_bytes());
            (key.public_key(), digest, key.sign(&digest))
        })
        .collect();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        for (pk, d, sig) in &items {
            assert!(pk.verify(d, sig));
        }
        n += items.len() as u64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}
