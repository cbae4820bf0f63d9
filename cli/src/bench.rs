//! `infer-node bench`: the command line of the benchmarks in `fai-bench`, each printed
//! as a line for people or, with `--json`, one JSON object.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use fai_bench as b;

/// `bench network --requests` at most: the dev wallet's 20 FAI cover the max fees of
/// 10,000 requests and the senders' funding.
const MAX_NETWORK_REQUESTS: usize = 10_000;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// A local network of N nodes (processes) under a steady load of inference
    /// transactions: settled per second against the engine alone.
    Network {
        /// Nodes (2 to 8); all mine and stake, the first two serve.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Inference transactions sent (1 to 10,000; a few thousand give the run a
        /// steady part).
        #[arg(long, default_value_t = 400)]
        requests: usize,
        /// Wallets the load is signed by (a node keeps 64 waiting inferences per sender).
        #[arg(long, default_value_t = b::network::SENDERS)]
        senders: usize,
        /// Requests in flight at once, spread over the two servers.
        #[arg(long, default_value_t = b::network::CLIENTS)]
        clients: usize,
        /// The model served: fai-tiny, or a generated one approved at genesis (wide,
        /// 100m, 100m-gqa), on which inference outweighs the network's own costs.
        #[arg(long, default_value = "fai-tiny")]
        model: String,
        /// Keep the nodes' data directories and logs (always kept on a failure).
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
    /// Connecting a ledger block and accepting the inference block it brings, after a
    /// long history against a short one.
    Growth {
        /// Ledger blocks of the short history.
        #[arg(long, default_value_t = 1_000)]
        small: u32,
        /// Ledger blocks of the long history.
        #[arg(long, default_value_t = 20_000)]
        large: u32,
        /// Blocks timed after each history.
        #[arg(long, default_value_t = 50)]
        blocks: u32,
        #[arg(long)]
        json: bool,
    },
    /// Contract calls per second on the VM over RocksDB against the same calls on an
    /// in-memory store.
    Clarity {
        /// Blocks of calls.
        #[arg(long, default_value_t = 20)]
        blocks: u32,
        /// Calls per block.
        #[arg(long, default_value_t = 200)]
        calls_per_block: u32,
        #[arg(long)]
        json: bool,
    },
    /// Miner hash rate per thread against the raw SHA-256 compression rate.
    Pow {
        /// Hashing threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Print JSON instead of a line for people.
        #[arg(long)]
        json: bool,
    },
    /// Inference speed against the device's memory-bandwidth roofline, and batched
    /// decoding at 1, 8, 32 and 64 streams.
    Engine {
        #[arg(long, default_value_t = 128)]
        prefill: usize,
        #[arg(long, default_value_t = 64)]
        decode: usize,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: fai_engine::DeviceChoice,
        /// The model's shape: 100m, 100m-gqa, 1b or 8b (byte vocabulary, generated on the spot).
        #[arg(long, default_value = "100m")]
        shape: String,
        /// The storage types measured (repeatable): q8_0, q4_0, q4_k; default all three.
        #[arg(long)]
        dtype: Vec<String>,
        /// Stream counts of the batched figures, comma-separated; empty skips them.
        #[arg(long, default_value = "1,8,32,64")]
        streams: String,
        #[arg(long)]
        json: bool,
    },
    /// The cost of verifying a 256-token output against generating it (alone and
    /// batched), and the fraud suite on fai-tiny and a model 8x wider.
    Verify {
        #[arg(long, default_value_t = 256)]
        tokens: u32,
        /// Prompts in the fraud suite (two cases of each kind per prompt).
        #[arg(long, default_value_t = 50)]
        prompts: usize,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: fai_engine::DeviceChoice,
        #[arg(long)]
        json: bool,
    },
    /// The checks for a GPU machine, in priority order, each result written as soon as
    /// it is known: CUDA against CPU (answers made on one replayed on the other), then
    /// the engine and verify benchmarks on the GPU at the 1B and 8B shapes.
    GpuCheck {
        /// The device checked (the CPU is the reference).
        #[arg(long, default_value = "cuda")]
        device: fai_engine::DeviceChoice,
        /// A file that receives one JSON line per result (besides stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Answers per model and mode in the agreement checks.
        #[arg(long, default_value_t = 100)]
        answers: usize,
        /// Stop after the agreement checks.
        #[arg(long)]
        quick: bool,
    },
    /// Assembling and verifying an inference block of receipts against raw signature checks.
    Poi {
        /// Receipts in the block.
        #[arg(long, default_value_t = 1000)]
        receipts: usize,
        /// Repetitions; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Time to first token through POST /v2/inference against the engine's own, and the
    /// time a transaction takes to reach all of five local nodes by gossip.
    Rpc {
        /// Requests measured (the median is reported).
        #[arg(long, default_value_t = 15)]
        requests: usize,
        /// Transactions gossiped (the median and 99th percentile are reported).
        #[arg(long, default_value_t = 200)]
        gossip_txs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Connecting a block of 2,000 transactions against raw signature verification.
    Validate {
        /// Transactions in the block.
        #[arg(long, default_value_t = 2000)]
        txs: usize,
        /// Repetitions; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
}

/// What `bench clarity` prints as JSON.
#[derive(serde::Serialize)]
struct ClarityReport {
    blocks: u32,
    calls: u64,
    rocksdb_calls_per_sec: f64,
    memory_calls_per_sec: f64,
    ratio: f64,
}

pub fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Growth {
            small,
            large,
            blocks,
            json,
        } => {
            anyhow::ensure!(
                *large <= 100_000 && (1..=1000).contains(blocks),
                "--large must be at most 100000 and --blocks between 1 and 1000"
            );
            let r = b::growth::growth(*small, *large, *blocks)?;
            print_report(*json, &r, || {
                format!(
                    "growth: {:.2} ms per ledger block with its inference block after {} blocks of history (inference height {}), {:.2} ms after {} (inference height {}, built in {:.0} s); ratio {:.2} (goal <= 1.2)",
                    r.small_ms_per_block, r.small_history, r.small_inference_height, r.large_ms_per_block, r.large_history, r.large_inference_height, r.large_build_seconds, r.ratio
                )
            })?;
            Ok(())
        }
        BenchCommand::Clarity {
            blocks,
            calls_per_block,
            json,
        } => {
            anyhow::ensure!(
                (1..=1000).contains(blocks) && (1..=1000).contains(calls_per_block),
                "--blocks and --calls-per-block must be between 1 and 1000"
            );
            // A fresh directory of its own, removed afterwards however the run ends.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "infer-node-bench-clarity-{}-{nanos}",
                std::process::id()
            ));
            let r = fai_clarity::bench::contract_calls(&dir, *blocks, *calls_per_block);
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            let r = ClarityReport {
                blocks: r.blocks,
                calls: r.calls,
                rocksdb_calls_per_sec: r.rocksdb_calls_per_sec,
                memory_calls_per_sec: r.memory_calls_per_sec,
                ratio: r.ratio,
            };
            print_report(*json, &r, || {
                format!(
                    "clarity: {:.0} contract calls per second on RocksDB, {:.0} in memory ({} calls in {} blocks); ratio {:.2} (goal >= 0.5)",
                    r.rocksdb_calls_per_sec, r.memory_calls_per_sec, r.calls, r.blocks, r.ratio
                )
            })?;
            Ok(())
        }
        BenchCommand::Pow {
            threads,
            seconds,
            json,
        } => {
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let r = b::ledger::pow(threads, *seconds);
            print_report(*json, &r, || {
                format!(
                        "pow: {:.2} MH/s per thread ({:.2} MH/s on {} threads); raw SHA-256 {:.2} M compressions/s per thread; ratio {:.3} (goal >= 0.9)",
                        r.hashes_per_sec / 1e6,
                        r.total_hashes_per_sec / 1e6,
                        r.threads,
                        r.sha256_compressions_per_sec / 1e6,
                        r.ratio
                    )
            })?;
            Ok(())
        }
        BenchCommand::Engine {
            prefill,
            decode,
            device,
            shape,
            dtype,
            streams,
            json,
        } => {
            let mut opts = b::engine::EngineOptions::new(
                *device,
                shape,
                (*prefill).clamp(1, 900),
                (*decode).clamp(1, 100),
            );
            opts.streams = streams
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<usize>().map(|n| n.clamp(1, 256)))
                .collect::<Result<_, _>>()
                .context("--streams: numbers separated by commas")?;
            if !dtype.is_empty() {
                opts.dtypes = dtype
                    .iter()
                    .map(|d| b::engine::parse_dtype(d))
                    .collect::<Result<_>>()?;
            }
            let r = b::engine::engine(&opts)?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{}", b::engine::engine_lines(&r));
            }
            Ok(())
        }
        BenchCommand::Verify {
            tokens,
            prompts,
            device,
            json,
        } => {
            let r = b::engine::verify(*device, (*tokens).clamp(1, 900), (*prompts).clamp(2, 500))?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{}", b::engine::verify_lines(&r));
            }
            Ok(())
        }
        BenchCommand::GpuCheck {
            device,
            out,
            answers,
            quick,
        } => b::gpu::run(*device, out.as_deref(), (*answers).clamp(1, 1000), *quick),
        BenchCommand::Poi {
            receipts,
            runs,
            json,
        } => {
            anyhow::ensure!(
                (1..=10_000).contains(receipts),
                "--receipts must be between 1 and 10000"
            );
            let r = b::poi::poi(*receipts, *runs)?;
            print_report(*json, &r, || {
                format!(
                        "poi: block of {} receipts assembled in {:.1} ms, verified in {:.1} ms = {:.0} receipts/s; raw ECDSA verify {:.0}/s on one thread; ratio {:.2} (goal >= 0.5; {} threads)",
                        r.receipts,
                        r.assemble_ms,
                        r.verify_ms,
                        r.receipts_per_sec,
                        r.sig_verifies_per_sec,
                        r.ratio,
                        r.threads
                    )
            })?;
            Ok(())
        }
        BenchCommand::Network {
            nodes,
            requests,
            senders,
            clients,
            model,
            keep,
            json,
        } => {
            anyhow::ensure!(
                (1..=MAX_NETWORK_REQUESTS).contains(requests),
                "--requests must be between 1 and {MAX_NETWORK_REQUESTS}"
            );
            let r = b::network::network(&b::network::NetworkOptions {
                nodes: *nodes,
                requests: *requests,
                senders: *senders,
                clients: *clients,
                model: model.clone(),
                keep: *keep,
            })?;
            print_report(*json, &r, || {
                format!(
                        "network: {:.2} inference transactions settled per second over {} nodes of {} engine threads on {} ({} requests from {} senders, {} at once: {} accepted, {} rejected, {} undecided, {} refunded late, {} refused busy, {} dropped, in {:.1} s; settled {:.1} s / {:.0} blocks after the receipt at the median, {:.1} s / {:.0} blocks at p95); the engine alone: {:.2} per second; ratio {:.3}, limit {:.3} ({} replays at {:.2} of generation each), efficiency {:.2}; busiest chain task busy {:.0}% of the time, a command queued {:.1} ms on average; all served in {:.1} s, a ledger block every {:.2} s, the machine's cores {} busy{}",
                        r.settled_per_sec, r.nodes, r.threads_per_node, r.model, r.requests, r.senders, r.clients, r.accepted, r.rejected, r.undecided, r.refunded_late, r.refused_busy, r.dropped, r.seconds, r.settle_latency_s, r.settle_p50_blocks, r.settle_p95_s, r.settle_p95_blocks, r.engine_per_sec, r.ratio, r.limit_ratio, r.replays_per_inference, r.replay_cost_ratio, r.efficiency, r.chain_busy_share * 100.0, r.chain_queued_ms, r.sent_seconds, r.ledger_spacing_s, r.cpu_busy_share.map_or("(unknown)".to_string(), |c| format!("{:.0}%", c * 100.0)), steady_text(&r)
                    )
            })?;
            Ok(())
        }
        BenchCommand::Rpc {
            requests,
            gossip_txs,
            json,
        } => {
            anyhow::ensure!(
                (1..=1000).contains(requests),
                "--requests must be between 1 and 1000"
            );
            anyhow::ensure!(
                (1..=5000).contains(gossip_txs),
                "--gossip-txs must be between 1 and 5000"
            );
            let r = b::rpc::rpc(*requests)?;
            let g = b::gossip::gossip(*gossip_txs)?;
            if *json {
                let mut all = serde_json::to_value(&r)?;
                if let (Some(all), serde_json::Value::Object(g)) =
                    (all.as_object_mut(), serde_json::to_value(&g)?)
                {
                    all.extend(g);
                }
                println!("{all}");
            } else {
                println!(
                        "rpc: time to first token {:.2} ms through POST /v2/inference, {:.2} ms in the engine; overhead {:.2} ms (median of {}; goal <= 2 ms)",
                        r.rpc_ttft_ms, r.engine_ttft_ms, r.overhead_ms, r.requests
                    );
                println!(
                        "gossip: a transaction reaches all {} nodes in {:.2} ms (median), {:.2} ms (p99) over {} transactions; one hop's floor {:.2} ms; ratio {:.2}",
                        g.nodes, g.gossip_p50_ms, g.gossip_p99_ms, g.transactions, g.gossip_floor_ms, g.gossip_ratio
                    );
            }
            Ok(())
        }
        BenchCommand::Validate { txs, runs, json } => {
            anyhow::ensure!(
                *txs >= 1 && *txs <= 5000,
                "--txs must be between 1 and 5000"
            );
            let r = b::ledger::validate(*txs, *runs)?;
            print_report(*json, &r, || {
                format!(
                        "validate: {} txs connected in {:.1} ms = {:.0} txs/s; raw ECDSA verify {:.0}/s on one thread; ratio {:.2} (goal >= 0.7; {} threads)",
                        r.transactions,
                        r.connect_seconds * 1e3,
                        r.txs_per_sec,
                        r.sig_verifies_per_sec,
                        r.ratio,
                        r.threads
                    )
            })?;
            Ok(())
        }
    }
}

