//! The typed requests one shard sends another, each with its own typed reply channel.
//!
//! Every operation on a partition, local or remote, goes through one generic route
//! (`Shard::route`): a direct call on the owner, or one of these over the channel mesh, which
//! the owner's one entry point (`Shard::serve`) runs the same way. Record bytes travel as
//! `bytes::Bytes`, never copied.

use std::collections::BTreeMap;

use crate::metadata::MetadataRecord;
use crate::partition::{
    DeleteRecordsInput, DeleteRecordsOutput, EpochEndInput, EpochEndOutput, FetchInput,
    FetchOutput, ListOffsetsInput, ListOffsetsOutput, PartitionOp, ProduceInput, ProduceOutput,
    WatchInput,
};

/// The reply half handed to the shard that does the work.
pub type Reply<T> = crate::runtime::Reply<T>;

/// A message over the shard mesh.
pub enum ShardRequest {
    Produce(ProduceInput, Reply<ProduceOutput>),
    Fetch(FetchInput, Reply<FetchOutput>),
    ListOffsets(ListOffsetsInput, Reply<ListOffsetsOutput>),
    EpochEnd(EpochEndInput, Reply<EpochEndOutput>),
    /// Completes when any of the partitions has data past the given offset, or at the timeout.
    Watch(WatchInput, Reply<()>),
    /// Controller only (shard 0).
    CreateTopics(Vec<CreateTopicSpec>, Reply<Vec<TopicResult>>),
    /// Controller only (shard 0).
    DeleteTopics(Vec<TopicRef>, Reply<Vec<TopicResult>>),
    /// Controller only (shard 0): a fresh block of producer ids `[first, end)`.
    AllocateProducerIds(Reply<Result<(i64, i64), String>>),
    /// Controller only (shard 0): config changes and partition increases.
    Controller(
        Vec<super::admin::ControllerCommand>,
        Reply<Vec<super::admin::AdminResult>>,
    ),
    /// Advance a partition's log start (on its owner).
    DeleteRecords(DeleteRecordsInput, Reply<DeleteRecordsOutput>),
    /// Apply metadata records to this shard's table, opening and closing partition logs.
    Apply(ApplyInput, Reply<Result<(), String>>),
    /// This shard's metrics, for `/metrics`.
    Metrics(Reply<crate::metrics::MetricsSnapshot>),
    /// Start the Kafka listener; the reply says whether it could bind.
    StartServing(Reply<Result<(), String>>),
    /// A consumer-group operation for the group's coordinator (see `crate::group`). JoinGroup
    /// and SyncGroup replies may take a whole rebalance.
    Group(crate::group::GroupCall, Reply<crate::group::GroupReply>),
    /// What another shard's connections took from client quotas (see `quota::throttle`).
    QuotaUsage(Vec<crate::quota::throttle::Usage>, Reply<()>),
}

#[derive(Debug, Clone)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1 for the broker default.
    pub num_partitions: i32,
    pub configs: BTreeMap<String, String>,
    pub validate_only: bool,
}

#[derive(Debug, Clone)]
pub enum TopicRef {
    Name(String),
    Id(uuid::Uuid),
}

/// The outcome for one topic of CreateTopics or DeleteTopics.
#[derive(Debug, Clone, Default)]
pub struct TopicResult {
    pub name: String,
    pub id: uuid::Uuid,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub num_partitions: i32,
}

#[derive(Debug)]
pub struct ApplyInput {
    /// The metadata log offset of the first record; the others follow it one by one.
    pub first: i64,
    pub records: Vec<MetadataRecord>,
    /// At start-up the whole log is applied at once and logs are opened for the final state.
    pub snapshot: bool,
}

/// How a partition operation travels to its owner: the `ShardRequest` that carries it.
pub trait Routed: PartitionOp {
    fn request(self, reply: Reply<Self::Output>) -> ShardRequest;
}

macro_rules! routed {
    ($($op:ty => $variant:ident),* $(,)?) => {$(
        impl Routed for $op {
            fn request(self, reply: Reply<<$op as PartitionOp>::Output>) -> ShardRequest {
                ShardRequest::$variant(self, reply)
            }
        }
    )*};
}

routed!(
    ProduceInput => Produce,
    FetchInput => Fetch,
    ListOffsetsInput => ListOffsets,
    EpochEndInput => EpochEnd,
    DeleteRecordsInput => DeleteRecords,
);
