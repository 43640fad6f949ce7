//! Scrapes turned into interval series: deltas, resets, layouts, labels and aliases.

use super::*;

fn scrape(d: &mut Deltas, text: &str) -> Vec<Observed> {
    let mut out = d.update(&parse::parse(text), &[("version".into(), "v2".into())]);
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    out
}

const VLLM_1: &str = "# TYPE vllm:prompt_tokens_total counter\n\
vllm:prompt_tokens_total{model_name=\"llama\"} 100\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{model_name=\"llama\"} 3\n\
# TYPE vllm:time_to_first_token_seconds histogram\n\
vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"llama\"} 5\n\
vllm:time_to_first_token_seconds_bucket{le=\"0.5\",model_name=\"llama\"} 8\n\
vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"llama\"} 9\n\
vllm:time_to_first_token_seconds_sum{model_name=\"llama\"} 2.0\n\
vllm:time_to_first_token_seconds_count{model_name=\"llama\"} 9\n";

const VLLM_2: &str = "# TYPE vllm:prompt_tokens_total counter\n\
vllm:prompt_tokens_total{model_name=\"llama\"} 130\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{model_name=\"llama\"} 4\n\
# TYPE vllm:time_to_first_token_seconds histogram\n\
vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"llama\"} 6\n\
vllm:time_to_first_token_seconds_bucket{le=\"0.5\",model_name=\"llama\"} 11\n\
vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"llama\"} 13\n\
vllm:time_to_first_token_seconds_sum{model_name=\"llama\"} 3.5\n\
vllm:time_to_first_token_seconds_count{model_name=\"llama\"} 13\n";

fn tags(model: &str) -> Vec<(String, String)> {
    vec![
        ("model".to_owned(), model.to_owned()),
        ("version".to_owned(), "v2".to_owned()),
    ]
}

