//! `infer-node bench rpc` (gossip part): how long a transaction takes to reach every one
//! of five local nodes, each with its own RocksDB ledger, mempool, chain task and
//! libp2p stack on loopback, wired by bootstrap and DHT discovery as on a real network.
//!
//! The physical floor measured in the same run is one hop: a loopback TCP message of the
//! transaction's size plus one mempool check of it. Gossip can reach a directly connected
//! node no faster; the ratio says how close the network gets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fai_ledger::mempool::{Mempool, MempoolConfig};
use fai_ledger::testkit;
use fai_ledger::{Block, OutPoint, Transaction, TxOut};
use fai_primitives::codec::Encode;
use fai_primitives::{Amount, Network, SecretKey};
use serde::Serialize;

use fai_node::chain_task::ChainState;
use fai_node::config::P2pSection;
use fai_node::node::{open_chain, unix_now, Node};
use fai_node::p2p::{self, Topic};

/// Nodes in the bench network.
const NODES: usize = 5;

#[derive(Serialize)]
pub struct GossipReport {
    pub nodes: usize,
    pub transactions: usize,
    pub gossip_p50_ms: f64,
    pub gossip_p99_ms: f64,
    /// One loopback hop plus one mempool check, measured in the same run.
    pub gossip_floor_ms: f64,
    /// floor / p50.
    pub gossip_ratio: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The coins the bench spends, with the outputs they are.
type Coins = Vec<(OutPoint, TxOut)>;

/// A ledger with `outputs` spendable coins of `key`: 101 blocks, then one block holding a
/// transaction that splits the first coinbase.
fn funding_blocks(key: &SecretKey, outputs: usize) -> Result<(Vec<Block>, Coins)> {
    let dir = tempfile::tempdir()?;
    let mut chain = open_chain(dir.path(), Network::Regtest)?;
    let owner = key.public_key().hash160();
    let mut blocks = testkit::extend(&mut chain, 101, owner, unix_now())?;
    let first = blocks.first().context("no block")?;
    let coinbase = first.transactions.first().context("no coinbase")?;
    let value = coinbase.outputs.first().context("no output")?.clone();
    let each = value.value.units() / (outputs as u64 + 1);
    let split = testkit::spend(
        &chain,
        &[(OutPoint::new(coinbase.txid(), 0), value, key.clone())],
        (0..outputs)
            .map(|_| TxOut::pay(Amount::from_units(each).unwrap_or(Amount::ZERO), owner))
            .collect(),
    )?;
    let block = testkit::mine_on_tip(&chain, vec![split.clone()], owner, None)?;
    chain.accept_block(block.clone(), unix_now())?;
    blocks.push(block);
    let coins = split
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| (OutPoint::new(split.txid(), i as u32), o.clone()))
        .collect();
    Ok((blocks, coins))
}

/// The loopback floor: median one-way time of a `size`-byte message (half a round trip)
/// plus the median time of a mempool check, on a node of the same kind.
fn floor_ms(size: usize, check_ms: f64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        for _ in 0..200 {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(address)?;
    s.set_nodelay(true)?;
    let mut buf = vec![7u8; size];
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        times.push(t.elapsed().as_secs_f64() * 1e3 / 2.0);
    }
    let _ = echo.join();
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5) + check_ms)
}

pub fn gossip(samples: usize) -> Result<GossipReport> {
    let key = SecretKey::generate();
    let (blocks, coins) = funding_blocks(&key, samples)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dirs: Vec<tempfile::TempDir> = (0..NODES)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut nodes: Vec<Arc<Node>> = Vec::new();
    let mut chain_tasks = Vec::new();
    let mut bootstrap: Vec<fai_node::config::PeerAddress> = Vec::new();
    for dir in &dirs {
        let mut chain = open_chain(dir.path(), Network::Regtest)?;
        for b in &blocks {
            chain.accept_block(b.clone(), unix_now())?;
        }
        let mempool = Mempool::new(MempoolConfig {
            max_bytes: 64 << 20,
            min_fee_rate: 1_000,
        });
        let state = ChainState::new(chain, mempool, fai_node::clock::system());
        let (node, chain_task) = fai_node::node::start_bare(state)?;
        chain_tasks.push(chain_task);
        let config = P2pSection {
            listen: Some("/ip4/127.0.0.1/tcp/0".parse()?),
            bootstrap: bootstrap.clone(),
            ..P2pSection::default()
        };
        let identity = libp2p::identity::Keypair::generate_ed25519();
        let running = p2p::service::start(
            &runtime,
            &tokio_util::task::TaskTracker::new(),
            node.clone(),
            Network::Regtest,
            identity,
            None,
            &config,
        )?;
        let status = running.handle.status.clone();
        let _ = node.p2p.set(running.handle);
        if bootstrap.is_empty() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let listen = status.listen.lock().map(|l| l.clone()).unwrap_or_default();
                if let Some(first) = listen.first() {
                    bootstrap.push(first.parse::<fai_node::config::PeerAddress>()?);
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the first bench node never listened");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        nodes.push(node);
    }
    // Everyone connected to everyone (DHT discovery), and the gossip mesh formed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let connected = |n: &Arc<Node>| {
        n.p2p.get().map_or(0, |h| {
            h.status.peers.load(std::sync::atomic::Ordering::Relaxed)
        })
    };
    while nodes.iter().any(|n| connected(n) < NODES - 1) {
        if Instant::now() > deadline {
            bail!("the bench nodes did not all connect");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));

    let fee = Amount::from_units(10_000).unwrap_or(Amount::ZERO);
    let owner = key.public_key().hash160();
    let mut times = Vec::new();
    let mut checks = Vec::new();
    let mut size = 0;
    for (outpoint, out) in coins.iter().take(samples) {
        let value = out.value.units().saturating_sub(fee.units());
        let spent = (*outpoint, out.clone(), key.clone());
        let tx: Transaction = nodes[0].chain.call_blocking(move |st| {
            testkit::spend(
                &st.ledger,
                &[spent],
                vec![TxOut::pay(
                    Amount::from_units(value).unwrap_or(Amount::ZERO),
                    owner,
                )],
            )
        })??;
        let txid = tx.txid();
        let bytes = tx.to_bytes();
        size = bytes.len();
        let started = Instant::now();
        nodes[0]
            .chain
            .call_blocking(move |st| st.mempool.accept(tx, &st.ledger))??;
        checks.push(started.elapsed().as_secs_f64() * 1e3);
        nodes[0].publish(Topic::LedgerTx, bytes);
        let deadline = started + Duration::from_secs(10);
        loop {
            let everywhere = nodes.iter().all(|n| {
                n.chain
                    .call_blocking(move |st| st.mempool.contains(&txid))
                    .unwrap_or(false)
            });
            if everywhere {
                times.push(started.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                bail!("transaction {txid} did not reach every node within 10 s");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    times.sort_by(f64::total_cmp);
    checks.sort_by(f64::total_cmp);
    let floor = floor_ms(size, percentile(&checks, 0.5))?;
    let p50 = percentile(&times, 0.5);
    // The network loops first, then the chain tasks (and their databases).
    runtime.shutdown_timeout(Duration::from_secs(1));
    for t in chain_tasks {
        drop(t.stop());
    }
    drop(nodes);
    Ok(GossipReport {
        nodes: NODES,
        transactions: times.len(),
        gossip_p50_ms: p50,
        gossip_p99_ms: percentile(&times, 0.99),
        gossip_floor_ms: floor,
        gossip_ratio: if p50 > 0.0 { floor / p50 } else { 0.0 },
    })
}
