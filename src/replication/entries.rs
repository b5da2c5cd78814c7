//! How a Raft entry lies in a partition's log: one entry is one record batch.
//!
//! A client batch is the entry's data, and every replica stamps it, when it appends it, with
//! the offset where the entry begins (the end of the entry before it) and the entry's term
//! as partitionLeaderEpoch. Raft's log matching makes the entries before it the same on
//! every replica, so the stamp is too, and the logs stay byte for byte the same without the
//! leader having to know offsets when it proposes. Neither field is covered by the batch CRC.
//!
//! Entries that are not client batches are control batches (attribute bit 5), which
//! consumers skip: the empty entry a new leader appends (a LEADER_CHANGE control record, as
//! KRaft writes), configuration changes (a control type of corelog's own, the change's
//! protobuf as the record value) and log-start moves (DeleteRecords and retention: every
//! replica moves its log start when it applies one, so that the replicas' logs begin at the
//! same offset). Their bytes depend only on the entry and its offset, so every replica
//! writes the same ones, and reading a batch back gives the entry again.

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{Entry, EntryType};

use crate::ids::{LeaderEpoch, Offset};
use crate::protocol::control::{self, CONTROL_ABORT, CONTROL_COMMIT};
use crate::protocol::record_batch::{self, ATTRIBUTE_CONTROL};
use crate::storage::{batch_meta, BatchMeta};

/// Kafka's "no timestamp".
const NO_TIMESTAMP: i64 = -1;
/// Kafka's control record type for a leader's first entry.
pub const CONTROL_LEADER_CHANGE: i16 = 2;
/// corelog's control record types for Raft configuration changes (v1 and v2 protobufs), far
/// from Kafka's own (0 to 6 today), which clients skip like any control record they do not know.
pub const CONTROL_CONF_CHANGE: i16 = 0x4301;
pub const CONTROL_CONF_CHANGE_V2: i16 = 0x4302;
/// corelog's control record type for a log-start move, the new log start (8 bytes,
/// big-endian) as the record value. Its entry is a normal one whose data is the batch.
pub const CONTROL_LOG_START: i16 = 0x4303;

/// Why bytes are not an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry data is not one record batch: {0}")]
    NotABatch(String),
    #[error("control batch of an unknown type {0}")]
    UnknownControl(i16),
}

/// The batch `entry` is stored as when it begins at `offset`, and what the log indexes of it.
pub fn to_batch(entry: &Entry, offset: Offset) -> Result<(Bytes, BatchMeta), EntryError> {
    let epoch = term_epoch(entry.term);
    let mut batch = match (entry.get_entry_type(), entry.data.is_empty()) {
        (EntryType::EntryNormal, true) => control_batch(CONTROL_LEADER_CHANGE, None),
        (EntryType::EntryNormal, false) => {
            check_one_batch(&entry.data)?;
            BytesMut::from(&entry.data[..])
        }
        (EntryType::EntryConfChange, _) => {
            control_batch(CONTROL_CONF_CHANGE, Some(entry.data.clone()))
        }
        (EntryType::EntryConfChangeV2, _) => {
            control_batch(CONTROL_CONF_CHANGE_V2, Some(entry.data.clone()))
        }
    };
    record_batch::set_base_offset(&mut batch, offset.get());
    record_batch::set_partition_leader_epoch(&mut batch, epoch.get());
    let meta = batch_meta(&batch).map_err(EntryError::NotABatch)?;
    Ok((batch.freeze(), meta))
}

