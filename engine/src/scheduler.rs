//! The scheduler: a bounded queue in front of worker threads that share one loaded model,
//! each decoding a batch of requests together (continuous batching).
//!
//! A worker keeps up to `max_batch` sequences active and advances all of them with one
//! forward pass per step ([`crate::model::Llama::forward_batch`]): the weights are read
//! once per step for the whole batch instead of once per request. Sequences join between
//! steps (their prompt runs in the same pass as the others' next token) and leave as soon
//! as they end, so a short request never waits for a long one. On the CPU every request
//! gets exactly the tokens it would get alone.
//!
//! `submit` never blocks and never lets the queue grow: when it is full the answer is
//! [`EngineError::Busy`], which the RPC turns into "busy, try another node". Each job
//! streams [`Event`]s through its own channel, read either from async code
//! ([`Job::next`], or the job as a `Stream`: what the RPC's event stream reads) or from a plain
//! thread ([`Job::wait`]). The work runs on the scheduler's threads, never on an async
//! runtime. A job is cancelled by [`Job::cancel`] or by dropping it (a client that hangs
//! up stops its generation after the current token).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::{EngineError, Result};
use crate::generate::{last_row, FinishReason, GenerateRequest, Generation, Sequence};
use crate::gguf::LoadedModel;

/// What a job reports, in order: text pieces, then one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Done(Generation),
    Failed(String),
}

struct Task {
    request: GenerateRequest,
    cancel: Arc<AtomicBool>,
    events: UnboundedSender<Event>,
}

/// A submitted request. Its events are bounded by the request's `max_tokens`.
pub struct Job {
    events: UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl Job {
    /// Asks the worker to stop after the current token.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The next event, from async code; `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the end on this thread (never call it from async code) and returns the
    /// streamed text and the final result.
    pub fn wait(mut self) -> (String, Result<Generation, String>) {
        let mut text = String::new();
        while let Some(event) = self.events.blocking_recv() {
            match event {
                Event::Text(t) => text.push_str(&t),
                Event::Done(g) => return (text, Ok(g)),
                Event::Failed(e) => return (text, Err(e)),
            }
        }
        (text, Err("the worker stopped".into()))
    }
}

/// The events as a stream, for async code (the RPC's server-sent events).
impl futures_core::Stream for Job {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[derive(Debug, Default)]
struct Counters {
    running: AtomicU64,
    finished: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
}

/// What the scheduler has done, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Jobs being generated now.
    pub running: u64,
    /// Jobs that ran to their end (length, stop string, end of text).
    pub finished: u64,
    /// Jobs cancelled, or dropped by their owner, before their end.
    pub cancelled: u64,
    /// Jobs that failed with an error.
    pub failed: u64,
}

/// Worker threads over one shared model.
pub struct Scheduler {
    queue: Option<SyncSender<Task>>,
    capacity: usize,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<Counters>,
}

/// Sequences a worker decodes together by default.
pub const DEFAULT_MAX_BATCH: usize = 16;

impl Scheduler {
    /// Starts `workers` threads behind a queue of `capacity` waiting requests, each
    /// decoding up to [`DEFAULT_MAX_BATCH`] requests together.
    pub fn start(model: Arc<LoadedModel>, workers: usize, capacity: usize) -> Self {
        Self::start_batched(model, workers, capacity, DEFAULT_MAX_BATCH)
    }

    /// Starts `workers` threads behind a queue of `capacity` waiting requests, each
    /// decoding up to `max_batch` requests together (1 decodes one at a time).
    pub fn start_batched(
        model: Arc<LoadedModel>,
        workers: usize,
        capacity: usize,
        max_batch: usize,
    ) -> Self {
        let (queue, receiver) = mpsc::sync_channel::<Task>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let stats = Arc::new(Counters::default());
        let max_batch = max_batch.max(1);
        let workers = (0..workers.max(1))
            .map(|i| {
                let model = model.clone();
                let receiver = receiver.clone();
                let stats = stats.clone();
                std::thread::Builder::new()
                    .name(format!("engine-{i}"))
                    .spawn(move || worker(&model, &receiver, &stats, max_batch))
                    .map_err(|e| tracing::error!(target: "infer_node::engine", "cannot start a worker: {e}"))
            })
            .filter_map(|r| r.ok())
            .collect();
        Scheduler {
            queue: Some(queue),
            capacity,
            workers,
            stats,
        }
    }

    /// Counts of jobs by outcome.
    pub fn stats(&self) -> SchedulerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SchedulerStats {
            running: get(&self.stats.running),
            finished: get(&self.stats.finished),
            cancelled: get(&self.stats.cancelled),
            failed: get(&self.stats.failed),
        }
    }

