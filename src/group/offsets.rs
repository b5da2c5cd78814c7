//! Committed offsets on the coordinator shard: OffsetCommit, OffsetFetch, OffsetDelete, and
//! the expiry of offsets of empty groups (`offsets.retention.minutes`).
//!
//! A commit is validated against the group, written to the group's `__consumer_offsets`
//! partition, and applied to memory only once durable; the record's log offset orders commits
//! that complete together, the same way a replay orders them.

use crate::ids::PartitionId;
use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::ResponseError;

use super::records::{self, OffsetValue, RecordKey};
use super::state::CommittedOffset;
use super::Host;
use super::{write, CommitArgs, GroupReply, GroupState};
use crate::limits::OFFSET_METADATA_BYTES_MAX;
use crate::metadata::now_ms;
use crate::runtime::clock;

pub async fn commit(shard: &Rc<impl Host>, partition: PartitionId, args: CommitArgs) -> GroupReply {
    if let Err(error) = validate(shard, &args) {
        return GroupReply::Commit(vec![error.code(); args.offsets.len()]);
    }
    let now = now_ms();
    let mut codes = vec![0i16; args.offsets.len()];
    let mut writes = Vec::new();
    let mut values = Vec::new();
    for (index, (topic, part, offset, epoch, metadata)) in args.offsets.iter().enumerate() {
        if metadata.len() > OFFSET_METADATA_BYTES_MAX {
            codes[index] = ResponseError::OffsetMetadataTooLarge.code();
            continue;
        }
        let known = shard
            .partition_count(topic)
            .is_some_and(|count| (0..count).contains(part));
        if !known {
            codes[index] = ResponseError::UnknownTopicOrPartition.code();
            continue;
        }
        let value = OffsetValue {
            offset: *offset,
            leader_epoch: *epoch,
            metadata: metadata.clone(),
            commit_timestamp_ms: now,
        };
        let key = RecordKey::Offset {
            group: args.group.clone(),
            topic: topic.clone(),
            partition: *part,
        };
        writes.push((key, Some(records::encode_offset(&value))));
        values.push((index, topic.clone(), *part, value));
    }
    if values.is_empty() {
        return GroupReply::Commit(codes);
    }
    let first = match write(shard, partition, writes).await {
        Ok(first) => first,
        Err(error) => {
            values
                .iter()
                .for_each(|(index, ..)| codes[*index] = error.code());
            return GroupReply::Commit(codes);
        }
    };
    let mut groups = shard.coordinator().groups.borrow_mut();
    if let Some(group) = groups.get_mut(&args.group) {
        for (position, (_, topic, part, value)) in values.into_iter().enumerate() {
            let committed = CommittedOffset {
                value,
                record_offset: first + position as i64,
            };
            let slot = group.offsets.entry((topic, part));
            match slot {
                std::collections::hash_map::Entry::Occupied(mut old) => {
                    if old.get().record_offset < committed.record_offset {
                        old.insert(committed);
                    }
                }
                std::collections::hash_map::Entry::Vacant(free) => {
                    free.insert(committed);
                }
            }
        }
    }
    GroupReply::Commit(codes)
}

/// Kafka's checks for a classic group, creating the group for a "simple" commit
/// (generation -1, no member) when it does not exist.
fn validate(shard: &Rc<impl Host>, args: &CommitArgs) -> Result<(), ResponseError> {
    let mut groups = shard.coordinator().groups.borrow_mut();
    if !groups.contains_key(&args.group) {
        if args.generation >= 0 || !args.member_id.is_empty() {
            return Err(if args.group_id_not_found {
                ResponseError::GroupIdNotFound
            } else {
                ResponseError::IllegalGeneration
            });
        }
        let group = shard.coordinator().new_group(&args.group);
        groups.insert(args.group.clone(), group);
    }
    let group = groups.get_mut(&args.group).expect("inserted above");
    group.validate_commit(
        &args.member_id,
        args.instance_id.as_deref(),
        args.generation,
        clock::now(),
    )
}

/// OffsetFetch: the committed offsets of `topics` (all of the group's when `None`).
pub fn fetch(
    shard: &Rc<impl Host>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> GroupReply {
    let groups = shard.coordinator().groups.borrow();
    let offsets = groups.get(group).map(|g| &g.offsets);
    let found = |topic: &str, partition: i32| {
        offsets
            .and_then(|o| o.get(&(topic.to_string(), partition)))
            .map(|c| c.value.clone())
    };
    let result = match topics {
        Some(topics) => topics
            .into_iter()
            .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| (topic.clone(), p)))
            .map(|(topic, p)| {
                let value = found(&topic, p);
                (topic, p, value)
            })
            .collect(),
        None => {
            let mut all: Vec<_> = offsets
                .into_iter()
                .flatten()
                .map(|((t, p), c)| (t.clone(), *p, Some(c.value.clone())))
                .collect();
            all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            all
        }
    };
    GroupReply::Offsets(result)
}

