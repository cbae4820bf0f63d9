//! Headers-first catch-up with one peer at a time.
//!
//! When a peer announces more chain work than ours, the node asks it for the headers
//! after a locator of its active chain, checks their linkage and proof of work (cheap:
//! one hash each), and adds up the work they carry from the block they fork from. Only
//! once the header chain has more work than our active chain does it download the
//! blocks those headers name, at most [`MAX_BLOCKS_PER_REQUEST`] per request, and hand
//! them to the validator in order (a peer that announced work its headers do not carry,
//! say a fork from far back at the proof-of-work limit, gets no block of it stored). A
//! full batch of headers means there are more: the next headers request starts from the
//! last header received. A header chain that does not link or lacks its proof of work is
//! an offence that bans the peer.
//!
//! Progress goes to a progress bar on a terminal and to a log line every ten seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use fai_ledger::block::{Block, BlockHeader};
use fai_ledger::pow::header_work;
use fai_ledger::validation::stateless::check_header_proof_of_work;
use fai_ledger::Chainstate;
use fai_primitives::Hash256;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use libp2p::PeerId;
use primitive_types::U256;
use tracing::info;

use super::peers::Offence;
use super::protocol::{Request, MAX_BLOCKS_PER_REQUEST, MAX_HEADERS, MAX_LOCATOR};

/// How often a syncing node logs its progress.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Headers held while their chain has no more work than ours, at most (a batch is
/// [`MAX_HEADERS`]): past this, the peer's branch is not worth following.
const MAX_HELD_HEADERS: usize = 100 * MAX_HEADERS;

/// A locator of the active chain: the ten newest hashes, then exponentially sparser
/// ones, then genesis; `first`, when given, leads.
pub fn locator(chain: &Chainstate, first: Option<Hash256>) -> Vec<Hash256> {
    let mut hashes: Vec<Hash256> = first.into_iter().collect();
    let mut height = chain.height();
    let mut step = 1u32;
    loop {
        if let Some(h) = chain.hash_at(height) {
            hashes.push(h);
        }
        if height == 0 || hashes.len() >= MAX_LOCATOR.saturating_sub(1) {
            break;
        }
        if hashes.len() >= 10 {
            step = step.saturating_mul(2);
        }
        height = height.saturating_sub(step);
    }
    if let Some(genesis) = chain.hash_at(0) {
        if hashes.last() != Some(&genesis) {
            hashes.push(genesis);
        }
    }
    hashes
}

/// Checks a peer's header batch: it must continue from a block we have (or from the
/// previous batch's last header), link header to header, and carry proof of work.
pub fn check_headers(
    chain: &Chainstate,
    headers: &[BlockHeader],
    continues: Option<Hash256>,
) -> Result<(), (Offence, String)> {
    let Some(first) = headers.first() else {
        return Ok(());
    };
    if chain.entry(&first.prev).is_none() && Some(first.prev) != continues {
        return Err((
            Offence::Malformed,
            format!(
                "headers start after {}, which we never asked about",
                first.prev
            ),
        ));
    }
    let mut prev = first.prev;
    for header in headers {
        if header.prev != prev {
            return Err((Offence::InvalidBlock, "headers do not link".into()));
        }
        check_header_proof_of_work(header, chain.params()).map_err(|e| {
            (
                Offence::InvalidBlock,
                format!("header {}: {e}", header.hash()),
            )
        })?;
        prev = header.hash();
    }
    Ok(())
}

/// The state of a catch-up with one peer.
pub struct Sync {
    pub peer: PeerId,
    /// The height the peer announced.
    pub target: u32,
    queue: VecDeque<Hash256>,
    /// Blocks named by headers whose chain does not yet have more work than ours.
    held: Vec<Hash256>,
    /// The chain work through the last header received.
    work: Option<U256>,
    /// Blocks asked for and not received yet.
    requested: Vec<Hash256>,
    /// The last header received (the next headers request starts after it).
    last_header: Option<Hash256>,
    more_headers: bool,
    started: Instant,
    start_height: u32,
    last_log: Instant,
    bar: ProgressBar,
}

