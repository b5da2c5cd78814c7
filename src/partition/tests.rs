//! The partition over a real log: idempotent-producer state across flushes, segment rolls,
//! reopens and suffix truncation, and the snapshots it writes on the way.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use glommio::Latency;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use super::{FetchInput, Partition, ProduceInput, ShardContext, TopicPartition, WriteMarkerInput};
use crate::ids::{LeaderEpoch, Offset, PartitionId};
use crate::metadata::topic_config::{TimestampType, TopicCompression, TopicConfig};
use crate::metrics::ShardMetrics;
use crate::protocol::control::TxnMarker;
use crate::protocol::record_batch::{
    encode_plain_batch, set_producer, PlainRecord, ATTRIBUTE_TRANSACTIONAL,
};
use crate::runtime;
use crate::storage::{prime_device, BatchCache, Log};

fn run<F, Fut>(test: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let root = tempfile::Builder::new()
        .prefix("corelog-partition")
        .tempdir_in("/tmp")
        .unwrap();
    let path = root.path().to_path_buf();
    runtime::run_on_new_executor(move || async move {
        prime_device(&path).await.unwrap();
        test(path.join("topic-0")).await
    });
}

fn tp() -> TopicPartition {
    TopicPartition {
        topic: "topic".to_string(),
        partition: PartitionId(0),
    }
}

/// Segments of 1 KiB: about two of the batches below each, so that the log rolls often.
fn config() -> TopicConfig {
    TopicConfig {
        accepted: Default::default(),
        cleanup_policy: "delete".to_string(),
        segment_bytes: 1024,
        segment_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: 1 << 20,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        index_interval_bytes: 4096,
        min_insync_replicas: 1,
        delete_retention_ms: 86_400_000,
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        compression: TopicCompression::Producer,
    }
}

async fn open(dir: &Path) -> Rc<Partition> {
    open_on(dir, &shard_context()).await.unwrap()
}

fn shard_context() -> Rc<ShardContext> {
    Rc::new(ShardContext::new(
        runtime::task_queue("flush", 1000, Latency::NotImportant),
        Rc::new(ShardMetrics::new(1)),
    ))
}

async fn open_on(
    dir: &Path,
    shard: &Rc<ShardContext>,
) -> Result<Rc<Partition>, crate::storage::StorageError> {
    let config = config();
    let cache = BatchCache::new(1 << 20);
    let log = Log::open(dir.to_path_buf(), config.log_config(), cache).await?;
    Partition::open(tp(), config, log, shard.clone()).await
}

/// A batch of `count` records of producer 7 at `epoch`, first sequence `sequence`.
fn idempotent(epoch: i16, sequence: i32, count: usize) -> Bytes {
    producer_batch(7, epoch, sequence, count, false)
}

/// A batch of `count` records of `producer` at `epoch`, first sequence `sequence`, part of a
/// transaction if `transactional`.
fn producer_batch(
    producer: i64,
    epoch: i16,
    sequence: i32,
    count: usize,
    transactional: bool,
) -> Bytes {
    let records = (0..count).map(|i| PlainRecord {
        timestamp: crate::metadata::now_ms(),
        key: None,
        value: Some(Bytes::from(format!(
            "seq-{}-{}",
            sequence as usize + i,
            "x".repeat(150)
        ))),
    });
    let mut batch = encode_plain_batch(records, Compression::None).unwrap();
    let attributes = match transactional {
        true => ATTRIBUTE_TRANSACTIONAL,
        false => 0,
    };
    set_producer(&mut batch, producer, epoch, sequence, attributes);
    batch.freeze()
}

/// Produces with acks=all; returns the error code and base offset.
async fn produce(partition: &Rc<Partition>, sequence: i32) -> (i16, Offset) {
    let input = ProduceInput {
        tp: tp(),
        records: Some(idempotent(0, sequence, 3)),
        acks: -1,
        transactional_id: None,
    };
    let output = partition.produce(input).await;
    (output.error_code, output.base_offset)
}

fn snapshots(dir: &Path) -> Vec<(String, SystemTime)> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".snapshot"))
        .map(|entry| {
            let modified = entry.metadata().unwrap().modified().unwrap();
            (entry.file_name().to_string_lossy().into_owned(), modified)
        })
        .collect();
    found.sort();
    found
}

