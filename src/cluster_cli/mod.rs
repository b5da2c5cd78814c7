//! `corelog cluster status`: one look at a cluster over the Kafka protocol, in the spirit of
//! `rpk cluster health` and `kafka-metadata-quorum.sh describe`: every node (brokers from
//! DescribeCluster, fenced ones too where v2 is served, and voters from DescribeQuorum), the
//! active controller, the metadata quorum's leader, epoch and high watermark, per node the
//! partitions it leads and holds and how far its metadata log lags, and the partitions
//! under-replicated (fewer in sync than replicas) or offline (no leader). A table for people,
//! JSON with `--json`. It works against any KRaft broker; a single corelog node shows as a
//! cluster of one.
//!
//! `reassign`, `reassignments` and `decommission` move replicas between nodes (see
//! `reassign`).

pub mod reassign;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::client::admin::Admin;
use crate::client::cluster::{ClusterInfo, QuorumInfo};
use crate::client::topics::TopicInfo;
use crate::runtime::clock;
use crate::topic::render::print_table;

/// `corelog cluster [--brokers HOST:PORT] <command>`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub brokers: crate::client::BrokersArg,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Nodes, controller, metadata quorum and partition health.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Move a partition's replicas to other nodes (or change their number), or cancel a
    /// move in progress; or every move of a plan file as kafka-reassign-partitions.sh
    /// writes it ({"partitions": [{"topic", "partition", "replicas"}]}).
    Reassign {
        #[arg(long, requires = "partition", conflicts_with = "plan")]
        topic: Option<String>,
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// The node ids of the new replicas, the preferred leader first: 2,3,4.
        #[arg(long, value_delimiter = ',', required_unless_present_any = ["cancel", "plan"])]
        replicas: Option<Vec<i32>>,
        /// Cancel the partition's move: its replicas go back to what they were.
        #[arg(long, conflicts_with = "replicas")]
        cancel: bool,
        #[arg(long = "reassignment-json-file", value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Wait until the moves are complete.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
    /// The reassignments in progress.
    Reassignments {
        #[arg(long)]
        json: bool,
    },
    /// Move every replica off a node (to live nodes in other racks, least loaded first), so
    /// that it can be stopped for good.
    Decommission {
        #[arg(long)]
        node: i32,
        /// Print the moves without making them.
        #[arg(long)]
        dry_run: bool,
        /// Wait until the moves are complete.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
}

pub fn run(args: &ClusterArgs) -> anyhow::Result<()> {
    let mut admin = args.brokers.connect()?;
    match &args.command {
        ClusterCommand::Status { json } => {
            let status = status(&mut admin)?;
            print_status(&status, *json)
        }
        ClusterCommand::Reassign {
            topic,
            partition,
            replicas,
            cancel,
            plan,
            wait,
            timeout_s,
        } => {
            let targets = match (plan, topic, partition) {
                (Some(plan), _, _) => reassign::read_plan(plan)?,
                (None, Some(topic), Some(partition)) => {
                    vec![reassign::PartitionTarget {
                        topic: topic.clone(),
                        partition: *partition,
                        replicas: replicas.clone().filter(|_| !cancel),
                    }]
                }
                _ => anyhow::bail!("name a partition (--topic, --partition) or a plan file"),
            };
            let wait = wait.then(|| Duration::from_secs(*timeout_s));
            reassign::submit(&mut admin, &targets, wait)
        }
        ClusterCommand::Reassignments { json } => {
            let ongoing = admin.list_reassignments()?;
            reassign::print_ongoing(&ongoing, *json)
        }
        ClusterCommand::Decommission {
            node,
            dry_run,
            wait,
            timeout_s,
        } => {
            let cluster = admin.describe_cluster()?;
            let topics = admin.topics(None)?;
            let plan = reassign::drain_plan(*node, &cluster, &topics)?;
            if plan.is_empty() {
                println!("node {node} holds no replica");
                return Ok(());
            }
            if *dry_run {
                for target in &plan {
                    let replicas = target.replicas.as_deref().unwrap_or_default();
                    println!("{}-{}: {replicas:?}", target.topic, target.partition);
                }
                return Ok(());
            }
            let wait = wait.then(|| Duration::from_secs(*timeout_s));
            reassign::submit(&mut admin, &plan, wait)
        }
    }
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub cluster_id: String,
    pub controller: i32,
    pub quorum_leader: i32,
    pub quorum_epoch: i32,
    pub quorum_high_watermark: i64,
    /// By node id: every live broker and every voter.
    pub nodes: Vec<NodeStatus>,
    pub partitions: usize,
    pub under_replicated: Vec<String>,
    pub offline: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: i32,
    /// HOST:PORT clients reach it at; None for a voter the broker did not describe (one
    /// not registered, or fenced where DescribeCluster v2 is not served).
    pub address: Option<String>,
    pub rack: Option<String>,
    /// It serves clients: registered and not fenced.
    pub live: bool,
    pub voter: bool,
    /// Metadata log entries it is behind the quorum's high watermark (voters the leader
    /// knows only).
    pub metadata_lag: Option<i64>,
    /// Milliseconds since the quorum's leader last heard from it.
    pub last_contact_ms: Option<i64>,
    pub leads: usize,
    pub replicas: usize,
}

pub fn status(admin: &mut Admin) -> anyhow::Result<Status> {
    let cluster = admin.describe_cluster()?;
    let quorum = admin.describe_quorum()?;
    let topics = admin.topics(None)?;
    Ok(assemble(cluster, quorum, &topics, clock::now_ms()))
}

fn assemble(cluster: ClusterInfo, quorum: QuorumInfo, topics: &[TopicInfo], now: i64) -> Status {
    let mut nodes: BTreeMap<i32, NodeStatus> = BTreeMap::new();
    let blank = |node: i32| NodeStatus {
        node,
        address: None,
        rack: None,
        live: false,
        voter: false,
        metadata_lag: None,
        last_contact_ms: None,
        leads: 0,
        replicas: 0,
    };
    for broker in &cluster.brokers {
        let status = nodes
            .entry(broker.node)
            .or_insert_with(|| blank(broker.node));
        status.address = Some(format!("{}:{}", broker.host, broker.port));
        status.rack = broker.rack.clone();
        status.live = !broker.fenced;
    }
    let members = quorum.voters.iter().map(|voter| (voter, true));
    let members = members.chain(quorum.observers.iter().map(|observer| (observer, false)));
    for (voter, votes) in members {
        let status = nodes.entry(voter.node).or_insert_with(|| blank(voter.node));
        status.voter = votes;
        status.metadata_lag = (voter.log_end_offset >= 0)
            .then(|| (quorum.high_watermark - voter.log_end_offset).max(0));
        status.last_contact_ms =
            (voter.last_fetch_timestamp >= 0).then(|| (now - voter.last_fetch_timestamp).max(0));
    }
    let mut partitions = 0;
    let mut under_replicated = Vec::new();
    let mut offline = Vec::new();
    for topic in topics {
        for partition in &topic.partitions {
            partitions += 1;
            let name = format!("{}-{}", topic.name, partition.partition);
            if partition.leader < 0 {
                offline.push(name.clone());
            } else if let Some(leader) = nodes.get_mut(&partition.leader) {
                leader.leads += 1;
            }
            if partition.isr.len() < partition.replicas.len() {
                under_replicated.push(name);
            }
            for replica in &partition.replicas {
                nodes
                    .entry(*replica)
                    .or_insert_with(|| blank(*replica))
                    .replicas += 1;
            }
        }
    }
    Status {
        cluster_id: cluster.cluster_id,
        controller: cluster.controller,
        quorum_leader: quorum.leader,
        quorum_epoch: quorum.epoch,
        quorum_high_watermark: quorum.high_watermark,
        nodes: nodes.into_values().collect(),
        partitions,
        under_replicated,
        offline,
    }
}

fn print_status(status: &Status, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    println!(
        "cluster {}, controller {}",
        status.cluster_id, status.controller
    );
    println!(
        "metadata quorum: leader {}, epoch {}, high watermark {}",
        status.quorum_leader, status.quorum_epoch, status.quorum_high_watermark
    );
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|node| {
            vec![
                node.node.to_string(),
                node.address.clone().unwrap_or_else(dash),
                node.rack.clone().unwrap_or_else(dash),
                if node.live { "live" } else { "down" }.to_string(),
                if node.voter { "yes" } else { "no" }.to_string(),
                node.metadata_lag.map_or_else(dash, |lag| lag.to_string()),
                node.last_contact_ms
                    .map_or_else(dash, |ms| format!("{:.1} s", ms as f64 / 1000.0)),
                node.leads.to_string(),
                node.replicas.to_string(),
            ]
        })
        .collect();
    let header = [
        "NODE",
        "ADDRESS",
        "RACK",
        "STATE",
        "VOTER",
        "METADATA-LAG",
        "LAST-CONTACT",
        "LEADS",
        "REPLICAS",
    ];
    print_table(&header, &rows);
    println!(
        "partitions: {}, under-replicated: {}, offline: {}",
        status.partitions,
        status.under_replicated.len(),
        status.offline.len()
    );
    for (what, names) in [
        ("under-replicated", &status.under_replicated),
        ("offline", &status.offline),
    ] {
        if !names.is_empty() {
            println!("{what}: {}", names.join(", "));
        }
    }
    Ok(())
}
