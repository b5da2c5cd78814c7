//! Log compaction of one partition (Kafka's log cleaner): keep the latest record of every key
//! in the closed segments, remove tombstones once consumers had `delete.retention.ms` to see
//! them, and leave offsets as they were. `storage::compact` does the files; this module
//! decides which records stay.
//!
//! A pass, as in Kafka:
//! 1. The cleanable range is the prefix of closed segments below the last stable offset whose
//!    records are all older than `min.compaction.lag.ms`. Its dirty part begins where the
//!    last pass ended (the history below); the dirty ratio is the dirty part's share of the
//!    range's bytes. A pass runs when the ratio reaches `min.cleanable.dirty.ratio`, or when
//!    dirty records are older than `max.compaction.lag.ms`.
//! 2. The key map: a digest of each key in the dirty part -> the offset of its latest record,
//!    as many keys as the shard's budget holds (`KeyMap`); where it fills, the pass ends
//!    (`map_end`) and the next pass goes on from there.
//! 3. The segments of the range up to `map_end` are rewritten, merged while they fit in
//!    `segment.bytes`: a record below `map_end` stays unless the map holds a later record of
//!    its key, it has no key, or it is a tombstone first cleaned more than
//!    `delete.retention.ms` ago. A batch keeps its offsets and producer fields; one left
//!    empty is kept (empty) while it is its producer's last, so that the producer state
//!    survives a rebuild from the log, as Kafka keeps it, and goes at the first pass after
//!    the producer wrote another batch or expired.
//!
//! Transactions, as Kafka's cleaner treats them (`CleanedTransactionMetadata`): records of
//! committed transactions are mapped and cleaned like any others; batches of aborted
//! transactions go whole (read_committed consumers never read them), also where they hold a
//! key's latest record. A transaction's marker (its control batch) stays while any batch of
//! the transaction is left, so that a rebuild of the producer state from the log never sees
//! a transaction without its end (its last stable offset would stay behind it for ever);
//! the pass walks its batches in offset order and notes, per producer, whether a batch of its
//! current transaction was read. A marker none of whose batches was read goes once it has
//! been cleaned `delete.retention.ms` ago, as a tombstone does, so that a consumer that read
//! the transaction's records also reads its end. An abort marker goes only after its entry
//! in the aborted-transaction index, which the first pass that finds no batch of its
//! transaction removes (durably, after the pass's segments): an entry without its marker
//! would make a read_committed consumer drop the producer's next, committed, transaction.
//! Markers go only below the oldest producer snapshot, so that no rebuild starts from a
//! snapshot that holds their transaction open. Records that cannot be parsed keep their
//! whole batch.
//!
//! A replica's log (a Raft group's, see `replication`) is cleaned only below its retention
//! floor, the end of its durable Raft base, so that the entries Raft may still read or
//! rebuild its window from stay as they were; and removed batches leave fillers
//! (`storage::Gaps::Fill`), so that its log stays dense and says the epoch of every offset.
//! Every replica cleans its own log, as every Kafka replica does.
//!
//! The history (`cleaner-checkpoint` beside the segments) says up to which offset each pass
//! cleaned and when: the end of the last one is where the dirty part begins, and the time of
//! the first pass that covered a tombstone starts its `delete.retention.ms` (Kafka's delete
//! horizon). It is written after the segments are replaced: a crash in between only makes
//! the next pass clean the same records again.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{producer_snapshot, Partition};
use crate::ids::Offset;
use crate::limits::CLEANER_KEY_MAP_ENTRY_BYTES;
use crate::metadata::topic_config::TopicConfig;
use crate::protocol::control::TxnMarker;
use crate::protocol::record_batch::{self, ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL};
use crate::protocol::records::{self, Retained};
use crate::runtime;
use crate::storage::{side_file, Gaps, SegmentSpan, StorageError};

/// The history's file in the partition directory.
const HISTORY_FILE: &str = "cleaner-checkpoint";
/// Most passes the history remembers; older ones merge into the next (later) one, which only
/// keeps their tombstones longer.
const HISTORY_PASSES_MAX: usize = 64;
/// A history file larger than this is not ours.
const HISTORY_BYTES_MAX: u64 = 64 * 1024;

