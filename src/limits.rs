//! Every limit of the broker in one place, with the relations between them checked at compile
//! time. Names carry their unit last (`_bytes`, `_ms`, `_count`).

/// Largest request frame accepted from a client (`socket.request.max.bytes` default in Kafka).
pub const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Size of the Kafka v2 record batch header, up to and including the record count.
pub const RECORD_BATCH_HEADER_BYTES: usize = 61;

/// Default largest record batch a topic accepts (`max.message.bytes`, as in Kafka).
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1024 * 1024 + 12;

/// Alignment of every direct-I/O write and read.
pub const DIO_ALIGNMENT_BYTES: usize = 4096;

const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT < REQUEST_BYTES_MAX);
const _: () = assert!(RECORD_BATCH_HEADER_BYTES < DIO_ALIGNMENT_BYTES);

/// Largest single DMA read the storage layer issues (bigger batches are read in pieces).
pub const STORAGE_READ_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest single DMA write the appender issues; a flush of more data is split.
pub const STORAGE_WRITE_BYTES_MAX: usize = 1024 * 1024;

/// Largest batch recovery accepts from disk: no batch can exceed the request that carried it.
pub const STORAGE_BATCH_BYTES_MAX: usize = REQUEST_BYTES_MAX;

/// Default distance in log bytes between two sparse index entries (`index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES_DEFAULT: u64 = 4096;

/// Default segment size (`segment.bytes` in Kafka).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Largest index file (either kind) recovery loads; a bigger one is treated as garbage.
pub const INDEX_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

const _: () = assert!(STORAGE_READ_BYTES_MAX % DIO_ALIGNMENT_BYTES == 0);
const _: () = assert!(STORAGE_WRITE_BYTES_MAX % DIO_ALIGNMENT_BYTES == 0);
const _: () = assert!(STORAGE_READ_BYTES_MAX >= MESSAGE_BYTES_MAX_DEFAULT);
const _: () = assert!(STORAGE_BATCH_BYTES_MAX >= MESSAGE_BYTES_MAX_DEFAULT);
