//! Fetch: reads each partition from its owner shard, trims the result to the request's byte
//! limits, and long-polls (parks on the partitions) until `min_bytes` are there or
//! `max_wait_ms` passes. The first batch of the response is always returned whole, even when
//! it is larger than the limits, so that a consumer can always make progress. Each topic
//! needs READ; the partitions of one that is denied answer TOPIC_AUTHORIZATION_FAILED. A
//! partition answered NOT_LEADER_OR_FOLLOWER names the leader this node knows (v12+), and
//! the response those leaders' endpoints (v16+, KIP-951). From v13 topics are named by id
//! (KIP-516); an id this node does not know is UNKNOWN_TOPIC_ID. Fetch sessions are not
//! kept (every answer has session id 0), so forgotten topics need nothing.
//!
//! Fetch from the closest replica (KIP-392, v11+): a follower of a replicated partition
//! serves a consumer up to the commit point it knows; with
//! `--replica-selector-class ...RackAwareReplicaSelector`, the leader answers a consumer that
//! names its rack (client.rack), when the leader is in another rack, with no records and
//! an in-sync replica of that rack as the preferred read replica, where the client then
//! fetches.
//!
//! A partition whose current leader epoch the consumer names (v9+, KIP-320) is answered
//! FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH when this replica is in another epoch (see
//! `partition::leader_epoch_fence`), never with another epoch's offsets.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::fetch_request::FetchTopic as FetchTopicRequest;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;

use super::brokers::{brokers_among, leader_elsewhere};
use super::{names_from_ids, str_bytes, TOPIC_ID_VERSION_MIN};
use crate::ids::{LeaderEpoch, NodeId, Offset, PartitionId};
use crate::limits;
use crate::partition::{FetchInput, FetchOutput, PartitionOp, TopicPartition};
use crate::protocol::{FetchNodeEndpoint, FetchPartition, FetchResponseData, FetchTopic};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, mut request: FetchRequest) -> FetchResponseData {
    let unknown_ids = match ctx.api_version >= TOPIC_ID_VERSION_MIN {
        true => {
            let topics = request.topics.iter_mut();
            names_from_ids(ctx, topics.map(|t| (&t.topic_id, &mut t.topic)))
        }
        false => HashSet::new(),
    };
    let wait_ms = request.max_wait_ms.clamp(0, limits::FETCH_WAIT_MS_MAX) as u64;
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let max_bytes = (request.max_bytes.max(0) as usize).min(limits::FETCH_RESPONSE_BYTES_MAX);
    let min_bytes = request.min_bytes.max(0) as usize;
    let names = request.topics.iter().map(|t| t.topic.0.as_str());
    let denied = super::topics_denied(ctx, AclOperation::Read, names);
    let refused = Refused {
        denied,
        unknown_ids,
    };
    loop {
        let response = read_once(ctx, &request, max_bytes, &refused).await;
        let (bytes, answer_now) = summarize(&response);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if bytes >= min_bytes || answer_now || remaining.is_zero() {
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
            return read_once(ctx, &request, max_bytes, &refused).await;
        }
    }
}

/// The topics of a request that are answered without reading.
struct Refused {
    /// Names the principal may not READ.
    denied: HashSet<String>,
    /// Ids this node does not know (v13+).
    unknown_ids: HashSet<uuid::Uuid>,
}

impl Refused {
    fn error(&self, topic: &FetchTopicRequest) -> Option<ResponseError> {
        if !self.unknown_ids.is_empty() && self.unknown_ids.contains(&topic.topic_id) {
            return Some(ResponseError::UnknownTopicId);
        }
        self.denied
            .contains(topic.topic.0.as_str())
            .then_some(ResponseError::TopicAuthorizationFailed)
    }
}

