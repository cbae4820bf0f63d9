//! The verifier role: every inference block accepted while the node key is in the block's
//! verifier set is replayed here, on a thread of its own (the engine's forward passes
//! must not hold up the chain or the network). The node's signed commitment to its vote
//! goes into the vote pool and out on the vote topic at once; the vote itself is held by
//! the chain task until the voted block's commit phase is over on the canonical branch
//! (decision 0004). The blocks of the voted block's vote window carry both. A block's inferences on one model are replayed together, in batched
//! forward passes; what was replayed and how long it took is counted for `/metrics`.
//! Text that did not come with the block is asked of the nodes that served it while the
//! verifier waits; what never comes is abstained on.
//!
//! The queue is bounded: when the node cannot keep up, the newest blocks are not voted on,
//! and a block whose commit phase ended before its turn is skipped (a vote on it could not
//! count); without a quorum, their inferences are refunded.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use fai_engine::LoadedModel;
use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::payloads::PayloadStore;
use fai_inference_chain::quorum::{Verdict, Vote, VoteCommit};
use fai_primitives::{Hash160, Hash256, SecretKey};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::chain_task::{ChainHandle, CountDown};
use crate::clock::Clock;
use crate::verify_queue::{Offered, VerifierHandle};

/// Takes a block's estimated replay time off the verifier's backlog when its turn ends.
struct WorkDone<'a>(&'a AtomicU64, u64);

impl Drop for WorkDone<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// Where a verifier asks again for the text of a block it lacks (the network).
pub trait TextSource: Send + Sync + 'static {
    /// Asks the peers run by `servers` (the nodes that served the inferences whose text
    /// is missing), or a few others, for the text of `block`'s inferences.
    fn ask_for_text(&self, block: Hash256, servers: Vec<Hash160>);
}

/// What the verifier thread works with besides its key and models.
pub struct Links {
    /// Where its votes go.
    pub chain: ChainHandle,
    /// Where it reads the time (its wait for a block's text).
    pub clock: Arc<dyn Clock>,
    /// It ends when this is cancelled.
    pub shutdown: CancellationToken,
    /// Where it asks for text that did not come with the block.
    pub text: Arc<dyn TextSource>,
    /// `testing.lazy_verifier` (test builds): accept everything without replaying, the
    /// misbehaviour the verifiers' audits catch.
    pub lazy: bool,
    /// Where the time each model's replays took is noted (what the producer's blocks and
    /// the node's admission of requests keep to: `crate::replay_cost`).
    pub costs: Arc<crate::replay_cost::ReplayCosts>,
    /// Where the thread reports that it died (the node stops: a node that serves and
    /// mines on without its verifier would miss every vote, and the blocks queued when
    /// it died would count as waiting replay work for ever, refusing every request).
    pub failed: tokio::sync::mpsc::UnboundedSender<anyhow::Error>,
}

/// Reports the verifier thread's panic when dropped while unwinding.
struct DeathNotice<'a>(&'a tokio::sync::mpsc::UnboundedSender<anyhow::Error>);

impl Drop for DeathNotice<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(anyhow::anyhow!(
                "the verifier thread panicked (its message is in the log above)"
            ));
        }
    }
}

/// Starts the verifier thread; it ends when `links.shutdown` is cancelled.
pub fn start(
    links: Links,
    key: SecretKey,
    models: Vec<Arc<LoadedModel>>,
    payloads: PayloadStore,
) -> std::io::Result<(VerifierHandle, std::thread::JoinHandle<()>)> {
    let address = key.public_key().hash160();
    let (handle, rx) = crate::verify_queue::queue(address);
    let names: Vec<String> = models
        .iter()
        .map(|m| format!("{} ({})", m.name, m.id))
        .collect();
    info!(target: "infer_node::verifier", models = %names.join(", "), "verifier replays inferences on these models");
    let backlog = handle.backlog_counters();
    let stats = handle.stats.clone();
    let thread = std::thread::Builder::new()
        .name("verifier".into())
        .spawn(move || {
            let _notice = DeathNotice(&links.failed);
            if !links.lazy {
                calibrate(&models, &links.costs);
            }
            run(&links, &key, &models, &payloads, rx, &backlog, &stats)
        })?;
    Ok((handle, thread))
}

/// The answers, and their output tokens, that [`calibrate`] replays on each model.
const CALIBRATION_ANSWERS: usize = 8;
const CALIBRATION_TOKENS: usize = 16;

