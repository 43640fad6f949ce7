//! The audit trail: an append-only list of what happened to the fleet's accountability —
//! agents enrolled and their certificates changed, connections refused, configurations loaded
//! (with a digest and a diff of models, SLOs and drift settings), SLO alert and drift status
//! transitions, first sightings of a model version on a host, API tokens used and refused,
//! deployment gate decisions with their evidence.
//!
//! Each entry is hash-chained to the one before it: `hash = SHA-256(canonical bytes)`, where
//! the canonical bytes are, in order and big-endian,
//!
//! ```text
//! "pitot-audit-1" ‖ seq: u64 ‖ time_ms: i64 ‖ prev_hash: [u8; 32]
//!   ‖ len: u32 ‖ kind ‖ len: u32 ‖ subject ‖ len: u32 ‖ detail (JSON text)
//! ```
//!
//! and the store keeps `canonical ‖ hash` under the entry's sequence number. Changing any byte
//! of an entry breaks its own hash; removing or reordering entries breaks the next one's
//! `prev_hash` or the sequence. [`verify`] walks the chain and names the first broken entry.
//! The state the trail implies (each agent's certificate fingerprint, each SLO's alert, each
//! input's drift status, the last configuration) is rebuilt from it at start ([`Chain::load`]),
//! so a transition is recorded once, across restarts.

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::hex;
use crate::model::rfc3339;
use crate::store::{Store, StoreError};

/// The largest entry decoded (the config diff is the largest kind).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

const MAGIC: &[u8] = b"pitot-audit-1";

/// One entry, decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number, from 1, without gaps.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// When, Unix ms.
    pub at_ms: i64,
    /// What happened: `agent.enrolled`, `agent.certificate_changed`, `connection.refused`,
    /// `config.loaded`, `slo.alert`, `drift.status`, `version.first_seen`, `token.used`,
    /// `token.denied`.
    pub kind: String,
    /// What it happened to (an agent id, an SLO, a model/version/host, a token's name).
    pub subject: String,
    /// The particulars.
    pub detail: Value,
    /// The previous entry's hash (hex; zeros for the first).
    pub prev: String,
    /// This entry's hash (hex).
    pub hash: String,
}

