//! Every consensus rule of the ledger, each broken by one block or transaction that the
//! chain must refuse with that rule's error, leaving the chain as it was.

mod common;

use common::*;
use fai_ledger::testkit::{coinbase, mine, reseal, spend};
use fai_ledger::tx::Unlock;
use fai_ledger::validation::connect::{connect_block, ledger_supply_cap};
use fai_ledger::validation::stateless::check_transaction;
use fai_ledger::{
    Block, ChainError, Chainstate, ConsensusError, OutPoint, Transaction, TxIn, TxOut, Txid,
};
use fai_primitives::{Amount, Hash256, Signature};

/// Submits `block`, expects it refused, and checks the chain did not move.
fn refused(chain: &mut Chainstate, block: Block) -> ConsensusError {
    let tip = chain.tip_hash();
    let height = chain.height();
    let err = chain.accept_block(block.clone(), now()).unwrap_err();
    assert_eq!(chain.tip_hash(), tip);
    assert_eq!(chain.height(), height);
    assert!(chain.entry(&block.hash()).is_none() || !chain.is_active(&block.hash()));
    match err {
        ChainError::Consensus(e) => e,
        other => panic!("expected a consensus error, got {other}"),
    }
}

/// Mines `txs` into a block on the tip and expects it refused.
fn refused_txs(chain: &mut Chainstate, txs: Vec<Transaction>) -> ConsensusError {
    let block = block_with(chain, txs);
    refused(chain, block)
}

/// A chain with mature coins, the wallet that owns them, and one coin to spend.
fn setup() -> (Chainstate, Wallet, (OutPoint, TxOut)) {
    let mut chain = regtest();
    let w = Wallet::new();
    let coin = funded(&mut chain, &w, 0).remove(0);
    (chain, w, coin)
}

fn pay_tx(chain: &Chainstate, w: &Wallet, coin: &(OutPoint, TxOut), value: Amount) -> Transaction {
    spend(
        chain,
        &[(coin.0, coin.1.clone(), w.key.clone())],
        vec![TxOut::pay(value, w.hash)],
    )
    .unwrap()
}

fn fai(s: &str) -> Amount {
    s.parse().unwrap()
}

#[test]
fn a_transaction_without_inputs_or_outputs_is_refused() {
    let (mut chain, w, coin) = setup();
    let mut tx = pay_tx(&chain, &w, &coin, fai("1"));
    tx.inputs.clear();
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(matches!(e, ConsensusError::NoInputs(_)), "{e}");

    let mut tx = pay_tx(&chain, &w, &coin, fai("1"));
    tx.outputs.clear();
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(matches!(e, ConsensusError::NoOutputs(_)), "{e}");
}

#[test]
fn an_oversized_transaction_is_refused() {
    let (chain, w, coin) = setup();
    let tx = pay_tx(&chain, &w, &coin, fai("1"));
    let e = check_transaction(&tx, 100).unwrap_err();
    assert!(
        matches!(e, ConsensusError::TxTooLarge { max: 100, .. }),
        "{e}"
    );
}

#[test]
fn outputs_above_the_supply_are_refused() {
    let (mut chain, w, coin) = setup();
    let mut tx = pay_tx(&chain, &w, &coin, fai("1"));
    tx.outputs = vec![
        TxOut::pay(Amount::MAX, w.hash),
        TxOut::pay(Amount::MAX, w.hash),
    ];
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(matches!(e, ConsensusError::OutputsOutOfRange(_)), "{e}");
}

#[test]
fn a_data_output_above_80_bytes_is_refused_and_80_is_fine() {
    let (mut chain, w, coin) = setup();
    let mut tx = pay_tx(&chain, &w, &coin, fai("1"));
    tx.outputs.push(TxOut::data(Amount::ZERO, vec![1; 81]));
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(
        matches!(e, ConsensusError::DataOutputTooLarge { len: 81, .. }),
        "{e}"
    );

    let ok = spend(
        &chain,
        &[(coin.0, coin.1.clone(), w.key.clone())],
        vec![
            TxOut::pay(fai("1"), w.hash),
            TxOut::data(Amount::ZERO, vec![1; 80]),
        ],
    )
    .unwrap();
    let b = block_with(&chain, vec![ok]);
    chain.accept_block(b, now()).unwrap();
}

