//! The sortition tracker across a real ledger reorganisation: the winning branch's
//! sortitions run with their own seeds, a register that exists only on the losing branch
//! cannot bid on the winning one, and peg-ins are credited once per branch.

use std::sync::Arc;

use fai_inference_chain::ledger_ops::read_block;
use fai_inference_chain::ops::{build_register, Op};
use fai_inference_chain::sortition::chain_seed;
use fai_inference_chain::tracker::SortitionTracker;
use fai_ledger::chainstate::SCHEMA;
use fai_ledger::{testkit, Block, ChainParams, Chainstate, OutPoint, Transaction, TxOut};
use fai_primitives::{Amount, Hash160, Hash256, Network, SecretKey};
use fai_storage::MemoryStore;

const NOW: u64 = 2_000_000_000;

fn units(n: u64) -> Amount {
    Amount::from_units(n).unwrap()
}

struct Ledger {
    chain: Chainstate,
    key: SecretKey,
    coins: Vec<(OutPoint, TxOut)>,
}

impl Ledger {
    fn new(coins: usize) -> Self {
        let store = Arc::new(MemoryStore::open(SCHEMA).unwrap());
        let mut chain =
            Chainstate::open(store, ChainParams::for_network(Network::Regtest)).unwrap();
        let key = SecretKey::from_bytes(&[3; 32]).unwrap();
        let blocks = testkit::extend(
            &mut chain,
            101 + coins as u32,
            key.public_key().hash160(),
            NOW,
        )
        .unwrap();
        let coins = blocks
            .iter()
            .take(coins)
            .map(|b| {
                (
                    OutPoint::new(b.transactions[0].txid(), 0),
                    b.transactions[0].outputs[0].clone(),
                )
            })
            .collect();
        Ledger { chain, key, coins }
    }

    fn tx(&mut self, op: &Op, value: u64) -> Transaction {
        let (point, out) = self.coins.remove(0);
        let change = out.value.units() - value - 1_000;
        testkit::spend(
            &self.chain,
            &[(point, out, self.key.clone())],
            vec![
                TxOut::data(units(value), op.encode()),
                TxOut::pay(units(change), self.key.public_key().hash160()),
            ],
        )
        .unwrap()
    }

    fn mine_on(&mut self, parent: Hash256, txs: Vec<Transaction>) -> Block {
        let block = testkit::mine_on(&self.chain, parent, txs, Hash160([0; 20]), None).unwrap();
        self.chain.accept_block(block.clone(), NOW).unwrap();
        block
    }
}

/// A commit to be mined in a block on ledger block `after`.
fn commit(at: fai_inference_chain::ops::RegisterRef, seed: u8, after: Hash256) -> Op {
    Op::Commit {
        register: at,
        parent: [0; 32],
        seed: [seed; 32],
        after: fai_inference_chain::ops::commit_after(&after),
    }
}

