//! The chain task: one thread owns the node's chain state ([`ChainState`]: the ledger
//! chainstate and mempool, the inference chain and its VM, the pools, the producer's and
//! the roles' state). Nobody else holds it, so there is no lock and no lock order: the
//! rest of the node sends commands through a [`ChainHandle`] (import a block, submit a
//! transaction, a vote, a served inference, a query), each run on the task's thread in
//! the order it came, its answer sent back on a oneshot channel. After each command the
//! task
//!
//! - gossips what the command made (blocks produced, commits, votes) through the network,
//! - broadcasts its [`NodeEvent`]s to subscribers ([`ChainHandle::subscribe`]),
//! - replaces the [`crate::snapshot::ChainSnapshot`] that `/v2/info` and `/metrics` read
//!   without asking the task,
//! - tells the miners when the tip moved or a commit for it arrived.
//!
//! Between commands it runs the producer's timers (a tenure waiting for votes, a commit
//! waiting for a tenure block), which read the node's clock. It is a thread rather than
//! a tokio task because its commands are heavy (validating blocks, running the Clarity
//! VM): they must stall neither the network loop nor the RPC's runtime, which only wait
//! for its answers. Callers on a runtime await [`ChainHandle::call`]; threads use
//! [`ChainHandle::call_blocking`]. A caller hears back once what its command made is out
//! (its gossip queued, its events sent, the snapshot replaced). A command never sends a
//! command and waits (that would wait for itself): refused on the task's thread. A
//! command that panics answers [`Unavailable::Panicked`] and the task goes on.

mod state;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use fai_primitives::{Hash160, Hash256};
use tracing::error;

pub use state::ChainState;

use crate::node::Node;

/// How often the task runs the producer's timers when no command comes.
const TICK: Duration = Duration::from_millis(25);

/// Events subscribers may miss before they are told they lagged.
const EVENTS: usize = 1024;

/// What happened on the chains, broadcast after the command that did it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A ledger block joined the active chain.
    LedgerConnected { height: u32, hash: Hash256 },
    /// A ledger block left the active chain (a reorganisation).
    LedgerDisconnected { height: u32, hash: Hash256 },
    /// An inference block was accepted: produced here (`ours`), gossiped or synced.
    InferenceBlockAccepted {
        id: Hash256,
        height: u32,
        inferences: usize,
        ours: bool,
    },
    /// A verifier's vote on an inference block entered the vote pool.
    VoteRecorded { block: Hash256, verifier: Hash160 },
}

/// What runs once a command's effects are out: its answer to the caller.
type Reply = Box<dyn FnOnce() + Send>;

/// A command: a function of the state, run on the task's thread, and what it answers.
type Job = Box<dyn FnOnce(&mut ChainState) -> Reply + Send>;

enum Message {
    Job(Job),
    Stop,
}

/// Why a command got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the node is stopping")]
    Stopped,
    #[error("a command of the chain task cannot wait for another")]
    Reentrant,
    #[error("the command failed on a bug (it panicked; see the log)")]
    Panicked,
}

thread_local! {
    /// Set on the chain task's thread.
    static ON_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the state, a panic caught and logged.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, Unavailable> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
        error!(target: "infer_node", "a chain command panicked; the task goes on");
        Unavailable::Panicked
    })
}

/// Sends commands to the chain task. Cheap to clone.
#[derive(Clone)]
pub struct ChainHandle {
    jobs: Sender<Message>,
    /// Short reads taken before the queued commands (the network loop's sync
    /// bookkeeping, which must not wait behind a queue of blocks to check).
    urgent: Sender<Message>,
    /// Commands sent and not yet done (their effects out).
    pending: Arc<AtomicUsize>,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
}