#[test]
fn spending_one_coin_twice_in_a_transaction_is_refused() {
    let (mut chain, w, coin) = setup();
    let tx = spend(
        &chain,
        &[
            (coin.0, coin.1.clone(), w.key.clone()),
            (coin.0, coin.1.clone(), w.key.clone()),
        ],
        vec![TxOut::pay(fai("1"), w.hash)],
    )
    .unwrap();
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(matches!(e, ConsensusError::DuplicateInput { .. }), "{e}");
}

#[test]
fn a_null_outpoint_outside_the_coinbase_is_refused() {
    let (mut chain, w, coin) = setup();
    let mut tx = pay_tx(&chain, &w, &coin, fai("1"));
    tx.inputs.push(TxIn {
        prevout: OutPoint::NULL,
        sequence: 0,
        unlock: Unlock::Coinbase(vec![0; 4]),
    });
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(matches!(e, ConsensusError::NullPrevout(_)), "{e}");
}

#[test]
fn coinbase_data_must_be_4_to_100_bytes() {
    let mut chain = regtest();
    let mut b = block_with(&chain, vec![]);
    b.transactions[0].inputs[0].unlock = Unlock::Coinbase(vec![1, 0, 0]);
    let e = refused(&mut chain, mine(b));
    assert_eq!(e, ConsensusError::CoinbaseDataLength(3));
}

#[test]
fn a_hash_above_the_target_is_refused() {
    let mut chain = regtest();
    let mut b = block_with(&chain, vec![]);
    // Regtest accepts about half of all hashes; find a nonce it does not.
    let target = fai_ledger::pow::target_from_compact(b.header.bits).unwrap();
    while fai_ledger::pow::hash_meets_target(&b.hash(), &target) {
        b.header.nonce += 1;
    }
    assert_eq!(refused(&mut chain, b), ConsensusError::HighHash);
}

#[test]
fn bad_compact_targets_and_targets_above_the_limit_are_refused() {
    let mut chain = regtest();
    let mut b = block_with(&chain, vec![]);
    b.header.bits = 0x0492_3456;
    assert!(matches!(
        refused(&mut chain, b.clone()),
        ConsensusError::BadBits(_)
    ));
    b.header.bits = 0x2100_ffff;
    assert_eq!(
        refused(&mut chain, reseal(b)),
        ConsensusError::TargetAboveLimit
    );
}

#[test]
fn a_block_above_the_size_limit_is_refused() {
    let mut params = regtest_params();
    params.max_block_size = 2_000;
    let mut chain = chain_with(params);
    let mut b = block_with(&chain, vec![]);
    let w = Wallet::new();
    for _ in 0..100 {
        b.transactions[0]
            .outputs
            .push(TxOut::pay(Amount::ZERO, w.hash));
    }
    let e = refused(&mut chain, mine(b));
    assert!(
        matches!(e, ConsensusError::BlockTooLarge { max: 2_000, .. }),
        "{e}"
    );
}

#[test]
fn the_coinbase_must_come_first_and_alone() {
    let (mut chain, w, coin) = setup();
    let tx = pay_tx(&chain, &w, &coin, fai("1"));
    let mut b = block_with(&chain, vec![tx]);
    b.transactions.swap(0, 1);
    assert_eq!(
        refused(&mut chain, mine(b)),
        ConsensusError::FirstTxNotCoinbase
    );

    let mut b = block_with(&chain, vec![]);
    let (height, ..) = chain.next_block_context().unwrap();
    b.transactions.push(coinbase(height, w.hash, Amount::ZERO));
    assert_eq!(
        refused(&mut chain, mine(b)),
        ConsensusError::ExtraCoinbase(1)
    );
}

