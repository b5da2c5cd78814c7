//! The controller: the one writer of the metadata log, on shard 0.
//!
//! Per-shard: lives on shard 0 only. It validates topic changes, decides placement (the least
//! loaded shard, and in a cluster the least loaded node first), appends the change to the
//! metadata log, waits until it is durable, and then has every shard apply it before
//! answering. Changes are serialized by a one-permit semaphore so that validation always sees
//! the table the change will be applied to. It reaches its shard only through
//! `ControllerHost`.
//!
//! The metadata log is a local log on a single node. In a cluster it is the log of a Raft
//! group among the controller voters (`Quorum`): the controller of the node that leads the
//! group is the active one, and every voter's controller follows the group's committed
//! entries (`Controller::follow`) and has its shards apply them. A leader serves calls only
//! once it has applied its whole log, so that it validates against everything committed
//! before its term; a record it proposes is answered once it is committed and applied here.

use std::cell::{Cell, Ref, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use kafka_protocol::ResponseError;

use super::admin::{AdminResult, ConfigChange, ControllerCommand};
use super::controller_call::{ControllerAnswer, ControllerCall};
use super::messages::{CreateTopicSpec, TopicRef, TopicResult};
use super::table::{ShardTable, TopicEntry};
use crate::config::Config;
use crate::ids::{NodeId, Offset, PartitionId, ShardId};
use crate::limits;
use crate::metadata::topic_config::{self, AlterError, TopicConfig};
use crate::metadata::{
    self, collision_key, BrokerRegistration, MetadataEntries, MetadataRecord, MetadataStore,
    PlacedReplica, METADATA_LOG_DIR,
};
use crate::partition;
use crate::replication::{GroupId, GroupState, ProposeError, Replica, VoterState};
use crate::runtime::clock;
use crate::storage::{self, BatchCache};
use crate::sync::{Latch, Notify};

/// What the controller needs from the shard it runs on (shard 0), and no more.
pub trait ControllerHost {
    fn config(&self) -> &Config;
    fn shard_count(&self) -> usize;
    /// This shard's table: what a change is validated against.
    fn table(&self) -> Ref<'_, ShardTable>;
    /// Has every shard apply `entries`, the first at metadata log offset `first`.
    fn apply_everywhere(
        &self,
        first: i64,
        entries: MetadataEntries,
    ) -> impl Future<Output = Result<(), String>>;
}

/// Why a change was not made: the Kafka error and its message.
type Refusal = (ResponseError, String);

/// Where new partitions go, as their metadata record says it (see `MetadataRecord`).
#[derive(Debug, Default)]
struct Placed {
    shards: Vec<ShardId>,
    replicas: Vec<Vec<PlacedReplica>>,
    groups: Vec<GroupId>,
}

pub struct Controller {
    log: MetadataLog,
    serial: crate::runtime::Semaphore,
    /// This node.
    node: NodeId,
    /// Notified when this node has applied more of the metadata log (in a cluster; a single
    /// node applies every change before it answers it).
    applied_moved: Notify,
    /// When each node was last heard from, while this controller is the active one.
    heartbeats: RefCell<HashMap<NodeId, Instant>>,
    /// What each fenced node must have applied of the metadata log before it is unfenced:
    /// all this controller had applied when the node first asked (Kafka's brokers catch up
    /// with the metadata log before they are unfenced).
    catching_up: RefCell<HashMap<NodeId, i64>>,
}

/// Where the metadata log is.
enum MetadataLog {
    /// A single node's own log.
    Local(MetadataStore),
    /// A cluster's: the log of the Raft group of the controller voters.
    Quorum(Quorum),
}

/// The metadata quorum as one voter sees it.
struct Quorum {
    replica: Rc<Replica>,
    /// The metadata log offset of the next entry to apply: every shard of this node has
    /// applied the committed entries below it.
    applied: Cell<Offset>,
    /// Raised when the node is told to stop: the follower ends, calls are refused and waits
    /// give up (the replica itself runs on while the node drains).
    stop: Rc<Latch>,
}

impl Controller {
    fn new(log: MetadataLog, node: NodeId) -> Rc<Controller> {
        Rc::new(Controller {
            log,
            serial: crate::runtime::Semaphore::new(1),
            node,
            applied_moved: Notify::new(),
            heartbeats: RefCell::default(),
            catching_up: RefCell::default(),
        })
    }

    /// Opens the metadata log of a single node; returns the controller and every record to
    /// replay. Partitions placed on shards that no longer exist are moved first, and the
    /// moves are made durable.
    pub async fn open(
        shard: &impl ControllerHost,
    ) -> anyhow::Result<(Rc<Controller>, MetadataEntries)> {
        // Its own cache, and pre-writing for this one log apart from the shard's partitions.
        let cache = BatchCache::with_budgets(
            1 << 20,
            limits::READ_AHEAD_BYTES_PER_SHARD_MAX,
            limits::PREWRITE_AHEAD_BYTES,
        );
        let (store, mut entries) = MetadataStore::open(&shard.config().data_dir, cache).await?;
        let node = shard.config().node_id;
        for record in reassign_lost_shards(&entries, node, shard.shard_count()) {
            tracing::warn!(
                ?record,
                "moving a partition off a shard that no longer exists"
            );
            let offset = store.append(&record).await?;
            assert_eq!(
                offset,
                entries.len() as i64,
                "metadata records are dense from 0"
            );
            entries.push(Some(record));
        }
        let controller = Controller::new(MetadataLog::Local(store), shard.config().node_id);
        Ok((controller, entries))
    }

    /// The controller of a cluster's voter, over `replica`, the metadata group's replica on
    /// this node; returns it with the entries committed as far as this node knows at open.
    /// Follow the rest with `follow`.
    pub async fn open_quorum(
        shard: &impl ControllerHost,
        replica: Rc<Replica>,
        stop: Rc<Latch>,
    ) -> anyhow::Result<(Rc<Controller>, MetadataEntries)> {
        let partition = replica.partition().clone();
        let end = partition.high_watermark();
        let entries = read_entries(&partition, Offset::ZERO, end).await?;
        let quorum = Quorum {
            replica,
            applied: Cell::new(end),
            stop,
        };
        let controller = Controller::new(MetadataLog::Quorum(quorum), shard.config().node_id);
        Ok((controller, entries))
    }

    /// The node whose controller is active: this one on a single node, the metadata group's
    /// leader in a cluster (None while there is none).
    pub fn leader(&self) -> Option<NodeId> {
        match &self.log {
            MetadataLog::Local(_) => Some(self.node),
            MetadataLog::Quorum(quorum) => quorum.replica.leader(),
        }
    }

    /// The metadata quorum as this leader knows it: in a cluster its Raft group; a single
    /// node is the one voter of its own log, in epoch 0.
    fn quorum_state(&self) -> Option<GroupState> {
        match &self.log {
            MetadataLog::Quorum(quorum) => quorum.replica.group_state(),
            MetadataLog::Local(store) => {
                let end = store.end_offset();
                Some(GroupState {
                    leader: self.node,
                    term: 0,
                    high_watermark: end,
                    voters: vec![VoterState {
                        node: self.node,
                        log_end: Some(end),
                        heard_ms_ago: Some(0),
                        caught_up_ms_ago: Some(0),
                    }],
                    observers: Vec::new(),
                })
            }
        }
    }

    /// The metadata group's replica in a cluster.
    pub fn replica(&self) -> Option<&Rc<Replica>> {
        match &self.log {
            MetadataLog::Local(_) => None,
            MetadataLog::Quorum(quorum) => Some(&quorum.replica),
        }
    }

    /// In a cluster, on the active controller: has the metadata quorum add every registered
    /// node outside its voters (a broker-only node) as a learner, which follows the log
    /// without voting. Called at each registration and heartbeat interval; the replica takes
    /// one change at a time.
    pub fn observe_brokers(&self, shard: &impl ControllerHost) {
        let MetadataLog::Quorum(quorum) = &self.log else {
            return;
        };
        let members = quorum.replica.membership();
        let voter =
            |node: &NodeId| members.voters.contains(node) || members.outgoing.contains(node);
        let observers = (shard.table().brokers())
            .map(|broker| broker.node)
            .filter(|node| !voter(node))
            .collect();
        quorum.replica.observe(observers);
    }

    /// In a cluster: applies the metadata group's entries as they are committed, on every
    /// shard of this node, until the node stops. Run it as one task on shard 0.
    pub async fn follow(self: Rc<Self>, shard: impl ControllerHost) {
        let MetadataLog::Quorum(quorum) = &self.log else {
            return;
        };
        let partition = quorum.replica.partition().clone();
        while !quorum.stop.is_raised() {
            let applied = quorum.applied.get();
            let end = partition.high_watermark();
            if end <= applied {
                let watched = [(partition.clone(), applied)];
                let deadline = clock::now() + Duration::from_secs(3_600);
                partition::watch(&watched, deadline, &quorum.stop).await;
                continue;
            }
            let applying = async {
                let entries = read_entries(&partition, applied, end).await?;
                let next = Offset(applied.get() + entries.len() as i64);
                shard
                    .apply_everywhere(applied.get(), entries)
                    .await
                    .map_err(anyhow::Error::msg)?;
                anyhow::Ok(next)
            };
            match applying.await {
                Ok(next) => {
                    quorum.applied.set(next);
                    self.applied_moved.notify_all();
                }
                Err(error) => {
                    // The shard tables can no longer follow the metadata log: this node keeps
                    // serving what it has, and says so.
                    tracing::error!("cannot apply the metadata log: {error:#}");
                    return;
                }
            }
        }
    }

    /// After every shard has loaded the table: remove directories metadata does not know.
    /// Only on a single node: a cluster node's table may lag the quorum at start, and a
    /// partition it does not know yet is not an orphan.
    pub fn after_start(&self, shard: &impl ControllerHost) {
        if let MetadataLog::Local(_) = self.log {
            remove_orphan_directories(&shard.config().data_dir, shard);
        }
    }

    pub async fn close(&self) {
        let closed = match &self.log {
            MetadataLog::Local(store) => store.close().await,
            MetadataLog::Quorum(quorum) => {
                quorum.replica.stop();
                quorum.replica.partition().close().await
            }
        };
        if let Err(error) = closed {
            tracing::error!(%error, "closing the metadata log failed");
        }
    }

    /// Runs a call on this controller if it is the active one; None if it is not (the caller
    /// answers NOT_CONTROLLER, or forwards the call to the active one).
    pub async fn run(
        &self,
        shard: &impl ControllerHost,
        call: ControllerCall,
    ) -> Option<ControllerAnswer> {
        if self.leader() != Some(self.node) {
            return None;
        }
        Some(match call {
            ControllerCall::CreateTopics(specs) => {
                ControllerAnswer::Topics(self.create_topics(shard, specs).await)
            }
            ControllerCall::DeleteTopics(topics) => {
                ControllerAnswer::Topics(self.delete_topics(shard, topics).await)
            }
            ControllerCall::AllocateProducerIds => {
                ControllerAnswer::ProducerIds(self.allocate_producer_ids(shard).await)
            }
            ControllerCall::Commands(commands) => {
                ControllerAnswer::Commands(self.run_commands(shard, commands).await)
            }
            ControllerCall::RegisterBroker(registration) => {
                ControllerAnswer::Registered(self.register_broker(shard, registration).await)
            }
            ControllerCall::Heartbeat {
                node,
                shutting_down,
                applied,
            } => ControllerAnswer::Heartbeat(match shutting_down {
                true => self.fence_for_shutdown(shard, node).await.map(|()| None),
                false => self.heartbeat(shard, node, applied).await,
            }),
            ControllerCall::DescribeQuorum => ControllerAnswer::Quorum(self.quorum_state()?),
        })
    }

    /// Takes the controller's one permit, and in a cluster waits until this leader has
    /// applied its whole log, so that what it validates next is checked against every
    /// committed change. Refused with NOT_CONTROLLER when it is not (or no longer) the leader.
    async fn serially(&self) -> Result<glommio::sync::Permit<'_>, Refusal> {
        let permit = self
            .serial
            .acquire_permit(1)
            .await
            .map_err(|_| not_controller("the controller is closing"))?;
        let MetadataLog::Quorum(quorum) = &self.log else {
            return Ok(permit);
        };
        let deadline = clock::now() + Duration::from_millis(limits::CONTROLLER_CATCH_UP_TIMEOUT_MS);
        loop {
            let applied = self.applied_moved.notified();
            let moved = quorum.replica.leadership_moved();
            if !quorum.replica.is_leader() {
                return Err(not_controller(
                    "this node no longer leads the metadata quorum",
                ));
            }
            if quorum.applied.get() >= quorum.replica.partition().log_end_offset() {
                return Ok(permit);
            }
            let remaining = deadline.saturating_duration_since(clock::now());
            if remaining.is_zero() || quorum.stop.is_raised() {
                return Err(not_controller("the metadata leader is still catching up"));
            }
            let woken = select(Box::pin(applied), Box::pin(moved));
            select(Box::pin(woken), Box::pin(clock::sleep(remaining))).await;
        }
    }

    pub async fn create_topics(
        &self,
        shard: &impl ControllerHost,
        specs: Vec<CreateTopicSpec>,
    ) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(specs.len());
        for spec in specs {
            let result = match self.serially().await {
                Ok(_permit) => self.create_topic(shard, spec).await,
                Err(refusal) => TopicResult::refused(spec.name, refusal),
            };
            results.push(result);
        }
        results
    }

    async fn create_topic(
        &self,
        shard: &impl ControllerHost,
        spec: CreateTopicSpec,
    ) -> TopicResult {
        let num_partitions = if spec.num_partitions == -1 {
            shard.config().num_partitions
        } else {
            spec.num_partitions
        };
        let replication_factor = if spec.replication_factor == -1 {
            shard.config().default_replication_factor
        } else {
            spec.replication_factor
        };
        let mut result = TopicResult {
            name: spec.name.clone(),
            num_partitions,
            replication_factor,
            ..Default::default()
        };
        if let Err((error, message)) = self.check_new_topic(shard, &spec, num_partitions) {
            result.error_code = error.code();
            result.error_message = Some(message);
            return result;
        }
        // Every new topic of a cluster is replicated (partitions added to a topic an earlier
        // version created unreplicated stay so, see CreatePartitions).
        let placed = self.place(shard, num_partitions as usize, replication_factor, true);
        let Placed {
            shards,
            replicas,
            groups,
        } = match placed {
            Ok(placed) => placed,
            Err((error, message)) => {
                result.error_code = error.code();
                result.error_message = Some(message);
                return result;
            }
        };
        result.id = uuid::Uuid::new_v4();
        if spec.validate_only {
            return result;
        }
        let record = MetadataRecord::TopicCreated {
            name: spec.name.clone(),
            id: result.id,
            shards,
            replicas,
            groups,
            configs: spec.configs,
        };
        match self.commit(shard, record).await {
            Ok(()) => {
                tracing::info!(topic = %spec.name, partitions = num_partitions, "topic created")
            }
            Err((error, message)) => {
                result.error_code = error.code();
                result.error_message = Some(message);
            }
        }
        result
    }

    /// Replicas for `count` new partitions. On a single node, the least loaded shards own
    /// them. In a cluster each partition gets `replication_factor` replicas on as many
    /// distinct live nodes, those holding the fewest replicas on as many racks as there are
    /// (`spread_over_racks`), each on its node's least loaded shard; the first (the
    /// preferred leader) is the chosen node leading the fewest partitions, so that leaders
    /// spread too. `replicated` partitions get a Raft group each; the others have one
    /// replica.
    fn place(
        &self,
        shard: &impl ControllerHost,
        count: usize,
        replication_factor: i16,
        replicated: bool,
    ) -> Result<Placed, Refusal> {
        let table = shard.table();
        if let MetadataLog::Local(_) = self.log {
            let load = table.load_per_shard(self.node, shard.shard_count());
            return Ok(Placed {
                shards: place(&load, count),
                ..Placed::default()
            });
        }
        let mut node_load = table.load_per_node();
        let wanted = usize::try_from(replication_factor).unwrap_or(0);
        if wanted == 0 || wanted > node_load.len() || (!replicated && wanted != 1) {
            let message = format!(
                "replication factor {replication_factor} is larger than the {} available \
                 brokers",
                node_load.len()
            );
            return Err((ResponseError::InvalidReplicationFactor, message));
        }
        let mut leader_load = table.leaders_per_node();
        let mut shard_loads: HashMap<NodeId, Vec<usize>> = HashMap::new();
        let mut placed = Placed::default();
        for _ in 0..count {
            let mut by_load: Vec<(usize, NodeId)> = node_load
                .iter()
                .map(|(node, load)| (*load, *node))
                .collect();
            by_load.sort();
            let by_load: Vec<NodeId> = by_load.into_iter().map(|(_, node)| node).collect();
            let rack_of = |node: NodeId| table.broker(node).and_then(|b| b.rack.clone());
            let mut nodes = spread_over_racks(&by_load, wanted, rack_of);
            let leader = *nodes
                .iter()
                .min_by_key(|node| (leader_load.get(node).copied().unwrap_or(0), **node))
                .expect("at least one replica");
            nodes.retain(|node| *node != leader);
            nodes.insert(0, leader);
            *leader_load.entry(leader).or_default() += 1;
            let mut replicas = Vec::with_capacity(wanted);
            for node in nodes {
                *node_load.get_mut(&node).expect("a live node") += 1;
                let loads = shard_loads.entry(node).or_insert_with(|| {
                    let shards = table.broker(node).map_or(1, |b| b.shards.max(1));
                    table.load_per_shard(node, shards)
                });
                let owner = place(loads, 1)[0];
                loads[owner.get()] += 1;
                replicas.push(PlacedReplica { node, shard: owner });
            }
            placed.replicas.push(replicas);
        }
        if replicated {
            let first = table.next_group_id();
            placed.groups = (first..first + count as u64).collect();
        }
        Ok(placed)
    }

    fn check_new_topic(
        &self,
        shard: &impl ControllerHost,
        spec: &CreateTopicSpec,
        num_partitions: i32,
    ) -> Result<(), (ResponseError, String)> {
        metadata::validate_topic_name(&spec.name)
            .map_err(|m| (ResponseError::InvalidTopicException, m))?;
        if format!("{}-0", spec.name) == METADATA_LOG_DIR {
            return Err((
                ResponseError::InvalidTopicException,
                "reserved topic name".into(),
            ));
        }
        let table = shard.table();
        if table.topic(&spec.name).is_some() {
            let message = format!("topic {:?} already exists", spec.name);
            return Err((ResponseError::TopicAlreadyExists, message));
        }
        let key = collision_key(&spec.name);
        if let Some(other) = table.topics().find(|t| collision_key(&t.name) == key) {
            let message = format!(
                "topic {:?} collides with existing {:?}",
                spec.name, other.name
            );
            return Err((ResponseError::InvalidTopicException, message));
        }
        if !(1..=crate::limits::PARTITIONS_PER_TOPIC_MAX).contains(&num_partitions) {
            let message = format!("number of partitions {num_partitions} is out of range");
            return Err((ResponseError::InvalidPartitions, message));
        }
        TopicConfig::validate(&spec.configs).map_err(|e| (ResponseError::InvalidConfig, e.0))
    }

    pub async fn delete_topics(
        &self,
        shard: &impl ControllerHost,
        topics: Vec<TopicRef>,
    ) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            let result = match self.serially().await {
                Ok(_permit) => self.delete_topic(shard, topic).await,
                Err(refusal) => {
                    let name = match topic {
                        TopicRef::Name(name) => name,
                        TopicRef::Id(_) => String::new(),
                    };
                    TopicResult::refused(name, refusal)
                }
            };
            results.push(result);
        }
        results
    }

    async fn delete_topic(&self, shard: &impl ControllerHost, topic: TopicRef) -> TopicResult {
        let found = match &topic {
            TopicRef::Name(name) => shard.table().topic(name),
            TopicRef::Id(id) => shard.table().topic_by_id(id),
        };
        let Some(entry) = found else {
            let (name, error) = match topic {
                TopicRef::Name(name) => (name, ResponseError::UnknownTopicOrPartition),
                TopicRef::Id(_) => (String::new(), ResponseError::UnknownTopicId),
            };
            return TopicResult {
                name,
                error_code: error.code(),
                error_message: Some("topic does not exist".into()),
                ..Default::default()
            };
        };
        let mut result = TopicResult {
            name: entry.name.clone(),
            id: entry.id,
            ..Default::default()
        };
        let record = MetadataRecord::TopicDeleted {
            name: entry.name.clone(),
            id: entry.id,
        };
        match self.commit(shard, record).await {
            Ok(()) => tracing::info!(topic = %entry.name, "topic deleted"),
            Err((error, message)) => {
                result.error_code = error.code();
                result.error_message = Some(message);
            }
        }
        result
    }

    /// Hands out the next block of `PRODUCER_ID_BLOCK_COUNT` producer ids, `[first, end)`,
    /// after recording it durably so that no id is ever handed out twice.
    pub async fn allocate_producer_ids(
        &self,
        shard: &impl ControllerHost,
    ) -> Result<(i64, i64), String> {
        let _permit = self.serially().await.map_err(|(_, message)| message)?;
        let first = shard.table().next_producer_id();
        let end = first
            .checked_add(crate::limits::PRODUCER_ID_BLOCK_COUNT)
            .ok_or_else(|| "producer ids are exhausted".to_string())?;
        let record = MetadataRecord::ProducerIdsAllocated {
            next_producer_id: end,
        };
        self.commit(shard, record)
            .await
            .map_err(|(_, message)| message)?;
        Ok((first, end))
    }

    /// Records a node's registration, once per start of the node: the new incarnation is
    /// fenced until it has caught up with the metadata log (`heartbeat`), so that neither it
    /// nor other nodes send clients to it while its view of the cluster is the one it had
    /// before it stopped. Answers the offset the registration is applied below.
    async fn register_broker(
        &self,
        shard: &impl ControllerHost,
        registration: BrokerRegistration,
    ) -> Result<i64, String> {
        let _permit = self.serially().await.map_err(|(_, message)| message)?;
        let node = registration.node;
        let record = MetadataRecord::BrokerRegistered(registration);
        self.commit(shard, record)
            .await
            .map_err(|(_, message)| message)?;
        self.catching_up.borrow_mut().remove(&node);
        tracing::info!(%node, "broker registered");
        self.observe_brokers(shard);
        Ok(self.applied(shard))
    }

    /// A registered node is alive: noted, and a fenced one unfenced once it has applied
    /// everything this controller had applied when it first asked; until then the answer
    /// says how far it must get.
    async fn heartbeat(
        &self,
        shard: &impl ControllerHost,
        node: NodeId,
        applied: i64,
    ) -> Result<Option<i64>, String> {
        self.heard_from(shard, node)?;
        if !shard.table().is_fenced(node) {
            return Ok(None);
        }
        let _permit = self.serially().await.map_err(|(_, message)| message)?;
        if !shard.table().is_fenced(node) {
            return Ok(None);
        }
        let target = *self
            .catching_up
            .borrow_mut()
            .entry(node)
            .or_insert_with(|| self.applied(shard));
        if applied < target {
            return Ok(Some(target));
        }
        let record = MetadataRecord::BrokerUnfenced { node };
        self.commit(shard, record)
            .await
            .map_err(|(_, message)| message)?;
        self.catching_up.borrow_mut().remove(&node);
        tracing::info!(%node, "broker unfenced: heard from and caught up");
        Ok(None)
    }

    /// A node shutting down is fenced now, as Kafka's controlled shutdown, instead of after
    /// its session.
    async fn fence_for_shutdown(
        &self,
        shard: &impl ControllerHost,
        node: NodeId,
    ) -> Result<(), String> {
        self.heard_from(shard, node)?;
        if shard.table().is_fenced(node) {
            return Ok(());
        }
        let _permit = self.serially().await.map_err(|(_, message)| message)?;
        if !shard.table().is_fenced(node) {
            self.commit(shard, MetadataRecord::BrokerFenced { node })
                .await
                .map_err(|(_, message)| message)?;
            tracing::info!(%node, "broker fenced: it is shutting down");
        }
        Ok(())
    }

    /// Notes that a registered node was heard from now; Err if it is not registered.
    fn heard_from(&self, shard: &impl ControllerHost, node: NodeId) -> Result<(), String> {
        if shard.table().broker(node).is_none() {
            return Err(format!("node {node} is not registered"));
        }
        self.heartbeats.borrow_mut().insert(node, clock::now());
        Ok(())
    }

    /// The metadata log offset below which every shard of this node has applied the log.
    pub fn applied(&self, shard: &impl ControllerHost) -> i64 {
        match &self.log {
            MetadataLog::Local(_) => shard.table().revision(),
            MetadataLog::Quorum(quorum) => quorum.applied.get().get(),
        }
    }

    /// Ready when this node has applied more of the metadata log (in a cluster).
    pub fn applied_moved(&self) -> crate::sync::Notified<'_> {
        self.applied_moved.notified()
    }

    /// Waits until this node has applied the metadata log below `offset`.
    pub async fn until_applied(&self, shard: &impl ControllerHost, offset: i64) {
        loop {
            let moved = self.applied_moved();
            if self.applied(shard) >= offset {
                return;
            }
            moved.await;
        }
    }

    /// The active controller, on taking office: every registered node gets a full session
    /// from now before it can be fenced (the previous controller's view is not inherited).
    pub fn start_sessions(&self, shard: &impl ControllerHost) {
        let now = clock::now();
        let nodes: Vec<NodeId> = shard.table().brokers().map(|b| b.node).collect();
        let mut heartbeats = self.heartbeats.borrow_mut();
        heartbeats.clear();
        heartbeats.extend(nodes.into_iter().map(|node| (node, now)));
        self.catching_up.borrow_mut().clear();
    }

    /// Fences every registered node not heard from within `session`.
    pub async fn fence_silent_brokers(&self, shard: &impl ControllerHost, session: Duration) {
        let now = clock::now();
        let silent: Vec<NodeId> = {
            let table = shard.table();
            let mut heartbeats = self.heartbeats.borrow_mut();
            table
                .brokers()
                .map(|b| b.node)
                .filter(|node| !table.is_fenced(*node))
                .filter(|node| {
                    let last = *heartbeats.entry(*node).or_insert(now);
                    now.saturating_duration_since(last) > session
                })
                .collect()
        };
        for node in silent {
            let Ok(_permit) = self.serially().await else {
                return;
            };
            let heard = self.heartbeats.borrow().get(&node).copied();
            let still_silent =
                heard.is_none_or(|last| clock::now().saturating_duration_since(last) > session);
            if !still_silent || shard.table().is_fenced(node) {
                continue;
            }
            match self
                .commit(shard, MetadataRecord::BrokerFenced { node })
                .await
            {
                Ok(()) => {
                    self.catching_up.borrow_mut().remove(&node);
                    tracing::warn!(%node, ?session, "broker fenced: not heard from")
                }
                Err((_, message)) => tracing::warn!(%node, %message, "cannot fence a broker"),
            }
        }
    }

    /// Config changes and partition increases, one topic per command, each validated against
    /// the table it will be applied to and recorded before the next one starts.
    pub async fn run_commands(
        &self,
        shard: &impl ControllerHost,
        commands: Vec<ControllerCommand>,
    ) -> Vec<AdminResult> {
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            let _permit = match self.serially().await {
                Ok(permit) => permit,
                Err((error, message)) => {
                    results.push(AdminResult::error(error, message));
                    continue;
                }
            };
            let subject = command.subject().to_string();
            let (record, validate_only) = match self.plan(shard, command) {
                Ok(planned) => planned,
                Err((error, message)) => {
                    results.push(AdminResult::error(error, message));
                    continue;
                }
            };
            if validate_only {
                results.push(AdminResult::default());
                continue;
            }
            tracing::info!(%subject, ?record, "metadata changed");
            results.push(match self.commit(shard, record).await {
                Ok(()) => AdminResult::default(),
                Err((error, message)) => AdminResult::error(error, message),
            });
        }
        results
    }

    /// The record a command would write, and whether it is only to be validated.
    fn plan(
        &self,
        shard: &impl ControllerHost,
        command: ControllerCommand,
    ) -> Result<(MetadataRecord, bool), (ResponseError, String)> {
        let unknown = |name: &str| {
            let message = format!("topic {name:?} does not exist");
            (ResponseError::UnknownTopicOrPartition, message)
        };
        let table = shard.table();
        match command {
            ControllerCommand::AlterConfigs {
                topic,
                change,
                validate_only,
            } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let configs = match change {
                    ConfigChange::Replace(pairs) => topic_config::replace_all(&pairs),
                    ConfigChange::Incremental(operations) => topic_config::apply_incremental(
                        &entry.overrides,
                        table.defaults(),
                        &operations,
                    ),
                };
                let configs = configs.map_err(|error| match error {
                    AlterError::Request(message) => (ResponseError::InvalidRequest, message),
                    AlterError::Config(message) => (ResponseError::InvalidConfig, message),
                })?;
                let record = MetadataRecord::TopicConfigChanged {
                    name: topic,
                    configs,
                };
                Ok((record, validate_only))
            }
            ControllerCommand::CreatePartitions {
                topic,
                count,
                validate_only,
            } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let current = entry.partition_count();
                if count <= current {
                    let message =
                        format!("topic {topic:?} has {current} partitions; {count} is no increase");
                    return Err((ResponseError::InvalidPartitions, message));
                }
                if count > crate::limits::PARTITIONS_PER_TOPIC_MAX {
                    let message = format!(
                        "{count} partitions exceed the limit of {}",
                        crate::limits::PARTITIONS_PER_TOPIC_MAX
                    );
                    return Err((ResponseError::InvalidPartitions, message));
                }
                // New partitions are replicated as the topic's first one is.
                let replicated = entry.group(PartitionId(0)).is_some();
                let replication_factor = entry.replicas(PartitionId(0)).len().max(1) as i16;
                drop(table);
                let count = (count - current) as usize;
                let Placed {
                    shards,
                    replicas,
                    groups,
                } = self.place(shard, count, replication_factor, replicated)?;
                let record = MetadataRecord::PartitionsAdded {
                    name: topic,
                    shards,
                    replicas,
                    groups,
                };
                Ok((record, validate_only))
            }
            ControllerCommand::PartitionLeader {
                topic,
                partition,
                leader,
                epoch,
                in_sync,
            } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let is_replica = entry.replicas(partition).iter().any(|r| r.node == leader);
                if entry.group(partition).is_none() || !is_replica {
                    let message = format!("node {leader} holds no replica of {topic}-{partition}");
                    return Err((ResponseError::InvalidRequest, message));
                }
                // A report of an earlier epoch, or of what is recorded, changes nothing.
                let stale = entry.leaders.get(&partition).is_some_and(|recorded| {
                    recorded.epoch > epoch
                        || (recorded.epoch == epoch && recorded.in_sync == in_sync)
                });
                let record = MetadataRecord::PartitionLeaderChanged {
                    name: topic,
                    partition,
                    leader,
                    epoch,
                    in_sync,
                };
                Ok((record, stale))
            }
            ControllerCommand::ElectPreferredLeader { topic, partition } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let Some(preferred) = entry.preferred_leader(partition) else {
                    let message = format!("{topic} has no partition {partition}");
                    return Err((ResponseError::UnknownTopicOrPartition, message));
                };
                let Some(reported) = entry.leaders.get(&partition) else {
                    let message = match entry.group(partition) {
                        None => "the partition has one replica, which leads it",
                        Some(_) => "the partition has no leader yet",
                    };
                    let error = match entry.group(partition) {
                        None => ResponseError::ElectionNotNeeded,
                        Some(_) => ResponseError::PreferredLeaderNotAvailable,
                    };
                    return Err((error, message.to_string()));
                };
                if reported.leader == preferred {
                    let message = format!("node {preferred}, the preferred leader, leads");
                    return Err((ResponseError::ElectionNotNeeded, message));
                }
                if table.is_fenced(preferred) || !reported.in_sync.contains(&preferred) {
                    let message = format!("node {preferred}, the preferred leader, is not in sync");
                    return Err((ResponseError::PreferredLeaderNotAvailable, message));
                }
                let record = MetadataRecord::PreferredLeaderElected {
                    name: topic,
                    partition,
                };
                Ok((record, false))
            }
            ControllerCommand::ReassignPartition {
                topic,
                partition,
                target,
                keep_replication_factor,
            } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let planned = reassign(&table, &entry, partition, target, keep_replication_factor)?;
                Ok(planned)
            }
            ControllerCommand::ReassignmentDone {
                topic,
                partition,
                voters,
            } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let voters: BTreeSet<NodeId> = voters.into_iter().collect();
                let target = entry.reassignment_target(partition).unwrap_or_default();
                // A report of another target (cancelled or replaced meanwhile) changes nothing.
                let stale = target.iter().copied().collect::<BTreeSet<_>>() != voters;
                let replicas = entry.replicas(partition).iter();
                let record = MetadataRecord::PartitionReplicasChanged {
                    name: topic,
                    partition,
                    replicas: replicas
                        .filter(|r| voters.contains(&r.node))
                        .copied()
                        .collect(),
                    adding: Vec::new(),
                    removing: Vec::new(),
                };
                Ok((record, stale))
            }
            ControllerCommand::Acl { binding, create } => {
                // An ACL already as wanted is "validated only": success without a record.
                let unchanged = table.acls().contains(&binding) == create;
                let record = if create {
                    MetadataRecord::AclCreated { binding }
                } else {
                    MetadataRecord::AclDeleted { binding }
                };
                Ok((record, unchanged))
            }
            ControllerCommand::AlterQuotas {
                entity,
                changes,
                validate_only,
            } => Ok((
                MetadataRecord::ClientQuotasAltered { entity, changes },
                validate_only,
            )),
            ControllerCommand::AlterUser {
                user,
                mechanism,
                credential,
            } => match credential {
                Some(credential) => {
                    let record = MetadataRecord::UserScramCredentialSet {
                        name: user,
                        mechanism,
                        credential,
                    };
                    Ok((record, false))
                }
                None if table.users().credential(&user, mechanism).is_none() => Err((
                    ResponseError::ResourceNotFound,
                    format!("user {user:?} has no {mechanism} credential"),
                )),
                None => {
                    let record = MetadataRecord::UserScramCredentialDeleted {
                        name: user,
                        mechanism,
                    };
                    Ok((record, false))
                }
            },
        }
    }

    /// Makes `record` durable, then has every shard apply it. Every record is committed this
    /// way, so that each shard's table applies every offset of the metadata log in order; in
    /// a cluster, durable means committed by the quorum, and the follower applies it.
    async fn commit(
        &self,
        shard: &impl ControllerHost,
        record: MetadataRecord,
    ) -> Result<(), Refusal> {
        let quorum = match &self.log {
            MetadataLog::Local(store) => {
                let offset = store.append(&record).await.map_err(|e| {
                    let message = format!("metadata log: {e}");
                    (ResponseError::KafkaStorageError, message)
                })?;
                return shard
                    .apply_everywhere(offset, vec![Some(record)])
                    .await
                    .map_err(|message| (ResponseError::KafkaStorageError, message));
            }
            MetadataLog::Quorum(quorum) => quorum,
        };
        let batch = metadata::encode_record(&record).map_err(|e| {
            let message = format!("metadata record: {e}");
            (ResponseError::KafkaStorageError, message)
        })?;
        let committed = match quorum.replica.propose(batch.freeze()).await {
            Ok(committed) => committed,
            Err(
                error @ (ProposeError::NotLeader { .. }
                | ProposeError::NotCommitted
                | ProposeError::Stopped),
            ) => return Err(not_controller(&error.to_string())),
            Err(error @ ProposeError::Producer(_)) => {
                return Err((ResponseError::KafkaStorageError, error.to_string()))
            }
        };
        loop {
            let moved = self.applied_moved.notified();
            if quorum.applied.get() > committed.last_offset {
                return Ok(());
            }
            if quorum.stop.is_raised() {
                return Err(not_controller("the node is stopping"));
            }
            let stopped = quorum.stop.wait();
            if let Either::Right(_) = select(Box::pin(moved), Box::pin(stopped)).await {
                return Err(not_controller("the node is stopping"));
            }
        }
    }
}

