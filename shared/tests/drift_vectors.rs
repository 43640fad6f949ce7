//! Drift figures from merged histograms against the raw-sample figures computed by scipy
//! (`tests/drift_vectors/gen.py` → `vectors.json`). Each sample is split across three
//! simulated hosts, recorded into Pitot's summaries, merged, and compared within the SPEC's
//! tolerances: `ks` ±0.005, `wasserstein` ±0.01·σ_ref, `psi` ±0.02, `js` ±0.01, the raw `ks`
//! inside `ks_bounds`; categorical `chi2` and `p_value` (counts are exact), `psi`, `js`,
//! `new_categories`.

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

fn merged_histogram(values: &Value) -> ValueHistogram {
    let mut hosts = vec![ValueHistogram::new(); HOSTS];
    for (i, v) in values.as_array().expect("array").iter().enumerate() {
        hosts[i % HOSTS]
            .record(v.as_f64().expect("number"))
            .expect("finite");
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

#[track_caller]
fn close(case: &str, what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{case}: {what} = {got}, scipy on raw samples says {want} (tolerance {tolerance})"
    );
}

#[test]
fn histogram_figures_match_raw_sample_figures() {
    let data = vectors();
    let mut checked = 0;
    for case in data["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let want = &case["expected"];
        match case["kind"].as_str() {
            Some("numeric") => {
                let got = drift::numeric(
                    &merged_histogram(&case["reference"]),
                    &merged_histogram(&case["current"]),
                );
                let Some(got) = got else {
                    assert!(want.is_null(), "{name}: no figures but scipy has some");
                    continue;
                };
                let sigma = want["sigma_ref"].as_f64().expect("sigma");
                let raw_ks = want["ks"].as_f64().expect("ks");
                close(name, "ks", got.ks, raw_ks, 0.005);
                assert!(
                    got.ks_bounds[0] - 1e-12 <= raw_ks && raw_ks <= got.ks_bounds[1] + 1e-12,
                    "{name}: raw ks {raw_ks} outside {:?}",
                    got.ks_bounds
                );
                let w_tolerance = if sigma > 0.0 { 0.01 * sigma } else { 0.001 };
                close(
                    name,
                    "wasserstein",
                    got.wasserstein,
                    want["wasserstein"].as_f64().expect("w"),
                    w_tolerance,
                );
                close(
                    name,
                    "psi",
                    got.psi,
                    want["psi"].as_f64().expect("psi"),
                    0.02,
                );
                close(name, "js", got.js, want["js"].as_f64().expect("js"), 0.01);
            }
            Some("categorical") => {
                let got = drift::categorical(
                    &merged_categorical(&case["reference"]),
                    &merged_categorical(&case["current"]),
                )
                .expect("figures");
                close(
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
                close(
                    name,
                    "psi",
                    got.psi,
                    want["psi"].as_f64().expect("psi"),
                    1e-9,
                );
                close(name, "js", got.js, want["js"].as_f64().expect("js"), 1e-9);
                close(
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
    assert!(checked >= 13, "only {checked} cases checked");
}
