//! The network loop: one tokio task that owns the swarm and reacts to its events, to the
//! node's commands, and to the chain task's verdicts on what peers sent and its answers
//! to their requests, plus a one-second tick for bans, status polls and progress. What
//! needs the chain (checking a message, reading blocks for a peer) runs on the chain
//! task; the loop goes on meanwhile.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fai_primitives::{Hash256, Network};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, identity, kad, Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::behaviour::{self, Behaviour, BehaviourEvent, Limits};
use super::peers::{Offence, PeerBook};
use super::protocol::{
    NodeProof, Request, Response, Status, Topic, MAX_INFERENCE_BLOCKS_PER_RESPONSE,
};
use super::sync::Sync;
use super::validate::{self, Verdict, Work};
use super::{BanReport, Command, NetStatus, P2pHandle, PeerReport, PeersReport};
use crate::chain_task::ChainState;
use crate::config::P2pSection;
use crate::node::Node;

/// Gossip and sync work handed to the chain task and not yet checked, at most.
const WORK_QUEUE: usize = 512;
/// Peers' requests being read on the chain task, at most (beyond: refused as busy).
const MAX_ANSWERING: usize = 64;
/// How often idle nodes ask their peers for their status.
const STATUS_EVERY: Duration = Duration::from_secs(15);
/// The furthest below its tip a node asks for inference blocks after stalls.
const MAX_INFERENCE_REWIND: u32 = 32;
/// How often bootstrap peers that are not connected are dialled again.
const REDIAL_EVERY: Duration = Duration::from_secs(5);

/// A connected peer.
struct Peer {
    address: Multiaddr,
    inbound: bool,
    status: Option<Status>,
}

/// The running network: its handle and the loop's task.
pub struct Running {
    pub handle: P2pHandle,
    pub task: tokio::task::JoinHandle<Result<()>>,
}

/// Starts the network: binds the listen address, dials the bootstrap peers, and spawns
/// the loop (through `tasks`; it ends when the node's `shutdown` token is cancelled).
/// The node's chain task runs already.
pub fn start(
    runtime: &tokio::runtime::Runtime,
    tasks: &tokio_util::task::TaskTracker,
    node: Arc<Node>,
    network: Network,
    key: identity::Keypair,
    node_key: Option<&fai_primitives::SecretKey>,
    config: &P2pSection,
) -> Result<Running> {
    let _guard = runtime.enter();
    let mut swarm = behaviour::swarm(
        key,
        network,
        &Limits {
            max_peers: config.max_peers,
        },
    )?;
    let listen: Multiaddr = config.listen_address(network);
    swarm
        .listen_on(listen.clone())
        .with_context(|| format!("cannot listen on {listen} (p2p.listen)"))?;
    let mut bootstrap = Vec::new();
    for crate::config::PeerAddress { peer, address } in config.bootstrap.iter().cloned() {
        bootstrap.push((peer, address.clone()));
        swarm
            .behaviour_mut()
            .kad
            .add_address(&peer, address.clone());
        if let Err(e) = swarm.dial(address) {
            warn!(target: "infer_node::p2p", %peer, "cannot dial bootstrap peer: {e}");
        }
    }
    if !config.bootstrap.is_empty() {
        // Look ourselves up through the bootstrap peers: fills the routing table with the
        // peers near us, which are then dialled.
        let _ = swarm.behaviour_mut().kad.bootstrap();
    }

    let proof = node_key.map(|k| Box::new(NodeProof::sign(k, swarm.local_peer_id())));
    let streams = swarm.behaviour().stream.new_control();
    let status = Arc::new(NetStatus::default());
    if let Ok(mut id) = status.peer_id.lock() {
        *id = swarm.local_peer_id().to_string();
    }
    let (command_tx, command_rx) = mpsc::channel(1024);
    let (verdict_tx, verdict_rx) = mpsc::unbounded_channel();
    let (answer_tx, answer_rx) = mpsc::unbounded_channel();
    let genesis = node
        .chain
        .call_blocking(|s| s.ledger.hash_at(0))
        .context("the chain task is not running")?
        .context("the ledger has no genesis block")?;

    let topics = Topic::ALL
        .into_iter()
        .map(|t| (IdentTopic::new(t.topic(network)).hash(), t))
        .collect();
    let service = Service {
        swarm,
        node,
        network,
        status: status.clone(),
        book: PeerBook::new(
            Duration::from_secs(config.ban_seconds),
            config.requests_per_second,
        ),
        ban_time: Duration::from_secs(config.ban_seconds),
        peers: HashMap::new(),
        topics,
        verdicts: verdict_tx,
        answers: answer_tx,
        answering: Default::default(),
        genesis,
        sync: None,
        in_flight: HashMap::new(),
        last_status_poll: Instant::now(),
        last_sync_request: None,
        retry_at: None,
        inference_sync: None,
        inference_retry_at: None,
        inference_rewind: 0,
        proof,
        bootstrap,
        last_redial: Instant::now(),
    };
    let task = tasks.spawn_on(
        service.run(command_rx, verdict_rx, answer_rx),
        runtime.handle(),
    );
    Ok(Running {
        handle: P2pHandle::new(command_tx, status).with_streams(streams),
        task,
    })
}

