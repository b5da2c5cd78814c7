//! Idempotent producers over the raw protocol: InitProducerId, duplicate detection with the
//! original offsets, the sequence and epoch errors, unique producer ids across shards and
//! restarts, and producer state that survives SIGKILL, segment rolls and damaged snapshots.

mod common;

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::{
    FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::records::Compression;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

/// A v2 batch of `count` records from producer `producer_id` at `epoch`, first sequence
/// `sequence`, as an idempotent client sends it: the header fields are patched into a plain
/// batch and the CRC (which covers them) recomputed.
fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    idempotent_batch_at(producer_id, epoch, sequence, count, now_ms(), 16)
}

fn idempotent_batch_at(
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    count: usize,
    timestamp_ms: i64,
    value_bytes: usize,
) -> Bytes {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut value = format!("p{producer_id}-e{epoch}-s{}-", sequence as usize + i);
            value.push_str(&"x".repeat(value_bytes));
            value.into_bytes()
        })
        .collect();
    let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let batch = record_batch(&slices, timestamp_ms, Compression::None);
    with_producer(&batch, producer_id, epoch, sequence, 0)
}

/// InitProducerId without a transactional id at `version`; returns (producer id, epoch).
fn init_producer_id(conn: &mut RawConn, version: i16) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response: InitProducerIdResponse = conn.request(&request, version);
    assert_eq!(
        response.error_code, 0,
        "InitProducerId v{version}: {response:?}"
    );
    assert_eq!(response.producer_epoch, 0);
    (response.producer_id.0, response.producer_epoch)
}

/// High watermark of one partition, by an empty-handed fetch.
fn high_watermark(conn: &mut RawConn, topic: &str) -> i64 {
    let response: FetchResponse = conn.request(&fetch_request(topic, 0, 0, 0, 0, 1 << 20), 11);
    single_partition(&response).high_watermark
}

/// Every record value of partition 0, in offset order, by decoding the fetched batches.
fn all_values(conn: &mut RawConn, topic: &str) -> Vec<(i64, Bytes)> {
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let response: FetchResponse =
            conn.request(&fetch_request(topic, 0, offset, 0, 0, 8 << 20), 11);
        let partition = single_partition(&response);
        let Some(mut records) = partition.records.clone() else {
            break;
        };
        if records.is_empty() {
            break;
        }
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
        for record in set.records {
            if record.offset >= offset {
                values.push((record.offset, record.value.unwrap_or_default()));
                offset = record.offset + 1;
            }
        }
        if offset >= partition.high_watermark {
            break;
        }
    }
    values
}

/// A retried batch is answered with the offset of the original and appended only once, also
/// when the retry arrives pipelined while the original is still staged for the flusher.
#[test]
fn duplicate_batch_gets_original_offset() {
    let broker = Broker::start(1, &[]);
    create_topic(broker.port, "dup", 1);
    let mut conn = RawConn::connect(broker.port);
    let (producer_id, epoch) = init_producer_id(&mut conn, 0);
    let first = idempotent_batch(producer_id, epoch, 0, 3);
    assert_eq!(produce(&mut conn, "dup", 0, first.clone()), (0, 0));
    assert_eq!(
        produce(
            &mut conn,
            "dup",
            0,
            idempotent_batch(producer_id, epoch, 3, 2)
        ),
        (0, 3)
    );
    assert_eq!(
        produce(&mut conn, "dup", 0, first),
        (0, 0),
        "retry of an older batch"
    );
    assert_eq!(high_watermark(&mut conn, "dup"), 5);

    // Pipelined: the retry is sent before the original's response, so it finds the original
    // staged (or in the flush round) and must wait for it to be durable.
    let batch = idempotent_batch(producer_id, epoch, 5, 4);
    let request = produce_request("dup", 0, batch, -1);
    let ids = [
        conn.send_request(&request, 9).unwrap(),
        conn.send_request(&request, 9).unwrap(),
    ];
    for id in ids {
        let response: ProduceResponse = conn.recv_response::<ProduceRequest>(id, 9).unwrap();
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!((partition.error_code, partition.base_offset), (0, 5));
    }
    assert_eq!(
        high_watermark(&mut conn, "dup"),
        9,
        "the duplicate was not appended"
    );
    let values = all_values(&mut conn, "dup");
    assert_eq!(values.len(), 9);
    assert!(values
        .iter()
        .enumerate()
        .all(|(i, (offset, _))| *offset == i as i64));
}