#[test]
fn the_merkle_root_must_match_and_not_be_mutated() {
    let mut chain = regtest();
    let w = Wallet::new();
    let coins = funded(&mut chain, &w, 1);
    let mut b = block_with(&chain, vec![]);
    b.header.merkle_root = Hash256([9; 32]);
    assert_eq!(
        refused(&mut chain, reseal(b)),
        ConsensusError::BadMerkleRoot
    );

    // [cb, a, b] and [cb, a, b, b] share a root: the second is a mutated copy.
    let a = pay_tx(&chain, &w, &coins[0], fai("1"));
    let b2 = pay_tx(&chain, &w, &coins[1], fai("1"));
    let good = block_with(&chain, vec![a, b2.clone()]);
    let mut dup = good.clone();
    dup.transactions.push(b2);
    assert_eq!(dup.compute_merkle_root().0, good.header.merkle_root);
    assert_eq!(refused(&mut chain, dup), ConsensusError::MutatedMerkle);
    // The genuine block with that header is still accepted afterwards.
    chain.accept_block(good, now()).unwrap();
}

#[test]
fn a_transaction_twice_in_a_block_is_refused() {
    let mut chain = regtest();
    let w = Wallet::new();
    let coins = funded(&mut chain, &w, 1);
    let a = pay_tx(&chain, &w, &coins[0], fai("1"));
    let b2 = pay_tx(&chain, &w, &coins[1], fai("1"));
    // [cb, a, b, a]: no identical siblings, so only the duplicate rule catches it.
    let b = block_with(&chain, vec![a.clone(), b2, a]);
    let e = refused(&mut chain, b);
    assert!(matches!(e, ConsensusError::DuplicateTransaction(_)), "{e}");
}

#[test]
fn header_version_difficulty_and_time_are_checked_against_the_parent() {
    let mut chain = regtest();
    fai_ledger::testkit::extend(&mut chain, 12, Wallet::new().hash, now()).unwrap();

    let mut b = block_with(&chain, vec![]);
    b.header.version = 0;
    assert_eq!(
        refused(&mut chain, reseal(b)),
        ConsensusError::BadVersion(0)
    );

    let mut b = block_with(&chain, vec![]);
    b.header.bits = 0x2000_ffff; // harder than required: still wrong
    assert_eq!(
        refused(&mut chain, reseal(b)),
        ConsensusError::BadDifficulty {
            found: 0x2000_ffff,
            expected: 0x207f_ffff
        }
    );

    let mut b = block_with(&chain, vec![]);
    let mtp = chain.median_time_past(&chain.tip_hash());
    b.header.time = mtp;
    assert_eq!(
        refused(&mut chain, reseal(b)),
        ConsensusError::TimeTooOld {
            time: mtp,
            median: mtp
        }
    );

    let mut b = block_with(&chain, vec![]);
    let clock = now();
    b.header.time = u32::try_from(clock + 7_200 + 10).unwrap();
    let err = chain.accept_block(reseal(b), clock).unwrap_err();
    assert!(
        matches!(err.consensus(), Some(ConsensusError::TimeTooNew { .. })),
        "{err}"
    );
}

#[test]
fn the_coinbase_commits_to_its_height() {
    let mut chain = regtest();
    let mut b = block_with(&chain, vec![]);
    b.transactions[0].inputs[0].unlock = Unlock::Coinbase(7u32.to_le_bytes().to_vec());
    assert_eq!(
        refused(&mut chain, mine(b)),
        ConsensusError::BadCoinbaseHeight {
            expected: 1,
            found: Some(7)
        }
    );
}

#[test]
fn a_transaction_locked_until_a_later_height_is_not_final() {
    let (mut chain, w, coin) = setup();
    let mut tx = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: coin.0,
            sequence: 0,
            unlock: Unlock::Coinbase(vec![]),
        }],
        outputs: vec![TxOut::pay(fai("1"), w.hash)],
        lock_time: chain.height() + 10,
    };
    fai_ledger::sighash::sign_transaction(
        &mut tx,
        chain.params().magic,
        &[(coin.1.clone(), w.key.clone())],
    )
    .unwrap();
    let e = refused_txs(&mut chain, vec![tx.clone()]);
    assert!(matches!(e, ConsensusError::NonFinal(_)), "{e}");
    // With final sequences the same lock time is ignored.
    tx.inputs[0].sequence = u32::MAX;
    fai_ledger::sighash::sign_transaction(
        &mut tx,
        chain.params().magic,
        &[(coin.1.clone(), w.key.clone())],
    )
    .unwrap();
    chain
        .accept_block(block_with(&chain, vec![tx]), now())
        .unwrap();
}

