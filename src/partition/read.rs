//! Reads on the owner: fetch, the offset lookups of ListOffsets, and DeleteRecords, which
//! moves the log start. None of them looks past the high watermark.

use crate::ids::Offset;
use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

use super::{
    DeleteRecordsInput, DeleteRecordsOutput, EpochEndInput, EpochEndOutput, FetchInput,
    FetchOutput, ListOffsetsInput, ListOffsetsOutput, Partition, EARLIEST_LOCAL_TIMESTAMP,
    EARLIEST_TIMESTAMP, LATEST_TIERED_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
use crate::metadata::now_ms;
use crate::metrics;
use crate::protocol::record_batch;
use crate::storage::StorageError;

impl Partition {
    /// Batches from `input.offset` below the high watermark. An offset past the high
    /// watermark that the log holds is answered with nothing yet (the fetch waits), as Kafka
    /// answers below the log end: a follower's high watermark trails the leader's, so a
    /// consumer sent there (KIP-392) may ask for one. Past the log end, or below its start,
    /// is OFFSET_OUT_OF_RANGE. A read_committed fetch reads below the last stable offset only
    /// and is told the aborted transactions among the batches it gets.
    pub async fn fetch(&self, input: FetchInput) -> FetchOutput {
        let high_watermark = self.high_watermark();
        let mut output = FetchOutput {
            error_code: 0,
            high_watermark,
            last_stable_offset: self
                .producers
                .borrow_mut()
                .last_stable_offset(high_watermark),
            log_start_offset: self.log_start_offset(),
            records: Vec::new(),
            aborted: input.read_committed.then(Vec::new),
        };
        if input.watermarks_only {
            return output;
        }
        let bound = match input.read_committed {
            true => output.last_stable_offset,
            false => output.high_watermark,
        };
        match self
            .read_records(input.offset, input.max_bytes, bound)
            .await
        {
            Ok(records) => {
                let bytes: usize = records.iter().map(Bytes::len).sum();
                metrics::add(&self.metrics.fetched_bytes, bytes as u64);
                if input.read_committed {
                    let upper = records.last().map_or(input.offset, |last| batch_end(last));
                    output.aborted = Some(self.aborted_overlapping(input.offset, upper));
                }
                output.records = records;
            }
            Err(StorageError::OffsetOutOfRange { .. })
                if input.offset > bound && input.offset <= self.log_end_offset() => {}
            Err(StorageError::OffsetOutOfRange { .. }) => {
                output.error_code = ResponseError::OffsetOutOfRange.code()
            }
            Err(error) => {
                tracing::error!(%error, topic = %self.tp.topic, partition = %self.tp.partition, "read failed");
                output.error_code = ResponseError::KafkaStorageError.code();
            }
        }
        output
    }

    /// Batches from `offset` below `bound`, as `Log::read` serves them, read on past batches
    /// without records (a compacted log's fillers and emptied batches) until some batch has
    /// records, the bound or `max_bytes`: a consumer given only batches without records may
    /// fetch the same offset again for ever (kafkajs does, tulios/kafkajs#1072), where
    /// Kafka's compacted segments would simply be shorter.
    async fn read_records(
        &self,
        offset: Offset,
        max_bytes: usize,
        bound: Offset,
    ) -> Result<Vec<Bytes>, StorageError> {
        let has_records = |batch: &Bytes| {
            record_batch::header(batch).is_none_or(|header| header.record_count.get() > 0)
        };
        let mut batches = self.log.read(offset, max_bytes, bound).await?;
        let mut bytes: usize = batches.iter().map(Bytes::len).sum();
        // Every batch before `checked` is known to have no records.
        let mut checked = 0;
        loop {
            if batches[checked..].iter().any(has_records) {
                return Ok(batches);
            }
            checked = batches.len();
            let Some(next) = batches.last().map(|last| batch_end(last)) else {
                return Ok(batches);
            };
            if next >= bound || bytes >= max_bytes {
                return Ok(batches);
            }
            let more = self.log.read(next, max_bytes - bytes, bound).await?;
            if more.is_empty() {
                return Ok(batches);
            }
            bytes += more.iter().map(Bytes::len).sum::<usize>();
            batches.extend(more);
        }
    }

    /// ListOffsets, as Kafka answers it without tiered storage: the latest offset in the
    /// current epoch; the earliest (and earliest local) offset, and the one found by
    /// timestamp, in the epoch that wrote it; nothing tiered.
    /// For read_committed, the latest offset is the last stable offset and lookups by
    /// timestamp find nothing at or past it.
    pub async fn list_offsets(&self, input: ListOffsetsInput) -> ListOffsetsOutput {
        let written = |offset| ListOffsetsOutput::found(offset, -1, self.epoch_at(offset));
        let bound = match input.read_committed {
            true => self.last_stable_offset(),
            false => self.high_watermark(),
        };
        match input.timestamp {
            LATEST_TIMESTAMP => ListOffsetsOutput::found(bound, -1, self.current_epoch()),
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => written(self.log_start_offset()),
            LATEST_TIERED_TIMESTAMP => ListOffsetsOutput::none(),
            MAX_TIMESTAMP => match self.log.max_timestamp() {
                Some((max, _)) => self.offset_for_time(max, bound).await,
                None => ListOffsetsOutput::none(),
            },
            t if t >= 0 => self.offset_for_time(t, bound).await,
            _ => ListOffsetsOutput::error(ResponseError::InvalidRequest),
        }
    }

    /// The first record below `bound` whose timestamp is at least `timestamp`.
    async fn offset_for_time(&self, timestamp: i64, bound: Offset) -> ListOffsetsOutput {
        let found = self.log.find_batch_by_timestamp(timestamp, bound);
        let batch = match found.await {
            Ok(Some(batch)) => batch,
            Ok(None) => return ListOffsetsOutput::none(),
            Err(error) => {
                tracing::error!(%error, topic = %self.tp.topic, partition = %self.tp.partition, "timestamp lookup failed");
                return ListOffsetsOutput::error(ResponseError::KafkaStorageError);
            }
        };
        match first_record_at_or_after(batch, timestamp, self.log_start_offset()) {
            Some((offset, timestamp)) => {
                ListOffsetsOutput::found(offset, timestamp, self.epoch_at(offset))
            }
            None => ListOffsetsOutput::none(),
        }
    }

    /// OffsetForLeaderEpoch: where the epoch asked for ended, from the history (the owner
    /// checked the client's current epoch first, see `leader_epoch_fence`).
    pub fn epoch_end_offset(&self, input: EpochEndInput) -> EpochEndOutput {
        let (_, (leader_epoch, end_offset)) = self.epoch_end(input.leader_epoch);
        EpochEndOutput {
            error_code: 0,
            leader_epoch,
            end_offset,
        }
    }

    /// Moves the log start to `input.offset` (`Offset::NONE`: the high watermark), as
    /// DeleteRecords asks;
    /// an offset past the high watermark is OFFSET_OUT_OF_RANGE.
    pub async fn delete_records(&self, input: DeleteRecordsInput) -> DeleteRecordsOutput {
        let high_watermark = self.high_watermark();
        let target = match input.offset {
            Offset::NONE => high_watermark,
            offset => offset,
        };
        let result = if (Offset::ZERO..=high_watermark).contains(&target) {
            self.move_log_start(target).await
        } else {
            Err(StorageError::OffsetOutOfRange {
                requested: input.offset,
                log_start: self.log_start_offset(),
                end: high_watermark,
            })
        };
        let error = |code: ResponseError| DeleteRecordsOutput {
            error_code: code.code(),
            low_watermark: Offset::NONE,
        };
        match result {
            Ok(low_watermark) => DeleteRecordsOutput {
                error_code: 0,
                low_watermark,
            },
            Err(StorageError::OffsetOutOfRange { .. }) => error(ResponseError::OffsetOutOfRange),
            Err(failure) => {
                tracing::error!(
                    error = %failure,
                    topic = %self.tp.topic,
                    partition = %self.tp.partition,
                    "DeleteRecords failed"
                );
                error(ResponseError::KafkaStorageError)
            }
        }
    }

    /// Moves the log start up to `offset` (at most the durable end; never down), deleting
    /// the segments wholly below it, and forgets the epochs and producer snapshots below it.
    /// First it snapshots the producer state at the durable end: the new log start may lie
    /// past the newest snapshot (DeleteRecords moves it inside a segment), and a rebuild
    /// that replayed from the log start would miss the first batches of transactions that
    /// began below it. Returns the log start after the call.
    pub async fn move_log_start(&self, offset: Offset) -> Result<Offset, StorageError> {
        self.snapshot_durable_end().await;
        let result = self.log.truncate_prefix(offset, now_ms()).await;
        if result.is_ok() {
            self.log_start_moved();
            self.prune_snapshots().await;
        }
        // Fetches parked on this partition re-check their offset against the new start.
        self.durable.notify_all();
        result
    }
}

/// The offset after a stored batch's last record.
fn batch_end(batch: &[u8]) -> Offset {
    let header = record_batch::header(batch).expect("a batch read back is whole");
    Offset(header.base_offset.get()) + i64::from(header.last_offset_delta.get()) + 1
}

/// Decodes `batch` (decompressing if needed) and finds its first record at or after
/// `timestamp` whose offset is not below `log_start` (DeleteRecords may cut into a batch).
pub fn first_record_at_or_after(
    batch: Bytes,
    timestamp: i64,
    log_start: Offset,
) -> Option<(Offset, i64)> {
    let summary = record_batch::validate(&batch).ok()?;
    if summary.timestamp_type == record_batch::TimestampType::LogAppendTime {
        return Some((
            Offset(summary.base_offset).max(log_start),
            summary.max_timestamp,
        ));
    }
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf).ok()?;
    set.records
        .iter()
        .find(|r| r.timestamp >= timestamp && Offset(r.offset) >= log_start)
        .map(|r| (Offset(r.offset), r.timestamp))
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
        let lookup =
            |timestamp, log_start| first_record_at_or_after(batch.clone(), timestamp, log_start);
        assert_eq!(
            lookup(999_999_999_999, Offset::ZERO),
            Some((Offset(1), 999_999_999_999))
        );
        assert_eq!(
            lookup(1235, Offset::ZERO),
            Some((Offset(1), 999_999_999_999))
        );
        assert_eq!(lookup(1234, Offset::ZERO), Some((Offset::ZERO, 1234)));
        assert_eq!(
            lookup(0, Offset(1)),
            Some((Offset(1), 999_999_999_999)),
            "below the log start"
        );
        assert_eq!(lookup(1_000_000_000_000, Offset::ZERO), None);
    }
}
