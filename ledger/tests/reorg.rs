//! Fork choice and reorganisations: the branch with the most work wins, UTXOs and the
//! mempool follow it, and a branch with less work is stored and kept aside.

mod common;

use common::*;
use fai_ledger::chainstate::{BlockStatus, ChainEvent};
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_ledger::testkit::{mine_on, spend};
use fai_ledger::{BlockOutcome, TxOut, UtxoView};
use fai_primitives::Amount;

#[test]
fn more_work_replaces_the_tip_and_restores_utxos_and_mempool() {
    let mut chain = regtest();
    let w = Wallet::new();
    let coin = funded(&mut chain, &w, 0).remove(0);
    chain.take_events();
    let fork = chain.tip_hash();
    let coins_at_fork = chain.all_coins().unwrap();

    // Branch A: one block confirming a payment.
    let pay = spend(
        &chain,
        &[(coin.0, coin.1.clone(), w.key.clone())],
        vec![TxOut::pay("1".parse().unwrap(), w.hash)],
    )
    .unwrap();
    let a1 = mine_on(&chain, fork, vec![pay.clone()], Wallet::new().hash, None).unwrap();
    assert_eq!(
        chain.accept_block(a1.clone(), now()).unwrap(),
        BlockOutcome::TipChanged
    );
    let mut mempool = Mempool::new(MempoolConfig::default());
    mempool.apply_chain_events(&chain.take_events(), &chain);
    assert!(
        chain.utxos().coin(&coin.0).unwrap().is_none(),
        "spent on branch A"
    );

    // Branch B, first block: equal work, seen later: kept aside.
    let b1 = mine_on(&chain, fork, vec![], Wallet::new().hash, None).unwrap();
    assert_eq!(
        chain.accept_block(b1.clone(), now()).unwrap(),
        BlockOutcome::SideBranch
    );
    assert_eq!(chain.tip_hash(), a1.hash());
    assert_eq!(
        chain.entry(&b1.hash()).unwrap().status,
        BlockStatus::HeaderValid
    );
    assert!(chain.take_events().is_empty());

    // Second block of B: more work: reorganise.
    let b2 = mine_on(&chain, b1.hash(), vec![], Wallet::new().hash, None).unwrap();
    assert_eq!(
        chain.accept_block(b2.clone(), now()).unwrap(),
        BlockOutcome::TipChanged
    );
    assert_eq!(chain.tip_hash(), b2.hash());
    let events = chain.take_events();
    let kinds: Vec<(bool, u32)> = events
        .iter()
        .map(|e| match e {
            ChainEvent::Connected { height, .. } => (true, *height),
            ChainEvent::Disconnected { height, .. } => (false, *height),
        })
        .collect();
    let h = chain.entry(&fork).unwrap().height;
    assert_eq!(kinds, vec![(false, h + 1), (true, h + 1), (true, h + 2)]);

    // The payment's coin is unspent again, and the payment is back in the mempool.
    let coins: std::collections::HashMap<_, _> = chain.all_coins().unwrap().into_iter().collect();
    assert!(coins.contains_key(&coin.0));
    // The index by owner followed the reorganisation: the wallet's coins are the coin
    // spent on A, back, and not A's payment.
    let mut mine = chain.coins_of(&w.hash).unwrap();
    mine.sort_by_key(|(o, _)| *o);
    let mut expected: Vec<_> = coins
        .iter()
        .filter(|(_, c)| c.output.kind == fai_ledger::OutputKind::PayToKeyHash(w.hash))
        .map(|(o, c)| (*o, c.clone()))
        .collect();
    expected.sort_by_key(|(o, _)| *o);
    assert_eq!(mine, expected);
    assert!(mine.iter().any(|(o, _)| *o == coin.0));
    assert!(!coins.contains_key(&fai_ledger::OutPoint::new(pay.txid(), 0)));
    for (op, c) in &coins_at_fork {
        assert_eq!(coins.get(op), Some(c), "coin of the fork point lost");
    }
    assert_eq!(
        coins.len(),
        coins_at_fork.len() + 2,
        "plus the coinbases of b1 and b2"
    );
    let mut choosy = Mempool::new(MempoolConfig::default());
    choosy.apply_chain_events_returning(&events, &chain, |tx| tx.txid() != pay.txid());
    assert!(
        !choosy.contains(&pay.txid()),
        "a disconnected transaction the caller does not want back stays out"
    );
    mempool.apply_chain_events(&events, &chain);
    assert!(
        mempool.contains(&pay.txid()),
        "a disconnected transaction returns to the mempool"
    );

    // A grows back past B: the payment confirms again and leaves the mempool.
    let a2 = mine_on(&chain, a1.hash(), vec![], Wallet::new().hash, None).unwrap();
    chain.accept_block(a2.clone(), now()).unwrap();
    assert_eq!(
        chain.tip_hash(),
        b2.hash(),
        "equal work: the first seen stays"
    );
    let a3 = mine_on(&chain, a2.hash(), vec![], Wallet::new().hash, None).unwrap();
    chain.accept_block(a3.clone(), now()).unwrap();
    assert_eq!(chain.tip_hash(), a3.hash());
    mempool.apply_chain_events(&chain.take_events(), &chain);
    assert!(!mempool.contains(&pay.txid()));
    assert!(chain.is_active(&a1.hash()) && !chain.is_active(&b1.hash()));
}

