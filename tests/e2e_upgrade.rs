//! Upgrading from 0.1: a store and a spool written by the 0.1.0 binaries themselves
//! (`tests/fixtures/v0.1/`, made by its `make.sh` from commit 277877d) are read by today's
//! aggregator and agent. 0.1 wrote histograms in its HdrHistogram form over 0.001-unit steps
//! (`SeriesData` variant 0); they must answer with their counts, sums and extremes exact, at
//! the resolution 0.1 recorded them with, and the old spool's batches must be delivered.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Fleet, wait_for};
use serde_json::Value;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v0.1")
        .join(name)
}

fn unpack(archive: &str, into: &Path) {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(fixture(archive))
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar runs");
    assert!(status.success(), "unpacking {archive}");
}

/// Ten years back, so the fixture's time is inside whatever day the test runs on.
const RANGE: [(&str, &str); 2] = [("from", "now-3650d"), ("to", "now")];

fn quantiles(fleet: &Fleet, metric: &str) -> Option<Value> {
    let mut q = vec![("metric", metric.to_owned()), ("q", "0.5,0.99".to_owned())];
    q.extend(RANGE.iter().map(|(k, v)| (*k, (*v).to_owned())));
    fleet.client().get("/api/v1/quantiles", &q).ok()
}

fn counter_total(fleet: &Fleet, metric: &str) -> Option<f64> {
    let mut q = vec![("metric", metric.to_owned())];
    q.extend(RANGE.iter().map(|(k, v)| (*k, (*v).to_owned())));
    fleet.client().get("/api/v1/counters", &q).ok()?["fleet"]["total"].as_f64()
}

/// What 0.1 recorded: 1 … 200 ms and 0.00535 ms (read at 0.1's 0.001 step, as 0.005).
fn check_latency(fleet: &Fleet, metric: &str) {
    let v = quantiles(fleet, metric).unwrap_or_else(|| panic!("{metric} answers"));
    let f = &v["fleet"];
    assert_eq!(f["count"], 201, "{v}");
    assert_eq!(f["min"], 0.005, "{v}");
    assert_eq!(f["max"], 200.0, "{v}");
    let sum = f["sum"].as_f64().expect("sum");
    assert!((sum - (20_100.0 + 0.005)).abs() < 1e-9, "{sum}");
    // Nearest rank: p50 is the 101st of 201 values (100 ms), p99 the 199th (198 ms); 0.1's
    // buckets held them to 3 significant digits.
    for (q, want) in [("0.5", 100.0), ("0.99", 198.0)] {
        let got = f["quantiles"][q].as_f64().expect("quantile");
        assert!((got - want).abs() <= want * 0.001, "p{q}: {got} vs {want}");
    }
}

#[test]
fn a_0_1_store_and_spool_are_read_after_the_upgrade() {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let agent = manifest["agent_id"].as_str().expect("agent_id");
    let mut fleet = Fleet::new(&[agent]);
    // Keep everything: the fixture was written on another day.
    fleet.aggregator_extra = "[retention]\n\"10s\" = \"3650d\"\n\"1m\" = \"3650d\"\n\
                              \"1h\" = \"3650d\"\n"
        .into();

    // The store 0.1's aggregator wrote, opened by today's.
    unpack("store.tar.gz", fleet.dir.path());
    fleet.start_aggregator();
    check_latency(&fleet, "stored.latency");
    assert_eq!(counter_total(&fleet, "stored.count"), Some(1400.0));

    // The spool 0.1's agent wrote while its aggregator was down, sent by today's agent.
    unpack("spool.tar.gz", fleet.dir.path());
    std::fs::rename(fleet.path("spool-b"), fleet.path(&format!("spool-{agent}")))
        .expect("spool in place");
    fleet.start_agent(agent);
    wait_for("the 0.1 spool delivered", Duration::from_secs(60), || {
        (counter_total(&fleet, "spooled.count")? == 1400.0).then_some(())
    });
    check_latency(&fleet, "spooled.latency");
    // The set with a non-ASCII value came through as a categorical series.
    let series = fleet
        .client()
        .get(
            "/api/v1/series",
            &[("match", "input.spooled.band".to_owned())],
        )
        .expect("series");
    assert_eq!(series["series"][0]["kind"], "categorical", "{series}");
    // And the aggregator merged what it got from both without refusing anything.
    let metrics = fleet.metrics_text().expect("/metrics");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("pitot_aggregator_rejected_batches_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(fleet.stop_agent(agent).success());
}
