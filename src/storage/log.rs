//! `Log`: a plain offset-addressed log of Kafka v2 batches (append, flush, read, truncate at
//! either end, retention, recovery). It knows offsets and bytes, nothing of producers,
//! watermarks or leaders: the partition layer above it stamps each batch with its offsets and
//! decides how far readers may see.
//!
//! Appends are synchronous: a batch already stamped with the next offset is staged in memory.
//! `flush` writes every staged batch through the active segment's appender, rolls segments
//! when full, and fdatasyncs; only then does the durable end move and the batches enter the
//! cache. Every staged batch carries an `AppendTicket` that the flush settles: durable, or
//! discarded when a write, sync or segment roll finds the device full (ENOSPC or EDQUOT, read
//! through `file::os_error`). Then the log drops every batch not yet synced, its end goes back
//! to the durable end, and it stays usable: the next flush writes over the same bytes, and a
//! roll that failed midway is begun again. Any other write or sync error fences it (`failed`),
//! since the state on disk is then unknown. Each roll is reported (`take_rolls`), so that the
//! layer above can snapshot its own state at segment boundaries.
//! Concurrency: one executor, many tasks. State sits in a `RefCell` never borrowed across an
//! `.await`; flush, pre-writing, retention, truncation and close serialize on `io_lock`, a
//! `FairLock` (first come, first served), and only its holder touches the appender. Reads run
//! concurrently with all of them and never look past the durable end nor the bound their
//! caller gives. Reads that miss the cache look in the log's read-ahead (`read_ahead`) before
//! the disk, and start the next chunk there; whatever removes log bytes invalidates it first.

use crate::ids::Offset;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::limits::PREWRITE_STEP_BYTES;
use crate::limits::{INDEX_INTERVAL_BYTES_DEFAULT, SEGMENT_BYTES_DEFAULT, STORAGE_READ_BYTES_MAX};
use crate::metrics::Histogram;
use crate::protocol::record_batch::{self, BatchSummary};
use crate::runtime::clock;
use crate::storage::appender::Appender;
use crate::storage::cache::BatchCache;
use crate::storage::file::{self, SegmentFile};
use crate::storage::log_start;
use crate::storage::prewrite::{Heat, PrewriteBudget};
use crate::storage::read_ahead::{ChunkSource, LogPosition, Lookup, ReadAhead};
use crate::storage::reader::{check_batch, Continuity, ScanError, Scanner};
use crate::storage::recovery::{recover_segments, rescan_segment};
use crate::storage::segment::{segment_path, BatchMeta, Segment};
use crate::storage::side_file;
use crate::storage::ticket::{AppendTicket, Settled};
use crate::storage::StorageError;
use crate::sync::{FairLock, Latch};

thread_local! {
    /// How long each flush on this executor waited for its log's io lock (`/metrics`): the
    /// time pre-writing, a roll, retention or close held it. Per thread, so per shard.
    static FLUSH_LOCK_WAIT_SECONDS: RefCell<Histogram> = RefCell::new(Histogram::default());
}

/// The io-lock waits of this executor's flushes so far.
pub fn flush_lock_waits() -> Histogram {
    FLUSH_LOCK_WAIT_SECONDS.with(|histogram| histogram.borrow().clone())
}

/// Per-partition settings (Kafka's topic configs of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1 = unlimited.
    pub retention_bytes: i64,
    /// -1 = unlimited.
    pub retention_ms: i64,
    pub index_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
        }
    }
}

/// Stamps a validated batch for an append at `base_offset`: its base offset, and its
/// timestamps when the topic uses LogAppendTime. Returns the bytes and what the log indexes.
pub fn stamp_batch(
    mut batch: BytesMut,
    summary: &BatchSummary,
    base_offset: Offset,
    log_append_time: Option<i64>,
) -> (Bytes, BatchMeta) {
    assert_eq!(
        batch.len(),
        summary.batch_bytes,
        "summary belongs to this batch"
    );
    assert!(
        summary.last_offset_delta >= 0,
        "summary comes from validate()"
    );
    record_batch::set_base_offset(&mut batch, base_offset.get());
    let mut max_timestamp = summary.max_timestamp;
    if let Some(timestamp) = log_append_time {
        record_batch::set_log_append_time(&mut batch, timestamp);
        max_timestamp = timestamp;
    }
    let meta = BatchMeta {
        base_offset,
        last_offset: base_offset + i64::from(summary.last_offset_delta),
        max_timestamp,
        bytes: batch.len() as u64,
    };
    (batch.freeze(), meta)
}

/// What the log indexes of a stamped batch.
pub fn batch_meta(batch: &[u8]) -> Result<BatchMeta, String> {
    let header = record_batch::header(batch).ok_or("shorter than a batch header")?;
    let base_offset = Offset(header.base_offset.get());
    Ok(BatchMeta {
        base_offset,
        last_offset: base_offset + i64::from(header.last_offset_delta.get()),
        max_timestamp: header.max_timestamp.get(),
        bytes: batch.len() as u64,
    })
}

#[derive(Clone)]
struct Staged {
    bytes: Bytes,
    meta: BatchMeta,
    ticket: AppendTicket,
}

pub(super) struct State {
    pub(super) config: LogConfig,
    /// Every segment by base offset; the last one is active.
    pub(super) segments: BTreeMap<Offset, Segment>,
    log_start: Offset,
    /// Retention deletes no segment holding offsets at or past this (see
    /// `set_retention_floor`).
    retention_floor: Option<Offset>,
    /// The offset the next appended batch must start at (staged batches counted).
    next_offset: Offset,
    /// Every offset below is written and fdatasynced.
    durable_end: Offset,
    staged: VecDeque<Staged>,
    /// Base offsets of the segments begun since the last `take_rolls`, ascending.
    rolls: Vec<Offset>,
    failed: Option<String>,
    closed: bool,
    /// Whether the files may differ from what a clean close leaves (the active segment
    /// trimmed to its last batch, its indexes persisted). Clear after an open that found
    /// them so, until a write; a close of a clean log only closes its files, which is what
    /// keeps shutting down thousands of idle partitions fast.
    dirty: bool,
}

