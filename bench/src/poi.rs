//! `infer-node bench poi`: assembling and verifying an inference block of 1,000 receipts,
//! without the engine: what a producer and a verifier spend on signatures, roots and
//! settlement, against the raw signature verification rate measured in the same run.
//!
//! - assemble: check every transaction stub's and receipt's signature (in parallel),
//!   settle each inference, compute the results root, sign the header, encode the block;
//! - verify: decode the block, check the producer's signature, every stub and receipt
//!   signature (in parallel), duplicate transactions, the results root, and settle again.
//!
//! Each inference carries two signatures, so one thread could reach half the raw rate;
//! `ratio` = receipts per second of verification / raw verifications per second.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use fai_inference_chain::block::{InferenceBlock, InferenceHeader};
use fai_inference_chain::settlement::settle;
use fai_inference_chain::types::{Inference, InferenceStub, Prompt, ResultReceipt, Sampling};
use fai_primitives::codec::{Decode, Encode};
use fai_primitives::{Amount, Hash256, SecretKey, Signature};
use rayon::prelude::*;
use serde::Serialize;

#[derive(Serialize)]
pub struct PoiReport {
    pub receipts: usize,
    pub threads: usize,
    pub assemble_ms: f64,
    pub verify_ms: f64,
    pub receipts_per_sec: f64,
    pub sig_verifies_per_sec: f64,
    pub ratio: f64,
}

/// `n` signed inferences (stubs from 50 senders, receipts from 5 nodes).
pub fn inferences(n: usize) -> Vec<Inference> {
    let senders: Vec<SecretKey> = (0..50).map(|_| SecretKey::generate()).collect();
    let nodes: Vec<SecretKey> = (0..5).map(|_| SecretKey::generate()).collect();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let sender = &senders[i % senders.len()];
            let prompt = Prompt {
                input: format!("question {i}"),
                ..Prompt::default()
            };
            let mut stub = InferenceStub {
                sender: sender.public_key(),
                nonce: i as u64,
                chain_id: 1,
                model: [0x7a; 32],
                prompt_hash: prompt.hash(),
                sampling: Sampling {
                    max_tokens: 256,
                    temperature_milli: 700,
                    top_p_milli: 1000,
                    top_k: 40,
                    seed: i as u64,
                    stop: vec![],
                },
                max_fee: Amount::from_units(100_000).unwrap_or(Amount::ZERO),
                expiry: 1_000,
                signature: Signature([0; 64]),
            };
            stub.sign(sender);
            let node = &nodes[i % nodes.len()];
            let mut receipt = ResultReceipt {
                tx: stub.txid(),
                output_hash: ResultReceipt::hash_output(&format!("answer {i}")),
                tokens_hash: ResultReceipt::hash_tokens(&[7; 200]),
                tokens: 200,
                node: node.public_key(),
                signature: Signature([0; 64]),
            };
            receipt.sign(node);
            Inference { stub, receipt }
        })
        .collect()
}

/// Every stub's and receipt's signature, verified: not through the process's cache of
/// verified signatures (`signature_valid`), which would answer the second run's checks
/// from memory.
fn signatures_ok(list: &[Inference]) -> bool {
    list.par_iter().all(|i| {
        let (s, r) = (&i.stub, &i.receipt);
        s.sender.verify(&s.signing_digest(), &s.signature)
            && r.node.verify(&r.signing_digest(), &r.signature)
            && r.tx == s.txid()
    })
}

fn settle_all(list: &[Inference]) -> u64 {
    list.iter()
        .map(|i| {
            settle(
                true,
                i.stub.max_fee.units(),
                50_000_000,
                i.receipt.tokens,
                1_000_000,
            )
            .node
        })
        .sum()
}

/// What a producer does with `list`: checks every signature, settles each inference,
/// signs the header over the results root and encodes the block. Returns the block's
/// bytes and what the settlement paid the serving nodes.
pub fn assemble(list: &[Inference], producer: &SecretKey) -> Result<(Vec<u8>, u64)> {
    ensure!(signatures_ok(list), "a generated signature does not verify");
    let paid = settle_all(list);
    let mut header = InferenceHeader {
        version: 1,
        height: 1,
        parent: [0; 32],
        ledger_anchor: [1; 32],
        ledger_height: 10,
        tx_root: Hash256([0; 32]),
        results_root: InferenceBlock::results_root_of(list),
        commits_root: Hash256([0; 32]),
        votes_root: Hash256([0; 32]),
        state_root: [2; 32],
        vrf_proof: None,
        producer: producer.public_key(),
        signature: Signature([0; 64]),
    };
    header.sign(producer);
    let bytes = InferenceBlock {
        header,
        vm_txs: Vec::new(),
        inferences: list.to_vec(),
        commits: Vec::new(),
        votes: Vec::new(),
    }
    .to_bytes();
    Ok((bytes, paid))
}

/// What a verifier does with a block's bytes: decodes it, checks the producer's and every
/// inference's signatures, duplicates, the results root, and that settling again pays
/// `paid`.
pub fn verify(bytes: &[u8], paid: u64) -> Result<()> {
    let block = InferenceBlock::from_bytes(bytes)?;
    let header = &block.header;
    ensure!(
        header.producer.verify(&header.id(), &header.signature),
        "producer signature"
    );
    ensure!(signatures_ok(&block.inferences), "inference signatures");
    let unique: HashSet<Hash256> = block.inferences.iter().map(|i| i.stub.txid()).collect();
    ensure!(
        unique.len() == block.inferences.len(),
        "duplicate transactions"
    );
    ensure!(
        InferenceBlock::results_root_of(&block.inferences) == block.header.results_root,
        "results root"
    );
    ensure!(settle_all(&block.inferences) == paid, "settlement differs");
    Ok(())
}

pub fn poi(receipts: usize, runs: usize) -> Result<PoiReport> {
    let producer = SecretKey::generate();
    let list = inferences(receipts);
    let (mut best_assemble, mut best_verify) = (f64::MAX, f64::MAX);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let (bytes, paid) = assemble(&list, &producer)?;
        best_assemble = best_assemble.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        verify(&bytes, paid)?;
        best_verify = best_verify.min(started.elapsed().as_secs_f64());
    }
    let receipts_per_sec = receipts as f64 / best_verify;
    let sig = crate::ledger::sig_verify_rate(Duration::from_millis(600));
    Ok(PoiReport {
        receipts,
        threads: rayon::current_num_threads(),
        assemble_ms: best_assemble * 1e3,
        verify_ms: best_verify * 1e3,
        receipts_per_sec,
        sig_verifies_per_sec: sig,
        ratio: receipts_per_sec / sig,
    })
}
