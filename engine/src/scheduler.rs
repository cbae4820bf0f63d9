//! The scheduler: a bounded queue in front of worker threads that share one loaded model.
//!
//! `submit` never blocks and never lets the queue grow: when it is full the answer is
//! [`EngineError::Busy`], which the RPC turns into "busy, try another node". Each job
//! streams [`Event`]s through its own channel and can be cancelled; the work runs on the
//! scheduler's threads, never on an async runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{EngineError, Result};
use crate::generate::{generate, GenerateRequest, Generation};
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
    events: Sender<Event>,
}

/// A submitted request.
pub struct Job {
    pub events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl Job {
    /// Asks the worker to stop after the current token.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for the end and returns the streamed text and the final result.
    pub fn wait(self) -> (String, Result<Generation, String>) {
        let mut text = String::new();
        for event in self.events.iter() {
            match event {
                Event::Text(t) => text.push_str(&t),
                Event::Done(g) => return (text, Ok(g)),
                Event::Failed(e) => return (text, Err(e)),
            }
        }
        (text, Err("the worker stopped".into()))
    }
}

/// Worker threads over one shared model.
pub struct Scheduler {
    queue: Option<SyncSender<Task>>,
    capacity: usize,
    workers: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts `workers` threads behind a queue of `capacity` waiting requests.
    pub fn start(model: Arc<LoadedModel>, workers: usize, capacity: usize) -> Self {
        let (queue, receiver) = mpsc::sync_channel::<Task>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..workers.max(1))
            .map(|i| {
                let model = model.clone();
                let receiver = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("engine-{i}"))
                    .spawn(move || worker(&model, &receiver))
                    .map_err(|e| tracing::error!(target: "infer_node::engine", "cannot start a worker: {e}"))
            })
            .filter_map(|r| r.ok())
            .collect();
        Scheduler {
            queue: Some(queue),
            capacity,
            workers,
        }
    }

    /// Queues `request`, or answers [`EngineError::Busy`] at once when the queue is full.
    pub fn submit(&self, request: GenerateRequest) -> Result<Job> {
        request.sampling.validate()?;
        let (events, receiver) = mpsc::channel();
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

fn worker(model: &LoadedModel, receiver: &Mutex<Receiver<Task>>) {
    loop {
        let task = {
            let guard = receiver.lock().unwrap_or_else(|e| e.into_inner());
            match guard.recv() {
                Ok(t) => t,
                Err(_) => return,
            }
        };
        let events = task.events;
        let result = generate(model, &task.request, &task.cancel, |piece| {
            let _ = events.send(Event::Text(piece.to_string()));
        });
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
