//! The inference chain end to end on real parts: a regtest ledger, the Clarity VM on
//! RocksDB, the engine on the built-in model. Peg-ins fund the actors; verifiers stake and
//! a node registers through VM transactions; a tenure's block carries an honest and a
//! forged result; five verifiers replay both and vote; the next block settles: the
//! honest result is paid, the forged one refunded with the node's bond slashed, and every
//! amount adds up. A ledger reorganisation then moves the canonical chain to the other
//! branch, where the same transaction is settled once.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use fai_clarity::{Genesis, GenesisModel, Value, VmConfig};
use fai_engine::tiny::ensure_fai_tiny;
use fai_engine::{GenerateRequest, LoadedModel, Replay, SamplingParams, Verifier};
use fai_inference_chain::chain::{
    escrow_account, BlockError, ChainConfig, InferenceChain, COMMIT_PHASE, COMMIT_PHASE_MAX,
    INFERENCE_BLOCKS_COLUMN, VOTE_WINDOW,
};
use fai_inference_chain::ops::{build_register, commit_after, Op, RegisterRef};
use fai_inference_chain::payloads::{PayloadStore, PAYLOADS_COLUMN};
use fai_inference_chain::quorum::{Outcome, Verdict, Vote, VoteCommit};
use fai_inference_chain::settlement::{fee, producer_subsidy};
use fai_inference_chain::sortition::next_seed;
use fai_inference_chain::types::*;
use fai_inference_chain::vmtx::{value_bytes, Evidence, SignedVmTx, VmPayload};
use fai_ledger::chainstate::SCHEMA;
use fai_ledger::{testkit, Block, ChainParams, Chainstate, OutPoint, Transaction, TxOut};
use fai_primitives::{Amount, Hash160, Hash256, Network, SecretKey, Signature};
use fai_storage::{MemoryStore, RocksStore, Schema};

const NOW: u64 = 2_000_000_000;
const CHAIN_ID: u32 = 0x8000_0002;
const PRICE: u64 = 1_000_000_000; // 10 FAI per million output tokens
const BOND: u128 = 50_000;
const MAX_FEE: u64 = 100_000;

/// The columns an inference chain with a payload store needs.
const SCHEMA_OF_TESTS: Schema = Schema {
    columns: &[
        fai_clarity::STATE_COLUMN,
        fai_clarity::BLOCKS_COLUMN,
        PAYLOADS_COLUMN,
        INFERENCE_BLOCKS_COLUMN,
    ],
    format_version: 1,
};

fn units(n: u64) -> Amount {
    Amount::from_units(n).unwrap()
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32]).unwrap()
}

fn hash(k: &SecretKey) -> Hash160 {
    k.public_key().hash160()
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
        // The producer's key (key 1) holds the coins: its commits must be signed by the
        // key its register names.
        let key = key(1);
        let blocks = testkit::extend(&mut chain, 101 + coins as u32, hash(&key), NOW).unwrap();
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

    fn tx(&mut self, mut outputs: Vec<TxOut>) -> Transaction {
        let (point, out) = self.coins.remove(0);
        let spent: u64 = outputs.iter().map(|o| o.value.units()).sum();
        outputs.push(TxOut::pay(
            units(out.value.units() - spent - 1_000),
            hash(&self.key),
        ));
        testkit::spend(&self.chain, &[(point, out, self.key.clone())], outputs).unwrap()
    }

    fn op(&mut self, op: &Op, value: u64) -> Transaction {
        self.tx(vec![TxOut::data(units(value), op.encode())])
    }

    fn mine_on(&mut self, parent: Hash256, txs: Vec<Transaction>) -> Block {
        let block = testkit::mine_on(&self.chain, parent, txs, Hash160([0; 20]), None).unwrap();
        self.chain.accept_block(block.clone(), NOW).unwrap();
        block
    }

    fn mine(&mut self, txs: Vec<Transaction>) -> Block {
        let tip = self.chain.tip_hash();
        self.mine_on(tip, txs)
    }
}

fn sampling(s: &Sampling) -> SamplingParams {
    SamplingParams {
        max_tokens: s.max_tokens,
        temperature: s.temperature_milli as f32 / 1000.0,
        top_p: s.top_p_milli as f32 / 1000.0,
        top_k: s.top_k,
        seed: s.seed,
        stop: s.stop.clone(),
    }
}

fn request(prompt: &Prompt, s: &Sampling) -> GenerateRequest {
    GenerateRequest {
        system: prompt.system.clone(),
        context: vec![],
        input: prompt.input.clone(),
        sampling: sampling(s),
    }
}

struct World {
    ledger: Ledger,
    chain: InferenceChain,
    model: Arc<LoadedModel>,
    kv: Arc<RocksStore>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    producer: SecretKey,
    vrf: fai_vrf::SecretKey,
    register: RegisterRef,
}

impl World {
    /// The seed-committing commit of the producer on `parent_block`, paying `each` to
    /// every address of `verifiers` (or burning 1,000 units when there are none).
    fn commit(&mut self, parent_block: [u8; 32], each: u64) -> Transaction {
        let tip = self.ledger.chain.tip_hash();
        self.commit_on(tip, parent_block, each)
    }

    /// A commit for a ledger block built on `ledger_parent`, paying `each` to every
    /// address of the set the chain requires there (or burning 1,000 units without one).
    fn commit_on(
        &mut self,
        ledger_parent: Hash256,
        parent_block: [u8; 32],
        each: u64,
    ) -> Transaction {
        let seed_in = self.chain.seed_after(&ledger_parent).unwrap();
        let proof = self.vrf.prove(&seed_in).unwrap();
        let op = Op::Commit {
            register: self.register,
            parent: parent_block,
            seed: next_seed(&fai_vrf::proof_to_hash(&proof).unwrap()),
            after: commit_after(&ledger_parent),
        };
        let verifiers = self.chain.commit_set(&self.ledger.chain, &ledger_parent);
        let mut outputs: Vec<TxOut> = verifiers
            .iter()
            .map(|v| TxOut::pay(units(each), *v))
            .collect();
        outputs.push(TxOut::data(
            units(if verifiers.is_empty() { 1_000 } else { 0 }),
            op.encode(),
        ));
        self.ledger.tx(outputs)
    }

    /// Mines the producer's commit on `parent_block` (see [`World::commit`]) into the
    /// next ledger block, which the chain reads; returns that block, the tenure's anchor.
    fn win(&mut self, parent_block: [u8; 32], each: u64) -> Hash256 {
        let commit = self.commit(parent_block, each);
        let block = self.ledger.mine(vec![commit]);
        self.connect(&block)
    }

    /// The producer's block for the tenure won at `anchor`, carrying `votes` (on blocks
    /// of its window past their commit phase).
    fn produce(
        &mut self,
        anchor: Hash256,
        vm_txs: Vec<SignedVmTx>,
        inferences: Vec<Inference>,
        votes: Vec<Vote>,
    ) -> Result<fai_inference_chain::block::InferenceBlock, fai_inference_chain::chain::BlockError>
    {
        let (ledger, producer, vrf) = (&self.ledger.chain, &self.producer, &self.vrf);
        let commits = vec![];
        self.chain.produce(
            ledger, anchor, producer, vrf, vm_txs, inferences, commits, votes,
        )
    }

    /// A block without transactions or inferences carrying `commits` and `votes`.
    fn produce_committing(
        &mut self,
        anchor: Hash256,
        commits: Vec<VoteCommit>,
        votes: Vec<Vote>,
    ) -> Result<fai_inference_chain::block::InferenceBlock, fai_inference_chain::chain::BlockError>
    {
        let (ledger, producer, vrf) = (&self.ledger.chain, &self.producer, &self.vrf);
        self.chain.produce(
            ledger,
            anchor,
            producer,
            vrf,
            vec![],
            vec![],
            commits,
            votes,
        )
    }

    /// The tenures of the commit phase of `block` (decision 0004): the first carries the
    /// commitments to `votes` (made with their verifiers' keys, from `keys`), the others
    /// nothing; each tenure's commit pays `each` to the verifier set. Returns the last
    /// one's id: the block carrying the votes builds on it.
    fn commit_phase(
        &mut self,
        block: [u8; 32],
        keys: &[SecretKey],
        votes: &[Vote],
        each: u64,
    ) -> [u8; 32] {
        let mut tip = block;
        for i in 0..COMMIT_PHASE {
            let anchor = self.win(tip, each);
            let commits = if i == 0 {
                commits_of(keys, votes)
            } else {
                vec![]
            };
            let b = self.produce_committing(anchor, commits, vec![]).unwrap();
            tip = self.chain.accept(&self.ledger.chain, b).unwrap();
        }
        tip
    }

    /// `n` empty tenure blocks won and produced on `from`; returns the last one's id.
    fn extend(&mut self, from: [u8; 32], n: u32) -> [u8; 32] {
        let mut tip = from;
        for _ in 0..n {
            let anchor = self.win(tip, 0);
            let b = self.produce(anchor, vec![], vec![], vec![]).unwrap();
            tip = self.chain.accept(&self.ledger.chain, b).unwrap();
        }
        tip
    }

    /// Empty ledger blocks up to the last before a new reward cycle (of 5 blocks), so
    /// that the next tenure's block starts the cycle and records its verifier set.
    fn mine_to_next_cycle(&mut self) {
        while (self.ledger.chain.height() + 1) % 5 != 0 {
            let b = self.ledger.mine(vec![]);
            self.connect(&b);
        }
    }

    fn connect(&mut self, block: &Block) -> Hash256 {
        let h = block.header.hash();
        self.chain.on_ledger_block(&self.ledger.chain, &h).unwrap();
        h
    }

    fn balance(&self, at: &[u8; 32], who: [u8; 20]) -> u128 {
        let exec = self.chain.block(at).unwrap().exec_id;
        self.chain
            .vm()
            .account(&exec, &self.ledger.chain, who)
            .unwrap()
            .0
    }

    fn nonce(&self, at: &[u8; 32], who: [u8; 20]) -> u64 {
        let exec = self.chain.block(at).unwrap().exec_id;
        self.chain
            .vm()
            .account(&exec, &self.ledger.chain, who)
            .unwrap()
            .1
    }

    /// The reputation record of `node` as of block `at`, as Clarity prints it.
    fn reputation(&self, at: &[u8; 32], node: &SecretKey) -> String {
        let who = principal(&self.chain, node);
        self.read(at, "reputation", "get-record", &[who])
            .to_string()
    }

    /// The node registry's entry of `node` as of block `at`, as Clarity prints it.
    fn registry_entry(&self, at: &[u8; 32], node: &SecretKey) -> String {
        let who = principal(&self.chain, node);
        self.read(at, "node-registry", "get-node", &[who])
            .to_string()
    }

    fn read(&self, at: &[u8; 32], contract: &str, function: &str, args: &[Value]) -> Value {
        let exec = self.chain.block(at).unwrap().exec_id;
        self.chain
            .vm()
            .call_read_only(
                &exec,
                &self.ledger.chain,
                [1; 20],
                [0; 20],
                contract,
                function,
                args,
            )
            .unwrap()
            .0
    }
}

/// A transfer of `amount` from the user (key 2) to the node (key 3), fee 1,000.
/// The commitments to `votes`, each signed with its verifier's key from `keys`.
fn commits_of(keys: &[SecretKey], votes: &[Vote]) -> Vec<VoteCommit> {
    votes
        .iter()
        .map(|v| {
            let k = keys
                .iter()
                .find(|k| k.public_key() == v.verifier)
                .expect("a verifier's key");
            VoteCommit::of(k, v)
        })
        .collect()
}

fn transfer(nonce: u64, amount: u64) -> SignedVmTx {
    SignedVmTx::new(
        &key(2),
        nonce,
        CHAIN_ID,
        units(1_000),
        VmPayload::Transfer {
            to: hash(&key(3)),
            amount: units(amount),
            memo: vec![],
        },
    )
}

/// `who` stakes `amount` for two cycles (its first transaction, no fee).
fn stake(who: &SecretKey, amount: u128) -> SignedVmTx {
    let args = vec![
        value_bytes(&Value::UInt(amount)),
        value_bytes(&Value::UInt(2)),
    ];
    SignedVmTx::new(
        who,
        0,
        CHAIN_ID,
        Amount::ZERO,
        VmPayload::Call {
            issuer: Hash160([0; 20]),
            name: "staking".into(),
            function: "stake".into(),
            args,
        },
    )
}

/// The node (key 3) registers in the node registry for `model` (nonce 0, fee 10).
fn register_node(model: &LoadedModel) -> SignedVmTx {
    register_node_as(&key(3), model)
}