/// Producer state survives segment rolls and reopens: a snapshot is written at rolls and at
/// a close that has something new, a retry is answered with its original offset before and
/// after a reopen, a gap in the sequence is refused, and a close with nothing new rewrites no
/// snapshot.
#[test]
fn producer_state_survives_rolls_and_reopen() {
    run(|dir| async move {
        let partition = open(&dir).await;
        for (i, sequence) in [0, 3, 6, 9, 12].into_iter().enumerate() {
            assert_eq!(
                produce(&partition, sequence).await,
                (0, Offset(3 * i as i64))
            );
        }
        assert!(!snapshots(&dir).is_empty(), "rolls write snapshots");
        assert_eq!(
            produce(&partition, 6).await,
            (0, Offset(6)),
            "a retry gets its original"
        );
        assert_eq!(
            partition.high_watermark(),
            Offset(15),
            "a retry appends nothing"
        );
        partition.close().await.unwrap();
        let at_end = "00000000000000000015.snapshot".to_string();
        assert!(snapshots(&dir).iter().any(|(name, _)| *name == at_end));

        let partition = open(&dir).await;
        assert_eq!(
            produce(&partition, 12).await,
            (0, Offset(12)),
            "retried after a reopen"
        );
        let gap = produce(&partition, 16).await.0;
        assert_eq!(gap, ResponseError::OutOfOrderSequenceNumber.code());
        assert_eq!(produce(&partition, 15).await, (0, Offset(15)));
        partition.close().await.unwrap();

        let written = snapshots(&dir);
        let partition = open(&dir).await;
        assert_eq!(partition.producer_count(), 1);
        partition.close().await.unwrap();
        assert_eq!(
            snapshots(&dir),
            written,
            "nothing new, no snapshot rewritten"
        );
    });
}

/// A suffix truncation takes the producer state back with the log: the batches cut off are
/// new again (appended, not answered as duplicates), the ones before still duplicates, and
/// no snapshot past the new end survives to mislead a later open.
#[test]
fn truncate_suffix_takes_producer_state_back() {
    run(|dir| async move {
        let partition = open(&dir).await;
        for sequence in [0, 3, 6, 9] {
            assert_eq!(produce(&partition, sequence).await.0, 0);
        }
        partition.truncate_suffix(Offset(6)).await.unwrap();
        assert_eq!(partition.high_watermark(), Offset(6));
        for (name, _) in snapshots(&dir) {
            let offset = Offset(name.trim_end_matches(".snapshot").parse().unwrap());
            assert!(offset <= Offset(6), "snapshot {name} past the end");
        }
        assert_eq!(
            produce(&partition, 3).await,
            (0, Offset(3)),
            "still a duplicate"
        );
        assert_eq!(produce(&partition, 6).await, (0, Offset(6)));
        assert_eq!(
            partition.high_watermark(),
            Offset(9),
            "appended again, not a duplicate"
        );
        let read = partition.read(Offset(6), 1 << 20).await.unwrap();
        assert_eq!(read.len(), 1);
        partition.close().await.unwrap();

        let partition = open(&dir).await;
        assert_eq!(
            produce(&partition, 6).await,
            (0, Offset(6)),
            "a duplicate after a reopen"
        );
        assert_eq!(produce(&partition, 9).await, (0, Offset(9)));
        assert_eq!(partition.high_watermark(), Offset(12));
        partition.close().await.unwrap();
    });
}

/// The sequence of every batch in the partition, in offset order.
async fn stored_sequences(partition: &Partition) -> Vec<i32> {
    let mut sequences = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        for batch in partition.read(offset, 1 << 20).await.unwrap() {
            let summary = crate::protocol::record_batch::validate(&batch).unwrap();
            sequences.push(summary.base_sequence);
            offset = Offset(summary.base_offset) + i64::from(summary.last_offset_delta) + 1;
        }
    }
    sequences
}

