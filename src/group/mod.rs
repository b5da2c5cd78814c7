//! Consumer groups (classic protocol) and committed offsets.
//!
//! Placement: the coordinator of group G is the shard that owns partition
//! `abs(javaHash(G)) % N` of the internal topic `__consumer_offsets` (N is the topic's
//! partition count, `offsets.topic.num.partitions` when the controller created it). The hash
//! is Java's `String.hashCode`, so a group lands on the same partition number as in Kafka.
//! Handlers on any shard call [`route`], which runs the call here or sends it over the mesh
//! as `ShardRequest::Group`; JoinGroup and SyncGroup replies may take a whole rebalance.
//!
//! Per-shard: each shard has one [`Coordinator`] holding the groups of the offsets partitions
//! it owns. Group membership and offsets are records in those partitions (Kafka's schemas,
//! see `records`), written through the normal partition log and answered only after
//! `fdatasync`; at start each owned partition is replayed, and until that finishes its groups
//! answer COORDINATOR_LOAD_IN_PROGRESS. No `RefCell` borrow is held across an `.await`.
//!
//! Deadlines (session expiry, rebalance timeouts) are run by a timer loop that polls only the
//! groups `schedule` says are due, so that the work of a request does not grow with the number
//! of groups or members on the shard.
//!
//! Transactional offset commits (TxnOffsetCommit) are written, as Kafka writes them, as
//! transactional batches of the committing producer in the group's partition, and held
//! pending in the group until the transaction's marker reaches that partition: markers for
//! `__consumer_offsets` come through [`write_marker`], which writes the marker on the
//! partition's coordinator shard and then commits or drops the pending offsets. A replay
//! does the same with the markers it reads.

mod host;
mod load;
mod offsets;
mod ops;
pub mod records;
mod schedule;
pub mod state;

use crate::ids::{Offset, PartitionId, ShardId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use crate::config::GroupConfig;
use crate::limits;
use crate::metadata::now_ms;
use crate::partition::producer_state;
use crate::partition::TopicPartition;
use crate::partition::{WriteMarkerInput, WriteMarkerOutput};
use crate::protocol::control::TxnMarker;
use crate::protocol::record_batch::{self, encode_plain_batch, PlainRecord};
use crate::runtime;
use crate::runtime::clock;
use crate::sync::Notify;
use records::{OffsetValue, RecordKey};
use state::{Group, GroupState, JoinArgs};

pub use host::Host;
pub(crate) use load::for_each_record;
pub use load::{partition_opened, partition_removed};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The offsets partition of `group_id` among `partitions`: Kafka's
/// `Utils.abs(groupId.hashCode()) % partitions`.
pub fn partition_for(group_id: &str, partitions: i32) -> PartitionId {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    PartitionId(positive % partitions.max(1))
}

/// A group operation, routed to the group's coordinator shard.
#[derive(Debug)]
pub enum GroupCall {
    Join(String, JoinArgs),
    Sync(SyncArgs),
    Heartbeat {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    },
    /// (member id, group.instance.id) per leaving member.
    Leave(String, Vec<(String, Option<String>)>),
    Describe(String),
    /// This shard's groups, for ListGroups (sent to every shard).
    List,
    Delete(String),
    Commit(CommitArgs),
    /// Committed offsets of the given partitions, or of all partitions when `None`; with
    /// `require_stable`, partitions with offsets pending in a transaction answer
    /// UNSTABLE_OFFSET_COMMIT.
    FetchOffsets {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    },
    DeleteOffsets(String, Vec<(String, i32)>),
    /// TxnOffsetCommit: offsets committed in a producer's transaction.
    TxnCommit(TxnCommitArgs),
    /// A transaction marker for an offsets partition this shard owns (see
    /// [`write_marker`]).
    CompleteTxn(PartitionId, TxnMarker),
}

#[derive(Debug)]
pub struct SyncArgs {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug)]
pub struct CommitArgs {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    /// OffsetCommit v9+ answers a commit to an unknown group with GROUP_ID_NOT_FOUND.
    pub group_id_not_found: bool,
    /// (topic, partition, offset, leader epoch, metadata).
    pub offsets: Vec<(String, i32, i64, i32, String)>,
}

#[derive(Debug)]
pub struct TxnCommitArgs {
    pub commit: CommitArgs,
    pub producer_id: i64,
    pub epoch: i16,
}

