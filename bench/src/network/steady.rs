//! The network's sustained rate, apart from a run's start and end: `bench network`
//! watches the first node's inference tip (when each block became visible there, and how
//! busy the machine's cores were by then), so that a request's settlement has the time its
//! settling block arrived, and the rate is taken over the part of the run in which the
//! network both served new requests and settled earlier ones.
//!
//! The watch reads the tip from `/v2/info`, which the node answers from its snapshot
//! without the chain task: `/v2/inference-chain` reads the verifier sets through the
//! contracts, and ten times a second that was a node's work the run measured (a fifth of
//! the first node's chain task in a 6,000-request run).
//!
//! A run of a few hundred requests is all start and end: served in a second or two, then
//! settled three ledger blocks later while the machine idles, so its settled-per-second
//! figure measures the ledger's pace more than the work. The steady window, from the first
//! settlement to the last request served, is where a long run shows what the network
//! keeps up with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fai_api::blocking::Client as Node;

/// How often the tip is read.
const POLL: Duration = Duration::from_millis(100);
/// Parents walked down at most when the tip moved by more than one block between reads.
const MAX_WALK: usize = 32;
/// Samples of the machine's CPU time kept at most (an hour of reads).
const MAX_SAMPLES: usize = 36_000;

#[derive(Default)]
struct Seen {
    /// When each inference block was first seen at or below the first node's tip.
    blocks: HashMap<String, Instant>,
    /// The machine's busy and total CPU ticks at each read.
    cpu: Vec<(Instant, (u64, u64))>,
    /// The watched processes' CPU seconds at each read.
    nodes_cpu: Vec<(Instant, f64)>,
}

/// Reads the first node's inference tip on a thread of its own until stopped.
pub struct TipWatch {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TipWatch {
    /// Starts watching the node at `rpc`; `cpu` reads the machine's CPU time, `nodes_cpu`
    /// the nodes' CPU seconds.
    pub fn start(
        rpc: &str,
        cpu: fn() -> Option<(u64, u64)>,
        nodes_cpu: impl Fn() -> Option<f64> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let node = Node::new(rpc)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let now = Instant::now();
                let (cpu_now, nodes_now) = (cpu(), nodes_cpu());
                // The tip and the parents not seen yet (read before the lock is taken):
                // each arrived by now.
                let known = |id: &str| s.lock().is_ok_and(|seen| seen.blocks.contains_key(id));
                let mut arrived = Vec::new();
                let mut at = node.info().ok().and_then(|i| i.inference).map(|t| t.tip);
                for _ in 0..MAX_WALK {
                    let Some(id) = at.take() else { break };
                    if known(&id) {
                        break;
                    }
                    at = node.inference_block(&id).ok().and_then(|b| b.parent);
                    arrived.push(id);
                }
                if let Ok(mut seen) = s.lock() {
                    if seen.cpu.len() < MAX_SAMPLES {
                        if let Some(t) = cpu_now {
                            seen.cpu.push((now, t));
                        }
                        if let Some(c) = nodes_now {
                            seen.nodes_cpu.push((now, c));
                        }
                    }
                    for id in arrived {
                        seen.blocks.entry(id).or_insert(now);
                    }
                }
                std::thread::sleep(POLL);
            }
        });
        Ok(TipWatch {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// When block `id` was first seen at or below the tip; none if it was not (yet).
    pub fn seen(&self, id: &str) -> Option<Instant> {
        self.seen.lock().ok()?.blocks.get(id).copied()
    }

    /// The share of the machine's cores busy between `from` and `to`, from the reads
    /// nearest to them; none without two distinct reads in between.
    pub fn cpu_busy_between(&self, from: Instant, to: Instant) -> Option<f64> {
        let seen = self.seen.lock().ok()?;
        let (first, last) = reads_within(&seen.cpu, from, to)?;
        let ((b0, t0), (b1, t1)) = (first.1, last.1);
        (t1 > t0).then(|| b1.saturating_sub(b0) as f64 / (t1 - t0) as f64)
    }

    /// The nodes' CPU seconds between `from` and `to`, from the reads nearest to them,
    /// and the seconds between those reads; none without two distinct reads in between.
    pub fn nodes_cpu_between(&self, from: Instant, to: Instant) -> Option<(f64, f64)> {
        let seen = self.seen.lock().ok()?;
        let (first, last) = reads_within(&seen.nodes_cpu, from, to)?;
        let wall = last.0.checked_duration_since(first.0)?.as_secs_f64();
        (wall > 0.0).then(|| ((last.1 - first.1).max(0.0), wall))
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The first read at or after `from` and the last at or before `to`.
fn reads_within<T: Copy>(
    reads: &[(Instant, T)],
    from: Instant,
    to: Instant,
) -> Option<((Instant, T), (Instant, T))> {
    let first = reads.iter().find(|(t, _)| *t >= from)?;
    let last = reads.iter().rev().find(|(t, _)| *t <= to)?;
    Some((*first, *last))
}

impl Drop for TipWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The steady part of a run: from the first settlement to the last request served.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Steady {
    /// The window's length.
    pub seconds: f64,
    /// Settled within it, per second (the ones settled at its opening instant, by work
    /// done before it, are not counted).
    pub settled_per_sec: f64,
    /// Its start and end, for other measures over the same window.
    pub from: Instant,
    pub to: Instant,
}

/// The steady window of a run whose requests settled at `settled` and whose last request
/// was served at `last_served`; none when it is shorter than `min_seconds` (the run was
/// too short to have one: every request was served before any settled, or nearly).
pub fn steady(settled: &[Instant], last_served: Instant, min_seconds: f64) -> Option<Steady> {
    let from = settled.iter().min().copied()?;
    let seconds = last_served.checked_duration_since(from)?.as_secs_f64();
    if seconds < min_seconds || seconds <= 0.0 {
        return None;
    }
    let within = settled
        .iter()
        .filter(|t| **t > from && **t <= last_served)
        .count();
    Some(Steady {
        seconds,
        settled_per_sec: within as f64 / seconds,
        from,
        to: last_served,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    /// Blocks settling 100 requests each, every second from 3 s, while serving goes on to
    /// 10 s: the rate over the window is 100 a second, not counting the batch that opens it
    /// nor those after the last request served.
    #[test]
    fn the_window_runs_from_the_first_settlement_to_the_last_served() {
        let base = Instant::now();
        let settled: Vec<Instant> = (3..=13)
            .flat_map(|s| std::iter::repeat_n(at(base, s * 1000), 100))
            .collect();
        let s = steady(&settled, at(base, 10_000), 2.0).expect("a window");
        assert_eq!(s.from, at(base, 3000));
        assert!((s.seconds - 7.0).abs() < 1e-9);
        assert!((s.settled_per_sec - 100.0).abs() < 1e-9);
    }

    /// A burst served in a second and settled seconds later has no steady part.
    #[test]
    fn a_run_served_before_it_settled_has_no_window() {
        let base = Instant::now();
        let settled = vec![at(base, 4000); 400];
        assert_eq!(steady(&settled, at(base, 1500), 2.0), None);
        assert_eq!(steady(&[], at(base, 1500), 2.0), None);
        // Served on a little past the first settlement: shorter than asked for.
        assert_eq!(steady(&settled, at(base, 5000), 2.0), None);
    }
}
