//! Drift statistics between a reference and a current distribution, from mergeable summaries.
//!
//! Pure functions over [`ValueHistogram`]s and [`Categorical`]s: no clock, no store. Every
//! definition below is the SPEC's (§ Drift), computed from histogram buckets; `docs/DRIFT.md`
//! states each one's error against the raw-sample computation, and
//! `shared/tests/drift_vectors.rs` checks them against scipy on raw samples.
//!
//! Numeric series, with `n`/`m` the reference/current counts and `n_e = nm/(n+m)`:
//! - `ks`: the largest gap between the two CDFs at bucket boundaries, where both CDFs are
//!   exact. `ks_bounds = [ks, hi]` where `hi` also lets each CDF move anywhere inside a bucket,
//!   so the raw-sample D always lies inside. `ks_p_value`: the asymptotic two-sided Kolmogorov
//!   distribution at `sqrt(n_e)·ks` (scipy's `kstwobign.sf`).
//! - `wasserstein`: W1 = ∫|Q_ref(u) − Q_cur(u)| du with each bucket's mass spread uniformly
//!   over its value range (a point mass when the bucket holds one value), the outer buckets
//!   clipped to the exact min and max. `wasserstein_norm` = W1 / σ_ref (population, from the
//!   exact moments); `None` when σ_ref = 0 and W1 > 0.
//! - `psi`: 10 bins cut at the reference deciles: `e_k` is the smallest value with
//!   F_ref ≥ k/10 (k = 1..9), read at bucket granularity (the bucket holding it); a value falls
//!   in bin #{k : e_k ≤ its bucket}, so ties go up. 0.5 is added to every bin's count on both
//!   sides before normalising; PSI = Σ (c − r)·ln(c / r). Exact when no edge's bucket holds a
//!   second distinct value; on continuous data a value within 0.1 % of an edge may fall in the
//!   neighbouring bin, which moves PSI by a share of its own size (within 1 % above PSI 2,
//!   where the SPEC's ±0.02 is smaller than one value's weight; docs/DRIFT.md).
//! - `js`: the Jensen–Shannon distance (natural log, as `scipy.spatial.distance.jensenshannon`)
//!   over the same 10 bins, without pseudo-counts.
//!
//! Categorical series: `psi` (same pseudo-count), `js`, `chi2` and `p_value` of the 2×K
//! homogeneity test (no continuity correction; categories empty on both sides dropped), and
//! `new_categories`: the share of current mass in values the reference never saw.
//!
//! Empty sides: when either side has no observation there is nothing to compare; the
//! functions return `None` and the report says so.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::categorical::Categorical;
use crate::histogram::{ValueBucket, ValueHistogram};

/// Floors and significance of the drift verdict (`[drift]` in the aggregator config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftConfig {
    /// Significance before the Bonferroni correction. Default 0.001.
    pub alpha: f64,
    /// KS effect floor. Default 0.05.
    pub ks_floor: f64,
    /// PSI effect floor (numeric and categorical). Default 0.1.
    pub psi_floor: f64,
    /// Normalised Wasserstein effect floor. Default 0.1.
    pub wasserstein_norm_floor: f64,
    /// Jensen–Shannon effect floor (categorical). Default 0.1.
    pub js_floor: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            // One false alarm per thousand clean comparisons, before Bonferroni.
            alpha: 0.001,
            // Effect floors as commonly used for PSI (0.1 = "moderate shift") and KS.
            ks_floor: 0.05,
            psi_floor: 0.1,
            wasserstein_norm_floor: 0.1,
            js_floor: 0.1,
        }
    }
}

/// The verdict on one series. Ordered by severity (serialized in lower case, `no_data` with
/// an underscore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// One side of the comparison has no observations: nothing can be said.
    NoData,
    /// No large difference.
    Ok,
    /// A large difference that is not significant (too little data).
    Warn,
    /// Two hosts differ, and nothing says which one moved (hosts mode with two hosts).
    Differ,
    /// A large and significant difference.
    Drift,
}

impl Status {
    /// As tables print it.
    pub fn label(self) -> &'static str {
        match self {
            Status::NoData => "NO DATA",
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Differ => "DIFFER",
            Status::Drift => "DRIFT",
        }
    }
}

