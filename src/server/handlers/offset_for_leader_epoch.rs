//! OffsetForLeaderEpoch: the end offset of a leader epoch, which clients use to detect log
//! truncation. Every partition has had one epoch, 0 (see ARCHITECTURE.md), so:
//! - a current leader epoch above 0 is UNKNOWN_LEADER_EPOCH (the client knows a newer leader),
//!   and FENCED_LEADER_EPOCH (an older one) cannot happen until epochs advance;
//! - epoch 0 ends at the log end, which is the high watermark here (nothing unacknowledged is
//!   ever shown to clients);
//! - an epoch above 0, or -1, is unknown: epoch -1 and end offset -1, without an error, as
//!   Kafka answers for epochs it has no entry for.
//!
//! Each topic needs DESCRIBE (TOPIC_AUTHORIZATION_FAILED), as for a consumer in Kafka.

use futures::future::join_all;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::ids::{LeaderEpoch, PartitionId};
use crate::partition::{ListOffsetsInput, TopicPartition, LATEST_TIMESTAMP, LEADER_EPOCH};
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
    let base = EpochEndOffset::default()
        .with_partition(asked.tp.partition.get())
        .with_leader_epoch(-1)
        .with_end_offset(-1);
    if !asked.allowed {
        return base.with_error_code(ResponseError::TopicAuthorizationFailed.code());
    }
    // ListOffsets(latest) is the owner's high watermark, or the partition's error.
    let latest = ctx
        .shard
        .route(ListOffsetsInput {
            tp: asked.tp,
            timestamp: LATEST_TIMESTAMP,
        })
        .await;
    if latest.error_code != 0 {
        return base.with_error_code(latest.error_code);
    }
    if asked.current_leader_epoch > LEADER_EPOCH {
        return base.with_error_code(ResponseError::UnknownLeaderEpoch.code());
    }
    // Empty while the epoch is 0; kept so that the rule holds once epochs advance.
    if (LeaderEpoch(0)..LEADER_EPOCH).contains(&asked.current_leader_epoch) {
        return base.with_error_code(ResponseError::FencedLeaderEpoch.code());
    }
    if asked.leader_epoch == LEADER_EPOCH {
        return base
            .with_leader_epoch(LEADER_EPOCH.get())
            .with_end_offset(latest.offset.get());
    }
    base
}
