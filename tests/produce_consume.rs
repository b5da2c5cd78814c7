//! Produce and fetch against the real broker: librdkafka round trips (keys, headers,
//! timestamps, every compression codec) and raw-protocol checks of the error codes and fetch
//! semantics that a client library would paper over.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use common::*;
use kafka_protocol::messages::{ApiVersionsResponse, FetchResponse};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::Compression;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Timestamp;

const FETCH_VERSION: i16 = 12;

fn rdkafka_producer(broker: &Broker, extra: &[(&str, &str)]) -> BaseProducer<RecordingContext> {
    let mut config = producer_config(&broker.bootstrap());
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .create_with_context(RecordingContext::default())
        .expect("create producer")
}

/// Flushes and returns every delivery report, failing on any delivery error.
fn flush_deliveries(producer: &BaseProducer<RecordingContext>, expected: usize) -> Vec<Delivered> {
    producer.flush(Duration::from_secs(60)).expect("flush");
    let deliveries = producer.context().deliveries.lock().unwrap().clone();
    assert_eq!(
        deliveries.len(),
        expected,
        "one delivery report per message"
    );
    for delivered in &deliveries {
        assert!(delivered.error.is_none(), "delivery failed: {delivered:?}");
    }
    deliveries
}

/// Messages produced by librdkafka with keys, headers and CreateTime timestamps over six
/// partitions on two shards come back from a consumer byte for byte, at the offsets the
/// delivery reports gave, and each partition's offsets run 0..n without gaps.
#[test]
fn round_trip_keys_headers_timestamps_over_six_partitions() {
    let broker = Broker::start(2, &[]);
    let topic = "round-trip";
    create_topic(broker.port, topic, 6);
    let producer = rdkafka_producer(&broker, &[]);
    let timestamp_base = 1_700_000_000_000i64;
    let count = 600;
    for index in 0..count {
        let key = format!("key-{index}");
        let payload = format!("value-{index}-{}", "x".repeat(index % 50));
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "index",
                value: Some(index.to_string().as_bytes()),
            })
            .insert(Header {
                key: "nothing",
                value: None::<&[u8]>,
            });
        let record = BaseRecord::to(topic)
            .partition((index % 6) as i32)
            .key(&key)
            .payload(&payload)
            .headers(headers)
            .timestamp(timestamp_base + index as i64);
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("enqueue");
        producer.poll(Duration::ZERO);
    }
    let deliveries = flush_deliveries(&producer, count);

    let mut expected_offsets: HashMap<i32, Vec<i64>> = HashMap::new();
    for delivered in &deliveries {
        expected_offsets
            .entry(delivered.partition)
            .or_default()
            .push(delivered.offset.unwrap());
    }
    for partition in 0..6 {
        let mut offsets = expected_offsets[&partition].clone();
        offsets.sort();
        assert_eq!(
            offsets,
            (0..100).collect::<Vec<i64>>(),
            "offsets of partition {partition}"
        );
    }

    let consumer = consumer(&broker.bootstrap());
    let ends: HashMap<i32, i64> = (0..6).map(|partition| (partition, 100)).collect();
    let received = consume_until(&consumer, topic, &ends, Duration::from_secs(60));
    let by_position: HashMap<(i32, i64), &Delivered> = deliveries
        .iter()
        .map(|delivered| ((delivered.partition, delivered.offset.unwrap()), delivered))
        .collect();
    for (partition, messages) in &received {
        assert_eq!(messages.len(), 100, "messages in partition {partition}");
        for (position, message) in messages.iter().enumerate() {
            assert_eq!(
                message.offset(),
                position as i64,
                "offsets in order, no gaps"
            );
            let sent = by_position[&(*partition, message.offset())];
            assert_eq!(message.payload(), Some(&sent.payload[..]));
            let payload = std::str::from_utf8(message.payload().unwrap()).unwrap();
            let index: usize = payload.split('-').nth(1).unwrap().parse().unwrap();
            assert_eq!(message.key(), Some(format!("key-{index}").as_bytes()));
            let expected_time = Timestamp::CreateTime(timestamp_base + index as i64);
            assert_eq!(message.timestamp(), expected_time);
            let headers = message.headers().expect("headers");
            assert_eq!(headers.count(), 2);
            let first = headers.get(0);
            assert_eq!(
                (first.key, first.value),
                ("index", Some(index.to_string().as_bytes()))
            );
            let second = headers.get(1);
            assert_eq!((second.key, second.value), ("nothing", None));
        }
    }
}