    /// Queues `request`, or answers [`EngineError::Busy`] at once when the queue is full.
    pub fn submit(&self, request: GenerateRequest) -> Result<Job> {
        request.sampling.validate()?;
        let (events, receiver) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let task = Task {
            request,
            cancel: cancel.clone(),
            events,
        };
        let queue = self
            .queue
            .as_ref()
            .ok_or(EngineError::Busy { capacity: 0 })?;
        match queue.try_send(task) {
            Ok(()) => Ok(Job {
                events: receiver,
                cancel,
            }),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Err(EngineError::Busy {
                    capacity: self.capacity,
                })
            }
        }
    }
}

/// A request a worker is decoding.
struct Active {
    seq: Sequence,
    cancel: Arc<AtomicBool>,
    events: UnboundedSender<Event>,
}

/// Where a worker takes its next request from.
enum Admit {
    Task(Task),
    /// Nothing waiting now.
    Empty,
    /// The scheduler is gone and the queue is drained.
    Closed,
}

/// The next waiting request: waits for one when `block`, else takes one only if it is
/// there and the queue is not held by a waiting worker.
fn next_task(receiver: &Mutex<Receiver<Task>>, block: bool) -> Admit {
    let guard = if block {
        receiver.lock().unwrap_or_else(|e| e.into_inner())
    } else {
        match receiver.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Admit::Empty,
        }
    };
    let got = if block {
        guard.recv().map_err(|_| TryRecvError::Disconnected)
    } else {
        guard.try_recv()
    };
    match got {
        Ok(t) => Admit::Task(t),
        Err(TryRecvError::Empty) => Admit::Empty,
        Err(TryRecvError::Disconnected) => Admit::Closed,
    }
}

fn worker(
    model: &LoadedModel,
    receiver: &Mutex<Receiver<Task>>,
    stats: &Counters,
    max_batch: usize,
) {
    let mut active: Vec<Active> = Vec::new();
    let mut closed = false;
    loop {
        // Admit waiting requests between steps; wait for one only when idle.
        while !closed && active.len() < max_batch {
            let task = match next_task(receiver, active.is_empty()) {
                Admit::Task(t) => t,
                Admit::Empty => break,
                Admit::Closed => {
                    closed = true;
                    break;
                }
            };
            // Skip a job whose owner has gone while it waited.
            if task.events.is_closed() {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match Sequence::start(model, &task.request) {
                Ok(seq) => {
                    stats.running.fetch_add(1, Ordering::Relaxed);
                    active.push(Active {
                        seq,
                        cancel: task.cancel,
                        events: task.events,
                    });
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = task.events.send(Event::Failed(e.to_string()));
                }
            }
        }
        if active.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        for a in active.iter_mut() {
            if a.cancel.load(Ordering::Relaxed) || a.events.is_closed() {
                a.seq.cancel();
            }
        }
        step(model, &mut active);
        // Sequences that ended leave the batch.
        let mut i = 0;
        while i < active.len() {
            if active.get(i).is_some_and(|a| a.seq.is_finished()) {
                let a = active.swap_remove(i);
                finish(a, stats);
            } else {
                i += 1;
            }
        }
    }
}

/// One forward pass over every unfinished sequence, and the next token of each. A pass
/// that fails ends every sequence in it with the error.
fn step(model: &LoadedModel, active: &mut [Active]) {
    let mut running: Vec<&mut Active> =
        active.iter_mut().filter(|a| !a.seq.is_finished()).collect();
    if running.is_empty() {
        return;
    }
    let result = {
        let mut items: Vec<_> = running.iter_mut().map(|a| a.seq.batch_item()).collect();
        model.model.forward_batch(&mut items)
    };
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            let message = e.to_string();
            for a in running {
                let _ = a.events.send(Event::Failed(message.clone()));
                a.seq.fail();
            }
            return;
        }
    };
    for (a, logits) in running.into_iter().zip(rows) {
        match last_row(&logits) {
            Ok(row) => {
                let piece = a.seq.advance(model, &row);
                if !piece.is_empty() && a.events.send(Event::Text(piece)).is_err() {
                    a.cancel.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                let _ = a.events.send(Event::Failed(e.to_string()));
                a.seq.fail();
            }
        }
    }
}

/// Reports the end of a sequence that left the batch.
fn finish(a: Active, stats: &Counters) {
    stats.running.fetch_sub(1, Ordering::Relaxed);
    if a.seq.has_failed() {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (generation, tail) = a.seq.finish();
    if !tail.is_empty() {
        let _ = a.events.send(Event::Text(tail));
    }
    let counter = if generation.finish == FinishReason::Cancelled {
        &stats.cancelled
    } else {
        &stats.finished
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let _ = a.events.send(Event::Done(generation));
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.queue = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
