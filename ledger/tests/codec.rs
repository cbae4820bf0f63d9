//! Every wire and disk type of the ledger round-trips through the codec, and decoding
//! arbitrary bytes as any of them returns (an error or a value) without panicking.

use fai_ledger::chainstate::{BlockStatus, IndexEntry};
use fai_ledger::coins::{BlockUndo, Coin, SpentCoin};
use fai_ledger::{Block, BlockHeader, OutPoint, Transaction, TxIn, TxOut, Txid, Unlock};
use fai_primitives::{Amount, Decode, Encode, Hash160, Hash256, SecretKey, Signature};
use primitive_types::U256;
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256)
}

fn amount() -> impl Strategy<Value = Amount> {
    (0..=fai_primitives::amount::MAX_MONEY).prop_map(|u| Amount::from_units(u).unwrap())
}

fn outpoint() -> impl Strategy<Value = OutPoint> {
    (hash(), any::<u32>()).prop_map(|(h, v)| OutPoint::new(Txid(h), v))
}

fn txin() -> impl Strategy<Value = TxIn> {
    let keys: Vec<_> = (1..=8u8)
        .map(|i| SecretKey::from_bytes(&[i; 32]).unwrap().public_key())
        .collect();
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..=100),
            any::<u32>()
        )
            .prop_map(|(d, seq)| TxIn {
                prevout: OutPoint::NULL,
                sequence: seq,
                unlock: Unlock::Coinbase(d),
            }),
        (
            outpoint(),
            any::<u32>(),
            0..8usize,
            any::<[u8; 32]>(),
            any::<[u8; 32]>()
        )
            .prop_filter("not null", |(op, ..)| !op.is_null())
            .prop_map(move |(prevout, sequence, k, r, s)| {
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&r);
                sig[32..].copy_from_slice(&s);
                TxIn {
                    prevout,
                    sequence,
                    unlock: Unlock::Key {
                        pubkey: keys[k],
                        signature: Signature(sig),
                    },
                }
            }),
    ]
}

fn txout() -> impl Strategy<Value = TxOut> {
    prop_oneof![
        (amount(), any::<[u8; 20]>()).prop_map(|(v, h)| TxOut::pay(v, Hash160(h))),
        (amount(), proptest::collection::vec(any::<u8>(), 0..=80))
            .prop_map(|(v, d)| TxOut::data(v, d)),
    ]
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        any::<u32>(),
        proptest::collection::vec(txin(), 0..4),
        proptest::collection::vec(txout(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(version, inputs, outputs, lock_time)| Transaction {
            version,
            inputs,
            outputs,
            lock_time,
        })
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        any::<u32>(),
        hash(),
        hash(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(version, prev, merkle_root, time, bits, nonce)| BlockHeader {
                version,
                prev,
                merkle_root,
                time,
                bits,
                nonce,
            },
        )
}

fn coin() -> impl Strategy<Value = Coin> {
    (txout(), any::<u32>(), any::<bool>()).prop_map(|(output, height, coinbase)| Coin {
        output,
        height,
        coinbase,
    })
}

fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = v.to_bytes();
    assert_eq!(&T::from_bytes(&bytes).unwrap(), v);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn transactions_round_trip(tx in transaction()) {
        round_trip(&tx);
        let bytes = tx.to_bytes();
        prop_assert_eq!(tx.size(), bytes.len());
    }

    #[test]
    fn headers_are_80_bytes_and_round_trip(h in header()) {
        prop_assert_eq!(h.to_bytes().len(), 80);
        round_trip(&h);
    }

    #[test]
    fn blocks_round_trip(h in header(), txs in proptest::collection::vec(transaction(), 0..4)) {
        round_trip(&Block { header: h, transactions: txs });
    }

    #[test]
    fn disk_types_round_trip(
        c in coin(),
        spent in proptest::collection::vec((outpoint(), coin()), 0..5),
        minted in amount(),
        h in header(),
        height in any::<u32>(),
        work in any::<[u8; 32]>(),
        status in 0..3u8,
        sequence in any::<u64>(),
    ) {
        round_trip(&c);
        round_trip(&BlockUndo {
            spent: spent.into_iter().map(|(outpoint, coin)| SpentCoin { outpoint, coin }).collect(),
            minted,
        });
        round_trip(&IndexEntry {
            header: h,
            height,
            chain_work: U256::from_big_endian(&work),
            status: [BlockStatus::HeaderValid, BlockStatus::Connected, BlockStatus::Failed][status as usize],
            sequence,
        });
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Transaction::from_bytes(&bytes);
        let _ = Block::from_bytes(&bytes);
        let _ = BlockHeader::from_bytes(&bytes);
        let _ = Coin::from_bytes(&bytes);
        let _ = BlockUndo::from_bytes(&bytes);
        let _ = IndexEntry::from_bytes(&bytes);
        let _ = OutPoint::from_bytes(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(tx in transaction(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut bytes = tx.to_bytes();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        if let Ok(back) = Transaction::from_bytes(&bytes) {
            // Whatever decodes re-encodes to the same bytes: the encoding is canonical.
            prop_assert_eq!(back.to_bytes(), bytes);
        }
    }
}

#[test]
fn an_unknown_output_kind_is_an_error() {
    let mut bytes = TxOut::pay(Amount::ZERO, Hash160([1; 20])).to_bytes();
    bytes[8] = 7;
    assert!(TxOut::from_bytes(&bytes).is_err());
}