/// Drift figures of a numeric series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericDrift {
    /// Observations in the reference.
    pub reference_count: u64,
    /// Observations in the current window.
    pub current_count: u64,
    /// Population stability index over reference-decile bins.
    pub psi: f64,
    /// Jensen–Shannon distance over the same bins.
    pub js: f64,
    /// KS D at bucket boundaries.
    pub ks: f64,
    /// Bounds that contain the raw-sample KS D.
    pub ks_bounds: [f64; 2],
    /// Asymptotic two-sided p-value of `ks`.
    pub ks_p_value: f64,
    /// W1 distance, in the series' unit.
    pub wasserstein: f64,
    /// W1 / reference standard deviation; `None` when that is 0 and W1 > 0.
    pub wasserstein_norm: Option<f64>,
}

/// Drift figures of a categorical series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalDrift {
    /// Observations in the reference.
    pub reference_count: u64,
    /// Observations in the current window.
    pub current_count: u64,
    /// Population stability index over categories.
    pub psi: f64,
    /// Jensen–Shannon distance over categories.
    pub js: f64,
    /// Chi-square statistic of the 2×K homogeneity test.
    pub chi2: f64,
    /// Its p-value (K − 1 degrees of freedom).
    pub p_value: f64,
    /// Share of current mass in categories the reference never saw.
    pub new_categories: f64,
}

