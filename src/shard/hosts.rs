//! The shard as host of the group coordinator (`group::Host`) and of the controller
//! (`ControllerHost`): the narrow handles through which they reach the shard's table, its
//! partitions and the other shards, and nothing else of it.

use crate::ids::{PartitionId, ShardId};
use std::cell::Ref;
use std::rc::Rc;

use bytes::Bytes;
use glommio::TaskQueueHandle;
use kafka_protocol::ResponseError;

use super::controller::ControllerHost;
use super::messages::{CreateTopicSpec, ShardRequest};
use super::table::ShardTable;
use super::Shard;
use crate::config::Config;
use crate::group::{self, Coordinator, GroupCall, GroupReply, OFFSETS_TOPIC};
use crate::limits;
use crate::metadata::MetadataEntries;
use crate::partition::{Partition, ProduceInput, ProduceOutput, TopicPartition};

impl group::Host for Shard {
    fn shard_id(&self) -> ShardId {
        self.id
    }

    fn shard_count(&self) -> usize {
        self.count
    }

    fn coordinator(&self) -> &Coordinator {
        &self.groups
    }

    fn partition_count(&self, topic: &str) -> Option<i32> {
        self.table()
            .topic(topic)
            .map(|topic| topic.partition_count())
    }

    fn owner(&self, topic: &str, partition: PartitionId) -> Option<ShardId> {
        self.table()
            .topic(topic)
            .and_then(|topic| topic.owner(partition))
    }

    async fn call_coordinator(&self, shard: ShardId, call: GroupCall) -> Option<GroupReply> {
        self.call(shard, |tx| ShardRequest::Group(call, tx)).await
    }

    async fn append(&self, tp: TopicPartition, batch: Bytes) -> ProduceOutput {
        let input = ProduceInput {
            tp,
            records: Some(batch),
            acks: -1,
        };
        self.run_local(input).await
    }

    fn local_partition(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.partition(tp)
    }

    fn requests_queue(&self) -> TaskQueueHandle {
        self.queues.requests
    }

    fn is_shutting_down(&self) -> bool {
        self.shutdown.is_raised()
    }
}

impl ControllerHost for Rc<Shard> {
    fn config(&self) -> &Config {
        &self.config
    }

    fn shard_count(&self) -> usize {
        self.count
    }

    fn table(&self) -> Ref<'_, ShardTable> {
        Shard::table(self)
    }

    async fn apply_everywhere(&self, first: i64, records: MetadataEntries) -> Result<(), String> {
        self.broadcast_apply(first, records, false).await
    }
}

impl Shard {
    /// Controller, at start: creates `__consumer_offsets` if it does not exist yet.
    pub(super) async fn ensure_offsets_topic(self: &Rc<Self>) -> anyhow::Result<()> {
        if self.table().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let spec = CreateTopicSpec {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: self.config.groups.offsets_topic_num_partitions,
            // Kafka's offsets.topic.replication.factor, on as many nodes as there are.
            replication_factor: limits::OFFSETS_TOPIC_REPLICATION_FACTOR
                .min(self.table().load_per_node().len().max(1) as i16),
            configs: group::offsets_topic_configs(),
            validate_only: false,
        };
        let result = self.create_topics(vec![spec]).await;
        match result.first() {
            Some(r)
                if r.error_code == 0
                    || r.error_code == ResponseError::TopicAlreadyExists.code() =>
            {
                Ok(())
            }
            other => anyhow::bail!("cannot create {OFFSETS_TOPIC}: {other:?}"),
        }
    }
}
