//! Pre-written space is a per-shard budget spent on hot partitions: thousands of partitions
//! with one message each cost the disk their data, not megabytes of zeros each, and the
//! zeros come back when the broker shuts down.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use corelog::limits::PREWRITE_BYTES_PER_SHARD_MAX;
use kafka_protocol::messages::{produce_request, ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;

const SHARDS: u32 = 2;
/// Topics of partitions that take one message each: 4,000 cold partitions.
const COLD_TOPICS: usize = 4;
const COLD_PARTITIONS_PER_TOPIC: i32 = 1_000;
/// Partitions that take `HOT_BYTES` each, in `HOT_BATCHES` batches: hot, and together they
/// want more zeros (40 x 8 MiB) than the two shards' budgets allow (2 x 128 MiB).
const HOT_PARTITIONS: i32 = 40;
const HOT_BATCHES: usize = 8;
const HOT_VALUE_BYTES: usize = 128 * 1024;

/// Disk bytes a written partition may take besides its records: the rest of its last block,
/// and after a close its index, time index and producer snapshot files (a block each).
const PER_PARTITION_OVERHEAD_BYTES: u64 = 4 * 4096;
/// Disk bytes allowed besides the partitions' own: the metadata log and what the file system
/// allocates for directories as they fill.
const SLACK_BYTES: u64 = 16 * 1024 * 1024;
/// How long pre-writing gets to finish before the disk is measured, and how long the disk
/// use must stay the same to count as finished.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const SETTLED_AFTER: Duration = Duration::from_secs(2);

/// Bytes allocated under `path` (st_blocks * 512, what `du` counts).
fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return 0; // removed meanwhile
    };
    let mut total = metadata.blocks() * 512;
    if metadata.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                total += disk_bytes(&entry.path());
            }
        }
    }
    total
}

/// One Produce request (acks=all, v9) with one batch for each of `partitions` of `topic`;
/// asserts every partition succeeded. Returns the bytes of the batches.
fn produce_many(conn: &mut RawConn, topic: &str, partitions: &[i32], value: &[u8]) -> u64 {
    let batch = record_batch(&[value], 1_000, Compression::None);
    let partition_data = partitions
        .iter()
        .map(|&index| {
            produce_request::PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(batch.clone()))
        })
        .collect();
    let topic_data = produce_request::TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(partition_data);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![topic_data]);
    let response: ProduceResponse = conn.request(&request, 9);
    for partition in &response.responses[0].partition_responses {
        assert_eq!(partition.error_code, 0, "{topic}-{}", partition.index);
    }
    (batch.len() * partitions.len()) as u64
}

fn create_topics(broker: &Broker) {
    for index in 0..COLD_TOPICS {
        let topic = format!("cold-{index}");
        create_topic(broker.port, &topic, COLD_PARTITIONS_PER_TOPIC);
    }
    create_topic(broker.port, "hot", HOT_PARTITIONS);
}

/// One message into every cold partition, `HOT_BATCHES` large ones into every hot one;
/// returns the record bytes produced.
fn produce(broker: &Broker) -> u64 {
    let mut conn = RawConn::connect_with_timeout(broker.port, Duration::from_secs(120)).unwrap();
    let mut produced = 0;
    let cold: Vec<i32> = (0..COLD_PARTITIONS_PER_TOPIC).collect();
    for index in 0..COLD_TOPICS {
        produced += produce_many(&mut conn, &format!("cold-{index}"), &cold, b"one message");
    }
    let hot: Vec<i32> = (0..HOT_PARTITIONS).collect();
    let value = vec![b'h'; HOT_VALUE_BYTES];
    for _ in 0..HOT_BATCHES {
        produced += produce_many(&mut conn, "hot", &hot, &value);
    }
    produced
}

/// Waits until the disk use under `dir` stops changing (pre-writing done), failing as soon
/// as it passes `bound`. Returns it.
fn settled_disk_bytes(broker: &Broker, bound: u64) -> u64 {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = (disk_bytes(&broker.data_dir()), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = disk_bytes(&broker.data_dir());
        if now > bound {
            broker.fail(&format!(
                "{now} bytes on disk, more than the {bound} allowed (data plus the budget)"
            ));
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= SETTLED_AFTER {
            return now;
        }
        if Instant::now() > deadline {
            return now;
        }
    }
}

/// 4,000 partitions with one message each and 40 hot ones, two shards: the disk holds the
/// data plus at most the shards' pre-writing budget (the hot partitions do get pre-written
/// space, the cold ones none), and after a clean shutdown only the data is left.
#[test]
fn pre_written_bytes_stay_within_the_shard_budget() {
    let started = Instant::now();
    let mut broker = Broker::start(SHARDS, &[]);
    create_topics(&broker);
    let before = disk_bytes(&broker.data_dir());
    let produced = produce(&broker);
    let written_partitions =
        (COLD_TOPICS as u64) * COLD_PARTITIONS_PER_TOPIC as u64 + HOT_PARTITIONS as u64 + 16; // __consumer_offsets, in case a shard writes to it
    let data = produced + written_partitions * PER_PARTITION_OVERHEAD_BYTES + SLACK_BYTES;
    let budget = u64::from(SHARDS) * PREWRITE_BYTES_PER_SHARD_MAX;
    let loaded = settled_disk_bytes(&broker, before + data + budget) - before;
    println!(
        "after {:?}: {loaded} bytes more on disk for {produced} bytes of records \
         (bound {} data + {budget} budget)",
        started.elapsed(),
        data
    );
    assert!(
        loaded >= produced + PREWRITE_BYTES_PER_SHARD_MAX / 2,
        "the hot partitions were pre-written: {loaded} bytes for {produced} of records"
    );
    for partition in [0, 499, 999] {
        let segment = first_segment(&broker.partition_dir("cold-0", partition));
        let bytes = std::fs::metadata(&segment).unwrap().len();
        assert!(bytes <= 4096, "{} holds {bytes} bytes", segment.display());
    }
    broker.stop();
    let stopped = disk_bytes(&broker.data_dir()) - before;
    println!("after a clean shutdown: {stopped} bytes more on disk");
    assert!(
        stopped <= data,
        "{stopped} bytes left after the shutdown, more than {data}"
    );
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    for (topic, partition, batches) in [("cold-3", 999, 1), ("hot", 39, HOT_BATCHES)] {
        let request = fetch_request(topic, partition, 0, 0, 1, 8 << 20);
        let response = conn.request(&request, 12);
        let data = single_partition(&response);
        assert_eq!(data.high_watermark, batches as i64, "{topic}-{partition}");
    }
    broker.stop();
}