/// Aligns both sides' buckets (they share one layout): `(lo, hi, reference, current)`. Both
/// lists come in ascending key order ([`ValueHistogram::buckets`]) with each key once, so one
/// merge pass aligns them.
fn aligned(reference: &[ValueBucket], current: &[ValueBucket]) -> Vec<(f64, f64, u64, u64)> {
    debug_assert!(reference.is_sorted_by(|x, y| x.key < y.key));
    debug_assert!(current.is_sorted_by(|x, y| x.key < y.key));
    let mut out = Vec::with_capacity(reference.len().max(current.len()) + 1);
    let (mut i, mut j) = (0, 0);
    loop {
        match (reference.get(i), current.get(j)) {
            (Some(r), Some(c)) if r.key == c.key => {
                out.push((r.lo, r.hi, r.count, c.count));
                i += 1;
                j += 1;
            }
            (Some(r), Some(c)) if r.key < c.key => {
                out.push((r.lo, r.hi, r.count, 0));
                i += 1;
            }
            (Some(r), None) => {
                out.push((r.lo, r.hi, r.count, 0));
                i += 1;
            }
            (_, Some(c)) => {
                out.push((c.lo, c.hi, 0, c.count));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// KS D at bucket boundaries and the upper bound that allows any movement inside buckets.
/// `span` is the exact smallest and largest value on either side. A bucket holds one value
/// only when that is known: the zero bucket, or a bucket that the span clips to one point.
fn ks(buckets: &[(f64, f64, u64, u64)], n: f64, m: f64, span: (f64, f64)) -> (f64, f64) {
    let (mut fr, mut fc) = (0.0f64, 0.0f64);
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for (b_lo, b_hi, r, c) in buckets {
        let (pr, pc) = (fr, fc);
        fr += *r as f64 / n;
        fc += *c as f64 / m;
        lo = lo.max((fr - fc).abs());
        // Inside a bucket that holds more than one value, each raw CDF may sit anywhere
        // between its values at the bucket's edges. A one-value bucket has no inside.
        if (*b_lo).max(span.0) < (*b_hi).min(span.1) {
            hi = hi.max((fr - pc).abs()).max((fc - pr).abs());
        }
    }
    (lo, hi.max(lo))
}

/// The Kolmogorov distribution's survival function Q(λ) = 2 Σ (−1)^{k−1} e^{−2k²λ²}.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if !lambda.is_finite() || lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // The alternating series converges slowly here; use the theta-function form.
        let y = (-std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda)).exp();
        let mut sum = 0.0;
        for k in 0..20 {
            let j = (2 * k + 1) as f64;
            sum += y.powf(j * j);
        }
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / lambda * sum;
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let kf = k as f64;
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        sum += if k % 2 == 1 { term } else { -term };
        if term < 1e-300 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Asymptotic two-sided KS p-value for D with sample sizes `n` and `m`.
pub fn ks_p_value(d: f64, n: u64, m: u64) -> f64 {
    let (n, m) = (n as f64, m as f64);
    let ne = n * m / (n + m);
    kolmogorov_sf(ne.sqrt() * d)
}

/// One side's quantile function as segments over u: (u0, u1, x0, x1), x in the value's unit.
fn quantile_segments(buckets: &[ValueBucket], total: f64, min: f64, max: f64) -> Vec<[f64; 4]> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut u = 0.0;
    for b in buckets {
        let lo = b.lo.max(min);
        let hi = b.hi.min(max);
        let w = b.count as f64 / total;
        out.push([u, u + w, lo, hi.max(lo)]);
        u += w;
    }
    if let Some(last) = out.last_mut() {
        last[1] = 1.0;
    }
    out
}

/// ∫ |a(u) − b(u)| du over one u-interval where both are linear.
fn abs_linear_integral(len: f64, d0: f64, d1: f64) -> f64 {
    if len <= 0.0 {
        return 0.0;
    }
    // Both forms are computed and one is picked, without a branch: the signs are as good as
    // random across a report's buckets, and a mispredicted branch here cost more than the
    // division (perf, the drift hosts bench).
    let same_sign = (d0 < 0.0) == (d1 < 0.0) || d0 == 0.0 || d1 == 0.0;
    let abs_sum = d0.abs() + d1.abs();
    let trapezoid = len * abs_sum / 2.0;
    let crossing = len * (d0 * d0 + d1 * d1) / (2.0 * abs_sum);
    if same_sign { trapezoid } else { crossing }
}

fn at(seg: &[f64; 4], u: f64) -> f64 {
    let span = seg[1] - seg[0];
    if span <= 0.0 {
        return seg[2];
    }
    seg[2] + (seg[3] - seg[2]) * ((u - seg[0]) / span).clamp(0.0, 1.0)
}

/// W1 between two quantile functions given as segments.
fn wasserstein_distance(a: &[[f64; 4]], b: &[[f64; 4]]) -> f64 {
    // Each side's value at `u`, carried from one step's end to the next step's start: a step
    // ends where one segment (or both) ends, and the next segment starts at that `u`, where
    // its value is its first value.
    let start = |seg: &[f64; 4], u: f64| if u == seg[0] { seg[2] } else { at(seg, u) };
    let (Some(a0), Some(b0)) = (a.first(), b.first()) else {
        return 0.0;
    };
    let (mut i, mut j) = (0, 0);
    let mut u = 0.0;
    let mut total = 0.0;
    let (mut va, mut vb) = (start(a0, u), start(b0, u));
    while i < a.len() && j < b.len() {
        let end = a[i][1].min(b[j][1]);
        if end > u {
            let (ea, eb) = (at(&a[i], end), at(&b[j], end));
            total += abs_linear_integral(end - u, va - vb, ea - eb);
            (u, va, vb) = (end, ea, eb);
        }
        if a[i][1] <= u {
            i += 1;
            if let Some(seg) = a.get(i) {
                va = start(seg, u);
            }
        }
        if j < b.len() && b[j][1] <= u {
            j += 1;
            if let Some(seg) = b.get(j) {
                vb = start(seg, u);
            }
        }
    }
    total
}

/// Decile bins of the reference: for each aligned bucket, its bin 0..=9. Whole buckets go to
/// one bin, the SPEC's "ties go up" at bucket granularity: exact whenever no bucket holding a
/// decile edge holds a second distinct value (discrete data, token counts, values with fewer
/// than 3 significant digits). Splitting a bucket by the reference's ranks was tried and is
/// worse on real data: tied values (standardised integers such as `load_diabetes`' blood
/// pressure) all belong above the edge.
fn decile_bins(buckets: &[(f64, f64, u64, u64)], n: u64) -> Vec<usize> {
    // Edge k (1..=9) is the first bucket whose cumulative reference count reaches k·n/10; a
    // bucket's bin is the number of edges at or before it.
    let mut out = Vec::with_capacity(buckets.len());
    let mut cum: u64 = 0;
    let mut k = 1u64;
    for (_, _, r, _) in buckets {
        cum += r;
        while k <= 9 && u128::from(cum) * 10 >= u128::from(k) * u128::from(n) {
            k += 1;
        }
        out.push((k - 1) as usize);
    }
    out
}

/// PSI with 0.5 added to every bin on both sides.
fn psi(r: &[f64], c: &[f64]) -> f64 {
    let (nr, nc) = (r.iter().sum::<f64>(), c.iter().sum::<f64>());
    let k = r.len() as f64;
    r.iter()
        .zip(c)
        .map(|(ri, ci)| {
            let p = (ri + 0.5) / (nr + 0.5 * k);
            let q = (ci + 0.5) / (nc + 0.5 * k);
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Jensen–Shannon distance (natural log), no pseudo-counts.
fn js(r: &[f64], c: &[f64]) -> f64 {
    let (nr, nc) = (r.iter().sum::<f64>(), c.iter().sum::<f64>());
    if nr <= 0.0 || nc <= 0.0 {
        return 0.0;
    }
    let mut div = 0.0;
    for (ri, ci) in r.iter().zip(c) {
        let (p, q) = (ri / nr, ci / nc);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            div += 0.5 * p * (p / m).ln();
        }
        if q > 0.0 {
            div += 0.5 * q * (q / m).ln();
        }
    }
    div.max(0.0).sqrt()
}

/// Drift of a numeric series; `None` when either side is empty.
pub fn numeric(reference: &ValueHistogram, current: &ValueHistogram) -> Option<NumericDrift> {
    let (n, m) = (reference.count(), current.count());
    let (rmin, rmax) = reference.range()?;
    let (cmin, cmax) = current.range()?;
    let rb = reference.buckets();
    let cb = current.buckets();
    let buckets = aligned(&rb, &cb);
    let span = (rmin.min(cmin), rmax.max(cmax));
    let (ks_lo, ks_hi) = ks(&buckets, n as f64, m as f64, span);
    let wasserstein = wasserstein_distance(
        &quantile_segments(&rb, n as f64, rmin, rmax),
        &quantile_segments(&cb, m as f64, cmin, cmax),
    );
    let sigma = reference.stddev().unwrap_or(0.0);
    let wasserstein_norm = if sigma > 0.0 {
        Some(wasserstein / sigma)
    } else if wasserstein == 0.0 {
        Some(0.0)
    } else {
        None
    };
    let bins = decile_bins(&buckets, n);
    let (mut r10, mut c10) = ([0.0f64; 10], [0.0f64; 10]);
    for ((_, _, r, c), bin) in buckets.iter().zip(&bins) {
        r10[*bin] += *r as f64;
        c10[*bin] += *c as f64;
    }
    Some(NumericDrift {
        reference_count: n,
        current_count: m,
        psi: psi(&r10, &c10),
        js: js(&r10, &c10),
        ks: ks_lo,
        ks_bounds: [ks_lo, ks_hi],
        ks_p_value: ks_p_value(ks_lo, n, m),
        wasserstein,
        wasserstein_norm,
    })
}

/// Drift of a categorical series; `None` when either side is empty.
pub fn categorical(reference: &Categorical, current: &Categorical) -> Option<CategoricalDrift> {
    let (n, m) = (reference.total(), current.total());
    if n == 0 || m == 0 {
        return None;
    }
    let mut cats: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (k, v) in reference.counts() {
        cats.entry(k.as_str()).or_default().0 += *v as f64;
    }
    for (k, v) in current.counts() {
        cats.entry(k.as_str()).or_default().1 += *v as f64;
    }
    if reference.other() > 0 || current.other() > 0 {
        let e = cats.entry(crate::categorical::OTHER).or_default();
        e.0 += reference.other() as f64;
        e.1 += current.other() as f64;
    }
    cats.retain(|_, (r, c)| *r > 0.0 || *c > 0.0);
    let r: Vec<f64> = cats.values().map(|(r, _)| *r).collect();
    let c: Vec<f64> = cats.values().map(|(_, c)| *c).collect();
    let (nf, mf) = (n as f64, m as f64);
    let total = nf + mf;
    let mut chi2 = 0.0;
    for (ri, ci) in r.iter().zip(&c) {
        let col = ri + ci;
        let er = nf * col / total;
        let ec = mf * col / total;
        chi2 += (ri - er).powi(2) / er + (ci - ec).powi(2) / ec;
    }
    let df = r.len().saturating_sub(1);
    let p_value = if df == 0 {
        1.0
    } else {
        chi2_sf(chi2, df as f64)
    };
    let new_mass: f64 = cats
        .iter()
        .filter(|(k, (rv, _))| *rv == 0.0 && **k != crate::categorical::OTHER)
        .map(|(_, (_, cv))| *cv)
        .sum();
    Some(CategoricalDrift {
        reference_count: n,
        current_count: m,
        psi: psi(&r, &c),
        js: js(&r, &c),
        chi2,
        p_value,
        new_categories: new_mass / mf,
    })
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised upper incomplete gamma Q(a, x) (series below a + 1, continued fraction above).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let gln = ln_gamma(a);
    if x < a + 1.0 {
        let mut sum = 1.0 / a;
        let mut del = sum;
        let mut ap = a;
        for _ in 0..10_000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        let p = sum * (-x + a * x.ln() - gln).exp();
        (1.0 - p).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        ((-x + a * x.ln() - gln).exp() * h).clamp(0.0, 1.0)
    }
}

/// Survival function of the chi-square distribution with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

/// The verdict for a numeric series in a report of `tests` series (Bonferroni), with why.
pub fn numeric_status(d: &NumericDrift, config: &DriftConfig, tests: usize) -> (Status, String) {
    let large = numeric_is_large(d, config);
    let w = d.wasserstein_norm.map_or_else(
        || "undefined (reference σ = 0)".to_owned(),
        |w| format!("{w:.3}"),
    );
    let effects = format!(
        "KS {:.3} (floor {}), PSI {:.3} (floor {}), W/σ {w} (floor {})",
        d.ks, config.ks_floor, d.psi, config.psi_floor, config.wasserstein_norm_floor
    );
    verdict(
        large,
        d.ks_p_value,
        config,
        tests,
        (d.reference_count, d.current_count),
        &effects,
    )
}

/// Whether any effect of a numeric comparison reaches its floor.
fn numeric_is_large(d: &NumericDrift, config: &DriftConfig) -> bool {
    let large_w = d
        .wasserstein_norm
        .is_none_or(|w| w >= config.wasserstein_norm_floor);
    d.ks >= config.ks_floor || d.psi >= config.psi_floor || large_w
}

/// Whether a numeric comparison drifts in a report of `tests` series: [`numeric_status`]'s
/// verdict is [`Status::Drift`] exactly when this is true. It writes no reason, for callers
/// that judge many comparisons and keep few (the hosts report's outlier passes).
pub fn numeric_drifts(d: &NumericDrift, config: &DriftConfig, tests: usize) -> bool {
    numeric_is_large(d, config) && significant(d.ks_p_value, config, tests)
}

/// Whether a categorical comparison drifts; see [`numeric_drifts`].
pub fn categorical_drifts(d: &CategoricalDrift, config: &DriftConfig, tests: usize) -> bool {
    categorical_is_large(d, config) && significant(d.p_value, config, tests)
}

/// Whether any effect of a categorical comparison reaches its floor.
fn categorical_is_large(d: &CategoricalDrift, config: &DriftConfig) -> bool {
    d.psi >= config.psi_floor || d.js >= config.js_floor
}

/// The Bonferroni threshold of a report of `tests` comparisons.
fn threshold(config: &DriftConfig, tests: usize) -> f64 {
    config.alpha / tests.max(1) as f64
}

/// Whether `p` is significant in a report of `tests` comparisons.
fn significant(p: f64, config: &DriftConfig, tests: usize) -> bool {
    p < threshold(config, tests)
}

/// The verdict for a categorical series in a report of `tests` series (Bonferroni), with why.
pub fn categorical_status(
    d: &CategoricalDrift,
    config: &DriftConfig,
    tests: usize,
) -> (Status, String) {
    let large = categorical_is_large(d, config);
    let effects = format!(
        "PSI {:.3} (floor {}), JS {:.3} (floor {})",
        d.psi, config.psi_floor, d.js, config.js_floor
    );
    verdict(
        large,
        d.p_value,
        config,
        tests,
        (d.reference_count, d.current_count),
        &effects,
    )
}

fn verdict(
    large: bool,
    p: f64,
    config: &DriftConfig,
    tests: usize,
    (n, m): (u64, u64),
    effects: &str,
) -> (Status, String) {
    let threshold = threshold(config, tests);
    let significant = significant(p, config, tests);
    // The part before the first ": " is the summary tables print; the figures follow.
    match (large, significant) {
        (true, true) => (
            Status::Drift,
            format!("large and significant: {effects}; p = {p:.1e} < {threshold:.1e}"),
        ),
        (true, false) => (
            Status::Warn,
            format!(
                "large but too little data to be significant: p = {p:.1e} ≥ {threshold:.1e} \
                 with {n} reference and {m} current observations; {effects}"
            ),
        ),
        (false, true) => (
            Status::Ok,
            format!("significant but every effect below its floor: p = {p:.1e}; {effects}"),
        ),
        (false, false) => (
            Status::Ok,
            format!("no large or significant difference: {effects}; p = {p:.1e}"),
        ),
    }
}

#[cfg(test)]
mod tests;
