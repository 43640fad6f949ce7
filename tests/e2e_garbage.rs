//! End to end with hostile input: random bytes, invalid UTF-8, over-long lines and datagrams,
//! NaN and infinities, huge tag lists, over UDP and the Unix socket. The agent must stay up,
//! keep every good line, and count the bad ones per reason in its `pitot.agent.*` series.

mod common;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Fleet, wait_for};
use rand::{Rng, SeedableRng};

fn reasons(fleet: &Fleet, metric: &str) -> std::collections::BTreeMap<String, f64> {
    fleet
        .counters(metric, "reason")
        .map(|v| {
            v["groups"]
                .as_array()
                .expect("groups")
                .iter()
                .map(|g| {
                    (
                        g["tags"]["reason"].as_str().expect("reason tag").to_owned(),
                        g["total"].as_f64().expect("total"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn garbage_leaves_the_agent_up_and_counting() {
    let mut fleet = Fleet::new(&["gpu-a"]);
    fleet.start_aggregator();
    fleet.start_agent("gpu-a");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = fleet.udp_addr("gpu-a");
    let unix = UnixDatagram::unbound().unwrap();
    unix.connect(fleet.unix_socket("gpu-a")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut good = 0u64;
    let send_good = |udp: &UdpSocket| {
        udp.send_to(b"garbage.ok:1|c|#model:m", target).unwrap();
    };

    for i in 0..300 {
        let len = rng.random_range(1..1400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        udp.send_to(&bytes, target).unwrap();
        if i % 3 == 0 {
            send_good(&udp);
            good += 1;
        }
    }
    let hostile: Vec<Vec<u8>> = vec![
        b"bad.utf8:\xff\xfe|c".to_vec(),
        b"bad.nan:NaN|ms".to_vec(),
        b"bad.inf:inf|h".to_vec(),
        b"bad.neginf:-inf|d".to_vec(),
        b"bad.huge:1e300|ms".to_vec(),
        b"bad.rate:1|c|@7".to_vec(),
        b"bad.type:1|zz".to_vec(),
        b"no-value|c".to_vec(),
        // 100 tags: over `limits.max_tags` (32), within the datagram size.
        format!(
            "bad.manytags:1|c|#{}",
            (0..100)
                .map(|i| format!("k{i}:v"))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes(),
        // 2000 tags: over the tag limit, in a 14 KB datagram (read whole: the limit is 64 KiB).
        format!(
            "bad.tags:1|c|#{}",
            (0..2000)
                .map(|i| format!("k{i}:v"))
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes(),
        format!("bad.longtag:1|c|#k:{}", "x".repeat(5000)).into_bytes(),
        format!("{}:1|c", "n".repeat(60_000)).into_bytes(),
        format!("{}:1|c", "n".repeat(3_000)).into_bytes(),
        b"bad\x01control:1|c".to_vec(),
        b"\n\n\n|||:::@@@###\n".to_vec(),
        b"_e{5,4}:title|text".to_vec(),
        b"_sc|check|0".to_vec(),
    ];
    for d in &hostile {
        udp.send_to(d, target).unwrap();
        send_good(&udp);
        good += 1;
    }
    // Over the Unix socket: a datagram above the 64 KiB limit with no line end (one cut line),
    // one of 3 000 good lines of 24 bytes (72 000 bytes: the 2 730 lines wholly inside the
    // first 64 KiB are recorded, the 2 731st is cut), and garbage.
    unix.send(&vec![b'x'; 100_000]).unwrap();
    let line = b"garbage.ok:1|c|#model:m\n";
    assert_eq!(line.len(), 24);
    unix.send(&line.repeat(3_000)).unwrap();
    good += 65_536 / 24;
    unix.send(b"\xc3\x28:1|c\nbad.nan2:nan|ms").unwrap();
    unix.send(b"garbage.ok:1|c|#model:m").unwrap();
    good += 1;

    wait_for("all good lines", Duration::from_secs(30), || {
        let total = fleet.counters("garbage.ok", "")?["fleet"]["total"].as_f64()?;
        assert!(
            total <= good as f64,
            "more good lines than sent whole: {total}"
        );
        (total == good as f64).then_some(())
    });
    // Every reason arrives in the agent's self-metrics (possibly spread over two intervals).
    let at_least = |map: &std::collections::BTreeMap<String, f64>, key: &str, n: f64| {
        map.get(key).copied().unwrap_or(0.0) >= n
    };
    let mut last = (Default::default(), Default::default());
    let settled = common::poll_until(Duration::from_secs(30), || {
        let malformed = reasons(&fleet, "pitot.agent.dogstatsd.malformed");
        let dropped = reasons(&fleet, "pitot.agent.dogstatsd.dropped");
        let ok = at_least(&malformed, "non_finite", 4.0)
            && at_least(&malformed, "invalid_utf8", 2.0)
            && at_least(&malformed, "value_out_of_range", 1.0)
            && at_least(&malformed, "invalid_sample_rate", 1.0)
            && at_least(&malformed, "unknown_type", 1.0)
            && at_least(&malformed, "missing_value", 1.0)
            && at_least(&malformed, "invalid_series", 1.0)
            && at_least(&dropped, "tag_limit", 2.0)
            && at_least(&dropped, "truncated", 2.0);
        last = (malformed, dropped);
        ok
    });
    assert!(settled, "malformed {:?}, dropped {:?}", last.0, last.1);
    let agent = fleet.agents.get_mut("gpu-a").unwrap();
    assert!(
        agent.alive(),
        "agent died on garbage:\n{}",
        agent.log_text()
    );
    assert!(fleet.stop_agent("gpu-a").success());
}
