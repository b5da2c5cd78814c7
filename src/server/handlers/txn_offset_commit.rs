//! TxnOffsetCommit: a transactional producer commits a consumer group's offsets inside its
//! transaction (after AddOffsetsToTxn). The group's coordinator writes them as the producer's
//! transactional batch and holds them pending until the transaction's marker commits or drops
//! them (see `crate::group`). v3+ carry the member and generation, which are checked as an
//! OffsetCommit's (KIP-447); older versions commit without a member.
//!
//! As in Kafka: WRITE on the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ
//! on the group (GROUP_AUTHORIZATION_FAILED) and on each topic (TOPIC_AUTHORIZATION_FAILED),
//! each for every partition it covers.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, CommitArgs, GroupCall, GroupReply, TxnCommitArgs};
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn;

/// Versions below this answer PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, as Kafka does.
const PRODUCER_FENCED_VERSION: i16 = 3;

pub async fn handle(
    ctx: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let refused_all = if !ctx.authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        &request.transactional_id,
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.authorize_group(AclOperation::Read, &request.group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    let denied = super::topics_denied(
        ctx,
        AclOperation::Read,
        request.topics.iter().map(|t| t.name.as_str()),
    );
    let offsets: Vec<_> = request
        .topics
        .iter()
        .filter(|t| refused_all.is_none() && !denied.contains(t.name.as_str()))
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    metadata.unwrap_or_default(),
                )
            })
        })
        .collect();
    let count = offsets.len();
    let args = TxnCommitArgs {
        commit: CommitArgs {
            group: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.map(|id| id.to_string()),
            generation: request.generation_id,
            group_id_not_found: false,
            offsets,
        },
        producer_id: request.producer_id.0,
        epoch: request.producer_epoch,
    };
    let fenced = |code: i16| match ResponseError::try_from_code(code) {
        Some(error) => txn::client_error(error, ctx.api_version, PRODUCER_FENCED_VERSION).code(),
        None => code,
    };
    let codes = match count {
        0 => Vec::new(),
        _ => match group::route(&ctx.shard, GroupCall::TxnCommit(args)).await {
            GroupReply::Commit(codes) => codes.into_iter().map(fenced).collect(),
            GroupReply::Error(error) => vec![fenced(error.code()); count],
            _ => vec![ResponseError::UnknownServerError.code(); count],
        },
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let refused = match refused_all {
                Some(error) => Some(error),
                None if denied.contains(t.name.as_str()) => {
                    Some(ResponseError::TopicAuthorizationFailed)
                }
                None => None,
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error_code = match refused {
                        Some(error) => error.code(),
                        None => codes.next().unwrap_or_default(),
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
