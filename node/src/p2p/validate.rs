//! Checks what peers send against the chain and the pools, on the chain task (commands
//! of the network loop), so that block validation never stalls the network loop.
//!
//! The network loop hands over gossip messages and synced blocks ([`Work`]); the verdicts
//! come back ([`Verdict`]): what gossipsub should do with the message (forward, drop,
//! penalise) and which offence, if any, the sender committed.

use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::chain::BlockError;
use fai_inference_chain::quorum::VoteMessage;
use fai_inference_chain::vmtx::SignedVmTx;
use fai_ledger::block::Block;
use fai_ledger::mempool::MempoolError;
use fai_ledger::{BlockOutcome, ChainError, ConsensusError, Transaction};
use fai_primitives::codec::Decode;
use fai_primitives::Hash256;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::peers::Offence;
use super::protocol::Topic;
use crate::chain_task::ChainState;
use fai_inference_chain::served::SealedServed;

/// Something to check.
pub enum Work {
    Gossip {
        id: MessageId,
        source: PeerId,
        topic: Topic,
        data: Vec<u8>,
    },
    /// Blocks downloaded by sync, in chain order.
    SyncBlocks { peer: PeerId, blocks: Vec<Block> },
    /// Inference blocks downloaded by sync, in chain order.
    SyncInferenceBlocks {
        peer: PeerId,
        blocks: Vec<InferenceBlock>,
    },
    /// The text of inference block `block`'s inferences, fetched from a peer.
    Payloads {
        peer: PeerId,
        block: Hash256,
        list: Vec<SealedServed>,
    },
}

/// The outcome of one piece of [`Work`].
pub enum Verdict {
    Gossip {
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
        offence: Option<(Offence, String)>,
        /// The message was a block whose parent is unknown: the sender is ahead of us.
        /// (A transaction whose inputs are unknown waits here instead, without asking.)
        behind: bool,
        /// An inference block accepted whose inferences' text we lack: ask the sender.
        wants_payloads: Option<Hash256>,
    },
    /// Fetched text that does not belong to the block it was asked for.
    Punish {
        peer: PeerId,
        offence: (Offence, String),
    },
    SyncBlocks {
        peer: PeerId,
        /// The offence that ended the batch, if any.
        offence: Option<(Offence, String)>,
        /// A storage failure: the node cannot go on.
        fatal: Option<String>,
    },
    SyncInferenceBlocks {
        peer: PeerId,
        /// Blocks received (all were taken unless `offence` or `stalled`).
        received: usize,
        offence: Option<(Offence, String)>,
        /// A block could not be placed (unknown anchor or parent): stop for now.
        stalled: bool,
    },
}

