//! [`ChainState`]: everything the chain task owns (the ledger chainstate and mempool,
//! the inference chain and its VM, the pools of VM transactions, served inferences and
//! votes, the producer's and the roles' state) and how it reacts when the chains move:
//! new ledger tips, inference blocks, votes, the producer's timers.
//!
//! Only the chain task's thread holds a `ChainState`; the rest of the node reaches it
//! through commands ([`super::ChainHandle`]). What a reaction wants gossiped or told goes
//! to the state's outbox and events, which the task sends out once the command is done.

use std::sync::Arc;

use fai_inference_chain::block::InferenceBlock;
use fai_inference_chain::chain::InferenceChain;
use fai_inference_chain::quorum::{Vote, VoteCommit, VoteMessage};
use fai_inference_chain::vmtx::Evidence;
use fai_ledger::chainstate::ChainEvent;
use fai_ledger::mempool::Mempool;
use fai_ledger::{Block, BlockOutcome, ChainError, Chainstate};
use fai_primitives::seal::Recipients;
use fai_primitives::{Amount, Encode, Hash256};
use tracing::{info, warn};

use super::NodeEvent;
use crate::clock::Clock;
use crate::producer::{Pools, Producer};
use crate::replay_cost::ReplayCosts;
use crate::result_pool::ResultPool;
use crate::roles::Roles;
use crate::verify_queue::VerifierHandle;
use crate::vm_mempool::VmMempool;
use crate::vote_pool::{Due, HeldVotes, VotePool};
use fai_network::Topic;

/// The most account nonces [`ChainState::pending_replay_us`] keeps between two tips.
const MAX_CACHED_NONCES: usize = 16_384;

/// Account nonces by sender, read at the canonical tip with this exec id.
type AccountNonces = ([u8; 32], std::collections::HashMap<[u8; 20], u64>);

/// The state the chain task owns.
pub struct ChainState {
    pub ledger: Chainstate,
    pub mempool: Mempool,
    /// The proof-of-inference chain; fed every ledger block connected.
    pub inference: Option<InferenceChain>,
    /// Signed VM transactions waiting for an inference block.
    pub vm_pool: VmMempool,
    /// Served inferences waiting for a block.
    pub results: ResultPool,
    /// Verifiers' commitments and votes waiting for the blocks that carry them.
    pub votes: VotePool,
    /// This node's votes, committed to and secret until their commit phase is over.
    pub held_votes: HeldVotes,
    /// The inference-node role, when `inference.produce` is on.
    pub producer: Option<Producer>,
    /// Peg-in, registry entry and stake of the node key, when a role needs them.
    pub roles: Option<Roles>,
    /// The verifiers' audits this inference node plants (`inference.audit_every`).
    pub auditor: Option<crate::auditor::Auditor>,
    /// The verifier thread, which votes on the blocks of the sets the node key is in.
    pub verifier: Option<VerifierHandle>,
    /// What inferences cost to replay, as the verifier measured it: what the blocks the
    /// producer builds and the requests the node serves keep to (`crate::replay_cost`).
    pub replay_costs: Arc<ReplayCosts>,
    /// The account nonces of the senders in the result pool, read at the canonical
    /// tip with this exec id (what [`ChainState::pending_replay_us`] reads once per tip).
    account_nonces: std::sync::Mutex<AccountNonces>,
    /// Where the node's waits and block times read the time.
    pub clock: Arc<dyn Clock>,
    /// Messages from the peer-to-peer network that came too early, tried again later.
    pub(crate) early: super::early::Early,
    /// What to gossip once the command is done.
    outbox: Vec<(Topic, Vec<u8>)>,
    /// What to tell subscribers once the command is done.
    events: Vec<NodeEvent>,
    /// A new tip (miners drop their work) or a new commit for the tip (miners rebuild
    /// their template with it), since the last command.
    pub(crate) tip_moved: bool,
    pub(crate) commit_added: bool,
    /// The canonical inference tip as of the last command.
    canonical: Option<[u8; 32]>,
    /// How many blocks the verifiers are behind on the canonical branch
    /// (`InferenceChain::votes_behind`), read when the canonical tip moves.
    votes_behind: u32,
    /// Whether a block of the canonical branch is past its commit phase without a quorum
    /// of commitments (`InferenceChain::commits_missed`), read with `votes_behind`.
    commits_missed: bool,
    /// The canonical inference branch by height, as of the last command (what peers'
    /// requests for blocks from a height are answered from).
    pub(crate) heights: fai_inference_chain::canonical::CanonicalIndex,
    /// Whom text served now is sealed to, as read at the canonical tip with this id.
    sealing: Option<([u8; 32], Recipients)>,
    /// Which nodes serve which models, as read at the tips (what gossiped results are
    /// checked against).
    pub(crate) serving: crate::inference::ServesMemo,
}

