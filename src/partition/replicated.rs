//! A partition that is one replica of a Raft group (`crate::replication`): its log is the
//! group's log, written by the replication layer, not by `produce`.
//!
//! The replica appends batches the replication layer stamped (an entry's offset and term),
//! flushes them when Raft persists entries, cuts the suffix on a conflict with the leader's
//! log, and moves the commit point. The high watermark is the lower of the durable end and
//! the commit point, so a consumer sees a batch only once a majority has it on disk. Each
//! new term begins an epoch in the history before its first batch is appended, as
//! `begin_epoch` requires.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::line::Place;
use super::produce::Accepted;
use super::{Partition, ProduceOutput, ShardContext, TopicPartition};
use crate::ids::{LeaderEpoch, Offset};
use crate::metadata::topic_config::TopicConfig;
use crate::metrics;
use crate::partition::producer_state::{Checked, ProducerAppend, ProducerChange, ProducerError};
use crate::partition::producers::{Producers, Rebuilt};
use crate::protocol::record_batch;
use crate::storage::{stamp_batch, BatchMeta, Log, StorageError};

impl Partition {
    /// The replica over an opened log, its commit point at `commit_end` until the group
    /// says more. Nothing is appended here but by the replication layer.
    pub async fn open_replica(
        tp: TopicPartition,
        config: TopicConfig,
        log: Rc<Log>,
        shard: Rc<ShardContext>,
        commit_end: Offset,
    ) -> Result<Rc<Partition>, StorageError> {
        let producers = Producers::new(super::producer_snapshot::rebuild(&log).await?);
        let epochs = super::epochs::EpochHistory::load(&log).await?;
        let partition = Partition::new(tp, config, log, shard, producers, epochs);
        partition.commit_end.set(Some(commit_end));
        Ok(Rc::new(partition))
    }

    /// Stages a batch stamped at the log end with its term's epoch, beginning that epoch in
    /// the history first when it is new, and records an idempotent or transactional
    /// producer's batch, or a transaction marker, in the producer state, on every replica alike, so that the snapshots written at rolls hold
    /// the producers of the log below them and a replica that becomes leader knows them.
    pub async fn append_entry(&self, batch: Bytes, meta: BatchMeta) -> Result<(), StorageError> {
        assert!(self.commit_end.get().is_some(), "a replica's log");
        let header = *record_batch::header(&batch).expect("a stamped batch");
        let epoch = LeaderEpoch(header.partition_leader_epoch.get());
        if self.epochs.borrow().latest().map(|(latest, _)| latest) != Some(epoch) {
            self.begin_epoch(epoch).await?;
        }
        let change = ProducerChange::of_stored(&batch);
        let ticket = self.log.append(batch, meta)?;
        if let Some(change) = change {
            self.producers.borrow_mut().record(change, ticket);
        }
        Ok(())
    }

    /// Writes and fdatasyncs what `append_entry` staged. Returns the durable end.
    pub async fn flush_entries(&self) -> Result<Offset, StorageError> {
        let result = self.log.flush().await;
        let snapshots = self.settle_producers();
        self.flushed(&result);
        self.write_snapshots(snapshots).await;
        result
    }

    /// Empties the log and starts it again at `offset`, committed up to there (see
    /// `Log::restart_at`): the leader's log begins past this replica's commit point, so its
    /// batches below are deleted everywhere. Producers, epochs and producer snapshots below
    /// `offset` are forgotten with them.
    pub async fn restart_at(&self, offset: Offset) -> Result<(), StorageError> {
        let result = self.log.restart_at(offset).await;
        self.log_changed().await;
        result?;
        self.prune_snapshots().await;
        if let Err(error) = super::producer_snapshot::remove_aborted(self.log.dir()).await {
            tracing::warn!(topic = %self.tp.topic, partition = %self.tp.partition, %error, "removing aborted-transaction files");
        }
        *self.producers.borrow_mut() = Producers::new(Rebuilt::default());
        if self.epochs.borrow_mut().truncate_from(Offset::ZERO) {
            let history = self.epochs.borrow().clone();
            history.write(self.log.dir()).await?;
        }
        self.commit_end.set(Some(offset));
        self.durable.notify_all();
        Ok(())
    }