/// A key's digest: 128 bits of SHA-256, so that two keys collide (and one's latest value
/// would remove the other's) with negligible probability, as Kafka's MD5 map.
type KeyDigest = [u8; 16];

fn digest(key: &[u8]) -> KeyDigest {
    let hash = Sha256::digest(key);
    hash[..16].try_into().expect("16 of 32 bytes")
}

/// The key map of a shard's cleaner, reused pass after pass: key digest -> offset of the
/// latest record. Per-shard.
pub struct KeyMap {
    latest: HashMap<KeyDigest, Offset>,
    capacity: usize,
}

impl KeyMap {
    /// A map of at most `budget_bytes` (see `limits::CLEANER_KEY_MAP_ENTRY_BYTES`).
    pub fn new(budget_bytes: u64) -> KeyMap {
        KeyMap {
            latest: HashMap::new(),
            capacity: (budget_bytes / CLEANER_KEY_MAP_ENTRY_BYTES).max(1) as usize,
        }
    }

    fn clear(&mut self) {
        self.latest.clear();
    }

    /// Whether `more` keys may still go in.
    fn has_room(&self, more: usize) -> bool {
        self.latest.len() + more <= self.capacity
    }

    fn insert(&mut self, key: &[u8], offset: Offset) {
        self.latest.insert(digest(key), offset);
    }

    /// Whether a record of `key` later than `offset` is mapped.
    fn superseded(&self, key: &[u8], offset: Offset) -> bool {
        self.latest
            .get(&digest(key))
            .is_some_and(|latest| *latest > offset)
    }
}

/// Up to which offset each pass cleaned, and when (see the module doc). Ascending in both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanerHistory {
    passes: Vec<(Offset, i64)>,
}

impl CleanerHistory {
    /// Where the dirty part begins: the end of the last pass.
    pub fn cleaned_to(&self) -> Option<Offset> {
        self.passes.last().map(|(end, _)| *end)
    }

    /// When the pass that first cleaned `offset` ran, if one did.
    fn first_cleaned_at(&self, offset: Offset) -> Option<i64> {
        let pass = self.passes.iter().find(|(end, _)| offset < *end);
        pass.map(|(_, at)| *at)
    }

    /// Whether a tombstone at `offset` has been visible for `delete_retention_ms` since its
    /// first cleaning.
    fn tombstone_expired(&self, offset: Offset, now_ms: i64, delete_retention_ms: i64) -> bool {
        self.first_cleaned_at(offset)
            .is_some_and(|at| now_ms.saturating_sub(at) > delete_retention_ms)
    }

    /// Records a pass that cleaned up to `end` at `now_ms`.
    fn record(&mut self, end: Offset, now_ms: i64) {
        if self.cleaned_to().is_some_and(|last| end <= last) {
            return;
        }
        let at = self
            .passes
            .last()
            .map_or(now_ms, |(_, last)| now_ms.max(*last));
        self.passes.push((end, at));
        if self.passes.len() > HISTORY_PASSES_MAX {
            self.passes.remove(0);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = String::from("corelog-cleaner-checkpoint 1\n");
        for (end, at) in &self.passes {
            out.push_str(&format!("{} {at}\n", end.get()));
        }
        out.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<CleanerHistory> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        (lines.next()? == "corelog-cleaner-checkpoint 1").then_some(())?;
        let mut history = CleanerHistory::default();
        for line in lines {
            let (end, at) = line.split_once(' ')?;
            let (end, at) = (Offset(end.parse().ok()?), at.parse().ok()?);
            let ascending = history
                .passes
                .last()
                .is_none_or(|(last_end, last_at)| end > *last_end && at >= *last_at);
            ascending.then_some(())?;
            history.passes.push((end, at));
        }
        Some(history)
    }

    /// The partition's history, or an empty one if there is none or it is unreadable (every
    /// record is then dirty and every tombstone new: a pass keeps more, never less).
    pub async fn load(dir: &std::path::Path) -> CleanerHistory {
        let path = dir.join(HISTORY_FILE);
        match side_file::read(&path, HISTORY_BYTES_MAX).await {
            Ok(Some(bytes)) => CleanerHistory::decode(&bytes).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "cleaner checkpoint unreadable; starting over");
                CleanerHistory::default()
            }),
            Ok(None) => CleanerHistory::default(),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "reading the cleaner checkpoint");
                CleanerHistory::default()
            }
        }
    }

    async fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        side_file::replace(&dir.join(HISTORY_FILE), &self.encode()).await
    }
}

