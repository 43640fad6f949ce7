//! Unit and property tests for the value histogram.

use proptest::prelude::*;

use super::*;

fn from_values(values: &[f64]) -> ValueHistogram {
    let mut h = ValueHistogram::new();
    for v in values {
        h.record(*v).unwrap();
    }
    h
}

fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn quantiles_are_within_resolution_of_exact() {
    // A deterministic spread of latencies from 0.1 ms to ~5 s.
    let values: Vec<f64> = (1..=20_000).map(|i| 0.1 * 1.0005f64.powi(i)).collect();
    let h = from_values(&values);
    for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
        let got = h.quantile(q).unwrap();
        let want = exact_quantile(&values, q);
        assert!(
            (got - want).abs() <= want.abs() * MAX_RELATIVE_ERROR,
            "q={q}: got {got}, want {want}"
        );
    }
    assert_eq!(h.count(), 20_000);
}

#[test]
fn every_magnitude_keeps_three_significant_digits() {
    // Latencies in seconds (the 0.00535 s), tiny distances, probabilities, and the
    // whole promised range 1e-9 … 1e12, each decade sampled at irregular mantissas.
    let mut values = vec![0.00535, 1.3e-4, 2.7e-9, 0.999_999, 1e-9, 1e12, 7.77e11];
    for e in -9..12 {
        for k in 0..37 {
            values.push(10f64.powi(e) * (1.0 + 8.999 * f64::from(k) / 37.0));
        }
    }
    for v in values {
        for sign in [1.0, -1.0] {
            let x = sign * v;
            let mut h = ValueHistogram::new();
            h.record(x).unwrap();
            // Far neighbours so clamping to [min, max] does not hide the bucket's error.
            h.record(sign * 1e12).unwrap();
            h.record(-sign * 1e12).unwrap();
            let got = h.quantile(0.5).unwrap();
            let err = ((got - x) / x).abs();
            assert!(err < 0.001, "{x}: got {got} ({:.5} %)", err * 100.0);
            assert!(err <= MAX_RELATIVE_ERROR * (1.0 + 1e-12), "{x}: {err}");
        }
    }
}

#[test]
fn zero_is_exact_and_tiny_values_are_not_zero() {
    let h = from_values(&[0.0, -0.0, 1e-4, 1e-4, 0.0]);
    assert_eq!(h.quantile(0.6).unwrap(), 0.0);
    let got = h.quantile(1.0).unwrap();
    assert_eq!(got, 1e-4, "the max is exact");
    let h = from_values(&[1.2e-4, 1.3e-4, 1.4e-4]);
    let p50 = h.quantile(0.5).unwrap();
    assert!((p50 - 1.3e-4).abs() / 1.3e-4 < 0.001, "{p50}");
    assert_eq!(h.count_at_or_below(0.0), 0);
}

#[test]
fn thresholds_at_edges_count_values_equal_to_them() {
    assert_eq!(ValueHistogram::bucket_edge_at_or_below(500.0), Some(500.0));
    assert_eq!(ValueHistogram::bucket_edge_at_or_below(0.25), Some(0.25));
    let edge = ValueHistogram::bucket_edge_at_or_below(0.3).unwrap();
    assert!(edge <= 0.3 && edge > 0.3 * (1.0 - 0.002), "{edge}");
    let h = from_values(&[499.9, 500.0, 500.01, 0.3]);
    assert_eq!(h.count_at_or_below(500.0), 3);
    assert_eq!(
        h.count_at_or_below(edge),
        0,
        "0.3 lies above the edge used for 0.3"
    );
}

#[test]
fn sums_are_exact_in_any_unit() {
    let values = [0.00535, 1e-9, 0.1, 0.2, 123.456, 1e9];
    let h = from_values(&values);
    let exact: f64 = values.iter().sum();
    assert!((h.sum() - exact).abs() <= exact * 1e-15);
    let sq: f64 = values.iter().map(|v| v * v).sum();
    assert!((h.sum_of_squares() - sq).abs() <= sq * 1e-15);
    assert_eq!(h.min(), Some(1e-9));
    assert_eq!(h.max(), Some(1e9));
}