/// A group's description for DescribeGroups.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group's line in ListGroups.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// The answer of the coordinator.
#[derive(Debug)]
pub enum GroupReply {
    /// The whole call failed with this error (coordinator errors, unknown group, ...).
    Error(ResponseError),
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Done,
    /// One result per leaving member, in request order.
    Leave(Vec<Result<(), ResponseError>>),
    Describe(GroupSummary),
    List(Vec<ListedGroup>),
    /// One error code per committed partition, in request order.
    Commit(Vec<i16>),
    /// (topic, partition, committed offset if any, error code).
    Offsets(Vec<(String, i32, Option<OffsetValue>, i16)>),
    /// One error code per partition, in request order.
    DeleteOffsets(Vec<i16>),
    /// The marker's error code.
    Marker(i16),
}

impl GroupCall {
    fn group(&self) -> Option<&str> {
        match self {
            GroupCall::Join(group, _)
            | GroupCall::Heartbeat { group, .. }
            | GroupCall::Leave(group, _)
            | GroupCall::Describe(group)
            | GroupCall::Delete(group)
            | GroupCall::FetchOffsets { group, .. }
            | GroupCall::DeleteOffsets(group, _) => Some(group),
            GroupCall::Sync(args) => Some(&args.group),
            GroupCall::Commit(args) => Some(&args.group),
            GroupCall::TxnCommit(args) => Some(&args.commit.group),
            GroupCall::List | GroupCall::CompleteTxn(..) => None,
        }
    }
}

/// The groups this shard coordinates. See the module documentation.
pub struct Coordinator {
    config: GroupConfig,
    groups: RefCell<HashMap<String, Group>>,
    /// When each group is next polled (see `schedule`).
    schedule: RefCell<schedule::Schedule>,
    /// `Group::size` summed over the groups, bounded by `GROUP_MEMBERS_PER_SHARD_MAX`; kept
    /// by `sized` around every call that may change a group's size.
    members_total: std::cell::Cell<usize>,
    /// Offsets partitions this shard owns: false while loading, true once loaded.
    loaded: RefCell<HashMap<PartitionId, bool>>,
    /// Woken when a deadline may have moved, so that the timer loop recomputes its sleep.
    wake: Notify,
    /// Partition count of `__consumer_offsets` when this shard opened its partitions.
    partition_count: std::cell::Cell<i32>,
    /// The groups holding offsets pending in each producer's transaction.
    txn_groups: RefCell<HashMap<i64, HashSet<String>>>,
    /// Producers whose transactional offsets are being written: one write at a time per
    /// producer, so that each continues the sequence of the last.
    txn_writing: RefCell<HashSet<i64>>,
    /// Woken when a producer's transactional offset write ends.
    txn_written: Notify,
}

impl Coordinator {
    pub fn new(config: &GroupConfig) -> Coordinator {
        Coordinator {
            config: config.clone(),
            groups: RefCell::new(HashMap::new()),
            schedule: RefCell::new(schedule::Schedule::default()),
            members_total: std::cell::Cell::new(0),
            loaded: RefCell::new(HashMap::new()),
            wake: Notify::new(),
            partition_count: std::cell::Cell::new(1),
            txn_groups: RefCell::new(HashMap::new()),
            txn_writing: RefCell::new(HashSet::new()),
            txn_written: Notify::new(),
        }
    }

    fn new_group(&self, id: &str) -> Group {
        let delay = Duration::from_millis(self.config.initial_rebalance_delay_ms as u64);
        Group::new(id.to_string(), now_ms(), delay)
    }

    /// Runs `change` on `group`, keeping `members_total` up to date.
    fn sized<R>(&self, group: &mut Group, change: impl FnOnce(&mut Group) -> R) -> R {
        let before = group.size();
        let result = change(group);
        let total = self.members_total.get() + group.size();
        self.members_total
            .set(total.checked_sub(before).expect("sizes were counted"));
        result
    }

    /// Whether this shard may take one more member or pending member.
    fn has_room_for_member(&self) -> bool {
        self.members_total.get() < limits::GROUP_MEMBERS_PER_SHARD_MAX
    }

    /// Has `group` polled by the timer loop at `at` (or earlier if already asked).
    fn schedule_poll(&self, group: &str, at: Instant) {
        if self.schedule.borrow_mut().at(group, at) {
            self.wake.notify_all();
        }
    }
}

