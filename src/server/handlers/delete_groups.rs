//! DeleteGroups 0-2: removes empty groups with their offsets (NON_EMPTY_GROUP otherwise).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::group::{self, GroupCall, GroupReply};
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let calls = request.groups_names.into_iter().map(|group_id| async move {
        let reply = group::route(&ctx.shard, GroupCall::Delete(group_id.to_string())).await;
        let error_code = match reply {
            GroupReply::Error(error) => error.code(),
            _ => 0,
        };
        DeletableGroupResult::default()
            .with_group_id(group_id)
            .with_error_code(error_code)
    });
    let results = futures::future::join_all(calls).await;
    DeleteGroupsResponse::default().with_results(results)
}