/// Idempotence survives a power cut at any disk operation: after the crash, an acknowledged
/// batch is where it was acknowledged, a retry of any of the producer's last five is answered
/// with its offset, and the batch
/// in flight when the power went (written or not, torn or not) is in the log exactly once
/// after its retry. Segments of 1 KiB roll every batch or two, so the producer state comes
/// back from snapshots written at rolls (some cut short by the power) and the log after them.
#[test]
fn idempotent_retries_after_a_power_cut_at_any_operation() {
    use crate::storage::sim_disk::SimDisk;
    const BATCHES: i32 = 12;
    crate::runtime::run_on_new_executor(|| async {
        let shard = shard_context();
        let root = PathBuf::from("/corelog-simulated-partition");
        let mut operations = None;
        let mut cut = 0;
        while operations.is_none_or(|operations| cut <= operations) {
            let case = format!("power cut after {cut} operations");
            let name = match operations {
                None => "uncut".to_string(),
                Some(_) => format!("{cut}-before"),
            };
            let disk = SimDisk::mount(&root.join(&name));
            let dir = root.join(name).join("topic-0");
            let partition = open_on(&dir, &shard).await.unwrap();
            let started = disk.operations();
            if operations.is_some() {
                disk.cut_power_after(cut);
            }
            let mut acked = Vec::new();
            let mut in_flight = None;
            for sequence in (0..BATCHES).map(|batch| 3 * batch) {
                match produce(&partition, sequence).await {
                    (0, offset) => acked.push((sequence, offset)),
                    _ => {
                        in_flight = Some(sequence);
                        break;
                    }
                }
            }
            if operations.is_none() {
                // The first run, without a cut, counts the operations to cut at.
                assert_eq!(acked.len(), BATCHES as usize, "{case}");
                operations = Some(disk.operations() - started);
                continue;
            }
            drop(partition);
            let after = root.join(format!("{cut}-after"));
            disk.crash_into(&after, cut);
            let partition = open_on(&after.join("topic-0"), &shard)
                .await
                .unwrap_or_else(|error| panic!("{case}: reopening failed: {error}"));
            // A producer's last five batches are recognized as duplicates, as in Kafka; with
            // a roll every batch or two most of them come back from a snapshot.
            let retained = crate::limits::PRODUCER_BATCHES_RETAINED_COUNT;
            for &(sequence, offset) in acked.iter().rev().take(retained).rev() {
                let retried = produce(&partition, sequence).await;
                assert_eq!(retried, (0, offset), "{case}: retry of sequence {sequence}");
            }
            if let Some(sequence) = in_flight {
                assert_eq!(
                    produce(&partition, sequence).await.0,
                    0,
                    "{case}: the retry"
                );
            }
            let sent = acked.len() + usize::from(in_flight.is_some());
            let expected: Vec<i32> = (0..sent as i32).map(|batch| 3 * batch).collect();
            assert_eq!(stored_sequences(&partition).await, expected, "{case}");
            for (sequence, offset) in acked {
                let batch = partition.read(offset, 1).await.unwrap();
                let stored = crate::protocol::record_batch::validate(&batch[0]).unwrap();
                assert_eq!(stored.base_sequence, sequence, "{case}: batch at {offset}");
            }
            partition.close().await.unwrap();
            cut += 1;
        }
    });
}