/// Runs `call` on the coordinator of its group, this shard or another.
pub async fn route(shard: &Rc<impl Host>, call: GroupCall) -> GroupReply {
    let owner = match call.group() {
        Some(group) => match coordinator_shard(&**shard, OFFSETS_TOPIC, group) {
            Ok(owner) => owner,
            Err(error) => return GroupReply::Error(error),
        },
        None => shard.shard_id(),
    };
    if owner == shard.shard_id() {
        return handle_local(shard, call).await;
    }
    let reply = shard.call_coordinator(owner, call).await;
    reply.unwrap_or(GroupReply::Error(ResponseError::NotCoordinator))
}

/// Writes a transaction marker to an offsets partition on this node, through the group
/// coordinator of the shard owning it (`GroupCall::CompleteTxn`), which then settles the
/// offsets the transaction committed there.
pub async fn write_marker(shard: &Rc<impl Host>, input: WriteMarkerInput) -> WriteMarkerOutput {
    let partition = input.tp.partition;
    let call = GroupCall::CompleteTxn(partition, input.marker);
    let reply = match shard.owner(OFFSETS_TOPIC, partition) {
        Some(owner) if owner == shard.shard_id() => handle_local(shard, call).await,
        Some(owner) => shard
            .call_coordinator(owner, call)
            .await
            .unwrap_or(GroupReply::Error(ResponseError::NotLeaderOrFollower)),
        None => {
            let exists = shard
                .partition_count(OFFSETS_TOPIC)
                .is_some_and(|count| (0..count).contains(&partition.get()));
            GroupReply::Error(match exists {
                true => ResponseError::NotLeaderOrFollower,
                false => ResponseError::UnknownTopicOrPartition,
            })
        }
    };
    let error_code = match reply {
        GroupReply::Marker(code) => code,
        GroupReply::Error(error) => error.code(),
        _ => ResponseError::UnknownServerError.code(),
    };
    WriteMarkerOutput { error_code }
}

/// ListGroups: every shard's groups.
pub async fn list_all(shard: &Rc<impl Host>) -> Vec<ListedGroup> {
    let calls = ShardId::all(shard.shard_count()).map(|owner| async move {
        let reply = if owner == shard.shard_id() {
            handle_local(shard, GroupCall::List).await
        } else {
            let reply = shard.call_coordinator(owner, GroupCall::List);
            reply.await.unwrap_or(GroupReply::List(Vec::new()))
        };
        match reply {
            GroupReply::List(groups) => groups,
            _ => Vec::new(),
        }
    });
    let mut groups: Vec<ListedGroup> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups
}

/// The shard coordinating `group`, per this shard's table.
/// The shard coordinating `key` (a group, a transactional id) whose state lives in the
/// internal topic `topic`, per this shard's table.
pub(crate) fn coordinator_shard(
    shard: &impl Host,
    topic: &str,
    key: &str,
) -> Result<ShardId, ResponseError> {
    let count = shard
        .partition_count(topic)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let partition = partition_for(key, count);
    // The partition exists: not owned here means another node of the cluster holds it.
    shard
        .owner(topic, partition)
        .ok_or(ResponseError::NotCoordinator)
}