/// One partition's log. Per-shard: lives on the core that owns the partition.
pub struct Log {
    pub(super) dir: PathBuf,
    pub(super) cache: Rc<BatchCache>,
    pub(super) cache_key: u64,
    /// Chunks read ahead of sequential readers; invalidated before any log bytes go away.
    pub(super) read_ahead: Rc<ReadAhead>,
    pub(super) state: RefCell<State>,
    pub(super) io_lock: FairLock,
    /// Sparse once a compaction has rewritten a segment (see `compact`).
    pub(super) continuity: Cell<Continuity>,
    /// The active segment's appender; only the holder of `io_lock` touches it.
    appender: RefCell<Option<Appender>>,
    /// The shard's budget of pre-written bytes, and how much of it this log holds: always the
    /// zeros its active segment has ahead of the log end once the appender is put back.
    prewrite: Rc<PrewriteBudget>,
    prewrite_held: Cell<u64>,
    /// Bytes written recently: pre-writing is for hot logs only.
    heat: RefCell<Heat>,
}

impl Log {
    /// Opens (creating if missing) and recovers the partition directory.
    pub async fn open(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
    ) -> Result<Rc<Log>, StorageError> {
        file::create_dir_all(&dir)?;
        let compacted = super::compact::open_compacted(&dir).await?;
        let continuity = compacted.continuity;
        let bases = list_segments(&dir)?;
        let interval = config.index_interval_bytes;
        let mut segments = recover_segments(&dir, &bases, interval, compacted).await?;
        if segments.is_empty() {
            let segment = create_segment(&dir, Offset::ZERO).await?;
            segments.insert(Offset::ZERO, segment);
        }
        let active = segments.values().next_back().expect("at least one segment");
        let appender = Appender::open(active.file.clone(), active.base_offset, active.size).await?;
        let next_offset = active.next_offset;
        let prewrite = cache.prewrite_budget();
        prewrite.charge(appender.zeros_ahead());
        let first_base = *segments.keys().next().expect("at least one segment");
        // A prefix truncation may have moved the start inside the first segment; it never
        // passes the durable end, which recovery cannot lower below an acknowledged offset.
        let checkpoint = log_start::read(&dir).await?.unwrap_or(first_base);
        let log_start = checkpoint.max(first_base).min(next_offset);
        let state = State {
            config,
            segments,
            log_start,
            retention_floor: None,
            next_offset,
            durable_end: next_offset,
            staged: VecDeque::new(),
            rolls: Vec::new(),
            failed: None,
            closed: false,
            // Recovery trimmed the active segment and rewrote stale indexes.
            dirty: false,
        };
        Ok(Rc::new(Log {
            dir,
            cache_key: cache.register_log(),
            read_ahead: ReadAhead::new(cache.read_ahead_budget()),
            cache,
            state: RefCell::new(state),
            io_lock: FairLock::new(),
            continuity: Cell::new(continuity),
            // Recovery cut any zeros after the log end, so the log holds none yet.
            prewrite_held: Cell::new(appender.zeros_ahead()),
            appender: RefCell::new(Some(appender)),
            prewrite,
            heat: RefCell::default(),
        }))
    }

    pub fn set_config(&self, config: LogConfig) {
        self.state.borrow_mut().config = config;
    }

    /// Makes the log a replica's, whose log start the layer above moves on every replica
    /// alike (a Raft group): retention by time and size then only says where the log start
    /// should go (`retention_start`), and segments are deleted once wholly below the log
    /// start and below `floor`; segments holding offsets at or past the floor stay (the
    /// replica still needs them: the batches of its log not yet below its durable base).
    pub fn set_retention_floor(&self, floor: Offset) {
        self.state.borrow_mut().retention_floor = Some(floor);
    }

    /// The floor `set_retention_floor` set: Some for a replica's log.
    pub fn retention_floor(&self) -> Option<Offset> {
        self.state.borrow().retention_floor
    }

