//! Committed offsets on the coordinator shard: OffsetCommit, TxnOffsetCommit and its
//! markers, OffsetFetch, OffsetDelete, and the expiry of offsets of empty groups
//! (`offsets.retention.minutes`).
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
use super::{write, CommitArgs, GroupReply, GroupState, TxnCommitArgs, TxnProducer, OFFSETS_TOPIC};
use crate::limits::OFFSET_METADATA_BYTES_MAX;
use crate::metadata::now_ms;
use crate::partition::{producer_state, TopicPartition, WriteMarkerInput};
use crate::protocol::control::TxnMarker;
use crate::runtime::clock;

pub async fn commit(shard: &Rc<impl Host>, partition: PartitionId, args: CommitArgs) -> GroupReply {
    if let Err(error) = validate(shard, &args) {
        return GroupReply::Commit(vec![error.code(); args.offsets.len()]);
    }
    write_offsets(shard, partition, &args, None).await
}

/// TxnOffsetCommit: the offsets are written as the producer's transactional batch and held
/// pending until its transaction's marker reaches this partition (`complete_txn`).
pub async fn txn_commit(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    args: TxnCommitArgs,
) -> GroupReply {
    let commit = &args.commit;
    // Kafka's transactional commits need no member (pre-KIP-447 producers send none).
    let simple =
        commit.generation < 0 && commit.member_id.is_empty() && commit.instance_id.is_none();
    let valid = match simple {
        true => simple_group(shard, &commit.group),
        false => validate(shard, commit),
    };
    if let Err(error) = valid {
        return GroupReply::Commit(vec![error.code(); commit.offsets.len()]);
    }
    let _slot = TxnWriteSlot::take(&**shard, args.producer_id).await;
    let tp = TopicPartition {
        topic: OFFSETS_TOPIC.to_string(),
        partition,
    };
    let last = shard
        .local_partition(&tp)
        .and_then(|p| p.producer_last_sequence(args.producer_id));
    let next_sequence = match last {
        Some((epoch, last_sequence)) if epoch == args.epoch => {
            producer_state::last_sequence(last_sequence, 1)
        }
        _ => 0,
    };
    let producer = TxnProducer {
        producer_id: args.producer_id,
        epoch: args.epoch,
        next_sequence,
    };
    write_offsets(shard, partition, commit, Some(producer)).await
}

/// One transactional offset write at a time per producer (see `Coordinator::txn_writing`),
/// released when dropped, even by a request that was abandoned.
struct TxnWriteSlot<'a, H: Host> {
    shard: &'a H,
    producer_id: i64,
}

impl<'a, H: Host> TxnWriteSlot<'a, H> {
    async fn take(shard: &'a H, producer_id: i64) -> TxnWriteSlot<'a, H> {
        loop {
            let written = shard.coordinator().txn_written.notified();
            if shard
                .coordinator()
                .txn_writing
                .borrow_mut()
                .insert(producer_id)
            {
                return TxnWriteSlot { shard, producer_id };
            }
            written.await;
        }
    }
}

impl<H: Host> Drop for TxnWriteSlot<'_, H> {
    fn drop(&mut self) {
        let coordinator = self.shard.coordinator();
        coordinator
            .txn_writing
            .borrow_mut()
            .remove(&self.producer_id);
        coordinator.txn_written.notify_all();
    }
}

/// Checks and writes the offsets of a commit, and applies them once durable: as committed,
/// or, for a transaction's `producer`, as pending in it.
async fn write_offsets(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    args: &CommitArgs,
    producer: Option<TxnProducer>,
) -> GroupReply {
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
    let first = match write(shard, partition, writes, producer).await {
        Ok(first) => first,
        Err(error) => {
            values
                .iter()
                .for_each(|(index, ..)| codes[*index] = error.code());
            return GroupReply::Commit(codes);
        }
    };
    let coordinator = shard.coordinator();
    let mut groups = coordinator.groups.borrow_mut();
    if let Some(group) = groups.get_mut(&args.group) {
        let target = match producer {
            None => &mut group.offsets,
            Some(producer) => {
                coordinator
                    .txn_groups
                    .borrow_mut()
                    .entry(producer.producer_id)
                    .or_default()
                    .insert(args.group.clone());
                group
                    .pending_offsets
                    .entry(producer.producer_id)
                    .or_default()
            }
        };
        for (position, (_, topic, part, value)) in values.into_iter().enumerate() {
            let committed = CommittedOffset {
                value,
                record_offset: first + position as i64,
            };
            keep_newer(target, (topic, part), committed);
        }
    }
    GroupReply::Commit(codes)
}

