//! The owner-side operations on a partition, their request and reply types, and the one
//! trait (`PartitionOp`) by which the shard layer routes any of them to the partition's owner
//! without knowing what it does there.

use crate::ids::{LeaderEpoch, Offset, PartitionId};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{select, select_all, Either};
use kafka_protocol::ResponseError;

use super::Partition;
use crate::runtime;
use crate::runtime::clock;
use crate::sync::Latch;

/// An operation on one partition, run on the shard that owns it. The shard layer calls `run`
/// directly on the owner, or sends the operation there over the mesh and waits for its output.
pub trait PartitionOp: std::fmt::Debug + Send + 'static {
    type Output: Send + 'static;

    /// The partition it acts on.
    fn partition(&self) -> &TopicPartition;

    /// Its answer when the partition cannot be reached: unknown here, or its owner gone.
    fn refused(error: ResponseError) -> Self::Output;

    /// Runs it on the owner.
    fn run(self, partition: Rc<Partition>) -> impl Future<Output = Self::Output>;

    /// The leader epoch the client believes the partition is in (KIP-320), which the owner
    /// checks before running it (see `leader_epoch_fence`); UNKNOWN skips the check.
    fn current_leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch::UNKNOWN
    }
}

/// KIP-320's check of a client's `current_leader_epoch` against the epoch the replica knows:
/// a client that knows a newer epoch is told UNKNOWN_LEADER_EPOCH (this replica has not yet
/// heard of the change: it retries), one that knows an older FENCED_LEADER_EPOCH (its
/// metadata is stale: it refreshes it). Either way the client keeps its position, where an
/// answer from a replica in another epoch (OFFSET_OUT_OF_RANGE from a deposed leader with a
/// shorter log) could make it reset it. UNKNOWN (-1) is not checked.
pub fn leader_epoch_fence(asked: LeaderEpoch, current: LeaderEpoch) -> Option<ResponseError> {
    if asked == LeaderEpoch::UNKNOWN || asked == current {
        None
    } else if asked > current {
        Some(ResponseError::UnknownLeaderEpoch)
    } else {
        Some(ResponseError::FencedLeaderEpoch)
    }
}

/// Identifies one partition by topic name and index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionId,
}

#[derive(Debug)]
pub struct ProduceInput {
    pub tp: TopicPartition,
    pub records: Option<Bytes>,
    pub acks: i16,
    /// The request's transactional id: a producer's first transactional batch in the
    /// partition is verified with its transaction coordinator (KIP-890, see
    /// `shard::txn_gate`); none for the broker's own appends.
    pub transactional_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ProduceOutput {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: Offset,
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// The records that made the batch refused, one by one (KIP-467; Produce v8+).
    pub record_errors: Vec<RecordError>,
}

/// One refused record of a produced batch (KIP-467), Kafka's `ProduceResponse.RecordError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The record's index in its batch, counted from 0.
    pub batch_index: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for RecordError {
    /// Kafka's `RecordError.toString`, which its batch-level error message lists.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(message) => write!(
                f,
                "RecordError(batchIndex={}, message='{message}')",
                self.batch_index
            ),
            None => write!(
                f,
                "RecordError(batchIndex={}, message=null)",
                self.batch_index
            ),
        }
    }
}

#[derive(Debug)]
pub struct FetchInput {
    pub tp: TopicPartition,
    /// The epoch the consumer believes current (v9+; UNKNOWN: not checked).
    pub current_leader_epoch: LeaderEpoch,
    pub offset: Offset,
    pub max_bytes: usize,
    /// A consumer that may read from a follower (Fetch v11+, KIP-392): a follower of a
    /// replicated partition serves it up to the commit point it knows.
    pub from_follower: bool,
    /// Only the watermarks, no batches: the consumer is sent to another replica (KIP-392).
    pub watermarks_only: bool,
    /// isolation_level=read_committed: batches below the last stable offset only, with the
    /// aborted transactions among them.
    pub read_committed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct FetchOutput {
    pub error_code: i16,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
    pub records: Vec<Bytes>,
    /// For read_committed: the aborted transactions overlapping `records`, as (producer id,
    /// first offset); None otherwise.
    pub aborted: Option<Vec<(i64, Offset)>>,
}

#[derive(Debug)]
pub struct ListOffsetsInput {
    pub tp: TopicPartition,
    /// The epoch the client believes current (v4+; UNKNOWN: not checked).
    pub current_leader_epoch: LeaderEpoch,
    pub timestamp: i64,
    /// isolation_level=read_committed: nothing at or past the last stable offset.
    pub read_committed: bool,
}

/// WriteTxnMarkers for one partition: the marker that ends a producer's transaction in it.
#[derive(Debug)]
pub struct WriteMarkerInput {
    pub tp: TopicPartition,
    pub marker: crate::protocol::control::TxnMarker,
}

#[derive(Debug, Clone, Default)]
pub struct WriteMarkerOutput {
    pub error_code: i16,
}

#[derive(Debug, Clone, Default)]
pub struct ListOffsetsOutput {
    pub error_code: i16,
    pub timestamp: i64,
    pub offset: Offset,
    /// The epoch of the leader that wrote `offset` (for the latest offset, the current one),
    /// which clients keep to validate their position after a leader change.
    pub leader_epoch: LeaderEpoch,
}

impl ListOffsetsOutput {
    pub fn found(offset: Offset, timestamp: i64, leader_epoch: LeaderEpoch) -> ListOffsetsOutput {
        ListOffsetsOutput {
            error_code: 0,
            timestamp,
            offset,
            leader_epoch,
        }
    }