/// The steady part of a `bench network` run and where the nodes' CPU time went, for
/// the line.
fn steady_text(r: &b::network::NetworkReport) -> String {
    let steady = match (r.steady_seconds, r.steady_settled_per_sec, r.steady_ratio, r.steady_efficiency) {
        (Some(s), Some(per_sec), Some(ratio), Some(eff)) => format!(
            "; steady over {s:.1} s (first settlement to last served): {per_sec:.1} settled per second, ratio {ratio:.3}, efficiency {eff:.2}, the cores {} busy",
            r.steady_cpu_busy_share
                .map_or("(unknown)".to_string(), |c| format!("{:.0}%", c * 100.0))
        ),
        _ => "; no steady part (too short a run)".to_string(),
    };
    let work = match (r.nodes_cpu_ms_per_settled, r.work_share) {
        (Some(cpu), Some(share)) => format!(
            "; the nodes spent {cpu:.2} ms of CPU per request settled, of which the inference work ({:.2} ms: generating it and {} replays) is {:.0}%",
            r.work_ms_per_inference,
            r.replays_per_inference,
            share * 100.0
        ),
        _ => String::new(),
    };
    format!("{steady}{work}")
}

/// Prints a benchmark's report: its JSON with `json`, else the line for people.
fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    line: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", line());
    }
    Ok(())
}