/// Checks one piece of work against the chain state (on the chain task); the verdict for
/// the network loop, if it wants one.
pub fn check(s: &mut ChainState, item: Work) -> Option<Verdict> {
    let ledger_work = matches!(
        item,
        Work::SyncBlocks { .. }
            | Work::SyncInferenceBlocks { .. }
            | Work::Gossip {
                topic: Topic::LedgerBlock | Topic::InferenceBlock,
                ..
            }
    );
    let verdict = match item {
        Work::Gossip {
            id,
            source,
            topic,
            data,
        } => {
            let (acceptance, offence, behind) = match topic {
                Topic::LedgerBlock => gossip_block(s, &data),
                Topic::LedgerTx => {
                    let outcome = gossip_tx(s, &data);
                    if outcome.2 {
                        s.early.txs.push(data.clone());
                    }
                    outcome
                }
                Topic::VmTx => {
                    let outcome = gossip_vm_tx(s, &data);
                    if outcome.2 {
                        s.early.vm_txs.push(data.clone());
                    }
                    outcome
                }
                Topic::Result => gossip_result(s, &data),
                Topic::Vote => {
                    let outcome = gossip_vote(s, &data);
                    if outcome.2 {
                        s.early.votes.push(data.clone());
                    }
                    outcome
                }
                Topic::InferenceBlock => {
                    let outcome = gossip_inference_block(s, &data);
                    if outcome.2 {
                        s.early.blocks.push(data.clone());
                    }
                    outcome
                }
            };
            let wants_payloads = match (topic, &acceptance) {
                (Topic::InferenceBlock, MessageAcceptance::Accept) => missing_text(s, &data),
                _ => None,
            };
            Some(Verdict::Gossip {
                id,
                source,
                acceptance,
                offence,
                behind: behind && matches!(topic, Topic::LedgerBlock | Topic::InferenceBlock),
                wants_payloads,
            })
        }
        Work::Payloads { peer, block, list } => match store_payloads(s, &block, list) {
            Ok(()) => None,
            Err(why) => Some(Verdict::Punish {
                peer,
                offence: (Offence::InvalidTransaction, why),
            }),
        },
        Work::SyncBlocks { peer, blocks } => {
            let (offence, fatal) = sync_blocks(s, blocks);
            Some(Verdict::SyncBlocks {
                peer,
                offence,
                fatal,
            })
        }
        Work::SyncInferenceBlocks { peer, blocks } => {
            let received = blocks.len();
            let (offence, stalled) = sync_inference_blocks(s, blocks);
            Some(Verdict::SyncInferenceBlocks {
                peer,
                received,
                offence,
                stalled,
            })
        }
    };
    if ledger_work {
        retry_early(s);
    }
    verdict
}

/// Tries the messages that came too early again.
fn retry_early(s: &mut ChainState) {
    let mut early = std::mem::take(&mut s.early);
    early.blocks.retry(|data| gossip_inference_block(s, data).2);
    early.txs.retry(|data| gossip_tx(s, data).2);
    early.votes.retry(|data| gossip_vote(s, data).2);
    early.vm_txs.retry(|data| gossip_vm_tx(s, data).2);
    s.early = early;
}

type GossipOutcome = (MessageAcceptance, Option<(Offence, String)>, bool);

fn reject(offence: Offence, why: String) -> GossipOutcome {
    (MessageAcceptance::Reject, Some((offence, why)), false)
}

fn ignore() -> GossipOutcome {
    (MessageAcceptance::Ignore, None, false)
}

/// Whether a consensus error says the block is bad, rather than early for our clock.
fn blames_sender(e: &ConsensusError) -> bool {
    !matches!(e, ConsensusError::TimeTooNew { .. })
}

/// Accepts one block into the chain; the outcome for gossip.
fn accept_block(s: &mut ChainState, block: Block) -> Result<BlockOutcome, ChainError> {
    s.accept_ledger_block(block, false)
}

fn gossip_block(s: &mut ChainState, data: &[u8]) -> GossipOutcome {
    let block = match Block::from_bytes(data) {
        Ok(b) => b,
        Err(e) => return reject(Offence::Malformed, format!("undecodable block: {e}")),
    };
    let hash = block.hash();
    match s.accept_unrequested_ledger_block(block) {
        Ok(BlockOutcome::TipChanged) => {
            debug!(target: "infer_node::p2p", %hash, "gossiped block accepted");
            (MessageAcceptance::Accept, None, false)
        }
        // Stored but not on the best chain: not relayed (a side branch travels only when
        // the sync asks for it, once it has more work).
        Ok(BlockOutcome::SideBranch) | Ok(BlockOutcome::Duplicate) => ignore(),
        // Less work than our chain: not stored, not relayed; a late block is no offence.
        Err(ChainError::TooLittleWork(_)) => ignore(),
        Ok(BlockOutcome::Orphan) => (MessageAcceptance::Ignore, None, true),
        Err(ChainError::Consensus(e)) if !blames_sender(&e) => ignore(),
        Err(e @ (ChainError::Consensus(_) | ChainError::InvalidAncestor(_))) => {
            warn!(target: "infer_node::p2p", %hash, "invalid block from the network: {e}");
            reject(Offence::InvalidBlock, format!("block {hash}: {e}"))
        }
        Err(e) => {
            warn!(target: "infer_node::p2p", %hash, "cannot store a gossiped block: {e}");
            ignore()
        }
    }
}

