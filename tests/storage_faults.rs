//! The real broker under runtime disk errors injected through the test-only `/faults` admin
//! endpoint (`serve --enable-fault-injection`): EIO on write or fdatasync fences only the
//! partition hit, ENOSPC fails produce until space returns, and what was acknowledged before
//! a fault is there after a restart.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{FetchResponse, ProduceRequest};
use kafka_protocol::records::Compression;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Kafka's answer to any storage failure of a partition; clients retry it.
const KAFKA_STORAGE_ERROR: i16 = 56;

const TOPIC: &str = "faulty";

/// Faults for partition 0 of `TOPIC` only: partition 1 and the metadata log never match.
const PARTITION_0: &str = "faulty-0/";

/// A one-shard broker (both partitions on the same shard) that accepts `/faults`.
fn start() -> Broker {
    let broker = Broker::start(
        1,
        &[
            "--enable-fault-injection",
            "--retention-check-interval-ms",
            "50",
        ],
    );
    create_topic(broker.port, TOPIC, 2);
    broker
}

/// One HTTP request to the admin listener; returns (status line, body).
fn http(broker: &Broker, method: &str, path: &str, body: &str) -> (String, String) {
    let port = broker.admin_port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

fn arm(broker: &Broker, plan: &str) {
    let (status, body) = http(broker, "POST", "/faults", plan);
    assert!(status.contains("200"), "arming {plan:?}: {status} {body}");
}

fn clear(broker: &Broker) {
    let (status, _) = http(broker, "DELETE", "/faults", "");
    assert!(status.contains("200"), "clearing faults: {status}");
}

/// How many calls the armed faults have failed so far.
fn fault_hits(broker: &Broker) -> u64 {
    let (status, body) = http(broker, "GET", "/faults", "");
    assert!(status.contains("200"), "listing faults: {status}");
    body.split_whitespace()
        .filter_map(|word| word.strip_prefix("hits="))
        .map(|hits| hits.parse::<u64>().unwrap())
        .sum()
}

fn one_record(value: &str) -> bytes::Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    record_batch(&[value.as_bytes()], now, Compression::None)
}

/// Produces one record with acks=all; returns (error code, base offset).
fn send(conn: &mut RawConn, partition: i32, value: &str) -> (i16, i64) {
    produce(conn, TOPIC, partition, one_record(value))
}

/// The high watermark and every (offset, value) below it.
fn read_all(conn: &mut RawConn, partition: i32) -> (i64, Vec<(i64, String)>) {
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let response: FetchResponse =
            conn.request(&fetch_request(TOPIC, partition, offset, 0, 0, 8 << 20), 11);
        let data = single_partition(&response);
        assert_eq!(data.error_code, 0, "fetch {TOPIC}-{partition} at {offset}");
        let high_watermark = data.high_watermark;
        let mut records = data.records.clone().unwrap_or_default();
        while !records.is_empty() {
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
            let fresh: Vec<_> = set
                .records
                .into_iter()
                .filter(|r| r.offset >= offset)
                .collect();
            for record in fresh {
                let value = record.value.unwrap_or_default();
                values.push((record.offset, String::from_utf8_lossy(&value).into_owned()));
                offset = record.offset + 1;
            }
        }
        if offset >= high_watermark {
            return (high_watermark, values);
        }
    }
}

fn expected(values: &[&str]) -> Vec<(i64, String)> {
    values
        .iter()
        .enumerate()
        .map(|(offset, value)| (offset as i64, value.to_string()))
        .collect()
}

/// Produces `values` to `partition`, each of which must be acknowledged.
fn send_acknowledged(conn: &mut RawConn, partition: i32, values: &[&str]) {
    for value in values {
        let (error, _) = send(conn, partition, value);
        assert_eq!(error, 0, "produce {value:?} to partition {partition}");
    }
}