/// `who` registers in the node registry for `model` with a bond of [`BOND`] (nonce 0,
/// fee 10).
fn register_node_as(who: &SecretKey, model: &LoadedModel) -> SignedVmTx {
    let models = Value::list_from(vec![Value::buff_from(model.id.0.to_vec()).unwrap()]).unwrap();
    let address = Value::string_ascii_from_bytes(b"/ip4/127.0.0.1/tcp/7070".to_vec()).unwrap();
    SignedVmTx::new(
        who,
        0,
        CHAIN_ID,
        units(10),
        VmPayload::Call {
            issuer: Hash160([0; 20]),
            name: "node-registry".into(),
            function: "register".into(),
            args: vec![
                value_bytes(&models),
                value_bytes(&Value::UInt(u128::from(PRICE))),
                value_bytes(&address),
                value_bytes(&Value::UInt(BOND)),
            ],
        },
    )
}

fn config_for(model: &LoadedModel) -> ChainConfig {
    ChainConfig {
        network: Network::Regtest,
        vm: VmConfig::for_network(Network::Regtest),
        genesis: Genesis {
            cycle_length: 5,
            min_stake: 100,
            min_bond: 1_000,
            withdraw_delay: 10,
            models: vec![GenesisModel {
                id: model.id.0,
                name: "fai-tiny".into(),
                arch: "llama".into(),
                context_length: 2048,
                method: "replay".into(),
            }],
        },
        cycle_length: 5,
        max_block_bytes: fai_inference_chain::block::MAX_BLOCK_BYTES,
        configured_models: Vec::new(),
    }
}

fn principal(chain: &InferenceChain, k: &SecretKey) -> Value {
    chain.vm().principal(hash(k).0).into()
}

/// A regtest ledger with the producer registered and the user, the node, the producer
/// and the five verifiers (keys 2, 3, 1 and 10 to 14) funded by peg-ins, the inference
/// chain on RocksDB following it, six ledger blocks past the funding.
fn world() -> World {
    world_with(|_| {})
}

/// [`world`] with its chain's configuration changed by `tweak`.
fn world_with(tweak: impl FnOnce(&mut ChainConfig)) -> World {
    let model_dir = tempfile::tempdir().unwrap();
    let model =
        LoadedModel::load(&ensure_fai_tiny(model_dir.path()).unwrap(), &Device::Cpu).unwrap();
    let mut ledger = Ledger::new(48);
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(RocksStore::open(dir.path(), SCHEMA_OF_TESTS).unwrap());
    let payloads = PayloadStore::new(kv.clone());
    let mut config = config_for(&model);
    tweak(&mut config);
    let chain = InferenceChain::open(kv.clone(), config, &ledger.chain)
        .unwrap()
        .with_payloads(payloads);

    // The actors, funded by peg-ins; the producer registers.
    let (producer, user, node) = (key(1), key(2), key(3));
    let verifiers: Vec<SecretKey> = (10..15).map(key).collect();
    let vrf = fai_vrf::SecretKey::from_seed([1; 32]);
    let mut txs = vec![ledger.op(
        &build_register(vrf.public().0, hash(&producer), &[model.id.0]).unwrap(),
        0,
    )];
    for (who, amount) in [
        (&user, 10_000_000u64),
        (&node, 10_000_000),
        (&producer, 1_000_000),
    ] {
        txs.push(ledger.op(&Op::PegIn { address: hash(who) }, amount));
    }
    for v in &verifiers {
        txs.push(ledger.op(&Op::PegIn { address: hash(v) }, 1_000_000));
    }
    let funding = ledger.mine(txs);
    let mut w = World {
        ledger,
        chain,
        model: Arc::new(model),
        kv,
        _dirs: (model_dir, dir),
        producer,
        vrf,
        register: RegisterRef {
            height: 0,
            tx_index: 1,
        },
    };
    let funding_hash = w.connect(&funding);
    w.register = w.chain.tracker().record(&funding_hash).unwrap().registers[0].at;
    for _ in 0..6 {
        let b = w.ledger.mine(vec![]);
        w.connect(&b);
    }
    w
}

/// A regtest network's configuration may approve models at genesis: they are approved
/// from the first block and set the genesis id apart; a list changed under a stored
/// chain is refused rather than leaving the node on the old one.
#[test]
fn a_model_approved_at_genesis_by_configuration_is_approved_and_sets_the_genesis_apart() {
    let wide = GenesisModel {
        id: [7; 32],
        name: "fai-wide-512".into(),
        arch: "llama".into(),
        context_length: 1024,
        method: "replay".into(),
    };
    let with_wide = world_with(|c| {
        *c = c.clone().with_genesis_models(vec![wide.clone()]).unwrap();
    });
    let mut plain = world();
    assert_ne!(with_wide.chain.genesis_id(), plain.chain.genesis_id());
    // The same file under another name is another genesis too.
    let renamed = GenesisModel {
        name: "wide-elsewhere".into(),
        ..wide.clone()
    };
    let with_renamed = world_with(|c| {
        *c = c.clone().with_genesis_models(vec![renamed]).unwrap();
    });
    assert_ne!(
        with_renamed.chain.genesis_id(),
        with_wide.chain.genesis_id()
    );
    let approved = |w: &World, id: [u8; 32]| {
        let id = Value::buff_from(id.to_vec()).unwrap();
        w.read(
            &w.chain.genesis_id(),
            "model-registry",
            "is-approved",
            &[id],
        )
        .to_string()
    };
    assert_eq!(approved(&with_wide, [7; 32]), "true");
    assert_eq!(approved(&plain, [7; 32]), "false");
    assert_eq!(approved(&with_wide, with_wide.model.id.0), "true");
    // Listing a model the network approves anyway changes nothing.
    let tiny = GenesisModel {
        id: plain.model.id.0,
        name: "fai-tiny".into(),
        arch: "llama".into(),
        context_length: 2048,
        method: "replay".into(),
    };
    let with_tiny = world_with(|c| {
        *c = c.clone().with_genesis_models(vec![tiny]).unwrap();
    });
    assert_eq!(with_tiny.chain.genesis_id(), plain.chain.genesis_id());
    // A stored chain opened with another list: refused, not followed.
    let genesis = plain.chain.genesis_id();
    plain.extend(genesis, 1);
    let listed = config_for(&plain.model)
        .with_genesis_models(vec![wide])
        .unwrap();
    let err = InferenceChain::open(plain.kv.clone(), listed, &plain.ledger.chain)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("another genesis"), "{err}");
    InferenceChain::open(
        plain.kv.clone(),
        config_for(&plain.model),
        &plain.ledger.chain,
    )
    .unwrap();
}

/// A second node's inference chain on its own database in `dir`, following `w`'s ledger.
fn follower(dir: &std::path::Path, w: &World) -> InferenceChain {
    let kv = Arc::new(RocksStore::open(dir, SCHEMA_OF_TESTS).unwrap());
    let mut chain = InferenceChain::open(kv, config_for(&w.model), &w.ledger.chain).unwrap();
    follow(&mut chain, w);
    chain
}

/// `chain` reads `w`'s ledger up to its tip.
fn follow(chain: &mut InferenceChain, w: &World) {
    chain
        .on_ledger_block(&w.ledger.chain, &w.ledger.chain.tip_hash())
        .unwrap();
}

