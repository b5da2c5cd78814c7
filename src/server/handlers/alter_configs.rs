//! AlterConfigs (legacy): replaces every override of a topic with the given set. Broker
//! resources are refused: corelog reads its broker config at start only. A topic needs
//! ALTER_CONFIGS on it (TOPIC_AUTHORIZATION_FAILED), a broker ALTER_CONFIGS on the cluster
//! (CLUSTER_AUTHORIZATION_FAILED).
//!
//! The resource-level rules (duplicates, resource types, broker refusal) are shared with
//! IncrementalAlterConfigs through [`plan_resources`] and [`answer_resources`].

use std::collections::HashMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ConfigChange, ControllerCommand};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// One resource of an alter request, as the shared planner sees it.
pub struct ResourceChange {
    pub resource_type: i8,
    pub name: StrBytes,
    /// How many configs it names; a broker resource naming none changes nothing.
    pub config_count: usize,
    pub change: ConfigChange,
}

pub async fn handle(ctx: &RequestContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let resources = request
        .resources
        .into_iter()
        .map(|resource| {
            let pairs: Vec<_> = resource
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            ResourceChange {
                resource_type: resource.resource_type,
                name: resource.resource_name,
                config_count: pairs.len(),
                change: ConfigChange::Replace(pairs),
            }
        })
        .collect();
    let answered = answer_resources(ctx, resources, request.validate_only).await;
    let responses = answered
        .into_iter()
        .map(|(resource_type, name, result)| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_error_code(result.error_code)
                .with_error_message(result.error_message.map(str_bytes))
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// Answers every resource in request order: topic changes go to the controller in one
/// batch; everything else is answered here.
pub async fn answer_resources(
    ctx: &RequestContext,
    resources: Vec<ResourceChange>,
    validate_only: bool,
) -> Vec<(i8, StrBytes, AdminResult)> {
    let mut counts: HashMap<(i8, StrBytes), usize> = HashMap::new();
    for resource in &resources {
        *counts
            .entry((resource.resource_type, resource.name.clone()))
            .or_default() += 1;
    }
    let mut commands = Vec::new();
    let mut planned = Vec::with_capacity(resources.len());
    for resource in resources {
        let key = (resource.resource_type, resource.name.clone());
        let outcome = if counts[&key] > 1 {
            Err(AdminResult::error(
                ResponseError::InvalidRequest,
                "resource named more than once",
            ))
        } else {
            plan_resource(ctx, &resource, validate_only).map(|command| {
                command.map(|command| {
                    commands.push(command);
                    commands.len() - 1
                })
            })
        };
        planned.push((resource.resource_type, resource.name, outcome));
    }
    let results = if commands.is_empty() {
        Vec::new()
    } else {
        ctx.shard.controller_commands(commands).await
    };
    planned
        .into_iter()
        .map(|(resource_type, name, outcome)| {
            let result = match outcome {
                Ok(Some(index)) => results.get(index).cloned().unwrap_or_default(),
                Ok(None) => AdminResult::default(),
                Err(refused) => refused,
            };
            (resource_type, name, result)
        })
        .collect()
}

/// The controller command for a topic resource, nothing for a broker resource that changes
/// nothing, or the refusal.
fn plan_resource(
    ctx: &RequestContext,
    resource: &ResourceChange,
    validate_only: bool,
) -> Result<Option<ControllerCommand>, AdminResult> {
    match resource.resource_type {
        RESOURCE_TOPIC if !ctx.authorize_topic(AclOperation::AlterConfigs, &resource.name) => {
            Err(AdminResult::error(
                ResponseError::TopicAuthorizationFailed,
                "not authorized to alter this topic's configs",
            ))
        }
        RESOURCE_BROKER if !ctx.authorize_cluster(AclOperation::AlterConfigs) => {
            Err(AdminResult::error(
                ResponseError::ClusterAuthorizationFailed,
                "not authorized to alter broker configs",
            ))
        }
        RESOURCE_TOPIC => Ok(Some(ControllerCommand::AlterConfigs {
            topic: resource.name.to_string(),
            change: resource.change.clone(),
            validate_only,
        })),
        RESOURCE_BROKER => {
            let node = ctx.shard.config.node_id.to_string();
            let name = resource.name.as_str();
            if !name.is_empty() && name != node {
                return Err(AdminResult::error(
                    ResponseError::InvalidRequest,
                    format!("this is broker {node}, not {name:?}"),
                ));
            }
            if resource.config_count == 0 {
                return Ok(None);
            }
            // What Kafka answers for a broker config it cannot change at run time.
            Err(AdminResult::error(
                ResponseError::InvalidRequest,
                "corelog has no dynamic broker configs: set broker configs in its TOML file, \
                 CORELOG_* environment or flags, and restart",
            ))
        }
        other => Err(AdminResult::error(
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported"),
        )),
    }
}
