//! What the QUIC listener knows about connections, for `/api/v1/agents`: each agent's link
//! (connected or not, since when, its last error) and the connections refused before an agent
//! session began (failed handshakes, certificates without an identity, a `Hello` that claims
//! another id), grouped by peer address and kind.
//!
//! In memory only: it describes this aggregator process's links, not history (history is in
//! the agents' `pitot.agent.uplink.*` series). Bounded: at most [`MAX_REFUSALS`] groups, the
//! longest quiet one evicted first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Refusal groups kept (peer address × kind).
pub const MAX_REFUSALS: usize = 256;

#[derive(Debug, Clone)]
struct AgentLink {
    connected: bool,
    since_ms: i64,
    peer: String,
    version: String,
    open: u32,
    last_error: Option<(String, i64)>,
}

#[derive(Debug, Clone)]
struct Refusal {
    kind: &'static str,
    reason: String,
    fix: &'static str,
    agent: Option<String>,
    first_ms: i64,
    last_ms: i64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    agents: BTreeMap<String, AgentLink>,
    refused: BTreeMap<(IpAddr, &'static str), Refusal>,
}

/// The registry (shared by the listener and the API).
#[derive(Debug, Default)]
pub struct Links {
    inner: Mutex<Inner>,
}

/// One agent's link, as `/api/v1/agents` shows it under `connection`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkState {
    /// `connected`, `disconnected`, or `unknown` (not seen since this aggregator started).
    pub state: String,
    /// When it entered that state (RFC 3339); `null` when unknown.
    pub since: Option<String>,
    /// The agent's address (`ip:port`) on its last connection.
    pub peer: Option<String>,
    /// Why its last connection ended or was refused; `null` when none did with an error.
    pub last_error: Option<String>,
    /// When (RFC 3339).
    pub last_error_at: Option<String>,
}

