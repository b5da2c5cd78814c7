//! `Log` under injected faults (see `faults`): a full device (on a write, a sync or any step
//! of a segment roll) discards the unsynced batches and keeps the log usable, and one met by
//! pre-writing costs only the zeros; a failed sync fences it. Each test faults only its own
//! temporary directory, so the process-global plan does not reach the other tests running
//! meanwhile.

use crate::ids::Offset;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;

use crate::limits::{PREWRITE_HOT_BYTES, PREWRITE_STEP_BYTES};
use crate::protocol::record_batch::{encode_plain_batch, validate, PlainRecord};
use crate::storage::segment::segment_path;
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

fn append(log: &Log, value: &[u8]) -> crate::storage::tests::Appended {
    try_append(log, value).unwrap()
}

fn try_append(log: &Log, value: &[u8]) -> Result<crate::storage::tests::Appended, StorageError> {
    let bytes = batch(value);
    let summary = validate(&bytes).unwrap();
    log.append_validated(bytes, &summary, None)
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

/// Fails the next write to the `extension` file of segment `base_offset` in `dir` with
/// ENOSPC, once.
fn fill_disk_for(dir: &std::path::Path, base_offset: Offset, extension: &str) {
    let path = segment_path(dir, base_offset, extension);
    faults::arm(&format!("write ENOSPC {} 1", path.display())).unwrap();
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
        assert_eq!(lost.base_offset, Offset(1));
        let result = log.flush().await;
        assert!(
            matches!(result, Err(StorageError::OutOfSpace(_))),
            "{result:?}"
        );
        assert_eq!(lost.ticket.settled(), Settled::Discarded);
        assert_eq!(
            (log.durable_end_offset(), log.log_end_offset()),
            (Offset(1), Offset(1))
        );
        faults::clear();

        let again = append(&log, b"again");
        assert_eq!(
            again.base_offset,
            Offset(1),
            "the discarded offset is given again"
        );
        assert_eq!(log.flush().await.unwrap(), Offset(2));
        assert_eq!(again.ticket.settled(), Settled::Durable);
        assert_eq!(lost.ticket.settled(), Settled::Discarded);
        let stored = log.read_durable(Offset::ZERO, 1 << 20).await.unwrap();
        assert_eq!(stored.len(), 2);
        let holds = |batch: &Bytes, value: &[u8]| batch.windows(value.len()).any(|w| w == value);
        assert!(
            holds(&stored[1], b"again"),
            "the retry, not the lost batch, is at 1"
        );
        log.close().await.unwrap();

        let log = open_log(&dir).await;
        assert_eq!(
            log.durable_end_offset(),
            Offset(2),
            "everything written survives a reopen"
        );
        log.close().await.unwrap();
    });
}

/// A full device on fdatasync (the write went through) discards the batches like a failed
/// write: the log end goes back to the synced end, the retry is written over the same bytes,
/// and a reopen finds the retry, not the discarded batch.
#[test]
fn out_of_space_at_sync_rewrites_the_unsynced_bytes() {
    run(|root| async move {
        let dir = root.join("nosync-0");
        let log = open_log(&dir).await;
        append(&log, b"kept");
        log.flush().await.unwrap();
        arm(&root, "sync ENOSPC nosync-0");
        let lost = append(&log, b"lost-and-longer-than-the-retry");
        let result = log.flush().await;
        assert!(
            matches!(result, Err(StorageError::OutOfSpace(_))),
            "{result:?}"
        );
        assert_eq!(lost.ticket.settled(), Settled::Discarded);
        assert_eq!(
            (log.durable_end_offset(), log.log_end_offset()),
            (Offset(1), Offset(1))
        );
        faults::clear();

        let again = append(&log, b"again");
        assert_eq!(again.base_offset, Offset(1));
        assert_eq!(log.flush().await.unwrap(), Offset(2));
        let after = append(&log, b"after");
        assert_eq!(log.flush().await.unwrap(), Offset(3));
        assert_eq!(after.ticket.settled(), Settled::Durable);
        log.close().await.unwrap();

        let log = open_log(&dir).await;
        let stored = log.read_durable(Offset::ZERO, 1 << 20).await.unwrap();
        let holds = |batch: &Bytes, value: &[u8]| batch.windows(value.len()).any(|w| w == value);
        assert_eq!(stored.len(), 3);
        assert!(holds(&stored[1], b"again") && holds(&stored[2], b"after"));
        log.close().await.unwrap();
    });
}

/// A full device during a segment roll (here at the offset index) fails only the batches
/// from the one that needed the roll, never fences, and the roll is begun again by the next
/// flush (twice here): the old segment is sealed, so even a batch small enough to fit in it
/// goes to the new segment. Everything survives a reopen.
#[test]
fn out_of_space_at_a_roll_is_retried_by_the_next_flush() {
    run(|root| async move {
        let dir = root.join("roll-0");
        let config = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        let log = Log::open(dir.clone(), config.clone(), BatchCache::new(1 << 20))
            .await
            .unwrap();
        append(&log, &[b'a'; 600]);
        log.flush().await.unwrap();
        for attempt in 0..2 {
            fill_disk_for(&dir, Offset::ZERO, "index");
            let needs_roll = append(&log, &[b'b'; 600]);
            let result = log.flush().await;
            assert!(
                matches!(result, Err(StorageError::OutOfSpace(_))),
                "{attempt}: {result:?}"
            );
            assert_eq!(needs_roll.ticket.settled(), Settled::Discarded, "{attempt}");
            assert_eq!(
                (log.durable_end_offset(), log.log_end_offset()),
                (Offset(1), Offset(1))
            );
        }
        faults::clear();
        // Small enough for the old segment, yet it starts the new one: the roll is finished.
        let small = append(&log, b"small-one");
        assert_eq!(log.flush().await.unwrap(), Offset(2));
        assert_eq!(small.ticket.settled(), Settled::Durable);
        assert!(segment_path(&dir, Offset(1), "log").exists());
        log.close().await.unwrap();

        let log = Log::open(dir.clone(), config, BatchCache::new(1 << 20))
            .await
            .unwrap();
        assert_eq!(log.durable_end_offset(), Offset(2));
        let stored = log.read_durable(Offset(1), 1 << 20).await.unwrap();
        assert!(stored[0].windows(9).any(|w| w == b"small-one"));
        log.close().await.unwrap();
    });
}

