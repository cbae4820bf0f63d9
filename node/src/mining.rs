//! The mining service: builds a template on the tip, searches it on N threads, submits
//! what it finds, and starts over when the tip changes, a commit for the tip arrives
//! after it (the sortition should see every bid), the template is 10 seconds old (new
//! transactions, a fresher time) or the node shuts down.
//!
//! Paced (`mining.block_interval_ms`, for regtest, whose blocks take a few hashes): on
//! each tip the miner first waits a random time drawn from an exponential distribution
//! of that mean, starting again when the tip changes meanwhile, as the search for a
//! real proof of work would take. N paced miners then find blocks like N real ones of
//! equal hash rate: one every mean / N on average, rarely two at once (a fixed pause
//! would have every idle miner answer each block at the same instant, a fork each time),
//! and the template is built after the wait, with what arrived since the tip. A wait
//! that ran out is a block found: commits that come while the block is solved only
//! rebuild its template (before, a commit that came during the wait threw the found
//! block away and drew a new wait: once producers bid at every block, the network made
//! a block every 1.9 s instead of every second).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use fai_ledger::miner::{solve, BlockTemplate};
use fai_primitives::Hash160;
use tracing::{debug, warn};

use crate::node::Node;

/// How long a template is searched before it is rebuilt.
const TEMPLATE_LIFETIME: Duration = Duration::from_secs(10);

/// The longest paced wait, in means: the exponential's tail beyond it is cut.
const MAX_WAIT_MEANS: f64 = 8.0;

/// A wait drawn from the exponential distribution of mean `mean`.
fn paced_wait(mean: Duration) -> Duration {
    // 1 - U lies in (0, 1]: its logarithm is finite.
    let u: f64 = 1.0 - rand::random::<f64>();
    mean.mul_f64((-u.ln()).min(MAX_WAIT_MEANS))
}

