//! The in-process network (`fai_tests::inproc`): nodes in this process on one manual
//! clock, blocks mined on demand.

use fai_tests::inproc::InProcNet;

/// Target spacing of regtest blocks, in seconds: what the clock moves between blocks.
const SPACING: u64 = 10;

/// Blocks mined on any node reach every node; a node stopped (every service joined, its
/// databases closed: it could not open them again otherwise) and started again on its
/// directory keeps what it had and catches up with what it missed.
#[test]
fn nodes_follow_blocks_mined_on_demand_and_a_restarted_node_catches_up() {
    let mut net = InProcNet::start(3);
    let mut mined = Vec::new();
    for i in 0..3 {
        net.advance(SPACING);
        mined.push(net.mine(i));
        let (height, tip) = net.settle();
        assert_eq!(height, i as u32 + 1);
        assert_eq!(tip, mined[i]);
    }

    net.stop(2);
    for i in [0, 1] {
        net.advance(SPACING);
        mined.push(net.mine(i));
        assert_eq!(net.settle().1, *mined.last().unwrap());
    }
    net.start_node(2);
    assert!(
        net.ledger_tip(2).0 >= 3,
        "a restarted node keeps the blocks it had"
    );
    let (height, tip) = net.settle();
    assert_eq!((height, tip), (5, mined[4]));
    // Every node has every block mined, on the one chain.
    for i in 0..3 {
        let chain = net.node(i).chain();
        for (h, hash) in mined.iter().enumerate() {
            assert_eq!(
                chain.hash_at(h as u32 + 1),
                Some(*hash),
                "node {i} at height {}",
                h + 1
            );
        }
    }
}

/// Split 2 | 1, each side mines its own branch (the pair's longer); once healed, every
/// node ends on the branch with the most work and the single node's block is off the
/// active chain.
#[test]
fn a_partition_heals_onto_the_branch_with_the_most_work() {
    let net = InProcNet::start(3);
    net.advance(SPACING);
    net.mine(0);
    let (fork_height, _) = net.settle();

    net.partition(&[0, 1]);
    net.advance(SPACING);
    let lone = net.mine(2);
    let mut pair = Vec::new();
    for _ in 0..2 {
        net.advance(SPACING);
        pair.push(net.mine(1));
        net.settle_among(&[0, 1]);
    }
    assert_eq!(
        net.ledger_tip(2),
        (fork_height + 1, lone),
        "the sides do not hear each other"
    );
    assert_eq!(net.ledger_tip(0), (fork_height + 2, pair[1]));

    net.heal();
    let (height, tip) = net.settle();
    assert_eq!((height, tip), (fork_height + 2, pair[1]));
    let chain = net.node(2).chain();
    assert_eq!(chain.hash_at(fork_height + 1), Some(pair[0]));
    assert!(
        chain.entry(&lone).is_some(),
        "the lone block is kept, off the active chain"
    );
}
