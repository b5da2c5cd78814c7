//! The shard: one core's share of the broker, its partitions, its copy of the shard table,
//! and the router that reaches partitions owned by other shards.
//!
//! Per-shard: a `Shard` is created by `run` on its own executor and shared as `Rc<Shard>` by
//! that executor's tasks only. Other shards are reached only through `ShardRequest`s over the
//! mesh; every partition operation, local or remote, ends in this shard's `*_local` methods.

pub mod admin;
mod cluster;
mod controller;
pub mod controller_call;
mod hosts;
pub mod messages;
mod node_call;
mod producer_ids;
mod quorum;
mod replicated;
pub mod table;
mod txn_gate;

use crate::ids::{Offset, PartitionId, ShardId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::{select, select_all};
use futures::StreamExt;
use kafka_protocol::ResponseError;

use crate::config::Config;
use crate::limits;
use crate::metrics::{MetricsSnapshot, PartitionSnapshot, ShardMetrics};
use crate::partition::{
    self, leader_epoch_fence, KeyMap, Partition, ShardContext, TopicPartition, WatchInput,
};
use crate::quota::throttle::Throttle;
use crate::runtime::{self, Latency, Mesh, MeshPort, TaskQueueHandle};
use crate::storage::{self, BatchCache, Log};
use crate::sync::{Latch, Notify};
use controller::Controller;
use messages::*;
use table::{Placement, ShardTable, TableChange};

/// The atomics all shards share for start and shutdown: besides what the layer above shares
/// for its listeners (`Serving`), the only state outside a shard.
#[derive(Default)]
pub struct ProcessSignals {
    /// Raised by the main thread on SIGTERM/SIGINT, or by a shard that failed to start.
    pub shutdown: AtomicBool,
    /// Shards that have finished their connections and may close their logs.
    pub drained: AtomicUsize,
}

/// What the layer above runs on the shards: the Kafka listeners and the admin listener. The
/// shard layer starts them once the shard table is loaded, on every shard, and knows nothing
/// of what they are. Shared by all shards (made once by `serve`).
pub trait Serving: Send + Sync + 'static {
    /// Starts this shard's listeners; the error says which one cannot bind.
    fn start_listeners(&self, shard: &Rc<Shard>) -> Result<(), String>;

    /// Starts what runs once per process (the admin HTTP listener), on shard 0 once every
    /// shard listens.
    fn start_process_services(&self, shard: &Rc<Shard>);
}

/// The task queues of a shard.
#[derive(Clone, Copy)]
pub struct Queues {
    pub requests: TaskQueueHandle,
    pub flush: TaskQueueHandle,
    pub background: TaskQueueHandle,
}

/// One core's shard. See the module documentation.
pub struct Shard {
    pub id: ShardId,
    pub count: usize,
    pub config: Arc<Config>,
    pub queues: Queues,
    pub shutdown: Rc<Latch>,
    /// Raised once this node may answer clients: at once on a single node; in a cluster once
    /// it has registered and caught up with the metadata log since it started (Kafka
    /// enables request processing only then), so that it never answers from the view it
    /// had before it stopped (leaders, topics, ACLs, credentials).
    pub caught_up: Latch,
    pub connections: ConnectionCount,
    /// This shard's client-quota buckets (see `quota::throttle`).
    pub quotas: Throttle,
    serving: Arc<dyn Serving>,
    pub metrics: Rc<ShardMetrics>,
    table: RefCell<ShardTable>,
    /// Woken whenever metadata records were applied to `table`.
    table_changed: Notify,
    partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    cache: Rc<BatchCache>,
    /// What this shard's partitions share (their flush queue, the shard's counters).
    partition_context: Rc<ShardContext>,
    mesh: MeshPort<ShardRequest>,
    controller: RefCell<Option<Rc<Controller>>>,
    /// This shard's part in a cluster; unset on a single node.
    cluster: std::cell::OnceCell<cluster::ClusterShard>,
    producer_ids: producer_ids::ProducerIdBlock,
    /// The consumer groups this shard coordinates.
    pub groups: crate::group::Coordinator,
    /// The transactional ids this shard coordinates.
    pub transactions: crate::txn::Coordinator,
    /// Transactional produces waiting for their coordinator (see `txn_gate`).
    txn_gates: txn_gate::Gates,
}