/// The leader-epoch checkpoint follows the log: written when the partition first opens,
/// kept through reopens, cut by a suffix truncation below the epoch's start (and the epoch
/// begun again at the new end), and rebuilt from the log when it is missing. OffsetForLeaderEpoch
/// answers from it.
#[test]
fn the_epoch_history_is_checkpointed_and_rebuilt_with_the_log() {
    use super::epochs::CHECKPOINT_FILE;
    use super::EpochEndInput;
    run(|dir| async move {
        let checkpoint = || std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).unwrap();
        let partition = open(&dir).await;
        assert_eq!(
            checkpoint(),
            "0\n1\n0 0\n",
            "epoch 0 begins at 0 before any batch"
        );
        for sequence in [0, 3, 6] {
            assert_eq!(produce(&partition, sequence).await.0, 0);
        }
        let ask = |current: i32, epoch: i32| {
            let output = partition.epoch_end_offset(EpochEndInput {
                tp: tp(),
                current_leader_epoch: LeaderEpoch(current),
                leader_epoch: LeaderEpoch(epoch),
            });
            let (epoch, end) = (output.leader_epoch.get(), output.end_offset.get());
            (output.error_code, epoch, end)
        };
        assert_eq!(
            ask(0, 0),
            (0, 0, 9),
            "the latest epoch ends at the high watermark"
        );
        assert_eq!(ask(-1, 1), (0, -1, -1), "a newer epoch is unknown");
        partition.close().await.unwrap();

        std::fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
        let partition = open(&dir).await;
        assert_eq!(checkpoint(), "0\n1\n0 0\n", "rebuilt from the log");
        partition.truncate_suffix(Offset(0)).await.unwrap();
        assert_eq!(
            checkpoint(),
            "0\n1\n0 0\n",
            "cut, then begun again at the new end"
        );
        assert_eq!(produce(&partition, 0).await, (0, Offset(0)));
        partition.close().await.unwrap();

        // A log whose epochs differ end to end is rebuilt from every batch header.
        std::fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
        let log = Log::open(dir.clone(), config().log_config(), BatchCache::new(1 << 20))
            .await
            .unwrap();
        for epoch in [2, 2, 5] {
            let mut batch = BytesMut::from(&idempotent(0, 100 + epoch, 1)[..]);
            crate::protocol::record_batch::set_partition_leader_epoch(&mut batch, epoch);
            let summary = crate::protocol::record_batch::validate(&batch).unwrap();
            let (batch, meta) =
                crate::storage::stamp_batch(batch, &summary, log.log_end_offset(), None);
            log.append(batch, meta).unwrap();
        }
        log.flush().await.unwrap();
        let history = super::epochs::EpochHistory::load(&log).await.unwrap();
        let ends = |epoch| history.end_offset_for(LeaderEpoch(epoch), Offset(6));
        assert_eq!(
            ends(0),
            (LeaderEpoch(0), Offset(3)),
            "epoch 0 held offsets 0-2"
        );
        assert_eq!(ends(2), (LeaderEpoch(2), Offset(5)));
        assert_eq!(ends(5), (LeaderEpoch(5), Offset(6)));
        assert_eq!(checkpoint(), "0\n3\n0 0\n2 3\n5 5\n");
        log.close().await.unwrap();
    });
}

/// A replica records every idempotent batch it appends in the producer state, as a leader's
/// produce does, so that the snapshots written at its rolls hold the producers below them
/// (an empty snapshot would make a reopened replica forget them).
#[test]
fn a_replica_records_producers_as_it_appends_and_snapshots_them() {
    use super::producer_state::ProducerTable;
    use crate::storage::batch_meta;
    run(|dir| async move {
        let config = config();
        let log = Log::open(dir.clone(), config.log_config(), BatchCache::new(1 << 20))
            .await
            .unwrap();
        let replica = Partition::open_replica(tp(), config, log, shard_context(), Offset::ZERO)
            .await
            .unwrap();
        let mut end = Offset::ZERO;
        for sequence in (0..8).map(|batch| 3 * batch) {
            let mut batch = BytesMut::from(&idempotent(0, sequence, 3)[..]);
            crate::protocol::record_batch::set_base_offset(&mut batch, end.get());
            crate::protocol::record_batch::set_partition_leader_epoch(&mut batch, 1);
            let meta = batch_meta(&batch).unwrap();
            replica.append_entry(batch.freeze(), meta).await.unwrap();
            end = replica.flush_entries().await.unwrap();
        }
        replica.set_commit_end(end);
        assert_eq!(replica.producer_count(), 1);
        let (name, _) = snapshots(&dir).pop().expect("the log rolled");
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let (_, table) = ProducerTable::decode_snapshot(&bytes).unwrap();
        assert!(table.get(7).is_some(), "the snapshot holds producer 7");
    });
}

/// Produces a transactional batch of three records; returns its base offset.
async fn produce_in_txn(partition: &Rc<Partition>, producer: i64, sequence: i32) -> Offset {
    let input = ProduceInput {
        tp: tp(),
        records: Some(producer_batch(producer, 0, sequence, 3, true)),
        acks: -1,
        transactional_id: None,
    };
    let output = partition.produce(input).await;
    assert_eq!(output.error_code, 0, "{:?}", output.error_message);
    output.base_offset
}

