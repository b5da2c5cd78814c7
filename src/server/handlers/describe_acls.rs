//! DescribeAcls 1-3: the ACLs a filter matches, grouped by resource pattern. It needs
//! DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED); without an authorizer it answers
//! SECURITY_DISABLED, and a filter with an unknown code INVALID_REQUEST, as Kafka does.

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::security::acl::{AclBinding, AclOperation};
use crate::server::dispatch::RequestContext;

pub fn handle(ctx: &RequestContext, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let response = DescribeAclsResponse::default();
    if let Some(refused) = super::acl_refusal(ctx, AclOperation::Describe) {
        return response
            .with_error_code(refused.error_code)
            .with_error_message(refused.error_message.map(str_bytes));
    }
    match acl_filter!(&request) {
        Ok(filter) => {
            let bindings = ctx.shard.table().acls().matching(&filter);
            response.with_resources(by_resource(bindings))
        }
        Err(message) => response
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(message))),
    }
}

/// Bindings (in pattern order) grouped into one resource each.
fn by_resource(bindings: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    let mut last_pattern = None;
    for AclBinding { pattern, entry } in bindings {
        let acl = AclDescription::default()
            .with_principal(str_bytes(entry.principal))
            .with_host(str_bytes(entry.host))
            .with_operation(entry.operation.code())
            .with_permission_type(entry.permission.code());
        if last_pattern.as_ref() != Some(&pattern) {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(pattern.resource_type.code())
                    .with_resource_name(str_bytes(pattern.name.clone()))
                    .with_pattern_type(pattern.pattern_type.code()),
            );
            last_pattern = Some(pattern);
        }
        if let Some(resource) = resources.last_mut() {
            resource.acls.push(acl);
        }
    }
    resources
}