fn gossip_tx(s: &mut ChainState, data: &[u8]) -> GossipOutcome {
    let tx = match Transaction::from_bytes(data) {
        Ok(t) => t,
        Err(e) => return reject(Offence::Malformed, format!("undecodable transaction: {e}")),
    };
    let commit = fai_inference_chain::ledger_ops::carries_commit(&tx);
    let result = s.mempool.accept(tx, &s.ledger);
    match result {
        Ok(txid) => {
            debug!(target: "infer_node::p2p", %txid, "gossiped transaction accepted");
            if commit {
                // A bid for the next sortition: miners rebuild their template with it.
                s.commit_added = true;
            }
            (MessageAcceptance::Accept, None, false)
        }
        // Known already, spent by another in our mempool, too cheap or a full mempool:
        // our state, not the sender's fault.
        Err(
            MempoolError::AlreadyKnown(_)
            | MempoolError::Conflict { .. }
            | MempoolError::FeeTooLow { .. }
            | MempoolError::Full(_),
        ) => ignore(),
        // Missing inputs can be a block we have not seen yet: the transaction waits.
        Err(MempoolError::Chain(ChainError::Consensus(ConsensusError::MissingInput {
            ..
        }))) => (MessageAcceptance::Ignore, None, true),
        Err(MempoolError::Chain(ChainError::Storage(e))) => {
            warn!(target: "infer_node::p2p", "mempool storage error: {e}");
            ignore()
        }
        Err(e) => reject(Offence::InvalidTransaction, format!("transaction: {e}")),
    }
}

fn gossip_vm_tx(s: &mut ChainState, data: &[u8]) -> GossipOutcome {
    use crate::vm_mempool::VmMempoolError as E;
    let tx = match SignedVmTx::from_bytes(data) {
        Ok(t) => t,
        Err(e) => {
            return reject(
                Offence::Malformed,
                format!("undecodable VM transaction: {e}"),
            )
        }
    };
    let Some(chain) = s.inference.as_ref() else {
        return ignore();
    };
    let chain_id = s.ledger.params().network.chain_id();
    let result = s.vm_pool.accept(tx, chain_id, chain, &s.ledger, &s.results);
    match result {
        Ok(_) => (MessageAcceptance::Accept, None, false),
        Err(e @ (E::BadSignature | E::WrongChain(_) | E::BadEvidence(_))) => {
            reject(Offence::InvalidTransaction, format!("VM transaction: {e}"))
        }
        // The sender may be credited by an inference block this node has not yet:
        // tried again after the next blocks.
        Err(E::CannotPay { .. }) => (MessageAcceptance::Ignore, None, true),
        Err(_) => ignore(),
    }
}

