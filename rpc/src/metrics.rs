//! `GET /metrics`: the node's figures in the OpenMetrics text format, which Prometheus
//! scrapes, written by prometheus-client.
//!
//! The RPC's own counters (inference requests by answer) are kept here; everything else
//! (heights, pool sizes, peers, the engine's jobs) is read from its owner at each scrape
//! by a collector, so that no figure is kept twice.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use fai_node::node::Node;
use fai_node::served::Engines;

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How an inference request was answered.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// Taken: served here or relayed.
    Accepted,
    /// Refused as bad, unpayable or a duplicate.
    Refused,
    /// Refused because the engine's queue is full (also counted as refused).
    Busy,
}

type Labels = [(&'static str, &'static str); 1];

/// The registry the RPC answers `/metrics` from.
pub struct Metrics {
    registry: Registry,
    inference_requests: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new(node: Arc<Node>, engines: Arc<Engines>) -> Self {
        let mut registry = Registry::default();
        let inference_requests = Family::<Labels, Counter>::default();
        registry.register(
            "infer_rpc_inference_requests",
            // The registry ends the help text with a period.
            "Inference requests, by answer",
            inference_requests.clone(),
        );
        registry.register_collector(Box::new(NodeFigures { node, engines }));
        // Every answer is shown from the start, at zero until it happens.
        for answer in ["accepted", "refused", "busy"] {
            let _ = inference_requests.get_or_create(&[("answer", answer)]);
        }
        Metrics {
            registry,
            inference_requests,
        }
    }

    /// Counts an inference request.
    pub fn inference_request(&self, answer: Answer) {
        let label = match answer {
            Answer::Accepted => "accepted",
            Answer::Refused => "refused",
            Answer::Busy => "busy",
        };
        self.inference_requests
            .get_or_create(&[("answer", label)])
            .inc();
    }

    /// Every figure, as OpenMetrics text.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The figures other parts of the node own, read at each scrape.
struct NodeFigures {
    node: Arc<Node>,
    engines: Arc<Engines>,
}

impl fmt::Debug for NodeFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeFigures")
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter<N>(e: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> fmt::Result
where
    N: prometheus_client::encoding::EncodeCounterValue,
{
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// How busy the chain task is (every block, transaction, vote and query goes through it):
/// its queue now, and since start the commands done, their time queued and the task's
/// busy time (rate(busy) near 1 means it is the node's bottleneck).
fn chain_task_load(m: &mut DescriptorEncoder, node: &Node) -> fmt::Result {
    let load = node.chain.load();
    gauge(
        m,
        "infer_chain_queue_commands",
        "Commands sent to the chain task and not yet done.",
        u64::try_from(node.chain.pending()).unwrap_or(u64::MAX),
    )?;
    counter(
        m,
        "infer_chain_commands",
        "Commands the chain task has done.",
        load.commands,
    )?;
    counter(
        m,
        "infer_chain_queued_seconds",
        "Seconds commands spent queued for the chain task, summed.",
        load.queued_secs,
    )?;
    counter(
        m,
        "infer_chain_busy_seconds",
        "Seconds the chain task spent on commands and its timers.",
        load.busy_secs,
    )?;
    let longest = ConstGauge::new(load.longest_queued_secs);
    longest.encode(m.encode_descriptor(
        "infer_chain_longest_queued_seconds",
        "The longest a command queued for the chain task since start.",
        None,
        longest.metric_type(),
    )?)
}

/// The verifier's backlog and work (absent when the node does not verify): replay
/// throughput is rate(inferences) / rate(seconds).
fn verifier_load(m: &mut DescriptorEncoder, node: &Node) -> fmt::Result {
    let Some(v) = node.verifier.get() else {
        return Ok(());
    };
    gauge(
        m,
        "infer_verifier_backlog_blocks",
        "Inference blocks waiting for this node's vote (queued or being replayed).",
        u64::try_from(v.backlog()).unwrap_or(u64::MAX),
    )?;
    let work = ConstGauge::new(v.backlog_work() as f64 / 1e6);
    work.encode(m.encode_descriptor(
        "infer_verifier_backlog_replay_seconds",
        "The estimated replay time of the blocks waiting for this node's vote.",
        None,
        work.metric_type(),
    )?)?;
    counter(
        m,
        "infer_verifier_inferences",
        "Inferences judged by this node's verifier.",
        v.stats.inferences.load(Ordering::Relaxed),
    )?;
    counter(
        m,
        "infer_verifier_busy_seconds",
        "Seconds the verifier spent judging inferences (replay included).",
        v.stats.micros.load(Ordering::Relaxed) as f64 / 1e6,
    )?;
    counter(
        m,
        "infer_verifier_dropped_blocks",
        "Blocks offered to a full verifier queue, never voted on.",
        v.stats.dropped_blocks.load(Ordering::Relaxed),
    )
}

impl Collector for NodeFigures {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        // From the snapshot: no lock is taken, however long a validation holds one.
        let snapshot = self.node.snapshot();
        let (height, inference_height) = (snapshot.ledger_height, snapshot.inference_height);
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let mempool = count(snapshot.mempool_txs);
        let vm_pool = count(snapshot.vm_pool_txs);
        let results = count(snapshot.results_waiting);
        let (peers, syncing) = self.node.p2p.get().map_or((0, false), |p| {
            (
                p.status.peers.load(Ordering::Relaxed),
                p.status.syncing.load(Ordering::Relaxed),
            )
        });
        let m = &mut e;
        gauge(
            m,
            "infer_ledger_height",
            "Height of the active ledger tip.",
            height.into(),
        )?;
        gauge(
            m,
            "infer_mempool_transactions",
            "Ledger transactions waiting.",
            mempool,
        )?;
        gauge(
            m,
            "infer_inference_height",
            "Height of the inference tip as of the ledger tip.",
            inference_height.into(),
        )?;
        gauge(
            m,
            "infer_vm_pool_transactions",
            "Inference-layer VM transactions waiting.",
            vm_pool,
        )?;
        gauge(
            m,
            "infer_result_pool_inferences",
            "Served inferences waiting for an inference block.",
            results,
        )?;
        gauge(m, "infer_p2p_peers", "Connected peers.", count(peers))?;
        gauge(
            m,
            "infer_p2p_syncing",
            "1 while catching up with a peer.",
            u64::from(syncing),
        )?;
        gauge(
            m,
            "infer_votes_behind_blocks",
            "Inference blocks built since the oldest one with inferences that its votes have not settled (new requests are refused as busy from 3).",
            snapshot.votes_behind.into(),
        )?;
        chain_task_load(m, &self.node)?;
        verifier_load(m, &self.node)?;
        let jobs = self.engines.stats();
        gauge(
            m,
            "infer_engine_jobs_running",
            "Inference jobs being generated.",
            jobs.running,
        )?;
        let mut family = e.encode_descriptor(
            "infer_engine_jobs",
            "Inference jobs ended, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in [
            ("finished", jobs.finished),
            ("cancelled", jobs.cancelled),
            ("failed", jobs.failed),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("outcome", outcome)])?)?;
        }
        Ok(())
    }
}