fn not_controller(message: &str) -> Refusal {
    (ResponseError::NotController, message.to_string())
}

/// The metadata log's committed entries in `[from, end)`.
async fn read_entries(
    partition: &partition::Partition,
    from: Offset,
    end: Offset,
) -> Result<MetadataEntries, storage::StorageError> {
    metadata::read_entries(|offset| partition.read(offset, 1 << 20), from, end).await
}

/// The record that starts (or cancels, with no target) the reassignment of `partition` of
/// `entry`, and whether it changes nothing (then it is not written). Validated as KRaft's
/// controller does: an empty target, a node twice or one not registered is
/// INVALID_REPLICA_ASSIGNMENT, a cancel without a reassignment NO_REASSIGNMENT_IN_PROGRESS.
/// The replicas become the target (each new node on its least loaded shard) followed by the
/// current ones outside it, which leave once the group's voters are the target; a cancel is
/// the reassignment back to the replicas before it.
fn reassign(
    table: &ShardTable,
    entry: &TopicEntry,
    partition: PartitionId,
    target: Option<Vec<NodeId>>,
    keep_replication_factor: bool,
) -> Result<(MetadataRecord, bool), Refusal> {
    let current = entry.replicas(partition);
    if current.is_empty() {
        let message = format!("{} has no partition {partition}", entry.name);
        return Err((ResponseError::UnknownTopicOrPartition, message));
    }
    let adding = entry
        .reassigning
        .get(&partition)
        .map(|reassignment| reassignment.adding.clone());
    let original: Vec<NodeId> = current
        .iter()
        .map(|replica| replica.node)
        .filter(|node| adding.as_ref().is_none_or(|adding| !adding.contains(node)))
        .collect();
    let invalid = |message: String| (ResponseError::InvalidReplicaAssignment, message);
    let target = match target {
        Some(target) => target,
        None if adding.is_none() => {
            let message = format!("{}-{partition} is not being reassigned", entry.name);
            return Err((ResponseError::NoReassignmentInProgress, message));
        }
        None => original.clone(),
    };
    if target.is_empty() {
        return Err(invalid("the target has no replica".into()));
    }
    let distinct: BTreeSet<NodeId> = target.iter().copied().collect();
    if distinct.len() != target.len() {
        return Err(invalid(format!("the target {target:?} names a node twice")));
    }
    let holds = |node: NodeId| current.iter().any(|replica| replica.node == node);
    let unknown = target
        .iter()
        .find(|node| table.broker(**node).is_none() && !holds(**node));
    if let Some(node) = unknown {
        return Err(invalid(format!("node {node} is not a registered broker")));
    }
    if keep_replication_factor && target.len() != original.len() {
        let message = format!(
            "the target has {} replicas, the partition {}, and the request does not allow \
             changing the replication factor",
            target.len(),
            original.len()
        );
        return Err((ResponseError::InvalidReplicationFactor, message));
    }
    let unchanged = current.iter().map(|r| r.node).eq(target.iter().copied());
    if entry.group(partition).is_none() {
        // A partition of one replica that is not a Raft group cannot move.
        if !unchanged {
            return Err(invalid(format!("{} is not replicated", entry.name)));
        }
    }
    let placed_on = |node: NodeId| current.iter().find(|replica| replica.node == node).copied();
    let mut replicas = Vec::with_capacity(target.len() + current.len());
    for node in &target {
        let replica = placed_on(*node).unwrap_or_else(|| {
            let shards = table.broker(*node).map_or(1, |broker| broker.shards.max(1));
            let load = table.load_per_shard(*node, shards);
            PlacedReplica {
                node: *node,
                shard: place(&load, 1)[0],
            }
        });
        replicas.push(replica);
    }
    let removing: Vec<NodeId> = current
        .iter()
        .map(|replica| replica.node)
        .filter(|node| !distinct.contains(node))
        .collect();
    replicas.extend(removing.iter().filter_map(|node| placed_on(*node)));
    let adding: Vec<NodeId> = target
        .iter()
        .copied()
        .filter(|node| !original.contains(node))
        .collect();
    let nothing_to_do = unchanged && !entry.reassigning.contains_key(&partition);
    let record = MetadataRecord::PartitionReplicasChanged {
        name: entry.name.clone(),
        partition,
        replicas,
        adding,
        removing,
    };
    Ok((record, nothing_to_do))
}

