//! The libp2p behaviours the node runs and the swarm that carries them.

use std::time::Duration;

use anyhow::{Context, Result};
use fai_primitives::{Hash256, Network};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, kad, noise, ping,
    request_response, tcp, yamux, StreamProtocol, Swarm, SwarmBuilder,
};

use super::protocol::{sync_protocol, SyncCodec, Topic};

/// Everything the node speaks over a connection.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Banned peers: their connections are closed and refused.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossip: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Raw streams: relayed inference requests and their answers.
    pub stream: libp2p_stream::Behaviour,
}

/// Connection limits of a node.
pub struct Limits {
    pub max_peers: u32,
}

fn kad_protocol(network: Network) -> StreamProtocol {
    StreamProtocol::new(match network {
        Network::Mainnet => "/fai/mainnet/kad/1",
        Network::Testnet => "/fai/testnet/kad/1",
        Network::Devnet => "/fai/devnet/kad/1",
        Network::Regtest => "/fai/regtest/kad/1",
    })
}

/// Gossipsub's message id: a hash of the content, so the same block or transaction
/// published by two nodes is one message.
fn content_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let digest = Hash256::sha256d(&message.data);
    gossipsub::MessageId::from(digest.0.get(..20).unwrap_or(&digest.0).to_vec())
}

/// Builds the behaviours for `network`.
pub fn build(key: &identity::Keypair, network: Network, limits: &Limits) -> Result<Behaviour> {
    let peer_id = key.public().to_peer_id();

    let mut gossip_config = gossipsub::ConfigBuilder::default();
    gossip_config
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(content_id)
        .heartbeat_interval(Duration::from_millis(700))
        .max_transmit_size(Topic::InferenceBlock.max_bytes());
    for topic in Topic::ALL {
        gossip_config.max_transmit_size_for_topic(
            topic.max_bytes(),
            gossipsub::IdentTopic::new(topic.topic(network)).hash(),
        );
    }
    let gossip_config = gossip_config
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub configuration: {e}"))?;
    let mut gossip = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )
    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
    for topic in Topic::ALL {
        gossip
            .subscribe(&gossipsub::IdentTopic::new(topic.topic(network)))
            .context("gossipsub subscription")?;
    }

    let mut kad_config = kad::Config::new(kad_protocol(network));
    kad_config.set_query_timeout(Duration::from_secs(30));
    kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(120)));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Serve the DHT even without a confirmed public address (loopback devnets, LANs).
    kad.set_mode(Some(kad::Mode::Server));

    let max = limits.max_peers;
    let connection_limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(max))
        // Keep room for outbound connections: at most three quarters may be inbound.
        .with_max_established_incoming(Some(max.saturating_mul(3).div_ceil(4).max(1)))
        .with_max_pending_incoming(Some(16))
        .with_max_pending_outgoing(Some(16))
        .with_max_established_per_peer(Some(2));

    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(connection_limits),
        identify: identify::Behaviour::new(
            identify::Config::new(format!("/fai/{network}/1"), key.public())
                .with_agent_version(format!("infer-node/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        kad,
        gossip,
        sync: request_response::Behaviour::with_codec(
            SyncCodec,
            [(
                sync_protocol(network),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(32),
        ),
        stream: libp2p_stream::Behaviour::new(),
    })
}

/// A swarm over TCP (noise, yamux) carrying [`Behaviour`].
pub fn swarm(
    key: identity::Keypair,
    network: Network,
    limits: &Limits,
) -> Result<Swarm<Behaviour>> {
    let behaviour = build(&key, network, limits)?;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("cannot set up the TCP transport")?
        .with_behaviour(|_| behaviour)
        .map_err(|e| anyhow::anyhow!("libp2p behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}