#[test]
fn memory_follows_the_spread_of_the_values() {
    // Three decades of latency (1 ms … 1 s), 10 000 observations.
    let values: Vec<f64> = (0..10_000)
        .map(|i| 10f64.powf(3.0 * f64::from(i * 7_919 % 10_000) / 10_000.0))
        .collect();
    let h = from_values(&values);
    let slots = (3.0 * 10f64.log2() * f64::from(BUCKETS_PER_OCTAVE)) as usize;
    assert!(
        h.heap_bytes() <= slots + slots / 8 + 16,
        "{} bytes",
        h.heap_bytes()
    );
    // The same values in seconds take the same memory: it is the spread that counts.
    let seconds = from_values(&values.iter().map(|v| v / 1000.0).collect::<Vec<_>>());
    assert!(seconds.heap_bytes().abs_diff(h.heap_bytes()) <= h.heap_bytes() / 8 + 16);
    // 0.1's HdrHistogram held u64 counters from 0 to the largest step: far more.
    let mut old = v1::V1Histogram::new();
    for v in &values {
        old.record(*v).unwrap();
    }
    assert!(
        old.heap_bytes() > 8 * h.heap_bytes(),
        "{} vs {}",
        old.heap_bytes(),
        h.heap_bytes()
    );
}

#[test]
fn v1_histograms_read_at_the_resolution_they_were_recorded_with() {
    let values = [0.5, 1.0, 12.345, 250.0, -3.0, 1e6, 0.0002];
    let mut old = v1::V1Histogram::new();
    for v in values {
        old.record(v).unwrap();
    }
    let wire = v1::HistogramWire::from(old.clone());
    let back = v1::V1Histogram::try_from(wire).unwrap();
    let h = back.to_current();
    assert_eq!(h.count(), values.len() as u64);
    assert_eq!(h.min(), Some(-3.0));
    assert_eq!(h.max(), Some(1e6));
    // 0.1 kept sums in its 0.001 steps: 0.0002 counted as 0 there.
    assert!((h.sum() - (values.iter().sum::<f64>() - 0.0002)).abs() < 1e-9);
    for q in [0.2, 0.5, 0.8, 1.0] {
        let (a, b) = (old.quantile(q).unwrap(), h.quantile(q).unwrap());
        assert!(
            (a - b).abs() <= a.abs() * 0.001 + 0.0005,
            "q={q}: {a} vs {b}"
        );
    }
    // 0.0002 was below 0.1's step: it reads as 0, as 0.1 would have reported it.
    assert_eq!(h.count_at_or_below(0.0), 2);
}

#[test]
fn signed_values_sort_correctly() {
    let values = [-5.0, -1.0, 0.0, 2.0, 10.0];
    let h = from_values(&values);
    assert_eq!(h.quantile(0.2).unwrap(), -5.0);
    let q = h.quantile(0.4).unwrap();
    assert!((q + 1.0).abs() <= MAX_RELATIVE_ERROR, "{q}");
    assert_eq!(h.quantile(0.6).unwrap(), 0.0);
    assert_eq!(h.quantile(1.0).unwrap(), 10.0);
    assert_eq!(h.min(), Some(-5.0));
    assert_eq!(h.sum(), 6.0);
    assert_eq!(h.count_at_or_below(0.0), 3);
    // Negative buckets are closed below ([-hi, -lo)): -1 shares one with values just above it,
    // so a whole-bucket count at -1 leaves it out; just above, it is in.
    assert_eq!(h.count_at_or_below(-1.0), 1);
    assert_eq!(h.count_at_or_below(-0.99), 2);
}

#[test]
fn non_finite_and_huge_values_are_refused() {
    let mut h = ValueHistogram::new();
    assert_eq!(h.record(f64::NAN), Err(RecordError::NonFinite));
    assert_eq!(h.record(f64::INFINITY), Err(RecordError::NonFinite));
    assert_eq!(h.record(1e13), Err(RecordError::OutOfRange));
    assert!(h.is_empty());
}

#[test]
fn empty_histogram_has_no_quantiles() {
    let h = ValueHistogram::new();
    assert_eq!(h.quantile(0.5), None);
    assert_eq!(h.min(), None);
    assert_eq!(h.count_at_or_below(1.0), 0);
}

