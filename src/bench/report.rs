//! What a benchmark run measured, and how it is shown: per-executor [`Stats`] merged at the end,
//! a human report, the one-line JSON object for scripts, and the progress line.
//!
//! Latencies are in microseconds in hdrhistogram (three significant digits). Each executor
//! fills its own `Stats` (per-executor, never shared); only the progress counters are atomics
//! read by the main thread.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::limits::BENCH_LATENCY_US_MAX;

/// Everything one executor measured inside the measurement window.
pub struct Stats {
    pub produced_messages: u64,
    pub produced_bytes: u64,
    pub consumed_messages: u64,
    pub consumed_bytes: u64,
    /// Produce: acknowledgement time minus send time (closed loop) or intended send time.
    pub produce_latency_us: Histogram<u64>,
    /// Produce: round trip of each request, send to answer, one sample per request. Beside
    /// an open-loop `produce_latency_us` it tells the broker's share from the time messages
    /// waited in the client for a free in-flight slot.
    pub request_latency_us: Histogram<u64>,
    /// Consume: round trip of each Fetch request.
    pub fetch_latency_us: Histogram<u64>,
    /// End to end: consumption time minus the producer's timestamp inside the record.
    pub e2e_latency_us: Histogram<u64>,
    /// Failed requests or partitions, by kind (`kafka_error_<code>`, `io`, `connect`, ...).
    pub errors: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, BENCH_LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            produced_messages: 0,
            produced_bytes: 0,
            consumed_messages: 0,
            consumed_bytes: 0,
            produce_latency_us: histogram(),
            request_latency_us: histogram(),
            fetch_latency_us: histogram(),
            e2e_latency_us: histogram(),
            errors: BTreeMap::new(),
        }
    }

    /// Counts one error of `kind`.
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
    }

    /// Counts one Kafka error code from a response.
    pub fn kafka_error(&mut self, code: i16) {
        self.error(&format!("kafka_error_{code}"));
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        self.produced_messages += other.produced_messages;
        self.produced_bytes += other.produced_bytes;
        self.consumed_messages += other.consumed_messages;
        self.consumed_bytes += other.consumed_bytes;
        // The histograms share bounds, so adding cannot fail.
        let _ = self.produce_latency_us.add(&other.produce_latency_us);
        let _ = self.request_latency_us.add(&other.request_latency_us);
        let _ = self.fetch_latency_us.add(&other.fetch_latency_us);
        let _ = self.e2e_latency_us.add(&other.e2e_latency_us);
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += count;
        }
    }
}

/// Records `value_us` into `histogram`, clamped into its range.
pub fn record_us(histogram: &mut Histogram<u64>, value_us: u64, count: u64) {
    let value_us = value_us.clamp(1, BENCH_LATENCY_US_MAX);
    let _ = histogram.record_n(value_us, count);
}

/// Counters the main thread reads once a second for the progress line.
#[derive(Default)]
pub struct Progress {
    pub produced_messages: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed_messages: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; 5] {
        [
            self.produced_messages.load(Ordering::Relaxed),
            self.produced_bytes.load(Ordering::Relaxed),
            self.consumed_messages.load(Ordering::Relaxed),
            self.consumed_bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

/// How often [`watch`] looks at the counters.
const PROGRESS_PERIOD: Duration = Duration::from_millis(100);

/// Runs on a plain thread until `done` is raised; if `print`, prints one progress line a
/// second.
pub fn watch(progress: &Progress, done: &std::sync::atomic::AtomicBool, print: bool) {
    let ticks_per_second =
        (Duration::from_secs(1).as_millis() / PROGRESS_PERIOD.as_millis()) as u64;
    let mut last = progress.snapshot();
    let mut tick = 0u64;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(PROGRESS_PERIOD);
        if done.load(Ordering::Relaxed) {
            break;
        }
        tick += 1;
        if !print || tick % ticks_per_second != 0 {
            continue;
        }
        let now = progress.snapshot();
        let delta: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        println!(
            "[{:>4}s] produced {:>9} msg/s {:>8.2} MB/s | consumed {:>9} msg/s \
             {:>8.2} MB/s | errors {}",
            tick / ticks_per_second,
            delta[0],
            megabytes(delta[1]),
            delta[2],
            megabytes(delta[3]),
            now[4]
        );
        last = now;
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// Which scenario ran; decides which counters and histogram are the headline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Produce,
    Consume,
    EndToEnd,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Produce => "produce",
            Scenario::Consume => "consume",
            Scenario::EndToEnd => "e2e",
        }
    }
}

