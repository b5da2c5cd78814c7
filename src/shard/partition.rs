//! A partition on the shard that owns it: its log, its config, and the operations on it.
//!
//! Per-shard: a `Partition` lives on its owner shard only. Produce stages a validated batch in
//! the log and waits for the shard's flusher (group commit) to make it durable; the high
//! watermark, and so what consumers can see, advances only with `fdatasync`. A waiter answers
//! from its batch's `AppendTicket`, never from the watermark alone: offsets of batches
//! discarded on a full device are given again to later batches.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

use super::messages::{FetchOutput, ListOffsetsOutput, ProduceOutput};
use super::table::TopicEntry;
use crate::metadata::now_ms;
use crate::metadata::topic_config::TimestampType;
use crate::metrics::{self, PartitionMetrics};
use crate::protocol::record_batch::{self, BatchSummary};
use crate::runtime::TaskQueueHandle;
use crate::storage::producer_state::ProducerError;
use crate::storage::{self, AppendTicket, Log, Settled, StorageError};
use crate::sync::Notify;

/// The leader epoch of every partition until replication brings elections.
pub const LEADER_EPOCH: i32 = 0;

/// ListOffsets' special timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;

/// One partition of a topic, owned by this shard.
pub struct Partition {
    topic: RefCell<Rc<TopicEntry>>,
    index: i32,
    log: Rc<Log>,
    /// Woken whenever the high watermark advances or the partition fails.
    durable: Notify,
    /// Set after a failed write or sync: nothing more is acknowledged from this partition.
    failed: Cell<bool>,
    /// Set while flushes find the device full, so that the warning is logged once per episode.
    out_of_space: Cell<bool>,
    /// Whether a flush task is running for this partition (see `Shard::schedule_flush`).
    queued: Cell<bool>,
    /// Whether a task is pre-writing this partition's active segment.
    preparing: Cell<bool>,
    metrics: PartitionMetrics,
}

impl Partition {
    pub fn new(topic: Rc<TopicEntry>, index: i32, log: Rc<Log>) -> Partition {
        Partition {
            topic: RefCell::new(topic),
            index,
            log,
            durable: Notify::new(),
            failed: Cell::new(false),
            out_of_space: Cell::new(false),
            queued: Cell::new(false),
            preparing: Cell::new(false),
            metrics: PartitionMetrics::default(),
        }
    }

    /// Marks a flush task running for the partition; true if none was before.
    pub fn mark_queued(&self) -> bool {
        !self.queued.replace(true)
    }

    pub fn clear_queued(&self) {
        self.queued.set(false);
    }

    /// Starts pre-writing the log's active segment ahead of its end (a task on `queue`, one
    /// step at a time) if the log wants it and no run is under way. Steps share the log's io
    /// lock with flushes, so a flush waits for one step at most.
    pub fn start_preparing(self: &Rc<Self>, queue: TaskQueueHandle) {
        if self.preparing.get() || !self.log.needs_preparing() {
            return;
        }
        self.preparing.set(true);
        let partition = self.clone();
        crate::runtime::spawn_into(queue, async move {
            while partition.log.prepare_step().await {}
            partition.preparing.set(false);
        });
    }

    pub fn metrics(&self) -> &PartitionMetrics {
        &self.metrics
    }

    pub fn log(&self) -> &Rc<Log> {
        &self.log
    }

    pub fn index(&self) -> i32 {
        self.index
    }

    pub fn topic_name(&self) -> String {
        self.topic.borrow().name.clone()
    }

    pub fn durable_notify(&self) -> &Notify {
        &self.durable
    }

    pub fn set_topic(&self, topic: Rc<TopicEntry>) {
        self.log.set_config(topic.config.log_config());
        *self.topic.borrow_mut() = topic;
    }

