//! The storage half of log compaction: what a cleaner reads, and the atomic replacement of
//! closed segments by their cleaned copy. Which batches and records survive is the cleaner's
//! decision (`partition::cleaner`); here a batch is bytes in, bytes (or nothing) out.
//!
//! A replacement writes the cleaned batches of consecutive closed segments `[b0, .., bk]`
//! into one new file `<b0>.log.cleaned` with the O_DIRECT appender, syncs it, and then, under
//! the io lock (retention and truncation change segments only under it), renames it over
//! `<b0>.log`: that rename is the commit point. The later segments of the group are deleted
//! after it, oldest first. The batches keep their offsets (a compacted log is sparse: whole
//! batches may be gone, and a batch's offset range never changes), so a crash anywhere
//! leaves either the old segments, or the new one followed by some old ones whose batches it
//! holds cleaned, which recovery deletes (`recovery`, sparse logs), or old ones it left out
//! altogether, which only holds records the cleaned copy had removed as superseded and which
//! the next pass removes again: never a latest value lost, never a deleted key back.
//!
//! A replica's log is compacted without gaps (`Gaps::Fill`): dropped batches leave fillers,
//! empty batches of their offsets and epoch, so that its log stays dense; its first
//! replacement writes the `compacted-dense` marker before its commit, so that recovery
//! deletes merged leftovers there too. Otherwise the first replacement in a log writes the
//! `compacted` marker file, before its commit: a log with the marker is checked as sparse
//! (`Continuity::Sparse`) from then on, at open and on every read. Readers keep reading the
//! file they found (a clone of its descriptor) while a replacement commits; the read-ahead is
//! invalidated and the cache forgets the replaced range once the state names the new segment.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::ids::Offset;
use crate::limits::{COMPACTION_WRITE_CHUNK_BYTES, STORAGE_READ_BYTES_MAX};
use crate::protocol::{record_batch, records};
use crate::runtime;
use crate::storage::appender::Appender;
use crate::storage::file::{self, SegmentFile};
use crate::storage::log::Log;
use crate::storage::reader::{check_batch, Continuity, Scanner};
use crate::storage::segment::{segment_path, Segment};
use crate::storage::{side_file, StorageError};

/// The marker file of a log that a compaction has rewritten (see the module doc).
const MARKER_FILE: &str = "compacted";
/// The marker file of a log that a compaction without gaps (`Gaps::Fill`) has rewritten.
const DENSE_MARKER_FILE: &str = "compacted-dense";
/// The suffix of a cleaned segment not yet committed.
const CLEANED_SUFFIX: &str = ".cleaned";

/// What a log's compaction markers say, for its open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Compacted {
    /// How its batches follow each other: sparse once a compaction that leaves gaps
    /// committed in it.
    pub continuity: Continuity,
    /// Whether any compaction committed in it: a segment may then still follow the one it
    /// was merged into, for recovery to delete.
    pub merged: bool,
}

/// What the compactions of the log in `dir` left (see `Compacted`). Deletes the cleaned
/// files of a replacement that did not commit.
pub(super) async fn open_compacted(dir: &Path) -> Result<Compacted, StorageError> {
    for name in file::list_dir(dir)? {
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_SUFFIX) {
            tracing::info!(dir = %dir.display(), name, "deleting an unfinished compaction's file");
            side_file::remove_if_exists(&dir.join(name)).await?;
        }
    }
    let sparse = !file::is_missing(&dir.join(MARKER_FILE));
    Ok(Compacted {
        continuity: match sparse {
            true => Continuity::Sparse,
            false => Continuity::Dense,
        },
        merged: sparse || !file::is_missing(&dir.join(DENSE_MARKER_FILE)),
    })
}

/// What a replacement leaves where its filter dropped batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gaps {
    /// Nothing: the log becomes sparse (the `compacted` marker).
    Leave,
    /// A filler (`records::filler`) per run of dropped batches of one leader epoch: the log
    /// stays dense and still says in which epoch each offset was written, as a replica's log
    /// must (a follower copying it checks its own entries against those epochs, see
    /// `replication::replica`).
    Fill,
}

/// A closed segment as a cleaner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpan {
    pub base_offset: Offset,
    /// The base offset of the next segment: every offset of the span is below it.
    pub end_offset: Offset,
    pub bytes: u64,
    /// The largest timestamp of its batches, if any has one.
    pub max_timestamp: Option<i64>,
}

/// What a replacement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// The batches of one closed segment, read from its file front to back and checked as reads
/// check them (a damaged batch is an error, never handed to the cleaner).
pub struct SegmentBatches {
    scanner: Scanner,
    expected: Offset,
    continuity: Continuity,
    bytes_read: u64,
}

impl SegmentBatches {
    /// The next batch, or None at the segment's end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, StorageError> {
        let Some((position, batch)) = self.scanner.next().await.map_err(super::log::scan_error)?
        else {
            return Ok(None);
        };
        let meta = check_batch(&batch, self.expected, self.continuity)
            .map_err(|reason| super::log::corrupt_at(position, &reason))?;
        self.expected = meta.last_offset + 1;
        self.bytes_read += meta.bytes;
        Ok(Some(batch))
    }
}