/// `wanted` of `candidates` (least loaded first): one per rack first, in order, then the
/// others in order, so that a partition's replicas span as many racks as there are. Nodes
/// without a rack count as one rack of their own kind.
fn spread_over_racks(
    candidates: &[NodeId],
    wanted: usize,
    rack_of: impl Fn(NodeId) -> Option<String>,
) -> Vec<NodeId> {
    let mut chosen = Vec::with_capacity(wanted);
    let mut racks = std::collections::HashSet::new();
    for node in candidates {
        if chosen.len() < wanted && racks.insert(rack_of(*node)) {
            chosen.push(*node);
        }
    }
    for node in candidates {
        if chosen.len() < wanted && !chosen.contains(node) {
            chosen.push(*node);
        }
    }
    chosen
}

/// Owners for `count` new partitions: each goes to the least loaded shard so far.
fn place(load: &[usize], count: usize) -> Vec<ShardId> {
    let mut load = load.to_vec();
    (0..count)
        .map(|_| {
            let (shard, _) = load
                .iter()
                .enumerate()
                .min_by_key(|(shard, load)| (**load, *shard))
                .expect("at least one shard");
            load[shard] += 1;
            ShardId(shard)
        })
        .collect()
}

/// Partitions placed on shards that no longer exist (the shard count shrank) move to the
/// least loaded remaining shard.
fn reassign_lost_shards(
    entries: &MetadataEntries,
    node: NodeId,
    shard_count: usize,
) -> Vec<MetadataRecord> {
    let defaults = crate::config::TopicDefaults {
        segment_bytes: 1 << 30,
        segment_ms: 1,
        retention_ms: -1,
        retention_bytes: -1,
        cleanup_policy: "delete".to_string(),
        max_message_bytes: 1,
    };
    let mut table = super::table::ShardTable::new(defaults, node);
    for (offset, entry) in (0..).zip(entries) {
        let applied = match entry {
            Some(record) => table.apply(offset, record).map(drop),
            None => table.skip(offset),
        };
        applied.expect("entries are applied in log order");
    }
    let mut load = table.load_per_shard(node, shard_count);
    let mut moves = Vec::new();
    for (topic, partition, replica) in table.placed_replicas() {
        if replica.shard.get() >= shard_count {
            let shard = place(&load, 1)[0];
            load[shard.get()] += 1;
            moves.push(MetadataRecord::PartitionMoved {
                name: topic.name.clone(),
                partition,
                shard,
            });
        }
    }
    moves
}

