//! Audits of the verifiers (decision 0004): now and then an inference node plants a gross
//! forgery, committed to beforehand, and once its block has settled reveals it, so that
//! every verifier whose counted vote accepted it loses a tenth of its stake (half to this
//! node) and leaves the verifier sets. A verifier that accepts without replaying is
//! caught by the first audit in a block it votes on.
//!
//! One audit at a time, in stages, moved on each time the canonical inference tip moves
//! (after the pools followed it):
//! 1. **Plant** (with a chance of 1 in `inference.audit_every` at each tip, so that
//!    nobody can tell when the next comes; never while the ledger tip is old, when the
//!    node is catching up): a fresh sender key, a prompt and an answer of random tokens
//!    that the node signs as served (`forgery.rs`); into the VM pool go a transfer that
//!    funds the sender for its max fee and `staking.commit-audit` of
//!    sha256d(salt ‖ txid ‖ this node's address).
//! 2. **Serve**, once both are in a canonical block (the commitment must come before the
//!    audited block): the text into the payload store, the inference into the result pool
//!    and out on the `result` topic, like any answer this node served.
//! 3. **Reveal**, once the block that carries it has passed its vote window: when the
//!    chain bears out offenders (`InferenceChain::audit_offenders`), `Evidence::Audit`
//!    from this node's key, sent again until a canonical block carries it.
//!
//! A stage that takes more than [`STAGE_LIMIT`] ledger blocks ends the audit (a plant
//! whose commitment never landed takes its transactions out of the VM pool), and the next
//! one can come. The audited inference settles as any rejected one: the node's bond pays
//! three times its fee, which is what its tokens cost at the node's own price, and the
//! max fee goes back to the fresh sender, where it stays (a few base units: sweeping it
//! back would cost more in fees).
//!
//! Known limits: the funding transfer links the audit's sender to this node on chain, and
//! an answer of random tokens can be told from a real one by looking at it; a verifier
//! that did that much work for every answer could skip replaying the rest. Both are
//! noted in docs/consensus.md.

mod forgery;

use std::sync::Arc;

use fai_clarity::Value;
use fai_engine::LoadedModel;
use fai_inference_chain::canonical::CanonicalIndex;
use fai_inference_chain::chain::{InferenceChain, VOTE_WINDOW};
use fai_inference_chain::served::ServedInference;
use fai_inference_chain::vmtx::{value_bytes, Evidence, SignedVmTx, VmPayload};
use fai_ledger::Chainstate;
use fai_primitives::{Amount, Encode, Hash160, Hash256, SecretKey};
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
/// Target spacings the ledger tip may be old for the node to plant: past it, the node is
/// catching up with the network.
const LIVE_SPACINGS: u64 = 20;

/// Where one audit is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// The funding and the commitment are in the VM pool.
    Committing,
    /// The inference is in the result pool; looked for in the canonical blocks from
    /// inference height `from` (where it was served, less a vote window: a branch taken
    /// after a reorganisation may be lower).
    Served { from: u32 },
    /// Carried by canonical block `block` (at `height`), as its inference `index`.
    Carried {
        block: [u8; 32],
        height: u32,
        index: u32,
    },
    /// The reveal (the node key's transaction at `nonce`) was sent; the stage ends when
    /// the canonical branch carries it, and sends it again when it left the VM pool.
    Revealing {
        block: [u8; 32],
        index: u32,
        nonce: u64,
    },
}

struct Planted {
    salt: [u8; 32],
    served: ServedInference,
    /// The funding and the commitment transactions.
    planted_txs: [Hash256; 2],
    /// The node key's nonce of the commitment transaction (the funding one is before it).
    commit_nonce: u64,
    stage: Stage,
    /// The ledger height at which the stage began.
    since: u32,
}

/// What became of an attempt to reveal an audit.
enum Reveal {
    /// Sent, as the node key's transaction at this nonce.
    Sent(u64),
    /// The chain bears out nobody to punish: nothing to send.
    NothingToPunish,
    /// Could not be sent now (the VM pool refused it): try again.
    NotSent,
}

/// What the auditor sent since the last call, to gossip.
#[derive(Default)]
pub struct AuditMade {
    pub vm: Vec<Vec<u8>>,
    pub results: Vec<Vec<u8>>,
}

