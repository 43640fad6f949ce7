//! Access control on the HTTP API with the real binaries: tokens made by `pitot tokens new`,
//! a tokens file of their digests, the API over HTTPS signed by a private CA. Without a token
//! 401; a model-scoped token reads its model and gets 403 outside it, and filtered lists; the
//! audit trail needs the `audit` scope; the CLI takes `--token` and `PITOT_TOKEN`; no token or
//! digest reaches the log.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{Fleet, bin, new_token};
use serde_json::Value;

fn status_of(r: anyhow::Result<Value>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => {
            let msg = e.to_string();
            [401, 403, 404, 400]
                .into_iter()
                .find(|s| msg.contains(&format!(": {s} ")))
                .unwrap_or_else(|| panic!("unexpected error: {msg}"))
        }
    }
}

#[test]
fn tokens_scope_what_the_api_answers_over_https() {
    let mut fleet = Fleet::new(&["h1"]);
    // The API's certificate: for `localhost`, from a second CA (not the fleet's agent CA).
    let api_certs = fleet.path("api-certs");
    pitot::certs::init(&api_certs, "localhost", &[]).unwrap();
    let (reader, reader_line) = new_token("grafana", "read");
    let (llama, llama_line) = new_token("llama-team", "read:model:llama3");
    let (auditor, auditor_line) = new_token("auditor", "audit");
    let tokens_file = fleet.path("tokens");
    std::fs::write(
        &tokens_file,
        format!("# made by pitot tokens new\n{reader_line}\n{llama_line}\n{auditor_line}\n"),
    )
    .unwrap();
    fleet.http_extra = format!(
        "tokens_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        tokens_file.display(),
        api_certs.join("aggregator.pem").display(),
        api_certs.join("aggregator.key").display()
    );
    fleet.https_ca = Some(api_certs.join("ca.pem"));
    fleet.aggregator_extra = "[[model]]\nname = \"llama3\"\nowner = \"search\"\n".into();
    fleet.start_aggregator();
    fleet.start_agent("h1");

    // Nothing without a token but /healthz.
    let anonymous = fleet.client();
    assert_eq!(anonymous.get_raw("/healthz").unwrap().0, 200);
    assert_eq!(status_of(anonymous.get("/api/v1/agents", &[])), 401);
    assert_eq!(anonymous.get_raw("/metrics").unwrap().0, 401);
    let err = anonymous
        .get("/api/v1/models", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("bearer token"), "{err}");
    fleet.token = Some("pitot_not-a-real-token".into());
    assert_eq!(status_of(fleet.client().get("/api/v1/agents", &[])), 401);

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for m in ["llama3", "mistral"] {
        let line = format!("request.latency:7|ms|#model:{m},version:v1");
        udp.send_to(line.as_bytes(), fleet.udp_addr("h1")).unwrap();
    }
    fleet.token = Some(reader.clone());
    fleet.wait_for_count("request.latency", 2, Duration::from_secs(30));
    let as_reader = fleet.client();
    assert_eq!(status_of(as_reader.get("/api/v1/agents", &[])), 200);
    assert_eq!(as_reader.get_raw("/metrics").unwrap().0, 200);
    assert_eq!(
        status_of(as_reader.get("/api/v1/audit", &[])),
        403,
        "read is not audit"
    );

    fleet.token = Some(llama.clone());
    let as_llama = fleet.client();
    let q = |tag: Option<&str>| {
        let mut p = vec![("metric", "request.latency".to_owned())];
        p.extend(tag.map(|t| ("tag", t.to_owned())));
        as_llama.get("/api/v1/quantiles", &p)
    };
    assert_eq!(status_of(q(Some("model:llama3"))), 200);
    let outside = q(None).unwrap_err().to_string();
    assert!(
        outside.contains("403") && outside.contains("tag=model:llama3"),
        "{outside}"
    );
    assert_eq!(status_of(q(Some("model:mistral"))), 403);
    assert_eq!(status_of(as_llama.get("/api/v1/agents", &[])), 403);
    assert_eq!(status_of(as_llama.get("/api/v1/audit", &[])), 403);
    assert_eq!(status_of(as_llama.get("/api/v1/models/mistral", &[])), 403);
    assert_eq!(
        status_of(as_llama.get("/api/v1/models/llama3/timeline", &[])),
        200
    );
    assert_eq!(as_llama.get_raw("/metrics").unwrap().0, 403);
    // Its model's gate, not another's.
    let gate = |m: &str| {
        as_llama.get(
            "/api/v1/gate",
            &[
                ("model", m.to_owned()),
                ("baseline", "version:v1".to_owned()),
                ("candidate", "version:v2".to_owned()),
            ],
        )
    };
    assert_eq!(status_of(gate("llama3")), 200);
    assert_eq!(status_of(gate("mistral")), 403);
    // Lists are filtered to its model.
    let series = as_llama.get("/api/v1/series", &[]).unwrap();
    let series = series["series"].as_array().unwrap();
    assert!(!series.is_empty());
    assert!(
        series.iter().all(|s| s["tags"]["model"] == "llama3"),
        "{series:?}"
    );
    let models = as_llama.get("/api/v1/models", &[]).unwrap();
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["llama3"]);
    let all = as_reader.get("/api/v1/models", &[]).unwrap();
    assert_eq!(all["models"].as_array().unwrap().len(), 2, "{all:#}");

    fleet.token = Some(auditor.clone());
    assert_eq!(status_of(fleet.client().get("/api/v1/agents", &[])), 403);
    // Grants and refusals are in the audit trail, by token name.
    let trail = common::wait_for("token entries", Duration::from_secs(10), || {
        let v = fleet
            .client()
            .get("/api/v1/audit", &[("kind", "token.".to_owned())])
            .ok()?;
        let list = v["entries"].as_array()?.clone();
        let has = |kind: &str, who: &str| {
            list.iter()
                .any(|e| e["kind"] == kind && e["subject"] == who)
        };
        (has("token.used", "grafana")
            && has("token.denied", "llama-team")
            && has("token.denied", "-"))
        .then_some(list)
    });
    assert!(trail.iter().all(|e| !e.to_string().contains(&llama)));

    // The CLI: --token, PITOT_TOKEN, and a clear failure without.
    let ca = fleet.https_ca.clone().unwrap();
    let report = |token: Option<&str>, env: Option<&str>| {
        let mut cmd = Command::new(bin("pitot"));
        cmd.args(["report", "latency", "--url", &fleet.url(), "--ca"])
            .arg(&ca)
            .env_remove("PITOT_TOKEN");
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        if let Some(t) = env {
            cmd.env("PITOT_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = report(Some(&reader), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mistral"));
    assert!(report(None, Some(&reader)).status.success());
    let refused = report(None, None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));

    // Counted, and nothing secret in the log.
    fleet.token = Some(reader.clone());
    let metrics = fleet.metrics_text().expect("metrics");
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert!(counter("pitot_aggregator_http_unauthorized_total") >= 4);
    assert!(counter("pitot_aggregator_http_forbidden_total") >= 8);
    // The whole logs, not the harness's tails.
    let log: String = fleet
        .aggregator
        .iter()
        .chain(fleet.agents.values())
        .map(|p| p.log_text())
        .collect();
    for (token, line) in [
        (&reader, &reader_line),
        (&llama, &llama_line),
        (&auditor, &auditor_line),
    ] {
        let digest = line.split_whitespace().next().unwrap();
        assert!(
            !log.contains(token.as_str()) && !log.contains(digest),
            "a secret in the log"
        );
    }
    assert!(
        log.contains("needs a bearer token"),
        "start-up log says the API is closed"
    );
}