#[test]
fn inferences_are_verified_voted_and_settled_and_a_reorg_settles_them_once() {
    let mut w = world();
    let (user, node) = (key(2), key(3));
    let verifiers: Vec<SecretKey> = (10..15).map(key).collect();

    // Tenure 1: verifiers stake and the node registers, in VM transactions.
    let (b1, b1_id) = stake_and_register(&mut w, &verifiers);
    assert_eq!(w.chain.tip(&w.ledger.chain).id, b1_id);
    assert_eq!(w.balance(&b1_id, hash(&node).0), 10_000_000 - BOND - 10);
    assert_eq!(w.balance(&b1_id, hash(&verifiers[0]).0), 1_000_000 - 10_000);
    // A second block for the same tenure, or a block by someone who did not win: refused.
    assert!(
        w.chain.accept(&w.ledger.chain, b1.clone()).is_ok(),
        "the same block again is a no-op"
    );
    let mut stranger = b1.clone();
    stranger.header.producer = key(77).public_key();
    stranger.header.sign(&key(77));
    let err = w.chain.accept(&w.ledger.chain, stranger).unwrap_err();
    assert!(err.to_string().contains("did not win"), "{err}");

    // Into the next reward cycle, where the five stakers are the verifier set.
    w.mine_to_next_cycle();
    let fork_point = w.ledger.chain.tip_hash();

    // Tenure 2: an honest and a forged result for the same user.
    let prompt = Prompt {
        system: String::new(),
        context: vec![],
        input: "what does a verifier check".into(),
    };
    let model = w.model.clone();
    let mk_stub = |nonce: u64, seed: u64| {
        let mut s = InferenceStub {
            sender: user.public_key(),
            nonce,
            chain_id: CHAIN_ID,
            model: model.id.0,
            prompt_hash: prompt.hash(),
            sampling: Sampling {
                max_tokens: 40,
                temperature_milli: 800,
                top_p_milli: 1000,
                top_k: 40,
                seed,
                stop: vec![],
            },
            max_fee: units(MAX_FEE),
            expiry: 1_000,
            signature: Signature([0; 64]),
        };
        s.sign(&user);
        s
    };
    let generate = |s: &Sampling, seed: u64| {
        let mut req = request(&prompt, s);
        req.sampling.seed = seed;
        fai_engine::generate(&model, &req, &AtomicBool::new(false), |_| {}).unwrap()
    };
    let honest_stub = mk_stub(0, 5);
    let honest = generate(&honest_stub.sampling, 5);
    let forged_stub = mk_stub(1, 6);
    let forged = generate(&forged_stub.sampling, 7); // sampled with another seed than declared
    let receipt_for = |s: &InferenceStub, text: &str, tokens: &[u32]| {
        ResultReceipt::new_signed(s.txid(), text, tokens, &node)
    };
    let inferences = vec![
        Inference {
            receipt: receipt_for(&honest_stub, &honest.text, &honest.tokens),
            stub: honest_stub.clone(),
        },
        Inference {
            receipt: receipt_for(&forged_stub, &forged.text, &forged.tokens),
            stub: forged_stub.clone(),
        },
    ];
    let l2 = w.win(b1_id, 0);
    let b2 = w.produce(l2, vec![], inferences.clone(), vec![]).unwrap();
    let b2_id = w.chain.accept(&w.ledger.chain, b2).unwrap();
    assert_eq!(w.balance(&b2_id, escrow_account()), 2 * u128::from(MAX_FEE));
    let set = w.chain.verifier_set(
        &w.ledger.chain,
        w.chain.block(&b2_id).unwrap(),
        w.chain.block(&b2_id).unwrap().cycle,
    );
    let mut expected_set: Vec<Hash160> = verifiers.iter().map(hash).collect();
    expected_set.truncate(5);
    assert_eq!(set, expected_set);

    // The verifiers replay both results with the engine and vote.
    let claims = [
        (&honest_stub, &honest.tokens),
        (&forged_stub, &forged.tokens),
    ];
    let votes: Vec<Vote> = verifiers
        .iter()
        .map(|v| {
            let verdicts = claims
                .iter()
                .map(|(s, tokens)| {
                    Replay::default()
                        .verify(&w.model, &request(&prompt, &s.sampling), tokens)
                        .unwrap()
                        .accepted
                        .into()
                })
                .collect();
            Vote::new(v, Hash256(b2_id), verdicts)
        })
        .collect();
    assert!(votes
        .iter()
        .all(|v| v.verdicts == vec![Verdict::Accept, Verdict::Reject]));

    // Tenure 3 carries their commitments, the next tenure nothing, and the one after
    // the votes (decision 0004); each commit pays the verifier set.
    let committed = w.commit_phase(b2_id, &verifiers, &votes[..3], 200);
    let commit = w.commit(committed, 200);
    let l3 = w.ledger.mine(vec![commit]);
    let l3_hash = w.connect(&l3);
    let b3 = w
        .produce(l3_hash, vec![], vec![], votes[..3].to_vec())
        .unwrap();
    let b3_id = w.chain.accept(&w.ledger.chain, b3).unwrap();

    let paid = fee(MAX_FEE, PRICE, honest.tokens.len() as u32);
    let forged_fee = fee(MAX_FEE, PRICE, forged.tokens.len() as u32);
    assert!(paid > 0 && paid < MAX_FEE);
    let node_share = paid * 9 / 10;
    let producer_share = paid - node_share;
    let b2_anchor_height = w.chain.block(&b2_id).unwrap().anchor_height;
    let subsidy = u128::from(producer_subsidy(b2_anchor_height).units());
    assert_eq!(
        w.balance(&b3_id, hash(&user).0),
        10_000_000 - u128::from(paid)
    );
    assert_eq!(
        w.balance(&b3_id, hash(&node).0),
        10_000_000 - BOND - 10 + u128::from(node_share)
    );
    assert_eq!(
        w.balance(&b3_id, hash(&w.producer).0),
        1_000_000 + 10 + u128::from(producer_share) + subsidy
    );
    assert_eq!(w.balance(&b3_id, escrow_account()), 0);
    let slash = u128::from(forged_fee * 3).min(BOND);
    let entry = w.registry_entry(&b3_id, &node);
    assert!(
        entry.contains(&format!("(bond u{})", BOND - slash)),
        "{entry}"
    );
    let rep = w.reputation(&b3_id, &node);
    assert!(
        rep.contains("(accepted u1)") && rep.contains("(rejected u1)"),
        "{rep}"
    );
    // Supply: what was pegged in, plus the subsidy, less the slashed bond.
    let pegged: u128 = 10_000_000 * 2 + 1_000_000 + 5 * 1_000_000;
    let exec = w.chain.block(&b3_id).unwrap().exec_id;
    assert_eq!(
        w.chain.vm().liquid_supply(&exec, &w.ledger.chain).unwrap(),
        pegged + subsidy - slash
    );

    // A longer ledger branch from before tenure 2: the producer wins there too and
    // includes the honest inference again, on the same parent.
    let commit = w.commit_on(fork_point, b1_id, 200);
    let f1 = w.ledger.mine_on(fork_point, vec![commit]);
    let f1_hash = w.connect(&f1);
    let alt = w
        .produce(f1_hash, vec![], vec![inferences[0].clone()], vec![])
        .unwrap();
    let alt_id = w.chain.accept(&w.ledger.chain, alt).unwrap();
    // The producer wins the next tenure too, within the commit phase of its block; the
    // tenure's block comes later (below), with the verifiers' commitments.
    let bid = w.commit_on(f1_hash, alt_id, 200);
    let f2 = w.ledger.mine_on(f1_hash, vec![bid]);
    let f2_hash = w.connect(&f2);
    let mut tip = f2_hash;
    for _ in 0..(COMMIT_PHASE + 1) {
        let b = w.ledger.mine_on(tip, vec![]);
        tip = w.connect(&b);
    }
    assert!(
        w.ledger.chain.is_active(&tip),
        "the new branch has more work"
    );
    // The canonical chain follows the ledger: tenure 2 and those after are orphaned
    // with their state, and of their inferences the one the new chain lacks goes back
    // to the mempool.
    assert_eq!(w.chain.tip(&w.ledger.chain).id, alt_id);
    let (left, right) = w.chain.fork_sides(&b3_id, &alt_id);
    let ids = |side: &[&fai_inference_chain::block::InferenceBlock]| -> Vec<Hash256> {
        side.iter().map(|b| b.header.id()).collect()
    };
    let left_ids = ids(&left);
    assert_eq!(left_ids.len(), COMMIT_PHASE as usize + 2);
    assert_eq!(
        (left_ids.first(), left_ids.last()),
        (Some(&Hash256(b3_id)), Some(&Hash256(b2_id))),
        "newest first"
    );
    assert_eq!(ids(&right), vec![Hash256(alt_id)]);
    assert_eq!(
        w.chain.left_behind(&alt_id, &b3_id).len(),
        1,
        "the other way round"
    );
    assert!(w.chain.left_behind(&b3_id, &b3_id).is_empty());
    // Of what the branch left behind carried, the new branch lacks one inference: it
    // goes back to the pools.
    let carried: Vec<_> = right.iter().flat_map(|b| b.inferences.clone()).collect();
    let back: Vec<_> = left
        .iter()
        .rev()
        .flat_map(|b| b.inferences.clone())
        .filter(|i| !carried.contains(i))
        .collect();
    assert_eq!(back, vec![inferences[1].clone()]);
    assert_eq!(
        w.balance(&alt_id, hash(&user).0),
        10_000_000 - u128::from(MAX_FEE),
        "one escrow only"
    );
    assert_eq!(w.balance(&alt_id, escrow_account()), u128::from(MAX_FEE));
    let rep = w.reputation(&alt_id, &node);
    assert!(rep.contains("(accepted u0)"), "{rep}");

    // The first tenure past the commit phase on the surviving branch settles it, once.
    let alt_rec = w.chain.block(&alt_id).unwrap().clone();
    let set = w
        .chain
        .verifier_set(&w.ledger.chain, &alt_rec, alt_rec.cycle);
    assert_eq!(set.len(), 5);
    let votes: Vec<Vote> = verifiers[1..4]
        .iter()
        .map(|v| Vote::new(v, Hash256(alt_id), vec![Verdict::Accept]))
        .collect();
    let late = w
        .produce_committing(f2_hash, commits_of(&verifiers, &votes), vec![])
        .unwrap();
    let committed = w.chain.accept(&w.ledger.chain, late).unwrap();
    assert_eq!(w.chain.tip(&w.ledger.chain).id, committed);
    let commit = w.commit(committed, 200);
    let next = w.ledger.mine(vec![commit]);
    let next_hash = w.connect(&next);
    let settled = w.produce(next_hash, vec![], vec![], votes).unwrap();
    let settled_id = w.chain.accept(&w.ledger.chain, settled).unwrap();
    assert_eq!(w.chain.tip(&w.ledger.chain).id, settled_id);
    assert_eq!(
        w.balance(&settled_id, hash(&user).0),
        10_000_000 - u128::from(paid)
    );
    assert_eq!(w.balance(&settled_id, escrow_account()), 0);
    let rep = w.reputation(&settled_id, &node);
    assert!(
        rep.contains("(accepted u1)") && rep.contains("(rejected u0)"),
        "{rep}"
    );

    // Charging an inference again (its nonce is spent) makes a block invalid; a block
    // that only two verifiers sign is not final: when its vote window closes, its
    // inference is refunded, its producer earns nothing, and reputation does not move.
    let alt_rec = w.chain.block(&settled_id).unwrap().clone();
    let set = w
        .chain
        .verifier_set(&w.ledger.chain, &alt_rec, alt_rec.cycle);
    assert_eq!(set.len(), 5);
    // Nonce 1: on this branch the forged inference (nonce 1) was never included.
    let third_stub = mk_stub(1, 9);
    let third = generate(&third_stub.sampling, 9);
    let third_inf = Inference {
        receipt: receipt_for(&third_stub, &third.text, &third.tokens),
        stub: third_stub,
    };
    let third_txid = third_inf.stub.txid();
    let store = w.chain.payloads().unwrap().clone();
    let third_receipt = third_inf.receipt.signing_digest();
    sealed_text(&third_inf, &prompt, &third.text, &third.tokens, &node)
        .store(&store, w.ledger.chain.height())
        .unwrap();
    let commit = w.commit(settled_id, 200);
    let next = w.ledger.mine(vec![commit]);
    let next_hash = w.connect(&next);
    let replay = vec![inferences[0].clone()];
    let err = w.produce(next_hash, vec![], replay, vec![]).unwrap_err();
    assert!(
        err.to_string()
            .contains("nonce 0 is not the account's next nonce 1"),
        "{err}"
    );
    let x = w
        .produce(next_hash, vec![], vec![third_inf], vec![])
        .unwrap();
    let x_id = w.chain.accept(&w.ledger.chain, x).unwrap();
    let producer_before = w.balance(&x_id, hash(&w.producer).0);
    let user_before = w.balance(&x_id, hash(&user).0);
    assert_eq!(
        user_before,
        10_000_000 - u128::from(paid) - u128::from(MAX_FEE)
    );
    let two: Vec<Vote> = verifiers[..2]
        .iter()
        .map(|v| Vote::new(v, Hash256(x_id), vec![Verdict::Accept]))
        .collect();
    let mut committed = w.commit_phase(x_id, &verifiers, &two, 200);
    // Two of five committed: the phase runs on to its longest before anyone reveals.
    for _ in COMMIT_PHASE..COMMIT_PHASE_MAX {
        let anchor = w.win(committed, 200);
        let b = w.produce(anchor, vec![], vec![], vec![]).unwrap();
        committed = w.chain.accept(&w.ledger.chain, b).unwrap();
    }
    let commit = w.commit(committed, 200);
    let next = w.ledger.mine(vec![commit]);
    let next_hash = w.connect(&next);
    let y = w.produce(next_hash, vec![], vec![], two).unwrap();
    let mut y_id = w.chain.accept(&w.ledger.chain, y).unwrap();
    // Open until block x + VOTE_WINDOW: the fee stays in escrow.
    for _ in (COMMIT_PHASE_MAX + 1)..VOTE_WINDOW {
        assert_eq!(
            w.balance(&y_id, escrow_account()),
            u128::from(MAX_FEE),
            "not settled before its window closes"
        );
        let next_hash = w.win(y_id, 200);
        let b = w.produce(next_hash, vec![], vec![], vec![]).unwrap();
        y_id = w.chain.accept(&w.ledger.chain, b).unwrap();
    }
    assert_eq!(
        w.chain.block(&y_id).unwrap().height,
        w.chain.block(&x_id).unwrap().height + VOTE_WINDOW
    );
    assert_eq!(
        w.balance(&y_id, hash(&user).0),
        10_000_000 - u128::from(paid),
        "refunded"
    );
    assert_eq!(
        w.balance(&y_id, hash(&w.producer).0),
        producer_before,
        "no share, no subsidy"
    );
    assert_eq!(w.balance(&y_id, escrow_account()), 0);
    let rep = w.reputation(&y_id, &node);
    assert!(rep.contains("(accepted u1)"), "{rep}");

    // Settled: the text stays six more ledger blocks, then only the hashes remain.
    for _ in 0..5 {
        let b = w.ledger.mine(vec![]);
        w.connect(&b);
        assert!(store.has_answer(&third_txid, &third_receipt));
    }
    let b = w.ledger.mine(vec![]);
    w.connect(&b);
    assert!(!store.has_answer(&third_txid, &third_receipt));
    assert!(!store.holds_any(&third_txid).unwrap());
    let x_block = w.chain.block(&x_id).unwrap().block.clone().unwrap();
    assert_eq!(x_block.inferences[0].stub.prompt_hash, prompt.hash());
    assert_eq!(
        x_block.inferences[0].receipt.output_hash,
        ResultReceipt::hash_output(&third.text)
    );

    // Reopened from the same database: the same blocks, tip and state.
    let mut reopened =
        InferenceChain::open(w.kv.clone(), config_for(&w.model), &w.ledger.chain).unwrap();
    reopened
        .on_ledger_block(&w.ledger.chain, &w.ledger.chain.tip_hash())
        .unwrap();
    assert_eq!(reopened.tip(&w.ledger.chain).id, y_id);
    let exec = reopened.block(&y_id).unwrap().exec_id;
    assert_eq!(
        reopened
            .vm()
            .account(&exec, &w.ledger.chain, hash(&user).0)
            .unwrap()
            .0,
        10_000_000 - u128::from(paid)
    );
    drop(reopened);

    // A final block whose verifiers could not judge an inference (two of the three
    // signers abstain: the text never reached them, or they lack the model): undecided.
    // The sender is refunded, the node neither paid nor slashed, reputation unmoved;
    // the producer earns the subsidy of a final block and no share. Before, a verifier
    // without the text voted reject, and two such votes slashed an honest node.
    let fourth_stub = mk_stub(2, 11);
    let fourth = generate(&fourth_stub.sampling, 11);
    let fourth_inf = Inference {
        receipt: receipt_for(&fourth_stub, &fourth.text, &fourth.tokens),
        stub: fourth_stub,
    };
    let next_hash = w.win(y_id, 200);
    let z = w
        .produce(next_hash, vec![], vec![fourth_inf], vec![])
        .unwrap();
    let z_id = w.chain.accept(&w.ledger.chain, z).unwrap();
    let producer_before = w.balance(&z_id, hash(&w.producer).0);
    let node_before = w.balance(&z_id, hash(&node).0);
    let votes = vec![
        Vote::new(&verifiers[0], Hash256(z_id), vec![Verdict::Accept]),
        Vote::new(&verifiers[1], Hash256(z_id), vec![Verdict::Abstain]),
        Vote::new(&verifiers[2], Hash256(z_id), vec![Verdict::Abstain]),
    ];
    let z_rec = w.chain.block(&z_id).unwrap().clone();
    let (is_final, list) = w
        .chain
        .settlements(&w.ledger.chain, &z_rec, &votes)
        .unwrap();
    assert!(is_final);
    assert_eq!(list[0].0, Outcome::Undecided);
    let committed = w.commit_phase(z_id, &verifiers, &votes, 200);
    let next_hash = w.win(committed, 200);
    let settler = w.produce(next_hash, vec![], vec![], votes).unwrap();
    let settler_id = w.chain.accept(&w.ledger.chain, settler).unwrap();
    assert_eq!(
        w.balance(&settler_id, hash(&user).0),
        10_000_000 - u128::from(paid),
        "refunded"
    );
    assert_eq!(w.balance(&settler_id, hash(&node).0), node_before);
    assert_eq!(w.balance(&settler_id, escrow_account()), 0);
    let z_anchor_height = w.chain.block(&z_id).unwrap().anchor_height;
    assert_eq!(
        w.balance(&settler_id, hash(&w.producer).0),
        producer_before + u128::from(producer_subsidy(z_anchor_height).units()),
        "the subsidy of a final block, no share"
    );
    let entry = w.registry_entry(&settler_id, &node);
    assert!(
        entry.contains(&format!("(bond u{BOND})")),
        "not slashed: {entry}"
    );
    let rep = w.reputation(&settler_id, &node);
    assert!(
        rep.contains("(accepted u1)") && rep.contains("(rejected u0)"),
        "{rep}"
    );
}