/// Batches compressed by librdkafka with gzip, snappy, lz4 and zstd are accepted, stored with
/// their compression as sent (the fetched batch header names the codec and its CRC holds), and
/// decompress on the consumer to exactly what was produced.
#[test]
fn every_compression_codec_round_trips_and_is_stored_as_sent() {
    let broker = Broker::start(2, &[]);
    let codecs = [("gzip", 1i16), ("snappy", 2), ("lz4", 3), ("zstd", 4)];
    for (codec, attribute) in codecs {
        let topic = format!("compressed-{codec}");
        create_topic(broker.port, &topic, 1);
        let producer =
            rdkafka_producer(&broker, &[("compression.type", codec), ("linger.ms", "50")]);
        let count = 500;
        for index in 0..count {
            let payload = format!("{codec} message {index} {}", "compressible ".repeat(20));
            enqueue(&producer, &topic, 0, &payload);
        }
        let deliveries = flush_deliveries(&producer, count);

        let consumer = consumer(&broker.bootstrap());
        let ends = HashMap::from([(0, count as i64)]);
        let received = consume_until(&consumer, &topic, &ends, Duration::from_secs(60));
        let messages = &received[&0];
        assert_eq!(messages.len(), count, "{codec}: message count");
        let mut sent: Vec<&Delivered> = deliveries.iter().collect();
        sent.sort_by_key(|delivered| delivered.offset);
        for (message, delivered) in messages.iter().zip(sent) {
            assert_eq!(Some(message.offset()), delivered.offset, "{codec}: offset");
            assert_eq!(
                message.payload(),
                Some(&delivered.payload[..]),
                "{codec}: payload"
            );
        }

        let mut conn = RawConn::connect(broker.port);
        let response: FetchResponse =
            conn.request(&fetch_request(&topic, 0, 0, 0, 1, 8 << 20), FETCH_VERSION);
        let partition = single_partition(&response);
        let records = partition.records.clone().expect("records");
        let (batches, _) = parse_batches(&records);
        assert!(!batches.is_empty(), "{codec}: batches fetched");
        for batch in &batches {
            assert_eq!(
                batch.compression(),
                attribute,
                "{codec}: stored codec of {batch:?}"
            );
            let bytes = &records[batch.position..batch.position + batch.size];
            assert!(
                batch_crc_ok(bytes),
                "{codec}: CRC of stored batch {batch:?}"
            );
        }
    }
}

/// Produce v0 (advertised, as Kafka 4 does, but no longer served) answers every partition with
/// UNSUPPORTED_VERSION (35) and appends nothing.
#[test]
fn produce_v0_answers_unsupported_version_per_partition() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "old-produce", 2);
    let records = legacy_message_set(&[b"old"], 0, 0);
    // Produce v0 body: acks, timeout, [topic name, [partition, message set]].
    let mut body = Vec::new();
    body.put_i16(1);
    body.put_i32(30_000);
    body.put_i32(1);
    body.put_i16("old-produce".len() as i16);
    body.put_slice(b"old-produce");
    body.put_i32(2);
    for partition in 0..2 {
        body.put_i32(partition);
        body.put_i32(records.len() as i32);
        body.put_slice(&records);
    }
    let mut conn = RawConn::connect(broker.port);
    conn.send_frame(&header_v1_frame(0, 0, 7, &body)).unwrap();
    let mut response = conn.recv_frame().expect("a Produce v0 response");
    assert_eq!(response.get_i32(), 7, "correlation id");
    assert_eq!(response.get_i32(), 1, "one topic");
    let name_length = response.get_i16() as usize;
    assert_eq!(&response.split_to(name_length)[..], b"old-produce");
    assert_eq!(response.get_i32(), 2, "two partitions");
    for partition in 0..2 {
        assert_eq!(response.get_i32(), partition, "partition index");
        assert_eq!(
            response.get_i16(),
            35,
            "UNSUPPORTED_VERSION for partition {partition}"
        );
        let _base_offset = response.get_i64();
    }
    assert!(!response.has_remaining(), "nothing after the v0 response");
    assert_high_watermark(&mut conn, "old-produce", 0, 0);
}

fn assert_high_watermark(conn: &mut RawConn, topic: &str, partition: i32, expected: i64) {
    let response: FetchResponse = conn.request(
        &fetch_request(topic, partition, 0, 0, 1, 1 << 20),
        FETCH_VERSION,
    );
    let data = single_partition(&response);
    assert_eq!(data.error_code, 0, "fetch error for {topic}-{partition}");
    assert_eq!(
        data.high_watermark, expected,
        "high watermark of {topic}-{partition}"
    );
}

