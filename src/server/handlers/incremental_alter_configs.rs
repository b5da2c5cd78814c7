//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on a topic's overrides (KIP-339),
//! applied on the controller to the overrides current at that moment.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::alter_configs::{answer_resources, ResourceChange};
use super::str_bytes;
use crate::metadata::topic_config::ConfigOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ConfigChange};

pub async fn handle(
    ctx: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut refused = Vec::new();
    let mut resources = Vec::new();
    for resource in request.resources {
        let mut operations = Vec::with_capacity(resource.configs.len());
        let mut bad_operation = None;
        for config in &resource.configs {
            match ConfigOperation::from_code(config.config_operation) {
                Some(operation) => operations.push((
                    config.name.to_string(),
                    operation,
                    config.value.as_ref().map(|v| v.to_string()),
                )),
                None => bad_operation = Some(config.config_operation),
            }
        }
        if let Some(code) = bad_operation {
            let message = format!("config operation {code} does not exist");
            let result = AdminResult::error(ResponseError::InvalidRequest, message);
            refused.push((
                resources.len(),
                resource.resource_type,
                resource.resource_name,
                result,
            ));
            continue;
        }
        resources.push(ResourceChange {
            resource_type: resource.resource_type,
            name: resource.resource_name,
            config_count: operations.len(),
            change: ConfigChange::Incremental(operations),
        });
    }
    let mut answered = answer_resources(ctx, resources, request.validate_only).await;
    // Refused resources go back to their place in the request.
    for (position, resource_type, name, result) in refused.into_iter().rev() {
        answered.insert(position, (resource_type, name, result));
    }
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
