//! The brokers a client is told about (Metadata, DescribeCluster, FindCoordinator): on a
//! single node just this one; in a cluster every registered node that is not fenced (or, for
//! DescribeCluster v2 when asked, fenced ones too), each at the address of the listener the
//! client came in on (as Kafka answers per listener name), with this node always among them
//! (it answers, so it is alive, registered or not yet).

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{LeaderEpoch, NodeId, PartitionId};
use crate::server::dispatch::RequestContext;

/// One broker as a client reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node: NodeId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered, but the controller has not heard from it within its session.
    pub fenced: bool,
}

/// Every live broker, by node id.
pub fn brokers(ctx: &RequestContext) -> Vec<Broker> {
    registered(ctx, false)
}

/// Every registered broker, fenced ones included, by node id.
pub fn brokers_and_fenced(ctx: &RequestContext) -> Vec<Broker> {
    registered(ctx, true)
}

fn registered(ctx: &RequestContext, with_fenced: bool) -> Vec<Broker> {
    let listener = &ctx.listener().config;
    let mut brokers = BTreeMap::new();
    let table = ctx.shard.table();
    for registration in table.brokers() {
        let fenced = table.is_fenced(registration.node);
        if fenced && !with_fenced {
            continue;
        }
        let endpoint = registration
            .endpoints
            .iter()
            .find(|endpoint| endpoint.listener == listener.name);
        if let Some(endpoint) = endpoint {
            let broker = Broker {
                node: registration.node,
                host: endpoint.host.clone(),
                port: endpoint.port,
                rack: registration.rack.clone(),
                fenced,
            };
            brokers.insert(registration.node, broker);
        }
    }
    drop(table);
    let here = ctx.shard.config.node_id;
    brokers.insert(
        here,
        Broker {
            node: here,
            host: listener.advertised_host.clone(),
            port: listener.advertised_port,
            rack: ctx.shard.config.rack.clone(),
            fenced: false,
        },
    );
    brokers.into_values().collect()
}

/// The live brokers among `nodes` (the leaders a KIP-951 answer names; nothing, without
/// allocating, for none).
pub fn brokers_among(ctx: &RequestContext, nodes: &BTreeSet<NodeId>) -> Vec<Broker> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let mut live = brokers(ctx);
    live.retain(|broker| nodes.contains(&broker.node));
    live
}

/// The broker `node`, if it is known.
pub fn broker(ctx: &RequestContext, node: NodeId) -> Option<Broker> {
    brokers(ctx).into_iter().find(|broker| broker.node == node)
}

/// The leader of `topic`'s `partition` and its epoch as this node's metadata knows them,
/// unless unknown or fenced.
pub fn known_leader(
    ctx: &RequestContext,
    topic: &str,
    partition: PartitionId,
) -> Option<(NodeId, LeaderEpoch)> {
    let table = ctx.shard.table();
    let leader = table.topic(topic)?.leader(partition);
    leader.filter(|(node, _)| !table.is_fenced(*node))
}

/// What a NOT_LEADER_OR_FOLLOWER answer names (KIP-951): the known leader, unless it is this
/// node. This node refuses because its replica does not lead, whatever the metadata last
/// recorded (a deposed leader cut off from the controller still reads itself there), and
/// naming itself would send the client straight back.
pub fn leader_elsewhere(
    ctx: &RequestContext,
    topic: &str,
    partition: PartitionId,
) -> Option<(NodeId, LeaderEpoch)> {
    let here = ctx.shard.config.node_id;
    known_leader(ctx, topic, partition).filter(|(node, _)| *node != here)
}

/// The cluster id clients are told: one per set of controller voters, so that every node of
/// a cluster reports the same one.
pub fn cluster_id(ctx: &RequestContext) -> String {
    match &ctx.shard.config.cluster {
        None => SINGLE_NODE_CLUSTER_ID.to_string(),
        Some(cluster) => {
            let voters: Vec<String> = cluster
                .voters
                .iter()
                .map(|(node, address)| format!("{node}@{address}"))
                .collect();
            let digest = crc32c::crc32c(voters.join(",").as_bytes());
            format!("corelog-{digest:08x}")
        }
    }
}

/// The cluster id of a single node.
const SINGLE_NODE_CLUSTER_ID: &str = "corelog-single-node";
