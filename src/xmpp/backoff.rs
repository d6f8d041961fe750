//! Pauses between attempts that keep failing: doubling from a first pause up to a ceiling.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(super) struct Backoff {
    first: Duration,
    last: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(first: Duration, last: Duration) -> Backoff {
        Backoff {
            first,
            last,
            next: first,
        }
    }

    /// The pause before the next attempt; each call doubles the following one, up to the ceiling.
    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.last);
        delay
    }

    /// An attempt succeeded: the next failure pauses for the first pause again.
    pub(super) fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_ceiling_and_start_again_after_a_success() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let secs: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }
}