/// Removes partition directories that the metadata log does not know (a deletion that crashed
/// before its directory was renamed) and directories whose deletion started (one that crashed
/// after), so that a re-created topic never sees old data.
fn remove_orphan_directories(data_dir: &Path, shard: &impl ControllerHost) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    let known: HashMap<String, ()> = shard
        .table()
        .topics()
        .flat_map(|t| {
            PartitionId::all(t.partition_count())
                .map(move |p| (metadata::partition_dir_name(&t.name, p), ()))
        })
        .collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let looks_like_partition = name
            .rsplit_once('-')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let orphan = looks_like_partition && !known.contains_key(&name) && name != METADATA_LOG_DIR;
        if is_dir && (orphan || storage::is_deletion_name(&name)) {
            tracing::warn!(directory = %name, "removing a partition directory unknown to metadata");
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::error!(%error, directory = %name, "cannot remove directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New partitions go to the least loaded shards, spreading evenly.
    #[test]
    fn placement_spreads_over_least_loaded() {
        let shards = |ids: &[usize]| ids.iter().copied().map(ShardId).collect::<Vec<_>>();
        assert_eq!(place(&[0, 0], 4), shards(&[0, 1, 0, 1]));
        assert_eq!(place(&[3, 0, 1], 3), shards(&[1, 1, 2]));
    }

    /// Replicas span as many racks as there are, least loaded first within that.
    #[test]
    fn replicas_spread_over_racks() {
        let nodes: Vec<NodeId> = (1..=4).map(NodeId).collect();
        let racks = |node: NodeId| Some(["a", "a", "b", "b"][node.get() as usize - 1].to_string());
        assert_eq!(spread_over_racks(&nodes, 2, racks), [NodeId(1), NodeId(3)]);
        assert_eq!(
            spread_over_racks(&nodes, 3, racks),
            [NodeId(1), NodeId(3), NodeId(2)]
        );
        assert_eq!(
            spread_over_racks(&nodes, 2, |_| None),
            [NodeId(1), NodeId(2)]
        );
    }
}
