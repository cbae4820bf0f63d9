//! The scheduler: a bounded queue in front of worker threads that share one loaded model.
//!
//! `submit` never blocks and never lets the queue grow: when it is full the answer is
//! [`EngineError::Busy`], which the RPC turns into "busy, try another node". Each job
//! streams [`Event`]s through its own channel, read either from async code
//! ([`Job::next`], or the job as a `Stream`: what the RPC's event stream reads) or from a plain
//! thread ([`Job::wait`]). The work runs on the scheduler's threads, never on an async
//! runtime. A job is cancelled by [`Job::cancel`] or by dropping it (a client that hangs
//! up stops its generation after the current token).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::{EngineError, Result};
use crate::generate::{generate, FinishReason, GenerateRequest, Generation};
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

impl Scheduler {
    /// Starts `workers` threads behind a queue of `capacity` waiting requests.
    pub fn start(model: Arc<LoadedModel>, workers: usize, capacity: usize) -> Self {
        let (queue, receiver) = mpsc::sync_channel::<Task>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let stats = Arc::new(Counters::default());
        let workers = (0..workers.max(1))
            .map(|i| {
                let model = model.clone();
                let receiver = receiver.clone();
                let stats = stats.clone();
                std::thread::Builder::new()
                    .name(format!("engine-{i}"))
                    .spawn(move || worker(&model, &receiver, &stats))
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

fn worker(model: &LoadedModel, receiver: &Mutex<Receiver<Task>>, stats: &Counters) {
    loop {
        let task = {
            let guard = receiver.lock().unwrap_or_else(|e| e.into_inner());
            match guard.recv() {
                Ok(t) => t,
                Err(_) => return,
            }
        };
        let events = task.events;
        // Skip a job whose owner has gone while it waited.
        if events.is_closed() {
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.running.fetch_add(1, Ordering::Relaxed);
        let result = generate(model, &task.request, &task.cancel, |piece| {
            if events.send(Event::Text(piece.to_string())).is_err() {
                task.cancel.store(true, Ordering::Relaxed);
            }
        });
        stats.running.fetch_sub(1, Ordering::Relaxed);
        let counter = match &result {
            Ok(g) if g.finish == FinishReason::Cancelled => &stats.cancelled,
            Ok(_) => &stats.finished,
            Err(_) => &stats.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = events.send(match result {
            Ok(g) => Event::Done(g),
            Err(e) => Event::Failed(e.to_string()),
        });
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.queue = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
