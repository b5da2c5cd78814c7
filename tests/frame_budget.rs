//! A frame's claimed length takes nothing from its shard's request budget: clients that claim
//! huge frames and never send them cannot stall other connections, a half-sent frame is closed
//! after `connections.max.idle.ms`, and frames read in part that exhaust the budget still all
//! complete.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::Compression;

/// Length prefix of a frame claiming `frame_bytes` bytes in all (prefix included), followed by
/// the first few bytes of a plausible request header (ApiKey 0 = Produce, version 9).
fn claim(frame_bytes: usize) -> Vec<u8> {
    let mut bytes = ((frame_bytes - 4) as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 9, 0, 0]);
    bytes
}

/// Two dozen connections that each claim a 64 MiB frame, send six bytes of it and stall (what
/// scripts/net_fuzz.py found: the broker charged the claimed length to the shard's request
/// budget, four such claims filled a shard's 256 MiB and every connection on it stalled) do
/// not keep a well-behaved client from producing and consuming; they are closed after
/// `connections.max.idle.ms`.
#[test]
fn claimed_frames_never_sent_do_not_stall_the_shards() {
    let mut broker = Broker::start(
        2,
        &[
            "--queued-max-request-bytes",
            "536870912",
            // Longer than the probes' bound: the old broker stalled until the claims closed.
            "--connections-max-idle-ms",
            "12000",
        ],
    );
    create_topic(broker.port, "beside-claims", 1);
    let mut stalled: Vec<RawConn> = (0..24)
        .map(|_| {
            let mut conn = RawConn::connect(broker.port);
            conn.stream.write_all(&claim(64 << 20)).expect("send claim");
            conn
        })
        .collect();
    // Nothing observable tells when the broker has read the claims; give it a moment, so that
    // the old broker would have charged them all before the probe comes.
    thread::sleep(Duration::from_millis(500));
    assert_shards_answer_quickly(&broker, "stalled 64 MiB claims");

    let mut client = RawConn::connect(broker.port);
    let records = record_batch(&[b"past the claims"], 1_700_000_000_000, Compression::None);
    let started = Instant::now();
    assert_eq!(produce(&mut client, "beside-claims", 0, records), (0, 0));
    let fetched = client.request(&fetch_request("beside-claims", 0, 0, 0, 1, 1 << 20), 12);
    let records = single_partition(&fetched)
        .records
        .clone()
        .unwrap_or_default();
    assert_eq!(
        parse_batches(&records).0.len(),
        1,
        "the produced batch is fetched"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "produce and fetch took {:?} beside the claims",
        started.elapsed()
    );

    for (index, conn) in stalled.iter_mut().enumerate() {
        assert!(
            conn.wait_closed_by_peer(Duration::from_secs(30)),
            "stalled connection {index} was closed"
        );
    }
    broker.stop();
}

/// A frame left half sent closes its connection after `connections.max.idle.ms` even while a
/// long poll of the same connection is pending, which would otherwise let the frame hold its
/// budget for as long as the client keeps long polls going.
#[test]
fn a_half_sent_frame_is_closed_beside_a_long_poll() {
    let mut broker = Broker::start(1, &["--connections-max-idle-ms", "1000"]);
    create_topic(broker.port, "long-poll", 1);
    let mut conn = RawConn::connect(broker.port);
    conn.send_request(&fetch_request("long-poll", 0, 0, 30_000, 1, 1 << 20), 12)
        .expect("send Fetch");
    conn.stream.write_all(&claim(1 << 20)).expect("send claim");
    let sent = Instant::now();
    assert!(
        conn.wait_closed_by_peer(Duration::from_secs(15)),
        "a half-sent frame beside a 30 s long poll was not closed"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before connections.max.idle.ms",
        sent.elapsed()
    );
    broker.stop();
}

/// Eight 3 MiB produce requests sent at once to a shard with the smallest budget (4 MiB) all
/// get their answers: frames read in part, each holding budget and waiting for more, do not
/// deadlock the shard.
#[test]
fn frames_read_in_part_past_the_budget_all_complete() {
    let mut broker = Broker::start(
        1,
        &[
            "--queued-max-request-bytes",
            "4194304",
            "--connections-max-idle-ms",
            "120000",
        ],
    );
    create_topic_with_configs(broker.port, "big", 1, &[("max.message.bytes", "8388608")]);
    let value = vec![7u8; 3 << 20];
    let records = record_batch(&[&value], 1_700_000_000_000, Compression::None);
    let producers: Vec<_> = (0..8)
        .map(|_| {
            let port = broker.port;
            let records = records.clone();
            thread::spawn(move || {
                let mut conn = RawConn::connect(port);
                let request = produce_request("big", 0, records, -1);
                let correlation_id = conn.send_request(&request, 9).expect("send Produce");
                conn.recv_response::<ProduceRequest>(correlation_id, 9)
            })
        })
        .collect();
    let mut offsets = Vec::new();
    for producer in producers {
        let response = producer
            .join()
            .expect("producer thread")
            .expect("a Produce response within the read timeout");
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "produce error");
        offsets.push(partition.base_offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..8).collect::<Vec<i64>>());
    broker.stop();
}
