//! Read-ahead for catch-up consumers: while a fetch's answer travels to the client, the next
//! chunk of the same log is already being read, so the disk does not idle between fetches.
//!
//! O_DIRECT reads get no kernel read-ahead, so without this a consumer reading old data keeps
//! the disk at queue depth one with gaps. Each `Log` owns a `ReadAhead`: up to
//! `READ_AHEAD_STREAMS_PER_LOG_MAX` streams (one per sequential reader), each a run of at most
//! `READ_AHEAD_CHUNKS_PER_STREAM_MAX` contiguous chunks, a chunk being whole, CRC-checked
//! batches of one segment read by one DMA read in a background task. A fetch that misses the
//! batch cache looks here first; a hit serves batches from the chunks and starts the chunk
//! after the last one; a fetch for the start of a chunk still being read waits for it rather
//! than reading the same bytes again; anything else is a miss, read from disk by the fetch
//! itself, which then starts a stream after what it served.
//!
//! Invariants:
//! - Bounded memory: every chunk holds a `Reservation` of the shard's `ReadAheadBudget` from
//!   the moment its read starts until it is dropped; a chunk that does not fit is not read.
//! - Never stale: `invalidate` (the log closed, segments deleted, a future truncation) drops
//!   every stream and bumps the generation, and a read that started under an older
//!   generation throws its bytes away. Chunks stop at the high watermark seen when their read
//!   started, and the watermark only grows within a generation.
//! - Never a fault of its own: a read-ahead that fails (I/O error, damaged or torn batch) just
//!   ends its chunk; nothing is reported and nothing is fenced. The fetch that needs those
//!   bytes reads them itself and reports what it finds.
//! - A reader that stops does not hold the budget: when a chunk does not fit, streams of any
//!   log of the shard unused for `READ_AHEAD_STREAM_IDLE_MS` are dropped first.
//! - No thrash between readers of one log: a miss takes a free stream slot, or the slot of a
//!   stream that served nothing during the last `READ_AHEAD_STREAM_IDLE_MISSES` misses of the
//!   log; a stream in use is never replaced, so extra readers just read without read-ahead.
//!
//! Per-shard: the budget lives on one core and is shared by that core's logs through `Rc`.

use crate::ids::Offset;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::limits::{
    READ_AHEAD_CHUNKS_PER_STREAM_MAX, READ_AHEAD_CHUNK_BYTES_MAX, READ_AHEAD_CHUNK_BYTES_MIN,
    READ_AHEAD_STREAMS_PER_LOG_MAX, READ_AHEAD_STREAM_IDLE_MISSES, READ_AHEAD_STREAM_IDLE_MS,
    STORAGE_READ_BYTES_MAX,
};
use crate::runtime::clock;
use crate::storage::file::SegmentFile;
use crate::storage::reader::{check_batch, Continuity, ScanError, Scanner};
use crate::sync::Latch;

/// Counters of one shard's read-ahead, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadAheadStats {
    /// Fetches served from read-ahead chunks.
    pub hits: u64,
    /// Fetches that missed the batch cache and the read-ahead and read from disk themselves.
    pub misses: u64,
    /// Bytes read from disk by read-ahead tasks.
    pub read_bytes: u64,
    /// Bytes reserved by chunks held or being read now.
    pub held_bytes: usize,
}

/// The per-shard byte budget of read-ahead chunks and its counters. Per-shard.
pub struct ReadAheadBudget {
    budget_bytes: usize,
    held_bytes: Cell<usize>,
    hits: Cell<u64>,
    misses: Cell<u64>,
    read_bytes: Cell<u64>,
    /// Every log's read-ahead on this shard, to reclaim idle streams when the budget is full.
    logs: RefCell<Vec<Weak<ReadAhead>>>,
}

impl ReadAheadBudget {
    pub fn new(budget_bytes: usize) -> Rc<ReadAheadBudget> {
        Rc::new(ReadAheadBudget {
            budget_bytes,
            held_bytes: Cell::new(0),
            hits: Cell::new(0),
            misses: Cell::new(0),
            read_bytes: Cell::new(0),
            logs: RefCell::new(Vec::new()),
        })
    }

    /// Drops the streams of every log on the shard that served nothing since `idle_before`.
    /// Logs busy in a borrow right now (none: callers hold no borrow) are skipped.
    fn reclaim_idle(&self, idle_before: Instant) {
        let logs: Vec<Rc<ReadAhead>> = {
            let mut logs = self.logs.borrow_mut();
            logs.retain(|log| log.strong_count() > 0);
            logs.iter().filter_map(Weak::upgrade).collect()
        };
        for log in logs {
            if let Ok(mut inner) = log.inner.try_borrow_mut() {
                inner
                    .streams
                    .retain(|stream| stream.last_used >= idle_before);
            }
        }
    }

