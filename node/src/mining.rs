//! The mining service: builds a template on the tip, searches it on N threads, submits
//! what it finds, and starts over when the tip changes, the template is 10 seconds old
//! (new transactions, a fresher time) or the node shuts down.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use fai_ledger::miner::{solve, BlockTemplate};
use fai_primitives::Hash160;
use tracing::{debug, warn};

use fai_primitives::Encode;

use crate::node::{unix_now, Node};
use crate::p2p::Topic;

/// How long a template is searched before it is rebuilt.
const TEMPLATE_LIFETIME: Duration = Duration::from_secs(10);

/// Mines until the node shuts down, resting `pause` after each block found. Errors only
/// when the chain cannot be read or written.
pub fn run(node: &Node, payout: Hash160, threads: usize, pause: Duration) -> Result<()> {
    while !node.shutdown.load(Ordering::SeqCst) {
        let generation = node.tip_generation.load(Ordering::SeqCst);
        let (template, max_future) = {
            let chain = node.chain();
            let mempool = node.mempool();
            let t = BlockTemplate::build(&chain, &mempool, payout, unix_now())?;
            (t, u64::from(chain.params().max_future_block_time))
        };
        // Blocks come faster than the clock (regtest): the median time past has run ahead,
        // and a block stamped later than the allowed drift would be refused. Wait for it.
        if u64::from(template.block.header.time) > unix_now().saturating_add(max_future) {
            debug!(target: "infer_node::miner", "block time ahead of the clock; waiting");
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let started = Instant::now();
        let stop = || {
            node.shutdown.load(Ordering::Relaxed)
                || node.tip_generation.load(Ordering::Relaxed) != generation
                || started.elapsed() > TEMPLATE_LIFETIME
        };
        let Some(block) = solve(&template, threads, &stop) else {
            continue;
        };
        let encoded = block.to_bytes();
        let mut chain = node.chain();
        let result = chain.accept_block(block, unix_now());
        // Gossip the block before reacting to it, so that peers have it before anything
        // anchored in it (this node's tenure block).
        if result.is_ok() {
            node.publish(Topic::LedgerBlock, encoded);
        }
        let events = chain.take_events();
        node.on_chain_events(&chain, &events);
        drop(chain);
        match result {
            Ok(_) => {
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
            Err(e) if e.consensus().is_some() => {
                warn!(target: "infer_node::miner", "mined block refused: {e}")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