/// A tenure block built on an older parent than the tip (its producer committed before the
/// last tenure block arrived) leaves the tip's block out. `abandoned_by` names that block,
/// and what it carried runs again in the new one, from the parent's nonces: read at the
/// tip, the nonces would be past them and the block could not be built.
#[test]
fn a_block_built_beside_the_tip_carries_again_what_the_block_it_leaves_out_carried() {
    let mut w = world();
    let (user, node) = (key(2), key(3));
    let genesis = w.chain.genesis_id();

    // Tenure 1: two transfers.
    let l1 = w.win(genesis, 0);
    let b1 = w
        .produce(
            l1,
            vec![transfer(0, 5_000), transfer(1, 5_000)],
            vec![],
            vec![],
        )
        .unwrap();
    let b1_id = w.chain.accept(&w.ledger.chain, b1.clone()).unwrap();
    assert_eq!(w.chain.tip(&w.ledger.chain).id, b1_id);

    // Tenure 2 was committed on the genesis, beside tenure 1's block.
    let l2 = w.win(genesis, 0);
    let left_out: Vec<[u8; 32]> = w
        .chain
        .abandoned_by(&w.ledger.chain, &genesis)
        .iter()
        .map(|b| b.header.id().0)
        .collect();
    assert_eq!(left_out, vec![b1_id]);
    assert!(w.chain.abandoned_by(&w.ledger.chain, &b1_id).is_empty());

    // The next transfer alone does not run on the genesis: its nonce is not the next there.
    let err = w
        .produce(l2, vec![transfer(2, 5_000)], vec![], vec![])
        .unwrap_err();
    assert!(err.to_string().contains("nonce"), "{err}");
    // With the left-out block's transactions first, all three run.
    let mut again = b1.vm_txs.clone();
    again.push(transfer(2, 5_000));
    let b2 = w.produce(l2, again, vec![], vec![]).unwrap();
    assert_eq!(b2.header.parent, genesis);
    let b2_id = w.chain.accept(&w.ledger.chain, b2).unwrap();
    assert_eq!(w.chain.tip(&w.ledger.chain).id, b2_id);
    assert!(w.chain.abandoned_by(&w.ledger.chain, &b2_id).is_empty());
    // Both blocks credit the same peg-ins; the new one has the third transfer besides.
    assert_eq!(
        w.balance(&b2_id, hash(&node).0),
        w.balance(&b1_id, hash(&node).0) + 5_000
    );
    assert_eq!(w.nonce(&b2_id, hash(&user).0), 3);
}

/// Attack: the tenure's winner signs variants of its block with a wrong state root.
/// Each is run in the VM and refused, and none may leave state on disk (before, every
/// variant's writes were committed before its root was compared: a winner could fill
/// every node's disk with them). Building a block writes nothing either: its state is
/// stored when the block is accepted.
#[test]
fn a_refused_variant_of_a_tenure_block_leaves_no_state_on_disk() {
    let mut w = world();
    let user = key(2);
    let genesis = w.chain.genesis_id();
    let l1 = w.win(genesis, 0);
    let written = |w: &World, header: &fai_inference_chain::block::InferenceHeader| {
        let exec = fai_inference_chain::chain::execution_id(header);
        let store = w.chain.vm().store();
        (
            store.state_root(&exec).unwrap().is_some(),
            store.block(&exec).unwrap().is_some(),
        )
    };
    let honest = w
        .produce(l1, vec![transfer(0, 5_000)], vec![], vec![])
        .unwrap();
    assert_eq!(
        written(&w, &honest.header),
        (false, false),
        "building wrote state"
    );

    // Variants with other transactions (other execution ids) and a forged root.
    for amount in 1..=20u64 {
        let mut variant = w
            .produce(l1, vec![transfer(0, amount)], vec![], vec![])
            .unwrap();
        variant.header.state_root = [amount as u8; 32];
        variant.header.sign(&w.producer);
        let err = w
            .chain
            .accept(&w.ledger.chain, variant.clone())
            .unwrap_err();
        assert!(err.to_string().contains("state root"), "{err}");
        assert_eq!(
            written(&w, &variant.header),
            (false, false),
            "variant {amount} left its state behind"
        );
    }

    // The honest block is still taken, and its state is there.
    let id = w.chain.accept(&w.ledger.chain, honest.clone()).unwrap();
    assert_eq!(written(&w, &honest.header), (true, true));
    assert_eq!(w.chain.tip(&w.ledger.chain).id, id);
    assert_eq!(w.nonce(&id, hash(&user).0), 1);
}

/// Attack: a tenure's winner makes a valid block too large to travel (gossip carries 2.1
/// MB, a sync response 10 MiB): nodes that get it and nodes that cannot would disagree.
/// A block over the consensus limit is invalid, whatever it carries (the limit lowered
/// here so that a few transfers cross it; before, nothing bounded a block's size).
#[test]
fn a_block_over_the_size_limit_is_refused() {
    let mut w = world_with(|c| c.max_block_bytes = 2_500);
    let transfers = |n: u64| -> Vec<SignedVmTx> { (0..n).map(|i| transfer(i, 5)).collect() };
    let genesis = w.chain.genesis_id();
    let l1 = w.win(genesis, 0);
    let big = w.produce(l1, transfers(30), vec![], vec![]).unwrap();
    let size = fai_primitives::Encode::to_bytes(&big).len();
    assert!(size > 2_500, "the block is only {size} bytes");
    let err = w.chain.accept(&w.ledger.chain, big).unwrap_err();
    assert!(err.to_string().contains("the limit is 2500"), "{err}");
    // One that fits is taken.
    let small = w.produce(l1, transfers(2), vec![], vec![]).unwrap();
    assert!(fai_primitives::Encode::to_bytes(&small).len() <= 2_500);
    w.chain.accept(&w.ledger.chain, small).unwrap();
}

/// A block settles its parent's inferences, then a ledger reorganisation leaves it behind:
/// those inferences are unsettled again on the winning branch, and verifiers need their
/// text until a block there settles them. Before, the text was deleted six ledger blocks
/// after the left-behind block's anchor, whatever branch won: the inference, back in the
/// pools, could no longer be verified (a verifier without the text votes against it).
#[test]
fn text_settled_by_a_block_left_behind_stays_until_the_winning_branch_settles_it() {
    let mut w = world();
    let (user, node) = (key(2), key(3));
    let genesis = w.chain.genesis_id();

    // Tenure 1: the node registers for the model.
    let register = register_node(&w.model);
    let l1 = w.win(genesis, 0);
    let b1 = w.produce(l1, vec![register], vec![], vec![]).unwrap();
    let b1_id = w.chain.accept(&w.ledger.chain, b1).unwrap();

    // Tenure 2 carries an inference; its text is kept.
    let prompt = Prompt {
        system: String::new(),
        context: vec![],
        input: "what is left behind".into(),
    };
    let sampling = Sampling {
        max_tokens: 12,
        temperature_milli: 0,
        top_p_milli: 1000,
        top_k: 0,
        seed: 1,
        stop: vec![],
    };
    let out = fai_engine::generate(
        &w.model,
        &request(&prompt, &sampling),
        &AtomicBool::new(false),
        |_| {},
    )
    .unwrap();
    let mut stub = InferenceStub {
        sender: user.public_key(),
        nonce: 0,
        chain_id: CHAIN_ID,
        model: w.model.id.0,
        prompt_hash: prompt.hash(),
        sampling,
        max_fee: units(MAX_FEE),
        expiry: 1_000,
        signature: Signature([0; 64]),
    };
    stub.sign(&user);
    let receipt = ResultReceipt::new_signed(stub.txid(), &out.text, &out.tokens, &node);
    let txid = stub.txid();
    let receipt_digest = receipt.signing_digest();
    let store = w.chain.payloads().unwrap().clone();
    let carried = Inference {
        stub: stub.clone(),
        receipt: receipt.clone(),
    };
    sealed_text(&carried, &prompt, &out.text, &out.tokens, &node)
        .store(&store, w.ledger.chain.height())
        .unwrap();
    let l2 = w.win(b1_id, 0);
    let b2 = w
        .produce(l2, vec![], vec![Inference { stub, receipt }], vec![])
        .unwrap();
    let b2_id = w.chain.accept(&w.ledger.chain, b2).unwrap();
    let fork_point = w.ledger.chain.tip_hash();

    // The block closing its vote window settles it (refunded: nobody voted).
    let b3_id = w.extend(b2_id, VOTE_WINDOW);
    assert_eq!(w.chain.tip(&w.ledger.chain).id, b3_id);

    // A longer ledger branch from before tenure 3 wins: tenure 2 is the tip again, its
    // inference unsettled there.
    let mut tip = fork_point;
    for _ in 0..=VOTE_WINDOW {
        let b = w.ledger.mine_on(tip, vec![]);
        tip = w.connect(&b);
    }
    assert!(w.ledger.chain.is_active(&tip));
    assert_eq!(w.chain.tip(&w.ledger.chain).id, b2_id);
    // Well past six blocks after the settling block's anchor, the text is still there.
    for _ in 0..8 {
        let b = w.ledger.mine(vec![]);
        w.connect(&b);
        assert!(
            store.has_answer(&txid, &receipt_digest),
            "reclaimed at ledger height {}",
            w.ledger.chain.height()
        );
    }

    // Settled on the winning branch, it goes six blocks later.
    w.extend(b2_id, VOTE_WINDOW);
    for _ in 0..5 {
        let b = w.ledger.mine(vec![]);
        w.connect(&b);
        assert!(store.has_answer(&txid, &receipt_digest));
    }
    let b = w.ledger.mine(vec![]);
    w.connect(&b);
    assert!(!store.has_answer(&txid, &receipt_digest));
    assert!(!store.holds_any(&txid).unwrap());
}

/// An inference's text sealed (to nobody: these tests only store and reclaim it) and
/// signed by its serving node `node`.
fn sealed_text(
    inference: &Inference,
    prompt: &Prompt,
    output: &str,
    tokens: &[u32],
    node: &SecretKey,
) -> fai_inference_chain::served::SealedServed {
    fai_inference_chain::served::ServedInference {
        inference: inference.clone(),
        prompt: prompt.clone(),
        output: output.to_string(),
        tokens: tokens.to_vec(),
    }
    .seal(node, &[])
    .unwrap()
}

