//! OffsetCommit 2-9: commits offsets to the group's coordinator, answered after `fdatasync`.
//! Topics are named (v10 addresses them by id, which the broker does not serve). Needs READ
//! on the group (GROUP_AUTHORIZATION_FAILED for every partition) and on each topic
//! (TOPIC_AUTHORIZATION_FAILED for its partitions, which are not committed).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, CommitArgs, GroupCall, GroupReply};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

/// From this version on, a commit to an unknown group is GROUP_ID_NOT_FOUND.
const GROUP_ID_NOT_FOUND_VERSION: i16 = 9;

pub async fn handle(ctx: &RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_allowed = ctx.authorize_group(AclOperation::Read, &request.group_id);
    let denied = super::topics_denied(
        ctx,
        AclOperation::Read,
        request.topics.iter().map(|t| t.name.as_str()),
    );
    let offsets: Vec<_> = request
        .topics
        .iter()
        .filter(|t| group_allowed && !denied.contains(t.name.as_str()))
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
    // Nothing left to commit once the authorizer refused it all: the group is not asked
    // (as Kafka does); a request that named nothing still is (an unknown group answers).
    let refused_all = count == 0 && (!group_allowed || !denied.is_empty());
    let codes = match refused_all {
        true => Vec::new(),
        false => match group::route(&ctx.shard, GroupCall::Commit(args)).await {
            GroupReply::Commit(codes) => codes,
            GroupReply::Error(error) => vec![error.code(); count],
            _ => vec![ResponseError::UnknownServerError.code(); count],
        },
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let refused = if !group_allowed {
                Some(ResponseError::GroupAuthorizationFailed)
            } else if denied.contains(t.name.as_str()) {
                Some(ResponseError::TopicAuthorizationFailed)
            } else {
                None
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error_code = match refused {
                        Some(error) => error.code(),
                        None => codes.next().unwrap_or_default(),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
