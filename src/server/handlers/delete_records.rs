//! DeleteRecords: advances partitions' log starts (offset -1 meaning the high watermark) on
//! their owners, durably, and answers the new low watermark of each.

use futures::future::join_all;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::server::dispatch::RequestContext;
use crate::shard::admin::DeleteRecordsInput;
use crate::shard::messages::TopicPartition;

pub async fn handle(ctx: &RequestContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let deletions = request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(|partition| {
            ctx.shard.delete_records(DeleteRecordsInput {
                tp: TopicPartition {
                    topic: topic.name.0.to_string(),
                    partition: partition.partition_index,
                },
                offset: partition.offset,
            })
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
                        .with_low_watermark(output.low_watermark)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
