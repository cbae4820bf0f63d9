//! Audits of the verifiers (decision 0004): now and then an inference node plants a gross
//! forgery, committed to beforehand, and once its block has settled reveals it, so that
//! every verifier whose counted vote accepted it loses a tenth of its stake (half to this
//! node) and leaves the verifier sets. A verifier that accepts without replaying is
//! caught by the first audit in a block it votes on.
//!
//! One audit at a time, in stages, moved on each time the canonical inference tip moves:
//! 1. **Plant** (with a chance of 1 in `inference.audit_every` at each tip, so that
//!    nobody can tell when the next comes): a fresh sender key, a prompt and an answer of
//!    random tokens that the node signs as served; into the VM pool go a transfer that
//!    funds the sender for its max fee and `staking.commit-audit` of
//!    sha256d(salt ‖ txid ‖ this node's address).
//! 2. **Serve**, once both are in a canonical block (the commitment must come before the
//!    audited block): the text into the payload store, the inference into the result pool
//!    and out on the `result` topic, like any answer this node served.
//! 3. **Reveal**, once the block that carries it has passed its vote window: when the
//!    chain bears out offenders (`InferenceChain::audit_offenders`), `Evidence::Audit`
//!    from this node's key.
//!
//! What is left undone (the commitment or the inference never lands, the block leaves the
//! canonical branch for good) is dropped after a while and the next audit can come.
//! The audited inference itself settles as any rejected one: the node's bond pays three
//! times its fee, which is what its tokens cost at the node's own price.
//!
//! Known limits: the funding transfer links the audit's sender to this node on chain, and
//! an answer of random tokens can be told from a real one by looking at it; a verifier
//! that did that much work for every answer could skip replaying the rest. Both are
//! noted in docs/consensus.md.

use std::sync::Arc;

use fai_clarity::Value;
use fai_engine::LoadedModel;
use fai_inference_chain::canonical::CanonicalIndex;
use fai_inference_chain::chain::{InferenceChain, VOTE_WINDOW};
use fai_inference_chain::served::ServedInference;
use fai_inference_chain::types::{Inference, InferenceStub, Prompt, ResultReceipt, Sampling};
use fai_inference_chain::vmtx::{value_bytes, Evidence, SignedVmTx, VmPayload};
use fai_ledger::Chainstate;
use fai_primitives::{Amount, Encode, Hash160, Hash256, SecretKey, Signature};
use tracing::{debug, info, warn};

use crate::result_pool::ResultPool;
use crate::vm_mempool::{VmMempool, MIN_FEE};

/// Ledger blocks a stage may take before the audit is dropped.
const STAGE_LIMIT: u32 = 30;
/// Tokens in an audit's answer (its `max_tokens`: the answer claims no end of its own).
const ANSWER_TOKENS: u32 = 16;
/// Tokens in an audit's prompt.
const PROMPT_TOKENS: usize = 12;
/// Inference blocks an audit's transaction may wait to be carried (its expiry).
const EXPIRY_BLOCKS: u32 = 50;

/// Where one audit is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// The funding and the commitment are in the VM pool.
    Committing,
    /// The inference is in the result pool; looked for in the canonical blocks from
    /// inference height `from`.
    Served { from: u32 },
    /// Carried by canonical block `block` (at `height`), as its inference `index`.
    Carried {
        block: [u8; 32],
        height: u32,
        index: u32,
    },
}

struct Planted {
    salt: [u8; 32],
    served: ServedInference,
    /// The node key's nonce of the commitment transaction (the funding one is before it).
    commit_nonce: u64,
    stage: Stage,
    /// The ledger height at which the stage began.
    since: u32,
}

/// What the auditor sent since the last call, to gossip.
#[derive(Default)]
pub struct AuditMade {
    pub vm: Vec<Vec<u8>>,
    pub results: Vec<Vec<u8>>,
}