/// The offsets partition of `group` if this shard coordinates it and has loaded it.
fn local_partition(shard: &impl Host, group: &str) -> Result<PartitionId, ResponseError> {
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let count = shard
        .partition_count(OFFSETS_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let partition = partition_for(group, count);
    match shard.coordinator().loaded.borrow().get(&partition) {
        None => Err(ResponseError::NotCoordinator),
        Some(false) => Err(ResponseError::CoordinatorLoadInProgress),
        Some(true) => Ok(partition),
    }
}

/// Runs `call` on this shard, which should be its group's coordinator.
pub async fn handle_local(shard: &Rc<impl Host>, call: GroupCall) -> GroupReply {
    match call {
        GroupCall::List => return GroupReply::List(ops::list(shard)),
        GroupCall::CompleteTxn(partition, marker) => {
            return offsets::complete_txn(shard, partition, marker).await
        }
        _ => {}
    }
    let group = call.group().unwrap_or_default().to_string();
    let partition = match local_partition(&**shard, &group) {
        Ok(partition) => partition,
        Err(error) => return GroupReply::Error(error),
    };
    let reply = match call {
        GroupCall::Join(group, args) => ops::join(shard, partition, &group, args).await,
        GroupCall::Sync(args) => ops::sync(shard, partition, args).await,
        GroupCall::Heartbeat {
            group,
            member_id,
            instance_id,
            generation,
        } => ops::heartbeat(
            shard,
            &group,
            &member_id,
            instance_id.as_deref(),
            generation,
        ),
        GroupCall::Leave(group, members) => ops::leave(shard, &group, members),
        GroupCall::Describe(group) => ops::describe(shard, &group),
        GroupCall::Delete(group) => ops::delete(shard, partition, &group).await,
        GroupCall::Commit(args) => offsets::commit(shard, partition, args).await,
        GroupCall::FetchOffsets {
            group,
            topics,
            require_stable,
        } => offsets::fetch(shard, &group, topics, require_stable),
        GroupCall::TxnCommit(args) => offsets::txn_commit(shard, partition, args).await,
        GroupCall::DeleteOffsets(group, partitions) => {
            offsets::delete(shard, partition, &group, partitions).await
        }
        GroupCall::List | GroupCall::CompleteTxn(..) => unreachable!("answered above"),
    };
    after_change(shard, partition, &group);
    reply
}

/// After a request on `group`: ends its join phase at once if it can end, and otherwise has
/// the timer loop poll it soon, since the request may have set an earlier deadline. Costs
/// O(log groups), whatever the size of the group.
fn after_change(shard: &Rc<impl Host>, partition: PartitionId, group: &str) {
    let now = clock::now();
    let persist = {
        let mut groups = shard.coordinator().groups.borrow_mut();
        match groups.get_mut(group) {
            Some(g) if g.join_ready(now) => {
                let (_, became_empty) = shard.coordinator().sized(g, |g| g.poll(now, now_ms()));
                became_empty.then(|| g.value(None, now_ms()))
            }
            Some(_) => None,
            None => return,
        }
    };
    if let Some(value) = persist {
        spawn_group_write(shard, partition, group, value);
    }
    shard
        .coordinator()
        .schedule_poll(group, now + poll_interval_min());
}

/// Writes a group's metadata in the background (the group went empty): nobody waits on it,
/// and a failure only means a restart sees the previous membership, which then expires.
fn spawn_group_write(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    group: &str,
    value: records::GroupValue,
) {
    let record = (
        RecordKey::Group {
            group: group.to_string(),
        },
        Some(records::encode_group(&value)),
    );
    let shard = shard.clone();
    let group = group.to_string();
    runtime::spawn_into(shard.requests_queue(), async move {
        if let Err(error) = write(&shard, partition, vec![record], None).await {
            tracing::warn!(%group, ?error, "writing group metadata failed");
        }
    });
}

/// The producer a transactional offset commit is written for: its batches carry its id and
/// epoch, are marked transactional, and continue its sequence from `next_sequence`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxnProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub next_sequence: i32,
}

/// Appends records to an offsets partition and waits until they are durable; returns the
/// offset of the first record. Large writes are split into batches under the topic's limit.
/// With `producer`, the batches are that producer's transactional batches; a producer error
/// of the partition (an older epoch) is answered as such.
pub(crate) async fn write(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    records: Vec<(RecordKey, Option<Bytes>)>,
    mut producer: Option<TxnProducer>,
) -> Result<Offset, ResponseError> {
    let tp = TopicPartition {
        topic: OFFSETS_TOPIC.to_string(),
        partition,
    };
    let mut first_offset = None;
    let mut batch: Vec<PlainRecord> = Vec::new();
    let mut batch_bytes = 0;
    let mut records = records.into_iter().peekable();
    while let Some((key, value)) = records.next() {
        let key = records::encode_key(&key);
        batch_bytes += key.len() + value.as_ref().map_or(0, Bytes::len) + 32;
        batch.push(PlainRecord {
            timestamp: now_ms(),
            key: Some(key),
            value,
        });
        if batch_bytes < OFFSETS_BATCH_BYTES_MAX && records.peek().is_some() {
            continue;
        }
        let count = batch.len() as i32;
        let mut encoded = encode_plain_batch(std::mem::take(&mut batch), Compression::None)
            .map_err(|_| ResponseError::UnknownServerError)?;
        if let Some(producer) = &mut producer {
            record_batch::set_producer(
                &mut encoded,
                producer.producer_id,
                producer.epoch,
                producer.next_sequence,
                record_batch::ATTRIBUTE_TRANSACTIONAL,
            );
            producer.next_sequence = producer_state::last_sequence(producer.next_sequence, count);
        }
        batch_bytes = 0;
        let output = shard.append(tp.clone(), encoded.freeze()).await;
        if output.error_code != 0 {
            tracing::warn!(
                error = output.error_code,
                "__consumer_offsets append failed"
            );
            let error = ResponseError::try_from_code(output.error_code);
            return Err(match error {
                Some(error @ ResponseError::InvalidProducerEpoch) => error,
                _ => ResponseError::CoordinatorNotAvailable,
            });
        }
        first_offset.get_or_insert(output.base_offset);
    }
    Ok(first_offset.unwrap_or(Offset::NONE))
}