#[test]
fn sortitions_follow_the_ledger_through_a_reorganisation() {
    let mut l = Ledger::new(10);
    let none = |_: u32| Vec::<Hash160>::new();
    let mut tracker = SortitionTracker::new("regtest");

    // The trunk: P1 registers; a peg-in of 7,000 units. Both nodes' registers name the
    // key that funds these transactions (a commit must be signed by its register's
    // key); their VRF keys tell them apart.
    let me = l.key.public_key().hash160();
    let p1 = build_register([1; 32], me, &[[0x7a; 32]]).unwrap();
    let peg = Op::PegIn {
        address: Hash160([0xcc; 20]),
    };
    let txs = vec![l.tx(&p1, 0), l.tx(&peg, 7_000)];
    let trunk = l.mine_on(l.chain.tip_hash(), txs);
    let trunk_hash = trunk.header.hash();
    let record = tracker.connect(&l.chain, &trunk_hash, &none).unwrap();
    let (trunk_height, p1_at) = (record.ledger_height, record.registers[0].at);
    assert_eq!(record.peg_ins, vec![(Hash160([0xcc; 20]), 7_000)]);

    // Branch A: P1 commits, P2 registers; then P2 commits.
    let p2 = build_register([2; 32], me, &[[0x7a; 32]]).unwrap();
    let txs = vec![l.tx(&commit(p1_at, 0x11, trunk_hash), 500), l.tx(&p2, 0)];
    let a1 = l.mine_on(trunk_hash, txs);
    let a1_rec = tracker
        .connect(&l.chain, &a1.header.hash(), &none)
        .unwrap()
        .clone();
    assert_eq!(a1_rec.sortition.winner.as_ref().unwrap().vrf_key, [1; 32]);
    let p2_at = a1_rec.registers[0].at;
    let txs = vec![l.tx(&commit(p2_at, 0x22, a1.header.hash()), 800)];
    let a2 = l.mine_on(a1.header.hash(), txs);
    let a2_rec = tracker
        .connect(&l.chain, &a2.header.hash(), &none)
        .unwrap()
        .clone();
    assert_eq!(a2_rec.sortition.winner.as_ref().unwrap().vrf_key, [2; 32]);
    assert_eq!(
        a2_rec.seed,
        chain_seed(&a1_rec.seed, &a1.header.hash().0),
        "A2 runs with the seed after A1, which A1's winner did not choose"
    );
    assert!(l.chain.is_active(&a2.header.hash()));

    // Branch B, longer: an empty block, P1's commit, and a commit naming P2's register,
    // which is not on this branch.
    let b1 = l.mine_on(trunk_hash, vec![]);
    let txs = vec![l.tx(&commit(p1_at, 0x33, b1.header.hash()), 300)];
    let b2 = l.mine_on(b1.header.hash(), txs);
    let txs = vec![l.tx(&commit(p2_at, 0x44, b2.header.hash()), 900)];
    let b3 = l.mine_on(b2.header.hash(), txs);
    assert!(
        l.chain.is_active(&b3.header.hash()),
        "branch B has more work"
    );
    let b3_rec = tracker
        .connect(&l.chain, &b3.header.hash(), &none)
        .unwrap()
        .clone();

    let b1_rec = tracker.record(&b1.header.hash()).unwrap().clone();
    let b2_rec = tracker.record(&b2.header.hash()).unwrap().clone();
    assert_eq!(b1_rec.sortition.winner, None);
    assert_eq!(
        b1_rec.seed,
        tracker.record(&trunk_hash).unwrap().sortition.next_seed
    );
    assert_eq!(
        b1_rec.sortition.next_seed,
        chain_seed(&b1_rec.seed, &b1.header.hash().0),
        "no bids: the seed moves on with the ledger"
    );
    assert_eq!(b2_rec.sortition.winner.as_ref().unwrap().vrf_key, [1; 32]);
    assert_eq!(b3_rec.seed, chain_seed(&b2_rec.seed, &b2.header.hash().0));
    assert_eq!(
        b3_rec.sortition.winner, None,
        "P2's register is only on branch A"
    );
    // Whether a block carries a commit that may elect is a fact of the ledger alone (the
    // run a commit phase needs passes over the blocks that carry none): B1 carries no
    // commit; B2 one for a register on its branch; B3 one for P2's register, which is not
    // on this branch, so it may elect nobody here on any reading (before format 13 any
    // commit op counted).
    assert!(!b1_rec.has_commits);
    assert!(b2_rec.has_commits && !b3_rec.has_commits);
    // The same commit is valid as seen from branch A, which still has its records.
    let a2_block = l.chain.block(&a2.header.hash()).unwrap().unwrap();
    let lookup = |r: &fai_inference_chain::ops::RegisterRef| {
        tracker.register(&l.chain, &a1.header.hash(), r)
    };
    assert_eq!(
        read_block(&a2_block, trunk_height + 2, &[], lookup)
            .bids
            .len(),
        1
    );

    // The active branch's records, oldest first.
    let tip = l.chain.tip_hash();
    let branch: Vec<Hash256> = tracker
        .branch(&l.chain, &tip, trunk_height, trunk_height + 3)
        .iter()
        .map(|r| r.ledger_hash)
        .collect();
    assert_eq!(
        branch,
        vec![
            trunk_hash,
            b1.header.hash(),
            b2.header.hash(),
            b3.header.hash()
        ]
    );

    // Peg-ins are confirmed six blocks deep, once: mine on until then.
    let mut tip = b3.header.hash();
    for _ in 0..3 {
        tip = l.mine_on(tip, vec![]).header.hash();
        tracker.connect(&l.chain, &tip, &none).unwrap();
    }
    let (through, credited) = tracker.confirmed_peg_ins(&l.chain, &tip, trunk_height - 1);
    assert_eq!(through, trunk_height);
    assert_eq!(credited, vec![(Hash160([0xcc; 20]), 7_000)]);
    let (_, again) = tracker.confirmed_peg_ins(&l.chain, &tip, through);
    assert!(again.is_empty(), "credited once");
}