/// A time-based roll (`segment.ms`) that finds the device full leaves the log usable: the
/// retention pass goes on, and the next flush finishes the roll before it writes.
#[test]
fn out_of_space_at_a_retention_roll_does_not_fence() {
    run(|root| async move {
        let dir = root.join("aged-0");
        let log = open_log(&dir).await;
        // Its timestamp (1 s after the epoch) makes the segment older than `segment_ms`.
        append(&log, b"old");
        log.flush().await.unwrap();
        fill_disk_for(&dir, Offset::ZERO, "index");
        let now = crate::metadata::now_ms();
        log.enforce_retention(now).await.unwrap();
        assert!(
            faults::describe().contains("hits=1"),
            "the roll met the full device"
        );
        faults::clear();
        let next = append(&log, b"next");
        assert_eq!(log.flush().await.unwrap(), Offset(2));
        assert_eq!(next.ticket.settled(), Settled::Durable);
        assert!(segment_path(&dir, Offset(1), "log").exists());
        log.close().await.unwrap();
    });
}

/// Pre-writing that meets a full device ends its run, gives the step's reservation back to
/// the shard's budget and fences nothing; so does a trim of a cold log's zeros, which the
/// next retention pass does instead. The budget is what the log holds throughout.
#[test]
fn out_of_space_while_pre_writing_gives_the_budget_back() {
    run(|root| async move {
        let dir = root.join("prefull-0");
        let cache = BatchCache::new(1 << 20);
        // Neither a time-based roll nor retention: only the cold log's trim cuts zeros.
        let config = LogConfig {
            segment_ms: i64::MAX,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = Log::open(dir.clone(), config, cache.clone()).await.unwrap();
        // Enough to make the log hot: only hot logs are pre-written.
        append(&log, &vec![b'x'; PREWRITE_HOT_BYTES as usize]);
        log.flush().await.unwrap();
        assert!(log.prepare_step().await, "one step gets through");
        assert_eq!(log.prewritten_bytes(), PREWRITE_STEP_BYTES);
        arm(&root, "write ENOSPC prefull-0");
        assert!(!log.prepare_step().await, "a full device ends the run");
        assert_eq!(
            log.prewritten_bytes(),
            PREWRITE_STEP_BYTES,
            "reservation given back"
        );
        assert_eq!(cache.prewritten_bytes(), PREWRITE_STEP_BYTES);
        faults::clear();
        let next = append(&log, b"next");
        log.flush().await.unwrap();
        assert_eq!(next.ticket.settled(), Settled::Durable, "not fenced");

        log.cool_down();
        arm(&root, "truncate ENOSPC prefull-0");
        let now = crate::metadata::now_ms();
        log.enforce_retention(now).await.unwrap();
        assert!(
            faults::describe().contains("hits=1"),
            "the trim met the full device"
        );
        assert_ne!(log.prewritten_bytes(), 0, "nothing was trimmed");
        assert_eq!(cache.prewritten_bytes(), log.prewritten_bytes());
        faults::clear();
        log.enforce_retention(now).await.unwrap();
        assert_eq!((log.prewritten_bytes(), cache.prewritten_bytes()), (0, 0));
        let last = append(&log, b"last");
        log.flush().await.unwrap();
        assert_eq!(last.ticket.settled(), Settled::Durable);
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
        assert_eq!(log.durable_end_offset(), Offset(1));
        let refused = try_append(&log, b"later");
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

/// A close that meets a full device while trimming reports it and still closes the log:
/// appends are refused (before, the log stayed open without its appender, and the next flush
/// would have panicked), and the next open recovers every written batch.
#[test]
fn failed_trim_at_close_still_closes_the_log() {
    run(|root| async move {
        let dir = root.join("closefull-0");
        let log = open_log(&dir).await;
        append(&log, b"kept");
        log.flush().await.unwrap();
        arm(&root, "truncate ENOSPC closefull-0");
        assert!(log.close().await.is_err(), "the trim met the full device");
        faults::clear();
        assert!(matches!(
            try_append(&log, b"after"),
            Err(StorageError::Closed)
        ));
        assert!(matches!(log.flush().await, Err(StorageError::Closed)));
        log.close().await.unwrap();
        drop(log);
        let reopened = open_log(&dir).await;
        assert_eq!(reopened.log_end_offset(), Offset(1));
        assert_eq!(
            reopened
                .read_durable(Offset::ZERO, 1 << 20)
                .await
                .unwrap()
                .len(),
            1
        );
        reopened.close().await.unwrap();
    });
}