/// A gap in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER; after the producer bumps its epoch
/// (new epoch, sequence 0) the old epoch is INVALID_PRODUCER_EPOCH, and a new epoch that does
/// not start at 0 is out of order. Nothing refused is appended.
#[test]
fn sequence_and_epoch_errors() {
    let broker = Broker::start(1, &[]);
    create_topic(broker.port, "seq", 1);
    let mut conn = RawConn::connect(broker.port);
    let (producer_id, _) = init_producer_id(&mut conn, 4);
    assert_eq!(
        produce(&mut conn, "seq", 0, idempotent_batch(producer_id, 0, 0, 2)),
        (0, 0)
    );
    let gap = produce(&mut conn, "seq", 0, idempotent_batch(producer_id, 0, 3, 1));
    assert_eq!(gap, (OUT_OF_ORDER_SEQUENCE_NUMBER, -1));
    assert_eq!(
        produce(&mut conn, "seq", 0, idempotent_batch(producer_id, 1, 0, 1)),
        (0, 2)
    );
    let fenced = produce(&mut conn, "seq", 0, idempotent_batch(producer_id, 0, 2, 1));
    assert_eq!(fenced, (INVALID_PRODUCER_EPOCH, -1));
    let skipped = produce(&mut conn, "seq", 0, idempotent_batch(producer_id, 2, 1, 1));
    assert_eq!(skipped, (OUT_OF_ORDER_SEQUENCE_NUMBER, -1));
    assert_eq!(
        produce(&mut conn, "seq", 0, idempotent_batch(producer_id, 1, 1, 1)),
        (0, 3)
    );
    assert_eq!(high_watermark(&mut conn, "seq"), 4);
}

/// Sequences wrap from i32::MAX to 0 within a batch and across batches.
#[test]
fn sequence_wrap_around() {
    let broker = Broker::start(1, &[]);
    create_topic(broker.port, "wrap", 1);
    let mut conn = RawConn::connect(broker.port);
    let (producer_id, _) = init_producer_id(&mut conn, 1);
    // An unknown producer may start anywhere (KIP-360), so start just below the wrap.
    let start = i32::MAX - 1;
    assert_eq!(
        produce(
            &mut conn,
            "wrap",
            0,
            idempotent_batch(producer_id, 0, start, 3)
        ),
        (0, 0)
    );
    let retry = produce(
        &mut conn,
        "wrap",
        0,
        idempotent_batch(producer_id, 0, start, 3),
    );
    assert_eq!(retry, (0, 0));
    assert_eq!(
        produce(&mut conn, "wrap", 0, idempotent_batch(producer_id, 0, 1, 1)),
        (0, 3)
    );
}

/// Producer ids are unique across shards (each takes blocks from the controller) and across
/// a crash and restart (blocks are recorded in the metadata log); a request carrying an
/// existing id and epoch gets a new id.
#[test]
fn producer_ids_unique_across_shards_and_restart() {
    let mut broker = Broker::start(2, &[]);
    let mut seen = HashSet::new();
    collect(&broker, &mut seen);
    broker.kill();
    broker.restart();
    collect(&broker, &mut seen);
    assert_eq!(seen.len(), 80);

    // v3+ may carry the producer's current id and epoch; without a transactional id Kafka
    // ignores them and hands out a new id at epoch 0 (no KIP-360 bump for idempotent ones).
    let mut conn = RawConn::connect(broker.port);
    let known = *seen.iter().next().unwrap();
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(known.into())
        .with_producer_epoch(3);
    let response: InitProducerIdResponse = conn.request(&request, 4);
    assert_eq!((response.error_code, response.producer_epoch), (0, 0));
    assert!(seen.insert(response.producer_id.0), "a new id, not {known}");
}