/// Sleeps `wait` on the node's clock unless the tip changes or the node stops first;
/// whether it slept it all.
fn rest(node: &Node, generation: u64, wait: Duration) -> bool {
    let until = node.clock.now() + wait;
    loop {
        if node.shutdown.is_cancelled() || node.tip_generation.load(Ordering::Relaxed) != generation
        {
            return false;
        }
        let left = until.saturating_duration_since(node.clock.now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Mines until the node shuts down, each tip after a paced wait of mean `pace` (none when
/// zero). Errors only when the chain cannot be read or written.
pub fn run(node: &Node, payout: Hash160, threads: usize, pace: Duration) -> Result<()> {
    while !node.shutdown.is_cancelled() {
        let generation = node.tip_generation.load(Ordering::SeqCst);
        if !pace.is_zero() && !rest(node, generation, paced_wait(pace)) {
            continue;
        }
        // The search (or the wait that stands for it) goes on over new templates until a
        // block is found or the tip moves.
        while !node.shutdown.is_cancelled()
            && node.tip_generation.load(Ordering::SeqCst) == generation
        {
            let commits = node.commit_generation.load(Ordering::SeqCst);
            let (template, max_future) = template(node, payout)?;
            // Blocks come faster than the clock (regtest): the median time past has run
            // ahead, and a block stamped later than the allowed drift would be refused.
            // Wait for it.
            if u64::from(template.block.header.time)
                > node.clock.unix_now().saturating_add(max_future)
            {
                debug!(target: "infer_node::miner", "block time ahead of the clock; waiting");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            let started = node.clock.now();
            let stop = || {
                node.shutdown.is_cancelled()
                    || node.tip_generation.load(Ordering::Relaxed) != generation
                    || node.commit_generation.load(Ordering::Relaxed) != commits
                    || node.clock.now().saturating_duration_since(started) > TEMPLATE_LIFETIME
            };
            let Some(block) = solve(&template, threads, &stop) else {
                // New commits or an old template: rebuilt; a new tip: the outer loop.
                continue;
            };
            match submit(node, block) {
                Ok(()) => {}
                Err(e) if e.consensus().is_some() => {
                    warn!(target: "infer_node::miner", "mined block refused: {e}")
                }
                Err(e) => return Err(e.into()),
            }
            break;
        }
    }
    Ok(())
}

/// A template on the tip at the clock's time, and how far ahead of the clock a block's
/// time may be; built on the chain task.
fn template(node: &Node, payout: Hash160) -> Result<(BlockTemplate, u64)> {
    let now = node.clock.unix_now();
    node.chain.call_blocking(move |s| {
        let t = BlockTemplate::build(&s.ledger, &s.mempool, payout, now)?;
        Ok((t, u64::from(s.ledger.params().max_future_block_time)))
    })?
}

/// Connects a block this node found on the chain task, which gossips it (before
/// anything anchored in it: this node's tenure block) and runs what a new tip sets off.
fn submit(node: &Node, block: fai_ledger::Block) -> Result<(), fai_ledger::ChainError> {
    match node
        .chain
        .call_blocking(move |s| s.accept_ledger_block(block, true))
    {
        Ok(result) => result.map(|_| ()),
        // Stopping: the block is lost with the rest of the miner's work.
        Err(crate::chain_task::Unavailable::Stopped) => Ok(()),
        Err(e) => Err(fai_ledger::ChainError::Corrupt(format!(
            "the chain task could not take a mined block: {e}"
        ))),
    }
}

/// Mines one block on the tip now, stamped with the node's clock, paying `payout`:
/// mining on demand, for tests on a network whose difficulty is the proof-of-work limit
/// (regtest). Returns the block's hash.
pub fn mine_one(node: &Node, payout: Hash160) -> Result<fai_primitives::Hash256> {
    let (template, max_future) = template(node, payout)?;
    if u64::from(template.block.header.time) > node.clock.unix_now().saturating_add(max_future) {
        anyhow::bail!("the next block's time is ahead of the clock: advance it");
    }
    let block = solve(&template, 1, &|| node.shutdown.is_cancelled())
        .ok_or_else(|| anyhow::anyhow!("the node is stopping"))?;
    let hash = block.hash();
    submit(node, block)?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chain_task::NodeEvent;
    use crate::node::test_node::bare_node;

    #[test]
    fn paced_waits_average_their_mean_and_are_capped() {
        let mean = Duration::from_millis(1_000);
        let draws: Vec<Duration> = (0..20_000).map(|_| paced_wait(mean)).collect();
        let total: Duration = draws.iter().sum();
        let average = total.as_secs_f64() / draws.len() as f64;
        // The standard error of the average is 1/sqrt(20000) of the mean: 0.7%.
        assert!((0.96..1.04).contains(&average), "average wait {average} s");
        assert!(draws.iter().all(|d| *d <= mean.mul_f64(MAX_WAIT_MEANS)));
        // Memoryless, not a fixed pause: short and long waits both occur.
        assert!(draws.iter().any(|d| *d < mean / 10));
        assert!(draws.iter().any(|d| *d > mean * 3));
    }

    /// The snapshot follows the tip, and reading it never waits for the task: it is read
    /// here while a command holds the task.
    #[test]
    fn the_snapshot_follows_the_tip_and_is_read_while_the_task_is_busy() {
        let (node, running, clock) = bare_node();
        let genesis = node.chain.call_blocking(|s| s.ledger.tip_hash()).unwrap();
        assert_eq!(
            (node.snapshot().ledger_height, node.snapshot().ledger_tip),
            (0, genesis)
        );
        let mut mined = Vec::new();
        for _ in 0..3 {
            clock.advance(Duration::from_secs(1));
            mined.push(mine_one(&node, Hash160([1; 20])).unwrap());
        }
        // A command that holds the task until this test lets it go.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, wait_started) = std::sync::mpsc::channel::<()>();
        node.chain
            .run(move |_| {
                let _ = started.send(());
                let _ = hold.recv();
            })
            .unwrap();
        wait_started.recv().unwrap();
        assert_eq!(node.chain.pending(), 1, "the holding command is not done");
        assert!(!node.idle(), "a node with a command under way is not idle");
        let seen = node.snapshot();
        assert_eq!((seen.ledger_height, seen.ledger_tip), (3, mined[2]));
        assert!(seen.supply_units > 0);
        release.send(()).unwrap();
        let supply = node
            .chain
            .call_blocking(|s| s.ledger.supply().units())
            .unwrap();
        assert_eq!(seen.supply_units, supply);
        assert_eq!(
            node.chain.pending(),
            0,
            "answers come after the count is down"
        );
        assert!(node.idle());
        assert!(running.stop().is_some(), "the state comes back on stop");
    }

    /// A paced wait that ran out is a block found, even when commits keep coming: before,
    /// a commit added during the wait threw the found block away and drew a new wait, so
    /// with producers bidding at every block the network made half the blocks it should.
    /// Here commits come every few milliseconds and the clock jumps past the longest wait
    /// again and again: the old loop never mined (each completed wait was discarded), the
    /// new one mines at the first.
    #[test]
    fn a_wait_that_ran_out_is_a_block_found_though_commits_keep_coming() {
        use std::sync::atomic::AtomicBool;
        let (node, _running, clock) = bare_node();
        let done = Arc::new(AtomicBool::new(false));
        let bumper = {
            let (node, done) = (node.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    node.commit_generation.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let pace = Duration::from_secs(10);
        let miner = {
            let node = node.clone();
            std::thread::spawn(move || run(&node, Hash160([4; 20]), 1, pace))
        };
        let mut jumps = 0;
        while node.snapshot().ledger_height == 0 && jumps < 300 {
            clock.advance(pace.mul_f64(MAX_WAIT_MEANS) + Duration::from_secs(1));
            jumps += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        done.store(true, Ordering::Relaxed);
        node.shutdown.cancel();
        bumper.join().unwrap();
        miner.join().unwrap().unwrap();
        assert!(
            node.snapshot().ledger_height >= 1,
            "no block after {jumps} waits ran out"
        );
    }

    /// Subscribers hear of each block connected, after the command that connected it.
    #[test]
    fn subscribers_hear_of_every_block_connected() {
        let (node, _running, clock) = bare_node();
        let mut events = node.chain.subscribe();
        let mut mined = Vec::new();
        for _ in 0..2 {
            clock.advance(Duration::from_secs(1));
            mined.push(mine_one(&node, Hash160([2; 20])).unwrap());
        }
        for (height, hash) in (1u32..).zip(&mined) {
            assert_eq!(
                events.blocking_recv().unwrap(),
                NodeEvent::LedgerConnected {
                    height,
                    hash: *hash
                }
            );
        }
    }
}