/// Writes a marker of `producer` (epoch 0); returns the error code.
async fn end_txn(partition: &Rc<Partition>, producer: i64, coordinator: i32, commit: bool) -> i16 {
    let marker = TxnMarker {
        producer_id: producer,
        producer_epoch: 0,
        coordinator_epoch: coordinator,
        commit,
    };
    let input = WriteMarkerInput { tp: tp(), marker };
    partition.write_marker(input).await.error_code
}

/// A read_committed fetch from `offset`: the base offsets of its batches and its aborted
/// transactions.
async fn fetch_committed(partition: &Rc<Partition>, offset: i64) -> (Vec<i64>, Vec<(i64, Offset)>) {
    let input = FetchInput {
        tp: tp(),
        current_leader_epoch: LeaderEpoch::UNKNOWN,
        offset: Offset(offset),
        max_bytes: 1 << 20,
        from_follower: false,
        watermarks_only: false,
        read_committed: true,
    };
    let output = partition.fetch(input).await;
    assert_eq!(output.error_code, 0);
    let bases = output.records.iter().map(|batch| {
        crate::protocol::record_batch::header(batch)
            .unwrap()
            .base_offset
            .get()
    });
    (
        bases.collect(),
        output.aborted.expect("read_committed lists aborts"),
    )
}

/// An open transaction holds the last stable offset at its first batch; a read_committed
/// fetch reads below it and is told the aborted transactions among what it reads; markers
/// from an older coordinator are refused; a producer's data batches in the same partition
/// after an abort begin a new transaction.
#[test]
fn transactions_hold_back_the_last_stable_offset() {
    run(|dir| async move {
        let partition = open(&dir).await;
        assert_eq!(produce_in_txn(&partition, 1, 0).await, Offset(0));
        assert_eq!(produce_in_txn(&partition, 2, 0).await, Offset(3));
        assert_eq!(produce_in_txn(&partition, 1, 3).await, Offset(6));
        assert_eq!(partition.high_watermark(), Offset(9));
        assert_eq!(partition.last_stable_offset(), Offset(0));
        assert_eq!(fetch_committed(&partition, 0).await, (vec![], vec![]));

        assert_eq!(end_txn(&partition, 1, 5, false).await, 0);
        assert_eq!(
            partition.last_stable_offset(),
            Offset(3),
            "producer 2 still open"
        );
        assert_eq!(
            fetch_committed(&partition, 0).await,
            (vec![0], vec![(1, Offset(0))])
        );
        let fenced = ResponseError::TransactionCoordinatorFenced.code();
        assert_eq!(end_txn(&partition, 1, 4, true).await, fenced);
        assert_eq!(end_txn(&partition, 2, 5, true).await, 0);
        assert_eq!(partition.last_stable_offset(), Offset(11));
        assert_eq!(partition.high_watermark(), Offset(11));
        assert_eq!(
            fetch_committed(&partition, 0).await,
            (vec![0, 3, 6, 9, 10], vec![(1, Offset(0))])
        );
        assert_eq!(fetch_committed(&partition, 7).await.1, vec![(1, Offset(0))]);
        assert_eq!(fetch_committed(&partition, 10).await.1, vec![]);

        // Producer 1 again: a new transaction, aborted too.
        assert_eq!(produce_in_txn(&partition, 1, 6).await, Offset(11));
        assert_eq!(partition.last_stable_offset(), Offset(11));
        assert_eq!(end_txn(&partition, 1, 5, false).await, 0);
        assert_eq!(
            fetch_committed(&partition, 10).await.1,
            vec![(1, Offset(11))]
        );
        // A marker without an open transaction completes nothing and is still written.
        assert_eq!(end_txn(&partition, 3, 0, false).await, 0);
        assert_eq!(partition.last_stable_offset(), partition.high_watermark());
        assert_eq!(fetch_committed(&partition, 15).await.1, vec![]);
        partition.close().await.unwrap();
    });
}

