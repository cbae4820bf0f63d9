//! The whole network end to end, against the real binary: five `infer-node` processes on
//! loopback (regtest). Nodes 0-2 mine, all five stake and so form the verifier set,
//! nodes 0 and 1 register and commit as inference nodes. Node 0 funds the wallet
//! `alice`, node 1 the wallet `bob`; alice pays nodes 3 and 4 on the ledger (they do not
//! mine, and need FAI to stake); both wallets peg in.
//!
//! - `five_nodes_settle_inferences_exactly_and_reclaim_their_text`: 20 inferences over
//!   RPC, every unit accounted for on both layers (the ledger's supply and the bids'
//!   shares paid to the stakers besides), and their text gone from every node six ledger
//!   blocks after settlement.
//! - `crashed_nodes_catch_up_and_lose_nothing` and `a_partition_heals_onto_the_most_work_chain`:
//!   kill -9 and restart, and a 2 | 3 split by bans.
//!
//! All run with `make test-e2e`: their miners pace themselves on the machine's clock, so
//! how many inferences reach a final block depends on the load. `make test` runs the same
//! scenarios exactly on the in-process network (`tests/inproc.rs`: every inference
//! settled, a forging node slashed for every forged answer, a partition healed).

use std::collections::HashMap;

use fai_tests::net::{Net, Role};
use fai_tests::{votes_carried, Purchase};
use serde_json::Value;

/// 1 FAI in base units.
const FAI: u64 = 100_000_000;
/// The max fee of every inference: 0.001 FAI.
const MAX_FEE: u64 = 100_000;
/// The default ledger fee of the wallet's send and peg-in: 0.00001 FAI.
const SEND_FEE: u64 = 1_000;
/// An inference node's bid per ledger block (the default 0.001 FAI).
const BID: u64 = 100_000;
/// What each wallet pegs in.
const WALLET_PEG_IN: u64 = 3 * FAI;
/// What alice pays each non-mining staker on the ledger.
const STAKER_FUNDS: u64 = 6 * FAI;
/// Miners rest this long after a block (three miners: about two blocks a second).
const PACE_MS: u64 = 1_500;

fn roles(cheater: bool) -> Vec<Role> {
    (0..5)
        .map(|i| Role {
            mine: i < 3,
            produce: i < 2,
            stake: true,
            wallet: match i {
                0 => Some(("alice", "20 FAI")),
                1 => Some(("bob", "10 FAI")),
                _ => None,
            },
            forge: cheater && i == 1,
        })
        .collect()
}

