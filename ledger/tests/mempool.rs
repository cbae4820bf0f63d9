//! The mempool: checked against the UTXO set, ordered by fee rate, conflicts refused,
//! bounded in bytes with the lowest fee rates evicted, and cleared by blocks.

mod common;

use common::*;
use fai_ledger::mempool::{Mempool, MempoolConfig, MempoolError};
use fai_ledger::testkit::{coinbase, spend};
use fai_ledger::{Chainstate, ConsensusError, OutPoint, Transaction, TxOut, Unlock};
use fai_primitives::Amount;

fn units(n: u64) -> Amount {
    Amount::from_units(n).unwrap()
}

/// A chain with `n` mature coins of 1.5 FAI for `w`.
fn chain_with_coins(w: &Wallet, n: u32) -> (Chainstate, Vec<(OutPoint, TxOut)>) {
    let mut chain = regtest();
    let coins = funded(&mut chain, w, n - 1);
    chain.take_events();
    (chain, coins)
}

fn pay(chain: &Chainstate, w: &Wallet, coin: &(OutPoint, TxOut), fee: u64) -> Transaction {
    let value = coin.1.value.checked_sub(units(fee)).unwrap();
    spend(
        chain,
        &[(coin.0, coin.1.clone(), w.key.clone())],
        vec![TxOut::pay(value, w.hash)],
    )
    .unwrap()
}

#[test]
fn transactions_are_selected_by_fee_rate() {
    let w = Wallet::new();
    let (chain, coins) = chain_with_coins(&w, 3);
    let mut pool = Mempool::new(MempoolConfig::default());
    let low = pool
        .accept(pay(&chain, &w, &coins[0], 1_000), &chain)
        .unwrap();
    let high = pool
        .accept(pay(&chain, &w, &coins[1], 90_000), &chain)
        .unwrap();
    let mid = pool
        .accept(pay(&chain, &w, &coins[2], 20_000), &chain)
        .unwrap();
    let order: Vec<_> = pool.select(1_000_000).iter().map(|e| e.txid).collect();
    assert_eq!(order, vec![high, mid, low]);
    // A small budget takes the best that fit.
    let size = pool.get(&high).unwrap().size;
    let order: Vec<_> = pool.select(size).iter().map(|e| e.txid).collect();
    assert_eq!(order, vec![high]);
    assert_eq!(pool.len(), 3);
}

#[test]
fn a_second_spend_of_a_coin_is_refused() {
    let w = Wallet::new();
    let (chain, coins) = chain_with_coins(&w, 1);
    let mut pool = Mempool::new(MempoolConfig::default());
    let first = pool
        .accept(pay(&chain, &w, &coins[0], 1_000), &chain)
        .unwrap();
    let err = pool
        .accept(pay(&chain, &w, &coins[0], 50_000), &chain)
        .unwrap_err();
    assert!(
        matches!(err, MempoolError::Conflict { other, .. } if other == first),
        "{err}"
    );
    let again = pool.get(&first).unwrap().tx.clone();
    assert!(matches!(
        pool.accept(again, &chain),
        Err(MempoolError::AlreadyKnown(_))
    ));
    assert_eq!(pool.len(), 1);
}

