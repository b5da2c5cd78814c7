//! SyncGroup 0-5: the leader hands in the assignment; every member waits for its own part.
//! Needs READ on the group (GROUP_AUTHORIZATION_FAILED).

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, GroupCall, GroupReply, SyncArgs};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    if !ctx.authorize_group(AclOperation::Read, &request.group_id) {
        let error = ResponseError::GroupAuthorizationFailed;
        return SyncGroupResponse::default().with_error_code(error.code());
    }
    let args = SyncArgs {
        group: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.map(|t| t.to_string()),
        protocol_name: request.protocol_name.map(|n| n.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let mut response = match group::route(&ctx.shard, GroupCall::Sync(args)).await {
        GroupReply::Sync(response) => response,
        GroupReply::Error(error) => SyncGroupResponse::default().with_error_code(error.code()),
        _ => SyncGroupResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
    };
    if ctx.api_version < 5 {
        response.protocol_type = None;
        response.protocol_name = None;
    }
    response
}
