//! Tests of recording into shards.

use super::*;

fn shard(max_series: usize) -> (Arc<IngestShared>, Shard) {
    let shared = IngestShared::new(IngestLimits {
        host: "h1".into(),
        max_series,
        max_tags: 8,
        max_tag_bytes: 64,
        interval_ms: 10_000,
    });
    let shard = Shard::new(Arc::clone(&shared), 1_000_000);
    (shared, shard)
}

fn drain(shard: &Shard) -> Drained {
    let mut out = Drained::new();
    shard.drain(1_010_000, &mut out);
    out
}

fn key(name: &str, tags: &[(&str, &str)]) -> SeriesKey {
    SeriesKey::new(
        name,
        tags.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .unwrap()
}

#[test]
fn records_every_type_with_rates_and_host() {
    let (shared, shard) = shard(100);
    let datagram = b"lat:10:20|ms|#model:m\nreq:1|c|@0.5|#model:m\nlang:en|s\n\
                     lat:30|ms|#model:m,host:spoofed\ng:5|g\n_e{1,1}:a|b\n_sc|x|0";
    shard.record_datagrams(std::iter::once(&datagram[..]));
    let out = drain(&shard);
    let open = &out[&1_000_000];
    let lat = &open[&key("lat", &[("model", "m"), ("host", "h1")])];
    let SeriesData::Histogram(h) = lat else {
        panic!("histogram expected")
    };
    assert_eq!(
        h.count(),
        3,
        "both spellings of the series merge, host is forced"
    );
    assert_eq!(
        open[&key("req", &[("model", "m"), ("host", "h1")])],
        SeriesData::Counter(2.0)
    );
    assert!(matches!(
        open[&key("lang", &[("host", "h1")])],
        SeriesData::Categorical(_)
    ));
    let stats = &shared.stats;
    assert_eq!(stats.events.load(Ordering::Relaxed), 1);
    assert_eq!(stats.service_checks.load(Ordering::Relaxed), 1);
    assert_eq!(stats.recorded.load(Ordering::Relaxed), 6);
}

#[test]
fn sampled_timers_count_by_inverse_rate() {
    let (_, shard) = shard(100);
    shard.record_datagrams(std::iter::once(&b"lat:10|ms|@0.1"[..]));
    let out = drain(&shard);
    let SeriesData::Histogram(h) = &out[&1_000_000][&key("lat", &[("host", "h1")])] else {
        panic!("histogram expected")
    };
    assert_eq!(h.count(), 10);
}

#[test]
fn garbage_is_counted_per_reason_and_good_lines_survive() {
    let (shared, shard) = shard(100);
    let mut datagram = b"ok:1|c\n\xff\xfe:1|c\nbad:NaN|ms\nbad:x|ms\nnope\n".to_vec();
    datagram.extend_from_slice(format!("t:1|c|#{}\n", "k:v,".repeat(100)).as_bytes());
    datagram.extend_from_slice(b"ok:1|c");
    shard.record_datagrams(std::iter::once(datagram.as_slice()));
    let out = drain(&shard);
    assert_eq!(
        out[&1_000_000][&key("ok", &[("host", "h1")])],
        SeriesData::Counter(2.0)
    );
    let malformed: BTreeMap<_, _> = shared
        .stats
        .malformed_counts()
        .into_iter()
        .map(|(m, c)| (m.as_str(), c))
        .collect();
    assert_eq!(malformed["invalid_utf8"], 1);
    assert_eq!(malformed["non_finite"], 1);
    assert_eq!(malformed["invalid_value"], 1);
    assert_eq!(malformed["missing_type"], 1);
    let dropped: BTreeMap<_, _> = shared
        .stats
        .dropped_counts()
        .into_iter()
        .map(|(d, c)| (d.as_str(), c))
        .collect();
    assert_eq!(dropped["tag_limit"], 1);
}

#[test]
fn series_limit_drops_new_series_and_counts() {
    let (shared, shard) = shard(2);
    shard.record_datagrams(std::iter::once(&b"a:1|c\nb:1|c\nc:1|c\na:1|c"[..]));
    let out = drain(&shard);
    assert_eq!(out[&1_000_000].len(), 2);
    assert_eq!(shared.series(), 2);
    assert_eq!(shared.stats.dropped_counts()[0], (Dropped::SeriesLimit, 1));
}

#[test]
fn idle_series_are_evicted_and_free_the_limit() {
    let (shared, shard) = shard(1);
    shard.record_datagrams(std::iter::once(&b"a:1|c"[..]));
    for _ in 0..=IDLE_INTERVALS_BEFORE_EVICTION {
        drain(&shard);
    }
    assert_eq!(shared.series(), 0);
    shard.record_datagrams(std::iter::once(&b"b:1|c"[..]));
    assert_eq!(shared.series(), 1);
}

#[test]
fn timestamps_route_to_their_interval() {
    let (shared, shard) = shard(100);
    // Open interval starts at 1_000_000 ms = 1000 s; 995 s is the previous 10 s interval.
    shard.record_datagrams(std::iter::once(
        &b"a:1|c|T995\na:1|c|T1001\na:1|c|T99999"[..],
    ));
    let out = drain(&shard);
    assert_eq!(
        out[&990_000][&key("a", &[("host", "h1")])],
        SeriesData::Counter(1.0)
    );
    assert_eq!(
        out[&1_000_000][&key("a", &[("host", "h1")])],
        SeriesData::Counter(1.0)
    );
    let dropped = shared.stats.dropped_counts();
    assert!(dropped.contains(&(Dropped::TimestampOutOfRange, 1)));
}

#[test]
fn missing_and_unparsable_values_are_counted_per_series() {
    let (_, shard) = shard(100);
    shard.record_datagrams(std::iter::once(
        &b"input.age:|h|#model:m\ninput.age:abc|h|#model:m\ninput.age:31|h|#model:m\ninput.lang:|s"
            [..],
    ));
    let out = drain(&shard);
    let open = &out[&1_000_000];
    let age = key(
        INVALID_VALUES,
        &[("model", "m"), ("host", "h1"), ("metric", "input.age")],
    );
    assert_eq!(open[&age], SeriesData::Counter(2.0));
    let lang = key(INVALID_VALUES, &[("host", "h1"), ("metric", "input.lang")]);
    assert_eq!(open[&lang], SeriesData::Counter(1.0));
    let SeriesData::Histogram(h) = &open[&key("input.age", &[("model", "m"), ("host", "h1")])]
    else {
        panic!("histogram expected")
    };
    assert_eq!(h.count(), 1);
}