pub struct Auditor {
    key: SecretKey,
    address: Hash160,
    chain_id: u32,
    model: Arc<LoadedModel>,
    /// Per million output tokens: what sizes the audit's max fee.
    price: Amount,
    /// One chance in this many at each tip (0: never).
    every: u32,
    /// Audits planted so far (each one's secrets derive from it).
    planted: u64,
    current: Option<Planted>,
    made: AuditMade,
}

impl Auditor {
    /// Audits with `key` (the node key: it signs the answers and reveals) on `model`.
    pub fn new(
        key: SecretKey,
        chain_id: u32,
        model: Arc<LoadedModel>,
        price: Amount,
        every: u32,
    ) -> Self {
        Auditor {
            address: key.public_key().hash160(),
            key,
            chain_id,
            model,
            price,
            every,
            planted: 0,
            current: None,
            made: AuditMade::default(),
        }
    }

    /// What was made since the last call.
    pub fn take_made(&mut self) -> AuditMade {
        std::mem::take(&mut self.made)
    }

    /// Whether an audit is under way (its stage, for logs and tests).
    pub fn under_way(&self) -> bool {
        self.current.is_some()
    }

    /// Moves the audit under way on, or plants one. Run when the canonical inference tip
    /// moved; `heights` is the canonical branch by height.
    pub fn on_tip(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        heights: &CanonicalIndex,
        vm_pool: &mut VmMempool,
        results: &mut ResultPool,
    ) {
        if self.every == 0 {
            return;
        }
        let Some(mut planted) = self.current.take() else {
            self.maybe_plant(ledger, chain, vm_pool, results);
            return;
        };
        let height = ledger.height();
        if height > planted.since.saturating_add(STAGE_LIMIT) {
            debug!(target: "infer_node::auditor", stage = ?planted.stage, "audit dropped: a stage took too long");
            return;
        }
        let tip = chain.tip(ledger);
        let txid = planted.served.inference.stub.txid();
        match planted.stage.clone() {
            Stage::Committing => {
                let nonce = chain
                    .vm()
                    .account(&tip.exec_id, ledger, self.address.0)
                    .map_or(0, |(_, n)| n);
                if nonce > planted.commit_nonce {
                    self.serve(&planted.served, chain, ledger, results);
                    planted.stage = Stage::Served { from: tip.height };
                    planted.since = height;
                }
            }
            Stage::Served { from } => {
                if tip.height > planted.served.inference.stub.expiry {
                    debug!(target: "infer_node::auditor", %txid, "audit dropped: never carried");
                    return;
                }
                let span = tip.height.saturating_sub(from).saturating_add(1) as usize;
                let found = heights
                    .blocks_from(chain, from, span)
                    .into_iter()
                    .find_map(|b| {
                        let index = b.inferences.iter().position(|i| i.stub.txid() == txid)?;
                        Some((b.header.id().0, b.header.height, index))
                    });
                if let Some((block, at, index)) = found {
                    planted.stage = Stage::Carried {
                        block,
                        height: at,
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                    };
                    planted.since = height;
                }
            }
            Stage::Carried {
                block,
                height: at,
                index,
            } => {
                if heights.ids_from(at, 1) != [block] {
                    // Left the canonical branch: back in the pools, carried again later.
                    planted.stage = Stage::Served { from: at };
                } else if tip.height >= at.saturating_add(VOTE_WINDOW) {
                    self.reveal(&planted, chain, ledger, vm_pool, results, block, index);
                    return;
                }
            }
        }
        self.current = Some(planted);
    }

    /// A secret of this node's for the audit planted at `tip`: its signature over them,
    /// hashed (nobody else can compute it or tell it from chance).
    fn secret(&self, what: &[u8], tip: &[u8; 32], planted: u64) -> [u8; 32] {
        let digest = Hash256::sha256d_parts(&[b"fai-audit/v1", what, tip, &planted.to_le_bytes()]);
        Hash256::sha256d(&self.key.sign(&digest).0).0
    }

