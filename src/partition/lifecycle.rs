//! A partition's life around its log: open (the producer state rebuilt), the producer
//! snapshots written as the log rolls, retention, producer expiry, suffix truncation, close
//! and removal.

use crate::ids::{LeaderEpoch, Offset};
use std::rc::Rc;

use bytes::Bytes;

use super::epochs::EpochHistory;
use super::producer_snapshot;
use super::producer_state::ProducerTable;
use super::producers::Producers;
use super::{Partition, ShardContext, TopicPartition, LEADER_EPOCH};
use crate::metadata::topic_config::TopicConfig;
use crate::storage::{Log, StorageError};

impl Partition {
    /// The partition over an opened log, with its producer state rebuilt from the newest
    /// snapshot and the log after it.
    pub async fn open(
        tp: TopicPartition,
        config: TopicConfig,
        log: Rc<Log>,
        shard: Rc<ShardContext>,
    ) -> Result<Rc<Partition>, StorageError> {
        let producers = Producers::new(producer_snapshot::rebuild(&log).await?);
        let epochs = EpochHistory::load(&log).await?;
        let partition = Rc::new(Partition::new(tp, config, log, shard, producers, epochs));
        partition.begin_epoch(LEADER_EPOCH).await?;
        Ok(partition)
    }

    /// Makes `epoch` the one later batches are stamped with, beginning at the log end, and
    /// checkpoints the history if that changed it: before any batch of the epoch is appended,
    /// so that the checkpoint covers every durable batch (see `epochs`).
    pub(super) async fn begin_epoch(&self, epoch: LeaderEpoch) -> Result<(), StorageError> {
        let changed = self
            .epochs
            .borrow_mut()
            .assign(epoch, self.log.log_end_offset());
        if changed {
            let history = self.epochs.borrow().clone();
            history.write(self.log.dir()).await?;
        }
        Ok(())
    }

    /// The latest leader epoch and the history's answer for `requested` (OffsetForLeaderEpoch),
    /// with the high watermark as the end of the latest epoch.
    pub fn epoch_end(&self, requested: LeaderEpoch) -> (LeaderEpoch, (LeaderEpoch, Offset)) {
        let epochs = self.epochs.borrow();
        let (current, _) = epochs
            .latest()
            .expect("an open partition has begun an epoch");
        (
            current,
            epochs.end_offset_for(requested, self.high_watermark()),
        )
    }

    /// The epoch the partition's log is in now (unknown before its first).
    pub fn current_epoch(&self) -> LeaderEpoch {
        let latest = self.epochs.borrow().latest();
        latest.map_or(LeaderEpoch::UNKNOWN, |(epoch, _)| epoch)
    }

    /// The epoch of the leader that wrote `offset` (see `EpochHistory::epoch_at`).
    pub fn epoch_at(&self, offset: Offset) -> LeaderEpoch {
        self.epochs.borrow().epoch_at(offset)
    }

    /// Batches from the one holding `offset` up to `max_bytes` (at least one), below the high
    /// watermark: for readers inside the broker (the group loader).
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> Result<Vec<Bytes>, StorageError> {
        self.log
            .read(offset, max_bytes, self.high_watermark())
            .await
    }

    /// After the log settled staged batches (a flush, a truncation) or rolled a segment:
    /// brings the producer state up to date and writes a snapshot at every roll. A snapshot
    /// that cannot be written only makes the next open read more of the log.
    pub(super) async fn log_changed(&self) {
        let snapshots = self.settle_producers();
        self.write_snapshots(snapshots).await;
    }

    /// The synchronous half of `log_changed`: run right after the log call returns, so that
    /// no append is checked against batches the log discarded. Returns the snapshots due.
    pub(super) fn settle_producers(&self) -> Vec<(Offset, ProducerTable)> {
        let rolls = self.log.take_rolls();
        let high_watermark = self.high_watermark();
        let mut producers = self.producers.borrow_mut();
        let snapshots = producers.settle(&rolls);
        producers.forget_stable(high_watermark);
        snapshots
    }

    pub(super) async fn write_snapshots(&self, snapshots: Vec<(Offset, ProducerTable)>) {
        if snapshots.is_empty() {
            return;
        }
        let _held = self.snapshots.lock().await;
        for (offset, table) in snapshots {
            self.write_snapshot(offset, &table).await;
        }
    }

    /// Writes the aborted-transaction file of the range up to `offset`, then the snapshot at
    /// `offset`; not the snapshot if the file could not be written (see `producer_snapshot`).
    async fn write_snapshot(&self, offset: Offset, table: &ProducerTable) {
        let (from, aborted) = self.producers.borrow().aborted_unsaved(offset);
        let dir = self.log.dir();
        if let Err(error) = producer_snapshot::write_aborted(dir, from, offset, &aborted).await {
            let topic = &self.tp.topic;
            let partition = self.tp.partition;
            tracing::warn!(%topic, %partition, %offset, %error, "writing aborted transactions failed; the next open reads more of the log");
            return;
        }
        self.producers.borrow_mut().aborted_saved(offset);
        match producer_snapshot::write_snapshot(dir, offset, table).await {
            Ok(()) => self.producers.borrow_mut().saved(offset),
            Err(error) => tracing::warn!(
                topic = %self.tp.topic,
                partition = %self.tp.partition,
                %offset,
                %error,
                "writing a producer snapshot failed; the next open reads more of the log"
            ),
        }
    }