/// A finished run: the merged stats, the measured time and the parameters that produced them.
pub struct Report {
    pub scenario: Scenario,
    pub stats: Stats,
    pub duration: Duration,
    pub parameters: Value,
    /// One sentence on what the headline latency means.
    pub latency_meaning: String,
}

impl Report {
    fn headline(&self) -> (u64, u64, &Histogram<u64>) {
        let stats = &self.stats;
        match self.scenario {
            Scenario::Produce => (
                stats.produced_messages,
                stats.produced_bytes,
                &stats.produce_latency_us,
            ),
            Scenario::Consume => (
                stats.consumed_messages,
                stats.consumed_bytes,
                &stats.fetch_latency_us,
            ),
            Scenario::EndToEnd => (
                stats.consumed_messages,
                stats.consumed_bytes,
                &stats.e2e_latency_us,
            ),
        }
    }

    fn rate(&self, count: u64) -> f64 {
        let seconds = self.duration.as_secs_f64();
        if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        }
    }

    /// The report for people, several lines.
    pub fn text(&self) -> String {
        let (messages, bytes, latency) = self.headline();
        let mut text = format!(
            "scenario {}: {messages} messages, {bytes} bytes in {:.3} s\n\
             throughput: {:.0} msg/s, {:.2} MB/s\n",
            self.scenario.name(),
            self.duration.as_secs_f64(),
            self.rate(messages),
            megabytes(self.rate(bytes) as u64),
        );
        if self.scenario == Scenario::EndToEnd {
            text += &format!(
                "produced: {} messages, {:.0} msg/s\n",
                self.stats.produced_messages,
                self.rate(self.stats.produced_messages)
            );
        }
        let p = percentiles(latency);
        text += &format!(
            "latency us ({}; {} samples): p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}\n",
            self.latency_meaning,
            latency.len(),
            p["p50"],
            p["p90"],
            p["p99"],
            p["p999"],
            p["p9999"],
            p["max"]
        );
        text += &format!("errors: {}", self.stats.error_total());
        for (kind, count) in &self.stats.errors {
            text += &format!(" {kind}={count}");
        }
        text
    }

    /// The JSON object for scripts (printed as the last line of standard output).
    pub fn json(&self) -> Value {
        let (messages, bytes, latency) = self.headline();
        json!({
            "scenario": self.scenario.name(),
            "messages": messages,
            "bytes": bytes,
            "duration_s": self.duration.as_secs_f64(),
            "msgs_per_s": self.rate(messages),
            "mb_per_s": self.rate(bytes) / 1_000_000.0,
            "latency_us": percentiles(latency),
            "latency_meaning": self.latency_meaning,
            "latency_samples": latency.len(),
            "produced_messages": self.stats.produced_messages,
            "produced_bytes": self.stats.produced_bytes,
            "consumed_messages": self.stats.consumed_messages,
            "consumed_bytes": self.stats.consumed_bytes,
            "produce_latency_us": percentiles(&self.stats.produce_latency_us),
            "produce_request_latency_us": percentiles(&self.stats.request_latency_us),
            "fetch_latency_us": percentiles(&self.stats.fetch_latency_us),
            "errors": self.stats.error_total(),
            "errors_by_kind": self.stats.errors,
            "parameters": self.parameters,
        })
    }
}

/// p50..p99.99 and max of `histogram`, all zero when it is empty.
fn percentiles(histogram: &Histogram<u64>) -> Value {
    let at = |quantile: f64| {
        if histogram.is_empty() {
            0
        } else {
            histogram.value_at_quantile(quantile)
        }
    };
    json!({
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "p999": at(0.999),
        "p9999": at(0.9999),
        "max": if histogram.is_empty() { 0 } else { histogram.max() },
    })
}