    /// Called by the flusher after `Log::flush`. A full device fails the batches it could not
    /// write and nothing else; any other error takes the partition offline until a restart.
    pub fn flushed(&self, result: Result<i64, StorageError>) {
        let topic = self.topic.borrow().name.clone();
        match result {
            Ok(_) if self.out_of_space.replace(false) => {
                tracing::info!(%topic, partition = self.index, "writes succeed again");
            }
            Ok(_) => {}
            Err(StorageError::OutOfSpace(error)) => {
                if !self.out_of_space.replace(true) {
                    tracing::warn!(
                        %topic,
                        partition = self.index,
                        errno = storage::os_error(&error),
                        %error,
                        "no space for the log; produce fails until space returns"
                    );
                }
            }
            Err(error) => {
                let errno = match &error {
                    StorageError::Io(error) => storage::os_error(error),
                    _ => None,
                };
                tracing::error!(
                    %topic,
                    partition = self.index,
                    errno,
                    %error,
                    "write or sync failed; partition stops acknowledging writes"
                );
                self.failed.set(true);
            }
        }
        self.durable.notify_all();
    }

    /// Validates and stages one produce payload. Returns the offsets it was given, or the
    /// error to answer with. Nothing is durable until `wait_durable` says so.
    pub fn append(&self, records: Option<Bytes>) -> Result<Staged, ProduceOutput> {
        if self.failed.get() {
            return Err(self.error(ResponseError::KafkaStorageError, "partition is offline"));
        }
        let records = records.unwrap_or_default();
        let summary = self.validate(&records)?;
        let log_append_time = match self.topic.borrow().config.timestamp_type {
            TimestampType::LogAppendTime => Some(now_ms()),
            TimestampType::CreateTime => None,
        };
        let mut batch = BytesMut::from(&records[..]);
        // Clients send -1; like Kafka, stamp the leader epoch that Metadata reports (and that
        // replication will later use as the Raft term).
        record_batch::set_partition_leader_epoch(&mut batch, LEADER_EPOCH);
        match self.log.append(batch, &summary, log_append_time) {
            Ok(result) if result.duplicate_timestamp.is_some() => Ok(Staged {
                ticket: result.ticket,
                base_offset: result.base_offset,
                last_offset: result.last_offset,
                // Kafka answers a duplicate with the original's timestamp; a client takes any
                // value other than -1 as LogAppendTime, so only such topics get it.
                log_append_time_ms: log_append_time
                    .and(result.duplicate_timestamp)
                    .unwrap_or(-1),
            }),
            Ok(result) => {
                metrics::add(&self.metrics.produced_bytes, summary.batch_bytes as u64);
                metrics::add(&self.metrics.produced_records, summary.record_count as u64);
                Ok(Staged {
                    base_offset: result.base_offset,
                    last_offset: result.last_offset,
                    log_append_time_ms: log_append_time.unwrap_or(-1),
                    ticket: result.ticket,
                })
            }
            Err(StorageError::Producer(error)) => Err(self.producer_error(error)),
            Err(error) => Err(self.storage_error(error)),
        }
    }

    fn producer_error(&self, error: ProducerError) -> ProduceOutput {
        let code = match error {
            ProducerError::InvalidEpoch { .. } => ResponseError::InvalidProducerEpoch,
            ProducerError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
        };
        self.error(code, &error.to_string())
    }

