//! JoinGroup 0-9: a member joins (or rejoins) a classic group and waits for the rebalance to
//! complete. v4+ members first get MEMBER_ID_REQUIRED with their id; v5+ may be static
//! (group.instance.id). Needs READ on the group (GROUP_AUTHORIZATION_FAILED). The group
//! logic is in `crate::group`.

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::group::state::JoinArgs;
use crate::group::{self, GroupCall, GroupReply};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    let version = ctx.api_version;
    if !ctx.authorize_group(AclOperation::Read, &request.group_id) {
        let response = error_response(ResponseError::GroupAuthorizationFailed, &request.member_id);
        return for_version(response, version);
    }
    let args = JoinArgs {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.connection.client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout for it.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            // Copied: a slice would keep the whole request frame alive as long as the member.
            .map(|p| {
                (
                    p.name.to_string(),
                    bytes::Bytes::copy_from_slice(&p.metadata),
                )
            })
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let member_id = args.member_id.clone();
    let call = GroupCall::Join(request.group_id.to_string(), args);
    let response = match group::route(&ctx.shard, call).await {
        GroupReply::Join(response) => response,
        GroupReply::Error(error) => error_response(error, &member_id),
        _ => error_response(ResponseError::UnknownServerError, &member_id),
    };
    for_version(response, version)
}

fn error_response(error: ResponseError, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
}

/// Fields a version does not have are cleared; before v7 the protocol name is not nullable.
fn for_version(mut response: JoinGroupResponse, version: i16) -> JoinGroupResponse {
    if version < 7 {
        response.protocol_type = None;
        response.protocol_name.get_or_insert_with(|| str_bytes(""));
    }
    if version < 9 {
        response.skip_assignment = false;
    }
    if version < 5 {
        for member in &mut response.members {
            member.group_instance_id = None;
        }
    }
    response
}