/// Reads every requested partition concurrently and assembles the response in request order.
async fn read_once(
    ctx: &RequestContext,
    request: &FetchRequest,
    max_bytes: usize,
    refused: &Refused,
) -> FetchResponseData {
    let client_rack = request.rack_id.as_str().trim();
    let redirects = ctx.api_version >= FROM_FOLLOWER_VERSION_MIN
        && !client_rack.is_empty()
        && ctx
            .shard
            .config
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.rack_aware_reads);
    let mut reads = Vec::new();
    // Per partition, in request order, when the consumer may be sent elsewhere: the replica
    // it is sent to instead. Nothing is allocated otherwise (the consumer hot path).
    let mut closer = Vec::new();
    for topic in &request.topics {
        let refusal = refused.error(topic);
        let allowed = refusal.is_none();
        for partition in &topic.partitions {
            let index = PartitionId(partition.partition);
            let preferred = (redirects && allowed)
                .then(|| closer_replica(ctx, topic.topic.0.as_str(), index, client_rack))
                .flatten();
            if redirects {
                closer.push(preferred);
            }
            let input = FetchInput {
                tp: TopicPartition {
                    topic: topic.topic.0.to_string(),
                    partition: PartitionId(partition.partition),
                },
                current_leader_epoch: LeaderEpoch(partition.current_leader_epoch),
                offset: Offset(partition.fetch_offset),
                max_bytes: (partition.partition_max_bytes.max(0) as usize).min(max_bytes),
                from_follower: ctx.api_version >= FROM_FOLLOWER_VERSION_MIN,
                watermarks_only: preferred.is_some(),
                read_committed: request.isolation_level == READ_COMMITTED,
            };
            reads.push(async move {
                match refusal {
                    None => ctx.shard.route(input).await,
                    Some(error) => FetchInput::refused(error),
                }
            });
        }
    }
    let mut outputs = join_all(reads).await.into_iter();
    let mut closer = closer.into_iter();
    let mut budget = Budget {
        remaining: max_bytes,
        nothing_yet: true,
    };
    let names_leader = ctx.api_version >= CURRENT_LEADER_VERSION_MIN;
    let mut leaders = BTreeSet::new();
    let topics = request
        .topics
        .iter()
        .map(|topic| FetchTopic {
            name: topic.topic.0.clone(),
            topic_id: topic.topic_id,
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    let output = outputs.next().unwrap_or_default();
                    let index = PartitionId(p.partition);
                    let preferred = if redirects {
                        closer.next().flatten()
                    } else {
                        None
                    };
                    let mut data = partition_data(p.partition, output, &mut budget);
                    if data.error_code == 0 {
                        data.preferred_read_replica = preferred.map(|node| node.get());
                    }
                    if names_leader && data.error_code == ResponseError::NotLeaderOrFollower.code()
                    {
                        let leader = leader_elsewhere(ctx, topic.topic.0.as_str(), index);
                        if let Some((leader, epoch)) = leader {
                            data.current_leader = Some((leader.get(), epoch.get()));
                            leaders.insert(leader);
                        }
                    }
                    data
                })
                .collect(),
        })
        .collect();
    let node_endpoints = match ctx.api_version >= NODE_ENDPOINTS_VERSION_MIN {
        true => brokers_among(ctx, &leaders)
            .into_iter()
            .map(|broker| FetchNodeEndpoint {
                node_id: broker.node.get(),
                host: str_bytes(broker.host),
                port: broker.port,
                rack: broker.rack.map(str_bytes),
            })
            .collect(),
        false => Vec::new(),
    };
    FetchResponseData {
        topics,
        node_endpoints,
        ..Default::default()
    }
}

/// Fetch's and ListOffsets' isolation_level for read_committed.
pub const READ_COMMITTED: i8 = 1;

/// The first version whose partitions may name their current leader.
const CURRENT_LEADER_VERSION_MIN: i16 = 12;
/// The first version whose response carries the endpoints of the leaders it names.
const NODE_ENDPOINTS_VERSION_MIN: i16 = 16;
/// The first version a consumer may fetch from a follower with (KIP-392).
const FROM_FOLLOWER_VERSION_MIN: i16 = 11;

/// The replica a consumer in `rack` is to fetch `topic`'s `partition` from instead of this
/// node: when this node leads it in another rack, an in-sync live replica in `rack` (the
/// lowest node id of them, so that a consumer keeps going to the same one).
fn closer_replica(
    ctx: &RequestContext,
    topic: &str,
    partition: PartitionId,
    rack: &str,
) -> Option<NodeId> {
    let me = ctx.shard.config.node_id;
    if ctx.shard.config.rack.as_deref() == Some(rack) {
        return None;
    }
    let table = ctx.shard.table();
    let entry = table.topic(topic)?;
    let (leader, _) = entry.leader(partition)?;
    if leader != me {
        return None;
    }
    let in_rack = |node: NodeId| {
        table
            .brokers()
            .any(|broker| broker.node == node && broker.rack.as_deref() == Some(rack))
    };
    entry
        .in_sync(partition)
        .into_iter()
        .filter(|node| *node != me && !table.is_fenced(*node) && in_rack(*node))
        .min()
}

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
        last_stable_offset: output.last_stable_offset.get(),
        log_start_offset: output.log_start_offset.get(),
        records,
        aborted_transactions: output.aborted.map(|aborted| {
            let pairs = aborted.into_iter();
            pairs
                .map(|(producer, first)| (producer, first.get()))
                .collect()
        }),
        current_leader: None,
        preferred_read_replica: None,
    }
}

/// The record bytes a response carries (what a consumer byte-rate quota counts).
pub fn record_bytes(response: &FetchResponseData) -> usize {
    summarize(response).0
}

/// The record bytes of a response, and whether it is to be answered without waiting for
/// more: a partition has an error or sends the consumer to another replica.
fn summarize(response: &FetchResponseData) -> (usize, bool) {
    let partitions = response.topics.iter().flat_map(|t| t.partitions.iter());
    partitions.fold((0, false), |(bytes, answer_now), p| {
        let size: usize = p.records.iter().map(Bytes::len).sum();
        let redirected = p.preferred_read_replica.is_some();
        (bytes + size, answer_now || p.error_code != 0 || redirected)
    })
}
