//! Broker metrics: per-shard counters and latency histograms, and their Prometheus text form.
//!
//! Per-shard: each shard counts into its own `ShardMetrics` (plain `Cell`s, no atomics, no
//! locks). `/metrics` asks every shard for a `MetricsSnapshot` over the shard mesh and adds
//! them up, so the hot path never synchronises with another core.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets; the last bucket is +Inf.
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// A latency histogram with fixed buckets, cheap to record into and to add up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `buckets[i]` counts observations <= `LATENCY_BUCKETS_SECONDS[i]` and above the previous
    /// bound; the extra last bucket counts everything larger.
    pub buckets: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn record(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[index] += 1;
        self.count += 1;
        self.sum_seconds += seconds;
    }

    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

/// One shard's counters. Per-shard: lives on its shard only.
#[derive(Default)]
pub struct ShardMetrics {
    requests: RefCell<BTreeMap<i16, Histogram>>,
    pub bytes_received: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    /// Socket writes of responses (several responses share one when they are ready together).
    pub socket_writes: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub connections_open: Cell<u64>,
    pub connections_refused: Cell<u64>,
    pub connections_throttled: Cell<u64>,
    pub connections_idle_closed: Cell<u64>,
    /// Failed TLS handshakes and SASL authentications, and connections that did not finish
    /// them in time.
    pub authentication_failures: Cell<u64>,
    pub authentications: Cell<u64>,
    /// Time PLAIN password checks (key derivations) took, in microseconds.
    pub password_check_micros: Cell<u64>,
    /// Responses that made their connection wait for a client quota.
    pub quota_throttled_responses: Cell<u64>,
    flushes: RefCell<Histogram>,
    pub flush_errors: Cell<u64>,
    cross_shard_sent: RefCell<Vec<u64>>,
}

impl ShardMetrics {
    pub fn new(shards: usize) -> ShardMetrics {
        let metrics = ShardMetrics::default();
        *metrics.cross_shard_sent.borrow_mut() = vec![0; shards];
        metrics
    }

    pub fn request_done(&self, api_key: i16, elapsed: Duration) {
        self.requests
            .borrow_mut()
            .entry(api_key)
            .or_default()
            .record(elapsed);
    }

    pub fn flush_done(&self, elapsed: Duration, ok: bool) {
        self.flushes.borrow_mut().record(elapsed);
        if !ok {
            add(&self.flush_errors, 1);
        }
    }

    pub fn sent_to_shard(&self, shard: usize) {
        if let Some(count) = self.cross_shard_sent.borrow_mut().get_mut(shard) {
            *count += 1;
        }
    }

    /// A copy of the counters to send to the shard that renders `/metrics`.
    pub fn snapshot(&self, shard: usize) -> MetricsSnapshot {
        MetricsSnapshot {
            shard,
            requests: self.requests.borrow().clone(),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            socket_writes: self.socket_writes.get(),
            connections_accepted: self.connections_accepted.get(),
            connections_open: self.connections_open.get(),
            connections_refused: self.connections_refused.get(),
            connections_throttled: self.connections_throttled.get(),
            connections_idle_closed: self.connections_idle_closed.get(),
            authentication_failures: self.authentication_failures.get(),
            authentications: self.authentications.get(),
            password_check_micros: self.password_check_micros.get(),
            quota_throttled_responses: self.quota_throttled_responses.get(),
            flushes: self.flushes.borrow().clone(),
            flush_errors: self.flush_errors.get(),
            cross_shard_sent: self.cross_shard_sent.borrow().clone(),
            ..Default::default()
        }
    }
}

/// Adds to a counter cell.
pub fn add(cell: &Cell<u64>, amount: u64) {
    cell.set(cell.get().wrapping_add(amount));
}

/// Counters of one partition, kept by its owner shard.
#[derive(Default)]
pub struct PartitionMetrics {
    pub produced_bytes: Cell<u64>,
    pub produced_records: Cell<u64>,
    pub fetched_bytes: Cell<u64>,
    /// Produced batches recompressed into the topic's `compression.type`.
    pub recompressed_batches: Cell<u64>,
    /// Compaction (`partition::cleaner`): bytes its passes read and wrote, the dirty share of
    /// the cleanable range as last computed, and when the last pass ended (ms, 0: never).
    pub cleaner_bytes_read: Cell<u64>,
    pub cleaner_bytes_written: Cell<u64>,
    pub dirty_ratio: Cell<f64>,
    pub cleaner_last_pass_ms: Cell<i64>,
}