fn gossip_result(s: &mut ChainState, data: &[u8]) -> GossipOutcome {
    let served = match SealedServed::from_bytes(data) {
        Ok(s) => s,
        Err(e) => return reject(Offence::Malformed, format!("undecodable result: {e}")),
    };
    if let Err(why) = served.check() {
        return reject(Offence::InvalidTransaction, format!("result: {why}"));
    }
    let txid = served.inference.stub.txid();
    if s.results.contains(&txid) {
        return ignore();
    }
    {
        let ledger = &s.ledger;
        let Some(chain) = s.inference.as_ref() else {
            return ignore();
        };
        let stub = &served.inference.stub;
        if stub.chain_id != ledger.params().network.chain_id() {
            return reject(
                Offence::InvalidTransaction,
                "result for another chain".into(),
            );
        }
        let tip = chain.tip(ledger);
        // Expired for every block near the tip: the pool would only forget it again (a
        // late or replayed copy held its sender's nonce, here and wherever it went on).
        let next_height = tip.height.saturating_add(1);
        if crate::result_pool::expired_for_good(stub.expiry, next_height) {
            return ignore();
        }
        let tip = tip.exec_id;
        match chain.vm().account(&tip, ledger, stub.sender.hash160().0) {
            // Included already, or its nonce went to another transaction.
            Ok((_, nonce)) if stub.nonce < nonce => return ignore(),
            // A sender who cannot pay the max fee, or an inference that pays nothing: no
            // block should take it, so its text is not worth keeping.
            Ok((balance, _))
                if stub.max_fee.units() == 0 || balance < u128::from(stub.max_fee.units()) =>
            {
                return ignore()
            }
            Ok(_) => {}
            Err(_) => return ignore(),
        }
        // Only a registered node serving the model (a bond at stake) gets its results
        // stored and forwarded.
        let node = served.inference.receipt.node.hash160();
        let serves = s.serving.serves(chain, ledger, node, stub.model);
        if !serves {
            return ignore();
        }
    }
    // Sealed to too few of the verifiers this node would seal to: no quorum could judge
    // it. Not kept nor forwarded, so that such a result (a rival's, sealed to nobody)
    // never takes the place of an answer the verifiers can open.
    if !covers_a_majority(|id| served.is_for(id), &s.sealing_recipients()) {
        return ignore();
    }
    // The sealed text, for verifiers (kept until the block that settles it is six deep),
    // once the pool took the result, under its receipt: a rival's answer to the same
    // request never stands in for the one a block carries.
    if s.results.add(served.inference.clone()).is_err() {
        return ignore();
    }
    if let Some(store) = s.inference.as_ref().and_then(|c| c.payloads()) {
        if let Err(e) = served.store(store, s.ledger.height()) {
            warn!(target: "infer_node::p2p", "cannot store a result's text: {e}");
        }
    }
    (MessageAcceptance::Accept, None, false)
}

/// Whether a text sealed to those `is_for` names reaches more than half of `expected`
/// (whom this node would seal to now; true when it knows of none): a set member that
/// published no key, or a set that changed between the two nodes' tips, leaves it a
/// margin.
pub fn covers_a_majority(
    is_for: impl Fn(&fai_primitives::Hash160) -> bool,
    expected: &[(fai_primitives::Hash160, fai_primitives::seal::SealingKey)],
) -> bool {
    let covered = expected.iter().filter(|(id, _)| is_for(id)).count();
    expected.is_empty() || covered.saturating_mul(2) > expected.len()
}

/// The id of inference block `data` when we lack the text of one of its inferences.
fn missing_text(s: &ChainState, data: &[u8]) -> Option<Hash256> {
    let block = InferenceBlock::from_bytes(data).ok()?;
    let chain = s.inference.as_ref()?;
    let store = chain.payloads()?;
    block
        .inferences
        .iter()
        .any(|i| !store.has_answer(&i.stub.txid(), &i.receipt.signing_digest()))
        .then(|| block.header.id())
}

/// Stores fetched sealed text after checking that each piece belongs to an inference of
/// `block` and is signed by its serving node.
fn store_payloads(s: &ChainState, block: &Hash256, list: Vec<SealedServed>) -> Result<(), String> {
    let Some(chain) = s.inference.as_ref() else {
        return Ok(());
    };
    let (Some(carried), Some(store)) = (
        chain.block(&block.0).and_then(|r| r.block.as_ref()),
        chain.payloads(),
    ) else {
        return Ok(());
    };
    for served in list {
        if !carried.inferences.contains(&served.inference) {
            return Err("fetched text for an inference the block does not carry".into());
        }
        served
            .check()
            .map_err(|why| format!("fetched text: {why}"))?;
        if let Err(e) = served.store(store, s.ledger.height()) {
            warn!(target: "infer_node::p2p", "cannot store fetched text: {e}");
        }
    }
    Ok(())
}