/// Open connections of a shard, so that shutdown can wait for them.
#[derive(Default)]
pub struct ConnectionCount {
    open: std::cell::Cell<usize>,
    changed: Notify,
}

impl ConnectionCount {
    pub fn opened(&self) {
        self.open.set(self.open.get() + 1);
    }

    pub fn closed(&self) {
        self.open.set(self.open.get() - 1);
        self.changed.notify_all();
    }

    pub async fn wait_all_closed(&self) {
        while self.open.get() > 0 {
            self.changed.notified().await;
        }
    }
}

/// Runs one shard from start to shutdown. Called once on every executor.
pub async fn run(
    config: Arc<Config>,
    mesh: Arc<Mesh<ShardRequest>>,
    signals: Arc<ProcessSignals>,
    serving: Arc<dyn Serving>,
) -> anyhow::Result<()> {
    let port = mesh.join();
    let shutdown = Rc::new(Latch::default());
    runtime::spawn_local(watch_signals(shutdown.clone(), signals.clone())).detach();
    tracing::debug!(shard = port.id(), "joined the shard mesh");
    let primed = storage::prime_device(&config.data_dir)
        .await
        .with_context(|| format!("cannot use data directory {}", config.data_dir.display()));
    if let Err(error) = primed {
        // Without this shard nothing can start: stop the others, and count this shard as
        // drained so that their shutdown does not wait for it.
        signals.shutdown.store(true, Ordering::SeqCst);
        signals.drained.fetch_add(1, Ordering::SeqCst);
        return Err(error);
    }
    tracing::debug!(shard = port.id(), "data device primed");
    let queues = Queues {
        requests: runtime::task_queue("requests", 1000, Latency::Matters(Duration::from_millis(1))),
        flush: runtime::task_queue("flush", 1000, Latency::Matters(Duration::from_millis(1))),
        background: runtime::task_queue("background", 100, Latency::NotImportant),
    };
    let metrics = Rc::new(ShardMetrics::new(config.shards));
    let partition_context = Rc::new(ShardContext::new(queues.flush, metrics.clone()));
    let shard = Rc::new(Shard {
        id: ShardId(port.id()),
        count: config.shards,
        table: RefCell::new(ShardTable::new(
            config.topic_defaults.clone(),
            config.node_id,
        )),
        metrics,
        partition_context,
        cache: BatchCache::new(config.batch_cache_bytes),
        groups: crate::group::Coordinator::new(&config.groups),
        transactions: crate::txn::Coordinator::new(&config.transactions),
        txn_gates: Default::default(),
        table_changed: Notify::new(),
        config,
        queues,
        shutdown,
        caught_up: Latch::default(),
        connections: ConnectionCount::default(),
        quotas: Throttle::default(),
        serving,
        partitions: RefCell::new(HashMap::new()),
        mesh: port,
        controller: RefCell::new(None),
        cluster: std::cell::OnceCell::new(),
        producer_ids: Default::default(),
    });
    let server = shard.clone();
    // Awaited after the mesh closes: a task left waiting on its doorbell read when the
    // executor ends is never freed (the read in flight holds the task's waker).
    let mesh_served = runtime::spawn_joinable(queues.requests, async move {
        let handler = server.clone();
        server
            .mesh
            .serve(move |request| {
                let shard = handler.clone();
                runtime::spawn_into(queues.requests, async move { shard.serve(request).await });
            })
            .await;
    });
    runtime::spawn_into(queues.background, shard.clone().retention_loop());
    runtime::spawn_into(queues.background, shard.clone().cleaner_loop());
    runtime::spawn_into(queues.requests, crate::group::run_timers(shard.clone()));
    runtime::spawn_into(queues.requests, crate::txn::run_timers(shard.clone()));
    runtime::spawn_into(queues.requests, shard.clone().quota_gossip_loop());
    let started = match shard.start_cluster() {
        Ok(()) if shard.id == ShardId(0) => shard.clone().start_controller().await,
        other => other,
    };
    if let Err(error) = &started {
        tracing::error!("start-up failed: {error:#}");
        signals.shutdown.store(true, Ordering::SeqCst);
    }
    shard.shutdown.wait().await;
    shard.drain(&signals).await;
    shard.mesh.close();
    mesh_served.await;
    started
}

/// Raises the shard's shutdown latch when the process-wide flag is set.
async fn watch_signals(shutdown: Rc<Latch>, signals: Arc<ProcessSignals>) {
    while !signals.shutdown.load(Ordering::SeqCst) {
        runtime::sleep(Duration::from_millis(50)).await;
    }
    shutdown.raise();
}

