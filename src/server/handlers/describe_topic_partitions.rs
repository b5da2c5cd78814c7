//! DescribeTopicPartitions (KIP-966): Metadata's topics and partitions, in pages. Topics are
//! answered in name order, all of them (those the principal may DESCRIBE) when none are
//! named; an answer holds at most `response_partition_limit` partitions (and never more
//! than `DESCRIBE_TOPIC_PARTITIONS_MAX`, Kafka's `max.request.partition.size.limit`), and
//! when more remain its `next_cursor` names the first of them, from which the next request
//! goes on. A named topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION, one the
//! principal may not DESCRIBE TOPIC_AUTHORIZATION_FAILED; a cursor whose topic is not among
//! those named is INVALID_REQUEST for every topic, as Kafka answers. corelog has no
//! eligible leader replicas (KIP-966's ELR): their lists are empty.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use kafka_protocol::ResponseError;

use super::metadata::PartitionView;
use super::topic_name;
use crate::ids::PartitionId;
use crate::limits;
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::shard::table::TopicEntry;

pub fn handle(
    ctx: &RequestContext,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let mut response = DescribeTopicPartitionsResponse::default();
    let named: BTreeSet<&str> = request.topics.iter().map(|t| t.name.0.as_str()).collect();
    let start = request.cursor.as_ref().map(|cursor| {
        (
            cursor.topic_name.0.to_string(),
            cursor.partition_index.max(0),
        )
    });
    if let Some((topic, _)) = &start {
        if !named.is_empty() && !named.contains(topic.as_str()) {
            response.topics = named
                .iter()
                .map(|name| refused(name, ResponseError::InvalidRequest))
                .collect();
            return response;
        }
    }
    let may_describe = |name: &str| ctx.authorize_topic(AclOperation::Describe, name);
    let table = ctx.shard.table();
    // (name, the topic if it exists and may be described, or the error to answer).
    let topics: Vec<(String, Result<std::rc::Rc<TopicEntry>, ResponseError>)> = if named.is_empty()
    {
        table
            .topics()
            .filter(|topic| may_describe(&topic.name))
            .map(|topic| (topic.name.clone(), Ok(topic.clone())))
            .collect()
    } else {
        named
            .iter()
            .map(|name| {
                let found = match table.topic(name) {
                    _ if !may_describe(name) => Err(ResponseError::TopicAuthorizationFailed),
                    Some(topic) => Ok(topic),
                    None => Err(ResponseError::UnknownTopicOrPartition),
                };
                (name.to_string(), found)
            })
            .collect()
    };
    let limit = usize::try_from(request.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, limits::DESCRIBE_TOPIC_PARTITIONS_MAX);
    let mut room = limit;
    let mut remaining = topics
        .into_iter()
        .filter(|(name, _)| start.as_ref().is_none_or(|(first, _)| name >= first))
        .peekable();
    while let Some((name, found)) = remaining.next() {
        let topic = match found {
            Ok(topic) => topic,
            Err(error) => {
                response.topics.push(refused(&name, error));
                continue;
            }
        };
        let first = match &start {
            Some((cursor_topic, partition)) if *cursor_topic == name => *partition,
            _ => 0,
        };
        let count = topic.partition_count();
        let end = count.min(first.saturating_add(i32::try_from(room).unwrap_or(i32::MAX)));
        let partitions: Vec<_> = (first..end)
            .map(|index| partition(&topic, &table, PartitionId(index)))
            .collect();
        room -= partitions.len();
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(topic.id)
                .with_is_internal(topic.is_internal())
                .with_partitions(partitions)
                .with_topic_authorized_operations(
                    ctx.authorized_operations(ResourceType::Topic, &name),
                ),
        );
        if end < count {
            response.next_cursor = Some(cursor(&name, end));
            break;
        }
        if room == 0 {
            if let Some((next, _)) = remaining.peek() {
                response.next_cursor = Some(cursor(next, 0));
            }
            break;
        }
    }
    response
}

fn partition(
    topic: &TopicEntry,
    table: &crate::shard::table::ShardTable,
    index: PartitionId,
) -> DescribeTopicPartitionsResponsePartition {
    let view = PartitionView::of(topic, table, index);
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(view.error_code())
        .with_partition_index(index.get())
        .with_leader_id(view.leader)
        .with_leader_epoch(view.epoch)
        .with_replica_nodes(view.replicas)
        .with_isr_nodes(view.in_sync)
        .with_eligible_leader_replicas(Some(Vec::new()))
        .with_last_known_elr(Some(Vec::new()))
        .with_offline_replicas(view.offline)
}

fn refused(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(error.code())
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic_name(topic))
        .with_partition_index(partition)
}
