//! Rate-limited logging of repeated failures: the first of a kind at once, then at most once
//! per period while it goes on, with the count held back meanwhile; a new kind at once. Pure:
//! the caller passes the time.

use std::time::{Duration, Instant};

/// Decides when a repeated failure is logged (see the module docs).
#[derive(Debug, Clone)]
pub struct LogGate {
    period: Duration,
    last: Option<(Instant, String)>,
    held: u64,
}

impl LogGate {
    /// A gate that lets one line of a kind through per `period`.
    pub fn new(period: Duration) -> Self {
        LogGate {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(held back since the last line)` when a failure of `kind` at `now` should be
    /// logged, `None` when it is held back.
    pub fn admit(&mut self, now: Instant, kind: &str) -> Option<u64> {
        let due = match &self.last {
            None => true,
            Some((at, k)) => k != kind || now.saturating_duration_since(*at) >= self.period,
        };
        if due {
            let held = std::mem::take(&mut self.held);
            self.last = Some((now, kind.to_owned()));
            Some(held)
        } else {
            self.held += 1;
            None
        }
    }

    /// True after a failure was admitted and before [`LogGate::reset`]: a failure is ongoing.
    pub fn is_holding(&self) -> bool {
        self.last.is_some()
    }

    /// Forgets the last failure (after a success), so the next one is logged at once.
    pub fn reset(&mut self) {
        self.last = None;
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_once_then_once_a_period_and_new_kinds_at_once() {
        // A starting point for virtual time; the gate itself never reads the clock.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut g = LogGate::new(s(60));
        assert_eq!(g.admit(t0, "timeout"), Some(0));
        assert_eq!(g.admit(t0 + s(1), "timeout"), None);
        assert_eq!(g.admit(t0 + s(30), "timeout"), None);
        assert_eq!(g.admit(t0 + s(61), "timeout"), Some(2));
        assert_eq!(g.admit(t0 + s(62), "unknown-ca"), Some(0));
        g.reset();
        assert_eq!(g.admit(t0 + s(63), "unknown-ca"), Some(0));
    }
}
