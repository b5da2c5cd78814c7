//! DescribeGroups 0-6: state, protocol and members of each group, asked of its coordinator.
//! An unknown group is reported as Dead, with GROUP_ID_NOT_FOUND from v6 (KIP-1043) and
//! without an error before, as Kafka does. A group the principal may not DESCRIBE is
//! GROUP_AUTHORIZATION_FAILED.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::group::state::GroupState;
use crate::group::{self, GroupCall, GroupReply};
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::authorize::AUTHORIZED_OPERATIONS_OMITTED;
use crate::server::dispatch::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let include_operations = ctx.api_version >= 3 && request.include_authorized_operations;
    let calls = request.groups.into_iter().map(|group_id| async move {
        if !ctx.authorize_group(AclOperation::Describe, &group_id) {
            return DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        }
        let reply = group::route(&ctx.shard, GroupCall::Describe(group_id.to_string())).await;
        let operations = if include_operations {
            ctx.authorized_operations(ResourceType::Group, &group_id)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
        described(group_id, reply, ctx.api_version).with_authorized_operations(operations)
    });
    let groups = futures::future::join_all(calls).await;
    DescribeGroupsResponse::default().with_groups(groups)
}

fn described(group_id: GroupId, reply: GroupReply, version: i16) -> DescribedGroup {
    let summary = match reply {
        GroupReply::Describe(summary) => summary,
        GroupReply::Error(error) => {
            return DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(error.code())
        }
        _ => {
            return DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(ResponseError::UnknownServerError.code())
        }
    };
    let members: Vec<DescribedGroupMember> = summary
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(m.instance_id.filter(|_| version >= 4).map(str_bytes))
                .with_client_id(str_bytes(m.client_id))
                .with_client_host(str_bytes(m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
    let unknown = version >= 6 && summary.state == GroupState::Dead.name() && members.is_empty();
    let (error_code, error_message) = match unknown {
        true => (
            ResponseError::GroupIdNotFound.code(),
            Some(str_bytes(format!("Group {} not found.", group_id.as_str()))),
        ),
        false => (0, None),
    };
    DescribedGroup::default()
        .with_error_code(error_code)
        .with_error_message(error_message)
        .with_group_id(group_id)
        .with_group_state(str_bytes(summary.state))
        .with_protocol_type(str_bytes(summary.protocol_type))
        .with_protocol_data(str_bytes(summary.protocol))
        .with_members(members)
}
