//! Heartbeat 0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.
//! Needs READ on the group (GROUP_AUTHORIZATION_FAILED).

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, GroupCall, GroupReply};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    if !ctx.authorize_group(AclOperation::Read, &request.group_id) {
        let error = ResponseError::GroupAuthorizationFailed;
        return HeartbeatResponse::default().with_error_code(error.code());
    }
    let call = GroupCall::Heartbeat {
        group: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        generation: request.generation_id,
    };
    let error_code = match group::route(&ctx.shard, call).await {
        GroupReply::Error(error) => error.code(),
        _ => 0,
    };
    HeartbeatResponse::default().with_error_code(error_code)
}