/// Attack (or bad luck): the first block of a reward cycle, which records the verifier set
/// that the cycle's commits must pay, reaches a node late. Until it arrives that node
/// reads the next sortitions with no set, where another commit wins (here a rival that
/// only burnt its bid), and accepts the rival's block; the nodes that had the first block
/// accept the real winner's. Before, the late node read the sortitions again on receiving
/// the first block but kept the rival's block, and refused the real winner's as "the
/// tenure already has its block": two honest nodes kept different blocks for one anchor,
/// for good. Now a block that a new reading no longer elects is withdrawn (with its
/// descendants, off the disk) and the real winner's is taken: both nodes end on one chain,
/// with one state, also after a restart.
#[test]
fn a_late_first_block_of_a_cycle_leaves_every_node_on_the_same_chain() {
    let mut w = world();
    let b_dir = tempfile::tempdir().unwrap();
    let mut b = follower(b_dir.path(), &w);

    // A rival producer (key 4) registers and gets a coin of its own to commit with.
    let rival = key(4);
    let rival_vrf = fai_vrf::SecretKey::from_seed([4; 32]);
    let register = w.ledger.op(
        &build_register(rival_vrf.public().0, hash(&rival), &[w.model.id.0]).unwrap(),
        0,
    );
    let coin_tx = w
        .ledger
        .tx(vec![TxOut::pay(units(1_000_000), hash(&rival))]);
    let rival_coin = (OutPoint::new(coin_tx.txid(), 0), coin_tx.outputs[0].clone());
    let block = w.ledger.mine(vec![register, coin_tx]);
    let at = w.connect(&block);
    follow(&mut b, &w);
    let rival_register = w.chain.tracker().record(&at).unwrap().registers[0].at;

    // Tenure 1, seen by both: five verifiers stake.
    let stakes: Vec<SignedVmTx> = (10..15u8).map(|i| stake(&key(i), 10_000)).collect();
    let genesis = w.chain.genesis_id();
    let l1 = w.win(genesis, 0);
    follow(&mut b, &w);
    let staked = w.produce(l1, stakes, vec![], vec![]).unwrap();
    let staked_id = w.chain.accept(&w.ledger.chain, staked.clone()).unwrap();
    b.accept(&w.ledger.chain, staked).unwrap();

    // The first tenure of the next cycle records the five as its verifier set; node B
    // does not get its block yet.
    w.mine_to_next_cycle();
    let l2 = w.win(staked_id, 0);
    follow(&mut b, &w);
    let first = w.produce(l2, vec![], vec![], vec![]).unwrap();
    let first_id = w.chain.accept(&w.ledger.chain, first.clone()).unwrap();

    // The next ledger block holds the producer's commit, paying the set, and the rival's,
    // burning its bid as if there were no set.
    let tip = w.ledger.chain.tip_hash();
    let paying = w.commit(first_id, 100);
    let seed_in = w.chain.seed_after(&tip).unwrap();
    let proof = rival_vrf.prove(&seed_in).unwrap();
    let op = Op::Commit {
        register: rival_register,
        parent: staked_id,
        seed: next_seed(&fai_vrf::proof_to_hash(&proof).unwrap()),
        after: commit_after(&tip),
    };
    let change = rival_coin.1.value.units() - 1_000 - 1_000;
    let burning = testkit::spend(
        &w.ledger.chain,
        &[(rival_coin.0, rival_coin.1.clone(), rival.clone())],
        vec![
            TxOut::data(units(1_000), op.encode()),
            TxOut::pay(units(change), hash(&rival)),
        ],
    )
    .unwrap();
    let block = w.ledger.mine(vec![paying, burning]);
    let l3 = w.connect(&block);
    follow(&mut b, &w);
    let winner_a = w
        .chain
        .tracker()
        .record(&l3)
        .unwrap()
        .sortition
        .winner
        .clone();
    let winner_b = b.tracker().record(&l3).unwrap().sortition.winner.clone();
    assert_eq!(winner_a.map(|w| w.producer), Some(hash(&w.producer)));
    assert_eq!(winner_b.map(|w| w.producer), Some(hash(&rival)));

    // Each node takes the block its reading elects; neither takes the other's.
    let real = w.produce(l3, vec![], vec![], vec![]).unwrap();
    let real_id = w.chain.accept(&w.ledger.chain, real.clone()).unwrap();
    let rivals = b
        .produce(
            &w.ledger.chain,
            l3,
            &rival,
            &rival_vrf,
            vec![],
            vec![],
            vec![],
            vec![],
        )
        .unwrap();
    let rivals_id = b.accept(&w.ledger.chain, rivals.clone()).unwrap();
    let err = w.chain.accept(&w.ledger.chain, rivals.clone()).unwrap_err();
    assert!(err.to_string().contains("did not win"), "{err}");
    assert_eq!(b.tip(&w.ledger.chain).id, rivals_id);

    // The late block reaches B: its reading changes, the rival's block is withdrawn and
    // the real winner's taken.
    b.accept(&w.ledger.chain, first).unwrap();
    assert!(b.retired(&rivals_id), "the rival's block is still held");
    assert!(b.block(&rivals_id).is_none());
    assert_eq!(b.tip(&w.ledger.chain).id, first_id);
    let (left, _) = b.fork_sides(&rivals_id, &first_id);
    assert_eq!(
        left.iter().map(|blk| blk.header.id().0).collect::<Vec<_>>(),
        vec![rivals_id],
        "what the withdrawn block carried can go back to the pools"
    );
    b.accept(&w.ledger.chain, real.clone()).unwrap();
    assert_eq!(b.tip(&w.ledger.chain).id, real_id);
    assert_eq!(w.chain.tip(&w.ledger.chain).id, real_id);
    let exec = b.block(&real_id).unwrap().exec_id;
    assert_eq!(
        b.vm().store().state_root(&exec).unwrap(),
        Some(real.header.state_root)
    );
    // Offered again, the rival's block is refused.
    let err = b.accept(&w.ledger.chain, rivals).unwrap_err();
    assert!(err.to_string().contains("did not win"), "{err}");

    // After a restart B still holds the real chain only.
    drop(b);
    let b = follower(b_dir.path(), &w);
    assert!(b.block(&rivals_id).is_none());
    assert_eq!(b.tip(&w.ledger.chain).id, real_id);
}

/// Attack: a tenure's winner signs several blocks and sends each to part of the network.
/// Before, a node refused a second block for a tenure as invalid ("the tenure already has
/// its block") and banned the peer relaying it, so each part kept its own block for good.
/// Now two are stored (a third only once a later winning commit builds on it, so a
/// producer cannot make nodes store and run blocks without end), and a tenure with two
/// counts as empty: nodes that hold different pairs of the three blocks still agree on
/// the tip, and the next tenure, whichever block it builds on, ends every node on one
/// chain.
#[test]
fn an_equivocating_producers_blocks_end_every_node_on_one_chain() {
    let mut w = world();
    let b_dir = tempfile::tempdir().unwrap();
    let mut b = follower(b_dir.path(), &w);
    let genesis = w.chain.genesis_id();
    let l1 = w.win(genesis, 0);
    follow(&mut b, &w);
    let variant = |w: &mut World, amount: u64| {
        w.produce(l1, vec![transfer(0, amount)], vec![], vec![])
            .unwrap()
    };
    let (first, second, third) = (variant(&mut w, 1), variant(&mut w, 2), variant(&mut w, 3));
    let ids = [&first, &second, &third].map(|blk| blk.header.id().0);

    // One block alone is the tenure's block.
    w.chain.accept(&w.ledger.chain, first.clone()).unwrap();
    assert_eq!(w.chain.tip(&w.ledger.chain).id, ids[0]);
    // Node A gets the first two, node B the last two: each holds two, neither a third,
    // and both count the tenure as empty.
    w.chain.accept(&w.ledger.chain, second.clone()).unwrap();
    b.accept(&w.ledger.chain, third.clone()).unwrap();
    b.accept(&w.ledger.chain, second.clone()).unwrap();
    assert_eq!(w.chain.tenure_blocks(&l1).len(), 2);
    assert_eq!(b.tenure_blocks(&l1).len(), 2);
    for extra in [
        w.chain.accept(&w.ledger.chain, third.clone()),
        b.accept(&w.ledger.chain, first.clone()),
    ] {
        let err = extra.unwrap_err();
        assert!(
            matches!(err, BlockError::Unverifiable(_)),
            "no offence to relay: {err}"
        );
    }
    assert_eq!(w.chain.tip(&w.ledger.chain).id, genesis);
    assert_eq!(b.tip(&w.ledger.chain).id, genesis);

    // The next tenure builds on the first block, which B refused as a third: B takes it
    // now that a winning commit names it, and every node follows the child.
    let l2 = w.win(ids[0], 0);
    follow(&mut b, &w);
    b.accept(&w.ledger.chain, first.clone()).unwrap();
    let child = w
        .produce(l2, vec![transfer(1, 10)], vec![], vec![])
        .unwrap();
    let child_id = w.chain.accept(&w.ledger.chain, child.clone()).unwrap();
    b.accept(&w.ledger.chain, child.clone()).unwrap();
    assert_eq!(w.chain.tip(&w.ledger.chain).id, child_id);
    assert_eq!(b.tip(&w.ledger.chain).id, child_id);
    let user = hash(&key(2)).0;
    assert_eq!(w.nonce(&child_id, user), 2);
    assert_eq!(
        w.balance(&child_id, hash(&key(3)).0),
        10_000_000 + 1 + 10,
        "the child's state is the first block's plus its own"
    );
    let exec = b.block(&child_id).unwrap().exec_id;
    assert_eq!(
        b.vm().store().state_root(&exec).unwrap(),
        Some(child.header.state_root)
    );

    // After a restart the same.
    drop(b);
    let b = follower(b_dir.path(), &w);
    assert_eq!(b.tip(&w.ledger.chain).id, child_id);
    assert_eq!(b.tenure_blocks(&l1).len(), 3);
}

/// Equivocation is punished: anyone holding two blocks its producer signed for one tenure
/// sends them as evidence in a VM transaction, and the block that carries it burns the
/// producer's whole node bond and delists it, once per tenure (a second report spends
/// the reporter's fee and nonce and burns nothing). Evidence that does not hold (blocks
/// of two tenures) makes a block invalid, so no producer can carry it.
#[test]
fn evidence_of_an_equivocation_burns_the_producers_bond_once() {
    let mut w = world();
    let producer = w.producer.clone();
    let genesis = w.chain.genesis_id();
    let l1 = w.win(genesis, 0);
    let registering = register_node_as(&producer, &w.model);
    let b1 = w.produce(l1, vec![registering], vec![], vec![]).unwrap();
    let b1_id = w.chain.accept(&w.ledger.chain, b1.clone()).unwrap();

    let l2 = w.win(b1_id, 0);
    let first = w.produce(l2, vec![transfer(0, 1)], vec![], vec![]).unwrap();
    let second = w.produce(l2, vec![transfer(0, 2)], vec![], vec![]).unwrap();
    w.chain.accept(&w.ledger.chain, first.clone()).unwrap();
    w.chain.accept(&w.ledger.chain, second.clone()).unwrap();
    let chosen = w.chain.tip(&w.ledger.chain).id;

    let evidence =
        Evidence::tenure_equivocation(second.header.clone(), first.header.clone()).unwrap();
    assert_eq!(
        evidence.equivocation().unwrap(),
        (hash(&producer), l2),
        "the producer and the tenure"
    );
    let report = |reporter: u8| {
        SignedVmTx::new(
            &key(reporter),
            0,
            CHAIN_ID,
            units(1_000),
            VmPayload::Evidence(Box::new(evidence.clone())),
        )
    };
    let bond_of = |w: &World, at: &[u8; 32]| {
        w.read(
            at,
            "node-registry",
            "get-node",
            &[principal(&w.chain, &producer)],
        )
        .to_string()
    };
    assert!(bond_of(&w, &chosen).contains(&format!("(bond u{BOND})")));

    let l3 = w.win(chosen, 0);
    let b3 = w
        .produce(l3, vec![report(10), report(13)], vec![], vec![])
        .unwrap();
    let b3_id = w.chain.accept(&w.ledger.chain, b3).unwrap();
    let entry = bond_of(&w, &b3_id);
    assert!(entry.contains("(bond u0)"), "{entry}");
    assert!(entry.contains(&format!("(slashed u{BOND})")), "{entry}");
    assert!(entry.contains("(withdraw-at (some"), "delisted: {entry}");
    let anchor = Value::buff_from(l2.0.to_vec()).unwrap();
    let recorded = w.read(
        &b3_id,
        "node-registry",
        "equivocation",
        &[principal(&w.chain, &producer), anchor],
    );
    assert_eq!(recorded.to_string(), format!("(some u{BOND})"));
    for reporter in [10, 13] {
        // The second report in the same block is carried too: fee and nonce spent.
        assert_eq!(w.nonce(&b3_id, hash(&key(reporter)).0), 1);
        assert_eq!(w.balance(&b3_id, hash(&key(reporter)).0), 1_000_000 - 1_000);
    }

    // Reported again: the reporter pays, nothing more burns.
    let l4 = w.win(b3_id, 0);
    let b4 = w.produce(l4, vec![report(11)], vec![], vec![]).unwrap();
    let b4_id = w.chain.accept(&w.ledger.chain, b4).unwrap();
    assert!(bond_of(&w, &b4_id).contains(&format!("(slashed u{BOND})")));
    assert_eq!(w.nonce(&b4_id, hash(&key(11)).0), 1);
    assert_eq!(w.balance(&b4_id, hash(&key(11)).0), 1_000_000 - 1_000);

    // Two headers anyone can sign with a key of its own, for any anchor: the key is no
    // registered node, so nothing burns and nothing is recorded (no state to fill).
    let stranger = key(20);
    let signed_by_stranger = |mut h: fai_inference_chain::block::InferenceHeader| {
        h.producer = stranger.public_key();
        h.sign(&stranger);
        h
    };
    let junk = Evidence::tenure_equivocation(
        signed_by_stranger(first.header.clone()),
        signed_by_stranger(second.header.clone()),
    )
    .unwrap();
    let junk_report = SignedVmTx::new(
        &key(14),
        0,
        CHAIN_ID,
        units(1_000),
        VmPayload::Evidence(Box::new(junk)),
    );
    let l45 = w.win(b4_id, 0);
    let b45 = w.produce(l45, vec![junk_report], vec![], vec![]).unwrap();
    let b45_id = w.chain.accept(&w.ledger.chain, b45).unwrap();
    let anchor = Value::buff_from(l2.0.to_vec()).unwrap();
    let recorded = w.read(
        &b45_id,
        "node-registry",
        "equivocation",
        &[principal(&w.chain, &stranger), anchor],
    );
    assert_eq!(recorded.to_string(), "none");
    assert_eq!(w.nonce(&b45_id, hash(&key(14)).0), 1);
    let b4_id = b45_id;

    // Two blocks of two tenures are no evidence: a block carrying them is invalid.
    assert!(Evidence::tenure_equivocation(b1.header.clone(), first.header.clone()).is_none());
    let forged = Evidence::TenureEquivocation {
        first: b1.header.clone(),
        second: first.header.clone(),
    };
    let bad = SignedVmTx::new(
        &key(12),
        0,
        CHAIN_ID,
        units(1_000),
        VmPayload::Evidence(Box::new(forged)),
    );
    let l5 = w.win(b4_id, 0);
    let err = w.produce(l5, vec![bad], vec![], vec![]).unwrap_err();
    assert!(err.to_string().contains("evidence"), "{err}");
}

