//! `infer-node bench rpc`: the time to first token of an inference request through the
//! RPC on loopback (HTTP, JSON, signature checks, the engine's queue, server-sent events)
//! against the engine's own time to first token for the same request, in the same run.
//! Both include the prompt's prefill; the difference is what the RPC adds.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use fai_engine::scheduler::Scheduler;
use fai_engine::tiny::ensure_fai_tiny;
use fai_engine::LoadedModel;
use fai_inference_chain::types::{InferenceStub, InferenceTx, Prompt, Sampling};
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_primitives::codec::Encode;
use fai_primitives::{Amount, Network, SecretKey, Signature};
use serde::Serialize;

use fai_node::node::open_chain;
use fai_node::verifier;
use fai_rpc::{router, RpcState};

#[derive(Serialize)]
pub struct RpcReport {
    pub requests: usize,
    pub rpc_ttft_ms: f64,
    pub engine_ttft_ms: f64,
    pub overhead_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn transaction(model: [u8; 32], nonce: u64) -> InferenceTx {
    let key = SecretKey::from_bytes(&[7; 32]).unwrap_or_else(|_| SecretKey::generate());
    let prompt = Prompt {
        system: "You are a helpful assistant.".into(),
        context: vec![],
        input: "How does a proof-of-work chain pick the winning branch?".into(),
    };
    let mut stub = InferenceStub {
        sender: key.public_key(),
        nonce,
        chain_id: Network::Regtest.chain_id(),
        model,
        prompt_hash: prompt.hash(),
        sampling: Sampling {
            max_tokens: 16,
            temperature_milli: 700,
            top_p_milli: 1000,
            top_k: 40,
            seed: 1,
            stop: vec![],
        },
        max_fee: Amount::from_units(10_000).unwrap_or(Amount::ZERO),
        expiry: 100,
        signature: Signature([0; 64]),
    };
    stub.sign(&key);
    InferenceTx { stub, prompt }
}

/// Milliseconds from sending the request to the first token event, through the typed
/// client (the request is drained to its end before the next one).
fn rpc_ttft(node: &fai_api::blocking::Client, tx: &InferenceTx) -> Result<f64> {
    let started = Instant::now();
    let mut first = None;
    let mut failure = None;
    node.inference(&tx.to_bytes(), |event| {
        match event {
            fai_api::InferenceEvent::Token(_) => {
                first.get_or_insert_with(|| started.elapsed());
            }
            fai_api::InferenceEvent::Error(e) => failure = Some(e.error),
            _ => {}
        }
        true
    })?;
    if let Some(e) = failure {
        bail!("the inference failed: {e}");
    }
    let first = first.context("the stream ended before a token")?;
    Ok(first.as_secs_f64() * 1e3)
}

pub fn rpc(requests: usize) -> Result<RpcReport> {
    let dir = tempfile::tempdir()?;
    let model = Arc::new(LoadedModel::load(
        &ensure_fai_tiny(dir.path())?,
        &Device::Cpu,
    )?);
    let chain = open_chain(&dir.path().join("data"), Network::Regtest)?;
    let mempool = Mempool::new(MempoolConfig {
        max_bytes: 1 << 20,
        min_fee_rate: 1_000,
    });
    let state = fai_node::chain_task::ChainState::new(chain, mempool, fai_node::clock::system());
    let (node, _chain_task) = fai_node::node::start_bare(state)?;
    let engines = Arc::new(fai_node::served::Engines {
        device: fai_engine::device::describe(&Device::Cpu),
        engines: vec![fai_node::served::Engine {
            model: model.clone(),
            scheduler: Arc::new(Scheduler::start(model.clone(), 1, 8)),
        }],
    });
    let mut state = RpcState::new(node, Network::Regtest, engines, SecretKey::generate());
    // What is measured is the RPC's path to the first token, not payment: the sender is
    // not funded.
    state.serve_unfunded = true;
    let state = Arc::new(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let app = router(state, 1 << 20);
    runtime.spawn(async move {
        if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
            let _ = axum::serve(l, app).await;
        }
    });

    let client = fai_api::blocking::Client::new(&format!("127.0.0.1:{port}"))?;
    let mut engine = Vec::new();
    let mut through_rpc = Vec::new();
    // One warm-up of each, then alternate so both see the same machine state.
    for i in 0..=requests {
        let tx = transaction(model.id.0, i as u64);
        let request = verifier::request(&tx.prompt, &tx.stub.sampling);
        let started = Instant::now();
        let mut first = None;
        fai_engine::generate(&model, &request, &AtomicBool::new(false), |_| {
            first.get_or_insert_with(|| started.elapsed());
        })?;
        let engine_ms = first.context("the engine produced no text")?.as_secs_f64() * 1e3;
        let rpc_ms = rpc_ttft(&client, &tx)?;
        if i > 0 {
            engine.push(engine_ms);
            through_rpc.push(rpc_ms);
        }
    }
    let (r, e) = (median(through_rpc), median(engine));
    Ok(RpcReport {
        requests,
        rpc_ttft_ms: r,
        engine_ttft_ms: e,
        overhead_ms: r - e,
    })
}
