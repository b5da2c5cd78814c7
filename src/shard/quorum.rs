//! Shard 0 of a cluster node and the metadata quorum: the quorum's replica on this node, the
//! tasks that follow it (applying committed entries, telling every shard which node leads),
//! this node's registration and heartbeats, and what the active controller does on its own
//! (fencing nodes it has not heard from, `__consumer_offsets` once every voter has
//! registered).
//!
//! Per-shard: shard 0 only, in a cluster.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};

use super::controller::Controller;
use super::controller_call::{ControllerAnswer, ControllerCall};
use super::Shard;
use crate::ids::{PartitionId, ShardId};
use crate::limits;
use crate::metadata::topic_config::TopicConfig;
use crate::metadata::{self, BrokerEndpoint, BrokerRegistration, METADATA_LOG_DIR};
use crate::partition::TopicPartition;
use crate::replication::window::ANCHOR_FILE;
use crate::replication::{GroupId, Replica, ReplicaConfig, ReplicaSpec};
use crate::runtime;
use crate::storage::{BatchCache, Log};
use crate::transport::{Address, Transport};

/// The Raft group of the metadata log (partitions' groups get other ids).
pub const METADATA_GROUP: GroupId = 0;

/// The metadata log's name as a partition.
const METADATA_TOPIC: &str = "__cluster_metadata";