/// The first tenure of a test: `verifiers` stake (10,000 down to 6,000) and the node
/// (key 3) registers. The block and its id.
fn stake_and_register(
    w: &mut World,
    verifiers: &[SecretKey],
) -> (fai_inference_chain::block::InferenceBlock, [u8; 32]) {
    let genesis = w.chain.genesis_id();
    let l1 = w.win(genesis, 0);
    let mut vm_txs: Vec<SignedVmTx> = verifiers
        .iter()
        .enumerate()
        .map(|(i, v)| stake(v, 10_000 - 1_000 * i as u128))
        .collect();
    vm_txs.push(register_node(&w.model));
    let b1 = w.produce(l1, vm_txs, vec![], vec![]).unwrap();
    let b1_id = w.chain.accept(&w.ledger.chain, b1.clone()).unwrap();
    (b1, b1_id)
}

/// A contract call of a boot contract by `who` (fee 0).
fn boot_call(
    who: &SecretKey,
    nonce: u64,
    contract: &str,
    function: &str,
    args: &[Value],
) -> SignedVmTx {
    SignedVmTx::new(
        who,
        nonce,
        CHAIN_ID,
        Amount::ZERO,
        VmPayload::Call {
            issuer: Hash160([0; 20]),
            name: contract.into(),
            function: function.into(),
            args: args.iter().map(value_bytes).collect(),
        },
    )
}

/// Decision 0004's audits. The producer commits to two planted forgeries before they are
/// served (the first twice, with two salts), and to a third only after its block; the
/// node answers all three with random tokens. Verifier 10 accepts everything (a lazy
/// verifier); 11 to 13 replay. Revealed: the lazy verifier loses a tenth of its stake
/// (half to the revealer, half burnt) for the forgery more than half the set of five
/// rejected grossly, once however many commitments name it; nobody loses anything for
/// the forgery only one verifier rejected grossly, nor for the one committed late (a
/// reveal cannot be made up after the votes are seen), and a reveal copied from the pool
/// by another account takes nothing. Before, a verifier accepting everything risked
/// nothing.
#[test]
fn a_verifier_that_accepts_a_planted_forgery_loses_a_tenth_of_its_stake() {
    let mut w = world();
    let (user, node, producer) = (key(2), key(3), key(1));
    let verifiers: Vec<SecretKey> = (10..15).map(key).collect();
    let (_, b1_id) = stake_and_register(&mut w, &verifiers);
    w.mine_to_next_cycle();

    // Three forged answers (random tokens), served by the node for the user.
    let forged: Vec<Inference> = (0..3u64)
        .map(|nonce| random_answer(&w, &user, &node, nonce))
        .collect();
    // Audit k: (the forgery it names, its salt). Audit 3 names the first forgery again.
    let audits: Vec<(usize, [u8; 32])> = (0..4u8)
        .map(|k| (usize::from(k % 3), [0xa0 + k; 32]))
        .collect();
    let commitment = |k: usize| {
        let (i, salt) = audits[k];
        let c = Evidence::audit_commitment(&salt, &forged[i].stub.txid(), &hash(&producer));
        Value::buff_from(c.0.to_vec()).unwrap()
    };

    // Tenure 2: the producer commits to audits 0, 1 and 3.
    let l2 = w.win(b1_id, 200);
    let commits = vec![
        boot_call(&producer, 0, "staking", "commit-audit", &[commitment(0)]),
        boot_call(&producer, 1, "staking", "commit-audit", &[commitment(1)]),
        boot_call(&producer, 2, "staking", "commit-audit", &[commitment(3)]),
    ];
    let b2 = w.produce(l2, commits, vec![], vec![]).unwrap();
    let b2_id = w.chain.accept(&w.ledger.chain, b2).unwrap();
    assert_eq!(w.nonce(&b2_id, hash(&producer).0), 3);
    // Tenure 3: the forgeries.
    let l3 = w.win(b2_id, 200);
    let b3 = w.produce(l3, vec![], forged.clone(), vec![]).unwrap();
    let b3_id = w.chain.accept(&w.ledger.chain, b3).unwrap();
    // The commit phase carries the verifiers' commitments; the tenure after it the votes
    // and the third audit commitment, made once the votes are out.
    use Verdict::{Accept, Reject, RejectGross};
    let votes = vec![
        Vote::new(&verifiers[0], Hash256(b3_id), vec![Accept, Accept, Accept]),
        Vote::new(
            &verifiers[1],
            Hash256(b3_id),
            vec![RejectGross, RejectGross, RejectGross],
        ),
        Vote::new(
            &verifiers[2],
            Hash256(b3_id),
            vec![RejectGross, Reject, RejectGross],
        ),
        Vote::new(
            &verifiers[3],
            Hash256(b3_id),
            vec![RejectGross, Reject, RejectGross],
        ),
    ];
    let committed = w.commit_phase(b3_id, &verifiers, &votes, 200);
    let l4 = w.win(committed, 200);
    let late = vec![boot_call(
        &producer,
        3,
        "staking",
        "commit-audit",
        &[commitment(2)],
    )];
    let b4 = w.produce(l4, late, vec![], votes).unwrap();
    let b4_id = w.chain.accept(&w.ledger.chain, b4).unwrap();

    let stake_of = |w: &World, at: &[u8; 32], v: &SecretKey| {
        w.read(at, "staking", "get-stake", &[principal(&w.chain, v)])
            .to_string()
    };
    assert!(stake_of(&w, &b4_id, &verifiers[0]).contains("(amount u10000)"));
    let producer_before = w.balance(&b4_id, hash(&producer).0);

    // Tenure 5: the producer reveals all four audits, and the first again.
    let reveal_by = |who: &SecretKey, nonce: u64, k: usize| {
        let (i, salt) = audits[k];
        SignedVmTx::new(
            who,
            nonce,
            CHAIN_ID,
            Amount::ZERO,
            VmPayload::Evidence(Box::new(Evidence::Audit {
                block: Hash256(b3_id),
                index: i as u32,
                salt,
            })),
        )
    };
    let reveal = |nonce: u64, i: usize| reveal_by(&producer, nonce, i);
    // Verifier 13 copies the first reveal from the pool, ahead of the producer's: it
    // names no commitment (the revealer is part of it), so it takes nothing.
    let copier = &verifiers[3];
    let copier_before = w.balance(&b4_id, hash(copier).0);
    let l5 = w.win(b4_id, 200);
    let reveals = vec![
        reveal_by(copier, 1, 0),
        reveal(4, 0),
        reveal(5, 1),
        reveal(6, 2),
        reveal(7, 0),
        reveal(8, 3),
    ];
    let b5 = w.produce(l5, reveals, vec![], vec![]).unwrap();
    let b5_id = w.chain.accept(&w.ledger.chain, b5).unwrap();
    assert_eq!(
        w.nonce(&b5_id, hash(&producer).0),
        9,
        "every reveal is carried"
    );
    // The lazy verifier: a tenth of 10,000 once, half of it to the revealer.
    assert!(
        stake_of(&w, &b5_id, &verifiers[0]).contains("(amount u9000)"),
        "{}",
        stake_of(&w, &b5_id, &verifiers[0])
    );
    assert_eq!(w.balance(&b5_id, hash(&producer).0), producer_before + 500);
    assert_eq!(
        w.nonce(&b5_id, hash(copier).0),
        2,
        "the copied reveal is carried"
    );
    assert_eq!(
        w.balance(&b5_id, hash(copier).0),
        copier_before,
        "nothing gained"
    );
    let slashed = |i: usize| {
        let txid = Value::buff_from(forged[i].stub.txid().0.to_vec()).unwrap();
        w.read(
            &b5_id,
            "staking",
            "get-audit-slash",
            &[principal(&w.chain, &verifiers[0]), txid],
        )
        .to_string()
    };
    // Once for the first forgery, though two commitments (audits 0 and 3) name it.
    assert_eq!(slashed(0), "(some u1000)");
    assert_eq!(
        slashed(1),
        "none",
        "only one of the set of five rejected it grossly"
    );
    assert_eq!(slashed(2), "none", "committed after its block");
    // Caught, the lazy verifier is barred from the verifier sets: it leaves the leaders
    // (who make the next cycle's set) though its stake still ranks first, and stays out
    // when it stakes more; the other four stay.
    let leaders = |w: &World, at: &[u8; 32]| w.read(at, "staking", "get-leaders", &[]).to_string();
    let lazy = principal(&w.chain, &verifiers[0]).to_string();
    let barred = w.read(
        &b5_id,
        "staking",
        "get-barred",
        &[principal(&w.chain, &verifiers[0])],
    );
    assert!(barred.to_string().starts_with("(some u"), "{barred}");
    assert!(
        !leaders(&w, &b5_id).contains(&lazy),
        "{}",
        leaders(&w, &b5_id)
    );
    assert!(leaders(&w, &b4_id).contains(&lazy));
    for v in &verifiers[1..] {
        let who = principal(&w.chain, v).to_string();
        assert!(leaders(&w, &b5_id).contains(&who), "{who}");
    }

    // Each reveal whose commitment exists costs a tally of a block's votes: a block
    // carries at most 16 (a 17th makes it invalid), so reveals cannot slow every node.
    let spammer = &verifiers[4];
    let l6 = w.win(b5_id, 200);
    let many: Vec<SignedVmTx> = (1..=17).map(|n| reveal_by(spammer, n, 1)).collect();
    let err = w.produce(l6, many.clone(), vec![], vec![]).unwrap_err();
    assert!(err.to_string().contains("at most 16"), "{err}");
    let b6 = w.produce(l6, many[..16].to_vec(), vec![], vec![]).unwrap();
    let b6_id = w.chain.accept(&w.ledger.chain, b6).unwrap();
    assert_eq!(w.nonce(&b6_id, hash(spammer).0), 17);
    // The verifiers that replayed keep their stakes.
    assert!(stake_of(&w, &b5_id, &verifiers[1]).contains("(amount u9000)"));
    assert!(stake_of(&w, &b5_id, &verifiers[2]).contains("(amount u8000)"));
    // Staking more does not bring the barred verifier back.
    let l7 = w.win(b6_id, 200);
    let more = vec![boot_call(
        &verifiers[0],
        1,
        "staking",
        "stake",
        &[Value::UInt(5_000), Value::UInt(1)],
    )];
    let b7 = w.produce(l7, more, vec![], vec![]).unwrap();
    let b7_id = w.chain.accept(&w.ledger.chain, b7).unwrap();
    assert!(stake_of(&w, &b7_id, &verifiers[0]).contains("(amount u14000)"));
    assert!(
        !leaders(&w, &b7_id).contains(&lazy),
        "{}",
        leaders(&w, &b7_id)
    );
}

/// An inference of `user` (nonce `nonce`) answered by `node` with 16 arbitrary tokens: a
/// gross forgery (the chain itself never replays, so any answer does where only votes
/// matter).
fn random_answer(w: &World, user: &SecretKey, node: &SecretKey, nonce: u64) -> Inference {
    let prompt = Prompt {
        system: String::new(),
        context: vec![],
        input: "is anyone checking".into(),
    };
    let mut stub = InferenceStub {
        sender: user.public_key(),
        nonce,
        chain_id: CHAIN_ID,
        model: w.model.id.0,
        prompt_hash: prompt.hash(),
        sampling: Sampling {
            max_tokens: 16,
            temperature_milli: 0,
            top_p_milli: 1000,
            top_k: 0,
            seed: nonce,
            stop: vec![],
        },
        max_fee: units(MAX_FEE),
        expiry: 1_000,
        signature: Signature([0; 64]),
    };
    stub.sign(user);
    let tokens: Vec<u32> = (0..16)
        .map(|i| (i * 37 + nonce as u32 * 11) % 256)
        .collect();
    let text = w.model.tokenizer.decode(&tokens);
    let receipt = ResultReceipt::new_signed(stub.txid(), &text, &tokens, node);
    Inference { stub, receipt }
}

/// A world with five staked verifiers (keys 10 to 14) and a block, the first of a cycle,
/// carrying one answer of node key 3 to user key 2: the world, the verifiers and the
/// block's id.
fn one_answer_before_its_verifiers() -> (World, Vec<SecretKey>, [u8; 32]) {
    let mut w = world();
    let (user, node) = (key(2), key(3));
    let verifiers: Vec<SecretKey> = (10..15).map(key).collect();
    let (_, b1_id) = stake_and_register(&mut w, &verifiers);
    w.mine_to_next_cycle();
    let l2 = w.win(b1_id, 200);
    let b2 = w
        .produce(l2, vec![], vec![random_answer(&w, &user, &node, 0)], vec![])
        .unwrap();
    let b2_id = w.chain.accept(&w.ledger.chain, b2).unwrap();
    (w, verifiers, b2_id)
}