/// The entry at `index` that `batch` (read from the log) stores.
pub fn from_batch(index: u64, batch: &Bytes) -> Result<Entry, EntryError> {
    let header = check_one_batch(batch)?;
    let mut entry = Entry {
        index,
        term: u64::try_from(header.partition_leader_epoch.get())
            .map_err(|_| EntryError::NotABatch("a batch without a leader epoch".into()))?,
        ..Default::default()
    };
    if header.attributes.get() & ATTRIBUTE_CONTROL == 0 {
        entry.data = batch.clone();
        return Ok(entry);
    }
    let (control_type, value) = control_record(batch)?;
    match control_type {
        CONTROL_LEADER_CHANGE => {}
        CONTROL_CONF_CHANGE => {
            entry.set_entry_type(EntryType::EntryConfChange);
            entry.data = value;
        }
        CONTROL_CONF_CHANGE_V2 => {
            entry.set_entry_type(EntryType::EntryConfChangeV2);
            entry.data = value;
        }
        // Transaction markers are proposed as client batches are.
        CONTROL_LOG_START | CONTROL_ABORT | CONTROL_COMMIT => entry.data = batch.clone(),
        other => return Err(EntryError::UnknownControl(other)),
    }
    Ok(entry)
}

/// The data of an entry that moves every replica's log start to `log_start`: a control
/// batch, proposed like a client batch and stamped like one.
pub fn log_start_entry(log_start: Offset) -> Bytes {
    let value = Bytes::copy_from_slice(&log_start.get().to_be_bytes());
    control_batch(CONTROL_LOG_START, Some(value)).freeze()
}

/// The log start `entry` moves the log to, if it is a log-start move.
pub fn log_start_of(entry: &Entry) -> Option<Offset> {
    if entry.get_entry_type() != EntryType::EntryNormal {
        return None;
    }
    let header = record_batch::header(&entry.data)?;
    if header.attributes.get() & ATTRIBUTE_CONTROL == 0 {
        return None;
    }
    match control_record(&entry.data).ok()? {
        (CONTROL_LOG_START, value) => {
            let bytes: [u8; 8] = value.as_ref().try_into().ok()?;
            Some(Offset(i64::from_be_bytes(bytes)))
        }
        _ => None,
    }
}

/// The leader epoch a term is stamped as. Terms count elections and stay far below 2^31.
pub fn term_epoch(term: u64) -> LeaderEpoch {
    LeaderEpoch(i32::try_from(term).expect("a term fits a leader epoch"))
}

fn check_one_batch(bytes: &[u8]) -> Result<&record_batch::BatchHeader, EntryError> {
    let declared = record_batch::declared_batch_bytes(bytes)
        .map_err(|e| EntryError::NotABatch(e.to_string()))?;
    if declared != bytes.len() {
        let found = bytes.len();
        return Err(EntryError::NotABatch(format!(
            "declares {declared} bytes, holds {found}"
        )));
    }
    let header = record_batch::header(bytes).expect("declared_batch_bytes checked the length");
    if header.last_offset_delta.get() < 0 {
        return Err(EntryError::NotABatch("a negative last offset delta".into()));
    }
    Ok(header)
}

/// A control batch of one record without a producer and with no timestamp (Kafka's
/// NO_TIMESTAMP, -1, which the log's time indexes, retention and rolls ignore), so that its
/// bytes depend on nothing but its arguments (and the stamp added after).
fn control_batch(control_type: i16, value: Option<Bytes>) -> BytesMut {
    control::control_batch(control_type, value, None, NO_TIMESTAMP)
}

