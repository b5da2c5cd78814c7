//! The replicas of one shard: the shard's one Raft timer, which ticks every replica (so
//! that 10,000 groups cost one timer, not 10,000), and the dispatch of payloads from peers
//! to the replica of their group.
//!
//! Idle groups quiesce (`Replica::quiesce`): their leaders stop heartbeating and their
//! followers stop their election timers, and the timer skips them. What stands in for their
//! heartbeats is one `Alive` payload per pair of shards every `REPLICATION_ALIVE_TICKS`, sent
//! to the shards of the other replicas of this shard's quiescent groups, whatever their
//! number; and every payload from a node (of any group) tells this shard that node is up. A
//! quiescent group one of whose other replicas' nodes has not been heard from for
//! `REPLICATION_SILENCE_TICKS` is stirred: it ticks again, and its followers elect a new
//! leader if the old one is gone, as after any silence.
//!
//! Per-shard.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{select, Either};

use super::message::{Envelope, GroupId};
use super::replica::Replica;
use crate::ids::NodeId;
use crate::limits::{REPLICATION_ALIVE_TICKS, REPLICATION_SILENCE_TICKS};
use crate::runtime::clock;
use crate::sync::Latch;
use crate::transport::{Address, Deliver, Transport};

/// See the module documentation.
#[derive(Default)]
pub struct Replicas {
    replicas: RefCell<BTreeMap<GroupId, Rc<Replica>>>,
    /// Ticks of the shard's timer.
    now: Cell<u64>,
    /// The tick each node was last heard from (any payload).
    heard: RefCell<HashMap<NodeId, u64>>,
}

impl Replicas {
    pub fn new() -> Rc<Replicas> {
        Rc::default()
    }

    /// Where the shard's transport hands payloads: to the replica of their group (a payload
    /// for a group not here, or not an envelope, is dropped like a lost one).
    pub fn deliver(self: &Rc<Self>) -> Deliver {
        let replicas: Weak<Replicas> = Rc::downgrade(self);
        Rc::new(move |from: Address, payload: Bytes| {
            if let Some(replicas) = replicas.upgrade() {
                replicas.receive(from, payload);
            }
        })
    }

    fn receive(&self, from: Address, payload: Bytes) {
        let Some(envelope) = Envelope::decode(payload) else {
            return;
        };
        self.heard.borrow_mut().insert(from.node, self.now.get());
        let group = match &envelope {
            Envelope::Raft(group, _) => *group,
            Envelope::CopyRequest { group, .. }
            | Envelope::CopyReply { group, .. }
            | Envelope::Quiesce { group, .. } => *group,
            Envelope::Alive => return,
        };
        let replica = self.replicas.borrow().get(&group).cloned();
        if let Some(replica) = replica {
            replica.receive(from, envelope);
        }
    }

    pub fn insert(&self, replica: Rc<Replica>) {
        self.replicas.borrow_mut().insert(replica.group(), replica);
    }

    pub fn remove(&self, group: GroupId) -> Option<Rc<Replica>> {
        self.replicas.borrow_mut().remove(&group)
    }

    pub fn get(&self, group: GroupId) -> Option<Rc<Replica>> {
        self.replicas.borrow().get(&group).cloned()
    }

    /// Ticks every replica that is not quiescent each `interval`, stirs the quiescent ones
    /// whose peers' nodes fell silent, and tells the peers of the others that this shard is
    /// up, through `transport`, until `stop` is raised. Run it as one task.
    pub async fn tick(
        self: Rc<Self>,
        interval: Duration,
        transport: Rc<dyn Transport>,
        stop: Rc<Latch>,
    ) {
        loop {
            let slept = Box::pin(clock::sleep(interval));
            if let Either::Right(_) = select(slept, Box::pin(stop.wait())).await {
                return;
            }
            let now = self.now.get() + 1;
            self.now.set(now);
            let alive_due = now % REPLICATION_ALIVE_TICKS == 0;
            let mut tell_alive: HashSet<Address> = HashSet::new();
            let replicas: Vec<Rc<Replica>> = self.replicas.borrow().values().cloned().collect();
            for replica in replicas {
                if replica.is_quiescent() {
                    let peers = replica.peers();
                    let silent = peers.keys().any(|node| !self.heard_since(*node, now));
                    if !silent {
                        if alive_due {
                            tell_alive.extend(peers.values().copied());
                        }
                        continue;
                    }
                    drop(peers);
                    replica.stir();
                }
                replica.tick();
            }
            for address in tell_alive {
                transport.send(address, Envelope::Alive.encode());
            }
        }
    }

    /// Whether `node` was heard from within `REPLICATION_SILENCE_TICKS` of `now`.
    fn heard_since(&self, node: NodeId, now: u64) -> bool {
        let heard = self.heard.borrow().get(&node).copied();
        heard.is_some_and(|at| now - at < REPLICATION_SILENCE_TICKS)
    }
}