impl Sync {
    /// Starts a catch-up with `peer`; returns it and the first request.
    pub fn begin(chain: &Chainstate, peer: PeerId, target: u32) -> (Sync, Request) {
        let height = chain.height();
        info!(target: "infer_node::sync", %peer, height, target, "syncing the ledger");
        let bar = ProgressBar::with_draw_target(
            Some(u64::from(target)),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "ledger sync [{bar:40}] {pos}/{len} blocks ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position(u64::from(height));
        let now = Instant::now();
        let sync = Sync {
            peer,
            target,
            queue: VecDeque::new(),
            held: Vec::new(),
            work: None,
            requested: Vec::new(),
            last_header: None,
            more_headers: false,
            started: now,
            start_height: height,
            last_log: now,
            bar,
        };
        let request = Request::LedgerHeaders {
            locator: locator(chain, None),
        };
        (sync, request)
    }

    /// Takes a header batch; the next request, or `None` when the peer has nothing more.
    pub fn on_headers(
        &mut self,
        chain: &Chainstate,
        headers: Vec<BlockHeader>,
    ) -> Result<Option<Request>, (Offence, String)> {
        check_headers(chain, &headers, self.last_header)?;
        self.more_headers = headers.len() == MAX_HEADERS;
        let previous = self.last_header;
        if let Some(last) = headers.last() {
            self.last_header = Some(last.hash());
        }
        // The work of the header chain: from the block it forks from (ours), plus what
        // each header proves. A batch that does not continue the last one starts the
        // count again (sent twice, a batch must not count twice).
        if let Some(first) = headers.first() {
            let base = match self.work {
                Some(w) if previous == Some(first.prev) => Some(w),
                _ => {
                    self.held.clear();
                    chain.entry(&first.prev).map(|e| e.chain_work)
                }
            };
            self.work = base.map(|b| {
                headers
                    .iter()
                    .fold(b, |w, h| w.saturating_add(header_work(h)))
            });
        }
        self.held.extend(
            headers
                .iter()
                .map(BlockHeader::hash)
                .filter(|h| chain.entry(h).is_none()),
        );
        let ours = chain.tip().map(|t| t.chain_work).unwrap_or_default();
        if self.work.is_some_and(|w| w > ours) {
            self.queue.extend(self.held.drain(..));
        } else if !self.more_headers {
            // All its headers, and no more work than ours (our chain grew meanwhile, or
            // the peer announced work it does not have): nothing of it is fetched.
            self.held.clear();
            return Ok(None);
        } else if self.held.len() > MAX_HELD_HEADERS {
            // A long branch that still has no more work: not worth following further.
            self.held.clear();
            return Ok(None);
        }
        Ok(self.next_request(chain))
    }

    /// Takes a block batch; the blocks to validate, in order.
    pub fn on_blocks(&mut self, blocks: Vec<Block>) -> Result<Vec<Block>, (Offence, String)> {
        let asked = std::mem::take(&mut self.requested);
        let got: Vec<Hash256> = blocks.iter().map(Block::hash).collect();
        if got.is_empty() || !asked.starts_with(&got) {
            return Err((
                Offence::Malformed,
                "the blocks sent are not the blocks asked for".into(),
            ));
        }
        // Blocks the peer left out (a reorg on its side) are asked again later.
        for missing in asked.iter().skip(got.len()).rev() {
            self.queue.push_front(*missing);
        }
        Ok(blocks)
    }

    /// After a batch was validated: the next request, or `None` when done.
    pub fn next_request(&mut self, chain: &Chainstate) -> Option<Request> {
        self.report(chain);
        if !self.queue.is_empty() {
            let n = self.queue.len().min(MAX_BLOCKS_PER_REQUEST);
            self.requested = self.queue.drain(..n).collect();
            return Some(Request::LedgerBlocks {
                hashes: self.requested.clone(),
            });
        }
        if self.more_headers {
            return Some(Request::LedgerHeaders {
                locator: locator(chain, self.last_header),
            });
        }
        None
    }

    fn report(&mut self, chain: &Chainstate) {
        let height = chain.height();
        if height > self.target {
            self.target = height;
            self.bar.set_length(u64::from(height));
        }
        self.bar.set_position(u64::from(height));
        if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            info!(
                target: "infer_node::sync",
                height,
                target = self.target,
                rate = format!("{:.1} blocks/s", self.rate(height)),
                "syncing"
            );
        }
    }

