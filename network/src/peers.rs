//! What the node knows about its peers: a misbehaviour score, bans with an expiry, and a
//! token bucket per peer for the sync requests it serves.
//!
//! A peer starts at score 0 and loses points for what it sends wrong; at
//! [`BAN_THRESHOLD`] it is banned for the configured time (its connections are closed and
//! new ones refused). Penalties are fixed per offence: an invalid block or header chain
//! bans at once (a proof-of-work check is cheap, and no honest node relays one), a
//! malformed message costs half, an invalid transaction a fifth (a transaction can turn
//! invalid on the way through a reorg), a request over the rate limit two points. Scores
//! below zero recover a point a second, so only a steady offender is banned for those.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// The score at which a peer is banned.
pub const BAN_THRESHOLD: i32 = -100;

/// Something a peer did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// A block, or a header chain, that breaks a consensus rule.
    InvalidBlock,
    /// Bytes that do not decode, or a response that does not answer the request.
    Malformed,
    /// A transaction the mempool refuses as invalid (not merely known or late).
    InvalidTransaction,
    /// More requests than the rate limit allows.
    TooManyRequests,
}

impl Offence {
    pub fn penalty(self) -> i32 {
        match self {
            Offence::InvalidBlock => 100,
            Offence::Malformed => 50,
            Offence::InvalidTransaction => 20,
            Offence::TooManyRequests => 2,
        }
    }
}

/// One peer's standing.
#[derive(Debug)]
struct Standing {
    score: i32,
    /// Request tokens left, refilled at `rate` per second up to `4 * rate`.
    tokens: f64,
    refilled: Instant,
}

/// A banned peer, as shown to operators.
#[derive(Clone, Debug)]
pub struct Ban {
    pub peer: PeerId,
    pub until: Instant,
    pub reason: String,
}

/// Scores, bans and request budgets of every peer seen.
pub struct PeerBook {
    standings: HashMap<PeerId, Standing>,
    bans: HashMap<PeerId, Ban>,
    ban_time: Duration,
    rate: f64,
}

impl PeerBook {
    pub fn new(ban_time: Duration, requests_per_second: u32) -> Self {
        PeerBook {
            standings: HashMap::new(),
            bans: HashMap::new(),
            ban_time,
            rate: f64::from(requests_per_second.max(1)),
        }
    }

    fn standing(&mut self, peer: PeerId, now: Instant) -> &mut Standing {
        let burst = self.rate * 4.0;
        self.standings.entry(peer).or_insert(Standing {
            score: 0,
            tokens: burst,
            refilled: now,
        })
    }

    /// Records an offence; returns true when it got the peer banned (just now).
    pub fn punish(&mut self, peer: PeerId, offence: Offence, why: &str, now: Instant) -> bool {
        if self.bans.contains_key(&peer) {
            return false;
        }
        let standing = self.standing(peer, now);
        standing.score = standing.score.saturating_sub(offence.penalty());
        if standing.score > BAN_THRESHOLD {
            return false;
        }
        self.ban(peer, why.to_string(), self.ban_time, now);
        true
    }

    /// Bans `peer` for `time` (an operator's ban, or the end of a score).
    pub fn ban(&mut self, peer: PeerId, reason: String, time: Duration, now: Instant) {
        self.standings.remove(&peer);
        let until = now.checked_add(time).unwrap_or(now);
        self.bans.insert(
            peer,
            Ban {
                peer,
                until,
                reason,
            },
        );
    }

    /// Lifts a ban; true if there was one.
    pub fn unban(&mut self, peer: &PeerId) -> bool {
        self.bans.remove(peer).is_some()
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans.contains_key(peer)
    }