impl Shard {
    /// Opens this node's replica of the metadata group over `__cluster_metadata-0`: a voter's,
    /// or a broker-only node's, which follows the log as a learner.
    pub(super) async fn open_metadata_replica(self: &Rc<Self>) -> anyhow::Result<Rc<Replica>> {
        let cluster = self.cluster.get().expect("a cluster node");
        let config = self.config.cluster.as_ref().expect("a cluster node");
        let dir = self.config.data_dir.join(METADATA_LOG_DIR);
        // Its own cache, and pre-writing for this one log apart from the shard's partitions.
        let cache = BatchCache::with_budgets(
            1 << 20,
            limits::READ_AHEAD_BYTES_PER_SHARD_MAX,
            limits::PREWRITE_AHEAD_BYTES,
        );
        let log = Log::open(dir.clone(), metadata::log_config(), cache).await?;
        if log.log_end_offset().get() > 0 && !dir.join(ANCHOR_FILE).exists() {
            anyhow::bail!(
                "{} holds the metadata log of a single-node broker; a cluster node starts on a \
                 data directory of its own (an empty --data-dir)",
                dir.display()
            );
        }
        let me = self.config.node_id;
        let peers: HashMap<_, _> = config
            .voter_ids()
            .into_iter()
            .filter(|node| *node != me)
            .map(|node| {
                let address = Address {
                    node,
                    shard: ShardId(0),
                };
                (node, address)
            })
            .collect();
        // A broker-only node opens outside the group, as a partition's replica being added
        // does: the controller adds it as a learner once it registered.
        let voters = match config.is_voter(me) {
            true => config.voter_ids(),
            false => Vec::new(),
        };
        let spec = ReplicaSpec {
            group: METADATA_GROUP,
            me,
            voters,
            peers,
            seed: election_seed(),
        };
        let tp = TopicPartition {
            topic: METADATA_TOPIC.to_string(),
            partition: PartitionId(0),
        };
        let overrides = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            (
                "segment.bytes".to_string(),
                limits::METADATA_SEGMENT_BYTES.to_string(),
            ),
        ]);
        let topic_config = TopicConfig::resolve(&self.config.topic_defaults, &overrides);
        let transport: Rc<dyn Transport> = Rc::new(cluster.transport.clone());
        let replica = Replica::open(
            spec,
            tp,
            topic_config,
            log,
            self.partition_context.clone(),
            transport,
            ReplicaConfig::default(),
        )
        .await?;
        cluster.replicas.insert(replica.clone());
        Ok(replica)
    }

    /// A cluster node's partitions live on shards the metadata names: a node restarted with
    /// fewer shards than those cannot serve them (moving them is not built yet).
    pub(super) fn check_own_shards(&self) -> anyhow::Result<()> {
        let table = self.table();
        let too_high = table.placed_replicas().find(|(_, _, replica)| {
            replica.node == self.config.node_id && replica.shard.get() >= self.count
        });
        if let Some((topic, partition, replica)) = too_high {
            anyhow::bail!(
                "partition {partition} of topic {} is on shard {} of this node, which runs {} \
                 shards: start it with --shards {} or more",
                topic.name,
                replica.shard,
                self.count,
                replica.shard.get() + 1
            );
        }
        Ok(())
    }

    /// Starts the tasks that follow the metadata quorum on this node.
    pub(super) fn follow_quorum(self: &Rc<Self>, controller: Rc<Controller>) {
        let queue = self.queues.requests;
        runtime::spawn_into(queue, controller.clone().follow(self.clone()));
        runtime::spawn_into(queue, self.clone().watch_controller(controller.clone()));
        runtime::spawn_into(queue, self.clone().keep_alive(controller));
    }

    /// Tells every shard which node leads the metadata quorum whenever that changes, and
    /// starts the active controller's own work when it is this node.
    async fn watch_controller(self: Rc<Self>, controller: Rc<Controller>) {
        let replica = controller.replica().expect("a quorum").clone();
        let mut announced = None;
        let mut first = true;
        while !self.shutdown.is_raised() {
            let moved = replica.leadership_moved();
            let leader = replica.leader();
            if first || leader != announced {
                first = false;
                announced = leader;
                if leader == Some(self.config.node_id) {
                    tracing::info!(node = %self.config.node_id, "this node is the active controller");
                    runtime::spawn_into(
                        self.queues.requests,
                        self.clone().lead(controller.clone()),
                    );
                }
                self.announce_controller(leader).await;
                continue;
            }
            select(Box::pin(moved), Box::pin(self.shutdown.wait())).await;
        }
    }

    /// What the active controller does unasked while it leads, every heartbeat interval:
    /// fence the nodes it has not heard from within their session, have the broker-only
    /// nodes follow the metadata log, and create
    /// `__consumer_offsets` once as many nodes as there are voters are registered and
    /// unfenced, so that its partitions spread over all of them.
    async fn lead(self: Rc<Self>, controller: Rc<Controller>) {
        let config = self.config.cluster.as_ref().expect("a cluster node");
        let interval = Duration::from_millis(config.heartbeat_interval_ms);
        let session = Duration::from_millis(config.session_timeout_ms);
        controller.start_sessions(&self);
        while !self.shutdown.is_raised() && controller.leader() == Some(self.config.node_id) {
            controller.fence_silent_brokers(&self, session).await;
            controller.observe_brokers(&self);
            let offsets_missing = self.table().topic(crate::group::OFFSETS_TOPIC).is_none();
            if offsets_missing && self.unfenced_brokers() >= config.voters.len() {
                if let Err(error) = self.ensure_offsets_topic().await {
                    tracing::warn!("{error:#}; trying again");
                }
            }
            let pause = runtime::sleep(interval);
            select(Box::pin(pause), Box::pin(self.shutdown.wait())).await;
        }
    }

    fn unfenced_brokers(&self) -> usize {
        let table = self.table();
        table.brokers().filter(|b| !table.is_fenced(b.node)).count()
    }

    /// Registers this node with the active controller (where clients reach it, its shard
    /// count), once per start, then tells the controller every heartbeat interval that it is
    /// alive and how far it has applied the metadata log, until the node stops. While the
    /// controller keeps it fenced until it has caught up, the next heartbeat goes as soon as
    /// it has; once its own table shows it registered and unfenced, every shard answers
    /// clients.
    async fn keep_alive(self: Rc<Self>, controller: Rc<Controller>) {
        let config = self.config.cluster.as_ref().expect("a cluster node");
        let interval = Duration::from_millis(config.heartbeat_interval_ms);
        let registration = self.registration();
        let node = registration.node;
        // The offset this start's registration is applied below, once registered.
        let mut registered_below = None;
        // A node shutting down says so once (`controlled_shutdown`), and no more heartbeats.
        while !self.shutdown.is_raised() {
            let call = match registered_below {
                None => ControllerCall::RegisterBroker(registration.clone()),
                Some(_) => ControllerCall::Heartbeat {
                    node,
                    shutting_down: false,
                    applied: controller.applied(&self),
                },
            };
            // A heartbeat lost on the way (a link cut) is not waited for beyond the interval:
            // the next one goes instead. A registration records, and waits longer.
            let answer = match registered_below {
                None => self.call_controller(call).await,
                Some(_) => self.call_controller_within(call, interval).await,
            };
            // The next heartbeat goes once this offset is applied, else after the interval.
            let catch_up_to = match answer {
                Some(ControllerAnswer::Registered(Ok(offset))) => {
                    tracing::info!(%node, "registered with the controller");
                    registered_below = Some(offset);
                    let opening = self.clone().open_when_caught_up(
                        controller.clone(),
                        registration.clone(),
                        offset,
                    );
                    runtime::spawn_into(self.queues.requests, opening);
                    continue;
                }
                Some(ControllerAnswer::Heartbeat(Ok(target))) => target,
                Some(ControllerAnswer::Heartbeat(Err(error))) => {
                    tracing::debug!(%error, "the controller refused the heartbeat; registering again");
                    registered_below = None;
                    None
                }
                Some(ControllerAnswer::Registered(Err(error))) => {
                    tracing::debug!(%error, "the controller refused; trying again");
                    None
                }
                Some(_) => None,
                None => {
                    tracing::debug!("no controller reachable yet");
                    None
                }
            };
            let next_beat = Box::pin(runtime::sleep(interval));
            let applied =
                catch_up_to.map(|target| Box::pin(controller.until_applied(&self, target)));
            let pause = async move {
                match applied {
                    Some(applied) => drop(select(applied, next_beat).await),
                    None => next_beat.await,
                }
            };
            if let Either::Right(_) = select(Box::pin(pause), Box::pin(self.shutdown.wait())).await
            {
                return;
            }
        }
    }

    /// Lets every shard answer clients once this node's table holds this start's
    /// registration (applied below `registered_below`) and shows the node unfenced, which
    /// the controller records only once the node has caught up. One task per registration;
    /// it ends when another got there first or the node stops.
    async fn open_when_caught_up(
        self: Rc<Self>,
        controller: Rc<Controller>,
        registration: BrokerRegistration,
        registered_below: i64,
    ) {
        let node = registration.node;
        while !self.shutdown.is_raised() && !self.caught_up.is_raised() {
            let moved = controller.applied_moved();
            let ready = {
                let table = self.table();
                controller.applied(&self) >= registered_below
                    && table.broker(node) == Some(&registration)
                    && !table.is_fenced(node)
            };
            if ready {
                self.open_to_clients().await;
                tracing::info!(%node, "caught up with the metadata log: answering clients");
                return;
            }
            select(Box::pin(moved), Box::pin(self.shutdown.wait())).await;
        }
    }

    /// Shard 0 of a cluster node told to stop, before it drains: hands the metadata quorum's
    /// leadership to a caught-up voter if this node holds it (so the cluster has a controller
    /// without waiting for an election timeout), then asks the controller to fence this node
    /// (so clients go elsewhere without waiting for its session to expire).
    pub(super) async fn controlled_shutdown(self: &Rc<Self>) {
        let controller = self.controller.borrow().clone();
        let Some(replica) = controller.as_ref().and_then(|c| c.replica()).cloned() else {
            return;
        };
        let me = self.config.node_id;
        let election = Duration::from_millis(limits::LEADERSHIP_HANDOVER_MS);
        if replica.is_leader() {
            match select(
                Box::pin(replica.hand_over()),
                Box::pin(runtime::sleep(election)),
            )
            .await
            {
                Either::Left(_) => {
                    tracing::info!("metadata leadership handed over for the shutdown")
                }
                Either::Right(_) => {
                    tracing::warn!("metadata leadership not handed over before the shutdown")
                }
            }
        }
        // The call goes to the node that leads, once one is known (a quorum is up).
        let other_leader = async {
            loop {
                let moved = replica.leadership_moved();
                if replica.leader().is_some_and(|leader| leader != me) {
                    return;
                }
                moved.await;
            }
        };
        let known = select(Box::pin(other_leader), Box::pin(runtime::sleep(election))).await;
        if let Either::Right(_) = known {
            tracing::warn!(node = %me, "no metadata quorum to be fenced by before the shutdown");
            return;
        }
        let call = ControllerCall::Heartbeat {
            node: me,
            shutting_down: true,
            applied: 0,
        };
        let deadline = Duration::from_millis(limits::CONTROLLED_SHUTDOWN_TIMEOUT_MS);
        let answered = select(
            Box::pin(self.call_controller(call)),
            Box::pin(runtime::sleep(deadline)),
        )
        .await;
        match answered {
            Either::Left((Some(ControllerAnswer::Heartbeat(Ok(_))), _)) => {
                tracing::info!(node = %me, "fenced for the shutdown")
            }
            _ => {
                tracing::warn!(node = %me, "the controller did not fence this node before it stopped")
            }
        }
    }

    fn registration(&self) -> BrokerRegistration {
        let endpoints = self
            .config
            .listeners
            .iter()
            .map(|listener| BrokerEndpoint {
                listener: listener.name.clone(),
                host: listener.advertised_host.clone(),
                port: listener.advertised_port,
            })
            .collect();
        BrokerRegistration {
            node: self.config.node_id,
            endpoints,
            rack: self.config.rack.clone(),
            shards: self.count,
            cluster: self
                .config
                .cluster
                .as_ref()
                .map(|cluster| cluster.advertised),
        }
    }
}

/// Seeds a real node's election timeouts (a simulation seeds its own).
pub(super) fn election_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