impl Log {
    /// The closed segments (every one but the active), oldest first.
    pub fn closed_segments(&self) -> Vec<SegmentSpan> {
        let state = self.state.borrow();
        let segments: Vec<&Segment> = state.segments.values().collect();
        segments
            .windows(2)
            .map(|pair| SegmentSpan {
                base_offset: pair[0].base_offset,
                end_offset: pair[1].base_offset,
                bytes: pair[0].size,
                max_timestamp: pair[0].max_timestamp.map(|(timestamp, _)| timestamp),
            })
            .collect()
    }

    /// The batches of the closed segment at `base_offset`, or None if it is gone (retention
    /// deleted it) or is the active one.
    pub fn segment_batches(&self, base_offset: Offset) -> Option<SegmentBatches> {
        let state = self.state.borrow();
        let (&last, _) = state.segments.iter().next_back()?;
        if base_offset == last {
            return None;
        }
        let segment = state.segments.get(&base_offset)?;
        let chunk_bytes = STORAGE_READ_BYTES_MAX / 4;
        Some(SegmentBatches {
            scanner: Scanner::new(segment.file.clone(), 0, segment.size, chunk_bytes),
            expected: base_offset,
            continuity: self.continuity.get(),
            bytes_read: 0,
        })
    }

    /// Replaces the consecutive closed segments `bases` by one segment at `bases[0]` holding
    /// what `filter` makes of each of their batches, in order (None drops the batch; a batch
    /// given back must keep its base and last offset), with what `gaps` says where batches
    /// were dropped. See the module doc for the steps and
    /// what a crash leaves. Gives `Ok(None)` without changing anything if the segments
    /// changed meanwhile (retention deleted one) or the log was closed or fenced. A failure
    /// after the commit fences the log.
    pub async fn replace_segments(
        &self,
        bases: &[Offset],
        mut filter: impl FnMut(Bytes) -> Option<Bytes>,
        gaps: Gaps,
    ) -> Result<Option<Replaced>, StorageError> {
        assert!(!bases.is_empty(), "a replacement replaces segments");
        Self::check_usable(&self.state.borrow())?;
        let Some(spans) = self.spans_of(bases) else {
            return Ok(None);
        };
        let first = bases[0];
        let group_end = spans.last().expect("not empty").end_offset;
        let cleaned_path = cleaned_path(&self.dir, first);
        side_file::remove_if_exists(&cleaned_path).await?;
        let file = SegmentFile::open_or_create(&cleaned_path).await?;
        let written = self
            .write_cleaned(file.clone(), bases, &mut filter, gaps)
            .await;
        let (mut segment, replaced) = match written {
            Ok(Some(written)) => written,
            Ok(None) => {
                file.close().await?;
                side_file::remove_if_exists(&cleaned_path).await?;
                return Ok(None);
            }
            Err(error) => {
                let _ = file.close().await;
                side_file::remove_if_exists(&cleaned_path).await?;
                return Err(error);
            }
        };
        segment.next_offset = group_end;
        match gaps {
            Gaps::Leave if self.continuity.get() == Continuity::Dense => {
                side_file::replace(&self.dir.join(MARKER_FILE), &[]).await?;
                self.continuity.set(Continuity::Sparse);
            }
            Gaps::Fill if file::is_missing(&self.dir.join(DENSE_MARKER_FILE)) => {
                side_file::replace(&self.dir.join(DENSE_MARKER_FILE), &[]).await?;
            }
            Gaps::Leave | Gaps::Fill => {}
        }
        let _io = self.io_lock.lock().await;
        let usable = Self::check_usable(&self.state.borrow());
        if usable.is_err() || self.spans_of(bases).as_deref() != Some(&spans[..]) {
            file.close().await?;
            side_file::remove_if_exists(&cleaned_path).await?;
            return Ok(None);
        }
        match self.commit_replacement(bases, segment, &cleaned_path).await {
            Ok(()) => Ok(Some(replaced)),
            Err(error) => Err(self.fence(error)),
        }
    }

    /// The spans of `bases` if each is a closed segment and they follow each other.
    fn spans_of(&self, bases: &[Offset]) -> Option<Vec<SegmentSpan>> {
        let closed = self.closed_segments();
        let start = closed
            .iter()
            .position(|span| span.base_offset == bases[0])?;
        let spans = closed.get(start..start + bases.len())?;
        let follow = spans
            .iter()
            .zip(bases)
            .all(|(span, base)| span.base_offset == *base);
        follow.then(|| spans.to_vec())
    }