impl Shard {
    /// Shutdown: connections finish their in-flight requests and close, then (once every shard
    /// is drained, so no cross-shard request is still coming) all logs are flushed and closed.
    async fn drain(self: &Rc<Self>, signals: &ProcessSignals) {
        if self.id == ShardId(0) && self.cluster.get().is_some() {
            let (_, ()) = futures::join!(self.controlled_shutdown(), self.hand_over_leaderships());
        } else {
            self.hand_over_leaderships().await;
        }
        self.connections.wait_all_closed().await;
        signals.drained.fetch_add(1, Ordering::SeqCst);
        while signals.drained.load(Ordering::SeqCst) < self.count {
            runtime::sleep(Duration::from_millis(10)).await;
        }
        if let Some(cluster) = self.cluster.get() {
            cluster.stop.raise();
        }
        self.stop_replicas();
        let partitions: Vec<_> = self.partitions.borrow().values().cloned().collect();
        // Concurrently: a close that has work to do waits mostly on syncs, and one after
        // another 10,000 of them took a minute.
        futures::stream::iter(partitions)
            .for_each_concurrent(limits::LOG_CLOSES_PER_SHARD_MAX, |partition| async move {
                if let Err(error) = partition.close().await {
                    tracing::error!(%error, "closing a partition log failed");
                }
            })
            .await;
        let controller = self.controller.borrow().clone();
        if let Some(controller) = controller {
            controller.close().await;
        }
        tracing::debug!(shard = %self.id, "shard stopped");
    }

    /// Shard 0: load the metadata log, bring every shard's table up to it, start listening.
    /// In a cluster the metadata log is the quorum's, and this node follows it from here on.
    async fn start_controller(self: Rc<Self>) -> anyhow::Result<()> {
        let (controller, records) = match self.cluster.get() {
            None => Controller::open(&self).await?,
            Some(_) => {
                let replica = self.open_metadata_replica().await?;
                // The controller stops (following the log, serving calls) when the node is
                // told to stop; the replica runs on while it drains, to hand over leadership.
                Controller::open_quorum(&self, replica, self.shutdown.clone()).await?
            }
        };
        *self.controller.borrow_mut() = Some(controller.clone());
        self.broadcast_apply(0, records, true)
            .await
            .map_err(anyhow::Error::msg)?;
        if self.cluster.get().is_none() {
            self.ensure_offsets_topic().await?;
            self.open_to_clients().await;
        } else {
            self.check_own_shards()?;
            self.follow_quorum(controller.clone());
        }
        controller.after_start(&self);
        for shard in ShardId::all(self.count) {
            let result = if shard == self.id {
                self.serving.start_listeners(&self)
            } else {
                self.call(shard, ShardRequest::StartServing)
                    .await
                    .unwrap_or(Err("no reply".into()))
            };
            result.map_err(|e| anyhow::anyhow!("shard {shard} cannot listen: {e}"))?;
        }
        self.check_listener_not_shared()?;
        self.serving.start_process_services(&self);
        let listeners: Vec<String> = self
            .config
            .listeners
            .iter()
            .map(|l| format!("{}://{}", l.name, l.bind))
            .collect();
        tracing::info!(
            listeners = %listeners.join(","),
            shards = self.count,
            "corelog is ready"
        );
        Ok(())
    }

    /// Lets every shard answer clients (see `Shard::caught_up`).
    pub(super) async fn open_to_clients(&self) {
        for shard in ShardId::all(self.count) {
            if shard == self.id {
                self.caught_up.raise();
            } else {
                self.call(shard, ShardRequest::CaughtUp).await;
            }
        }
    }

    /// The start-up port check and our SO_REUSEPORT bind are not atomic: a broker that bound
    /// the same port in between shares it silently and gets half our connections. Counting the
    /// listeners after binding turns that race into a clear start-up error.
    fn check_listener_not_shared(&self) -> anyhow::Result<()> {
        for listen in self.config.listeners.iter().map(|l| l.bind) {
            match runtime::count_listeners(listen) {
                Ok(found) if found > self.count => anyhow::bail!(
                    "cannot listen on {listen}: another process listens on it too \
                     ({found} sockets, {} ours)",
                    self.count
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot check whether the listener port is shared");
                }
            }
        }
        Ok(())
    }

