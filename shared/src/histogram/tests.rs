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
    for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
        let got = h.quantile(q).unwrap();
        let want = exact_quantile(&values, q);
        let tolerance = (want.abs() / 1024.0).max(STEP);
        assert!(
            (got - want).abs() <= tolerance,
            "q={q}: got {got}, want {want}"
        );
    }
    assert_eq!(h.count(), 20_000);
}

#[test]
fn signed_values_sort_correctly() {
    let values = [-5.0, -1.0, 0.0, 2.0, 10.0];
    let h = from_values(&values);
    assert_eq!(h.quantile(0.2).unwrap(), -5.0);
    assert_eq!(h.quantile(0.4).unwrap(), -1.0);
    assert_eq!(h.quantile(0.6).unwrap(), 0.0);
    assert_eq!(h.quantile(1.0).unwrap(), 10.0);
    assert_eq!(h.min(), Some(-5.0));
    assert_eq!(h.sum(), 6.0);
    assert_eq!(h.count_at_or_below(0.0), 3);
    assert_eq!(h.count_at_or_below(-1.0), 2);
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
fn v2_header_bounds_are_checked_before_decoding() {
    let h = from_values(&[1.0, 2.0, 3.0]);
    let wire = HistogramWire::from(h.clone());
    let good = wire.positive.clone();
    check_v2(&good).unwrap();

    // A header that asks for a huge highest trackable value is refused.
    let mut huge = good.clone();
    huge[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(matches!(check_v2(&huge), Err(DecodeError::Header(_))));

    // A payload length that promises more than is there is refused.
    let mut long = good.clone();
    long[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(check_v2(&long), Err(DecodeError::Header(_))));

    // A zero run of i64::MIN (which would overflow on negation) is refused.
    let mut evil = good[..40].to_vec();
    evil.extend_from_slice(&[0xff; 9]);
    let len = (evil.len() - 40) as u32;
    evil[4..8].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(check_v2(&evil), Err(DecodeError::Payload(_))));

    // A count that contradicts the buckets is refused.
    let mut lying = wire;
    lying.count += 1;
    assert!(ValueHistogram::try_from(lying).is_err());
}

fn arb_values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![-1e6..1e6f64, 0.0..10.0f64, Just(0.0), -1.0..0.0f64],
        0..200,
    )
}

proptest! {
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
    fn random_payloads_never_panic(tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = HistogramWire::from(from_values(&[1.0])).positive[..40].to_vec();
        bytes.extend_from_slice(&tail);
        let len = tail.len() as u32;
        bytes[4..8].copy_from_slice(&len.to_be_bytes());
        let _outcome = decode_v2(&bytes);
    }
}