/// Stores `committed` for `partition` unless a later record already set it: the record's log
/// offset orders commits that complete together, as a replay orders them.
pub(super) fn keep_newer(
    offsets: &mut HashMap<(String, i32), CommittedOffset>,
    partition: (String, i32),
    committed: CommittedOffset,
) {
    match offsets.entry(partition) {
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

/// A transaction marker for offsets partition `partition`, owned here: written through the
/// partition, then the offsets the producer's transaction committed to this partition's
/// groups are committed (or, for an abort, dropped). Refused while the partition is loading,
/// so that no marker lands past the replay without being applied; the transaction
/// coordinator sends it again.
pub async fn complete_txn(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    marker: TxnMarker,
) -> GroupReply {
    match shard.coordinator().loaded.borrow().get(&partition) {
        None => return GroupReply::Marker(ResponseError::NotLeaderOrFollower.code()),
        Some(false) => return GroupReply::Marker(ResponseError::CoordinatorLoadInProgress.code()),
        Some(true) => {}
    }
    let input = WriteMarkerInput {
        tp: TopicPartition {
            topic: OFFSETS_TOPIC.to_string(),
            partition,
        },
        marker,
    };
    let output = shard.write_marker_here(input).await;
    if output.error_code == 0 {
        settle_txn(
            shard.coordinator(),
            partition,
            marker.producer_id,
            marker.commit,
        );
    }
    GroupReply::Marker(output.error_code)
}

/// Commits or drops the offsets producer `producer_id` holds pending in the groups of offsets
/// partition `partition`.
fn settle_txn(
    coordinator: &super::Coordinator,
    partition: PartitionId,
    producer_id: i64,
    commit: bool,
) {
    let count = coordinator.partition_count.get();
    let mut txn_groups = coordinator.txn_groups.borrow_mut();
    let Some(ids) = txn_groups.get_mut(&producer_id) else {
        return;
    };
    let mut groups = coordinator.groups.borrow_mut();
    ids.retain(|id| {
        if super::partition_for(id, count) != partition {
            return true;
        }
        let Some(group) = groups.get_mut(id) else {
            return false;
        };
        let pending = group.pending_offsets.remove(&producer_id);
        if let (Some(pending), true) = (pending, commit) {
            for (key, committed) in pending {
                keep_newer(&mut group.offsets, key, committed);
            }
        }
        false
    });
    if ids.is_empty() {
        txn_groups.remove(&producer_id);
    }
}

/// A group for commits without a member: created empty if it does not exist.
fn simple_group(shard: &Rc<impl Host>, group: &str) -> Result<(), ResponseError> {
    let mut groups = shard.coordinator().groups.borrow_mut();
    let entry = groups
        .entry(group.to_string())
        .or_insert_with(|| shard.coordinator().new_group(group));
    match entry.state {
        GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
        _ => Ok(()),
    }
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

/// OffsetFetch: the committed offsets of `topics` (all of the group's when `None`). With
/// `require_stable`, a partition with offsets pending in an open transaction answers
/// UNSTABLE_OFFSET_COMMIT (the client asks again), as in Kafka.
pub fn fetch(
    shard: &Rc<impl Host>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> GroupReply {
    let groups = shard.coordinator().groups.borrow();
    let group = groups.get(group);
    let found = |topic: String, partition: i32| {
        let key = (topic, partition);
        let unstable = require_stable
            && group.is_some_and(|g| g.pending_offsets.values().any(|p| p.contains_key(&key)));
        let value = group
            .and_then(|g| g.offsets.get(&key))
            .map(|c| c.value.clone());
        let (topic, partition) = key;
        match unstable {
            true => (
                topic,
                partition,
                None,
                ResponseError::UnstableOffsetCommit.code(),
            ),
            false => (topic, partition, value, 0),
        }
    };
    let result = match topics {
        Some(topics) => topics
            .into_iter()
            .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| (topic.clone(), p)))
            .map(|(topic, p)| found(topic, p))
            .collect(),
        None => {
            let mut all: Vec<_> = group
                .into_iter()
                .flat_map(|g| g.offsets.keys())
                .map(|(t, p)| found(t.clone(), *p))
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
        if let Err(error) = write(shard, partition, tombstones, None).await {
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
            if group.offsets.is_empty()
                && group.pending_offsets.is_empty()
                && group.is_empty_of_members()
            {
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
        if let Err(error) = write(shard, partition, records, None).await {
            tracing::warn!(?error, %partition, "writing offset expiry tombstones failed");
        }
    }
}