/// The pools an audit goes into.
pub struct AuditPools<'a> {
    pub vm: &'a mut VmMempool,
    pub results: &'a mut ResultPool,
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

    /// Moves the audit under way on, or plants one. Run when the canonical inference tip
    /// moved, after the pools followed it; `heights` is the canonical branch by height,
    /// `unix_now` the node's clock.
    pub fn on_tip(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        heights: &CanonicalIndex,
        pools: AuditPools<'_>,
        unix_now: u64,
    ) {
        if self.every == 0 {
            return;
        }
        let Some(mut planted) = self.current.take() else {
            let tip_time = ledger.tip().map_or(0, |e| u64::from(e.header.time));
            let spacing = ledger.params().target_spacing;
            if unix_now.saturating_sub(tip_time) <= spacing.saturating_mul(LIVE_SPACINGS) {
                self.maybe_plant(ledger, chain, pools);
            }
            return;
        };
        let height = ledger.height();
        if height > planted.since.saturating_add(STAGE_LIMIT) {
            debug!(target: "infer_node::auditor", stage = ?planted.stage, "audit dropped: a stage took too long");
            match planted.stage {
                // Not mined after all: the funding of a sender that will never be used.
                Stage::Committing => {
                    for id in &planted.planted_txs {
                        pools.vm.remove(id);
                    }
                }
                // Never carried: not carried later either (its node would pay for an
                // audit nobody reveals).
                Stage::Served { .. } => {
                    pools.results.remove(&planted.served.inference.stub.txid());
                }
                Stage::Carried { .. } | Stage::Revealing { .. } => {}
            }
            return;
        }
        let tip = chain.tip(ledger);
        let nonce = chain
            .vm()
            .account(&tip.exec_id, ledger, self.address.0)
            .map_or(0, |(_, n)| n);
        let next = match planted.stage.clone() {
            Stage::Committing if nonce > planted.commit_nonce => {
                self.serve(&planted.served, chain, ledger, pools.results);
                Some(Stage::Served {
                    from: tip.height.saturating_sub(VOTE_WINDOW),
                })
            }
            Stage::Committing => None,
            Stage::Served { from } => {
                if tip.height > planted.served.inference.stub.expiry {
                    debug!(target: "infer_node::auditor", txid = %planted.served.inference.stub.txid(), "audit dropped: never carried");
                    return;
                }
                Self::find_carried(&planted, chain, heights, from, tip.height)
            }
            Stage::Carried {
                block,
                height: at,
                index,
            } => {
                if !heights.holds(at, &block) {
                    // Left the canonical branch: back in the pools, carried again later
                    // (maybe lower, on a shorter branch).
                    Some(Stage::Served {
                        from: at.saturating_sub(VOTE_WINDOW),
                    })
                } else if tip.height >= at.saturating_add(VOTE_WINDOW) {
                    match self.reveal(&planted, chain, ledger, pools, block, index) {
                        Reveal::Sent(sent) => Some(Stage::Revealing {
                            block,
                            index,
                            nonce: sent,
                        }),
                        Reveal::NothingToPunish => return,
                        // Tried again at the next tip, within the stage's limit.
                        Reveal::NotSent => None,
                    }
                } else {
                    None
                }
            }
            Stage::Revealing {
                block,
                index,
                nonce: sent,
            } => {
                if nonce > sent {
                    // Carried (by then it may find nothing to punish: only its fee).
                    return;
                }
                if pools.vm.next_nonce(self.address.0, nonce) > sent {
                    None
                } else {
                    // Out of the pool (a reorganisation, an eviction): sent again.
                    match self.reveal(&planted, chain, ledger, pools, block, index) {
                        Reveal::Sent(again) => Some(Stage::Revealing {
                            block,
                            index,
                            nonce: again,
                        }),
                        Reveal::NothingToPunish => return,
                        Reveal::NotSent => None,
                    }
                }
            }
        };
        if let Some(stage) = next {
            planted.stage = stage;
            planted.since = height;
        }
        self.current = Some(planted);
    }

    /// Where the canonical branch carries the audit, looked for from height `from` to
    /// `tip`: the next stage, if it does.
    fn find_carried(
        planted: &Planted,
        chain: &InferenceChain,
        heights: &CanonicalIndex,
        from: u32,
        tip: u32,
    ) -> Option<Stage> {
        let txid = planted.served.inference.stub.txid();
        let span = usize::try_from(tip.saturating_sub(from).saturating_add(1)).ok()?;
        heights
            .blocks_from(chain, from, span)
            .into_iter()
            .find_map(|b| {
                let index = b.inferences.iter().position(|i| i.stub.txid() == txid)?;
                Some(Stage::Carried {
                    block: b.header.id().0,
                    height: b.header.height,
                    index: u32::try_from(index).ok()?,
                })
            })
    }

    /// A secret of this node's for the audit planted at `tip`: its signature over them,
    /// hashed (nobody else can compute it or tell it from chance).
    fn secret(&self, what: &[u8], tip: &[u8; 32], planted: u64) -> [u8; 32] {
        let digest = Hash256::sha256d_parts(&[b"fai-audit/v1", what, tip, &planted.to_le_bytes()]);
        Hash256::sha256d(&self.key.sign(&digest).0).0
    }

    fn maybe_plant(&mut self, ledger: &Chainstate, chain: &InferenceChain, pools: AuditPools<'_>) {
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
        let payloads = [
            VmPayload::Transfer {
                to: served.inference.stub.sender.hash160(),
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
        let fee = Amount::from_units(MIN_FEE).unwrap_or(Amount::ZERO);
        let mut next = pools.vm.next_nonce(self.address.0, nonce);
        let mut planted_txs = [Hash256([0; 32]); 2];
        for (at, payload) in payloads.into_iter().enumerate() {
            let tx = SignedVmTx::new(&self.key, next, self.chain_id, fee, payload);
            let bytes = tx.to_bytes();
            match pools
                .vm
                .accept(tx, self.chain_id, chain, ledger, pools.results)
            {
                Ok(id) => {
                    if let Some(slot) = planted_txs.get_mut(at) {
                        *slot = id;
                    }
                }
                Err(e) => {
                    warn!(target: "infer_node::auditor", "audit not planted: {e}");
                    // The funding alone would only pay a sender nobody uses.
                    if let (true, Some(funding)) = (at > 0, planted_txs.first()) {
                        pools.vm.remove(funding);
                        self.made.vm.pop();
                    }
                    return;
                }
            }
            self.made.vm.push(bytes);
            next = next.saturating_add(1);
        }
        info!(target: "infer_node::auditor", %txid, "audit planted: its commitment is on the way");
        self.current = Some(Planted {
            salt,
            served,
            planted_txs,
            commit_nonce: next.saturating_sub(1),
            stage: Stage::Committing,
            since: ledger.height(),
        });
    }

    fn serve(
        &mut self,
        served: &ServedInference,
        chain: &InferenceChain,
        ledger: &Chainstate,
        results: &mut ResultPool,
    ) {
        let txid = served.inference.stub.txid();
        // Sealed like any served text, to the verifiers at the tip as it is now.
        let recipients = chain.sealing_recipients(ledger, chain.tip(ledger));
        let sealed = match served.seal(&self.key, &recipients) {
            Ok(sealed) => sealed,
            Err(e) => {
                warn!(target: "infer_node::auditor", %txid, "audit not sealed: {e}");
                return;
            }
        };
        if let Some(Err(e)) = chain
            .payloads()
            .map(|store| sealed.store(store, ledger.height()))
        {
            warn!(target: "infer_node::auditor", %txid, "cannot store the audit's text: {e}");
        }
        match results.add(served.inference.clone()) {
            Ok(_) => {
                debug!(target: "infer_node::auditor", %txid, "audit served");
                self.made.results.push(sealed.to_bytes());
            }
            Err(e) => warn!(target: "infer_node::auditor", %txid, "audit not pooled: {e}"),
        }
    }

    /// Sends the reveal of `planted` (carried as inference `index` of `block`) when the
    /// chain bears out someone to punish.
    fn reveal(
        &mut self,
        planted: &Planted,
        chain: &InferenceChain,
        ledger: &Chainstate,
        pools: AuditPools<'_>,
        block: [u8; 32],
        index: u32,
    ) -> Reveal {
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
            return Reveal::NothingToPunish;
        }
        let Ok((_, nonce)) = chain.vm().account(&tip.exec_id, ledger, self.address.0) else {
            return Reveal::NotSent;
        };
        let payload = VmPayload::Evidence(Box::new(Evidence::Audit {
            block: Hash256(block),
            index,
            salt: planted.salt,
        }));
        let fee = Amount::from_units(MIN_FEE).unwrap_or(Amount::ZERO);
        let next = pools.vm.next_nonce(self.address.0, nonce);
        let tx = SignedVmTx::new(&self.key, next, self.chain_id, fee, payload);
        let bytes = tx.to_bytes();
        let caught: Vec<String> = offenders.iter().map(|o| o.to_string()).collect();
        match pools
            .vm
            .accept(tx, self.chain_id, chain, ledger, pools.results)
        {
            Ok(reveal) => {
                warn!(target: "infer_node::auditor", %txid, %reveal, offenders = %caught.join(", "), "audit caught verifiers that accepted a forgery: revealed");
                self.made.vm.push(bytes);
                Reveal::Sent(next)
            }
            Err(e) => {
                warn!(target: "infer_node::auditor", %txid, "audit reveal not sent (tried again at the next tip): {e}");
                Reveal::NotSent
            }
        }
    }
}
