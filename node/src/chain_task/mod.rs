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
//! Between commands it runs the producer's timer (a commit waiting for a tenure block),
//! which reads the node's clock. It is a thread rather than
//! a tokio task because its commands are heavy (validating blocks, running the Clarity
//! VM): they must stall neither the network loop nor the RPC's runtime, which only wait
//! for its answers. Callers on a runtime await [`ChainHandle::call`]; threads use
//! [`ChainHandle::call_blocking`]. A caller hears back once what its command made is out
//! (its gossip queued, its events sent, the snapshot replaced). A command never sends a
//! command and waits (that would wait for itself): refused on the task's thread. A
//! command that panics answers [`Unavailable::Panicked`] and the task goes on.

pub mod early;
mod state;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fai_primitives::{Hash160, Hash256};
use tracing::error;

pub use state::ChainState;

use crate::snapshot::ChainSnapshot;

/// Where the chain task sends what its commands made: the node (its network, the
/// miners' signals, the snapshot readers see).
pub trait Outlets: Send + Sync + 'static {
    /// Gossips `data` on `topic` (when the network runs).
    fn gossip(&self, topic: fai_network::Topic, data: Vec<u8>);
    /// A commit for the tip entered the mempool: miners rebuild their template.
    fn commit_added(&self);
    /// The active tip moved: miners drop their work.
    fn tip_moved(&self);
    /// The state's tips and pool sizes after a command.
    fn publish_snapshot(&self, snapshot: ChainSnapshot);
    /// The task failed on a bug and its state is unknown: the node must stop.
    fn failed(&self);
}

/// Takes one off a count of work in flight when dropped, however the work ends (a panic
/// included), so that `Node::idle` cannot be left waiting on it.
pub(crate) struct CountDown<'a>(pub(crate) &'a AtomicUsize);

impl Drop for CountDown<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often the task runs the producer's timers, at most, and when no command comes.
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
    /// A command and when it was sent (how long it queued is a figure of the load).
    Job(Job, Instant),
    Stop,
}

/// How loaded the task is, counted since it started (read by `/metrics`).
#[derive(Debug, Default)]
pub struct Load {
    /// Commands done.
    commands: AtomicU64,
    /// Nanoseconds commands spent queued before the task took them.
    queued_ns: AtomicU64,
    /// Nanoseconds the task spent running commands and what follows them (the pools
    /// following a reorganisation, the producer's timers, sending out).
    busy_ns: AtomicU64,
    /// The longest a command queued, in nanoseconds.
    longest_queued_ns: AtomicU64,
}

/// A reading of [`Load`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadFigures {
    pub commands: u64,
    pub queued_secs: f64,
    pub busy_secs: f64,
    pub longest_queued_secs: f64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Load {
    fn note(&self, queued: Duration, busy: Duration) {
        self.commands.fetch_add(1, Ordering::Relaxed);
        self.queued_ns.fetch_add(nanos(queued), Ordering::Relaxed);
        self.busy_ns.fetch_add(nanos(busy), Ordering::Relaxed);
        self.longest_queued_ns
            .fetch_max(nanos(queued), Ordering::Relaxed);
    }

    fn note_idle_tick(&self, busy: Duration) {
        self.busy_ns.fetch_add(nanos(busy), Ordering::Relaxed);
    }

    fn read(&self) -> LoadFigures {
        let secs = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed)).as_secs_f64();
        LoadFigures {
            commands: self.commands.load(Ordering::Relaxed),
            queued_secs: secs(&self.queued_ns),
            busy_secs: secs(&self.busy_ns),
            longest_queued_secs: secs(&self.longest_queued_ns),
        }
    }
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
    /// Commands taken before the queued ones: short reads of the network loop's sync
    /// bookkeeping, votes (behind a queue of blocks and results to check under load,
    /// they would miss the blocks that could carry them).
    urgent: Sender<Message>,
    /// Commands sent and not yet done (their effects out).
    pending: Arc<AtomicUsize>,
    load: Arc<Load>,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
}

impl ChainHandle {
    fn send_to(&self, lane: &Sender<Message>, job: Job) -> Result<(), Unavailable> {
        // Sent from now on: a command counted as pending has its clock running.
        let sent = Instant::now();
        self.pending.fetch_add(1, Ordering::SeqCst);
        lane.send(Message::Job(job, sent)).map_err(|_| {
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
        self.send_to(&self.jobs, Self::then_job(f))
    }

    /// [`ChainHandle::run_then`] ahead of the queued commands: for small commands whose
    /// lateness costs the network (votes, which the next blocks should carry).
    pub fn run_then_urgent<A: FnOnce() + Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainState) -> A + Send + 'static,
    ) -> Result<(), Unavailable> {
        self.send_to(&self.urgent, Self::then_job(f))
    }