/// A magic v1 message set in a Produce v3+ request answers INVALID_RECORD (87), appends
/// nothing, and the connection keeps working.
#[test]
fn magic_v1_batch_answers_invalid_record() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "magic", 1);
    let mut conn = RawConn::connect(broker.port);
    let records = legacy_message_set(&[b"one", b"two"], 1_700_000_000_000, 1);
    let (error, _) = produce(&mut conn, "magic", 0, records);
    assert_eq!(error, 87, "INVALID_RECORD");
    assert_high_watermark(&mut conn, "magic", 0, 0);
    let (error, offset) = produce(
        &mut conn,
        "magic",
        0,
        record_batch(&[b"ok"], 1, Compression::None),
    );
    assert_eq!((error, offset), (0, 0), "a v2 batch after the rejected one");
}

/// A v2 batch whose CRC-32C does not match its bytes answers CORRUPT_MESSAGE (2) and appends
/// nothing.
#[test]
fn bad_crc_answers_corrupt_message() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "crc", 1);
    let mut conn = RawConn::connect(broker.port);
    let good = record_batch(&[b"first", b"second"], 1_700_000_000_000, Compression::None);
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x5a;
    assert!(
        !batch_crc_ok(&bad),
        "the flipped byte is covered by the CRC"
    );
    let (error, _) = produce(&mut conn, "crc", 0, Bytes::from(bad));
    assert_eq!(error, 2, "CORRUPT_MESSAGE");
    assert_high_watermark(&mut conn, "crc", 0, 0);
    assert_eq!(
        produce(&mut conn, "crc", 0, good),
        (0, 0),
        "the intact batch is accepted"
    );
    assert_high_watermark(&mut conn, "crc", 0, 2);
}

/// Produce and Fetch to a partition index the topic does not have answer
/// UNKNOWN_TOPIC_OR_PARTITION (3).
#[test]
fn unknown_partition_answers_unknown_topic_or_partition() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "two-partitions", 2);
    let mut conn = RawConn::connect(broker.port);
    let records = record_batch(&[b"lost"], 1, Compression::None);
    let (error, _) = produce(&mut conn, "two-partitions", 7, records);
    assert_eq!(error, 3, "UNKNOWN_TOPIC_OR_PARTITION on produce");
    let response: FetchResponse = conn.request(
        &fetch_request("two-partitions", 7, 0, 0, 1, 1 << 20),
        FETCH_VERSION,
    );
    assert_eq!(
        single_partition(&response).error_code,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION on fetch"
    );
}

/// Fetch at an offset beyond the log end answers OFFSET_OUT_OF_RANGE (1); fetch at exactly the
/// log end is not an error.
#[test]
fn fetch_beyond_log_end_answers_offset_out_of_range() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "range", 1);
    let mut conn = RawConn::connect(broker.port);
    let batch = record_batch(&[b"a", b"b", b"c"], 1, Compression::None);
    assert_eq!(produce(&mut conn, "range", 0, batch), (0, 0));
    let response: FetchResponse =
        conn.request(&fetch_request("range", 0, 13, 0, 1, 1 << 20), FETCH_VERSION);
    assert_eq!(
        single_partition(&response).error_code,
        1,
        "OFFSET_OUT_OF_RANGE"
    );
    let response: FetchResponse =
        conn.request(&fetch_request("range", 0, 3, 0, 1, 1 << 20), FETCH_VERSION);
    let data = single_partition(&response);
    assert_eq!(data.error_code, 0, "fetch at the log end");
    assert_eq!(data.high_watermark, 3);
    assert!(
        data.records
            .as_ref()
            .is_none_or(|records| records.is_empty()),
        "no records"
    );
}

/// ApiVersions at a version the broker does not know (99) answers UNSUPPORTED_VERSION (35)
/// with a v0 body listing the supported ranges, so the client can retry at a known version.
#[test]
fn api_versions_unknown_version_answers_35_with_ranges() {
    let broker = Broker::start(2, &[]);
    let mut conn = RawConn::connect(broker.port);
    // Request header v2 (flexible): key, version, correlation id, nullable client id, no tags;
    // then an ApiVersions v3 body: compact software name and version, no tags.
    let mut frame = Vec::new();
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(42);
    frame.put_i16(5);
    frame.put_slice(b"tests");
    frame.put_u8(0);
    frame.put_u8(1 + 5);
    frame.put_slice(b"tests");
    frame.put_u8(1 + 3);
    frame.put_slice(b"1.0");
    frame.put_u8(0);
    conn.send_frame(&frame).unwrap();
    let mut response = conn.recv_frame().expect("an ApiVersions response");
    assert_eq!(response.get_i32(), 42, "correlation id in a v0 header");
    let body = ApiVersionsResponse::decode(&mut response, 0).expect("a v0 ApiVersions body");
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    let range = |key: i16| {
        let entry = body.api_keys.iter().find(|entry| entry.api_key == key);
        entry.map(|entry| (entry.min_version, entry.max_version))
    };
    assert_eq!(range(18), Some((0, 4)), "ApiVersions range");
    assert_eq!(range(0), Some((0, 13)), "Produce range");
    assert_eq!(range(1), Some((4, 18)), "Fetch range");
    assert_eq!(range(3), Some((1, 13)), "Metadata range");
    // The broker must still talk on this connection at a supported version.
    let retry = kafka_protocol::messages::ApiVersionsRequest::default();
    assert_eq!(
        conn.request(&retry, 0).error_code,
        0,
        "ApiVersions v0 after the fallback"
    );
}