/// Asks for producer ids on several connections (the kernel spreads them over the shards)
/// at every version, and checks each id is new.
fn collect(broker: &Broker, seen: &mut HashSet<i64>) {
    for connection in 0..8 {
        let mut conn = RawConn::connect(broker.port);
        for version in 0..=4 {
            let (id, _) = init_producer_id(&mut conn, version);
            assert!(id >= 0);
            assert!(
                seen.insert(id),
                "producer id {id} handed out twice ({connection})"
            );
        }
    }
}

/// Produces `batches` batches of 4 records (about 2 KiB each) from one producer; returns the
/// (sequence, base offset) of each.
fn produce_sequence(
    conn: &mut RawConn,
    topic: &str,
    producer_id: i64,
    batches: i32,
) -> Vec<(i32, i64)> {
    (0..batches)
        .map(|batch| {
            let sequence = batch * 4;
            let records = idempotent_batch_at(producer_id, 0, sequence, 4, now_ms(), 500);
            let (error, offset) = produce(conn, topic, 0, records);
            assert_eq!(error, 0, "batch {batch}");
            (sequence, offset)
        })
        .collect()
}

fn snapshot_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "snapshot"))
        .collect();
    files.sort();
    files
}

/// After SIGKILL and restart, retries of batches acknowledged before the kill still get their
/// original offsets, the next sequence continues, and a gap is still out of order.
fn state_survives_kill(segment_bytes: &str, batches: i32, rolls: bool) {
    let mut broker = Broker::start(1, &[]);
    create_topic_with_configs(broker.port, "kill", 1, &[("segment.bytes", segment_bytes)]);
    let mut conn = RawConn::connect(broker.port);
    let (producer_id, _) = init_producer_id(&mut conn, 0);
    let acked = produce_sequence(&mut conn, "kill", producer_id, batches);
    let end = high_watermark(&mut conn, "kill");
    broker.kill();
    // Rolls leave snapshots; without a roll there is none and the restart must scan.
    let snapshots = snapshot_files(&broker.partition_dir("kill", 0));
    assert_eq!(!snapshots.is_empty(), rolls, "snapshots {snapshots:?}");
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    for (sequence, offset) in &acked[acked.len() - 5..] {
        let retry = idempotent_batch_at(producer_id, 0, *sequence, 4, now_ms(), 500);
        assert_eq!(
            produce(&mut conn, "kill", 0, retry),
            (0, *offset),
            "retry of {sequence}"
        );
    }
    let next = batches * 4;
    let gap = idempotent_batch(producer_id, 0, next + 1, 1);
    assert_eq!(
        produce(&mut conn, "kill", 0, gap).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        produce(
            &mut conn,
            "kill",
            0,
            idempotent_batch(producer_id, 0, next, 1)
        ),
        (0, end)
    );
}

/// Producer state survives SIGKILL when everything is in the one active segment (rebuilt by
/// scanning, no snapshot exists).
#[test]
fn state_survives_sigkill_without_roll() {
    state_survives_kill("1048576", 12, false);
}

/// Producer state survives SIGKILL across segment rolls: a snapshot written at the last roll
/// plus the scanned tail.
#[test]
fn state_survives_sigkill_with_rolls() {
    state_survives_kill("16384", 40, true);
}