fn canonical(
    seq: u64,
    time_ms: i64,
    prev: &[u8; 32],
    kind: &str,
    subject: &str,
    detail: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 60 + kind.len() + subject.len() + detail.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(prev);
    for field in [kind, subject, detail] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Takes `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// What one stored entry says, and whether it is intact: `(entry, stored hash, computed hash)`.
fn decode(bytes: &[u8]) -> Result<(Entry, [u8; 32], [u8; 32]), String> {
    if bytes.len() > MAX_ENTRY_BYTES + 32 {
        return Err(format!("{} bytes, more than an entry may be", bytes.len()));
    }
    if bytes.len() < 32 {
        return Err("too short to hold a hash".into());
    }
    let (body, stored) = bytes.split_at(bytes.len() - 32);
    let mut r = body;
    let bad = || "its bytes do not parse as an entry".to_owned();
    if take(&mut r, MAGIC.len()) != Some(MAGIC) {
        return Err(bad());
    }
    let u64_at = |r: &mut &[u8]| -> Option<[u8; 8]> { take(r, 8)?.try_into().ok() };
    let seq = u64::from_be_bytes(u64_at(&mut r).ok_or_else(bad)?);
    let time_ms = i64::from_be_bytes(u64_at(&mut r).ok_or_else(bad)?);
    let prev: [u8; 32] = take(&mut r, 32)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(bad)?;
    let mut fields = Vec::with_capacity(3);
    for _ in 0..3 {
        let len: [u8; 4] = take(&mut r, 4)
            .and_then(|l| l.try_into().ok())
            .ok_or_else(bad)?;
        let text = take(&mut r, u32::from_be_bytes(len) as usize).ok_or_else(bad)?;
        fields.push(String::from_utf8_lossy(text).into_owned());
    }
    if !r.is_empty() {
        return Err(bad());
    }
    let stored: [u8; 32] = stored.try_into().map_err(|_| bad())?;
    let computed = sha256(body);
    let detail = serde_json::from_str(&fields[2]).unwrap_or(Value::String(fields[2].clone()));
    Ok((
        Entry {
            seq,
            at: rfc3339(time_ms),
            at_ms: time_ms,
            kind: fields[0].clone(),
            subject: fields[1].clone(),
            detail,
            prev: hex(&prev),
            hash: hex(&stored),
        },
        stored,
        computed,
    ))
}

/// What happened, as the rest of the aggregator reports it to the merge actor, which turns it
/// into entries (only when it changes something the trail already says).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An agent connected with a certificate (SHA-256 of its DER).
    AgentSeen {
        /// Agent id (the certificate's).
        agent: String,
        /// Certificate fingerprint, hex.
        fingerprint: String,
        /// Peer address.
        peer: String,
    },
    /// A connection refused before an agent session (rate-limited by the sender).
    Refused {
        /// Peer IP.
        peer: String,
        /// `unknown-ca`, `identity-mismatch`…
        kind: String,
        /// The error.
        error: String,
        /// Refusals of the same peer and kind not recorded since the last entry.
        suppressed: u64,
    },
    /// The configuration the aggregator started with: one canonical line per model, SLO and
    /// drift setting.
    ConfigLoaded {
        /// The lines.
        lines: Vec<String>,
    },
    /// An SLO's alert state now.
    SloAlert {
        /// SLO.
        slo: String,
        /// `ok`, `ticket`, `page`.
        alert: String,
        /// Budget left.
        budget_remaining: f64,
    },
    /// An input feature's drift status now.
    DriftStatus {
        /// `metric{tags}`.
        feature: String,
        /// Status.
        status: String,
        /// Why.
        reason: String,
    },
    /// A `(model, version)` seen on a host for the first time.
    FirstSeen {
        /// Model.
        model: String,
        /// Version.
        version: String,
        /// Host.
        host: String,
        /// Start of the interval, Unix ms.
        from_ms: i64,
    },
    /// A token used (recorded once an hour per token).
    TokenUsed {
        /// Token name.
        token: String,
    },
    /// A gate's decision with its evidence (rate-limited by the sender per gate and
    /// decision).
    GateDecision {
        /// Gate name (or `model:baseline→candidate` for an ad-hoc query).
        gate: String,
        /// `pass`, `fail`, `inconclusive`.
        decision: String,
        /// Each check's verdict and reason, the window and both sides.
        evidence: Value,
        /// The same decision not recorded since the last entry.
        suppressed: u64,
    },
    /// Damage found in the store's files when it was opened (see `store::Damage`).
    StoreDamaged {
        /// What was found and done.
        what: String,
        /// True when data was lost (false: rebuilt without loss).
        lost_data: bool,
    },
    /// A request refused (rate-limited by the sender).
    TokenDenied {
        /// Token name (`-` for none or an unknown one).
        token: String,
        /// 401 or 403.
        status: u16,
        /// Path asked.
        path: String,
        /// Refusals of the same token and status not recorded since the last entry.
        suppressed: u64,
    },
}

/// The chain's head and the state the trail implies, kept by the merge actor.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    next_seq: u64,
    head: [u8; 32],
    fingerprints: BTreeMap<String, String>,
    alerts: BTreeMap<String, String>,
    drift: BTreeMap<String, String>,
    config: Vec<String>,
}

impl Chain {
    /// Replays the stored trail (entries that do not decode are skipped here; `verify` names
    /// them).
    pub fn load(store: &dyn Store) -> Result<Chain, StoreError> {
        let mut c = Chain {
            next_seq: 1,
            ..Chain::default()
        };
        for (seq, bytes) in store.audit_entries(0, u64::MAX)? {
            c.next_seq = seq + 1;
            let Ok((e, stored, _)) = decode(&bytes) else {
                continue;
            };
            c.head = stored;
            let text = |k: &str| e.detail[k].as_str().unwrap_or_default().to_owned();
            match e.kind.as_str() {
                "agent.enrolled" | "agent.certificate_changed" => {
                    c.fingerprints
                        .insert(e.subject.clone(), text("fingerprint"));
                }
                "slo.alert" => {
                    c.alerts.insert(e.subject.clone(), text("to"));
                }
                "drift.status" => {
                    c.drift.insert(e.subject.clone(), text("to"));
                }
                "config.loaded" => {
                    c.config = e.detail["lines"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// The stored bytes of the next entry, and its sequence number; moves the head.
    fn append(
        &mut self,
        time_ms: i64,
        kind: &str,
        subject: &str,
        detail: &Value,
    ) -> (u64, Vec<u8>) {
        let seq = self.next_seq;
        let mut text = detail.to_string();
        if text.len() > MAX_ENTRY_BYTES - 1024 {
            text = json!({ "truncated": true, "bytes": text.len() }).to_string();
        }
        let mut bytes = canonical(seq, time_ms, &self.head, kind, subject, &text);
        let hash = sha256(&bytes);
        bytes.extend_from_slice(&hash);
        self.head = hash;
        self.next_seq += 1;
        (seq, bytes)
    }

    /// The entries `event` adds at `time_ms` (none when it changes nothing the trail says).
    pub fn record(&mut self, time_ms: i64, event: Event) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        match event {
            Event::AgentSeen {
                agent,
                fingerprint,
                peer,
            } => match self.fingerprints.get(&agent) {
                Some(f) if *f == fingerprint => {}
                before => {
                    let (kind, detail) = match before {
                        None => (
                            "agent.enrolled",
                            json!({ "fingerprint": fingerprint, "peer": peer }),
                        ),
                        Some(old) => (
                            "agent.certificate_changed",
                            json!({ "fingerprint": fingerprint, "previous": old, "peer": peer }),
                        ),
                    };
                    out.push(self.append(time_ms, kind, &agent, &detail));
                    self.fingerprints.insert(agent, fingerprint);
                }
            },
            Event::Refused {
                peer,
                kind,
                error,
                suppressed,
            } => out.push(self.append(
                time_ms,
                "connection.refused",
                &peer,
                &json!({ "kind": kind, "error": error, "suppressed_before": suppressed }),
            )),
            Event::ConfigLoaded { lines } => {
                let digest = hex(&sha256(lines.join("\n").as_bytes()));
                let added: Vec<&String> = lines.iter().filter(|l| !self.config.contains(l)).collect();
                let removed: Vec<&String> = self.config.iter().filter(|l| !lines.contains(l)).collect();
                // Every start is recorded; `added`/`removed` say what changed since the last.
                let detail = json!({
                    "digest": digest,
                    "changed": !added.is_empty() || !removed.is_empty(),
                    "added": added,
                    "removed": removed,
                    "lines": lines,
                });
                out.push(self.append(time_ms, "config.loaded", &digest[..16], &detail));
                self.config = lines;
            }
            Event::SloAlert {
                slo,
                alert,
                budget_remaining,
            } => {
                let before = self.alerts.get(&slo).cloned().unwrap_or_else(|| "ok".into());
                if before != alert {
                    out.push(self.append(
                        time_ms,
                        "slo.alert",
                        &slo,
                        &json!({ "from": before, "to": alert, "budget_remaining": budget_remaining }),
                    ));
                    self.alerts.insert(slo, alert);
                }
            }
            Event::DriftStatus {
                feature,
                status,
                reason,
            } => {
                let before = self.drift.get(&feature).cloned().unwrap_or_else(|| "ok".into());
                // No data says nothing new about an input: not a transition.
                if before != status && status != "no_data" {
                    out.push(self.append(
                        time_ms,
                        "drift.status",
                        &feature,
                        &json!({ "from": before, "to": status, "reason": reason }),
                    ));
                    self.drift.insert(feature, status);
                }
            }
            Event::FirstSeen {
                model,
                version,
                host,
                from_ms,
            } => out.push(self.append(
                time_ms,
                "version.first_seen",
                &format!("{model}/{version}@{host}"),
                &json!({ "model": model, "version": version, "host": host, "interval_start": rfc3339(from_ms) }),
            )),
            Event::GateDecision {
                gate,
                decision,
                mut evidence,
                suppressed,
            } => {
                if let Some(o) = evidence.as_object_mut() {
                    o.insert("suppressed_before".into(), json!(suppressed));
                }
                out.push(self.append(
                    time_ms,
                    &format!("gate.{decision}"),
                    &gate,
                    &evidence,
                ));
            }
            Event::StoreDamaged { what, lost_data } => out.push(self.append(
                time_ms,
                if lost_data {
                    "store.damaged"
                } else {
                    "store.repaired"
                },
                "store",
                &json!({ "what": what, "lost_data": lost_data }),
            )),
            Event::TokenUsed { token } => {
                out.push(self.append(time_ms, "token.used", &token, &json!({})));
            }
            Event::TokenDenied {
                token,
                status,
                path,
                suppressed,
            } => out.push(self.append(
                time_ms,
                "token.denied",
                &token,
                &json!({ "status": status, "path": path, "suppressed_before": suppressed }),
            )),
        }
        out
    }
}

/// The SLO alert states and (when `drift`) input drift statuses now, as events for the chain
/// to turn into transitions. Drift compares the last hour with the 7 days before it, every
/// input, as `/api/v1/drift` does by default.
pub fn watch(
    store: &dyn Store,
    slos: &[crate::slo::InstalledSlo],
    drift: Option<(&pitot_shared::drift::DriftConfig, &str)>,
    now_ms: i64,
) -> Vec<Event> {
    let mut out = Vec::new();
    if let Ok(reports) = crate::slo::report_all(store, slos, now_ms) {
        for r in reports {
            out.push(Event::SloAlert {
                slo: r.name,
                alert: serde_json::to_value(r.alert)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                budget_remaining: r.error_budget.remaining,
            });
        }
    }
    if let Some((config, prefix)) = drift {
        let from_ms = now_ms - 3_600_000;
        let q = crate::drift::DriftQuery {
            mode: crate::drift::Mode::Temporal {
                ref_from_ms: from_ms - 7 * 86_400_000,
                ref_to_ms: from_ms,
            },
            metric: None,
            filters: Vec::new(),
            from_ms,
            to_ms: now_ms,
        };
        if let Ok(report) = crate::drift::report(store, &q, config, prefix) {
            for r in report.results {
                let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                out.push(Event::DriftStatus {
                    feature: format!("{}{{{}}}", r.metric, tags.join(",")),
                    status: serde_json::to_value(r.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    reason: r.reason,
                });
            }
        }
    }
    out
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Broken {
    /// The first entry that does not hold.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// `GET /api/v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Every entry holds and links to the one before.
    pub ok: bool,
    /// Entries walked.
    pub entries: u64,
    /// First entry kept (earlier ones were removed by retention when above 1).
    pub first_seq: Option<u64>,
    /// Last entry.
    pub last_seq: Option<u64>,
    /// The head's hash (hex): write it down to detect a rewrite of the whole chain.
    pub head: Option<String>,
    /// The first broken entry.
    pub broken: Option<Broken>,
}