/// Connections from one address refused for one reason, as `/api/v1/agents` lists them under
/// `refused`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefusedGroup {
    /// The peer's IP address.
    pub peer: String,
    /// `no-certificate`, `unknown-ca`, `agent-refused` (the agent refused our certificate),
    /// `no-identity`, `identity-mismatch`, `version`, `other`.
    pub kind: String,
    /// The last refusal's error.
    pub reason: String,
    /// What fixes it.
    pub fix: String,
    /// The certified agent id, when the handshake got far enough to know it.
    pub agent: Option<String>,
    /// First and last refusal (RFC 3339) and how many.
    pub first: String,
    /// Last refusal.
    pub last: String,
    /// Refusals counted.
    pub count: u64,
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An agent session began (its `Hello` named `version`).
    pub fn connected(&self, agent: &str, version: &str, peer: std::net::SocketAddr, now_ms: i64) {
        let mut inner = self.lock();
        let link = inner
            .agents
            .entry(agent.to_owned())
            .or_insert_with(|| AgentLink {
                connected: false,
                since_ms: now_ms,
                peer: String::new(),
                version: String::new(),
                open: 0,
                last_error: None,
            });
        if link.open == 0 {
            link.connected = true;
            link.since_ms = now_ms;
        }
        link.open += 1;
        link.peer = peer.to_string();
        version.clone_into(&mut link.version);
    }

    /// An agent session ended, with its error if it had one.
    pub fn disconnected(&self, agent: &str, error: Option<String>, now_ms: i64) {
        let mut inner = self.lock();
        if let Some(link) = inner.agents.get_mut(agent) {
            link.open = link.open.saturating_sub(1);
            if link.open == 0 {
                link.connected = false;
                link.since_ms = now_ms;
            }
            if let Some(e) = error {
                link.last_error = Some((e, now_ms));
            }
        }
    }

    /// A connection was refused before an agent session began.
    pub fn refused(
        &self,
        peer: IpAddr,
        kind: &'static str,
        reason: &str,
        fix: &'static str,
        agent: Option<&str>,
        now_ms: i64,
    ) {
        let mut inner = self.lock();
        if let Some(agent) = agent
            && let Some(link) = inner.agents.get_mut(agent)
        {
            link.last_error = Some((format!("{kind}: {reason}"), now_ms));
        }
        let group = inner
            .refused
            .entry((peer, kind))
            .or_insert_with(|| Refusal {
                kind,
                reason: String::new(),
                fix,
                agent: None,
                first_ms: now_ms,
                last_ms: now_ms,
                count: 0,
            });
        group.reason = reason.to_owned();
        group.agent = agent.map(str::to_owned).or(group.agent.take());
        group.last_ms = now_ms;
        group.count += 1;
        if inner.refused.len() > MAX_REFUSALS
            && let Some(quietest) = inner
                .refused
                .iter()
                .min_by_key(|(_, r)| r.last_ms)
                .map(|(k, _)| *k)
        {
            inner.refused.remove(&quietest);
        }
    }

    /// An agent's link.
    pub fn state(&self, agent: &str, rfc3339: impl Fn(i64) -> String) -> LinkState {
        let inner = self.lock();
        match inner.agents.get(agent) {
            None => LinkState {
                state: "unknown".into(),
                since: None,
                peer: None,
                last_error: None,
                last_error_at: None,
            },
            Some(link) => LinkState {
                state: if link.connected {
                    "connected"
                } else {
                    "disconnected"
                }
                .into(),
                since: Some(rfc3339(link.since_ms)),
                peer: Some(link.peer.clone()),
                last_error: link.last_error.as_ref().map(|(e, _)| e.clone()),
                last_error_at: link.last_error.as_ref().map(|(_, at)| rfc3339(*at)),
            },
        }
    }

    /// Every agent that had a session since this aggregator started, with its version.
    pub fn agents(&self) -> Vec<(String, String)> {
        self.lock()
            .agents
            .iter()
            .map(|(id, l)| (id.clone(), l.version.clone()))
            .collect()
    }

    /// Refusal groups whose last refusal is at or after `from_ms`, most recent first.
    pub fn refusals(&self, from_ms: i64, rfc3339: impl Fn(i64) -> String) -> Vec<RefusedGroup> {
        let inner = self.lock();
        let mut out: Vec<(i64, RefusedGroup)> = inner
            .refused
            .iter()
            .filter(|(_, r)| r.last_ms >= from_ms)
            .map(|((peer, _), r)| {
                (
                    r.last_ms,
                    RefusedGroup {
                        peer: peer.to_string(),
                        kind: r.kind.into(),
                        reason: r.reason.clone(),
                        fix: r.fix.into(),
                        agent: r.agent.clone(),
                        first: rfc3339(r.first_ms),
                        last: rfc3339(r.last_ms),
                        count: r.count,
                    },
                )
            })
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.0));
        out.into_iter().map(|(_, g)| g).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> String {
        format!("t{ms}")
    }

    #[test]
    fn an_agent_link_goes_connected_then_disconnected_with_its_error() {
        let links = Links::default();
        assert_eq!(links.state("a", t).state, "unknown");
        let peer = "127.0.0.1:5000".parse().expect("addr");
        links.connected("a", "0.2.0", peer, 10);
        let s = links.state("a", t);
        assert_eq!(
            (s.state.as_str(), s.since.as_deref(), s.peer.as_deref()),
            ("connected", Some("t10"), Some("127.0.0.1:5000"))
        );
        // A second connection (a reconnect racing the old one's close) keeps it connected.
        links.connected("a", "0.2.0", peer, 20);
        links.disconnected("a", Some("timed out".into()), 25);
        assert_eq!(links.state("a", t).state, "connected");
        links.disconnected("a", None, 30);
        let s = links.state("a", t);
        assert_eq!(s.state, "disconnected");
        assert_eq!(s.since.as_deref(), Some("t30"));
        assert_eq!(s.last_error.as_deref(), Some("timed out"));
        assert_eq!(s.last_error_at.as_deref(), Some("t25"));
    }

    #[test]
    fn refusals_group_by_peer_and_kind_and_stay_bounded() {
        let links = Links::default();
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        links.refused(ip, "unknown-ca", "first", "fix it", None, 5);
        links.refused(ip, "unknown-ca", "second", "fix it", None, 9);
        links.refused(ip, "no-certificate", "x", "f", None, 7);
        let groups = links.refusals(0, t);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (
                groups[0].kind.as_str(),
                groups[0].count,
                groups[0].reason.as_str()
            ),
            ("unknown-ca", 2, "second")
        );
        assert_eq!(
            (groups[0].first.as_str(), groups[0].last.as_str()),
            ("t5", "t9")
        );
        assert_eq!(
            links.refusals(8, t).len(),
            1,
            "the window filters by last refusal"
        );
        for i in 0..(MAX_REFUSALS as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            links.refused(ip, "other", "r", "f", None, 100 + i64::from(i));
        }
        let groups = links.refusals(0, t);
        assert_eq!(groups.len(), MAX_REFUSALS);
        assert!(
            groups.iter().all(|g| g.kind == "other"),
            "the quietest went first"
        );
    }

    #[test]
    fn an_identity_mismatch_is_also_the_agents_last_error() {
        let links = Links::default();
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().expect("addr");
        links.connected("gpu-1", "0.2.0", peer, 1);
        links.disconnected("gpu-1", None, 2);
        links.refused(
            peer.ip(),
            "identity-mismatch",
            "claims gpu-9",
            "f",
            Some("gpu-1"),
            3,
        );
        let s = links.state("gpu-1", t);
        assert_eq!(
            s.last_error.as_deref(),
            Some("identity-mismatch: claims gpu-9")
        );
        assert_eq!(links.refusals(0, t)[0].agent.as_deref(), Some("gpu-1"));
    }
}
