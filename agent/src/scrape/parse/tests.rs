//! Parser tests on the model servers' own published `/metrics` samples
//! (`agent/tests/fixtures/model-servers/`, with their sources and quirks in its README).

use super::*;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/model-servers")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn family<'a>(e: &'a Exposition, name: &str) -> &'a Family {
    e.families
        .get(name)
        .unwrap_or_else(|| panic!("no family {name} in {:?}", e.families.keys()))
}

#[test]
fn vllm_docs_example_with_its_elisions() {
    let e = parse(&fixture("vllm_docs-design-metrics_example.prom"));
    // The three `...` lines of the docs are counted, not fatal.
    assert_eq!(e.malformed.get(&LineError::BadName), Some(&3));
    assert_eq!(
        family(&e, "vllm:num_requests_running").kind,
        MetricType::Gauge
    );
    let tokens = family(&e, "vllm:generation_tokens_total");
    assert_eq!(tokens.kind, MetricType::Counter);
    assert_eq!(tokens.samples[0].1.value, 27_453.0);
    let success = family(&e, "vllm:request_success_total");
    assert_eq!(success.samples.len(), 3);
    let ttft = family(&e, "vllm:time_to_first_token_seconds");
    assert_eq!(ttft.kind, MetricType::Histogram);
    let buckets = ttft
        .samples
        .iter()
        .filter(|(p, _)| *p == Part::Bucket)
        .count();
    assert_eq!(buckets, 8);
    assert!(
        ttft.samples
            .iter()
            .any(|(p, s)| *p == Part::Count && s.value == 140.0)
    );
    assert_eq!(
        label(&ttft.samples[0].1.labels, "model_name"),
        Some("meta-llama/Llama-3.1-8B-Instruct")
    );
}

#[test]
fn triton_vllm_backend_names_with_triton_labels() {
    let e = parse(&fixture("triton_vllm-backend_readme_vllm-metrics.prom"));
    assert!(e.malformed.get(&LineError::BadName).copied().unwrap_or(0) >= 1);
    let ttft = family(&e, "vllm:time_to_first_token_seconds");
    assert_eq!(ttft.kind, MetricType::Histogram);
    let (_, first) = &ttft.samples[0];
    assert_eq!(label(&first.labels, "model"), Some("vllm_model"));
    assert_eq!(label(&first.labels, "version"), Some("1"));
    // `_count` and `_sum` come before the buckets there; `le` is the last label.
    assert_eq!(ttft.samples[0].0, Part::Count);
    assert_eq!(ttft.samples[1].0, Part::Sum);
    assert!(ttft.samples.iter().any(|(p, s)| *p == Part::Bucket
        && label(&s.labels, "le") == Some("+Inf")
        && s.value == 1.0));
    assert_eq!(
        family(&e, "vllm:prompt_tokens_total").kind,
        MetricType::Counter
    );
}

#[test]
fn tensorrt_llm_gauges_parse_completely() {
    let e = parse(&fixture(
        "triton_tensorrtllm-backend_readme_trtllm-gauges.prom",
    ));
    assert!(e.malformed.is_empty(), "{:?}", e.malformed);
    let requests = family(&e, "nv_trt_llm_request_metrics");
    assert_eq!(requests.kind, MetricType::Gauge);
    assert!(
        requests
            .samples
            .iter()
            .any(|(_, s)| { label(&s.labels, "request_type") == Some("max") && s.value == 512.0 })
    );
    assert_eq!(
        family(&e, "nv_trt_llm_disaggregated_serving_metrics").kind,
        MetricType::Counter
    );
}

#[test]
fn triton_histogram_with_mismatched_type_and_no_bucket_suffix() {
    let e = parse(&fixture("triton_server_docs_first-response-histogram.prom"));
    assert!(e.malformed.is_empty(), "{:?}", e.malformed);
    let h = family(&e, "nv_inference_first_response_histogram_ms");
    assert_eq!(h.kind, MetricType::Histogram);
    let parts: Vec<Part> = h.samples.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        parts,
        vec![
            Part::Count,
            Part::Sum,
            Part::Bucket,
            Part::Bucket,
            Part::Bucket,
            Part::Bucket,
            Part::Bucket
        ]
    );
    // The space before `le` is tolerated.
    assert_eq!(label(&h.samples[2].1.labels, "le"), Some("100"));
}

#[test]
fn openmetrics_suffixes_exemplars_and_bad_lines() {
    let text = "# TYPE requests counter\n\
                requests_total{code=\"200\"} 12 # {trace_id=\"abc\"} 1.0\n\
                requests_created{code=\"200\"} 1.7e9\n\
                # TYPE lat histogram\n\
                lat_bucket{le=\"0.5\"} 3\n\
                lat_bucket{le=\"+Inf\"} 4\n\
                lat_bucket{le=\"soon\"} 4\n\
                lat_count 4\n\
                lat_sum 1.5\n\
                weird{a=\"unterminated} 3\n\
                ok{a=\"x\\\"y\",} 2\n\
                # EOF\n\
                after_eof 1\n";
    let e = parse(text);
    let r = family(&e, "requests");
    assert_eq!(r.samples[0].1.value, 12.0);
    assert_eq!(r.samples[1].0, Part::Created);
    assert_eq!(family(&e, "lat").samples.len(), 4);
    assert_eq!(e.malformed.get(&LineError::BadBound), Some(&1));
    assert_eq!(e.malformed.get(&LineError::BadLabels), Some(&1));
    assert_eq!(
        label(&family(&e, "ok").samples[0].1.labels, "a"),
        Some("x\"y")
    );
    assert!(!e.families.contains_key("after_eof"));
}