    /// Moves the commit point (never back: a replica's committed batches stay committed).
    pub fn set_commit_end(&self, commit_end: Offset) {
        let previous = self.commit_end.get().expect("a replica's log");
        if commit_end > previous {
            self.commit_end.set(Some(commit_end));
            let high_watermark = self.high_watermark();
            self.producers.borrow_mut().forget_stable(high_watermark);
            self.durable.notify_all();
        }
    }

    /// The log end, staged batches included.
    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// Batches from `offset` up to `max_bytes` (at least one), none past `bound` nor past the
    /// durable end: what a replica copies from another.
    pub async fn read_below(
        &self,
        offset: Offset,
        max_bytes: usize,
        bound: Offset,
    ) -> Result<Vec<Bytes>, StorageError> {
        self.log.read(offset, max_bytes, bound).await
    }

    /// The topic's `min.insync.replicas`.
    pub fn min_insync_replicas(&self) -> usize {
        usize::try_from(self.config.borrow().min_insync_replicas).unwrap_or(1)
    }

    /// Retention keeps every batch from `floor` on (see `Log::set_retention_floor`).
    pub fn set_retention_floor(&self, floor: Offset) {
        self.log.set_retention_floor(floor);
    }

    /// Where the topic's retention would move the log start now (see
    /// `Log::retention_start`): the leader proposes the move to every replica.
    pub fn retention_start(&self, now_ms: i64) -> Option<Offset> {
        self.log.retention_start(now_ms)
    }

    /// The partition's directory, where the replication layer keeps its anchor.
    pub fn dir(&self) -> &std::path::Path {
        self.log.dir()
    }

    /// A client batch for the leader to propose, checked as `produce` checks one, with the
    /// append time stamped for a topic that takes it (so that every replica stores the same
    /// bytes). Its offsets and epoch are stamped when each replica appends it.
    /// With the entry comes its place in line (see `accept`), to be held until it is proposed.
    pub async fn prepare_entry(
        &self,
        records: Option<Bytes>,
    ) -> Result<(PreparedEntry, Option<Place>), ProduceOutput> {
        let (
            Accepted {
                records,
                summary,
                log_append_time,
            },
            place,
        ) = self.accept(records).await?;
        let batch = match log_append_time {
            Some(now) => {
                let batch = BytesMut::from(&records[..]);
                stamp_batch(batch, &summary, Offset(0), Some(now)).0
            }
            None => records,
        };
        let entry = PreparedEntry {
            batch,
            log_append_time_ms: log_append_time.unwrap_or(-1),
            records: summary.record_count as u64,
            bytes: summary.batch_bytes as u64,
        };
        Ok((entry, place))
    }

    /// The answer to the producer of `entry` once its Raft group committed it at `base_offset`.
    pub fn entry_committed(&self, entry: &PreparedEntry, base_offset: Offset) -> ProduceOutput {
        metrics::add(&self.metrics.produced_bytes, entry.bytes);
        metrics::add(&self.metrics.produced_records, entry.records);
        ProduceOutput {
            error_code: 0,
            error_message: None,
            base_offset,
            log_append_time_ms: entry.log_append_time_ms,
            log_start_offset: self.log_start_offset(),
            record_errors: Vec::new(),
        }
    }

    /// Checks an idempotent batch a leader is about to propose against the producers of the
    /// batches its log holds (see `Producers::check`).
    pub fn check_producer(&self, append: &ProducerAppend) -> Result<Checked, ProducerError> {
        self.producers.borrow().check(append)
    }
}

/// A client batch a replicated partition's leader proposes (see `prepare_entry`).
#[derive(Debug)]
pub struct PreparedEntry {
    pub batch: Bytes,
    log_append_time_ms: i64,
    records: u64,
    bytes: u64,
}