    fn rate(&self, height: u32) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        f64::from(height.saturating_sub(self.start_height)) / secs
    }

    /// Ends the catch-up (done or abandoned) and logs where it got.
    pub fn finish(self, chain: &Chainstate, why: &str) {
        self.bar.finish_and_clear();
        let height = chain.height();
        info!(
            target: "infer_node::sync",
            peer = %self.peer,
            height,
            blocks = height.saturating_sub(self.start_height),
            rate = format!("{:.1} blocks/s", self.rate(height)),
            "ledger sync {why}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fai_ledger::testkit;
    use fai_ledger::ChainParams;
    use fai_primitives::{Hash160, Network};
    use fai_storage::MemoryStore;
    use std::sync::Arc;

    fn chain(blocks: u32) -> Chainstate {
        chain_paying(blocks, 1)
    }

    /// `blocks` blocks on genesis paying `to`: chains paying others fork at genesis.
    fn chain_paying(blocks: u32, to: u8) -> Chainstate {
        let mut chain = Chainstate::open(
            Arc::new(MemoryStore::open(fai_ledger::chainstate::SCHEMA).unwrap()),
            ChainParams::for_network(Network::Regtest),
        )
        .unwrap();
        testkit::extend(&mut chain, blocks, Hash160([to; 20]), u64::MAX / 2).unwrap();
        chain
    }

    fn headers_of(c: &Chainstate) -> Vec<BlockHeader> {
        (1..=c.height())
            .map(|h| c.entry(&c.hash_at(h).unwrap()).unwrap().header)
            .collect()
    }

    /// Attack: a peer announces more work than ours and serves the headers of a fork from
    /// far back (under ASERT such blocks cost next to nothing). Before, the sync asked
    /// for every block the headers named and stored them; now it adds up the headers'
    /// work first and asks for nothing unless their chain has more work than ours.
    #[test]
    fn blocks_are_fetched_only_for_headers_with_more_work_than_ours() {
        let ours = chain(20);
        let peer = PeerId::random();

        let short = chain_paying(6, 2);
        let (mut sync, _) = Sync::begin(&ours, peer, 1_000);
        assert_eq!(sync.on_headers(&ours, headers_of(&short)), Ok(None));
        assert!(sync.queue.is_empty() && sync.held.is_empty());

        // The same batch sent again does not add its work twice.
        let (mut sync, _) = Sync::begin(&ours, peer, 1_000);
        let batch: Vec<BlockHeader> = headers_of(&chain_paying(15, 2));
        assert_eq!(sync.on_headers(&ours, batch.clone()), Ok(None));
        assert_eq!(sync.on_headers(&ours, batch), Ok(None));
        assert!(sync.queue.is_empty(), "a repeated batch counted twice");

        let long = chain_paying(21, 2);
        let (mut sync, _) = Sync::begin(&ours, peer, 1_000);
        match sync.on_headers(&ours, headers_of(&long)) {
            Ok(Some(Request::LedgerBlocks { hashes })) => {
                assert_eq!(hashes.len(), 21);
                assert_eq!(hashes[0], long.hash_at(1).unwrap());
            }
            other => panic!("no blocks asked for: {other:?}"),
        }
    }

    #[test]
    fn the_locator_is_dense_near_the_tip_and_ends_at_genesis() {
        let c = chain(100);
        let loc = locator(&c, None);
        assert_eq!(loc[0], c.tip_hash());
        assert_eq!(loc[9], c.hash_at(91).unwrap());
        assert_eq!(*loc.last().unwrap(), c.hash_at(0).unwrap());
        assert!(loc.len() < 20, "{}", loc.len());
        let led = locator(&c, Some(Hash256([7; 32])));
        assert_eq!(led[0], Hash256([7; 32]));
    }

    #[test]
    fn headers_must_link_and_carry_proof_of_work() {
        let ours = chain(2);
        let theirs = chain(6);
        let headers: Vec<BlockHeader> = (3..=6)
            .map(|h| theirs.entry(&theirs.hash_at(h).unwrap()).unwrap().header)
            .collect();
        // Our chain is a prefix of theirs (the same regtest blocks): these continue from 2.
        assert!(check_headers(&ours, &headers, None).is_ok());
        // A gap.
        let gap = vec![headers[0], headers[2]];
        assert_eq!(
            check_headers(&ours, &gap, None).unwrap_err().0,
            Offence::InvalidBlock
        );
        // A header whose hash misses its target.
        let mut forged = headers.clone();
        forged[3].bits = 0x1d00ffff; // mainnet's difficulty, which regtest nonces do not meet
        assert_eq!(
            check_headers(&ours, &forged, None).unwrap_err().0,
            Offence::InvalidBlock
        );
        // Headers after a block we never named.
        let far = headers[1..].to_vec();
        assert_eq!(
            check_headers(&ours, &far, None).unwrap_err().0,
            Offence::Malformed
        );
        assert!(check_headers(&ours, &far, Some(headers[0].hash())).is_ok());
    }

    #[test]
    fn blocks_must_be_the_ones_asked_for() {
        let ours = chain(1);
        let theirs = chain(4);
        let (mut sync, _) = Sync::begin(&ours, PeerId::random(), 4);
        let headers: Vec<BlockHeader> = (2..=4)
            .map(|h| theirs.entry(&theirs.hash_at(h).unwrap()).unwrap().header)
            .collect();
        let request = sync.on_headers(&ours, headers).unwrap().unwrap();
        let Request::LedgerBlocks { hashes } = request else {
            panic!("expected a blocks request");
        };
        assert_eq!(hashes.len(), 3);
        let block = |h: u32| theirs.block(&theirs.hash_at(h).unwrap()).unwrap().unwrap();
        // The wrong block is an offence.
        assert!(sync.on_blocks(vec![block(3)]).is_err());
        // A prefix is fine; the rest is asked again.
        sync.requested = hashes.clone();
        assert_eq!(sync.on_blocks(vec![block(2)]).unwrap().len(), 1);
        let Some(Request::LedgerBlocks { hashes: again }) = sync.next_request(&ours) else {
            panic!("expected the rest");
        };
        assert_eq!(again, hashes[1..].to_vec());
    }
}
