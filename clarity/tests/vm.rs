//! The real Clarity VM on RocksDB: genesis, transfers and mints, a contract reading the
//! ledger, fork-aware state across a reorganisation, cost limits, and bad input.

mod common;

use common::*;
use fai_clarity::{BlockOp, ClarityError, Payload, Value, VmConfig, VmEvent};
use fai_primitives::Network;

fn config() -> VmConfig {
    VmConfig::for_network(Network::Regtest)
}

const COUNTER: &str = "
(define-data-var count uint u0)
(define-read-only (get-count) (var-get count))
(define-public (set-count (n uint)) (begin (var-set count n) (print n) (ok n)))
(define-public (fail-with (code uint)) (begin (var-set count u999) (err code)))
(define-read-only (count-at (block (buff 32))) (at-block block (var-get count)))
";

const LEDGER_READER: &str = "
(define-read-only (ledger-hash (height uint)) (get-burn-block-info? header-hash height))
(define-read-only (ledger-height) burn-block-height)
(define-read-only (inference-height) block-height)
";

fn uint(v: &Value) -> u128 {
    match v {
        Value::UInt(n) => *n,
        other => panic!("not a uint: {other}"),
    }
}

#[test]
fn genesis_deploys_the_boot_contracts_with_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(3);
    let vm = vm_on(open_store(dir.path()), config());
    let g = genesis_info(&ledger);
    let result = vm
        .genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 1_000)])
        .unwrap();
    assert!(
        result.outcomes.iter().all(|o| o.is_ok()),
        "{:?}",
        result.outcomes
    );

    let boot = [0u8; 20];
    let (len, _) = vm
        .call_read_only(
            &g.id,
            &ledger,
            ALICE,
            boot,
            "staking",
            "get-cycle-length",
            &[],
        )
        .unwrap();
    assert_eq!(uint(&len), 10);
    let id = Value::buff_from(FAI_TINY_ID.to_vec()).unwrap();
    let (approved, _) = vm
        .call_read_only(
            &g.id,
            &ledger,
            ALICE,
            boot,
            "model-registry",
            "is-approved",
            &[id],
        )
        .unwrap();
    assert_eq!(approved, Value::Bool(true));
    let (min_bond, _) = vm
        .call_read_only(
            &g.id,
            &ledger,
            ALICE,
            boot,
            "node-registry",
            "get-min-bond",
            &[],
        )
        .unwrap();
    assert_eq!(uint(&min_bond), 50);
    assert_eq!(vm.account(&g.id, &ledger, ALICE).unwrap(), (1_000, 0));
    assert_eq!(vm.liquid_supply(&g.id, &ledger).unwrap(), 1_000);
}

#[test]
fn transfers_spend_nonces_and_failures_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(5);
    let vm = vm_on(open_store(dir.path()), config());
    let g = genesis_info(&ledger);
    vm.genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 1_000)])
        .unwrap();
    let b1 = child(&g, 1, &ledger, 2);
    let transfer = |nonce, amount| {
        tx(
            ALICE,
            nonce,
            Payload::Transfer {
                to: BOB,
                amount,
                memo: b"hi".to_vec(),
            },
        )
    };
    let result = vm
        .execute_block(
            b1,
            &ledger,
            &[
                transfer(0, 300),
                transfer(0, 1),     // nonce already spent
                transfer(1, 5_000), // more than the balance
                transfer(1, 200),
                BlockOp::Tx(fai_clarity::VmTransaction {
                    sender: [0; 20],
                    nonce: 0,
                    payload: Payload::Transfer {
                        to: BOB,
                        amount: 1,
                        memo: vec![],
                    },
                }),
            ],
        )
        .unwrap();
    let o = &result.outcomes;
    let receipt = o[0].as_ref().unwrap();
    assert!(receipt.committed);
    assert!(matches!(
        &receipt.events[..],
        [VmEvent::Transfer { amount: 300, .. }]
    ));
    assert!(
        o[1].as_ref()
            .unwrap_err()
            .contains("nonce 0 is not the account's next nonce 1"),
        "{:?}",
        o[1]
    );
    assert!(
        o[2].as_ref().unwrap_err().contains("not enough funds"),
        "{:?}",
        o[2]
    );
    assert!(o[3].is_ok());
    assert!(
        o[4].as_ref().unwrap_err().contains("boot principal"),
        "{:?}",
        o[4]
    );
    assert_eq!(vm.account(&b1.id, &ledger, ALICE).unwrap(), (500, 2));
    assert_eq!(vm.account(&b1.id, &ledger, BOB).unwrap(), (500, 0));
    // The genesis state is still readable as it was.
    assert_eq!(vm.account(&g.id, &ledger, ALICE).unwrap(), (1_000, 0));
}