    /// The partition directory: where the layer above keeps its own files (`side_file`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> Offset {
        self.state.borrow().log_start
    }

    /// The offset the next appended batch must start at, counting staged batches.
    pub fn log_end_offset(&self) -> Offset {
        self.state.borrow().next_offset
    }

    /// Every offset below is written and fdatasynced.
    pub fn durable_end_offset(&self) -> Offset {
        self.state.borrow().durable_end
    }

    /// Whether a write or sync failed: the log accepts nothing more until it is reopened.
    pub fn is_failed(&self) -> bool {
        self.state.borrow().failed.is_some()
    }

    /// The base offsets of the segments begun since the last call, ascending: every batch
    /// below each was durable when it began.
    pub fn take_rolls(&self) -> Vec<Offset> {
        std::mem::take(&mut self.state.borrow_mut().rolls)
    }

    /// Bytes of log on disk (staged batches not counted).
    pub fn size_bytes(&self) -> u64 {
        self.state
            .borrow()
            .segments
            .values()
            .map(|segment| segment.size)
            .sum()
    }

    pub fn has_unflushed(&self) -> bool {
        !self.state.borrow().staged.is_empty()
    }

    pub(super) fn check_usable(state: &State) -> Result<(), StorageError> {
        if state.closed {
            return Err(StorageError::Closed);
        }
        match &state.failed {
            Some(reason) => Err(StorageError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Stages one batch for the next flush. The caller has stamped it: `meta` describes it
    /// (offsets, max timestamp, length) and its base offset must be the log end offset.
    /// Returns the ticket the flush settles.
    pub fn append(&self, batch: Bytes, meta: BatchMeta) -> Result<AppendTicket, StorageError> {
        assert_eq!(batch.len() as u64, meta.bytes, "meta describes this batch");
        assert!(
            meta.last_offset >= meta.base_offset,
            "a batch holds an offset"
        );
        debug_assert_eq!(
            record_batch::header(&batch).map(|header| header.base_offset.get()),
            Some(meta.base_offset.get()),
            "the batch is stamped with its base offset"
        );
        let mut state = self.state.borrow_mut();
        Self::check_usable(&state)?;
        if meta.base_offset != state.next_offset {
            return Err(StorageError::NotAtEnd {
                given: meta.base_offset,
                log_end: state.next_offset,
            });
        }
        let ticket = AppendTicket::pending();
        state.staged.push_back(Staged {
            bytes: batch,
            meta,
            ticket: ticket.clone(),
        });
        state.next_offset = meta.last_offset + 1;
        Ok(ticket)
    }

    /// Writes every staged batch and fdatasyncs. Returns the new durable end. On
    /// `OutOfSpace` the batches written before the full device are published and the rest are
    /// discarded; on any other error the log is fenced.
    pub async fn flush(&self) -> Result<Offset, StorageError> {
        let asked = Instant::now();
        let _io = self.io_lock.lock().await;
        FLUSH_LOCK_WAIT_SECONDS.with(|histogram| histogram.borrow_mut().record(asked.elapsed()));
        let staged: Vec<Staged> = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            state.dirty |= !state.staged.is_empty();
            state.staged.iter().cloned().collect()
        };
        if staged.is_empty() {
            return Ok(self.durable_end_offset());
        }
        let mut appender = self
            .appender
            .borrow_mut()
            .take()
            .expect("appender held by io_lock");
        let (written, result) = self.write_staged(&mut appender, &staged).await;
        self.put_back(appender);
        match result {
            Ok(()) => {}
            Err(StorageError::OutOfSpace(error)) => {
                if written > 0 {
                    self.publish(&staged[..written]);
                }
                self.discard_unwritten();
                return Err(StorageError::OutOfSpace(error));
            }
            Err(error) => return Err(self.fence(error)),
        }
        Ok(self.publish(&staged))
    }

    /// Refuses every later append and flush: after a failed write or sync the state of the
    /// file on disk is unknown until recovery reads it again.
    pub(super) fn fence(&self, error: StorageError) -> StorageError {
        self.state.borrow_mut().failed = Some(error.to_string());
        tracing::error!(dir = %self.dir.display(), %error, "log write or sync failed; log fenced");
        error
    }

    /// After a segment write found the device full: drops every staged batch (none was
    /// written; those staged meanwhile hold offsets after them) and takes the log end back to
    /// the written log, so that retries fit in again.
    fn discard_unwritten(&self) {
        let mut state = self.state.borrow_mut();
        let written_end = state
            .segments
            .values()
            .next_back()
            .expect("active segment")
            .next_offset;
        assert_eq!(
            state.durable_end, written_end,
            "everything written is published"
        );
        for batch in state.staged.drain(..) {
            batch.ticket.settle(Settled::Discarded);
        }
        state.next_offset = written_end;
    }

    /// Moves flushed batches from staged into the cache and advances the durable end.
    /// Returns the new durable end.
    fn publish(&self, flushed: &[Staged]) -> Offset {
        let mut state = self.state.borrow_mut();
        for batch in flushed {
            let popped = state
                .staged
                .pop_front()
                .expect("flushed batches are still staged");
            assert_eq!(popped.meta.base_offset, batch.meta.base_offset);
            popped.ticket.settle(Settled::Durable);
            let meta = &batch.meta;
            self.cache.insert(
                self.cache_key,
                meta.base_offset,
                meta.last_offset,
                batch.bytes.clone(),
            );
        }
        state.durable_end = flushed.last().expect("not empty").meta.last_offset + 1;
        state.durable_end
    }

    /// Whether the active segment wants more pre-written space ahead of its end (see
    /// `Appender`) and may have it: the log is hot and the shard's budget has room (see
    /// `prewrite`). The shard then calls `prepare_step` until it says done.
    pub fn needs_preparing(&self) -> bool {
        if self.prewrite.available() == 0 || !self.heat.borrow_mut().is_hot(clock::now()) {
            return false;
        }
        let segment_bytes = self.state.borrow().config.segment_bytes;
        match &*self.appender.borrow() {
            Some(appender) => appender.needs_preparing(segment_bytes),
            // Taken: a flush or a step is under way and the caller will ask again.
            None => false,
        }
    }

    /// Returns the appender taken under the io lock, and settles the log's share of the
    /// pre-writing budget with the zeros it now has ahead: appends that overwrote zeros, a
    /// roll or a trim give bytes back; a step keeps what it reserved and wrote.
    fn put_back(&self, appender: Appender) {
        let ahead = appender.zeros_ahead();
        let held = self.prewrite_held.replace(ahead);
        if ahead < held {
            self.prewrite.give_back(held - ahead);
        } else {
            self.prewrite.charge(ahead - held);
        }
        *self.appender.borrow_mut() = Some(appender);
    }

    /// Forgets what the log wrote recently, as if it had been quiet for a while.
    #[cfg(test)]
    pub(crate) fn cool_down(&self) {
        *self.heat.borrow_mut() = Heat::default();
    }

    /// Bytes of pre-written zeros this log holds (for tests and diagnostics).
    pub fn prewritten_bytes(&self) -> u64 {
        self.prewrite_held.get()
    }

    /// One step of pre-writing under the io lock, so that a flush waits for one step at most:
    /// the lock is fair, so the next step queues behind a flush that is waiting. Returns whether more steps remain. A full device only costs speed (the next sync
    /// commits the extension), so it is logged and ends the run; any other error (a failed
    /// sync above all) fences the log.
    pub async fn prepare_step(&self) -> bool {
        let _io = self.io_lock.lock().await;
        let segment_bytes = {
            let mut state = self.state.borrow_mut();
            if Self::check_usable(&state).is_err() {
                return false;
            }
            // Zeros past the log end: a close trims them.
            state.dirty = true;
            state.config.segment_bytes
        };
        let mut appender = self
            .appender
            .borrow_mut()
            .take()
            .expect("appender held by io_lock");
        // Reserved before the write, so that steps of many logs at once never pass the
        // budget; `put_back` returns what the step did not write.
        let allowance = self.prewrite.take(PREWRITE_STEP_BYTES);
        self.prewrite_held.set(self.prewrite_held.get() + allowance);
        let result = appender.prepare_step(segment_bytes, allowance).await;
        self.put_back(appender);
        match result {
            Ok(more) => more,
            Err(error) if file::is_out_of_space(&error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "pre-writing the segment failed");
                false
            }
            Err(error) => {
                self.fence(error.into());
                false
            }
        }
    }

    /// Writes `staged` in order, rolling segments when the next batch does not fit, then
    /// syncs. Indexes are updated only for synced data. Returns how many batches (a prefix of
    /// `staged`) were written and synced, with the first error.
    async fn write_staged(
        &self,
        appender: &mut Appender,
        staged: &[Staged],
    ) -> (usize, Result<(), StorageError>) {
        let config = self.state.borrow().config.clone();
        let mut group: Vec<&Staged> = Vec::new();
        let mut group_bytes = 0u64;
        let mut written = 0;
        for batch in staged {
            // A sealed segment is one whose roll failed: the roll is finished first.
            let fits = !appender.is_sealed() && {
                let state = self.state.borrow();
                let active = state
                    .segments
                    .get(&appender.base_offset())
                    .expect("active segment");
                active.fits(group_bytes, &batch.meta, config.segment_bytes)
            };
            if !fits {
                if let Err(error) = self.write_group(appender, &group, &config).await {
                    return (written, Err(error));
                }
                written += group.len();
                group.clear();
                group_bytes = 0;
                if let Err(error) = self.roll(appender, batch.meta.base_offset).await {
                    return (written, Err(error));
                }
            }
            group_bytes += batch.meta.bytes;
            group.push(batch);
        }
        match self.write_group(appender, &group, &config).await {
            Ok(()) => (written + group.len(), Ok(())),
            Err(error) => (written, Err(error)),
        }
    }

    /// Writes and syncs `group` to the active segment, then indexes it. A full device on the write or the sync gives `OutOfSpace`, with the appender back at the
    /// synced end and nothing indexed.
    async fn write_group(
        &self,
        appender: &mut Appender,
        group: &[&Staged],
        config: &LogConfig,
    ) -> Result<(), StorageError> {
        if group.is_empty() {
            return Ok(());
        }
        let start = appender.size();
        let bytes: Vec<Bytes> = group.iter().map(|batch| batch.bytes.clone()).collect();
        appender.write(&bytes).await.map_err(out_of_space_or_io)?;
        if let Err(error) = appender.sync().await {
            if file::is_out_of_space(&error) {
                appender.rewind_unsynced();
            }
            return Err(out_of_space_or_io(error));
        }
        // Counted once synced: bytes a full device sent back are not yet written.
        let written = appender.size() - start;
        self.heat.borrow_mut().record(written, clock::now());
        let mut state = self.state.borrow_mut();
        let segment = state
            .segments
            .get_mut(&appender.base_offset())
            .expect("active segment");
        let mut position = start;
        for batch in group {
            segment.observe(position, &batch.meta, config.index_interval_bytes);
            position += batch.meta.bytes;
        }
        Ok(())
    }

    /// Closes the active segment (trimmed, indexes persisted) and starts one at `base_offset`.
    /// A full device at any step gives `OutOfSpace` and leaves the segment sealed and active:
    /// every step is safe to repeat, and the next flush or retention pass begins it again.
    async fn roll(&self, appender: &mut Appender, base_offset: Offset) -> Result<(), StorageError> {
        // Even a roll that fails has begun to change the files (the segment is sealed).
        self.state.borrow_mut().dirty = true;
        self.roll_steps(appender, base_offset)
            .await
            .map_err(|error| match error {
                StorageError::Io(error) => out_of_space_or_io(error),
                error => error,
            })
    }

    async fn roll_steps(
        &self,
        appender: &mut Appender,
        base_offset: Offset,
    ) -> Result<(), StorageError> {
        appender.trim_and_sync().await?;
        self.persist_active_indexes(appender.base_offset()).await?;
        let segment = create_segment(&self.dir, base_offset).await?;
        *appender = Appender::open(segment.file.clone(), base_offset, 0).await?;
        let mut state = self.state.borrow_mut();
        state.segments.insert(base_offset, segment);
        state.rolls.push(base_offset);
        Ok(())
    }

    /// Persists one segment's indexes. The segment stays in the state while the files are
    /// written, so that readers of its batches find it meanwhile, and no borrow of the state
    /// is held across the writes.
    async fn persist_active_indexes(&self, base_offset: Offset) -> Result<(), StorageError> {
        let encoded = {
            let mut state = self.state.borrow_mut();
            let segment = state.segments.get_mut(&base_offset);
            segment.expect("segment to persist exists").encode_indexes()
        };
        Ok(encoded.write(&self.dir).await?)
    }
}

