//! The partition log: segments of verbatim Kafka v2 batches on O_DIRECT files.
//!
//! A partition directory holds segments named by their 20-digit base offset (`.log`, `.index`,
//! `.timeindex`), and the small files of the layer above (`side_file`). `Log` is the one
//! entry point the partition layer uses: a plain offset-addressed log that appends batches at
//! the offsets their caller stamped, flushes, reads up to a bound, and truncates either end.
//! Everything runs on one glommio executor and `Log` is shared as `Rc<Log>`. Only `file.rs`
//! touches glommio's file APIs. Invariants: offsets below the durable end are written and
//! fdatasynced; a failed write or sync never advances it and fences the log (see
//! `StorageError::Failed`), except a write, sync or roll that finds the device full, which
//! discards the unsynced batches instead (see `StorageError::OutOfSpace`). Errors keep their
//! OS error code from the device up (`os_error`), so that a real full disk is told from any
//! other failure.

mod appender;
mod cache;
mod compact;
#[cfg(test)]
mod crash_tests;
mod directory;
#[cfg(test)]
mod fault_tests;
pub mod faults;
mod file;
mod index;
mod log;
mod log_start;
pub mod partition_metadata;
mod prewrite;
mod read_ahead;
#[cfg(test)]
mod read_ahead_tests;
mod reader;
mod recovery;
#[cfg(test)]
mod recovery_tests;
mod segment;
pub mod side_file;
pub mod sim_disk;
#[cfg(test)]
mod tests;
mod ticket;

use crate::ids::Offset;

pub use cache::BatchCache;
pub use compact::{Gaps, Replaced, SegmentBatches, SegmentSpan};
pub use directory::{is_deletion_name, remove_dir};
pub use file::{disk_space, os_error, prime_device, sync_latencies};
pub use index::{lookup_offset, lookup_time_below, OffsetEntry, TimeEntry};
pub use log::{batch_meta, flush_lock_waits, stamp_batch, Log, LogConfig};
pub use read_ahead::ReadAheadStats;
pub use segment::BatchMeta;
pub use ticket::{AppendTicket, Settled};

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("offset {requested} out of range [{log_start}, {end}]")]
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        end: Offset,
    },
    /// An append's base offset is not the log end offset: nothing was appended.
    #[error("batch at offset {given} appended at log end offset {log_end}")]
    NotAtEnd { given: Offset, log_end: Offset },
    /// A suffix truncation was asked at an offset inside a batch: nothing was changed.
    #[error("offset {0} is not where a batch begins")]
    NotABatchBoundary(Offset),
    #[error("corrupt log: {0}")]
    Corrupt(String),
    /// An earlier write or sync failed; the log accepts nothing more until it is reopened,
    /// because after a failed fdatasync the state of the written pages is unknown.
    #[error("log failed after an earlier I/O error: {0}")]
    Failed(String),
    /// A write, sync or segment roll found the device full (or the quota exhausted). The
    /// batches not yet synced were discarded (never acknowledged) and the log stays usable:
    /// appends resume when space returns.
    #[error("no space left for the log; unwritten batches discarded: {0}")]
    OutOfSpace(std::io::Error),
    #[error("log is closed")]
    Closed,
}