/// The compaction settings of a topic (Kafka's topic configs of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub delete_retention_ms: i64,
    pub segment_bytes: u64,
}

impl CompactionConfig {
    /// The settings of a topic whose `cleanup.policy` includes compact, else None.
    pub fn of(config: &TopicConfig) -> Option<CompactionConfig> {
        config.is_compacted().then_some(CompactionConfig {
            min_cleanable_dirty_ratio: config.min_cleanable_dirty_ratio,
            min_compaction_lag_ms: config.min_compaction_lag_ms,
            max_compaction_lag_ms: config.max_compaction_lag_ms,
            delete_retention_ms: config.delete_retention_ms,
            segment_bytes: config.segment_bytes,
        })
    }
}

/// The part of a log a pass may clean, and how dirty it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleanable {
    /// The closed segments of the cleanable range, oldest first.
    pub spans: Vec<SegmentSpan>,
    /// Where the dirty part begins.
    pub dirty_start: Offset,
    pub dirty_ratio: f64,
    /// Whether dirty records are older than `max.compaction.lag.ms`.
    pub overdue: bool,
}

impl Cleanable {
    /// The cleanable range of `closed` (the log's closed segments) below `stable` (the last
    /// stable offset), given where the last pass ended.
    pub fn of(
        closed: &[SegmentSpan],
        stable: Offset,
        cleaned_to: Option<Offset>,
        config: &CompactionConfig,
        now_ms: i64,
    ) -> Cleanable {
        let young = |span: &SegmentSpan| {
            span.max_timestamp
                .is_some_and(|max| now_ms.saturating_sub(max) < config.min_compaction_lag_ms)
        };
        let spans: Vec<SegmentSpan> = closed
            .iter()
            .take_while(|span| span.end_offset <= stable && !young(span))
            .copied()
            .collect();
        let first = spans.first().map_or(Offset::ZERO, |span| span.base_offset);
        let dirty_start = cleaned_to.map_or(first, |cleaned| cleaned.max(first));
        let total: u64 = spans.iter().map(|span| span.bytes).sum();
        let dirty_spans = spans.iter().filter(|span| span.end_offset > dirty_start);
        let dirty: u64 = dirty_spans.clone().map(|span| span.bytes).sum();
        let overdue = dirty_spans.clone().any(|span| {
            span.max_timestamp
                .is_some_and(|max| now_ms.saturating_sub(max) > config.max_compaction_lag_ms)
        });
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        Cleanable {
            spans,
            dirty_start,
            dirty_ratio,
            overdue,
        }
    }

    /// Whether a pass should run now.
    pub fn is_due(&self, config: &CompactionConfig) -> bool {
        let has_dirty = self
            .spans
            .last()
            .is_some_and(|last| last.end_offset > self.dirty_start);
        has_dirty && (self.dirty_ratio >= config.min_cleanable_dirty_ratio || self.overdue)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// The offset the pass cleaned up to.
    pub cleaned_to: Offset,
}

/// Groups the spans up to `map_end` into the replacements of a pass: consecutive spans whose
/// bytes together fit in `segment_bytes` (a span larger than that stays on its own).
fn groups(spans: &[SegmentSpan], map_end: Offset, segment_bytes: u64) -> Vec<Vec<Offset>> {
    let mut groups: Vec<Vec<Offset>> = Vec::new();
    let mut group_bytes = 0;
    for span in spans.iter().take_while(|span| span.base_offset < map_end) {
        match groups.last_mut() {
            Some(group) if group_bytes + span.bytes <= segment_bytes => {
                group.push(span.base_offset);
                group_bytes += span.bytes;
            }
            _ => {
                groups.push(vec![span.base_offset]);
                group_bytes = span.bytes;
            }
        }
    }
    groups
}

/// One pass: what it cleans with, and what it has seen of transactions so far.
struct Pass<'a> {
    key_map: &'a KeyMap,
    history: &'a CleanerHistory,
    config: CompactionConfig,
    /// Every record below it is mapped.
    map_end: Offset,
    /// Where the dirty part began: records below it were cleaned by an earlier pass.
    dirty_start: Offset,
    now_ms: i64,
    txns: TxnWalk,
}