impl Drop for Log {
    /// A log dropped without a close (a failed open of its partition, a test) still gives
    /// its pre-written bytes back.
    fn drop(&mut self) {
        self.prewrite.give_back(self.prewrite_held.replace(0));
    }
}

/// A full device (or an exhausted quota) is the one write error the log survives.
fn out_of_space_or_io(error: std::io::Error) -> StorageError {
    if file::is_out_of_space(&error) {
        StorageError::OutOfSpace(error)
    } else {
        StorageError::Io(error)
    }
}

/// Base offsets of the segments in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<Offset>, StorageError> {
    Ok(side_file::list_offsets(dir, "log")?)
}

async fn create_segment(dir: &Path, base_offset: Offset) -> Result<Segment, StorageError> {
    let file = SegmentFile::open_or_create(&segment_path(dir, base_offset, "log")).await?;
    file::sync_directory(dir).await?;
    Ok(Segment::new(base_offset, file))
}

impl Log {
    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one batch),
    /// never past `bound` nor the durable end, whichever is lower (the end of the read).
    /// `offset` at the end gives an empty Vec, past it `OffsetOutOfRange`. Tries the cache,
    /// then the read-ahead (waiting for a chunk being read at `offset`), then the disk.
    /// In a compacted log the batch holding `offset` may be gone: the read then serves the
    /// batches after it, from the next segment if need be.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        bound: Offset,
    ) -> Result<Vec<Bytes>, StorageError> {
        let mut offset = offset;
        loop {
            match self.locate(offset, max_bytes, bound)? {
                Located::Served(batches) => return Ok(batches),
                Located::Wait(latch) => latch.wait().await,
                Located::Disk(disk) => {
                    let segment_base = disk.segment_base;
                    if let Some(batches) = self.read_disk(offset, max_bytes, disk).await? {
                        return Ok(batches);
                    }
                    offset = self.after_segment(segment_base, bound);
                }
            }
        }
    }

    /// Where a read goes on when a compaction left nothing at or after its offset in the
    /// segment at `segment_base`: the next segment's base, at most the end of the read.
    fn after_segment(&self, segment_base: Offset, bound: Offset) -> Offset {
        let state = self.state.borrow();
        let end = bound.min(state.durable_end);
        let next = state.segments.range(segment_base + 1..).next();
        next.map_or(end, |(base, _)| (*base).min(end))
    }

    /// Where the batches at `offset` are now, checked against the current state.
    fn locate(
        &self,
        offset: Offset,
        max_bytes: usize,
        bound: Offset,
    ) -> Result<Located, StorageError> {
        let state = self.state.borrow();
        if state.closed {
            return Err(StorageError::Closed);
        }
        let end = bound.min(state.durable_end);
        if offset < state.log_start || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: state.log_start,
                end,
            });
        }
        if offset == end {
            return Ok(Located::Served(Vec::new()));
        }
        let cached = self.cache.read(self.cache_key, offset, max_bytes, end);
        if let Some(batches) = cached {
            return Ok(Located::Served(batches));
        }
        match self.read_ahead.lookup(offset, max_bytes, end) {
            Lookup::Hit {
                batches,
                stream,
                next,
            } => {
                if let Some(next) = next {
                    self.continue_read_ahead(&state, stream, next);
                }
                return Ok(Located::Served(batches));
            }
            Lookup::Wait(latch) => return Ok(Located::Wait(latch)),
            Lookup::Miss => {}
        }
        let (_, segment) = state
            .segments
            .range(..=offset)
            .next_back()
            .expect("offset >= start");
        let (position, first_offset) = segment.start_for_offset(offset);
        Ok(Located::Disk(DiskRead {
            file: segment.file.clone(),
            segment_base: segment.base_offset,
            position,
            first_offset,
            segment_end: segment.size,
            end,
        }))
    }

    /// Starts `stream`'s chunk at `at`, or ends the stream when there is nothing to read there
    /// (the durable end, the cache holds it, the log changed) or no room for it.
    fn continue_read_ahead(&self, state: &State, stream: u64, at: LogPosition) {
        let launched = match self.chunk_source(state, at) {
            Some(source) => self.read_ahead.launch(stream, source),
            None => false,
        };
        if !launched {
            self.read_ahead.end_stream_if_empty(stream);
        }
    }

    /// The file and range a read-ahead chunk at `at` reads: in `at`'s segment, or from the
    /// start of the next one when `at` is that segment's end (so a reader crosses segments
    /// without a miss). None below the start, at the durable end, or where the cache serves.
    fn chunk_source(&self, state: &State, at: LogPosition) -> Option<ChunkSource> {
        let readable = !state.closed && state.log_start <= at.offset;
        if !readable || at.offset >= state.durable_end {
            return None;
        }
        if self.cache.holds(self.cache_key, at.offset) {
            return None;
        }
        let segment = state.segments.get(&at.segment_base)?;
        let (segment, file_position) = if at.file_position < segment.size {
            (segment, at.file_position)
        } else {
            let (_, next) = state.segments.range(at.segment_base + 1..).next()?;
            (next.base_offset == at.offset).then_some((next, 0))?
        };
        Some(ChunkSource {
            file: segment.file.clone(),
            start: LogPosition {
                offset: at.offset,
                segment_base: segment.base_offset,
                file_position,
            },
            segment_end: segment.size,
            high_watermark: state.durable_end,
        })
    }

    /// One bounded DMA read for a fetch that neither cache nor read-ahead could serve; then a
    /// read-ahead stream starts after what it served. None when a compaction left no batch
    /// at or after `offset` in the segment (below the end of the read).
    async fn read_disk(
        &self,
        offset: Offset,
        max_bytes: usize,
        disk: DiskRead,
    ) -> Result<Option<Vec<Bytes>>, StorageError> {
        let continuity = self.continuity.get();
        let chunk_bytes = max_bytes.saturating_add(STORAGE_READ_BYTES_MAX / 16);
        let mut scanner = Scanner::new(disk.file, disk.position, disk.segment_end, chunk_bytes);
        let mut batches = Vec::new();
        let mut total = 0usize;
        let mut expected = disk.first_offset;
        let mut served_end = None;
        loop {
            if expected >= disk.end {
                break;
            }
            // Checked right after reading it back: damage never reaches a consumer, and the
            // batches before it are served.
            let checked = match scanner.next().await {
                Ok(Some((position, batch))) => check_batch(&batch, expected, continuity)
                    .map(|meta| (meta, position, batch))
                    .map_err(|reason| corrupt_at(position, &reason)),
                Ok(None) => break,
                Err(error) => Err(scan_error(error)),
            };
            let (meta, position, batch) = match checked {
                Ok(checked) => checked,
                Err(_) if !batches.is_empty() => break,
                Err(error) => return Err(error),
            };
            expected = meta.last_offset + 1;
            if meta.last_offset < offset {
                continue;
            }
            if !batches.is_empty() && total + batch.len() > max_bytes {
                break;
            }
            total += batch.len();
            served_end = Some(LogPosition {
                offset: expected,
                segment_base: disk.segment_base,
                file_position: position + batch.len() as u64,
            });
            batches.push(batch);
        }
        let Some(served_end) = served_end else {
            if continuity == Continuity::Sparse {
                return Ok(None);
            }
            return Err(StorageError::Corrupt(format!(
                "offset {offset} not found in its segment"
            )));
        };
        if let Some(stream) = self.read_ahead.new_stream(max_bytes) {
            self.continue_read_ahead(&self.state.borrow(), stream, served_end);
        }
        Ok(Some(batches))
    }

    /// The first batch at or after the log start and below `bound` (and the durable end)
    /// whose max timestamp is >= `timestamp`, or None.
    pub async fn find_batch_by_timestamp(
        &self,
        timestamp: i64,
        bound: Offset,
    ) -> Result<Option<Bytes>, StorageError> {
        let found = {
            let state = self.state.borrow();
            let (end, log_start) = (bound.min(state.durable_end), state.log_start);
            state
                .segments
                .values()
                .find(|segment| {
                    segment
                        .max_timestamp
                        .is_some_and(|(max, _)| max >= timestamp)
                })
                .map(|segment| {
                    let start = segment.start_for_timestamp(timestamp);
                    let file = segment.file.clone();
                    (file, start, segment.size, end, log_start)
                })
        };
        let Some((file, (position, mut expected), segment_end, end, log_start)) = found else {
            return Ok(None);
        };
        let mut scanner = Scanner::new(file, position, segment_end, STORAGE_READ_BYTES_MAX / 16);
        while let Some((position, batch)) = scanner.next().await.map_err(scan_error)? {
            if expected >= end {
                break;
            }
            let meta = check_batch(&batch, expected, self.continuity.get())
                .map_err(|e| corrupt_at(position, &e))?;
            expected = meta.last_offset + 1;
            if meta.max_timestamp >= timestamp && meta.last_offset >= log_start {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// Largest max timestamp in the log and the last offset of the first batch holding it.
    pub fn max_timestamp(&self) -> Option<(i64, Offset)> {
        let state = self.state.borrow();
        let mut best: Option<(i64, Offset)> = None;
        for (timestamp, offset) in state.segments.values().filter_map(|s| s.max_timestamp) {
            if best.is_none_or(|(max, _)| timestamp > max) {
                best = Some((timestamp, offset));
            }
        }
        best
    }
}

/// Where `Log::read` finds the batches it was asked for.
enum Located {
    Served(Vec<Bytes>),
    /// A read-ahead chunk holding them is being read.
    Wait(Rc<Latch>),
    Disk(DiskRead),
}

/// A disk read found under the state borrow: `position` of the segment at `segment_base` is
/// the indexed batch at `first_offset` at or before the wanted one; the read stops at the
/// segment's `segment_end` and before offset `end`.
struct DiskRead {
    file: SegmentFile,
    segment_base: Offset,
    position: u64,
    first_offset: Offset,
    segment_end: u64,
    end: Offset,
}

pub(super) fn scan_error(error: ScanError) -> StorageError {
    match error {
        ScanError::Io(error) => StorageError::Io(error),
        ScanError::Torn { position, reason } => StorageError::Corrupt(format!(
            "bad batch framing at position {position}: {reason}"
        )),
    }
}

pub(super) fn corrupt_at(position: u64, reason: &str) -> StorageError {
    StorageError::Corrupt(format!("stored batch at position {position}: {reason}"))
}

impl Log {
    /// Rolls the active segment if older than `segment_ms`, then deletes whole old segments
    /// beyond `retention_ms` / `retention_bytes` (never the active one).
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<(), StorageError> {
        let _io = self.io_lock.lock().await;
        let roll = {
            let state = self.state.borrow();
            Self::check_usable(&state)?;
            let active = state.segments.values().next_back().expect("active segment");
            let old = active
                .first_timestamp
                .is_some_and(|first| now_ms - first > state.config.segment_ms);
            old.then_some(active.next_offset)
        };
        if let Some(next_offset) = roll {
            let mut appender = self
                .appender
                .borrow_mut()
                .take()
                .expect("appender held by io_lock");
            let result = self.roll(&mut appender, next_offset).await;
            self.put_back(appender);
            match result {
                Ok(()) => {}
                // The segment stays sealed and is rolled later; deleting expired segments
                // below may be just what gives the space back.
                Err(StorageError::OutOfSpace(error)) => {
                    let dir = self.dir.display();
                    tracing::warn!(%dir, %error, "no space to roll the segment; retried later");
                }
                // A roll syncs and rewrites files: after a failure their state is unknown.
                Err(error) => return Err(self.fence(error)),
            }
        }
        self.release_cold_prewrite().await?;
        let doomed = self.take_expired_segments(now_ms);
        self.remove_segments(doomed).await
    }

    /// Trims the pre-written zeros of a log that is no longer hot, so that the shard's
    /// budget goes to the logs that write now. Holds `io_lock`.
    async fn release_cold_prewrite(&self) -> Result<(), StorageError> {
        if self.prewrite_held.get() == 0 || self.heat.borrow_mut().is_hot(clock::now()) {
            return Ok(());
        }
        let mut appender = self
            .appender
            .borrow_mut()
            .take()
            .expect("appender held by io_lock");
        let result = appender.release_prepared().await;
        self.put_back(appender);
        match result {
            Ok(()) => Ok(()),
            // Only zeros past the synced log end were being cut, so the log is sound either
            // way; the next pass tries again. A full disk is just when cold logs stop writing,
            // and fencing them then would keep them from coming back with the space.
            Err(error) if file::is_out_of_space(&error) => {
                let dir = self.dir.display();
                tracing::warn!(%dir, %error, "no space to trim a cold log's zeros; retried later");
                Ok(())
            }
            // Like a roll's trim: after any other failed truncate or sync the file's state is
            // unknown.
            Err(error) => Err(self.fence(error.into())),
        }
    }

    /// Truncates the prefix: moves the log start up to `offset` (at most the durable end),
    /// durably, then deletes the closed segments wholly below it. An offset at or below the
    /// current start changes nothing. Returns the log start after the call.
    pub async fn truncate_prefix(
        &self,
        offset: Offset,
        now_ms: i64,
    ) -> Result<Offset, StorageError> {
        let _io = self.io_lock.lock().await;
        {
            let state = self.state.borrow();
            Self::check_usable(&state)?;
            if offset < Offset::ZERO || offset > state.durable_end {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: state.log_start,
                    end: state.durable_end,
                });
            }
            if offset <= state.log_start {
                return Ok(state.log_start);
            }
        }
        log_start::write(&self.dir, offset).await?;
        self.state.borrow_mut().log_start = offset;
        let doomed = self.take_expired_segments(now_ms);
        self.remove_segments(doomed).await?;
        Ok(offset)
    }

    /// Deletes the files of segments already taken out of the state. Holds `io_lock`.
    async fn remove_segments(&self, doomed: Vec<Segment>) -> Result<(), StorageError> {
        if doomed.is_empty() {
            return Ok(());
        }
        self.read_ahead.invalidate();
        self.cache
            .remove_below(self.cache_key, self.log_start_offset());
        for segment in doomed {
            tracing::info!(dir = %self.dir.display(), base = %segment.base_offset, "retention");
            self.delete_segment_files(segment).await?;
        }
        file::sync_directory(&self.dir).await?;
        Ok(())
    }

    /// Where retention by time and size would move the log start now: the base of the oldest
    /// segment it keeps, if it deletes any. For a replica's log (see `set_retention_floor`),
    /// whose leader proposes the move to every replica.
    pub fn retention_start(&self, now_ms: i64) -> Option<Offset> {
        let state = self.state.borrow();
        let count = expired_prefix(&state, now_ms, true, None);
        let kept = state
            .segments
            .keys()
            .nth(count)
            .expect("the active segment is kept");
        (count > 0 && *kept > state.log_start).then_some(*kept)
    }

    /// Removes from the state the oldest closed segments that retention deletes (unless the
    /// log is a replica's, see `set_retention_floor`), or that lie wholly below the log start
    /// (DeleteRecords), advancing the log start offset, and returns them. The active (last)
    /// segment is always kept.
    fn take_expired_segments(&self, now_ms: i64) -> Vec<Segment> {
        let mut state = self.state.borrow_mut();
        let floor = state.retention_floor;
        let count = expired_prefix(&state, now_ms, floor.is_none(), floor);
        let doomed_bases: Vec<Offset> = state.segments.keys().take(count).copied().collect();
        let doomed = doomed_bases
            .iter()
            .map(|base| state.segments.remove(base).expect("listed above"))
            .collect();
        let first_base = *state.segments.keys().next().expect("active segment kept");
        state.log_start = state.log_start.max(first_base);
        doomed
    }

    /// Flushes, persists the active segment's indexes (skipped when nothing changed since
    /// open), and closes every file. The log is
    /// closed even when a step fails (a full device at the trim, say): the next open's
    /// recovery cuts an untrimmed tail and rebuilds what was not persisted. Returns the first
    /// error.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.state.borrow().closed {
            return Ok(());
        }
        let flushed = self.flush().await;
        let _io = self.io_lock.lock().await;
        if self.state.borrow().closed {
            return Ok(());
        }
        let mut appender = self.appender.borrow_mut().take();
        // A full device discarded only unwritten batches: what was written is still sound.
        let healthy_and_dirty = {
            let state = self.state.borrow();
            state.failed.is_none() && state.dirty
        };
        let tidied = match (&mut appender, healthy_and_dirty) {
            (Some(appender), true) => self.tidy_for_close(appender).await,
            _ => Ok(()),
        };
        let segments = {
            let mut state = self.state.borrow_mut();
            state.closed = true;
            std::mem::take(&mut state.segments)
        };
        self.read_ahead.invalidate();
        self.cache.remove_log(self.cache_key);
        drop(appender);
        // Trimmed above, or left for the next open's recovery to cut: not this shard's any more.
        self.prewrite.give_back(self.prewrite_held.replace(0));
        let mut files_closed = Ok(());
        for segment in segments.into_values() {
            if let Err(error) = segment.file.close().await {
                files_closed = files_closed.and(Err(error.into()));
            }
        }
        flushed.map(|_| ()).and(tidied).and(files_closed)
    }

    /// The active segment's part of a close: trimmed and synced, its indexes persisted.
    /// Holds `io_lock`.
    async fn tidy_for_close(&self, appender: &mut Appender) -> Result<(), StorageError> {
        appender.trim_and_sync().await?;
        self.persist_active_indexes(appender.base_offset()).await
    }

    /// Closes the log and deletes its directory, renamed to a deletion name first so that a
    /// crash midway never leaves a half-deleted partition that looks live (`directory`).
    pub async fn remove(&self) -> Result<(), StorageError> {
        if let Err(error) = self.close().await {
            tracing::warn!(dir = %self.dir.display(), %error, "closing a log being removed");
        }
        super::directory::remove_dir(&self.dir).await?;
        Ok(())
    }
}

