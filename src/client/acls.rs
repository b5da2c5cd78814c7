//! ACLs over the Kafka protocol: CreateAcls, DescribeAcls and DeleteAcls, in the shapes of
//! `security::acl` (the same types the broker keeps).

use anyhow::anyhow;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use super::admin::{kafka_error, Admin};
use crate::security::acl::{
    AclBinding, AclEntry, AclFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourcePattern, ResourceType, CODE_ANY, CODE_MATCH,
};

/// The version of the ACL APIs asked for: flexible, and served by Kafka 2.x to 4.x.
const ACL_API_VERSION: i16 = 2;

impl Admin {
    /// Creates `bindings`; the first refusal is the error.
    pub fn create_acls(&mut self, bindings: &[AclBinding]) -> anyhow::Result<()> {
        let creations = bindings
            .iter()
            .map(|binding| {
                AclCreation::default()
                    .with_resource_type(binding.pattern.resource_type.code())
                    .with_resource_name(text(&binding.pattern.name))
                    .with_resource_pattern_type(binding.pattern.pattern_type.code())
                    .with_principal(text(&binding.entry.principal))
                    .with_host(text(&binding.entry.host))
                    .with_operation(binding.entry.operation.code())
                    .with_permission_type(binding.entry.permission.code())
            })
            .collect();
        let request = CreateAclsRequest::default().with_creations(creations);
        let response = self.request(&request, ACL_API_VERSION)?;
        for (binding, result) in bindings.iter().zip(&response.results) {
            if result.error_code != 0 {
                let what = format!("create ACL {}", describe(binding));
                let message = result.error_message.as_deref();
                return Err(kafka_error(&what, result.error_code, message));
            }
        }
        Ok(())
    }

    /// The ACLs `filter` matches.
    pub fn describe_acls(&mut self, filter: &AclFilter) -> anyhow::Result<Vec<AclBinding>> {
        let wire = wire_filter(filter);
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(wire.resource_type_filter)
            .with_resource_name_filter(wire.resource_name_filter)
            .with_pattern_type_filter(wire.pattern_type_filter)
            .with_principal_filter(wire.principal_filter)
            .with_host_filter(wire.host_filter)
            .with_operation(wire.operation)
            .with_permission_type(wire.permission_type);
        let response = self.request(&request, ACL_API_VERSION)?;
        if response.error_code != 0 {
            let message = response.error_message.as_deref();
            return Err(kafka_error("describe ACLs", response.error_code, message));
        }
        let mut bindings = Vec::new();
        for resource in response.resources {
            let codes = (resource.resource_type, resource.pattern_type);
            for acl in resource.acls {
                bindings.push(binding_from_wire(
                    codes,
                    &resource.resource_name,
                    (&acl.principal, &acl.host),
                    (acl.operation, acl.permission_type),
                )?);
            }
        }
        Ok(bindings)
    }

    /// Deletes every ACL `filter` matches; the deleted ones.
    pub fn delete_acls(&mut self, filter: &AclFilter) -> anyhow::Result<Vec<AclBinding>> {
        let request = DeleteAclsRequest::default().with_filters(vec![wire_filter(filter)]);
        let response = self.request(&request, ACL_API_VERSION)?;
        let result = response
            .filter_results
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("DeleteAcls answered without a filter result"))?;
        if result.error_code != 0 {
            let message = result.error_message.as_deref();
            return Err(kafka_error("delete ACLs", result.error_code, message));
        }
        let mut deleted = Vec::new();
        for acl in result.matching_acls {
            let binding = binding_from_wire(
                (acl.resource_type, acl.pattern_type),
                &acl.resource_name,
                (&acl.principal, &acl.host),
                (acl.operation, acl.permission_type),
            )?;
            if acl.error_code != 0 {
                let what = format!("delete ACL {}", describe(&binding));
                let message = acl.error_message.as_deref();
                return Err(kafka_error(&what, acl.error_code, message));
            }
            deleted.push(binding);
        }
        Ok(deleted)
    }
}

/// One line for a binding: "ALLOW User:alice from * READ on TOPIC orders (LITERAL)".
pub fn describe(binding: &AclBinding) -> String {
    let (pattern, entry) = (&binding.pattern, &binding.entry);
    format!(
        "{} {} from {} {} on {} {:?} ({})",
        entry.permission,
        entry.principal,
        entry.host,
        entry.operation,
        pattern.resource_type,
        pattern.name,
        pattern.pattern_type
    )
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn wire_filter(filter: &AclFilter) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(filter.resource_type.map_or(CODE_ANY, ResourceType::code))
        .with_resource_name_filter(filter.name.as_deref().map(text))
        .with_pattern_type_filter(match filter.pattern {
            PatternFilter::Any => CODE_ANY,
            PatternFilter::Match => CODE_MATCH,
            PatternFilter::Only(pattern_type) => pattern_type.code(),
        })
        .with_principal_filter(filter.principal.as_deref().map(text))
        .with_host_filter(filter.host.as_deref().map(text))
        .with_operation(filter.operation.map_or(CODE_ANY, AclOperation::code))
        .with_permission_type(filter.permission.map_or(CODE_ANY, AclPermission::code))
}

fn binding_from_wire(
    (resource_type, pattern_type): (i8, i8),
    name: &str,
    (principal, host): (&str, &str),
    (operation, permission): (i8, i8),
) -> anyhow::Result<AclBinding> {
    let unknown = |what: &str, code: i8| anyhow!("the broker answered an unknown {what} {code}");
    Ok(AclBinding {
        pattern: ResourcePattern {
            resource_type: ResourceType::from_code(resource_type)
                .ok_or_else(|| unknown("resource type", resource_type))?,
            name: name.to_string(),
            pattern_type: PatternType::from_code(pattern_type)
                .ok_or_else(|| unknown("pattern type", pattern_type))?,
        },
        entry: AclEntry {
            principal: principal.to_string(),
            host: host.to_string(),
            operation: AclOperation::from_code(operation)
                .ok_or_else(|| unknown("operation", operation))?,
            permission: AclPermission::from_code(permission)
                .ok_or_else(|| unknown("permission", permission))?,
        },
    })
}