/// What a pass has read of transactions, walking its batches in offset order from the log's
/// first segment (see the module doc).
struct TxnWalk {
    /// Producers a batch of whose current transaction was read: its marker stays.
    with_batches: HashSet<i64>,
    /// Markers below it may go: the oldest producer snapshot's offset.
    markers_below: Offset,
    /// False once a group of the pass could not be read whole: later markers then stay.
    whole: bool,
    /// Abort markers of transactions none of whose batches is left, whose index entries are
    /// removed after the pass.
    spent_aborts: Vec<Offset>,
}

impl TxnWalk {
    fn new(markers_below: Offset) -> TxnWalk {
        TxnWalk {
            with_batches: HashSet::new(),
            markers_below,
            whole: true,
            spent_aborts: Vec::new(),
        }
    }
}

impl Pass<'_> {
    /// Whether a tombstone or marker at `offset` was cleaned `delete.retention.ms` ago.
    fn is_past_horizon(&self, offset: Offset) -> bool {
        offset < self.dirty_start
            && self
                .history
                .tombstone_expired(offset, self.now_ms, self.config.delete_retention_ms)
    }
}

impl Partition {
    /// The cleaner's history, loaded at the first pass.
    async fn cleaner_history(&self) -> CleanerHistory {
        if let Some(history) = self.cleaner_history.borrow().clone() {
            return history;
        }
        let history = CleanerHistory::load(self.log.dir()).await;
        *self.cleaner_history.borrow_mut() = Some(history.clone());
        history
    }

    /// Whether its topic is compacted (`cleanup.policy` has `compact`).
    pub fn is_compacted(&self) -> bool {
        self.config.borrow().is_compacted()
    }

    /// What a pass of this partition would clean now, if its topic is compacted.
    pub async fn cleanable(&self, now_ms: i64) -> Option<(CompactionConfig, Cleanable)> {
        let config = CompactionConfig::of(&self.config.borrow())?;
        let history = self.cleaner_history().await;
        let mut stable = self.last_stable_offset();
        if let Some(floor) = self.log.retention_floor() {
            stable = stable.min(floor);
        }
        let closed = self.log.closed_segments();
        let cleanable = Cleanable::of(&closed, stable, history.cleaned_to(), &config, now_ms);
        self.metrics.dirty_ratio.set(cleanable.dirty_ratio);
        Some((config, cleanable))
    }

    /// One cleaner pass if one is due (see the module doc). Returns what it did, or None if
    /// nothing was due.
    pub async fn clean(
        &self,
        key_map: &mut KeyMap,
        now_ms: i64,
    ) -> Result<Option<CleanStats>, StorageError> {
        let Some((config, cleanable)) = self.cleanable(now_ms).await else {
            return Ok(None);
        };
        if !cleanable.is_due(&config) {
            return Ok(None);
        }
        let mut history = self.cleaner_history().await;
        key_map.clear();
        let (map_end, mut bytes_read) = self.build_key_map(key_map, &cleanable).await?;
        let mut bytes_written = 0;
        let gaps = match self.log.retention_floor() {
            Some(_) => Gaps::Fill,
            None => Gaps::Leave,
        };
        let mut pass = Pass {
            key_map,
            history: &history,
            config,
            map_end,
            dirty_start: cleanable.dirty_start,
            now_ms,
            txns: TxnWalk::new(self.markers_removable_below()),
        };
        for group in groups(&cleanable.spans, map_end, config.segment_bytes) {
            let mut keep = |batch: Bytes| self.clean_batch(batch, &mut pass);
            match self.log.replace_segments(&group, &mut keep, gaps).await? {
                Some(replaced) => {
                    bytes_read += replaced.bytes_read;
                    bytes_written += replaced.bytes_written;
                }
                None => pass.txns.whole = false,
            }
        }
        self.forget_spent_aborts(&pass.txns.spent_aborts).await;
        history.record(map_end, now_ms);
        if let Err(error) = history.save(self.log.dir()).await {
            let (topic, partition) = (&self.tp.topic, self.tp.partition);
            tracing::warn!(%topic, %partition, %error, "saving the cleaner checkpoint; the next pass cleans again");
        }
        *self.cleaner_history.borrow_mut() = Some(history);
        let metrics = &self.metrics;
        metrics
            .cleaner_bytes_read
            .set(metrics.cleaner_bytes_read.get() + bytes_read);
        metrics
            .cleaner_bytes_written
            .set(metrics.cleaner_bytes_written.get() + bytes_written);
        metrics.cleaner_last_pass_ms.set(crate::metadata::now_ms());
        let _ = self.cleanable(now_ms).await;
        Ok(Some(CleanStats {
            bytes_read,
            bytes_written,
            cleaned_to: map_end,
        }))
    }