    /// [`ChainHandle::run`] ahead of the queued commands.
    pub fn run_urgent(
        &self,
        f: impl FnOnce(&mut ChainState) + Send + 'static,
    ) -> Result<(), Unavailable> {
        self.run_then_urgent(move |s| {
            f(s);
            || {}
        })
    }

    fn then_job<A: FnOnce() + Send + 'static>(
        f: impl FnOnce(&mut ChainState) -> A + Send + 'static,
    ) -> Job {
        Box::new(move |s| match guarded(|| f(s)) {
            Ok(after) => Box::new(after) as Reply,
            Err(_) => Box::new(|| {}),
        })
    }

    /// Commands sent and not yet done.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// How loaded the task has been since it started.
    pub fn load(&self) -> LoadFigures {
        self.load.read()
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
    load: Arc<Load>,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
}

/// A handle and the task it will command, before the task runs (services that send
/// commands can be built first).
pub fn channel_pair() -> (ChainHandle, ChainTask) {
    let (tx, rx) = channel();
    let (urgent_tx, urgent_rx) = channel();
    let pending = Arc::new(AtomicUsize::new(0));
    let load = Arc::new(Load::default());
    let (events, _) = tokio::sync::broadcast::channel(EVENTS);
    (
        ChainHandle {
            jobs: tx.clone(),
            urgent: urgent_tx,
            pending: pending.clone(),
            load: load.clone(),
            events: events.clone(),
        },
        ChainTask {
            jobs: rx,
            urgent: urgent_rx,
            stop: tx,
            pending,
            load,
            events,
        },
    )
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
    /// through `outlets`.
    pub fn start(self, state: ChainState, outlets: Arc<dyn Outlets>) -> std::io::Result<Running> {
        let stop = self.stop.clone();
        let thread = std::thread::Builder::new()
            .name("chain".into())
            .spawn(move || self.run(state, &*outlets))?;
        Ok(Running {
            stop,
            thread: Some(thread),
        })
    }

    fn run(self, mut state: ChainState, node: &dyn Outlets) -> ChainState {
        ON_TASK.with(|t| t.set(true));
        // When the producer's timers last ran (on the machine's clock: how often they
        // are looked at; what they decide reads the node's clock).
        let mut ticked = Instant::now();
        // The state as it starts: the canonical index built, the snapshot out.
        self.after_command(&mut state, node, &mut ticked);
        loop {
            // Urgent reads first, then the queue; the producer's timers between.
            let message = match self.urgent.try_recv() {
                Ok(m) => Ok(m),
                Err(_) => self.jobs.recv_timeout(TICK),
            };
            match message {
                Ok(Message::Job(job, sent)) => {
                    let started = Instant::now();
                    let reply = job(&mut state);
                    self.after_command(&mut state, node, &mut ticked);
                    self.load
                        .note(started.saturating_duration_since(sent), started.elapsed());
                    self.pending.fetch_sub(1, Ordering::SeqCst);
                    // The caller hears once the command's effects are out.
                    reply();
                }
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return state,
                Err(RecvTimeoutError::Timeout) => {
                    let started = Instant::now();
                    self.after_command(&mut state, node, &mut ticked);
                    self.load.note_idle_tick(started.elapsed());
                }
            }
        }
    }

    /// The pools follow a reorganisation, the producer's timers run, then what the
    /// command and they made goes out. A panic here is a bug that leaves the state
    /// unknown: the node stops.
    fn after_command(&self, state: &mut ChainState, node: &dyn Outlets, ticked: &mut Instant) {
        let done = guarded(|| {
            state.follow_canonical_tip();
            // Every TICK at most: not after each of hundreds of commands a second.
            if state.producer.is_some() && ticked.elapsed() >= TICK {
                *ticked = Instant::now();
                state.producer_tick();
            }
            send_out(state, node, &self.events);
        });
        if done.is_err() {
            error!(target: "infer_node", "the chain task failed after a command: stopping the node");
            node.failed();
        }
    }
}

/// Gossips, broadcasts and notes what the last command made.
fn send_out(
    state: &mut ChainState,
    node: &dyn Outlets,
    events: &tokio::sync::broadcast::Sender<NodeEvent>,
) {
    let out = state.take_outgoing();
    if out.commit_added {
        node.commit_added();
    }
    for (topic, data) in out.gossip {
        node.gossip(topic, data);
    }
    for event in out.events {
        // Nobody listening is fine.
        let _ = events.send(event);
    }
    node.publish_snapshot(state.snapshot());
    // Last: a miner that sees the new tip finds the commits for it in the mempool.
    if out.tip_moved {
        node.tip_moved();
    }
}