/// What a command left to send out.
pub(crate) struct Outgoing {
    pub gossip: Vec<(Topic, Vec<u8>)>,
    pub events: Vec<NodeEvent>,
    pub tip_moved: bool,
    pub commit_added: bool,
}

impl ChainState {
    /// The state over `ledger` with an empty mempool and pools; the inference chain and
    /// the roles are added by whoever starts the node.
    pub fn new(ledger: Chainstate, mempool: Mempool, clock: Arc<dyn Clock>) -> Self {
        ChainState {
            ledger,
            mempool,
            inference: None,
            vm_pool: VmMempool::default(),
            results: ResultPool::default(),
            votes: VotePool::default(),
            held_votes: HeldVotes::default(),
            producer: None,
            roles: None,
            auditor: None,
            verifier: None,
            replay_costs: Arc::default(),
            account_nonces: Default::default(),
            clock,
            early: Default::default(),
            outbox: Vec::new(),
            events: Vec::new(),
            tip_moved: false,
            commit_added: false,
            canonical: None,
            sealing: None,
            serving: Default::default(),
            votes_behind: 0,
            commits_missed: false,
            heights: Default::default(),
        }
    }

    /// Gossips `data` on `topic` once the command is done (when the network runs).
    pub fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        self.outbox.push((topic, data));
    }

    /// Tells subscribers once the command is done.
    pub fn tell(&mut self, event: NodeEvent) {
        self.events.push(event);
    }

    pub(crate) fn take_outgoing(&mut self) -> Outgoing {
        Outgoing {
            gossip: std::mem::take(&mut self.outbox),
            events: std::mem::take(&mut self.events),
            tip_moved: std::mem::take(&mut self.tip_moved),
            commit_added: std::mem::take(&mut self.commit_added),
        }
    }

    /// The snapshot readers see without asking the task.
    pub fn snapshot(&self) -> crate::snapshot::ChainSnapshot {
        let inference_tip = self.inference.as_ref().map(|c| c.tip(&self.ledger));
        crate::snapshot::ChainSnapshot {
            ledger_height: self.ledger.height(),
            ledger_tip: self.ledger.tip_hash(),
            ledger_work: self
                .ledger
                .tip()
                .map(|e| e.chain_work.to_big_endian())
                .unwrap_or([0; 32]),
            supply_units: self.ledger.supply().units(),
            inference_height: inference_tip.map_or(0, |t| t.height),
            inference_tip: inference_tip.map(|t| t.id),
            mempool_txs: self.mempool.len(),
            vm_pool_txs: self.vm_pool.len(),
            results_waiting: self.results.len(),
            producer_waiting: self.producer.as_ref().is_some_and(|p| p.is_waiting()),
            votes_behind: self.votes_behind,
        }
    }

    /// How many blocks the verifiers are behind on the canonical inference branch: the
    /// blocks built since the oldest one that carries inferences and has not settled.
    pub fn votes_behind(&self) -> u32 {
        self.votes_behind
    }

    /// Whether this node should refuse new inference requests: the verifiers are
    /// [`fai_inference_chain::chain::BUSY_BEHIND`] blocks behind or more, so what it
    /// served already needs the rest of the vote window to settle.
    pub fn verifiers_busy(&self) -> bool {
        self.votes_behind >= fai_inference_chain::chain::BUSY_BEHIND || self.commits_missed
    }

    /// The replay time, in microseconds, of the work waiting for the verifiers as this
    /// node sees it: the inferences served (by any node) that a block could carry now
    /// (per sender, the run from its account's nonce on the canonical tip), those this
    /// node is serving in such a run (at their max tokens), and the blocks its own
    /// verifier has not yet judged ([`crate::replay_cost`]).
    pub fn pending_replay_us(&self) -> u64 {
        let judging = self.verifier.as_ref().map_or(0, |v| v.backlog_work());
        let Some(chain) = self.inference.as_ref() else {
            return judging;
        };
        let tip_record = chain.tip(&self.ledger);
        let (tip, next_height) = (tip_record.exec_id, tip_record.height.saturating_add(1));
        let mut costs = self.replay_costs.at(self.ledger.params().target_spacing);
        let mut nonces = self
            .account_nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Read anew at each tip, and bounded while the tip stands still and senders
        // come and go.
        if nonces.0 != tip || nonces.1.len() > MAX_CACHED_NONCES {
            *nonces = (tip, Default::default());
        }
        let waiting = self.results.pending_work(
            next_height,
            |sender| {
                *nonces.1.entry(sender).or_insert_with(|| {
                    chain
                        .vm()
                        .account(&tip, &self.ledger, sender)
                        .map_or(0, |(_, n)| n)
                })
            },
            |model, tokens| costs.cost(model, tokens),
        );
        waiting.saturating_add(judging)
    }

    /// Whether this node should refuse new inference requests because the replay work
    /// waiting for the verifiers is [`crate::replay_cost::ADMIT_BLOCKS`] blocks' budget
    /// or more: what it served now would wait that long for a block, and push the
    /// blocks after past what their verifiers can judge within their commit phases.
    /// The waiting work in microseconds when it is too much, else None.
    pub fn replay_backlog_full(&self) -> Option<u64> {
        let pending = self.pending_replay_us();
        (!crate::replay_cost::admits(pending, self.ledger.params().target_spacing))
            .then_some(pending)
    }

    /// Whether a block of the canonical branch is past its commit phase without the
    /// commitments of a quorum of its verifiers: they did not judge it in time.
    pub fn commits_missed(&self) -> bool {
        self.commits_missed
    }

    /// The next free nonce of `sender` on the inference layer: past the account's nonce
    /// and every nonce a waiting VM transaction or inference holds.
    pub fn next_nonce(&self, sender: [u8; 20], account_nonce: u64) -> u64 {
        let mut next = account_nonce;
        while self.vm_pool.holds(sender, next) || self.results.holds(sender, next) {
            next = next.saturating_add(1);
        }
        next
    }

    /// Accepts a ledger block (found here or received) at the clock's time and reacts to
    /// the change of the active chain. `gossip`: the block is this node's own, gossiped
    /// before anything anchored in it (this node's tenure block).
    pub fn accept_ledger_block(
        &mut self,
        block: Block,
        gossip: bool,
    ) -> Result<BlockOutcome, ChainError> {
        let encoded = gossip.then(|| block.to_bytes());
        let hash = block.hash();
        let result = self.ledger.accept_block(block, self.clock.unix_now());
        self.after_ledger_block(hash, result, encoded)
    }

    /// Accepts a ledger block a peer gossiped, which nobody asked for: stored only if its
    /// chain has at least the active chain's work
    /// ([`Chainstate::accept_unrequested_block`]).
    pub fn accept_unrequested_ledger_block(
        &mut self,
        block: Block,
    ) -> Result<BlockOutcome, ChainError> {
        let hash = block.hash();
        let result = self
            .ledger
            .accept_unrequested_block(block, self.clock.unix_now());
        self.after_ledger_block(hash, result, None)
    }

    fn after_ledger_block(
        &mut self,
        hash: Hash256,
        result: Result<BlockOutcome, ChainError>,
        encoded: Option<Vec<u8>>,
    ) -> Result<BlockOutcome, ChainError> {
        if let (Ok(_), Some(bytes)) = (&result, encoded) {
            self.publish(Topic::LedgerBlock, bytes);
        }
        let events = self.ledger.take_events();
        self.on_chain_events(&events);
        if matches!(result, Ok(BlockOutcome::SideBranch)) {
            self.on_competing_tip(hash);
        }
        result
    }

    /// A ledger block stored beside the active chain: when it is the tip's sibling (on
    /// the same parent, found at the same time, and as likely to be kept), the inference
    /// chain reads its sortition, so that tenure blocks anchored there are accepted and
    /// relayed before the ledger settles which of the two wins, and the producer
    /// produces its tenure there if it won it. Others are left alone: a lower one has
    /// less work than the active chain, and reading a longer branch would read every
    /// block of it.
    fn on_competing_tip(&mut self, hash: Hash256) {
        let (Some(entry), Ok(tip)) = (self.ledger.entry(&hash), self.ledger.tip()) else {
            return;
        };
        if entry.header.prev != tip.header.prev {
            return;
        }
        let Some(inference) = self.inference.as_mut() else {
            return;
        };
        if let Err(e) = inference.read_ledger_block(&self.ledger, &hash) {
            warn!(target: "infer_node::inference", "cannot read ledger block {hash} beside the tip: {e}");
            return;
        }
        let Some(producer) = self.producer.as_mut() else {
            return;
        };
        let pools = Pools {
            vm: &mut self.vm_pool,
            results: &mut self.results,
            votes: &self.votes,
            costs: &self.replay_costs,
        };
        let Some(block) = producer.on_competing_tip(&self.ledger, inference, pools, hash) else {
            return;
        };
        self.after_inference_block(&block, true);
        self.publish(Topic::InferenceBlock, block.to_bytes());
    }

    /// Logs and applies changes of the active chain: the inference chain follows, the
    /// mempool is updated, the producer produces a won tenure and commits for the next
    /// block (into the mempool before the miner hears of the new tip), the roles act.
    fn on_chain_events(&mut self, events: &[ChainEvent]) {
        if events.is_empty() {
            return;
        }
        for event in events {
            match event {
                ChainEvent::Connected { height, block } => {
                    let reward = block
                        .transactions
                        .first()
                        .and_then(|cb| cb.output_value())
                        .unwrap_or(Amount::ZERO);
                    info!(
                        target: "infer_node::ledger",
                        height,
                        hash = %block.hash(),
                        reward = %reward,
                        txs = block.transactions.len(),
                        "block connected"
                    );
                    self.tell(NodeEvent::LedgerConnected {
                        height: *height,
                        hash: block.hash(),
                    });
                }
                ChainEvent::Disconnected { height, block } => {
                    // Nothing to undo in the inference chain: its sortition records are
                    // kept per ledger block, so the other branch's stay valid.
                    info!(target: "infer_node::ledger", height, hash = %block.hash(), "block disconnected");
                    self.tell(NodeEvent::LedgerDisconnected {
                        height: *height,
                        hash: block.hash(),
                    });
                }
            }
        }
        let connected = events
            .iter()
            .any(|e| matches!(e, ChainEvent::Connected { .. }));
        if let Some(inference) = self.inference.as_mut() {
            for event in events {
                if let ChainEvent::Connected { block, .. } = event {
                    if let Err(e) = inference.on_ledger_block(&self.ledger, &block.hash()) {
                        warn!(target: "infer_node::inference", "cannot follow ledger block {}: {e}", block.hash());
                    }
                }
            }
        }
        // A commit names the ledger tip it follows: one from a disconnected block is no
        // bid on any other branch, and back in the pool it would spend the coins (and
        // evict) the fresh commits of this node after it. It stays out.
        self.mempool
            .apply_chain_events_returning(events, &self.ledger, |tx| {
                !fai_inference_chain::ledger_ops::carries_commit(tx)
            });
        if connected {
            self.vm_pool.expire(self.ledger.height());
        }
        let mut produced = Vec::new();
        if connected {
            if let (Some(inference), Some(producer)) =
                (self.inference.as_mut(), self.producer.as_mut())
            {
                let pools = Pools {
                    vm: &mut self.vm_pool,
                    results: &mut self.results,
                    votes: &self.votes,
                    costs: &self.replay_costs,
                };
                produced = producer.on_tip(&self.ledger, inference, &mut self.mempool, pools);
                for tx in producer.take_outbox() {
                    self.outbox.push((Topic::LedgerTx, tx));
                }
            }
        }
        for block in &produced {
            self.after_inference_block(block, true);
        }
        if connected {
            if let (Some(inference), Some(roles)) = (self.inference.as_ref(), self.roles.as_mut()) {
                roles.on_tip(
                    &self.ledger,
                    inference,
                    &mut self.mempool,
                    &mut self.vm_pool,
                    &self.results,
                );
                gossip_made(&mut self.outbox, roles.take_made());
            }
        }
        for block in produced {
            self.publish(Topic::InferenceBlock, block.to_bytes());
        }
        self.tip_moved = true;
    }

    /// After an inference block was accepted (produced here when `ours`, gossiped or
    /// synced): a second block of its tenure is reported, and the verifier votes on it
    /// when the node key is in its verifier set. What it carries leaves the pools once it
    /// joins the canonical branch ([`ChainState::follow_canonical_tip`], after the
    /// command; a block beside the branch, such as an equivocating producer's second
    /// block, leaves them there).
    pub fn after_inference_block(&mut self, block: &InferenceBlock, ours: bool) {
        let Some(chain) = self.inference.as_ref() else {
            return;
        };
        let id = block.header.id();
        // A second block for the same tenure: its producer equivocated.
        let anchor = Hash256(block.header.ledger_anchor);
        let siblings = chain.tenure_blocks(&anchor);
        if siblings.len() >= 2 && siblings.contains(&id.0) {
            let headers: Vec<_> = siblings
                .iter()
                .take(2)
                .filter_map(|s| chain.block(s)?.block.as_ref().map(|b| b.header.clone()))
                .collect();
            if let ([a, b], Some(roles)) = (headers.as_slice(), self.roles.as_mut()) {
                if let Some(evidence) = Evidence::tenure_equivocation(a.clone(), b.clone()) {
                    roles.report_equivocation(
                        evidence,
                        chain,
                        &self.ledger,
                        &mut self.vm_pool,
                        &self.results,
                    );
                    gossip_made(&mut self.outbox, roles.take_made());
                }
            }
        }
        self.events.push(NodeEvent::InferenceBlockAccepted {
            id,
            height: block.header.height,
            inferences: block.inferences.len(),
            ours,
        });
        let Some(verifier) = self.verifier.as_ref() else {
            return;
        };
        let Some(record) = chain.block(&id.0) else {
            return;
        };
        if chain
            .verifier_set(&self.ledger, record, record.cycle)
            .contains(&verifier.address)
        {
            let mut costs = self.replay_costs.at(self.ledger.params().target_spacing);
            let work = block
                .inferences
                .iter()
                .map(|i| costs.cost(&i.stub.model, i.receipt.tokens))
                .fold(0u64, u64::saturating_add);
            verifier.offer(id, block.clone(), work);
        }
    }

    /// After an inference block from a peer was accepted: the producer's commit that
    /// waited for it goes out.
    pub fn after_peer_inference_block(&mut self) {
        let (Some(producer), Some(chain)) = (self.producer.as_mut(), self.inference.as_ref())
        else {
            return;
        };
        if producer.on_inference_block(&self.ledger, chain, &mut self.mempool) {
            let outbox = producer.take_outbox();
            self.send_commits(outbox);
        }
    }

    /// Whom a text served now is sealed to (`InferenceChain::sealing_recipients` at the
    /// canonical tip, read once per tip): the verifiers that will vote on it.
    pub fn sealing_recipients(&mut self) -> Recipients {
        let Some(chain) = self.inference.as_ref() else {
            return Vec::new();
        };
        let tip = chain.tip(&self.ledger);
        match &self.sealing {
            Some((id, list)) if *id == tip.id => list.clone(),
            _ => {
                let list = chain.sealing_recipients(&self.ledger, tip);
                self.sealing = Some((tip.id, list.clone()));
                list
            }
        }
    }

    /// A vote entered the pool.
    pub fn after_vote(&mut self, block: Hash256, verifier: fai_primitives::Hash160) {
        self.tell(NodeEvent::VoteRecorded { block, verifier });
    }

    /// This node's verifier voted: its commitment goes into the pool and out on the vote
    /// topic, and the vote itself waits, secret, until the canonical branch holds the
    /// end of the voted block's commit phase (at once if it does already).
    pub fn commit_own_vote(&mut self, vote: Vote, commit: VoteCommit) {
        let bytes = VoteMessage::Commit(commit.clone()).to_bytes();
        self.votes.add_commit(commit);
        self.publish(Topic::Vote, bytes);
        self.held_votes.hold(vote);
        self.reveal_due_votes();
    }

    /// Whether `block` is on the canonical branch past its commit phase: a vote on it
    /// could no longer count, and a verifier that has not judged it yet skips it.
    pub fn commit_phase_over(&self, block: &Hash256) -> bool {
        let Some(chain) = self.inference.as_ref() else {
            return false;
        };
        let Some(rec) = chain.block(&block.0) else {
            return false;
        };
        self.heights.holds(rec.height, &rec.id)
            && chain.commit_phase_over(&self.ledger, rec, chain.tip(&self.ledger))
    }

    /// Moves this node's audit of the verifiers on (or plants one), and gossips what that
    /// made.
    fn run_auditor(&mut self) {
        let (Some(auditor), Some(chain)) = (self.auditor.as_mut(), self.inference.as_ref()) else {
            return;
        };
        let pools = crate::auditor::AuditPools {
            vm: &mut self.vm_pool,
            results: &mut self.results,
        };
        auditor.on_tip(
            &self.ledger,
            chain,
            &self.heights,
            pools,
            self.clock.unix_now(),
        );
        let made = auditor.take_made();
        self.outbox
            .extend(made.vm.into_iter().map(|tx| (Topic::VmTx, tx)));
        self.outbox
            .extend(made.results.into_iter().map(|r| (Topic::Result, r)));
    }

    /// Reveals the held votes whose block's commit phase is over on the canonical branch
    /// (into the pool and out on the vote topic), and forgets those whose window closed.
    fn reveal_due_votes(&mut self) {
        if self.held_votes.is_empty() {
            return;
        }
        let Some(chain) = self.inference.as_ref() else {
            return;
        };
        let ledger = &self.ledger;
        let tip = chain.tip(ledger);
        let heights = &self.heights;
        let due = self.held_votes.take_due(|vote| {
            let Some(rec) = chain.block(&vote.block.0) else {
                return Due::Forget;
            };
            let window_end = rec
                .height
                .saturating_add(fai_inference_chain::chain::VOTE_WINDOW);
            let canonical = heights.holds(rec.height, &rec.id);
            if tip.height >= window_end {
                Due::Forget
            } else if canonical && chain.commit_phase_over(ledger, rec, tip) {
                Due::Reveal
            } else {
                Due::Hold
            }
        });
        for vote in due {
            let (block, verifier) = (vote.block, vote.verifier.hash160());
            let bytes = VoteMessage::Reveal(vote.clone()).to_bytes();
            if self.votes.add(vote) {
                self.after_vote(block, verifier);
            }
            self.publish(Topic::Vote, bytes);
        }
    }

    /// A commit waiting for a tenure block that waited as long as it may goes out. Run
    /// by the chain task between commands.
    pub fn producer_tick(&mut self) {
        let spacing = self.ledger.params().target_spacing;
        let (Some(producer), Some(chain)) = (self.producer.as_mut(), self.inference.as_ref())
        else {
            return;
        };
        if !producer.overdue(spacing) {
            return;
        }
        if producer.on_overdue(&self.ledger, chain, &mut self.mempool) {
            let outbox = producer.take_outbox();
            self.send_commits(outbox);
        }
    }

    /// After a command: the index of the canonical branch by height follows the tip
    /// (a walk as deep as what changed). When the canonical inference tip moved other
    /// than forward (a reorganisation of either layer left blocks behind), what those
    /// blocks carried goes back to the pools, unless the new branch carries it or spent
    /// its nonce, so that every inference a buyer was served is settled or refunded
    /// once, not lost with the branch.
    pub(crate) fn follow_canonical_tip(&mut self) {
        let Some(chain) = self.inference.as_ref() else {
            return;
        };
        let tip = chain.tip(&self.ledger);
        let (new, exec, next_height) = (tip.id, tip.exec_id, tip.height.saturating_add(1));
        if self.heights.tip() != Some(&new) {
            self.heights.follow(chain, &new);
        }
        if self.canonical == Some(new) {
            return;
        }
        self.votes_behind = chain.votes_behind(&self.ledger, tip);
        self.commits_missed = chain.commits_missed(&self.ledger, tip);
        let old = self.canonical.replace(new);
        self.reconcile_pools(old, new, exec);
        let expired = self.results.forget_expired(next_height);
        if expired > 0 {
            info!(target: "infer_node::inference", expired, "served answers expired before a block carried them: their nonces are free again");
        }
        self.reveal_due_votes();
        // After the pools follow the branch: an audit's transactions take the nonces that
        // what came back from a branch left behind holds.
        self.run_auditor();
    }

    /// The pools follow the canonical tip's move from `old` to `new` (whose state is
    /// `exec`): what the blocks that joined the branch carry leaves them, and what the
    /// blocks left behind carried comes back unless the new branch carries it or spent
    /// its nonce.
    fn reconcile_pools(&mut self, old: Option<[u8; 32]>, new: [u8; 32], exec: [u8; 32]) {
        let (Some(chain), Some(old)) = (self.inference.as_ref(), old) else {
            return;
        };
        let (left, right) = chain.fork_sides(&old, &new);
        // What the blocks that joined the branch carry leaves the pools.
        for block in &right {
            remove_carried(
                chain,
                &self.ledger,
                &mut self.vm_pool,
                &mut self.results,
                block,
            );
        }
        if left.is_empty() {
            return;
        }
        let carried: std::collections::HashSet<Hash256> = right
            .iter()
            .flat_map(|b| {
                let inferences = b.inferences.iter().map(|i| i.stub.txid());
                inferences.chain(b.vm_txs.iter().map(|t| t.txid()))
            })
            .collect();
        let nonce_spent = |sender: [u8; 20], nonce: u64| {
            chain
                .vm()
                .account(&exec, &self.ledger, sender)
                .map_or(true, |(_, next)| nonce < next)
        };
        let (mut inferences, mut vm_txs) = (0usize, 0usize);
        for block in &left {
            for tx in &block.vm_txs {
                if !carried.contains(&tx.txid())
                    && !nonce_spent(tx.sender.hash160().0, tx.nonce)
                    && self.vm_pool.restore(tx.clone())
                {
                    vm_txs = vm_txs.saturating_add(1);
                }
            }
            for inf in &block.inferences {
                if !carried.contains(&inf.stub.txid())
                    && !nonce_spent(inf.stub.sender.hash160().0, inf.stub.nonce)
                    && self.results.add(inf.clone()).is_ok()
                {
                    inferences = inferences.saturating_add(1);
                    // Out again with its text, so that any producer can carry it (the
                    // peers that never saw the branch never had it).
                    if let Some(served) = served_with_text(chain, inf) {
                        self.outbox.push((Topic::Result, served.to_bytes()));
                    }
                }
            }
        }
        info!(
            target: "infer_node::inference",
            left_behind = left.len(),
            inferences,
            vm_txs,
            "the canonical inference chain moved to another branch: what it left behind goes back to the pools"
        );
    }

    /// Gossips commits this node made, and has the miners rebuild their template.
    fn send_commits(&mut self, txs: Vec<Vec<u8>>) {
        if txs.is_empty() {
            return;
        }
        self.commit_added = true;
        for tx in txs {
            self.publish(Topic::LedgerTx, tx);
        }
    }
}