/// A verifier's commitment or vote (decision 0004). Either is checked against the voted
/// block (signature, the block's verifier set; a vote's verdicts against its
/// inferences) and kept for the producers; one on a block not here yet waits for it.
fn gossip_vote(s: &mut ChainState, data: &[u8]) -> GossipOutcome {
    let message = match VoteMessage::from_bytes(data) {
        Ok(m) => m,
        Err(e) => return reject(Offence::Malformed, format!("undecodable vote: {e}")),
    };
    let (verifier, block, verdicts, signed) = match &message {
        VoteMessage::Commit(c) => (c.verifier, c.block, None, c.signature_valid()),
        VoteMessage::Reveal(v) => (
            v.verifier,
            v.block,
            Some(v.verdicts.len()),
            v.signature_valid(),
        ),
    };
    if !signed {
        return reject(Offence::InvalidTransaction, "vote: bad signature".into());
    }
    let who = verifier.hash160();
    let known = match &message {
        VoteMessage::Commit(_) => s.votes.has_committed(&block, &who),
        VoteMessage::Reveal(_) => s.votes.has_voted(&block, &who),
    };
    if known {
        return ignore();
    }
    {
        let ledger = &s.ledger;
        let Some(chain) = s.inference.as_ref() else {
            return ignore();
        };
        // A block we do not have (yet): not the sender's fault; the vote waits.
        let Some(record) = chain.block(&block.0) else {
            return (MessageAcceptance::Ignore, None, true);
        };
        // Too late to be carried on the canonical branch: not kept (a member of the set
        // could otherwise push the recent blocks' votes out of the pool with old ones).
        let tip = chain.tip(ledger);
        let late = match verdicts {
            None => chain.commit_phase_over(ledger, record, tip),
            Some(_) => {
                tip.height
                    >= record
                        .height
                        .saturating_add(fai_inference_chain::chain::VOTE_WINDOW)
            }
        };
        if late {
            return ignore();
        }
        // A vote before the commit phase is over here: neither kept nor relayed yet (a
        // copier that has not committed must not see it); it waits, like a vote on a
        // block not here yet, and is taken once this node's branch is past the phase.
        if verdicts.is_some() && !chain.commit_phase_over(ledger, record, tip) {
            return (MessageAcceptance::Ignore, None, true);
        }
        let inferences = record.block.as_ref().map_or(0, |b| b.inferences.len());
        if verdicts.is_some_and(|n| n != inferences) {
            return reject(
                Offence::InvalidTransaction,
                "vote: not one verdict per inference".into(),
            );
        }
        if !chain
            .verifier_set(ledger, record, record.cycle)
            .contains(&who)
        {
            return reject(
                Offence::InvalidTransaction,
                "vote: not from the block's verifier set".into(),
            );
        }
    }
    let added = match message {
        VoteMessage::Commit(c) => s.votes.add_commit(c),
        VoteMessage::Reveal(v) => {
            let added = s.votes.add(v);
            if added {
                s.after_vote(block, who);
            }
            added
        }
    };
    if added {
        (MessageAcceptance::Accept, None, false)
    } else {
        ignore()
    }
}

fn gossip_inference_block(s: &mut ChainState, data: &[u8]) -> GossipOutcome {
    let block = match InferenceBlock::from_bytes(data) {
        Ok(b) => b,
        Err(e) => {
            return reject(
                Offence::Malformed,
                format!("undecodable inference block: {e}"),
            )
        }
    };
    let Some(chain) = s.inference.as_mut() else {
        return ignore();
    };
    let id = block.header.id();
    if chain.block(&id.0).is_some() {
        return ignore();
    }
    // A block anchored in a ledger block or on a parent we do not have yet is not the
    // sender's fault: we are behind.
    let anchor = Hash256(block.header.ledger_anchor);
    if s.ledger.entry(&anchor).is_none() || chain.block(&block.header.parent).is_none() {
        return (MessageAcceptance::Ignore, None, true);
    }
    match chain.accept(&s.ledger, block.clone()) {
        Ok(_) => {
            s.after_inference_block(&block, false);
            s.after_peer_inference_block();
            info!(target: "infer_node::inference", id = %hex::encode(id.0), "inference block accepted");
            (MessageAcceptance::Accept, None, false)
        }
        Err(BlockError::Invalid(why)) => {
            warn!(target: "infer_node::p2p", "invalid inference block {}: {why}", hex::encode(id.0));
            reject(Offence::Malformed, format!("inference block: {why}"))
        }
        Err(BlockError::Unverifiable(why)) => {
            // Another branch's or a later view's block: not forwarded, nobody punished;
            // the inference sync fetches it if this node comes to that view.
            debug!(target: "infer_node::p2p", "inference block {} not verifiable here: {why}", hex::encode(id.0));
            ignore()
        }
        Err(e) => {
            warn!(target: "infer_node::p2p", "cannot check inference block {}: {e}", hex::encode(id.0));
            ignore()
        }
    }
}

