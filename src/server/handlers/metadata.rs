//! Metadata: the brokers, the active controller, and topics with their partitions (each led
//! by the node that holds it).
//! Unknown topics named in the request are created first when automatic creation is allowed
//! (always for v1-3, by `allow_auto_topic_creation` from v4).
//!
//! Authorization, as Kafka does it: listing all topics leaves out those the principal may not
//! DESCRIBE; a topic named (or given by id) without DESCRIBE is TOPIC_AUTHORIZATION_FAILED, and
//! so is an unknown one that would be created automatically without CREATE on the cluster or
//! the topic. KIP-430 operations are reported for topics (v8+) and the cluster (v8-10) when
//! asked.
//!
//! In a cluster, a partition the metadata says this node leads is checked against its
//! replica here: the metadata lags (a leader that lost its quorum steps down while a node cut
//! off from the controller cannot record it), and naming this node sent clients straight
//! back to a node that refuses them.

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;

use super::{auto_create_topics, brokers, str_bytes, topic_name};
use crate::ids::{LeaderEpoch, NodeId, PartitionId};
use crate::metadata::validate_topic_name;
use crate::partition::TopicPartition;
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::shard::table::{ShardTable, TopicEntry};

pub async fn handle(ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let brokers = brokers::brokers(ctx)
        .into_iter()
        .map(|broker| {
            let described = MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.node.get()))
                .with_host(str_bytes(broker.host))
                .with_port(broker.port);
            if ctx.api_version >= 1 {
                described.with_rack(broker.rack.map(str_bytes))
            } else {
                described
            }
        })
        .collect();
    let controller = ctx.shard.controller_node().map_or(-1, |node| node.get());
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(controller));
    if ctx.api_version >= 2 {
        response.cluster_id = Some(str_bytes(brokers::cluster_id(ctx)));
    }
    if (8..=10).contains(&ctx.api_version) {
        response.cluster_authorized_operations =
            ctx.cluster_operations_if(request.include_cluster_authorized_operations);
    }
    let may_describe = |name: &str| ctx.authorize_topic(AclOperation::Describe, name);
    let Some(requested) = request.topics else {
        let topics: Vec<_> = ctx.shard.table().topics().cloned().collect();
        let topics: Vec<_> = topics
            .into_iter()
            .filter(|t| may_describe(&t.name))
            .collect();
        let not_led = not_led_here(ctx, &topics).await;
        let include_operations = request.include_topic_authorized_operations;
        response.topics = topics
            .iter()
            .map(|t| describe(ctx, t, &not_led, include_operations))
            .collect();
        return response;
    };
    let allow_create = (ctx.api_version < 4 || request.allow_auto_topic_creation)
        && ctx.shard.config.auto_create_topics;
    let names: Vec<String> = requested
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    if allow_create {
        auto_create_topics(ctx, names.iter().map(String::as_str)).await;
    }
    let entries: Vec<_> = requested
        .iter()
        .map(|topic| match &topic.name {
            Some(name) => ctx.shard.table().topic(name.0.as_str()),
            None => ctx.shard.table().topic_by_id(&topic.topic_id),
        })
        .collect();
    let described: Vec<_> = entries
        .iter()
        .flatten()
        .filter(|entry| may_describe(&entry.name))
        .cloned()
        .collect();
    let not_led = not_led_here(ctx, &described).await;
    let describe = |entry: &TopicEntry| {
        describe(
            ctx,
            entry,
            &not_led,
            request.include_topic_authorized_operations,
        )
    };
    for (topic, entry) in requested.into_iter().zip(entries) {
        let refused = MetadataResponseTopic::default()
            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
        response.topics.push(match (entry, topic.name) {
            (Some(entry), Some(name)) if !may_describe(&entry.name) => {
                refused.with_name(Some(name))
            }
            // Whether the id exists is not told to who may not describe it.
            (Some(entry), None) if !may_describe(&entry.name) => refused,
            (Some(entry), _) => describe(&entry),
            (None, Some(name)) => {
                let name_str = name.0.as_str();
                let error = if validate_topic_name(name_str).is_err() {
                    ResponseError::InvalidTopicException
                } else if !may_describe(name_str)
                    || (allow_create && !super::may_create_topic(ctx, name_str))
                {
                    ResponseError::TopicAuthorizationFailed
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                MetadataResponseTopic::default()
                    .with_name(Some(name))
                    .with_error_code(error.code())
            }
            (None, None) => MetadataResponseTopic::default()
                .with_topic_id(topic.topic_id)
                .with_error_code(ResponseError::UnknownTopicId.code()),
        });
    }
    response
}

