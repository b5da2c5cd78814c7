//! Produce on the owner: validate one batch, check it against its producer's state, stamp it
//! with the log end offset, stage it in the log, start the flush, and answer once the flush
//! settled the batch's ticket. Validation reads the batch header only, except on a compacted
//! topic, where every record must have a key, and on a topic whose `compression.type` names a
//! codec, where a batch in another codec is recompressed on the shard's helper thread, the
//! batches behind it keeping their order (`line`).

use crate::ids::Offset;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;

use super::line::Place;
use super::{Partition, ProduceInput, ProduceOutput, RecordError, LEADER_EPOCH};
use crate::metadata::now_ms;
use crate::metadata::topic_config::{TimestampType, TopicCompression};
use crate::metrics;
use crate::partition::producer_state::{
    Checked, ProducerAppend, ProducerBatch, ProducerChange, ProducerError,
};
use crate::protocol::record_batch::{self, BatchSummary, Compression};
use crate::protocol::records;
use crate::storage::{stamp_batch, AppendTicket, BatchMeta, Settled, StorageError};

impl Partition {
    /// Appends one produce payload and answers when it is durable (acks 1 and -1) or at once
    /// (acks 0, which the connection does not answer). Such a partition has one replica, so
    /// acks=all with `min.insync.replicas` above 1 is NOT_ENOUGH_REPLICAS, as Kafka answers
    /// for a topic of fewer replicas than that.
    pub async fn produce(self: &Rc<Self>, input: ProduceInput) -> ProduceOutput {
        if input.acks == -1 && self.min_insync_replicas() > 1 {
            let wanted = self.min_insync_replicas();
            let message = format!("one replica in sync, fewer than min.insync.replicas={wanted}");
            return self.error(ResponseError::NotEnoughReplicas, &message);
        }
        let (accepted, place) = match self.accept(input.records).await {
            Ok(accepted) => accepted,
            Err(output) => return output,
        };
        let staged = self.append(accepted);
        drop(place);
        let staged = match staged {
            Ok(staged) => staged,
            Err(output) => return output,
        };
        self.schedule_flush();
        if input.acks == 0 {
            return ProduceOutput {
                base_offset: staged.base_offset,
                ..Default::default()
            };
        }
        self.wait_durable(&staged).await
    }

    /// Stages one accepted batch after checking it against its producer's state. Returns the
    /// offsets it was given, or the error to answer with. Nothing is durable until
    /// `wait_durable` says so.
    fn append(&self, accepted: Accepted) -> Result<Staged, ProduceOutput> {
        let Accepted {
            records,
            summary,
            log_append_time,
        } = accepted;
        let producer = producer_of(&summary);
        if let Some(producer) = &producer {
            let checked = self.producers.borrow().check(producer);
            match checked {
                Ok(Checked::New) => {}
                Ok(Checked::Duplicate(original)) => {
                    return Ok(Staged {
                        // Unpublished batches are all staged: a duplicate shares its
                        // original's fate.
                        ticket: self
                            .producers
                            .borrow()
                            .original_ticket(original.base_offset),
                        base_offset: original.base_offset,
                        last_offset: original.last_offset,
                        // Kafka answers a duplicate with the original's timestamp; a client
                        // takes any value other than -1 as LogAppendTime, so only such topics
                        // get it.
                        log_append_time_ms: log_append_time.map_or(-1, |_| original.timestamp),
                    });
                }
                Err(error) => return Err(self.producer_error(error)),
            }
        }
        let batch = BytesMut::from(&records[..]);
        let (meta, ticket) = self.stage(batch, &summary, log_append_time)?;
        if let Some(producer) = producer {
            let batch = ProducerBatch {
                first_seq: producer.first_seq,
                last_seq: producer.last_seq,
                base_offset: meta.base_offset,
                last_offset: meta.last_offset,
                timestamp: meta.max_timestamp,
            };
            let change = ProducerChange::Batch(producer, batch);
            self.producers.borrow_mut().record(change, ticket.clone());
        }
        metrics::add(&self.metrics.produced_bytes, summary.batch_bytes as u64);
        metrics::add(&self.metrics.produced_records, summary.record_count as u64);
        Ok(Staged {
            base_offset: meta.base_offset,
            last_offset: meta.last_offset,
            log_append_time_ms: log_append_time.unwrap_or(-1),
            ticket,
        })
    }