/// What an outbound request was for.
enum Pending {
    Status,
    Sync,
    InferenceSync,
    /// The text of an inference block's inferences.
    Payloads(Hash256),
}

struct Service {
    swarm: Swarm<Behaviour>,
    node: Arc<Node>,
    network: Network,
    status: Arc<NetStatus>,
    book: PeerBook,
    ban_time: Duration,
    peers: HashMap<PeerId, Peer>,
    topics: HashMap<TopicHash, Topic>,
    /// Where the chain task sends its verdicts on what peers sent.
    verdicts: mpsc::UnboundedSender<Verdict>,
    /// Where the chain task sends its answers to peers' requests.
    answers: mpsc::UnboundedSender<(ResponseChannel<Response>, Response)>,
    /// Peers' requests being read on the chain task.
    answering: Arc<std::sync::atomic::AtomicUsize>,
    /// The ledger's genesis block (peers on another chain are dropped).
    genesis: Hash256,
    sync: Option<Sync>,
    in_flight: HashMap<OutboundRequestId, Pending>,
    last_status_poll: Instant,
    /// The sync request in flight, kept to ask again after a refusal.
    last_sync_request: Option<Request>,
    /// When to ask again (the peer refused: over its rate limit).
    retry_at: Option<Instant>,
    /// The peer inference blocks are being fetched from.
    inference_sync: Option<PeerId>,
    /// When to try the inference sync again (it stalled on a block whose ledger anchor
    /// had not arrived yet, or the peer refused).
    inference_retry_at: Option<Instant>,
    /// How far below our inference tip the next inference sync starts (doubles after a
    /// stall, back to zero once a sync goes through).
    inference_rewind: u32,
    /// This node's key behind its peer id, sent in its status.
    proof: Option<Box<NodeProof>>,
    /// The configured bootstrap peers, dialled again while not connected.
    bootstrap: Vec<(PeerId, Multiaddr)>,
    last_redial: Instant,
}

