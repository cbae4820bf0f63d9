//! Time as an input: the node's own waits, timeouts and block times read a [`Clock`]
//! instead of the machine's clock, so that a test can hold time still or move it exactly
//! (a [`ManualClock`]) and get the same answer on a loaded machine as on an idle one.
//! libp2p and tokio keep their own timers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the node reads the time.
pub trait Clock: Send + Sync {
    /// A monotonic instant, for waits and timeouts.
    fn now(&self) -> Instant;
    /// Seconds since the Unix epoch, for block times.
    fn unix_now(&self) -> u64;
}

/// The machine's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The clock of production: the machine's.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    unix_start: u64,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at `unix` seconds since the epoch.
    pub fn new(unix: u64) -> Self {
        ManualClock {
            start: Instant::now(),
            unix_start: unix,
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut elapsed = self.elapsed.lock().unwrap_or_else(|e| e.into_inner());
        *elapsed = elapsed.saturating_add(by);
    }

    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        // An Instant cannot overflow in any test's lifetime.
        self.start + self.elapsed()
    }

    fn unix_now(&self) -> u64 {
        self.unix_start.saturating_add(self.elapsed().as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_700_000_000);
        let (at, unix) = (clock.now(), clock.unix_now());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((clock.now(), clock.unix_now()), (at, unix));
        clock.advance(Duration::from_millis(2500));
        assert_eq!(clock.now() - at, Duration::from_millis(2500));
        assert_eq!(clock.unix_now(), unix + 2);
    }
}