#[test]
fn spending_a_missing_or_spent_coin_is_refused() {
    let (mut chain, w, coin) = setup();
    let ghost = (OutPoint::new(Txid(Hash256([5; 32])), 0), coin.1.clone());
    let tx = pay_tx(&chain, &w, &ghost, fai("1"));
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(matches!(e, ConsensusError::MissingInput { .. }), "{e}");

    // Two transactions of one block spending the same coin.
    let a = pay_tx(&chain, &w, &coin, fai("1"));
    let b = pay_tx(&chain, &w, &coin, fai("1.1"));
    let e = refused_txs(&mut chain, vec![a.clone(), b]);
    assert!(matches!(e, ConsensusError::MissingInput { .. }), "{e}");

    // Spent in an earlier block.
    chain
        .accept_block(block_with(&chain, vec![a]), now())
        .unwrap();
    let again = pay_tx(&chain, &w, &coin, fai("1.2"));
    let e = refused_txs(&mut chain, vec![again]);
    assert!(matches!(e, ConsensusError::MissingInput { .. }), "{e}");
}

#[test]
fn a_coinbase_spent_before_100_confirmations_is_refused() {
    let mut chain = regtest();
    let w = Wallet::new();
    let blocks = fai_ledger::testkit::extend(&mut chain, 50, w.hash, now()).unwrap();
    let coin = coinbase_coin(&blocks[0]);
    let tx = pay_tx(&chain, &w, &coin, fai("1"));
    let e = refused_txs(&mut chain, vec![tx]);
    assert_eq!(
        e,
        ConsensusError::ImmatureCoinbase {
            txid: e_txid(&e),
            confirmations: 50,
            required: 100
        }
    );
}

fn e_txid(e: &ConsensusError) -> Txid {
    match e {
        ConsensusError::ImmatureCoinbase { txid, .. } => *txid,
        _ => Txid::default(),
    }
}

#[test]
fn paying_out_more_than_the_inputs_is_refused() {
    let (mut chain, w, coin) = setup();
    let tx = pay_tx(&chain, &w, &coin, fai("1.50000001"));
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(matches!(e, ConsensusError::InputsBelowOutputs(_)), "{e}");
}

#[test]
fn the_wrong_key_or_a_bad_signature_is_refused() {
    let (mut chain, w, coin) = setup();
    let thief = Wallet::new();
    let mut tx = pay_tx(&chain, &w, &coin, fai("1"));
    let Unlock::Key { signature, .. } = tx.inputs[0].unlock.clone() else {
        unreachable!()
    };
    tx.inputs[0].unlock = Unlock::Key {
        pubkey: thief.key.public_key(),
        signature,
    };
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(
        matches!(e, ConsensusError::KeyMismatch { input: 0, .. }),
        "{e}"
    );

    let mut tx = pay_tx(&chain, &w, &coin, fai("1"));
    if let Unlock::Key { signature, .. } = &mut tx.inputs[0].unlock {
        signature.0[5] ^= 0x40;
    }
    let e = refused_txs(&mut chain, vec![tx]);
    assert!(
        matches!(e, ConsensusError::BadSignature { input: 0, .. }),
        "{e}"
    );

    // A signature made for other outputs does not carry over.
    let honest = pay_tx(&chain, &w, &coin, fai("1"));
    let mut moved = honest.clone();
    moved.outputs[0] = TxOut::pay(fai("1"), thief.hash);
    let e = refused_txs(&mut chain, vec![moved]);
    assert!(matches!(e, ConsensusError::BadSignature { .. }), "{e}");
    let zero = Unlock::Key {
        pubkey: w.key.public_key(),
        signature: Signature([0; 64]),
    };
    let mut unsigned = honest;
    unsigned.inputs[0].unlock = zero;
    let e = refused_txs(&mut chain, vec![unsigned]);
    assert!(matches!(e, ConsensusError::BadSignature { .. }), "{e}");
}

