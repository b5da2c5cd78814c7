//! DescribeGroups 0-5: state, protocol and members of each group, asked of its coordinator.
//! An unknown group is reported as Dead without an error, as Kafka does before v6.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::group::{self, GroupCall, GroupReply};
use crate::server::dispatch::RequestContext;

/// READ, DELETE and DESCRIBE: what any client may do to a group while there are no ACLs.
const GROUP_OPERATIONS_ALLOWED: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let include_operations = ctx.api_version >= 3 && request.include_authorized_operations;
    let calls = request.groups.into_iter().map(|group_id| async move {
        let reply = group::route(&ctx.shard, GroupCall::Describe(group_id.to_string())).await;
        let mut described = described(group_id, reply, ctx.api_version);
        if include_operations {
            described.authorized_operations = GROUP_OPERATIONS_ALLOWED;
        }
        described
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
    let members = summary
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
    DescribedGroup::default()
        .with_group_id(group_id)
        .with_group_state(str_bytes(summary.state))
        .with_protocol_type(str_bytes(summary.protocol_type))
        .with_protocol_data(str_bytes(summary.protocol))
        .with_members(members)
}
