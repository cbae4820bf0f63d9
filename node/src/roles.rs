//! What the node does on the inference layer for its operator, with its own key: moves
//! FAI there (a peg-in from the ledger), registers in the node registry with a bond and
//! a price (an inference node, `inference.produce`), and stakes (a verifier,
//! `inference.stake`).
//!
//! Checked at every ledger tip, right after the producer; each step is taken once its
//! state says it is needed and retried if it has not landed after a while:
//! - nothing to do once the registry lists the node (when producing), the stake is
//!   there (when staking) and the registry holds the node's sealing key (either role:
//!   what is sealed to the node, `fai_primitives::seal`);
//! - otherwise, with the inference-layer balance to pay for what is missing, the VM
//!   transactions go into the VM pool (and to peers);
//! - otherwise a peg-in of `inference.peg_in` (at least what is missing) is sent on the
//!   ledger, once the node key has a spendable coin; it is credited six ledger blocks
//!   later.
//! - then, with a dev wallet configured (devnet, regtest), one ledger transaction that
//!   pays it and pegs in for it, while it has no ledger coin and an untouched
//!   inference-layer account.

use fai_clarity::Value;
use fai_inference_chain::chain::InferenceChain;
use fai_inference_chain::ops::Op;
use fai_inference_chain::vmtx::{value_bytes, Evidence, SignedVmTx, VmPayload};
use fai_ledger::mempool::Mempool;
use fai_ledger::{Chainstate, TxOut};
use fai_primitives::{Amount, Encode, Hash160, Hash256, SecretKey};
use tracing::{debug, info, warn};

use crate::result_pool::ResultPool;
use crate::vm_mempool::{VmMempool, MIN_FEE};

/// Ledger blocks to wait for a step to land before trying it again.
const RETRY_AFTER: u32 = 20;
/// Cycles a stake is locked for (the contract's maximum is 12).
const STAKE_CYCLES: u128 = 12;

/// What the node gives a dev wallet once its own roles are in place.
#[derive(Clone, Debug)]
pub struct Gift {
    pub to: Hash160,
    /// Paid to it on the ledger.
    pub ledger: Amount,
    /// Pegged in for it.
    pub inference: Amount,
}

/// The node's offer in the node registry.
pub struct Offer {
    pub models: Vec<[u8; 32]>,
    /// Per million output tokens.
    pub price: Amount,
    pub bond: Amount,
    /// Where wallets reach the node (its RPC address).
    pub address: String,
}

pub struct Roles {
    key: SecretKey,
    address: Hash160,
    chain_id: u32,
    offer: Option<Offer>,
    stake: Option<Amount>,
    peg_in: Amount,
    peg_in_sent_at: Option<u32>,
    vm_sent_at: Option<u32>,
    told_unfunded: bool,
    gift: Option<Gift>,
    gift_sent_at: Option<u32>,
    /// Ledger transactions and VM transactions made, to gossip.
    ledger_out: Vec<Vec<u8>>,
    vm_out: Vec<Vec<u8>>,
    /// Tenures (ledger anchors) this node reported an equivocation of, newest last.
    reported: std::collections::VecDeque<Hash256>,
}

/// How many reported tenures [`Roles`] remembers.
const MAX_REPORTED: usize = 64;

/// The transactions made at one tip, to gossip.
#[derive(Default)]
pub struct Made {
    pub ledger: Vec<Vec<u8>>,
    pub vm: Vec<Vec<u8>>,
}

impl Roles {
    pub fn new(
        key: SecretKey,
        chain_id: u32,
        offer: Option<Offer>,
        stake: Option<Amount>,
        peg_in: Amount,
    ) -> Self {
        Roles {
            address: key.public_key().hash160(),
            key,
            chain_id,
            offer,
            stake,
            peg_in,
            peg_in_sent_at: None,
            vm_sent_at: None,
            told_unfunded: false,
            gift: None,
            gift_sent_at: None,
            ledger_out: Vec::new(),
            vm_out: Vec::new(),
            reported: std::collections::VecDeque::new(),
        }
    }

    /// Funds `gift.to` once the node's own roles are in place.
    pub fn with_gift(mut self, gift: Gift) -> Self {
        self.gift = Some(gift);
        self
    }

    /// The transactions made since the last call.
    pub fn take_made(&mut self) -> Made {
        Made {
            ledger: std::mem::take(&mut self.ledger_out),
            vm: std::mem::take(&mut self.vm_out),
        }
    }