    fn maybe_plant(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        vm_pool: &mut VmMempool,
        results: &ResultPool,
    ) {
        let tip = chain.tip(ledger);
        let chance = self.secret(b"chance", &tip.id, self.planted);
        let draw = u64::from_le_bytes(chance[..8].try_into().unwrap_or_default());
        if draw % u64::from(self.every) != 0 {
            return;
        }
        // A registered node only: the receipt of an unregistered one is refused.
        let me: Value = chain.vm().principal(self.address.0).into();
        let registered =
            crate::inference::read_boot(chain, ledger, "node-registry", "get-node", &[me]);
        if !matches!(registered, Some(Value::Optional(ref o)) if o.data.is_some()) {
            return;
        }
        let Ok((balance, nonce)) = chain.vm().account(&tip.exec_id, ledger, self.address.0) else {
            return;
        };
        let seed = self.secret(b"seed", &tip.id, self.planted);
        self.planted = self.planted.saturating_add(1);
        let Some((served, salt)) = self.forgery(&seed, tip.height) else {
            return;
        };
        let max_fee = served.inference.stub.max_fee;
        let cost =
            u128::from(max_fee.units()).saturating_add(u128::from(MIN_FEE).saturating_mul(3));
        if balance < cost {
            debug!(target: "infer_node::auditor", "no audit: the node key cannot pay for one");
            return;
        }
        let txid = served.inference.stub.txid();
        let commitment = Evidence::audit_commitment(&salt, &txid, &self.address);
        let Ok(commitment) = Value::buff_from(commitment.0.to_vec()) else {
            return;
        };
        let sender = served.inference.stub.sender.hash160();
        let payloads = [
            VmPayload::Transfer {
                to: sender,
                amount: max_fee,
                memo: Vec::new(),
            },
            VmPayload::Call {
                issuer: Hash160([0; 20]),
                name: "staking".into(),
                function: "commit-audit".into(),
                args: vec![value_bytes(&commitment)],
            },
        ];
        let first = vm_pool.next_nonce(self.address.0, nonce);
        let fee = Amount::from_units(MIN_FEE).unwrap_or(Amount::ZERO);
        let mut next = first;
        for payload in payloads {
            let tx = SignedVmTx::new(&self.key, next, self.chain_id, fee, payload);
            let bytes = tx.to_bytes();
            if let Err(e) = vm_pool.accept(tx, self.chain_id, chain, ledger, results) {
                warn!(target: "infer_node::auditor", "audit not planted: {e}");
                return;
            }
            self.made.vm.push(bytes);
            next = next.saturating_add(1);
        }
        info!(target: "infer_node::auditor", %txid, "audit planted: its commitment is on the way");
        self.current = Some(Planted {
            salt,
            served,
            commit_nonce: next.saturating_sub(1),
            stage: Stage::Committing,
            since: ledger.height(),
        });
    }

