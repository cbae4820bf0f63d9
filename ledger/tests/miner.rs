//! The miner: templates carry the mempool's best transactions and pay subsidy plus fees;
//! the nonce search finds valid blocks on several threads and stops when told.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_ledger::miner::{solve, BlockTemplate};
use fai_ledger::testkit::spend;
use fai_ledger::{BlockOutcome, ChainParams, TxOut};
use fai_primitives::{Amount, Network};

#[test]
fn a_template_mines_the_mempool_and_pays_subsidy_plus_fees() {
    let w = Wallet::new();
    let mut chain = regtest();
    let coins = funded(&mut chain, &w, 1);
    chain.take_events();
    let mut pool = Mempool::new(MempoolConfig::default());
    let fee = Amount::from_units(12_345).unwrap();
    for c in &coins {
        let tx = spend(
            &chain,
            &[(c.0, c.1.clone(), w.key.clone())],
            vec![TxOut::pay(c.1.value.checked_sub(fee).unwrap(), w.hash)],
        )
        .unwrap();
        pool.accept(tx, &chain).unwrap();
    }
    let miner = Wallet::new();
    let template = BlockTemplate::build(&chain, &pool, miner.hash, now()).unwrap();
    assert_eq!(template.block.transactions.len(), 3);
    assert_eq!(template.fees, fee.checked_mul(2).unwrap());
    let block = solve(&template, 2, &|| false).expect("regtest blocks are easy");
    let reward = block.transactions[0].outputs[0].value;
    assert_eq!(
        reward,
        chain
            .params()
            .block_subsidy(template.height)
            .checked_add(template.fees)
            .unwrap()
    );
    assert_eq!(
        chain.accept_block(block, now()).unwrap(),
        BlockOutcome::TipChanged
    );
    pool.apply_chain_events(&chain.take_events(), &chain);
    assert!(pool.is_empty());
}

#[test]
fn threads_search_different_coinbases_and_all_find_valid_blocks() {
    let mut chain = regtest();
    let pool = Mempool::new(MempoolConfig::default());
    let payout = Wallet::new().hash;
    for _ in 0..10 {
        let template = BlockTemplate::build(&chain, &pool, payout, now()).unwrap();
        let block = solve(&template, 3, &|| false).unwrap();
        chain.accept_block(block, now()).unwrap();
    }
    assert_eq!(chain.height(), 10);
}

#[test]
fn the_search_stops_when_asked() {
    // Devnet's first blocks need about 2^24 hashes: long enough to be interrupted.
    let chain = chain_with(ChainParams::for_network(Network::Devnet));
    let pool = Mempool::new(MempoolConfig::default());
    let template = BlockTemplate::build(&chain, &pool, Wallet::new().hash, now()).unwrap();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let h = s.spawn(|| solve(&template, 2, &|| stop.load(Ordering::Relaxed)));
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap()
    });
    // Either it was interrupted, or (rarely) it found a block first; both end promptly.
    assert!(started.elapsed() < Duration::from_secs(5));
    if let Some(b) = result {
        assert!(fai_ledger::validation::stateless::check_block(&b, chain.params()).is_ok());
    }
}
