//! Fetch: reads each partition from its owner shard, trims the result to the request's byte
//! limits, and long-polls (parks on the partitions) until `min_bytes` are there or
//! `max_wait_ms` passes. The first batch of the response is always returned whole, even when
//! it is larger than the limits, so that a consumer can always make progress. Each topic
//! needs READ; the partitions of one that is denied answer TOPIC_AUTHORIZATION_FAILED. A
//! partition answered NOT_LEADER_OR_FOLLOWER names the leader this node knows (v12+).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;

use super::brokers::known_leader;
use crate::ids::{Offset, PartitionId};
use crate::limits;
use crate::partition::{FetchInput, FetchOutput, TopicPartition};
use crate::protocol::{FetchPartition, FetchResponseData, FetchTopic};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: FetchRequest) -> FetchResponseData {
    let wait_ms = request.max_wait_ms.clamp(0, limits::FETCH_WAIT_MS_MAX) as u64;
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let max_bytes = (request.max_bytes.max(0) as usize).min(limits::FETCH_RESPONSE_BYTES_MAX);
    let min_bytes = request.min_bytes.max(0) as usize;
    let names = request.topics.iter().map(|t| t.topic.0.as_str());
    let denied = super::topics_denied(ctx, AclOperation::Read, names);
    loop {
        let response = read_once(ctx, &request, max_bytes, &denied).await;
        let (bytes, has_error) = summarize(&response);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if bytes >= min_bytes || has_error || remaining.is_zero() {
            return response;
        }
        // Watch for data past what this read saw, not past the fetch offset: with some data
        // there but less than min_bytes, a watch from the fetch offset wakes at once, and the
        // loop would spin the shard until the deadline (found by scripts/net_fuzz.py).
        let mut seen_ends = response
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|p| Offset(p.high_watermark)));
        let watched = request
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|p| {
                    let tp = TopicPartition {
                        topic: topic.topic.0.to_string(),
                        partition: PartitionId(p.partition),
                    };
                    (tp, Offset(p.fetch_offset))
                })
            })
            .map(|(tp, offset)| (tp, offset.max(seen_ends.next().unwrap_or(offset))))
            .collect();
        ctx.shard.watch(watched, remaining.as_millis() as u64).await;
        // At shutdown a watch returns at once; answer with what there is instead of
        // polling until the deadline.
        if Instant::now() >= deadline || ctx.shard.shutdown.is_raised() {
            return read_once(ctx, &request, max_bytes, &denied).await;
        }
    }
}

/// Reads every requested partition concurrently and assembles the response in request order.
async fn read_once(
    ctx: &RequestContext,
    request: &FetchRequest,
    max_bytes: usize,
    denied: &HashSet<String>,
) -> FetchResponseData {
    let mut reads = Vec::new();
    for topic in &request.topics {
        let allowed = !denied.contains(topic.topic.0.as_str());
        for partition in &topic.partitions {
            let input = FetchInput {
                tp: TopicPartition {
                    topic: topic.topic.0.to_string(),
                    partition: PartitionId(partition.partition),
                },
                offset: Offset(partition.fetch_offset),
                max_bytes: (partition.partition_max_bytes.max(0) as usize).min(max_bytes),
            };
            reads.push(async move {
                match allowed {
                    true => ctx.shard.route(input).await,
                    false => FetchOutput {
                        error_code: ResponseError::TopicAuthorizationFailed.code(),
                        high_watermark: Offset::NONE,
                        log_start_offset: Offset::NONE,
                        records: Vec::new(),
                    },
                }
            });
        }
    }
    let mut outputs = join_all(reads).await.into_iter();
    let mut budget = Budget {
        remaining: max_bytes,
        nothing_yet: true,
    };
    let names_leader = ctx.api_version >= CURRENT_LEADER_VERSION_MIN;
    let topics = request
        .topics
        .iter()
        .map(|topic| FetchTopic {
            name: topic.topic.0.clone(),
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    let output = outputs.next().unwrap_or_default();
                    let mut data = partition_data(p.partition, output, &mut budget);
                    if names_leader && data.error_code == ResponseError::NotLeaderOrFollower.code()
                    {
                        let index = PartitionId(p.partition);
                        data.current_leader = known_leader(ctx, topic.topic.0.as_str(), index)
                            .map(|(leader, epoch)| (leader.get(), epoch.get()));
                    }
                    data
                })
                .collect(),
        })
        .collect();
    FetchResponseData {
        topics,
        ..Default::default()
    }
}

/// The first version whose partitions may name their current leader.
const CURRENT_LEADER_VERSION_MIN: i16 = 12;

/// The response-wide byte budget. The first batch of the response always fits.
struct Budget {
    remaining: usize,
    nothing_yet: bool,
}

fn partition_data(index: i32, output: FetchOutput, budget: &mut Budget) -> FetchPartition {
    let mut records: Vec<Bytes> = Vec::with_capacity(output.records.len());
    for batch in output.records {
        if batch.len() > budget.remaining && !budget.nothing_yet {
            break;
        }
        budget.remaining = budget.remaining.saturating_sub(batch.len());
        budget.nothing_yet = false;
        records.push(batch);
    }
    FetchPartition {
        partition_index: index,
        error_code: output.error_code,
        high_watermark: output.high_watermark.get(),
        last_stable_offset: output.high_watermark.get(),
        log_start_offset: output.log_start_offset.get(),
        records,
        current_leader: None,
    }
}

/// The record bytes a response carries (what a consumer byte-rate quota counts).
pub fn record_bytes(response: &FetchResponseData) -> usize {
    summarize(response).0
}

fn summarize(response: &FetchResponseData) -> (usize, bool) {
    let partitions = response.topics.iter().flat_map(|t| t.partitions.iter());
    partitions.fold((0, false), |(bytes, error), p| {
        let size: usize = p.records.iter().map(Bytes::len).sum();
        (bytes + size, error || p.error_code != 0)
    })
}