    /// Sends `records`, the metadata log's from offset `first` on, to every shard (this one
    /// included) and waits until all applied them.
    pub(crate) async fn broadcast_apply(
        self: &Rc<Self>,
        first: i64,
        records: crate::metadata::MetadataEntries,
        snapshot: bool,
    ) -> Result<(), String> {
        let calls = ShardId::all(self.count).map(|shard| {
            let input = ApplyInput {
                first,
                records: records.clone(),
                snapshot,
            };
            async move {
                if shard == self.id {
                    self.apply_local(input).await
                } else {
                    let reply = self.call(shard, |tx| ShardRequest::Apply(input, tx)).await;
                    reply.unwrap_or_else(|| Err(format!("shard {shard} did not answer")))
                }
            }
        });
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// Sends a request to another shard and waits for its reply (None if it has gone away).
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        shard: ShardId,
        make: impl FnOnce(Reply<T>) -> ShardRequest,
    ) -> Option<T> {
        self.metrics.sent_to_shard(shard.get());
        self.mesh.call(shard.get(), make).await
    }

    /// The one entry point for requests from other shards.
    async fn serve(self: Rc<Self>, request: ShardRequest) {
        match request {
            ShardRequest::Produce(input, reply) => reply.send(self.produce_here(input).await),
            ShardRequest::Fetch(input, reply) => reply.send(self.run_local(input).await),
            ShardRequest::ListOffsets(input, reply) => reply.send(self.run_local(input).await),
            ShardRequest::EpochEnd(input, reply) => reply.send(self.run_local(input).await),
            ShardRequest::DeleteRecords(input, reply) => reply.send(self.run_local(input).await),
            ShardRequest::WriteMarker(input, reply) => reply.send(self.run_local(input).await),
            ShardRequest::Watch(input, reply) => {
                self.watch_local(input).await;
                reply.send(());
            }
            ShardRequest::ControllerCall(call, patience, reply) => {
                reply.send(self.call_controller_within(call, patience).await)
            }
            ShardRequest::ControllerMoved(leader, reply) => {
                if let Some(cluster) = self.cluster.get() {
                    cluster.controller.set(leader);
                }
                reply.send(());
            }
            ShardRequest::AdoptLink(hello, fd, reply) => {
                self.adopt_link(hello, fd);
                reply.send(());
            }
            ShardRequest::Apply(input, reply) => reply.send(self.apply_local(input).await),
            ShardRequest::Metrics(reply) => reply.send(self.metrics_snapshot()),
            ShardRequest::PartitionSizes(reply) => reply.send(self.partition_sizes()),
            ShardRequest::StartServing(reply) => reply.send(self.serving.start_listeners(&self)),
            ShardRequest::NotLedHere(partitions, reply) => {
                reply.send(self.not_led_by_replicas(partitions))
            }
            ShardRequest::CaughtUp(reply) => {
                self.caught_up.raise();
                reply.send(());
            }
            ShardRequest::Group(call, reply) => {
                reply.send(crate::group::handle_local(&self, call).await)
            }
            ShardRequest::Txn(call, reply) => {
                reply.send(crate::txn::handle_local(&self, call).await)
            }
            ShardRequest::QuotaUsage(usage, reply) => {
                self.quotas.take_remote(&usage);
                reply.send(());
            }
        }
    }

