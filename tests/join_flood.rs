//! A flood of JoinGroup requests (v0 and v5 with no member id, pipelined on many connections
//! that keep reconnecting) does not stop the broker: every shard keeps answering ApiVersions
//! and Metadata quickly, a real member still joins its own group, and the flooded group stays
//! within `group.max.size`. Issue 5: the network fuzzer saw 5.8-7.8 s for ApiVersions here.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{DescribeGroupsRequest, GroupId, JoinGroupRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use rand::{Rng, SeedableRng};

const FLOOD_CONNECTIONS: usize = 16;
const FLOOD_DURATION: Duration = Duration::from_secs(10);
const FLOODED_GROUP: &str = "flooded";

fn join_request(group: &str, member_id: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(b"meta"));
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(session_timeout_ms)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![protocol])
}

/// Length-prefixed JoinGroup frames, v0 or v5, with no member id: the flooded group half the
/// time, else one of many others.
fn flood_frames(encoder: &mut RawConn, rng: &mut impl Rng, count: usize) -> BytesMut {
    let mut frames = BytesMut::new();
    for _ in 0..count {
        let group = if rng.gen_bool(0.5) {
            FLOODED_GROUP.to_string()
        } else {
            format!("flood-{}", rng.gen_range(0..5_000))
        };
        let version = if rng.gen_bool(0.5) { 0 } else { 5 };
        let (_, body) = encoder.encode_request(&join_request(&group, "", 6_000), version);
        frames.put_i32(body.len() as i32);
        frames.put_slice(&body);
    }
    frames
}

/// One flooding connection after another until `stop`: each writes pipelined joins while a
/// second thread drains whatever the broker answers, then goes away with its joins waiting.
fn flood(port: u16, seed: u64, stop: Arc<AtomicBool>, sent: Arc<AtomicUsize>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut encoder = RawConn::connect(port);
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let mut reader = stream.try_clone().expect("clone the socket");
            let drain = std::thread::spawn(move || {
                let mut sink = [0u8; 64 * 1024];
                while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            });
            for _ in 0..rng.gen_range(5..40) {
                let count = rng.gen_range(1..=8);
                let frames = flood_frames(&mut encoder, &mut rng, count);
                if stop.load(Ordering::Relaxed) || stream.write_all(&frames).is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                // About the network fuzzer's pace: on a two-core machine an unpaced flood of
                // any request starves the broker of CPU, which is not what this pins down.
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = drain.join();
        }
    })
}

/// A real v5 member joins `group` (MEMBER_ID_REQUIRED, then again with its id) and gets its
/// generation within the initial rebalance delay plus a margin.
fn real_member_joins(port: u16, group: &str) {
    let started = Instant::now();
    let mut conn = RawConn::connect(port);
    let first = conn.request(&join_request(group, "", 10_000), 5);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let second = conn.request(&join_request(group, &first.member_id, 10_000), 5);
    assert_eq!(second.error_code, 0, "the real member joins");
    assert_eq!(second.generation_id, 1);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "joining took {elapsed:?}");
}

#[test]
fn join_group_flood_leaves_every_shard_responsive() {
    let broker = Broker::start(2, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<JoinHandle<()>> = (0..FLOOD_CONNECTIONS)
        .map(|i| flood(broker.port, i as u64, stop.clone(), sent.clone()))
        .collect();
    let started = Instant::now();
    let mut probes = 0;
    let mut joined_real_member = false;
    while started.elapsed() < FLOOD_DURATION {
        std::thread::sleep(Duration::from_millis(200));
        assert_shards_answer_quickly(broker.port, "a JoinGroup flood");
        let asked = Instant::now();
        let mut conn = RawConn::connect(broker.port);
        let metadata = conn.request(&MetadataRequest::default().with_topics(Some(vec![])), 9);
        assert!(metadata.brokers.len() == 1, "Metadata answers");
        let elapsed = asked.elapsed();
        assert!(elapsed < RESPONSIVE_WITHIN, "Metadata took {elapsed:?}");
        if !joined_real_member && started.elapsed() > Duration::from_secs(3) {
            real_member_joins(broker.port, "real-group");
            joined_real_member = true;
        }
        probes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().expect("flooder thread");
    }
    let writes = sent.load(Ordering::Relaxed);
    assert!(
        writes > 1_000,
        "the flood reached the broker ({writes} writes)"
    );
    assert!(probes >= 3, "only {probes} rounds of probes ran");
    assert!(joined_real_member, "the real member did not get to join");
    let mut conn = RawConn::connect(broker.port);
    let described = conn.request(
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str(FLOODED_GROUP))]),
        0,
    );
    let members = described.groups[0].members.len();
    assert!(
        members <= corelog::limits::GROUP_MEMBERS_MAX,
        "{members} members exceed group.max.size"
    );
    assert_shards_answer_quickly(broker.port, "the end of a JoinGroup flood");
}
