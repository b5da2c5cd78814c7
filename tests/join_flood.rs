//! A flood of JoinGroup requests (v0 and v5 with no member id, pipelined on many connections
//! that keep reconnecting) does not stop the broker: every shard keeps answering ApiVersions
//! and Metadata quickly, a real member still joins its own group, and the flooded group stays
//! within `group.max.size`. Issue 5: the network fuzzer saw 5.8-7.8 s for ApiVersions here.
//!
//! A loaded machine must not fail it, nor hide a shard kept busy. Two things make a healthy
//! broker slow there, and the test takes both out: the time its threads wait for a CPU, which
//! latencies are judged without (`common::ProbeClock`); and a backlog, because a flood at a
//! fixed pace offers more work than shards that get a fraction of a CPU can do, so they run
//! seconds of queued joins ahead of any probe (seen at load 12-15 on 2 cores: probes of 11-12 s,
//! of which 3-6 s the shard ran). So the flood's pace follows the CPU share the shards get
//! (`FloodPace`): on an idle machine it is the fixed pace of before, and a shard spinning on
//! its own work still runs, not waits, so it is caught just as on an idle machine.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// The pause between a flooder's writes when the shards get all the CPU they ask for: about
/// the network fuzzer's pace. On a two-core machine an unpaced flood of any request starves
/// the broker of CPU, which is not what this pins down.
const FLOOD_PAUSE: Duration = Duration::from_millis(2);
/// The longest pause: the flood stays a flood (at least 1,000 writes) on any machine.
const FLOOD_PAUSE_MAX: Duration = Duration::from_millis(40);
/// How often the shards' CPU share is measured.
const PACE_WINDOW: Duration = Duration::from_millis(250);

/// The flooders' pause between writes, stretched by how much of the time they were runnable
/// the shards actually ran: `FLOOD_PAUSE / share`. A shard's own work, however long, makes it
/// run, not wait, so a shard that spins leaves the flood at full pace; only other processes
/// (or the flooders themselves) competing for the CPUs slow it, as they slow the shards.
struct FloodPace {
    pause_us: AtomicU64,
    /// The longest pause set, for the report.
    longest_us: AtomicU64,
}

impl FloodPace {
    fn pause(&self) -> Duration {
        Duration::from_micros(self.pause_us.load(Ordering::Relaxed))
    }

    /// Measures the shards of process `pid` every `PACE_WINDOW` until `stop`.
    fn follow(pid: i32, stop: Arc<AtomicBool>) -> (Arc<FloodPace>, JoinHandle<()>) {
        let pace = Arc::new(FloodPace {
            pause_us: AtomicU64::new(FLOOD_PAUSE.as_micros() as u64),
            longest_us: AtomicU64::new(FLOOD_PAUSE.as_micros() as u64),
        });
        let setter = pace.clone();
        let thread = std::thread::spawn(move || {
            let mut before = shard_schedstats(pid);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(PACE_WINDOW);
                let now = shard_schedstats(pid);
                if now.len() == before.len() {
                    let (ran, waited) = now.iter().zip(&before).fold(
                        (Duration::ZERO, Duration::ZERO),
                        |(ran, waited), (now, before)| {
                            let delta = now.since(*before);
                            (ran + delta.ran, waited + delta.waited)
                        },
                    );
                    let share = ran.as_secs_f64() / (ran + waited).as_secs_f64().max(1e-9);
                    let pause = FLOOD_PAUSE
                        .div_f64(share.max(f64::EPSILON))
                        .clamp(FLOOD_PAUSE, FLOOD_PAUSE_MAX);
                    let pause_us = pause.as_micros() as u64;
                    setter.pause_us.store(pause_us, Ordering::Relaxed);
                    setter.longest_us.fetch_max(pause_us, Ordering::Relaxed);
                }
                before = now;
            }
        });
        (pace, thread)
    }
}

/// One flooding connection after another until `stop`: each writes pipelined joins while a
/// second thread drains whatever the broker answers, then goes away with its joins waiting.
fn flood(
    port: u16,
    seed: u64,
    pace: Arc<FloodPace>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> JoinHandle<()> {
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
                std::thread::sleep(pace.pause());
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = drain.join();
        }
    })
}

/// A real v5 member joins `group` (MEMBER_ID_REQUIRED, then again with its id) and gets its
/// generation within the initial rebalance delay plus a margin.
fn real_member_joins(broker: &Broker, group: &str) {
    let clock = ProbeClock::start(broker);
    let mut conn = RawConn::connect(broker.port);
    let first = conn.request(&join_request(group, "", 10_000), 5);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let second = conn.request(&join_request(group, &first.member_id, 10_000), 5);
    assert_eq!(second.error_code, 0, "the real member joins");
    assert_eq!(second.generation_id, 1);
    let took = clock.stop();
    assert!(
        took.unexplained() < Duration::from_secs(8),
        "joining took {took}"
    );
}

#[test]
fn join_group_flood_leaves_every_shard_responsive() {
    let broker = Broker::start(2, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let (pace, pacer) = FloodPace::follow(broker.pid(), stop.clone());
    let flooders: Vec<JoinHandle<()>> = (0..FLOOD_CONNECTIONS)
        .map(|i| {
            flood(
                broker.port,
                i as u64,
                pace.clone(),
                stop.clone(),
                sent.clone(),
            )
        })
        .collect();
    let started = Instant::now();
    let mut probes = 0;
    let mut slowest = ProbeTime::default();
    let mut joined_real_member = false;
    while started.elapsed() < FLOOD_DURATION {
        std::thread::sleep(Duration::from_millis(200));
        slowest = slowest.max(assert_shards_answer_quickly(&broker, "a JoinGroup flood"));
        let clock = ProbeClock::start(&broker);
        let mut conn = RawConn::connect(broker.port);
        let metadata = conn.request(&MetadataRequest::default().with_topics(Some(vec![])), 9);
        assert!(metadata.brokers.len() == 1, "Metadata answers");
        let took = clock.stop();
        assert!(
            took.unexplained() < RESPONSIVE_WITHIN,
            "Metadata took {took}"
        );
        slowest = slowest.max(took);
        if !joined_real_member && started.elapsed() > Duration::from_secs(3) {
            real_member_joins(&broker, "real-group");
            joined_real_member = true;
        }
        probes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().expect("flooder thread");
    }
    pacer.join().expect("pacer thread");
    let writes = sent.load(Ordering::Relaxed);
    assert!(
        writes > 1_000,
        "the flood reached the broker ({writes} writes)"
    );
    assert!(probes >= 3, "only {probes} rounds of probes ran");
    assert!(joined_real_member, "the real member did not get to join");
    eprintln!(
        "{writes} flood writes, pause between writes up to {:?}; slowest probe: {slowest}",
        Duration::from_micros(pace.longest_us.load(Ordering::Relaxed))
    );
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
    assert_shards_answer_quickly(&broker, "the end of a JoinGroup flood");
}