#[test]
fn the_coinbase_may_claim_subsidy_plus_fees_and_no_more() {
    let (mut chain, w, coin) = setup();
    let tx = pay_tx(&chain, &w, &coin, fai("1")); // fee 0.5 FAI
    let (height, ..) = chain.next_block_context().unwrap();
    let allowed = chain
        .params()
        .block_subsidy(height)
        .checked_add(fai("0.5"))
        .unwrap();
    let too_much = allowed.checked_add(Amount::from_units(1).unwrap()).unwrap();
    let b =
        fai_ledger::testkit::mine_on_tip(&chain, vec![tx.clone()], w.hash, Some(too_much)).unwrap();
    assert_eq!(
        refused(&mut chain, b),
        ConsensusError::CoinbaseTooLarge {
            claimed: too_much,
            allowed
        }
    );
    let b = fai_ledger::testkit::mine_on_tip(&chain, vec![tx], w.hash, Some(allowed)).unwrap();
    chain.accept_block(b, now()).unwrap();
}

#[test]
fn the_ledger_supply_cap_is_a_consensus_rule() {
    let chain = regtest();
    let b = block_with(&chain, vec![]);
    let cap = ledger_supply_cap(chain.params());
    // The real schedule: within the cap from zero ...
    let view = std::collections::HashMap::new();
    connect_block(&b, 1, 0, &view, chain.params(), Amount::ZERO).unwrap();
    // ... and a block that would carry the supply past it is refused.
    let nearly = cap.checked_sub(Amount::from_units(1).unwrap()).unwrap();
    let err = connect_block(&b, 1, 0, &view, chain.params(), nearly).unwrap_err();
    assert!(
        matches!(err.consensus(), Some(ConsensusError::SupplyCapExceeded)),
        "{err}"
    );
}

#[test]
fn a_block_that_fails_to_connect_is_remembered_and_its_children_refused() {
    let (mut chain, w, coin) = setup();
    // Valid on its own, but it overspends: stored, fails when connected, marked invalid.
    let tx = pay_tx(&chain, &w, &coin, fai("1.50000001"));
    let bad = block_with(&chain, vec![tx]);
    let e = refused(&mut chain, bad.clone());
    assert!(matches!(e, ConsensusError::InputsBelowOutputs(_)), "{e}");
    assert_eq!(
        chain.entry(&bad.hash()).map(|e| e.status),
        Some(fai_ledger::chainstate::BlockStatus::Failed)
    );
    let mut child = bad.clone();
    child.header.prev = bad.hash();
    child.transactions = vec![coinbase(chain.height() + 2, w.hash, Amount::ZERO)];
    let err = chain.accept_block(mine(child), now()).unwrap_err();
    assert!(
        matches!(err, ChainError::InvalidAncestor(h) if h == bad.hash()),
        "{err}"
    );
    // Sending the bad block again gives the same answer without work.
    assert!(matches!(
        chain.accept_block(bad, now()),
        Err(ChainError::InvalidAncestor(_))
    ));
}

#[test]
fn difficulty_follows_the_schedule_from_block_one() {
    // A devnet-like chain with easy targets: 10-minute spacing, 10-minute half-life.
    let mut params = regtest_params();
    params.no_retarget = false;
    params.genesis_bits = 0x2000_ffff;
    params.target_spacing = 600;
    params.half_life = 600;
    let mut chain = chain_with(params.clone());
    let genesis = chain.tip_hash();
    // Blocks one second apart run ahead of schedule: each doubles the difficulty.
    fai_ledger::testkit::extend(&mut chain, 4, Wallet::new().hash, now()).unwrap();
    let bits = chain.required_bits(&chain.tip_hash()).unwrap();
    let target = fai_ledger::pow::target_from_compact(bits).unwrap();
    let genesis_target = fai_ledger::pow::target_from_compact(params.genesis_bits).unwrap();
    assert!(target < genesis_target >> 2, "{bits:#x}");
    // A block at the genesis difficulty is now refused.
    let mut b = block_with(&chain, vec![]);
    b.header.bits = params.genesis_bits;
    assert!(matches!(
        refused(&mut chain, reseal(b)),
        ConsensusError::BadDifficulty { .. }
    ));
    // A branch from genesis has its own block 1 and its own schedule.
    let side =
        fai_ledger::testkit::mine_on(&chain, genesis, vec![], Wallet::new().hash, None).unwrap();
    assert_eq!(side.header.bits, params.genesis_bits);
    chain.accept_block(side.clone(), now()).unwrap();
    assert_eq!(
        chain.required_bits(&side.hash()).unwrap(),
        params.genesis_bits
    );
}
