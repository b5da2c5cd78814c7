//! A simulated network for deterministic tests: every node of a cluster in one thread.
//!
//! Each simulated shard gets a [`SimTransport`] from [`SimNetwork::attach`]. A payload sent
//! is dropped or given a delivery time (now plus a delay drawn from the seed, so payloads
//! overtake each other), and [`SimNetwork::run`] delivers it then, by sleeping on the
//! `runtime::clock`: under a `SimClock` the whole network moves only when the simulation
//! advances time, and the same seed gives the same drops, delays and order. Links can be cut
//! one way or both (a partition, an isolated node) and healed; a payload in flight over a
//! link that is cut when it arrives is lost, as on a real network.
//!
//! Per-shard: the network and its transports live on the one executor of the simulation.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{select, Either};

use super::{Address, Deliver, Transport, TransportStats};
use crate::ids::NodeId;
use crate::runtime::clock;
use crate::seeded::Seeded;
use crate::sync::{Latch, Notify};

/// What the network does to payloads, from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Chance that a payload is lost, per million.
    pub drop_per_million: u32,
    /// Delivery delays are drawn from `delay_min_ms..=delay_max_ms`.
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
}

impl Default for Faults {
    /// A healthy local network: nothing lost, 0 to 2 ms on the way.
    fn default() -> Faults {
        Faults {
            drop_per_million: 0,
            delay_min_ms: 0,
            delay_max_ms: 2,
        }
    }
}

/// A payload on its way.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    deliver_at_ms: i64,
    /// Sending order breaks ties, so that equal times deliver in a fixed order.
    sequence: u64,
    from: Address,
    to: Address,
    payload: Bytes,
}

struct State {
    random: Seeded,
    faults: Faults,
    inboxes: HashMap<Address, Deliver>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    /// Directed links that lose everything: (from node, to node).
    cut: BTreeSet<(NodeId, NodeId)>,
    next_sequence: u64,
}

/// The network of one simulation. See the module documentation.
pub struct SimNetwork {
    state: RefCell<State>,
    /// Rung when a payload is scheduled, so that `run` looks at the earliest again.
    scheduled: Notify,
    stats: TransportStats,
}

/// One simulated shard's end of the network.
#[derive(Clone)]
pub struct SimTransport {
    network: Rc<SimNetwork>,
    local: Address,
}

impl SimNetwork {
    pub fn new(seed: u64, faults: Faults) -> Rc<SimNetwork> {
        assert!(faults.delay_min_ms <= faults.delay_max_ms, "a delay range");
        Rc::new(SimNetwork {
            state: RefCell::new(State {
                random: Seeded::new(seed),
                faults,
                inboxes: HashMap::new(),
                in_flight: BinaryHeap::new(),
                cut: BTreeSet::new(),
                next_sequence: 0,
            }),
            scheduled: Notify::new(),
            stats: TransportStats::default(),
        })
    }

    /// Connects the shard `local`: payloads for it go to `deliver`. Attaching an address
    /// again replaces its inbox (a restarted node).
    pub fn attach(self: &Rc<Self>, local: Address, deliver: Deliver) -> SimTransport {
        self.state.borrow_mut().inboxes.insert(local, deliver);
        SimTransport {
            network: self.clone(),
            local,
        }
    }

    /// Disconnects the shard `local` (a node that died): payloads for it are lost.
    pub fn detach(&self, local: Address) {
        self.state.borrow_mut().inboxes.remove(&local);
    }

    pub fn set_faults(&self, faults: Faults) {
        assert!(faults.delay_min_ms <= faults.delay_max_ms, "a delay range");
        self.state.borrow_mut().faults = faults;
    }

    /// Loses everything from `from` to `to` until healed.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.state.borrow_mut().cut.insert((from, to));
    }

    /// Cuts both ways between every node of `side` and every node of `other`.
    pub fn partition(&self, side: &[NodeId], other: &[NodeId]) {
        for a in side {
            for b in other {
                self.cut(*a, *b);
                self.cut(*b, *a);
            }
        }
    }

    pub fn heal(&self, from: NodeId, to: NodeId) {
        self.state.borrow_mut().cut.remove(&(from, to));
    }

    pub fn heal_all(&self) {
        self.state.borrow_mut().cut.clear();
    }

    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Payloads on their way.
    pub fn in_flight(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    fn schedule(&self, from: Address, to: Address, payload: Bytes) {
        let mut state = self.state.borrow_mut();
        let faults = state.faults;
        if state.cut.contains(&(from.node, to.node)) || state.random.chance(faults.drop_per_million)
        {
            self.stats.dropped.set(self.stats.dropped.get() + 1);
            return;
        }
        let spread = faults.delay_max_ms - faults.delay_min_ms + 1;
        let delay = faults.delay_min_ms + state.random.below(spread);
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        state.in_flight.push(Reverse(InFlight {
            deliver_at_ms: clock::now_ms() + delay as i64,
            sequence,
            from,
            to,
            payload,
        }));
        self.stats.sent.set(self.stats.sent.get() + 1);
        drop(state);
        self.scheduled.notify_all();
    }

    /// The payloads due by now, taken off the schedule in delivery order, with their inboxes;
    /// a payload over a link cut meanwhile, or for a detached shard, is lost.
    fn take_due(&self) -> Vec<(Deliver, Address, Bytes)> {
        let now = clock::now_ms();
        let mut state = self.state.borrow_mut();
        let mut due = Vec::new();
        while state
            .in_flight
            .peek()
            .is_some_and(|Reverse(next)| next.deliver_at_ms <= now)
        {
            let Reverse(message) = state.in_flight.pop().expect("peeked");
            let cut = state.cut.contains(&(message.from.node, message.to.node));
            match state.inboxes.get(&message.to) {
                Some(deliver) if !cut => due.push((deliver.clone(), message.from, message.payload)),
                _ => self.stats.dropped.set(self.stats.dropped.get() + 1),
            }
        }
        due
    }

    /// Delivers payloads at their times until `stop` is raised. Run it as one task.
    pub async fn run(self: Rc<Self>, stop: Rc<Latch>) {
        while !stop.is_raised() {
            // Registered before the schedule is read, so that a payload scheduled meanwhile
            // is not missed.
            let scheduled = self.scheduled.notified();
            for (deliver, from, payload) in self.take_due() {
                self.stats.received.set(self.stats.received.get() + 1);
                deliver(from, payload);
            }
            let next = self
                .state
                .borrow()
                .in_flight
                .peek()
                .map(|Reverse(next)| next.deliver_at_ms);
            let wake = async move {
                match next {
                    Some(at) => {
                        let wait = (at - clock::now_ms()).max(0) as u64;
                        clock::sleep(Duration::from_millis(wait)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let woken = select(Box::pin(wake), Box::pin(scheduled));
            if let Either::Right(_) = select(Box::pin(woken), Box::pin(stop.wait())).await {
                return;
            }
        }
    }
}

impl Transport for SimTransport {
    fn local(&self) -> Address {
        self.local
    }

    fn send(&self, to: Address, payload: Bytes) {
        assert_ne!(to.node, self.local.node, "a node does not send to itself");
        self.network.schedule(self.local, to, payload);
    }
}