    /// Removes the bans that have run out; returns their peers.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let done: Vec<PeerId> = self
            .bans
            .values()
            .filter(|b| b.until <= now)
            .map(|b| b.peer)
            .collect();
        for p in &done {
            self.bans.remove(p);
        }
        done
    }

    /// Takes one request token; false when the peer is over its rate.
    pub fn allow_request(&mut self, peer: PeerId, now: Instant) -> bool {
        let rate = self.rate;
        let standing = self.standing(peer, now);
        let elapsed = now
            .saturating_duration_since(standing.refilled)
            .as_secs_f64();
        standing.tokens = (standing.tokens + elapsed * rate).min(rate * 4.0);
        standing.refilled = now;
        if standing.tokens >= 1.0 {
            standing.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Called once a second: every negative score recovers one point, so occasional
    /// slips are forgotten while a steady offender still reaches the threshold.
    pub fn forgive(&mut self) {
        for standing in self.standings.values_mut() {
            if standing.score < 0 {
                standing.score = standing.score.saturating_add(1);
            }
        }
    }

    /// The score of `peer` (0 for one never seen or punished).
    pub fn score(&self, peer: &PeerId) -> i32 {
        self.standings.get(peer).map_or(0, |s| s.score)
    }

    /// Forgets a disconnected peer's budget and score unless it is below zero (so that
    /// reconnecting does not wash a bad score).
    pub fn disconnected(&mut self, peer: &PeerId) {
        if self.standings.get(peer).is_some_and(|s| s.score >= 0) {
            self.standings.remove(peer);
        }
    }

    pub fn bans(&self) -> impl Iterator<Item = &Ban> {
        self.bans.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_block_bans_at_once_and_small_offences_add_up() {
        let now = Instant::now();
        let mut book = PeerBook::new(Duration::from_secs(60), 10);
        let liar = PeerId::random();
        assert!(book.punish(liar, Offence::InvalidBlock, "bad pow", now));
        assert!(book.is_banned(&liar));
        // Already banned: no second ban event.
        assert!(!book.punish(liar, Offence::InvalidBlock, "again", now));

        let sloppy = PeerId::random();
        for _ in 0..4 {
            assert!(!book.punish(sloppy, Offence::InvalidTransaction, "bad tx", now));
        }
        assert_eq!(book.score(&sloppy), -80);
        assert!(book.punish(sloppy, Offence::InvalidTransaction, "bad tx", now));

        // Bans run out.
        assert!(book.expire(now + Duration::from_secs(30)).is_empty());
        let mut lifted = book.expire(now + Duration::from_secs(61));
        lifted.sort();
        let mut both = vec![liar, sloppy];
        both.sort();
        assert_eq!(lifted, both);
        assert!(!book.is_banned(&liar));
    }

    #[test]
    fn requests_are_limited_to_the_rate_with_a_burst() {
        let start = Instant::now();
        let mut book = PeerBook::new(Duration::from_secs(60), 10);
        let peer = PeerId::random();
        let served = (0..100).filter(|_| book.allow_request(peer, start)).count();
        assert_eq!(served, 40, "a burst of four seconds' worth");
        // Half a second later, five more.
        let later = start + Duration::from_millis(500);
        let served = (0..100).filter(|_| book.allow_request(peer, later)).count();
        assert_eq!(served, 5);
    }

    #[test]
    fn a_bad_score_survives_reconnecting() {
        let now = Instant::now();
        let mut book = PeerBook::new(Duration::from_secs(60), 10);
        let peer = PeerId::random();
        book.punish(peer, Offence::Malformed, "junk", now);
        book.disconnected(&peer);
        assert_eq!(book.score(&peer), -50);
        assert!(book.punish(peer, Offence::Malformed, "junk", now));
    }

    #[test]
    fn scores_recover_so_only_steady_offenders_are_banned() {
        let now = Instant::now();
        let mut book = PeerBook::new(Duration::from_secs(60), 10);
        let peer = PeerId::random();
        // Two refused requests a second for a minute: never banned.
        for _ in 0..60 {
            assert!(!book.punish(peer, Offence::TooManyRequests, "rate", now));
            book.forgive();
        }
        assert!(book.score(&peer) > BAN_THRESHOLD);
        // A flood of them is.
        let banned = (0..100).any(|_| book.punish(peer, Offence::TooManyRequests, "rate", now));
        assert!(banned);
    }
}