/// A Fetch whose max_bytes and partition max_bytes are smaller than the first batch still
/// returns that whole batch, so a consumer can always make progress.
#[test]
fn fetch_returns_whole_first_batch_larger_than_max_bytes() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "big-batch", 1);
    let mut conn = RawConn::connect(broker.port);
    let value = vec![0xabu8; 10_000];
    let values: Vec<&[u8]> = vec![&value; 3];
    let batch = record_batch(&values, 1, Compression::None);
    assert_eq!(produce(&mut conn, "big-batch", 0, batch.clone()), (0, 0));
    assert_eq!(produce(&mut conn, "big-batch", 0, batch.clone()), (0, 3));
    for version in [4, FETCH_VERSION] {
        let response: FetchResponse =
            conn.request(&fetch_request("big-batch", 0, 0, 0, 1, 100), version);
        let data = single_partition(&response);
        assert_eq!(data.error_code, 0);
        let records = data.records.clone().expect("records despite max_bytes 100");
        let (batches, _) = parse_batches(&records);
        assert!(
            !batches.is_empty(),
            "v{version}: the whole first batch ({} bytes)",
            batch.len()
        );
        assert_eq!(batches[0].base_offset, 0);
        assert_eq!(batches[0].record_count, 3);
        assert_eq!(
            batches[0].size,
            batch.len(),
            "v{version}: stored batch size"
        );
        // Offsets and the leader epoch may be patched; the records themselves are verbatim.
        assert_eq!(
            &records[61..batch.len()],
            &batch[61..],
            "v{version}: records verbatim"
        );
    }
}

/// Every fetch response reports the partition's high watermark (next offset to be written) and
/// its log start offset (0 for a fresh log), at the oldest and newest Fetch versions served.
#[test]
fn fetch_reports_high_watermark_and_log_start_offset() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "watermarks", 1);
    let mut conn = RawConn::connect(broker.port);
    for round in 0..4 {
        let batch = record_batch(&[b"a", b"b", b"c", b"d", b"e"], 1, Compression::None);
        assert_eq!(produce(&mut conn, "watermarks", 0, batch), (0, round * 5));
    }
    for version in [5, FETCH_VERSION] {
        for offset in [0, 7, 20] {
            let request = fetch_request("watermarks", 0, offset, 0, 1, 1 << 20);
            let response: FetchResponse = conn.request(&request, version);
            let data = single_partition(&response);
            assert_eq!(data.error_code, 0, "v{version} at {offset}");
            assert_eq!(
                data.high_watermark, 20,
                "v{version} at {offset}: high watermark"
            );
            assert_eq!(
                data.log_start_offset, 0,
                "v{version} at {offset}: log start offset"
            );
            let records = data.records.clone().unwrap_or_default();
            let (batches, _) = parse_batches(&records);
            if offset < 20 {
                // The batch holding `offset` comes first, even when it starts before it.
                assert_eq!(
                    batches.first().map(|batch| batch.base_offset),
                    Some(offset / 5 * 5)
                );
            } else {
                assert!(batches.is_empty(), "nothing to read at the high watermark");
            }
        }
    }
}