/// A failed fdatasync answers every waiting batch with KAFKA_STORAGE_ERROR, never moves the
/// high watermark over them, fences the partition (with one ERROR line naming it and the
/// errno) while the other partition of the same shard keeps working, and after a crash and
/// restart everything acknowledged before the fault is there and the partition takes writes.
#[test]
fn failed_sync_fences_only_its_partition_and_keeps_acknowledged_data() {
    let mut broker = start();
    let mut conn = RawConn::connect(broker.port);
    send_acknowledged(&mut conn, 0, &["a0", "a1"]);
    send_acknowledged(&mut conn, 1, &["b0"]);
    arm(&broker, &format!("sync EIO {PARTITION_0} 1"));

    // Several batches in flight on one connection: all wait for the sync that fails.
    let sent: Vec<(&str, i32)> = ["x0", "x1", "x2"]
        .into_iter()
        .map(|value| {
            let request = produce_request(TOPIC, 0, one_record(value), -1);
            (value, conn.send_request(&request, 9).unwrap())
        })
        .collect();
    for (value, correlation_id) in sent {
        let response = conn
            .recv_response::<ProduceRequest>(correlation_id, 9)
            .unwrap();
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            partition.error_code, KAFKA_STORAGE_ERROR,
            "{value}: {response:?}"
        );
    }
    assert_eq!(
        fault_hits(&broker),
        1,
        "the injected sync failure fired once"
    );
    assert_eq!(read_all(&mut conn, 0), (2, expected(&["a0", "a1"])));
    send_acknowledged(&mut conn, 1, &["b1"]);
    // The fault is spent, yet the partition stays fenced: the file state is unknown.
    assert_eq!(send(&mut conn, 0, "y").0, KAFKA_STORAGE_ERROR);
    assert_eq!(
        read_all(&mut conn, 0).0,
        2,
        "the watermark never covers failed batches"
    );

    let stderr = broker.stderr();
    let fenced: Vec<_> = stderr
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("partition stops acknowledging"))
        .collect();
    assert_eq!(fenced.len(), 1, "one ERROR line for the fence:\n{stderr}");
    assert!(
        fenced[0].contains("topic=faulty") && fenced[0].contains("partition=0"),
        "the line names the partition: {}",
        fenced[0]
    );
    assert!(
        fenced[0].contains("errno=5"),
        "the line names EIO: {}",
        fenced[0]
    );
    // Retention runs every 50 ms; a fenced log is not reported again on each pass.
    let retention_passes = Instant::now() + Duration::from_millis(300);
    wait_until(Duration::from_secs(1), || Instant::now() > retention_passes);
    assert!(
        !broker.stderr().contains("retention failed"),
        "{}",
        broker.stderr()
    );

    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let (high_watermark, values) = read_all(&mut conn, 0);
    assert_eq!(
        values[..2],
        expected(&["a0", "a1"]),
        "acknowledged records survive"
    );
    // The batches whose sync failed may or may not have reached the disk.
    assert!(
        (2..=5).contains(&high_watermark),
        "watermark {high_watermark}"
    );
    let (error, base_offset) = send(&mut conn, 0, "after");
    assert_eq!(
        (error, base_offset),
        (0, high_watermark),
        "the partition writes again"
    );
    assert_eq!(read_all(&mut conn, 1), (2, expected(&["b0", "b1"])));
}

/// A failed segment write fences the partition just as a failed sync does, the other
/// partition is untouched, and a clean restart brings the acknowledged records back.
#[test]
fn failed_write_fences_only_its_partition() {
    let mut broker = start();
    let mut conn = RawConn::connect(broker.port);
    send_acknowledged(&mut conn, 0, &["a0", "a1", "a2"]);
    arm(&broker, &format!("write EIO {PARTITION_0} 1"));
    assert_eq!(send(&mut conn, 0, "lost").0, KAFKA_STORAGE_ERROR);
    assert_eq!(fault_hits(&broker), 1);
    assert_eq!(send(&mut conn, 0, "refused").0, KAFKA_STORAGE_ERROR);
    assert_eq!(fault_hits(&broker), 1, "refused before reaching the disk");
    send_acknowledged(&mut conn, 1, &["b0"]);
    assert_eq!(read_all(&mut conn, 0), (3, expected(&["a0", "a1", "a2"])));

    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(read_all(&mut conn, 0), (3, expected(&["a0", "a1", "a2"])));
    assert_eq!(send(&mut conn, 0, "a3"), (0, 3));
    assert_eq!(read_all(&mut conn, 1), (1, expected(&["b0"])));
}

