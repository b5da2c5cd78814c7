//! `Log` under injected faults (see `faults`): a full device discards unwritten batches and
//! keeps the log usable; a failed sync fences it. Each test faults only its own temporary
//! directory, so the process-global plan does not reach the other tests running meanwhile.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;

use crate::protocol::record_batch::{encode_plain_batch, validate, PlainRecord};
use crate::storage::{faults, BatchCache, Log, LogConfig, Settled, StorageError};

pub(super) fn run<F, Fut>(test: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    // The fault plan is process-wide and each test clears it: one fault test at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    super::tests::run_in_root("corelog-faults", test);
}

fn batch(value: &[u8]) -> BytesMut {
    let record = PlainRecord {
        timestamp: 1_000,
        key: None,
        value: Some(Bytes::copy_from_slice(value)),
    };
    encode_plain_batch([record], Compression::None).unwrap()
}

fn append(log: &Log, value: &[u8]) -> crate::storage::AppendResult {
    let bytes = batch(value);
    let summary = validate(&bytes).unwrap();
    log.append(bytes, &summary, None).unwrap()
}

/// A log in `dir` with default settings and a small cache.
async fn open_log(dir: &std::path::Path) -> std::rc::Rc<Log> {
    Log::open(
        dir.to_path_buf(),
        LogConfig::default(),
        BatchCache::new(1 << 20),
    )
    .await
    .unwrap()
}

/// Armed for this test's directory only: `<op> <errno> <root>/<partition>/`.
fn arm(root: &std::path::Path, line: &str) {
    let (op_errno, partition) = line.rsplit_once(' ').unwrap();
    let plan = format!("{op_errno} {}/{partition}/", root.display());
    faults::arm(&plan).unwrap();
}

/// A full device on a segment write discards the unwritten batches (their tickets say so), the
/// next batches reuse their offsets, and a discarded batch's waiter never sees the later
/// watermark as its own success; the log stays usable and keeps what was written.
#[test]
fn out_of_space_discards_unwritten_batches_and_reuses_offsets() {
    run(|root| async move {
        let dir = root.join("full-0");
        let log = open_log(&dir).await;
        let kept = append(&log, b"kept");
        log.flush().await.unwrap();
        assert_eq!(kept.ticket.settled(), Settled::Durable);

        arm(&root, "write ENOSPC full-0");
        let lost = append(&log, b"lost");
        assert_eq!(lost.base_offset, 1);
        let result = log.flush().await;
        assert!(
            matches!(result, Err(StorageError::OutOfSpace(_))),
            "{result:?}"
        );
        assert_eq!(lost.ticket.settled(), Settled::Discarded);
        assert_eq!((log.high_watermark(), log.log_end_offset()), (1, 1));
        faults::clear();

        let again = append(&log, b"again");
        assert_eq!(again.base_offset, 1, "the discarded offset is given again");
        assert_eq!(log.flush().await.unwrap(), 2);
        assert_eq!(again.ticket.settled(), Settled::Durable);
        assert_eq!(lost.ticket.settled(), Settled::Discarded);
        let stored = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(stored.len(), 2);
        let holds = |batch: &Bytes, value: &[u8]| batch.windows(value.len()).any(|w| w == value);
        assert!(
            holds(&stored[1], b"again"),
            "the retry, not the lost batch, is at 1"
        );
        log.close().await.unwrap();

        let log = open_log(&dir).await;
        assert_eq!(
            log.high_watermark(),
            2,
            "everything written survives a reopen"
        );
        log.close().await.unwrap();
    });
}

/// A failed fdatasync fences the log: the batch stays unacknowledged, the watermark does not
/// move, and appends are refused even after the fault is gone.
#[test]
fn failed_sync_fences_the_log() {
    run(|root| async move {
        let dir = root.join("sick-0");
        let log = open_log(&dir).await;
        append(&log, b"kept");
        log.flush().await.unwrap();
        arm(&root, "sync EIO sick-0");
        let lost = append(&log, b"lost");
        assert!(matches!(log.flush().await, Err(StorageError::Io(_))));
        faults::clear();
        assert_eq!(lost.ticket.settled(), Settled::Pending);
        assert_eq!(log.high_watermark(), 1);
        let bytes = batch(b"later");
        let summary = validate(&bytes).unwrap();
        let refused = log.append(bytes, &summary, None);
        assert!(
            matches!(refused, Err(StorageError::Failed(_))),
            "{refused:?}"
        );
        let _ = log.close().await;
    });
}

/// Pre-writing yields to flushes: a flush that asks for the io lock while a pre-writing run
/// is under way gets it after the step in progress, not after the whole run (the lock used
/// to let the run take it straight back, step after step, for tens of milliseconds).
#[test]
fn flush_waits_for_one_pre_writing_step_at_most() {
    run(|root| async move {
        let dir = root.join("prewrite-0");
        let log = open_log(&dir).await;
        // Enough to make the log hot: only hot logs are pre-written.
        append(
            &log,
            &vec![b'x'; crate::limits::PREWRITE_HOT_BYTES as usize],
        );
        log.flush().await.unwrap();
        assert!(
            log.needs_preparing(),
            "a fresh segment of a hot log wants pre-written space"
        );
        // Every write of this partition, zeros included, takes 20 ms: a whole run of steps
        // would hold a greedy lock for more than half a second.
        arm(&root, "write 20ms prewrite-0");
        let steps = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let preparing = crate::runtime::spawn_local({
            let (log, steps) = (log.clone(), steps.clone());
            async move {
                while log.prepare_step().await {
                    steps.set(steps.get() + 1);
                }
            }
        });
        // Let the run start its first step (and take the lock) before the flush asks.
        let mut yielded = false;
        futures::future::poll_fn(|cx| {
            if std::mem::replace(&mut yielded, true) {
                return std::task::Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        })
        .await;
        let flushed = append(&log, b"second");
        log.flush().await.unwrap();
        assert_eq!(flushed.ticket.settled(), Settled::Durable);
        assert!(
            steps.get() <= 1,
            "the flush waited for {} pre-writing steps",
            steps.get()
        );
        faults::clear();
        preparing.await;
    });
}
