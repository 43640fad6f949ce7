//! Wall-clock window alignment, as pure functions of timestamps passed in.
//!
//! Times are Unix milliseconds (`i64`); intervals and resolutions are positive millisecond
//! lengths. Windows are aligned to multiples of their length since the Unix epoch, so every
//! agent's 10 s interval starts at the same instant.

/// Start of the window of length `len_ms` that contains `t_ms` (floor, also for negatives).
pub fn align_down(t_ms: i64, len_ms: u64) -> i64 {
    let len = len_ms.max(1) as i64;
    t_ms.div_euclid(len) * len
}

/// The first window boundary strictly after `t_ms`.
pub fn next_boundary(t_ms: i64, len_ms: u64) -> i64 {
    align_down(t_ms, len_ms) + len_ms.max(1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_to_multiples() {
        assert_eq!(align_down(12_345, 10_000), 10_000);
        assert_eq!(align_down(10_000, 10_000), 10_000);
        assert_eq!(align_down(-1, 10_000), -10_000);
        assert_eq!(next_boundary(10_000, 10_000), 20_000);
        assert_eq!(next_boundary(19_999, 10_000), 20_000);
    }
}