/// Walks stored entries in sequence order: each must decode, hash to what it stores, carry the
/// previous entry's hash and follow its sequence number.
pub fn verify(entries: &[(u64, Vec<u8>)]) -> Verification {
    let mut v = Verification {
        ok: true,
        entries: 0,
        first_seq: entries.first().map(|(s, _)| *s),
        last_seq: entries.last().map(|(s, _)| *s),
        head: None,
        broken: None,
    };
    let mut prev: Option<(u64, [u8; 32])> = None;
    for (key, bytes) in entries {
        v.entries += 1;
        let problem = match decode(bytes) {
            Err(why) => Some(why),
            Ok((e, stored, computed)) => {
                let prev_bytes = crate::access::hex(&prev.map_or([0u8; 32], |(_, h)| h));
                if stored != computed {
                    Some("its hash does not match its contents (the entry was changed)".into())
                } else if e.seq != *key {
                    Some(format!(
                        "it says it is entry {} (entries were moved)",
                        e.seq
                    ))
                } else if let Some((p, _)) = prev
                    && *key != p + 1
                {
                    Some(format!("entries {} to {} are missing", p + 1, key - 1))
                } else if prev.is_some() && e.prev != prev_bytes {
                    Some(format!(
                        "its previous hash is not entry {}'s (an entry before it was replaced)",
                        key - 1
                    ))
                } else if prev.is_none() && *key == 1 && e.prev != prev_bytes {
                    Some("the first entry must link to zeros".into())
                } else {
                    prev = Some((*key, stored));
                    v.head = Some(e.hash);
                    None
                }
            }
        };
        if let Some(reason) = problem {
            v.ok = false;
            v.broken = Some(Broken { seq: *key, reason });
            return v;
        }
    }
    v
}