/// A Fetch parked with max_wait_ms=2000 and min_bytes=1 at the log end returns the new batch
/// as soon as another connection produces it, well before max_wait_ms.
#[test]
fn fetch_long_poll_wakes_on_produce() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "long-poll", 2);
    let mut fetcher = RawConn::connect(broker.port);
    let request = fetch_request("long-poll", 1, 0, 2000, 1, 1 << 20);
    let correlation_id = fetcher.send_request(&request, FETCH_VERSION).unwrap();
    let sent_at = Instant::now();
    let port = broker.port;
    let producer = std::thread::spawn(move || {
        // Not synchronisation: the delay makes sure the fetch had time to park, so the test
        // measures a wake-up rather than a fetch that found data on arrival.
        std::thread::sleep(Duration::from_millis(300));
        let mut conn = RawConn::connect(port);
        let produced_at = Instant::now();
        let batch = record_batch(&[b"wake up"], 1, Compression::None);
        assert_eq!(produce(&mut conn, "long-poll", 1, batch), (0, 0));
        produced_at
    });
    let response =
        fetcher.recv_response::<kafka_protocol::messages::FetchRequest>(correlation_id, 12);
    let returned_at = Instant::now();
    let produced_at = producer.join().unwrap();
    let response = response.expect("fetch response");
    let data = single_partition(&response);
    let records = data.records.clone().unwrap_or_default();
    let (batches, _) = parse_batches(&records);
    assert_eq!(
        batches.len(),
        1,
        "the produced batch, after {:?}",
        returned_at - sent_at
    );
    // Well before max_wait_ms (2000), with room for a slow produce on a loaded machine.
    let after_produce = returned_at.saturating_duration_since(produced_at);
    assert!(
        returned_at - sent_at < Duration::from_millis(1700),
        "fetch returned {:?} after it was sent, {after_produce:?} after produce started",
        returned_at - sent_at
    );
}

/// A Fetch at the log end with max_wait_ms=1000 and nothing arriving returns no records after
/// about max_wait_ms (not at once, and not much later).
#[test]
fn fetch_long_poll_returns_empty_after_max_wait() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "quiet", 1);
    let mut conn = RawConn::connect(broker.port);
    let batch = record_batch(&[b"only"], 1, Compression::None);
    assert_eq!(produce(&mut conn, "quiet", 0, batch), (0, 0));
    let started = Instant::now();
    let response: FetchResponse = conn.request(
        &fetch_request("quiet", 0, 1, 1000, 1, 1 << 20),
        FETCH_VERSION,
    );
    let elapsed = started.elapsed();
    let data = single_partition(&response);
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 1);
    assert!(
        data.records
            .as_ref()
            .is_none_or(|records| records.is_empty()),
        "no records"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "returned after {elapsed:?}, before max wait"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "returned after {elapsed:?}"
    );
}

/// Requests pipelined on one connection (produce to partitions on both shards, metadata,
/// fetch, ApiVersions) are answered in request order, and produces to one partition get
/// offsets in request order.
#[test]
fn pipelined_requests_are_answered_in_request_order() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "pipelined", 4);
    let mut conn = RawConn::connect(broker.port);
    let mut expected = Vec::new();
    let mut frames = Vec::new();
    for round in 0..20 {
        let partition = round % 4;
        let batch = record_batch(&[format!("round {round}").as_bytes()], 1, Compression::None);
        let request = produce_request("pipelined", partition, batch, -1);
        let (correlation_id, body) = conn.encode_request(&request, 9);
        expected.push((correlation_id, "produce", partition, round as i64 / 4));
        frames.push(body);
        let (correlation_id, body) = match round % 3 {
            0 => conn.encode_request(&kafka_protocol::messages::ApiVersionsRequest::default(), 0),
            1 => conn.encode_request(&fetch_request("pipelined", partition, 0, 0, 1, 1 << 16), 12),
            _ => conn.encode_request(
                &kafka_protocol::messages::MetadataRequest::default().with_topics(None),
                4,
            ),
        };
        expected.push((correlation_id, "other", partition, -1));
        frames.push(body);
    }
    conn.send_frames(&frames).unwrap();
    for (correlation_id, kind, partition, offset) in expected {
        let mut response = conn.recv_frame().expect("a response");
        assert_eq!(
            response.get_i32(),
            correlation_id,
            "responses in request order"
        );
        if kind == "produce" {
            // Produce v9 has a flexible header: skip its empty tagged fields.
            assert_eq!(response.get_u8(), 0, "no header tags");
            let body = kafka_protocol::messages::ProduceResponse::decode(&mut response, 9)
                .expect("produce response");
            let data = &body.responses[0].partition_responses[0];
            assert_eq!((data.index, data.error_code), (partition, 0));
            assert_eq!(data.base_offset, offset, "offset of produce to {partition}");
        }
    }
}