/// The type and value of a control batch's one record.
fn control_record(batch: &Bytes) -> Result<(i16, Bytes), EntryError> {
    control::control_record(batch).map_err(EntryError::NotABatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::{encode_plain_batch, PlainRecord};

    fn client_batch() -> Bytes {
        let records = (0..3).map(|i| PlainRecord {
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(Bytes::from(format!("value-{i}"))),
        });
        encode_plain_batch(records, kafka_protocol::records::Compression::None)
            .unwrap()
            .freeze()
    }

    fn entry(entry_type: EntryType, term: u64, data: Bytes) -> Entry {
        let mut entry = Entry {
            index: 7,
            term,
            data,
            ..Default::default()
        };
        entry.set_entry_type(entry_type);
        entry
    }

    /// A client batch is stored stamped with the offset and the term, still valid, and reads
    /// back as the stamped batch.
    #[test]
    fn a_client_batch_is_stamped_and_reads_back() {
        let original = entry(EntryType::EntryNormal, 5, client_batch());
        let (batch, meta) = to_batch(&original, Offset(40)).unwrap();
        let header = record_batch::header(&batch).unwrap();
        assert_eq!(header.base_offset.get(), 40);
        assert_eq!(header.partition_leader_epoch.get(), 5);
        assert_eq!(
            (meta.base_offset, meta.last_offset),
            (Offset(40), Offset(42))
        );
        record_batch::validate(&batch).expect("the stamp keeps the batch valid");
        let back = from_batch(7, &batch).unwrap();
        assert_eq!((back.index, back.term), (7, 5));
        assert_eq!(back.data, batch);
        assert_eq!(back.get_entry_type(), EntryType::EntryNormal);
    }

    /// Entries that are not client batches become one-record control batches, the same bytes
    /// wherever they are built, and read back as the entry they were.
    #[test]
    fn leader_changes_and_configuration_changes_are_control_batches() {
        let change = Bytes::from_static(b"\x08\x01\x10\x02");
        for original in [
            entry(EntryType::EntryNormal, 3, Bytes::new()),
            entry(EntryType::EntryConfChange, 3, change.clone()),
            entry(EntryType::EntryConfChangeV2, 3, change.clone()),
        ] {
            let (batch, meta) = to_batch(&original, Offset(9)).unwrap();
            assert_eq!(
                to_batch(&original, Offset(9)).unwrap().0,
                batch,
                "deterministic"
            );
            assert_eq!((meta.base_offset, meta.last_offset), (Offset(9), Offset(9)));
            let header = record_batch::header(&batch).unwrap();
            assert_ne!(header.attributes.get() & ATTRIBUTE_CONTROL, 0);
            assert_eq!(header.partition_leader_epoch.get(), 3);
            assert_eq!(
                meta.max_timestamp, NO_TIMESTAMP,
                "no time for retention to count"
            );
            let back = from_batch(7, &batch).unwrap();
            assert_eq!(back.get_entry_type(), original.get_entry_type());
            assert_eq!(back.data, original.data);
            assert_eq!(back.term, 3);
        }
    }

    /// A log-start move is a control batch carried as a normal entry: stamped, stored and
    /// read back like a client batch, and recognised by `log_start_of` (a client batch is not).
    #[test]
    fn a_log_start_move_is_a_control_batch_in_a_normal_entry() {
        let original = entry(EntryType::EntryNormal, 4, log_start_entry(Offset(1234)));
        assert_eq!(log_start_of(&original), Some(Offset(1234)));
        let (batch, meta) = to_batch(&original, Offset(50)).unwrap();
        assert_eq!(
            (meta.base_offset, meta.last_offset),
            (Offset(50), Offset(50))
        );
        let header = record_batch::header(&batch).unwrap();
        assert_ne!(header.attributes.get() & ATTRIBUTE_CONTROL, 0);
        let back = from_batch(7, &batch).unwrap();
        assert_eq!(back.get_entry_type(), EntryType::EntryNormal);
        assert_eq!(back.data, batch);
        assert_eq!(log_start_of(&back), Some(Offset(1234)));
        let client = entry(EntryType::EntryNormal, 4, client_batch());
        assert_eq!(log_start_of(&client), None);
        let leader_change = entry(EntryType::EntryNormal, 4, Bytes::new());
        assert_eq!(log_start_of(&leader_change), None);
    }

    /// Data that is not exactly one batch is refused, not stored.
    #[test]
    fn data_that_is_not_one_batch_is_refused() {
        let batch = client_batch();
        let mut two = BytesMut::from(&batch[..]);
        two.extend_from_slice(&batch);
        for data in [
            batch.slice(..30),
            two.freeze(),
            batch.slice(..batch.len() - 1),
        ] {
            let bad = entry(EntryType::EntryNormal, 1, data);
            assert!(matches!(
                to_batch(&bad, Offset(0)),
                Err(EntryError::NotABatch(_))
            ));
        }
    }
}
