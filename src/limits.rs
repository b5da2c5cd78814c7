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

/// Largest response frame the control-plane encoder writes. Anything near it is a bug in a
/// handler; the Kafka length prefix could hold up to `i32::MAX`.
pub const RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Record bytes a single Fetch response carries at most, whatever the client asks for
/// (Kafka's broker-side `fetch.max.bytes` default, 55 MiB).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 55 * 1024 * 1024;

const _: () = assert!(RESPONSE_BYTES_MAX <= i32::MAX as usize);
// Fetch responses also carry per-partition headers; leave them ample room below the frame cap.
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX * 2 <= RESPONSE_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT < REQUEST_BYTES_MAX);
const _: () = assert!(RECORD_BATCH_HEADER_BYTES < DIO_ALIGNMENT_BYTES);
