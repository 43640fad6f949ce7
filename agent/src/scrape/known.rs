//! Built-in mappings for known model servers: the common LLM-serving series of vLLM
//! (`vllm:*`), Triton (`nv_*`) and TGI (`tgi_*`) get a second, stable name aligned with the
//! OpenTelemetry GenAI semantic conventions, in seconds where the server uses another unit.
//! The original series is always kept; docs/MODEL-SERVERS.md lists each server's caveats.

/// A stable name for a server's series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alias {
    /// The OpenTelemetry-aligned name.
    pub name: &'static str,
    /// Multiplier into the alias' unit (Triton's milliseconds into seconds).
    pub scale: f64,
    /// The `server` tag the alias carries.
    pub server: &'static str,
}

const fn alias(name: &'static str, scale: f64, server: &'static str) -> Alias {
    Alias {
        name,
        scale,
        server,
    }
}

/// `(server's name, alias)`: histograms map to histograms, counters to counters, gauges to
/// gauges.
const TABLE: &[(&str, Alias)] = &[
    // vLLM (also exported by Triton's vLLM backend under the same names).
    (
        "vllm:e2e_request_latency_seconds",
        alias("gen_ai.server.request.duration", 1.0, "vllm"),
    ),
    (
        "vllm:time_to_first_token_seconds",
        alias("gen_ai.server.time_to_first_token", 1.0, "vllm"),
    ),
    (
        "vllm:time_per_output_token_seconds",
        alias("gen_ai.server.time_per_output_token", 1.0, "vllm"),
    ),
    (
        "vllm:inter_token_latency_seconds",
        alias("gen_ai.server.time_per_output_token", 1.0, "vllm"),
    ),
    (
        "vllm:request_queue_time_seconds",
        alias("gen_ai.server.request.queue_time", 1.0, "vllm"),
    ),
    (
        "vllm:prompt_tokens_total",
        alias("gen_ai.server.usage.input_tokens", 1.0, "vllm"),
    ),
    (
        "vllm:generation_tokens_total",
        alias("gen_ai.server.usage.output_tokens", 1.0, "vllm"),
    ),
    (
        "vllm:request_prompt_tokens",
        alias("gen_ai.server.request.input_tokens", 1.0, "vllm"),
    ),
    (
        "vllm:request_generation_tokens",
        alias("gen_ai.server.request.output_tokens", 1.0, "vllm"),
    ),
    (
        "vllm:num_requests_running",
        alias("gen_ai.server.requests.running", 1.0, "vllm"),
    ),
    (
        "vllm:num_requests_waiting",
        alias("gen_ai.server.requests.waiting", 1.0, "vllm"),
    ),
    // Triton.
    (
        "nv_inference_first_response_histogram_ms",
        alias("gen_ai.server.time_to_first_token", 0.001, "triton"),
    ),
    (
        "nv_inference_request_success",
        alias("gen_ai.server.requests.succeeded", 1.0, "triton"),
    ),
    (
        "nv_inference_request_failure",
        alias("gen_ai.server.requests.failed", 1.0, "triton"),
    ),
    (
        "nv_inference_pending_request_count",
        alias("gen_ai.server.requests.waiting", 1.0, "triton"),
    ),
    // Text Generation Inference.
    (
        "tgi_request_duration",
        alias("gen_ai.server.request.duration", 1.0, "tgi"),
    ),
    (
        "tgi_request_queue_duration",
        alias("gen_ai.server.request.queue_time", 1.0, "tgi"),
    ),
    (
        "tgi_request_mean_time_per_token_duration",
        alias("gen_ai.server.time_per_output_token", 1.0, "tgi"),
    ),
    (
        "tgi_request_input_length",
        alias("gen_ai.server.request.input_tokens", 1.0, "tgi"),
    ),
    (
        "tgi_request_generated_tokens",
        alias("gen_ai.server.request.output_tokens", 1.0, "tgi"),
    ),
    (
        "tgi_queue_size",
        alias("gen_ai.server.requests.waiting", 1.0, "tgi"),
    ),
];

/// The alias of a server's series name, if it is a known one.
pub fn alias_of(name: &str) -> Option<Alias> {
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// Pitot's tag for a label: `model_name` (vLLM) becomes `model`; Triton's `model` and
/// `version` already match; everything else keeps its name.
pub fn tag_name(label: &str) -> &str {
    match label {
        "model_name" => "model",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_map_and_unknown_ones_do_not() {
        assert_eq!(
            alias_of("vllm:time_to_first_token_seconds").map(|a| a.name),
            Some("gen_ai.server.time_to_first_token")
        );
        let triton = alias_of("nv_inference_first_response_histogram_ms").unwrap();
        assert_eq!(triton.scale, 0.001);
        assert_eq!(triton.server, "triton");
        assert!(alias_of("node_cpu_seconds_total").is_none());
        assert_eq!(tag_name("model_name"), "model");
        assert_eq!(tag_name("version"), "version");
    }
}
