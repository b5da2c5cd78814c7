//! The `consume` scenario, and the consumer half of `e2e`: one task per consumer connection,
//! fetching its share of the partitions (partition p goes to consumer p mod `--consumers`) one
//! Fetch at a time, as fast as the broker answers.
//!
//! Records are counted from batch headers without decoding them; consumed bytes are the
//! record-batch bytes as fetched. Only `e2e` decodes records, to read the producer's timestamp.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::e2e;
use super::produce::sleep_until;
use super::report::{record_us, Progress, Scenario, Stats};
use super::Shared;
use crate::client::admin::topic_name;
use crate::client::security::ClientStream;
use crate::client::Connection;
use crate::limits::{BENCH_FETCH_BYTES_MAX, BENCH_FETCH_PARTITION_BYTES_MAX};
use crate::protocol::record_batch;
use crate::runtime;

/// Longest a Fetch parks on the broker when there is nothing new.
const FETCH_WAIT_MS: i32 = 100;
/// Pause after a Fetch that brought only errors, so that a failing partition is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Runs one consumer until the end of the run.
pub async fn consumer(shared: Arc<Shared>, index: usize, stats: Rc<RefCell<Stats>>) {
    let consumers = shared.options.consumers;
    let mut positions: Vec<(i32, i64)> = (0..shared.partitions)
        .filter(|partition| *partition as usize % consumers == index)
        .map(|partition| {
            let start = shared.start_offsets.get(partition as usize).copied();
            (partition, start.unwrap_or(0))
        })
        .collect();
    if positions.is_empty() {
        return;
    }
    let clock = shared.clock();
    while Instant::now() < clock.end && !caught_up(&shared, &positions) {
        let mut connection = match shared.connect().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!("consumer {index}: connect: {error:#}");
                count_error(&shared, &stats, "connect");
                runtime::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        sleep_until(clock.start).await;
        if let Err(error) = fetch_loop(&shared, &mut connection, &mut positions, &stats).await {
            tracing::debug!("consumer {index}: connection failed: {error}");
            count_error(&shared, &stats, "io");
            runtime::sleep(RECONNECT_PAUSE).await;
        }
    }
}

/// `consume` only: whether every position reached the end offset its partition had at start.
fn caught_up(shared: &Shared, positions: &[(i32, i64)]) -> bool {
    shared.scenario == Scenario::Consume
        && positions.iter().all(|&(partition, offset)| {
            shared
                .end_offsets
                .get(partition as usize)
                .is_some_and(|&end| offset >= end)
        })
}

fn count_error(shared: &Shared, stats: &RefCell<Stats>, kind: &str) {
    stats.borrow_mut().error(kind);
    Progress::add(&shared.progress.errors, 1);
}

async fn fetch_loop(
    shared: &Shared,
    connection: &mut Connection<ClientStream>,
    positions: &mut [(i32, i64)],
    stats: &RefCell<Stats>,
) -> io::Result<()> {
    let clock = shared.clock();
    while Instant::now() < clock.end && !caught_up(shared, positions) {
        let request = fetch_request(&shared.options.topic, positions);
        let sent_at = Instant::now();
        let response: FetchResponse = connection.request(&request, shared.versions.fetch).await?;
        let now = Instant::now();
        let measuring = clock.measuring(now);
        let (received, errors) = {
            let mut stats = stats.borrow_mut();
            if measuring {
                let latency_us = now.duration_since(sent_at).as_micros() as u64;
                record_us(&mut stats.fetch_latency_us, latency_us, 1);
            }
            account_response(shared, &response, positions, measuring, &mut stats)
        };
        if errors > 0 && received == 0 {
            runtime::sleep(ERROR_PAUSE).await;
        }
    }
    Ok(())
}

fn fetch_request(topic: &str, positions: &[(i32, i64)]) -> FetchRequest {
    let partitions = positions
        .iter()
        .map(|&(partition, offset)| {
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(BENCH_FETCH_PARTITION_BYTES_MAX)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(BENCH_FETCH_BYTES_MAX)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions)])
}

/// Advances the positions past what `response` carries and counts it; returns (records
/// received, errors).
fn account_response(
    shared: &Shared,
    response: &FetchResponse,
    positions: &mut [(i32, i64)],
    measuring: bool,
    stats: &mut Stats,
) -> (u64, u64) {
    let mut errors = 0u64;
    if response.error_code != 0 {
        stats.kafka_error(response.error_code);
        errors += 1;
    }
    let mut received = 0u64;
    let answered = response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions);
    for partition in answered {
        if partition.error_code != 0 {
            stats.kafka_error(partition.error_code);
            errors += 1;
            continue;
        }
        let Some(position) = positions
            .iter_mut()
            .find(|(index, _)| *index == partition.partition_index)
        else {
            continue;
        };
        let Some(records) = partition.records.as_ref() else {
            continue;
        };
        let (messages, bytes) = account_records(shared, records, &mut position.1, measuring, stats);
        received += messages;
        if measuring {
            stats.consumed_messages += messages;
            stats.consumed_bytes += bytes;
            Progress::add(&shared.progress.consumed_messages, messages);
            Progress::add(&shared.progress.consumed_bytes, bytes);
        }
    }
    Progress::add(&shared.progress.errors, errors);
    (received, errors)
}

/// Counts the records at or after `*next` in the whole batches of `records` and moves `*next`
/// past them; in `e2e` also records each one's latency. Returns (records, batch bytes).
fn account_records(
    shared: &Shared,
    records: &Bytes,
    next: &mut i64,
    measuring: bool,
    stats: &mut Stats,
) -> (u64, u64) {
    let (mut messages, mut bytes) = (0u64, 0u64);
    // A trailing partial batch (brokers may cut one at max_bytes) ends the walk.
    for (start, length) in record_batch::batches(records).map_while(Result::ok) {
        let Some(header) = record_batch::header(&records[start..]) else {
            break;
        };
        let base = header.base_offset.get();
        let last = base + i64::from(header.last_offset_delta.get());
        if last < *next {
            continue;
        }
        messages += (last - base.max(*next) + 1) as u64;
        bytes += length as u64;
        if shared.scenario == Scenario::EndToEnd && measuring {
            let batch = records.slice(start..start + length);
            e2e::record_latencies(batch, *next, &mut stats.e2e_latency_us);
        }
        *next = last + 1;
    }
    (messages, bytes)
}
