//! The aggregator's own observability: the self-metric counters served on
//! `/metrics` under `pitot_aggregator_*` names.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters, monotonic since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// QUIC connections accepted (TLS done).
    pub connections: AtomicU64,
    /// Connection attempts refused (TLS or identity failures).
    pub connections_refused: AtomicU64,
    /// Batches merged.
    pub batches_merged: AtomicU64,
    /// Replayed batches acknowledged without merging.
    pub batches_duplicate: AtomicU64,
    /// Duplicates newer than their epoch's high-water batch (see `MergeOutcome::Rewound`).
    pub sequence_rewinds: AtomicU64,
    /// Damage found in the store's files at open (`store::Damage`).
    pub store_damage: AtomicU64,
    /// Batches rejected (undecodable, wrong identity).
    pub batches_rejected: AtomicU64,
    /// Series refused for a kind conflict.
    pub kind_conflicts: AtomicU64,
    /// Protocol errors (connection closed).
    pub protocol_errors: AtomicU64,
    /// Buckets pruned by retention.
    pub buckets_pruned: AtomicU64,
    /// Coarser buckets written by rollups.
    pub buckets_rolled_up: AtomicU64,
    /// Merge requests pushed to the merge actor.
    pub merge_queue_pushed: AtomicU64,
    /// Merge requests popped by the merge actor.
    pub merge_queue_popped: AtomicU64,
    /// HTTP requests refused for a missing or unknown token (401).
    pub http_unauthorized: AtomicU64,
    /// HTTP requests refused outside their token's scopes (403).
    pub http_forbidden: AtomicU64,
    /// Audit events dropped (queue full) or entries not written (store error).
    pub audit_dropped: AtomicU64,
    /// True once the QUIC listener is bound.
    pub quic_up: AtomicBool,
    /// False while the store takes no writes (full disk, reopening after a storage error).
    pub store_writable: AtomicBool,
}

impl Stats {
    /// Prometheus text exposition of the counters.
    pub fn exposition(&self) -> String {
        let rows: [(&str, &str, &AtomicU64); 16] = [
            (
                "pitot_aggregator_connections_total",
                "QUIC connections accepted.",
                &self.connections,
            ),
            (
                "pitot_aggregator_connections_refused_total",
                "Connections refused at TLS or identity checks.",
                &self.connections_refused,
            ),
            (
                "pitot_aggregator_merge_batches_total",
                "Batches merged into the store.",
                &self.batches_merged,
            ),
            (
                "pitot_aggregator_duplicate_batches_total",
                "Replayed batches acknowledged without merging.",
                &self.batches_duplicate,
            ),
            (
                "pitot_aggregator_sequence_rewinds_total",
                "Batches discarded because their agent's sequence went backwards (restored spool).",
                &self.sequence_rewinds,
            ),
            (
                "pitot_aggregator_store_damage_total",
                "Damage found in the store's files when it was opened (logged at error, in the audit trail).",
                &self.store_damage,
            ),
            (
                "pitot_aggregator_rejected_batches_total",
                "Batches rejected as undecodable or not the sender's.",
                &self.batches_rejected,
            ),
            (
                "pitot_aggregator_kind_conflicts_total",
                "Series refused because their kind differs from the stored one.",
                &self.kind_conflicts,
            ),
            (
                "pitot_aggregator_protocol_errors_total",
                "Connections closed for a protocol violation.",
                &self.protocol_errors,
            ),
            (
                "pitot_aggregator_pruned_buckets_total",
                "Buckets deleted by retention.",
                &self.buckets_pruned,
            ),
            (
                "pitot_aggregator_rolled_up_buckets_total",
                "Coarser buckets written from finer ones by rollups.",
                &self.buckets_rolled_up,
            ),
            (
                "pitot_aggregator_merge_queue_pushed_total",
                "Merge requests queued.",
                &self.merge_queue_pushed,
            ),
            (
                "pitot_aggregator_merge_queue_popped_total",
                "Merge requests taken by the merge actor.",
                &self.merge_queue_popped,
            ),
            (
                "pitot_aggregator_http_unauthorized_total",
                "HTTP requests refused without a valid bearer token (401).",
                &self.http_unauthorized,
            ),
            (
                "pitot_aggregator_http_forbidden_total",
                "HTTP requests refused outside their token's scopes (403).",
                &self.http_forbidden,
            ),
            (
                "pitot_aggregator_audit_dropped_total",
                "Audit events dropped (merge queue full) or entries the store failed to write.",
                &self.audit_dropped,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP pitot_aggregator_store_writable 1 when the store takes writes, 0 while it is \
             not (full disk, or reopening after a storage error): batches are refused and agents \
             keep them spooled.\n# TYPE pitot_aggregator_store_writable gauge\n\
             pitot_aggregator_store_writable {}\n",
            u8::from(self.store_writable.load(Ordering::Relaxed))
        ));
        out
    }
}
