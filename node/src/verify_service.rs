//! The verifier role: every inference block accepted while the node key is in the block's
//! verifier set is replayed here, on a thread of its own (the engine's forward passes
//! must not hold up the chain or the network), and the node's signed vote goes into the
//! vote pool and out on the vote topic. The child block carries the votes.
//!
//! The queue is bounded: when the node cannot keep up, the oldest blocks are not voted on
//! (their inferences are refunded, as for any block without a quorum).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use fai_engine::LoadedModel;
use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::payloads::PayloadStore;
use fai_inference_chain::quorum::Vote;
use fai_primitives::{Encode, Hash256, SecretKey};
use tracing::{info, warn};

use crate::node::Node;
use crate::p2p::Topic;

/// Blocks waiting to be replayed.
const QUEUE: usize = 64;

/// Hands blocks to the verifier thread.
#[derive(Clone)]
pub struct VerifierHandle {
    queue: SyncSender<(Hash256, InferenceBlock)>,
    /// Blocks offered and not yet voted on (queued or being replayed).
    backlog: Arc<AtomicUsize>,
    /// The verifier's address (who the set must name).
    pub address: fai_primitives::Hash160,
}

impl VerifierHandle {
    /// Queues `block` for a vote; false if the queue is full.
    pub fn offer(&self, id: Hash256, block: InferenceBlock) -> bool {
        self.backlog.fetch_add(1, Ordering::SeqCst);
        let taken = match self.queue.try_send((id, block)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!(target: "infer_node::verifier", block = %id, "verifier queue full: block not voted on");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if !taken {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
        }
        taken
    }

    /// Blocks offered and not yet voted on.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
    }
}

/// Starts the verifier thread; it ends when the node's `shutdown` token is cancelled.
pub fn start(
    node: Arc<Node>,
    key: SecretKey,
    models: Vec<Arc<LoadedModel>>,
    payloads: PayloadStore,
) -> std::io::Result<(VerifierHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE);
    let address = key.public_key().hash160();
    let names: Vec<String> = models
        .iter()
        .map(|m| format!("{} ({})", m.name, m.id))
        .collect();
    info!(target: "infer_node::verifier", models = %names.join(", "), "verifier replays inferences on these models");
    let backlog = Arc::new(AtomicUsize::new(0));
    let done = backlog.clone();
    let thread = std::thread::Builder::new()
        .name("verifier".into())
        .spawn(move || run(&node, &key, &models, &payloads, rx, &done))?;
    Ok((
        VerifierHandle {
            queue: tx,
            backlog,
            address,
        },
        thread,
    ))
}

/// How long a block's missing text is waited for (fetched from the peer that sent the
/// block) before the inferences without it are rejected.
const TEXT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits on the node's clock (a test's manual clock ends the wait only when moved).
fn wait_for_text(node: &Node, payloads: &PayloadStore, block: &InferenceBlock) {
    let deadline = node.clock.now() + TEXT_WAIT;
    let missing = || {
        block
            .inferences
            .iter()
            .any(|i| !matches!(payloads.prompt(&i.stub.txid()), Ok(Some(_))))
    };
    while missing() && node.clock.now() < deadline && !node.shutdown.is_cancelled() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn run(
    node: &Node,
    key: &SecretKey,
    models: &[Arc<LoadedModel>],
    payloads: &PayloadStore,
    rx: Receiver<(Hash256, InferenceBlock)>,
    backlog: &AtomicUsize,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        if node.shutdown.is_cancelled() {
            return;
        }
        let (id, block) = match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Off the backlog once voted, or however this block's turn ends.
        let _voted = crate::node::CountDown(backlog);
        wait_for_text(node, payloads, &block);
        let verdicts: Vec<bool> = block
            .inferences
            .iter()
            .map(|inf| match crate::verifier::verdict_among(models, payloads, inf) {
                Ok(()) => true,
                Err(why) => {
                    warn!(target: "infer_node::verifier", txid = %inf.stub.txid(), node = %inf.receipt.node, "inference rejected: {why}");
                    false
                }
            })
            .collect();
        let accepted = verdicts.iter().filter(|v| **v).count();
        let vote = Vote::new(key, id, verdicts);
        info!(
            target: "infer_node::verifier",
            block = %id,
            height = block.header.height,
            inferences = block.inferences.len(),
            accepted,
            "voted"
        );
        let bytes = vote.to_bytes();
        let verifier = vote.verifier.hash160();
        // Into the pool and out on the vote topic, on the chain task.
        let _ = node.chain.run(move |s| {
            if s.votes.add(vote) {
                s.after_vote(id, verifier);
            }
            s.publish(Topic::Vote, bytes);
        });
    }
}