#[test]
fn a_deep_reorganisation_restores_the_exact_utxo_set() {
    let mut chain = regtest();
    let w = Wallet::new();
    let coins = funded(&mut chain, &w, 5);
    let fork = chain.tip_hash();
    let snapshot = chain.all_coins().unwrap();
    let supply = chain.supply();

    // Branch A: 20 blocks, spending the mature coins along the way.
    let mut parent = fork;
    for i in 0..20 {
        let txs = match coins.get(i) {
            Some(c) => vec![spend(
                &chain,
                &[(c.0, c.1.clone(), w.key.clone())],
                vec![TxOut::pay(Amount::from_units(1000).unwrap(), w.hash)],
            )
            .unwrap()],
            None => vec![],
        };
        let b = mine_on(&chain, parent, txs, Wallet::new().hash, None).unwrap();
        chain.accept_block(b.clone(), now()).unwrap();
        parent = b.hash();
    }
    assert_eq!(chain.height(), 101 + 5 + 20);
    // Branch B: 21 empty blocks from the fork.
    let mut parent = fork;
    for _ in 0..21 {
        let b = mine_on(&chain, parent, vec![], Wallet::new().hash, None).unwrap();
        chain.accept_block(b.clone(), now()).unwrap();
        parent = b.hash();
    }
    assert_eq!(chain.tip_hash(), parent);
    let coins_now: std::collections::HashMap<_, _> =
        chain.all_coins().unwrap().into_iter().collect();
    for (op, c) in &snapshot {
        assert_eq!(coins_now.get(op), Some(c));
    }
    assert_eq!(coins_now.len(), snapshot.len() + 21);
    let subsidy = chain.params().block_subsidy(chain.height());
    assert_eq!(
        chain.supply(),
        supply
            .checked_add(subsidy.checked_mul(21).unwrap())
            .unwrap()
    );
}

#[test]
fn blocks_that_arrive_before_their_parents_wait_and_then_connect() {
    // Build five blocks on a scratch chain, then feed them to another in reverse order.
    let mut source = regtest();
    let blocks = fai_ledger::testkit::extend(&mut source, 5, Wallet::new().hash, now()).unwrap();
    let mut chain = regtest();
    for b in blocks.iter().skip(1).rev() {
        assert_eq!(
            chain.accept_block(b.clone(), now()).unwrap(),
            BlockOutcome::Orphan
        );
        assert_eq!(chain.height(), 0);
    }
    assert_eq!(chain.orphan_count(), 4);
    assert_eq!(
        chain.accept_block(blocks[1].clone(), now()).unwrap(),
        BlockOutcome::Duplicate
    );
    assert_eq!(
        chain.accept_block(blocks[0].clone(), now()).unwrap(),
        BlockOutcome::TipChanged
    );
    assert_eq!(chain.height(), 5);
    assert_eq!(chain.tip_hash(), source.tip_hash());
    assert_eq!(chain.orphan_count(), 0);
    assert_eq!(chain.take_events().len(), 5);
}

