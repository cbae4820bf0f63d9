//! Cross-layer operations in real ledger blocks: registers, commits that pay the verifier
//! set, peg-ins, and the sortition they feed; malformed or underpaid ops are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use fai_inference_chain::ledger_ops::{read_block, Register};
use fai_inference_chain::ops::{build_register, commit_after, Op, RegisterRef};
use fai_inference_chain::sortition::{self, genesis_seed};
use fai_ledger::chainstate::SCHEMA;
use fai_ledger::{testkit, Block, ChainParams, Chainstate, OutPoint, TxOut};
use fai_primitives::{Amount, Hash160, Network, SecretKey};
use fai_storage::MemoryStore;

const NOW: u64 = 2_000_000_000;

fn units(n: u64) -> Amount {
    Amount::from_units(n).unwrap()
}

struct Funded {
    chain: Chainstate,
    key: SecretKey,
    coins: Vec<(OutPoint, TxOut)>,
    /// Coins given to other keys ([`Funded::give`]).
    given: Vec<(OutPoint, TxOut)>,
}

/// A regtest chain whose first `n` coinbases, paid to one key, are mature.
fn funded(n: usize) -> Funded {
    let store = Arc::new(MemoryStore::open(SCHEMA).unwrap());
    let mut chain = Chainstate::open(store, ChainParams::for_network(Network::Regtest)).unwrap();
    let key = SecretKey::from_bytes(&[3; 32]).unwrap();
    let blocks =
        testkit::extend(&mut chain, 101 + n as u32, key.public_key().hash160(), NOW).unwrap();
    let coins = blocks
        .iter()
        .take(n)
        .map(|b| {
            let cb = &b.transactions[0];
            (OutPoint::new(cb.txid(), 0), cb.outputs[0].clone())
        })
        .collect();
    Funded {
        chain,
        key,
        coins,
        given: Vec::new(),
    }
}

impl Funded {
    /// Spends the next coin into `outputs` plus change back to the key.
    fn tx(&mut self, mut outputs: Vec<TxOut>) -> fai_ledger::Transaction {
        let (op, out) = self.coins.remove(0);
        let spent: u64 = outputs.iter().map(|o| o.value.units()).sum();
        outputs.push(TxOut::pay(
            units(out.value.units() - spent - 1_000),
            self.key.public_key().hash160(),
        ));
        testkit::spend(&self.chain, &[(op, out, self.key.clone())], outputs).unwrap()
    }

    /// Mines `each` coins for every key of `keys`, from one coin of the funder.
    fn give(&mut self, keys: &[&SecretKey], each: usize) {
        let outputs: Vec<TxOut> = keys
            .iter()
            .flat_map(|k| (0..each).map(|_| TxOut::pay(units(1_000_000), k.public_key().hash160())))
            .collect();
        let tx = self.tx(outputs.clone());
        let txid = tx.txid();
        self.mine(vec![tx]);
        for (vout, out) in outputs.into_iter().enumerate() {
            self.given.push((OutPoint::new(txid, vout as u32), out));
        }
    }

    /// Spends a coin given to `key` into `outputs` plus change back to it: a transaction
    /// `key` signs.
    fn tx_by(&mut self, key: &SecretKey, mut outputs: Vec<TxOut>) -> fai_ledger::Transaction {
        let me = key.public_key().hash160();
        let i = self
            .given
            .iter()
            .position(|(_, o)| o.kind == fai_ledger::OutputKind::PayToKeyHash(me))
            .expect("a coin given to the key");
        let (op, out) = self.given.remove(i);
        let spent: u64 = outputs.iter().map(|o| o.value.units()).sum();
        outputs.push(TxOut::pay(units(out.value.units() - spent - 1_000), me));
        testkit::spend(&self.chain, &[(op, out, key.clone())], outputs).unwrap()
    }

    fn mine(&mut self, txs: Vec<fai_ledger::Transaction>) -> (Block, u32) {
        let block = testkit::mine_on_tip(&self.chain, txs, Hash160([0; 20]), None).unwrap();
        self.chain.accept_block(block.clone(), NOW).unwrap();
        (block, self.chain.height())
    }
}

