//! Messages from peers that came too early, kept in the chain state and tried again
//! after each piece of ledger work (`crate::p2p::validate` handles them).

/// Messages that came too early (inference blocks before their anchor or parent,
/// transactions before the block creating their inputs, votes before their block, VM
/// transactions whose sender's balance this node does not see yet), kept in the chain
/// state and tried again after each piece of ledger work.
pub struct Early {
    pub blocks: Waiting,
    pub txs: Waiting,
    pub votes: Waiting,
    pub vm_txs: Waiting,
}

impl Default for Early {
    fn default() -> Self {
        Early {
            blocks: Waiting::new(64),
            txs: Waiting::new(256),
            votes: Waiting::new(64),
            vm_txs: Waiting::new(256),
        }
    }
}

/// Gossip that came too early (an inference block before its ledger anchor or parent, a
/// transaction before the block that creates its inputs): kept, a bounded number for a
/// bounded number of rounds, and tried again after each piece of ledger work.
pub struct Waiting {
    /// The message and the rounds it has waited.
    items: std::collections::VecDeque<(Vec<u8>, u32)>,
    max: usize,
}

impl Waiting {
    /// Rounds (ledger blocks or sync batches) after which a message is given up on.
    const MAX_ROUNDS: u32 = 64;

    fn new(max: usize) -> Self {
        Self {
            items: std::collections::VecDeque::new(),
            max,
        }
    }

    pub fn push(&mut self, data: Vec<u8>) {
        if self.items.iter().any(|(d, _)| *d == data) {
            return;
        }
        if self.items.len() >= self.max {
            self.items.pop_front();
        }
        self.items.push_back((data, 0));
    }

    /// Tries each message again with `still_early`, which handles it and says whether it
    /// must go on waiting.
    pub fn retry(&mut self, mut still_early: impl FnMut(&[u8]) -> bool) {
        let mut first = true;
        // Accepting one may make another's parent known: go round until nothing moves.
        loop {
            let before = self.items.len();
            let pending: Vec<(Vec<u8>, u32)> = self.items.drain(..).collect();
            for (data, rounds) in pending {
                let rounds = if first {
                    rounds.saturating_add(1)
                } else {
                    rounds
                };
                if still_early(&data) && rounds < Self::MAX_ROUNDS {
                    self.items.push_back((data, rounds));
                }
            }
            first = false;
            if self.items.len() == before {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Waiting;

    #[test]
    fn an_early_message_is_kept_until_it_can_be_handled() {
        let mut waiting = Waiting::new(4);
        waiting.push(b"tx".to_vec());
        waiting.push(b"tx".to_vec());
        let mut seen = 0;
        waiting.retry(|_| {
            seen += 1;
            true
        });
        assert_eq!(seen, 1, "a message pushed twice is kept once");
        assert_eq!(waiting.items.len(), 1);
        let mut handled = Vec::new();
        waiting.retry(|d| {
            handled.push(d.to_vec());
            false
        });
        assert_eq!(handled, vec![b"tx".to_vec()]);
        assert!(waiting.items.is_empty());
    }

    #[test]
    fn one_accepted_message_can_release_another_in_the_same_round() {
        // "child" waits for "parent"; both arrive out of order.
        let mut waiting = Waiting::new(4);
        waiting.push(b"child".to_vec());
        waiting.push(b"parent".to_vec());
        let mut have_parent = false;
        waiting.retry(|d| {
            if d == b"parent" {
                have_parent = true;
                false
            } else {
                !have_parent
            }
        });
        assert!(waiting.items.is_empty());
    }

    #[test]
    fn waiting_is_bounded_in_count_and_in_rounds() {
        let mut waiting = Waiting::new(3);
        for i in 0..5u8 {
            waiting.push(vec![i]);
        }
        let kept: Vec<u8> = waiting.items.iter().map(|(d, _)| d[0]).collect();
        assert_eq!(kept, vec![2, 3, 4], "the oldest give way");
        for _ in 0..Waiting::MAX_ROUNDS - 1 {
            waiting.retry(|_| true);
        }
        assert_eq!(waiting.items.len(), 3);
        waiting.retry(|_| true);
        assert!(
            waiting.items.is_empty(),
            "given up after {} rounds",
            Waiting::MAX_ROUNDS
        );
    }
}
