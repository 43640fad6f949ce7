//! End-to-end drift over real agents: three hosts send model inputs over DogStatsD; one host
//! gets longer prompts. `mode=hosts` must flag only that host's prompt lengths. A second model
//! version, on one host, differs only in its language mix: `mode=versions` must flag only the
//! language feature. `mode=temporal`, over `|T`-timestamped history, must flag longer prompts.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Fleet, latencies, wait_for};
use rand::{Rng, SeedableRng};

fn send(socket: &UdpSocket, target: std::net::SocketAddr, lines: &[String]) {
    for chunk in lines.chunks(30) {
        socket
            .send_to(chunk.join("\n").as_bytes(), target)
            .expect("send on loopback");
    }
}

fn languages(seed: u64, n: usize, weights: &[(&str, f64)]) -> Vec<&'static str> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let names: Vec<&'static str> = weights
        .iter()
        .map(|(l, _)| -> &'static str { Box::leak(l.to_string().into_boxed_str()) })
        .collect();
    (0..n)
        .map(|_| {
            let mut u: f64 = rng.random();
            for (i, (_, w)) in weights.iter().enumerate() {
                if u < *w {
                    return names[i];
                }
                u -= w;
            }
            names[names.len() - 1]
        })
        .collect()
}

#[test]
fn hosts_and_versions_flag_only_what_drifted() {
    let hosts = ["h1", "h2", "h3"];
    let mut fleet = Fleet::new(&hosts);
    fleet.start_aggregator();
    for h in hosts {
        fleet.start_agent(h);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let n = 3000;
    let mix = [("en", 0.6), ("fr", 0.2), ("de", 0.2)];
    let mut expected_tokens = 0u64;
    for (i, h) in hosts.iter().enumerate() {
        let shift = if *h == "h3" { 1.5 } else { 1.0 };
        let tags = "model:llama3,version:v1";
        let mut lines: Vec<String> = latencies(100 + i as u64, n, 400.0 * shift)
            .iter()
            .map(|v| format!("input.prompt_tokens:{}|h|#{tags}", v.round()))
            .collect();
        lines.extend(
            latencies(200 + i as u64, n, 0.7)
                .iter()
                .map(|v| format!("input.temperature:{v}|h|#{tags}")),
        );
        lines.extend(
            languages(300 + i as u64, n, &mix)
                .iter()
                .map(|l| format!("input.language:{l}|s|#{tags}")),
        );
        expected_tokens += n as u64;
        if *h == "h1" {
            // Version v2 on h1: same prompts and temperatures, a new language mix.
            let tags = "model:llama3,version:v2";
            lines.extend(
                latencies(400, n, 400.0)
                    .iter()
                    .map(|v| format!("input.prompt_tokens:{}|h|#{tags}", v.round())),
            );
            lines.extend(
                latencies(401, n, 0.7)
                    .iter()
                    .map(|v| format!("input.temperature:{v}|h|#{tags}")),
            );
            lines.extend(
                languages(
                    402,
                    n,
                    &[("en", 0.4), ("fr", 0.2), ("de", 0.2), ("40K - 60K €", 0.2)],
                )
                .iter()
                .map(|l| format!("input.language:{l}|s|#{tags}")),
            );
            expected_tokens += n as u64;
        }
        send(&socket, fleet.udp_addr(h), &lines);
    }
    fleet.wait_for_count(
        "input.prompt_tokens",
        expected_tokens,
        Duration::from_secs(60),
    );
    wait_for("language counts", Duration::from_secs(30), || {
        let series = fleet
            .client()
            .get("/api/v1/series", &[("match", "input.language".to_owned())])
            .ok()?;
        (series["series"].as_array()?.len() == 4).then_some(())
    });

    let client = fleet.client();
    let by_hosts = client
        .get(
            "/api/v1/drift",
            &[
                ("mode", "hosts".to_owned()),
                ("tag", "model:llama3".to_owned()),
            ],
        )
        .unwrap();
    let results = by_hosts["results"].as_array().unwrap();
    // Three features × three hosts (v2 lives on one host only, so it has no "rest").
    assert_eq!(results.len(), 9, "{by_hosts:#}");
    for r in results {
        let flagged = r["status"] == "drift";
        let should = r["metric"] == "input.prompt_tokens" && r["host"] == "h3";
        assert_eq!(flagged, should, "{r:#}");
    }
    // Sorted by severity: the drifted row first.
    assert_eq!(results[0]["host"], "h3");
    assert!(results[0]["ks_bounds"].as_array().unwrap().len() == 2);

    let by_versions = client
        .get(
            "/api/v1/drift",
            &[
                ("mode", "versions".to_owned()),
                ("a", "v1".to_owned()),
                ("b", "v2".to_owned()),
                ("tag", "model:llama3".to_owned()),
                ("tag", "host:h1".to_owned()),
            ],
        )
        .unwrap();
    let results = by_versions["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{by_versions:#}");
    for r in results {
        let flagged = r["status"] == "drift";
        assert_eq!(flagged, r["metric"] == "input.language", "{r:#}");
    }
    let language = &results[0];
    assert_eq!(language["kind"], "categorical");
    let new_share = language["new_categories"].as_f64().unwrap();
    assert!(
        (0.15..0.25).contains(&new_share),
        "new categories {new_share}"
    );

    // Temporal: DogStatsD `|T` timestamps place a reference two minutes back; the current
    // minute has longer prompts.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let past: Vec<String> = latencies(500, n, 400.0)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = now_s - 150 + (i % 60) as u64;
            format!("input.prompt_tokens:{}|h|#model:temporal|T{t}", v.round())
        })
        .collect();
    let recent: Vec<String> = latencies(501, n, 520.0)
        .iter()
        .map(|v| format!("input.prompt_tokens:{}|h|#model:temporal", v.round()))
        .collect();
    send(&socket, fleet.udp_addr("h2"), &past);
    send(&socket, fleet.udp_addr("h2"), &recent);
    let secs = |s: u64| s.to_string();
    let temporal_query = [
        ("mode", "temporal".to_owned()),
        ("tag", "model:temporal".to_owned()),
        ("from", secs(now_s - 60)),
        ("to", "now".to_owned()),
        ("ref_from", secs(now_s - 160)),
        ("ref_to", secs(now_s - 60)),
    ];
    let temporal = wait_for("both temporal windows", Duration::from_secs(30), || {
        let r = client.get("/api/v1/drift", &temporal_query).ok()?;
        let row = r["results"].as_array()?.first()?.clone();
        (row["reference_count"].as_u64()? == n as u64 && row["current_count"].as_u64()? == n as u64)
            .then_some(row)
    });
    assert_eq!(temporal["status"], "drift", "{temporal:#}");
    assert_eq!(temporal["metric"], "input.prompt_tokens");

    // Bad queries are 4xx with a JSON error.
    let err = client
        .get("/api/v1/drift", &[("mode", "versions".to_owned())])
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

