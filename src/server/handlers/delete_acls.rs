//! DeleteAcls 1-3: every ACL each filter matches is deleted through the controller, and
//! listed in that filter's result. It needs ALTER on the cluster
//! (CLUSTER_AUTHORIZATION_FAILED); without an authorizer it answers SECURITY_DISABLED, and a
//! filter with an unknown code INVALID_REQUEST, as Kafka does.

use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::ResponseError;

use super::{run_planned, str_bytes};
use crate::security::acl::{AclBinding, AclFilter, AclOperation};
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ControllerCommand};

pub async fn handle(ctx: &RequestContext, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let refusal = super::acl_refusal(ctx, AclOperation::Alter);
    // Per filter: the bindings it matched, or why it was refused.
    let matched: Vec<Result<Vec<AclBinding>, AdminResult>> = request
        .filters
        .iter()
        .map(|filter| match &refusal {
            Some(refused) => Err(refused.clone()),
            None => parse(filter)
                .map(|filter| ctx.shard.table().acls().matching(&filter))
                .map_err(|message| AdminResult::error(ResponseError::InvalidRequest, message)),
        })
        .collect();
    let planned = matched
        .iter()
        .flat_map(|bindings| bindings.iter().flatten())
        .map(|binding| {
            Ok(ControllerCommand::Acl {
                binding: binding.clone(),
                create: false,
            })
        })
        .collect();
    let mut outcomes = run_planned(ctx, planned).await.into_iter();
    let results = matched
        .into_iter()
        .map(|bindings| match bindings {
            Ok(bindings) => {
                let acls = bindings
                    .into_iter()
                    .map(|binding| matching_acl(binding, outcomes.next().unwrap_or_default()))
                    .collect();
                DeleteAclsFilterResult::default().with_matching_acls(acls)
            }
            Err(refused) => DeleteAclsFilterResult::default()
                .with_error_code(refused.error_code)
                .with_error_message(refused.error_message.map(str_bytes)),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

fn parse(filter: &DeleteAclsFilter) -> Result<AclFilter, String> {
    acl_filter!(filter)
}

fn matching_acl(binding: AclBinding, outcome: AdminResult) -> DeleteAclsMatchingAcl {
    let AclBinding { pattern, entry } = binding;
    DeleteAclsMatchingAcl::default()
        .with_error_code(outcome.error_code)
        .with_error_message(outcome.error_message.map(str_bytes))
        .with_resource_type(pattern.resource_type.code())
        .with_resource_name(str_bytes(pattern.name))
        .with_pattern_type(pattern.pattern_type.code())
        .with_principal(str_bytes(entry.principal))
        .with_host(str_bytes(entry.host))
        .with_operation(entry.operation.code())
        .with_permission_type(entry.permission.code())
}
