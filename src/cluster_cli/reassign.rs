//! `corelog cluster reassign|reassignments|decommission`: moving replicas between nodes over
//! the Kafka protocol (AlterPartitionReassignments, ListPartitionReassignments), as
//! `kafka-reassign-partitions.sh` does (its plan files are read as they are), and draining a
//! node: every replica it holds moves to the live node with the fewest replicas, in a rack
//! the partition's other replicas are not in where there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::client::admin::Admin;
use crate::client::cluster::ClusterInfo;
use crate::client::reassignments::Ongoing;
pub use crate::client::reassignments::PartitionTarget;
use crate::client::topics::TopicInfo;
use crate::topic::render::print_table;

/// How often `--wait` asks whether the moves are done.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// A plan file of `kafka-reassign-partitions.sh --execute`.
#[derive(Debug, Deserialize)]
struct PlanFile {
    partitions: Vec<PartitionTarget>,
}

/// The targets of a plan file.
pub fn read_plan(path: &Path) -> anyhow::Result<Vec<PartitionTarget>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let plan: PlanFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a reassignment plan", path.display()))?;
    if plan.partitions.is_empty() {
        bail!("{} names no partition", path.display());
    }
    Ok(plan.partitions)
}

/// Submits `targets` and, with `wait`, waits until none of them is in progress any more.
pub fn submit(
    admin: &mut Admin,
    targets: &[PartitionTarget],
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let outcomes = admin.alter_reassignments(targets)?;
    let mut refused = 0;
    for (target, outcome) in targets.iter().zip(outcomes) {
        let name = format!("{}-{}", target.topic, target.partition);
        match (outcome, &target.replicas) {
            (Err(error), _) => {
                refused += 1;
                eprintln!("{error:#}");
            }
            (Ok(()), Some(replicas)) => println!("{name}: moving to {replicas:?}"),
            (Ok(()), None) => println!("{name}: cancelled"),
        }
    }
    if refused > 0 {
        bail!("{refused} of {} reassignments refused", targets.len());
    }
    match wait {
        Some(timeout) => wait_done(admin, targets, timeout),
        None => Ok(()),
    }
}

