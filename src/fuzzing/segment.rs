//! Segment recovery on arbitrary file contents, through the real `Log::open` on O_DIRECT files.
//!
//! Each thread keeps one executor and one scratch directory under the temp dir
//! (`TMPDIR`), because making an io_uring executor per input would cost more than the input.
//! The oracle, [`valid_prefix`], restates recovery's rule independently: keep the longest run
//! of whole batches that validate and continue the offsets; drop everything after it.

use crate::ids::Offset;
use std::path::{Path, PathBuf};

use crate::limits::STORAGE_BATCH_BYTES_MAX;
use crate::protocol::record_batch::{declared_batch_bytes, validate};
use crate::runtime::ThreadExecutor;
use crate::storage::{prime_device, BatchCache, Log, LogConfig};

/// Name of the single segment each input becomes (base offset 0).
const SEGMENT_FILE: &str = "00000000000000000000.log";

struct Scratch {
    executor: ThreadExecutor,
    root: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

thread_local! {
    static SCRATCH: Scratch = {
        let executor = ThreadExecutor::new();
        let thread = format!("{:?}", std::thread::current().id());
        let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
        let root = std::env::temp_dir().join(format!(
            "corelog-fuzz-{}-{thread}",
            std::process::id()
        ));
        executor
            .run(prime_device(&root))
            .expect("the scratch directory takes direct I/O");
        Scratch { executor, root }
    };
}

/// `data` as the only segment of a partition: opening the log must succeed, keep exactly the
/// valid prefix (offsets and bytes), serve it back batch by batch, and close cleanly.
pub fn segment_recovery(data: &[u8]) {
    SCRATCH.with(|scratch| {
        let dir = scratch.root.join("topic-0");
        scratch.executor.run(recover_and_check(&dir, data));
    });
}

async fn recover_and_check(dir: &Path, data: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch partition directory");
    std::fs::write(dir.join(SEGMENT_FILE), data).expect("write the segment");
    let (kept_bytes, next_offset) = valid_prefix(data, Offset::ZERO);
    let log = Log::open(
        dir.to_path_buf(),
        LogConfig::default(),
        BatchCache::new(1 << 20),
    )
    .await
    .unwrap_or_else(|error| panic!("recovery failed: {error}"));
    assert_eq!(log.log_end_offset(), next_offset, "recovered end offset");
    assert_eq!(
        log.size_bytes(),
        kept_bytes as u64,
        "recovered segment size"
    );
    let mut served = Vec::with_capacity(kept_bytes);
    let mut offset = Offset::ZERO;
    while offset < next_offset {
        let batches = log.read(offset, 1 << 20, next_offset);
        let batches = batches.await.expect("read a kept offset");
        for batch in batches {
            let summary = validate(&batch).expect("recovery keeps only valid batches");
            offset = Offset(summary.base_offset) + i64::from(summary.last_offset_delta) + 1;
            served.extend_from_slice(&batch);
        }
    }
    assert!(
        served == data[..kept_bytes],
        "served bytes differ from the kept prefix"
    );
    log.close().await.expect("close the recovered log");
    let on_disk = std::fs::read(dir.join(SEGMENT_FILE)).expect("read the segment back");
    assert!(
        on_disk == data[..kept_bytes],
        "the file is not cut at the valid prefix"
    );
}

/// Bytes and next offset of the longest prefix of `data` that recovery must keep: whole
/// batches, each within the storage batch limit, valid, and continuing the offsets from
/// `base_offset`.
pub fn valid_prefix(data: &[u8], base_offset: Offset) -> (usize, Offset) {
    let (mut at, mut next) = (0, base_offset);
    while let Some(rest) = data.get(at..) {
        let Ok(length) = declared_batch_bytes(rest) else {
            break;
        };
        if length > STORAGE_BATCH_BYTES_MAX || length > rest.len() {
            break;
        }
        let Ok(summary) = validate(&rest[..length]) else {
            break;
        };
        if Offset(summary.base_offset) != next {
            break;
        }
        next = Offset(summary.base_offset) + i64::from(summary.last_offset_delta) + 1;
        at += length;
    }
    (at, next)
}