/// Replays a few made-up answers on each model, in one batch as a block's are, and notes
/// the time they took: the first blocks this node builds and the first requests it
/// admits count a measured replay time, not only the prior (`crate::replay_cost`). Run
/// on the verifier's thread before its first block; a model that cannot be replayed so
/// keeps the prior.
pub fn calibrate(models: &[Arc<LoadedModel>], costs: &crate::replay_cost::ReplayCosts) {
    let replay = fai_engine::Replay::default();
    for model in models {
        let mut tokens: Vec<u32> = model
            .tokenizer
            .encode(" a verifier replays the answer it was sent, token after token, and checks each one")
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !model.tokenizer.is_end(*t))
            .collect();
        tokens.truncate(CALIBRATION_TOKENS);
        if tokens.is_empty() {
            continue;
        }
        let request = fai_engine::GenerateRequest {
            system: String::new(),
            context: Vec::new(),
            input: "How long does a replay take?".into(),
            sampling: fai_engine::SamplingParams {
                max_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                temperature: 0.0,
                ..Default::default()
            },
        };
        let batch: Vec<(&fai_engine::GenerateRequest, &[u32])> = (0..CALIBRATION_ANSWERS)
            .map(|_| (&request, tokens.as_slice()))
            .collect();
        let started = std::time::Instant::now();
        let replayed = replay.measure_batch(model, &batch);
        let took = started.elapsed();
        if replayed.iter().all(|r| r.is_ok()) {
            let each = crate::replay_cost::units(u32::try_from(tokens.len()).unwrap_or(u32::MAX));
            let units = each.saturating_mul(CALIBRATION_ANSWERS as u64);
            costs.record_calibration(model.id.0, units, took);
            info!(target: "infer_node::verifier", model = %model.name, us_per_unit = costs.per_unit(&model.id.0).unwrap_or_default(), "replay time measured");
        } else {
            warn!(target: "infer_node::verifier", model = %model.name, "the replay time could not be measured: the first blocks count the prior");
        }
    }
}