fn data(op: &Op, value: u64) -> TxOut {
    TxOut::data(units(value), op.encode())
}

#[test]
fn registers_commits_and_peg_ins_are_read_from_ledger_blocks() {
    let mut f = funded(10);
    let verifiers = [
        Hash160([0xe1; 20]),
        Hash160([0xe2; 20]),
        Hash160([0xe3; 20]),
    ];
    let vrf_a = fai_vrf::SecretKey::from_seed([0xa; 32]);
    let vrf_b = fai_vrf::SecretKey::from_seed([0xb; 32]);
    // The nodes' keys: each signs its own commits.
    let (key_a, key_b) = (
        SecretKey::from_bytes(&[0xa1; 32]).unwrap(),
        SecretKey::from_bytes(&[0xb1; 32]).unwrap(),
    );
    let (addr_a, addr_b) = (key_a.public_key().hash160(), key_b.public_key().hash160());
    f.give(&[&key_a, &key_b], 3);
    let reg_a = build_register(vrf_a.public().0, addr_a, &[[0x7a; 32]]).unwrap();
    let reg_b = build_register(vrf_b.public().0, addr_b, &[[0x7a; 32]]).unwrap();
    let txs = vec![f.tx(vec![data(&reg_a, 0)]), f.tx(vec![data(&reg_b, 0)])];
    let (block, height) = f.mine(txs);
    let first = read_block(&block, height, &verifiers, |_| None);
    assert_eq!(first.registers.len(), 2);
    assert!(first.bids.is_empty());
    let known: HashMap<RegisterRef, Register> =
        first.registers.iter().map(|r| (r.at, r.clone())).collect();
    let lookup = |r: &RegisterRef| known.get(r).cloned();

    let seed = genesis_seed("regtest");
    let after = commit_after(&f.chain.tip_hash());
    let commit = |reg: &Register, vrf: &fai_vrf::SecretKey| Op::Commit {
        register: reg.at,
        parent: [0x11; 32],
        seed: sortition::next_seed(&fai_vrf::proof_to_hash(&vrf.prove(&seed).unwrap()).unwrap()),
        after,
    };
    let (ra, rb) = (&first.registers[0], &first.registers[1]);
    let pay = |each: u64| {
        verifiers
            .iter()
            .map(|v| TxOut::pay(units(each), *v))
            .collect::<Vec<_>>()
    };
    let with = |mut outs: Vec<TxOut>, op: TxOut| {
        outs.push(op);
        outs
    };
    let txs = vec![
        // A pays 3 x 1,000; B pays 3 x 3,000.
        f.tx_by(&key_a, with(pay(1_000), data(&commit(ra, &vrf_a), 0))),
        f.tx_by(&key_b, with(pay(3_000), data(&commit(rb, &vrf_b), 0))),
        // A second bid by A in the same block is ignored.
        f.tx_by(&key_a, with(pay(5_000), data(&commit(ra, &vrf_a), 0))),
        // Unequal payments: ignored.
        f.tx_by(
            &key_b,
            vec![
                TxOut::pay(units(10), verifiers[0]),
                TxOut::pay(units(20), verifiers[1]),
                TxOut::pay(units(10), verifiers[2]),
                data(&commit(rb, &vrf_b), 0),
            ],
        ),
        // A peg-in of 5,000 units, and one of nothing.
        f.tx(vec![data(
            &Op::PegIn {
                address: Hash160([0xcc; 20]),
            },
            5_000,
        )]),
        f.tx(vec![data(
            &Op::PegIn {
                address: Hash160([0xcd; 20]),
            },
            0,
        )]),
        // Not an op at all.
        f.tx(vec![TxOut::data(units(0), b"FIX-not-an-op".to_vec())]),
    ];
    let (block, height) = f.mine(txs);
    let ops = read_block(&block, height, &verifiers, lookup);
    let amounts: Vec<(Hash160, u64)> = ops.bids.iter().map(|b| (b.producer, b.amount)).collect();
    assert_eq!(amounts, vec![(addr_a, 3_000), (addr_b, 9_000)]);
    assert_eq!(ops.peg_ins, vec![(Hash160([0xcc; 20]), 5_000)]);

    // The sortition picks one of them, whose tenure proof must prove the output its
    // commit stated; the next seed is a hash of the seed and the ledger block.
    let ledger_hash = block.header.hash().0;
    let s = sortition::run(&seed, &ledger_hash, &ops.bids);
    let winner = s.winner.clone().unwrap();
    assert_eq!(s.total, 12_000);
    assert_eq!(s.next_seed, sortition::chain_seed(&seed, &ledger_hash));
    let vrf = if winner.producer == addr_a {
        &vrf_a
    } else {
        &vrf_b
    };
    assert!(sortition::tenure_proof_matches(
        &winner,
        &seed,
        &vrf.prove(&seed).unwrap()
    ));
    let other = if winner.producer == addr_a {
        &vrf_b
    } else {
        &vrf_a
    };
    assert!(!sortition::tenure_proof_matches(
        &winner,
        &seed,
        &other.prove(&seed).unwrap()
    ));
    // The same block read again (after a reorganisation back to it) gives the same draw.
    assert_eq!(
        sortition::run(
            &seed,
            &ledger_hash,
            &read_block(&block, height, &verifiers, lookup).bids
        ),
        s
    );
}