/// Accepts synced inference blocks in order; the offence that stopped them, or whether
/// one could not be placed yet.
fn sync_inference_blocks(
    s: &mut ChainState,
    blocks: Vec<InferenceBlock>,
) -> (Option<(Offence, String)>, bool) {
    for block in blocks {
        let Some(chain) = s.inference.as_mut() else {
            return (None, true);
        };
        let id = block.header.id();
        if chain.block(&id.0).is_some() {
            continue;
        }
        let anchor = Hash256(block.header.ledger_anchor);
        if s.ledger.entry(&anchor).is_none() || chain.block(&block.header.parent).is_none() {
            return (None, true);
        }
        match chain.accept(&s.ledger, block.clone()) {
            Ok(_) => {
                s.after_inference_block(&block, false);
                s.after_peer_inference_block();
            }
            Err(BlockError::Invalid(why)) => {
                return (
                    Some((Offence::Malformed, format!("synced inference block: {why}"))),
                    false,
                )
            }
            Err(BlockError::Unverifiable(why)) => {
                debug!(target: "infer_node::p2p", "synced inference block not verifiable here yet: {why}");
                return (None, true);
            }
            Err(e) => {
                warn!(target: "infer_node::p2p", "cannot check a synced inference block: {e}");
                return (None, true);
            }
        }
    }
    (None, false)
}

fn sync_blocks(
    s: &mut ChainState,
    blocks: Vec<Block>,
) -> (Option<(Offence, String)>, Option<String>) {
    for block in blocks {
        let hash = block.hash();
        match accept_block(s, block) {
            Ok(_) => {}
            Err(ChainError::Consensus(e)) if !blames_sender(&e) => {
                info!(target: "infer_node::p2p", %hash, "synced block is ahead of our clock: {e}");
                return (None, None);
            }
            Err(e @ (ChainError::Consensus(_) | ChainError::InvalidAncestor(_))) => {
                return (
                    Some((Offence::InvalidBlock, format!("synced block {hash}: {e}"))),
                    None,
                )
            }
            Err(e) => return (None, Some(format!("cannot store synced block {hash}: {e}"))),
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use fai_primitives::seal::SealingKey;
    use fai_primitives::Hash160;

    use super::covers_a_majority;

    /// Attack: a registered rival gossips its own receipt for a request it saw, its text
    /// sealed to nobody (or to one verifier), before the honest answer arrives. Taken,
    /// it held the request's place in every pool and the verifiers could only abstain:
    /// refunded, the honest node unpaid, the rival unpunished. Such a result is not kept.
    #[test]
    fn a_result_sealed_to_too_few_verifiers_is_not_kept() {
        let set: Vec<(Hash160, SealingKey)> = (1..=5u8)
            .map(|i| (Hash160([i; 20]), SealingKey([i; 32])))
            .collect();
        let sealed_to = |ids: &'static [u8]| move |id: &Hash160| ids.contains(&id.0[0]);
        assert!(!covers_a_majority(sealed_to(&[]), &set), "to nobody");
        assert!(!covers_a_majority(sealed_to(&[1, 2]), &set), "two of five");
        assert!(
            covers_a_majority(sealed_to(&[1, 2, 3]), &set),
            "three of five"
        );
        assert!(covers_a_majority(sealed_to(&[1, 2, 3, 4, 5]), &set));
        assert!(covers_a_majority(sealed_to(&[]), &[]), "no keys known here");
    }
}
