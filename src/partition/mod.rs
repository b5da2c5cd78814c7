//! A partition on the shard that owns it: everything Kafka rules for one partition, above its
//! log. Its config, its watermarks, the leader epoch it stamps, the offsets it gives batches,
//! the idempotent- and transactional-producer state and its snapshots, transaction markers,
//! the last stable offset and the aborted-transaction index, the flush cycle that makes its batches
//! durable (group commit), and the owner-side operations (produce, fetch, list offsets,
//! delete records, watch) with their request and reply types, and the compaction of its
//! closed segments (`cleaner`).
//!
//! Per-shard: a `Partition` lives on its owner shard only; the shard layer routes every
//! operation on it to that shard (`PartitionOp`) and knows nothing of what it does there.
//! Produce checks a validated batch against the producer state, stamps it with the log end
//! offset, stages it in the log and waits for the partition's flush to make it durable; the
//! high watermark, and so what consumers can see, advances only with `fdatasync`. A waiter
//! answers from its batch's `AppendTicket`, never from the watermark alone: offsets of
//! batches discarded on a full device are given again to later batches.
//!
//! This module does not know the shard table, the mesh or the wire: it is handed its log, its
//! topic's config and the shard's flush queue. The log below it (`storage::Log`) knows
//! offsets and bytes only.

mod aborted;
mod cleaner;
mod epochs;
mod flush;
mod lifecycle;
mod line;
mod produce;
pub mod producer_snapshot;
pub mod producer_state;
mod producers;
mod read;
mod replicated;
mod requests;
#[cfg(test)]
mod tests;
mod txn;

use crate::ids::{LeaderEpoch, Offset};
use epochs::EpochHistory;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::metadata::topic_config::TopicConfig;
use crate::metrics::{PartitionMetrics, ShardMetrics};
use crate::runtime::{LazyWorker, TaskQueueHandle};
use crate::storage::Log;
use crate::sync::{FairLock, Notify};
use producers::Producers;

pub use cleaner::{CleanStats, KeyMap};
pub use line::Place;
pub use read::first_record_at_or_after;
pub use replicated::PreparedEntry;
pub use requests::{
    leader_epoch_fence, watch, DeleteRecordsInput, DeleteRecordsOutput, EpochEndInput,
    EpochEndOutput, FetchInput, FetchOutput, ListOffsetsInput, ListOffsetsOutput, PartitionOp,
    ProduceInput, ProduceOutput, RecordError, TopicPartition, WatchInput, WriteMarkerInput,
    WriteMarkerOutput,
};

/// The leader epoch of every partition until replication brings elections.
pub const LEADER_EPOCH: LeaderEpoch = LeaderEpoch(0);

/// ListOffsets' special timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
/// The first offset kept locally (ListOffsets v8, KIP-405): the log start, with no tiered
/// storage.
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// The last offset moved to tiered storage (ListOffsets v9, KIP-1005): none, with no tiered
/// storage.
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// What the partitions of one shard share: the task queue their flushes and pre-writing run
/// on, and the shard's counters. Per-shard.
pub struct ShardContext {
    pub flush_queue: TaskQueueHandle,
    pub metrics: Rc<ShardMetrics>,
    /// The helper thread that recompresses produced batches (see `produce`), started by the
    /// first batch a topic's `compression.type` recompresses.
    pub compressor: LazyWorker,
}

impl ShardContext {
    pub fn new(flush_queue: TaskQueueHandle, metrics: Rc<ShardMetrics>) -> ShardContext {
        ShardContext {
            flush_queue,
            metrics,
            compressor: LazyWorker::new("corelog-compress"),
        }
    }
}

/// One partition of a topic, owned by this shard.
pub struct Partition {
    tp: TopicPartition,
    config: RefCell<TopicConfig>,
    log: Rc<Log>,
    shard: Rc<ShardContext>,
    producers: RefCell<Producers>,
    /// Where each leader epoch's batches begin; its latest epoch is the one produce stamps.
    epochs: RefCell<EpochHistory>,
    /// Held while producer snapshots are written or pruned, so that they come in order.
    snapshots: FairLock,
    /// Produced batches in the order they arrived (see `line`).
    line: line::Line,
    /// Woken whenever the high watermark advances, the log start moves, or the partition fails.
    durable: Notify,
    /// Set after a failed write or sync: nothing more is acknowledged from this partition.
    failed: Cell<bool>,
    /// Set while flushes find the device full, so that the warning is logged once per episode.
    out_of_space: Cell<bool>,
    /// Whether a flush task is running for this partition (see `flush.rs`).
    queued: Cell<bool>,
    /// Whether a task is pre-writing this partition's active segment.
    preparing: Cell<bool>,
    /// For a replica of a replicated partition, the end of its Raft commit point: consumers
    /// see nothing past it (see `replicated.rs`). None for a partition of one node, whose
    /// batches are committed once durable.
    commit_end: Cell<Option<Offset>>,
    /// The compaction history (see `cleaner`), read at the first pass.
    cleaner_history: RefCell<Option<cleaner::CleanerHistory>>,
    metrics: PartitionMetrics,
}

impl Partition {
    fn new(
        tp: TopicPartition,
        config: TopicConfig,
        log: Rc<Log>,
        shard: Rc<ShardContext>,
        producers: Producers,
        epochs: EpochHistory,
    ) -> Partition {
        Partition {
            tp,
            config: RefCell::new(config),
            log,
            shard,
            producers: RefCell::new(producers),
            epochs: RefCell::new(epochs),
            snapshots: FairLock::new(),
            line: line::Line::default(),
            durable: Notify::new(),
            failed: Cell::new(false),
            out_of_space: Cell::new(false),
            queued: Cell::new(false),
            preparing: Cell::new(false),
            commit_end: Cell::new(None),
            cleaner_history: RefCell::new(None),
            metrics: PartitionMetrics::default(),
        }
    }

    pub fn metrics(&self) -> &PartitionMetrics {
        &self.metrics
    }

    /// The offset below which consumers may read: every batch below is durable here and,
    /// for a replica, committed.
    pub fn high_watermark(&self) -> Offset {
        let durable = self.log.durable_end_offset();
        match self.commit_end.get() {
            Some(commit_end) => durable.min(commit_end),
            None => durable,
        }
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    /// Bytes of log on disk.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// Whether a watcher waiting past `offset` has something to see: data beyond it, or a log
    /// start that moved past it (the fetch then answers OFFSET_OUT_OF_RANGE).
    pub fn has_data_past(&self, offset: Offset) -> bool {
        self.high_watermark() > offset || self.log_start_offset() > offset
    }

    pub fn set_config(&self, config: TopicConfig) {
        self.log.set_config(config.log_config());
        *self.config.borrow_mut() = config;
    }
}
