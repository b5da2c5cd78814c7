//! DeleteRecords: advances partitions' log starts (offset -1 meaning the high watermark) on
//! their owners, durably, and answers the new low watermark of each. Each topic needs DELETE
//! (TOPIC_AUTHORIZATION_FAILED).

use futures::future::join_all;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use crate::ids::{Offset, PartitionId};
use crate::partition::{DeleteRecordsInput, DeleteRecordsOutput, TopicPartition};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let names = request.topics.iter().map(|t| t.name.0.as_str());
    let denied = super::topics_denied(ctx, AclOperation::Delete, names);
    let deletions = request.topics.iter().flat_map(|topic| {
        let allowed = !denied.contains(topic.name.0.as_str());
        topic.partitions.iter().map(move |partition| {
            let input = DeleteRecordsInput {
                tp: TopicPartition {
                    topic: topic.name.0.to_string(),
                    partition: PartitionId(partition.partition_index),
                },
                offset: Offset(partition.offset),
            };
            async move {
                match allowed {
                    true => ctx.shard.route(input).await,
                    false => DeleteRecordsOutput {
                        error_code: ResponseError::TopicAuthorizationFailed.code(),
                        low_watermark: Offset::NONE,
                    },
                }
            }
        })
    });
    let mut outputs = join_all(deletions).await.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let output = outputs.next().unwrap_or_default();
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(output.error_code)
                        .with_low_watermark(output.low_watermark.get())
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
