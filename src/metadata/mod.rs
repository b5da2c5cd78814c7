//! Cluster metadata: which topics exist, their ids, configs and the shard of each partition.
//!
//! The metadata is a log of `MetadataRecord`s (`__cluster_metadata-0`, owned by shard 0, the
//! controller) stored with the same partition log as user data: each record is the JSON value
//! of one record in a Kafka v2 batch. At start the controller replays it; each change is
//! appended, made durable, and then broadcast to every shard, which applies it to its own copy
//! of the table (`shard::table::ShardTable`). A change is acknowledged to a client only after
//! every shard has applied it.

pub mod topic_config;

use crate::ids::{Offset, PartitionId, ShardId};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use serde::{Deserialize, Serialize};

use crate::limits;
use crate::protocol::record_batch;
use crate::quota::{QuotaEntity, QuotaKey};
use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::storage::{BatchCache, Log, LogConfig, StorageError};

/// Name of the directory of the metadata log under the data directory.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// One change to the cluster metadata. Records are replayed in order at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A topic was created; `shards[p]` owns partition `p`.
    TopicCreated {
        name: String,
        id: uuid::Uuid,
        shards: Vec<ShardId>,
        configs: BTreeMap<String, String>,
    },
    /// A topic and all its partitions were deleted.
    TopicDeleted { name: String, id: uuid::Uuid },
    /// Partitions were added to a topic; their owners are appended to its shard list.
    PartitionsAdded { name: String, shards: Vec<ShardId> },
    /// A partition changed owner (for example when the shard count shrank between runs).
    PartitionMoved {
        name: String,
        partition: PartitionId,
        shard: ShardId,
    },
    /// A topic's config overrides were replaced.
    TopicConfigChanged {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// The controller handed out every producer id below `next_producer_id` (as KRaft's
    /// ProducerIdsRecord): ids stay unique across shards and restarts.
    ProducerIdsAllocated { next_producer_id: i64 },
    /// A user's SCRAM credential for one mechanism was created or replaced (KRaft's
    /// UserScramCredentialRecord): salted, never the password.
    UserScramCredentialSet {
        name: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    /// A user's SCRAM credential for one mechanism was deleted.
    UserScramCredentialDeleted {
        name: String,
        mechanism: ScramMechanism,
    },
    /// An ACL was created (KRaft's AccessControlEntryRecord).
    AclCreated { binding: AclBinding },
    /// An ACL was deleted (KRaft's RemoveAccessControlEntryRecord).
    AclDeleted { binding: AclBinding },
    /// Client quotas of one entity were set (`Some`) or removed (KRaft's ClientQuotaRecord).
    ClientQuotasAltered {
        entity: QuotaEntity,
        changes: Vec<(QuotaKey, Option<f64>)>,
    },
}

/// The name of a partition's directory in the data directory, as Kafka names it. Every legal
/// topic and partition gives a legal file name (see `limits::PARTITION_INDEX_DIGITS_MAX`).
pub fn partition_dir_name(topic: &str, partition: PartitionId) -> String {
    format!("{topic}-{partition}")
}

/// Why a topic name is refused (INVALID_TOPIC_EXCEPTION).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > limits::TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name is longer than {} characters",
            limits::TOPIC_NAME_BYTES_MAX
        ));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
    if !name.chars().all(legal) {
        return Err(format!(
            "topic name {name:?} has characters other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka refuses topics whose names differ only by '.' versus '_' (metric names collide).
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// The durable metadata log. Per-shard: lives on shard 0 only.
pub struct MetadataStore {
    log: Rc<Log>,
}

impl MetadataStore {
    /// Opens the metadata log under `data_dir` and returns it with every record in it, in log
    /// order: the first is at offset 0 and each one is at the next offset.
    pub async fn open(
        data_dir: &Path,
        cache: Rc<BatchCache>,
    ) -> Result<(MetadataStore, Vec<MetadataRecord>), StorageError> {
        let config = LogConfig {
            segment_bytes: 64 * 1024 * 1024,
            segment_ms: i64::MAX,
            retention_bytes: -1,
            retention_ms: -1,
            index_interval_bytes: 4096,
        };
        let log = Log::open(data_dir.join(METADATA_LOG_DIR), config, cache).await?;
        let records = replay(&log).await?;
        Ok((MetadataStore { log }, records))
    }

    /// Appends `record` and waits until it is durable; returns its offset, the revision of
    /// the shard tables that have applied it.
    pub async fn append(&self, record: &MetadataRecord) -> Result<i64, StorageError> {
        let batch = encode_record(record)?;
        let summary = record_batch::validate(&batch)
            .map_err(|e| StorageError::Corrupt(format!("metadata batch: {e:?}")))?;
        let offset = self.log.log_end_offset();
        let (batch, meta) = crate::storage::stamp_batch(batch, &summary, offset, None);
        let ticket = self.log.append(batch, meta)?;
        self.log.flush().await?;
        // Another task's flush may have found the device full and discarded this record.
        match ticket.settled() {
            crate::storage::Settled::Durable => Ok(offset.get()),
            _ => Err(StorageError::OutOfSpace(std::io::Error::from_raw_os_error(
                libc::ENOSPC,
            ))),
        }
    }

    pub async fn close(&self) -> Result<(), StorageError> {
        self.log.close().await
    }
}

fn encode_record(record: &MetadataRecord) -> Result<BytesMut, StorageError> {
    let value = serde_json::to_vec(record)
        .map_err(|e| StorageError::Corrupt(format!("metadata record: {e}")))?;
    let record = record_batch::PlainRecord {
        timestamp: now_ms(),
        key: None,
        value: Some(Bytes::from(value)),
    };
    record_batch::encode_plain_batch([record], Compression::None)
        .map_err(|e| StorageError::Corrupt(format!("metadata batch: {e}")))
}

async fn replay(log: &Log) -> Result<Vec<MetadataRecord>, StorageError> {
    let mut records = Vec::new();
    let mut offset = log.log_start_offset();
    if offset != Offset::ZERO {
        return Err(StorageError::Corrupt(format!(
            "the metadata log starts at offset {offset}, not 0"
        )));
    }
    let end = log.durable_end_offset();
    while offset < end {
        let batches = log.read(offset, 1 << 20, end).await?;
        if batches.is_empty() {
            break;
        }
        for batch in batches {
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf)
                .map_err(|e| StorageError::Corrupt(format!("metadata batch: {e}")))?;
            for record in set.records {
                // Each record is the next revision of the shard tables: none may be missing.
                if Offset(record.offset) != offset {
                    return Err(StorageError::Corrupt(format!(
                        "metadata record at offset {}, expected {offset}",
                        record.offset
                    )));
                }
                offset = Offset(record.offset).next();
                let value = record.value.unwrap_or_default();
                let parsed = serde_json::from_slice(&value)
                    .map_err(|e| StorageError::Corrupt(format!("metadata record: {e}")))?;
                records.push(parsed);
            }
        }
    }
    Ok(records)
}

/// Milliseconds since the Unix epoch, from the thread's clock (`runtime::clock`).
pub use crate::runtime::clock::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    /// Topic names follow Kafka's rules: legal characters, length, not "." or "..".
    #[test]
    fn topic_name_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert_eq!(collision_key("a.b"), collision_key("a_b"));
    }

    /// A metadata record survives the JSON round trip unchanged.
    #[test]
    fn record_round_trip() {
        let record = MetadataRecord::TopicCreated {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            shards: vec![ShardId(0), ShardId(1)],
            configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(
            serde_json::from_slice::<MetadataRecord>(&json).unwrap(),
            record
        );
    }
}