#[test]
fn hostile_wire_forms_are_refused() {
    let h = from_values(&[1.0, 2.0, -3.0, 0.0]);
    let good = HistogramWire::from(h.clone());
    assert_eq!(ValueHistogram::try_from(good.clone()).unwrap(), h);

    let mut lying = good.clone();
    lying.count += 1;
    assert!(matches!(
        ValueHistogram::try_from(lying),
        Err(DecodeError::Inconsistent(_))
    ));

    let mut far = good.clone();
    far.positive = vec![(MAX_INDEX + 1, 1)];
    assert!(matches!(
        ValueHistogram::try_from(far),
        Err(DecodeError::Payload(_))
    ));

    let mut unordered = good.clone();
    unordered.positive = vec![(5, 1), (0, 1)];
    assert!(ValueHistogram::try_from(unordered).is_err());

    let mut wrapping = good.clone();
    wrapping.positive = vec![(MAX_INDEX, 1), (u32::MAX, 1)];
    assert!(ValueHistogram::try_from(wrapping).is_err());

    let mut nan = good.clone();
    nan.min = f64::NAN;
    assert!(ValueHistogram::try_from(nan).is_err());

    let mut inverted = good;
    inverted.min = 10.0;
    assert!(ValueHistogram::try_from(inverted).is_err());
}

#[test]
fn v1_header_bounds_are_checked_before_decoding() {
    let mut old = v1::V1Histogram::new();
    for v in [1.0, 2.0, 3.0] {
        old.record(v).unwrap();
    }
    let wire = v1::HistogramWire::from(old);
    let good = wire.positive().to_vec();
    v1::check_v2(&good).unwrap();

    // A header that asks for a huge highest trackable value is refused.
    let mut huge = good.clone();
    huge[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(matches!(v1::check_v2(&huge), Err(DecodeError::Header(_))));

    // A payload length that promises more than is there is refused.
    let mut long = good.clone();
    long[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(v1::check_v2(&long), Err(DecodeError::Header(_))));

    // A zero run of i64::MIN (which would overflow on negation) is refused.
    let mut evil = good[..40].to_vec();
    evil.extend_from_slice(&[0xff; 9]);
    let len = (evil.len() - 40) as u32;
    evil[4..8].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(v1::check_v2(&evil), Err(DecodeError::Payload(_))));
}

fn arb_values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            -1e6..1e6f64,
            0.0..10.0f64,
            Just(0.0),
            -1.0..0.0f64,
            1e-9..1e-6f64,
            (-12.0..12.0f64).prop_map(|e| 10f64.powf(e)),
        ],
        0..200,
    )
}

/// `count_at_or_below` as it was first written: a walk over the buckets, each compared by its
/// upper edge.
fn count_at_or_below_by_walking(h: &ValueHistogram, v: f64) -> u64 {
    if check(v).is_err() {
        return if v > 0.0 { h.count } else { 0 };
    }
    if v < 0.0 {
        let m = -v;
        return h
            .negative
            .iter()
            .filter(|(i, _)| bounds_of(*i).0 >= m)
            .map(|(_, c)| c)
            .sum();
    }
    let below: u64 = h
        .positive
        .iter()
        .take_while(|(i, _)| bounds_of(*i).1 <= v)
        .map(|(_, c)| c)
        .sum();
    h.negative.total() + h.zero + below
}

#[test]
fn counting_below_agrees_with_the_walk_at_bucket_edges() {
    let h = from_values(&[1e-12, 0.03, 0.030_01, 0.5, 2.0, 7.5, -0.2, 0.0, 1e9]);
    let edges = [0.03, 0.5, 2.0, 1e-12, 1e9].iter().flat_map(|v| {
        let (lo, hi) = bounds_of(index_of(*v));
        [
            *v,
            lo,
            hi,
            f64::from_bits(hi.to_bits() - 1),
            f64::from_bits(hi.to_bits() + 1),
        ]
    });
    let specials = [
        0.0,
        -0.0,
        f64::from_bits(1),
        bounds_of(0).1,
        1e12,
        2e12,
        f64::NAN,
        -1.0,
    ];
    for v in edges.chain(specials) {
        assert_eq!(
            h.count_at_or_below(v),
            count_at_or_below_by_walking(&h, v),
            "at {v:e}"
        );
    }
}

