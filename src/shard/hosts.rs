//! The shard as host of the group coordinator (`group::Host`), the transaction coordinator
//! (`txn::Host`) and the controller (`ControllerHost`): the narrow handles through which they
//! reach the shard's table, its partitions and the other shards, and nothing else of it.

use crate::ids::{PartitionId, ShardId};
use std::cell::Ref;
use std::rc::Rc;

use bytes::Bytes;
use glommio::TaskQueueHandle;
use kafka_protocol::ResponseError;

use super::controller::ControllerHost;
use super::messages::{CreateTopicSpec, ShardRequest};
use super::node_call::NodeCall;
use super::table::ShardTable;
use super::Shard;
use crate::config::Config;
use crate::group::{self, Coordinator, GroupCall, GroupReply, OFFSETS_TOPIC};
use crate::limits;
use crate::metadata::MetadataEntries;
use crate::partition::{Partition, ProduceInput, ProduceOutput, TopicPartition};
use crate::partition::{WriteMarkerInput, WriteMarkerOutput};
use crate::txn::{self, TxnCall, TxnReply, TRANSACTION_TOPIC};

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
            transactional_id: None,
        };
        self.run_local(input).await
    }

    fn local_partition(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.partition(tp)
    }

    async fn write_marker_here(&self, input: WriteMarkerInput) -> WriteMarkerOutput {
        self.run_local(input).await
    }

    fn requests_queue(&self) -> TaskQueueHandle {
        self.queues.requests
    }

    fn is_shutting_down(&self) -> bool {
        self.shutdown.is_raised()
    }
}

impl txn::Host for Shard {
    fn transactions(&self) -> &txn::Coordinator {
        &self.transactions
    }

    async fn call_txn_coordinator(&self, shard: ShardId, call: TxnCall) -> Option<TxnReply> {
        self.call(shard, |tx| ShardRequest::Txn(call, tx)).await
    }

    async fn new_producer_id(self: &Rc<Self>) -> Result<i64, String> {
        self.allocate_producer_id().await
    }

    async fn write_marker(self: &Rc<Self>, input: WriteMarkerInput) -> WriteMarkerOutput {
        self.write_txn_marker(input).await
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
    /// Writes a transaction marker to its partition, on the node that leads it (forwarded
    /// over the node-to-node transport when that is another node).
    pub async fn write_txn_marker(self: &Rc<Self>, input: WriteMarkerInput) -> WriteMarkerOutput {
        let leader = self
            .table()
            .topic(&input.tp.topic)
            .and_then(|topic| topic.leader(input.tp.partition))
            .map(|(node, _)| node);
        match leader {
            Some(node) if node != self.config.node_id && self.cluster.get().is_some() => {
                let error_code = self.call_node(node, NodeCall::Marker(input)).await;
                WriteMarkerOutput {
                    error_code: error_code.unwrap_or(ResponseError::NotLeaderOrFollower.code()),
                }
            }
            _ => self.write_txn_marker_here(input).await,
        }
    }

    /// Writes a transaction marker to its partition on this node: a `__consumer_offsets`
    /// partition through its group coordinator, which then settles the offsets the
    /// transaction committed there; any other through its owner.
    pub async fn write_txn_marker_here(
        self: &Rc<Self>,
        input: WriteMarkerInput,
    ) -> WriteMarkerOutput {
        match input.tp.topic == OFFSETS_TOPIC {
            true => group::write_marker(self, input).await,
            false => self.route(input).await,
        }
    }

    /// Controller, at start: creates `__consumer_offsets` if it does not exist yet.
    pub(super) async fn ensure_offsets_topic(self: &Rc<Self>) -> anyhow::Result<()> {
        let partitions = self.config.groups.offsets_topic_num_partitions;
        let configs = group::offsets_topic_configs();
        self.ensure_internal_topic(OFFSETS_TOPIC, partitions, configs)
            .await
    }

    /// FindCoordinator for a transaction, the first time: creates `__transaction_state`.
    pub async fn ensure_transaction_topic(self: &Rc<Self>) -> anyhow::Result<()> {
        let partitions = self.config.transactions.state_topic_num_partitions;
        let configs = txn::state_topic_configs();
        self.ensure_internal_topic(TRANSACTION_TOPIC, partitions, configs)
            .await
    }

    /// Creates an internal topic unless it exists, replicated as Kafka's
    /// `offsets.topic.replication.factor` and `transaction.state.log.replication.factor`
    /// (3) on as many nodes as there are.
    async fn ensure_internal_topic(
        self: &Rc<Self>,
        name: &str,
        num_partitions: i32,
        configs: std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        if self.table().topic(name).is_some() {
            return Ok(());
        }
        let spec = CreateTopicSpec {
            name: name.to_string(),
            num_partitions,
            replication_factor: limits::OFFSETS_TOPIC_REPLICATION_FACTOR
                .min(self.table().load_per_node().len().max(1) as i16),
            configs,
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
            other => anyhow::bail!("cannot create {name}: {other:?}"),
        }
    }
}