/// Queues what the roles made for gossip.
fn gossip_made(outbox: &mut Vec<(Topic, Vec<u8>)>, made: crate::roles::Made) {
    outbox.extend(made.ledger.into_iter().map(|tx| (Topic::LedgerTx, tx)));
    outbox.extend(made.vm.into_iter().map(|tx| (Topic::VmTx, tx)));
}

/// Takes what `block` carries out of the pools, and the inferences whose sender's nonce
/// the canonical tip has passed.
fn remove_carried(
    chain: &InferenceChain,
    ledger: &Chainstate,
    vm_pool: &mut VmMempool,
    results: &mut ResultPool,
    block: &InferenceBlock,
) {
    vm_pool.remove_included(block);
    let tip = chain.tip(ledger).exec_id;
    let mut senders = std::collections::HashSet::new();
    for inf in &block.inferences {
        results.remove(&inf.stub.txid());
        senders.insert(inf.stub.sender.hash160().0);
    }
    for sender in senders {
        if let Ok((_, nonce)) = chain.vm().account(&tip, ledger, sender) {
            results.prune_sender(sender, nonce);
        }
    }
}

/// A carried inference with the sealed text this node keeps of it, as the `result`
/// topic carries it; none once the text is reclaimed.
fn served_with_text(
    chain: &InferenceChain,
    inf: &fai_inference_chain::types::Inference,
) -> Option<fai_inference_chain::served::SealedServed> {
    let store = chain.payloads()?;
    store
        .sealed(&inf.stub.txid(), &inf.receipt.signing_digest())
        .ok()?
}
