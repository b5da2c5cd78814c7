//! The `e2e` scenario: producers (`produce.rs`) and consumers (`consume.rs`) run at once on the
//! same topic, consumers starting at the latest offsets. A record's end-to-end latency is the
//! consumer's wall clock when the record arrives minus the time the producer wrote into the
//! record's first 8 value bytes (its intended send time in open loop, so the figure is corrected
//! for coordinated omission). Producer and consumer share this machine's clock, so no clock
//! skew enters the figure.

use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::records::RecordBatchDecoder;

use super::report::record_us;
use super::wall_clock_us;

/// Records the latency of every record of `batch` at or after offset `from`. A batch that
/// does not decode, or a value shorter than the timestamp, is skipped: other brokers' or
/// other producers' data on the topic must not stop the run.
pub fn record_latencies(mut batch: Bytes, from: i64, histogram: &mut Histogram<u64>) {
    let Ok(set) = RecordBatchDecoder::decode(&mut batch) else {
        return;
    };
    let now_us = wall_clock_us();
    for record in set.records.iter().filter(|record| record.offset >= from) {
        let Some(value) = record.value.as_ref() else {
            continue;
        };
        let Some(stamp) = value.get(..8) else {
            continue;
        };
        let sent_us = u64::from_be_bytes(stamp.try_into().expect("eight bytes"));
        record_us(histogram, now_us.saturating_sub(sent_us), 1);
    }
}