impl ChainHandle {
    fn send_to(&self, lane: &Sender<Message>, job: Job) -> Result<(), Unavailable> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        lane.send(Message::Job(job)).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            Unavailable::Stopped
        })
    }

    /// A job that answers `f`'s result (or its panic) on `answer` once the command's
    /// effects are out.
    fn job<R: Send + 'static>(
        f: impl FnOnce(&mut ChainState) -> R + Send + 'static,
        answer: impl FnOnce(Result<R, Unavailable>) + Send + 'static,
    ) -> Job {
        Box::new(move |s| {
            let result = guarded(|| f(s));
            Box::new(move || answer(result))
        })
    }

    /// Runs `f` on the task and waits for its answer without blocking the runtime. The
    /// answer comes once what the command made is out (gossip, events, snapshot).
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainState) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send_to(
            &self.jobs,
            Self::job(f, move |r| {
                let _ = tx.send(r);
            }),
        )?;
        rx.await.map_err(|_| Unavailable::Stopped)?
    }

    /// Runs `f` on the task and waits for its answer, blocking this thread (a service
    /// thread or a test; not the runtime's, not the task's own).
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainState) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        self.blocking_on(&self.jobs, f)
    }

    /// [`ChainHandle::call_blocking`] ahead of the queued commands: for short reads of a
    /// caller that must not wait for the queue (it waits for the command under way).
    pub fn read_now<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainState) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        self.blocking_on(&self.urgent, f)
    }

    fn blocking_on<R: Send + 'static>(
        &self,
        lane: &Sender<Message>,
        f: impl FnOnce(&mut ChainState) -> R + Send + 'static,
    ) -> Result<R, Unavailable> {
        if ON_TASK.with(Cell::get) {
            return Err(Unavailable::Reentrant);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send_to(
            lane,
            Self::job(f, move |r| {
                let _ = tx.send(r);
            }),
        )?;
        rx.recv().map_err(|_| Unavailable::Stopped)?
    }

    /// Queues `f` without waiting for it (its effects reach the caller some other way).
    pub fn run(&self, f: impl FnOnce(&mut ChainState) + Send + 'static) -> Result<(), Unavailable> {
        self.run_then(move |s| {
            f(s);
            || {}
        })
    }

    /// Queues `f`; what it returns runs once the command's effects are out (a verdict
    /// or an answer sent on, a count of work taken down), even if `f` panicked (then
    /// nothing runs but the panic is logged).
    pub fn run_then<A: FnOnce() + Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainState) -> A + Send + 'static,
    ) -> Result<(), Unavailable> {
        self.send_to(
            &self.jobs,
            Box::new(move |s| match guarded(|| f(s)) {
                Ok(after) => Box::new(after) as Reply,
                Err(_) => Box::new(|| {}),
            }),
        )
    }

    /// Commands sent and not yet done.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Every [`NodeEvent`] from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }
}

/// The task's side: started with [`start`] once the state is complete.
pub struct ChainTask {
    jobs: Receiver<Message>,
    urgent: Receiver<Message>,
    stop: Sender<Message>,
    pending: Arc<AtomicUsize>,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
}

/// A handle and the task it will command, before the task runs (services that send
/// commands can be built first).
pub fn channel_pair() -> (ChainHandle, ChainTask) {
    let (tx, rx) = channel();
    let (urgent_tx, urgent_rx) = channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let (events, _) = tokio::sync::broadcast::channel(EVENTS);
    (
        ChainHandle {
            jobs: tx.clone(),
            urgent: urgent_tx,
            pending: pending.clone(),
            events: events.clone(),
        },
        ChainTask {
            jobs: rx,
            urgent: urgent_rx,
            stop: tx,
            pending,
            events,
        },
    )
}

/// A node over `state` whose chain task runs, and no other service: for benchmarks and
/// tests that drive one part of a node (the network loop, the RPC) by hand.
pub fn start_bare(state: ChainState) -> std::io::Result<(Arc<Node>, Running)> {
    let (handle, task) = channel_pair();
    let node = Arc::new(Node::new(handle, state.clock.clone()));
    let running = task.start(state, node.clone())?;
    Ok((node, running))
}

/// The running task: [`Running::stop`] ends it after the commands already sent and
/// hands the state back (to close its databases).
pub struct Running {
    stop: Sender<Message>,
    thread: Option<std::thread::JoinHandle<ChainState>>,
}

