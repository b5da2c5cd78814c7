//! OffsetCommit 2-9: commits offsets to the group's coordinator, answered after `fdatasync`.
//! Topics are named (v10 addresses them by id, which the broker does not serve).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, CommitArgs, GroupCall, GroupReply};
use crate::server::dispatch::RequestContext;

/// From this version on, a commit to an unknown group is GROUP_ID_NOT_FOUND.
const GROUP_ID_NOT_FOUND_VERSION: i16 = 9;

pub async fn handle(ctx: &RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let offsets: Vec<_> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                let epoch = if ctx.api_version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                };
                let offset = p.committed_offset;
                (
                    t.name.to_string(),
                    p.partition_index,
                    offset,
                    epoch,
                    metadata.unwrap_or_default(),
                )
            })
        })
        .collect();
    let count = offsets.len();
    let args = CommitArgs {
        group: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        generation: request.generation_id_or_member_epoch,
        group_id_not_found: ctx.api_version >= GROUP_ID_NOT_FOUND_VERSION,
        offsets,
    };
    let codes = match group::route(&ctx.shard, GroupCall::Commit(args)).await {
        GroupReply::Commit(codes) => codes,
        GroupReply::Error(error) => vec![error.code(); count],
        _ => vec![ResponseError::UnknownServerError.code(); count],
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or_default())
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
