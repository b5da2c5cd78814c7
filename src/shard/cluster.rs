//! This shard's part in a cluster: its end of the node-to-node transport, its Raft replicas on
//! the shard's one timer, the controller calls it forwarded and waits for, and what shard 0
//! last said about which node leads the metadata quorum. Absent on a single node.
//!
//! Per-shard: made by `Shard::start_cluster` on the shard's executor.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use futures::channel::oneshot;

use super::controller_call::{is_controller_payload, ControllerAnswer};
use super::messages::ShardRequest;
use super::node_call::is_node_call_payload;
use super::Shard;
use crate::ids::{NodeId, ShardId};
use crate::limits;
use crate::metadata::BrokerRegistration;
use crate::partition::TopicPartition;
use crate::replication::{Replica, Replicas};
use crate::runtime;
use crate::sync::Latch;
use crate::transport::tcp::{Handoff, TcpTransport};
use crate::transport::{Address, Deliver, Hello, Transport};

/// See the module documentation.
pub struct ClusterShard {
    pub transport: Rc<TcpTransport>,
    pub replicas: Rc<Replicas>,
    /// Raised once the shard's connections are drained: the network runs until then, so
    /// that requests in flight (a topic being created) can finish.
    pub stop: Rc<Latch>,
    /// Controller calls forwarded to another node, by call id, waiting for the answer.
    pub(super) forwarded: RefCell<HashMap<u64, oneshot::Sender<Option<ControllerAnswer>>>>,
    /// Transaction calls sent to another node (`node_call`), by call id, waiting for the
    /// error code.
    pub(super) node_calls: RefCell<HashMap<u64, oneshot::Sender<i16>>>,
    next_call: Cell<u64>,
    /// The node that leads the metadata quorum, as shard 0 last said.
    pub controller: Cell<Option<NodeId>>,
    /// The replicas of this shard's replicated partitions (see `replicated`).
    pub(super) by_partition: RefCell<HashMap<TopicPartition, Rc<Replica>>>,
}

impl ClusterShard {
    pub(super) fn next_call_id(&self) -> u64 {
        let id = self.next_call.get();
        self.next_call.set(id + 1);
        id
    }
}

impl Shard {
    /// In a cluster: binds this shard's socket of the cluster address and starts the
    /// transport and the replicas' timer. Nothing on a single node.
    pub(super) fn start_cluster(self: &Rc<Self>) -> anyhow::Result<()> {
        let Some(config) = &self.config.cluster else {
            return Ok(());
        };
        let me = self.config.node_id;
        let local = Address {
            node: me,
            shard: self.id,
        };
        let peers = config
            .voters
            .iter()
            .filter(|(node, _)| *node != me)
            .copied()
            .collect();
        let replicas = Replicas::new();
        let replication = replicas.deliver();
        let shard = Rc::downgrade(self);
        let deliver: Deliver = Rc::new(move |from, payload| {
            if is_controller_payload(&payload) {
                if let Some(shard) = shard.upgrade() {
                    shard.receive_controller_payload(from, payload);
                }
            } else if is_node_call_payload(&payload) {
                if let Some(shard) = shard.upgrade() {
                    shard.receive_node_call_payload(from, payload);
                }
            } else {
                replication(from, payload);
            }
        });
        let shard = Rc::downgrade(self);
        let handoff: Handoff = Rc::new(move |hello: Hello, fd: OwnedFd| {
            let Some(shard) = shard.upgrade() else {
                return;
            };
            let owner = hello.to.shard;
            let queue = shard.queues.requests;
            runtime::spawn_into(queue, async move {
                // A shard that is gone drops the link, and its dialer connects again.
                shard
                    .call(owner, |tx| ShardRequest::AdoptLink(hello, fd, tx))
                    .await;
            });
        });
        let stop = Rc::new(Latch::default());
        let transport = TcpTransport::new(
            local,
            self.count,
            peers,
            deliver,
            handoff,
            self.queues.requests,
            stop.clone(),
        );
        let listener = runtime::bind_shared_listener(config.listen)
            .with_context(|| format!("cannot listen on --cluster-listen {}", config.listen))?;
        transport.listen(listener);
        let tick = Duration::from_millis(limits::REPLICATION_TICK_MS);
        let ticking: Rc<dyn Transport> = Rc::new(transport.clone());
        runtime::spawn_into(
            self.queues.requests,
            replicas.clone().tick(tick, ticking, stop.clone()),
        );
        runtime::spawn_into(
            self.queues.background,
            self.clone().balance_leaders(self.shutdown.clone()),
        );
        runtime::spawn_into(
            self.queues.requests,
            self.clone().drive_reassignments(self.shutdown.clone()),
        );
        let cluster = ClusterShard {
            transport,
            replicas,
            stop,
            forwarded: RefCell::default(),
            node_calls: RefCell::default(),
            next_call: Cell::new(0),
            controller: Cell::new(None),
            by_partition: RefCell::default(),
        };
        if self.cluster.set(cluster).is_err() {
            unreachable!("a shard starts its cluster part once");
        }
        Ok(())
    }