#[test]
fn a_contract_reads_the_ledger_it_is_anchored_to() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(8);
    let vm = vm_on(open_store(dir.path()), config());
    let g = genesis_info(&ledger);
    vm.genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 10_000_000)])
        .unwrap();
    let b1 = child(&g, 1, &ledger, 4);
    let r = vm
        .execute_block(
            b1,
            &ledger,
            &[deploy(ALICE, 0, "ledger-reader", LEDGER_READER)],
        )
        .unwrap();
    assert!(r.outcomes[0].is_ok(), "{:?}", r.outcomes);
    let b2 = child(&b1, 2, &ledger, 6);
    vm.execute_block(b2, &ledger, &[]).unwrap();

    let read = |function: &str, args: Vec<Value>| {
        vm.call_read_only(
            &b2.id,
            &ledger,
            BOB,
            ALICE,
            "ledger-reader",
            function,
            &args,
        )
        .unwrap()
        .0
    };
    for height in [0u32, 3, 6] {
        let expected = ledger.hash_at(height).unwrap().0.to_vec();
        assert_eq!(
            read("ledger-hash", vec![Value::UInt(height.into())]),
            Value::some(Value::buff_from(expected).unwrap()).unwrap(),
            "ledger block {height}"
        );
    }
    // Past the anchor of the block read from, the ledger is unknown.
    assert_eq!(read("ledger-hash", vec![Value::UInt(7)]), Value::none());
    // burn-block-height is the anchor of the latest block; block-height the next one.
    assert_eq!(uint(&read("ledger-height", vec![])), 6);
    assert_eq!(uint(&read("inference-height", vec![])), 3);
}

#[test]
fn state_follows_the_surviving_fork_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(8);
    let g = genesis_info(&ledger);
    let set = |nonce, n: u128| {
        call(
            ALICE,
            nonce,
            ALICE,
            "counter",
            "set-count",
            vec![Value::UInt(n)],
        )
    };
    let (a1, b1, b2);
    {
        let vm = vm_on(open_store(dir.path()), config());
        vm.genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 10_000_000)])
            .unwrap();
        let d = child(&g, 0xd0, &ledger, 2);
        vm.execute_block(
            d,
            &ledger,
            &[deploy(ALICE, 0, "counter", COUNTER), set(1, 1)],
        )
        .unwrap();
        // Two children of d: fork A sets 10, fork B sets 20 and grows on.
        a1 = child(&d, 0xa0, &ledger, 3);
        b1 = child(&d, 0xb0, &ledger, 3);
        assert!(vm
            .execute_block(a1, &ledger, &[set(2, 10)])
            .unwrap()
            .outcomes[0]
            .is_ok());
        assert!(vm
            .execute_block(b1, &ledger, &[set(2, 20)])
            .unwrap()
            .outcomes[0]
            .is_ok());
        b2 = child(&b1, 0xb1, &ledger, 4);
        vm.execute_block(b2, &ledger, &[]).unwrap();

        let count = |at: &[u8; 32]| {
            uint(
                &vm.call_read_only(at, &ledger, BOB, ALICE, "counter", "get-count", &[])
                    .unwrap()
                    .0,
            )
        };
        assert_eq!(count(&d.id), 1);
        assert_eq!(count(&a1.id), 10);
        assert_eq!(count(&b1.id), 20);
        assert_eq!(
            count(&b2.id),
            20,
            "the write of orphaned a1 is invisible on fork b"
        );
        // at-block reads the past of the reading chain.
        let past = Value::buff_from(d.id.to_vec()).unwrap();
        let (v, _) = vm
            .call_read_only(&b2.id, &ledger, BOB, ALICE, "counter", "count-at", &[past])
            .unwrap();
        assert_eq!(uint(&v), 1);
        // Each block's answer is kept once and served again: asked twice at each of
        // the five blocks above, the memo holds one answer per block and call.
        let kept = vm.read_only_answers_kept();
        for at in [&d.id, &a1.id, &b1.id, &b2.id] {
            assert_eq!(count(at), count(at));
        }
        assert_eq!(vm.read_only_answers_kept(), kept);
        assert_eq!(kept, 5, "four blocks' get-count and one count-at");
    }
    // Reopened from disk: the same answers.
    let vm = vm_on(open_store(dir.path()), config());
    let count = |at: &[u8; 32]| {
        uint(
            &vm.call_read_only(at, &ledger, BOB, ALICE, "counter", "get-count", &[])
                .unwrap()
                .0,
        )
    };
    assert_eq!((count(&a1.id), count(&b2.id)), (10, 20));
    assert_eq!(vm.account(&b2.id, &ledger, ALICE).unwrap().1, 3);
}