    pub fn stats(&self) -> ReadAheadStats {
        ReadAheadStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            read_bytes: self.read_bytes.get(),
            held_bytes: self.held_bytes.get(),
        }
    }

    /// `bytes` of the budget until the reservation drops, or None if they are not free.
    fn reserve(self: &Rc<Self>, bytes: usize) -> Option<Reservation> {
        let held = self.held_bytes.get();
        if held + bytes > self.budget_bytes {
            return None;
        }
        self.held_bytes.set(held + bytes);
        Some(Reservation {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Bytes of a `ReadAheadBudget`, given back on drop.
struct Reservation {
    budget: Rc<ReadAheadBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let held = self.budget.held_bytes.get();
        assert!(held >= self.bytes, "reservations add up to the held bytes");
        self.budget.held_bytes.set(held - self.bytes);
    }
}

/// A place in the log: the batch at `offset` starts at `file_position` of the segment based
/// at `segment_base`, or that segment ends there and `offset` starts the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogPosition {
    pub offset: Offset,
    pub segment_base: Offset,
    pub file_position: u64,
}

/// What a chunk read needs from the log, found under its state borrow.
pub(crate) struct ChunkSource {
    pub file: SegmentFile,
    /// Where the chunk starts; `file_position` is inside the segment (not at its end).
    pub start: LogPosition,
    /// The segment's written size when the read starts.
    pub segment_end: u64,
    /// Batches at or past it are not read.
    pub high_watermark: Offset,
}

/// One checked batch of a chunk.
struct Batch {
    base_offset: Offset,
    last_offset: Offset,
    bytes: Bytes,
}

enum ChunkState {
    /// Being read; raised when the read ends, whatever came of it.
    Loading(Rc<Latch>),
    Ready {
        batches: Vec<Batch>,
        end: LogPosition,
    },
}

struct Chunk {
    start: LogPosition,
    state: ChunkState,
    _reservation: Reservation,
}

struct Stream {
    id: u64,
    chunk_bytes: usize,
    /// Contiguous: each chunk starts where the one before ended; only the last may be loading.
    chunks: VecDeque<Chunk>,
    /// Misses of the log since this stream last served a fetch.
    idle_misses: u32,
    /// When it was made or last served a fetch.
    last_used: Instant,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    streams: Vec<Stream>,
    next_stream_id: u64,
}

/// One log's read-ahead streams. Per-shard, like its log.
pub(crate) struct ReadAhead {
    budget: Rc<ReadAheadBudget>,
    inner: RefCell<Inner>,
}

/// What the read-ahead can do for a fetch.
pub(crate) enum Lookup {
    /// Batches from the requested offset on; `next` is where a new chunk of `stream` should
    /// start, if the stream has room for one.
    Hit {
        batches: Vec<Bytes>,
        stream: u64,
        next: Option<LogPosition>,
    },
    /// The chunk holding the offset is being read: wait for it, then look again.
    Wait(Rc<Latch>),
    Miss,
}

/// Bytes a read-ahead chunk reads for a reader that fetches `max_bytes` at a time: what a
/// fetch's own disk read takes, within the chunk limits.
pub(crate) fn chunk_bytes_for(max_bytes: usize) -> usize {
    max_bytes
        .saturating_add(STORAGE_READ_BYTES_MAX / 16)
        .clamp(READ_AHEAD_CHUNK_BYTES_MIN, READ_AHEAD_CHUNK_BYTES_MAX)
}

impl ReadAhead {
    pub fn new(budget: Rc<ReadAheadBudget>) -> Rc<ReadAhead> {
        let ahead = Rc::new(ReadAhead {
            budget,
            inner: RefCell::new(Inner::default()),
        });
        ahead.budget.logs.borrow_mut().push(Rc::downgrade(&ahead));
        ahead
    }

    /// Drops every stream and makes reads in flight throw their bytes away: the log's bytes
    /// changed (segments deleted, log closed or truncated).
    pub fn invalidate(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.generation += 1;
        inner.streams.clear();
    }

    /// Serves `offset` (below `high_watermark`) from a ready chunk, up to `max_bytes` (at
    /// least one batch), or says to wait for the chunk being read at `offset`.
    pub fn lookup(&self, offset: Offset, max_bytes: usize, high_watermark: Offset) -> Lookup {
        let mut inner = self.inner.borrow_mut();
        let found = inner.streams.iter().position(|s| stream_covers(s, offset));
        let Some(index) = found else {
            for stream in &mut inner.streams {
                stream.idle_misses = stream.idle_misses.saturating_add(1);
            }
            self.budget.misses.set(self.budget.misses.get() + 1);
            return Lookup::Miss;
        };
        let stream = &mut inner.streams[index];
        let mut batches = Vec::new();
        let mut total = 0usize;
        let mut next = offset;
        'chunks: for chunk in &stream.chunks {
            match &chunk.state {
                // Half a fetch or less in hand: wait and answer with a full one.
                ChunkState::Loading(latch) if total <= max_bytes / 2 => {
                    return Lookup::Wait(latch.clone())
                }
                ChunkState::Loading(_) => break,
                ChunkState::Ready { batches: ready, .. } => {
                    for batch in ready {
                        if batch.last_offset < next {
                            continue;
                        }
                        let full = !batches.is_empty() && total + batch.bytes.len() > max_bytes;
                        if full || batch.last_offset >= high_watermark {
                            break 'chunks;
                        }
                        assert!(batch.base_offset <= next, "chunks are contiguous");
                        total += batch.bytes.len();
                        batches.push(batch.bytes.clone());
                        next = batch.last_offset + 1;
                    }
                }
            }
        }
        if batches.is_empty() {
            self.budget.misses.set(self.budget.misses.get() + 1);
            return Lookup::Miss;
        }
        self.budget.hits.set(self.budget.hits.get() + 1);
        stream.idle_misses = 0;
        stream.last_used = clock::now();
        Lookup::Hit {
            batches,
            stream: stream.id,
            next: consume_below(stream, next),
        }
    }

    /// A stream for a reader that just missed, fetching `max_bytes` at a time: a free slot,
    /// or the slot of an idle stream. None while every slot serves someone.
    pub fn new_stream(&self, max_bytes: usize) -> Option<u64> {
        let mut inner = self.inner.borrow_mut();
        let id = inner.next_stream_id;
        let stream = Stream {
            id,
            chunk_bytes: chunk_bytes_for(max_bytes),
            chunks: VecDeque::new(),
            idle_misses: 0,
            last_used: clock::now(),
        };
        if inner.streams.len() < READ_AHEAD_STREAMS_PER_LOG_MAX {
            inner.streams.push(stream);
        } else {
            let idle = inner
                .streams
                .iter()
                .position(|s| s.idle_misses >= READ_AHEAD_STREAM_IDLE_MISSES)?;
            inner.streams[idle] = stream;
        }
        inner.next_stream_id += 1;
        Some(id)
    }

    /// Ends a stream that has nothing more to read (the watermark, the cache or the budget
    /// stopped it) once its chunks are served.
    pub fn end_stream_if_empty(&self, stream: u64) {
        let mut inner = self.inner.borrow_mut();
        inner
            .streams
            .retain(|s| s.id != stream || !s.chunks.is_empty());
    }

    /// Starts reading the chunk at `source.start` for `stream` in a background task, if the
    /// stream still exists, has room and the budget has the bytes (after reclaiming idle
    /// streams). Returns whether it did.
    pub fn launch(self: &Rc<Self>, stream: u64, source: ChunkSource) -> bool {
        let Some(chunk_bytes) = self.room_for_chunk(stream, source.start.offset) else {
            return false;
        };
        let reservation = self.budget.reserve(chunk_bytes).or_else(|| {
            let idle = Duration::from_millis(READ_AHEAD_STREAM_IDLE_MS);
            let now = clock::now();
            self.budget
                .reclaim_idle(now.checked_sub(idle).unwrap_or(now));
            self.budget.reserve(chunk_bytes)
        });
        let Some(reservation) = reservation else {
            return false;
        };
        // Reclaiming may have dropped this very stream.
        if self.room_for_chunk(stream, source.start.offset).is_none() {
            return false;
        }
        let mut inner = self.inner.borrow_mut();
        let generation = inner.generation;
        let entry = inner.streams.iter_mut().find(|s| s.id == stream);
        let entry = entry.expect("room_for_chunk found it");
        let latch = Rc::new(Latch::default());
        entry.chunks.push_back(Chunk {
            start: source.start,
            state: ChunkState::Loading(latch.clone()),
            _reservation: reservation,
        });
        let key = (generation, stream, source.start.offset);
        // The task may run as soon as it is spawned (a failed read never suspends).
        drop(inner);
        let ahead = self.clone();
        crate::runtime::spawn_local(async move {
            let loaded = read_chunk(&source, chunk_bytes, &ahead.budget).await;
            ahead.complete(key, loaded);
            latch.raise();
        })
        .detach();
        true
    }

    /// The chunk size of `stream` if it exists, is not reading, and has room for a chunk at
    /// `start` (which must continue its last chunk).
    fn room_for_chunk(&self, stream: u64, start: Offset) -> Option<usize> {
        let inner = self.inner.borrow();
        let stream = inner.streams.iter().find(|s| s.id == stream)?;
        if stream.chunks.len() >= READ_AHEAD_CHUNKS_PER_STREAM_MAX {
            return None;
        }
        match stream.chunks.back().map(|chunk| &chunk.state) {
            Some(ChunkState::Loading(_)) => return None,
            Some(ChunkState::Ready { end, .. }) => {
                assert_eq!(end.offset, start, "chunks of a stream are contiguous")
            }
            None => {}
        }
        Some(stream.chunk_bytes)
    }

    /// Files the result of a chunk read, unless the log changed meanwhile. An empty or failed
    /// read ends the chunk: the fetch that reaches it reads from disk itself.
    fn complete(&self, key: (u64, u64, Offset), loaded: Option<(Vec<Batch>, LogPosition)>) {
        let (generation, stream, start) = key;
        let mut inner = self.inner.borrow_mut();
        if inner.generation != generation {
            return;
        }
        let Some(index) = inner.streams.iter().position(|s| s.id == stream) else {
            return;
        };
        let chunks = &mut inner.streams[index].chunks;
        let Some(at) = chunks.iter().position(|chunk| chunk.start.offset == start) else {
            return;
        };
        match loaded {
            Some((batches, end)) if !batches.is_empty() => {
                chunks[at].state = ChunkState::Ready { batches, end };
            }
            _ => {
                chunks.truncate(at);
                if chunks.is_empty() {
                    inner.streams.remove(index);
                }
            }
        }
    }
}