    /// Stamps a checked batch with the leader epoch and the log end offset and stages it.
    pub(super) fn stage(
        &self,
        mut batch: BytesMut,
        summary: &BatchSummary,
        log_append_time: Option<i64>,
    ) -> Result<(BatchMeta, AppendTicket), ProduceOutput> {
        // Clients send -1; like Kafka, stamp the leader epoch that Metadata reports (and that
        // replication will later use as the Raft term).
        let epoch = self.epochs.borrow().latest().map(|(epoch, _)| epoch);
        assert_eq!(epoch, Some(LEADER_EPOCH), "the stamped epoch has begun");
        record_batch::set_partition_leader_epoch(&mut batch, LEADER_EPOCH.get());
        let base_offset = self.log.log_end_offset();
        let (batch, meta) = stamp_batch(batch, summary, base_offset, log_append_time);
        match self.log.append(batch, meta) {
            Ok(ticket) => Ok((meta, ticket)),
            Err(error) => Err(self.storage_error(error)),
        }
    }

    /// The checks every produced batch passes before it is given offsets, here or by a
    /// partition's Raft group: the partition is online, the payload one valid batch the
    /// topic takes, in the topic's codec. Also the append time, for a topic that stamps it.
    /// With the batch comes its place in line (see `line`), to be held until the batch is
    /// staged or proposed; none when it went straight on, as every batch does that needs no
    /// recompression while no other waits.
    pub(super) async fn accept(
        &self,
        records: Option<Bytes>,
    ) -> Result<(Accepted, Option<Place>), ProduceOutput> {
        self.check_online()?;
        let records = records.unwrap_or_default();
        let summary = self.validate(&records)?;
        let codec = self.recompressed_codec(&summary);
        if codec.is_none() && self.line.is_clear() {
            return Ok((self.accepted(records, summary), None));
        }
        let place = self.line.take_place();
        let (records, summary) = match codec {
            Some(codec) => self.recompress(records, codec).await?,
            None => (records, summary),
        };
        place.turn().await;
        self.check_online()?;
        Ok((self.accepted(records, summary), Some(place)))
    }

    fn check_online(&self) -> Result<(), ProduceOutput> {
        if self.failed.get() {
            return Err(self.error(ResponseError::KafkaStorageError, "partition is offline"));
        }
        Ok(())
    }

    fn accepted(&self, records: Bytes, summary: BatchSummary) -> Accepted {
        let log_append_time = match self.config.borrow().timestamp_type {
            TimestampType::LogAppendTime => Some(now_ms()),
            TimestampType::CreateTime => None,
        };
        Accepted {
            records,
            summary,
            log_append_time,
        }
    }

    /// The codec a batch is to be recompressed into: the topic's `compression.type` when it
    /// names one the batch is not in. Only such a topic pays for more than this look.
    fn recompressed_codec(&self, summary: &BatchSummary) -> Option<Compression> {
        let codec = match self.config.borrow().compression {
            TopicCompression::Producer => return None,
            TopicCompression::Uncompressed => Compression::None,
            TopicCompression::Gzip => Compression::Gzip,
            TopicCompression::Snappy => Compression::Snappy,
            TopicCompression::Lz4 => Compression::Lz4,
            TopicCompression::Zstd => Compression::Zstd,
        };
        (summary.compression != codec).then_some(codec)
    }

    /// The batch recompressed into `codec` on the shard's helper thread (`runtime::Worker`,
    /// pinned to the shard's core under `SCHED_IDLE`), so that the shard's other requests
    /// never wait behind it (a MiB of gzip takes tens of milliseconds); here if the helper
    /// cannot be started. Records that do not parse refuse the batch, as Kafka's
    /// `LogValidator` refuses them, and the new size is held to `max.message.bytes` again.
    async fn recompress(
        &self,
        records: Bytes,
        codec: Compression,
    ) -> Result<(Bytes, BatchSummary), ProduceOutput> {
        let recompressed = match self.shard.compressor.get() {
            Ok(worker) => {
                let ran = worker
                    .run(move || records::recompress(&records, codec))
                    .await;
                ran.value
            }
            Err(error) => {
                let (topic, partition) = (&self.tp.topic, self.tp.partition);
                tracing::warn!(%topic, %partition, %error, "cannot start the compression thread; recompressing on the shard");
                records::recompress(&records, codec)
            }
        };
        let refused =
            |error: records::RecordsError| self.error_code(error.error_code(), &error.to_string());
        let batch = recompressed.map_err(refused)?;
        let max = self.config.borrow().max_message_bytes.max(0) as usize;
        if batch.len() > max {
            let message = format!(
                "batch of {} bytes, recompressed, exceeds max.message.bytes",
                batch.len()
            );
            return Err(self.error(ResponseError::MessageTooLarge, &message));
        }
        let summary = record_batch::validate(&batch)
            .map_err(|error| self.error_code(error.error_code(), &format!("{error}")))?;
        metrics::add(&self.metrics.recompressed_batches, 1);
        Ok((batch, summary))
    }

