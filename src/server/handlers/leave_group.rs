//! LeaveGroup 0-5: v0-2 name one member; v3+ a batch of members, static ones by instance id.
//! Needs READ on the group (GROUP_AUTHORIZATION_FAILED).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, GroupCall, GroupReply};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

/// First version that carries a batch of members.
const BATCHED_VERSION: i16 = 3;

pub async fn handle(ctx: &RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    if !ctx.authorize_group(AclOperation::Read, &request.group_id) {
        let error = ResponseError::GroupAuthorizationFailed;
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let members: Vec<_> = if ctx.api_version >= BATCHED_VERSION {
        request
            .members
            .iter()
            .map(|m| {
                let instance = m.group_instance_id.as_ref().map(|id| id.to_string());
                (m.member_id.to_string(), instance)
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let call = GroupCall::Leave(request.group_id.to_string(), members.clone());
    let results = match group::route(&ctx.shard, call).await {
        GroupReply::Leave(results) => results,
        GroupReply::Error(error) => {
            return LeaveGroupResponse::default().with_error_code(error.code())
        }
        _ => vec![Err(ResponseError::UnknownServerError); members.len()],
    };
    let code = |result: &Result<(), ResponseError>| result.err().map_or(0, |e| e.code());
    if ctx.api_version < BATCHED_VERSION {
        let error_code = results.first().map_or(0, code);
        return LeaveGroupResponse::default().with_error_code(error_code);
    }
    let responses = members
        .into_iter()
        .zip(&results)
        .map(|((member_id, instance_id), result)| {
            MemberResponse::default()
                .with_member_id(member_id.into())
                .with_group_instance_id(instance_id.map(Into::into))
                .with_error_code(code(result))
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}
