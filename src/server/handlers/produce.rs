//! Produce: each partition's record batch goes to the shard that owns the partition; the
//! response is sent once every partition's batch is durable (acks=1/all), or not at all
//! (acks=0). Versions 0-2 are advertised but refused per partition with UNSUPPORTED_VERSION,
//! as Kafka 4 does. Each topic needs WRITE (TOPIC_AUTHORIZATION_FAILED), and a request with a
//! transactional id WRITE on that id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every
//! partition). A partition answered NOT_LEADER_OR_FOLLOWER names the leader this node knows,
//! with its endpoint, from version 10 (KIP-951), so that the producer goes there without
//! asking for metadata first. From version 13 topics are named by id (KIP-516); an id this
//! node does not know is UNKNOWN_TOPIC_ID, and is never created. From version 8 a partition
//! refused for some of its records (a keyless record on a compacted topic) names each of them
//! in `record_errors` (KIP-467).

use std::collections::{BTreeSet, HashSet};

use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::brokers::{brokers_among, leader_elsewhere};
use super::{auto_create_topics, names_from_ids, str_bytes, TOPIC_ID_VERSION_MIN};
use crate::ids::{Offset, PartitionId};
use crate::metadata::validate_topic_name;
use crate::partition::{ProduceInput, ProduceOutput, TopicPartition};
use crate::protocol::versions::PRODUCE_VERSION_SERVED_MIN;
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, mut request: ProduceRequest) -> Option<ProduceResponse> {
    let by_id = ctx.api_version >= TOPIC_ID_VERSION_MIN;
    let unknown_ids = match by_id {
        true => {
            let topics = request.topic_data.iter_mut();
            names_from_ids(ctx, topics.map(|t| (&t.topic_id, &mut t.name)))
        }
        false => HashSet::new(),
    };
    let acks = request.acks;
    let refused = if ctx.api_version < PRODUCE_VERSION_SERVED_MIN {
        Some(ResponseError::UnsupportedVersion)
    } else if !matches!(acks, -1..=1) {
        Some(ResponseError::InvalidRequiredAcks)
    } else if !transactional_id_allowed(ctx, &request) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        None
    };
    let names = request.topic_data.iter().map(|t| t.name.0.as_str());
    let denied = super::topics_denied(ctx, AclOperation::Write, names);
    if refused.is_none() {
        let names = request.topic_data.iter().map(|t| t.name.0.as_str());
        auto_create_topics(ctx, names.filter(|name| !denied.contains(*name))).await;
    }
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    let mut calls = Vec::new();
    for topic in &request.topic_data {
        let name = topic.name.0.to_string();
        let refused = refused
            .or_else(|| {
                (by_id && unknown_ids.contains(&topic.topic_id))
                    .then_some(ResponseError::UnknownTopicId)
            })
            .or_else(|| {
                denied
                    .contains(&name)
                    .then_some(ResponseError::TopicAuthorizationFailed)
            });
        for partition in &topic.partition_data {
            let tp = TopicPartition {
                topic: name.clone(),
                partition: PartitionId(partition.index),
            };
            let input = ProduceInput {
                tp,
                records: partition.records.clone(),
                acks,
                transactional_id: transactional_id.clone(),
            };
            calls.push(produce_one(ctx, input, refused));
        }
    }
    let mut outputs = join_all(calls).await.into_iter();
    if acks == 0 {
        return None;
    }
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|partition| {
                    partition_response(ctx.api_version, partition.index, outputs.next())
                })
                .collect();
            let response = TopicProduceResponse::default().with_partition_responses(partitions);
            // The crate refuses to encode a field its version lacks.
            match by_id {
                true => response.with_topic_id(topic.topic_id),
                false => response.with_name(topic.name.clone()),
            }
        })
        .collect();
    let mut response = ProduceResponse::default().with_responses(responses);
    if ctx.api_version >= CURRENT_LEADER_VERSION_MIN {
        let names = request.topic_data.iter().map(|topic| topic.name.0.as_str());
        point_at_leaders(ctx, names, &mut response);
    }
    Some(response)
}

/// The first version whose partitions carry the current leader (KIP-951).
const CURRENT_LEADER_VERSION_MIN: i16 = 10;

/// KIP-951: each partition answered NOT_LEADER_OR_FOLLOWER gets the leader and epoch this
/// node's metadata knows (none while the leader is unknown, fenced or this node), and the response the
/// endpoints of those leaders on the client's listener. `names` are the response's topics'
/// names, in order.
fn point_at_leaders<'a>(
    ctx: &RequestContext,
    names: impl Iterator<Item = &'a str>,
    response: &mut ProduceResponse,
) {
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let mut leaders = BTreeSet::new();
    for (name, topic) in names.zip(&mut response.responses) {
        for partition in &mut topic.partition_responses {
            if partition.error_code != not_leader {
                continue;
            }
            let index = PartitionId(partition.index);
            let Some((leader, epoch)) = leader_elsewhere(ctx, name, index) else {
                continue;
            };
            partition.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader.get()))
                .with_leader_epoch(epoch.get());
            leaders.insert(leader);
        }
    }
    response.node_endpoints = brokers_among(ctx, &leaders)
        .into_iter()
        .map(|broker| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(broker.node.get()))
                .with_host(str_bytes(broker.host))
                .with_port(broker.port)
                .with_rack(broker.rack.map(str_bytes))
        })
        .collect();
}

/// The record bytes a request carries (what a producer byte-rate quota counts).
pub fn record_bytes(request: &ProduceRequest) -> usize {
    request
        .topic_data
        .iter()
        .flat_map(|topic| topic.partition_data.iter())
        .map(|partition| {
            partition
                .records
                .as_ref()
                .map_or(0, |records| records.len())
        })
        .sum()
}

fn transactional_id_allowed(ctx: &RequestContext, request: &ProduceRequest) -> bool {
    request
        .transactional_id
        .as_ref()
        .is_none_or(|id| ctx.authorize(AclOperation::Write, ResourceType::TransactionalId, id))
}

async fn produce_one(
    ctx: &RequestContext,
    input: ProduceInput,
    refused: Option<ResponseError>,
) -> ProduceOutput {
    let error = refused.or_else(|| {
        validate_topic_name(&input.tp.topic)
            .err()
            .map(|_| ResponseError::InvalidTopicException)
    });
    if let Some(error) = error {
        return ProduceOutput {
            error_code: error.code(),
            base_offset: Offset::NONE,
            log_append_time_ms: -1,
            log_start_offset: Offset::NONE,
            ..Default::default()
        };
    }
    ctx.shard.route(input).await
}

/// One partition's answer; fields newer than the request's version are left at their
/// defaults, because the crate refuses to encode a field its version lacks.
fn partition_response(
    version: i16,
    index: i32,
    output: Option<ProduceOutput>,
) -> PartitionProduceResponse {
    let output = output.unwrap_or_default();
    let mut response = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(output.error_code)
        .with_base_offset(output.base_offset.get());
    if version >= 2 {
        response.log_append_time_ms = output.log_append_time_ms;
    }
    if version >= 5 {
        response.log_start_offset = output.log_start_offset.get();
    }
    if version >= 8 {
        response.error_message = output.error_message.map(str_bytes);
        response.record_errors = output
            .record_errors
            .into_iter()
            .map(|error| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(error.batch_index)
                    .with_batch_index_error_message(error.message.map(str_bytes))
            })
            .collect();
    }
    response
}
