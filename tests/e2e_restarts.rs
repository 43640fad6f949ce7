//! End to end under failure: the aggregator is SIGKILLed and restarted twice mid-stream, and
//! an agent is SIGKILLed while its spool holds batches the aggregator never saw. Every timing
//! must still be counted exactly once: no batch lost, none merged twice.

mod common;

use std::time::Duration;

use common::{Fleet, check_quantiles, latencies, python_sender, values_file, wait_for};

#[test]
fn kills_and_restarts_lose_nothing_and_duplicate_nothing() {
    let mut fleet = Fleet::new(&["gpu-a", "gpu-b"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    fleet.start_agent("gpu-b");

    // 20 000 timings per host, paced over about 8 s so the restarts land mid-stream.
    let a = latencies(11, 20_000, 35.0);
    let b = latencies(12, 20_000, 70.0);
    let dir = fleet.dir.path().to_owned();
    let fa = values_file(&dir, "a.txt", &a);
    let fb = values_file(&dir, "b.txt", &b);
    let (a_addr, b_addr) = (
        fleet.udp_addr("gpu-a").to_string(),
        fleet.udp_addr("gpu-b").to_string(),
    );
    let mut senders = vec![
        python_sender(&[
            "--client",
            "datadog",
            "--udp",
            &a_addr,
            "--metric",
            "request.latency",
            "--tags",
            "model:llama3",
            "--values",
            fa.to_str().unwrap(),
            "--rate",
            "2500",
        ]),
        python_sender(&[
            "--client",
            "datadog",
            "--udp",
            &b_addr,
            "--metric",
            "request.latency",
            "--tags",
            "model:llama3",
            "--values",
            fb.to_str().unwrap(),
            "--rate",
            "2500",
        ]),
    ];

    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(2000));
        fleet.kill_aggregator();
        std::thread::sleep(Duration::from_millis(1000));
        fleet.start_aggregator();
    }
    for s in &mut senders {
        assert!(s.wait().unwrap().success(), "sender failed");
    }

    // Take the aggregator away, let gpu-a close the intervals that hold its last timings into
    // its spool, then SIGKILL gpu-a with those batches unsent.
    fleet.kill_aggregator();
    fleet.wait_spooled_past_now("gpu-a");
    fleet.kill_agent("gpu-a");

    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    // The restarted agent found the unsent batches in its spool.
    let banner = wait_for("gpu-a start banner", Duration::from_secs(10), || {
        let log = fleet.agents["gpu-a"].log_text();
        log.lines()
            .find(|l| l.contains("Pitot agent starting."))
            .map(str::to_owned)
    });
    let held: u64 = banner
        .split("spooled_batches=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("spooled_batches in the banner");
    assert!(
        held >= 2,
        "gpu-a restarted with {held} spooled batches: {banner}"
    );
    fleet.wait_for_count("request.latency", 40_000, Duration::from_secs(60));

    let report = fleet
        .quantiles("request.latency", "0.5,0.9,0.99,0.999", "host")
        .expect("quantiles");
    let groups = report["groups"].as_array().unwrap();
    check_quantiles("gpu-a", &groups[0], &a);
    check_quantiles("gpu-b", &groups[1], &b);
    let mut all = a.clone();
    all.extend(&b);
    check_quantiles("fleet", &report["fleet"], &all);

    // The restarted gpu-a drained its spool.
    wait_for("gpu-a spool drained", Duration::from_secs(30), || {
        let agents = fleet.client().get("/api/v1/agents", &[]).ok()?;
        let a = agents["agents"]
            .as_array()?
            .iter()
            .find(|x| x["id"] == "gpu-a")?
            .clone();
        (a["spool_bytes"].as_u64()? < 100_000 && a["batches"].as_u64()? > 0).then_some(())
    });
    // Still exact after everything settled (no late duplicate merged).
    assert_eq!(fleet.count("request.latency"), 40_000);
}

#[test]
fn an_agent_learns_of_an_aggregator_restart_from_a_stateless_reset() {
    let mut fleet = Fleet::new(&["gpu-a"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    let connected = |fleet: &Fleet| {
        fleet.agents["gpu-a"]
            .log_text()
            .matches("Uplink connected.")
            .count()
    };
    wait_for("first connection", Duration::from_secs(10), || {
        (connected(&fleet) == 1).then_some(())
    });
    fleet.kill_aggregator();
    fleet.start_aggregator();
    // The restarted aggregator derives its reset key from its TLS key, so it can reset the
    // old connection: the agent hears of it at its next packet, not after its idle timeout.
    let lost = wait_for("the agent to notice", Duration::from_secs(30), || {
        fleet.agents["gpu-a"]
            .log_text()
            .lines()
            .find(|l| l.contains("Uplink connection lost"))
            .map(str::to_owned)
    });
    assert!(lost.contains("reset by peer"), "{lost}");
    wait_for("reconnected", Duration::from_secs(10), || {
        (connected(&fleet) == 2).then_some(())
    });
}