impl Service {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut verdicts: mpsc::UnboundedReceiver<Verdict>,
        mut answers: mpsc::UnboundedReceiver<(ResponseChannel<Response>, Response)>,
    ) -> Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let shutdown = self.node.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(command) = commands.recv() => self.on_command(command),
                Some(verdict) = verdicts.recv() => self.on_verdict(verdict)?,
                Some((channel, response)) = answers.recv() => {
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    /// Reads the chain state on the chain task and waits for the answer (sync
    /// bookkeeping: a few index lookups), ahead of the commands queued there (it waits
    /// for the one under way), letting the runtime move this worker's other tasks
    /// meanwhile.
    fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ChainState) -> R + Send + 'static,
    ) -> Option<R> {
        let chain = &self.node.chain;
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let answer = if multi_thread {
            tokio::task::block_in_place(|| chain.read_now(f))
        } else {
            chain.read_now(f)
        };
        answer.ok()
    }

    /// This node's status, from the chain task's last snapshot.
    fn our_status(&self) -> Status {
        let snapshot = self.node.snapshot();
        Status {
            genesis: self.genesis,
            height: snapshot.ledger_height,
            tip: snapshot.ledger_tip,
            chain_work: snapshot.ledger_work,
            inference_height: snapshot.inference_height,
            node: self.proof.clone(),
        }
    }

    fn request(&mut self, peer: PeerId, request: Request, pending: Pending) {
        if matches!(pending, Pending::Sync) {
            self.last_sync_request = Some(request.clone());
        }
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.in_flight.insert(id, pending);
    }

    fn punish(&mut self, peer: PeerId, offence: Offence, why: &str) {
        warn!(target: "infer_node::p2p", %peer, ?offence, "peer misbehaved: {why}");
        if self.book.punish(peer, offence, why, Instant::now()) {
            self.enforce_ban(peer, why);
        }
    }

    fn enforce_ban(&mut self, peer: PeerId, why: &str) {
        warn!(target: "infer_node::p2p", %peer, seconds = self.ban_time.as_secs(), "peer banned: {why}");
        let behaviour = self.swarm.behaviour_mut();
        behaviour.blocked.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        if self.sync.as_ref().is_some_and(|s| s.peer == peer) {
            self.end_sync("abandoned: the peer was banned");
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with_p2p(*self.swarm.local_peer_id());
                if let Ok(full) = full {
                    info!(target: "infer_node::p2p", "p2p listening on {full}");
                    if let Ok(mut listen) = self.status.listen.lock() {
                        listen.push(full.to_string());
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } if num_established.get() == 1 => {
                let address = endpoint.get_remote_address().clone();
                info!(target: "infer_node::p2p", peer = %peer_id, %address, "peer connected");
                self.peers.insert(
                    peer_id,
                    Peer {
                        address,
                        inbound: endpoint.is_listener(),
                        status: None,
                    },
                );
                self.status.peers.store(self.peers.len(), Ordering::Relaxed);
                self.request(peer_id, Request::Status, Pending::Status);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(target: "infer_node::p2p", peer = %peer_id, "peer disconnected");
                self.peers.remove(&peer_id);
                self.book.disconnected(&peer_id);
                if let Ok(mut nodes) = self.status.nodes.lock() {
                    nodes.retain(|_, p| *p != peer_id);
                }
                self.status.peers.store(self.peers.len(), Ordering::Relaxed);
                if self.sync.as_ref().is_some_and(|s| s.peer == peer_id) {
                    self.end_sync("abandoned: the peer disconnected");
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let serves_kad = info.protocols.iter().any(|p| {
                    p.as_ref()
                        .starts_with(&format!("/fai/{}/kad", self.network))
                });
                if serves_kad {
                    for address in info.listen_addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, address);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                let connected = self.swarm.is_connected(&peer);
                if !connected && !self.book.is_banned(&peer) {
                    let _ = self.swarm.dial(peer);
                }
            }
            BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            _ => {}
        }
    }

    /// Hands `work` to the chain task, counted in the status until it is checked;
    /// false when the chain task is behind (512 pieces in flight already).
    fn hand_over(&self, work: Work) -> bool {
        let before = self.status.validating.fetch_add(1, Ordering::SeqCst);
        let status = self.status.clone();
        let verdicts = self.verdicts.clone();
        // Votes go ahead of the queue: a producer waits for them.
        let urgent = matches!(
            work,
            Work::Gossip {
                topic: Topic::Vote,
                ..
            }
        );
        let check = move |s: &mut ChainState| {
            // Counted until this item is checked, however its check ends.
            let _checked = crate::chain_task::CountDown(&status.validating);
            let verdict = validate::check(s, work);
            // Sent once what the check made is out.
            move || {
                if let Some(verdict) = verdict {
                    let _ = verdicts.send(verdict);
                }
            }
        };
        let chain = &self.node.chain;
        let handed = before < WORK_QUEUE
            && if urgent {
                chain.run_then_urgent(check).is_ok()
            } else {
                chain.run_then(check).is_ok()
            };
        if !handed {
            self.status.validating.fetch_sub(1, Ordering::SeqCst);
        }
        handed
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let Some(&topic) = self.topics.get(&message.topic) else {
            return;
        };
        let work = Work::Gossip {
            id: id.clone(),
            source,
            topic,
            data: message.data,
        };
        if !self.hand_over(work) {
            // The chain task is behind: drop the message (it is not forwarded).
            let gossip = &mut self.swarm.behaviour_mut().gossip;
            gossip.report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
        }
    }

    fn on_sync_event(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(pending) = self.in_flight.remove(&request_id) {
                        self.on_response(peer, pending, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => match self.in_flight.remove(&request_id) {
                Some(Pending::Sync) if self.sync.as_ref().is_some_and(|s| s.peer == peer) => {
                    self.end_sync(&format!("abandoned: {error}"));
                }
                Some(Pending::InferenceSync) if self.inference_sync == Some(peer) => {
                    self.inference_sync = None;
                }
                _ => {}
            },
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(target: "infer_node::p2p", %peer, "inbound sync request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Answers a peer's sync request.
    fn serve(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        let response = if !self.book.allow_request(peer, Instant::now()) {
            self.punish(peer, Offence::TooManyRequests, "over the request rate");
            Response::Refused("too many requests".into())
        } else if matches!(request, Request::Status) {
            Response::Status(self.our_status())
        } else if self.answering.load(Ordering::SeqCst) >= MAX_ANSWERING {
            // Every peer within its rate can still outrun the chain task together.
            Response::Refused("busy".into())
        } else {
            // Read on the chain task; the answer comes back through `answers`.
            let answers = self.answers.clone();
            let answering = self.answering.clone();
            let status = self.our_status();
            answering.fetch_add(1, Ordering::SeqCst);
            let sent = self.node.chain.run_then(move |s| {
                let _answered = crate::chain_task::CountDown(&answering);
                let response = super::answer::answer(s, request, status);
                move || {
                    let _ = answers.send((channel, response));
                }
            });
            if sent.is_err() {
                self.answering.fetch_sub(1, Ordering::SeqCst);
                debug!(target: "infer_node::p2p", %peer, "the node is stopping: request not answered");
            }
            return;
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response);
    }

    /// Asks the peer whose inference chain is longest for the blocks we lack, once the
    /// ledger is caught up.
    fn maybe_sync_inference(&mut self) {
        if self.sync.is_some() || self.inference_sync.is_some() {
            return;
        }
        let ours = self.node.snapshot().inference_height;
        let best = self
            .peers
            .iter()
            .filter_map(|(id, p)| p.status.as_ref().map(|s| (*id, s.inference_height)))
            .filter(|(_, h)| *h > ours)
            .max_by_key(|(_, h)| *h);
        if let Some((peer, height)) = best {
            // After a stall, ask from further back: the peer's chain may fork from ours
            // below our tip (a ledger reorganisation moved the inference tip), and the
            // blocks we have are skipped.
            let from = ours
                .saturating_add(1)
                .saturating_sub(self.inference_rewind)
                .max(1);
            info!(target: "infer_node::sync", %peer, from, to = height, "syncing inference blocks");
            self.inference_sync = Some(peer);
            self.request(
                peer,
                Request::InferenceBlocks { from_height: from },
                Pending::InferenceSync,
            );
        }
    }

    fn on_response(&mut self, peer: PeerId, pending: Pending, response: Response) {
        match (pending, response) {
            (pending, Response::Refused(why)) => {
                debug!(target: "infer_node::p2p", %peer, "request refused: {why}");
                if matches!(pending, Pending::Sync)
                    && self.sync.as_ref().is_some_and(|s| s.peer == peer)
                {
                    // Over the peer's rate: ask again in a second.
                    self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                }
                if matches!(pending, Pending::InferenceSync) && self.inference_sync == Some(peer) {
                    self.inference_sync = None;
                    self.retry_inference_sync_in(Duration::from_secs(1));
                }
            }
            (Pending::Status, Response::Status(status)) => self.on_status(peer, status),
            (Pending::Payloads(block), Response::Payloads(list)) => {
                if !list.is_empty() {
                    // Dropped when the chain task is busy: the verifier then asks again,
                    // and abstains on what it cannot replay in time.
                    let _ = self.hand_over(Work::Payloads { peer, block, list });
                }
            }
            (Pending::InferenceSync, Response::InferenceBlocks(blocks)) => {
                if self.inference_sync != Some(peer) {
                    return;
                }
                if blocks.is_empty() {
                    self.inference_sync = None;
                    return;
                }
                if !self.hand_over(Work::SyncInferenceBlocks { peer, blocks }) {
                    self.inference_sync = None;
                }
            }
            (Pending::Sync, Response::LedgerHeaders(headers)) => {
                if self.sync.as_ref().is_none_or(|s| s.peer != peer) {
                    return;
                }
                let Some(mut sync) = self.sync.take() else {
                    return;
                };
                let Some((sync, next)) = self.read(move |s| {
                    let next = sync.on_headers(&s.ledger, headers);
                    (sync, next)
                }) else {
                    return;
                };
                self.sync = Some(sync);
                match next {
                    Ok(Some(request)) => self.request(peer, request, Pending::Sync),
                    Ok(None) => self.end_sync("done"),
                    Err((offence, why)) => self.punish(peer, offence, &why),
                }
            }
            (Pending::Sync, Response::LedgerBlocks(blocks)) => {
                let Some(sync) = self.sync.as_mut().filter(|s| s.peer == peer) else {
                    return;
                };
                match sync.on_blocks(blocks) {
                    Ok(blocks) => {
                        if !self.hand_over(Work::SyncBlocks { peer, blocks }) {
                            self.end_sync("paused: the chain task is busy");
                        }
                    }
                    Err((offence, why)) => self.punish(peer, offence, &why),
                }
            }
            _ => self.punish(peer, Offence::Malformed, "a response of the wrong kind"),
        }
    }

    fn on_status(&mut self, peer: PeerId, status: Status) {
        let ours = self.our_status();
        if status.genesis != ours.genesis {
            info!(target: "infer_node::p2p", %peer, "peer is on another chain (genesis {}); disconnecting", status.genesis);
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        if let Some(proof) = &status.node {
            if !proof.verify(&peer) {
                self.punish(peer, Offence::Malformed, "a node proof for another peer id");
                return;
            }
            if let Ok(mut nodes) = self.status.nodes.lock() {
                nodes.insert(proof.key.hash160(), peer);
            }
        }
        let best = self.status.best_peer_height.load(Ordering::Relaxed);
        self.status
            .best_peer_height
            .store(best.max(status.height), Ordering::Relaxed);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.status = Some(status);
        }
        self.maybe_sync();
        self.maybe_sync_inference();
    }

    /// Starts a catch-up with the peer that has the most work, if it has more than we do.
    fn maybe_sync(&mut self) {
        if self.sync.is_some() {
            return;
        }
        let ours = self.our_status().chain_work;
        let best = self
            .peers
            .iter()
            .filter_map(|(id, p)| p.status.as_ref().map(|s| (*id, s)))
            .filter(|(_, s)| s.chain_work > ours)
            .max_by_key(|(_, s)| s.chain_work)
            .map(|(id, s)| (id, s.height));
        let Some((peer, height)) = best else {
            return;
        };
        let Some((sync, request)) = self.read(move |s| Sync::begin(&s.ledger, peer, height)) else {
            return;
        };
        self.sync = Some(sync);
        self.status.syncing.store(true, Ordering::Relaxed);
        self.request(peer, request, Pending::Sync);
    }

    fn end_sync(&mut self, why: &str) {
        if let Some(sync) = self.sync.take() {
            let peer = sync.peer;
            let why = why.to_owned();
            let _ = self.node.chain.run(move |s| sync.finish(&s.ledger, &why));
            // The ledger has caught up with this peer: fetch the inference blocks it
            // has and we lack (its status still says how many), before the next round.
            self.maybe_sync_inference();
            // The peer's status is stale now; ask again (it may have grown meanwhile).
            if let Some(p) = self.peers.get_mut(&peer) {
                p.status = None;
            }
            if self.peers.contains_key(&peer) && !self.book.is_banned(&peer) {
                self.request(peer, Request::Status, Pending::Status);
            }
        }
        self.status.syncing.store(false, Ordering::Relaxed);
        self.maybe_sync();
    }

    fn on_verdict(&mut self, verdict: Verdict) -> Result<()> {
        match verdict {
            Verdict::Gossip {
                id,
                source,
                acceptance,
                offence,
                behind,
                wants_payloads,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&id, &source, acceptance);
                if let Some(block) = wants_payloads {
                    if self.peers.contains_key(&source) {
                        self.request(
                            source,
                            Request::Payloads { block },
                            Pending::Payloads(block),
                        );
                    }
                }
                if let Some((offence, why)) = offence {
                    self.punish(source, offence, &why);
                }
                if behind && self.sync.is_none() && self.peers.contains_key(&source) {
                    self.request(source, Request::Status, Pending::Status);
                }
            }
            Verdict::Punish {
                peer,
                offence: (offence, why),
            } => self.punish(peer, offence, &why),
            Verdict::SyncInferenceBlocks {
                peer,
                received,
                offence,
                stalled,
            } => {
                self.inference_sync = None;
                if let Some((offence, why)) = offence {
                    self.punish(peer, offence, &why);
                } else if stalled {
                    // A block's ledger anchor has not reached us yet (it will soon), or
                    // its parent is a block we lack below our tip: next time from further
                    // back.
                    self.inference_rewind = self
                        .inference_rewind
                        .saturating_mul(2)
                        .clamp(1, MAX_INFERENCE_REWIND);
                    self.retry_inference_sync_in(Duration::from_secs(2));
                } else {
                    self.inference_rewind = 0;
                    if received == MAX_INFERENCE_BLOCKS_PER_RESPONSE {
                        // A full batch: there may be more.
                        self.maybe_sync_inference();
                    }
                }
            }
            Verdict::SyncBlocks {
                peer,
                offence,
                fatal,
            } => {
                if let Some(e) = fatal {
                    anyhow::bail!(e);
                }
                if let Some((offence, why)) = offence {
                    self.punish(peer, offence, &why);
                    return Ok(());
                }
                let Some(mut sync) = self.sync.take_if(|s| s.peer == peer) else {
                    return Ok(());
                };
                let Some((sync, next)) = self.read(move |s| {
                    let next = sync.next_request(&s.ledger);
                    (sync, next)
                }) else {
                    return Ok(());
                };
                self.sync = Some(sync);
                match next {
                    Some(request) => self.request(peer, request, Pending::Sync),
                    None => self.end_sync("done"),
                }
            }
        }
        Ok(())
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data } => {
                let topic = IdentTopic::new(topic.topic(self.network));
                if let Err(e) = self.swarm.behaviour_mut().gossip.publish(topic, data) {
                    debug!(target: "infer_node::p2p", "not gossiped: {e}");
                }
            }
            Command::Peers(reply) => {
                let now = Instant::now();
                let report = PeersReport {
                    peers: self
                        .peers
                        .iter()
                        .map(|(id, p)| PeerReport {
                            peer_id: id.to_string(),
                            address: p.address.to_string(),
                            inbound: p.inbound,
                            score: self.book.score(id),
                            height: p.status.as_ref().map(|s| s.height),
                        })
                        .collect(),
                    bans: self
                        .book
                        .bans()
                        .map(|b| BanReport {
                            peer_id: b.peer.to_string(),
                            seconds_left: b.until.saturating_duration_since(now).as_secs(),
                            reason: b.reason.clone(),
                        })
                        .collect(),
                };
                let _ = reply.send(report);
            }
            Command::Ban { peer, time } => {
                self.book
                    .ban(peer, "banned by the operator".into(), time, Instant::now());
                let behaviour = self.swarm.behaviour_mut();
                behaviour.blocked.block_peer(peer);
                behaviour.kad.remove_peer(&peer);
            }
            Command::Unban(peer, reply) => {
                let had = self.book.unban(&peer);
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                let _ = reply.send(had);
            }
            Command::FetchPayloads { block, servers } => self.fetch_payloads(block, &servers),
        }
    }

    /// Asks the first connected peer among those that run `servers` for the text of
    /// `block`'s inferences, or another peer when none of them is connected (a node that
    /// verified or relayed the block may keep it): one answer per ask, which the asker
    /// paces.
    fn fetch_payloads(&mut self, block: Hash256, servers: &[fai_primitives::Hash160]) {
        let of_server = {
            let nodes = self.status.nodes.lock().ok();
            servers
                .iter()
                .take(fai_network::MAX_TEXT_SOURCES)
                .filter_map(|server| nodes.as_ref().and_then(|n| n.get(server).copied()))
                .find(|peer| self.peers.contains_key(peer))
        };
        let peer =
            of_server.or_else(|| self.peers.keys().find(|p| !self.book.is_banned(p)).copied());
        if let Some(peer) = peer {
            debug!(target: "infer_node::p2p", %block, %peer, "asking for a block's text again");
            self.request(peer, Request::Payloads { block }, Pending::Payloads(block));
        }
    }

    fn retry_inference_sync_in(&mut self, delay: Duration) {
        self.inference_retry_at = Some(Instant::now() + delay);
    }

    fn on_tick(&mut self) {
        self.book.forgive();
        if self.inference_retry_at.is_some_and(|t| t <= Instant::now()) {
            self.inference_retry_at = None;
            self.maybe_sync_inference();
        }
        if self.retry_at.is_some_and(|t| t <= Instant::now()) {
            self.retry_at = None;
            let peer = self.sync.as_ref().map(|s| s.peer);
            if let (Some(peer), Some(request)) = (peer, self.last_sync_request.clone()) {
                self.request(peer, request, Pending::Sync);
            }
        }
        for peer in self.book.expire(Instant::now()) {
            info!(target: "infer_node::p2p", %peer, "ban expired");
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        // A bootstrap peer that was down at start, or restarted since, is dialled again
        // (a node alone would otherwise wait for the DHT's next round).
        if self.last_redial.elapsed() >= REDIAL_EVERY {
            self.last_redial = Instant::now();
            for (peer, address) in &self.bootstrap {
                if !self.swarm.is_connected(peer) && !self.book.is_banned(peer) {
                    debug!(target: "infer_node::p2p", %peer, "dialling the bootstrap peer again");
                    let _ = self.swarm.dial(address.clone());
                }
            }
        }
        if self.sync.is_none() && self.last_status_poll.elapsed() >= STATUS_EVERY {
            self.last_status_poll = Instant::now();
            let peers: Vec<PeerId> = self.peers.keys().copied().collect();
            for peer in peers {
                self.request(peer, Request::Status, Pending::Status);
            }
        }
    }
}
