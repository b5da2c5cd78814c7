//! Cluster metadata: which topics exist, their ids, configs and the shard of each partition.
//!
//! The metadata is a log of `MetadataRecord`s (`__cluster_metadata-0`, owned by shard 0, the
//! controller) stored with the same partition log as user data: each record is the JSON value
//! of one record in a Kafka v2 batch. At start the controller replays it; each change is
//! appended, made durable, and then broadcast to every shard, which applies it to its own copy
//! of the table (`shard::table::ShardTable`). A change is acknowledged to a client only after
//! every shard has applied it.

pub mod topic_config;

use crate::ids::{LeaderEpoch, NodeId, Offset, PartitionId, ShardId};
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
    /// A topic was created. On a single node `shards[p]` owns partition `p`; in a cluster
    /// `replicas[p]` are its replicas (the first the preferred leader) and `shards` is empty.
    /// A replicated partition's replicas form Raft group `groups[p]`; a partition without a
    /// group (a single node's, `__consumer_offsets` in a cluster) has one replica, not
    /// replicated.
    TopicCreated {
        name: String,
        id: uuid::Uuid,
        shards: Vec<ShardId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<PlacedReplica>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<u64>,
        configs: BTreeMap<String, String>,
    },
    /// A topic and all its partitions were deleted.
    TopicDeleted { name: String, id: uuid::Uuid },
    /// Partitions were added to a topic: their owners on a single node, their replicas in a
    /// cluster, as in `TopicCreated`.
    PartitionsAdded {
        name: String,
        shards: Vec<ShardId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<Vec<PlacedReplica>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<u64>,
    },
    /// A replicated partition's replica on `leader` won the election of Raft term `epoch`,
    /// or its replicas in sync (`in_sync`, the leader first) changed, and the leader told
    /// the controller (as KRaft's PartitionChangeRecord carries a new leader and ISR):
    /// clients are sent there. A record of an earlier epoch than the recorded one is ignored.
    PartitionLeaderChanged {
        name: String,
        partition: PartitionId,
        leader: NodeId,
        epoch: LeaderEpoch,
        #[serde(default)]
        in_sync: Vec<NodeId>,
    },
    /// An operator asked (ElectLeaders) that a replicated partition be led by its preferred
    /// leader: its leader hands the leadership over if the preferred leader is live and in
    /// sync (as the leader balancer does). An event, not state: replayed at a node's start it
    /// does nothing, and a node applying it late at most hands back early what the balancer
    /// would hand back anyway.
    PreferredLeaderElected {
        name: String,
        partition: PartitionId,
    },
    /// A replicated partition's replicas are being changed (AlterPartitionReassignments), or
    /// the change completed or was cancelled (KRaft's PartitionChangeRecord with adding and
    /// removing replicas): `replicas` are every node holding a replica now, the target's
    /// first (the first of them the preferred leader), then those `removing`, which leave
    /// once the group's voters are the target; `adding` are the target's nodes that join.
    /// Both empty: the partition is not being reassigned.
    PartitionReplicasChanged {
        name: String,
        partition: PartitionId,
        replicas: Vec<PlacedReplica>,
        #[serde(default)]
        adding: Vec<NodeId>,
        #[serde(default)]
        removing: Vec<NodeId>,
    },
    /// A partition of a single node changed owner (the shard count shrank between runs).
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
    /// A node of a cluster registered, as it does once per start (KRaft's
    /// RegisterBrokerRecord): where clients reach it, its rack and its shard count. It is
    /// fenced until it has caught up with the metadata log.
    BrokerRegistered(BrokerRegistration),
    /// The active controller has not heard from a node within its session timeout (KRaft's
    /// BrokerRegistrationChangeRecord fencing it): clients are not sent there.
    BrokerFenced { node: NodeId },
    /// A fenced node is heard from again, and has applied the metadata log as far as the
    /// controller had when it first asked.
    BrokerUnfenced { node: NodeId },
    /// Client quotas of one entity were set (`Some`) or removed (KRaft's ClientQuotaRecord).
    ClientQuotasAltered {
        entity: QuotaEntity,
        changes: Vec<(QuotaKey, Option<f64>)>,
    },
}

/// One replica of a partition in a cluster: the node that holds it and the shard that owns
/// it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedReplica {
    pub node: NodeId,
    pub shard: ShardId,
}

