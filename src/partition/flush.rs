//! The flush cycle of one partition: group commit, then pre-writing ahead of the log end.
//!
//! The first append after the partition's last flush starts a flush task (on the shard's
//! flush queue); appends that arrive while it writes and syncs are staged for its next
//! flush, so one fdatasync acknowledges all of them. Partitions flush independently: a slow
//! write or a pre-writing step on one never delays another's acknowledgements.

use crate::ids::Offset;
use std::rc::Rc;
use std::time::Instant;

use super::Partition;
use crate::runtime;
use crate::storage::{self, StorageError};

impl Partition {
    /// Starts a flush task unless one is running; it flushes until nothing is staged.
    pub(super) fn schedule_flush(self: &Rc<Self>) {
        if self.queued.replace(true) {
            return;
        }
        let partition = self.clone();
        runtime::spawn_into(self.shard.flush_queue, async move {
            partition.flush_until_drained().await
        });
    }

    async fn flush_until_drained(self: Rc<Self>) {
        loop {
            let started = Instant::now();
            let result = self.log.flush().await;
            let failed = result.is_err();
            self.shard.metrics.flush_done(started.elapsed(), !failed);
            let snapshots = self.settle_producers();
            self.flushed(&result);
            // A task of its own: a roll's snapshot is no part of any acknowledgement, and an
            // await here would let appends stage unseen by the check below.
            if !snapshots.is_empty() {
                let partition = self.clone();
                runtime::spawn_into(self.shard.flush_queue, async move {
                    partition.write_snapshots(snapshots).await
                });
            }
            // In the flush queue, not the background one: pre-writing that falls behind the
            // log end makes every later sync commit the file's growth through the journal.
            self.start_preparing();
            // No await from the flush's return to clearing the flag: an append either saw the
            // flag set (and is flushed by this loop) or finds it clear and starts a new task;
            // and a failed flush left nothing staged (a full device discards it all, a fenced
            // or closed log takes no appends), so breaking on it strands no batch.
            if failed || !self.log.has_unflushed() {
                break;
            }
        }
        self.queued.set(false);
    }

    /// Starts pre-writing the log's active segment ahead of its end (a task on the flush
    /// queue, one step at a time) if the log wants it and no run is under way. Steps share
    /// the log's io lock with flushes, so a flush waits for one step at most.
    fn start_preparing(self: &Rc<Self>) {
        if self.preparing.get() || !self.log.needs_preparing() {
            return;
        }
        self.preparing.set(true);
        let partition = self.clone();
        runtime::spawn_into(self.shard.flush_queue, async move {
            while partition.log.prepare_step().await {}
            partition.preparing.set(false);
        });
    }

    /// After `Log::flush`: a full device fails the batches it could not write and nothing
    /// else; any other error takes the partition offline until a restart.
    pub(super) fn flushed(&self, result: &Result<Offset, StorageError>) {
        let (topic, partition) = (&self.tp.topic, self.tp.partition);
        match result {
            Ok(_) if self.out_of_space.replace(false) => {
                tracing::info!(%topic, %partition, "writes succeed again");
            }
            Ok(_) => {}
            // Closed or removed meanwhile: its waiters learn it from the log.
            Err(StorageError::Closed) => {}
            Err(StorageError::OutOfSpace(error)) => {
                if !self.out_of_space.replace(true) {
                    tracing::warn!(
                        %topic,
                        %partition,
                        errno = storage::os_error(error),
                        %error,
                        "no space for the log; produce fails until space returns"
                    );
                }
            }
            Err(error) => {
                let errno = match &error {
                    StorageError::Io(error) => storage::os_error(error),
                    _ => None,
                };
                tracing::error!(
                    %topic,
                    %partition,
                    errno,
                    %error,
                    "write or sync failed; partition stops acknowledging writes"
                );
                self.failed.set(true);
            }
        }
        self.durable.notify_all();
    }
}
