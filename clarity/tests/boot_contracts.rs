//! The boot contracts' own unit tests, run through clarity-repl: every public function's
//! success and each of its error codes, and the consensus-only guards.

use clarity::types::StacksEpochId;
use clarity::vm::types::{PrincipalData, StandardPrincipalData};
use clarity::vm::{ClarityVersion, EvaluationResult};
use clarity_repl::repl::{
    ClarityCodeSource, ClarityContract, ContractDeployer, Session, SessionSettings,
};
use fai_clarity::boot::NETWORK_CONTRACTS;

const BOOT: &str = "ST000000000000000000002AMW42H";

/// A session with the cost contracts and the network's boot contracts deployed by the
/// boot principal, and funded accounts.
struct Repl {
    session: Session,
}

/// The address of test account `n`.
fn account(n: u8) -> String {
    StandardPrincipalData(26, [n; 20]).to_address()
}

impl Repl {
    fn new() -> Self {
        let settings = SessionSettings {
            include_boot_contracts: vec![
                "costs".into(),
                "costs-2".into(),
                "costs-3".into(),
                "cost-voting".into(),
            ],
            ..SessionSettings::default()
        };
        let mut session = Session::new(settings);
        session.load_boot_contracts();
        session.update_epoch(StacksEpochId::Epoch21);
        session.set_tx_sender(BOOT.to_string());
        for (name, source) in NETWORK_CONTRACTS {
            let contract = ClarityContract {
                code_source: ClarityCodeSource::ContractInMemory(source.to_string()),
                name: name.to_string(),
                deployer: ContractDeployer::Address(BOOT.to_string()),
                clarity_version: ClarityVersion::Clarity2,
                epoch: StacksEpochId::Epoch21,
            };
            if let Err(d) = session.deploy_contract(&contract, None, false, None, &mut None) {
                panic!("{name} does not deploy: {d:?}");
            }
        }
        for n in 1..=8 {
            session
                .interpreter
                .mint_stx_balance(PrincipalData::parse(&account(n)).unwrap(), 1_000_000)
                .unwrap();
        }
        Repl { session }
    }

    /// Evaluates `expr` as `sender` and gives the result in Clarity syntax.
    fn eval_as(&mut self, sender: &str, expr: &str) -> String {
        self.session.set_tx_sender(sender.to_string());
        match self.session.eval(expr.to_string(), None, false) {
            Ok(r) => match r.result {
                EvaluationResult::Snippet(s) => s.result.to_string(),
                EvaluationResult::Contract(c) => format!("{:?}", c.result),
            },
            Err(d) => panic!("{expr} failed: {d:?}"),
        }
    }

    /// Calls `function` of boot contract `contract` as `sender`.
    fn call(&mut self, sender: &str, contract: &str, function: &str, args: &str) -> String {
        self.eval_as(
            sender,
            &format!("(contract-call? '{BOOT}.{contract} {function} {args})"),
        )
    }

    fn balance(&mut self, who: &str) -> String {
        self.eval_as(BOOT, &format!("(stx-get-balance '{who})"))
    }

    fn advance(&mut self, blocks: u32) {
        self.session.advance_chain_tip(blocks);
    }

    /// Accounts 1..=5 stake decreasing amounts and the cycle begins: they are the set.
    fn with_verifiers() -> Self {
        let mut r = Repl::new();
        assert_eq!(
            r.call(BOOT, "staking", "configure", "u10 u100"),
            "(ok true)"
        );
        for n in 1..=5u8 {
            let amount = 1_000 * (10 - u32::from(n));
            let out = r.call(&account(n), "staking", "stake", &format!("u{amount} u1"));
            assert!(out.starts_with("(ok (some"), "{out}");
        }
        assert_eq!(r.call(BOOT, "staking", "begin-cycle", "u0"), "(ok true)");
        r
    }
}

