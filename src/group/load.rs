//! Loading a `__consumer_offsets` partition when its shard opens it (or, when it is replicated,
//! when this shard's replica becomes its leader): the log is replayed from its start, the last
//! record per key wins and a null value deletes its key. Until the replay finishes, the
//! partition's groups answer COORDINATOR_LOAD_IN_PROGRESS; once the partition leaves (or its
//! leadership moves), NOT_COORDINATOR.

use crate::ids::{Offset, PartitionId};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Instant;

use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::offsets::keep_newer;
use super::records::{self, GroupValue, RecordKey};
use super::state::CommittedOffset;
use super::Host;
use super::{partition_for, OFFSETS_TOPIC};
use crate::partition::TopicPartition;
use crate::protocol::control::{CONTROL_ABORT, CONTROL_COMMIT};
use crate::runtime;
use crate::runtime::clock;

/// What the replay of one partition found for one group.
#[derive(Default)]
struct Replayed {
    metadata: Option<GroupValue>,
    offsets: HashMap<(String, i32), CommittedOffset>,
    /// Offsets of transactions whose marker was not (yet) in the log, by producer id.
    pending: HashMap<i64, HashMap<(String, i32), CommittedOffset>>,
}

/// Called by the shard when it opened offsets partition `partition`, or its replica here began
/// to lead it: starts loading it.
pub fn partition_opened(shard: &Rc<impl Host>, partition: PartitionId) {
    if let Some(count) = shard.partition_count(OFFSETS_TOPIC) {
        shard.coordinator().partition_count.set(count);
    }
    shard
        .coordinator()
        .loaded
        .borrow_mut()
        .insert(partition, false);
    let shard = shard.clone();
    runtime::spawn_into(shard.requests_queue(), async move {
        let started = Instant::now();
        let replayed = replay(&shard, partition).await;
        // The partition left this shard during the replay (its leadership moved): its groups
        // are another coordinator's now.
        if shard.coordinator().loaded.borrow().get(&partition) != Some(&false) {
            return;
        }
        match replayed {
            Ok(groups) => {
                let count = groups.len();
                install(&shard, groups);
                tracing::debug!(
                    %partition,
                    groups = count,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded consumer groups"
                );
            }
            Err(error) => tracing::error!(%partition, %error, "loading consumer groups failed"),
        }
        // Marked loaded even after a failure, so that the groups are served (empty) rather
        // than stuck in COORDINATOR_LOAD_IN_PROGRESS forever; the error is logged above.
        if let Some(state) = shard.coordinator().loaded.borrow_mut().get_mut(&partition) {
            *state = true;
        }
    });
}

/// Called by the shard when offsets partition `partition` left it (moved or deleted), or its
/// replica here stopped leading it.
pub fn partition_removed(shard: &Rc<impl Host>, partition: PartitionId) {
    let partition_count = shard.coordinator().partition_count.get();
    shard.coordinator().loaded.borrow_mut().remove(&partition);
    let mut groups = shard.coordinator().groups.borrow_mut();
    let gone: Vec<String> = groups
        .keys()
        .filter(|id| partition_for(id, partition_count) == partition)
        .cloned()
        .collect();
    let mut txn_groups = shard.coordinator().txn_groups.borrow_mut();
    for ids in txn_groups.values_mut() {
        ids.retain(|id| !gone.contains(id));
    }
    txn_groups.retain(|_, ids| !ids.is_empty());
    for id in gone {
        if let Some(mut group) = groups.remove(&id) {
            shard
                .coordinator()
                .sized(&mut group, |g| g.kill(crate::metadata::now_ms()));
        }
    }
}