#[test]
fn without_verifiers_a_commit_burns_its_bid_and_a_commit_needs_an_earlier_register() {
    let mut f = funded(4);
    let vrf = fai_vrf::SecretKey::from_seed([0xa; 32]);
    let me = f.key.public_key().hash160();
    let reg = build_register(vrf.public().0, me, &[[0x7a; 32]]).unwrap();
    let tx = f.tx(vec![data(&reg, 0)]);
    let (block, height) = f.mine(vec![tx]);
    let registers = read_block(&block, height, &[], |_| None).registers;
    let at = registers[0].at;
    let after = commit_after(&f.chain.tip_hash());
    let commit = Op::Commit {
        register: at,
        parent: [0; 32],
        seed: [9; 32],
        after,
    };
    let future = Op::Commit {
        register: RegisterRef {
            height: height + 1,
            tx_index: 1,
        },
        parent: [0; 32],
        seed: [9; 32],
        after,
    };
    // A commit made after another ledger block (late, or on another branch) proved
    // another seed: it is no bid, and the register's valid commit after it counts.
    let stale = Op::Commit {
        register: at,
        parent: [0; 32],
        seed: [9; 32],
        after: [after[0] ^ 1, after[1], after[2], after[3]],
    };
    let txs = vec![
        f.tx(vec![data(&stale, 7_777)]),
        f.tx(vec![data(&commit, 2_500)]),
        f.tx(vec![data(&future, 9_999)]),
    ];
    let (block, height) = f.mine(txs);
    let ops = read_block(&block, height, &[], |r| {
        registers.iter().find(|x| x.at == *r).cloned()
    });
    assert_eq!(ops.bids.len(), 1);
    assert_eq!(ops.bids[0].amount, 2_500);
    // No bids at all: no winner; the seed moves on with the ledger block.
    let s = sortition::run(&[4; 32], &[5; 32], &[]);
    assert_eq!(
        (s.winner, s.next_seed),
        (None, sortition::chain_seed(&[4; 32], &[5; 32]))
    );
}

