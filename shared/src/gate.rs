//! The deployment gate's statistics, pure: is a candidate version worse than its baseline?
//!
//! Every check answers `pass` (shown not worse than allowed), `fail` (shown worse than
//! allowed) or `inconclusive` (the data cannot tell yet); never `pass` for lack of data.
//!
//! - **Latency at a quantile** ([`latency`]): distribution-free confidence intervals for the
//!   quantile of each side from order statistics — the ranks `n·q ∓ z·√(n·q·(1−q))` of the
//!   binomial, read off the merged histogram (values within 0.0977 %). `fail` when the
//!   candidate's lower bound is above `max_ratio` × the baseline's upper bound, `pass` when the
//!   candidate's upper bound is at or under `max_ratio` × the baseline's lower bound.
//! - **Error rate** ([`errors`]): Wilson score intervals for both error proportions; the
//!   allowed rate is `max(max_ratio × p, p + max_increase)`, `fail` when the candidate's lower
//!   bound is above what the baseline's upper bound allows, `pass` when its upper bound is at
//!   or under what the baseline's lower bound allows.
//! - **SLO burn** ([`burn`]): the candidate's bad fraction (Wilson) divided by the error
//!   budget `1 − objective`, against `max_burn`.
//!
//! Both sides' uncertainty is counted (interval against interval), which is what keeps the
//! false-fail rate of identical versions far under 1 % (measured in `tests/gate_calibration.rs`,
//! reported in docs/GATE.md).

use serde::{Deserialize, Serialize};

use crate::buckets::BucketHistogram;
use crate::histogram::ValueHistogram;

/// What the quantile intervals need of a histogram: its count, where the observation of a rank
/// lies, and its point estimate of a quantile.
pub trait Ranked {
    /// Observations.
    fn observations(&self) -> u64;
    /// `(lo, hi)` that hold the observation of `rank` (1 = the smallest).
    fn rank_bounds(&self, rank: u64) -> Option<(f64, f64)>;
    /// The quantile's point estimate.
    fn estimate(&self, q: f64) -> Option<f64>;
}

/// Value histograms: the observation itself (its bucket's representative, within 0.0977 %).
impl Ranked for ValueHistogram {
    fn observations(&self) -> u64 {
        self.count()
    }
    fn rank_bounds(&self, rank: u64) -> Option<(f64, f64)> {
        self.value_at_rank(rank).map(|v| (v, v))
    }
    fn estimate(&self, q: f64) -> Option<f64> {
        self.quantile(q)
    }
}

/// Classic (scraped) bucket histograms: the edges of the bucket that must hold the rank, so the
/// interval is wider by the buckets' width and still holds the quantile (an open top bucket
/// has no upper bound: the check cannot pass there).
impl Ranked for BucketHistogram {
    fn observations(&self) -> u64 {
        self.layouts()
            .iter()
            .map(|l| l.counts.iter().sum::<u64>())
            .sum()
    }
    fn rank_bounds(&self, rank: u64) -> Option<(f64, f64)> {
        BucketHistogram::rank_bounds(self, rank)
    }
    fn estimate(&self, q: f64) -> Option<f64> {
        self.quantile(q).map(|(e, _, _)| e)
    }
}

/// A check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Shown not worse than allowed.
    Pass,
    /// Worse than allowed, but the check is set to warn only.
    Warn,
    /// Not enough data to tell.
    Inconclusive,
    /// Shown worse than allowed.
    Fail,
}

impl Verdict {
    /// As tables print it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Fail => "FAIL",
        }
    }

    /// The overall decision of several checks: fail if any fails, else inconclusive if any is,
    /// else pass (a warning does not block).
    pub fn overall(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut out = Verdict::Pass;
        for v in verdicts {
            out = match (out, v) {
                (_, Verdict::Fail) | (Verdict::Fail, _) => Verdict::Fail,
                (_, Verdict::Inconclusive) | (Verdict::Inconclusive, _) => Verdict::Inconclusive,
                (o, _) => o,
            };
        }
        out
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// One side's quantile: the estimate and its two-sided confidence interval (`None` where the
/// sample is too small to bound that side: below rank 1 or above rank n).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileEstimate {
    /// Observations.
    pub count: u64,
    /// The nearest-rank quantile.
    pub value: Option<f64>,
    /// Lower confidence bound.
    pub lower: Option<f64>,
    /// Upper confidence bound.
    pub upper: Option<f64>,
}

