//! Drift figures from merged histograms against the raw-sample figures computed by scipy
//! (`tests/drift_vectors/gen.py` → `vectors.json`). Each sample is split across three
//! simulated hosts, recorded into Pitot's summaries, merged, and compared within the SPEC's
//! tolerances: `ks` ±0.005, `wasserstein` ±0.01·σ_ref, `psi` ±0.02 (or 1 % of it above 2),
//! `js` ±0.01, the raw `ks` inside `ks_bounds`; categorical `chi2` and `p_value` (counts are exact), `psi`, `js`,
//! `new_categories`.
//!
//! Besides synthetic samples, every feature of two real data sets that ship inside
//! scikit-learn (`load_diabetes`: 10 standardised features around ±0.05 with 16 decimals;
//! `load_breast_cancer`: 30 measurements) is compared under two splits each (by sex /
//! malignant against benign, and at random), at full precision.

use pitot_shared::categorical::Categorical;
use pitot_shared::drift;
use pitot_shared::histogram::ValueHistogram;
use serde_json::Value;

const HOSTS: usize = 3;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/drift_vectors/vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors.json")).expect("json")
}

fn merged_histogram(values: &[f64]) -> ValueHistogram {
    let mut hosts = vec![ValueHistogram::new(); HOSTS];
    for (i, v) in values.iter().enumerate() {
        hosts[i % HOSTS].record(*v).expect("finite");
    }
    let mut fleet = ValueHistogram::new();
    for h in &hosts {
        fleet.merge(h).expect("merge");
    }
    fleet
}

fn merged_categorical(counts: &Value) -> Categorical {
    let mut hosts = vec![Categorical::new(); HOSTS];
    for (k, n) in counts.as_object().expect("object") {
        let n = n.as_u64().expect("count");
        // Spread each category's count over the hosts.
        for (i, host) in hosts.iter_mut().enumerate() {
            let share = n / HOSTS as u64 + u64::from((i as u64) < n % HOSTS as u64);
            if share > 0 {
                host.record_n(k, share, 64);
            }
        }
    }
    let mut fleet = Categorical::new();
    for h in &hosts {
        fleet.merge(h, 64);
    }
    fleet
}

/// A numeric case's reference and current samples: listed in the case, or one feature of a
/// stored data set, rows outside the split's mask against rows inside it.
fn samples(data: &Value, case: &Value) -> (Vec<f64>, Vec<f64>) {
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    };
    let Some(dataset) = case["dataset"].as_str() else {
        return (numbers(&case["reference"]), numbers(&case["current"]));
    };
    let set = data["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .find(|d| d["name"] == dataset)
        .expect("data set stored");
    let feature = case["feature"].as_u64().expect("feature") as usize;
    let mask = &set["splits"][case["split"].as_str().expect("split")];
    let (mut reference, mut current) = (Vec::new(), Vec::new());
    for (row, inside) in set["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .zip(mask.as_array().expect("mask"))
    {
        let v = row[feature].as_f64().expect("number");
        if inside.as_bool().expect("bool") {
            current.push(v);
        } else {
            reference.push(v);
        }
    }
    (reference, current)
}

/// Every comparison's outcome: the failures (all of them, not only the first) and the largest
/// gap seen per figure.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    largest: std::collections::BTreeMap<&'static str, (f64, String)>,
}

impl Checks {
    fn close(&mut self, case: &str, what: &'static str, got: f64, want: f64, tolerance: f64) {
        let gap = (got - want).abs();
        let entry = self.largest.entry(what).or_insert((0.0, String::new()));
        if gap > entry.0 {
            *entry = (gap, case.to_owned());
        }
        if gap.is_nan() || gap > tolerance {
            self.failures.push(format!(
                "{case}: {what} = {got}, scipy on raw samples says {want} (tolerance {tolerance})"
            ));
        }
    }
}

#[test]
fn histogram_figures_match_raw_sample_figures() {
    let data = vectors();
    let mut checked = 0;
    let mut checks = Checks::default();
    for case in data["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let want = &case["expected"];
        match case["kind"].as_str() {
            Some("numeric") => {
                let (reference, current) = samples(&data, case);
                let got =
                    drift::numeric(&merged_histogram(&reference), &merged_histogram(&current));
                let Some(got) = got else {
                    assert!(want.is_null(), "{name}: no figures but scipy has some");
                    continue;
                };
                let sigma = want["sigma_ref"].as_f64().expect("sigma");
                let raw_ks = want["ks"].as_f64().expect("ks");
                checks.close(name, "ks", got.ks, raw_ks, 0.005);
                let inside =
                    got.ks_bounds[0] - 1e-12 <= raw_ks && raw_ks <= got.ks_bounds[1] + 1e-12;
                if !inside {
                    checks.failures.push(format!(
                        "{name}: raw ks {raw_ks} outside {:?}",
                        got.ks_bounds
                    ));
                }
                let w_tolerance = if sigma > 0.0 { 0.01 * sigma } else { 0.001 };
                if sigma > 0.0 {
                    let w = want["wasserstein"].as_f64().expect("w");
                    checks.close(
                        name,
                        "wasserstein / σ_ref",
                        got.wasserstein / sigma,
                        w / sigma,
                        0.01,
                    );
                }
                checks.close(
                    name,
                    "wasserstein",
                    got.wasserstein,
                    want["wasserstein"].as_f64().expect("w"),
                    w_tolerance,
                );
                // The SPEC's ±0.02, or 1 % of PSI above 2: there a single value near a decile
                // edge moves PSI by more than 0.02 (docs/DRIFT.md).
                let psi = want["psi"].as_f64().expect("psi");
                checks.close(name, "psi", got.psi, psi, (0.01 * psi).max(0.02));
                checks.close(name, "js", got.js, want["js"].as_f64().expect("js"), 0.01);
            }
            Some("categorical") => {
                let got = drift::categorical(
                    &merged_categorical(&case["reference"]),
                    &merged_categorical(&case["current"]),
                )
                .expect("figures");
                checks.close(
                    name,
                    "chi2",
                    got.chi2,
                    want["chi2"].as_f64().expect("chi2"),
                    1e-6 * (1.0 + got.chi2),
                );
                let p = want["p_value"].as_f64().expect("p");
                assert!(
                    (got.p_value - p).abs() <= 1e-9 + 1e-6 * p,
                    "{name}: p {} vs {p}",
                    got.p_value
                );
                checks.close(
                    name,
                    "psi",
                    got.psi,
                    want["psi"].as_f64().expect("psi"),
                    1e-9,
                );
                checks.close(name, "js", got.js, want["js"].as_f64().expect("js"), 1e-9);
                checks.close(
                    name,
                    "new_categories",
                    got.new_categories,
                    want["new_categories"].as_f64().expect("new"),
                    1e-12,
                );
            }
            other => panic!("{name}: unknown kind {other:?}"),
        }
        checked += 1;
    }
    for (what, (gap, case)) in &checks.largest {
        eprintln!("largest {what} gap: {gap:.5} ({case})");
    }
    assert!(
        checks.failures.is_empty(),
        "{} of the checks failed:\n{}",
        checks.failures.len(),
        checks.failures.join("\n")
    );
    assert!(checked >= 93, "only {checked} cases checked");
}
