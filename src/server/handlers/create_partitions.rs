//! CreatePartitions: grows topics (never shrinks them). The controller places each new
//! partition on the least loaded shard and records the placement. Manual assignments are
//! accepted when they can only mean this node: one replica each, on this broker. Each topic
//! needs ALTER (TOPIC_AUTHORIZATION_FAILED).

use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::ids::NodeId;
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ControllerCommand};

pub async fn handle(
    ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let planned = request
        .topics
        .iter()
        .map(|topic| {
            if counts[topic.name.0.as_str()] > 1 {
                let message = "topic named more than once";
                return Err(AdminResult::error(ResponseError::InvalidRequest, message));
            }
            if !ctx.authorize_topic(AclOperation::Alter, &topic.name) {
                let message = "not authorized to alter this topic";
                let error = ResponseError::TopicAuthorizationFailed;
                return Err(AdminResult::error(error, message));
            }
            check_assignments(ctx, topic)?;
            Ok(ControllerCommand::CreatePartitions {
                topic: topic.name.0.to_string(),
                count: topic.count,
                validate_only: request.validate_only,
            })
        })
        .collect();
    let results = super::run_planned(ctx, planned).await;
    let topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(topic, result)| {
            CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(result.error_code)
                .with_error_message(result.error_message.map(str_bytes))
        })
        .collect();
    CreatePartitionsResponse::default().with_results(topics)
}

/// Assignments, when given, must name one new partition each, one replica each, this broker.
fn check_assignments(
    ctx: &RequestContext,
    topic: &CreatePartitionsTopic,
) -> Result<(), AdminResult> {
    let Some(assignments) = &topic.assignments else {
        return Ok(());
    };
    let node = ctx.shard.config.node_id;
    let invalid =
        |message: String| AdminResult::error(ResponseError::InvalidReplicaAssignment, message);
    if ctx.shard.config.cluster.is_some() {
        return Err(invalid(
            "replica assignments are not supported in a cluster yet".to_string(),
        ));
    }
    if assignments
        .iter()
        .any(|a| a.broker_ids.len() != 1 || NodeId(a.broker_ids[0].0) != node)
    {
        return Err(invalid(format!(
            "each new partition must have exactly one replica, on broker {node}"
        )));
    }
    let current = ctx
        .shard
        .table()
        .topic(topic.name.0.as_str())
        .map(|t| t.partition_count());
    if let Some(current) = current {
        let added = i64::from(topic.count) - i64::from(current);
        if added > 0 && added != assignments.len() as i64 {
            return Err(invalid(format!(
                "{added} partitions added but {} assignments given",
                assignments.len()
            )));
        }
    }
    Ok(())
}
