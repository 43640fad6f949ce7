//! Unit tests of the drift math: special functions against known values, identities, and
//! the verdict rule.

use super::*;

fn hist(values: impl IntoIterator<Item = f64>) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for v in values {
        h.record(v).unwrap();
    }
    h
}

#[test]
fn special_functions_match_known_values() {
    // scipy.stats.kstwobign.sf(1.0) = 0.26999967167735456; sf(0.5) = 0.9639452436648751;
    // sf(2.0) = 0.0006709252557796953.
    assert!((kolmogorov_sf(1.0) - 0.269_999_671_677_354_56).abs() < 1e-9);
    assert!((kolmogorov_sf(0.5) - 0.963_945_243_664_875_1).abs() < 1e-9);
    assert!((kolmogorov_sf(2.0) - 0.000_670_925_255_779_695_3).abs() < 1e-12);
    // scipy.stats.chi2.sf(3.84, 1) = 0.05004352124870519; chi2.sf(10, 4) = 0.04042768199451279;
    // chi2.sf(100, 3) = 1.5541594313896026e-21.
    assert!((chi2_sf(3.84, 1.0) - 0.050_043_521_248_705_19).abs() < 1e-10);
    assert!((chi2_sf(10.0, 4.0) - 0.040_427_681_994_512_79).abs() < 1e-10);
    assert!((chi2_sf(100.0, 3.0) / 1.554_159_431_389_602_6e-21 - 1.0).abs() < 1e-9);
}

#[test]
fn identical_distributions_have_no_drift() {
    let a = hist((0..5000).map(|i| (i % 997) as f64 * 0.37));
    let d = numeric(&a, &a).unwrap();
    assert_eq!(d.ks, 0.0);
    assert!(d.psi.abs() < 1e-12 && d.js.abs() < 1e-12 && d.wasserstein.abs() < 1e-12);
    assert_eq!(numeric_status(&d, &DriftConfig::default(), 1).0, Status::Ok);
}

#[test]
fn a_shift_is_measured_in_the_unit() {
    let a = hist((0..10_000).map(|i| i as f64 / 100.0));
    let b = hist((0..10_000).map(|i| i as f64 / 100.0 + 5.0));
    let d = numeric(&a, &b).unwrap();
    assert!((d.wasserstein - 5.0).abs() < 0.01, "{}", d.wasserstein);
    assert!((d.ks - 0.05).abs() < 0.002, "{}", d.ks);
    assert!(d.ks_bounds[0] <= d.ks && d.ks <= d.ks_bounds[1]);
    assert_eq!(
        numeric_status(&d, &DriftConfig::default(), 1).0,
        Status::Drift
    );
}

#[test]
fn small_samples_warn_instead_of_alarming() {
    let a = hist((0..20).map(f64::from));
    let b = hist((0..20).map(|i| f64::from(i) + 3.0));
    let d = numeric(&a, &b).unwrap();
    let (status, reason) = numeric_status(&d, &DriftConfig::default(), 1);
    assert_eq!(status, Status::Warn, "{reason}");
    assert!(reason.contains("too little data"));
}

#[test]
fn empty_sides_have_no_figures() {
    assert!(numeric(&ValueHistogram::new(), &hist([1.0])).is_none());
    assert!(categorical(&Categorical::new(), &Categorical::new()).is_none());
}

#[test]
fn one_value_sides_are_point_masses() {
    let a = hist([7.0; 100]);
    let b = hist([9.0; 100]);
    let d = numeric(&a, &b).unwrap();
    assert!((d.wasserstein - 2.0).abs() < 1e-9);
    assert_eq!(d.ks, 1.0);
    assert_eq!(d.wasserstein_norm, None, "σ_ref is 0");
}

#[test]
fn new_categories_and_chi2() {
    let mut r = Categorical::new();
    r.record_n("en", 80, 64);
    r.record_n("fr", 20, 64);
    let mut c = Categorical::new();
    c.record_n("en", 60, 64);
    c.record_n("fr", 20, 64);
    c.record_n("de", 20, 64);
    let d = categorical(&r, &c).unwrap();
    assert!((d.new_categories - 0.2).abs() < 1e-12);
    // scipy.stats.chi2_contingency([[80,20,0],[60,20,20]], correction=False):
    // chi2 = 22.857142857142858, p = 1.088014022196331e-05.
    assert!((d.chi2 - 22.857_142_857_142_858).abs() < 1e-9, "{}", d.chi2);
    assert!((d.p_value / 1.088_014_022_196_331e-5 - 1.0).abs() < 1e-9);
}

#[test]
fn one_value_buckets_do_not_widen_ks_bounds() {
    let a = hist([3.0; 50]);
    let b = hist([3.0; 80]);
    let d = numeric(&a, &b).unwrap();
    assert_eq!(d.ks_bounds, [0.0, 0.0]);
}

#[test]
fn the_quick_drift_test_agrees_with_the_verdict() {
    // Shifts from none to large, sample sizes from too few to many, report sizes from one
    // test to many: every verdict kind occurs, and the reasonless test must say Drift exactly
    // when the verdict does.
    let config = DriftConfig::default();
    let mut kinds = std::collections::BTreeSet::new();
    for n in [20u32, 200, 5000] {
        for shift in [0.0, 0.01, 0.2, 3.0] {
            let a = hist((0..n).map(|i| f64::from(i % 97)));
            let b = hist((0..n).map(|i| f64::from(i % 97) * (1.0 + shift) + shift));
            let d = numeric(&a, &b).unwrap();
            for tests in [1, 50, 100_000] {
                let (status, _) = numeric_status(&d, &config, tests);
                kinds.insert(status);
                assert_eq!(numeric_drifts(&d, &config, tests), status == Status::Drift);
            }
        }
    }
    assert!(
        kinds.contains(&Status::Drift) && kinds.contains(&Status::Ok),
        "{kinds:?}"
    );
    let mut cats = std::collections::BTreeSet::new();
    for n in [10u64, 10_000] {
        for moved in [0u64, 1, 5] {
            let mut r = Categorical::new();
            let mut c = Categorical::new();
            for (i, v) in ["en", "fr", "de", "ja"].iter().enumerate() {
                r.record_n(v, n * (i as u64 + 1), 64);
                c.record_n(v, n * ((i as u64 + moved) % 4 + 1), 64);
            }
            let d = categorical(&r, &c).unwrap();
            for tests in [1, 100_000] {
                let (status, _) = categorical_status(&d, &config, tests);
                cats.insert(status);
                assert_eq!(
                    categorical_drifts(&d, &config, tests),
                    status == Status::Drift
                );
            }
        }
    }
    assert!(
        cats.contains(&Status::Drift) && cats.contains(&Status::Ok),
        "{cats:?}"
    );
}