#[test]
fn first_scrape_is_a_baseline_then_deltas() {
    let mut d = Deltas::default();
    let first = scrape(&mut d, VLLM_1);
    // Only the gauge: counters and histograms have no increase yet.
    assert_eq!(
        first,
        vec![(
            "vllm:num_requests_running".to_owned(),
            tags("llama"),
            Observation::Value(3.0)
        )]
    );
    let second = scrape(&mut d, VLLM_2);
    assert_eq!(second.len(), 3);
    assert_eq!(second[1].0, "vllm:prompt_tokens_total");
    assert_eq!(second[1].2, Observation::Delta(30.0));
    assert_eq!(
        second[1].1,
        tags("llama"),
        "model_name becomes model; config tags fill in"
    );
    match &second[2].2 {
        Observation::Buckets(l) => {
            assert_eq!(l.bounds, vec![0.1, 0.5, f64::INFINITY]);
            // Cumulative 5/8/9 → 6/11/13: per bucket +1, +2, +1.
            assert_eq!(l.counts, vec![1, 2, 1]);
            assert_eq!(l.count, 4);
            assert!((l.sum - 1.5).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn resets_count_from_zero() {
    let mut d = Deltas::default();
    scrape(&mut d, VLLM_2);
    // The server restarted: everything is lower than before.
    let after = scrape(&mut d, VLLM_1);
    let counter = after
        .iter()
        .find(|o| o.0 == "vllm:prompt_tokens_total")
        .unwrap();
    assert_eq!(counter.2, Observation::Delta(100.0));
    let hist = after
        .iter()
        .find(|o| o.0 == "vllm:time_to_first_token_seconds")
        .unwrap();
    match &hist.2 {
        Observation::Buckets(l) => {
            assert_eq!(l.counts, vec![5, 3, 1]);
            assert_eq!(l.count, 9);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_new_bucket_layout_is_a_reset_in_the_new_layout() {
    let mut d = Deltas::default();
    scrape(&mut d, VLLM_1);
    let relayout = "# TYPE vllm:time_to_first_token_seconds histogram\n\
        vllm:time_to_first_token_seconds_bucket{le=\"0.2\",model_name=\"llama\"} 2\n\
        vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"llama\"} 3\n\
        vllm:time_to_first_token_seconds_count{model_name=\"llama\"} 3\n";
    let out = scrape(&mut d, relayout);
    match &out[0].2 {
        Observation::Buckets(l) => {
            assert_eq!(l.bounds, vec![0.2, f64::INFINITY]);
            assert_eq!(l.counts, vec![2, 1]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn summaries_keep_quantiles_as_gauges() {
    let mut d = Deltas::default();
    let text = "# TYPE rpc summary\nrpc{quantile=\"0.99\"} 0.7\nrpc_sum 10\nrpc_count 4\n";
    scrape(&mut d, text);
    let out = scrape(
        &mut d,
        "# TYPE rpc summary\nrpc{quantile=\"0.99\"} 0.9\nrpc_sum 12\nrpc_count 6\n",
    );
    let names: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(names, vec!["rpc", "rpc_count", "rpc_sum"]);
    assert_eq!(out[0].2, Observation::Value(0.9));
    assert!(
        out[0]
            .1
            .contains(&("quantile".to_owned(), "0.99".to_owned()))
    );
    assert_eq!(out[1].2, Observation::Delta(2.0));
}

#[test]
fn known_servers_are_recorded_twice_and_scaled() {
    let shared = crate::ingest::IngestShared::new(crate::ingest::IngestLimits {
        host: "h".into(),
        max_series: 100,
        max_tags: 16,
        max_tag_bytes: 200,
        interval_ms: 10_000,
    });
    let samples = Samples::new(shared);
    let layout = Layout {
        bounds: vec![100.0, 500.0, f64::INFINITY],
        counts: vec![1, 2, 0],
        sum: 700.0,
        count: 3,
    };
    let refused = record(
        &samples,
        vec![(
            "nv_inference_first_response_histogram_ms".into(),
            tags("m"),
            Observation::Buckets(layout),
        )],
    );
    assert_eq!(refused, 0);
    let mut out = crate::ingest::Drained::new();
    samples.drain(0, &mut out);
    let series = &out[&0];
    assert_eq!(series.len(), 2);
    let alias = series
        .iter()
        .find(|(k, _)| k.name() == "gen_ai.server.time_to_first_token")
        .unwrap();
    assert_eq!(alias.0.tag("server"), Some("triton"));
    match alias.1 {
        SeriesData::Buckets(b) => {
            assert_eq!(b.layouts()[0].bounds, vec![0.1, 0.5, f64::INFINITY]);
            assert!((b.sum() - 0.7).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
}

/// One `/metrics` page in the shape Text Generation Inference serves it: its router exports
/// through the `metrics-exporter-prometheus` crate, so counters carry no `_total`, and every
/// `*duration` histogram has TGI's 35 geometric buckets (1e-5 s × 1.5ⁿ, n = 1..35). No real
/// capture is in the shared fixtures; this page is built from TGI's bucket rule and metric
/// names, with `requests` requests so far, `slow` of them over 1 s.
fn tgi_page(requests: u64, slow: u64, queue: u64) -> String {
    let mut bounds = Vec::new();
    let mut v = 0.00001f64;
    for _ in 0..35 {
        v *= 1.5;
        bounds.push(v);
    }
    let mut s = String::from(
        "# TYPE tgi_request_count counter\n\
         tgi_request_count {requests}\n\
         # TYPE tgi_queue_size gauge\n\
         tgi_queue_size {queue}\n\
         # TYPE tgi_request_duration histogram\n",
    )
    .replace("{requests}", &requests.to_string())
    .replace("{queue}", &queue.to_string());
    for b in &bounds {
        let below = if *b < 1.0 { requests - slow } else { requests };
        // The crate prints bounds with Rust's shortest round-trip formatting.
        s.push_str(&format!(
            "tgi_request_duration_bucket{{le=\"{b}\"}} {below}\n"
        ));
    }
    s.push_str(&format!(
        "tgi_request_duration_bucket{{le=\"+Inf\"}} {requests}\n\
         tgi_request_duration_sum {}\n\
         tgi_request_duration_count {requests}\n",
        0.5 * (requests - slow) as f64 + 2.0 * slow as f64
    ));
    s
}

#[test]
fn tgi_pages_become_gen_ai_series() {
    let shared = crate::ingest::IngestShared::new(crate::ingest::IngestLimits {
        host: "h".into(),
        max_series: 100,
        max_tags: 16,
        max_tag_bytes: 200,
        interval_ms: 10_000,
    });
    let samples = Samples::new(shared);
    let mut d = Deltas::default();
    let first = d.update(&parse::parse(&tgi_page(100, 10, 2)), &[]);
    record(&samples, first);
    let mut out = crate::ingest::Drained::new();
    samples.drain(0, &mut out);
    // 40 more requests, 4 of them slow; 7 waiting now.
    let second = d.update(&parse::parse(&tgi_page(140, 14, 7)), &[]);
    assert_eq!(record(&samples, second), 0);
    let mut out = crate::ingest::Drained::new();
    samples.drain(0, &mut out);
    let series = &out[&0];
    let get = |name: &str| {
        series
            .iter()
            .find(|(k, _)| k.name() == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", series.keys().collect::<Vec<_>>()))
    };
    let (key, duration) = get("gen_ai.server.request.duration");
    assert_eq!(key.tag("server"), Some("tgi"));
    match duration {
        SeriesData::Buckets(b) => {
            let layout = &b.layouts()[0];
            assert_eq!(layout.bounds.len(), 36, "35 bounds and +Inf");
            assert_eq!(layout.counts.iter().sum::<u64>(), 40);
            // The 4 slow requests sit above the last bound under 1 s.
            let over_1s: u64 = layout
                .bounds
                .iter()
                .zip(&layout.counts)
                .filter(|(b, _)| **b > 1.0)
                .map(|(_, c)| c)
                .sum();
            assert_eq!(over_1s, 4);
            assert!((b.sum() - (0.5 * 36.0 + 2.0 * 4.0)).abs() < 1e-9);
        }
        other => panic!("{other:?}"),
    }
    match get("gen_ai.server.requests.waiting").1 {
        SeriesData::Histogram(h) => assert_eq!(h.max(), Some(7.0)),
        other => panic!("{other:?}"),
    }
    match get("tgi_request_count").1 {
        SeriesData::Counter(c) => assert_eq!(*c, 40.0),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        get("tgi_request_duration").1,
        SeriesData::Buckets(_)
    ));
}
