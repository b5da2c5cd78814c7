//! OffsetForLeaderEpoch: the end offset of a leader epoch, which clients use to detect log
//! truncation after a leader change. The partition answers from its epoch history (see
//! `partition::epochs`):
//! - a current leader epoch above the partition's is UNKNOWN_LEADER_EPOCH (the client knows
//!   a newer leader), one below it FENCED_LEADER_EPOCH (an older one); -1 skips the check
//!   (`partition::leader_epoch_fence`, on the owner, as for Fetch and ListOffsets);
//! - the latest epoch ends at the high watermark (nothing unacknowledged is ever shown to
//!   clients), an older one where the next began;
//! - an epoch newer than any known, or -1, is unknown: epoch -1 and end offset -1, without an
//!   error, as Kafka answers for epochs it has no entry for.
//!
//! Each topic needs DESCRIBE (TOPIC_AUTHORIZATION_FAILED), as for a consumer in Kafka.

use futures::future::join_all;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::ids::{LeaderEpoch, PartitionId};
use crate::partition::{EpochEndInput, PartitionOp, TopicPartition};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

/// What the request asks about one partition.
struct Asked {
    tp: TopicPartition,
    current_leader_epoch: LeaderEpoch,
    leader_epoch: LeaderEpoch,
    allowed: bool,
}

pub async fn handle(
    ctx: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let names = request.topics.iter().map(|t| t.topic.0.as_str());
    let denied = super::topics_denied(ctx, AclOperation::Describe, names);
    let asked = request.topics.iter().flat_map(|topic| {
        let allowed = !denied.contains(topic.topic.0.as_str());
        topic.partitions.iter().map(move |partition| Asked {
            allowed,
            tp: TopicPartition {
                topic: topic.topic.0.to_string(),
                partition: PartitionId(partition.partition),
            },
            current_leader_epoch: LeaderEpoch(partition.current_leader_epoch),
            leader_epoch: LeaderEpoch(partition.leader_epoch),
        })
    });
    let mut answers = join_all(asked.map(|asked| answer(ctx, asked)))
        .await
        .into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|_| answers.next().unwrap_or_default())
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

async fn answer(ctx: &RequestContext, asked: Asked) -> EpochEndOffset {
    let base = EpochEndOffset::default().with_partition(asked.tp.partition.get());
    let output = match asked.allowed {
        true => {
            let input = EpochEndInput {
                tp: asked.tp,
                current_leader_epoch: asked.current_leader_epoch,
                leader_epoch: asked.leader_epoch,
            };
            ctx.shard.route(input).await
        }
        false => EpochEndInput::refused(ResponseError::TopicAuthorizationFailed),
    };
    base.with_error_code(output.error_code)
        .with_leader_epoch(output.leader_epoch.get())
        .with_end_offset(output.end_offset.get())
}