#[test]
fn an_error_response_keeps_the_transaction_but_undoes_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(4);
    let vm = vm_on(open_store(dir.path()), config());
    let g = genesis_info(&ledger);
    vm.genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 10_000_000)])
        .unwrap();
    let b1 = child(&g, 1, &ledger, 2);
    let r = vm
        .execute_block(
            b1,
            &ledger,
            &[
                deploy(ALICE, 0, "counter", COUNTER),
                call(BOB, 0, ALICE, "counter", "set-count", vec![Value::UInt(7)]),
                call(BOB, 1, ALICE, "counter", "fail-with", vec![Value::UInt(42)]),
            ],
        )
        .unwrap();
    let set = r.outcomes[1].as_ref().unwrap();
    assert!(matches!(
        &set.events[..],
        [VmEvent::Print {
            value: Value::UInt(7),
            ..
        }]
    ));
    let failed = r.outcomes[2].as_ref().unwrap();
    assert!(!failed.committed);
    assert_eq!(failed.result, Value::error(Value::UInt(42)).unwrap());
    let (count, _) = vm
        .call_read_only(&b1.id, &ledger, BOB, ALICE, "counter", "get-count", &[])
        .unwrap();
    assert_eq!(uint(&count), 7);
    assert_eq!(vm.account(&b1.id, &ledger, BOB).unwrap().1, 2);
}

#[test]
fn cost_limits_abort_and_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let ledger = ledger(6);
    let g = genesis_info(&ledger);
    let roomy = vm_on(store.clone(), config());
    roomy
        .genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 10_000_000)])
        .unwrap();
    let b1 = child(&g, 1, &ledger, 2);
    roomy
        .execute_block(b1, &ledger, &[deploy(ALICE, 0, "counter", COUNTER)])
        .unwrap();

    // The same chain under a tiny per-transaction budget.
    let mut tight = config();
    tight.tx_limit.runtime = 100;
    tight.read_only_limit.runtime = 100;
    let tight = vm_on(store.clone(), tight);
    let b2 = child(&b1, 2, &ledger, 3);
    let r = tight
        .execute_block(
            b2,
            &ledger,
            &[call(
                ALICE,
                1,
                ALICE,
                "counter",
                "set-count",
                vec![Value::UInt(5)],
            )],
        )
        .unwrap();
    let err = r.outcomes[0].as_ref().unwrap_err();
    assert!(err.contains("exceeds the transaction limit"), "{err}");
    let (count, _) = roomy
        .call_read_only(&b2.id, &ledger, BOB, ALICE, "counter", "get-count", &[])
        .unwrap();
    assert_eq!(uint(&count), 0);
    assert_eq!(
        roomy.account(&b2.id, &ledger, ALICE).unwrap().1,
        1,
        "the nonce is not spent"
    );
    let err = tight
        .call_read_only(&b2.id, &ledger, BOB, ALICE, "counter", "get-count", &[])
        .unwrap_err();
    assert!(matches!(err, ClarityError::CostLimit { .. }), "{err}");

    // A block budget that holds one call: the second is refused as "block full".
    // One set-count costs about 3,400 units of runtime.
    let mut small_block = config();
    small_block.block_limit.runtime = 5_000;
    small_block.tx_limit.runtime = 1_000_000;
    let small = vm_on(store, small_block);
    let b3 = child(&b2, 3, &ledger, 4);
    let r = small
        .execute_block(
            b3,
            &ledger,
            &[
                call(
                    ALICE,
                    1,
                    ALICE,
                    "counter",
                    "set-count",
                    vec![Value::UInt(1)],
                ),
                call(
                    ALICE,
                    2,
                    ALICE,
                    "counter",
                    "set-count",
                    vec![Value::UInt(2)],
                ),
            ],
        )
        .unwrap();
    assert!(r.outcomes[0].is_ok(), "{:?}", r.outcomes);
    let err = r.outcomes[1].as_ref().unwrap_err();
    assert!(err.contains("block's execution budget"), "{err}");
    assert!(r.cost.runtime <= 5_000);
}