impl Running {
    /// Ends the task once the commands sent before are done; the state, unless the
    /// thread died.
    pub fn stop(mut self) -> Option<ChainState> {
        let _ = self.stop.send(Message::Stop);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(Message::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ChainTask {
    /// Runs the task on a thread of its own over `state`; what commands make goes out
    /// through `node` (its network, snapshot and miners' signals).
    pub fn start(self, state: ChainState, node: Arc<Node>) -> std::io::Result<Running> {
        let stop = self.stop.clone();
        let thread = std::thread::Builder::new()
            .name("chain".into())
            .spawn(move || self.run(state, &node))?;
        Ok(Running {
            stop,
            thread: Some(thread),
        })
    }

    fn run(self, mut state: ChainState, node: &Node) -> ChainState {
        ON_TASK.with(|t| t.set(true));
        // The snapshot of the state as it starts.
        send_out(&mut state, node, &self.events);
        loop {
            // Urgent reads first, then the queue; the producer's timers between.
            let message = match self.urgent.try_recv() {
                Ok(m) => Ok(m),
                Err(_) => self.jobs.recv_timeout(TICK),
            };
            match message {
                Ok(Message::Job(job)) => {
                    let reply = job(&mut state);
                    self.after_command(&mut state, node);
                    self.pending.fetch_sub(1, Ordering::SeqCst);
                    // The caller hears once the command's effects are out.
                    reply();
                }
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return state,
                Err(RecvTimeoutError::Timeout) => self.after_command(&mut state, node),
            }
        }
    }

    /// The producer's timers, then what the command and they made goes out. A panic here
    /// is a bug that leaves the state unknown: the node stops.
    fn after_command(&self, state: &mut ChainState, node: &Node) {
        let done = guarded(|| {
            if state.producer.is_some() {
                state.producer_tick();
            }
            send_out(state, node, &self.events);
        });
        if done.is_err() {
            error!(target: "infer_node", "the chain task failed after a command: stopping the node");
            node.shutdown.cancel();
        }
    }
}

/// Gossips, broadcasts and notes what the last command made.
fn send_out(
    state: &mut ChainState,
    node: &Node,
    events: &tokio::sync::broadcast::Sender<NodeEvent>,
) {
    let out = state.take_outgoing();
    if out.commit_added {
        node.commit_generation.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(p2p) = node.p2p.get() {
        for (topic, data) in out.gossip {
            p2p.publish(topic, data);
        }
    }
    for event in out.events {
        // Nobody listening is fine.
        let _ = events.send(event);
    }
    let snapshot = state.snapshot();
    node.snapshot_sender().send_if_modified(|s| {
        let changed = *s != snapshot;
        *s = snapshot;
        changed
    });
    // Last: a miner that sees the new tip finds the commits for it in the mempool.
    if out.tip_moved {
        node.tip_generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fai_ledger::mempool::{Mempool, MempoolConfig};
    use fai_ledger::ChainParams;
    use fai_primitives::{Hash160, Network};
    use fai_storage::MemoryStore;

    use super::*;
    use crate::clock::ManualClock;

    fn bare_node() -> (Arc<Node>, Running, Arc<ManualClock>) {
        let store = Arc::new(MemoryStore::open(fai_ledger::chainstate::SCHEMA).unwrap());
        let ledger =
            fai_ledger::Chainstate::open(store, ChainParams::for_network(Network::Regtest))
                .unwrap();
        let mempool = Mempool::new(MempoolConfig {
            max_bytes: 1 << 20,
            min_fee_rate: 1_000,
        });
        let clock = Arc::new(ManualClock::new(1_900_000_000));
        let (node, running) = start_bare(ChainState::new(ledger, mempool, clock.clone())).unwrap();
        (node, running, clock)
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
            mined.push(crate::mining::mine_one(&node, Hash160([1; 20])).unwrap());
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

    /// Subscribers hear of each block connected, after the command that connected it.
    #[test]
    fn subscribers_hear_of_every_block_connected() {
        let (node, _running, clock) = bare_node();
        let mut events = node.chain.subscribe();
        let mut mined = Vec::new();
        for _ in 0..2 {
            clock.advance(Duration::from_secs(1));
            mined.push(crate::mining::mine_one(&node, Hash160([2; 20])).unwrap());
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

    /// A command that waits for another would wait for itself: refused, not a hang.
    #[test]
    fn a_command_cannot_wait_for_another() {
        let (node, _running, _) = bare_node();
        let handle = node.chain.clone();
        let inner = node
            .chain
            .call_blocking(move |_| handle.call_blocking(|s| s.ledger.height()))
            .unwrap();
        assert_eq!(inner, Err(Unavailable::Reentrant));
    }

    /// A command that panics loses its answer; the task goes on with the next.
    #[test]
    fn the_task_survives_a_panicking_command() {
        let (node, _running, _) = bare_node();
        let lost = node
            .chain
            .call_blocking(|_| -> u32 { panic!("a bug in a command") });
        assert_eq!(lost, Err(Unavailable::Panicked));
        assert_eq!(node.chain.call_blocking(|s| s.ledger.height()), Ok(0));
        assert_eq!(
            node.chain.pending(),
            0,
            "answers come after the count is down"
        );
        assert!(
            !node.shutdown.is_cancelled(),
            "a failed command does not stop the node"
        );
    }

    /// After stop, commands are refused instead of waiting forever.
    #[test]
    fn a_stopped_task_refuses_commands() {
        let (node, running, _) = bare_node();
        assert!(running.stop().is_some());
        assert_eq!(
            node.chain.call_blocking(|s| s.ledger.height()),
            Err(Unavailable::Stopped)
        );
    }
}