/// The quantile `q` of `h` with a distribution-free interval at `confidence` (two-sided).
pub fn quantile_interval(h: &dyn Ranked, q: f64, confidence: f64) -> QuantileEstimate {
    let n = h.observations();
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let nf = n as f64;
    let spread = z * (nf * q * (1.0 - q)).sqrt();
    let lo_rank = (nf * q - spread).floor();
    let hi_rank = (nf * q + spread).ceil() + 1.0;
    QuantileEstimate {
        count: n,
        value: h.estimate(q),
        lower: (lo_rank >= 1.0 && n > 0)
            .then(|| h.rank_bounds(lo_rank as u64).map(|(lo, _)| lo))
            .flatten(),
        upper: (hi_rank <= nf)
            .then(|| h.rank_bounds(hi_rank as u64).map(|(_, hi)| hi))
            .flatten()
            .filter(|hi| hi.is_finite()),
    }
}

/// Settings of a latency check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRule {
    /// Quantiles compared.
    pub quantiles: Vec<f64>,
    /// The candidate may be this many times the baseline (1.1 = 10 % slower).
    pub max_ratio: f64,
    /// Confidence of each interval.
    pub confidence: f64,
    /// Fewer observations on either side is inconclusive.
    pub min_count: u64,
}

impl Default for LatencyRule {
    fn default() -> Self {
        LatencyRule {
            quantiles: vec![0.5, 0.95, 0.99],
            max_ratio: 1.1,
            confidence: 0.90,
            min_count: 200,
        }
    }
}

/// One quantile's comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileCheck {
    /// The quantile.
    pub q: f64,
    /// Baseline.
    pub baseline: QuantileEstimate,
    /// Candidate.
    pub candidate: QuantileEstimate,
    /// Candidate estimate / baseline estimate.
    pub ratio: Option<f64>,
    /// The answer.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// Compares the candidate's latency at `q` with the baseline's.
pub fn latency(
    baseline: &dyn Ranked,
    candidate: &dyn Ranked,
    q: f64,
    rule: &LatencyRule,
) -> QuantileCheck {
    let b = quantile_interval(baseline, q, rule.confidence);
    let c = quantile_interval(candidate, q, rule.confidence);
    let ratio = match (b.value, c.value) {
        (Some(bv), Some(cv)) if bv > 0.0 => Some(cv / bv),
        _ => None,
    };
    let r = rule.max_ratio;
    let (verdict, reason) = if b.count < rule.min_count || c.count < rule.min_count {
        (
            Verdict::Inconclusive,
            format!(
                "too few requests: {} baseline, {} candidate (at least {} each)",
                b.count, c.count, rule.min_count
            ),
        )
    } else {
        match (b.lower, b.upper, c.lower, c.upper) {
            (_, Some(bh), Some(cl), _) if cl > r * bh => (
                Verdict::Fail,
                format!(
                    "slower: the candidate's p{} is at least {cl:.4}, above {r} × the baseline's \
                     at most {bh:.4}",
                    q * 100.0
                ),
            ),
            (Some(bl), _, _, Some(ch)) if ch <= r * bl => (
                Verdict::Pass,
                format!(
                    "not slower than allowed: the candidate's p{} is at most {ch:.4}, within {r} × \
                     the baseline's at least {bl:.4}",
                    q * 100.0
                ),
            ),
            _ => (
                Verdict::Inconclusive,
                format!(
                    "cannot tell yet: the intervals are too wide to decide {r} × at p{} (more \
                     requests narrow them)",
                    q * 100.0
                ),
            ),
        }
    };
    QuantileCheck {
        q,
        baseline: b,
        candidate: c,
        ratio,
        verdict,
        reason,
    }
}

/// A proportion and its Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    /// Events counted (bad ones).
    pub events: u64,
    /// Out of.
    pub total: u64,
    /// events / total.
    pub rate: f64,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

/// `events` of `total` with a two-sided Wilson interval at `confidence`.
pub fn wilson(events: u64, total: u64, confidence: f64) -> Proportion {
    if total == 0 {
        return Proportion {
            events,
            total,
            rate: 0.0,
            lower: 0.0,
            upper: 1.0,
        };
    }
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let n = total as f64;
    let p = (events as f64 / n).min(1.0);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Proportion {
        events,
        total,
        rate: p,
        lower: (centre - half).max(0.0),
        upper: (centre + half).min(1.0),
    }
}

