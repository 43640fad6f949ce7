//! Calibration of the deployment gate at its default settings, seeded (the counts are
//! reproducible; each run prints them; docs/GATE.md has the table). Healthy pairs draw both
//! versions from one log-normal latency distribution with a 1 % error rate; regressed pairs
//! widen the candidate's tail so its p99 is 20 % higher (median unchanged), triple its error
//! rate, or shift one input by 0.2 standard deviations. Per sample size (requests per side):
//! the false-fail rate of healthy pairs (must stay at or under 1 %), how often they pass, and
//! the power (share of regressions failed) of each kind.

use pitot_shared::drift::{self, DriftConfig, Status};
use pitot_shared::gate::{self, ErrorRule, LatencyRule, Verdict};
use pitot_shared::histogram::ValueHistogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Median 250 ms; σ = 0.5 (p99 ≈ 3.2 × median); `tail` widens σ.
fn latencies(rng: &mut StdRng, n: usize, tail: f64) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for _ in 0..n {
        h.record(0.25 * ((0.5 + tail) * normal(rng)).exp())
            .expect("finite");
    }
    h
}

fn bad(rng: &mut StdRng, n: usize, rate: f64) -> (u64, u64) {
    (
        (0..n).filter(|_| rng.random::<f64>() < rate).count() as u64,
        n as u64,
    )
}

/// σ widened so that p99 = 1.2 × the baseline's: exp(2.326 σ') = 1.2 exp(2.326 σ).
const TAIL_FOR_P99_PLUS_20: f64 = 0.078_38;

/// The latency and error checks' overall verdict.
fn gate_verdict(rng: &mut StdRng, n: usize, tail: f64, error_rate: f64) -> Verdict {
    let rule = LatencyRule::default();
    let (b, c) = (latencies(rng, n, 0.0), latencies(rng, n, tail));
    let mut verdicts: Vec<Verdict> = rule
        .quantiles
        .iter()
        .map(|q| gate::latency(&b, &c, *q, &rule).verdict)
        .collect();
    verdicts.push(
        gate::errors(
            bad(rng, n, 0.01),
            bad(rng, n, error_rate),
            &ErrorRule::default(),
        )
        .verdict,
    );
    Verdict::overall(verdicts)
}

fn input_flagged(rng: &mut StdRng, n: usize, shift: f64) -> bool {
    let mut a = ValueHistogram::new();
    let mut b = ValueHistogram::new();
    for _ in 0..n {
        a.record(300.0 + 60.0 * normal(rng)).expect("finite");
        b.record(300.0 + 60.0 * (normal(rng) + shift))
            .expect("finite");
    }
    let d = drift::numeric(&a, &b).expect("data");
    drift::numeric_status(&d, &DriftConfig::default(), 1).0 == Status::Drift
}

#[test]
fn healthy_pairs_rarely_fail_and_regressions_are_caught_as_data_grows() {
    let mut rng = StdRng::seed_from_u64(0x6a7e_0001);
    eprintln!(
        "n/side  reps  healthy: fail pass  | p99+20%: fail | errors×3: fail | input 0.2σ: flagged"
    );
    for (n, reps) in [(500, 400), (2_000, 400), (10_000, 200), (50_000, 60)] {
        let healthy: Vec<Verdict> = (0..reps)
            .map(|_| gate_verdict(&mut rng, n, 0.0, 0.01))
            .collect();
        let false_fail = healthy.iter().filter(|v| **v == Verdict::Fail).count();
        let passed = healthy.iter().filter(|v| **v == Verdict::Pass).count();
        let p99 = (0..reps)
            .filter(|_| gate_verdict(&mut rng, n, TAIL_FOR_P99_PLUS_20, 0.01) == Verdict::Fail)
            .count();
        let errs = (0..reps)
            .filter(|_| gate_verdict(&mut rng, n, 0.0, 0.03) == Verdict::Fail)
            .count();
        let inputs = (0..reps)
            .filter(|_| input_flagged(&mut rng, n, 0.2))
            .count();
        let pct = |k: usize| 100.0 * k as f64 / reps as f64;
        eprintln!(
            "{n:>6}  {reps:>4}  {:>6.1} % {:>5.1} % | {:>7.1} % | {:>8.1} % | {:>8.1} %",
            pct(false_fail),
            pct(passed),
            pct(p99),
            pct(errs),
            pct(inputs)
        );
        assert!(
            false_fail * 100 <= reps,
            "n = {n}: {false_fail} of {reps} healthy pairs failed (must be at most 1 %)"
        );
        if n >= 50_000 {
            assert!(
                p99 * 100 >= reps * 95,
                "n = {n}: p99 +20 % failed only {p99} of {reps}"
            );
            assert!(
                passed * 100 >= reps * 90,
                "n = {n}: healthy passed only {passed} of {reps}"
            );
        }
        if n >= 10_000 {
            assert!(
                errs * 100 >= reps * 95,
                "n = {n}: errors ×3 failed only {errs} of {reps}"
            );
            assert!(
                inputs * 100 >= reps * 95,
                "n = {n}: a 0.2σ input shift flagged only {inputs}"
            );
        }
    }
}