/// Issue 19's vote window, in two phases (decision 0004). Commitments to the votes on
/// block N count in blocks N+1 to N+COMMIT_PHASE, the votes themselves (reveals) in the
/// blocks after, up to N+VOTE_WINDOW: two reveals leave N open (the fee stays in
/// escrow), a third a block later settles it there (the node paid, the producer of N its
/// share and subsidy). A block carrying a reveal in the commit phase, a reveal without
/// its verifier's commitment or that does not open it, a commitment past the commit
/// phase (the copier's: made once others' verdicts were public), or a vote or commitment
/// from outside the set, carried before, of the wrong length, or on a block outside the
/// window or settled already is invalid; a block nobody votes on is refunded when its
/// window closes.
#[test]
fn votes_are_committed_then_revealed_in_the_window_and_a_block_is_refunded_only_when_it_closes() {
    let (mut w, verifiers, b2_id) = one_answer_before_its_verifiers();
    let (user, node) = (key(2), key(3));
    let on_b2 = |v: &SecretKey| Vote::new(v, Hash256(b2_id), vec![Verdict::Accept]);
    let commit_b2 = |v: &SecretKey| VoteCommit::of(v, &on_b2(v));
    let user_before = w.balance(&b2_id, hash(&user).0);
    let node_before = w.balance(&b2_id, hash(&node).0);
    let outsider = key(20);

    // What N+1 may not carry: a commitment from outside the set or twice.
    let l3 = w.win(b2_id, 200);
    let bad: Vec<(&str, Vec<VoteCommit>, Vec<Vote>)> = vec![
        ("outside its set", vec![commit_b2(&outsider)], vec![]),
        (
            "twice",
            vec![commit_b2(&verifiers[0]), commit_b2(&verifiers[0])],
            vec![],
        ),
    ];
    for (what, commits, votes) in bad {
        let err = w.produce_committing(l3, commits, votes).unwrap_err();
        assert!(
            err.to_string().contains("commit phase") || err.to_string().contains("commitment"),
            "{what}: {err}"
        );
    }
    // N+1 carries four commitments (verifier 3 commits to a rejection), N+2 nothing.
    let mut commits: Vec<VoteCommit> = verifiers[..3].iter().map(commit_b2).collect();
    let rejection = Vote::new(&verifiers[3], Hash256(b2_id), vec![Verdict::Reject]);
    commits.push(VoteCommit::of(&verifiers[3], &rejection));
    let b3 = w.produce_committing(l3, commits, vec![]).unwrap();
    let b3_id = w.chain.accept(&w.ledger.chain, b3).unwrap();
    // N+2 may not carry a reveal (nobody may see a verdict yet), though the commitment
    // is carried; it carries nothing.
    let l4 = w.win(b3_id, 200);
    let err = w
        .produce(l4, vec![], vec![], vec![on_b2(&verifiers[0])])
        .unwrap_err();
    assert!(err.to_string().contains("commit phase"), "{err}");
    let b4 = w.produce(l4, vec![], vec![], vec![]).unwrap();
    let b4_id = w.chain.accept(&w.ledger.chain, b4).unwrap();
    let b2_rec = w.chain.block(&b2_id).unwrap().clone();
    let b4_rec = w.chain.block(&b4_id).unwrap().clone();
    assert!(w.chain.commit_phase_over(&w.ledger.chain, &b2_rec, &b4_rec));

    // The verifiers reveal now. A producer that wins the next tenure with a commit
    // naming N+1 (any block anchored below its tenure will do) builds a second N+2,
    // after the reveals: its block is anchored past the commit phase of N and cannot
    // carry the copier's commitment. Counted in inference blocks (depth 2), it could.
    let copier = &verifiers[4];
    let beside = w.win(b3_id, 200);
    let err = w
        .produce_committing(beside, vec![commit_b2(copier)], vec![])
        .unwrap_err();
    assert!(err.to_string().contains("past the commit phase"), "{err}");

    // N+3 carries two reveals: open.
    let l5 = w.win(b4_id, 200);
    let b5 = w
        .produce(
            l5,
            vec![],
            vec![],
            vec![on_b2(&verifiers[0]), on_b2(&verifiers[1])],
        )
        .unwrap();
    let b5_id = w.chain.accept(&w.ledger.chain, b5).unwrap();
    assert_eq!(w.balance(&b5_id, escrow_account()), u128::from(MAX_FEE));
    assert_eq!(w.balance(&b5_id, hash(&node).0), node_before);

    // What N+4 may not carry. Verifier 4, which did not commit in time, copies the
    // verdicts now public: neither its commitment nor its reveal is taken. Verifier 3
    // cannot change its mind either.
    let l6 = w.win(b5_id, 200);
    let err = w
        .produce_committing(l6, vec![commit_b2(copier)], vec![])
        .unwrap_err();
    assert!(err.to_string().contains("past the commit phase"), "{err}");
    let bad: Vec<(&str, Vote)> = vec![
        ("a reveal without a commitment", on_b2(copier)),
        (
            "a reveal that does not open its commitment",
            on_b2(&verifiers[3]),
        ),
        ("outside its set", on_b2(&outsider)),
        ("carried before", on_b2(&verifiers[0])),
        (
            "of the wrong length",
            Vote::new(&verifiers[2], Hash256(b2_id), vec![]),
        ),
        (
            "not in the window",
            Vote::new(&verifiers[2], Hash256([7; 32]), vec![Verdict::Accept]),
        ),
    ];
    for (what, vote) in bad {
        let err = w.produce(l6, vec![], vec![], vec![vote]).unwrap_err();
        assert!(err.to_string().contains("vote"), "{what}: {err}");
    }
    let twice = vec![on_b2(&verifiers[2]), on_b2(&verifiers[2])];
    assert!(
        w.produce(l6, vec![], vec![], twice).is_err(),
        "one vote twice"
    );
    // What the producer offers to carry is filtered the same way.
    let b5_rec = w.chain.block(&b5_id).unwrap().clone();
    let offered = vec![
        on_b2(copier),
        on_b2(&verifiers[3]),
        on_b2(&verifiers[0]),
        on_b2(&verifiers[2]),
    ];
    let carried = w
        .chain
        .votes_to_carry(&w.ledger.chain, &b5_rec, &l6, |_| offered.clone());
    assert_eq!(carried, vec![on_b2(&verifiers[2])]);
    assert!(w
        .chain
        .commits_to_carry(&w.ledger.chain, &b5_rec, &l6, |_| {
            vec![commit_b2(copier)]
        })
        .is_empty());

    // A third reveal in N+4 settles N there.
    let b6 = w.produce(l6, vec![], vec![], carried).unwrap();
    let b6_id = w.chain.accept(&w.ledger.chain, b6).unwrap();
    assert_eq!(w.balance(&b6_id, escrow_account()), 0);
    let paid = user_before + u128::from(MAX_FEE) - w.balance(&b6_id, hash(&user).0);
    assert!(paid > 0 && paid < u128::from(MAX_FEE), "{paid}");
    assert_eq!(
        w.balance(&b6_id, hash(&node).0),
        node_before + paid * 9 / 10
    );
    let after: Vec<_> = [b3_id, b4_id, b5_id, b6_id]
        .iter()
        .map(|id| w.chain.block(id).unwrap().clone())
        .collect();
    let after: Vec<&_> = after.iter().collect();
    let (at, tally, votes) = w
        .chain
        .settled_on(&w.ledger.chain, &b2_rec, &after)
        .unwrap();
    assert_eq!((at, tally.is_final, votes.len()), (3, true, 3));
    assert_eq!(tally.outcomes, vec![Outcome::Accepted]);

    // Settled: a fourth vote is refused; the block carrying an inference then gets no
    // vote, and its window's last block refunds it.
    let l7 = w.win(b6_id, 200);
    let err = w.produce(l7, vec![], vec![], vec![rejection]).unwrap_err();
    assert!(err.to_string().contains("settled already"), "{err}");
    let b7 = w
        .produce(l7, vec![], vec![random_answer(&w, &user, &node, 1)], vec![])
        .unwrap();
    let b7_id = w.chain.accept(&w.ledger.chain, b7).unwrap();
    let mut tip = b7_id;
    for _ in 0..VOTE_WINDOW {
        assert_eq!(w.balance(&tip, escrow_account()), u128::from(MAX_FEE));
        let anchor = w.win(tip, 200);
        let b = w.produce(anchor, vec![], vec![], vec![]).unwrap();
        tip = w.chain.accept(&w.ledger.chain, b).unwrap();
    }
    assert_eq!(w.balance(&tip, escrow_account()), 0, "refunded");
    assert_eq!(
        w.balance(&tip, hash(&user).0),
        user_before + u128::from(MAX_FEE) - paid,
        "charged for the first inference only"
    );
    let late = Vote::new(&verifiers[0], Hash256(b7_id), vec![Verdict::Accept]);
    let anchor = w.win(tip, 200);
    let err = w.produce(anchor, vec![], vec![], vec![late]).unwrap_err();
    assert!(err.to_string().contains("not in the window"), "{err}");
}

/// Block N (one answer, [`one_answer_before_its_verifiers`]) through its fixed commit
/// phase, in which only two of its five verifiers commit (one in N+1, one in N+2): the
/// world, the verifiers, N's id and N+2's.
fn two_commitments_in_the_fixed_phase() -> (World, Vec<SecretKey>, [u8; 32], [u8; 32]) {
    let (mut w, verifiers, b2_id) = one_answer_before_its_verifiers();
    let mut tip = b2_id;
    for v in &verifiers[..2] {
        let anchor = w.win(tip, 200);
        let on_b2 = Vote::new(v, Hash256(b2_id), vec![Verdict::Accept]);
        let b = w
            .produce_committing(anchor, vec![VoteCommit::of(v, &on_b2)], vec![])
            .unwrap();
        tip = w.chain.accept(&w.ledger.chain, b).unwrap();
    }
    (w, verifiers, b2_id, tip)
}

/// The block at `anchor` carrying the first three verifiers' reveals on N settles N:
/// the escrow is empty and the serving node has more than `node_before`. Its id.
fn three_reveals_settle_paid(
    w: &mut World,
    anchor: Hash256,
    verifiers: &[SecretKey],
    n: [u8; 32],
    node_before: u128,
) -> [u8; 32] {
    let reveals: Vec<Vote> = verifiers[..3]
        .iter()
        .map(|v| Vote::new(v, Hash256(n), vec![Verdict::Accept]))
        .collect();
    let b = w.produce(anchor, vec![], vec![], reveals).unwrap();
    let id = w.chain.accept(&w.ledger.chain, b).unwrap();
    assert_eq!(w.balance(&id, escrow_account()), 0, "settled");
    assert!(
        w.balance(&id, hash(&key(3)).0) > node_before,
        "the node is paid for what it served"
    );
    id
}