#[test]
fn staking_stake_errors_and_success() {
    let mut r = Repl::new();
    let a = account(1);
    assert_eq!(r.call(&a, "staking", "configure", "u10 u100"), "(err u1)");
    assert_eq!(r.call(BOOT, "staking", "configure", "u0 u100"), "(err u10)");
    assert_eq!(
        r.call(BOOT, "staking", "configure", "u10 u100"),
        "(ok true)"
    );
    assert_eq!(r.call(&a, "staking", "stake", "u0 u1"), "(err u2)");
    assert_eq!(r.call(&a, "staking", "stake", "u500 u0"), "(err u3)");
    assert_eq!(r.call(&a, "staking", "stake", "u500 u13"), "(err u3)");
    assert_eq!(r.call(&a, "staking", "stake", "u99 u1"), "(err u8)");
    assert_eq!(r.call(&a, "staking", "stake", "u2000000 u1"), "(err u4)");
    let out = r.call(&a, "staking", "stake", "u500 u2");
    assert_eq!(
        out,
        "(ok (some (tuple (amount u500) (since u0) (unlock-cycle u3))))"
    );
    assert_eq!(r.balance(&a), "u999500");
    // A second deposit adds up; a smaller one needs no minimum of its own.
    let out = r.call(&a, "staking", "stake", "u50 u1");
    assert_eq!(
        out,
        "(ok (some (tuple (amount u550) (since u0) (unlock-cycle u3))))"
    );
}

/// Staker `n` of the test marked `tag`.
fn staker(tag: u8, n: u8) -> String {
    let mut hash = [0u8; 20];
    hash[0] = n;
    hash[1] = tag;
    hash[19] = n;
    StandardPrincipalData(26, hash).to_address()
}

/// With a minimum stake of 100: stakers 0 to 101 of `tag` get 1,000 each, and 0 to 99
/// take every slot, staking 100 + n for one cycle.
fn fill_the_slots(r: &mut Repl, tag: u8) {
    r.call(BOOT, "staking", "configure", "u10 u100");
    for n in 0..=101u8 {
        r.session
            .interpreter
            .mint_stx_balance(PrincipalData::parse(&staker(tag, n)).unwrap(), 1_000)
            .unwrap();
    }
    for n in 0..100u8 {
        let stake = format!("u{} u1", 100 + u32::from(n));
        let out = r.call(&staker(tag, n), "staking", "stake", &stake);
        assert!(out.starts_with("(ok"), "{out}");
    }
}

#[test]
fn staking_holds_at_most_a_hundred_stakers() {
    let mut r = Repl::new();
    let who = |n: u8| staker(0x5a, n);
    fill_the_slots(&mut r, 0x5a);
    // Attack: a hundred minimum stakes lock everyone else out (before, a newcomer got
    // err u7 whatever it staked). Now a larger stake takes the last one's slot, which is
    // refunded at once; an equal one does not (the incumbent keeps it).
    let out = r.call(&who(100), "staking", "stake", "u500 u1");
    assert!(out.starts_with("(ok"), "{out}");
    let stake_of_0 = r.call(BOOT, "staking", "get-stake", &format!("'{}", who(0)));
    assert_eq!(stake_of_0, "none");
    assert_eq!(r.balance(&who(0)), "u1000", "the evicted stake is refunded");
    assert_eq!(r.call(&who(101), "staking", "stake", "u101 u1"), "(err u7)");
    assert_eq!(r.balance(&who(101)), "u1000");
    // The five largest lead: stakers 100, 99, 98, 97, 96.
    let leaders = r.call(BOOT, "staking", "get-leaders", "");
    let expected: Vec<String> = [100u8, 99, 98, 97, 96].into_iter().map(who).collect();
    assert_eq!(leaders, format!("({})", expected.join(" ")));
    let out = r.call(&who(100), "staking", "unstake", "");
    assert_eq!(out, "(err u6)", "locked like any stake");
    // A leader leaving lets the next in.
    r.advance(25);
    assert_eq!(r.call(&who(100), "staking", "unstake", ""), "(ok u500)");
    let leaders = r.call(BOOT, "staking", "get-leaders", "");
    let expected: Vec<String> = (95..100u8).rev().map(who).collect();
    assert_eq!(leaders, format!("({})", expected.join(" ")));
    assert_eq!(r.call(&who(97), "staking", "unstake", ""), "(ok u197)");
    let leaders = r.call(BOOT, "staking", "get-leaders", "");
    let expected: Vec<String> = [99u8, 98, 96, 95, 94].into_iter().map(who).collect();
    assert_eq!(leaders, format!("({})", expected.join(" ")));
}