/// Settings of an error-rate check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRule {
    /// The candidate's error rate may be this many times the baseline's.
    pub max_ratio: f64,
    /// … or this much above it, whichever allows more (absolute, 0.001 = 0.1 point).
    pub max_increase: f64,
    /// Confidence of each interval.
    pub confidence: f64,
    /// Fewer events counted on either side is inconclusive.
    pub min_total: u64,
}

impl Default for ErrorRule {
    fn default() -> Self {
        ErrorRule {
            max_ratio: 1.5,
            max_increase: 0.001,
            confidence: 0.95,
            min_total: 200,
        }
    }
}

/// An error-rate comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCheck {
    /// Baseline errors.
    pub baseline: Proportion,
    /// Candidate errors.
    pub candidate: Proportion,
    /// The answer.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// Compares error proportions (`bad` of `total` each side).
pub fn errors(baseline: (u64, u64), candidate: (u64, u64), rule: &ErrorRule) -> ErrorCheck {
    let b = wilson(baseline.0, baseline.1, rule.confidence);
    let c = wilson(candidate.0, candidate.1, rule.confidence);
    let allowed = |p: f64| (rule.max_ratio * p).max(p + rule.max_increase);
    let (verdict, reason) = if b.total < rule.min_total || c.total < rule.min_total {
        (
            Verdict::Inconclusive,
            format!(
                "too few events: {} baseline, {} candidate (at least {} each)",
                b.total, c.total, rule.min_total
            ),
        )
    } else if c.lower > allowed(b.upper) {
        (
            Verdict::Fail,
            format!(
                "more errors: the candidate's rate is at least {:.5}, above the {:.5} the \
                 baseline's (at most {:.5}) allows",
                c.lower,
                allowed(b.upper),
                b.upper
            ),
        )
    } else if c.upper <= allowed(b.lower) {
        (
            Verdict::Pass,
            format!(
                "no more errors than allowed: the candidate's rate is at most {:.5}, within the \
                 {:.5} the baseline's (at least {:.5}) allows",
                c.upper,
                allowed(b.lower),
                b.lower
            ),
        )
    } else {
        (
            Verdict::Inconclusive,
            "cannot tell yet: the error rates' intervals straddle what is allowed".to_owned(),
        )
    };
    ErrorCheck {
        baseline: b,
        candidate: c,
        verdict,
        reason,
    }
}

/// The candidate's burn rate of an SLO over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurnCheck {
    /// Bad events of the candidate.
    pub bad: Proportion,
    /// Burn rate: bad fraction / (1 − objective).
    pub burn: f64,
    /// Its bounds.
    pub burn_lower: f64,
    /// Upper bound.
    pub burn_upper: f64,
    /// The answer.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// Whether the candidate burns an SLO's budget faster than `max_burn` (1 = exactly on budget).
