//! The in-process network (`fai_tests::inproc`): nodes in this process on one manual
//! clock, blocks mined on demand.

use fai_tests::inproc::{InProcNet, Setup, SPACING};
use fai_tests::{votes_carried, Purchase};

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
        let view = net.settle();
        assert_eq!(view.ledger, (i as u32 + 1, mined[i]));
    }

    net.stop(2);
    for i in [0, 1] {
        net.advance(SPACING);
        mined.push(net.mine(i));
        assert_eq!(net.settle().ledger.1, *mined.last().unwrap());
    }
    net.start_node(2);
    assert!(
        net.ledger_tip(2).0 >= 3,
        "a restarted node keeps the blocks it had"
    );
    assert_eq!(net.settle().ledger, (5, mined[4]));
    // Every node has every block mined, on the one chain.
    for i in 0..3 {
        let heights = mined.len() as u32;
        let active: Vec<Option<fai_primitives::Hash256>> = net
            .node(i)
            .chain
            .call_blocking(move |st| (1..=heights).map(|h| st.ledger.hash_at(h)).collect())
            .unwrap();
        for (h, hash) in mined.iter().enumerate() {
            assert_eq!(active[h], Some(*hash), "node {i} at height {}", h + 1);
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
    let fork_height = net.settle().ledger.0;

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
    assert_eq!(net.settle().ledger, (fork_height + 2, pair[1]));
    let (first, lone_kept) = net
        .node(2)
        .chain
        .call_blocking(move |st| {
            (
                st.ledger.hash_at(fork_height + 1),
                st.ledger.entry(&lone).is_some(),
            )
        })
        .unwrap();
    assert_eq!(first, Some(pair[0]));
    assert!(lone_kept, "the lone block is kept, off the active chain");
}

/// The wallet's address kept by node `i`.
fn wallet_address(net: &InProcNet, i: usize, name: &str) -> String {
    net.cli(i, &["wallet", "address", "--name", name, "--json"])
        .unwrap_or_else(|e| panic!("no address for {name}: {e}"))["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn units(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// What each wallet has on the inference layer before buying: 3 FAI.
const WALLET_FUNDS: u64 = 300_000_000;
/// The max fee of every inference bought: 0.001 FAI.
const MAX_FEE: u64 = 100_000;

/// The network of the inference scenarios: nodes 0 and 1 sell inference (node 1 forges
/// its answers when `forge`), all three stake and so are the verifier set; alice's
/// wallet is on node 0, bob's on node 1. Mined on demand until the nodes are registered,
/// the set is formed and the wallets are funded (rewards mature after 100 blocks);
/// returns the wallets' addresses.
fn ready(forge: bool) -> (InProcNet, [String; 2]) {
    ready_with(|i, setup| Setup {
        forge: forge && i == 1,
        ..setup
    })
}

/// [`ready`] with each node's setup changed by `tweak` (its index, its usual setup).
fn ready_with(tweak: impl Fn(usize, Setup) -> Setup) -> (InProcNet, [String; 2]) {
    ready_with_roles(tweak, (3, 2))
}

/// [`ready_with`], ready once the verifier set and the node registry have `roles`
/// members.
fn ready_with_roles(
    tweak: impl Fn(usize, Setup) -> Setup,
    roles: (usize, usize),
) -> (InProcNet, [String; 2]) {
    let seller = |wallet| Setup {
        produce: true,
        stake: true,
        wallet: Some(wallet),
        ..Setup::default()
    };
    let setups = [
        tweak(0, seller(("alice", "20 FAI", "3 FAI"))),
        tweak(1, seller(("bob", "10 FAI", "3 FAI"))),
        tweak(
            2,
            Setup {
                stake: true,
                ..Setup::default()
            },
        ),
    ];
    let net = InProcNet::start_with(&setups);
    let wallets = [
        wallet_address(&net, 0, "alice"),
        wallet_address(&net, 1, "bob"),
    ];
    let ready = || {
        let on_chain = fai_tests::roles_on_chain(&|path| net.get(0, path));
        let funded = wallets.iter().all(|w| {
            let account = net.get(0, &format!("/v2/inference-chain/accounts/{w}"));
            units(&account["balance_units"]) == WALLET_FUNDS
        });
        on_chain == roles && funded
    };
    let mut blocks = 0;
    while !ready() {
        net.step(blocks % 3);
        blocks += 1;
        assert!(blocks < 300, "not ready after {blocks} blocks");
    }
    (net, wallets)
}

/// Buys `n` inferences, alice's (from node 0) and bob's (from node 1) in turn; their
/// receipts.
fn buy(net: &InProcNet, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let (node, name) = if i % 2 == 0 { (0, "alice") } else { (1, "bob") };
            let receipt = net
                .cli(node, &Purchase::new(i).args(name))
                .unwrap_or_else(|e| panic!("inference {i} failed: {e}"));
            assert!(units(&receipt["tokens"]) > 0, "{receipt}");
            receipt
        })
        .collect()
}

/// The id of a receipt's inference.
fn txid(receipt: &serde_json::Value) -> &str {
    receipt["txid"].as_str().unwrap_or_default()
}

/// Mines until every inference of `receipts` is settled on every node (a few blocks:
/// one carries them, the next two the commitments to their votes, the one after the
/// votes); then every node tells the same settlement
/// and every wallet's balance is the same everywhere. The settlements on node 0.
fn settle_all(net: &InProcNet, receipts: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let state = |i: usize, txid: &str| net.get(i, &format!("/v2/inference/{txid}"));
    let mut blocks = 0;
    while !receipts
        .iter()
        .all(|r| (0..3).all(|i| state(i, txid(r))["state"] == "settled"))
    {
        net.step(blocks % 3);
        blocks += 1;
        assert!(
            blocks <= 6,
            "not every inference settled after {blocks} blocks"
        );
    }
    receipts
        .iter()
        .map(|r| {
            let on_0 = state(0, txid(r));
            for i in 1..3 {
                assert_eq!(
                    state(i, txid(r))["settlement"],
                    on_0["settlement"],
                    "node {i}: {on_0}"
                );
            }
            // Final: the blocks after it up to the one settling it carry the votes of a
            // majority of the three.
            let block = on_0["block"]["id"].as_str().unwrap_or_default();
            let settler = on_0["settled_in"]["id"].as_str().unwrap_or_default();
            assert_eq!(on_0["final"], true, "{on_0}");
            let votes = votes_carried(|path| net.get(0, path), block, settler);
            assert!(votes >= 2, "{votes} votes on {block} up to {settler}");
            on_0
        })
        .collect()
}

/// `wallet`'s balance on the inference layer, the same on every node.
fn balance(net: &InProcNet, wallet: &str) -> u64 {
    let on = |i: usize| {
        units(&net.get(i, &format!("/v2/inference-chain/accounts/{wallet}"))["balance_units"])
    };
    let b = on(0);
    for i in 1..3 {
        assert_eq!(on(i), b, "{wallet}'s balance on node {i}");
    }
    b
}

/// Every FAI on the inference layer is held by the nodes, the wallets or the escrow, the
/// same on every node.
fn assert_adds_up(net: &InProcNet, wallets: &[String; 2]) {
    let mut addresses: Vec<String> = (0..3)
        .map(|i| {
            net.get(i, "/v2/info")["address"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    addresses.extend(wallets.iter().cloned());
    addresses.push(fai_tests::escrow_address());
    for i in 0..3 {
        fai_tests::assert_inference_layer_adds_up(&|path| net.get(i, path), &addresses);
    }
}

/// Checks an accepted inference's settlement to the unit: the fee is its tokens (1 unit
/// per token at the default price), 9 in 10 to the node, the rest of the max fee back.
fn assert_paid(settled: &serde_json::Value, tokens: u64) {
    let st = &settled["settlement"];
    assert_eq!(settled["accepted"], true, "{settled}");
    assert_eq!(units(&st["fee_units"]), tokens, "{settled}");
    assert_eq!(units(&st["node_units"]), tokens * 9 / 10, "{settled}");
    assert_eq!(units(&st["refund_units"]), MAX_FEE - tokens, "{settled}");
}

/// Decision 0004: a verifier commits to its vote at once and reveals it only once the
/// voted block's commit phase (two blocks) is over on its branch, so that nobody can copy
/// a vote before it had to commit to its own. While the tip is the block carrying an
/// inference or the next one, every node holds the three verifiers' commitments on it and
/// no vote (before, the votes went out at once); with the end of the phase the votes come
/// out, and the next block settles the inference.
#[test]
fn verifiers_reveal_their_votes_only_once_the_commit_phase_is_over() {
    let (net, _) = ready(false);
    let receipt = buy(&net, 1).remove(0);
    let state = || net.get(0, &format!("/v2/inference/{}", txid(&receipt)));
    let mut blocks = 0;
    while state()["state"] != "in_block" {
        net.step(blocks % 3);
        blocks += 1;
        assert!(blocks <= 3, "not in a block after {blocks} blocks");
    }
    let carried = state();
    let id = carried["block"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let height = carried["block"]["height"].as_u64().unwrap_or_default();
    let mut raw = [0u8; 32];
    hex::decode_to_slice(&id, &mut raw).unwrap_or_else(|e| panic!("{id}: {e}"));
    let voted = fai_primitives::Hash256(raw);
    // (commitments, votes) on the block in node i's pool.
    let pool = |i: usize| {
        net.node(i)
            .chain
            .call_blocking(move |st| {
                (
                    st.votes.commits_on(&voted).len(),
                    st.votes.votes_on(&voted).len(),
                )
            })
            .unwrap_or_else(|e| panic!("node {i}: {e}"))
    };
    net.settle();
    for i in 0..3 {
        assert_eq!(
            pool(i),
            (3, 0),
            "node {i} with the carrying block at the tip"
        );
    }
    net.step(0);
    let child = net.get(0, &format!("/v2/inference-chain/blocks/{}", height + 1));
    let on_voted = child["votes_by_block"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["block"] == id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (on_voted["commits"].as_u64(), on_voted["votes"].as_u64()),
        (Some(3), Some(0)),
        "{child}"
    );
    for i in 0..3 {
        assert_eq!(pool(i), (3, 0), "node {i} inside the commit phase");
    }
    net.step(1);
    for i in 0..3 {
        assert_eq!(pool(i), (3, 3), "node {i} once the commit phase is over");
    }
    assert_eq!(state()["state"], "in_block");
    net.step(2);
    let settled = state();
    assert_eq!(settled["state"], "settled", "{settled}");
    assert_eq!(settled["final"], true, "{settled}");
    assert_eq!(
        settled["settled_in"]["height"].as_u64(),
        Some(height + 3),
        "{settled}"
    );
}

/// Node `of`'s entry in a read-only function of a boot contract (`get-stake`,
/// `get-barred`, ...), as node `at` reads it at its canonical tip: the Clarity value
/// printed.
fn read_about(
    net: &InProcNet,
    at: usize,
    contract: &'static str,
    function: &'static str,
    of: usize,
) -> String {
    let address = net.get(of, "/v2/info")["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let hash = fai_primitives::Address::parse_for(&address, fai_primitives::Network::Regtest)
        .unwrap_or_else(|e| panic!("{address}: {e}"))
        .key_hash;
    net.node(at)
        .chain
        .call_blocking(move |st| {
            let chain = st.inference.as_ref()?;
            fai_node::inference::read_boot(
                chain,
                &st.ledger,
                contract,
                function,
                &[chain.vm().principal(hash.0).into()],
            )
            .map(|v| v.to_string())
        })
        .unwrap_or_else(|e| panic!("node {at}: {e}"))
        .unwrap_or_else(|| panic!("node {at} cannot read {contract}.{function}"))
}

/// Decision 0004, audits planted by nodes: node 2 verifies lazily (it votes to accept
/// every inference without replaying it) and node 0 audits the verifiers. Node 0 plants
/// a forgery of its own, committed to beforehand; the two honest verifiers reject it
/// grossly, the lazy one accepts it, and once the block has settled node 0 reveals the
/// audit: the lazy verifier loses a tenth of its stake and is barred from the verifier
/// sets, within a bounded number of blocks, while the honest verifiers keep theirs.
/// Before, no node planted audits: a lazy verifier was never caught.
#[test]
fn a_lazy_verifier_is_caught_by_an_audit_a_node_plants() {
    let setups = [
        Setup {
            produce: true,
            stake: true,
            audit_every: 1,
            ..Setup::default()
        },
        Setup {
            stake: true,
            ..Setup::default()
        },
        Setup {
            stake: true,
            lazy: true,
            ..Setup::default()
        },
    ];
    let net = InProcNet::start_with(&setups);
    let stake = |of: usize| read_about(&net, 0, "staking", "get-stake", of);
    let barred = |of: usize| read_about(&net, 0, "staking", "get-barred", of);
    // Until the three verifiers are the set and node 0 is registered (it plants its
    // first audit then).
    let mut blocks = 0;
    while fai_tests::roles_on_chain(&|path| net.get(0, path)) != (3, 1) {
        net.step(blocks % 3);
        blocks += 1;
        assert!(blocks < 300, "not ready after {blocks} blocks");
        assert_eq!(barred(2), "none", "caught before it was in the set");
    }
    let full = "(some (tuple (amount u100000000)";
    for i in 0..3 {
        assert!(stake(i).starts_with(full), "node {i}: {}", stake(i));
    }
    let mut after = 0;
    while !barred(2).starts_with("(some") {
        net.step(after % 3);
        after += 1;
        assert!(
            after <= 40,
            "the lazy verifier is not caught {after} blocks after it joined the set: stakes {:?}",
            (0..3).map(stake).collect::<Vec<_>>()
        );
    }
    net.settle();
    assert!(
        stake(2).starts_with("(some (tuple (amount u90000000)"),
        "a tenth of the lazy verifier's stake: {}",
        stake(2)
    );
    for i in 0..2 {
        assert!(
            stake(i).starts_with(full),
            "honest verifier {i} keeps its stake: {}",
            stake(i)
        );
        assert_eq!(barred(i), "none");
    }
    // Every node agrees.
    for at in 1..3 {
        assert_eq!(read_about(&net, at, "staking", "get-stake", 2), stake(2));
    }
}

/// Attack: a member of a verifier set posts commitments and votes on old blocks of its
/// cycles; the pools keep a bounded number of blocks, and such posts would push the
/// recent blocks' honest votes out. Gossip now keeps no commitment past its block's
/// commit phase and no vote past its window (before, both were taken). Node 2 is cut off
/// while nodes 0 and 1 carry blocks; then node 2's commitment and vote on a block far
/// behind reach node 0's check: ignored and not kept. Its commitment on the newest
/// block, inside the phase, is taken; its vote on it, before the phase is over, is
/// neither kept nor relayed (a copier that has not committed must not see it).
#[test]
fn gossip_keeps_no_commitment_past_its_phase_nor_vote_past_its_window() {
    use fai_inference_chain::quorum::{Vote, VoteCommit, VoteMessage};
    use fai_node::p2p::validate::{check, Verdict, Work};
    use fai_primitives::Encode;
    use libp2p::gossipsub::{MessageAcceptance, MessageId};
    let (net, _wallets) = ready(false);
    net.partition(&[2]);
    let tip_of_0 = || {
        let info = net.get(0, "/v2/inference-chain");
        info["tip"]["id"].as_str().unwrap_or_default().to_string()
    };
    let mut blocks: Vec<String> = Vec::new();
    for miner in 0..(fai_inference_chain::chain::VOTE_WINDOW as usize + 2) {
        net.advance(SPACING);
        net.settle_among(&[0, 1]);
        net.step_among(miner % 2, &[0, 1]);
        blocks.push(tip_of_0());
    }
    let id = |hex_id: &str| {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex_id, &mut raw).unwrap_or_else(|e| panic!("{hex_id}: {e}"));
        fai_primitives::Hash256(raw)
    };
    let (old, newest) = (id(&blocks[0]), id(&blocks[blocks.len() - 1]));
    assert_ne!(old, newest, "the pair made no blocks");
    let key = fai_node::keys::load(net.data_dir(2), fai_node::keys::NODE_KEY)
        .unwrap_or_else(|e| panic!("node 2's key: {e}"));
    let me = key.public_key().hash160();
    // What node 0's check makes of `message` on `block`: taken, and whether its pool
    // holds node 2's commitment and vote on the block then.
    let offer = |message: VoteMessage, block: fai_primitives::Hash256| {
        net.node(0)
            .chain
            .call_blocking(move |s| {
                let work = Work::Gossip {
                    id: MessageId::new(b"stale"),
                    source: libp2p::PeerId::random(),
                    topic: fai_node::p2p::Topic::Vote,
                    data: message.to_bytes(),
                };
                let taken = matches!(
                    check(s, work),
                    Some(Verdict::Gossip {
                        acceptance: MessageAcceptance::Accept,
                        ..
                    })
                );
                let kept = (
                    s.votes.has_committed(&block, &me),
                    s.votes.has_voted(&block, &me),
                );
                (taken, kept)
            })
            .unwrap()
    };
    // The blocks carry no inferences: a vote has no verdicts.
    let on = |block| Vote::new(&key, block, vec![]);
    let commit = VoteMessage::Commit(VoteCommit::of(&key, &on(old)));
    assert_eq!(
        offer(commit, old),
        (false, (false, false)),
        "a late commitment"
    );
    let vote = VoteMessage::Reveal(on(old));
    assert_eq!(
        offer(vote, old),
        (false, (false, false)),
        "a vote past its window"
    );
    let fresh = VoteMessage::Commit(VoteCommit::of(&key, &on(newest)));
    assert_eq!(
        offer(fresh, newest),
        (true, (true, false)),
        "a commitment in time"
    );
    // Its vote before the phase is over: not kept, not relayed (it waits).
    let early = VoteMessage::Reveal(on(newest));
    assert_eq!(
        offer(early, newest),
        (false, (true, false)),
        "a vote too early"
    );
}

/// 20 inferences bought: every one is final and settled on every node within a few
/// blocks, accepted and paid to the unit, the wallets charged exactly their fees, and the
/// text reclaimed six blocks later: exact, whatever the machine's load (nothing waits on
/// its clock but the delivery of messages).
#[test]
fn every_inference_bought_is_final_and_settled_on_every_node() {
    let (net, wallets) = ready(false);
    let receipts = buy(&net, 20);
    let settled = settle_all(&net, &receipts);
    let held = |i: usize, r: &serde_json::Value| {
        net.get(i, &format!("/v2/inference/{}", txid(r)))["payload_held"].clone()
    };
    let mut paid = [0u64; 2];
    for (n, (r, s)) in receipts.iter().zip(&settled).enumerate() {
        assert_paid(s, units(&r["tokens"]));
        paid[n % 2] += units(&r["tokens"]);
        // Settled less than six ledger blocks ago: every node still holds the text.
        for i in 0..3 {
            assert_eq!(held(i, r), true, "node {i}: {s}");
        }
    }
    for (w, paid) in wallets.iter().zip(paid) {
        assert_eq!(balance(&net, w), WALLET_FUNDS - paid, "{w}");
    }
    assert_adds_up(&net, &wallets);
    // Six ledger blocks after settlement, no node keeps any prompt or output.
    for n in 0..6 {
        net.step(n % 3);
    }
    for r in &receipts {
        for i in 0..3 {
            assert_eq!(held(i, r), false, "node {i}: {r}");
        }
    }
}

/// A regtest network that approves a generated model at genesis
/// (`inference.genesis_models`) sells, replays and settles inference on it as on
/// fai-tiny: every answer is on that model, final and paid to the unit.
#[test]
fn inferences_on_a_model_approved_at_genesis_by_configuration_settle_and_are_paid() {
    let models = tempfile::tempdir().unwrap();
    let spec = fai_engine::tiny::TinySpec::wide();
    let path = models.path().join("wide.gguf");
    fai_engine::tiny::write_gguf(&spec, &path).unwrap();
    let cpu = fai_engine::DeviceChoice::Cpu.open().unwrap();
    let wide = fai_engine::LoadedModel::load(&path, &cpu).unwrap();
    let (net, wallets) = ready_with(|_, setup| Setup {
        model: Some(path.clone()),
        ..setup
    });
    // Each node serves the generated model alone, approved from the start.
    for i in 0..3 {
        let models = net.get(i, "/v2/models");
        assert_eq!(models.as_array().map_or(0, Vec::len), 1, "{models}");
        assert_eq!(models[0]["id"], wide.id.to_string(), "{models}");
        assert_eq!(models[0]["approved"], true, "{models}");
    }
    let receipts = buy(&net, 4);
    let settled = settle_all(&net, &receipts);
    let mut paid = [0u64; 2];
    for (n, (r, s)) in receipts.iter().zip(&settled).enumerate() {
        assert_paid(s, units(&r["tokens"]));
        paid[n % 2] += units(&r["tokens"]);
    }
    for (w, paid) in wallets.iter().zip(paid) {
        assert_eq!(balance(&net, w), WALLET_FUNDS - paid, "{w}");
    }
    assert_adds_up(&net, &wallets);
}

/// Node 1 forges every answer it serves (bob's): each is rejected in a final block, bob
/// gets every max fee back, node 1 loses three times each fee from its bond and its
/// reputation says so; alice's answers from node 0 are accepted and paid.
#[cfg(feature = "test-cheats")]
#[test]
fn every_forged_answer_is_rejected_and_slashed() {
    let (net, wallets) = ready(true);
    let info = net.get(1, "/v2/info");
    let cheater = info["address"].as_str().unwrap_or_default().to_string();
    assert!(!cheater.is_empty(), "{info}");
    let account = |who: &str| net.get(0, &format!("/v2/inference-chain/accounts/{who}"));
    let bond_before = units(&account(&cheater)["inference_node"]["bond"]);
    assert!(bond_before > 0);

    let receipts = buy(&net, 8);
    let settled = settle_all(&net, &receipts);
    let (mut alice_paid, mut slashed) = (0, 0);
    for (n, (r, s)) in receipts.iter().zip(&settled).enumerate() {
        let tokens = units(&r["tokens"]);
        if n % 2 == 0 {
            assert_paid(s, tokens);
            alice_paid += tokens;
        } else {
            assert_eq!(s["accepted"], false, "a forged answer was accepted: {s}");
            let st = &s["settlement"];
            assert_eq!(units(&st["fee_units"]), 0, "{s}");
            assert_eq!(units(&st["refund_units"]), MAX_FEE, "{s}");
            assert_eq!(units(&st["slashed_units"]), 3 * tokens, "{s}");
            slashed += 3 * tokens;
        }
    }
    assert_eq!(balance(&net, &wallets[0]), WALLET_FUNDS - alice_paid);
    assert_eq!(
        balance(&net, &wallets[1]),
        WALLET_FUNDS,
        "bob was refunded everything"
    );
    let cheater = account(&cheater);
    assert_eq!(
        units(&cheater["inference_node"]["bond"]),
        bond_before - slashed,
        "{cheater}"
    );
    assert_eq!(
        units(&cheater["inference_node"]["slashed"]),
        slashed,
        "{cheater}"
    );
    assert_eq!(units(&cheater["reputation"]["rejected"]), 4, "{cheater}");
    assert_eq!(units(&cheater["reputation"]["accepted"]), 0, "{cheater}");
    // The honest node: every one of its answers accepted, nothing slashed.
    let info = net.get(0, "/v2/info");
    let honest = account(info["address"].as_str().unwrap_or_default());
    assert_eq!(units(&honest["reputation"]["accepted"]), 4, "{honest}");
    assert_eq!(units(&honest["reputation"]["rejected"]), 0, "{honest}");
    assert_eq!(units(&honest["inference_node"]["slashed"]), 0, "{honest}");
    // The registry's score says so to every wallet choosing a node.
    let listed = net.get(0, "/v2/inference-nodes");
    let score = |node: usize| {
        let address = net.get(node, "/v2/info")["address"].clone();
        let entry = listed
            .as_array()
            .and_then(|l| l.iter().find(|n| n["address"] == address));
        entry.map_or(u64::MAX, |n| units(&n["reputation"]["acceptance"]))
    };
    assert!(score(1) < score(0), "{listed}");
    // The slashed FAI are burnt: the rest still adds up.
    assert_adds_up(&net, &wallets);
}

/// A start that fails halfway (its p2p port is taken, after the verifier and the engine
/// have started) stops what it started before it returns its error: the same directory
/// opens again at once (its databases were closed).
#[test]
fn a_start_that_fails_halfway_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = |port: u16| {
        let text = format!(
            "[node]\nnetwork = \"regtest\"\ndata_dir = \"{}\"\n[mining]\nenabled = false\n\
             [rpc]\nenabled = false\n[p2p]\nlisten = \"/ip4/127.0.0.1/tcp/{port}\"\n",
            dir.path().display()
        );
        fai_node::config::Config::parse(&text, "this test").unwrap()
    };
    let options = || {
        let mut o = fai_node::daemon::StartOptions::new("test".into(), fai_rpc::start);
        o.banner = false;
        o
    };
    let port = taken.local_addr().unwrap().port();
    let err = fai_node::daemon::start(config(port), options())
        .err()
        .expect("the p2p port is taken");
    assert!(format!("{err:#}").contains("p2p.listen"), "{err:#}");
    let running = fai_node::daemon::start(config(0), options())
        .unwrap_or_else(|e| panic!("the directory does not open again: {e:#}"));
    running.stop();
}

/// A buyer is served on the losing side of a partition: node 1 alone serves bob's
/// inference and carries it in an inference block anchored on its own ledger branch.
/// Once healed, that branch loses to the pair's: the block carrying the inference is
/// left behind. Its inference goes back to node 1's pool and out to its peers (it was
/// lost with the branch: served, never settled nor refunded).
#[test]
fn an_inference_left_behind_by_a_reorganisation_goes_back_to_every_pool() {
    let (net, _wallets) = ready(false);
    net.partition(&[0, 2]);
    let receipt = net
        .cli(1, &Purchase::new(1).args("bob"))
        .unwrap_or_else(|e| panic!("the inference failed: {e}"));
    let id = txid(&receipt).to_string();
    let state = |i: usize| net.get(i, &format!("/v2/inference/{id}"));
    // A block on one side, then the clock past the producers' waits (for votes and
    // tenure blocks from across the split, which never come).
    let mine_among = |miner: usize, side: &[usize]| {
        net.advance(SPACING);
        net.step_among(miner, side);
    };
    // Node 1 alone: it wins its own tenures and carries the inference.
    let mut lone = 0;
    while state(1)["state"] != "in_block" {
        mine_among(1, &[1]);
        lone += 1;
        assert!(
            lone <= 6,
            "node 1 never carried the inference: {}",
            state(1)
        );
    }
    // The pair mines more work meanwhile.
    for _ in 0..lone + 2 {
        mine_among(0, &[0, 2]);
    }
    net.heal();
    // Node 1 takes the pair's branch, puts the inference back in its pool and sends it
    // out again: every node holds it, waiting for a block (before: node 1 had dropped it
    // and the pair never knew it). Waited for on the machine's clock, as `settle` waits
    // for messages; the views cannot be compared here (see below).
    let back = |i: usize| state(i)["state"] == "pending";
    assert!(
        fai_tests::wait(60, &|| (0..3).all(back)),
        "the inference left behind is not back in every pool: {} / {} / {}",
        state(0),
        state(1),
        state(2)
    );
    // Not checked here: that it then settles on every node. After such a split two
    // other defects keep the nodes from agreeing (node 1's mempool takes back its
    // commits from the blocks it left behind, which the pair never saw, and drops their
    // successors; the votes cast while apart never reach the other side).
}

/// Attack: the producer of a tenure signs a second block for it (same parent, one more
/// transaction) and gossips it after the first. Before, every peer refused the second as
/// invalid ("the tenure already has its block") and banned the producer for relaying it:
/// a producer that sent each half of the network another block split it for good. Now
/// every node stores both and counts the tenure as empty (the same tip everywhere),
/// nobody is banned, the nodes report the equivocation, and once a block carries the
/// evidence the producer's bond is burnt and it is delisted, on every node, which end on
/// one chain.
#[test]
fn an_equivocating_producer_loses_its_bond_and_the_network_stays_one() {
    use fai_primitives::Encode;
    let (net, _wallets) = ready(false);
    // The tip's producer (node 0 or 1) signs a second block for its tenure.
    let mut equivocated = None;
    for step in 0..6 {
        for seller in 0..2 {
            let made = net.node(seller).chain.call_blocking(|s| {
                let tip = s.inference.as_ref()?.tip(&s.ledger).anchor;
                let (producer, chain) = (s.producer.as_ref()?, s.inference.as_mut()?);
                let won = chain
                    .tenure_blocks(&tip)
                    .first()
                    .and_then(|id| chain.block(id));
                if won.map(|r| r.producer) != Some(producer.address().0) {
                    return None;
                }
                let variant = producer.equivocate(&s.ledger, chain, tip).ok()?;
                if chain.block(&variant.header.id().0).is_some() {
                    s.after_inference_block(&variant, true);
                }
                s.publish(fai_network::Topic::InferenceBlock, variant.to_bytes());
                Some(tip)
            });
            if let Ok(Some(anchor)) = made {
                equivocated = Some((seller, anchor));
                break;
            }
        }
        if equivocated.is_some() {
            break;
        }
        net.step(step % 3);
    }
    let (producer, anchor) = equivocated.expect("no seller produced a tenure to equivocate on");
    // The next ledger block carries no commit and elects nobody (as when the commits paid
    // a verifier set the contest changed): the tenure before it is the contested one,
    // whose block is not waited for by the other producer's next commit. Before, that
    // commit waited for it until the wait ran out, which on this clock never comes.
    let empty = net
        .node(0)
        .chain
        .call_blocking(|s| {
            let tip = s.ledger.tip_hash();
            fai_ledger::testkit::mine_on(
                &s.ledger,
                tip,
                Vec::new(),
                fai_primitives::Hash160([7; 20]),
                None,
            )
            .ok()
        })
        .unwrap()
        .expect("a ledger block without commits");
    net.advance(SPACING);
    for i in 0..3 {
        hand_over(&net, i, empty.clone());
    }
    net.settle();
    for i in 0..3 {
        let siblings = net
            .node(i)
            .chain
            .call_blocking(move |s| s.inference.as_ref().map(|c| c.tenure_blocks(&anchor).len()))
            .unwrap();
        assert_eq!(siblings, Some(2), "node {i} does not hold both blocks");
        let (tip, reports) = net
            .node(i)
            .chain
            .call_blocking(move |s| {
                let chain = s.inference.as_ref()?;
                Some((chain.tip(&s.ledger).anchor, s.vm_pool.len()))
            })
            .unwrap()
            .unwrap();
        assert_ne!(tip, anchor, "node {i} still counts the contested tenure");
        assert!(reports >= 1, "node {i} holds no report of the equivocation");
        let p2p = net.node(i).p2p.get().expect("the network runs").clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        futures::executor::block_on(p2p.send(fai_network::Command::Peers(tx))).unwrap();
        let peers = futures::executor::block_on(rx).unwrap();
        assert!(
            peers.bans.is_empty(),
            "node {i} banned a peer: {:?}",
            peers.bans
        );
        assert_eq!(peers.peers.len(), 2, "node {i}: {:?}", peers.peers);
    }
    // Blocks follow; one carries the evidence and the producer's bond is burnt.
    let address = net.get(producer, "/v2/info")["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let registry = |i: usize| {
        net.get(i, "/v2/inference-nodes")
            .as_array()
            .and_then(|nodes| {
                nodes
                    .iter()
                    .find(|n| n["address"] == address.as_str())
                    .cloned()
            })
            .map(|n| n["registry"].clone())
            .unwrap_or_default()
    };
    let mut blocks = 0;
    while registry(0)["bond"] != 0 {
        net.step(2);
        blocks += 1;
        if blocks > 6 {
            let pools: Vec<_> = (0..3)
                .map(|i| {
                    net.node(i)
                        .chain
                        .call_blocking(|s| {
                            let chain = s.inference.as_ref();
                            let tip = chain.map(|c| c.tip(&s.ledger).height);
                            (s.vm_pool.len(), tip, s.ledger.height())
                        })
                        .unwrap()
                })
                .collect();
            panic!(
                "the bond is not burnt: {}; pools, tips: {pools:?}",
                registry(0)
            );
        }
    }
    let view = net.settle();
    for i in 0..3 {
        let entry = registry(i);
        assert_eq!(entry["bond"], 0, "node {i}: {entry}");
        assert!(entry["slashed"].as_u64() > Some(0), "node {i}: {entry}");
        assert!(
            !entry["withdraw-at"].is_null(),
            "delisted on node {i}: {entry}"
        );
        assert_eq!(net.view(i), view);
    }
}

/// Attack (issue 19): a buyer who can keep the verifiers from voting in time gets its
/// answers for free: what no quorum votes on within the vote window is refunded. Here two
/// of the three verifiers are down, so nothing node 0 serves can settle. Before, node 0
/// went on serving (and the network refunding) whatever came; now, as soon as a block's
/// first 2 ledger blocks pass without the commitments of a majority of its verifiers
/// (its commit phase runs on, up to 4), 2 blocks behind (before `BUSY_BEHIND`, 4, when commitments came and votes
/// did not), it refuses new requests with 503 (and says so in `/metrics`), and serves
/// again once they caught up.
#[test]
fn a_node_refuses_new_requests_while_the_verifiers_are_behind() {
    let (mut net, _) = ready(false);
    net.stop(1);
    net.stop(2);
    let first = net
        .cli(0, &Purchase::new(0).args("alice"))
        .unwrap_or_else(|e| panic!("the first request was refused: {e}"));
    let behind = |net: &InProcNet| {
        let (_, text) = fai_tests::http(net.rpc_port(0), "GET", "/metrics", b"");
        text.lines()
            .find_map(|l| l.strip_prefix("infer_votes_behind_blocks "))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    };
    // The block carrying it, then blocks without its quorum. Node 0 mines alone; a
    // commit node 1 sent before it stopped may win one ledger block, whose tenure block
    // never comes: the clock moves on after each block, so that node 0 stops waiting for
    // it.
    let alone = |net: &InProcNet| {
        net.advance(fai_tests::inproc::SPACING);
        net.settle();
        net.step_among(0, &net.running());
    };
    let mut served = 1;
    let mut refused = None;
    for n in 0..8 {
        alone(&net);
        match net.cli(0, &Purchase::new(n + 1).args("alice")) {
            Ok(_) => served += 1,
            Err(e) => {
                refused = Some((e, behind(&net)));
                break;
            }
        }
    }
    let (error, behind_then) = refused.expect("every request was served");
    assert!(error.contains("503") && error.contains("busy"), "{error}");
    assert!(error.contains("committed to their votes"), "{error}");
    assert_eq!(behind_then, 2, "refused {behind_then} blocks behind");
    assert!(served >= 3, "{served} served before the refusal");
    let state = net.get(0, &format!("/v2/inference/{}", txid(&first)));
    assert_eq!(state["state"], "in_block", "{state}");

    // The verifiers come back and vote: the node serves again. They wait for the text
    // of the blocks they missed (3 s on the nodes' clock), so the clock moves on until
    // every node is idle. (Their vote pools stay unlike node 0's: votes gossiped while
    // they were down never reach them, and need not: blocks carry the votes.)
    net.start_node(1);
    net.start_node(2);
    let moving = |net: &InProcNet, miner: usize| {
        net.mine(miner);
        let mut idle = false;
        for _ in 0..500 {
            net.advance(1);
            std::thread::sleep(std::time::Duration::from_millis(20));
            idle = net.running().iter().all(|i| net.node(*i).idle());
            if idle {
                break;
            }
        }
        assert!(idle, "the nodes stay busy");
    };
    let mut blocks = 0;
    while net.cli(0, &Purchase::new(99).args("alice")).is_err() {
        moving(&net, blocks % 3);
        blocks += 1;
        assert!(
            blocks <= 8,
            "still refused {blocks} blocks after the verifiers came back"
        );
    }
}

/// Attack (issue 19): a buyer who sends more than the verifiers can replay within a
/// block's commit phase gets answers for free: a block too heavy to judge in time is
/// refunded, however few inferences it holds (104 on a model eight times wider than
/// fai-tiny were). Every replay here counts at 5 ms per unit of work (an answer of 12
/// tokens: 16 + 12 units, 140 ms; a regtest block's budget is 0.5 s), whatever the
/// machine, so the budgets bind on fai-tiny. Before, node 0 served all 20 of alice's
/// requests with no block to carry them, and the next block carried them all (2.8 s to
/// replay); now it refuses with 503 once the replay time a block could take is two
/// blocks' budget (1 s), and each block carries what its verifiers replay in 0.5 s.
/// Everything served settles. And a second attack on that refusal: bob holds 8
/// answers past a nonce he never sends (no block can carry them). Counted, they would
/// have every node refuse everyone as busy, for as long as he likes; they count for
/// nothing until his missing nonce is served.
#[cfg(feature = "test-cheats")]
#[test]
fn blocks_and_admissions_keep_to_the_replay_time_the_verifiers_have() {
    const US_PER_UNIT: u64 = 5_000;
    const BLOCK_BUDGET_US: u64 = 500_000;
    let (net, _) = ready_with(|_, setup| Setup {
        replay_us_per_unit: US_PER_UNIT,
        ..setup
    });
    let cost = |receipt: &serde_json::Value| US_PER_UNIT * (16 + units(&receipt["tokens"]));
    // Bob buys from node 0 at nonces of his choosing.
    let bob = fai_wallet::keystore::open(
        net.data_dir(1),
        "bob",
        fai_primitives::Network::Regtest,
        fai_tests::inproc::PASSPHRASE,
    )
    .unwrap();
    let node_0 =
        fai_api::blocking::Client::new(&format!("http://127.0.0.1:{}", net.rpc_port(0))).unwrap();
    let bob_buys = |nonce: u64| {
        let req = fai_wallet::InferRequest {
            system: String::new(),
            context: Vec::new(),
            prompt: format!("Bob's question {nonce}"),
            model: None,
            max_fee: fai_primitives::Amount::from_units(MAX_FEE).unwrap(),
            max_tokens: 12,
            temperature: 0.0,
            seed: nonce,
            nonce,
        };
        fai_wallet::infer(&node_0, &bob, &req, |_| {})
            .map(|a| serde_json::to_value(&a).unwrap())
            .map_err(|e| format!("{e:#}"))
    };
    // Nonces 1 to 8, past his account's 0: 8 x 140 ms, more than two blocks' budget.
    let mut bobs = Vec::new();
    for nonce in 1..=8 {
        bobs.push(bob_buys(nonce).unwrap_or_else(|e| panic!("bob's nonce {nonce}: {e}")));
        net.settle();
    }
    assert!(bobs.iter().map(cost).sum::<u64>() >= 2 * BLOCK_BUDGET_US);
    let mut receipts = Vec::new();
    let mut refused = None;
    for i in 0..20 {
        match net.cli(0, &Purchase::new(i).args("alice")) {
            Ok(receipt) => receipts.push(receipt),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        net.settle();
    }
    let error = refused.expect("20 requests served with no block to carry them");
    assert!(error.contains("503") && error.contains("replay"), "{error}");
    // Admitted while what a block could take was under two blocks' budget (bob's held
    // answers not counted), refused from there on.
    let waiting: u64 = receipts.iter().map(cost).sum();
    let last = receipts.last().map_or(0, cost);
    assert!(waiting >= 2 * BLOCK_BUDGET_US, "refused at {waiting} us");
    assert!(
        waiting - last < 2 * BLOCK_BUDGET_US,
        "the last one was admitted at {} us",
        waiting - last
    );
    // Bob's missing nonce is refused like any other request now.
    let first = bob_buys(0).expect_err("bob's nonce 0 was served past the backlog");
    assert!(first.contains("503"), "{first}");
    // Once alice's have settled it is served, and his whole run follows.
    let state = |i: usize, r: &serde_json::Value| net.get(i, &format!("/v2/inference/{}", txid(r)));
    let mut blocks = 0;
    while !receipts.iter().all(|r| state(0, r)["state"] == "settled") {
        net.step(blocks % 3);
        blocks += 1;
        assert!(blocks <= 20, "alice's not settled after {blocks} blocks");
    }
    receipts.push(bob_buys(0).unwrap_or_else(|e| panic!("bob's nonce 0 was refused: {e}")));
    receipts.extend(bobs);
    // Blocks carry them, each within the budget (or a single inference), and every one
    // settles.
    let mut blocks = 0;
    while !receipts
        .iter()
        .all(|r| (0..3).all(|i| state(i, r)["state"] == "settled"))
    {
        net.step(blocks % 3);
        blocks += 1;
        assert!(
            blocks <= 20,
            "not every inference settled after {blocks} more blocks"
        );
    }
    let mut carried: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for r in &receipts {
        let on_0 = state(0, r);
        assert_eq!(on_0["final"], true, "{on_0}");
        assert_eq!(on_0["accepted"], true, "{on_0}");
        let block = on_0["block"]["id"].as_str().unwrap_or_default().to_string();
        let entry = carried.entry(block).or_default();
        entry.0 += 1;
        entry.1 += cost(r);
    }
    for (block, (count, work)) in &carried {
        assert!(
            *work <= BLOCK_BUDGET_US || *count == 1,
            "block {block} carries {count} inferences, {work} us of replay"
        );
    }
    assert!(carried.len() >= 5, "{carried:?}");
    // Nothing waits any more: the node serves again.
    net.cli(0, &Purchase::new(99).args("alice"))
        .unwrap_or_else(|e| panic!("refused with nothing waiting: {e}"));
}

/// A verifier cut off while an inference was served and carried gets its block later, by
/// sync, without its text: the result gossip passed it by, and only a gossiped block's
/// sender is asked for text. Before, it waited for text nobody sent and abstained; now it
/// asks the node that served the inference, replays the answer, commits to its vote
/// within the block's commit phase and, once the phase is over, reveals an acceptance.
/// The nodes' clock stands still from node 2's return to its commitment: the ask is no
/// timeout's.
#[test]
fn a_verifier_that_missed_an_answer_asks_the_serving_node_for_its_text() {
    use fai_inference_chain::quorum::Verdict;
    let (net, _wallets) = ready(false);
    net.partition(&[2]);
    let receipt = net
        .cli(0, &Purchase::new(0).args("alice"))
        .unwrap_or_else(|e| panic!("the inference failed: {e}"));
    let id = txid(&receipt).to_string();
    let state = |i: usize| net.get(i, &format!("/v2/inference/{id}"));
    // Nodes 0 and 1 carry it in a block.
    let mut blocks = 0;
    while state(0)["state"] != "in_block" {
        net.advance(SPACING);
        net.settle_among(&[0, 1]);
        net.step_among(blocks % 2, &[0, 1]);
        blocks += 1;
        assert!(blocks <= 3, "the pair never carried it: {}", state(0));
    }
    // The API spells ids in their bytes' order (not the reversed display form).
    let block = state(0)["block"]["id"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(fai_primitives::Hash256)
        .unwrap_or_else(|| panic!("no block id: {}", state(0)));
    let me = net.node(2).verifier.get().expect("node 2 verifies").address;
    let committed = || {
        net.node(2)
            .chain
            .call_blocking(move |s| s.votes.has_committed(&block, &me))
            .unwrap()
    };
    let vote = || {
        net.node(2)
            .chain
            .call_blocking(move |s| {
                s.votes
                    .votes_on(&block)
                    .into_iter()
                    .find(|v| v.verifier.hash160() == me)
            })
            .unwrap()
    };
    assert!(!committed(), "node 2 judged while cut off");
    net.heal();
    let asked = fai_tests::wait(120, &committed);
    if !asked {
        // The text never came: once the clock passes its wait, the verifier abstains.
        net.advance(5);
        fai_tests::wait(60, &committed);
    }
    assert!(committed(), "node 2 never committed to a vote on {block}");
    assert!(asked, "node 2 committed only after its wait for the text");
    // Its vote comes out once the block's commit phase is over. (Its pools stay unlike
    // the others': what was gossiped while it was cut off never reaches it, and need not.)
    // (Node 2 is idle too before the clock moves: had it not yet the tenure block when
    // it did, it could commit on its parent and, winning next, orphan the voted block.)
    for miner in 0..2 {
        net.advance(SPACING);
        net.mine(miner);
        net.settle_among(&[0, 1]);
        fai_tests::wait(60, &|| net.node(2).idle());
    }
    fai_tests::wait(60, &|| vote().is_some());
    let vote = vote().unwrap_or_else(|| panic!("node 2 never revealed its vote on {block}"));
    assert_eq!(
        vote.verdicts,
        vec![Verdict::Accept],
        "node 2's vote on {block}"
    );
}

/// Privacy: a prompt and its answer are read by the buyer, the serving node and the
/// verifiers of its block, and by no other node. Node 2 does not stake here: outside the
/// verifier set (nodes 0 and 1), it keeps and relays what the result topic carries (the
/// text sealed to the set, which it cannot open), and the verifiers open, replay and
/// settle every answer as before. No node's databases hold a prompt or an answer in the
/// clear: the verifiers open texts in memory, and the serving node keeps only the sealed
/// text. Before, the result topic carried the text in the clear and every node stored it.
#[test]
fn a_node_outside_the_verifier_set_never_holds_a_prompt_or_an_answer_in_the_clear() {
    use fai_storage::KeyValueStore;
    let (mut net, _) = ready_with_roles(
        |i, setup| Setup {
            stake: setup.stake && i != 2,
            ..setup
        },
        (2, 2),
    );
    let receipts = buy(&net, 4);
    for settled in settle_all(&net, &receipts) {
        assert_eq!(settled["accepted"], true, "{settled}");
    }
    // What node 2 keeps of each answer: sealed to the set's members, of which it is not
    // one, and without the text in the clear.
    let prompts: Vec<String> = (0..receipts.len())
        .map(|i| Purchase::new(i).prompt().to_string())
        .collect();
    let outputs: Vec<String> = receipts
        .iter()
        .filter_map(|r| r["text"].as_str().map(str::to_string))
        .filter(|t| t.len() >= 8)
        .collect();
    // (Answers too short to be told from chance bytes are left out; not all of them.)
    assert!(!outputs.is_empty(), "every answer was under 8 bytes");
    let mut needles: Vec<&[u8]> = prompts.iter().map(|p| p.as_bytes()).collect();
    needles.extend(outputs.iter().map(|o| o.as_bytes()));
    for r in &receipts {
        let receipt_bytes = hex::decode(r["receipt"].as_str().unwrap_or_default()).unwrap();
        let receipt =
            <fai_inference_chain::types::ResultReceipt as fai_primitives::Decode>::from_bytes(
                &receipt_bytes,
            )
            .unwrap_or_else(|e| panic!("the receipt of {}: {e}", txid(r)));
        let (sealed, mut set) = net
            .node(2)
            .chain
            .call_blocking(move |st| {
                let chain = st.inference.as_ref()?;
                let tip = chain.tip(&st.ledger);
                let set = chain.verifier_set(&st.ledger, tip, tip.cycle);
                let sealed = chain
                    .payloads()?
                    .sealed(&receipt.tx, &receipt.signing_digest())
                    .ok()??;
                Some((sealed, set))
            })
            .unwrap()
            .unwrap_or_else(|| panic!("node 2 keeps no sealed text of {}", txid(r)));
        let mut recipients: Vec<_> = sealed.sealed.recipients.iter().map(|r| r.id).collect();
        recipients.sort();
        set.sort();
        assert_eq!(set.len(), 2);
        assert_eq!(recipients, set, "sealed to the verifier set, nodes 0 and 1");
        let bytes = fai_primitives::Encode::to_bytes(&sealed);
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == *needle),
                "the sealed text shows {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    // Every database of every node, read back once the nodes are stopped.
    for i in 0..3 {
        net.stop(i);
    }
    for i in 0..3 {
        for (dir, schema) in [
            ("inference", fai_node::inference::SCHEMA),
            ("ledger", fai_ledger::chainstate::SCHEMA),
        ] {
            let path = net.data_dir(i).join(dir);
            let store = fai_storage::RocksStore::open(&path, schema)
                .unwrap_or_else(|e| panic!("node {i}'s {dir} database: {e}"));
            for column in schema.columns {
                for (k, v) in store.scan(column).unwrap() {
                    for needle in &needles {
                        for bytes in [&k, &v] {
                            assert!(
                                !bytes.windows(needle.len()).any(|w| w == *needle),
                                "node {i} keeps {:?} in the clear in its {dir} database ({column})",
                                String::from_utf8_lossy(needle)
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A ledger block mined on every node's tip (with the producers' commits on that tip),
/// and another on the same parent whose transactions `edit` makes of the first's (its
/// coinbase pays elsewhere): two blocks found at once, the second not handed to any node.
fn a_tip_and_a_block_beside_it(
    net: &InProcNet,
    edit: impl FnOnce(Vec<fai_ledger::Transaction>) -> Vec<fai_ledger::Transaction> + Send + 'static,
) -> (fai_primitives::Hash256, fai_ledger::Block) {
    let parent = net.ledger_tip(0).1;
    net.advance(SPACING);
    net.settle();
    let first = net.mine(0);
    net.settle();
    let beside = net
        .node(0)
        .chain
        .call_blocking(move |s| {
            let block = s.ledger.block(&first).ok().flatten()?;
            let txs = edit(block.transactions.get(1..)?.to_vec());
            let payout = fai_primitives::Hash160([7; 20]);
            fai_ledger::testkit::mine_on(&s.ledger, parent, txs, payout, None).ok()
        })
        .unwrap()
        .expect("a block beside the tip");
    assert_ne!(beside.hash(), first);
    (first, beside)
}

/// Hands ledger block `block` to node `i` as gossip brings one nobody asked for.
fn hand_over(net: &InProcNet, i: usize, block: fai_ledger::Block) -> fai_ledger::BlockOutcome {
    net.node(i)
        .chain
        .call_blocking(move |s| s.accept_unrequested_ledger_block(block))
        .unwrap()
        .unwrap_or_else(|e| panic!("node {i} refused the block: {e}"))
}

/// Two ledger blocks at one height, found at the same time: every node keeps the one it
/// saw first, and the other is stored beside it. The other elects a producer as well, and
/// its peers that keep it wait for that tenure's block. The producer produces it as soon
/// as the block beside its tip reaches it, every node accepts it, and once the ledger
/// moves onto that block the tenure has its block on the branch. Before, the winner had
/// never had that block as its tip and produced nothing: the tenure brought no block,
/// which broke the run of blocks a commit phase runs on (`bench network` at 6,000
/// requests refunded a block of 604 served inferences so).
#[test]
fn a_tenure_won_at_a_ledger_block_beside_the_tip_is_produced_and_kept_once_the_ledger_moves_onto_it(
) {
    use fai_primitives::Hash160;
    let (net, _wallets) = ready(false);
    // The same commits in another block on the tip's parent: found at the same time
    // somewhere else, it reaches every node after the tip.
    let (_, beside) = a_tip_and_a_block_beside_it(&net, |txs| txs);
    let anchor = beside.hash();
    let give = |i: usize, block: fai_ledger::Block| hand_over(&net, i, block);
    // To the node that only verifies first, and to the tenure's winner last: the tenure
    // block it produces at once then finds the ledger block at every peer. (Through
    // gossip, a tenure block that comes before its ledger block waits for it; handed
    // over here, it would not.)
    let winner_of = |i: usize| {
        net.node(i)
            .chain
            .call_blocking(move |s| {
                let record = s.inference.as_ref()?.tracker().record(&anchor)?;
                Some(record.sortition.winner.as_ref()?.producer)
            })
            .unwrap()
    };
    let side = |i: usize| {
        let outcome = give(i, beside.clone());
        assert_eq!(outcome, fai_ledger::BlockOutcome::SideBranch, "node {i}");
    };
    side(2);
    let read = winner_of(2);
    let producer = |i: usize| {
        net.node(i)
            .chain
            .call_blocking(|s| s.producer.as_ref().map(|p| p.address()))
            .unwrap()
    };
    let winner_node = (0..2).find(|i| read.is_some() && producer(*i) == read);
    for i in [0, 1].into_iter().filter(|i| Some(*i) != winner_node) {
        side(i);
    }
    if let Some(i) = winner_node {
        side(i);
    }
    net.settle();
    let tenure = |i: usize| {
        net.node(i)
            .chain
            .call_blocking(move |s| {
                let chain = s.inference.as_ref()?;
                let ids = chain.tenure_blocks(&anchor);
                let producers: Vec<Hash160> = ids
                    .iter()
                    .filter_map(|id| chain.block(id))
                    .map(|r| Hash160(r.producer))
                    .collect();
                Some(producers)
            })
            .unwrap()
            .unwrap_or_default()
    };
    for i in 0..3 {
        assert_eq!(
            tenure(i).len(),
            1,
            "node {i} does not hold the tenure block won beside the tip"
        );
    }
    // The ledger moves onto the block beside: a block on it, more work.
    net.advance(SPACING);
    let next = net
        .node(0)
        .chain
        .call_blocking(move |s| {
            fai_ledger::testkit::mine_on(&s.ledger, anchor, Vec::new(), Hash160([7; 20]), None).ok()
        })
        .unwrap()
        .expect("a block on the one beside");
    for i in 0..3 {
        let outcome = give(i, next.clone());
        assert_eq!(outcome, fai_ledger::BlockOutcome::TipChanged, "node {i}");
    }
    net.settle();
    let winner = winner_of(0).expect("the block beside the tip elected nobody (no bids in it)");
    for i in 0..3 {
        assert_eq!(tenure(i), vec![winner], "node {i}");
        let tip_anchor = net
            .node(i)
            .chain
            .call_blocking(|s| s.inference.as_ref().map(|c| c.tip(&s.ledger).anchor))
            .unwrap();
        assert_eq!(
            tip_anchor,
            Some(anchor),
            "node {i}'s inference tip is not the tenure block won beside"
        );
    }
}

/// Attack: a ledger block beside the tip carries a commit that names a producer's
/// register but that the producer never made (here its real commit with another parent:
/// such a block's transactions are checked only once it joins the active chain, so the
/// signature does not matter until then). The forged commit wins that block's sortition,
/// and the producer does not produce there. Before, it built a block on whatever parent
/// the forgery named, with its pools' transactions, for every such block anyone mined.
#[test]
fn a_forged_commit_beside_the_tip_sets_no_producer_to_work() {
    use fai_inference_chain::ops::Op;
    use fai_ledger::{OutputKind, TxOut};
    let (net, _wallets) = ready(false);
    let genesis = net
        .node(0)
        .chain
        .call_blocking(|s| s.inference.as_ref().map(|c| c.genesis_id()))
        .unwrap()
        .expect("an inference chain");
    let (_, beside) = a_tip_and_a_block_beside_it(&net, move |txs| {
        let Some(mut forged) = txs
            .into_iter()
            .find(fai_inference_chain::ledger_ops::carries_commit)
        else {
            return Vec::new();
        };
        for out in &mut forged.outputs {
            let OutputKind::Data(data) = &out.kind else {
                continue;
            };
            if let Some(Op::Commit {
                register,
                seed,
                after,
                ..
            }) = Op::parse(data)
            {
                let op = Op::Commit {
                    register,
                    parent: genesis,
                    seed,
                    after,
                };
                *out = TxOut::data(out.value, op.encode());
            }
        }
        vec![forged]
    });
    let anchor = beside.hash();
    for i in 0..3 {
        let outcome = hand_over(&net, i, beside.clone());
        assert_eq!(outcome, fai_ledger::BlockOutcome::SideBranch, "node {i}");
    }
    net.settle();
    let won = net
        .node(0)
        .chain
        .call_blocking(move |s| {
            let record = s.inference.as_ref()?.tracker().record(&anchor)?;
            record.sortition.winner.as_ref().map(|w| w.parent)
        })
        .unwrap();
    assert_eq!(won, Some(genesis), "the forged commit did not win");
    for i in 0..3 {
        let blocks = net
            .node(i)
            .chain
            .call_blocking(move |s| s.inference.as_ref().map(|c| c.tenure_blocks(&anchor).len()))
            .unwrap();
        assert_eq!(
            blocks,
            Some(0),
            "node {i} holds a block of the forged tenure"
        );
    }
}