/// Records are cut into batches of about this size, well under max.message.bytes.
const OFFSETS_BATCH_BYTES_MAX: usize = 256 * 1024;
const _: () = assert!(OFFSETS_BATCH_BYTES_MAX * 2 < limits::MESSAGE_BYTES_MAX_DEFAULT);

/// The configs `__consumer_offsets` is created with (by the controller, at start).
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        // The cleaner keeps the latest record of each key (`partition::cleaner`).
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        (
            "segment.bytes".to_string(),
            limits::OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
        ),
    ])
}

/// The shard's group timer loop: session expiry, rebalance timeouts, the initial rebalance
/// delay, and the expiry of offsets of empty groups.
pub async fn run_timers(shard: Rc<impl Host>) {
    let retention_interval = Duration::from_millis(
        shard
            .coordinator()
            .config
            .offsets_retention_check_interval_ms
            .max(10),
    );
    let mut next_retention = clock::now() + retention_interval;
    while !shard.is_shutting_down() {
        let wake = shard.coordinator().wake.notified();
        let now = clock::now();
        poll_due(&shard, now);
        let mut next = shard
            .coordinator()
            .schedule
            .borrow()
            .next()
            .unwrap_or(now + Duration::from_secs(1));
        if now >= next_retention {
            offsets::expire(&shard).await;
            next_retention = now + retention_interval;
        }
        next = next.min(next_retention);
        let sleep = next
            .saturating_duration_since(clock::now())
            .min(Duration::from_secs(1));
        let timer = Box::pin(runtime::sleep(sleep));
        futures::future::select(timer, Box::pin(wake)).await;
    }
}

fn poll_interval_min() -> Duration {
    Duration::from_millis(limits::GROUP_POLL_INTERVAL_MS_MIN)
}

/// Polls the groups that are due and schedules each at its next deadline, but no sooner than
/// `GROUP_POLL_INTERVAL_MS_MIN` from now: deadlines run at most that late, and a group whose
/// members' deadlines are all different is not scanned once per member.
fn poll_due(shard: &Rc<impl Host>, now: Instant) {
    let due = shard.coordinator().schedule.borrow_mut().take_due(now);
    let mut writes = Vec::new();
    {
        let mut groups = shard.coordinator().groups.borrow_mut();
        let mut schedule = shard.coordinator().schedule.borrow_mut();
        for id in due {
            let Some(group) = groups.get_mut(&id) else {
                continue;
            };
            if group.state == GroupState::Dead {
                continue;
            }
            let (deadline, became_empty) =
                shard.coordinator().sized(group, |g| g.poll(now, now_ms()));
            if let Some(deadline) = deadline {
                schedule.at(&id, deadline.max(now + poll_interval_min()));
            }
            if became_empty {
                writes.push((id, group.value(None, now_ms())));
            }
        }
    }
    let count = shard.partition_count(OFFSETS_TOPIC).unwrap_or(1);
    for (group, value) in writes {
        spawn_group_write(shard, partition_for(&group, count), &group, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups land on the partition Kafka would pick (Java's String.hashCode, then abs).
    #[test]
    fn partition_matches_kafka() {
        // "my-group".hashCode() == -1_906_497_762 in Java; abs % 50 == 12.
        assert_eq!(partition_for("my-group", 50), PartitionId(12));
        assert_eq!(partition_for("", 50), PartitionId(0));
        assert!((0..16).contains(&partition_for("any group at all", 16).get()));
    }
}