/// A verifier caught by an audit is barred from the sets for good, but kept its staking
/// slot until it unstaked: with every slot taken, barred stakers locked newcomers out
/// like small stakes (a newcomer whose stake ties the last one got err u7 before). Now a
/// barred staker that could unstake (its lock over, in neither this cycle's set nor the
/// last: its votes can no longer be audited) gives its slot up first, whatever the
/// newcomer stakes, and is refunded; a barred staker still locked, or in this cycle's
/// set, keeps its slot.
#[test]
fn staking_a_barred_staker_gives_its_slot_up_first() {
    let mut r = Repl::new();
    let who = |n: u8| staker(0xb4, n);
    fill_the_slots(&mut r, 0xb4);
    // Cycle 2: every lock is over but staker 40's, which stakes one more for 5 cycles.
    r.advance(25);
    assert_eq!(r.call(BOOT, "staking", "current-cycle", ""), "u2");
    let out = r.call(&who(40), "staking", "stake", "u1 u5");
    assert!(out.starts_with("(ok"), "{out}");
    // This cycle's set: the five largest, 99 to 95.
    assert_eq!(r.call(BOOT, "staking", "begin-cycle", "u2"), "(ok true)");
    // An audit bars stakers 40 (locked), 50 (free) and 99 (in this cycle's set).
    let commitment = format!("0x{}", "ab".repeat(32));
    let committed = r.call(&who(1), "staking", "commit-audit", &commitment);
    assert!(committed.starts_with("(ok u"), "{committed}");
    r.advance(2);
    let out = r.call(
        BOOT,
        "staking",
        "slash-verifiers",
        &format!(
            "{commitment} 0x{} u1000000 '{} (list '{} '{} '{})",
            "cd".repeat(32),
            who(1),
            who(40),
            who(50),
            who(99)
        ),
    );
    assert!(out.starts_with("(ok"), "{out}");
    for n in [40u8, 50, 99] {
        let barred = r.call(BOOT, "staking", "get-barred", &format!("'{}", who(n)));
        assert!(barred.starts_with("(some"), "staker {n}: {barred}");
    }
    let staked = |r: &mut Repl, n: u8| {
        r.call(BOOT, "staking", "get-stake", &format!("'{}", who(n)))
            .starts_with("(some")
    };
    // A newcomer staking only what the last one stakes (a tie) takes the free barred
    // staker's slot; it gets the rest of its stake back (150 less a tenth).
    let out = r.call(&who(100), "staking", "stake", "u100 u1");
    assert!(out.starts_with("(ok"), "{out}");
    assert!(!staked(&mut r, 50));
    assert_eq!(r.balance(&who(50)), "u985");
    assert!(staked(&mut r, 0) && staked(&mut r, 40) && staked(&mut r, 99));
    // The other two keep their slots (locked; in this cycle's set): a tie is refused as
    // before.
    assert_eq!(r.call(&who(101), "staking", "stake", "u100 u1"), "(err u7)");
    assert!(staked(&mut r, 40) && staked(&mut r, 99));
}