    fn validate(&self, records: &[u8]) -> Result<BatchSummary, ProduceOutput> {
        let mut spans = record_batch::batches(records);
        let (start, len) = match (spans.next(), spans.next()) {
            (Some(Ok(span)), None) => span,
            (Some(Err(error)), _) => {
                return Err(self.error_code(error.error_code(), &format!("{error}")))
            }
            (None, _) => return Err(self.error(ResponseError::InvalidRecord, "no record batch")),
            (Some(Ok(_)), Some(_)) => {
                return Err(self.error(
                    ResponseError::InvalidRecord,
                    "produce v3+ carries exactly one record batch per partition",
                ))
            }
        };
        let config = self.topic.borrow().config.clone();
        if len > config.max_message_bytes.max(0) as usize {
            return Err(self.error(
                ResponseError::MessageTooLarge,
                &format!("batch of {len} bytes exceeds max.message.bytes"),
            ));
        }
        let summary = record_batch::validate(&records[start..start + len])
            .map_err(|error| self.error_code(error.error_code(), &format!("{error}")))?;
        self.validate_producer_fields(&summary)?;
        if config.timestamp_type == TimestampType::CreateTime {
            let now = now_ms();
            let too_old =
                summary.base_timestamp < now.saturating_sub(config.timestamp_before_max_ms);
            let too_new = summary.max_timestamp > now.saturating_add(config.timestamp_after_max_ms);
            if too_old || too_new {
                return Err(self.error(
                    ResponseError::InvalidTimestamp,
                    "timestamp is outside message.timestamp.before/after.max.ms",
                ));
            }
        }
        Ok(summary)
    }

    /// Kafka refuses a producer batch without a sequence (INVALID_RECORD). Transactional
    /// batches need a transaction, which this broker never starts (it hands out no
    /// transactional ids), so they get INVALID_TXN_STATE, as Kafka answers a transactional
    /// write outside a verified transaction.
    fn validate_producer_fields(&self, summary: &BatchSummary) -> Result<(), ProduceOutput> {
        if summary.producer_id >= 0 && summary.base_sequence < 0 {
            let message = format!(
                "invalid sequence {} for a producer batch",
                summary.base_sequence
            );
            return Err(self.error(ResponseError::InvalidRecord, &message));
        }
        if summary.is_transactional {
            let message = "transactions are not supported";
            return Err(self.error(ResponseError::InvalidTxnState, message));
        }
        Ok(())
    }

    /// Waits until the staged batch is durable, discarded, or the partition failed. Kafka
    /// answers any storage failure, a full disk included, with KAFKA_STORAGE_ERROR, which
    /// clients retry after refreshing metadata.
    pub async fn wait_durable(&self, staged: &Staged) -> ProduceOutput {
        loop {
            let durable = self.durable.notified();
            match staged.ticket.settled() {
                Settled::Durable => {
                    debug_assert!(self.log.high_watermark() > staged.last_offset);
                    return ProduceOutput {
                        error_code: 0,
                        error_message: None,
                        base_offset: staged.base_offset,
                        log_append_time_ms: staged.log_append_time_ms,
                        log_start_offset: self.log.log_start_offset(),
                    };
                }
                Settled::Discarded => {
                    let message = "no space left on the broker's disk; batch not written";
                    return self.error(ResponseError::KafkaStorageError, message);
                }
                Settled::Pending => {}
            }
            if self.failed.get() {
                return self.error(ResponseError::KafkaStorageError, "write or sync failed");
            }
            durable.await;
        }
    }

    pub async fn fetch(&self, offset: i64, max_bytes: usize) -> FetchOutput {
        let mut output = FetchOutput {
            error_code: 0,
            high_watermark: self.log.high_watermark(),
            log_start_offset: self.log.log_start_offset(),
            records: Vec::new(),
        };
        match self.log.read(offset, max_bytes).await {
            Ok(records) => {
                let bytes: usize = records.iter().map(Bytes::len).sum();
                metrics::add(&self.metrics.fetched_bytes, bytes as u64);
                output.records = records;
            }
            Err(StorageError::OffsetOutOfRange { .. }) => {
                output.error_code = ResponseError::OffsetOutOfRange.code()
            }
            Err(error) => {
                tracing::error!(%error, partition = self.index, "read failed");
                output.error_code = ResponseError::KafkaStorageError.code();
            }
        }
        output
    }

