//! ElectLeaders: an operator moves partitions' leadership back to their preferred leaders
//! (their first replicas), as the leader balancer does by itself every
//! `leader.imbalance.check.interval.ms`. Needs ALTER on the cluster.
//!
//! - PREFERRED: the controller checks each partition (ELECTION_NOT_NEEDED when the preferred
//!   leader leads or the partition has one replica, PREFERRED_LEADER_NOT_AVAILABLE when it is
//!   fenced or not in sync) and records the election; the leader hands over, and the answer
//!   waits until this node's metadata shows the preferred leader leading (REQUEST_TIMED_OUT
//!   if not within the request's timeout; a timeout of 0 answers once the election is
//!   recorded, without waiting).
//! - UNCLEAN: never needed. A partition's Raft group elects a leader by itself once a
//!   majority of its replicas is live, and electing any other replica would lose committed
//!   records: ELECTION_NOT_NEEDED while a leader is live, ELIGIBLE_LEADERS_NOT_AVAILABLE
//!   otherwise.
//!
//! No partitions named means every partition; the answer then omits those that needed no
//! election, as Kafka's does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::{select, Either};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{brokers, str_bytes};
use crate::ids::PartitionId;
use crate::runtime;
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ControllerCommand};
use crate::shard::table::ShardTable;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(ctx: &RequestContext, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let every_partition = request.topic_partitions.is_none();
    let asked: BTreeSet<(TopicName, PartitionId)> = match &request.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|topic| {
                let partitions = topic.partitions.iter();
                partitions.map(|partition| (topic.topic.clone(), PartitionId(*partition)))
            })
            .collect(),
        None => every_partition_known(&ctx.shard.table()),
    };
    // v0 has no election type: it asks for preferred leaders.
    let election_type = if ctx.api_version >= 1 {
        request.election_type
    } else {
        PREFERRED
    };
    let refusal = if !ctx.authorize_cluster(AclOperation::Alter) {
        let message = "not authorized to alter the cluster";
        Some(AdminResult::error(
            ResponseError::ClusterAuthorizationFailed,
            message,
        ))
    } else if election_type != PREFERRED && election_type != UNCLEAN {
        let message = format!("unknown election type {election_type}");
        Some(AdminResult::error(ResponseError::InvalidRequest, message))
    } else {
        None
    };
    let mut response = ElectLeadersResponse::default();
    let outcomes = match refusal {
        Some(refusal) => {
            if ctx.api_version >= 1 {
                response.error_code = refusal.error_code;
            }
            vec![refusal; asked.len()]
        }
        None if election_type == UNCLEAN => asked
            .iter()
            .map(|(topic, partition)| unclean(ctx, topic, *partition))
            .collect(),
        None => preferred(ctx, &asked, request.timeout_ms).await,
    };
    let not_needed = ResponseError::ElectionNotNeeded.code();
    let mut by_topic: BTreeMap<TopicName, Vec<PartitionResult>> = BTreeMap::new();
    for ((topic, partition), outcome) in asked.into_iter().zip(outcomes) {
        if every_partition && outcome.error_code == not_needed {
            continue;
        }
        let result = PartitionResult::default()
            .with_partition_id(partition.get())
            .with_error_code(outcome.error_code)
            .with_error_message(outcome.error_message.map(str_bytes));
        by_topic.entry(topic).or_default().push(result);
    }
    response.replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(partitions)
        })
        .collect();
    response
}

fn every_partition_known(table: &ShardTable) -> BTreeSet<(TopicName, PartitionId)> {
    table
        .topics()
        .flat_map(|topic| {
            let name = TopicName(str_bytes(topic.name.clone()));
            PartitionId::all(topic.partition_count()).map(move |p| (name.clone(), p))
        })
        .collect()
}

/// Records a preferred-leader election of each partition asked for, then waits until each
/// recorded one is led by its preferred leader, or the timeout (if any) passes.
async fn preferred(
    ctx: &RequestContext,
    asked: &BTreeSet<(TopicName, PartitionId)>,
    timeout_ms: i32,
) -> Vec<AdminResult> {
    let planned = asked
        .iter()
        .map(|(topic, partition)| {
            Ok(ControllerCommand::ElectPreferredLeader {
                topic: topic.0.to_string(),
                partition: *partition,
            })
        })
        .collect();
    let mut outcomes = super::run_planned(ctx, planned).await;
    if timeout_ms <= 0 {
        return outcomes;
    }
    let mut waiting: Vec<usize> = (0..outcomes.len())
        .filter(|index| outcomes[*index].error_code == 0)
        .collect();
    let asked: Vec<&(TopicName, PartitionId)> = asked.iter().collect();
    let timeout = Duration::from_millis(timeout_ms.unsigned_abs().into());
    let mut deadline = Box::pin(select(
        Box::pin(runtime::sleep(timeout)),
        Box::pin(ctx.shard.shutdown.wait()),
    ));
    loop {
        let changed = ctx.shard.table_changed();
        {
            let table = ctx.shard.table();
            waiting.retain(|index| {
                let (topic, partition) = asked[*index];
                !led_by_preferred(&table, topic.0.as_str(), *partition)
            });
        }
        if waiting.is_empty() {
            break;
        }
        if let Either::Right(_) = select(Box::pin(changed), deadline.as_mut()).await {
            break;
        }
    }
    for index in waiting {
        let message = "the preferred leader did not take over within the timeout";
        outcomes[index] = AdminResult::error(ResponseError::RequestTimedOut, message);
    }
    outcomes
}

fn led_by_preferred(table: &ShardTable, topic: &str, partition: PartitionId) -> bool {
    table.topic(topic).is_some_and(|entry| {
        let leader = entry.leader(partition).map(|(node, _)| node);
        leader.is_some() && leader == entry.preferred_leader(partition)
    })
}

fn unclean(ctx: &RequestContext, topic: &TopicName, partition: PartitionId) -> AdminResult {
    let exists = ctx
        .shard
        .table()
        .topic(topic.0.as_str())
        .is_some_and(|entry| (0..entry.partition_count()).contains(&partition.get()));
    if !exists {
        let message = format!("{} has no partition {partition}", topic.0);
        return AdminResult::error(ResponseError::UnknownTopicOrPartition, message);
    }
    match brokers::known_leader(ctx, topic.0.as_str(), partition) {
        Some((leader, _)) => {
            let message = format!("node {leader} leads the partition");
            AdminResult::error(ResponseError::ElectionNotNeeded, message)
        }
        None => {
            let message = "no live leader; the partition elects one once a majority of its \
                           replicas is live (an unclean election would lose committed records)";
            AdminResult::error(ResponseError::EligibleLeadersNotAvailable, message)
        }
    }
}
