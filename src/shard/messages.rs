//! The typed requests one shard sends another, each with its own typed reply channel.
//!
//! Every operation on a partition, local or remote, goes through one generic route
//! (`Shard::route`): a direct call on the owner, or one of these over the channel mesh, which
//! the owner's one entry point (`Shard::serve`) runs the same way. Record bytes travel as
//! `bytes::Bytes`, never copied.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use serde::{Deserialize, Serialize};

use super::controller_call::{ControllerAnswer, ControllerCall};
use super::Shard;
use crate::ids::NodeId;
use crate::metadata::MetadataEntries;
use crate::partition::{
    DeleteRecordsInput, DeleteRecordsOutput, EpochEndInput, EpochEndOutput, FetchInput,
    FetchOutput, ListOffsetsInput, ListOffsetsOutput, PartitionOp, ProduceInput, ProduceOutput,
    TopicPartition, WatchInput, WriteMarkerInput, WriteMarkerOutput,
};
use crate::replication::Replica;
use crate::transport::Hello;

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
    /// To shard 0: a call on the controller (run there, or forwarded to the node that leads
    /// the metadata quorum); None when no controller can be reached.
    ControllerCall(ControllerCall, Duration, Reply<Option<ControllerAnswer>>),
    /// From shard 0 to the others: the node that leads the metadata quorum now.
    ControllerMoved(Option<NodeId>, Reply<()>),
    /// A node-to-node link that landed on another shard and names this one.
    AdoptLink(Hello, OwnedFd, Reply<()>),
    /// Advance a partition's log start (on its owner).
    DeleteRecords(DeleteRecordsInput, Reply<DeleteRecordsOutput>),
    /// Write a transaction marker (on its owner).
    WriteMarker(WriteMarkerInput, Reply<WriteMarkerOutput>),
    /// Apply metadata records to this shard's table, opening and closing partition logs.
    Apply(ApplyInput, Reply<Result<(), String>>),
    /// This shard's metrics, for `/metrics`.
    Metrics(Reply<crate::metrics::MetricsSnapshot>),
    /// The bytes on disk of each partition this shard owns (DescribeLogDirs).
    PartitionSizes(Reply<Vec<(TopicPartition, u64)>>),
    /// Start the Kafka listener; the reply says whether it could bind.
    StartServing(Reply<Result<(), String>>),
    /// This node has caught up with the metadata log: answer clients (`Shard::caught_up`).
    CaughtUp(Reply<()>),
    /// Which of these partitions, owned here, this node's replica does not lead
    /// (`Shard::not_led_here`).
    NotLedHere(
        Vec<TopicPartition>,
        Reply<Vec<(TopicPartition, super::replicated::LeaderSeen)>>,
    ),
    /// A consumer-group operation for the group's coordinator (see `crate::group`). JoinGroup
    /// and SyncGroup replies may take a whole rebalance.
    Group(crate::group::GroupCall, Reply<crate::group::GroupReply>),
    /// A transaction operation for the transactional id's coordinator (see `crate::txn`).
    Txn(crate::txn::TxnCall, Reply<crate::txn::TxnReply>),
    /// What another shard's connections took from client quotas (see `quota::throttle`).
    QuotaUsage(Vec<crate::quota::throttle::Usage>, Reply<()>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1 for the broker default.
    pub num_partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    pub validate_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(uuid::Uuid),
}

/// The outcome for one topic of CreateTopics or DeleteTopics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicResult {
    pub name: String,
    pub id: uuid::Uuid,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

impl TopicResult {
    /// The result for topic `name` refused with `error`.
    pub fn refused(
        name: String,
        (error, message): (kafka_protocol::ResponseError, String),
    ) -> Self {
        TopicResult {
            name,
            error_code: error.code(),
            error_message: Some(message),
            ..Default::default()
        }
    }
}

#[derive(Debug)]
pub struct ApplyInput {
    /// The metadata log offset of the first entry; the others follow it one by one.
    pub first: i64,
    pub records: MetadataEntries,
    /// At start-up the whole log is applied at once and logs are opened for the final state.
    pub snapshot: bool,
}

/// How a partition operation travels to its owner (the `ShardRequest` that carries it), and
/// how it runs there on a replicated partition.
pub trait Routed: PartitionOp + Sized {
    fn request(self, reply: Reply<Self::Output>) -> ShardRequest;

    /// Runs it on `shard`, which owns its partition.
    fn run_here(self, shard: &Rc<Shard>) -> impl Future<Output = Self::Output> {
        shard.run_local(self)
    }

    /// Runs it on the owner's replica of a replicated partition: on the leader's partition
    /// as on any other, and refused on a follower.
    fn run_on_replica(self, replica: Rc<Replica>) -> impl Future<Output = Self::Output> {
        async move {
            if !replica.leads_in_term() {
                return Self::refused(ResponseError::NotLeaderOrFollower);
            }
            self.run(replica.partition().clone()).await
        }
    }
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
    ListOffsetsInput => ListOffsets,
    EpochEndInput => EpochEnd,
);

impl Routed for FetchInput {
    fn request(self, reply: Reply<FetchOutput>) -> ShardRequest {
        ShardRequest::Fetch(self, reply)
    }

    /// On the leader; on a follower too for a consumer that may read from one (KIP-392),
    /// while the follower knows a leader: its partition's high watermark is the commit
    /// point it knows, so it serves only committed batches (see `Partition::fetch` for an
    /// offset past that point).
    async fn run_on_replica(self, replica: Rc<Replica>) -> FetchOutput {
        let follows = || {
            let leader = replica.leader();
            leader.is_some_and(|leader| leader != replica.me())
        };
        let serves = replica.leads_in_term() || (self.from_follower && follows());
        if !serves {
            return Self::refused(ResponseError::NotLeaderOrFollower);
        }
        self.run(replica.partition().clone()).await
    }
}

impl Routed for ProduceInput {
    fn request(self, reply: Reply<ProduceOutput>) -> ShardRequest {
        ShardRequest::Produce(self, reply)
    }

    /// A producer's first transactional batch in the partition waits for its coordinator's
    /// word (see `txn_gate`).
    fn run_here(self, shard: &Rc<Shard>) -> impl Future<Output = ProduceOutput> {
        shard.produce_here(self)
    }

    /// Proposed to the partition's Raft group (see `replicated::produce_on_replica`).
    fn run_on_replica(self, replica: Rc<Replica>) -> impl Future<Output = ProduceOutput> {
        super::replicated::produce_on_replica(replica, self)
    }
}

impl Routed for WriteMarkerInput {
    fn request(self, reply: Reply<WriteMarkerOutput>) -> ShardRequest {
        ShardRequest::WriteMarker(self, reply)
    }

    /// Proposed to the partition's Raft group (see `replicated::write_marker_on_replica`).
    fn run_on_replica(self, replica: Rc<Replica>) -> impl Future<Output = WriteMarkerOutput> {
        super::replicated::write_marker_on_replica(replica, self)
    }
}

impl Routed for DeleteRecordsInput {
    fn request(self, reply: Reply<DeleteRecordsOutput>) -> ShardRequest {
        ShardRequest::DeleteRecords(self, reply)
    }

    /// Proposed to the partition's Raft group, so that every replica's log start moves
    /// (see `replicated::delete_records_on_replica`).
    fn run_on_replica(self, replica: Rc<Replica>) -> impl Future<Output = DeleteRecordsOutput> {
        super::replicated::delete_records_on_replica(replica, self)
    }
}