async fn replay(
    shard: &Rc<impl Host>,
    partition: PartitionId,
) -> anyhow::Result<HashMap<String, Replayed>> {
    let mut groups: HashMap<String, Replayed> = HashMap::new();
    // The groups holding offsets of each producer's open transaction.
    let mut txn_groups: HashMap<i64, HashSet<String>> = HashMap::new();
    for_each_record(&**shard, OFFSETS_TOPIC, partition, |record| {
        if record.control {
            // A transaction marker settles the producer's pending offsets; other control
            // records (a replicated partition's leader entries) hold no group state.
            let kind = record.key.as_deref().and_then(control_type);
            let commit = match kind {
                Some(CONTROL_COMMIT) => true,
                Some(CONTROL_ABORT) => false,
                _ => return,
            };
            for id in txn_groups.remove(&record.producer_id).unwrap_or_default() {
                let Some(group) = groups.get_mut(&id) else {
                    continue;
                };
                let Some(pending) = group.pending.remove(&record.producer_id) else {
                    continue;
                };
                if commit {
                    for (key, committed) in pending {
                        keep_newer(&mut group.offsets, key, committed);
                    }
                }
            }
            return;
        }
        let Some(key) = record.key else { return };
        let key = match records::decode_key(&key) {
            Ok(key) => key,
            Err(error) => return tracing::warn!(%error, record.offset, "skipping record"),
        };
        let offset = Offset(record.offset);
        let transactional = record.transactional.then_some(record.producer_id);
        if let (Some(producer_id), RecordKey::Offset { group, .. }) = (transactional, &key) {
            txn_groups
                .entry(producer_id)
                .or_default()
                .insert(group.clone());
        }
        apply(&mut groups, key, record.value, offset, transactional);
    })
    .await?;
    Ok(groups)
}

/// The type of a control record from its key (version, type), if it is one.
fn control_type(key: &[u8]) -> Option<i16> {
    let bytes: [u8; 2] = key.get(2..4)?.try_into().ok()?;
    Some(i16::from_be_bytes(bytes))
}

/// Calls `apply` on every record of a coordinator's partition (here: `__consumer_offsets`,
/// `__transaction_state`) from its log start to its high watermark, in order, control
/// records (markers, a replicated partition's leader entries) included.
pub(crate) async fn for_each_record(
    shard: &impl Host,
    topic: &str,
    partition: PartitionId,
    mut apply: impl FnMut(Record),
) -> anyhow::Result<()> {
    let tp = TopicPartition {
        topic: topic.to_string(),
        partition,
    };
    let partition = shard
        .local_partition(&tp)
        .ok_or_else(|| anyhow::anyhow!("partition {partition} is not open"))?;
    let mut offset = partition.log_start_offset();
    let end = partition.high_watermark();
    while offset < end {
        let batches = partition.read(offset, 1 << 20).await?;
        if batches.is_empty() {
            break;
        }
        for batch in batches {
            let mut buf = batch;
            let set = RecordBatchDecoder::decode(&mut buf)?;
            for record in set.records {
                offset = offset.max(Offset(record.offset).next());
                apply(record);
            }
        }
        runtime::yield_if_needed().await;
    }
    Ok(())
}

fn apply(
    groups: &mut HashMap<String, Replayed>,
    key: RecordKey,
    value: Option<bytes::Bytes>,
    record_offset: Offset,
    transactional: Option<i64>,
) {
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            let entry = groups.entry(group).or_default();
            let decoded = value.map(|v| records::decode_offset(&v));
            match decoded {
                None => {
                    entry.offsets.remove(&(topic, partition));
                }
                Some(Ok(value)) => {
                    let committed = CommittedOffset {
                        value,
                        record_offset,
                    };
                    let target = match transactional {
                        Some(producer_id) => entry.pending.entry(producer_id).or_default(),
                        None => &mut entry.offsets,
                    };
                    target.insert((topic, partition), committed);
                }
                Some(Err(error)) => tracing::warn!(%error, %record_offset, "skipping offset"),
            }
        }
        RecordKey::Group { group } => match value.map(|v| records::decode_group(&v)) {
            None => {
                groups.remove(&group);
            }
            Some(Ok(value)) => groups.entry(group).or_default().metadata = Some(value),
            Some(Err(error)) => tracing::warn!(%error, %record_offset, "skipping group"),
        },
    }
}

fn install(shard: &Rc<impl Host>, replayed: HashMap<String, Replayed>) {
    let now = clock::now();
    let mut groups = shard.coordinator().groups.borrow_mut();
    let mut txn_groups = shard.coordinator().txn_groups.borrow_mut();
    for (id, found) in replayed {
        if found.metadata.is_none() && found.offsets.is_empty() && found.pending.is_empty() {
            continue;
        }
        for producer_id in found.pending.keys() {
            txn_groups
                .entry(*producer_id)
                .or_default()
                .insert(id.clone());
        }
        // Restored members must heartbeat or expire: the timer loop polls the group.
        shard.coordinator().schedule_poll(&id, now);
        let mut group = shard.coordinator().new_group(&id);
        if let Some(metadata) = found.metadata {
            shard
                .coordinator()
                .sized(&mut group, |g| g.restore(metadata, now));
        }
        group.offsets = found.offsets;
        group.pending_offsets = found.pending;
        groups.insert(id, group);
    }
    drop(groups);
}