/// A full disk answers produce with KAFKA_STORAGE_ERROR without fencing: the acknowledged
/// records stay intact, the discarded offsets go to the next batches once space returns
/// (no restart), one warning is logged for the episode, and a restart keeps it all.
#[test]
fn full_disk_fails_produce_until_space_returns() {
    let mut broker = start();
    let mut conn = RawConn::connect(broker.port);
    send_acknowledged(&mut conn, 0, &["a0", "a1"]);
    arm(&broker, &format!("write ENOSPC {PARTITION_0}"));
    for value in ["full0", "full1", "full2"] {
        assert_eq!(send(&mut conn, 0, value).0, KAFKA_STORAGE_ERROR, "{value}");
    }
    assert!(fault_hits(&broker) >= 3, "every flush found the disk full");
    assert_eq!(read_all(&mut conn, 0), (2, expected(&["a0", "a1"])));
    send_acknowledged(&mut conn, 1, &["b0"]);

    clear(&broker);
    assert_eq!(
        send(&mut conn, 0, "a2"),
        (0, 2),
        "offsets continue the written log"
    );
    send_acknowledged(&mut conn, 0, &["a3"]);
    let all = expected(&["a0", "a1", "a2", "a3"]);
    assert_eq!(read_all(&mut conn, 0), (4, all.clone()));
    let stderr = broker.stderr();
    assert_eq!(
        stderr.matches("no space for the log").count(),
        1,
        "{stderr}"
    );
    assert!(
        !stderr.contains("fenced"),
        "a full disk does not fence:\n{stderr}"
    );

    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(read_all(&mut conn, 0), (4, all));
    assert_eq!(send(&mut conn, 0, "a4"), (0, 4));
}