/// Two hosts: "each against the rest" is symmetric, so the pair is compared and each host's
/// own history (the reference window) says which one moved. Without history both rows say
/// `differ`; a temporal comparison with an empty reference says `no_data`.
#[test]
fn two_hosts_are_told_apart_by_their_own_history() {
    let hosts = ["a", "b"];
    let mut fleet = Fleet::new(&hosts);
    fleet.start_aggregator();
    for h in hosts {
        fleet.start_agent(h);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let n = 2000;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (i, h) in hosts.iter().enumerate() {
        let seed = 700 + 10 * i as u64;
        // History: both hosts alike, 90–150 s ago.
        let mut lines: Vec<String> = latencies(seed, n, 400.0)
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let t = now_s - 150 + (j % 60) as u64;
                format!("input.prompt_tokens:{}|h|#model:pair|T{t}", v.round())
            })
            .collect();
        // Now: b's prompts are 1.5× longer. The `nohist` model has no history at all.
        let median = if *h == "b" { 600.0 } else { 400.0 };
        for model in ["pair", "nohist"] {
            lines.extend(
                latencies(seed + 1, n, median)
                    .iter()
                    .map(|v| format!("input.prompt_tokens:{}|h|#model:{model}", v.round())),
            );
        }
        send(&socket, fleet.udp_addr(h), &lines);
    }
    fleet.wait_for_count(
        "input.prompt_tokens",
        3 * n as u64 * 2,
        Duration::from_secs(60),
    );
    let secs = |s: u64| s.to_string();
    let query = |model: &str, mode: &str| {
        vec![
            ("mode", mode.to_owned()),
            ("tag", format!("model:{model}")),
            ("from", secs(now_s - 60)),
            ("to", "now".to_owned()),
            ("ref_from", secs(now_s - 160)),
            ("ref_to", secs(now_s - 60)),
        ]
    };
    let client = fleet.client();
    let pair = client
        .get("/api/v1/drift", &query("pair", "hosts"))
        .unwrap();
    let rows = pair["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{pair:#}");
    let row = |h: &str| rows.iter().find(|r| r["host"] == h).unwrap();
    assert_eq!(row("b")["status"], "drift", "{pair:#}");
    assert_eq!(row("a")["status"], "ok", "{pair:#}");
    assert_eq!(row("b")["history"]["status"], "drift", "{pair:#}");
    assert_eq!(row("a")["history"]["status"], "ok", "{pair:#}");
    assert_eq!(row("a")["history"]["reference_count"], n as u64);
    let why = row("a")["reason"].as_str().unwrap();
    assert!(
        why.starts_with("b moved against its own history, a did not"),
        "{why}"
    );
    let table = pitot::report::drift_table(&pitot::report::typed(&pair).unwrap());
    let first = table.lines().nth(3).unwrap();
    assert!(
        first.starts_with("DRIFT") && first.contains("b vs a"),
        "{table}"
    );
    assert!(
        first.ends_with("  b moved against its own history, a did not"),
        "{table}"
    );
    assert_eq!(row("b")["against"], "a");

    let nohist = client
        .get("/api/v1/drift", &query("nohist", "hosts"))
        .unwrap();
    let rows = nohist["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{nohist:#}");
    for r in rows {
        assert_eq!(r["status"], "differ", "{r:#}");
        assert!(
            r["reason"].as_str().unwrap().contains("no history"),
            "{r:#}"
        );
    }
    assert!(pitot::report::drift_table(&pitot::report::typed(&nohist).unwrap()).contains("DIFFER"));

    let temporal = client
        .get("/api/v1/drift", &query("nohist", "temporal"))
        .unwrap();
    let r = &temporal["results"][0];
    assert_eq!(r["status"], "no_data", "{temporal:#}");
    assert_eq!(r["reference_count"], 0, "{temporal:#}");
    assert_eq!(r["reason"], "no data in the reference", "{temporal:#}");
    let table = pitot::report::drift_table(&pitot::report::typed(&temporal).unwrap());
    assert!(table.contains("NO DATA"), "{table}");
}
