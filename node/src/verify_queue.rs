//! The queue between the chain task, which offers the verifier every inference block
//! whose verifier set holds the node key, and the verifier thread
//! (`crate::verify_service`), which replays them and votes. Bounded: when the verifier
//! cannot keep up, a block offered to a full queue is not voted on. The backlog is
//! counted in blocks and in estimated replay time (`crate::replay_cost`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use fai_inference_chain::block::InferenceBlock;
use fai_primitives::{Hash160, Hash256};
use tracing::warn;

/// Blocks waiting to be replayed.
const QUEUE: usize = 64;

/// Hands blocks to the verifier thread.
#[derive(Clone)]
pub struct VerifierHandle {
    queue: SyncSender<Offered>,
    /// Blocks offered and not yet voted on (queued or being replayed).
    backlog: Arc<AtomicUsize>,
    /// Their estimated replay time, in microseconds.
    backlog_work: Arc<AtomicU64>,
    /// The verifier's address (who the set must name).
    pub address: Hash160,
    /// What the verifier has done, for `/metrics`.
    pub stats: Arc<VerifierStats>,
}

/// A block offered for a vote, with its estimated replay time in microseconds.
pub struct Offered {
    pub id: Hash256,
    pub block: InferenceBlock,
    pub work: u64,
}

/// Counters of the verifier's work since the node started.
#[derive(Debug, Default)]
pub struct VerifierStats {
    /// Inferences judged (replayed, or refused before replay).
    pub inferences: AtomicU64,
    /// Microseconds spent judging them.
    pub micros: AtomicU64,
    /// Blocks offered to a full queue, or whose commit phase ended before their turn:
    /// never voted on.
    pub dropped_blocks: AtomicU64,
}

impl VerifierStats {
    /// `n` inferences judged in `took`.
    pub fn note_replayed(&self, n: usize, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.inferences
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }
}

impl VerifierHandle {
    /// Queues `block`, whose replay should take `work` microseconds, for a vote; false
    /// if the queue is full.
    pub fn offer(&self, id: Hash256, block: InferenceBlock, work: u64) -> bool {
        self.backlog.fetch_add(1, Ordering::SeqCst);
        self.backlog_work.fetch_add(work, Ordering::SeqCst);
        let taken = match self.queue.try_send(Offered { id, block, work }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!(target: "infer_node::verifier", block = %id, "verifier queue full: block not voted on");
                self.stats.dropped_blocks.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if !taken {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            self.backlog_work.fetch_sub(work, Ordering::SeqCst);
        }
        taken
    }

    /// Blocks offered and not yet voted on.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
    }

    /// The estimated replay time of the blocks offered and not yet voted on, in
    /// microseconds.
    pub fn backlog_work(&self) -> u64 {
        self.backlog_work.load(Ordering::SeqCst)
    }
}

/// A queue for the verifier of `address`: the handle that offers blocks, and the end
/// the verifier thread takes them from.
pub fn queue(address: Hash160) -> (VerifierHandle, Receiver<Offered>) {
    let (tx, rx) = sync_channel(QUEUE);
    (
        VerifierHandle {
            queue: tx,
            backlog: Arc::new(AtomicUsize::new(0)),
            backlog_work: Arc::new(AtomicU64::new(0)),
            address,
            stats: Arc::default(),
        },
        rx,
    )
}

impl VerifierHandle {
    /// The count of blocks offered and not yet voted on, and their work, which the
    /// verifier takes down.
    pub(crate) fn backlog_counters(&self) -> (Arc<AtomicUsize>, Arc<AtomicU64>) {
        (self.backlog.clone(), self.backlog_work.clone())
    }
}
