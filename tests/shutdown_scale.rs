//! A clean shutdown stays fast with many partitions: SIGTERM to a broker holding 10,000
//! partitions, a few of them written, ends in seconds with exit status 0, and everything
//! acknowledged is there after a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::records::Compression;

/// Topics and partitions per topic: 10,000 partitions in all.
const TOPICS: usize = 10;
const PARTITIONS_PER_TOPIC: i32 = 1_000;
/// Topics created per CreateTopics request.
const TOPICS_PER_REQUEST: usize = 2;
/// Partitions of each topic that take one batch (200 written partitions in all, about 100
/// on each shard): enough that a shutdown which closes them one after another, each with
/// its five syncs, shows.
const WRITTEN_PER_TOPIC: i32 = 20;

/// Longest a SIGTERM may take to end the broker. Measured here: 0.24 s (0.12 s with none
/// written), against 24 s before closes ran concurrently and idle logs skipped their syncs
/// (58 s in the report), and 1.4-2.2 s while every written partition still trimmed
/// 8 MiB of pre-written zeros at close. The rest of the bound is room for a loaded 2-core CI
/// machine where other builds compete for the CPU and the disk.
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(15);

/// Response timeout of the CreateTopics connection: a request opens 2,000 logs.
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

const FETCH_VERSION: i16 = 12;

fn topic(index: usize) -> String {
    format!("scale-{index}")
}

fn value(topic: &str, partition: i32) -> Vec<u8> {
    format!("{topic}/{partition}").into_bytes()
}

/// Creates every topic, `TOPICS_PER_REQUEST` at a time.
fn create_topics(broker: &Broker) {
    let mut conn = RawConn::connect_with_timeout(broker.port, CREATE_TIMEOUT).expect("connect");
    for first in (0..TOPICS).step_by(TOPICS_PER_REQUEST) {
        let topics = (first..first + TOPICS_PER_REQUEST)
            .map(|index| {
                CreatableTopic::default()
                    .with_name(topic_name(&topic(index)))
                    .with_num_partitions(PARTITIONS_PER_TOPIC)
                    .with_replication_factor(1)
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(CREATE_TIMEOUT.as_millis() as i32);
        for result in conn.request(&request, 5).topics {
            assert_eq!(result.error_code, 0, "{:?}", result.error_message);
        }
    }
}

/// One batch of one record into the first `WRITTEN_PER_TOPIC` partitions of every topic.
fn produce_some(broker: &Broker) {
    let mut conn = RawConn::connect(broker.port);
    for index in 0..TOPICS {
        let topic = topic(index);
        for partition in 0..WRITTEN_PER_TOPIC {
            let records = record_batch(&[&value(&topic, partition)], 1_000, Compression::None);
            assert_eq!(produce(&mut conn, &topic, partition, records), (0, 0));
        }
    }
}

/// Every written partition holds its one record at offset 0.
fn check_produced(broker: &Broker) {
    let mut conn = RawConn::connect(broker.port);
    for index in 0..TOPICS {
        let topic = topic(index);
        for partition in 0..WRITTEN_PER_TOPIC {
            let request = fetch_request(&topic, partition, 0, 0, 1, 1 << 20);
            let response = conn.request(&request, FETCH_VERSION);
            let data = single_partition(&response);
            assert_eq!(data.error_code, 0, "{topic}-{partition}");
            assert_eq!(data.high_watermark, 1, "{topic}-{partition}");
            let records = data.records.clone().expect("records");
            let (batches, _) = parse_batches(&records);
            assert_eq!(batches.len(), 1, "{topic}-{partition}");
            assert_eq!(batches[0].base_offset, 0);
            let wanted = value(&topic, partition);
            assert!(
                records.windows(wanted.len()).any(|w| w == wanted),
                "{topic}-{partition} holds its value"
            );
        }
    }
}

/// SIGTERM with 10,000 partitions (200 written) exits 0 within `SHUTDOWN_WITHIN`, and the
/// written records are all there after a restart. Default shard count (two).
#[test]
fn shutdown_with_ten_thousand_partitions_is_fast() {
    let mut broker = Broker::start(2, &[]);
    let started = Instant::now();
    create_topics(&broker);
    let created_in = started.elapsed();
    produce_some(&broker);
    let signalled = Instant::now();
    let status = broker.terminate();
    let stopped_in = signalled.elapsed();
    println!(
        "{} partitions created in {created_in:?}; SIGTERM to exit took {stopped_in:?}",
        TOPICS as i32 * PARTITIONS_PER_TOPIC
    );
    if status.code() != Some(0) {
        broker.fail(&format!("broker exited with {status} after SIGTERM"));
    }
    if stopped_in > SHUTDOWN_WITHIN {
        broker.fail(&format!(
            "SIGTERM to exit took {stopped_in:?}, more than {SHUTDOWN_WITHIN:?}"
        ));
    }
    let restarting = Instant::now();
    broker.restart();
    println!("restart took {:?}", restarting.elapsed());
    check_produced(&broker);
    broker.stop();
}
