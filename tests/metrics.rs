//! The admin listener's `/metrics` endpoint, against a real broker.

mod common;

use common::*;
use kafka_protocol::records::Compression;

/// The sum of `family`'s samples over shards 0 and 1.
fn sum_over_shards(body: &str, family: &str) -> f64 {
    ["0", "1"]
        .iter()
        .filter_map(|shard| sample(body, &format!("{family}{{shard=\"{shard}\"}}")))
        .sum()
}

/// After produce and fetch across both shards, /metrics reports every family of issue 3:
/// per-API requests and latency, network bytes, per-partition produce and fetch, flushes,
/// the batch cache, cross-shard messages and connections; other paths answer 404.
#[test]
fn metrics_endpoint_reports_every_family() {
    let broker = Broker::start(2, &[]);
    let port = broker.port;
    create_topic(port, "metered", 4);
    let mut conn = RawConn::connect(port);
    for partition in 0..4 {
        let batch = record_batch(
            &[b"one", b"two", b"three"],
            1_700_000_000_000,
            Compression::None,
        );
        let (error, _) = produce(&mut conn, "metered", partition, batch);
        assert_eq!(error, 0, "produce to partition {partition}");
    }
    let request = fetch_request("metered", 0, 0, 0, 1, 1 << 20);
    let _ = conn.request(&request, 12);

    let (status, body) = http_get(broker.admin_port(), "/metrics");
    assert!(status.contains("200"), "status {status}");
    assert!(sample(&body, "corelog_requests_total{api=\"Produce\"}").unwrap_or(0.0) >= 4.0);
    assert!(body.contains("corelog_request_seconds_bucket{api=\"Produce\",le=\"+Inf\"}"));
    let records: f64 = (0..4)
        .filter_map(|p| {
            let prefix = format!(
                "corelog_partition_produced_records_total{{topic=\"metered\",partition=\"{p}\""
            );
            sample(&body, &prefix)
        })
        .sum();
    assert_eq!(
        records, 12.0,
        "three records in each of four partitions:\n{body}"
    );
    assert!(
        sample(
            &body,
            "corelog_partition_fetched_bytes_total{topic=\"metered\",partition=\"0\""
        )
        .unwrap_or(0.0)
            > 0.0
    );
    for family in [
        "corelog_network_received_bytes_total{shard=\"0\"}",
        "corelog_network_sent_bytes_total{shard=\"1\"}",
        "corelog_flush_seconds_count{shard=\"0\"}",
        "corelog_fsync_seconds_count{shard=\"1\"}",
        "corelog_flush_lock_wait_seconds_count{shard=\"0\"}",
        "corelog_batch_cache_hits_total{shard=\"0\"}",
        "corelog_connections_open{shard=\"0\"}",
        "corelog_cross_shard_messages_total{from=\"0\",to=\"1\"}",
        "corelog_partition_high_watermark{topic=\"metered\",partition=\"3\"",
    ] {
        assert!(sample(&body, family).is_some(), "missing {family}:\n{body}");
    }
    let flushes = sum_over_shards(&body, "corelog_flush_seconds_count");
    assert!(flushes >= 1.0, "at least one flush was counted");
    let syncs = sum_over_shards(&body, "corelog_fsync_seconds_count");
    assert!(
        syncs >= flushes,
        "every flush syncs: {syncs} syncs, {flushes} flushes"
    );
    let lock_waits = sum_over_shards(&body, "corelog_flush_lock_wait_seconds_count");
    // A wait is counted when the lock is taken, the flush when it ends.
    assert!(
        lock_waits >= flushes,
        "every flush waits for its io lock: {lock_waits} waits, {flushes} flushes"
    );

    let (status, _) = http_get(broker.admin_port(), "/nope");
    assert!(status.contains("404"), "status {status}");
}

/// Produce requests pipelined on one connection and made durable by the same flush are
/// answered together: `corelog_network_writes_total` counts fewer socket writes than
/// responses, and every response still arrives, in order.
#[test]
fn responses_ready_together_share_socket_writes() {
    const REQUESTS: usize = 40;
    let broker = Broker::start(1, &[]);
    create_topic(broker.port, "coalesced", 1);
    let writes_metric = "corelog_network_writes_total{shard=\"0\"}";
    let writes_before = sample(&http_get(broker.admin_port(), "/metrics").1, writes_metric)
        .expect("the socket writes family");
    let mut conn = RawConn::connect(broker.port);
    let mut frames = Vec::new();
    let mut correlation_ids = Vec::new();
    for n in 0..REQUESTS {
        let batch = record_batch(&[format!("m{n}").as_bytes()], 1, Compression::None);
        let (correlation_id, body) =
            conn.encode_request(&produce_request("coalesced", 0, batch, -1), 9);
        correlation_ids.push(correlation_id);
        frames.push(body);
    }
    // One client write: the broker reads the requests back to back.
    conn.send_frames(&frames).unwrap();
    for (n, correlation_id) in correlation_ids.into_iter().enumerate() {
        let mut response = conn.recv_frame().expect("a response");
        assert_eq!(
            bytes::Buf::get_i32(&mut response),
            correlation_id,
            "response {n} in order"
        );
    }
    let writes = sample(&http_get(broker.admin_port(), "/metrics").1, writes_metric).unwrap()
        - writes_before;
    assert!(
        (1.0..=(REQUESTS / 2) as f64).contains(&writes),
        "{REQUESTS} responses took {writes} socket writes"
    );
}