/// Produce with acks=0 gets no response (the next frame answers the request after it), yet
/// the data is appended.
#[test]
fn produce_acks_zero_gets_no_response() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "fire-and-forget", 1);
    let mut conn = RawConn::connect(broker.port);
    for _ in 0..3 {
        let batch = record_batch(&[b"x", b"y"], 1, Compression::None);
        let request = produce_request("fire-and-forget", 0, batch, 0);
        conn.send_request(&request, 9).unwrap();
    }
    let request = kafka_protocol::messages::ApiVersionsRequest::default();
    let correlation_id = conn.send_request(&request, 0).unwrap();
    let response =
        conn.recv_response::<kafka_protocol::messages::ApiVersionsRequest>(correlation_id, 0);
    assert_eq!(
        response
            .expect("the ApiVersions response comes first")
            .error_code,
        0
    );
    let appended = wait_until(Duration::from_secs(30), || {
        let response: FetchResponse = conn.request(
            &fetch_request("fire-and-forget", 0, 0, 0, 1, 1 << 20),
            FETCH_VERSION,
        );
        single_partition(&response).high_watermark == 6
    });
    assert!(appended, "three acks=0 batches appended");
}

/// Batches compressed with each codec by another encoder than librdkafka's (the protocol
/// crate's) are accepted, stored byte for byte as sent apart from the offset, and decode back
/// to the produced values.
#[test]
fn raw_compressed_batches_are_stored_verbatim() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "raw-compressed", 1);
    let mut conn = RawConn::connect(broker.port);
    let codecs = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut next_offset = 0;
    for codec in codecs {
        let values: Vec<Vec<u8>> = (0..20)
            .map(|index| format!("{codec:?} value {index} {}", "z".repeat(100)).into_bytes())
            .collect();
        let slices: Vec<&[u8]> = values.iter().map(|value| &value[..]).collect();
        let batch = record_batch(&slices, 1_700_000_000_000, codec);
        assert_eq!(parse_batches(&batch).0[0].compression(), codec as i16);
        let produced = produce(&mut conn, "raw-compressed", 0, batch.clone());
        assert_eq!(produced, (0, next_offset), "{codec:?} accepted");
        let request = fetch_request("raw-compressed", 0, next_offset, 0, 1, 1 << 20);
        let response: FetchResponse = conn.request(&request, FETCH_VERSION);
        let mut records = single_partition(&response)
            .records
            .clone()
            .expect("records");
        let (batches, _) = parse_batches(&records);
        assert_eq!(batches[0].base_offset, next_offset);
        assert_eq!(batches[0].size, batch.len(), "{codec:?}: stored size");
        assert_eq!(
            &records[61..batch.len()],
            &batch[61..],
            "{codec:?}: verbatim"
        );
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut records)
            .expect("decode the fetched batch");
        let decoded_values: Vec<Vec<u8>> = decoded
            .records
            .iter()
            .map(|record| record.value.clone().unwrap().to_vec())
            .collect();
        assert_eq!(decoded_values, values, "{codec:?}: values");
        next_offset += 20;
    }
}

/// A batch larger than the topic's max.message.bytes (default 1 MiB + 12) answers
/// MESSAGE_TOO_LARGE (10) and appends nothing, while one just under the limit is accepted.
#[test]
fn batch_over_max_message_bytes_answers_message_too_large() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "large", 1);
    let mut conn = RawConn::connect(broker.port);
    let value = vec![7u8; 600 * 1024];
    let too_large = record_batch(&[&value, &value], 1, Compression::None);
    assert!(too_large.len() > 1024 * 1024 + 12);
    let (error, _) = produce(&mut conn, "large", 0, too_large);
    assert_eq!(error, 10, "MESSAGE_TOO_LARGE");
    assert_high_watermark(&mut conn, "large", 0, 0);
    let fits = vec![7u8; 1000 * 1024];
    let batch = record_batch(&[&fits], 1, Compression::None);
    assert!(batch.len() < 1024 * 1024 + 12);
    assert_eq!(
        produce(&mut conn, "large", 0, batch),
        (0, 0),
        "a batch under the limit"
    );
}

/// ListOffsets answers earliest (-2) with the log start, latest (-1) with the log end, and a
/// timestamp with the first offset whose timestamp is at least that, or -1 past the newest,
/// at the oldest (1) and newest (7) versions served.
#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "times", 1);
    let mut conn = RawConn::connect(broker.port);
    let base_ms = 1_700_000_000_000i64;
    for batch in 0..4 {
        let records = record_batch(
            &[b"a", b"b", b"c", b"d", b"e"],
            base_ms + batch * 1000,
            Compression::None,
        );
        assert_eq!(produce(&mut conn, "times", 0, records), (0, batch * 5));
    }
    let cases = [
        (-2, 0),
        (-1, 20),
        (base_ms, 0),
        (base_ms + 1500, 10),
        (base_ms + 3000, 15),
        (base_ms + 3001, -1),
    ];
    for version in [1, 7] {
        for (timestamp, expected) in cases {
            let (error_code, offset, _) = list_offset(&mut conn, "times", timestamp, version);
            assert_eq!(error_code, 0, "v{version} timestamp {timestamp}");
            assert_eq!(
                offset, expected,
                "v{version} offset for timestamp {timestamp}"
            );
        }
    }
}