impl Log {
    /// Truncates the suffix: removes every batch from `offset` on, staged or durable, so that
    /// the next append starts there (a replica dropping entries its leader does not have).
    /// `offset` must be a batch boundary between the log start and the log end. Staged
    /// batches removed are settled as discarded. The read-ahead and the cache forget the
    /// removed batches before their bytes go; the segment that holds the new end becomes the
    /// active one and loses its index files, which described the old content (a close writes
    /// them again, recovery rebuilds them). Any failure once the files change fences the log.
    pub async fn truncate_suffix(&self, offset: Offset) -> Result<(), StorageError> {
        let _io = self.io_lock.lock().await;
        let durable_end = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            if offset < state.log_start || offset > state.next_offset {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: state.log_start,
                    end: state.next_offset,
                });
            }
            if offset >= state.durable_end {
                let boundary = offset == state.durable_end
                    || offset == state.next_offset
                    || state.staged.iter().any(|s| s.meta.base_offset == offset);
                if !boundary {
                    return Err(StorageError::NotABatchBoundary(offset));
                }
                discard_staged_from(&mut state, offset);
                return Ok(());
            }
            state.durable_end
        };
        let cut = self.find_cut(offset).await?;
        debug_assert!(offset < durable_end);
        {
            let mut state = self.state.borrow_mut();
            discard_staged_from(&mut state, offset);
            state.dirty = true;
            state.rolls.retain(|base| *base <= offset);
        }
        self.read_ahead.invalidate();
        self.cache.remove_from(self.cache_key, offset);
        let old = self
            .appender
            .borrow_mut()
            .take()
            .expect("appender held by io_lock");
        match self.cut_files(cut).await {
            Ok(appender) => {
                drop(old);
                self.put_back(appender);
                let mut state = self.state.borrow_mut();
                state.durable_end = offset;
                debug_assert_eq!(state.next_offset, offset);
                Ok(())
            }
            Err(error) => {
                self.put_back(old);
                Err(self.fence(error))
            }
        }
    }

    /// Empties the log and starts it again at `offset`, which becomes its start and its end
    /// (Kafka's truncate-fully-and-start-at): a replica whose leader's log begins past this
    /// log's end. Staged batches are settled as discarded. The old segments are deleted oldest
    /// first, then the new one is created, then the log start written: a crash midway leaves
    /// a log that ends below `offset` (or an empty one at 0), which the layer above restarts
    /// again. Any failure once the files change fences the log.
    pub async fn restart_at(&self, offset: Offset) -> Result<(), StorageError> {
        let _io = self.io_lock.lock().await;
        let doomed = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            if offset < Offset::ZERO {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: state.log_start,
                    end: state.next_offset,
                });
            }
            discard_staged_from(&mut state, Offset::ZERO);
            state.dirty = true;
            state.rolls.clear();
            state.durable_end = Offset::ZERO.max(state.log_start.min(offset));
            state.next_offset = state.durable_end;
            std::mem::take(&mut state.segments)
        };
        self.read_ahead.invalidate();
        self.cache.remove_from(self.cache_key, Offset::ZERO);
        let old = self
            .appender
            .borrow_mut()
            .take()
            .expect("appender held by io_lock");
        drop(old);
        self.prewrite.give_back(self.prewrite_held.replace(0));
        match self.restart_files(doomed, offset).await {
            Ok((segment, appender)) => {
                let mut state = self.state.borrow_mut();
                state.segments.insert(offset, segment);
                state.log_start = offset;
                state.next_offset = offset;
                state.durable_end = offset;
                drop(state);
                self.put_back(appender);
                tracing::info!(dir = %self.dir.display(), %offset, "log restarted");
                Ok(())
            }
            Err(error) => Err(self.fence(error)),
        }
    }

    /// The files of `restart_at`. Holds `io_lock`; the caller fences the log on an error.
    async fn restart_files(
        &self,
        doomed: BTreeMap<Offset, Segment>,
        offset: Offset,
    ) -> Result<(Segment, Appender), StorageError> {
        for segment in doomed.into_values() {
            self.delete_segment_files(segment).await?;
        }
        file::sync_directory(&self.dir).await?;
        let segment = create_segment(&self.dir, offset).await?;
        log_start::write(&self.dir, offset).await?;
        let appender = Appender::open(segment.file.clone(), offset, 0).await?;
        Ok((segment, appender))
    }

    /// Where the log is cut for a suffix truncation at `offset` (below the durable end): the
    /// segment that keeps the batches before it and the byte position there. Reads the
    /// segment from its nearest index entry to find the batch that starts at `offset`.
    async fn find_cut(&self, offset: Offset) -> Result<Cut, StorageError> {
        let (segment_base, file, start, segment_end) = {
            let state = self.state.borrow();
            let (&base, segment) = state
                .segments
                .range(..=offset)
                .next_back()
                .expect("offset >= log start");
            let first = *state.segments.keys().next().expect("a segment");
            if offset == base && base != first {
                // The whole segment goes: the one before keeps everything it holds.
                let (&before, previous) = state
                    .segments
                    .range(..base)
                    .next_back()
                    .expect("a segment before");
                return Ok(Cut {
                    segment_base: before,
                    position: previous.size,
                    offset,
                });
            }
            let start = segment.start_for_offset(offset);
            (base, segment.file.clone(), start, segment.size)
        };
        let (mut position, mut expected) = start;
        let continuity = self.continuity.get();
        let mut scanner = Scanner::new(file, position, segment_end, STORAGE_READ_BYTES_MAX / 16);
        while expected < offset {
            let Some((at, batch)) = scanner.next().await.map_err(scan_error)? else {
                break;
            };
            let meta = check_batch(&batch, expected, continuity).map_err(|e| corrupt_at(at, &e))?;
            if meta.base_offset >= offset {
                // A compaction removed the batches between: the cut goes before this one.
                expected = offset;
                break;
            }
            expected = meta.last_offset + 1;
            position = at + meta.bytes;
        }
        if continuity == Continuity::Sparse && expected < offset {
            // The segment's last batches up to the cut were compacted away.
            expected = offset;
        }
        if expected != offset {
            return Err(StorageError::NotABatchBoundary(offset));
        }
        Ok(Cut {
            segment_base,
            position,
            offset,
        })
    }

    /// Deletes the segments after the cut, cuts its segment's file, and makes that segment
    /// the active one. Holds `io_lock`; the caller fences the log on an error.
    async fn cut_files(&self, cut: Cut) -> Result<Appender, StorageError> {
        // Readers stop at the cut from here on. The segment that keeps the batches below it
        // stays in the state while its file is cut (its bytes below the cut do not change),
        // so that reads below the cut go on meanwhile; its state is replaced once rescanned.
        let (doomed, kept) = {
            let mut state = self.state.borrow_mut();
            state.durable_end = state.durable_end.min(cut.offset);
            let doomed = state.segments.split_off(&(cut.segment_base + 1));
            let kept = state.segments[&cut.segment_base].clone();
            (doomed, kept)
        };
        for segment in doomed.into_values() {
            tracing::info!(dir = %self.dir.display(), base = %segment.base_offset, "suffix truncated");
            self.delete_segment_files(segment).await?;
        }
        for extension in ["index", "timeindex"] {
            side_file::remove_if_exists(&segment_path(&self.dir, cut.segment_base, extension))
                .await?;
        }
        file::sync_directory(&self.dir).await?;
        kept.file.truncate(cut.position).await?;
        kept.file.fdatasync().await?;
        let config = self.state.borrow().config.clone();
        let interval = config.index_interval_bytes;
        let continuity = self.continuity.get();
        let segment = rescan_segment(kept, cut.position, cut.offset, interval, continuity).await?;
        let appender = Appender::open(segment.file.clone(), cut.segment_base, cut.position).await?;
        self.state
            .borrow_mut()
            .segments
            .insert(cut.segment_base, segment);
        Ok(appender)
    }

    /// Closes a segment taken out of the state and deletes its files.
    pub(super) async fn delete_segment_files(&self, segment: Segment) -> Result<(), StorageError> {
        segment.file.close().await?;
        for extension in ["log", "index", "timeindex"] {
            side_file::remove_if_exists(&segment_path(&self.dir, segment.base_offset, extension))
                .await?;
        }
        Ok(())
    }
}