#[test]
fn bad_contracts_and_calls_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(4);
    let vm = vm_on(open_store(dir.path()), config());
    let g = genesis_info(&ledger);
    vm.genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 10_000_000)])
        .unwrap();
    let b1 = child(&g, 1, &ledger, 2);
    let huge = format!("(define-constant BIG \"{}\")", "x".repeat(200_000));
    let r = vm
        .execute_block(
            b1,
            &ledger,
            &[
                deploy(ALICE, 0, "counter", COUNTER),
                deploy(ALICE, 1, "broken", "(define-public (f) (ok u1)"),
                deploy(ALICE, 1, "ill-typed", "(define-public (f) (ok (+ u1 1)))"),
                deploy(ALICE, 1, "huge", &huge),
                deploy(ALICE, 1, "counter", COUNTER),
                deploy(ALICE, 1, "Not A Name", COUNTER),
                call(BOB, 0, ALICE, "counter", "no-such-function", vec![]),
                call(BOB, 0, ALICE, "counter", "set-count", vec![Value::Int(-1)]),
                call(BOB, 0, ALICE, "nothing-here", "f", vec![]),
            ],
        )
        .unwrap();
    let err = |i: usize| r.outcomes[i].as_ref().unwrap_err().clone();
    assert!(r.outcomes[0].is_ok());
    assert!(
        err(1).contains("does not parse or type-check"),
        "{}",
        err(1)
    );
    assert!(
        err(2).contains("does not parse or type-check"),
        "{}",
        err(2)
    );
    assert!(err(3).contains("bytes; the limit is 131072"), "{}", err(3));
    assert!(err(4).contains("already exists"), "{}", err(4));
    assert!(err(5).contains("invalid name"), "{}", err(5));
    assert!(err(6).contains("no-such-function"), "{}", err(6));
    assert!(err(7).contains("set-count"), "{}", err(7));
    assert!(err(8).contains("no contract"), "{}", err(8));
    // None of the failures spent Bob's or Alice's nonce.
    assert_eq!(vm.account(&b1.id, &ledger, ALICE).unwrap().1, 1);
    assert_eq!(vm.account(&b1.id, &ledger, BOB).unwrap().1, 0);
    // A read-only call may not run a public function that writes.
    let e = vm
        .call_read_only(
            &b1.id,
            &ledger,
            BOB,
            ALICE,
            "counter",
            "set-count",
            &[Value::UInt(1)],
        )
        .unwrap_err();
    assert!(e.to_string().contains("set-count"), "{e}");
    // An unknown block is an error, not a panic.
    let e = vm.account(&[0x55; 32], &ledger, ALICE).unwrap_err();
    assert!(matches!(e, ClarityError::UnknownBlock(_)), "{e}");
}

#[test]
fn consensus_moves_and_state_roots_are_deterministic() {
    let ledger = ledger(4);
    let g = genesis_info(&ledger);
    let b1 = child(&g, 1, &ledger, 2);
    let ops = [
        BlockOp::Move {
            from: ALICE,
            to: BOB,
            amount: 400,
        },
        BlockOp::Move {
            from: BOB,
            to: ALICE,
            amount: 10_000,
        },
    ];
    let mut roots = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let vm = vm_on(open_store(dir.path()), config());
        let genesis = vm
            .genesis(g, &ledger, &genesis_settings(), &[mint(ALICE, 1_000)])
            .unwrap();
        let r = vm.execute_block(b1, &ledger, &ops).unwrap();
        assert!(r.outcomes[0].is_ok());
        assert!(r.outcomes[1]
            .as_ref()
            .unwrap_err()
            .contains("not enough funds"));
        assert_eq!(vm.account(&b1.id, &ledger, BOB).unwrap().0, 400);
        assert_eq!(vm.store().state_root(&b1.id).unwrap(), Some(r.state_root));
        assert_ne!(genesis.state_root, r.state_root);
        roots.push(r.state_root);
    }
    assert_eq!(
        roots[0], roots[1],
        "the same blocks give the same state root"
    );
}