    /// This shard's counters, with its cache and partitions, for `/metrics`.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = self.metrics.snapshot(self.id.get());
        let (hits, misses, bytes) = self.cache.stats();
        snapshot.cache_hits = hits;
        snapshot.cache_misses = misses;
        snapshot.cache_bytes = bytes as u64;
        let read_ahead = self.cache.read_ahead_stats();
        snapshot.read_ahead_hits = read_ahead.hits;
        snapshot.read_ahead_misses = read_ahead.misses;
        snapshot.read_ahead_bytes = read_ahead.read_bytes;
        snapshot.read_ahead_held_bytes = read_ahead.held_bytes as u64;
        snapshot.syncs = crate::storage::sync_latencies();
        snapshot.flush_lock_waits = crate::storage::flush_lock_waits();
        if let Some(cluster) = self.cluster.get() {
            let stats = cluster.transport.stats();
            snapshot.cluster_payloads_sent = stats.sent.get();
            snapshot.cluster_frames_sent = stats.frames_sent.get();
            snapshot.cluster_bytes_sent = stats.bytes_sent.get();
            snapshot.cluster_payloads_received = stats.received.get();
            snapshot.cluster_payloads_dropped = stats.dropped.get();
        }
        for (tp, partition) in self.partitions.borrow().iter() {
            let counters = partition.metrics();
            snapshot.partitions.push(PartitionSnapshot {
                topic: tp.topic.clone(),
                partition: tp.partition.get(),
                produced_bytes: counters.produced_bytes.get(),
                produced_records: counters.produced_records.get(),
                fetched_bytes: counters.fetched_bytes.get(),
                high_watermark: partition.high_watermark().get(),
                log_start_offset: partition.log_start_offset().get(),
                size_bytes: partition.size_bytes(),
                cleaner_bytes_read: counters.cleaner_bytes_read.get(),
                cleaner_bytes_written: counters.cleaner_bytes_written.get(),
                recompressed_batches: counters.recompressed_batches.get(),
                dirty_ratio: counters.dirty_ratio.get(),
                cleaner_last_pass_ms: counters.cleaner_last_pass_ms.get(),
            });
        }
        snapshot
    }

    /// The bytes on disk of each partition this shard owns.
    fn partition_sizes(&self) -> Vec<(TopicPartition, u64)> {
        let partitions = self.partitions.borrow();
        let sizes = partitions.iter();
        sizes
            .map(|(tp, partition)| (tp.clone(), partition.size_bytes()))
            .collect()
    }

    /// The bytes on disk of every partition on this node, from every shard.
    pub async fn all_partition_sizes(self: &Rc<Self>) -> Vec<(TopicPartition, u64)> {
        let mut sizes = self.partition_sizes();
        for shard in ShardId::all(self.count).filter(|s| *s != self.id) {
            if let Some(more) = self.call(shard, ShardRequest::PartitionSizes).await {
                sizes.extend(more);
            }
        }
        sizes
    }

    /// Every shard's metrics snapshot, this one's first.
    pub async fn gather_metrics(self: &Rc<Self>) -> Vec<MetricsSnapshot> {
        let mut snapshots = vec![self.metrics_snapshot()];
        for shard in ShardId::all(self.count).filter(|s| *s != self.id) {
            if let Some(snapshot) = self.call(shard, ShardRequest::Metrics).await {
                snapshots.push(snapshot);
            }
        }
        snapshots.sort_by_key(|s| s.shard);
        snapshots
    }

    pub fn table(&self) -> std::cell::Ref<'_, ShardTable> {
        self.table.borrow()
    }

    /// Completes once metadata records were next applied to this shard's table.
    pub fn table_changed(&self) -> crate::sync::Notified<'_> {
        self.table_changed.notified()
    }

    fn partition(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(tp).cloned()
    }

    /// Owner shard of a partition on this node, per this shard's table.
    pub fn owner_of(&self, tp: &TopicPartition) -> Option<ShardId> {
        match self.placement_of(tp) {
            Placement::Here(owner) => Some(owner),
            _ => None,
        }
    }

    /// Where a partition is, per this shard's table.
    pub fn placement_of(&self, tp: &TopicPartition) -> Placement {
        let topic = self.table.borrow().topic(&tp.topic);
        topic.map_or(Placement::Unknown, |t| t.placement(tp.partition))
    }
}

/// Routed partition operations: a direct call when this shard owns the partition, a message
/// otherwise.
impl Shard {
    /// Runs `op` on the shard that owns its partition: here, or over the mesh on the owner.
    /// A partition this shard's table does not know is UNKNOWN_TOPIC_OR_PARTITION, one on
    /// another node of a cluster NOT_LEADER_OR_FOLLOWER (clients refresh their metadata and
    /// go there); an owner that does not answer (it is shutting down) is
    /// NOT_LEADER_OR_FOLLOWER too, which clients retry.
    pub async fn route<Op: Routed>(self: &Rc<Self>, op: Op) -> Op::Output {
        match self.placement_of(op.partition()) {
            Placement::Here(owner) if owner == self.id => op.run_here(self).await,
            Placement::Here(owner) => self
                .call(owner, |reply| op.request(reply))
                .await
                .unwrap_or_else(|| Op::refused(ResponseError::NotLeaderOrFollower)),
            Placement::Elsewhere(_) => Op::refused(ResponseError::NotLeaderOrFollower),
            Placement::Unknown => Op::refused(ResponseError::UnknownTopicOrPartition),
        }
    }