#[test]
fn invalid_transactions_are_refused_with_the_rule() {
    let w = Wallet::new();
    let (chain, coins) = chain_with_coins(&w, 1);
    let mut pool = Mempool::new(MempoolConfig::default());

    let mut forged = pay(&chain, &w, &coins[0], 1_000);
    if let Unlock::Key { signature, .. } = &mut forged.inputs[0].unlock {
        signature.0[0] ^= 1;
    }
    let err = pool.accept(forged, &chain).unwrap_err();
    assert!(
        matches!(err, MempoolError::Chain(ref e) if matches!(e.consensus(), Some(ConsensusError::BadSignature { .. }))),
        "{err}"
    );

    let ghost = (
        OutPoint::new(fai_ledger::Txid::default(), 3),
        coins[0].1.clone(),
    );
    let err = pool
        .accept(pay(&chain, &w, &ghost, 1_000), &chain)
        .unwrap_err();
    assert!(
        err.to_string().contains("missing or already spent"),
        "{err}"
    );

    let err = pool
        .accept(pay(&chain, &w, &coins[0], 10), &chain)
        .unwrap_err();
    assert!(matches!(err, MempoolError::FeeTooLow { .. }), "{err}");

    let err = pool
        .accept(coinbase(5, w.hash, units(1)), &chain)
        .unwrap_err();
    assert!(matches!(err, MempoolError::Coinbase));

    // A coinbase of the last block is not mature yet.
    let young = chain.block(&chain.tip_hash()).unwrap().unwrap();
    let young_coin = coinbase_coin(&young);
    let owner_tx = pay(&chain, &w, &young_coin, 1_000);
    let err = pool.accept(owner_tx, &chain).unwrap_err();
    assert!(
        matches!(err, MempoolError::Chain(ref e) if matches!(e.consensus(), Some(ConsensusError::ImmatureCoinbase { .. }))),
        "{err}"
    );
    assert!(pool.is_empty());
}

#[test]
fn a_full_pool_evicts_the_lowest_fee_rate() {
    let w = Wallet::new();
    let (chain, coins) = chain_with_coins(&w, 4);
    let one = pay(&chain, &w, &coins[0], 5_000);
    let size = one.size();
    // Room for three transactions of this size.
    let mut pool = Mempool::new(MempoolConfig {
        max_bytes: size * 3,
        min_fee_rate: 1_000,
    });
    let a = pool.accept(one, &chain).unwrap();
    let b = pool
        .accept(pay(&chain, &w, &coins[1], 9_000), &chain)
        .unwrap();
    let c = pool
        .accept(pay(&chain, &w, &coins[2], 2_000), &chain)
        .unwrap();
    // A fourth with a better rate pushes out the worst (c).
    let d = pool
        .accept(pay(&chain, &w, &coins[3], 7_000), &chain)
        .unwrap();
    assert!(!pool.contains(&c) && pool.contains(&a) && pool.contains(&b) && pool.contains(&d));
    assert!(pool.bytes() <= size * 3);
    // One worse than everything is refused outright and the pool is unchanged.
    let mut pool2 = Mempool::new(MempoolConfig {
        max_bytes: size * 3,
        min_fee_rate: 1_000,
    });
    for (coin, fee) in coins.iter().take(3).zip([5_000, 6_000, 7_000]) {
        pool2.accept(pay(&chain, &w, coin, fee), &chain).unwrap();
    }
    let err = pool2
        .accept(pay(&chain, &w, &coins[3], 1_000), &chain)
        .unwrap_err();
    assert!(matches!(err, MempoolError::Full(_)), "{err}");
    assert_eq!(pool2.len(), 3);
}

#[test]
fn a_block_removes_its_transactions_and_their_conflicts() {
    let w = Wallet::new();
    let (mut chain, coins) = chain_with_coins(&w, 2);
    let mut pool = Mempool::new(MempoolConfig::default());
    let in_pool = pool
        .accept(pay(&chain, &w, &coins[0], 1_000), &chain)
        .unwrap();
    let other = pool
        .accept(pay(&chain, &w, &coins[1], 1_000), &chain)
        .unwrap();
    // The block confirms a different spend of coin 0 and the pool's spend of coin 1.
    let rival = pay(&chain, &w, &coins[0], 3_000);
    let confirmed = pool.get(&other).unwrap().tx.clone();
    let b = block_with(&chain, vec![rival, confirmed]);
    chain.accept_block(b, now()).unwrap();
    pool.apply_chain_events(&chain.take_events(), &chain);
    assert!(!pool.contains(&in_pool), "conflict with the block");
    assert!(!pool.contains(&other), "confirmed");
    assert!(pool.is_empty());
}