/// A clean stop writes a snapshot at the log end; when every snapshot is damaged the broker
/// ignores them and rebuilds by scanning, and duplicates are still recognized.
#[test]
fn corrupt_snapshots_fall_back_to_scanning() {
    let mut broker = Broker::start(1, &[]);
    create_topic_with_configs(broker.port, "snap", 1, &[("segment.bytes", "16384")]);
    let mut conn = RawConn::connect(broker.port);
    let (producer_id, _) = init_producer_id(&mut conn, 0);
    let acked = produce_sequence(&mut conn, "snap", producer_id, 30);
    let end = high_watermark(&mut conn, "snap");
    broker.stop();
    let dir = broker.partition_dir("snap", 0);
    let snapshots = snapshot_files(&dir);
    let at_end = dir.join(format!("{end:020}.snapshot"));
    assert!(
        snapshots.contains(&at_end),
        "no snapshot at the log end in {snapshots:?}"
    );
    for path in &snapshots {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    }
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let (sequence, offset) = acked[acked.len() - 1];
    let retry = idempotent_batch_at(producer_id, 0, sequence, 4, now_ms(), 500);
    assert_eq!(produce(&mut conn, "snap", 0, retry), (0, offset));
    assert!(
        broker.stderr().contains("ignoring producer snapshot"),
        "{}",
        broker.stderr()
    );
}

/// Producers idle past producer.id.expiration.ms (counted from their last batch's timestamp,
/// as in Kafka) are not brought back from the log or a snapshot at restart: a retry of their
/// last batch is appended anew instead of being taken for a duplicate.
#[test]
fn expired_producers_stay_expired_after_restart() {
    let mut broker = Broker::start(1, &["--producer-id-expiration-ms", "3600000"]);
    create_topic(broker.port, "expire", 1);
    let mut conn = RawConn::connect(broker.port);
    let (old_id, _) = init_producer_id(&mut conn, 0);
    let (live_id, _) = init_producer_id(&mut conn, 0);
    let two_hours_ago = now_ms() - 2 * 3_600_000;
    let old = idempotent_batch_at(old_id, 0, 0, 1, two_hours_ago, 8);
    let live = idempotent_batch(live_id, 0, 0, 1);
    assert_eq!(produce(&mut conn, "expire", 0, old.clone()), (0, 0));
    assert_eq!(produce(&mut conn, "expire", 0, live.clone()), (0, 1));
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(
        produce(&mut conn, "expire", 0, live),
        (0, 1),
        "live producer kept"
    );
    assert_eq!(
        produce(&mut conn, "expire", 0, old),
        (0, 2),
        "expired producer forgotten"
    );
}

/// Retention deleting the segments that held a producer's batches keeps its state (as Kafka
/// since KIP-360), also across SIGKILL and restart: the newest snapshot survives retention, so
/// a retry of the producer's last batch still gets its original offset, below the log start.
#[test]
fn state_outlives_retention_and_restart() {
    let mut broker = Broker::start(1, &["--retention-check-interval-ms", "50"]);
    let configs = [("segment.bytes", "16384"), ("retention.bytes", "16384")];
    create_topic_with_configs(broker.port, "retained", 1, &configs);
    let mut conn = RawConn::connect(broker.port);
    let (early_id, _) = init_producer_id(&mut conn, 0);
    let (late_id, _) = init_producer_id(&mut conn, 0);
    let early = produce_sequence(&mut conn, "retained", early_id, 2);
    produce_sequence(&mut conn, "retained", late_id, 40);
    let (early_sequence, early_offset) = early[1];
    let log_start = || {
        let mut conn = RawConn::connect(broker.port);
        let response: FetchResponse =
            conn.request(&fetch_request("retained", 0, 0, 0, 0, 1 << 20), 11);
        single_partition(&response).log_start_offset
    };
    if !wait_until(std::time::Duration::from_secs(60), || {
        log_start() > early_offset
    }) {
        broker.fail("retention did not delete the early producer's segment");
    }
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let retry = idempotent_batch_at(early_id, 0, early_sequence, 4, now_ms(), 500);
    assert_eq!(produce(&mut conn, "retained", 0, retry), (0, early_offset));
    let gap = idempotent_batch(early_id, 0, early_sequence + 5, 1);
    assert_eq!(
        produce(&mut conn, "retained", 0, gap).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
}