    /// Runs `op` on its partition, which this shard owns (or has just stopped owning): on
    /// the partition's replica when it is replicated. A client that believes the partition
    /// in another leader epoch than this replica knows is refused first, as Kafka does (the
    /// epoch of a replicated partition is its group's term, the one its leader reports).
    pub(super) async fn run_local<Op: Routed>(&self, op: Op) -> Op::Output {
        if let Some(replica) = self.replica_of(op.partition()) {
            let current = replica.leader_epoch();
            if let Some(error) = leader_epoch_fence(op.current_leader_epoch(), current) {
                return Op::refused(error);
            }
            return op.run_on_replica(replica).await;
        }
        let Some(partition) = self.partition(op.partition()) else {
            return Op::refused(ResponseError::UnknownTopicOrPartition);
        };
        match leader_epoch_fence(op.current_leader_epoch(), partition.current_epoch()) {
            Some(error) => Op::refused(error),
            None => op.run(partition).await,
        }
    }

    /// Waits until any of `partitions` has data past its offset, or `timeout_ms` passes.
    pub async fn watch(
        self: &Rc<Self>,
        partitions: Vec<(TopicPartition, Offset)>,
        timeout_ms: u64,
    ) {
        let mut by_owner: HashMap<ShardId, Vec<(TopicPartition, Offset)>> = HashMap::new();
        for (tp, offset) in partitions {
            match self.owner_of(&tp) {
                Some(owner) => by_owner.entry(owner).or_default().push((tp, offset)),
                None => return,
            }
        }
        let waits = by_owner.into_iter().map(|(owner, partitions)| {
            let input = WatchInput {
                partitions,
                timeout_ms,
            };
            Box::pin(async move {
                if owner == self.id {
                    self.watch_local(input).await
                } else {
                    self.call(owner, |tx| ShardRequest::Watch(input, tx))
                        .await
                        .unwrap_or(())
                }
            })
        });
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            // Nothing can wake this watch (a fetch naming no partition): wait out the timeout,
            // as Kafka does, instead of returning to a caller that would poll again at once.
            let timeout = runtime::sleep(Duration::from_millis(timeout_ms));
            select(Box::pin(timeout), Box::pin(self.shutdown.wait())).await;
            return;
        }
        select_all(waits).await;
    }
}

/// The owner-side work of the shard: watches, and opening and removing its partitions.
impl Shard {
    async fn watch_local(&self, input: WatchInput) {
        let deadline = input.deadline();
        let mut watched = Vec::new();
        for (tp, offset) in input.partitions {
            match self.partition(&tp) {
                Some(partition) => watched.push((partition, offset)),
                None => return,
            }
        }
        partition::watch(&watched, deadline, &self.shutdown).await
    }

    /// Applies metadata records to this shard's table and opens or removes the logs of the
    /// partitions this shard owns.
    async fn apply_local(self: &Rc<Self>, input: ApplyInput) -> Result<(), String> {
        let applied = self.apply_records(input).await;
        self.table_changed.notify_all();
        applied
    }

    async fn apply_records(self: &Rc<Self>, input: ApplyInput) -> Result<(), String> {
        for (offset, entry) in (input.first..).zip(&input.records) {
            let Some(record) = entry else {
                self.table.borrow_mut().skip(offset)?;
                continue;
            };
            let change = self.table.borrow_mut().apply(offset, record)?;
            if !input.snapshot {
                self.apply_change(change).await?;
            }
        }
        if input.snapshot {
            self.learn_peers();
            return self.open_owned_partitions().await;
        }
        Ok(())
    }

