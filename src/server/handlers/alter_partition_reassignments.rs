//! AlterPartitionReassignments: an operator moves a replicated partition's replicas to other
//! nodes, grows or shrinks its replication factor, or cancels a move in progress (replicas
//! null). Needs ALTER on the cluster (else CLUSTER_AUTHORIZATION_FAILED for the whole
//! request, as Kafka answers).
//!
//! The controller checks and records each partition's target (`ControllerCommand::
//! ReassignPartition`, INVALID_REPLICA_ASSIGNMENT, NO_REASSIGNMENT_IN_PROGRESS,
//! UNKNOWN_TOPIC_OR_PARTITION, and with v1's `allow_replication_factor_change` false
//! INVALID_REPLICATION_FACTOR); the answer comes once it is recorded, as Kafka's does. The
//! move itself follows: the partition's leader changes its Raft group's members (see
//! `replication::membership`) and reports the target reached, which completes it.
//! ListPartitionReassignments shows it meanwhile. A cancel is a move back to the replicas
//! before it, shown until the group is back.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::ids::{NodeId, PartitionId};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::admin::ControllerCommand;

pub async fn handle(
    ctx: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default();
    // v0 has no such field: the replication factor may change.
    let allow_replication_factor_change =
        ctx.api_version < 1 || request.allow_replication_factor_change;
    if ctx.api_version >= 1 {
        response.allow_replication_factor_change = allow_replication_factor_change;
    }
    if !ctx.authorize_cluster(AclOperation::Alter) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(str_bytes("not authorized to alter the cluster".to_string()));
        return response;
    }
    let mut commands = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let target = partition
                .replicas
                .as_ref()
                .map(|replicas| replicas.iter().map(|id| NodeId(id.0)).collect());
            commands.push(Ok(ControllerCommand::ReassignPartition {
                topic: topic.name.0.to_string(),
                partition: PartitionId(partition.partition_index),
                target,
                keep_replication_factor: !allow_replication_factor_change,
            }));
        }
    }
    let mut outcomes = super::run_planned(ctx, commands).await.into_iter();
    response.responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic.partitions.iter().map(|partition| {
                let outcome = outcomes.next().unwrap_or_default();
                ReassignablePartitionResponse::default()
                    .with_partition_index(partition.partition_index)
                    .with_error_code(outcome.error_code)
                    .with_error_message(outcome.error_message.map(str_bytes))
            });
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions.collect())
        })
        .collect();
    response
}
