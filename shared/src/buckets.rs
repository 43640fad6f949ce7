//! Classic (Prometheus) histograms in their own bucket layout: what a scraped `_bucket` family
//! says, and nothing more precise.
//!
//! A [`BucketHistogram`] holds one or more [`Layout`]s: upper bounds (ascending, the last may
//! be `+Inf`) with the count of observations in each bucket (not cumulative), plus the sum and
//! the count. Merging adds layouts with identical bounds and keeps different layouts side by
//! side, so a fleet that mixes layouts for one metric (vLLM changed its buckets twice) stays
//! correct: no observation is moved into a bucket it was not counted in.
//!
//! Answers are bounds, never pretended precision:
//! - [`BucketHistogram::count_at_or_below`] counts the buckets whose upper bound is at or under
//!   a threshold (a lower bound of the true count) and the observations in buckets straddling
//!   it (how far off that bound may be; none when the threshold is an edge of every layout);
//! - [`BucketHistogram::quantile`] returns the interval `[lo, hi]` that must hold the quantile,
//!   and a point estimate inside it by linear interpolation (as Prometheus'
//!   `histogram_quantile` does within one layout).

use serde::{Deserialize, Serialize};

/// Most layouts one series may hold; merging more is refused (counted by the caller).
pub const MAX_LAYOUTS: usize = 8;
/// Most buckets per layout.
pub const MAX_BUCKETS: usize = 256;

/// One bucket layout with its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Upper bounds, strictly ascending; the last may be `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations per bucket (same length as `bounds`; not cumulative).
    pub counts: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations (at least the sum of `counts`; more when observations fell above
    /// the last finite bound and the layout has no `+Inf` bucket).
    pub count: u64,
}

/// A classic histogram: one or more layouts (see the module docs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<Layout>", into = "Vec<Layout>")]
pub struct BucketHistogram {
    layouts: Vec<Layout>,
}

/// Why bucket data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BucketError {
    /// Bounds not strictly ascending, NaN, or of another length than the counts.
    #[error("bucket bounds must be strictly ascending, not NaN, one count per bound")]
    BadLayout,
    /// More layouts or buckets than allowed.
    #[error("more than {MAX_LAYOUTS} layouts or {MAX_BUCKETS} buckets")]
    TooLarge,
}

impl TryFrom<Vec<Layout>> for BucketHistogram {
    type Error = BucketError;

    fn try_from(layouts: Vec<Layout>) -> Result<Self, BucketError> {
        if layouts.len() > MAX_LAYOUTS {
            return Err(BucketError::TooLarge);
        }
        for l in &layouts {
            check_layout(l)?;
        }
        Ok(BucketHistogram { layouts })
    }
}

impl From<BucketHistogram> for Vec<Layout> {
    fn from(h: BucketHistogram) -> Self {
        h.layouts
    }
}

fn check_layout(l: &Layout) -> Result<(), BucketError> {
    if l.bounds.len() > MAX_BUCKETS {
        return Err(BucketError::TooLarge);
    }
    if l.bounds.len() != l.counts.len()
        || l.bounds.iter().any(|b| b.is_nan())
        || l.bounds.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(BucketError::BadLayout);
    }
    Ok(())
}

impl BucketHistogram {
    /// A histogram of one layout.
    pub fn new(layout: Layout) -> Result<Self, BucketError> {
        check_layout(&layout)?;
        Ok(BucketHistogram {
            layouts: vec![layout],
        })
    }

    /// The layouts.
    pub fn layouts(&self) -> &[Layout] {
        &self.layouts
    }

    /// Adds `other`: same layouts add up, different ones are kept side by side.
    pub fn merge(&mut self, other: &BucketHistogram) -> Result<(), BucketError> {
        for l in &other.layouts {
            let existing = self
                .layouts
                .iter()
                .position(|m| same_bounds(&m.bounds, &l.bounds));
            match existing {
                Some(i) => {
                    let m = &mut self.layouts[i];
                    for (a, b) in m.counts.iter_mut().zip(&l.counts) {
                        *a = a.saturating_add(*b);
                    }
                    m.sum += l.sum;
                    m.count = m.count.saturating_add(l.count);
                }
                None if self.layouts.len() < MAX_LAYOUTS => self.layouts.push(l.clone()),
                None => return Err(BucketError::TooLarge),
            }
        }
        Ok(())
    }