    async fn apply_change(self: &Rc<Self>, change: TableChange) -> Result<(), String> {
        if change.brokers_registered {
            self.learn_peers();
        }
        for (topic, partition, shard) in change.removed {
            if shard != self.id {
                continue;
            }
            let tp = TopicPartition { topic, partition };
            self.close_replica(&tp);
            let removed = self.partitions.borrow_mut().remove(&tp);
            match tp.topic.as_str() {
                crate::group::OFFSETS_TOPIC => crate::group::partition_removed(self, tp.partition),
                crate::txn::TRANSACTION_TOPIC => crate::txn::partition_removed(self, tp.partition),
                _ => {}
            }
            if let Some(removed) = removed {
                if let Err(error) = removed.remove().await {
                    tracing::error!(%error, topic = %tp.topic, "removing partition failed");
                }
            }
        }
        for (topic, partition) in change.added {
            if topic.owner(partition) == Some(self.id) {
                self.open_partition(topic, partition, change.added_are_new)
                    .await?;
            }
        }
        for (topic, partition) in change.replicas_changed {
            if topic.owner(partition) == Some(self.id) {
                self.replicas_changed(&topic, partition);
            }
        }
        for (topic, partition) in change.preferred_elected {
            let tp = TopicPartition { topic, partition };
            if let Some(replica) = self.replica_of(&tp) {
                self.hand_to_preferred(&tp, &replica);
            }
        }
        for topic in change.reconfigured {
            let reconfigured: Vec<_> = self
                .partitions
                .borrow()
                .iter()
                .filter(|(tp, _)| tp.topic == topic.name)
                .map(|(tp, partition)| (self.replica_of(tp), partition.clone()))
                .collect();
            for (replica, partition) in reconfigured {
                partition.set_config(topic.config.clone());
                // A lowered retention takes effect now, not at the next retention pass.
                runtime::spawn_into(self.queues.background, async move {
                    let now = crate::metadata::now_ms();
                    if let Some(replica) = replica {
                        replicated::retain(replica, now);
                    }
                    match partition.enforce_retention(now).await {
                        // The partition was removed meanwhile (topic deleted): nothing to do.
                        Ok(()) | Err(storage::StorageError::Closed) => {}
                        // Fenced: reported once, when its write or sync failed.
                        Err(storage::StorageError::Failed(_)) => {}
                        Err(error) => {
                            tracing::error!(%error, "retention after a config change failed")
                        }
                    }
                });
            }
        }
        Ok(())
    }

    async fn open_owned_partitions(self: &Rc<Self>) -> Result<(), String> {
        let owned: Vec<_> = {
            let table = self.table.borrow();
            table
                .topics()
                .flat_map(|t| PartitionId::all(t.partition_count()).map(move |p| (t.clone(), p)))
                .filter(|(t, p)| t.owner(*p) == Some(self.id))
                .collect()
        };
        for (topic, partition) in owned {
            self.open_partition(topic, partition, false).await?;
        }
        Ok(())
    }

    /// Opens the log of `partition`; `new` when it was just created, so that nothing of an
    /// earlier life may be in its directory.
    async fn open_partition(
        self: &Rc<Self>,
        topic: Rc<table::TopicEntry>,
        partition: PartitionId,
        new: bool,
    ) -> Result<(), String> {
        let name = crate::metadata::partition_dir_name(&topic.name, partition);
        let dir = self.config.data_dir.join(name);
        // A new partition finds its directory when a cluster node catching up on the metadata
        // log applies again the creation of a partition it holds (the directory names this
        // topic's id), or when a removal failed while the broker ran (start-up clears what a
        // crash left): that data must not become the new partition's.
        let leftover = new
            && dir.exists()
            && storage::partition_metadata::read(&dir).await.ok().flatten() != Some(topic.id);
        if leftover {
            tracing::warn!(dir = %dir.display(), "removing what a failed deletion left");
            storage::remove_dir(&dir)
                .await
                .map_err(|e| format!("cannot remove leftover {}: {e}", dir.display()))?;
        }
        let cannot_open = |e| format!("cannot open {}: {e}", dir.display());
        let log = Log::open(dir.clone(), topic.config.log_config(), self.cache.clone())
            .await
            .map_err(cannot_open)?;
        if new {
            storage::partition_metadata::write(&dir, topic.id)
                .await
                .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        }
        let tp = TopicPartition {
            topic: topic.name.clone(),
            partition,
        };
        let index = partition;
        if topic.group(partition).is_some() {
            let partition = self.open_replica(&topic, partition, log).await?;
            self.partitions.borrow_mut().insert(tp, partition);
            return Ok(());
        }
        let context = self.partition_context.clone();
        let partition = Partition::open(tp.clone(), topic.config.clone(), log, context)
            .await
            .map_err(cannot_open)?;
        // Snapshots and the log tail may hold producers that expired while the broker was down.
        partition.expire_producers(
            crate::metadata::now_ms(),
            self.config.producer_id_expiration_ms,
        );
        let topic = tp.topic.clone();
        self.partitions.borrow_mut().insert(tp, partition);
        match topic.as_str() {
            crate::group::OFFSETS_TOPIC => crate::group::partition_opened(self, index),
            // An unreplicated partition has one leader epoch, so one coordinator epoch.
            crate::txn::TRANSACTION_TOPIC => crate::txn::partition_opened(self, index, 0),
            _ => {}
        }
        Ok(())
    }
}