    pub fn producer_error(&self, error: ProducerError) -> ProduceOutput {
        let code = match error {
            ProducerError::InvalidEpoch { .. } => ResponseError::InvalidProducerEpoch,
            ProducerError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
            ProducerError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
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
        // Borrowed, not cloned (its cleanup policy is a String): nothing here awaits.
        let config = self.config.borrow();
        if len > config.max_message_bytes.max(0) as usize {
            return Err(self.error(
                ResponseError::MessageTooLarge,
                &format!("batch of {len} bytes exceeds max.message.bytes"),
            ));
        }
        let batch = &records[start..start + len];
        let summary = record_batch::validate_produced(batch)
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
        if config.is_compacted() {
            self.refuse_keyless(batch)?;
        }
        Ok(summary)
    }

    /// KIP-467: compaction keeps the latest record of each key, so Kafka's `LogValidator`
    /// refuses, with INVALID_RECORD, a batch for a compacted topic holding a record without
    /// one, and names each such record. Only compacted topics pay for reading (decompressing)
    /// the records of a produced batch; a record that does not parse refuses the batch too.
    fn refuse_keyless(&self, batch: &[u8]) -> Result<(), ProduceOutput> {
        let keyless = records::keyless_records(batch)
            .map_err(|error| self.error_code(error.error_code(), &error.to_string()))?;
        if keyless.is_empty() {
            return Ok(());
        }
        let message = format!(
            "Compacted topic cannot accept message without key in topic partition {}-{}",
            self.tp.topic, self.tp.partition
        );
        let record_errors: Vec<RecordError> = keyless
            .into_iter()
            .map(|index| RecordError {
                batch_index: index as i32,
                message: Some(message.clone()),
            })
            .collect();
        let shown: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|e| e.to_string())
            .collect();
        // Kafka's `LogValidator.processRecordErrors` wording.
        let summary = format!(
            "One or more records have been rejected due to {} record errors in total, and only \
             showing the first three errors at most: [{}]",
            record_errors.len(),
            shown.join(", ")
        );
        Err(ProduceOutput {
            record_errors,
            ..self.error(ResponseError::InvalidRecord, &summary)
        })
    }

    /// Kafka refuses, with INVALID_RECORD, control batches from clients (markers and the
    /// replication's own control batches are written only by the broker), a producer batch
    /// without a sequence, and a transactional batch without a producer.
    fn validate_producer_fields(&self, summary: &BatchSummary) -> Result<(), ProduceOutput> {
        if summary.is_control {
            let message = "clients may not write control batches";
            return Err(self.error(ResponseError::InvalidRecord, message));
        }
        if summary.producer_id >= 0 && summary.base_sequence < 0 {
            let message = format!(
                "invalid sequence {} for a producer batch",
                summary.base_sequence
            );
            return Err(self.error(ResponseError::InvalidRecord, &message));
        }
        if summary.is_transactional && summary.producer_id < 0 {
            let message = "a transactional batch without a producer id";
            return Err(self.error(ResponseError::InvalidRecord, message));
        }
        Ok(())
    }

    /// Waits until the staged batch is durable, discarded, or the partition failed. Kafka
    /// answers any storage failure, a full disk included, with KAFKA_STORAGE_ERROR, which
    /// clients retry after refreshing metadata.
    pub(super) async fn wait_durable(&self, staged: &Staged) -> ProduceOutput {
        loop {
            let durable = self.durable.notified();
            match staged.ticket.settled() {
                Settled::Durable => {
                    debug_assert!(self.high_watermark() > staged.last_offset);
                    return ProduceOutput {
                        error_code: 0,
                        error_message: None,
                        base_offset: staged.base_offset,
                        log_append_time_ms: staged.log_append_time_ms,
                        log_start_offset: self.log_start_offset(),
                        record_errors: Vec::new(),
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

    pub fn error(&self, error: ResponseError, message: &str) -> ProduceOutput {
        self.error_code(error.code(), message)
    }

    fn error_code(&self, code: i16, message: &str) -> ProduceOutput {
        ProduceOutput {
            error_code: code,
            error_message: Some(message.to_string()),
            base_offset: Offset::NONE,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset(),
            record_errors: Vec::new(),
        }
    }

    fn storage_error(&self, error: StorageError) -> ProduceOutput {
        tracing::error!(%error, topic = %self.tp.topic, partition = %self.tp.partition, "append failed");
        self.error(ResponseError::KafkaStorageError, &error.to_string())
    }
}

/// A produced batch that passed `accept`.
pub(super) struct Accepted {
    pub records: Bytes,
    pub summary: BatchSummary,
    pub log_append_time: Option<i64>,
}

/// Offsets given to a staged batch, and its fate.
pub(super) struct Staged {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub log_append_time_ms: i64,
    pub ticket: AppendTicket,
}

/// The producer fields of a client batch, if it has a producer id (clients write no control
/// batches: `validate` refused them).
fn producer_of(summary: &BatchSummary) -> Option<ProducerAppend> {
    ProducerAppend::from_header(
        summary.producer_id,
        summary.producer_epoch,
        summary.base_sequence,
        summary.last_offset_delta,
        summary.is_transactional,
    )
}