/// Issue 19's burst: ledger blocks come close together (or block N is heavy to replay),
/// so that only two of N's five verifiers committed by the end of its fixed commit phase
/// (N's anchor + COMMIT_PHASE). Before, the commitments of the other three were past
/// the phase: N could never reach a quorum and its window refunded it, the network's work
/// served for free. Now the phase runs on while the branch carries fewer than a quorum of
/// commitments, up to COMMIT_PHASE_MAX: the late commitments are carried, the reveals
/// follow and N settles, paid. Reveals still wait for the phase's end (nobody sees a
/// verdict while a quorum has not committed), a commitment once a quorum is in is past
/// the phase (a copier gains nothing), also in a block built beside the tip on an older
/// parent whose branch carried fewer (the run of blocks the phase needs is broken
/// there), and past COMMIT_PHASE_MAX nothing more counts.
#[test]
fn a_commit_phase_short_of_a_quorum_runs_on_so_a_burst_of_ledger_blocks_refunds_nothing() {
    // The fixed phase: one commitment in N+1, one in N+2 (the other verifiers are
    // still replaying when the ledger blocks come).
    let (mut w, verifiers, b2_id, n2) = two_commitments_in_the_fixed_phase();
    let (user, node) = (key(2), key(3));
    let on_b2 = |v: &SecretKey| Vote::new(v, Hash256(b2_id), vec![Verdict::Accept]);
    let commit_b2 = |v: &SecretKey| VoteCommit::of(v, &on_b2(v));
    let node_before = w.balance(&b2_id, hash(&node).0);
    let tip = n2;
    let b2_rec = w.chain.block(&b2_id).unwrap().clone();
    let tip_rec = w.chain.block(&tip).unwrap().clone();
    assert!(
        !w.chain
            .commit_phase_over(&w.ledger.chain, &b2_rec, &tip_rec),
        "two of five committed: the phase runs on"
    );
    // Serving nodes meanwhile refuse new requests as busy: the verifiers are behind.
    assert!(w.chain.commits_missed(&w.ledger.chain, &tip_rec));

    // N+3, anchored past the fixed phase: no reveal yet, but the late commitments.
    let l5 = w.win(tip, 200);
    let err = w
        .produce(l5, vec![], vec![], vec![on_b2(&verifiers[0])])
        .unwrap_err();
    assert!(err.to_string().contains("commit phase"), "{err}");
    let late: Vec<VoteCommit> = verifiers[2..4].iter().map(commit_b2).collect();
    let b5 = w.produce_committing(l5, late, vec![]).unwrap();
    let b5_id = w.chain.accept(&w.ledger.chain, b5).unwrap();
    let b5_rec = w.chain.block(&b5_id).unwrap().clone();
    assert!(w.chain.commit_phase_over(&w.ledger.chain, &b2_rec, &b5_rec));
    assert!(!w.chain.commits_missed(&w.ledger.chain, &b5_rec));

    // A quorum committed and the verifiers reveal. A producer that wins the next tenure
    // with a commit naming N+2, whose branch carried only two commitments, builds beside
    // N+3: its block is not on an unbroken run from the fixed phase's end (nothing at
    // N's anchor + 3 below it) and cannot carry the copier's commitment.
    let beside = w.win(n2, 200);
    let err = w
        .produce_committing(beside, vec![commit_b2(&verifiers[4])], vec![])
        .unwrap_err();
    assert!(err.to_string().contains("past the commit phase"), "{err}");

    // On N+3's branch the fifth verifier, which would copy the reveals, is past the
    // phase too; N+4 carries three reveals and settles N, paid.
    let l6 = w.win(b5_id, 200);
    let err = w
        .produce_committing(l6, vec![commit_b2(&verifiers[4])], vec![])
        .unwrap_err();
    assert!(err.to_string().contains("past the commit phase"), "{err}");
    let b6_id = three_reveals_settle_paid(&mut w, l6, &verifiers, b2_id, node_before);

    // The phase's limit: a block whose verifiers commit nothing in time is past its
    // phase at COMMIT_PHASE_MAX, a commitment after that does not count, and serving
    // nodes see its commitments missed.
    let l7 = w.win(b6_id, 200);
    let b7 = w
        .produce(l7, vec![], vec![random_answer(&w, &user, &node, 1)], vec![])
        .unwrap();
    let b7_id = w.chain.accept(&w.ledger.chain, b7).unwrap();
    let b7_rec = w.chain.block(&b7_id).unwrap().clone();
    let mut tip = b7_id;
    for i in 0..COMMIT_PHASE_MAX {
        let tip_rec = w.chain.block(&tip).unwrap().clone();
        assert!(
            !w.chain
                .commit_phase_over(&w.ledger.chain, &b7_rec, &tip_rec),
            "{i} blocks after"
        );
        let anchor = w.win(tip, 200);
        let b = w.produce(anchor, vec![], vec![], vec![]).unwrap();
        tip = w.chain.accept(&w.ledger.chain, b).unwrap();
    }
    let tip_rec = w.chain.block(&tip).unwrap().clone();
    assert!(w
        .chain
        .commit_phase_over(&w.ledger.chain, &b7_rec, &tip_rec));
    assert!(w.chain.commits_missed(&w.ledger.chain, &tip_rec));
    let on_b7 = Vote::new(&verifiers[0], Hash256(b7_id), vec![Verdict::Accept]);
    let anchor = w.win(tip, 200);
    let err = w
        .produce_committing(anchor, vec![VoteCommit::of(&verifiers[0], &on_b7)], vec![])
        .unwrap_err();
    assert!(err.to_string().contains("past the commit phase"), "{err}");
}

/// `bench network`'s refunds at 1,000 requests: in a burst, a ledger block came 90 ms
/// after the one before and carried no commit (the producers' next commits were not out
/// yet), so it elected nobody and no block could be anchored there. That height broke
/// the run of blocks the phase needs past COMMIT_PHASE: the block after it could not
/// carry the late commitments, and N (927 inferences) was refunded, served for free. A
/// height whose ledger block carries no commit is now passed over (no branch can hold a
/// block there), in what consensus accepts and in when verifiers reveal; one that elected
/// a producer whose block the branch lacks still breaks the run (the copier's block
/// beside the tip, in the test above).
#[test]
fn a_ledger_block_that_elects_nobody_does_not_end_a_commit_phase_short_of_a_quorum() {
    commit_phase_runs_on_past(|w, _, _| w.ledger.mine(vec![]));
}

/// The same refund at 6,000 requests on a loaded machine, twice in one run (1,743
/// inferences served for free): the ledger block at N's anchor + 2 elected nobody, but it
/// carried a commit made on the ledger block before the last (a producer's bid, mined a
/// block late in the burst), and any commit op in it broke the run. A commit that does not
/// follow its block's parent can elect nobody on any reading (a fact of the ledger
/// alone), and is passed over like no commit at all.
#[test]
fn a_commit_mined_a_ledger_block_late_does_not_end_a_commit_phase_short_of_a_quorum() {
    commit_phase_runs_on_past(|w, l3, b3_id| {
        let before_l3 = w.ledger.chain.entry(&l3).unwrap().header.prev;
        let late = w.commit_on(before_l3, b3_id, 200);
        w.ledger.mine(vec![late])
    });
}

/// A commit-shaped transaction by anyone but the register's key (a fee is all it costs)
/// elects nobody either; counted as a commit, it would cut a phase short at will.
#[test]
fn a_commit_by_another_key_does_not_end_a_commit_phase_short_of_a_quorum() {
    commit_phase_runs_on_past(|w, l3, b3_id| {
        let other = key(99);
        let fund = w.ledger.tx(vec![TxOut::pay(units(50_000), hash(&other))]);
        let op = Op::Commit {
            register: w.register,
            parent: b3_id,
            seed: [0; 32],
            after: commit_after(&l3),
        };
        let forged = testkit::spend(
            &w.ledger.chain,
            &[(
                OutPoint::new(fund.txid(), 0),
                fund.outputs[0].clone(),
                other.clone(),
            )],
            vec![
                TxOut::data(units(1_000), op.encode()),
                TxOut::pay(units(48_000), hash(&other)),
            ],
        )
        .unwrap();
        w.ledger.mine(vec![fund, forged])
    });
}

/// N's fixed commit phase ends at a ledger block made by `elects_nobody` (given the
/// world, N+1's anchor and N+1): one commitment came in time, the others after, and the
/// phase must run on past that height to a quorum and a paid settlement.
fn commit_phase_runs_on_past(elects_nobody: impl FnOnce(&mut World, Hash256, [u8; 32]) -> Block) {
    let (mut w, verifiers, b2_id) = one_answer_before_its_verifiers();
    let on_b2 = |v: &SecretKey| Vote::new(v, Hash256(b2_id), vec![Verdict::Accept]);
    let commit_b2 = |v: &SecretKey| VoteCommit::of(v, &on_b2(v));
    let node_before = w.balance(&b2_id, hash(&key(3)).0);
    let b2_rec = w.chain.block(&b2_id).unwrap().clone();

    // N+1 at N's anchor + 1 carries one commitment; the ledger block at + 2 carries no
    // commit (nobody elected); N+2 at + 3, past the fixed phase, carries a second one
    // (refused before: the run was broken at + 2).
    let l3 = w.win(b2_id, 200);
    let b3 = w
        .produce_committing(l3, vec![commit_b2(&verifiers[0])], vec![])
        .unwrap();
    let b3_id = w.chain.accept(&w.ledger.chain, b3).unwrap();
    let nobody = elects_nobody(&mut w, l3, b3_id);
    let nobody = w.connect(&nobody);
    let record = w.chain.tracker().record(&nobody).unwrap();
    assert!(record.sortition.winner.is_none(), "it elects nobody");
    let l4 = w.win(b3_id, 200);
    let b4 = w
        .produce_committing(l4, vec![commit_b2(&verifiers[1])], vec![])
        .unwrap();
    let b4_id = w.chain.accept(&w.ledger.chain, b4).unwrap();
    // Two of five committed: the verifiers hold their reveals (before, the broken run
    // ended the phase here and they revealed with a copier free to commit).
    let b4_rec = w.chain.block(&b4_id).unwrap().clone();
    assert!(
        !w.chain.commit_phase_over(&w.ledger.chain, &b2_rec, &b4_rec),
        "the phase runs on past the height that elected nobody"
    );

    // N+3 at + 4 carries the late commitments, a quorum is in, and N+4's reveals settle
    // N, paid.
    let l5 = w.win(b4_id, 200);
    let late: Vec<VoteCommit> = verifiers[2..4].iter().map(commit_b2).collect();
    let b5 = w.produce_committing(l5, late, vec![]).unwrap();
    let b5_id = w.chain.accept(&w.ledger.chain, b5).unwrap();
    let b5_rec = w.chain.block(&b5_id).unwrap().clone();
    assert!(w.chain.commit_phase_over(&w.ledger.chain, &b2_rec, &b5_rec));
    let l6 = w.win(b5_id, 200);
    let err = w
        .produce_committing(l6, vec![commit_b2(&verifiers[4])], vec![])
        .unwrap_err();
    assert!(err.to_string().contains("past the commit phase"), "{err}");
    three_reveals_settle_paid(&mut w, l6, &verifiers, b2_id, node_before);
}

/// A node serves a forged answer and asks to withdraw in the block that carries it; the
/// withdrawal delay (one ledger block here) has passed by the next tenure, while the
/// answer's vote window is still open. Its withdrawal then fails (`u213`): the bond stays
/// until the window's last block, so the rejection that settles the answer a block later
/// slashes it. Before, the withdrawal took the whole bond back and the slash found no
/// registration: a node could forge and leave unpunished whenever its answers settled
/// later than its delay. Once the window is past, the rest of the bond comes back.
#[test]
fn a_node_keeps_its_bond_until_its_answers_settle() {
    let mut w = world_with(|c| c.genesis.withdraw_delay = 1);
    let (user, node) = (key(2), key(3));
    let verifiers: Vec<SecretKey> = (10..15).map(key).collect();
    let (_, b1_id) = stake_and_register(&mut w, &verifiers);
    w.mine_to_next_cycle();
    let registry = |w: &World, at: &[u8; 32]| w.registry_entry(at, &node);
    assert!(
        registry(&w, &b1_id).contains(&format!("(bond u{BOND})")),
        "{}",
        registry(&w, &b1_id)
    );

    // Tenure 2: the forgery, and the node's request to withdraw.
    let l2 = w.win(b1_id, 200);
    let leave = boot_call(&node, 1, "node-registry", "request-withdrawal", &[]);
    let b2 = w
        .produce(
            l2,
            vec![leave],
            vec![random_answer(&w, &user, &node, 0)],
            vec![],
        )
        .unwrap();
    let b2_id = w.chain.accept(&w.ledger.chain, b2).unwrap();
    let node_before = w.balance(&b2_id, hash(&node).0);

    // Tenure 3: past the delay, the node tries to take its bond back.
    let l3 = w.win(b2_id, 200);
    let withdraw = |nonce| boot_call(&node, nonce, "node-registry", "withdraw", &[]);
    let b3 = w.produce(l3, vec![withdraw(2)], vec![], vec![]).unwrap();
    let b3_id = w.chain.accept(&w.ledger.chain, b3).unwrap();
    assert_eq!(
        w.nonce(&b3_id, hash(&node).0),
        3,
        "the withdrawal is carried"
    );
    assert_eq!(
        w.balance(&b3_id, hash(&node).0),
        node_before,
        "no bond back"
    );

    // Tenure 4: three of five reject the answer grossly; the bond pays for it.
    let votes: Vec<Vote> = verifiers[..3]
        .iter()
        .map(|v| Vote::new(v, Hash256(b2_id), vec![Verdict::RejectGross]))
        .collect();
    let committed = w.commit_phase(b3_id, &verifiers, &votes, 200);
    let l4 = w.win(committed, 200);
    let b4 = w.produce(l4, vec![], vec![], votes).unwrap();
    let b4_id = w.chain.accept(&w.ledger.chain, b4).unwrap();
    let entry = registry(&w, &b4_id);
    assert!(
        entry.starts_with("(some") && !entry.contains("(slashed u0)"),
        "slashed: {entry}"
    );
    let bond_left: u128 = entry
        .split("(bond u")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{entry}"));
    assert!(bond_left < BOND, "{entry}");

    // Past the window of the answer's block, the rest of the bond comes back.
    let mut tip = b4_id;
    for _ in 0..VOTE_WINDOW {
        let anchor = w.win(tip, 200);
        let b = w.produce(anchor, vec![], vec![], vec![]).unwrap();
        tip = w.chain.accept(&w.ledger.chain, b).unwrap();
    }
    let l5 = w.win(tip, 200);
    let b5 = w.produce(l5, vec![withdraw(3)], vec![], vec![]).unwrap();
    let b5_id = w.chain.accept(&w.ledger.chain, b5).unwrap();
    assert_eq!(registry(&w, &b5_id), "none");
    assert_eq!(
        w.balance(&b5_id, hash(&node).0),
        node_before + bond_left,
        "{}",
        registry(&w, &b4_id)
    );
}