    /// Rolls and deletes segments as the topic's retention says (see `Log::enforce_retention`),
    /// then drops the producer snapshots below the new log start.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<(), StorageError> {
        let result = self.log.enforce_retention(now_ms).await;
        self.log_changed().await;
        self.log_start_moved();
        self.prune_snapshots().await;
        self.durable.notify_all();
        result
    }

    /// After the log start moved: the history forgets the epochs below it. Its checkpoint
    /// keeps them until the next change; opening cuts them off again.
    pub(super) fn log_start_moved(&self) {
        let start = self.log.log_start_offset();
        self.epochs.borrow_mut().truncate_before(start);
        self.producers.borrow_mut().log_start_moved(start);
    }

    /// Snapshots below the log start describe deleted data (see `producer_snapshot`).
    pub(super) async fn prune_snapshots(&self) {
        let _held = self.snapshots.lock().await;
        let log_start = self.log.log_start_offset();
        if let Err(error) = producer_snapshot::prune_below(self.log.dir(), log_start).await {
            let topic = &self.tp.topic;
            tracing::warn!(%topic, partition = %self.tp.partition, %error, "pruning producer snapshots");
        }
    }

    /// Forgets producers idle for `expiration_ms` (Kafka's `producer.id.expiration.ms`).
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) {
        let removed = self.producers.borrow_mut().expire(now_ms, expiration_ms);
        if removed > 0 {
            let topic = &self.tp.topic;
            tracing::debug!(%topic, partition = %self.tp.partition, removed, "expired idle producers");
        }
    }

    /// The epoch of `producer_id` and the sequence of its last batch here (-1 for none), if
    /// the partition knows the producer: where the group coordinator's transactional offset
    /// commits, written on the producer's behalf, continue its sequence.
    pub fn producer_last_sequence(&self, producer_id: i64) -> Option<(i16, i32)> {
        self.producers.borrow().last_sequence(producer_id)
    }

    /// Whether `producer_id` has a transaction open in this partition (appended batches
    /// included).
    pub fn producer_in_transaction(&self, producer_id: i64) -> bool {
        self.producers.borrow().in_transaction(producer_id)
    }

    /// How many producers appends are checked against (for tests and diagnostics).
    pub fn producer_count(&self) -> usize {
        self.producers.borrow().len()
    }

    /// Removes every batch from `offset` on (see `Log::truncate_suffix`) and rebuilds the
    /// producer state for the shorter log: snapshots past the new end are deleted on the way.
    /// Nothing may be appended while it runs.
    pub async fn truncate_suffix(&self, offset: Offset) -> Result<(), StorageError> {
        let result = self.log.truncate_suffix(offset).await;
        self.log_changed().await;
        if result.is_ok() {
            let _held = self.snapshots.lock().await;
            let rebuilt = producer_snapshot::rebuild(&self.log).await?;
            *self.producers.borrow_mut() = Producers::new(rebuilt);
            let end = self.log.log_end_offset();
            if self.epochs.borrow_mut().truncate_from(end) {
                let history = self.epochs.borrow().clone();
                history.write(self.log.dir()).await?;
            }
            if self.commit_end.get().is_none() {
                self.begin_epoch(LEADER_EPOCH).await?;
            }
        }
        self.durable.notify_all();
        result
    }

    /// Flushes and closes the log, and writes a producer snapshot at its end unless one is
    /// there already (or the log failed: its state on disk is then unknown).
    pub async fn close(&self) -> Result<(), StorageError> {
        let closed = self.log.close().await;
        // A close whose flush failed leaves staged batches unsettled: their waiters must not
        // wait for ever.
        self.failed.set(self.failed.get() || closed.is_err());
        self.log_changed().await;
        if !self.log.is_failed() {
            self.snapshot_durable_end().await;
        }
        self.durable.notify_all();
        closed
    }

    /// Writes the producer snapshot of every durable batch at the durable end, unless one is
    /// there already. The durable state is settled whenever the durable end moves (with no
    /// await between), so the two agree.
    pub(super) async fn snapshot_durable_end(&self) {
        let end = self.log.durable_end_offset();
        let unsaved = self.producers.borrow().unsaved_at(end);
        if let Some(table) = unsaved {
            let _held = self.snapshots.lock().await;
            self.write_snapshot(end, &table).await;
        }
    }

    /// Closes the partition and deletes its directory (see `Log::remove`).
    pub async fn remove(&self) -> Result<(), StorageError> {
        let removed = self.log.remove().await;
        self.durable.notify_all();
        removed
    }
}
