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
//! A payload can come before its replica: the preferred leader of a new partition
//! campaigns as soon as its own node has applied the partition's creation, which the other
//! replicas' nodes may apply a moment later. Such payloads are kept (`Early`, bounded in
//! bytes and age) and handed to the replica when it opens, so that the first election is
//! won by the replica that asked first, instead of being lost and held again after an
//! election timeout by whichever replica's timer fires first (and then moved to the
//! preferred leader by the leader balancer: two leadership changes instead of none).
//!
//! Per-shard.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{select, Either};

use super::message::{Envelope, GroupId};
use super::replica::Replica;
use crate::ids::NodeId;
use crate::limits::{
    EARLY_PAYLOAD_BYTES_MAX, EARLY_PAYLOAD_TICKS, REPLICATION_ALIVE_TICKS,
    REPLICATION_SILENCE_TICKS,
};
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
    /// Payloads for groups not (yet) here.
    early: RefCell<Early>,
}

/// Payloads for groups without a replica on this shard, oldest first: kept for
/// `EARLY_PAYLOAD_TICKS` and `EARLY_PAYLOAD_BYTES_MAX` in all (the oldest go first), since
/// the replica they are for may be about to open. Those for a group that is gone (deleted,
/// moved away) simply age out; group ids are never reused.
#[derive(Default)]
struct Early {
    payloads: VecDeque<EarlyPayload>,
    bytes: usize,
}

struct EarlyPayload {
    group: GroupId,
    from: Address,
    envelope: Envelope,
    bytes: usize,
    at: u64,
}

impl Early {
    fn keep(&mut self, payload: EarlyPayload) {
        self.bytes += payload.bytes;
        self.payloads.push_back(payload);
        while self.bytes > EARLY_PAYLOAD_BYTES_MAX {
            self.pop_oldest();
        }
    }

    fn expire(&mut self, now: u64) {
        while self
            .payloads
            .front()
            .is_some_and(|oldest| now - oldest.at > EARLY_PAYLOAD_TICKS)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(oldest) = self.payloads.pop_front() {
            self.bytes -= oldest.bytes;
        }
    }

    /// Removes and returns `group`'s payloads, oldest first.
    fn take(&mut self, group: GroupId) -> VecDeque<EarlyPayload> {
        if self.payloads.iter().all(|payload| payload.group != group) {
            return VecDeque::new();
        }
        let (taken, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.payloads)
            .into_iter()
            .partition(|payload| payload.group == group);
        self.payloads = kept;
        self.bytes = self.payloads.iter().map(|payload| payload.bytes).sum();
        taken
    }
}

impl Replicas {
    pub fn new() -> Rc<Replicas> {
        Rc::default()
    }

    /// Where the shard's transport hands payloads: to the replica of their group (a payload
    /// for a group not here is kept a while for it, see `Early`; one that is not an
    /// envelope is dropped like a lost one).
    pub fn deliver(self: &Rc<Self>) -> Deliver {
        let replicas: Weak<Replicas> = Rc::downgrade(self);
        Rc::new(move |from: Address, payload: Bytes| {
            if let Some(replicas) = replicas.upgrade() {
                replicas.receive(from, payload);
            }
        })
    }

    fn receive(&self, from: Address, payload: Bytes) {
        let bytes = payload.len();
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
        match replica {
            Some(replica) => replica.receive(from, envelope),
            None => self.early.borrow_mut().keep(EarlyPayload {
                group,
                from,
                envelope,
                bytes,
                at: self.now.get(),
            }),
        }
    }

    /// Adds `replica` and hands it what came for its group before it opened.
    pub fn insert(&self, replica: Rc<Replica>) {
        let group = replica.group();
        self.replicas.borrow_mut().insert(group, replica.clone());
        let early = self.early.borrow_mut().take(group);
        for payload in early {
            replica.receive(payload.from, payload.envelope);
        }
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
            self.early.borrow_mut().expire(now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ShardId;

    fn payload(group: GroupId, bytes: usize, at: u64) -> EarlyPayload {
        let from = Address {
            node: NodeId(2),
            shard: ShardId(0),
        };
        EarlyPayload {
            group,
            from,
            envelope: Envelope::Alive,
            bytes,
            at,
        }
    }

    fn groups(early: &Early) -> Vec<GroupId> {
        early.payloads.iter().map(|p| p.group).collect()
    }

    #[test]
    fn early_payloads_are_taken_by_group_in_order() {
        let mut early = Early::default();
        for (group, at) in [(1, 0), (2, 0), (1, 1), (3, 2)] {
            early.keep(payload(group, 10, at));
        }
        let taken: Vec<u64> = early.take(1).iter().map(|p| p.at).collect();
        assert_eq!(taken, [0, 1]);
        assert_eq!(groups(&early), [2, 3]);
        assert_eq!(early.bytes, 20);
        assert!(early.take(1).is_empty());
    }

    #[test]
    fn early_payloads_age_out_and_the_oldest_make_room() {
        let mut early = Early::default();
        early.keep(payload(1, 10, 0));
        early.keep(payload(2, 10, 5));
        early.expire(EARLY_PAYLOAD_TICKS);
        assert_eq!(groups(&early), [1, 2]);
        early.expire(EARLY_PAYLOAD_TICKS + 1);
        assert_eq!(groups(&early), [2]);

        early.keep(payload(3, EARLY_PAYLOAD_BYTES_MAX - 10, 6));
        assert_eq!(
            (groups(&early), early.bytes),
            (vec![2, 3], EARLY_PAYLOAD_BYTES_MAX)
        );
        early.keep(payload(4, 1, 6));
        assert_eq!(groups(&early), [3, 4]);
        assert_eq!(early.bytes, EARLY_PAYLOAD_BYTES_MAX - 9);
    }
}
