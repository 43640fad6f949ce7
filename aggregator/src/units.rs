//! The unit of a metric's values, for reports and tables. Values are stored as sent, and the
//! wire carries no unit, so it is known only from the name: the series the agent itself
//! samples and names (catalogue below, as documented in docs/MODEL-SERVERS.md), then the
//! Prometheus/OpenMetrics naming convention's unit suffixes (`_seconds`, `_bytes`, …, with
//! `.` as well as `_` before them). Anything else is `None`: "as sent" (a DogStatsD `ms` timer
//! is in milliseconds, but the agent does not keep the line's type).

/// Pitot's own series and the `gen_ai.server.*` names it maps model servers to.
const CATALOGUE: &[(&str, &str)] = &[
    ("system.cpu.utilization", "fraction"),
    ("system.cpu.core.utilization", "fraction"),
    ("system.memory.usage", "bytes"),
    ("system.memory.utilization", "fraction"),
    ("system.paging.usage", "bytes"),
    ("system.network.io", "bytes"),
    ("system.disk.io", "bytes"),
    ("process.cpu.utilization", "fraction"),
    ("process.memory.usage", "bytes"),
    ("process.gpu.memory.usage", "bytes"),
    ("gpu.utilization", "fraction"),
    ("gpu.memory.usage", "bytes"),
    ("gpu.memory.limit", "bytes"),
    ("gpu.power", "W"),
    ("gpu.temperature", "°C"),
    ("gpu.clock.sm", "MHz"),
    ("gen_ai.server.request.duration", "s"),
    ("gen_ai.server.time_to_first_token", "s"),
    ("gen_ai.server.time_per_output_token", "s"),
    ("pitot.agent.spool.bytes", "bytes"),
    ("pitot.agent.client.bytes_dropped", "bytes"),
];

/// Name endings and the unit they mean, longest first where one ends another.
const SUFFIXES: &[(&str, &str)] = &[
    ("milliseconds", "ms"),
    ("microseconds", "µs"),
    ("nanoseconds", "ns"),
    ("seconds", "s"),
    ("bytes", "bytes"),
    ("ms", "ms"),
    ("us", "µs"),
    ("ns", "ns"),
    ("ratio", "fraction"),
    ("percent", "%"),
    ("celsius", "°C"),
    ("watts", "W"),
    ("joules", "J"),
    ("tokens", "tokens"),
];

/// The unit of `metric`'s values, when its name says it.
pub fn unit(metric: &str) -> Option<&'static str> {
    if let Some((_, u)) = CATALOGUE.iter().find(|(name, _)| *name == metric) {
        return Some(u);
    }
    // Prometheus counters end in `_total`, histograms' parts in `_sum`/`_count`/`_bucket`:
    // the unit comes before them.
    let mut base = metric;
    for tail in ["_total", "_sum", "_bucket"] {
        base = base.strip_suffix(tail).unwrap_or(base);
    }
    SUFFIXES.iter().find_map(|(suffix, u)| {
        let head = base.strip_suffix(suffix)?;
        (head.ends_with('_') || head.ends_with('.')).then_some(*u)
    })
}

#[cfg(test)]
mod tests {
    use super::unit;

    #[test]
    fn units_come_from_the_catalogue_then_the_name() {
        assert_eq!(unit("gpu.power"), Some("W"));
        assert_eq!(unit("gen_ai.server.time_to_first_token"), Some("s"));
        assert_eq!(unit("vllm:e2e_request_latency_seconds"), Some("s"));
        assert_eq!(unit("nv_inference_request_duration_us"), Some("µs"));
        assert_eq!(unit("nv_inference_first_response_histogram_ms"), Some("ms"));
        assert_eq!(unit("pitot.agent.uplink.lag_seconds"), Some("s"));
        assert_eq!(unit("node_network_receive_bytes_total"), Some("bytes"));
        assert_eq!(unit("vllm:prompt_tokens_total"), Some("tokens"));
        assert_eq!(unit("request.duration.seconds"), Some("s"));
        // No unit in the name: as sent.
        assert_eq!(unit("request.latency"), None);
        assert_eq!(unit("request.count"), None);
        // A word that merely ends in a unit's letters is not one.
        assert_eq!(unit("requests.status"), None);
        assert_eq!(unit("tgi_request_count"), None);
    }
}