/// What a node of a cluster tells the others about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node: NodeId,
    /// Its Kafka listeners as clients reach them.
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// How many shards it runs: placement chooses one of them for each partition it gets.
    pub shards: usize,
    /// Where the other nodes reach it (its cluster listener): how they learn where a
    /// broker-only node listens. Absent from registrations written before it was recorded.
    #[serde(default)]
    pub cluster: Option<std::net::SocketAddr>,
}

/// One advertised listener of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// The listener's name: a client is told the address of the listener it came in on.
    pub listener: String,
    pub host: String,
    pub port: i32,
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

/// How the metadata log's segments are kept: everything, for ever.
pub fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: limits::METADATA_SEGMENT_BYTES,
        segment_ms: i64::MAX,
        retention_bytes: -1,
        retention_ms: -1,
        index_interval_bytes: 4096,
    }
}

/// The durable metadata log of a single-node broker (a cluster's is a Raft group's log, see
/// `shard::controller`). Per-shard: lives on shard 0 only.
pub struct MetadataStore {
    log: Rc<Log>,
}

impl MetadataStore {
    /// Opens the metadata log under `data_dir` and returns it with every record in it, in log
    /// order: the first is at offset 0 and each one is at the next offset.
    pub async fn open(
        data_dir: &Path,
        cache: Rc<BatchCache>,
    ) -> Result<(MetadataStore, MetadataEntries), StorageError> {
        let log = Log::open(data_dir.join(METADATA_LOG_DIR), log_config(), cache).await?;
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

    /// The offset after the last durable record.
    pub fn end_offset(&self) -> Offset {
        self.log.durable_end_offset()
    }
}

/// One metadata record as the value of a one-record batch (not yet stamped).
pub fn encode_record(record: &MetadataRecord) -> Result<BytesMut, StorageError> {
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

/// The metadata log's entries from offset `first` on, one per offset: a record, or `None`
/// for an offset a control batch holds (a replicated metadata log's election no-ops and
/// configuration changes), which the shard tables skip.
pub type MetadataEntries = Vec<Option<MetadataRecord>>;

/// Decodes the stored `batch`, which must start at `expected`: its entries, one per offset.
pub fn decode_batch(batch: &Bytes, expected: Offset) -> Result<MetadataEntries, StorageError> {
    let mut buf = batch.clone();
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| StorageError::Corrupt(format!("metadata batch: {e}")))?;
    let mut entries = Vec::with_capacity(set.records.len());
    let mut offset = expected;
    for record in set.records {
        // Each offset is the next revision of the shard tables: none may be missing.
        if Offset(record.offset) != offset {
            return Err(StorageError::Corrupt(format!(
                "metadata record at offset {}, expected {offset}",
                record.offset
            )));
        }
        offset = offset.next();
        if record.control {
            entries.push(None);
            continue;
        }
        let value = record.value.unwrap_or_default();
        let parsed = serde_json::from_slice(&value)
            .map_err(|e| StorageError::Corrupt(format!("metadata record: {e}")))?;
        entries.push(Some(parsed));
    }
    Ok(entries)
}

async fn replay(log: &Log) -> Result<MetadataEntries, StorageError> {
    let start = log.log_start_offset();
    if start != Offset::ZERO {
        return Err(StorageError::Corrupt(format!(
            "the metadata log starts at offset {start}, not 0"
        )));
    }
    let end = log.durable_end_offset();
    read_entries(|offset| log.read(offset, 1 << 20, end), start, end).await
}

/// The entries in `[from, end)` of a metadata log, whose batches `read` returns from a given
/// offset on (a single node's log, or a cluster's committed Raft log).
pub async fn read_entries<Read, Reading>(
    mut read: Read,
    from: Offset,
    end: Offset,
) -> Result<MetadataEntries, StorageError>
where
    Read: FnMut(Offset) -> Reading,
    Reading: std::future::Future<Output = Result<Vec<Bytes>, StorageError>>,
{
    let mut entries = Vec::new();
    let mut offset = from;
    while offset < end {
        let batches = read(offset).await?;
        if batches.is_empty() {
            return Err(StorageError::Corrupt(format!(
                "the metadata log has no batch at offset {offset}, below its end {end}"
            )));
        }
        for batch in batches {
            let decoded = decode_batch(&batch, offset)?;
            offset = Offset(offset.get() + decoded.len() as i64);
            entries.extend(decoded);
        }
    }
    Ok(entries)
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
            shards: Vec::new(),
            replicas: vec![vec![PlacedReplica {
                node: NodeId(3),
                shard: ShardId(1),
            }]],
            groups: vec![7],
            configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(
            serde_json::from_slice::<MetadataRecord>(&json).unwrap(),
            record
        );
    }
}
