//! `infer-node bench growth`: whether a node slows down as its chains grow. The cost of
//! connecting a ledger block, with everything a node does then (the inference chain
//! reads it, the producer commits, wins the tenure and produces, runs and accepts its
//! inference block), measured after a short history and after a long one, in one run:
//! `ratio` = cost per block after `large` ledger blocks over the cost after `small`
//! (1.0: flat).
//!
//! Each history is built on RocksDB in a temporary directory with the ledger's testkit
//! (regtest, empty blocks: the first 150 paying the producer's key, the rest another
//! miner's), then read by a fresh inference chain, as a node restarted on it would. The node's chain state (`ChainState`) then
//! connects `warmup` blocks, in which the producer registers and starts winning (not
//! timed), and `measured` more, each carrying the producer's commit: only
//! `accept_ledger_block` is timed, not the mining. A run whose measured blocks did not
//! all bring an inference block fails.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_ledger::testkit;
use fai_node::chain_task::ChainState;
use fai_node::producer::Producer;
use fai_primitives::{Amount, Network, SecretKey};
use serde::Serialize;

/// Blocks of the history the producer itself mined (its coins).
const OWN_BLOCKS: u32 = 150;

/// What `bench growth` prints.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthReport {
    pub small_history: u32,
    pub large_history: u32,
    pub measured_blocks: u32,
    /// Milliseconds per block (ledger block connected, inference block produced and
    /// accepted) after the short history, and after the long one.
    pub small_ms_per_block: f64,
    pub large_ms_per_block: f64,
    /// Seconds it took to build the long history.
    pub large_build_seconds: f64,
    /// Large over small.
    pub ratio: f64,
}

/// Connects the block mined on the tip from what the mempool holds; the seconds
/// `accept_ledger_block` took.
fn connect_next(state: &mut ChainState, payout: fai_primitives::Hash160) -> Result<f64> {
    let txs = state
        .mempool
        .select(usize::MAX)
        .into_iter()
        .map(|e| e.tx.clone())
        .collect();
    let block = testkit::mine_on_tip(&state.ledger, txs, payout, None)?;
    let started = Instant::now();
    state.accept_ledger_block(block, false)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Builds a history of `history` ledger blocks in `dir`, then measures; milliseconds per
/// measured block and the seconds the history took.
fn per_block_ms(dir: &Path, history: u32, warmup: u32, measured: u32) -> Result<(f64, f64)> {
    let key = SecretKey::generate();
    let payout = key.public_key().hash160();
    let built = Instant::now();
    let mut ledger = fai_node::node::open_chain(dir, Network::Regtest)?;
    let now = fai_node::node::unix_now();
    // The producer mines the first blocks (coins for its commits, mature long before the
    // end); other miners the rest, as on a network where it is one node of many.
    let own = history.min(OWN_BLOCKS);
    testkit::extend(&mut ledger, own, payout, now)?;
    let others = SecretKey::generate().public_key().hash160();
    testkit::extend(&mut ledger, history.saturating_sub(own), others, now)?;
    // The model the producer registers for: fai-tiny, approved from the start on regtest.
    let tiny = fai_node::models::fai_tiny_id(dir)?;
    let chain = fai_node::inference::open(dir, Network::Regtest, &ledger, tiny)?;
    let build_seconds = built.elapsed().as_secs_f64();
    let mempool = Mempool::new(MempoolConfig {
        max_bytes: 1 << 20,
        min_fee_rate: 1_000,
    });
    let clock = fai_node::clock::system();
    let mut state = ChainState::new(ledger, mempool, clock.clone());
    state.inference = Some(chain);
    let vrf = fai_inference_chain::sortition::vrf_key(&key);
    state.producer = Some(Producer::new(
        key,
        vrf,
        vec![tiny],
        Amount::from_units(1_000)?,
        clock,
    ));
    let inference_height =
        |s: &ChainState| s.inference.as_ref().map_or(0, |c| c.tip(&s.ledger).height);
    for _ in 0..warmup {
        connect_next(&mut state, payout)?;
    }
    let before = inference_height(&state);
    ensure!(
        before > 0,
        "the producer produced nothing in {warmup} blocks of warm-up"
    );
    let mut seconds = 0.0;
    for _ in 0..measured {
        seconds += connect_next(&mut state, payout)?;
    }
    let produced = inference_height(&state).saturating_sub(before);
    ensure!(
        produced == measured,
        "{produced} inference blocks in {measured} measured ledger blocks: the producer must win each"
    );
    Ok((seconds * 1e3 / f64::from(measured.max(1)), build_seconds))
}

pub fn growth(small: u32, large: u32, measured: u32) -> Result<GrowthReport> {
    ensure!(
        (200..=large).contains(&small),
        "--small must be at least 200 and at most --large"
    );
    // Registration, its block, and a commit: a few blocks; the rest is margin.
    let warmup = 12;
    let small_dir = tempfile::tempdir()?;
    let (small_ms, _) =
        per_block_ms(small_dir.path(), small, warmup, measured).context("the short history")?;
    drop(small_dir);
    let large_dir = tempfile::tempdir()?;
    let (large_ms, large_build_seconds) =
        per_block_ms(large_dir.path(), large, warmup, measured).context("the long history")?;
    Ok(GrowthReport {
        small_history: small,
        large_history: large,
        measured_blocks: measured,
        small_ms_per_block: small_ms,
        large_ms_per_block: large_ms,
        large_build_seconds,
        ratio: large_ms / small_ms.max(f64::MIN_POSITIVE),
    })
}