/// ListOffsets for partition 0 of `topic` at `timestamp`: (error code, offset, timestamp).
fn list_offset(conn: &mut RawConn, topic: &str, timestamp: i64, version: i16) -> (i16, i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::ListOffsetsRequest;
    let partition = ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(timestamp);
    let topic = ListOffsetsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![partition]);
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![topic]);
    let response = conn.request(&request, version);
    let data = &response.topics[0].partitions[0];
    (data.error_code, data.offset, data.timestamp)
}

/// ListOffsets by timestamp finds a record that is not the first of its batch when the
/// batch's timestamps lie further apart than 32 bits hold (the record's timestamp delta is a
/// varlong on the wire): librdkafka sends records stamped 1234 and 999999999999 in one batch,
/// and the lookup of 999999999999 answers offset 1, at v1 and v7 and through the client's
/// offsets_for_times; the consumer reads both timestamps back.
#[test]
fn list_offsets_by_timestamp_finds_a_record_after_the_first_of_its_batch() {
    use rdkafka::consumer::Consumer;
    const LATE_MS: i64 = 999_999_999_999;
    let broker = Broker::start(2, &[]);
    let topic = "wide-timestamps";
    create_topic(broker.port, topic, 1);
    let producer = rdkafka_producer(&broker, &[("linger.ms", "500")]);
    for (payload, timestamp) in [("early", 1234), ("late", LATE_MS)] {
        let record = BaseRecord::<(), _>::to(topic)
            .partition(0)
            .payload(payload)
            .timestamp(timestamp);
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("enqueue");
    }
    flush_deliveries(&producer, 2);
    let mut conn = RawConn::connect(broker.port);
    let response: FetchResponse =
        conn.request(&fetch_request(topic, 0, 0, 0, 1, 1 << 20), FETCH_VERSION);
    let records = single_partition(&response)
        .records
        .clone()
        .expect("records");
    let (batches, _) = parse_batches(&records);
    let counts: Vec<i32> = batches.iter().map(|batch| batch.record_count).collect();
    assert_eq!(counts, vec![2], "both records in one batch");

    let cases = [(1234, 0, 1234), (1235, 1, LATE_MS), (LATE_MS, 1, LATE_MS)];
    for version in [1, 7] {
        for (timestamp, offset, found) in cases {
            let answer = list_offset(&mut conn, topic, timestamp, version);
            assert_eq!(
                answer,
                (0, offset, found),
                "v{version} timestamp {timestamp}"
            );
        }
    }
    assert_eq!(
        list_offset(&mut conn, topic, -3, 7),
        (0, 1, LATE_MS),
        "max timestamp"
    );

    let consumer = consumer(&broker.bootstrap());
    let mut wanted = rdkafka::TopicPartitionList::new();
    wanted
        .add_partition_offset(topic, 0, rdkafka::Offset::Offset(LATE_MS))
        .expect("add partition");
    let found = consumer
        .offsets_for_times(wanted, Duration::from_secs(30))
        .expect("offsets_for_times");
    let offset = found.find_partition(topic, 0).expect("partition").offset();
    assert_eq!(offset, rdkafka::Offset::Offset(1), "offsets_for_times");
    let ends = HashMap::from([(0, 2)]);
    let received = consume_until(&consumer, topic, &ends, Duration::from_secs(60));
    let timestamps: Vec<Timestamp> = received[&0].iter().map(|m| m.timestamp()).collect();
    let expected = [Timestamp::CreateTime(1234), Timestamp::CreateTime(LATE_MS)];
    assert_eq!(timestamps, expected, "the consumer reads both timestamps");
}

fn metadata_for(
    conn: &mut RawConn,
    topic: &str,
    allow_auto_topic_creation: bool,
    version: i16,
) -> kafka_protocol::messages::MetadataResponse {
    use kafka_protocol::messages::{metadata_request::MetadataRequestTopic, MetadataRequest};
    let topic = MetadataRequestTopic::default().with_name(Some(topic_name(topic)));
    let request = MetadataRequest::default()
        .with_topics(Some(vec![topic]))
        .with_allow_auto_topic_creation(allow_auto_topic_creation);
    conn.request(&request, version)
}