proptest! {
    /// Counting below a threshold by summing a slice gives what walking the buckets gave, for
    /// thresholds anywhere and on the values' own bucket edges.
    #[test]
    fn counting_below_agrees_with_the_walk(
        values in arb_values(),
        threshold in prop_oneof![-1e6..1e6f64, 0.0..1.0f64, (-12.0..12.0f64).prop_map(|e| 10f64.powf(e))],
        pick in any::<prop::sample::Index>(),
    ) {
        let h = from_values(&values);
        prop_assert_eq!(h.count_at_or_below(threshold), count_at_or_below_by_walking(&h, threshold));
        if !values.is_empty() {
            let v = values[pick.index(values.len())].abs();
            if v > 0.0 {
                let (lo, hi) = bounds_of(index_of(v));
                for t in [v, lo, hi] {
                    prop_assert_eq!(h.count_at_or_below(t), count_at_or_below_by_walking(&h, t));
                }
            }
        }
    }

    /// The run-skipping walk finds exactly the buckets the plain iterator does, at every
    /// counter width and around run edges.
    #[test]
    fn the_skipping_walk_finds_every_bucket(
        lo in 0u32..5000,
        gaps in proptest::collection::vec((0u32..40, 1u64..3), 0..80),
        wide in prop_oneof![Just(1u64), Just(300), Just(70_000), Just(5_000_000_000)],
    ) {
        let mut pairs = Vec::new();
        let mut at = lo;
        for (gap, c) in gaps {
            at += gap + 1;
            pairs.push((at, c * wide));
        }
        let hi = pairs.last().map_or(lo, |p| p.0) + 17;
        let largest = pairs.iter().map(|p| p.1).max().unwrap_or(0);
        let d = dense::Dense::from_ascending(lo, hi, largest, pairs.iter().copied());
        let mut walked = Vec::new();
        d.for_each_nonzero(|i, c| walked.push((i, c)));
        prop_assert_eq!(&walked, &d.iter().collect::<Vec<_>>());
        prop_assert_eq!(walked, pairs);
    }

    #[test]
    fn merge_is_commutative(a in arb_values(), b in arb_values()) {
        let (ha, hb) = (from_values(&a), from_values(&b));
        let mut ab = ha.clone();
        ab.merge(&hb).unwrap();
        let mut ba = hb.clone();
        ba.merge(&ha).unwrap();
        prop_assert_eq!(&ab, &ba);
        prop_assert_eq!(ab.count(), (a.len() + b.len()) as u64);
    }

    #[test]
    fn merge_is_associative(a in arb_values(), b in arb_values(), c in arb_values()) {
        let (ha, hb, hc) = (from_values(&a), from_values(&b), from_values(&c));
        let mut left = ha.clone();
        left.merge(&hb).unwrap();
        left.merge(&hc).unwrap();
        let mut bc = hb.clone();
        bc.merge(&hc).unwrap();
        let mut right = ha.clone();
        right.merge(&bc).unwrap();
        prop_assert_eq!(&left, &right);
    }

    #[test]
    fn merge_equals_recording_everything(a in arb_values(), b in arb_values()) {
        let mut merged = from_values(&a);
        merged.merge(&from_values(&b)).unwrap();
        let all: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
        prop_assert_eq!(merged, from_values(&all));
    }

    #[test]
    fn wire_round_trip(a in arb_values()) {
        let h = from_values(&a);
        let back = ValueHistogram::try_from(HistogramWire::from(h.clone())).unwrap();
        prop_assert_eq!(back, h);
    }

    #[test]
    fn quantiles_hold_the_relative_error_bound(a in arb_values(), q in 0.0..=1.0f64) {
        prop_assume!(!a.is_empty());
        let h = from_values(&a);
        let want = exact_quantile(&a, q);
        let got = h.quantile(q).unwrap();
        prop_assert!((got - want).abs() <= want.abs() * MAX_RELATIVE_ERROR * (1.0 + 1e-12)
            || want.abs() <= 2f64.powi(-40), "q={} got {} want {}", q, got, want);
    }

    #[test]
    fn random_wire_forms_never_panic(
        pairs in prop::collection::vec((any::<u32>(), any::<u64>()), 0..16),
        count in any::<u64>(),
    ) {
        let mut w = HistogramWire::from(from_values(&[1.0]));
        w.positive = pairs;
        w.count = count;
        let _outcome = ValueHistogram::try_from(w);
    }

    #[test]
    fn random_v1_payloads_never_panic(tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut old = v1::V1Histogram::new();
        old.record(1.0).unwrap();
        let mut bytes = v1::HistogramWire::from(old).positive()[..40].to_vec();
        bytes.extend_from_slice(&tail);
        let len = tail.len() as u32;
        bytes[4..8].copy_from_slice(&len.to_be_bytes());
        let _outcome = v1::check_v2(&bytes);
    }
}
