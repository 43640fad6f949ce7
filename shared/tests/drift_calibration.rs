//! Calibration of the drift verdict. With no drift (both sides drawn from one distribution),
//! `drift` must come up in fewer than 1 in 1 000 repetitions at 1 000, 10 000 and 100 000
//! events per side; a 0.2σ shift at 10 000 events per side must be flagged in more than 99 of
//! 100. Seeded, so the counts are reproducible; each run prints them. At 1 000 events the
//! effect floors do not bind (a significant D is already above `ks_floor`), so the false-alarm
//! rate is the p-value's own size; 20 000 repetitions measure it to about ±0.02 %.

use pitot_shared::drift::{self, DriftConfig, Status};
use pitot_shared::histogram::ValueHistogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A latency-like sample: N(100, 15) shifted by `shift_sigmas` standard deviations.
fn sample(rng: &mut StdRng, n: usize, shift_sigmas: f64) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for _ in 0..n {
        h.record(100.0 + 15.0 * (normal(rng) + shift_sigmas))
            .expect("finite");
    }
    h
}

fn verdict(rng: &mut StdRng, n: usize, shift_sigmas: f64) -> Status {
    let reference = sample(rng, n, 0.0);
    let current = sample(rng, n, shift_sigmas);
    let d = drift::numeric(&reference, &current).expect("both sides have data");
    drift::numeric_status(&d, &DriftConfig::default(), 1).0
}

#[test]
fn no_drift_is_rarely_flagged() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for (n, reps) in [(1_000, 20_000), (10_000, 2_000), (100_000, 1_000)] {
        let alarms = (0..reps)
            .filter(|_| verdict(&mut rng, n, 0.0) == Status::Drift)
            .count();
        eprintln!("n = {n}: {alarms} false alarms in {reps} repetitions");
        assert!(
            alarms * 1_000 < reps,
            "n = {n}: {alarms} false alarms in {reps} repetitions (must be < 1 in 1000)"
        );
    }
}

#[test]
fn a_fifth_of_a_sigma_is_caught_at_ten_thousand() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    let caught = (0..100)
        .filter(|_| verdict(&mut rng, 10_000, 0.2) == Status::Drift)
        .count();
    eprintln!("0.2σ shift at n = 10 000: flagged {caught} of 100");
    assert!(caught > 99, "flagged only {caught} of 100");
}