fn wait_done(
    admin: &mut Admin,
    targets: &[PartitionTarget],
    timeout: Duration,
) -> anyhow::Result<()> {
    let ours: BTreeSet<(&str, i32)> = targets
        .iter()
        .map(|target| (target.topic.as_str(), target.partition))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let left = pending(admin, targets)?;
        if left == 0 {
            println!("done: {} partitions reassigned", ours.len());
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{left} reassignments still in progress after {timeout:?}");
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// How many of `targets` are not done: listed as in progress, or, for a move, not yet on its
/// new replicas. The node asked may lag the controller that accepted the moves, and a move
/// it has not applied yet is listed nowhere: its Metadata still shows the old replicas.
fn pending(admin: &mut Admin, targets: &[PartitionTarget]) -> anyhow::Result<usize> {
    let ongoing: BTreeSet<(String, i32)> = admin
        .list_reassignments()?
        .into_iter()
        .map(|ongoing| (ongoing.topic, ongoing.partition))
        .collect();
    let names: Vec<String> = targets
        .iter()
        .map(|target| target.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let topics = admin.topics(Some(&names))?;
    let replicas_now = |topic: &str, partition: i32| -> Option<BTreeSet<i32>> {
        let topic = topics.iter().find(|info| info.name == topic)?;
        let found = topic.partitions.iter().find(|p| p.partition == partition)?;
        Some(found.replicas.iter().copied().collect())
    };
    let left = targets.iter().filter(|target| {
        let listed = ongoing.contains(&(target.topic.clone(), target.partition));
        let moved = match &target.replicas {
            None => true,
            Some(replicas) => {
                replicas_now(&target.topic, target.partition)
                    == Some(replicas.iter().copied().collect())
            }
        };
        listed || !moved
    });
    Ok(left.count())
}

pub fn print_ongoing(ongoing: &[Ongoing], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(ongoing)?);
        return Ok(());
    }
    let list = |ids: &[i32]| {
        let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
        ids.join(",")
    };
    let rows: Vec<Vec<String>> = ongoing
        .iter()
        .map(|o| {
            vec![
                o.topic.clone(),
                o.partition.to_string(),
                list(&o.replicas),
                list(&o.adding),
                list(&o.removing),
            ]
        })
        .collect();
    print_table(
        &["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"],
        &rows,
    );
    Ok(())
}

/// The moves that take every replica off `node`: each goes to the live node (other than
/// `node`, not already a replica of the partition) in a rack none of the partition's other
/// replicas is in where one is, then holding the fewest replicas, then the lowest id. The
/// replacement takes the leaving replica's place in the list, so a preferred leader is
/// replaced by the preferred leader.
pub fn drain_plan(
    node: i32,
    cluster: &ClusterInfo,
    topics: &[TopicInfo],
) -> anyhow::Result<Vec<PartitionTarget>> {
    let rack_of: BTreeMap<i32, Option<&str>> = cluster
        .brokers
        .iter()
        .map(|broker| (broker.node, broker.rack.as_deref()))
        .collect();
    let mut load: BTreeMap<i32, usize> = cluster
        .brokers
        .iter()
        .filter(|broker| !broker.fenced && broker.node != node)
        .map(|broker| (broker.node, 0))
        .collect();
    let partitions = topics.iter().flat_map(|topic| {
        let partitions = topic.partitions.iter();
        partitions.map(move |partition| (topic.name.as_str(), partition))
    });
    for (_, partition) in partitions.clone() {
        for replica in &partition.replicas {
            if let Some(count) = load.get_mut(replica) {
                *count += 1;
            }
        }
    }
    let mut plan = Vec::new();
    for (topic, partition) in partitions {
        let Some(position) = partition.replicas.iter().position(|r| *r == node) else {
            continue;
        };
        let others: Vec<i32> = partition
            .replicas
            .iter()
            .copied()
            .filter(|r| *r != node)
            .collect();
        let racks: BTreeSet<Option<&str>> = others
            .iter()
            .map(|r| rack_of.get(r).copied().flatten())
            .collect();
        let chosen = load
            .iter()
            .filter(|(candidate, _)| !partition.replicas.contains(candidate))
            .min_by_key(|(candidate, count)| {
                let rack = rack_of.get(candidate).copied().flatten();
                let shares_a_rack = rack.is_some() && racks.contains(&rack);
                (shares_a_rack, **count, **candidate)
            })
            .map(|(candidate, _)| *candidate);
        let Some(chosen) = chosen else {
            bail!(
                "no live node can take node {node}'s replica of {topic}-{}",
                partition.partition
            );
        };
        *load.get_mut(&chosen).expect("a candidate") += 1;
        let mut replicas = partition.replicas.clone();
        replicas[position] = chosen;
        plan.push(PartitionTarget {
            topic: topic.to_string(),
            partition: partition.partition,
            replicas: Some(replicas),
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::cluster::BrokerInfo;
    use crate::client::topics::PartitionInfo;

    fn broker(node: i32, rack: &str) -> BrokerInfo {
        BrokerInfo {
            node,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: Some(rack.into()),
            fenced: false,
        }
    }

    fn partition(partition: i32, replicas: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition,
            leader: replicas[0],
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            log_start_offset: None,
            high_watermark: None,
        }
    }

    /// Draining node 1 moves each of its replicas to a node of a rack the partition lacks,
    /// the least loaded first, in the leaving replica's place; partitions without a replica
    /// on node 1 stay.
    #[test]
    fn draining_a_node_moves_its_replicas_to_other_racks_least_loaded_first() {
        let cluster = ClusterInfo {
            cluster_id: "c".into(),
            controller: 1,
            brokers: vec![
                broker(1, "a"),
                broker(2, "b"),
                broker(3, "c"),
                broker(4, "a"),
                broker(5, "b"),
            ],
        };
        let topics = vec![TopicInfo {
            name: "t".into(),
            id: None,
            internal: false,
            partitions: vec![
                partition(0, &[1, 2, 3]),
                partition(1, &[2, 1, 3]),
                partition(2, &[2, 3, 4]),
            ],
        }];
        let plan = drain_plan(1, &cluster, &topics).unwrap();
        let replicas: Vec<Vec<i32>> = plan.iter().map(|t| t.replicas.clone().unwrap()).collect();
        // Node 4 is in rack a, which 2 (b) and 3 (c) leave free; 5 shares rack b with 2.
        assert_eq!(replicas, [vec![4, 2, 3], vec![2, 4, 3]]);
        assert!(drain_plan(1, &cluster, &[]).unwrap().is_empty());
        let small = ClusterInfo {
            brokers: vec![broker(1, "a"), broker(2, "b"), broker(3, "c")],
            ..cluster
        };
        assert!(drain_plan(1, &small, &topics).is_err(), "nowhere to go");
    }
}
