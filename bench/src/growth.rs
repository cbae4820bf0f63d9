//! `infer-node bench growth`: whether a node slows down as its chains grow. The cost of
//! connecting a ledger block, with everything a node does then (the inference chain
//! reads it, the producer commits, wins the tenure and produces, runs and accepts its
//! inference block), measured after a short history and after a long one, in one run:
//! `ratio` = cost per block after `large` ledger blocks over the cost after `small`
//! (1.0: flat).
//!
//! Each history is built on RocksDB in a temporary directory, on regtest: the ledger's
//! testkit mines the first 150 blocks (paying the producer's key: its coins for commits),
//! then the node's chain state (`ChainState`) connects the rest one by one, mined by
//! another key, as on a network where the producer is one node of many: its producer
//! registers, then commits in every block and wins every tenure, so that the inference
//! chain grows with the ledger (one inference block per ledger block, less the few of
//! registration). Then `measured` more blocks, each carrying the producer's commit, are
//! timed: only `accept_ledger_block`, not the mining. A run whose measured blocks did not
//! all bring an inference block fails.
//!
//! Both chains must grow in the history: a history of empty ledger blocks read by a fresh
//! inference chain left the contract state's block index short, and hid a walk down the
//! whole of it on every VM call.

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
    /// Inference chain heights when the measured blocks began, after each history.
    pub small_inference_height: u32,
    pub large_inference_height: u32,
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

/// What one history measured.
struct Measured {
    ms_per_block: f64,
    build_seconds: f64,
    inference_height: u32,
}

/// Builds a history of `history` ledger blocks in `dir`, then measures `measured` more.
fn per_block_ms(dir: &Path, history: u32, measured: u32) -> Result<Measured> {
    let key = SecretKey::generate();
    let payout = key.public_key().hash160();
    let built = Instant::now();
    let mut ledger = fai_node::node::open_chain(dir, Network::Regtest)?;
    let now = fai_node::node::unix_now();
    // The producer mines the first blocks (coins for its commits, mature long before the
    // end); other miners the rest.
    let own = history.min(OWN_BLOCKS);
    testkit::extend(&mut ledger, own, payout, now)?;
    let others = SecretKey::generate().public_key().hash160();
    // The model the producer registers for: fai-tiny, approved from the start on regtest.
    let tiny = fai_node::models::fai_tiny_id(dir)?;
    let chain = fai_node::inference::open(dir, Network::Regtest, &ledger, tiny, Vec::new())?;
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
    // The rest of the history through the node: the inference chain grows with it.
    // At least 50 blocks (`--small` is at least 200): the producer registers and wins.
    for _ in 0..history.saturating_sub(own) {
        connect_next(&mut state, others)?;
    }
    let build_seconds = built.elapsed().as_secs_f64();
    let before = inference_height(&state);
    ensure!(
        before > 0,
        "the producer produced nothing in the history's {} blocks after its coins",
        history.saturating_sub(own)
    );
    let mut seconds = 0.0;
    for _ in 0..measured {
        seconds += connect_next(&mut state, others)?;
    }
    let produced = inference_height(&state).saturating_sub(before);
    ensure!(
        produced == measured,
        "{produced} inference blocks in {measured} measured ledger blocks: the producer must win each"
    );
    Ok(Measured {
        ms_per_block: seconds * 1e3 / f64::from(measured.max(1)),
        build_seconds,
        inference_height: before,
    })
}

pub fn growth(small: u32, large: u32, measured: u32) -> Result<GrowthReport> {
    ensure!(
        (200..=large).contains(&small),
        "--small must be at least 200 and at most --large"
    );
    let small_dir = tempfile::tempdir()?;
    let short = per_block_ms(small_dir.path(), small, measured).context("the short history")?;
    drop(small_dir);
    let large_dir = tempfile::tempdir()?;
    let long = per_block_ms(large_dir.path(), large, measured).context("the long history")?;
    Ok(GrowthReport {
        small_history: small,
        large_history: large,
        measured_blocks: measured,
        small_inference_height: short.inference_height,
        large_inference_height: long.inference_height,
        small_ms_per_block: short.ms_per_block,
        large_ms_per_block: long.ms_per_block,
        large_build_seconds: long.build_seconds,
        ratio: long.ms_per_block / short.ms_per_block.max(f64::MIN_POSITIVE),
    })
}