#[test]
fn staking_unstake_waits_for_the_lock() {
    let mut r = Repl::new();
    let a = account(1);
    r.call(BOOT, "staking", "configure", "u10 u100");
    assert_eq!(r.call(&a, "staking", "unstake", ""), "(err u5)");
    r.call(&a, "staking", "stake", "u500 u1");
    assert_eq!(r.call(&a, "staking", "unstake", ""), "(err u6)");
    r.advance(25);
    assert_eq!(r.call(&a, "staking", "unstake", ""), "(ok u500)");
    assert_eq!(r.balance(&a), "u1000000");
    assert_eq!(r.call(&a, "staking", "get-stake", &format!("'{a}")), "none");
    assert_eq!(r.call(BOOT, "staking", "get-leaders", ""), "()");
}

#[test]
fn the_verifier_set_is_the_five_largest_stakes_at_the_cycle_start() {
    let mut r = Repl::new();
    assert_eq!(
        r.call(BOOT, "staking", "configure", "u10 u100"),
        "(ok true)"
    );
    assert_eq!(
        r.call(BOOT, "staking", "get-verifier-set", "u0"),
        "(err u9)"
    );
    // Six stakers; 6 and 7 tie on amount and height: the smaller principal hash ranks first.
    for (n, amount) in [
        (1u8, 300u32),
        (2, 900),
        (3, 500),
        (4, 100),
        (6, 700),
        (7, 700),
    ] {
        r.call(&account(n), "staking", "stake", &format!("u{amount} u1"));
    }
    // A later equal stake ranks after an earlier one.
    r.advance(1);
    r.call(&account(8), "staking", "stake", "u500 u1");
    assert_eq!(
        r.call(&account(1), "staking", "begin-cycle", "u0"),
        "(err u1)"
    );
    assert_eq!(r.call(BOOT, "staking", "begin-cycle", "u0"), "(ok true)");
    assert_eq!(r.call(BOOT, "staking", "begin-cycle", "u0"), "(ok false)");
    let expected = format!(
        "(ok ({} {} {} {} {}))",
        account(2),
        account(6),
        account(7),
        account(3),
        account(8)
    );
    assert_eq!(r.call(BOOT, "staking", "get-verifier-set", "u0"), expected);
    let set = |r: &mut Repl, n: u8| {
        r.call(
            BOOT,
            "staking",
            "is-verifier",
            &format!("'{} u0", account(n)),
        )
    };
    assert_eq!(set(&mut r, 2), "true");
    assert_eq!(set(&mut r, 1), "false");
    // A change during the cycle moves the leaders, not the recorded set.
    r.call(&account(1), "staking", "stake", "u5000 u1");
    assert_eq!(r.call(BOOT, "staking", "get-verifier-set", "u0"), expected);
    let leaders = r.call(BOOT, "staking", "get-leaders", "");
    assert!(
        leaders.starts_with(&format!("({}", account(1))),
        "{leaders}"
    );
}

