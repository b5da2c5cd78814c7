//! Output of `corelog group`: aligned tables for people, JSON for scripts, and the per-partition
//! view of a group (committed offset, log end offset, lag, owning member) that `describe` shows.
//!
//! A group keeps its committed offsets (and a member its assignment) of a topic after the topic
//! is deleted. `describe` still shows every other partition and marks those as deleted, with
//! no log end offset or lag, where it used to fail on UNKNOWN_TOPIC_OR_PARTITION; Kafka's
//! `kafka-consumer-groups.sh` made the same change (KAFKA-17218), showing `-` there.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::client::admin::Admin;
use crate::client::groups::{CommittedOffset, GroupDescription, GroupListing};
use crate::topic::render::print_table;

/// One partition of a group: committed or assigned, or both.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionRow {
    pub topic: String,
    pub partition: i32,
    /// None: the group has no committed offset there.
    pub committed_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    /// Log end minus committed; None without a committed offset or a log.
    pub lag: Option<i64>,
    pub member_id: Option<String>,
    /// The partition no longer exists: its topic was deleted (ListOffsets answered
    /// UNKNOWN_TOPIC_OR_PARTITION). It has no log end offset and no lag.
    pub deleted: bool,
}

pub fn print_list(groups: &[GroupListing], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(groups)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| vec![g.group.clone(), g.state.clone(), g.protocol_type.clone()])
        .collect();
    print_table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows);
    Ok(())
}

/// The union of committed and assigned partitions, with log end offsets and lag; partitions
/// that no longer exist are kept and marked deleted.
pub fn partition_rows(
    admin: &mut Admin,
    description: &GroupDescription,
    offsets: &[CommittedOffset],
) -> anyhow::Result<Vec<PartitionRow>> {
    let mut rows: BTreeMap<(String, i32), PartitionRow> = BTreeMap::new();
    for offset in offsets {
        entry(&mut rows, &offset.topic, offset.partition).committed_offset = Some(offset.offset);
    }
    for member in &description.members {
        let assigned = member.assignment.iter().flat_map(|a| &a.topics);
        for (topic, partitions) in assigned {
            for &partition in partitions {
                entry(&mut rows, topic, partition).member_id = Some(member.member_id.clone());
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in rows.keys() {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    for (topic, partitions) in by_topic {
        for (partition, end) in admin.log_end_offsets(&topic, &partitions)? {
            let Some(row) = rows.get_mut(&(topic.clone(), partition)) else {
                continue;
            };
            match end {
                Some(end) => {
                    row.log_end_offset = Some(end);
                    row.lag = row.committed_offset.map(|c| (end - c).max(0));
                }
                None => row.deleted = true,
            }
        }
    }
    Ok(rows.into_values().collect())
}

fn entry<'a>(
    rows: &'a mut BTreeMap<(String, i32), PartitionRow>,
    topic: &str,
    partition: i32,
) -> &'a mut PartitionRow {
    rows.entry((topic.to_string(), partition))
        .or_insert_with(|| PartitionRow {
            topic: topic.to_string(),
            partition,
            committed_offset: None,
            log_end_offset: None,
            lag: None,
            member_id: None,
            deleted: false,
        })
}

/// What the LOG-END-OFFSET column shows for a partition that no longer exists.
const DELETED: &str = "deleted";

fn or_dash<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or("-".to_string(), T::to_string)
}

pub fn print_describe(
    group: &GroupDescription,
    partitions: &[PartitionRow],
    as_json: bool,
) -> anyhow::Result<()> {
    let total_lag: i64 = partitions.iter().filter_map(|p| p.lag).sum();
    if as_json {
        let value = json!({
            "group": group.group,
            "state": group.state,
            "protocol_type": group.protocol_type,
            "protocol": group.protocol,
            "members": group.members,
            "partitions": partitions,
            "total_lag": total_lag,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let dash = |value: &str| {
        if value.is_empty() {
            "-".to_string()
        } else {
            value.to_string()
        }
    };
    println!("GROUP          {}", group.group);
    println!("STATE          {}", group.state);
    println!("PROTOCOL-TYPE  {}", dash(&group.protocol_type));
    println!("PROTOCOL       {}", dash(&group.protocol));
    println!("MEMBERS        {}", group.members.len());
    println!("TOTAL-LAG      {total_lag}");
    println!();
    if !group.members.is_empty() {
        print_members(group);
        println!();
    }
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                or_dash(&p.committed_offset),
                if p.deleted {
                    DELETED.to_string()
                } else {
                    or_dash(&p.log_end_offset)
                },
                or_dash(&p.lag),
                or_dash(&p.member_id),
            ]
        })
        .collect();
    print_table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
        ],
        &rows,
    );
    if partitions.iter().any(|p| p.deleted) {
        println!();
        println!(
            "{DELETED}: the partition no longer exists (its topic was deleted); the group keeps \
             its committed offset until the group is deleted or its offsets expire"
        );
    }
    Ok(())
}

fn print_members(group: &GroupDescription) {
    let rows: Vec<Vec<String>> = group
        .members
        .iter()
        .map(|m| {
            let assignment = match &m.assignment {
                None => "(undecodable assignment)".to_string(),
                Some(a) => a
                    .topics
                    .iter()
                    .map(|(topic, partitions)| format!("{topic}:{partitions:?}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            vec![
                m.member_id.clone(),
                or_dash(&m.instance_id),
                m.client_id.clone(),
                m.host.clone(),
                assignment,
            ]
        })
        .collect();
    print_table(
        &[
            "MEMBER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
            "HOST",
            "ASSIGNMENT",
        ],
        &rows,
    );
}
