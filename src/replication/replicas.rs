//! The replicas of one shard: the shard's one Raft timer, which ticks every replica (so
//! that 10,000 groups cost one timer, not 10,000), and the dispatch of payloads from peers
//! to the replica of their group.
//!
//! Per-shard.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{select, Either};

use super::message::{Envelope, GroupId};
use super::replica::Replica;
use crate::runtime::clock;
use crate::sync::Latch;
use crate::transport::{Address, Deliver};

/// See the module documentation.
#[derive(Default)]
pub struct Replicas {
    replicas: RefCell<BTreeMap<GroupId, Rc<Replica>>>,
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
        let group = match &envelope {
            Envelope::Raft(group, _) => *group,
            Envelope::CopyRequest { group, .. } | Envelope::CopyReply { group, .. } => *group,
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

    /// Ticks every replica each `interval` until `stop` is raised. Run it as one task.
    pub async fn tick(self: Rc<Self>, interval: Duration, stop: Rc<Latch>) {
        loop {
            let slept = Box::pin(clock::sleep(interval));
            if let Either::Right(_) = select(slept, Box::pin(stop.wait())).await {
                return;
            }
            let replicas: Vec<Rc<Replica>> = self.replicas.borrow().values().cloned().collect();
            for replica in replicas {
                replica.tick();
            }
        }
    }
}
