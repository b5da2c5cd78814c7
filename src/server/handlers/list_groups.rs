//! ListGroups 0-5: the groups of every shard, filtered by state (v4+) and type (v5+). Every
//! group here is a classic group. With DESCRIBE on the cluster every group is listed, else
//! those the principal may DESCRIBE, as Kafka does.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::group;
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

const GROUP_TYPE_CLASSIC: &str = "classic";

pub async fn handle(ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let version = ctx.api_version;
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|t| t.to_lowercase())
        .collect();
    if version >= 5 && !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE_CLASSIC) {
        return ListGroupsResponse::default();
    }
    let describe_all = ctx.authorize_cluster(AclOperation::Describe);
    let groups = group::list_all(&ctx.shard)
        .await
        .into_iter()
        .filter(|g| version < 4 || states.is_empty() || states.contains(&g.state.to_lowercase()))
        .filter(|g| describe_all || ctx.authorize_group(AclOperation::Describe, &g.group_id))
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type));
            if version >= 4 {
                listed.group_state = str_bytes(g.state);
            }
            if version >= 5 {
                listed.group_type = str_bytes(GROUP_TYPE_CLASSIC);
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