    /// Reports `evidence` that a producer signed two blocks for one tenure: a VM
    /// transaction into the pool (and to peers) that burns the producer's node bond once
    /// carried, unless this node reported that tenure already, the registry recorded it,
    /// or the node cannot pay the fee.
    pub fn report_equivocation(
        &mut self,
        evidence: Evidence,
        chain: &InferenceChain,
        ledger: &Chainstate,
        vm_pool: &mut VmMempool,
        results: &ResultPool,
    ) {
        let Ok((producer, anchor)) = evidence.equivocation() else {
            return;
        };
        if self.reported.contains(&anchor) {
            return;
        }
        let tip = chain.tip(ledger).exec_id;
        let recorded = chain.vm().call_read_only(
            &tip,
            ledger,
            self.address.0,
            [0; 20],
            "node-registry",
            "equivocation",
            &[
                chain.vm().principal(producer.0).into(),
                Value::buff_from(anchor.0.to_vec()).unwrap_or(Value::none()),
            ],
        );
        if matches!(recorded, Ok((Value::Optional(ref o), _)) if o.data.is_some()) {
            return;
        }
        let Ok((balance, nonce)) = chain.vm().account(&tip, ledger, self.address.0) else {
            return;
        };
        if balance < u128::from(MIN_FEE) {
            debug!(target: "infer_node::roles", %anchor, "cannot pay to report an equivocation");
            return;
        }
        let next = vm_pool.next_nonce(self.address.0, nonce);
        let fee = Amount::from_units(MIN_FEE).unwrap_or(Amount::ZERO);
        let payload = VmPayload::Evidence(Box::new(evidence));
        let tx = SignedVmTx::new(&self.key, next, self.chain_id, fee, payload);
        let bytes = tx.to_bytes();
        match vm_pool.accept(tx, self.chain_id, chain, ledger, results) {
            Ok(txid) => {
                warn!(target: "infer_node::roles", %txid, %anchor, producer = %hex::encode(producer.0), "a producer signed two blocks for one tenure: evidence sent");
                self.vm_out.push(bytes);
                self.reported.push_back(anchor);
                if self.reported.len() > MAX_REPORTED {
                    self.reported.pop_front();
                }
            }
            Err(e) => {
                warn!(target: "infer_node::roles", %anchor, "evidence of an equivocation not sent: {e}")
            }
        }
    }

    fn read(
        &self,
        chain: &InferenceChain,
        ledger: &Chainstate,
        contract: &str,
        function: &str,
    ) -> Option<Value> {
        let me: Value = chain.vm().principal(self.address.0).into();
        crate::inference::read_boot(chain, ledger, contract, function, &[me])
    }

    fn is_none(v: Option<Value>) -> bool {
        matches!(v, Some(Value::Optional(o)) if o.data.is_none())
    }

    /// Takes the next step, if one is needed and not already under way.
    pub fn on_tip(
        &mut self,
        ledger: &Chainstate,
        chain: &InferenceChain,
        mempool: &mut Mempool,
        vm_pool: &mut VmMempool,
        results: &ResultPool,
    ) {
        let height = ledger.height();
        let need_register = self.offer.is_some()
            && Self::is_none(self.read(chain, ledger, "node-registry", "get-node"));
        let need_stake =
            self.stake.is_some() && Self::is_none(self.read(chain, ledger, "staking", "get-stake"));
        // Verifiers publish the key texts are sealed to them with, and inference nodes
        // the one requests are sealed to them with (one key, derived from the node key).
        let own_sealing = fai_primitives::seal::SealingSecret::derive(&self.key).public();
        let need_sealing_key = (self.offer.is_some() || self.stake.is_some())
            && chain.sealing_key(ledger, chain.tip(ledger), self.address) != Some(own_sealing);
        if !need_register && !need_stake && !need_sealing_key {
            self.give(ledger, chain, mempool);
            return;
        }
        let recent = |at: Option<u32>| at.is_some_and(|a| height < a.saturating_add(RETRY_AFTER));
        if recent(self.vm_sent_at) {
            return;
        }
        let tip = chain.tip(ledger).exec_id;
        let Ok((balance, nonce)) = chain.vm().account(&tip, ledger, self.address.0) else {
            return;
        };
        // Still waiting here (peers or producers may have missed them): sent again, not
        // replaced by new ones behind them.
        let waiting = vm_pool.waiting_run(self.address.0, nonce);
        if !waiting.is_empty() {
            debug!(target: "infer_node::roles", count = waiting.len(), "sending the waiting transactions again");
            self.vm_out.extend(waiting.iter().map(|tx| tx.to_bytes()));
            self.vm_sent_at = Some(height);
            return;
        }
        let mut cost = 0u128;
        let mut calls = Vec::new();
        if let (true, Some(offer)) = (need_register, &self.offer) {
            cost = cost.saturating_add(u128::from(offer.bond.units()));
            calls.push(("node-registry", "register", register_args(offer)));
        }
        if let (true, Some(stake)) = (need_stake, self.stake) {
            cost = cost.saturating_add(u128::from(stake.units()));
            calls.push((
                "staking",
                "stake",
                Some(vec![
                    Value::UInt(u128::from(stake.units())),
                    Value::UInt(STAKE_CYCLES),
                ]),
            ));
        }
        if need_sealing_key {
            calls.push((
                "node-registry",
                "set-sealing-key",
                Value::buff_from(own_sealing.0.to_vec())
                    .ok()
                    .map(|k| vec![k]),
            ));
        }
        let fees = u128::from(MIN_FEE).saturating_mul(calls.len() as u128);
        cost = cost.saturating_add(fees);
        if balance >= cost {
            let mut next = vm_pool.next_nonce(self.address.0, nonce);
            for (contract, function, args) in calls {
                let Some(args) = args else {
                    warn!(target: "infer_node::roles", "cannot build the {contract}.{function} call");
                    continue;
                };
                let payload = VmPayload::Call {
                    issuer: Hash160([0; 20]),
                    name: contract.into(),
                    function: function.into(),
                    args: args.iter().map(value_bytes).collect(),
                };
                let fee = Amount::from_units(MIN_FEE).unwrap_or(Amount::ZERO);
                let tx = SignedVmTx::new(&self.key, next, self.chain_id, fee, payload);
                let bytes = tx.to_bytes();
                match vm_pool.accept(tx, self.chain_id, chain, ledger, results) {
                    Ok(txid) => {
                        info!(target: "infer_node::roles", %txid, "{contract}.{function} sent");
                        self.vm_out.push(bytes);
                        next = next.saturating_add(1);
                    }
                    Err(e) => {
                        warn!(target: "infer_node::roles", "{contract}.{function} not sent: {e}")
                    }
                }
            }
            self.vm_sent_at = Some(height);
            return;
        }
        if recent(self.peg_in_sent_at) {
            return;
        }
        let missing = cost.saturating_sub(balance);
        let amount = u64::try_from(missing)
            .ok()
            .and_then(|m| Amount::from_units(m.max(self.peg_in.units())).ok())
            .unwrap_or(self.peg_in);
        let op = Op::PegIn {
            address: self.address,
        };
        let fee = Amount::from_units(10_000).unwrap_or(Amount::ZERO);
        match crate::producer::pay_from(
            ledger,
            mempool,
            &self.key,
            fee,
            vec![TxOut::data(amount, op.encode())],
        ) {
            Ok((txid, bytes)) => {
                info!(target: "infer_node::roles", %txid, %amount, "peg-in sent (credited on the inference layer six ledger blocks after it is mined)");
                self.ledger_out.push(bytes);
                self.peg_in_sent_at = Some(height);
            }
            Err(e) if !self.told_unfunded => {
                self.told_unfunded = true;
                info!(target: "infer_node::roles", "no peg-in yet ({e}); waiting for a spendable coin of the node key");
            }
            Err(e) => debug!(target: "infer_node::roles", "no peg-in: {e}"),
        }
    }
}

