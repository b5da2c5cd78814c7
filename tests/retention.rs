//! Segment roll and retention: old whole segments are deleted by size and by age, the log start
//! offset advances with them (and survives a restart), offsets below it are out of range, and
//! nothing at or after it is lost.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::records::Compression;

const BATCH_VALUE_BYTES: usize = 50_000;
const RECORDS_PER_BATCH: i64 = 4;
const BATCHES: i64 = 20;

/// Produces BATCHES batches of about 200 KB (4 MB in all) into partition 0 of `topic`.
fn produce_batches(conn: &mut RawConn, topic: &str) {
    let value = vec![b'r'; BATCH_VALUE_BYTES];
    let values: Vec<&[u8]> = vec![&value; RECORDS_PER_BATCH as usize];
    for batch in 0..BATCHES {
        let records = record_batch(&values, now_ms(), Compression::None);
        assert_eq!(
            produce(conn, topic, 0, records),
            (0, batch * RECORDS_PER_BATCH)
        );
    }
}

/// (log start offset, high watermark, error code) of a fetch at `offset`.
fn fetch_state(conn: &mut RawConn, topic: &str, offset: i64) -> (i64, i64, i16) {
    let response: FetchResponse = conn.request(&fetch_request(topic, 0, offset, 0, 1, 1 << 20), 12);
    let data = single_partition(&response);
    (data.log_start_offset, data.high_watermark, data.error_code)
}

/// Waits for retention to move the log start offset off 0, then checks the log around it.
fn assert_retention_advanced(broker: &mut Broker, topic: &str) -> i64 {
    let mut conn = RawConn::connect(broker.port);
    let mut log_start = 0;
    let advanced = wait_until(Duration::from_secs(60), || {
        log_start = fetch_state(&mut conn, topic, BATCHES * RECORDS_PER_BATCH).0;
        log_start > 0
    });
    if !advanced {
        broker.fail(&format!("{topic}: log start offset still 0 after 60 s"));
    }
    let end = BATCHES * RECORDS_PER_BATCH;
    assert!(
        log_start < end,
        "the active segment is never deleted (log start {log_start})"
    );
    assert_eq!(
        log_start % RECORDS_PER_BATCH,
        0,
        "log start on a batch boundary"
    );
    let (_, high_watermark, error) = fetch_state(&mut conn, topic, 0);
    assert_eq!(
        (high_watermark, error),
        (end, 1),
        "offset 0 is now OFFSET_OUT_OF_RANGE"
    );
    let response: FetchResponse =
        conn.request(&fetch_request(topic, 0, log_start, 0, 1, 1 << 20), 12);
    let data = single_partition(&response);
    assert_eq!(data.error_code, 0, "fetch at the log start");
    let records = data.records.clone().expect("records at the log start");
    let (batches, _) = parse_batches(&records);
    assert_eq!(
        batches.first().map(|batch| batch.base_offset),
        Some(log_start)
    );
    log_start
}

/// With 1 MiB segments and retention.bytes of 1 MiB, producing 4 MB deletes the oldest whole
/// segments: the log start offset advances to a batch boundary, offset 0 becomes
/// OFFSET_OUT_OF_RANGE, the log start is readable, and all of it survives a restart.
#[test]
fn retention_bytes_deletes_old_segments_and_advances_log_start() {
    let mut broker = Broker::start(2, &["--retention-check-interval-ms", "200"]);
    let topic = "by-size";
    let configs = [("segment.bytes", "1048576"), ("retention.bytes", "1048576")];
    create_topic_with_configs(broker.port, topic, 1, &configs);
    let mut conn = RawConn::connect(broker.port);
    produce_batches(&mut conn, topic);
    let log_start = assert_retention_advanced(&mut broker, topic);
    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let (restarted_start, high_watermark, _) = fetch_state(&mut conn, topic, log_start);
    assert!(
        restarted_start >= log_start,
        "log start {restarted_start} went back on restart"
    );
    assert_eq!(
        high_watermark,
        BATCHES * RECORDS_PER_BATCH,
        "log end kept across restart"
    );
    let (_, _, error) = fetch_state(&mut conn, topic, 0);
    assert_eq!(error, 1, "deleted offsets stay out of range after restart");
}

/// With 1 MiB segments and retention.ms of 1 s, sealed segments whose newest record is older
/// than a second are deleted and the log start offset advances; the active segment stays.
#[test]
fn retention_ms_deletes_old_segments() {
    let mut broker = Broker::start(2, &["--retention-check-interval-ms", "200"]);
    let topic = "by-age";
    let configs = [("segment.bytes", "1048576"), ("retention.ms", "1000")];
    create_topic_with_configs(broker.port, topic, 1, &configs);
    let mut conn = RawConn::connect(broker.port);
    produce_batches(&mut conn, topic);
    assert_retention_advanced(&mut broker, topic);
}

/// Without retention limits, the same 4 MB over 1 MiB segments rolls several segment files
/// and keeps every offset readable from 0.
#[test]
fn segments_roll_by_segment_bytes_and_keep_every_offset() {
    let broker = Broker::start(2, &[]);
    let topic = "rolling";
    create_topic_with_configs(broker.port, topic, 1, &[("segment.bytes", "1048576")]);
    let mut conn = RawConn::connect(broker.port);
    produce_batches(&mut conn, topic);
    let logs = std::fs::read_dir(broker.partition_dir(topic, 0))
        .unwrap()
        .filter(|entry| {
            let path = entry.as_ref().unwrap().path();
            path.extension().is_some_and(|extension| extension == "log")
        })
        .count();
    assert!(
        logs >= 3,
        "4 MB over 1 MiB segments rolled only {logs} segment files"
    );
    for offset in 0..BATCHES * RECORDS_PER_BATCH {
        let response: FetchResponse =
            conn.request(&fetch_request(topic, 0, offset, 0, 1, 1 << 20), 12);
        let data = single_partition(&response);
        assert_eq!(
            (data.error_code, data.log_start_offset),
            (0, 0),
            "fetch at {offset}"
        );
        let records = data.records.clone().expect("records");
        let (batches, _) = parse_batches(&records);
        let first = batches.first().expect("a batch");
        assert!(
            first.base_offset <= offset && offset <= first.last_offset(),
            "fetch at {offset} starts with the batch holding it, got {first:?}"
        );
    }
}