    /// Maps the latest record of every key of the dirty part, as far as the map holds them.
    /// Returns where the mapping ended (every record below it is mapped) and the bytes read.
    async fn build_key_map(
        &self,
        key_map: &mut KeyMap,
        cleanable: &Cleanable,
    ) -> Result<(Offset, u64), StorageError> {
        let dirty_start = cleanable.dirty_start;
        let mut bytes_read = 0;
        let dirty = cleanable
            .spans
            .iter()
            .filter(|span| span.end_offset > dirty_start);
        for span in dirty {
            let Some(mut batches) = self.log.segment_batches(span.base_offset) else {
                // Retention deleted it meanwhile: clean what was mapped so far.
                return Ok((span.base_offset.max(dirty_start), bytes_read));
            };
            while let Some(batch) = batches.next().await? {
                bytes_read += batch.len() as u64;
                let meta = crate::storage::batch_meta(&batch).map_err(StorageError::Corrupt)?;
                if meta.last_offset < dirty_start || !self.is_mapped(&batch) {
                    continue;
                }
                let Ok(views) = records::parse(&batch) else {
                    continue;
                };
                let first_batch = key_map.latest.is_empty();
                if !first_batch && !key_map.has_room(views.len()) {
                    return Ok((meta.base_offset.max(dirty_start), bytes_read));
                }
                for view in &views {
                    let offset = meta.base_offset + i64::from(view.offset_delta);
                    if let (Some(key), true) = (&view.key, offset >= dirty_start) {
                        key_map.insert(key, offset);
                    }
                }
                runtime::yield_if_needed().await;
            }
        }
        let end = cleanable
            .spans
            .last()
            .map_or(dirty_start, |span| span.end_offset);
        Ok((end, bytes_read))
    }

    /// Whether a stored batch's records go into the key map: not a control batch, not of an
    /// aborted transaction.
    fn is_mapped(&self, batch: &[u8]) -> bool {
        let Some(header) = record_batch::header(batch) else {
            return false;
        };
        let attributes = header.attributes.get();
        let base = Offset(header.base_offset.get());
        attributes & ATTRIBUTE_CONTROL == 0
            && (attributes & ATTRIBUTE_TRANSACTIONAL == 0
                || !self.is_aborted(header.producer_id.get(), base))
    }

    /// What a pass keeps of one stored batch (see the module doc).
    fn clean_batch(&self, batch: Bytes, pass: &mut Pass) -> Option<Bytes> {
        let Some(header) = record_batch::header(&batch) else {
            return Some(batch);
        };
        let attributes = header.attributes.get();
        let base = Offset(header.base_offset.get());
        let producer_id = header.producer_id.get();
        if attributes & ATTRIBUTE_CONTROL != 0 {
            return self.clean_marker(batch, base, pass);
        }
        let transactional = attributes & ATTRIBUTE_TRANSACTIONAL != 0;
        if transactional {
            pass.txns.with_batches.insert(producer_id);
        }
        if header.record_count.get() == 0 {
            // Kept empty for its producer by an earlier pass: it goes once a later batch of
            // the producer carries its state.
            return self.is_last_batch_of(producer_id, base).then_some(batch);
        }
        if transactional && self.is_aborted(producer_id, base) {
            return self.emptied(batch, producer_id, base);
        }
        let pass = &*pass;
        let keep = |_: usize, view: &records::RecordView| {
            let offset = base + i64::from(view.offset_delta);
            if offset >= pass.map_end {
                return true;
            }
            let Some(key) = &view.key else {
                return false;
            };
            if pass.key_map.superseded(key, offset) {
                return false;
            }
            let expired = view.value_is_null && pass.is_past_horizon(offset);
            !expired
        };
        match records::retain(&batch, keep) {
            Ok(Retained::All) | Err(_) => Some(batch),
            Ok(Retained::Some(kept)) => Some(kept),
            Ok(Retained::None) => self.emptied(batch, producer_id, base),
        }
    }