#[test]
fn model_registry_proposals_and_votes() {
    let mut r = Repl::with_verifiers();
    let id = format!("0x{}", "11".repeat(32));
    let other = format!("0x{}", "22".repeat(32));
    let p = account(8);
    let propose = |r: &mut Repl, id: &str, name: &str, ctx: &str, method: &str| {
        r.call(
            &p,
            "model-registry",
            "propose",
            &format!("{id} \"{name}\" \"llama\" {ctx} \"{method}\""),
        )
    };
    assert_eq!(propose(&mut r, &id, "", "u2048", "replay"), "(err u102)");
    assert_eq!(propose(&mut r, &id, "m", "u0", "replay"), "(err u103)");
    assert_eq!(
        propose(&mut r, &id, "m", "u2000000", "replay"),
        "(err u103)"
    );
    assert_eq!(propose(&mut r, &id, "m", "u2048", "trust-me"), "(err u104)");
    assert_eq!(propose(&mut r, &id, "m", "u2048", "replay"), "(ok true)");
    assert_eq!(propose(&mut r, &id, "m", "u2048", "judge"), "(err u101)");
    assert_eq!(propose(&mut r, &other, "n", "u4096", "judge"), "(ok true)");
    assert_eq!(r.call(&p, "model-registry", "is-approved", &id), "false");

    let vote = |r: &mut Repl, n: u8, id: &str, yes: bool| {
        r.call(
            &account(n),
            "model-registry",
            "vote",
            &format!("{id} {yes}"),
        )
    };
    let unknown = format!("0x{}", "33".repeat(32));
    assert_eq!(vote(&mut r, 1, &unknown, true), "(err u105)");
    assert_eq!(vote(&mut r, 8, &id, true), "(err u106)");
    assert_eq!(vote(&mut r, 1, &id, true), "(ok \"pending\")");
    assert_eq!(vote(&mut r, 1, &id, false), "(err u107)");
    assert_eq!(vote(&mut r, 2, &id, true), "(ok \"pending\")");
    assert_eq!(vote(&mut r, 3, &id, true), "(ok \"approved\")");
    assert_eq!(vote(&mut r, 4, &id, true), "(err u108)");
    assert_eq!(r.call(&p, "model-registry", "is-approved", &id), "true");
    // Three of five against: rejected.
    for n in 1..=2 {
        assert_eq!(vote(&mut r, n, &other, false), "(ok \"pending\")");
    }
    assert_eq!(vote(&mut r, 3, &other, false), "(ok \"rejected\")");
    assert_eq!(r.call(&p, "model-registry", "is-approved", &other), "false");
    // In a cycle that has not begun, there is no set to vote with (burn-block-height is
    // the parent's: eleven blocks on, the chain is in the next cycle).
    r.advance(11);
    let third = format!("0x{}", "44".repeat(32));
    propose(&mut r, &third, "x", "u8", "replay");
    assert_eq!(vote(&mut r, 1, &third, true), "(err u109)");
}

#[test]
fn genesis_models_are_approved_by_the_consensus_only() {
    let mut r = Repl::new();
    let id = format!("0x{}", "7a".repeat(32));
    let args = format!("{id} \"fai-tiny\" \"llama\" u2048 \"replay\"");
    assert_eq!(
        r.call(
            &account(1),
            "model-registry",
            "approve-genesis-model",
            &args
        ),
        "(err u100)"
    );
    let bad = format!("{id} \"fai-tiny\" \"llama\" u2048 \"vibes\"");
    assert_eq!(
        r.call(BOOT, "model-registry", "approve-genesis-model", &bad),
        "(err u104)"
    );
    assert_eq!(
        r.call(BOOT, "model-registry", "approve-genesis-model", &args),
        "(ok true)"
    );
    assert_eq!(
        r.call(BOOT, "model-registry", "approve-genesis-model", &args),
        "(err u101)"
    );
    assert_eq!(r.call(BOOT, "model-registry", "is-approved", &id), "true");
}

/// A session with one approved model, `0x7a..`.
fn with_model() -> (Repl, String) {
    let mut r = Repl::new();
    let id = format!("0x{}", "7a".repeat(32));
    let args = format!("{id} \"fai-tiny\" \"llama\" u2048 \"replay\"");
    assert_eq!(
        r.call(BOOT, "model-registry", "approve-genesis-model", &args),
        "(ok true)"
    );
    assert_eq!(
        r.call(BOOT, "node-registry", "configure", "u100 u5"),
        "(ok true)"
    );
    (r, id)
}