fn units(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A wallet's address, from the node keeping it.
fn wallet_address(net: &Net, node: usize, name: &str) -> String {
    net.cli(node, &["wallet", "address", "--name", name, "--json"])
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn inference_account(net: &Net, node: usize, address: &str) -> Value {
    net.get(node, &format!("/v2/inference-chain/accounts/{address}"))
}

fn ledger_balance(net: &Net, node: usize, address: &str) -> u64 {
    units(&net.get(node, &format!("/v2/ledger/accounts/{address}"))["balance_units"])
}

/// The network of the scenarios, brought to where inferences can be bought: both
/// wallets funded and pegged in, the two inference nodes registered, the five stakers
/// the verifier set.
struct Ready {
    net: Net,
    /// One network at a time: five nodes already share this machine's cores.
    _turn: std::sync::MutexGuard<'static, ()>,
    alice: String,
    bob: String,
    /// Node i's address.
    nodes: Vec<String>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ready(cheater: bool) -> Ready {
    let turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let net = Net::start(&roles(cheater), PACE_MS);
    net.wait_for(60, "every node's RPC", &|| {
        (0..5).all(|i| !net.address(i).is_empty())
    });
    let nodes: Vec<String> = (0..5).map(|i| net.address(i)).collect();
    let alice = wallet_address(&net, 0, "alice");
    let bob = wallet_address(&net, 1, "bob");
    net.wait_for(400, "the dev wallets' ledger funds", &|| {
        ledger_balance(&net, 0, &alice) == 20 * FAI && ledger_balance(&net, 0, &bob) == 10 * FAI
    });
    for (n, staker) in (1..).zip(&nodes[3..]) {
        net.cli(
            0,
            &[
                "wallet", "send", staker, "6 FAI", "--name", "alice", "--json",
            ],
        )
        .unwrap();
        // The next send spends alice's change: wait for this one to be mined (the
        // staker pegs in what it gets at once, so alice's side is what to watch).
        net.wait_for(60, "alice's payment to a staker", &|| {
            ledger_balance(&net, 0, &alice) == 20 * FAI - n * (STAKER_FUNDS + SEND_FEE)
        });
    }
    for (node, name) in [(0, "alice"), (1, "bob")] {
        net.cli(
            node,
            &["wallet", "peg-in", "3 FAI", "--name", name, "--json"],
        )
        .unwrap();
    }
    net.wait_for(
        400,
        "the verifier set of five and two inference nodes",
        &|| fai_tests::roles_on_chain(&|path| net.get(0, path)) == (5, 2),
    );
    net.wait_for(120, "the wallets' peg-ins", &|| {
        units(&inference_account(&net, 0, &alice)["balance_units"]) == WALLET_PEG_IN
            && units(&inference_account(&net, 0, &bob)["balance_units"]) == WALLET_PEG_IN
    });
    Ready {
        net,
        _turn: turn,
        alice,
        bob,
        nodes,
    }
}

/// One inference bought by `name` (kept on node `node`, which it asks); its receipt.
fn buy(net: &Net, node: usize, name: &str, i: usize) -> Value {
    net.cli(node, &Purchase::new(i).args(name))
        .unwrap_or_else(|e| panic!("inference {i} by {name} failed: {e}"))
}

/// An inference bought with its id and buyer.
type Bought = (String, &'static str, Value);

/// Inference `i`: alice's (asking node 0) when `i` is even, bob's (node 1) when odd.
fn buy_turn(net: &Net, i: usize) -> Bought {
    let (node, name) = if i % 2 == 0 { (0, "alice") } else { (1, "bob") };
    let receipt = buy(net, node, name, i);
    (receipt["txid"].as_str().unwrap().to_string(), name, receipt)
}

/// The state of `txid` on node `i`.
fn state(net: &Net, i: usize, txid: &str) -> Value {
    net.get(i, &format!("/v2/inference/{txid}"))
}

/// Waits until every inference is settled on every node; their settlement on node 0.
fn settled_everywhere(net: &Net, txids: &[String]) -> HashMap<String, Value> {
    net.wait_for(300, "every inference settled on every node", &|| {
        txids
            .iter()
            .all(|t| (0..net.nodes.len()).all(|i| state(net, i, t)["state"] == "settled"))
    });
    txids
        .iter()
        .map(|t| (t.clone(), state(net, 0, t)))
        .collect()
}

/// Every FAI on the inference layer is somewhere known: the accounts of the nodes, the
/// wallets and the escrow, the stakes and the bonds add up to the liquid supply.
fn assert_inference_layer_adds_up(r: &Ready, at: usize) {
    let mut addresses = r.nodes.clone();
    addresses.extend([r.alice.clone(), r.bob.clone(), fai_tests::escrow_address()]);
    fai_tests::assert_inference_layer_adds_up(&|path| r.net.get(at, path), &addresses);
}

/// The ledger issued exactly the subsidies of its blocks (1.5 FAI, halving every 150
/// blocks on regtest), and every node says so at the same height.
fn assert_ledger_supply(net: &Net) {
    let infos: Vec<Value> = (0..net.nodes.len())
        .map(|i| net.get(i, "/v2/info"))
        .collect();
    let height = units(&infos[0]["ledger"]["height"]);
    let expected: u64 = (1..=height)
        .map(|h| (3 * FAI / 2) >> (h / 150).min(63))
        .sum();
    assert_eq!(units(&infos[0]["ledger"]["supply_units"]), expected);
    for info in &infos {
        if units(&info["ledger"]["height"]) == height {
            assert_eq!(
                info["ledger"]["supply_units"],
                infos[0]["ledger"]["supply_units"]
            );
        }
    }
}

/// What the settlement of one inference must be, given its receipt (1 unit per token
/// at the default price of 0.01 FAI per million).
fn check_settlement(txid: &str, s: &Value, tokens: u64) -> u64 {
    let st = &s["settlement"];
    if s["final"] == true && s["accepted"] == true {
        let fee = tokens;
        assert_eq!(units(&st["fee_units"]), fee, "{txid}: {s}");
        assert_eq!(units(&st["node_units"]), fee * 9 / 10, "{txid}: {s}");
        assert_eq!(
            units(&st["producer_units"]),
            fee - fee * 9 / 10,
            "{txid}: {s}"
        );
        assert_eq!(units(&st["refund_units"]), MAX_FEE - fee, "{txid}: {s}");
        fee
    } else {
        assert_eq!(units(&st["fee_units"]), 0, "{txid}: {s}");
        assert_eq!(units(&st["refund_units"]), MAX_FEE, "{txid}: {s}");
        0
    }
}

#[test]
#[ignore = "slow: make test-e2e"]
fn five_nodes_settle_inferences_exactly_and_reclaim_their_text() {
    let r = ready(false);
    let net = &r.net;

    // 20 inferences, ten per wallet, each from the node that keeps the wallet.
    let mut receipts: Vec<Bought> = Vec::new();
    for i in 0..20 {
        let (txid, name, receipt) = buy_turn(net, i);
        let text = receipt["text"].as_str().unwrap_or_default();
        assert!(
            units(&receipt["tokens"]) > 0 && !text.is_empty(),
            "{receipt}"
        );
        receipts.push((txid, name, receipt));
    }
    let txids: Vec<String> = receipts.iter().map(|(t, _, _)| t.clone()).collect();
    // While settled and less than six ledger blocks deep, the text is still kept.
    let mut seen_held = false;
    for _ in 0..100 {
        seen_held |= txids
            .iter()
            .any(|t| state(net, 2, t)["payload_held"] == true);
        if seen_held {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        seen_held,
        "no node showed an inference's text before settlement"
    );

    let settled = settled_everywhere(net, &txids);
    let mut paid: HashMap<&str, u64> = HashMap::new();
    let mut final_blocks = std::collections::BTreeSet::new();
    for (txid, name, receipt) in &receipts {
        let s = &settled[txid];
        let fee = check_settlement(txid, s, units(&receipt["tokens"]));
        *paid.entry(name).or_default() += fee;
        if s["final"] == true {
            final_blocks.insert((
                s["block"]["id"].as_str().unwrap().to_string(),
                s["settled_in"]["id"].as_str().unwrap().to_string(),
            ));
        }
        // Every node agrees on how it settled.
        for i in 1..5 {
            let other = state(net, i, txid);
            assert_eq!(other["settlement"], s["settlement"], "node {i} on {txid}");
            assert_eq!(other["accepted"], s["accepted"], "node {i} on {txid}");
        }
    }
    let accepted = receipts
        .iter()
        .filter(|(t, _, _)| settled[t]["accepted"] == true)
        .count();
    eprintln!(
        "{accepted} of 20 accepted, settled by {} final blocks; alice paid {}, bob {}; ledger height {}",
        final_blocks.len(),
        paid.get("alice").copied().unwrap_or(0),
        paid.get("bob").copied().unwrap_or(0),
        net.ledger_height(0)
    );
    // Blocks whose votes came too late to settle them refund their inferences (checked
    // above to the unit); on a loaded machine that can be most of them, never all.
    assert!(
        accepted > 0,
        "none of the 20 honest inferences was accepted"
    );
    assert!(!final_blocks.is_empty());
    // A final block is one whose votes from 3 of the 5 verifiers are carried by the
    // blocks of its window up to the one that settles it.
    for (id, settler) in &final_blocks {
        let votes = votes_carried(|path| net.get(0, path), id, settler);
        assert!(votes >= 3, "{votes} votes on {id} up to {settler}");
    }

    // The wallets paid exactly their accepted fees; the rest came back.
    for (address, name) in [(&r.alice, "alice"), (&r.bob, "bob")] {
        let balance = units(&inference_account(net, 0, address)["balance_units"]);
        assert_eq!(
            balance,
            WALLET_PEG_IN - paid[name],
            "{name}'s inference balance"
        );
    }
    assert_inference_layer_adds_up(&r, 0);
    // On the ledger: alice got 20 FAI, paid 6 FAI to each staker and pegged in 3 FAI,
    // three ledger fees; bob got 10 FAI and pegged in 3 FAI.
    assert_eq!(
        ledger_balance(net, 0, &r.alice),
        20 * FAI - 2 * STAKER_FUNDS - WALLET_PEG_IN - 3 * SEND_FEE
    );
    assert_eq!(
        ledger_balance(net, 0, &r.bob),
        10 * FAI - WALLET_PEG_IN - SEND_FEE
    );
    assert_ledger_supply(net);
    // Commitments: each inference node's bid (0.001 FAI a ledger block) is paid in equal
    // parts to the verifier set but itself (four of five, or fewer in a cycle before the
    // last stake). The stakers that do not mine got nothing else on the ledger but
    // alice's payment.
    for staker in &r.nodes[3..] {
        let history = net.get(0, &format!("/v2/accounts/{staker}/history?blocks=1000"));
        let received: Vec<u64> = history["ledger"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["kind"] == "received")
            .map(|item| units(&item["received_units"]))
            .collect();
        let shares: Vec<u64> = (1..=4).map(|n| BID / n).collect();
        let commits = received.iter().filter(|u| shares.contains(u)).count();
        assert!(
            received.contains(&(BID / 4)),
            "{staker} was paid no quarter of a bid: {history}"
        );
        assert_eq!(
            received.len(),
            commits + 1,
            "{staker} got other payments than alice's and fifths of bids: {received:?}"
        );
        assert!(received.contains(&STAKER_FUNDS), "{received:?}");
    }

    // Six ledger blocks after settlement, no node keeps any prompt or output.
    net.wait_for(120, "the inferences' text reclaimed on every node", &|| {
        txids
            .iter()
            .all(|t| (0..5).all(|i| state(net, i, t)["payload_held"] == false))
    });
}

/// Whether every node has the same ledger block one below the lowest tip, and the same
/// inference tip as of it.
fn converged(net: &Net) -> bool {
    let heights: Vec<u64> = (0..net.nodes.len()).map(|i| net.ledger_height(i)).collect();
    let Some(h) = heights.iter().min().and_then(|m| m.checked_sub(1)) else {
        return false;
    };
    let hashes: Vec<Value> = (0..net.nodes.len())
        .map(|i| net.get(i, &format!("/v2/ledger/blocks/{h}"))["hash"].clone())
        .collect();
    hashes[0].is_string() && hashes.iter().all(|x| *x == hashes[0])
}

/// Every node tells the same about every inference and every wallet: settled once, the
/// same way, and the wallets paid exactly the accepted fees.
fn assert_all_agree(r: &Ready, receipts: &[Bought]) {
    let net = &r.net;
    let txids: Vec<String> = receipts.iter().map(|(t, _, _)| t.clone()).collect();
    let settled = settled_everywhere(net, &txids);
    let mut paid: HashMap<&str, u64> = HashMap::new();
    let accepted = settled.values().filter(|s| s["accepted"] == true).count();
    eprintln!(
        "{accepted} of {} inferences accepted, the rest refunded",
        receipts.len()
    );
    for (txid, name, receipt) in receipts {
        let s = &settled[txid];
        *paid.entry(name).or_default() += check_settlement(txid, s, units(&receipt["tokens"]));
        for i in 1..net.nodes.len() {
            let other = state(net, i, txid);
            assert_eq!(other["settled_in"], s["settled_in"], "node {i} on {txid}");
            assert_eq!(other["settlement"], s["settlement"], "node {i} on {txid}");
        }
    }
    for i in 0..net.nodes.len() {
        for (address, name) in [(&r.alice, "alice"), (&r.bob, "bob")] {
            let balance = units(&inference_account(net, i, address)["balance_units"]);
            let spent = paid.get(name).copied().unwrap_or(0);
            assert_eq!(
                balance,
                WALLET_PEG_IN - spent,
                "{name}'s balance on node {i}"
            );
        }
    }
    assert_inference_layer_adds_up(r, 0);
    assert_ledger_supply(net);
}

/// kill -9 a verifier (node 3) and a miner (node 2) in the middle of a run and start
/// them again: they catch up, and nothing they had confirmed or kept is lost.
#[test]
#[ignore = "slow: make test-e2e"]
fn crashed_nodes_catch_up_and_lose_nothing() {
    let mut r = ready(false);
    let mut receipts: Vec<Bought> = (0..4).map(|i| buy_turn(&r.net, i)).collect();
    // Node 3 holds the last one's text once it is in a block; kill both then.
    let last = receipts.last().unwrap().0.clone();
    r.net
        .wait_for(60, "the verifier to hold an inference's text", &|| {
            state(&r.net, 3, &last)["payload_held"] == true
        });
    let before: Vec<(u64, Value)> = [2, 3]
        .iter()
        .map(|&i| {
            let h = r.net.ledger_height(i);
            (
                h,
                r.net.get(i, &format!("/v2/ledger/blocks/{h}"))["hash"].clone(),
            )
        })
        .collect();
    r.net.kill(2);
    r.net.kill(3);
    // The others go on: three verifiers of five are still a quorum.
    receipts.extend((4..8).map(|i| buy_turn(&r.net, i)));
    r.net.spawn(2);
    r.net.spawn(3);
    r.net.wait_for(60, "the restarted nodes' RPC", &|| {
        r.net.ledger_height(2) > 0 && r.net.ledger_height(3) > 0
    });
    for (node, (height, hash)) in [2, 3].into_iter().zip(&before) {
        // What they had connected is still theirs (or replaced by more work).
        let now = r.net.ledger_height(node);
        assert!(
            now >= *height,
            "node {node} came back at {now}, below {height}"
        );
        let at = r.net.get(node, &format!("/v2/ledger/blocks/{height}"));
        let active_elsewhere =
            r.net.get(0, &format!("/v2/ledger/blocks/{height}"))["hash"] != *hash;
        assert!(
            at["hash"] == *hash || active_elsewhere,
            "node {node} lost block {height}"
        );
    }
    // The verifier kept the text unless it was due for reclaiming.
    let s = state(&r.net, 3, &last);
    if s["payload_held"] != true {
        let settler = r.net.get(
            3,
            &format!(
                "/v2/inference-chain/blocks/{}",
                s["settled_in"]["id"].as_str().unwrap_or("")
            ),
        );
        let due = units(&settler["ledger_anchor_height"]) + 6;
        assert!(
            r.net.ledger_height(3) >= due,
            "node 3 lost the text of {last} before it was due: {s}"
        );
    }
    receipts.extend((8..12).map(|i| buy_turn(&r.net, i)));
    r.net.wait_for(180, "the restarted nodes to catch up", &|| {
        converged(&r.net)
    });
    assert_all_agree(&r, &receipts);
}

/// Split the network 2 | 3 (each side bans the other's peers), let both sides mine,
/// heal: every node ends on the chain with the most work and the inference chain
/// anchored to it, and every inference is settled exactly once.
#[test]
#[ignore = "slow: make test-e2e"]
fn a_partition_heals_onto_the_most_work_chain() {
    let r = ready(false);
    let net = &r.net;
    let mut receipts: Vec<Bought> = (0..4).map(|i| buy_turn(net, i)).collect();
    // Settled before the split: the branch that wins must keep them as they are.
    let early: Vec<String> = receipts.iter().map(|(t, _, _)| t.clone()).collect();
    let before = settled_everywhere(net, &early);
    assert!(
        before.values().any(|s| s["accepted"] == true),
        "nothing was accepted before the split: {before:?}"
    );
    let peers: Vec<String> = (0..5)
        .map(|i| {
            net.get(i, "/v2/info")["p2p"]["peer_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (left, right) = ([0usize, 1], [2usize, 3, 4]);
    let split = |ban: bool| {
        for (mine, theirs) in [(&left[..], &right[..]), (&right[..], &left[..])] {
            for &i in mine {
                for &j in theirs {
                    let status = if ban {
                        let body = format!(r#"{{"peer_id": "{}", "seconds": 3600}}"#, peers[j]);
                        net.admin(i, "POST", "/v2/admin/bans", &body)
                    } else {
                        net.admin(i, "DELETE", &format!("/v2/admin/bans/{}", peers[j]), "")
                    };
                    assert_eq!(status, 200, "ban {ban} of node {j} on node {i}");
                }
            }
        }
    };
    split(true);
    let fork_base = net.ledger_height(0);
    net.wait_for(30, "the sides to disconnect", &|| {
        units(&net.get(0, "/v2/info")["peers"]) == 1 && units(&net.get(2, "/v2/info")["peers"]) == 2
    });
    // Both sides mine their own branch; inferences bought on the left (two verifiers of
    // five) cannot be final there.
    receipts.extend((4..8).map(|i| buy_turn(net, i)));
    // Each side mines its own branch (two miners on the left, one on the right), until
    // one is clearly longer: with equal work per block on regtest, it has the most work.
    net.wait_for(120, "both sides to mine apart", &|| {
        let (left, right) = (net.ledger_height(0), net.ledger_height(2));
        left >= fork_base + 3 && right >= fork_base + 3 && left.abs_diff(right) >= 3
    });
    let tips: Vec<(u64, String)> = [0, 2]
        .iter()
        .map(|&i| {
            let info = net.get(i, "/v2/info");
            (
                units(&info["ledger"]["height"]),
                info["ledger"]["tip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_ne!(tips[0].1, tips[1].1, "the sides did not fork");
    let heavier = tips.iter().max_by_key(|(h, _)| *h).unwrap().1.clone();
    split(false);
    net.wait_for(180, "the sides to converge", &|| converged(net));
    // The lighter side reorganised onto the heavier side's branch.
    for i in 0..5 {
        let block = net.get(i, &format!("/v2/ledger/blocks/{heavier}"));
        assert_eq!(
            block["active"], true,
            "node {i} is not on the most-work branch: {block}"
        );
    }
    assert_all_agree(&r, &receipts);
    for (txid, s) in &before {
        let after = state(net, 2, txid);
        assert_eq!(after["settled_in"], s["settled_in"], "{txid} settled again");
        assert_eq!(after["accepted"], s["accepted"], "{txid}");
    }
    let chain_tips: Vec<Value> = (0..5)
        .map(|i| net.get(i, "/v2/inference-chain")["tip"]["ledger_anchor_height"].clone())
        .collect();
    assert!(chain_tips.iter().all(|t| t.is_u64()), "{chain_tips:?}");
}