#[test]
fn the_orphan_pool_is_bounded() {
    let chain = regtest();
    let mut target = regtest();
    // Valid-looking blocks whose parents nobody has.
    for i in 0..(fai_ledger::chainstate::MAX_ORPHANS + 40) {
        let mut b = block_with(&chain, vec![]);
        b.header.prev = fai_primitives::Hash256::sha256d(&(i as u64).to_le_bytes());
        let b = fai_ledger::testkit::reseal(b);
        assert_eq!(target.accept_block(b, now()).unwrap(), BlockOutcome::Orphan);
    }
    assert_eq!(target.orphan_count(), fai_ledger::chainstate::MAX_ORPHANS);
    assert_eq!(target.height(), 0);
}

/// Attack: a peer gossips blocks of a fork from far back. Under ASERT such a fork drops to
/// the proof-of-work limit, so each block costs nearly nothing; before, every one with a
/// known parent was stored (and relayed), and a peer could fill every node's disk. A
/// block nobody asked for is now stored only if its chain has at least the active
/// chain's work; the sync, which asks for a branch once its headers show more work,
/// still stores what it asked for.
#[test]
fn an_unrequested_block_of_a_branch_with_less_work_is_not_stored() {
    let mut chain = regtest();
    let genesis = chain.tip_hash();
    let mut tip = genesis;
    for _ in 0..20 {
        let b = mine_on(&chain, tip, vec![], Wallet::new().hash, None).unwrap();
        tip = b.hash();
        chain.accept_block(b, now()).unwrap();
    }
    let early = chain.hash_at(1).unwrap();

    // A fork from height 1: less work than the active chain, refused, not stored.
    let mut fork_tip = early;
    for _ in 0..5 {
        let b = mine_on(&chain, fork_tip, vec![], Wallet::new().hash, None).unwrap();
        let hash = b.hash();
        let err = chain
            .accept_unrequested_block(b.clone(), now())
            .unwrap_err();
        assert!(
            matches!(err, fai_ledger::ChainError::TooLittleWork(h) if h == hash),
            "{err}"
        );
        assert!(
            chain.entry(&hash).is_none(),
            "a cheap side block was stored"
        );
        // Asked for (the sync), the same block is stored aside.
        assert_eq!(
            chain.accept_block(b, now()).unwrap(),
            BlockOutcome::SideBranch
        );
        fork_tip = hash;
    }
    assert_eq!(chain.tip_hash(), tip);

    // A sibling of the tip (as much work) is taken, a child of the tip too.
    let parent = chain.hash_at(19).unwrap();
    let sibling = mine_on(&chain, parent, vec![], Wallet::new().hash, None).unwrap();
    assert_eq!(
        chain.accept_unrequested_block(sibling, now()).unwrap(),
        BlockOutcome::SideBranch
    );
    let child = mine_on(&chain, tip, vec![], Wallet::new().hash, None).unwrap();
    let child_hash = child.hash();
    assert_eq!(
        chain.accept_unrequested_block(child, now()).unwrap(),
        BlockOutcome::TipChanged
    );
    assert_eq!(chain.tip_hash(), child_hash);
}

/// The best chain is chosen among every stored block by work, then by arrival, however
/// many side blocks are stored: the first seen among equals stays, a branch that
/// overtakes wins.
#[test]
fn the_best_candidate_is_the_most_work_first_seen_among_many_side_blocks() {
    let mut chain = regtest();
    let genesis = chain.tip_hash();
    // Thirty side branches of three blocks each from genesis, and the active chain.
    for _ in 0..30 {
        let mut t = genesis;
        for _ in 0..3 {
            let b = mine_on(&chain, t, vec![], Wallet::new().hash, None).unwrap();
            t = b.hash();
            chain.accept_block(b, now()).unwrap();
        }
    }
    // The first branch of three seen is the tip (equal work: first seen stays).
    let first_tip = chain.tip_hash();
    assert_eq!(chain.height(), 3);
    // A fresh branch of four overtakes them all.
    let mut other = genesis;
    for _ in 0..4 {
        let b = mine_on(&chain, other, vec![], Wallet::new().hash, None).unwrap();
        other = b.hash();
        chain.accept_block(b, now()).unwrap();
    }
    assert_ne!(other, first_tip);
    assert_eq!(chain.tip_hash(), other);
    assert_eq!(chain.height(), 4);
}