/// An idempotent librdkafka producer rides out a full disk: it retries KAFKA_STORAGE_ERROR,
/// and once space returns every message is stored exactly once, in order, with no gap,
/// because the broker rolled its producer state back with the discarded batches.
#[test]
fn idempotent_producer_retries_through_a_full_disk() {
    let broker = start();
    arm(&broker, &format!("write ENOSPC {PARTITION_0}"));
    let producer: BaseProducer<RecordingContext> = producer_config(&broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "100")
        .create_with_context(RecordingContext::default())
        .expect("create producer");
    let values: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for value in &values {
        producer
            .send(BaseRecord::<(), str>::to(TOPIC).partition(0).payload(value))
            .expect("enqueue");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while fault_hits(&broker) < 3 {
        assert!(
            Instant::now() < deadline,
            "the producer never hit the full disk"
        );
        producer.poll(Duration::from_millis(20));
    }
    clear(&broker);
    producer.flush(Duration::from_secs(30)).expect("flush");
    let deliveries = producer.context().deliveries.lock().unwrap().clone();
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    assert_eq!(deliveries.len(), values.len());

    let mut conn = RawConn::connect(broker.port);
    let (high_watermark, stored) = read_all(&mut conn, 0);
    let wanted: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_eq!((high_watermark, stored), (20, expected(&wanted)));
}

/// Without the flag the endpoint does not exist: a production broker cannot be faulted.
#[test]
fn faults_endpoint_is_absent_without_the_flag() {
    let broker = Broker::start(1, &[]);
    let (status, _) = http(&broker, "POST", "/faults", "sync EIO x");
    assert!(status.contains("404"), "status {status}");
}

/// A slow disk under one partition (every fdatasync of its files held for 1.5 s) delays only
/// that partition's acknowledgements: the other partition on the same shard keeps answering
/// at disk speed, and the slow one's produce still succeeds once its sync is done.
#[test]
fn slow_sync_on_one_partition_does_not_delay_another() {
    let broker = start();
    let mut slow = RawConn::connect(broker.port);
    let mut fast = RawConn::connect(broker.port);
    send_acknowledged(&mut slow, 0, &["warm-0"]);
    send_acknowledged(&mut fast, 1, &["warm-1"]);
    let delay = Duration::from_millis(1500);
    arm(
        &broker,
        &format!("sync {}ms {PARTITION_0}", delay.as_millis()),
    );

    let started = Instant::now();
    let request = produce_request(TOPIC, 0, one_record("slow"), -1);
    let correlation_id = slow.send_request(&request, 9).unwrap();
    for value in ["fast-a", "fast-b", "fast-c"] {
        let sent = Instant::now();
        send_acknowledged(&mut fast, 1, &[value]);
        assert!(
            sent.elapsed() < delay / 2,
            "partition 1 waited {:?} behind partition 0's slow sync",
            sent.elapsed()
        );
    }
    let response = slow
        .recv_response::<ProduceRequest>(correlation_id, 9)
        .unwrap();
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!((answer.error_code, answer.base_offset), (0, 1));
    assert!(started.elapsed() >= delay, "the slow sync was not held");
    assert!(fault_hits(&broker) >= 1);
    clear(&broker);
    assert_eq!(
        read_all(&mut fast, 1).1,
        expected(&["warm-1", "fast-a", "fast-b", "fast-c"])
    );
}

/// A failed read from disk answers that partition's Fetch with KAFKA_STORAGE_ERROR, never
/// with damaged or missing records; the other partition serves on, and once the disk reads
/// again the same fetch returns every record. Reads do not fence: nothing on disk changed.
#[test]
fn failed_read_fails_only_that_fetch() {
    let mut broker = start();
    let mut conn = RawConn::connect(broker.port);
    send_acknowledged(&mut conn, 0, &["a0", "a1"]);
    send_acknowledged(&mut conn, 1, &["b0"]);
    // A restart empties the batch cache, so fetches read the segment files.
    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    arm(&broker, &format!("read EIO {PARTITION_0}"));
    let response: FetchResponse = conn.request(&fetch_request(TOPIC, 0, 0, 0, 0, 8 << 20), 11);
    let data = single_partition(&response);
    assert_eq!(data.error_code, KAFKA_STORAGE_ERROR, "{response:?}");
    assert!(data
        .records
        .as_ref()
        .is_none_or(|records| records.is_empty()));
    assert!(fault_hits(&broker) >= 1);
    assert_eq!(read_all(&mut conn, 1), (1, expected(&["b0"])));
    send_acknowledged(&mut conn, 0, &["a2"]);
    clear(&broker);
    assert_eq!(read_all(&mut conn, 0), (3, expected(&["a0", "a1", "a2"])));
}

/// A failed truncate while rolling a full segment (the roll cuts the pre-written zeros off
/// the closed segment) fences the partition like a failed write: the batch that needed the
/// roll is refused, and after a restart every acknowledged record is there and writes resume.
#[test]
fn failed_truncate_at_a_roll_fences_the_partition() {
    let mut broker = start();
    create_topic_with_configs(broker.port, "rolling", 1, &[("segment.bytes", "16384")]);
    let mut conn = RawConn::connect(broker.port);
    let value = "v".repeat(4000);
    let mut acknowledged = 0;
    arm(&broker, "truncate EIO rolling-0/");
    let error = loop {
        let (error, base_offset) = produce(&mut conn, "rolling", 0, one_record(&value));
        if error != 0 {
            break error;
        }
        assert_eq!(base_offset, acknowledged);
        acknowledged += 1;
        assert!(
            acknowledged < 10,
            "a 16 KiB segment must roll within a few records"
        );
    };
    assert_eq!(error, KAFKA_STORAGE_ERROR);
    assert!(acknowledged >= 1 && fault_hits(&broker) >= 1);
    assert_eq!(
        produce(&mut conn, "rolling", 0, one_record(&value)).0,
        KAFKA_STORAGE_ERROR,
        "fenced until a restart"
    );
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let (error, base_offset) = produce(&mut conn, "rolling", 0, one_record(&value));
    assert_eq!(error, 0, "writes resume after a restart");
    assert!(
        base_offset >= acknowledged,
        "acknowledged offsets are kept: {base_offset}"
    );
}