/// The first entry to keep when entries before `cutoff_ms` go (retention): the first one at or
/// after it, or one past the last when all are older (`None` with nothing to remove).
pub fn first_kept(store: &dyn Store, cutoff_ms: i64) -> Result<u64, StoreError> {
    let all = store.audit_entries(0, u64::MAX)?;
    for (seq, bytes) in &all {
        match decode(bytes) {
            Ok((e, _, _)) if e.at_ms < cutoff_ms => {}
            // The first one not past retention, or one that does not decode: keep it (and all
            // after it) for `verify` to name.
            _ => return Ok(*seq),
        }
    }
    Ok(all.last().map_or(0, |(s, _)| s + 1))
}

/// Entries in `[from_ms, to_ms)` of `kind` (a prefix: `agent.` is every agent entry), oldest
/// first, at most `limit` (the newest ones).
pub fn list(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
    kind: Option<&str>,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out: Vec<Entry> = store
        .audit_entries(0, u64::MAX)?
        .iter()
        .filter_map(|(_, b)| decode(b).ok().map(|(e, _, _)| e))
        .filter(|e| e.at_ms >= from_ms && e.at_ms < to_ms)
        .filter(|e| kind.is_none_or(|k| e.kind.starts_with(k)))
        .collect();
    if out.len() > limit {
        out.drain(..out.len() - limit);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(n: usize) -> (Chain, Vec<(u64, Vec<u8>)>) {
        let mut c = Chain {
            next_seq: 1,
            ..Chain::default()
        };
        let mut all = Vec::new();
        for i in 0..n {
            all.extend(c.record(
                1_000 * i as i64,
                Event::TokenUsed {
                    token: format!("t{i}"),
                },
            ));
        }
        (c, all)
    }

    #[test]
    fn a_chain_verifies_and_each_kind_of_tampering_is_named() {
        let (_, good) = chain_of(5);
        let v = verify(&good);
        assert!(v.ok && v.entries == 5 && v.broken.is_none(), "{v:?}");

        // A flipped byte in entry 3's subject.
        let mut flipped = good.clone();
        let at = flipped[2].1.len() - 40;
        flipped[2].1[at] ^= 1;
        assert_eq!(verify(&flipped).broken.map(|b| b.seq), Some(3));

        // Entry 3 rewritten with a correct hash of its own: entry 4 no longer links to it.
        let mut rewritten = good.clone();
        let mut c2 = Chain {
            next_seq: 3,
            head: decode(&good[1].1).unwrap().1,
            ..Chain::default()
        };
        rewritten[2] = c2
            .record(
                2_000,
                Event::TokenUsed {
                    token: "forged".into(),
                },
            )
            .remove(0);
        let b = verify(&rewritten).broken.unwrap();
        assert_eq!(b.seq, 4, "{b:?}");
        assert!(b.reason.contains("entry 3"));

        // Entry 2 deleted.
        let mut gap = good.clone();
        gap.remove(1);
        let b = verify(&gap).broken.unwrap();
        assert_eq!((b.seq, b.reason.contains("missing")), (3, true));
    }

    #[test]
    fn retention_drops_the_front_and_the_rest_still_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = crate::store::SledStore::open(
            dir.path(),
            crate::model::RESOLUTIONS
                .iter()
                .map(|r| r.with_retention(std::time::Duration::from_secs(86_400)))
                .collect(),
        )
        .expect("store");
        let (_, entries) = chain_of(5); // at 0, 1000, …, 4000 ms
        store.append_audit(&entries).expect("append");
        let keep = first_kept(&store, 2_500).expect("cutoff");
        assert_eq!(keep, 4);
        assert_eq!(store.remove_audit_before(keep).expect("remove"), 3);
        let left = store.audit_entries(0, u64::MAX).expect("read");
        let v = verify(&left);
        assert!(v.ok, "{v:?}");
        assert_eq!((v.first_seq, v.entries), (Some(4), 2));
        // A chain resumed from the store links on.
        let mut c = Chain::load(&store).expect("load");
        let more = c.record(9_000, Event::TokenUsed { token: "x".into() });
        store.append_audit(&more).expect("append");
        assert!(verify(&store.audit_entries(0, u64::MAX).expect("read")).ok);
        assert_eq!(first_kept(&store, i64::MAX).expect("all old"), 7);
    }

    #[test]
    fn transitions_are_recorded_once_and_agents_on_a_new_certificate() {
        let mut c = Chain {
            next_seq: 1,
            ..Chain::default()
        };
        let seen = |f: &str| Event::AgentSeen {
            agent: "h1".into(),
            fingerprint: f.into(),
            peer: "127.0.0.1".into(),
        };
        assert_eq!(c.record(1, seen("aa")).len(), 1);
        assert_eq!(c.record(2, seen("aa")).len(), 0);
        let changed = c.record(3, seen("bb"));
        assert_eq!(
            decode(&changed[0].1).unwrap().0.kind,
            "agent.certificate_changed"
        );
        let alert = |a: &str| Event::SloAlert {
            slo: "chat".into(),
            alert: a.into(),
            budget_remaining: 0.5,
        };
        assert!(c.record(4, alert("ok")).is_empty());
        assert_eq!(c.record(5, alert("page")).len(), 1);
        assert!(c.record(6, alert("page")).is_empty());
        let lines = |l: &[&str]| Event::ConfigLoaded {
            lines: l.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert_eq!(c.record(7, lines(&["model a"])).len(), 1);
        let same = c.record(8, lines(&["model a"]));
        assert_eq!(decode(&same[0].1).unwrap().0.detail["changed"], false);
        let diff = c.record(9, lines(&["model b"]));
        let e = decode(&diff[0].1).unwrap().0;
        assert_eq!(e.detail["added"], json!(["model b"]));
        assert_eq!(e.detail["removed"], json!(["model a"]));
    }
}