#[test]
fn node_registry_register_and_update() {
    let (mut r, id) = with_model();
    let n = account(1);
    assert_eq!(
        r.call(&n, "node-registry", "configure", "u1 u1"),
        "(err u200)"
    );
    assert_eq!(
        r.call(BOOT, "node-registry", "configure", "u0 u1"),
        "(err u211)"
    );
    let unapproved = format!("0x{}", "99".repeat(32));
    let reg = |r: &mut Repl, who: &str, models: &str, address: &str, bond: u32| {
        r.call(
            who,
            "node-registry",
            "register",
            &format!("(list {models}) u500 \"{address}\" u{bond}"),
        )
    };
    assert_eq!(
        reg(&mut r, &n, "", "/ip4/127.0.0.1/tcp/9", 100),
        "(err u203)"
    );
    assert_eq!(
        reg(&mut r, &n, &unapproved, "/ip4/127.0.0.1/tcp/9", 100),
        "(err u204)"
    );
    assert_eq!(reg(&mut r, &n, &id, "", 100), "(err u206)");
    assert_eq!(
        reg(&mut r, &n, &id, "/ip4/127.0.0.1/tcp/9", 99),
        "(err u205)"
    );
    assert_eq!(
        reg(&mut r, &n, &id, "/ip4/127.0.0.1/tcp/9", 2_000_000),
        "(err u207)"
    );
    assert_eq!(
        reg(&mut r, &n, &id, "/ip4/127.0.0.1/tcp/9", 100),
        "(ok true)"
    );
    assert_eq!(
        reg(&mut r, &n, &id, "/ip4/127.0.0.1/tcp/9", 100),
        "(err u201)"
    );
    assert_eq!(r.balance(&n), "u999900");
    assert_eq!(
        r.call(&n, "node-registry", "serves", &format!("'{n} {id}")),
        "true"
    );

    let update = |r: &mut Repl, who: &str, models: &str| {
        r.call(
            who,
            "node-registry",
            "update",
            &format!("(list {models}) u900 \"/dns/node.example/tcp/9\""),
        )
    };
    assert_eq!(update(&mut r, &account(2), &id), "(err u202)");
    assert_eq!(update(&mut r, &n, &unapproved), "(err u204)");
    assert_eq!(update(&mut r, &n, &id), "(ok true)");
    let node = r.call(&n, "node-registry", "get-node", &format!("'{n}"));
    assert!(
        node.contains("(price u900)") && node.contains("node.example"),
        "{node}"
    );
    r.call(&n, "node-registry", "request-withdrawal", "");
    assert_eq!(update(&mut r, &n, &id), "(err u208)");
}

#[test]
fn node_registry_withdrawal_after_the_delay() {
    let (mut r, id) = with_model();
    let n = account(1);
    assert_eq!(
        r.call(&n, "node-registry", "request-withdrawal", ""),
        "(err u202)"
    );
    assert_eq!(r.call(&n, "node-registry", "withdraw", ""), "(err u202)");
    r.call(
        &n,
        "node-registry",
        "register",
        &format!("(list {id}) u500 \"addr\" u100"),
    );
    assert_eq!(r.call(&n, "node-registry", "withdraw", ""), "(err u209)");
    let out = r.call(&n, "node-registry", "request-withdrawal", "");
    assert!(out.starts_with("(ok u"), "{out}");
    assert_eq!(
        r.call(&n, "node-registry", "request-withdrawal", ""),
        "(err u208)"
    );
    assert_eq!(
        r.call(&n, "node-registry", "serves", &format!("'{n} {id}")),
        "false"
    );
    assert_eq!(r.call(&n, "node-registry", "withdraw", ""), "(err u210)");
    r.advance(6);
    assert_eq!(r.call(&n, "node-registry", "withdraw", ""), "(ok u100)");
    assert_eq!(r.balance(&n), "u1000000");
    assert_eq!(
        r.call(&n, "node-registry", "get-node", &format!("'{n}")),
        "none"
    );
}