/// An inference node that also verifies does not pay itself: its commit pays the rest of
/// the set equally, with its change back to its own address, and that is its bid. With a
/// set of itself alone, the bid is burnt as without a set.
#[test]
fn a_committer_in_the_verifier_set_pays_the_others_and_keeps_its_change() {
    let mut f = funded(6);
    let me = f.key.public_key().hash160();
    let others = [Hash160([0xe1; 20]), Hash160([0xe2; 20])];
    let vrf = fai_vrf::SecretKey::from_seed([0xa; 32]);
    let reg = build_register(vrf.public().0, me, &[[0x7a; 32]]).unwrap();
    let txs = vec![f.tx(vec![data(&reg, 0)])];
    let (block, height) = f.mine(txs);
    let registers = read_block(&block, height, &[], |_| None).registers;
    let lookup = |r: &RegisterRef| registers.iter().find(|x| x.at == *r).cloned();
    let commit = |after| Op::Commit {
        register: registers[0].at,
        parent: [0x11; 32],
        seed: [0x22; 32],
        after,
    };

    let set = [others[0], me, others[1]];
    let after = commit_after(&f.chain.tip_hash());
    let txs = vec![f.tx(vec![
        TxOut::pay(units(2_000), others[0]),
        TxOut::pay(units(2_000), others[1]),
        // Change: not part of the bid.
        TxOut::pay(units(777_777), me),
        data(&commit(after), 0),
    ])];
    let (block, height) = f.mine(txs);
    let ops = read_block(&block, height, &set, lookup);
    let bids: Vec<(Hash160, u64)> = ops.bids.iter().map(|b| (b.producer, b.amount)).collect();
    assert_eq!(bids, vec![(me, 4_000)]);

    // Paying one of the others less is no bid.
    let after = commit_after(&f.chain.tip_hash());
    let txs = vec![f.tx(vec![
        TxOut::pay(units(2_000), others[0]),
        TxOut::pay(units(1_000), others[1]),
        data(&commit(after), 0),
    ])];
    let (block, height) = f.mine(txs);
    assert!(read_block(&block, height, &set, lookup).bids.is_empty());

    // A set of the committer alone: the data output's value is the bid, burnt.
    let after = commit_after(&f.chain.tip_hash());
    let txs = vec![f.tx(vec![
        TxOut::pay(units(5_000), me),
        data(&commit(after), 3_000),
    ])];
    let (block, height) = f.mine(txs);
    let ops = read_block(&block, height, &[me], lookup);
    let bids: Vec<(Hash160, u64)> = ops.bids.iter().map(|b| (b.producer, b.amount)).collect();
    assert_eq!(bids, vec![(me, 3_000)]);
}

/// Attack: a rival commits for another node's register (with a higher fee, so it is mined
/// first). A register bids once per block and the first valid commit counts, so before
/// commits were bound to the register's key, the rival's commit took the node's bid and
/// the node's own commit was ignored: censorship at dust cost. Now only a commit signed
/// by the register's key counts.
#[test]
fn a_commit_for_another_nodes_register_is_no_bid() {
    let mut f = funded(6);
    let node = SecretKey::from_bytes(&[0xa1; 32]).unwrap();
    let rival = SecretKey::from_bytes(&[0xc1; 32]).unwrap();
    f.give(&[&node, &rival], 2);
    let vrf = fai_vrf::SecretKey::from_seed([0xa; 32]);
    let reg = build_register(vrf.public().0, node.public_key().hash160(), &[[0x7a; 32]]).unwrap();
    let tx = f.tx_by(&node, vec![data(&reg, 0)]);
    let (block, height) = f.mine(vec![tx]);
    let registers = read_block(&block, height, &[], |_| None).registers;
    let lookup = |r: &RegisterRef| registers.iter().find(|x| x.at == *r).cloned();
    let after = commit_after(&f.chain.tip_hash());
    let commit = |seed: u8| Op::Commit {
        register: registers[0].at,
        parent: [0x11; 32],
        seed: [seed; 32],
        after,
    };
    let txs = vec![
        // The rival's commit first, naming the node's register and its own seed.
        f.tx_by(&rival, vec![data(&commit(0x66), 9_000)]),
        f.tx_by(&node, vec![data(&commit(0x22), 1_000)]),
    ];
    let (block, height) = f.mine(txs);
    let bids = read_block(&block, height, &[], lookup).bids;
    assert_eq!(bids.len(), 1, "{bids:?}");
    assert_eq!((bids[0].seed, bids[0].amount), ([0x22; 32], 1_000));

    // The rival's commit alone is no bid at all.
    let after = commit_after(&f.chain.tip_hash());
    let hijack = Op::Commit {
        register: registers[0].at,
        parent: [0x11; 32],
        seed: [0x66; 32],
        after,
    };
    let tx = f.tx_by(&rival, vec![data(&hijack, 9_000)]);
    let (block, height) = f.mine(vec![tx]);
    assert!(read_block(&block, height, &[], lookup).bids.is_empty());
}