    /// Tells this shard's transport where each registered node outside the voters listens
    /// (the voters' addresses are configured; a broker-only node's are known only from its
    /// registration), and on shard 0 the metadata replica who its peers are, so that its
    /// leader reaches the broker-only nodes that follow the log.
    pub(super) fn learn_peers(&self) {
        let (Some(cluster), Some(config)) = (self.cluster.get(), &self.config.cluster) else {
            return;
        };
        let me = self.config.node_id;
        let at_shard_0 = |node| Address {
            node,
            shard: ShardId(0),
        };
        let mut peers: HashMap<NodeId, Address> = HashMap::new();
        for node in config.voter_ids().into_iter().filter(|node| *node != me) {
            peers.insert(node, at_shard_0(node));
        }
        for broker in self.table().brokers().filter(|broker| broker.node != me) {
            if let Some(address) = broker.cluster.filter(|_| !config.is_voter(broker.node)) {
                cluster.transport.set_peer(broker.node, address);
            }
            peers.insert(broker.node, at_shard_0(broker.node));
        }
        let controller = self.controller.borrow().clone();
        if let Some(replica) = controller.as_ref().and_then(|c| c.replica()) {
            replica.set_peers(peers);
        }
    }

    /// Shard 0: where a node outside the voters that sent its registration listens, so that
    /// the answer reaches it.
    pub(super) fn learn_registering(&self, node: NodeId, registration: &BrokerRegistration) {
        let (Some(cluster), Some(config)) = (self.cluster.get(), &self.config.cluster) else {
            return;
        };
        let address = registration.cluster.filter(|_| registration.node == node);
        if let Some(address) = address.filter(|_| !config.is_voter(node)) {
            cluster.transport.set_peer(node, address);
        }
    }

    /// A link another shard of this node accepted for this one.
    pub(super) fn adopt_link(&self, hello: Hello, fd: OwnedFd) {
        if let Some(cluster) = self.cluster.get() {
            cluster.transport.adopt(hello, fd);
        }
    }

    /// The node that leads the metadata quorum, as this shard knows it: this node on a
    /// single node.
    pub fn controller_node(&self) -> Option<NodeId> {
        match self.cluster.get() {
            Some(cluster) => cluster.controller.get(),
            None => Some(self.config.node_id),
        }
    }

    /// Shard 0: tells every shard (this one too) which node leads the metadata quorum now.
    pub(super) async fn announce_controller(self: &Rc<Self>, leader: Option<NodeId>) {
        for shard in ShardId::all(self.count) {
            if shard == self.id {
                if let Some(cluster) = self.cluster.get() {
                    cluster.controller.set(leader);
                }
            } else {
                self.call(shard, |tx| ShardRequest::ControllerMoved(leader, tx))
                    .await;
            }
        }
    }
}
