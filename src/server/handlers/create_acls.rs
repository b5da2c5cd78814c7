//! CreateAcls 1-3: new ACLs, through the controller into the metadata log. It needs ALTER on
//! the cluster (CLUSTER_AUTHORIZATION_FAILED); without an authorizer it answers
//! SECURITY_DISABLED, as Kafka does. A binding with an unknown or "any" code, an empty name,
//! a CLUSTER name other than "kafka-cluster" or a principal not of the form "User:name" is
//! INVALID_REQUEST; creating an ACL that exists succeeds without a change.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::ResponseError;

use super::{run_planned, str_bytes};
use crate::security::acl::{
    AclBinding, AclEntry, AclOperation, AclPermission, PatternType, ResourcePattern, ResourceType,
};
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ControllerCommand};

pub async fn handle(ctx: &RequestContext, request: CreateAclsRequest) -> CreateAclsResponse {
    let refusal = super::acl_refusal(ctx, AclOperation::Alter);
    let planned = request
        .creations
        .iter()
        .map(|creation| match &refusal {
            Some(refused) => Err(refused.clone()),
            None => binding(creation)
                .map(|binding| ControllerCommand::Acl {
                    binding,
                    create: true,
                })
                .map_err(|message| AdminResult::error(ResponseError::InvalidRequest, message)),
        })
        .collect();
    let results = run_planned(ctx, planned)
        .await
        .into_iter()
        .map(|result| {
            AclCreationResult::default()
                .with_error_code(result.error_code)
                .with_error_message(result.error_message.map(str_bytes))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// The binding a creation asks for, or why it is invalid.
fn binding(creation: &AclCreation) -> Result<AclBinding, String> {
    let invalid = |what: &str, code: i8| format!("{code} is not a valid {what} for a new ACL");
    let binding = AclBinding {
        pattern: ResourcePattern {
            resource_type: ResourceType::from_code(creation.resource_type)
                .ok_or_else(|| invalid("resource type", creation.resource_type))?,
            name: creation.resource_name.to_string(),
            pattern_type: PatternType::from_code(creation.resource_pattern_type)
                .ok_or_else(|| invalid("pattern type", creation.resource_pattern_type))?,
        },
        entry: AclEntry {
            principal: creation.principal.to_string(),
            host: creation.host.to_string(),
            operation: AclOperation::from_code(creation.operation)
                .ok_or_else(|| invalid("operation", creation.operation))?,
            permission: AclPermission::from_code(creation.permission_type)
                .ok_or_else(|| invalid("permission type", creation.permission_type))?,
        },
    };
    binding.validate()?;
    Ok(binding)
}
