//! Categorical summaries: exact counts per category value, bounded.
//!
//! A summary keeps at most `limit` distinct values (64 by default); observations of further
//! values are counted under [`OTHER`]. Merging adds counts; values that do not fit the merged
//! summary's bound move to [`OTHER`], so the total is always exact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The bucket for values beyond the bound.
pub const OTHER: &str = "__other__";
/// Default number of distinct values kept per series.
pub const DEFAULT_LIMIT: usize = 64;
/// Longest category value kept, in bytes; longer ones are cut at a character boundary.
pub const MAX_VALUE_BYTES: usize = 200;

/// Exact counts per category value, bounded (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Categorical {
    counts: BTreeMap<String, u64>,
    other: u64,
}

impl Categorical {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` observations of `value`, keeping at most `limit` distinct values.
    pub fn record_n(&mut self, value: &str, n: u64, limit: usize) {
        let value = truncate(value);
        if let Some(c) = self.counts.get_mut(value) {
            *c = c.saturating_add(n);
        } else if self.counts.len() < limit && value != OTHER {
            self.counts.insert(value.to_owned(), n);
        } else {
            self.other = self.other.saturating_add(n);
        }
    }

    /// Adds `other` into `self` under the bound `limit`.
    pub fn merge(&mut self, other: &Categorical, limit: usize) {
        for (v, n) in &other.counts {
            self.record_n(v, *n, limit);
        }
        self.other = self.other.saturating_add(other.other);
    }

    /// Total observations, including [`OTHER`].
    pub fn total(&self) -> u64 {
        self.counts.values().sum::<u64>().saturating_add(self.other)
    }

    /// The exact counts per kept value.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Observations counted under [`OTHER`].
    pub fn other(&self) -> u64 {
        self.other
    }

    /// Number of distinct values kept.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

fn truncate(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_beyond_the_limit_go_to_other_and_totals_stay_exact() {
        let mut c = Categorical::new();
        for i in 0..10 {
            c.record_n(&format!("v{i}"), 2, 4);
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.other(), 12);
        assert_eq!(c.total(), 20);
        c.record_n("40K - 60K €", 1, 5);
        assert_eq!(c.counts().get("40K - 60K €"), Some(&1));
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Categorical::new();
        a.record_n("en", 3, 64);
        let mut b = Categorical::new();
        b.record_n("en", 2, 64);
        b.record_n("fr", 1, 64);
        a.merge(&b, 64);
        assert_eq!(a.counts().get("en"), Some(&5));
        assert_eq!(a.total(), 6);
    }
}