/// A node whose inferences a block carried keeps its bond until the last block in which
/// they may settle, even once the withdrawal delay has passed: only the consensus holds
/// it, a hold never shortens an earlier one, and the bond comes back the block after.
#[test]
fn node_registry_withdrawal_waits_for_held_inferences_to_settle() {
    let (mut r, id) = with_model();
    let n = account(1);
    r.call(
        &n,
        "node-registry",
        "register",
        &format!("(list {id}) u500 \"addr\" u100"),
    );
    let height: u32 = r
        .eval_as(BOOT, "block-height")
        .trim_start_matches('u')
        .parse()
        .unwrap();
    let hold = |r: &mut Repl, who: &str, until: u32| {
        r.call(who, "node-registry", "hold", &format!("'{n} u{until}"))
    };
    assert_eq!(hold(&mut r, &n, 0), "(err u200)");
    assert_eq!(hold(&mut r, BOOT, height + 9), "(ok true)");
    assert_eq!(hold(&mut r, BOOT, height + 2), "(ok true)");
    assert_eq!(
        r.call(&n, "node-registry", "get-held-until", &format!("'{n}")),
        format!("(some u{})", height + 9)
    );
    r.call(&n, "node-registry", "request-withdrawal", "");
    r.advance(6);
    assert_eq!(r.call(&n, "node-registry", "withdraw", ""), "(err u213)");
    r.advance(3);
    assert_eq!(
        r.eval_as(BOOT, "block-height"),
        format!("u{}", height + 9),
        "the last block it is held through"
    );
    assert_eq!(r.call(&n, "node-registry", "withdraw", ""), "(err u213)");
    r.advance(1);
    assert_eq!(r.call(&n, "node-registry", "withdraw", ""), "(ok u100)");
    assert_eq!(
        r.call(&n, "node-registry", "get-held-until", &format!("'{n}")),
        "none"
    );
}

#[test]
fn only_the_consensus_slashes_and_slashing_burns_the_bond() {
    let (mut r, id) = with_model();
    let n = account(1);
    let slash = |r: &mut Repl, who: &str, amount: u32| {
        r.call(who, "node-registry", "slash", &format!("'{n} u{amount}"))
    };
    assert_eq!(slash(&mut r, BOOT, 10), "(err u202)");
    r.call(
        &n,
        "node-registry",
        "register",
        &format!("(list {id}) u500 \"addr\" u100"),
    );
    assert_eq!(slash(&mut r, &n, 10), "(err u200)");
    assert_eq!(slash(&mut r, &account(2), 10), "(err u200)");
    let supply_before = r.eval_as(BOOT, "stx-liquid-supply");
    assert_eq!(slash(&mut r, BOOT, 30), "(ok u30)");
    assert_eq!(slash(&mut r, BOOT, 500), "(ok u70)");
    let node = r.call(&n, "node-registry", "get-node", &format!("'{n}"));
    assert!(
        node.contains("(bond u0)") && node.contains("(slashed u100)"),
        "{node}"
    );
    let supply_after = r.eval_as(BOOT, "stx-liquid-supply");
    let parse = |s: &str| s.trim_start_matches('u').parse::<u128>().unwrap();
    assert_eq!(
        parse(&supply_before) - parse(&supply_after),
        100,
        "slashed FAI is burnt"
    );
}

/// A settled block's verdicts in one call: recorded in order as record-result records
/// them one by one; only the consensus calls it; a result recorded before fails the whole
/// call and leaves nothing of it.
#[test]
fn reputation_records_a_blocks_results_in_one_call() {
    let mut r = Repl::new();
    let (user, node, other) = (account(1), account(2), account(3));
    let entry = |tx: &str, node: &str, ok: bool| {
        format!(
            "{{tx: 0x{}, sender: '{user}, node: '{node}, accepted: {ok}}}",
            tx.repeat(32)
        )
    };
    let batch = |entries: &[String]| format!("(list {})", entries.join(" "));
    let three = batch(&[
        entry("a1", &node, true),
        entry("a2", &node, false),
        entry("a3", &other, true),
    ]);
    assert_eq!(
        r.call(&user, "reputation", "record-results", &three),
        "(err u300)"
    );
    assert_eq!(
        r.call(BOOT, "reputation", "record-results", &three),
        "(ok true)"
    );
    let score =
        |r: &mut Repl, who: &str| r.call(&user, "reputation", "get-record", &format!("'{who}"));
    assert!(
        score(&mut r, &node).contains("(accepted u1)"),
        "{}",
        score(&mut r, &node)
    );
    assert!(score(&mut r, &node).contains("(rejected u1)"));
    assert!(score(&mut r, &other).contains("(accepted u1)"));
    // One recorded before, after a new one: the call fails and the new one is not kept.
    let again = batch(&[entry("b1", &other, true), entry("a1", &node, true)]);
    assert_eq!(
        r.call(BOOT, "reputation", "record-results", &again),
        "(err u305)"
    );
    assert!(
        score(&mut r, &other).contains("(accepted u1)"),
        "rolled back"
    );
    assert_eq!(
        r.call(
            BOOT,
            "reputation",
            "record-result",
            &format!("0x{} '{user} '{other} true", "b1".repeat(32))
        ),
        "(ok true)",
        "b1 was not kept"
    );
}