pub fn burn(
    bad: u64,
    total: u64,
    objective: f64,
    max_burn: f64,
    confidence: f64,
    min_total: u64,
) -> BurnCheck {
    let p = wilson(bad, total, confidence);
    let budget = (1.0 - objective).max(f64::MIN_POSITIVE);
    let (lo, mid, hi) = (p.lower / budget, p.rate / budget, p.upper / budget);
    let (verdict, reason) = if total < min_total {
        (
            Verdict::Inconclusive,
            format!("too few events: {total} (at least {min_total})"),
        )
    } else if lo > max_burn {
        (
            Verdict::Fail,
            format!("burns the budget at least {lo:.2}× (allowed {max_burn}×)"),
        )
    } else if hi <= max_burn {
        (
            Verdict::Pass,
            format!("burns the budget at most {hi:.2}× (allowed {max_burn}×)"),
        )
    } else {
        (
            Verdict::Inconclusive,
            format!("cannot tell yet: burn {lo:.2}× … {hi:.2}× straddles {max_burn}×"),
        )
    };
    BurnCheck {
        bad: p,
        burn: mid,
        burn_lower: lo,
        burn_upper: hi,
        verdict,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_quantile_matches_tables() {
        for (p, z) in [
            (0.975, 1.959_963_985),
            (0.995, 2.575_829_304),
            (0.5, 0.0),
            (0.01, -2.326_347_874),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-7, "{p}");
        }
    }

    #[test]
    fn wilson_matches_a_known_interval() {
        // 10 of 100 at 95 %: [0.0552, 0.1744] (Newcombe 1998, method 3).
        let w = wilson(10, 100, 0.95);
        assert!(
            (w.lower - 0.0552).abs() < 1e-4 && (w.upper - 0.1744).abs() < 1e-4,
            "{w:?}"
        );
    }

    fn sample(n: u64, scale: f64) -> ValueHistogram {
        let mut h = ValueHistogram::new();
        for i in 1..=n {
            // A deterministic spread: the inverse CDF of an exponential at (i - 0.5) / n.
            let u = (i as f64 - 0.5) / n as f64;
            h.record(-scale * (1.0 - u).ln()).unwrap();
        }
        h
    }

    #[test]
    fn latency_passes_equal_fails_slower_and_waits_on_little_data() {
        let rule = LatencyRule::default();
        let base = sample(20_000, 1.0);
        assert_eq!(
            latency(&base, &sample(20_000, 1.0), 0.99, &rule).verdict,
            Verdict::Pass
        );
        let slow = latency(&base, &sample(20_000, 1.3), 0.99, &rule);
        assert_eq!(slow.verdict, Verdict::Fail, "{slow:?}");
        assert!((slow.ratio.unwrap() - 1.3).abs() < 0.01);
        assert_eq!(
            latency(&base, &sample(50, 1.0), 0.99, &rule).verdict,
            Verdict::Inconclusive
        );
        // The interval holds the true quantile (ln 100 for an exponential's p99).
        let e = quantile_interval(&base, 0.99, 0.95);
        assert!(
            e.lower.unwrap() < 100f64.ln() && 100f64.ln() < e.upper.unwrap(),
            "{e:?}"
        );
    }

    #[test]
    fn bucket_histograms_get_intervals_from_their_edges() {
        use crate::buckets::Layout;
        let layout = |counts: Vec<u64>| Layout {
            bounds: vec![0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY],
            count: counts.iter().sum(),
            sum: 0.0,
            counts,
        };
        let base = BucketHistogram::new(layout(vec![2_000, 5_000, 2_000, 800, 190, 10])).unwrap();
        let e = quantile_interval(&base, 0.5, 0.9);
        // The median is in (0.1, 0.25]: the interval is that bucket's edges.
        assert_eq!((e.lower, e.upper), (Some(0.1), Some(0.25)));
        // p99.99 is in the open top bucket: no upper bound, so the check cannot pass on it.
        assert_eq!(quantile_interval(&base, 0.9999, 0.9).upper, None);
        let rule = LatencyRule {
            quantiles: vec![0.5],
            max_ratio: 1.1,
            ..LatencyRule::default()
        };
        // Everything two buckets slower: the median moves from (0.1, 0.25] to (0.5, 1.0].
        let slow = BucketHistogram::new(layout(vec![0, 0, 2_000, 5_000, 2_990, 10])).unwrap();
        assert_eq!(latency(&base, &slow, 0.5, &rule).verdict, Verdict::Fail);
        // The same buckets: the interval is one bucket wide, more than 10 %: inconclusive.
        assert_eq!(
            latency(&base, &base, 0.5, &rule).verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn errors_and_burn_decide_both_ways() {
        let rule = ErrorRule::default();
        assert_eq!(
            errors((100, 100_000), (100, 100_000), &rule).verdict,
            Verdict::Pass
        );
        assert_eq!(
            errors((100, 100_000), (300, 100_000), &rule).verdict,
            Verdict::Fail
        );
        assert_eq!(
            errors((1, 100), (3, 100), &rule).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(burn(5, 10_000, 0.99, 1.0, 0.99, 100).verdict, Verdict::Pass);
        assert_eq!(
            burn(500, 10_000, 0.99, 1.0, 0.99, 100).verdict,
            Verdict::Fail
        );
        assert_eq!(
            Verdict::overall([Verdict::Pass, Verdict::Warn, Verdict::Inconclusive]),
            Verdict::Inconclusive
        );
        assert_eq!(
            Verdict::overall([Verdict::Inconclusive, Verdict::Fail]),
            Verdict::Fail
        );
        assert_eq!(
            Verdict::overall([Verdict::Pass, Verdict::Warn]),
            Verdict::Pass
        );
    }
}