impl Roles {
    /// Sends the dev wallet its gift, unless it has been funded (then the gift is
    /// dropped) or one is under way.
    fn give(&mut self, ledger: &Chainstate, chain: &InferenceChain, mempool: &mut Mempool) {
        let Some(gift) = self.gift.clone() else {
            return;
        };
        let height = ledger.height();
        if self
            .gift_sent_at
            .is_some_and(|at| height < at.saturating_add(RETRY_AFTER))
        {
            return;
        }
        let tip = chain.tip(ledger).exec_id;
        let Ok((balance, nonce)) = chain.vm().account(&tip, ledger, gift.to.0) else {
            return;
        };
        let Ok(coins) = ledger.coins_of(&gift.to) else {
            return;
        };
        let has_coin = !coins.is_empty();
        if balance > 0 || nonce > 0 || has_coin {
            self.gift = None;
            return;
        }
        let mut outputs = Vec::new();
        if gift.ledger.units() > 0 {
            outputs.push(TxOut::pay(gift.ledger, gift.to));
        }
        if gift.inference.units() > 0 {
            let op = Op::PegIn { address: gift.to };
            outputs.push(TxOut::data(gift.inference, op.encode()));
        }
        if outputs.is_empty() {
            self.gift = None;
            return;
        }
        let fee = Amount::from_units(10_000).unwrap_or(Amount::ZERO);
        match crate::producer::pay_from(ledger, mempool, &self.key, fee, outputs) {
            Ok((txid, bytes)) => {
                info!(target: "infer_node::roles", %txid, ledger = %gift.ledger, inference = %gift.inference, "dev wallet funded (the inference part is credited six ledger blocks after it is mined)");
                self.ledger_out.push(bytes);
                self.gift_sent_at = Some(height);
            }
            Err(e) => debug!(target: "infer_node::roles", "dev wallet not funded yet: {e}"),
        }
    }
}

/// `node-registry.register` arguments: models, price, address, bond.
fn register_args(offer: &Offer) -> Option<Vec<Value>> {
    let models = offer
        .models
        .iter()
        .map(|m| Value::buff_from(m.to_vec()).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(vec![
        Value::list_from(models).ok()?,
        Value::UInt(u128::from(offer.price.units())),
        Value::string_ascii_from_bytes(offer.address.as_bytes().to_vec()).ok()?,
        Value::UInt(u128::from(offer.bond.units())),
    ])
}