    /// Whether a transaction marker stays (see the module doc).
    fn clean_marker(&self, batch: Bytes, offset: Offset, pass: &mut Pass) -> Option<Bytes> {
        let Some(marker) = TxnMarker::from_batch(&batch) else {
            return Some(batch);
        };
        let has_batches = pass.txns.with_batches.remove(&marker.producer_id);
        if has_batches || !pass.txns.whole || offset >= pass.txns.markers_below {
            return Some(batch);
        }
        if !marker.commit && self.producers.borrow().holds_aborted_marker(offset) {
            pass.txns.spent_aborts.push(offset);
            return Some(batch);
        }
        (!pass.is_past_horizon(offset)).then_some(batch)
    }

    /// Where markers may go: below the oldest producer snapshot (none while there is none,
    /// or the directory cannot be listed).
    fn markers_removable_below(&self) -> Offset {
        match producer_snapshot::oldest_snapshot(self.log.dir()) {
            Ok(oldest) => oldest.unwrap_or(Offset::ZERO),
            Err(error) => {
                let (topic, partition) = (&self.tp.topic, self.tp.partition);
                tracing::warn!(%topic, %partition, %error, "listing producer snapshots; transaction markers stay");
                Offset::ZERO
            }
        }
    }

    /// Removes the index entries of aborted transactions none of whose batches is left: from
    /// the files first, so that an entry is never gone from memory (and its marker free to
    /// go) while a file still holds it.
    async fn forget_spent_aborts(&self, markers: &[Offset]) {
        if markers.is_empty() {
            return;
        }
        let _held = self.snapshots.lock().await;
        match producer_snapshot::forget_aborted(self.log.dir(), markers).await {
            Ok(()) => self.producers.borrow_mut().forget_aborted_markers(markers),
            Err(error) => {
                let (topic, partition) = (&self.tp.topic, self.tp.partition);
                tracing::warn!(%topic, %partition, %error, "removing spent aborted transactions; their markers stay");
            }
        }
    }

    /// What stays of a batch none of whose records stay: nothing, or the empty batch Kafka
    /// keeps while it is its producer's last.
    fn emptied(&self, batch: Bytes, producer_id: i64, base_offset: Offset) -> Option<Bytes> {
        if !self.is_last_batch_of(producer_id, base_offset) {
            return None;
        }
        match record_batch::validate(&batch) {
            Ok(summary) => Some(records::empty_batch(&summary)),
            Err(_) => Some(batch),
        }
    }

    /// Whether the transactional batch of `producer_id` at `base_offset` belongs to a
    /// transaction that aborted (the aborted-transaction index holds every abort below the
    /// last stable offset, which bounds the cleanable range).
    fn is_aborted(&self, producer_id: i64, base_offset: Offset) -> bool {
        self.aborted_overlapping(base_offset, base_offset + 1)
            .iter()
            .any(|(aborted, first_offset)| *aborted == producer_id && *first_offset <= base_offset)
    }

