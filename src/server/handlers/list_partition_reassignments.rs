//! ListPartitionReassignments: the partitions being reassigned (all, or those named that
//! are), each with its replicas (the target's first, then those leaving), the nodes joining
//! and the nodes leaving. Needs DESCRIBE on the cluster (else CLUSTER_AUTHORIZATION_FAILED for
//! the whole request). Read from this node's metadata, as Kafka's brokers answer from theirs.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::ids::{NodeId, PartitionId};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::table::TopicEntry;

pub fn handle(
    ctx: &RequestContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut response = ListPartitionReassignmentsResponse::default();
    if !ctx.authorize_cluster(AclOperation::Describe) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        response.error_message = Some(str_bytes(
            "not authorized to describe the cluster".to_string(),
        ));
        return response;
    }
    let table = ctx.shard.table();
    let mut ongoing: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    let mut add = |topic: &TopicEntry, partition: PartitionId| {
        if let Some(reassignment) = topic.reassigning.get(&partition) {
            let ids = |nodes: &mut dyn Iterator<Item = NodeId>| -> Vec<BrokerId> {
                nodes.map(|node| BrokerId(node.get())).collect()
            };
            let replicas = ids(&mut topic.replicas(partition).iter().map(|r| r.node));
            let found = OngoingPartitionReassignment::default()
                .with_partition_index(partition.get())
                .with_replicas(replicas)
                .with_adding_replicas(ids(&mut reassignment.adding.iter().copied()))
                .with_removing_replicas(ids(&mut reassignment.removing.iter().copied()));
            ongoing.entry(topic.name.clone()).or_default().push(found);
        }
    };
    match &request.topics {
        None => {
            for topic in table.topics() {
                for partition in topic.reassigning.keys() {
                    add(topic, *partition);
                }
            }
        }
        Some(topics) => {
            for asked in topics {
                let Some(topic) = table.topic(asked.name.0.as_str()) else {
                    continue;
                };
                for partition in &asked.partition_indexes {
                    add(&topic, PartitionId(*partition));
                }
            }
        }
    }
    response.topics = ongoing
        .into_iter()
        .map(|(name, partitions)| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    response
}