/// Metadata for an unknown topic with auto creation allowed creates it with the configured
/// default partition count, each partition led by this broker, which it advertises at its
/// listen address; with auto creation disallowed by the request the topic stays unknown (3).
#[test]
fn metadata_auto_creates_topics_with_default_partitions() {
    let broker = Broker::start(2, &["--num-partitions", "3"]);
    let mut conn = RawConn::connect(broker.port);
    for (version, topic) in [(1, "auto-v1"), (4, "auto-v4"), (12, "auto-v12")] {
        let created = wait_until(Duration::from_secs(30), || {
            let response = metadata_for(&mut conn, topic, true, version);
            let entry = &response.topics[0];
            entry.error_code == 0
                && entry.partitions.len() == 3
                && entry
                    .partitions
                    .iter()
                    .all(|p| p.error_code == 0 && p.leader_id == 0)
        });
        assert!(
            created,
            "v{version}: {topic} auto-created with 3 partitions led by node 0"
        );
        let response = metadata_for(&mut conn, topic, true, version);
        let brokers: Vec<(i32, String, i32)> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        assert_eq!(
            brokers,
            vec![(0, "127.0.0.1".to_string(), broker.port as i32)]
        );
    }
    let batch = record_batch(&[b"into an auto-created topic"], 1, Compression::None);
    assert_eq!(produce(&mut conn, "auto-v12", 2, batch), (0, 0));
    let response = metadata_for(&mut conn, "not-allowed", false, 12);
    assert_eq!(
        response.topics[0].error_code, 3,
        "no auto creation when the request says no"
    );
    let response = metadata_for(&mut conn, "not-allowed", false, 12);
    assert_eq!(response.topics[0].error_code, 3, "still unknown");
}

/// With --auto-create-topics false neither Metadata nor Produce creates a topic: both answer
/// UNKNOWN_TOPIC_OR_PARTITION (3).
#[test]
fn auto_create_disabled_leaves_unknown_topics_unknown() {
    let broker = Broker::start(2, &["--auto-create-topics", "false"]);
    let mut conn = RawConn::connect(broker.port);
    let response = metadata_for(&mut conn, "nope", true, 12);
    assert_eq!(response.topics[0].error_code, 3, "Metadata");
    let (error, _) = produce(
        &mut conn,
        "nope",
        0,
        record_batch(&[b"x"], 1, Compression::None),
    );
    assert_eq!(error, 3, "Produce");
    let response = metadata_for(&mut conn, "nope", true, 12);
    assert_eq!(
        response.topics[0].error_code, 3,
        "Metadata after the produce"
    );
}

/// A Fetch parked on four partitions spread over both shards is woken by a produce to any one
/// of them, whichever shard owns it relative to the connection's own shard.
#[test]
fn fetch_long_poll_over_both_shards_wakes_on_any_partition() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "spread", 4);
    let mut fetcher = RawConn::connect(broker.port);
    let mut producer = RawConn::connect(broker.port);
    for partition in 0..4 {
        let fetch_partitions = (0..4)
            .map(|index| {
                let offset = if index == partition {
                    0
                } else {
                    i64::from(index < partition)
                };
                kafka_protocol::messages::fetch_request::FetchPartition::default()
                    .with_partition(index)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        let topic = kafka_protocol::messages::fetch_request::FetchTopic::default()
            .with_topic(topic_name("spread"))
            .with_partitions(fetch_partitions);
        let request = kafka_protocol::messages::FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(5000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![topic]);
        let correlation_id = fetcher.send_request(&request, FETCH_VERSION).unwrap();
        let sent_at = Instant::now();
        // Not synchronisation: gives the fetch time to park, so a wake-up is what is measured.
        std::thread::sleep(Duration::from_millis(300));
        let batch = record_batch(&[b"wake"], 1, Compression::None);
        assert_eq!(produce(&mut producer, "spread", partition, batch), (0, 0));
        let response = fetcher
            .recv_response::<kafka_protocol::messages::FetchRequest>(correlation_id, 12)
            .expect("fetch response");
        let elapsed = sent_at.elapsed();
        assert!(
            elapsed < Duration::from_millis(3000),
            "partition {partition}: {elapsed:?}"
        );
        let with_data: Vec<i32> = response.responses[0]
            .partitions
            .iter()
            .filter(|data| {
                data.records
                    .as_ref()
                    .is_some_and(|records| !records.is_empty())
            })
            .map(|data| data.partition_index)
            .collect();
        assert_eq!(
            with_data,
            vec![partition],
            "only the produced partition has data"
        );
    }
}