/// The aborted transactions survive reopening: after a clean close (from the files written
/// at rolls and at the close), without any snapshot (read from the whole log), and with a
/// transaction left open, which holds the last stable offset after the reopen too.
#[test]
fn aborted_transactions_survive_reopen() {
    run(|dir| async move {
        let partition = open(&dir).await;
        let mut sequences = [0; 8];
        for round in 0..24 {
            let producer = round % 8;
            let sequence = sequences[producer as usize];
            sequences[producer as usize] += 3;
            produce_in_txn(&partition, producer, sequence).await;
            if round % 3 != 2 {
                let commit = round % 2 == 0;
                assert_eq!(end_txn(&partition, producer, 0, commit).await, 0);
            }
        }
        // Producers whose round % 3 == 2 ended last with a batch and no marker are open.
        let high_watermark = partition.high_watermark();
        let stable = partition.last_stable_offset();
        assert!(stable < high_watermark);
        let aborted = partition.aborted_overlapping(Offset(0), high_watermark);
        assert!(aborted.len() >= 6, "{aborted:?}");
        partition.close().await.unwrap();
        let files = |extension: &str| {
            let entries = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path());
            let named = entries.filter(|path| path.extension().is_some_and(|e| e == extension));
            named.collect::<Vec<_>>()
        };
        assert!(
            files("txnindex").len() >= 2,
            "written at rolls and at the close"
        );

        let reopened = open(&dir).await;
        assert_eq!(reopened.last_stable_offset(), stable);
        assert_eq!(
            reopened.aborted_overlapping(Offset(0), high_watermark),
            aborted
        );
        reopened.close().await.unwrap();

        for snapshot in files("snapshot") {
            std::fs::remove_file(snapshot).unwrap();
        }
        let rebuilt = open(&dir).await;
        assert!(
            files("txnindex").is_empty(),
            "no snapshot: the files are read again"
        );
        assert_eq!(rebuilt.last_stable_offset(), stable);
        assert_eq!(
            rebuilt.aborted_overlapping(Offset(0), high_watermark),
            aborted
        );
        rebuilt.close().await.unwrap();
    });
}

/// DeleteRecords may move the log start inside a segment, past the newest snapshot: a
/// transaction that began below the new log start and is aborted after it must still be
/// known as aborted when the state is rebuilt from the snapshots and the log (here: a reopen
/// that finds no snapshot at the close, as after a crash).
#[test]
fn an_abort_straddling_a_log_start_move_survives_a_rebuild() {
    run(|dir| async move {
        let partition = open(&dir).await;
        // One-record batches, so that all of them share the first segment.
        for (offset, (producer, sequence, transactional)) in
            [(1, 0, true), (7, 0, false), (7, 1, false)]
                .into_iter()
                .enumerate()
        {
            let input = ProduceInput {
                tp: tp(),
                records: Some(producer_batch(producer, 0, sequence, 1, transactional)),
                acks: -1,
                transactional_id: None,
            };
            let output = partition.produce(input).await;
            assert_eq!(
                (output.error_code, output.base_offset),
                (0, Offset(offset as i64))
            );
        }
        assert_eq!(
            partition.move_log_start(Offset(2)).await.unwrap(),
            Offset(2)
        );
        assert_eq!(end_txn(&partition, 1, 0, false).await, 0);
        let aborted = vec![(1, Offset(0))];
        assert_eq!(partition.aborted_overlapping(Offset(2), Offset(4)), aborted);
        partition.close().await.unwrap();
        let mut found = snapshots(&dir);
        let (at_close, _) = found.pop().expect("the close wrote a snapshot");
        std::fs::remove_file(dir.join(at_close)).unwrap();

        let rebuilt = open(&dir).await;
        assert_eq!(rebuilt.aborted_overlapping(Offset(2), Offset(4)), aborted);
        assert_eq!(rebuilt.last_stable_offset(), rebuilt.high_watermark());
        rebuilt.close().await.unwrap();
    });
}

/// KIP-320's fence: the same epoch, or none named, passes; a newer one is unknown here, an
/// older one fenced.
#[test]
fn a_client_in_another_leader_epoch_is_refused() {
    use super::leader_epoch_fence;
    let fence = |asked, current| leader_epoch_fence(LeaderEpoch(asked), LeaderEpoch(current));
    assert_eq!(fence(3, 3), None);
    assert_eq!(fence(-1, 3), None, "-1 is not checked");
    assert_eq!(fence(4, 3), Some(ResponseError::UnknownLeaderEpoch));
    assert_eq!(fence(2, 3), Some(ResponseError::FencedLeaderEpoch));
    assert_eq!(fence(0, -1), Some(ResponseError::UnknownLeaderEpoch));
}