/// One partition's counters and state at snapshot time.
#[derive(Debug, Clone, Default)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub produced_bytes: u64,
    pub produced_records: u64,
    pub fetched_bytes: u64,
    pub recompressed_batches: u64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub size_bytes: u64,
    pub cleaner_bytes_read: u64,
    pub cleaner_bytes_written: u64,
    pub dirty_ratio: f64,
    pub cleaner_last_pass_ms: i64,
}

/// Everything one shard reports; `Send`, so it can cross the mesh.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub shard: usize,
    pub requests: BTreeMap<i16, Histogram>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub socket_writes: u64,
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub connections_refused: u64,
    pub connections_throttled: u64,
    pub connections_idle_closed: u64,
    pub authentication_failures: u64,
    pub authentications: u64,
    pub password_check_micros: u64,
    pub quota_throttled_responses: u64,
    pub flushes: Histogram,
    /// Every fdatasync of a log file: flushes, pre-writing, segment rolls.
    pub syncs: Histogram,
    /// What each flush waited for its log's io lock before writing.
    pub flush_lock_waits: Histogram,
    pub flush_errors: u64,
    pub cross_shard_sent: Vec<u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub read_ahead_hits: u64,
    pub read_ahead_misses: u64,
    pub read_ahead_bytes: u64,
    pub read_ahead_held_bytes: u64,
    /// The node-to-node transport (a cluster node only): payloads, frames and bytes sent,
    /// payloads received and dropped.
    pub cluster_payloads_sent: u64,
    pub cluster_frames_sent: u64,
    pub cluster_bytes_sent: u64,
    pub cluster_payloads_received: u64,
    pub cluster_payloads_dropped: u64,
    pub partitions: Vec<PartitionSnapshot>,
}