/// How long a block's missing text is waited for before this verifier abstains on the
/// inferences without it.
const TEXT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// While text is missing it is asked for (the block's sender was asked when the block
/// arrived, but a block that came by sync, or a sender that did not keep the text, leaves
/// the verifier without it): at once, then every `TEXT_ASK_EVERY`, each time of the next
/// node that served an inference still without it, so that one peer answers per ask.
const TEXT_ASK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits on the node's clock (a test's manual clock ends the wait only when moved),
/// asking for what is missing on the way.
fn wait_for_text(links: &Links, payloads: &PayloadStore, id: Hash256, block: &InferenceBlock) {
    let deadline = links.clock.now() + TEXT_WAIT;
    let mut ask_at = links.clock.now();
    let mut asks = 0usize;
    // The nodes that served the inferences still missing their text (none: all here).
    let missing = || {
        let mut servers: Vec<Hash160> = Vec::new();
        for i in &block.inferences {
            if !payloads.has_answer(&i.stub.txid(), &i.receipt.signing_digest()) {
                let server = i.receipt.node.hash160();
                if !servers.contains(&server) {
                    servers.push(server);
                }
            }
        }
        servers
    };
    loop {
        let mut servers = missing();
        let now = links.clock.now();
        if servers.is_empty() || now >= deadline || links.shutdown.is_cancelled() {
            return;
        }
        if now >= ask_at {
            debug!(target: "infer_node::verifier", block = %id, servers = servers.len(), "text missing: asking for it");
            let turn = asks % servers.len();
            servers.rotate_left(turn);
            links.text.ask_for_text(id, servers);
            asks = asks.saturating_add(1);
            ask_at = now + TEXT_ASK_EVERY;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn run(
    links: &Links,
    key: &SecretKey,
    models: &[Arc<LoadedModel>],
    payloads: &PayloadStore,
    rx: Receiver<Offered>,
    backlog: &(Arc<AtomicUsize>, Arc<AtomicU64>),
    stats: &crate::verify_queue::VerifierStats,
) {
    use std::sync::mpsc::RecvTimeoutError;
    // The texts are sealed to the verifiers: opened with this key, in memory.
    let sealing = &fai_primitives::seal::SealingSecret::derive(key);
    loop {
        if links.shutdown.is_cancelled() {
            return;
        }
        let Offered { id, block, work } =
            match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
        // Off the backlog once voted, or however this block's turn ends.
        let _voted = CountDown(&backlog.0);
        let _judged = WorkDone(&backlog.1, work);
        // Its commit phase is over (this verifier fell behind): a vote could not count,
        // and replaying it would only make the next blocks late too.
        if links
            .chain
            .read_now(move |s| s.commit_phase_over(&id))
            .unwrap_or(false)
        {
            warn!(target: "infer_node::verifier", block = %id, "block skipped: its commit phase ended before its turn");
            stats.dropped_blocks.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let started = std::time::Instant::now();
        let mut replayed: Vec<crate::verifier::ModelTiming> = Vec::new();
        let judged = if links.lazy {
            block.inferences.iter().map(|_| Ok(())).collect()
        } else {
            wait_for_text(links, payloads, id, &block);
            let texts = crate::verifier::Texts {
                store: payloads,
                me: key.public_key().hash160(),
                secret: sealing,
            };
            let (judged, timings) =
                crate::verifier::batch_verdicts_timed(models, &texts, &block.inferences);
            for t in &timings {
                links.costs.record(t.model, t.units, t.took);
            }
            replayed = timings;
            judged
        };
        stats.note_replayed(block.inferences.len(), started.elapsed());
        let verdicts: Vec<Verdict> = block
            .inferences
            .iter()
            .zip(judged)
            .map(|(inf, judged)| match judged {
                Ok(()) => Verdict::Accept,
                Err(refusal) => {
                    let (txid, node) = (inf.stub.txid(), &inf.receipt.node);
                    if refusal.verdict.rejects() {
                        warn!(target: "infer_node::verifier", %txid, %node, gross = refusal.verdict == Verdict::RejectGross, "inference rejected: {refusal}");
                    } else {
                        warn!(target: "infer_node::verifier", %txid, %node, "abstained on an inference: {refusal}");
                    }
                    refusal.verdict
                }
            })
            .collect();
        let count = |v: Verdict| verdicts.iter().filter(|x| **x == v).count();
        let (accepted, abstained) = (count(Verdict::Accept), count(Verdict::Abstain));
        let vote = Vote::new(key, id, verdicts);
        let commit = VoteCommit::of(key, &vote);
        info!(
            target: "infer_node::verifier",
            block = %id,
            height = block.header.height,
            inferences = block.inferences.len(),
            accepted,
            abstained,
            replay_ms = replayed
                .iter()
                .fold(0.0, |ms, t| ms + t.took.as_secs_f64() * 1e3),
            units = replayed.iter().map(|t| t.units).sum::<u64>(),
            "voted (committed; revealed once the commit phase is over)"
        );
        // On the chain task, ahead of its queue.
        let _ = links
            .chain
            .run_urgent(move |s| s.commit_own_vote(vote, commit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fai_engine::tiny::ensure_fai_tiny;

    /// A verifier thread that panics says so, and the node stops; one that returns
    /// (at shutdown) says nothing.
    #[test]
    fn a_panicking_verifier_thread_stops_the_node() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let died = tx.clone();
        let thread = std::thread::spawn(move || {
            let _notice = DeathNotice(&died);
            panic!("a forward pass failed");
        });
        assert!(thread.join().is_err());
        let report = rx.try_recv().expect("no report of the panic");
        assert!(report.to_string().contains("verifier thread panicked"));
        let returned = std::thread::spawn(move || {
            let _notice = DeathNotice(&tx);
        });
        returned.join().unwrap();
        assert!(
            rx.try_recv().is_err(),
            "a thread that returned was reported"
        );
    }

    /// Before its first block the verifier knows what a replay costs on each model it
    /// holds, so the first block built and the first requests admitted do not count
    /// the prior.
    #[test]
    fn calibration_measures_every_model_before_the_first_block() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = fai_engine::DeviceChoice::Cpu.open().unwrap();
        let model =
            Arc::new(LoadedModel::load(&ensure_fai_tiny(dir.path()).unwrap(), &cpu).unwrap());
        let costs = crate::replay_cost::ReplayCosts::default();
        assert_eq!(costs.per_unit(&model.id.0), None);
        calibrate(std::slice::from_ref(&model), &costs);
        let rate = costs.per_unit(&model.id.0).expect("measured");
        assert!(rate > 0.0 && rate.is_finite(), "{rate}");
    }
}
