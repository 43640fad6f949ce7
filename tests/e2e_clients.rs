//! End to end: the real aggregator and two real agents on loopback, fed tens of thousands of
//! timings through the official Python clients (`datadog`'s DogStatsd over UDP and a Unix
//! socket, `statsd`'s StatsClient over UDP). The aggregator must count every timing exactly
//! and report fleet and per-host quantiles within 1% of the exact quantiles of what was sent.
//!
//! The Unix-socket sender sets `socket_timeout` so it waits when the socket queue is full:
//! with `net.unix.max_dgram_qlen` at 10, a non-blocking sender loses datagrams whenever the
//! reader is descheduled for a millisecond, even a reader that does nothing (measured with
//! `agent/examples/recvmmsg_floor.rs`), and that loss happens in the client, where no
//! receiver can count it. The client's defaults are exercised separately below.

mod common;

use std::time::Duration;

use common::{Fleet, check_quantiles, latencies, python_send, values_file};

#[test]
fn official_clients_exact_counts_and_quantiles() {
    let mut fleet = Fleet::new(&["gpu-a", "gpu-b"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    fleet.start_agent("gpu-b");

    let a_udp = latencies(1, 20_000, 40.0);
    let b_unix = latencies(2, 15_000, 55.0);
    let b_plain = latencies(3, 5_000, 25.0);
    let dir = fleet.dir.path().to_owned();
    let files = [
        values_file(&dir, "a.txt", &a_udp),
        values_file(&dir, "b-unix.txt", &b_unix),
        values_file(&dir, "b-plain.txt", &b_plain),
    ];
    let a_addr = fleet.udp_addr("gpu-a").to_string();
    let b_addr = fleet.udp_addr("gpu-b").to_string();
    let b_sock = fleet.unix_socket("gpu-b").display().to_string();
    let f: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    python_send(&[
        "--client",
        "datadog",
        "--udp",
        &a_addr,
        "--metric",
        "request.latency",
        "--tags",
        "model:llama3,version:v1",
        "--values",
        &f[0],
    ]);
    python_send(&[
        "--client",
        "datadog",
        "--unix",
        &b_sock,
        "--socket-timeout",
        "5",
        "--metric",
        "request.latency",
        "--tags",
        "model:llama3,version:v2",
        "--values",
        &f[1],
    ]);
    python_send(&[
        "--client",
        "statsd",
        "--udp",
        &b_addr,
        "--metric",
        "request.latency",
        "--values",
        &f[2],
    ]);

    let total = (a_udp.len() + b_unix.len() + b_plain.len()) as u64;
    fleet.wait_for_count("request.latency", total, Duration::from_secs(60));

    let report = fleet
        .quantiles("request.latency", "0.5,0.9,0.99,0.999", "host")
        .expect("quantiles");
    let mut all: Vec<f64> = a_udp.clone();
    all.extend(&b_unix);
    all.extend(&b_plain);
    check_quantiles("fleet", &report["fleet"], &all);
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["tags"]["host"], "gpu-a");
    check_quantiles("gpu-a", &groups[0], &a_udp);
    let mut b_all = b_unix.clone();
    b_all.extend(&b_plain);
    check_quantiles("gpu-b", &groups[1], &b_all);

    // The tag filter selects the Unix-socket stream alone.
    let v2 = fleet
        .client()
        .get(
            "/api/v1/quantiles",
            &[
                ("metric", "request.latency".to_owned()),
                ("tag", "version:v2".to_owned()),
            ],
        )
        .unwrap();
    check_quantiles("version:v2", &v2["fleet"], &b_unix);

    // Exact sums and extremes, too.
    let sum: f64 = all.iter().sum();
    let got_sum = report["fleet"]["sum"].as_f64().unwrap();
    assert!((got_sum - sum).abs() < 1e-6 * sum, "sum {got_sum} vs {sum}");
    let max = all.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(report["fleet"]["max"].as_f64(), Some(max));

    // The client's defaults (non-blocking Unix socket) at a modest rate: the format is taken
    // unchanged; a datagram may still be lost in the client (see the module docs).
    let defaults = latencies(4, 500, 30.0);
    let f4 = values_file(&dir, "defaults.txt", &defaults);
    python_send(&[
        "--client",
        "datadog",
        "--unix",
        &b_sock,
        "--metric",
        "request.defaults",
        "--kind",
        "distribution",
        "--tags",
        "model:llama3",
        "--values",
        f4.to_str().unwrap(),
        "--rate",
        "1000",
    ]);
    common::wait_for(
        "default-client distribution",
        Duration::from_secs(30),
        || (fleet.count("request.defaults") >= 490).then_some(()),
    );

    // The agents list knows both, and a clean stop exits 0.
    let agents = fleet.client().get("/api/v1/agents", &[]).unwrap();
    assert_eq!(agents["agents"].as_array().unwrap().len(), 2);
    assert!(fleet.stop_agent("gpu-a").success());
    assert!(fleet.stop_agent("gpu-b").success());
}
