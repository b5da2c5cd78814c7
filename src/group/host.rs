//! `Host`: what the group coordinator needs from the shard it runs on, and no more. The shard
//! implements it; the group layer never sees the whole shard, so `shard` imports `group` and
//! not the other way round.

use crate::ids::{PartitionId, ShardId};
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use glommio::TaskQueueHandle;

use super::{Coordinator, GroupCall, GroupReply};
use crate::partition::{Partition, ProduceOutput, TopicPartition};
use crate::partition::{WriteMarkerInput, WriteMarkerOutput};

pub trait Host: 'static {
    /// This shard's id, and how many shards the process runs.
    fn shard_id(&self) -> ShardId;
    fn shard_count(&self) -> usize;

    /// The group state of this shard.
    fn coordinator(&self) -> &Coordinator;

    /// The partition count of `topic` in this shard's table, if the topic exists.
    fn partition_count(&self, topic: &str) -> Option<i32>;

    /// The shard owning partition `partition` of `topic`, per this shard's table.
    fn owner(&self, topic: &str, partition: PartitionId) -> Option<ShardId>;

    /// Runs `call` on the coordinator of shard `shard`; None when that shard is gone.
    fn call_coordinator(
        &self,
        shard: ShardId,
        call: GroupCall,
    ) -> impl Future<Output = Option<GroupReply>>;

    /// Appends one batch to a partition this shard owns and answers once it is durable, as
    /// acks=all does.
    fn append(&self, tp: TopicPartition, batch: Bytes) -> impl Future<Output = ProduceOutput>;

    /// A partition this shard owns.
    fn local_partition(&self, tp: &TopicPartition) -> Option<Rc<Partition>>;

    /// Writes a transaction marker to a partition this shard owns (through its Raft group
    /// when it is replicated) and answers once it is durable.
    fn write_marker_here(&self, input: WriteMarkerInput)
        -> impl Future<Output = WriteMarkerOutput>;

    /// The task queue group work runs on (the request queue).
    fn requests_queue(&self) -> TaskQueueHandle;

    /// Whether the process is shutting down: the timer loop ends.
    fn is_shutting_down(&self) -> bool;
}