impl Shard {
    /// Tells the other shards, every `QUOTA_GOSSIP_INTERVAL_MS`, what this shard's
    /// connections took from client quotas (nothing is sent while nothing was taken). With
    /// one shard it only lets the buckets forget what they no longer need.
    async fn quota_gossip_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(crate::limits::QUOTA_GOSSIP_INTERVAL_MS);
        loop {
            let tick = futures::future::select(
                Box::pin(runtime::sleep(interval)),
                Box::pin(self.shutdown.wait()),
            );
            if let futures::future::Either::Right(_) = tick.await {
                return;
            }
            let usage = self.quotas.take_unreported();
            if usage.is_empty() || self.count == 1 {
                continue;
            }
            let shard = &self;
            let others = ShardId::all(self.count).filter(|other| *other != self.id);
            let calls = others.map(|other| {
                let usage = usage.clone();
                async move {
                    shard
                        .call(other, |tx| ShardRequest::QuotaUsage(usage, tx))
                        .await
                }
            });
            futures::future::join_all(calls).await;
        }
    }

    /// The shard's log cleaner: every `log_cleaner_backoff_ms`, one pass over each of its
    /// compacted partitions that is due (`partition::cleaner`), one partition at a time with
    /// one key map, on the background queue. Every replica of a replicated partition
    /// cleans its own log, below its Raft base (see `partition::cleaner`).
    async fn cleaner_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.log_cleaner_backoff_ms.max(10));
        let mut key_map = KeyMap::new(self.config.log_cleaner_dedupe_buffer_size);
        while !self.shutdown.is_raised() {
            runtime::sleep(interval).await;
            for (tp, partition) in self.owned_partitions() {
                if self.shutdown.is_raised() {
                    break;
                }
                if !partition.is_compacted() {
                    continue;
                }
                if let Some(replica) = self.replica_of(&tp) {
                    // For the next pass: this one cleans below the anchor as it is.
                    replica.want_anchor();
                }
                let now = crate::metadata::now_ms();
                match partition.clean(&mut key_map, now).await {
                    Ok(Some(stats)) => tracing::debug!(
                        topic = %tp.topic,
                        partition = %tp.partition,
                        bytes_read = stats.bytes_read,
                        bytes_written = stats.bytes_written,
                        cleaned_to = %stats.cleaned_to,
                        "compacted"
                    ),
                    // Deleted (closed) meanwhile, or fenced (reported when it failed).
                    Ok(None)
                    | Err(crate::storage::StorageError::Closed)
                    | Err(crate::storage::StorageError::Failed(_)) => {}
                    Err(error) => tracing::error!(
                        topic = %tp.topic,
                        partition = %tp.partition,
                        %error,
                        "compaction failed"
                    ),
                }
                runtime::yield_if_needed().await;
            }
        }
    }

    /// The partitions this shard owns now, for a background round over them that awaits.
    fn owned_partitions(&self) -> Vec<(TopicPartition, Rc<Partition>)> {
        let partitions = self.partitions.borrow();
        let owned = partitions.iter();
        owned
            .map(|(tp, partition)| (tp.clone(), partition.clone()))
            .collect()
    }

    async fn retention_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.retention_check_interval_ms.max(10));
        while !self.shutdown.is_raised() {
            runtime::sleep(interval).await;
            for (tp, partition) in self.owned_partitions() {
                let now = crate::metadata::now_ms();
                match partition.enforce_retention(now).await {
                    // Deleted (closed) while this round was under way: nothing to retain.
                    Ok(()) | Err(crate::storage::StorageError::Closed) => {}
                    // Fenced: reported once, when its write or sync failed.
                    Err(crate::storage::StorageError::Failed(_)) => {}
                    Err(error) => tracing::error!(%error, "retention failed"),
                }
                if let Some(replica) = self.replica_of(&tp) {
                    replicated::retain(replica, now);
                }
                let expiration_ms = self.config.producer_id_expiration_ms;
                partition.expire_producers(now, expiration_ms);
                runtime::yield_if_needed().await;
            }
        }
    }
}