    /// Whether the batch at `base_offset` is the last the partition knows of `producer_id`: not
    /// of a producer it forgot (expired after `--producer-id-expiration-ms`, as Kafka keeps
    /// only its active producers' last batches).
    fn is_last_batch_of(&self, producer_id: i64, base_offset: Offset) -> bool {
        producer_id >= 0
            && self
                .producers
                .borrow()
                .last_batch_offset(producer_id)
                .is_some_and(|last| last <= base_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(base: i64, end: i64, bytes: u64, max_timestamp: i64) -> SegmentSpan {
        SegmentSpan {
            base_offset: Offset(base),
            end_offset: Offset(end),
            bytes,
            max_timestamp: Some(max_timestamp),
        }
    }

    fn config() -> CompactionConfig {
        CompactionConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 1000,
            segment_bytes: 100,
        }
    }

    /// The cleanable range stops at the last stable offset and at the first segment younger
    /// than the minimum lag; the ratio counts the bytes after the last pass.
    #[test]
    fn cleanable_range_and_dirty_ratio() {
        let closed = [
            span(0, 10, 40, 100),
            span(10, 20, 30, 200),
            span(20, 30, 30, 900),
        ];
        let all = Cleanable::of(&closed, Offset(30), None, &config(), 1000);
        assert_eq!(all.spans.len(), 3);
        assert_eq!(all.dirty_start, Offset(0));
        assert_eq!(all.dirty_ratio, 1.0);
        assert!(all.is_due(&config()));
        let below_stable = Cleanable::of(&closed, Offset(25), None, &config(), 1000);
        assert_eq!(below_stable.spans.len(), 2);
        let lagging = CompactionConfig {
            min_compaction_lag_ms: 500,
            ..config()
        };
        assert_eq!(
            Cleanable::of(&closed, Offset(30), None, &lagging, 1000)
                .spans
                .len(),
            2
        );
        let after_pass = Cleanable::of(&closed, Offset(30), Some(Offset(10)), &config(), 1000);
        assert_eq!(after_pass.dirty_start, Offset(10));
        assert_eq!(after_pass.dirty_ratio, 0.6);
        let mostly_clean = Cleanable::of(&closed, Offset(30), Some(Offset(20)), &config(), 1000);
        assert!(!mostly_clean.is_due(&config()));
        let overdue = CompactionConfig {
            max_compaction_lag_ms: 50,
            ..config()
        };
        let forced = Cleanable::of(&closed, Offset(30), Some(Offset(20)), &overdue, 1000);
        assert!(forced.overdue && forced.is_due(&overdue));
        let clean = Cleanable::of(&closed, Offset(30), Some(Offset(30)), &config(), 1000);
        assert!(!clean.is_due(&overdue));
    }

    /// Segments are merged while they fit in segment.bytes, and only those below the map's end.
    #[test]
    fn groups_fit_in_a_segment() {
        let spans = [
            span(0, 10, 40, 0),
            span(10, 20, 50, 0),
            span(20, 30, 30, 0),
            span(30, 40, 200, 0),
            span(40, 50, 10, 0),
        ];
        let offsets = |groups: Vec<Vec<Offset>>| -> Vec<Vec<i64>> {
            groups
                .iter()
                .map(|g| g.iter().map(|o| o.get()).collect())
                .collect()
        };
        assert_eq!(
            offsets(groups(&spans, Offset(50), 100)),
            vec![vec![0, 10], vec![20], vec![30], vec![40]]
        );
        assert_eq!(offsets(groups(&spans, Offset(15), 100)), vec![vec![0, 10]]);
    }

    /// A tombstone's retention counts from the first pass that covered it; the history
    /// survives its encoding and refuses what it did not write.
    #[test]
    fn history_dates_tombstones_from_their_first_pass() {
        let mut history = CleanerHistory::default();
        history.record(Offset(100), 1_000);
        history.record(Offset(50), 1_500);
        history.record(Offset(200), 2_000);
        assert_eq!(history.cleaned_to(), Some(Offset(200)));
        assert!(history.tombstone_expired(Offset(99), 2_001, 1_000));
        assert!(!history.tombstone_expired(Offset(100), 2_001, 1_000));
        assert!(history.tombstone_expired(Offset(100), 3_001, 1_000));
        assert!(!history.tombstone_expired(Offset(200), 10_000, 1_000));
        let decoded = CleanerHistory::decode(&history.encode()).unwrap();
        assert_eq!(decoded, history);
        assert!(CleanerHistory::decode(b"something else\n").is_none());
        assert!(CleanerHistory::decode(b"corelog-cleaner-checkpoint 1\n5 10\n4 20\n").is_none());
        for end in 0..(HISTORY_PASSES_MAX as i64 + 10) {
            history.record(Offset(300 + end), 3_000 + end);
        }
        assert_eq!(history.passes.len(), HISTORY_PASSES_MAX);
    }

    /// The map refuses keys beyond its budget and compares offsets by key.
    #[test]
    fn key_map_budget_and_supersession() {
        let mut map = KeyMap::new(CLEANER_KEY_MAP_ENTRY_BYTES * 2);
        assert!(map.has_room(2) && !map.has_room(3));
        map.insert(b"a", Offset(5));
        map.insert(b"a", Offset(7));
        assert!(map.superseded(b"a", Offset(5)));
        assert!(!map.superseded(b"a", Offset(7)));
        assert!(!map.superseded(b"b", Offset(0)));
    }
}