/// One topic as Metadata describes it, with the operations the principal may perform on it
/// when asked (v8+).
fn describe(
    ctx: &RequestContext,
    entry: &TopicEntry,
    not_led: &NotLed,
    include_operations: bool,
) -> MetadataResponseTopic {
    let mut described = describe_topic(entry, &ctx.shard.table(), not_led, ctx.api_version);
    if ctx.api_version >= 8 && include_operations {
        described.topic_authorized_operations =
            ctx.authorized_operations(ResourceType::Topic, &entry.name);
    }
    described
}

/// The replicated partitions of `topics` the metadata says this node leads but whose replica
/// here does not (`Shard::not_led_here`), with the leader that replica knows of.
type NotLed = HashMap<String, HashMap<PartitionId, Option<(NodeId, LeaderEpoch)>>>;

async fn not_led_here(ctx: &RequestContext, topics: &[Rc<TopicEntry>]) -> NotLed {
    if ctx.shard.config.cluster.is_none() {
        return NotLed::new();
    }
    let here = ctx.shard.config.node_id;
    let claimed: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|topic| {
            PartitionId::all(topic.partition_count())
                .filter(|index| topic.group(*index).is_some())
                .filter(|index| topic.leader(*index).is_some_and(|(node, _)| node == here))
                .map(|partition| TopicPartition {
                    topic: topic.name.clone(),
                    partition,
                })
        })
        .collect();
    if claimed.is_empty() {
        return NotLed::new();
    }
    let mut not_led = NotLed::new();
    for (tp, seen) in ctx.shard.not_led_here(claimed).await {
        not_led
            .entry(tp.topic)
            .or_default()
            .insert(tp.partition, seen);
    }
    not_led
}

/// One partition as clients are told it (Metadata, DescribeTopicPartitions): a fenced node is
/// neither its leader nor in sync, but offline.
pub struct PartitionView {
    /// -1 while no live leader is known (LEADER_NOT_AVAILABLE).
    pub leader: BrokerId,
    pub epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub in_sync: Vec<BrokerId>,
    pub offline: Vec<BrokerId>,
}

impl PartitionView {
    pub fn of(topic: &TopicEntry, table: &ShardTable, index: PartitionId) -> PartitionView {
        let broker = |node: NodeId| BrokerId(node.get());
        let live = |node: &NodeId| !table.is_fenced(*node);
        let nodes = topic.replicas(index).iter().map(|replica| replica.node);
        let known = topic.leader(index);
        PartitionView {
            leader: known
                .map(|(node, _)| node)
                .filter(live)
                .map_or(BrokerId(-1), broker),
            epoch: known.map_or(0, |(_, epoch)| epoch.get()),
            replicas: nodes.clone().map(broker).collect(),
            in_sync: topic
                .in_sync(index)
                .into_iter()
                .filter(live)
                .map(broker)
                .collect(),
            offline: nodes.filter(|node| !live(node)).map(broker).collect(),
        }
    }

    /// The metadata names this node the leader, but its replica does not lead (`seen`: the
    /// leader it knows of instead, with its term).
    fn not_led_here(&mut self, seen: Option<(NodeId, LeaderEpoch)>, table: &ShardTable) {
        let live = seen.filter(|(node, _)| !table.is_fenced(*node));
        self.leader = live.map_or(BrokerId(-1), |(node, _)| BrokerId(node.get()));
        if let Some((_, epoch)) = seen {
            self.epoch = self.epoch.max(epoch.get());
        }
    }

    /// LEADER_NOT_AVAILABLE while no live leader is known, else none.
    pub fn error_code(&self) -> i16 {
        if self.leader.0 < 0 {
            ResponseError::LeaderNotAvailable.code()
        } else {
            0
        }
    }
}

/// A topic's entry; fields newer than `version` stay at their defaults, because the crate
/// refuses to encode a field its version lacks.
fn describe_topic(
    topic: &TopicEntry,
    table: &ShardTable,
    not_led: &NotLed,
    version: i16,
) -> MetadataResponseTopic {
    let not_led = not_led.get(&topic.name);
    let partitions = PartitionId::all(topic.partition_count())
        .map(|index| {
            let mut view = PartitionView::of(topic, table, index);
            if let Some(seen) = not_led.and_then(|partitions| partitions.get(&index)) {
                view.not_led_here(*seen, table);
            }
            let mut partition = MetadataResponsePartition::default()
                .with_error_code(view.error_code())
                .with_partition_index(index.get())
                .with_leader_id(view.leader)
                .with_replica_nodes(view.replicas)
                .with_isr_nodes(view.in_sync);
            if version >= 5 {
                partition.offline_replicas = view.offline;
            }
            if version >= 7 {
                partition.with_leader_epoch(view.epoch)
            } else {
                partition
            }
        })
        .collect();
    let response = MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions);
    if version >= 10 {
        response.with_topic_id(topic.id)
    } else {
        response
    }
}
