//! The chain on RocksDB: it survives a restart exactly, refuses another network's data,
//! and bad blocks leave it untouched.

mod common;

use std::sync::Arc;

use common::*;
use fai_ledger::chainstate::SCHEMA;
use fai_ledger::testkit::{extend, mine_on_tip, spend};
use fai_ledger::{Block, ChainError, ChainParams, Chainstate, TxOut};
use fai_primitives::{Amount, CodecError, Decode, Encode, Network};
use fai_storage::RocksStore;

fn open(dir: &std::path::Path, network: Network) -> Result<Chainstate, ChainError> {
    let store = RocksStore::open(dir, SCHEMA)?;
    Chainstate::open(Arc::new(store), ChainParams::for_network(network))
}

#[test]
fn fifty_blocks_survive_a_restart_with_the_same_tip_and_utxo_set() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wallet::new();
    let (tip, height, coins, supply) = {
        let mut chain = open(dir.path(), Network::Regtest).unwrap();
        let blocks = extend(&mut chain, 101, w.hash, now()).unwrap();
        // Some spends so the UTXO set is more than coinbases.
        let cb = coinbase_coin(&blocks[0]);
        let tx = spend(
            &chain,
            &[(cb.0, cb.1, w.key.clone())],
            vec![TxOut::pay(Amount::from_units(7).unwrap(), w.hash); 5],
        )
        .unwrap();
        let b = mine_on_tip(&chain, vec![tx], w.hash, None).unwrap();
        chain.accept_block(b, now()).unwrap();
        extend(&mut chain, 50, w.hash, now()).unwrap();
        (
            chain.tip_hash(),
            chain.height(),
            chain.all_coins().unwrap(),
            chain.supply(),
        )
    };
    let chain = open(dir.path(), Network::Regtest).unwrap();
    assert_eq!(chain.tip_hash(), tip);
    assert_eq!(chain.height(), height);
    assert_eq!(chain.height(), 152);
    assert_eq!(chain.all_coins().unwrap(), coins);
    assert_eq!(chain.supply(), supply);
    assert_eq!(chain.hash_at(0), Some(chain.params().genesis_hash()));
}

#[test]
fn another_networks_data_directory_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().unwrap();
    let tip = {
        let mut chain = open(dir.path(), Network::Regtest).unwrap();
        extend(&mut chain, 3, Wallet::new().hash, now()).unwrap();
        chain.tip_hash()
    };
    let err = open(dir.path(), Network::Devnet)
        .err()
        .expect("devnet on regtest data");
    assert!(
        matches!(
            err,
            ChainError::WrongNetwork {
                network: "devnet",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("another data directory"));
    assert_eq!(open(dir.path(), Network::Regtest).unwrap().tip_hash(), tip);
}

#[test]
fn truncated_or_corrupt_blocks_are_refused_and_the_chain_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), Network::Regtest).unwrap();
    extend(&mut chain, 2, Wallet::new().hash, now()).unwrap();
    let tip = chain.tip_hash();
    let good = mine_on_tip(&chain, vec![], Wallet::new().hash, None).unwrap();
    let bytes = good.to_bytes();

    for cut in [0, 1, 79, 80, 81, bytes.len() - 1] {
        let err = Block::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, CodecError::UnexpectedEnd { .. }),
            "cut {cut}: {err}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Block::from_bytes(&longer).unwrap_err(),
        CodecError::TrailingBytes(1)
    );

    // Flip each byte of the body in turn: it either no longer decodes, or decodes to a block
    // the chain refuses. Never a panic, never a change of tip.
    for i in (80..bytes.len()).step_by(3) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x55;
        if let Ok(block) = Block::from_bytes(&bad) {
            assert!(chain.accept_block(block, now()).is_err(), "byte {i}");
        }
    }
    assert_eq!(chain.tip_hash(), tip);
    drop(chain);
    let mut chain = open(dir.path(), Network::Regtest).unwrap();
    assert_eq!(chain.tip_hash(), tip);
    chain.accept_block(good, now()).unwrap();
    assert_eq!(chain.height(), 3);
}

#[test]
fn a_transaction_of_another_network_does_not_verify() {
    let mut regtest_chain = regtest();
    let mut params = ChainParams::for_network(Network::Regtest);
    params.magic = ChainParams::for_network(Network::Testnet).magic;
    let w = Wallet::new();
    let coin = funded(&mut regtest_chain, &w, 0).remove(0);
    // Signed with another network's magic: the digest differs, the signature fails.
    let mut tx = spend(
        &regtest_chain,
        &[(coin.0, coin.1.clone(), w.key.clone())],
        vec![TxOut::pay(Amount::ONE_FAI, w.hash)],
    )
    .unwrap();
    fai_ledger::sighash::sign_transaction(&mut tx, params.magic, &[(coin.1, w.key.clone())])
        .unwrap();
    let b = block_with(&regtest_chain, vec![tx]);
    let err = regtest_chain.accept_block(b, now()).unwrap_err();
    assert!(
        matches!(
            err.consensus(),
            Some(fai_ledger::ConsensusError::BadSignature { .. })
        ),
        "{err}"
    );
}
