//! Control batches: one-record batches with the control attribute, which consumers never hand
//! to the application. Kafka writes transaction markers so (a COMMIT or ABORT record ending a
//! producer's transaction in one partition, `EndTransactionMarker`); corelog's replication
//! also writes its own control types (see `replication::entries`).
//!
//! A control record's key is a version (i16, 0) and the control type (i16); a marker's value
//! is a version (i16, 0) and the coordinator epoch (i32). Control batches are never
//! compressed, but they are read back through the record decoder like any batch, so that a
//! damaged one is an error, never a panic.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::record_batch::{self, ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL};

/// Kafka's control record type of a marker that aborts a transaction.
pub const CONTROL_ABORT: i16 = 0;
/// Kafka's control record type of a marker that commits a transaction.
pub const CONTROL_COMMIT: i16 = 1;

/// The producer a control batch belongs to: a transaction marker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// A control batch of one record with `control_type` and `value`, at base offset 0. With a
/// producer it is a transactional batch of that producer (a marker); without one it has no
/// producer id.
pub fn control_batch(
    control_type: i16,
    value: Option<Bytes>,
    producer: Option<ControlProducer>,
    timestamp: i64,
) -> BytesMut {
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    let record = Record {
        transactional: producer.is_some(),
        control: true,
        partition_leader_epoch: 0,
        producer_id: producer.map_or(-1, |p| p.producer_id),
        producer_epoch: producer.map_or(-1, |p| p.producer_epoch),
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value,
        headers: Default::default(),
    };
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(&mut batch, [&record], &options)
        .expect("one uncompressed record encodes");
    batch
}

/// The type and value of a control batch's first record.
pub fn control_record(batch: &Bytes) -> Result<(i16, Bytes), String> {
    let mut buffer = batch.clone();
    let decoded = RecordBatchDecoder::decode(&mut buffer)
        .map_err(|error| format!("control batch: {error}"))?;
    let record = decoded
        .records
        .first()
        .ok_or_else(|| "a control batch without a record".to_string())?;
    let key = record.key.as_deref().unwrap_or_default();
    let control_type = key
        .get(2..4)
        .map(|bytes| i16::from_be_bytes([bytes[0], bytes[1]]))
        .ok_or_else(|| "a control key shorter than 4 bytes".to_string())?;
    Ok((control_type, record.value.clone().unwrap_or_default()))
}

/// A transaction marker: the end of one producer's transaction in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch of the coordinator that decided the outcome: a marker from an older
    /// coordinator than the last one seen is refused.
    pub coordinator_epoch: i32,
    pub commit: bool,
}

impl TxnMarker {
    /// The marker as a batch at base offset 0, stamped `timestamp`.
    pub fn to_batch(&self, timestamp: i64) -> BytesMut {
        let mut value = BytesMut::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        let control_type = match self.commit {
            true => CONTROL_COMMIT,
            false => CONTROL_ABORT,
        };
        let producer = ControlProducer {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
        };
        control_batch(
            control_type,
            Some(value.freeze()),
            Some(producer),
            timestamp,
        )
    }

    /// The marker `batch` holds, if it is one: a transactional control batch whose record is
    /// a COMMIT or ABORT with a value that names a coordinator epoch.
    pub fn from_batch(batch: &Bytes) -> Option<TxnMarker> {
        let header = record_batch::header(batch)?;
        let attributes = header.attributes.get();
        let marker_attributes = ATTRIBUTE_CONTROL | ATTRIBUTE_TRANSACTIONAL;
        if attributes & marker_attributes != marker_attributes {
            return None;
        }
        let (producer_id, producer_epoch) = (header.producer_id.get(), header.producer_epoch.get());
        let (control_type, value) = control_record(batch).ok()?;
        let commit = match control_type {
            CONTROL_COMMIT => true,
            CONTROL_ABORT => false,
            _ => return None,
        };
        let coordinator_epoch = value.get(2..6)?;
        Some(TxnMarker {
            producer_id,
            producer_epoch,
            coordinator_epoch: i32::from_be_bytes(coordinator_epoch.try_into().ok()?),
            commit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A marker is a valid transactional control batch of its producer, one offset long, and
    /// reads back as the same marker; other control batches are not markers.
    #[test]
    fn markers_round_trip() {
        for commit in [true, false] {
            let marker = TxnMarker {
                producer_id: 4_000,
                producer_epoch: 7,
                coordinator_epoch: 12,
                commit,
            };
            let batch = marker.to_batch(1_700_000_000_000).freeze();
            let summary = record_batch::validate(&batch).expect("a valid batch");
            assert!(summary.is_control && summary.is_transactional);
            assert_eq!((summary.producer_id, summary.producer_epoch), (4_000, 7));
            assert_eq!((summary.record_count, summary.base_sequence), (1, -1));
            assert_eq!(TxnMarker::from_batch(&batch), Some(marker));
        }
        let leader_change = control_batch(2, None, None, -1).freeze();
        assert_eq!(TxnMarker::from_batch(&leader_change), None);
        assert_eq!(control_record(&leader_change), Ok((2, Bytes::new())));
    }

    /// Bytes that are not a whole control batch are no marker, and never a panic.
    #[test]
    fn damaged_markers_are_not_markers() {
        let marker = TxnMarker {
            producer_id: 1,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: true,
        };
        let batch = marker.to_batch(0).freeze();
        for length in 0..batch.len() {
            assert_eq!(TxnMarker::from_batch(&batch.slice(..length)), None);
        }
    }
}