    /// Observations.
    pub fn count(&self) -> u64 {
        self.layouts.iter().map(|l| l.count).sum()
    }

    /// Sum of the observations.
    pub fn sum(&self) -> f64 {
        self.layouts.iter().map(|l| l.sum).sum()
    }

    /// Observations certainly at or under `threshold` (buckets whose upper bound is at or under
    /// it), and how many more may be (those in the bucket of each layout that straddles the
    /// threshold, when it is not an edge of that layout). The true count lies in
    /// `[certain, certain + uncertain]`; `uncertain` is 0 when the threshold is an edge of every
    /// layout that has observations near it.
    pub fn count_at_or_below(&self, threshold: f64) -> (u64, u64) {
        let mut good = 0u64;
        let mut uncertain = 0u64;
        for l in &self.layouts {
            let edge = l.bounds.contains(&threshold);
            for (b, c) in l.bounds.iter().zip(&l.counts) {
                if *b <= threshold {
                    good = good.saturating_add(*c);
                } else {
                    // The first bucket above the threshold holds values on both sides unless
                    // its lower edge is the threshold itself.
                    if !edge {
                        uncertain = uncertain.saturating_add(*c);
                    }
                    break;
                }
            }
        }
        (good, uncertain)
    }

    /// At `x`: how many observations are certainly at or under it, and how many may be (the
    /// bucket of each layout just above `x` may hold values at or under it, unless `x` is its
    /// lower edge).
    fn certain_possible(&self, x: f64) -> (u64, u64) {
        let (mut certain, mut possible) = (0u64, 0u64);
        for l in &self.layouts {
            let mut cum = 0u64;
            let mut on_edge = false;
            let mut above = None;
            for (b, c) in l.bounds.iter().zip(&l.counts) {
                if *b <= x {
                    cum += c;
                    on_edge = *b == x;
                } else {
                    above = Some(*c);
                    break;
                }
            }
            possible += cum + if on_edge { 0 } else { above.unwrap_or(0) };
            certain += cum;
        }
        (certain, possible)
    }

    /// Where the observation of `rank` (1 = the smallest) must lie: `(lo, hi)`, bucket edges
    /// of the layouts (`hi` is `+Inf` in an open top bucket). `None` without observations.
    pub fn rank_bounds(&self, rank: u64) -> Option<(f64, f64)> {
        if self
            .layouts
            .iter()
            .all(|l| l.counts.iter().all(|c| *c == 0))
        {
            return None;
        }
        let rank = rank.max(1);
        // The union of all edges.
        let mut edges: Vec<f64> = self
            .layouts
            .iter()
            .flat_map(|l| l.bounds.iter().copied())
            .collect();
        edges.sort_by(f64::total_cmp);
        edges.dedup();
        // hi: the first edge with at least `rank` certainly at or under it.
        let hi = edges
            .iter()
            .copied()
            .find(|e| self.certain_possible(*e).0 >= rank)
            .unwrap_or(f64::INFINITY);
        // lo: the last edge with fewer than `rank` possibly at or under it (0 for none).
        let lo = edges
            .iter()
            .copied()
            .rfind(|e| self.certain_possible(*e).1 < rank)
            .unwrap_or_else(|| edges.first().copied().unwrap_or(0.0).min(0.0));
        Some((lo, hi))
    }

    /// The `q` quantile: `(estimate, lo, hi)` where `[lo, hi]` must hold it. `None` without
    /// observations. `hi` is `+Inf` when the quantile falls in an open top bucket.
    pub fn quantile(&self, q: f64) -> Option<(f64, f64, f64)> {
        let total: u64 = self
            .layouts
            .iter()
            .map(|l| l.counts.iter().sum::<u64>())
            .sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let (lo, hi) = self.rank_bounds(rank)?;
        let at = |x: f64| self.certain_possible(x);
        let estimate = if hi.is_infinite() {
            lo
        } else if self.layouts.len() == 1 {
            // Linear interpolation inside the bucket, as histogram_quantile does.
            let (below, _) = at(lo);
            let (upto, _) = at(hi);
            let inside = upto.saturating_sub(below).max(1);
            lo + (hi - lo) * (rank.saturating_sub(below)) as f64 / inside as f64
        } else {
            (lo + hi) / 2.0
        };
        Some((estimate.clamp(lo, hi), lo, hi))
    }
}