    /// The forged answer of an audit (random tokens, signed by this node as served), from
    /// a fresh sender, and the audit's salt; none when the seed makes no valid key.
    fn forgery(&self, seed: &[u8; 32], tip_height: u32) -> Option<(ServedInference, [u8; 32])> {
        let part = |what: &[u8]| Hash256::sha256d_parts(&[what, seed]).0;
        let salt = part(b"salt");
        let sender = SecretKey::from_bytes(&part(b"sender")).ok()?;
        let vocab = u32::try_from(self.model.tokenizer.vocab_size())
            .ok()?
            .max(1);
        let tokens_from = |what: &[u8], n: usize| -> Vec<u32> {
            (0..n)
                .map(|i| {
                    let h = Hash256::sha256d_parts(&[what, seed, &(i as u64).to_le_bytes()]).0;
                    u32::from_le_bytes([h[0], h[1], h[2], h[3]]) % vocab
                })
                .collect()
        };
        let prompt = Prompt {
            system: String::new(),
            context: Vec::new(),
            input: self
                .model
                .tokenizer
                .decode(&tokens_from(b"prompt", PROMPT_TOKENS)),
        };
        let tokens = tokens_from(b"answer", ANSWER_TOKENS as usize);
        let output = self.model.tokenizer.decode(&tokens);
        // What its tokens cost at this node's price, as a buyer would offer.
        let per_million = u128::from(self.price.units());
        let fee = per_million
            .saturating_mul(u128::from(ANSWER_TOKENS))
            .div_ceil(1_000_000)
            .max(1);
        let max_fee = Amount::from_units(u64::try_from(fee).ok()?).ok()?;
        let mut stub = InferenceStub {
            sender: sender.public_key(),
            nonce: 0,
            chain_id: self.chain_id,
            model: self.model.id.0,
            prompt_hash: prompt.hash(),
            sampling: Sampling {
                max_tokens: ANSWER_TOKENS,
                temperature_milli: 0,
                top_p_milli: 1000,
                top_k: 0,
                seed: u64::from_le_bytes(part(b"seed")[..8].try_into().ok()?),
                stop: Vec::new(),
            },
            max_fee,
            expiry: tip_height.saturating_add(EXPIRY_BLOCKS),
            signature: Signature([0; 64]),
        };
        stub.sign(&sender);
        let receipt = ResultReceipt::new_signed(stub.txid(), &output, &tokens, &self.key);
        let served = ServedInference {
            inference: Inference { stub, receipt },
            prompt,
            output,
            tokens,
        };
        served.check().ok()?;
        Some((served, salt))
    }

    fn serve(
        &mut self,
        served: &ServedInference,
        chain: &InferenceChain,
        ledger: &Chainstate,
        results: &mut ResultPool,
    ) {
        let txid = served.inference.stub.txid();
        if let Some(Err(e)) = chain
            .payloads()
            .map(|store| served.store_text(store, ledger.height()))
        {
            warn!(target: "infer_node::auditor", %txid, "cannot store the audit's text: {e}");
        }
        match results.add(served.inference.clone()) {
            Ok(_) => {
                debug!(target: "infer_node::auditor", %txid, "audit served");
                self.made.results.push(served.to_bytes());
            }
            Err(e) => warn!(target: "infer_node::auditor", %txid, "audit not pooled: {e}"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reveal(
        &mut self,
        planted: &Planted,
        chain: &InferenceChain,
        ledger: &Chainstate,
        vm_pool: &mut VmMempool,
        results: &ResultPool,
        block: [u8; 32],
        index: u32,
    ) {
        let tip = chain.tip(ledger);
        let offenders = chain.audit_offenders(
            ledger,
            tip,
            &Hash256(block),
            index,
            &planted.salt,
            &self.address,
        );
        let txid = planted.served.inference.stub.txid();
        if offenders.is_empty() {
            info!(target: "infer_node::auditor", %txid, "audit settled: no verifier accepted the forgery");
            return;
        }
        let Ok((_, nonce)) = chain.vm().account(&tip.exec_id, ledger, self.address.0) else {
            return;
        };
        let payload = VmPayload::Evidence(Box::new(Evidence::Audit {
            block: Hash256(block),
            index,
            salt: planted.salt,
        }));
        let fee = Amount::from_units(MIN_FEE).unwrap_or(Amount::ZERO);
        let next = vm_pool.next_nonce(self.address.0, nonce);
        let tx = SignedVmTx::new(&self.key, next, self.chain_id, fee, payload);
        let bytes = tx.to_bytes();
        let caught: Vec<String> = offenders.iter().map(|o| o.to_string()).collect();
        match vm_pool.accept(tx, self.chain_id, chain, ledger, results) {
            Ok(reveal) => {
                warn!(target: "infer_node::auditor", %txid, %reveal, offenders = %caught.join(", "), "audit caught verifiers that accepted a forgery: revealed");
                self.made.vm.push(bytes);
            }
            Err(e) => warn!(target: "infer_node::auditor", %txid, "audit reveal not sent: {e}"),
        }
    }
}