    /// No such offset: Kafka's -1 offset, timestamp and epoch.
    pub fn none() -> ListOffsetsOutput {
        ListOffsetsOutput::found(Offset::NONE, -1, LeaderEpoch::UNKNOWN)
    }

    pub fn error(error: ResponseError) -> ListOffsetsOutput {
        ListOffsetsOutput {
            error_code: error.code(),
            ..ListOffsetsOutput::none()
        }
    }
}

#[derive(Debug)]
pub struct WatchInput {
    /// (partition, offset): wake when the partition's high watermark passes the offset.
    pub partitions: Vec<(TopicPartition, Offset)>,
    pub timeout_ms: u64,
}

#[derive(Debug)]
pub struct DeleteRecordsInput {
    pub tp: TopicPartition,
    /// The new log start; -1 means the high watermark.
    pub offset: Offset,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteRecordsOutput {
    pub error_code: i16,
    /// The log start after the deletion (-1 with an error).
    pub low_watermark: Offset,
}

/// OffsetForLeaderEpoch for one partition: where `leader_epoch` ended, for a client that
/// believes the partition's leader epoch is `current_leader_epoch` (UNKNOWN: no check).
#[derive(Debug)]
pub struct EpochEndInput {
    pub tp: TopicPartition,
    pub current_leader_epoch: LeaderEpoch,
    pub leader_epoch: LeaderEpoch,
}

#[derive(Debug, Clone, Default)]
pub struct EpochEndOutput {
    pub error_code: i16,
    /// The largest epoch not above the one asked for (UNKNOWN when none is known).
    pub leader_epoch: LeaderEpoch,
    /// Where that epoch ended (Offset::NONE when unknown).
    pub end_offset: Offset,
}

impl PartitionOp for EpochEndInput {
    type Output = EpochEndOutput;

    fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    fn current_leader_epoch(&self) -> LeaderEpoch {
        self.current_leader_epoch
    }

    fn refused(error: ResponseError) -> EpochEndOutput {
        EpochEndOutput {
            error_code: error.code(),
            leader_epoch: LeaderEpoch::UNKNOWN,
            end_offset: Offset::NONE,
        }
    }

    async fn run(self, partition: Rc<Partition>) -> EpochEndOutput {
        partition.epoch_end_offset(self)
    }
}

impl PartitionOp for ProduceInput {
    type Output = ProduceOutput;

    fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    fn refused(error: ResponseError) -> ProduceOutput {
        ProduceOutput {
            error_code: error.code(),
            error_message: None,
            base_offset: Offset::NONE,
            log_append_time_ms: -1,
            log_start_offset: Offset::NONE,
            record_errors: Vec::new(),
        }
    }

    async fn run(self, partition: Rc<Partition>) -> ProduceOutput {
        partition.produce(self).await
    }
}

impl PartitionOp for FetchInput {
    type Output = FetchOutput;

    fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    fn current_leader_epoch(&self) -> LeaderEpoch {
        self.current_leader_epoch
    }

    fn refused(error: ResponseError) -> FetchOutput {
        FetchOutput {
            error_code: error.code(),
            high_watermark: Offset::NONE,
            last_stable_offset: Offset::NONE,
            log_start_offset: Offset::NONE,
            records: Vec::new(),
            aborted: None,
        }
    }

    async fn run(self, partition: Rc<Partition>) -> FetchOutput {
        partition.fetch(self).await
    }
}

impl PartitionOp for ListOffsetsInput {
    type Output = ListOffsetsOutput;

    fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    fn current_leader_epoch(&self) -> LeaderEpoch {
        self.current_leader_epoch
    }

    fn refused(error: ResponseError) -> ListOffsetsOutput {
        ListOffsetsOutput::error(error)
    }

    async fn run(self, partition: Rc<Partition>) -> ListOffsetsOutput {
        partition.list_offsets(self).await
    }
}

impl PartitionOp for WriteMarkerInput {
    type Output = WriteMarkerOutput;

    fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    fn refused(error: ResponseError) -> WriteMarkerOutput {
        WriteMarkerOutput {
            error_code: error.code(),
        }
    }

    async fn run(self, partition: Rc<Partition>) -> WriteMarkerOutput {
        partition.write_marker(self).await
    }
}

impl PartitionOp for DeleteRecordsInput {
    type Output = DeleteRecordsOutput;

    fn partition(&self) -> &TopicPartition {
        &self.tp
    }

    fn refused(error: ResponseError) -> DeleteRecordsOutput {
        DeleteRecordsOutput {
            error_code: error.code(),
            low_watermark: Offset::NONE,
        }
    }

    async fn run(self, partition: Rc<Partition>) -> DeleteRecordsOutput {
        partition.delete_records(self).await
    }
}

/// Waits until any of `watched` has data past its offset (or its log start moved past it),
/// `deadline` passes, or `stop` is raised. Fetches with `min_bytes` park here on the owner.
pub async fn watch(watched: &[(Rc<Partition>, Offset)], deadline: Instant, stop: &Latch) {
    loop {
        let wakeups: Vec<_> = watched
            .iter()
            .map(|(partition, _)| partition.durable.notified())
            .collect();
        let has_data = watched
            .iter()
            .any(|(partition, offset)| partition.has_data_past(*offset));
        let remaining = deadline.saturating_duration_since(clock::now());
        if has_data || remaining.is_zero() || stop.is_raised() {
            return;
        }
        let timer = Box::pin(select(
            Box::pin(runtime::sleep(remaining)),
            Box::pin(stop.wait()),
        ));
        if let Either::Right(_) = select(select_all(wakeups), timer).await {
            return;
        }
    }
}

impl WatchInput {
    pub fn deadline(&self) -> Instant {
        clock::now() + Duration::from_millis(self.timeout_ms)
    }
}
