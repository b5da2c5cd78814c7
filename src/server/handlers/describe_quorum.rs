//! DescribeQuorum: the metadata quorum (`__cluster_metadata` partition 0) as its leader, the
//! active controller, knows it: leader, epoch (the Raft term), high watermark and, per
//! voter, where its log ends and when it was last heard from and had caught up. Any node
//! answers by asking the controller, as a Kafka broker forwards the request. A single node
//! is the one voter of its own metadata log, in epoch 0. The observers are the broker-only
//! nodes (outside the voters), which follow the log as learners. Needs DESCRIBE on the
//! cluster.
//!
//! Another topic or partition is UNKNOWN_TOPIC_OR_PARTITION, and no reachable controller
//! NOT_LEADER_OR_FOLLOWER, both for the partition as Kafka's Raft client answers them.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::replication::{GroupState, VoterState};
use crate::runtime::clock;
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

/// The metadata log's name as a topic, as Kafka names it.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// The listener name the voters' node-to-node addresses are given under.
const CLUSTER_LISTENER: &str = "CLUSTER";

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let mut response = DescribeQuorumResponse::default();
    if !ctx.authorize_cluster(AclOperation::Describe) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        if ctx.api_version >= 2 {
            response.error_message = Some(str_bytes("not authorized to describe the cluster"));
        }
        return response;
    }
    let asks_quorum = request.topics.iter().all(|topic| {
        topic.topic_name.0.as_str() == METADATA_TOPIC
            && topic.partitions.iter().all(|p| p.partition_index == 0)
    });
    let answer = match asks_quorum {
        false => Err(ResponseError::UnknownTopicOrPartition),
        true => ctx
            .shard
            .describe_quorum()
            .await
            .ok_or(ResponseError::NotLeaderOrFollower),
    };
    response.topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|asked| match &answer {
                    Ok(state) => partition(state, asked.partition_index, ctx.api_version),
                    Err(error) => PartitionData::default()
                        .with_partition_index(asked.partition_index)
                        .with_error_code(error.code())
                        .with_leader_id(BrokerId(-1))
                        .with_leader_epoch(-1)
                        .with_high_watermark(-1),
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    // Fields newer than the request's version stay at their defaults: the crate refuses to
    // encode them.
    if let Some(state) = answer.as_ref().ok().filter(|_| ctx.api_version >= 2) {
        response.nodes = nodes(ctx, state);
    }
    response
}

/// The quorum's partition; the voters' contact times from v1.
fn partition(state: &GroupState, index: i32, version: i16) -> PartitionData {
    let now = clock::now_ms();
    let at = |ago: Option<u64>| ago.map_or(-1, |ago| now - i64::try_from(ago).unwrap_or(now));
    let voter = |voter: &VoterState| {
        let described = ReplicaState::default()
            .with_replica_id(BrokerId(voter.node.get()))
            .with_log_end_offset(voter.log_end.map_or(-1, |end| end.get()));
        if version >= 1 {
            described
                .with_last_fetch_timestamp(at(voter.heard_ms_ago))
                .with_last_caught_up_timestamp(at(voter.caught_up_ms_ago))
        } else {
            described
        }
    };
    PartitionData::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(state.leader.get()))
        .with_leader_epoch(i32::try_from(state.term).unwrap_or(i32::MAX))
        .with_high_watermark(state.high_watermark.get())
        .with_current_voters(state.voters.iter().map(voter).collect())
        .with_observers(state.observers.iter().map(voter).collect())
}

/// Where each voter is reached (v2): in a cluster its `--cluster-listen` address from
/// `--controller-quorum-voters`; a single node through the listener the client came in on.
fn nodes(ctx: &RequestContext, state: &GroupState) -> Vec<Node> {
    let node = |id: i32, name: &str, host: String, port: u16| {
        let listener = Listener::default()
            .with_name(str_bytes(name.to_string()))
            .with_host(str_bytes(host))
            .with_port(port);
        Node::default()
            .with_node_id(BrokerId(id))
            .with_listeners(vec![listener])
    };
    match &ctx.shard.config.cluster {
        Some(cluster) => cluster
            .voters
            .iter()
            .map(|(voter, address)| {
                let host = address.ip().to_string();
                node(voter.get(), CLUSTER_LISTENER, host, address.port())
            })
            .collect(),
        None => {
            let listener = &ctx.listener().config;
            let port = u16::try_from(listener.advertised_port).unwrap_or(0);
            let host = listener.advertised_host.clone();
            vec![node(state.leader.get(), &listener.name, host, port)]
        }
    }
}