/// How many of the oldest segments go: those wholly below the log start and, with
/// `by_retention`, those the config's retention by time or size expires; never one holding
/// offsets at or past `floor`, never the active (last) one.
fn expired_prefix(state: &State, now_ms: i64, by_retention: bool, floor: Option<Offset>) -> usize {
    let config = &state.config;
    let mut total: u64 = state.segments.values().map(|segment| segment.size).sum();
    let mut count = 0;
    for oldest in state.segments.values().take(state.segments.len() - 1) {
        let expired = by_retention
            && config.retention_ms >= 0
            && oldest
                .max_timestamp
                .is_none_or(|(max, _)| now_ms - max > config.retention_ms);
        let too_big = by_retention
            && config.retention_bytes >= 0
            && total - oldest.size >= config.retention_bytes as u64;
        let below_start = oldest.next_offset <= state.log_start;
        let needed = floor.is_some_and(|floor| oldest.next_offset > floor);
        if needed || (!expired && !too_big && !below_start) {
            break;
        }
        total -= oldest.size;
        count += 1;
    }
    count
}

/// Where a suffix truncation cuts the log: the segment at `segment_base` keeps its first
/// `position` bytes (the batches below `offset`) and every later segment goes.
struct Cut {
    segment_base: Offset,
    position: u64,
    offset: Offset,
}

/// Drops the staged batches from `offset` on, settling them as discarded, and moves the log
/// end back to `offset`.
fn discard_staged_from(state: &mut State, offset: Offset) {
    while state
        .staged
        .back()
        .is_some_and(|staged| staged.meta.base_offset >= offset)
    {
        let staged = state.staged.pop_back().expect("checked");
        staged.ticket.settle(Settled::Discarded);
    }
    state.next_offset = offset;
}
