//! DeleteGroups 0-2: removes empty groups with their offsets (NON_EMPTY_GROUP otherwise).
//! Each needs DELETE on the group (GROUP_AUTHORIZATION_FAILED).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, GroupCall, GroupReply};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let calls = request.groups_names.into_iter().map(|group_id| async move {
        let error_code = if ctx.authorize_group(AclOperation::Delete, &group_id) {
            let reply = group::route(&ctx.shard, GroupCall::Delete(group_id.to_string())).await;
            match reply {
                GroupReply::Error(error) => error.code(),
                _ => 0,
            }
        } else {
            ResponseError::GroupAuthorizationFailed.code()
        };
        DeletableGroupResult::default()
            .with_group_id(group_id)
            .with_error_code(error_code)
    });
    let results = futures::future::join_all(calls).await;
    DeleteGroupsResponse::default().with_results(results)
}
