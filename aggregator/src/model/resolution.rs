//! Storage resolutions. Each has a one-byte code that prefixes its keys in the store; the codes
//! are written here, once, beside their resolution, so reordering or extending the table can
//! never re-key a store (a test pins them).

use std::time::Duration;

/// One resolution the aggregator can keep: its store key code, config label, bucket length and
/// default retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolutionSpec {
    /// Key code in the store. Never change or reuse one.
    pub code: u8,
    /// Name in `[retention]` (`"10s"`).
    pub label: &'static str,
    /// Bucket length, seconds.
    pub bucket_secs: u64,
    /// Retention when the config does not set one.
    pub default_retention: &'static str,
}

/// The resolutions, finest first.
pub const RESOLUTIONS: [ResolutionSpec; 3] = [
    ResolutionSpec {
        code: 0,
        label: "10s",
        bucket_secs: 10,
        default_retention: "2d",
    },
    ResolutionSpec {
        code: 1,
        label: "1m",
        bucket_secs: 60,
        default_retention: "30d",
    },
    ResolutionSpec {
        code: 2,
        label: "1h",
        bucket_secs: 3600,
        default_retention: "400d",
    },
];

/// A storage resolution: bucket length and how long buckets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// One-byte code in bucket keys.
    pub code: u8,
    /// Bucket length.
    pub bucket: Duration,
    /// Retention.
    pub retention: Duration,
}

impl Resolution {
    /// Bucket length in ms.
    pub fn bucket_ms(&self) -> u64 {
        self.bucket.as_millis() as u64
    }

    /// `10s`, `1m`, `1h`.
    pub fn label(&self) -> String {
        let secs = self.bucket.as_secs();
        if secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    }
}

impl ResolutionSpec {
    /// This resolution with a retention.
    pub fn with_retention(&self, retention: Duration) -> Resolution {
        Resolution {
            code: self.code,
            bucket: Duration::from_secs(self.bucket_secs),
            retention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_codes_are_fixed_and_unique() {
        // Stores on disk are keyed by these bytes: they may never change.
        let codes: Vec<(&str, u8)> = RESOLUTIONS.iter().map(|r| (r.label, r.code)).collect();
        assert_eq!(codes, [("10s", 0), ("1m", 1), ("1h", 2)]);
        assert!(
            RESOLUTIONS
                .windows(2)
                .all(|w| w[0].bucket_secs < w[1].bucket_secs)
        );
    }
}