/// A metric family rendered from a field: name, type, help text, and how to read the value.
type Family<S, V> = (&'static str, &'static str, &'static str, fn(&S) -> V);

/// A per-shard histogram family: name, help text, and which histogram of the snapshot.
type HistogramFamily = (
    &'static str,
    &'static str,
    fn(&MetricsSnapshot) -> &Histogram,
);

/// Renders the snapshots of all shards as Prometheus text (format 0.0.4).
pub fn render(snapshots: &[MetricsSnapshot]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    render_requests(&mut out, snapshots);
    let per_shard: [Family<MetricsSnapshot, u64>; 25] = [
        (
            "corelog_network_received_bytes_total",
            "counter",
            "Request bytes read",
            |s| s.bytes_received,
        ),
        (
            "corelog_network_sent_bytes_total",
            "counter",
            "Response bytes written",
            |s| s.bytes_sent,
        ),
        (
            "corelog_network_writes_total",
            "counter",
            "Socket writes of responses; responses ready together share one",
            |s| s.socket_writes,
        ),
        (
            "corelog_connections_accepted_total",
            "counter",
            "Connections accepted",
            |s| s.connections_accepted,
        ),
        (
            "corelog_connections_open",
            "gauge",
            "Connections open now",
            |s| s.connections_open,
        ),
        (
            "corelog_connections_refused_total",
            "counter",
            "Connections closed at accept: max.connections or max.connections.per.ip reached",
            |s| s.connections_refused,
        ),
        (
            "corelog_connections_throttled_total",
            "counter",
            "Connections held unread and closed at accept: their client IP fails authentication \
             too often",
            |s| s.connections_throttled,
        ),
        (
            "corelog_connections_idle_closed_total",
            "counter",
            "Connections closed after connections.max.idle.ms without activity",
            |s| s.connections_idle_closed,
        ),
        (
            "corelog_authentications_total",
            "counter",
            "Successful SASL authentications (re-authentications included)",
            |s| s.authentications,
        ),
        (
            "corelog_password_check_microseconds_total",
            "counter",
            "Time PLAIN password checks (key derivations) took, within \
             PASSWORD_CHECK_SHARE_PERCENT of the shard's core",
            |s| s.password_check_micros,
        ),
        (
            "corelog_authentication_failures_total",
            "counter",
            "Failed TLS handshakes and SASL authentications, and connections closed before \
             finishing them in time",
            |s| s.authentication_failures,
        ),
        (
            "corelog_quota_throttled_responses_total",
            "counter",
            "Responses after which the connection waited for a client quota",
            |s| s.quota_throttled_responses,
        ),
        (
            "corelog_cluster_payloads_sent_total",
            "counter",
            "Payloads (Raft messages, copies, controller calls) sent to other nodes",
            |s| s.cluster_payloads_sent,
        ),
        (
            "corelog_cluster_frames_sent_total",
            "counter",
            "Frames written to other nodes; payloads queued together share one",
            |s| s.cluster_frames_sent,
        ),
        (
            "corelog_cluster_sent_bytes_total",
            "counter",
            "Bytes written to other nodes",
            |s| s.cluster_bytes_sent,
        ),
        (
            "corelog_cluster_payloads_received_total",
            "counter",
            "Payloads received from other nodes",
            |s| s.cluster_payloads_received,
        ),
        (
            "corelog_cluster_payloads_dropped_total",
            "counter",
            "Payloads to other nodes dropped: a full link queue, an unreachable node",
            |s| s.cluster_payloads_dropped,
        ),
        (
            "corelog_flush_errors_total",
            "counter",
            "Failed writes or syncs",
            |s| s.flush_errors,
        ),
        (
            "corelog_batch_cache_hits_total",
            "counter",
            "Reads served by the batch cache",
            |s| s.cache_hits,
        ),
        (
            "corelog_batch_cache_misses_total",
            "counter",
            "Reads not found in the batch cache (served by read-ahead or from disk)",
            |s| s.cache_misses,
        ),
        (
            "corelog_batch_cache_bytes",
            "gauge",
            "Bytes held by the batch cache: its batches and a fixed cost per batch",
            |s| s.cache_bytes,
        ),
        (
            "corelog_read_ahead_hits_total",
            "counter",
            "Reads served by chunks read ahead of sequential readers",
            |s| s.read_ahead_hits,
        ),
        (
            "corelog_read_ahead_misses_total",
            "counter",
            "Reads that missed the batch cache and the read-ahead and went to disk",
            |s| s.read_ahead_misses,
        ),
        (
            "corelog_read_ahead_bytes_total",
            "counter",
            "Bytes read from disk ahead of sequential readers",
            |s| s.read_ahead_bytes,
        ),
        (
            "corelog_read_ahead_held_bytes",
            "gauge",
            "Bytes of read-ahead chunks held or being read",
            |s| s.read_ahead_held_bytes,
        ),
    ];
    for (name, kind, help, value) in per_shard {
        header(&mut out, name, kind, help);
        for s in snapshots {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
        }
    }
    let per_shard_histograms: [HistogramFamily; 3] = [
        (
            "corelog_flush_seconds",
            "Write plus fdatasync of one log",
            |s| &s.flushes,
        ),
        (
            "corelog_fsync_seconds",
            "One fdatasync of a log file (flushes, pre-writing, segment rolls)",
            |s| &s.syncs,
        ),
        (
            "corelog_flush_lock_wait_seconds",
            "Part of a flush spent waiting for its log's io lock (pre-writing, rolls, retention)",
            |s| &s.flush_lock_waits,
        ),
    ];
    for (name, help, value) in per_shard_histograms {
        header(&mut out, name, "histogram", help);
        for s in snapshots {
            histogram(&mut out, name, &format!("shard=\"{}\"", s.shard), value(s));
        }
    }
    header(
        &mut out,
        "corelog_cross_shard_messages_total",
        "counter",
        "Messages sent to a shard",
    );
    for s in snapshots {
        for (to, count) in s
            .cross_shard_sent
            .iter()
            .enumerate()
            .filter(|(to, _)| *to != s.shard)
        {
            let _ = writeln!(
                out,
                "corelog_cross_shard_messages_total{{from=\"{}\",to=\"{to}\"}} {count}",
                s.shard
            );
        }
    }
    render_partitions(&mut out, snapshots);
    out
}

fn render_requests(out: &mut String, snapshots: &[MetricsSnapshot]) {
    let mut total: BTreeMap<i16, Histogram> = BTreeMap::new();
    for s in snapshots {
        for (api, h) in &s.requests {
            total.entry(*api).or_default().add(h);
        }
    }
    header(
        out,
        "corelog_requests_total",
        "counter",
        "Requests handled, by API",
    );
    for (api, h) in &total {
        let _ = writeln!(
            out,
            "corelog_requests_total{{api=\"{}\"}} {}",
            api_name(*api),
            h.count
        );
    }
    header(
        out,
        "corelog_request_seconds",
        "histogram",
        "Request handling time, by API",
    );
    for (api, h) in &total {
        histogram(
            out,
            "corelog_request_seconds",
            &format!("api=\"{}\"", api_name(*api)),
            h,
        );
    }
}

fn render_partitions(out: &mut String, snapshots: &[MetricsSnapshot]) {
    let rows: [Family<PartitionSnapshot, String>; 11] = [
        (
            "corelog_partition_produced_bytes_total",
            "counter",
            "Bytes appended",
            |p| p.produced_bytes.to_string(),
        ),
        (
            "corelog_partition_produced_records_total",
            "counter",
            "Records appended",
            |p| p.produced_records.to_string(),
        ),
        (
            "corelog_partition_fetched_bytes_total",
            "counter",
            "Bytes returned to fetches",
            |p| p.fetched_bytes.to_string(),
        ),
        (
            "corelog_partition_recompressed_batches_total",
            "counter",
            "Produced batches recompressed into the topic's compression.type",
            |p| p.recompressed_batches.to_string(),
        ),
        (
            "corelog_partition_high_watermark",
            "gauge",
            "Offset below which all is durable",
            |p| p.high_watermark.to_string(),
        ),
        (
            "corelog_partition_log_start_offset",
            "gauge",
            "First offset still kept",
            |p| p.log_start_offset.to_string(),
        ),
        (
            "corelog_partition_size_bytes",
            "gauge",
            "Bytes on disk",
            |p| p.size_bytes.to_string(),
        ),
        (
            "corelog_partition_cleaner_bytes_read_total",
            "counter",
            "Bytes compaction passes read",
            |p| p.cleaner_bytes_read.to_string(),
        ),
        (
            "corelog_partition_cleaner_bytes_written_total",
            "counter",
            "Bytes compaction passes wrote",
            |p| p.cleaner_bytes_written.to_string(),
        ),
        (
            "corelog_partition_dirty_ratio",
            "gauge",
            "Share of the compactable bytes not yet compacted",
            |p| p.dirty_ratio.to_string(),
        ),
        (
            "corelog_partition_cleaner_last_pass_timestamp_seconds",
            "gauge",
            "When the last compaction pass ended (0: never)",
            |p| (p.cleaner_last_pass_ms as f64 / 1000.0).to_string(),
        ),
    ];
    for (name, kind, help, value) in rows {
        header(out, name, kind, help);
        for s in snapshots {
            for p in &s.partitions {
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{}\",shard=\"{}\"}} {}",
                    p.topic,
                    p.partition,
                    s.shard,
                    value(p)
                );
            }
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(h.buckets.iter()) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// The API's name as Kafka spells it (`Produce`, `Fetch`, ...), or its number.
fn api_name(api_key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}"),
        Err(_) => api_key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observations land in the first bucket whose bound holds them; buckets render
    /// cumulatively and end with +Inf equal to the count.
    #[test]
    fn histogram_buckets_and_rendering() {
        let mut h = Histogram::default();
        h.record(Duration::from_micros(30));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(10));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[6], 1);
        assert_eq!(h.buckets[LATENCY_BUCKETS_SECONDS.len()], 1);
        let mut out = String::new();
        histogram(&mut out, "x", "a=\"b\"", &h);
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3"));
        assert!(out.contains("x_count{a=\"b\"} 3"));
    }

    /// Requests from several shards add up per API.
    #[test]
    fn requests_are_summed_across_shards() {
        let a = ShardMetrics::new(2);
        let b = ShardMetrics::new(2);
        a.request_done(0, Duration::from_micros(100));
        b.request_done(0, Duration::from_micros(100));
        let text = render(&[a.snapshot(0), b.snapshot(1)]);
        assert!(
            text.contains("corelog_requests_total{api=\"Produce\"} 2"),
            "{text}"
        );
    }
}