/// OffsetDelete: removes committed offsets of partitions the group does not consume.
pub async fn delete(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    group: &str,
    partitions: Vec<(String, i32)>,
) -> GroupReply {
    let mut codes = vec![0i16; partitions.len()];
    let mut tombstones = Vec::new();
    {
        let mut groups = shard.coordinator().groups.borrow_mut();
        let Some(entry) = groups.get_mut(group) else {
            return GroupReply::Error(ResponseError::GroupIdNotFound);
        };
        if entry.state == GroupState::Dead {
            return GroupReply::Error(ResponseError::GroupIdNotFound);
        }
        let subscribed = if entry.state == GroupState::Empty {
            Vec::new()
        } else {
            match entry.subscribed_topics() {
                Some(topics) => topics,
                None => return GroupReply::Error(ResponseError::NonEmptyGroup),
            }
        };
        for (index, (topic, part)) in partitions.iter().enumerate() {
            if subscribed.contains(topic) {
                codes[index] = ResponseError::GroupSubscribedToTopic.code();
                continue;
            }
            if entry.offsets.remove(&(topic.clone(), *part)).is_some() {
                let key = RecordKey::Offset {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *part,
                };
                tombstones.push((key, None));
            }
        }
    }
    if !tombstones.is_empty() {
        if let Err(error) = write(shard, partition, tombstones).await {
            return GroupReply::Error(error);
        }
    }
    GroupReply::DeleteOffsets(codes)
}

/// Expires the offsets of empty groups older than `offsets.retention.minutes` (counted from
/// when the group became empty, or from the commit for groups that never had members), and
/// removes empty groups left with no offsets, however recently they became empty (as Kafka
/// does). Both get tombstones.
pub async fn expire(shard: &Rc<impl Host>) {
    let retention = shard.coordinator().config.offsets_retention_ms;
    let now = now_ms();
    let count = shard.partition_count(super::OFFSETS_TOPIC).unwrap_or(1);
    let mut writes: HashMap<PartitionId, Vec<(RecordKey, Option<bytes::Bytes>)>> = HashMap::new();
    {
        let mut groups = shard.coordinator().groups.borrow_mut();
        let loaded = shard.coordinator().loaded.borrow();
        let mut dead = Vec::new();
        for group in groups.values_mut() {
            let partition = super::partition_for(&group.id, count);
            if group.state != GroupState::Empty || loaded.get(&partition) != Some(&true) {
                continue;
            }
            let records = writes.entry(partition).or_default();
            let simple = group.protocol_type.is_none();
            let since = group.state_since_ms;
            group.offsets.retain(|(topic, part), committed| {
                let base = if simple {
                    committed.value.commit_timestamp_ms
                } else {
                    since.max(committed.value.commit_timestamp_ms)
                };
                let keep = base.saturating_add(retention) > now;
                if !keep {
                    let key = RecordKey::Offset {
                        group: group.id.clone(),
                        topic: topic.clone(),
                        partition: *part,
                    };
                    records.push((key, None));
                }
                keep
            });
            // As in Kafka, an Empty group without offsets goes at the next check, whatever
            // its age: otherwise the groups a flood of JoinGroup leaves behind (random ids)
            // would fill GROUPS_PER_SHARD_MAX and lock new groups out for the retention time.
            if group.offsets.is_empty() && group.is_empty_of_members() {
                records.push((
                    RecordKey::Group {
                        group: group.id.clone(),
                    },
                    None,
                ));
                dead.push(group.id.clone());
            }
        }
        // One line, not one per group: a flood can leave thousands behind.
        match dead.as_slice() {
            [] => {}
            [only] => tracing::info!(group = %only, "removing empty group without offsets"),
            [first, ..] => {
                tracing::info!(count = dead.len(), %first, "removing empty groups without offsets")
            }
        }
        for id in dead {
            groups.remove(&id);
        }
    }
    for (partition, records) in writes {
        if records.is_empty() {
            continue;
        }
        if let Err(error) = write(shard, partition, records).await {
            tracing::warn!(?error, %partition, "writing offset expiry tombstones failed");
        }
    }
}
