//! ListOffsets: the earliest (-2), latest (-1), max-timestamp (-3), earliest local (-4, v8)
//! or latest tiered (-5, v9; none, as there is no tiered storage) offset of a partition, or
//! the first offset whose record timestamp is at least the given one, each with the leader
//! epoch that wrote it. Each topic needs DESCRIBE (TOPIC_AUTHORIZATION_FAILED). v10's
//! timeout is for remote storage, and is not needed here. A client's current leader epoch
//! (v4+) is checked as Fetch checks it (FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH).

use futures::future::join_all;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::fetch::READ_COMMITTED;
use crate::ids::{LeaderEpoch, PartitionId};
use crate::partition::{ListOffsetsInput, ListOffsetsOutput, TopicPartition};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let names = request.topics.iter().map(|t| t.name.0.as_str());
    let denied = super::topics_denied(ctx, AclOperation::Describe, names);
    let mut lookups = Vec::new();
    for topic in &request.topics {
        let allowed = !denied.contains(topic.name.0.as_str());
        for partition in &topic.partitions {
            let tp = TopicPartition {
                topic: topic.name.0.to_string(),
                partition: PartitionId(partition.partition_index),
            };
            let input = ListOffsetsInput {
                tp,
                current_leader_epoch: LeaderEpoch(partition.current_leader_epoch),
                timestamp: partition.timestamp,
                read_committed: request.isolation_level == READ_COMMITTED,
            };
            lookups.push(async move {
                match allowed {
                    true => ctx.shard.route(input).await,
                    false => ListOffsetsOutput::error(ResponseError::TopicAuthorizationFailed),
                }
            });
        }
    }
    let mut outputs = join_all(lookups).await.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let output = outputs.next().unwrap_or_default();
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(output.error_code)
                        .with_timestamp(output.timestamp)
                        .with_offset(output.offset.get());
                    // The crate refuses to encode a field its version lacks.
                    if ctx.api_version >= 4 {
                        response.with_leader_epoch(output.leader_epoch.get())
                    } else {
                        response
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