/// Whether `stream` holds `offset` in a ready chunk, or is reading the chunk starting there.
fn stream_covers(stream: &Stream, offset: Offset) -> bool {
    stream.chunks.iter().any(|chunk| match &chunk.state {
        ChunkState::Loading(_) => chunk.start.offset == offset,
        ChunkState::Ready { end, .. } => chunk.start.offset <= offset && offset < end.offset,
    })
}

/// Drops the chunks wholly served (everything below `next`); returns where the next chunk
/// should start if the stream has room for one and is not reading already.
fn consume_below(stream: &mut Stream, next: Offset) -> Option<LogPosition> {
    let mut consumed_end = None;
    while let Some(ChunkState::Ready { end, .. }) = stream.chunks.front().map(|c| &c.state) {
        if end.offset > next {
            break;
        }
        consumed_end = Some(*end);
        stream.chunks.pop_front();
    }
    match stream.chunks.back().map(|chunk| &chunk.state) {
        None => consumed_end,
        Some(ChunkState::Loading(_)) => None,
        Some(ChunkState::Ready { end, .. }) => {
            (stream.chunks.len() < READ_AHEAD_CHUNKS_PER_STREAM_MAX).then_some(*end)
        }
    }
}

/// Reads whole batches from `source.start` within one chunk of `chunk_bytes` (one DMA read)
/// and checks each like any disk read. Stops quietly at the first batch that does not fit the
/// chunk, is damaged, or reaches the watermark; None on an I/O error.
async fn read_chunk(
    source: &ChunkSource,
    chunk_bytes: usize,
    budget: &ReadAheadBudget,
) -> Option<(Vec<Batch>, LogPosition)> {
    let start = source.start.file_position;
    let window_end = source.segment_end.min(start + chunk_bytes as u64);
    let mut scanner = Scanner::new(source.file.clone(), start, window_end, chunk_bytes);
    let mut batches = Vec::new();
    let mut end = source.start;
    while end.offset < source.high_watermark {
        let (position, bytes) = match scanner.next().await {
            Ok(Some(found)) => found,
            Ok(None) | Err(ScanError::Torn { .. }) => break,
            Err(ScanError::Io(error)) => {
                tracing::debug!(%error, "read-ahead failed; the fetch will read itself");
                return None;
            }
        };
        // A gap a compaction left (see `compact`) ends the chunk: the fetch reads on itself.
        let Ok(meta) = check_batch(&bytes, end.offset, Continuity::Dense) else {
            break;
        };
        end = LogPosition {
            offset: meta.last_offset + 1,
            segment_base: source.start.segment_base,
            file_position: position + bytes.len() as u64,
        };
        batches.push(Batch {
            base_offset: meta.base_offset,
            last_offset: meta.last_offset,
            bytes,
        });
    }
    budget
        .read_bytes
        .set(budget.read_bytes.get() + (window_end - start));
    Some((batches, end))
}
