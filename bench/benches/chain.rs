//! `cargo bench -p fai-bench`: Criterion's statistics over the hot paths that
//! `infer-node bench pow`, `validate` and `poi` measure against the machine's limits: a
//! batch of header hashes, connecting a block of transactions (to an in-memory store, so
//! that the disk stays out of the comparison between two builds), and assembling and
//! verifying an inference block of receipts.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fai_ledger::chainstate::SCHEMA;
use fai_ledger::miner::scan;
use fai_ledger::pow::MidstateHasher;
use fai_ledger::{ChainParams, Chainstate};
use fai_primitives::{Network, SecretKey};
use primitive_types::U256;

const HASHES: u32 = 1 << 16;
const TRANSACTIONS: usize = 200;
const RECEIPTS: usize = 1000;

fn pow(c: &mut Criterion) {
    let header = ChainParams::for_network(Network::Devnet)
        .genesis_block()
        .header
        .to_array();
    // A target no hash meets: every nonce of the batch is hashed.
    let hasher = MidstateHasher::new(&header, U256::zero());
    let mut group = c.benchmark_group("pow");
    group.throughput(Throughput::Elements(u64::from(HASHES)));
    let mut start = 0u32;
    group.bench_function("scan", |b| {
        b.iter(|| {
            start = start.wrapping_add(HASHES);
            std::hint::black_box(scan(&hasher, start, HASHES))
        })
    });
    group.finish();
}

fn validate(c: &mut Criterion) {
    let fixture = fai_bench::ledger::validate_fixture(TRANSACTIONS).expect("fixture");
    let now = fai_node::node::unix_now();
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(TRANSACTIONS as u64));
    group.sample_size(10);
    group.bench_function("connect", |b| {
        b.iter_batched(
            || {
                let store = fai_storage::MemoryStore::open(SCHEMA).expect("store");
                let params = ChainParams::for_network(Network::Regtest);
                let mut chain = Chainstate::open(Arc::new(store), params).expect("chain");
                for block in &fixture.setup {
                    chain.accept_block(block.clone(), now).expect("setup block");
                }
                (chain, fixture.measured.clone())
            },
            // The chain is handed back, so that dropping it stays out of the measurement.
            |(mut chain, block)| {
                chain.accept_block(block, now).expect("measured block");
                chain
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn poi(c: &mut Criterion) {
    let producer = SecretKey::generate();
    let list = fai_bench::poi::inferences(RECEIPTS);
    let (bytes, paid) = fai_bench::poi::assemble(&list, &producer).expect("block");
    let mut group = c.benchmark_group("poi");
    group.throughput(Throughput::Elements(RECEIPTS as u64));
    group.sample_size(10);
    group.bench_function("assemble", |b| {
        b.iter(|| fai_bench::poi::assemble(&list, &producer).expect("block"))
    });
    group.bench_function("verify", |b| {
        b.iter(|| fai_bench::poi::verify(&bytes, paid).expect("valid block"))
    });
    group.finish();
}

criterion_group!(benches, pow, validate, poi);
criterion_main!(benches);