    /// Writes the cleaned batches of `bases` into `file` and syncs it. None if a segment
    /// went away meanwhile.
    async fn write_cleaned(
        &self,
        file: SegmentFile,
        bases: &[Offset],
        filter: &mut impl FnMut(Bytes) -> Option<Bytes>,
        gaps: Gaps,
    ) -> Result<Option<(Segment, Replaced)>, StorageError> {
        let interval = self.state.borrow().config.index_interval_bytes;
        let mut out = CleanedWriter {
            appender: Appender::open(file.clone(), bases[0], 0).await?,
            segment: Segment::new(bases[0], file),
            pending: Vec::new(),
            pending_bytes: 0,
            interval,
        };
        let mut bytes_read = 0;
        // The removed batches not yet covered by a filler: first offset, last offset, epoch.
        let mut run: Option<(Offset, Offset, i32)> = None;
        for &base in bases {
            let Some(mut batches) = self.segment_batches(base) else {
                return Ok(None);
            };
            while let Some(batch) = batches.next().await? {
                let meta = super::batch_meta(&batch).map_err(StorageError::Corrupt)?;
                let epoch = record_batch::header(&batch)
                    .map_or(-1, |header| header.partition_leader_epoch.get());
                match filter(batch) {
                    Some(kept) => {
                        if let Some(filler) = run.take().map(filler_of) {
                            out.push(filler).await?;
                        }
                        out.push(kept).await?;
                    }
                    None if gaps == Gaps::Fill => {
                        run = match run {
                            Some((first, _, run_epoch)) if run_epoch == epoch => {
                                Some((first, meta.last_offset, epoch))
                            }
                            other => {
                                if let Some(filler) = other.map(filler_of) {
                                    out.push(filler).await?;
                                }
                                Some((meta.base_offset, meta.last_offset, epoch))
                            }
                        }
                    }
                    None => {}
                }
                runtime::yield_if_needed().await;
            }
            bytes_read += batches.bytes_read;
        }
        if let Some(filler) = run.take().map(filler_of) {
            out.push(filler).await?;
        }
        let segment = out.finish().await?;
        let replaced = Replaced {
            bytes_read,
            bytes_written: segment.size,
        };
        Ok(Some((segment, replaced)))
    }

    /// The commit of a replacement and what follows it. Holds `io_lock`; the caller fences
    /// the log on an error.
    async fn commit_replacement(
        &self,
        bases: &[Offset],
        mut segment: Segment,
        cleaned_path: &Path,
    ) -> Result<(), StorageError> {
        let first = bases[0];
        // The old first segment's indexes must not describe the new file, even for a moment.
        for extension in ["index", "timeindex"] {
            side_file::remove_if_exists(&segment_path(&self.dir, first, extension)).await?;
        }
        file::sync_directory(&self.dir).await?;
        file::rename(cleaned_path, &segment_path(&self.dir, first, "log")).await?;
        file::sync_directory(&self.dir).await?;
        let encoded = segment.encode_indexes();
        let group_end = segment.next_offset;
        let old: Vec<Segment> = {
            let mut state = self.state.borrow_mut();
            let old = bases
                .iter()
                .map(|base| state.segments.remove(base).expect("checked under the lock"))
                .collect();
            state.segments.insert(first, segment);
            old
        };
        self.read_ahead.invalidate();
        self.cache.remove_range(self.cache_key, first, group_end);
        let mut old = old.into_iter();
        // Its name is the new segment's now: only its descriptor goes.
        old.next().expect("not empty").file.close().await?;
        for segment in old {
            self.delete_segment_files(segment).await?;
        }
        file::sync_directory(&self.dir).await?;
        encoded.write(&self.dir).await?;
        Ok(())
    }
}

/// The filler of a run of removed batches (first offset, last offset, leader epoch).
fn filler_of((first, last, epoch): (Offset, Offset, i32)) -> Bytes {
    records::filler(first, last, epoch)
}

/// The cleaned segment being written: batches gathered into chunks for the appender, and
/// indexed as they go.
struct CleanedWriter {
    appender: Appender,
    segment: Segment,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    interval: u64,
}

impl CleanedWriter {
    async fn push(&mut self, batch: Bytes) -> Result<(), StorageError> {
        let meta = super::batch_meta(&batch).map_err(StorageError::Corrupt)?;
        self.segment
            .observe(self.segment.size, &meta, self.interval);
        self.pending_bytes += batch.len();
        self.pending.push(batch);
        if self.pending_bytes >= COMPACTION_WRITE_CHUNK_BYTES {
            self.appender.write(&self.pending).await?;
            self.pending.clear();
            self.pending_bytes = 0;
        }
        Ok(())
    }

    /// Writes what is pending and syncs the file.
    async fn finish(mut self) -> Result<Segment, StorageError> {
        self.appender.write(&self.pending).await?;
        self.appender.sync().await?;
        self.appender.trim_and_sync().await?;
        Ok(self.segment)
    }
}

fn cleaned_path(dir: &Path, base_offset: Offset) -> PathBuf {
    let mut name = segment_path(dir, base_offset, "log").into_os_string();
    name.push(CLEANED_SUFFIX);
    PathBuf::from(name)
}