#[test]
fn reputation_records_results_and_one_rating_per_transaction() {
    let mut r = Repl::new();
    let (user, node) = (account(1), account(2));
    let tx = format!("0x{}", "ab".repeat(32));
    let record = |r: &mut Repl, who: &str, tx: &str, ok: bool| {
        r.call(
            who,
            "reputation",
            "record-result",
            &format!("{tx} '{user} '{node} {ok}"),
        )
    };
    assert_eq!(record(&mut r, &user, &tx, true), "(err u300)");
    assert_eq!(
        r.call(&user, "reputation", "rate", &format!("{tx} u5")),
        "(err u301)"
    );
    assert_eq!(record(&mut r, BOOT, &tx, true), "(ok true)");
    assert_eq!(record(&mut r, BOOT, &tx, true), "(err u305)");
    let tx2 = format!("0x{}", "cd".repeat(32));
    assert_eq!(record(&mut r, BOOT, &tx2, false), "(ok true)");

    assert_eq!(
        r.call(&node, "reputation", "rate", &format!("{tx} u5")),
        "(err u302)"
    );
    assert_eq!(
        r.call(&user, "reputation", "rate", &format!("{tx} u0")),
        "(err u304)"
    );
    assert_eq!(
        r.call(&user, "reputation", "rate", &format!("{tx} u6")),
        "(err u304)"
    );
    assert_eq!(
        r.call(&user, "reputation", "rate", &format!("{tx} u4")),
        "(ok true)"
    );
    assert_eq!(
        r.call(&user, "reputation", "rate", &format!("{tx} u1")),
        "(err u303)"
    );
    let record = r.call(&user, "reputation", "get-record", &format!("'{node}"));
    assert_eq!(
        record,
        "(tuple (accepted u1) (rating-sum u4) (ratings u1) (rejected u1))"
    );
    // One accepted, one rejected, plus the prior of one each: 500; rating 4.000.
    let score = r.call(&user, "reputation", "get-score", &format!("'{node}"));
    assert_eq!(
        score,
        "(tuple (acceptance u500) (rating u4000) (results u2))"
    );
    let fresh = r.call(
        &user,
        "reputation",
        "get-score",
        &format!("'{}", account(5)),
    );
    assert_eq!(fresh, "(tuple (acceptance u500) (rating u0) (results u0))");
}

/// Attack (decision 0004): a verifier votes, then unstakes before an audit of its votes is
/// revealed, and the slash finds no stake. A member of the verifier set of this cycle or
/// the last cannot unstake (before, only the lock held it).
#[test]
fn staking_a_verifier_cannot_unstake_while_its_votes_may_be_audited() {
    let mut r = Repl::new();
    let a = account(1);
    r.call(BOOT, "staking", "configure", "u10 u100");
    r.call(&a, "staking", "stake", "u500 u1");
    r.advance(25); // cycle 2: the lock (until cycle 2) is over
    assert_eq!(r.call(BOOT, "staking", "begin-cycle", "u2"), "(ok true)");
    assert_eq!(
        r.call(&a, "staking", "unstake", ""),
        "(err u6)",
        "in this cycle's set"
    );
    r.advance(10); // cycle 3: in the last cycle's set
    assert_eq!(
        r.call(&a, "staking", "unstake", ""),
        "(err u6)",
        "in the last cycle's set"
    );
    r.advance(10); // cycle 4
    assert_eq!(r.call(&a, "staking", "unstake", ""), "(ok u500)");
}
