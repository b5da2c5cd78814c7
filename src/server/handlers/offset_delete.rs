//! OffsetDelete 0: removes a group's committed offsets for partitions it does not consume.
//! Needs DELETE on the group (GROUP_AUTHORIZATION_FAILED) and READ on each topic
//! (TOPIC_AUTHORIZATION_FAILED for its partitions).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, GroupCall, GroupReply};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if !ctx.authorize_group(AclOperation::Delete, &request.group_id) {
        let error = ResponseError::GroupAuthorizationFailed;
        return OffsetDeleteResponse::default().with_error_code(error.code());
    }
    let denied = super::topics_denied(
        ctx,
        AclOperation::Read,
        request.topics.iter().map(|t| t.name.as_str()),
    );
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .filter(|t| !denied.contains(t.name.as_str()))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let count = partitions.len();
    let call = GroupCall::DeleteOffsets(request.group_id.to_string(), partitions);
    // Every topic refused: the group is not asked. A request naming nothing still is (an
    // unknown group answers GROUP_ID_NOT_FOUND).
    let reply = match count == 0 && !denied.is_empty() {
        true => GroupReply::DeleteOffsets(Vec::new()),
        false => group::route(&ctx.shard, call).await,
    };
    let codes = match reply {
        GroupReply::DeleteOffsets(codes) => codes,
        GroupReply::Error(error) => {
            return OffsetDeleteResponse::default().with_error_code(error.code())
        }
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
                    let error_code = if denied.contains(t.name.as_str()) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else {
                        codes.next().unwrap_or_default()
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