fn same_bounds(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(bounds: &[f64], counts: &[u64]) -> Layout {
        Layout {
            bounds: bounds.to_vec(),
            counts: counts.to_vec(),
            sum: 0.0,
            count: counts.iter().sum(),
        }
    }

    #[test]
    fn same_layouts_add_and_different_ones_stay_apart() {
        let inf = f64::INFINITY;
        let mut a = BucketHistogram::new(layout(&[0.1, 0.5, inf], &[1, 2, 0])).unwrap();
        a.merge(&BucketHistogram::new(layout(&[0.1, 0.5, inf], &[3, 0, 1])).unwrap())
            .unwrap();
        assert_eq!(a.layouts().len(), 1);
        assert_eq!(a.layouts()[0].counts, vec![4, 2, 1]);
        a.merge(&BucketHistogram::new(layout(&[0.2, 1.0, inf], &[5, 0, 0])).unwrap())
            .unwrap();
        assert_eq!(a.layouts().len(), 2);
        assert_eq!(a.count(), 12);
        // At 0.5: 6 certain in the first layout, 5 in the second (0.2 <= 0.5); the second
        // layout's (0.2, 1.0] bucket straddles 0.5 but is empty: the count is exact.
        assert_eq!(a.count_at_or_below(0.5), (11, 0));
        // At 0.3 the first layout's (0.1, 0.5] bucket holds 2 that may be either side.
        assert_eq!(a.count_at_or_below(0.3), (9, 2));
        // At 0.1 (an edge of the first layout only): the second layout's (0, 0.2] holds 5.
        assert_eq!(a.count_at_or_below(0.1), (4, 5));
        // Above every finite edge: the +Inf bucket's 1 may be either side.
        assert_eq!(a.count_at_or_below(2.0), (11, 1));
    }

    #[test]
    fn quantiles_are_bounded_by_the_bucket_that_holds_them() {
        let inf = f64::INFINITY;
        // 10 observations: 2 in (0, 0.1], 6 in (0.1, 0.5], 2 in (0.5, 1].
        let h = BucketHistogram::new(layout(&[0.1, 0.5, 1.0, inf], &[2, 6, 2, 0])).unwrap();
        let (est, lo, hi) = h.quantile(0.5).unwrap();
        assert_eq!((lo, hi), (0.1, 0.5));
        assert!((est - (0.1 + 0.4 * 3.0 / 6.0)).abs() < 1e-12);
        let (_, lo, hi) = h.quantile(0.95).unwrap();
        assert_eq!((lo, hi), (0.5, 1.0));
        let (_, lo, hi) = h.quantile(0.1).unwrap();
        assert_eq!((lo, hi), (0.0, 0.1));
        // An observation above the last finite bound: the top quantile is unbounded.
        let open = BucketHistogram::new(layout(&[0.1, inf], &[1, 1])).unwrap();
        let (_, lo, hi) = open.quantile(1.0).unwrap();
        assert_eq!((lo, hi), (0.1, inf));
        assert!(BucketHistogram::default().quantile(0.5).is_none());
    }

    #[test]
    fn quantiles_over_mixed_layouts_still_hold_the_true_value() {
        let inf = f64::INFINITY;
        // True values: 0.05 ×4 (layout A), 0.3 ×4 (layout B).
        let mut h = BucketHistogram::new(layout(&[0.1, 0.5, inf], &[4, 0, 0])).unwrap();
        h.merge(&BucketHistogram::new(layout(&[0.2, 0.4, inf], &[0, 4, 0])).unwrap())
            .unwrap();
        let (_, lo, hi) = h.quantile(0.25).unwrap();
        assert!(lo <= 0.05 && 0.05 <= hi, "{lo} {hi}");
        let (_, lo, hi) = h.quantile(0.9).unwrap();
        assert!(lo <= 0.3 && 0.3 <= hi, "{lo} {hi}");
    }

    #[test]
    fn malformed_layouts_are_refused() {
        assert_eq!(
            BucketHistogram::new(layout(&[0.5, 0.1], &[1, 1])),
            Err(BucketError::BadLayout)
        );
        assert_eq!(
            BucketHistogram::new(layout(&[f64::NAN], &[1])),
            Err(BucketError::BadLayout)
        );
        let many: Vec<f64> = (0..300).map(f64::from).collect();
        assert_eq!(
            BucketHistogram::new(layout(&many, &vec![0; 300])),
            Err(BucketError::TooLarge)
        );
    }
}