    pub async fn list_offsets(&self, timestamp: i64) -> ListOffsetsOutput {
        let found = |offset, timestamp| ListOffsetsOutput {
            error_code: 0,
            timestamp,
            offset,
        };
        match timestamp {
            LATEST_TIMESTAMP => found(self.log.high_watermark(), -1),
            EARLIEST_TIMESTAMP => found(self.log.log_start_offset(), -1),
            MAX_TIMESTAMP => match self.log.max_timestamp() {
                Some((max, _)) => self.offset_for_time(max).await,
                None => found(-1, -1),
            },
            t if t >= 0 => self.offset_for_time(t).await,
            _ => ListOffsetsOutput {
                error_code: ResponseError::InvalidRequest.code(),
                timestamp: -1,
                offset: -1,
            },
        }
    }

    /// The first record whose timestamp is at least `timestamp`.
    async fn offset_for_time(&self, timestamp: i64) -> ListOffsetsOutput {
        let not_found = ListOffsetsOutput {
            error_code: 0,
            timestamp: -1,
            offset: -1,
        };
        let batch = match self.log.find_batch_by_timestamp(timestamp).await {
            Ok(Some(batch)) => batch,
            Ok(None) => return not_found,
            Err(error) => {
                tracing::error!(%error, partition = self.index, "timestamp lookup failed");
                return ListOffsetsOutput {
                    error_code: ResponseError::KafkaStorageError.code(),
                    ..not_found
                };
            }
        };
        first_record_at_or_after(batch, timestamp, self.log.log_start_offset()).unwrap_or(not_found)
    }

    fn error(&self, error: ResponseError, message: &str) -> ProduceOutput {
        self.error_code(error.code(), message)
    }

    fn error_code(&self, code: i16, message: &str) -> ProduceOutput {
        ProduceOutput {
            error_code: code,
            error_message: Some(message.to_string()),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: self.log.log_start_offset(),
        }
    }

    fn storage_error(&self, error: StorageError) -> ProduceOutput {
        tracing::error!(%error, partition = self.index, "append failed");
        self.error(ResponseError::KafkaStorageError, &error.to_string())
    }
}

/// Offsets given to a staged batch, and its fate.
pub struct Staged {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    pub ticket: AppendTicket,
}

/// Decodes `batch` (decompressing if needed) and finds its first record at or after
/// `timestamp` whose offset is not below `log_start` (DeleteRecords may cut into a batch).
pub fn first_record_at_or_after(
    batch: Bytes,
    timestamp: i64,
    log_start: i64,
) -> Option<ListOffsetsOutput> {
    let summary = record_batch::validate(&batch).ok()?;
    if summary.timestamp_type == record_batch::TimestampType::LogAppendTime {
        return Some(ListOffsetsOutput {
            error_code: 0,
            timestamp: summary.max_timestamp,
            offset: summary.base_offset.max(log_start),
        });
    }
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    set.records
        .iter()
        .find(|r| r.timestamp >= timestamp && r.offset >= log_start)
        .map(|r| ListOffsetsOutput {
            error_code: 0,
            timestamp: r.timestamp,
            offset: r.offset,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::hand_built;

    /// The timestamp lookup finds a record that is not the first of its batch when the
    /// batch's timestamps lie further apart than 32 bits hold (1234 and 999999999999 ms), and
    /// skips records below the log start.
    #[test]
    fn lookup_finds_a_later_record_of_a_wide_batch() {
        let batch = hand_built::wide_timestamps();
        let lookup = |timestamp, log_start| {
            first_record_at_or_after(batch.clone(), timestamp, log_start)
                .map(|found| (found.offset, found.timestamp))
        };
        assert_eq!(lookup(999_999_999_999, 0), Some((1, 999_999_999_999)));
        assert_eq!(lookup(1235, 0), Some((1, 999_999_999_999)));
        assert_eq!(lookup(1234, 0), Some((0, 1234)));
        assert_eq!(
            lookup(0, 1),
            Some((1, 999_999_999_999)),
            "below the log start"
        );
        assert_eq!(lookup(1_000_000_000_000, 0), None);
    }
}
