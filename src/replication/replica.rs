//! One replica of a Raft group: a raft-rs `RawNode` over a partition's log, driven by one
//! task on the shard that owns the partition.
//!
//! The driver alone steps the node. Ticks (from the shard's one timer), messages from peers,
//! proposals and copy requests are queued and stepped between readies, never while a
//! `Ready` is being handled (raft-rs forbids it), and the work of a ready is done in the
//! order Raft's safety needs:
//!
//! 1. messages a leader may send before its own append is durable (appends to followers
//!    go out in parallel with the leader's own fdatasync);
//! 2. a snapshot from the leader: the log is cut to the committed prefix (the same on every
//!    replica), the missing batches are copied from a peer, and the window restarts at the
//!    snapshot (see `window`);
//! 3. entries: a conflicting suffix is cut from the log, then each entry is stamped at the
//!    log end (see `entries`) and staged;
//! 4. one fdatasync for all of them, then the term and vote, if they changed, in the anchor;
//! 5. only then the messages that promise persistence (append acknowledgements, votes);
//! 6. committed entries: the commit point, and so the high watermark, moves, and proposals
//!    waiting for those entries are answered with their offsets.
//!
//! A proposal is answered once its entry is committed and applied here, or with an error
//! when the entry at its index turns out to be another term's (leadership moved and the new
//! leader did not keep it). Election timeouts are drawn from the replica's seed, not from
//! raft-rs's thread-local generator, so that a simulation replays exactly.
//!
//! Per-shard: a replica lives on the shard that owns its partition.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::{select, Either};
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeV2, Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};

use super::entries;
use super::logger;
use super::membership::{self, Membership, Step, Target};
use super::message::{Copied, Envelope, GroupId};
use super::window::{decode_log_start, decode_position, Anchor, Window, WindowStorage};
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::limits;
use crate::metadata::topic_config::TopicConfig;
use crate::partition::producer_state::{
    last_sequence, stored_batch_producer, Checked, ProducerAppend, ProducerBatch, ProducerError,
};
use crate::partition::{Partition, ShardContext, TopicPartition};
use crate::protocol::{record_batch, records};
use crate::runtime::{self, clock};
use crate::seeded::Seeded;
use crate::storage::{batch_meta, BatchMeta, Log, StorageError};
use crate::sync::Notify;
use crate::transport::{Address, Transport};

/// How a replica runs; the defaults are `limits`' figures, a simulation may shrink them.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// A leader with nothing to do for this many ticks quiesces its group (see `quiesce`).
    pub quiesce_ticks: u64,
    pub window_bytes_max: u64,
    pub copy_timeout: Duration,
    pub anchor_lag_entries_max: u64,
    /// A follower that has not caught up with the leader's commit point for this many
    /// ticks is out of sync (Kafka's `replica.lag.time.max.ms`).
    pub lag_ticks_max: u64,
}

impl Default for ReplicaConfig {
    fn default() -> ReplicaConfig {
        ReplicaConfig {
            election_ticks: limits::REPLICATION_ELECTION_TICKS,
            heartbeat_ticks: limits::REPLICATION_HEARTBEAT_TICKS,
            quiesce_ticks: limits::REPLICATION_QUIESCE_TICKS,
            window_bytes_max: limits::REPLICA_WINDOW_BYTES_MAX,
            copy_timeout: Duration::from_millis(limits::REPLICA_COPY_TIMEOUT_MS),
            anchor_lag_entries_max: limits::REPLICA_ANCHOR_LAG_ENTRIES_MAX,
            lag_ticks_max: limits::REPLICA_LAG_TIME_MAX_MS / limits::REPLICATION_TICK_MS,
        }
    }
}

/// Who this replica is and who its peers are.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    pub group: GroupId,
    pub me: NodeId,
    /// The group's voters when it is first created (the anchor keeps them after); none for
    /// a replica joining an existing group, which waits for the leader to add it.
    pub voters: Vec<NodeId>,
    /// Where each other replica of the group lives.
    pub peers: HashMap<NodeId, Address>,
    /// Seeds the election timeouts.
    pub seed: u64,
}

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("not committed: leadership moved and the entry was replaced")]
    NotCommitted,
    #[error("the replica stopped")]
    Stopped,
    /// An idempotent producer's batch out of sequence or of a fenced epoch.
    #[error("{0}")]
    Producer(#[from] ProducerError),
}

/// Where a committed proposal's batch lies in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub base_offset: Offset,
    pub last_offset: Offset,
}

/// When a proposal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Once the group committed its entry: a majority has it on disk.
    Committed,
    /// Once its entry is on this leader's disk (Kafka's acks=1): a leader that loses its
    /// leadership before a majority has the entry may lose it.
    DurableHere,
}

/// Where a proposal's outcome goes, and when.
struct Answer {
    tx: oneshot::Sender<Result<Committed, ProposeError>>,
    until: Until,
}

impl Answer {
    fn send(self, outcome: Result<Committed, ProposeError>) {
        let _ = self.tx.send(outcome);
    }
}

struct Waiter {
    /// The term the entry at the waited index must have: if another term's entry took its
    /// place, what was proposed is lost.
    term: u64,
    answer: Answer,
    /// For the retry of a batch the log holds already: its offsets, committed once the
    /// waited index is.
    duplicate_of: Option<(Offset, Offset)>,
}

impl Waiter {
    /// Where the entry waited for at `index` lies, now that `window` holds it there (or
    /// NotCommitted when another term's entry took its place). `index` may be the window's
    /// base: a leader whose followers have its whole log compacts its window up to the last
    /// applied entry, which is where the retry of a committed batch waits.
    fn outcome(&self, window: &Window, index: u64) -> Result<Committed, ProposeError> {
        if window.term_of(index) != Some(self.term) {
            return Err(ProposeError::NotCommitted);
        }
        let (base_offset, last_offset) = self
            .duplicate_of
            .unwrap_or_else(|| (window.end_of(index - 1), window.end_of(index) - 1));
        Ok(Committed {
            index,
            base_offset,
            last_offset,
        })
    }
}

/// Work queued for the driver (see the module documentation).
#[derive(Default)]
struct Pending {
    ticks: u32,
    messages: Vec<Message>,
    /// Batches to propose; `true` once a read index confirmed this replica still led after
    /// they arrived (see `confirm_refusal`).
    proposals: Vec<(Bytes, Answer, bool)>,
    copy_requests: Vec<(Address, u64, Offset, Offset)>,
    /// Followers a snapshot message was sent to: reported finished, so that the leader
    /// probes them again (and sends another snapshot if this one was lost).
    snapshots_sent: Vec<u64>,
    /// Hand the leadership to the most caught-up follower (a leader about to stop).
    transfer_leadership: bool,
    /// Start an election now instead of at the election timeout.
    campaign: bool,
    /// The leader said it quiesces: (leader, its term, its commit index).
    quiesce: Option<(NodeId, u64, u64)>,
}

/// See the module documentation.
pub struct Replica {
    group: GroupId,
    me: NodeId,
    peers: RefCell<HashMap<NodeId, Address>>,
    transport: Rc<dyn Transport>,
    config: ReplicaConfig,
    node: RefCell<RawNode<WindowStorage>>,
    window: Rc<RefCell<Window>>,
    partition: Rc<Partition>,
    pending: RefCell<Pending>,
    wake: Notify,
    waiters: RefCell<BTreeMap<u64, Vec<Waiter>>>,
    copies: RefCell<HashMap<u64, oneshot::Sender<Copied>>>,
    /// Batches whose refusal waits for a read index, by its context (see `confirm_refusal`).
    confirming: RefCell<HashMap<u64, (Bytes, Answer)>>,
    next_read: Cell<u64>,
    next_copy_id: Cell<u64>,
    applied: Cell<u64>,
    /// The base index the anchor on disk holds.
    anchored_base: Cell<u64>,
    /// Set by `want_anchor`: the driver writes the anchor once more.
    anchor_wanted: Cell<bool>,
    random: RefCell<Seeded>,
    /// The (term, leader) last logged.
    leadership: Cell<(u64, u64)>,
    /// Whether this replica led after the last ready.
    leading: Cell<bool>,
    /// Whether it led and had committed an entry of its term after the last ready.
    serving: Cell<bool>,
    /// Notified when the (term, leader) this replica knows, whether it leads, or (on the
    /// leader) the replicas in sync change.
    moved: Notify,
    /// The replicas in sync when the driver last looked (see `in_sync`).
    in_sync: RefCell<Vec<NodeId>>,
    /// Ticks since open: the clock of `followers`.
    ticks: Cell<u64>,
    /// On the leader, per follower's raft id: the tick it was last heard from, and the
    /// last tick it had caught up with the commit point.
    followers: RefCell<HashMap<u64, Heard>>,
    /// Snapshots installed since open (a follower caught up by copying).
    snapshots_installed: Cell<u64>,
    /// On the leader: the node its leadership is being handed to, until which tick (see
    /// `transfer_to`).
    handing_to: Cell<Option<(NodeId, u64)>>,
    /// On the leader: the voters the group is being moved to (see `reconfigure`).
    reconfiguring: RefCell<Option<BTreeSet<NodeId>>>,
    /// On the leader: the nodes that follow the group as learners (see `observe`).
    observers: RefCell<BTreeSet<NodeId>>,
    /// The group is idle and takes no ticks (see `quiesce`).
    quiescent: Cell<bool>,
    /// Woken from quiescence since the driver last stepped.
    stirred: Cell<bool>,
    /// On the leader: ticks in a row with nothing to do (see `is_calm`).
    calm_ticks: Cell<u64>,
    stopped: Cell<bool>,
}

/// raft-rs ids are nonzero; node ids start at 0.
pub fn raft_id(node: NodeId) -> u64 {
    u64::try_from(node.get()).expect("node ids are not negative") + 1
}

pub fn node_of(raft_id: u64) -> NodeId {
    NodeId(i32::try_from(raft_id - 1).expect("raft ids come from node ids"))
}

impl Replica {
    /// Opens the replica over `log` (its anchor read or created, its window rebuilt) and
    /// starts its driver.
    pub async fn open(
        spec: ReplicaSpec,
        tp: TopicPartition,
        topic_config: TopicConfig,
        log: Rc<Log>,
        shard: Rc<ShardContext>,
        transport: Rc<dyn Transport>,
        config: ReplicaConfig,
    ) -> Result<Rc<Replica>, StorageError> {
        let dir = log.dir().to_path_buf();
        let anchor = match Anchor::load(&dir).await? {
            Some(anchor) => anchor,
            None => {
                let voters = spec.voters.iter().map(|node| raft_id(*node)).collect();
                let anchor = Anchor::new(log.log_start_offset(), voters);
                anchor.write(&dir).await?;
                anchor
            }
        };
        // An install that restarted the log (see `restart_log`) wrote the anchor first: a
        // crash before the log reached the anchor's base leaves it shorter. It restarts at
        // the offset the anchor names (again, if the crash came before the restart) and the
        // driver copies the rest before it steps (`finish_restart`). An anchor written before
        // it named that offset starts the log at the base.
        let unfinished = log.log_end_offset() < anchor.base_end;
        if unfinished {
            match anchor.restarted_at {
                Some(at) if log.log_start_offset() != at || log.log_end_offset() < at => {
                    log.restart_at(at).await?
                }
                Some(_) => {}
                None => log.restart_at(anchor.base_end).await?,
            }
        }
        // Retention keeps what a restart rebuilds the window from, and what a lagging peer
        // may still copy.
        log.set_retention_floor(anchor.base_end.min(log.log_end_offset()));
        let batches = match log.log_end_offset() < anchor.base_end {
            true => Vec::new(),
            false => read_from(&log, anchor.base_end).await?,
        };
        let window = Window::rebuild(&anchor, &batches)?;
        let commit = window.hard_state().commit;
        let commit_end = window.end_of(commit);
        let partition = Partition::open_replica(tp, topic_config, log, shard, commit_end).await?;
        let raft_config = raft::Config {
            id: raft_id(spec.me),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: commit,
            max_size_per_msg: limits::REPLICATION_MESSAGE_BYTES_MAX,
            max_inflight_msgs: limits::REPLICATION_INFLIGHT_MESSAGES_MAX,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let window = Rc::new(RefCell::new(window));
        let storage = WindowStorage(window.clone());
        let node = RawNode::new(&raft_config, storage, &logger::for_group(spec.group))
            .map_err(|error| StorageError::Corrupt(format!("raft state: {error}")))?;
        let replica = Rc::new(Replica {
            group: spec.group,
            me: spec.me,
            peers: RefCell::new(spec.peers),
            transport,
            config,
            node: RefCell::new(node),
            window,
            partition,
            pending: RefCell::default(),
            wake: Notify::new(),
            waiters: RefCell::default(),
            copies: RefCell::default(),
            confirming: RefCell::default(),
            next_read: Cell::new(0),
            next_copy_id: Cell::new(0),
            applied: Cell::new(commit),
            anchored_base: Cell::new(anchor.base_index),
            anchor_wanted: Cell::new(false),
            random: RefCell::new(Seeded::new(spec.seed)),
            leadership: Cell::new((0, 0)),
            leading: Cell::new(false),
            serving: Cell::new(false),
            moved: Notify::new(),
            in_sync: RefCell::default(),
            ticks: Cell::new(0),
            followers: RefCell::default(),
            snapshots_installed: Cell::new(0),
            handing_to: Cell::new(None),
            reconfiguring: RefCell::new(None),
            observers: RefCell::default(),
            quiescent: Cell::new(false),
            stirred: Cell::new(false),
            calm_ticks: Cell::new(0),
            stopped: Cell::new(false),
        });
        replica.draw_election_timeout();
        replica.reapply_log_start().await?;
        runtime::spawn_local(replica.clone().drive()).detach();
        Ok(replica)
    }

    /// Whether the group has replicas besides this one (it can hand its leadership over).
    pub fn has_peers(&self) -> bool {
        !self.peers.borrow().is_empty()
    }

    /// Where the other replicas of the group live, now that they changed (a reassignment).
    pub fn set_peers(&self, peers: HashMap<NodeId, Address>) {
        *self.peers.borrow_mut() = peers;
    }

    /// The group's members as the configuration this replica applied has them.
    pub fn membership(&self) -> Membership {
        Membership::of(self.window.borrow().conf_state())
    }

    /// Whether this replica leads a group whose voters are exactly `target` and every one
    /// of them applied the change that made them so (each answered with a commit point at
    /// or past it, which a replica says only once it applied it: see `send`).
    /// Until then the voters that left may still be needed: a voter that has not applied
    /// the end of a joint configuration elects by the old voters as well.
    pub fn settled(&self, target: &BTreeSet<NodeId>) -> bool {
        if !self.membership().is(target) {
            return false;
        }
        let since = self.window.borrow().conf_index();
        let node = self.node.borrow();
        let raft = &node.raft;
        raft.state == StateRole::Leader
            && target.iter().all(|voter| {
                (raft.prs().get(raft_id(*voter))).is_some_and(|p| p.committed_index >= since)
            })
    }

    /// Has a leader move the group's voters to `target` by membership changes, one committed
    /// step at a time (see `membership`), until they are the target or another target is
    /// given. Nothing happens on a follower.
    pub fn reconfigure(&self, target: BTreeSet<NodeId>) {
        *self.reconfiguring.borrow_mut() = Some(target);
        self.stir();
    }

    /// Has a leader add `observers` to the group as learners that stay learners (the
    /// broker-only nodes following the metadata log), one committed change at a time.
    pub fn observe(&self, observers: BTreeSet<NodeId>) {
        if *self.observers.borrow() != observers {
            *self.observers.borrow_mut() = observers;
            self.stir();
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn partition(&self) -> &Rc<Partition> {
        &self.partition
    }

    pub fn is_leader(&self) -> bool {
        self.node.borrow().raft.state == StateRole::Leader
    }

    /// Whether this replica leads and has committed an entry of its term: every entry of
    /// earlier terms it keeps is then below its high watermark, so that its log can be read
    /// whole (a group coordinator loads its groups from it).
    pub fn committed_in_term(&self) -> bool {
        let node = self.node.borrow();
        let log = &node.raft.raft_log;
        node.raft.state == StateRole::Leader && log.term(log.committed).ok() == Some(node.raft.term)
    }

    /// Whether this replica leads and has appended its term's first entry: its log then
    /// holds every entry of earlier terms it will keep, so it may serve reads and writes.
    pub fn leads_in_term(&self) -> bool {
        let node = self.node.borrow();
        node.raft.state == StateRole::Leader && self.window.borrow().last_term() == node.raft.term
    }

    /// The node this replica is on.
    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn term(&self) -> u64 {
        self.node.borrow().raft.term
    }

    /// The leader epoch of this replica's term (what its leader reports, and stamps batches
    /// with).
    pub fn leader_epoch(&self) -> LeaderEpoch {
        entries::term_epoch(self.term())
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<NodeId> {
        let leader = self.node.borrow().raft.leader_id;
        (leader != raft::INVALID_ID).then(|| node_of(leader))
    }

    /// The replicas in sync with this leader, itself first (Kafka's ISR): the followers it
    /// heard from within an election timeout that had caught up with its commit point within
    /// `lag_ticks_max`. Empty on a follower.
    pub fn in_sync(&self) -> Vec<NodeId> {
        let node = self.node.borrow();
        let raft = &node.raft;
        if raft.state != StateRole::Leader {
            return Vec::new();
        }
        let now = self.ticks.get();
        let followers = self.followers.borrow();
        let mut in_sync: Vec<u64> = raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .filter(|id| *id != raft.id)
            .filter(|id| {
                followers.get(id).is_some_and(|heard| {
                    now - heard.at <= self.config.election_ticks as u64
                        && heard
                            .caught_up_at
                            .is_some_and(|at| now - at <= self.config.lag_ticks_max)
                })
            })
            .collect();
        in_sync.sort_unstable();
        std::iter::once(self.me)
            .chain(in_sync.into_iter().map(node_of))
            .collect()
    }

    /// What this replica, if it leads, knows of its group (DescribeQuorum): its term, its
    /// high watermark and, per voter and learner, how far its log reaches and how long ago
    /// it was heard from and had caught up with the commit point. None on a follower.
    pub fn group_state(&self) -> Option<GroupState> {
        let node = self.node.borrow();
        let raft = &node.raft;
        if raft.state != StateRole::Leader {
            return None;
        }
        let window = self.window.borrow();
        let now = self.ticks.get();
        let followers = self.followers.borrow();
        let ago = |tick: u64| (now - tick) * limits::REPLICATION_TICK_MS;
        let state_of = |id: u64| {
            if id == raft.id {
                return VoterState {
                    node: self.me,
                    log_end: Some(window.end_offset()),
                    heard_ms_ago: Some(0),
                    caught_up_ms_ago: Some(0),
                };
            }
            let matched = raft.prs().get(id).map_or(0, |progress| progress.matched);
            let in_window = (window.base_index()..=window.last_index()).contains(&matched);
            let heard = followers.get(&id);
            VoterState {
                node: node_of(id),
                log_end: in_window.then(|| window.end_of(matched)),
                heard_ms_ago: heard.map(|heard| ago(heard.at)),
                caught_up_ms_ago: heard.and_then(|heard| heard.caught_up_at.map(ago)),
            }
        };
        let conf = raft.prs().conf();
        let mut voters: Vec<VoterState> = conf.voters().ids().iter().map(state_of).collect();
        voters.sort_by_key(|voter| voter.node);
        let mut observers: Vec<VoterState> =
            conf.learners().iter().copied().map(state_of).collect();
        observers.sort_by_key(|observer| observer.node);
        Some(GroupState {
            leader: self.me,
            term: raft.term,
            high_watermark: self.partition.high_watermark(),
            voters,
            observers,
        })
    }

    /// Completes at the next change of the (term, leader) this replica knows, of whether it
    /// leads (or has committed in its term), or of the replicas in sync with it. Take it
    /// before reading the state it is to follow.
    pub fn leadership_moved(&self) -> crate::sync::Notified<'_> {
        self.moved.notified()
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.get()
    }

    /// Proposes a validated client batch (its offset and epoch are stamped on the way) and
    /// answers where it lies once it is committed.
    pub async fn propose(&self, batch: Bytes) -> Result<Committed, ProposeError> {
        self.propose_until(batch, Until::Committed).await
    }

    /// `propose`, answered at `until`: the answer of `Until::DurableHere` gives the offsets
    /// the entry has in this leader's log, which no other replica may hold yet. The proposal
    /// is made by the call, so that proposals come in the order of the calls, whenever their
    /// answers are awaited.
    pub fn propose_until(
        &self,
        batch: Bytes,
        until: Until,
    ) -> impl std::future::Future<Output = Result<Committed, ProposeError>> + 'static {
        let answered = (!self.stopped.get()).then(|| {
            let (tx, answered) = oneshot::channel();
            let answer = Answer { tx, until };
            self.pending
                .borrow_mut()
                .proposals
                .push((batch, answer, false));
            self.stir();
            answered
        });
        async move {
            match answered {
                Some(answered) => answered.await.unwrap_or(Err(ProposeError::Stopped)),
                None => Err(ProposeError::Stopped),
            }
        }
    }

    /// Proposes moving every replica's log start up to `log_start` (DeleteRecords, retention),
    /// answered once the move is committed and applied here.
    pub async fn propose_log_start(&self, log_start: Offset) -> Result<Committed, ProposeError> {
        self.propose(entries::log_start_entry(log_start)).await
    }

    /// Whether the group is quiescent here: idle, with no heartbeats (on its leader) and no
    /// election timer (on its followers). The shard's timer does not tick it, and stirs it
    /// when a peer's node falls silent (`Replicas::tick`).
    pub fn is_quiescent(&self) -> bool {
        self.quiescent.get()
    }

    /// Wakes the group from quiescence (anything to do, a peer's node silent) and the
    /// driver.
    pub fn stir(&self) {
        if self.quiescent.replace(false) {
            self.stirred.set(true);
        }
        self.wake.notify_all();
    }

    /// The log cleaner's wish: the durable base (the anchor) moved up to the window's, so
    /// that the log below it, which no restart rebuilds the window from, may be compacted
    /// (`partition::cleaner` cleans a replica's log below its retention floor, the anchor's
    /// base). The driver writes the anchor when it next runs.
    pub fn want_anchor(&self) {
        if self.anchored_base.get() < self.window.borrow().base_index() {
            self.anchor_wanted.set(true);
            self.wake.notify_all();
        }
    }

    /// Where the other replicas of the group are.
    pub fn peers(&self) -> std::cell::Ref<'_, HashMap<NodeId, Address>> {
        self.peers.borrow()
    }

    /// One tick of Raft's clock (the shard's timer calls it for every replica).
    pub fn tick(&self) {
        self.pending.borrow_mut().ticks += 1;
        self.wake.notify_all();
    }

    /// A payload from a peer, for the driver.
    pub fn receive(&self, from: Address, envelope: Envelope) {
        match envelope {
            Envelope::Raft(_, message) if !self.may_vote_for(&message) => {
                let group = self.group;
                let from = node_of(message.from);
                tracing::debug!(group, %from, "vote request of a node outside the configuration dropped");
                return;
            }
            Envelope::Raft(_, message) => {
                let answers = matches!(
                    message.get_msg_type(),
                    MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
                );
                // The answers to a quiescent leader's last heartbeat arrive after it
                // quiesced, and change nothing.
                let news = !answers || message.reject || message.commit < self.applied.get();
                if self.quiescent.get() && !news {
                    self.pending.borrow_mut().messages.push(*message);
                    self.wake.notify_all();
                    return;
                }
                if answers {
                    let now = self.ticks.get();
                    let mut followers = self.followers.borrow_mut();
                    let heard = followers.entry(message.from).or_insert(Heard {
                        at: now,
                        caught_up_at: None,
                    });
                    heard.at = now;
                }
                let mut pending = self.pending.borrow_mut();
                // A peer that floods is dropped from, as a lossy link would: Raft resends.
                if pending.messages.len() >= limits::REPLICA_PENDING_MESSAGES_MAX {
                    return;
                }
                pending.messages.push(*message);
            }
            Envelope::CopyRequest {
                id,
                from: start,
                to,
                ..
            } => {
                let mut pending = self.pending.borrow_mut();
                if pending.copy_requests.len() >= limits::REPLICA_PENDING_MESSAGES_MAX {
                    return;
                }
                pending.copy_requests.push((from, id, start, to));
            }
            Envelope::CopyReply { id, copied, .. } => {
                if let Some(waiting) = self.copies.borrow_mut().remove(&id) {
                    let _ = waiting.send(copied);
                }
                return;
            }
            Envelope::Quiesce { term, commit, .. } => {
                self.pending.borrow_mut().quiesce = Some((from.node, term, commit));
                self.wake.notify_all();
                return;
            }
            Envelope::Alive => return,
        }
        self.stir();
    }

    /// Whether a vote (or pre-vote) request may reach raft-rs: only between voters of the
    /// configuration this replica applied. raft-rs takes a configuration as applied, not as
    /// appended, so a candidate may count by one the group has left (a removed voter that
    /// missed its removal); and a replica the group removed must not help elect anyone.
    /// Other messages pass.
    fn may_vote_for(&self, message: &Message) -> bool {
        let asks = matches!(
            message.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        );
        if !asks {
            return true;
        }
        let window = self.window.borrow();
        let conf = window.conf_state();
        let voter = |id: u64| conf.voters.contains(&id) || conf.voters_outgoing.contains(&id);
        voter(message.from) && voter(raft_id(self.me))
    }

    /// A leader about to stop hands its leadership to the live follower whose log is furthest
    /// along (raft-rs's leadership transfer: that follower campaigns at once, without waiting
    /// for an election timeout). Nothing happens on a follower, or with no live follower.
    pub fn transfer_leadership(&self) {
        self.pending.borrow_mut().transfer_leadership = true;
        self.stir();
    }

    /// A leader hands its leadership to the replica on `to` (a preferred leader back in
    /// sync), for up to `REPLICA_HAND_OVER_TICKS_MAX`: each time the leader streams entries
    /// to `to` and no transfer is under way, raft-rs is asked to transfer (it pauses
    /// proposals, brings `to` up to date and tells it to campaign at once). A transfer
    /// raft-rs gave up on (its message to `to` lost, say: it ends after an election timeout)
    /// is asked again; waiting for `to` to be streamed to, not probed or sent a snapshot,
    /// keeps the pause short. Nothing happens on a follower, or when `to` is not a voter of
    /// the group.
    pub fn transfer_to(&self, to: NodeId) {
        let until = self.ticks.get() + limits::REPLICA_HAND_OVER_TICKS_MAX;
        self.handing_to.set(Some((to, until)));
        self.stir();
    }

    /// Hands the leadership over (`transfer_leadership`) until this replica no longer leads
    /// or stops; bound it with a timeout, as without a live follower it never completes.
    pub async fn hand_over(&self) {
        while self.is_leader() && !self.is_stopped() {
            let moved = self.leadership_moved();
            self.transfer_leadership();
            moved.await;
        }
    }

    /// Starts an election now rather than after an election timeout: a new group's
    /// preferred leader does, so that the group serves at once (a single replica becomes
    /// leader at once; with pre-vote, a live leader keeps its lease).
    pub fn campaign(&self) {
        self.pending.borrow_mut().campaign = true;
        self.stir();
    }

    /// Stops the driver: waiting proposals are answered `Stopped`, and whoever follows its
    /// leadership is woken. The partition stays open for its owner to close.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake.notify_all();
        self.moved.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    async fn drive(self: Rc<Self>) {
        if let Err(error) = self.finish_restart().await {
            if !matches!(error, StorageError::Closed) {
                tracing::error!(group = self.group, %error, "replica failed; it stops");
            }
            self.stopped.set(true);
        }
        loop {
            let woken = self.wake.notified();
            if self.stopped.get() {
                break;
            }
            self.step_pending();
            self.check_in_sync();
            let has_ready = self.node.borrow().has_ready();
            if has_ready || self.anchor_wanted.get() {
                let done = match has_ready {
                    true => self.handle_ready().await,
                    false => self.compact().await,
                };
                if let Err(error) = done {
                    // A log closed under the driver is its shard stopping or its topic
                    // deleted, not a failure.
                    if matches!(error, StorageError::Closed) {
                        tracing::debug!(group = self.group, "log closed; the replica stops");
                    } else {
                        tracing::error!(group = self.group, %error, "replica failed; it stops");
                    }
                    self.stopped.set(true);
                    break;
                }
                if has_ready {
                    self.leadership_changed();
                }
                continue;
            }
            if self.calm_ticks.get() >= self.config.quiesce_ticks {
                self.quiesce();
            }
            woken.await;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters.into_values().flatten() {
            waiter.answer.send(Err(ProposeError::Stopped));
        }
        for (_, answer, _) in std::mem::take(&mut self.pending.borrow_mut().proposals) {
            answer.send(Err(ProposeError::Stopped));
        }
        for (_, (_, answer)) in self.confirming.take() {
            answer.send(Err(ProposeError::Stopped));
        }
    }

    /// Steps everything queued for the node.
    fn step_pending(self: &Rc<Self>) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        // What a snapshot raft-rs takes while stepping tells a follower (see `install`).
        let log_start = self.partition.log_start_offset();
        self.window.borrow_mut().set_log_start(log_start);
        self.ticks.set(self.ticks.get() + u64::from(pending.ticks));
        self.with_node(|node| {
            if self.stirred.replace(false) {
                resume(node);
            }
            for _ in 0..pending.ticks {
                node.tick();
            }
            for message in pending.messages {
                if commits_past_log(node, &message) {
                    let from = node_of(message.from);
                    tracing::warn!(group = self.group, %from, commit = message.commit, "a heartbeat committing past this replica's log dropped: its leader knew an earlier replica here");
                    continue;
                }
                // Messages from unknown peers or stale terms are refused by raft-rs; a
                // refusal needs no answer (the sender resends or has moved on).
                let _ = node.step(message);
            }
            for follower in pending.snapshots_sent {
                node.report_snapshot(follower, SnapshotStatus::Finish);
            }
            if pending.campaign {
                // Refused (as a campaign by a learner would be): the timeout elects instead.
                let _ = node.campaign();
            }
            if pending.transfer_leadership {
                if let Some(follower) = most_caught_up_follower(node) {
                    node.transfer_leader(follower);
                }
            }
            if let Some((to, until)) = self.handing_to.get() {
                let leads = node.raft.state == StateRole::Leader;
                if !leads || self.ticks.get() > until {
                    self.handing_to.set(None);
                } else if node.raft.lead_transferee.is_none() && is_streaming_to(node, to) {
                    node.transfer_leader(raft_id(to));
                }
            }
            self.step_membership(node);
            if let Some((leader, term, commit)) = pending.quiesce {
                self.follow_quiescence(node, leader, term, commit);
            }
            match pending.proposals.is_empty() && self.is_calm(node) {
                true => self.calm_ticks.set(self.calm_ticks.get() + u64::from(pending.ticks)),
                false => self.calm_ticks.set(0),
            }
        });
        let mut accepted = HashMap::new();
        for (batch, answer, confirmed) in pending.proposals {
            self.propose_now(batch, answer, confirmed, &mut accepted);
        }
        for (to, id, from, end) in pending.copy_requests {
            let replica = self.clone();
            runtime::spawn_local(replica.serve_copy(to, id, from, end)).detach();
        }
    }

    /// Whether this leader's group has nothing to do: every entry committed and applied,
    /// every other replica streamed to with the whole log, told the commit point and heard
    /// from within an election timeout (a group with a replica down stays awake), no change
    /// of members or leader under way, nothing waiting. After `quiesce_ticks` of calm the
    /// leader quiesces.
    fn is_calm(&self, node: &RawNode<WindowStorage>) -> bool {
        let raft = &node.raft;
        let log = &raft.raft_log;
        let last = log.last_index();
        if raft.state != StateRole::Leader
            || log.committed != last
            || log.term(last).ok() != Some(raft.term)
            || self.applied.get() != last
            || raft.has_pending_conf()
            || raft.lead_transferee.is_some()
            || self.handing_to.get().is_some()
            || self.reconfiguring.borrow().is_some()
            || !self.waiters.borrow().is_empty()
            || !self.confirming.borrow().is_empty()
            || !self.copies.borrow().is_empty()
        {
            return false;
        }
        let members = raft.prs().conf().to_conf_state();
        let observers = self.observers.borrow();
        let learners: BTreeSet<NodeId> = members.learners.iter().map(|id| node_of(*id)).collect();
        if !observers.iter().all(|observer| learners.contains(observer)) {
            return false;
        }
        let now = self.ticks.get();
        let recent = self.config.election_ticks as u64;
        let followers = self.followers.borrow();
        raft.prs().iter().all(|(id, progress)| {
            *id == raft.id
                || (progress.state == ProgressState::Replicate
                    && progress.matched == last
                    && progress.committed_index == last
                    && followers
                        .get(id)
                        .is_some_and(|heard| now - heard.at <= recent))
        })
    }

    /// Quiesces a calm leader's group: tells every other replica, and takes no more ticks
    /// (no heartbeats) until something stirs it. Each follower that has exactly the
    /// leader's log quiesces too; one that does not keeps its election timer, and its
    /// campaign, when it comes, stirs the leader. Meanwhile the shard's `Alive` payloads
    /// stand in for the heartbeats: a follower whose leader's node falls silent is stirred,
    /// and elects a new leader as after any silence.
    fn quiesce(&self) {
        self.calm_ticks.set(0);
        let (term, commit, members) = {
            let node = self.node.borrow();
            let raft = &node.raft;
            let members: Vec<u64> = raft.prs().iter().map(|(id, _)| *id).collect();
            (raft.term, raft.raft_log.committed, members)
        };
        let envelope = Envelope::Quiesce {
            group: self.group,
            term,
            commit,
        }
        .encode();
        let peers = self.peers.borrow();
        for id in members.into_iter().filter(|id| *id != raft_id(self.me)) {
            if let Some(address) = peers.get(&node_of(id)) {
                self.transport.send(*address, envelope.clone());
            }
        }
        self.quiescent.set(true);
        tracing::trace!(group = self.group, term, commit, "quiescent");
    }

    /// A follower told by its leader that the group quiesces does so if it follows that
    /// leader in that term and has exactly its log, all of it committed and applied.
    fn follow_quiescence(
        &self,
        node: &RawNode<WindowStorage>,
        leader: NodeId,
        term: u64,
        commit: u64,
    ) {
        let raft = &node.raft;
        let log = &raft.raft_log;
        let follows = raft.state != StateRole::Leader
            && raft.term == term
            && raft.leader_id == raft_id(leader)
            && log.committed == commit
            && log.last_index() == commit
            && self.applied.get() == commit;
        if follows {
            self.quiescent.set(true);
        }
    }

    /// Takes the next step towards the voters of `reconfigure` and the observers of
    /// `observe`, if this replica leads, has committed in its term and no change is pending
    /// (raft-rs takes one at a time). A learner becomes a voter once the leader streams to
    /// it and it caught up with the commit point within the last election timeout.
    fn step_membership(&self, node: &mut RawNode<WindowStorage>) {
        let step = {
            let reconfiguring = self.reconfiguring.borrow();
            let observers = self.observers.borrow();
            if reconfiguring.is_none() && observers.is_empty() {
                return;
            }
            let raft = &node.raft;
            let log = &raft.raft_log;
            let serving =
                raft.state == StateRole::Leader && log.term(log.committed).ok() == Some(raft.term);
            if !serving || raft.has_pending_conf() {
                return;
            }
            let conf = Membership::of(&raft.prs().conf().to_conf_state());
            let target = Target {
                voters: reconfiguring.clone().unwrap_or_else(|| conf.voters.clone()),
                observers: observers.clone(),
            };
            let now = self.ticks.get();
            let recent = self.config.election_ticks as u64;
            let followers = self.followers.borrow();
            let caught_up = |learner: NodeId| {
                let heard = followers.get(&raft_id(learner));
                let caught_up_at = heard.and_then(|heard| heard.caught_up_at);
                is_streaming_to(node, learner) && caught_up_at.is_some_and(|at| now - at <= recent)
            };
            membership::next_step(&conf, self.me, &target, caught_up)
        };
        match step {
            Step::Wait => {}
            Step::Done => *self.reconfiguring.borrow_mut() = None,
            Step::HandOver(voters) => {
                let to = voters
                    .into_iter()
                    .find(|voter| is_streaming_to(node, *voter));
                if let Some(to) = to.filter(|_| node.raft.lead_transferee.is_none()) {
                    tracing::info!(group = self.group, %to, "handing the leadership to a voter of the new configuration");
                    node.transfer_leader(raft_id(to));
                }
            }
            Step::Propose(change) => {
                let group = self.group;
                match node.propose_conf_change(Vec::new(), change.clone()) {
                    Ok(()) => tracing::info!(group, ?change, "membership change proposed"),
                    Err(error) => tracing::debug!(group, %error, "membership change not proposed"),
                }
            }
        }
    }

    /// Proposes one batch, unless its idempotent producer's state refuses it or it is the
    /// retry of a batch the log holds (answered with that batch's offsets once committed).
    /// `accepted` holds the producers' batches proposed earlier in the same step: they are
    /// not in the log yet, and the next batch of the same producer must follow them.
    fn propose_now(
        &self,
        batch: Bytes,
        answer: Answer,
        confirmed: bool,
        accepted: &mut HashMap<i64, Accepted>,
    ) {
        let producer = stored_batch_producer(&batch).map(|(producer, _)| producer);
        let checked = match self.check_leader(producer.as_ref(), accepted) {
            Ok(checked) => checked,
            Err(ProposeError::Producer(_)) if !confirmed => {
                self.confirm_refusal(batch, answer);
                return;
            }
            Err(error) => {
                answer.send(Err(error));
                return;
            }
        };
        if let ProducerCheck::InFlight(index, term) = checked {
            self.wait(index, term, answer, None);
            return;
        }
        if let ProducerCheck::Duplicate(original) = checked {
            let node = self.node.borrow();
            let last = node.raft.raft_log.last_index();
            let term = node.raft.raft_log.term(last).unwrap_or(0);
            drop(node);
            let offsets = (original.base_offset, original.last_offset);
            self.wait(last, term, answer, Some(offsets));
            return;
        }
        let proposed = self.with_node(|node| {
            let mut message = Message::default();
            message.set_msg_type(MessageType::MsgPropose);
            message.from = node.raft.id;
            let entry = Entry {
                data: batch,
                ..Default::default()
            };
            message.set_entries(vec![entry].into());
            // Dropped while a leadership transfer is under way.
            let not_leader = ProposeError::NotLeader {
                leader: Some(self.me),
            };
            node.raft.step(message).map_err(|_| not_leader)?;
            Ok((node.raft.raft_log.last_index(), node.raft.term))
        });
        match proposed {
            Ok((index, term)) => {
                if let Some(producer) = producer {
                    let batch = Accepted {
                        epoch: producer.epoch,
                        first_seq: producer.first_seq,
                        last_seq: producer.last_seq,
                        index,
                        term,
                    };
                    accepted.insert(producer.producer_id, batch);
                }
                self.wait(index, term, answer, None);
            }
            Err(error) => {
                answer.send(Err(error));
            }
        }
    }

    /// A batch its producer's state refuses (out of sequence, a fenced epoch) is refused
    /// only once a read index has confirmed that this replica still led after the batch
    /// arrived: a deposed leader that does not know it yet (cut off from the others) holds a
    /// stale producer state, and its refusal would be wrong and fatal to the producer (the
    /// simulation found one answering OUT_OF_ORDER_SEQUENCE for batches a newer leader had
    /// acknowledged). Confirmed, the batch is checked again against the log as it is then.
    fn confirm_refusal(&self, batch: Bytes, answer: Answer) {
        // raft-rs drops a read index asked of a leader that has not committed an entry of its
        // term yet: such a leader answers as one not ready, and the producer retries.
        if !self.committed_in_term() {
            let not_ready = ProposeError::NotLeader {
                leader: Some(self.me),
            };
            answer.send(Err(not_ready));
            return;
        }
        let context = self.next_read.get();
        self.next_read.set(context + 1);
        self.confirming
            .borrow_mut()
            .insert(context, (batch, answer));
        self.with_node(|node| node.read_index(context.to_be_bytes().to_vec()));
    }

    /// Read indexes confirmed: their batches are proposed again, to be refused for good if
    /// their producer's state still refuses them.
    fn confirmed(&self, read_states: &[raft::ReadState]) {
        let mut pending = self.pending.borrow_mut();
        for state in read_states {
            let Ok(context) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            let confirmed = self
                .confirming
                .borrow_mut()
                .remove(&u64::from_be_bytes(context));
            if let Some((batch, answer)) = confirmed {
                pending.proposals.push((batch, answer, true));
            }
        }
        if !read_states.is_empty() {
            self.stir();
        }
    }

    /// Whether this replica leads and may take the batch of `producer`. A new leader takes
    /// no batch until it has appended its term's first entry: only then does its log, and so
    /// its producer state, hold every entry of earlier terms it will keep.
    fn check_leader(
        &self,
        producer: Option<&ProducerAppend>,
        accepted: &HashMap<i64, Accepted>,
    ) -> Result<ProducerCheck, ProposeError> {
        {
            let node = self.node.borrow();
            let leader = node.raft.leader_id;
            if node.raft.state != StateRole::Leader {
                let leader = (leader != raft::INVALID_ID).then(|| node_of(leader));
                return Err(ProposeError::NotLeader { leader });
            }
            if self.window.borrow().last_term() != node.raft.term {
                let leader = Some(self.me);
                return Err(ProposeError::NotLeader { leader });
            }
        }
        let Some(producer) = producer else {
            return Ok(ProducerCheck::New);
        };
        if let Some(earlier) = accepted.get(&producer.producer_id) {
            return earlier.check(producer);
        }
        match self.partition.check_producer(producer)? {
            Checked::New => Ok(ProducerCheck::New),
            Checked::Duplicate(original) => Ok(ProducerCheck::Duplicate(original)),
        }
    }

    /// Answers `answer` once the entry at `index` (of `term`) is committed, or durable here
    /// for `Until::DurableHere`; at once if it is already: `apply` and `answer_durable_here`
    /// answer only the waiters there when entries arrive, and on an idle group (the retry of
    /// a batch committed long ago) none may arrive for minutes.
    fn wait(&self, index: u64, term: u64, answer: Answer, duplicate_of: Option<(Offset, Offset)>) {
        let waiter = Waiter {
            term,
            answer,
            duplicate_of,
        };
        let window = self.window.borrow();
        let durable_here = waiter.answer.until == Until::DurableHere;
        if index <= self.applied.get() || (durable_here && index <= window.last_index()) {
            let outcome = waiter.outcome(&window, index);
            waiter.answer.send(outcome);
            return;
        }
        drop(window);
        self.waiters
            .borrow_mut()
            .entry(index)
            .or_default()
            .push(waiter);
    }

    /// Runs `step` on the node, then draws a new election timeout from the replica's seed
    /// if raft-rs drew one (it does whenever the term, role or leader changes).
    fn with_node<R>(&self, step: impl FnOnce(&mut RawNode<WindowStorage>) -> R) -> R {
        let watched = |node: &RawNode<WindowStorage>| {
            let raft = &node.raft;
            let timeout = raft.randomized_election_timeout();
            (raft.term, raft.state, raft.leader_id, timeout)
        };
        let mut node = self.node.borrow_mut();
        let before = watched(&node);
        let result = step(&mut node);
        let changed = watched(&node) != before;
        drop(node);
        if changed {
            self.draw_election_timeout();
        }
        result
    }

    fn draw_election_timeout(&self) {
        let ticks = self.config.election_ticks as u64;
        let timeout = ticks + self.random.borrow_mut().below(ticks);
        let mut node = self.node.borrow_mut();
        node.raft.set_randomized_election_timeout(timeout as usize);
    }

    /// After a ready: logs a new leader, and when this replica stopped leading, answers
    /// every waiting proposal NotLeader, as Kafka answers a produce waiting in purgatory
    /// when its leader moves. Whether such an entry commits is unknown until the new
    /// leader's log reaches this replica; an idempotent producer's retry finds out (it is
    /// answered as a duplicate if it did).
    /// Notes which followers have caught up with the commit point, and wakes whoever
    /// follows this replica when the replicas in sync changed.
    fn check_in_sync(&self) {
        {
            let node = self.node.borrow();
            let raft = &node.raft;
            let mut followers = self.followers.borrow_mut();
            if raft.state != StateRole::Leader {
                followers.clear();
            } else {
                let committed = raft.raft_log.committed;
                let now = self.ticks.get();
                for (id, heard) in followers.iter_mut() {
                    if raft.prs().get(*id).is_some_and(|p| p.matched >= committed) {
                        heard.caught_up_at = Some(now);
                    }
                }
            }
        }
        let now = self.in_sync();
        if *self.in_sync.borrow() != now {
            *self.in_sync.borrow_mut() = now;
            self.moved.notify_all();
        }
    }

    fn leadership_changed(&self) {
        let (now, leading) = {
            let node = self.node.borrow();
            let now = (node.raft.term, node.raft.leader_id);
            (now, node.raft.state == StateRole::Leader)
        };
        let moved = now != self.leadership.replace(now);
        if moved && now.1 != raft::INVALID_ID {
            let (term, leader) = (now.0, node_of(now.1));
            let me = self.me;
            tracing::debug!(group = self.group, term, %leader, %me, "leader elected");
        }
        let was_leading = self.leading.replace(leading);
        let was_serving = self.serving.replace(self.committed_in_term());
        if moved || was_leading != leading || was_serving != self.serving.get() {
            self.moved.notify_all();
        }
        if was_leading && !leading {
            let leader = (now.1 != raft::INVALID_ID).then(|| node_of(now.1));
            let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
            for waiter in waiters.into_values().flatten() {
                waiter.answer.send(Err(ProposeError::NotLeader { leader }));
            }
            for (_, (_, answer)) in self.confirming.take() {
                answer.send(Err(ProposeError::NotLeader { leader }));
            }
        }
    }

    /// Handles one `Ready` in the order the module documentation gives.
    async fn handle_ready(self: &Rc<Self>) -> Result<(), StorageError> {
        let log_start = self.partition.log_start_offset();
        self.window.borrow_mut().set_log_start(log_start);
        let mut ready = self.node.borrow_mut().ready();
        self.send(ready.take_messages());
        self.confirmed(ready.read_states());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install(&snapshot).await?;
        }
        let entries = ready.take_entries();
        if !entries.is_empty() {
            self.append(entries).await?;
            self.partition.flush_entries().await?;
            self.answer_durable_here();
        }
        if let Some(hard_state) = ready.hs().cloned() {
            self.save_hard_state(hard_state).await?;
        }
        self.send(ready.take_persisted_messages());
        self.apply(ready.take_committed_entries()).await?;
        let mut light = self.node.borrow_mut().advance(ready);
        if let Some(commit) = light.commit_index() {
            self.window.borrow_mut().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries()).await?;
        self.node.borrow_mut().advance_apply();
        self.compact().await
    }

    /// Sends to peers. The commit point in an answer to the leader is the one this replica
    /// applied (raft-rs puts the one it knows, which may be ahead): the leader tracks it
    /// per follower, and only `settled` reads it, to know which voters applied a
    /// configuration change (a configuration change applied is in the anchor).
    fn send(&self, messages: Vec<Message>) {
        for mut message in messages {
            let answer = matches!(
                message.get_msg_type(),
                MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
            );
            if answer {
                message.commit = message.commit.min(self.applied.get());
            }
            let to = message.to;
            let Some(address) = self.peers.borrow().get(&node_of(to)).copied() else {
                continue;
            };
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.pending.borrow_mut().snapshots_sent.push(to);
                self.wake.notify_all();
            }
            let envelope = Envelope::Raft(self.group, Box::new(message));
            self.transport.send(address, envelope.encode());
        }
    }

    /// Step 3: cuts a conflicting suffix, then stamps and stages each entry.
    async fn append(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let first = entries[0].index;
        let last = self.window.borrow().last_index();
        if first <= last {
            let cut = self.window.borrow_mut().truncate_from(first);
            self.fail_waiters_from(first);
            self.partition.truncate_suffix(cut).await?;
        }
        for mut entry in entries {
            let offset = self.window.borrow().end_offset();
            let (batch, meta) = entries::to_batch(&entry, offset).map_err(|error| {
                StorageError::Corrupt(format!("raft entry {}: {error}", entry.index))
            })?;
            self.partition.append_entry(batch.clone(), meta).await?;
            if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                // The stamped bytes, so that the window shares the log's copy.
                entry.data = batch;
            }
            self.window.borrow_mut().push(entry, meta.last_offset + 1);
        }
        Ok(())
    }

    /// Step 4's second half: the term and vote must be durable before a vote or an append
    /// acknowledgement leaves; the commit index rides along.
    async fn save_hard_state(&self, hard_state: HardState) -> Result<(), StorageError> {
        let must_write = {
            let window = self.window.borrow();
            let saved = window.hard_state();
            saved.term != hard_state.term || saved.vote != hard_state.vote
        };
        self.window.borrow_mut().set_hard_state(hard_state);
        if must_write {
            self.write_anchor().await?;
        }
        Ok(())
    }

    async fn write_anchor(&self) -> Result<(), StorageError> {
        let anchor = self.window.borrow().anchor();
        anchor.write(self.partition.dir()).await?;
        self.anchored_base.set(anchor.base_index);
        self.partition.set_retention_floor(anchor.base_end);
        Ok(())
    }

    /// Step 6: configuration changes and log-start moves take effect, the commit point
    /// moves, proposals are answered.
    async fn apply(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let Some(last) = entries.last().map(|entry| entry.index) else {
            return Ok(());
        };
        for entry in &entries {
            let changed = self.apply_conf_change(entry);
            self.window.borrow_mut().set_applied(entry.index);
            if changed {
                // The configuration this replica votes and campaigns by never goes back:
                // a restart that forgot a change it applied (the anchor is written lazily)
                // could campaign by a configuration the group has left (the simulation
                // found a removed voter elected so, and a committed entry overwritten).
                self.write_anchor().await?;
            }
            if let Some(log_start) = entries::log_start_of(entry) {
                self.move_log_start(entry.index, log_start).await?;
            }
        }
        self.applied.set(last);
        let commit_end = self.window.borrow().end_of(last);
        self.partition.set_commit_end(commit_end);
        let answered = {
            let mut waiters = self.waiters.borrow_mut();
            let later = waiters.split_off(&(last + 1));
            std::mem::replace(&mut *waiters, later)
        };
        let window = self.window.borrow();
        for (index, waiters) in answered {
            for waiter in waiters {
                let outcome = waiter.outcome(&window, index);
                waiter.answer.send(outcome);
            }
        }
        Ok(())
    }

    /// Applies the committed log-start move of entry `at`. The window's base first moves up
    /// to the last entry that ends at or before the new start, and the anchor says so, so
    /// that a restart rebuilds the window from batches the log still holds; then the log
    /// start moves (never past the entry itself). A follower that needs entries below the
    /// base is sent a snapshot, and restarts its log (see `install`).
    async fn move_log_start(&self, at: u64, log_start: Offset) -> Result<(), StorageError> {
        let (log_start, anchor_behind) = {
            let mut window = self.window.borrow_mut();
            let log_start = log_start.min(window.end_of(at - 1));
            let base = window.last_ending_by(log_start);
            if base > window.base_index() {
                window.compact_to(base);
            }
            (log_start, self.anchored_base.get() < window.base_index())
        };
        // The anchored base is also the retention floor: segments below it may go now.
        if anchor_behind {
            self.write_anchor().await?;
        }
        if log_start > self.partition.log_start_offset() {
            self.partition.move_log_start(log_start).await?;
        }
        Ok(())
    }

    /// At open: applies again the last committed log-start move the window holds, which a
    /// crash may have cut short (a move applied twice changes nothing).
    async fn reapply_log_start(&self) -> Result<(), StorageError> {
        let last_move = {
            let window = self.window.borrow();
            let commit = window.hard_state().commit;
            (window.first_index()..=commit).rev().find_map(|index| {
                let entry = window.entry(index)?;
                entries::log_start_of(entry).map(|log_start| (index, log_start))
            })
        };
        match last_move {
            Some((at, log_start)) => self.move_log_start(at, log_start).await,
            None => Ok(()),
        }
    }

    /// Answers the proposals waiting only for this leader's own fsync, now that every entry
    /// of its log is durable here.
    fn answer_durable_here(&self) {
        let window = self.window.borrow();
        let mut waiters = self.waiters.borrow_mut();
        for (index, waiting) in waiters.range_mut(..=window.last_index()) {
            let (durable, rest): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiting)
                .into_iter()
                .partition(|waiter| waiter.answer.until == Until::DurableHere);
            *waiting = rest;
            for waiter in durable {
                let outcome = waiter.outcome(&window, *index);
                waiter.answer.send(outcome);
            }
        }
        waiters.retain(|_, waiting| !waiting.is_empty());
    }

    /// Applies the configuration change `entry` holds, if any; whether it changed the
    /// configuration.
    fn apply_conf_change(&self, entry: &Entry) -> bool {
        let changed = match entry.get_entry_type() {
            EntryType::EntryNormal => return false,
            EntryType::EntryConfChange => ConfChange::parse_from_bytes(&entry.data)
                .map_err(|error| error.to_string())
                .and_then(|change| {
                    let mut node = self.node.borrow_mut();
                    node.apply_conf_change(&change).map_err(|e| e.to_string())
                }),
            EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data)
                .map_err(|error| error.to_string())
                .and_then(|change| {
                    let mut node = self.node.borrow_mut();
                    node.apply_conf_change(&change).map_err(|e| e.to_string())
                }),
        };
        match changed {
            Ok(conf_state) => {
                let group = self.group;
                tracing::info!(
                    group,
                    index = entry.index,
                    ?conf_state,
                    "configuration changed"
                );
                let me = raft_id(self.me);
                let voter =
                    conf_state.voters.contains(&me) || conf_state.voters_outgoing.contains(&me);
                self.window
                    .borrow_mut()
                    .set_conf_state(entry.index, conf_state);
                // A leader the change removed (it won an election in a joint configuration
                // whose leaving it then committed) steps down at once: raft-rs keeps such a
                // leader leading, and it fails at its next commit without itself among the
                // voters. The others elect a leader of the new configuration.
                self.with_node(|node| {
                    if node.raft.state == StateRole::Leader && !voter {
                        tracing::info!(
                            group = self.group,
                            "removed from the group; no longer leading"
                        );
                        let term = node.raft.term;
                        node.raft.become_follower(term, raft::INVALID_ID);
                    }
                });
                self.moved.notify_all();
                true
            }
            Err(error) => {
                let index = entry.index;
                tracing::error!(group = self.group, index, %error, "configuration change refused");
                false
            }
        }
    }

    fn fail_waiters_from(&self, index: u64) {
        let failed = self.waiters.borrow_mut().split_off(&index);
        for waiter in failed.into_values().flatten() {
            waiter.answer.send(Err(ProposeError::NotCommitted));
        }
    }

    /// Moves the window's base up: on a leader to what every follower matched, on any
    /// replica over its budget to what it applied; rewrites the anchor when it lags far, or
    /// at all when the cleaner asked (`want_anchor`).
    async fn compact(&self) -> Result<(), StorageError> {
        // Taken first: the driver runs this while it is set, so it must not stay set.
        let anchor_wanted = self.anchor_wanted.take();
        let target = {
            let node = self.node.borrow();
            let mut window = self.window.borrow_mut();
            let applied = self.applied.get();
            // A snapshot for a replica that joined after the base waits for the base to pass
            // the change that added it.
            let wanted = window.take_base_wanted().filter(|index| *index <= applied);
            let target = if window.bytes() > self.config.window_bytes_max {
                Some(applied)
            } else if node.raft.state == StateRole::Leader {
                let progress = node.raft.prs();
                let slowest = progress.iter().map(|(_, follower)| follower.matched).min();
                Some(applied.min(slowest.unwrap_or(applied)))
            } else {
                wanted
            };
            target.map(|target| target.max(wanted.unwrap_or(0)))
        };
        if let Some(target) = target.filter(|target| *target > self.window.borrow().base_index()) {
            self.window.borrow_mut().compact_to(target);
        }
        let base = self.window.borrow().base_index();
        let lag = base - self.anchored_base.get();
        if lag >= self.config.anchor_lag_entries_max || (anchor_wanted && lag > 0) {
            self.write_anchor().await?;
        }
        Ok(())
    }

    /// Step 2: makes the log equal the leader's up to the snapshot's position.
    ///
    /// The batches are copied from this replica's commit point on (below it every replica
    /// holds the same), and the ones this log holds already are compared, not rewritten: the
    /// log is cut only where it differs from the leader's. Entries this replica acknowledged
    /// to the leader are the leader's own and never differ, so a crash in the middle of an
    /// install never loses an acknowledged entry (Raft's followers must not).
    ///
    /// When the commit point is below the peer's log start (DeleteRecords or retention moved
    /// it), the batches before the peer's first are deleted on every replica: the log
    /// restarts there instead (see `restart_log`), and takes the peer's log start once the
    /// batches are copied.
    async fn install(self: &Rc<Self>, snapshot: &Snapshot) -> Result<(), StorageError> {
        let target = decode_position(snapshot.get_data())
            .ok_or_else(|| StorageError::Corrupt("a snapshot without a position".into()))?;
        let leader_log_start = decode_log_start(snapshot.get_data());
        let (kept, kept_end) = {
            let window = self.window.borrow();
            let committed = window.hard_state().commit.min(window.last_index());
            let kept = committed.max(window.base_index());
            (kept, window.end_of(kept))
        };
        assert!(kept_end <= target, "a snapshot behind the commit point");
        let peer_log_start = self.copy(kept + 1, kept_end, snapshot, target).await?;
        if self.window.borrow().end_offset() > target {
            // Not reached: a log that equals the leader's up to the snapshot holds its entry,
            // and raft-rs then commits instead of restoring.
            let index = snapshot.get_metadata().index;
            return Err(StorageError::Corrupt(format!(
                "the log matches snapshot {index} past its position {target}"
            )));
        }
        self.window.borrow_mut().restore(snapshot, target);
        self.applied.set(snapshot.get_metadata().index);
        self.write_anchor().await?;
        self.partition.set_commit_end(target);
        // The log start the leader or the copy's peer had, if this log's is below it: a
        // log-start move the snapshot passed is not applied here as an entry, and the copy
        // tells only when it started below the peer's log start.
        let log_start = peer_log_start.max(leader_log_start);
        if let Some(log_start) = log_start.filter(|start| *start <= target) {
            if log_start > self.partition.log_start_offset() {
                self.partition.move_log_start(log_start).await?;
            }
        }
        self.snapshots_installed
            .set(self.snapshots_installed.get() + 1);
        let index = snapshot.get_metadata().index;
        tracing::info!(group = self.group, index, %target, "caught up from a snapshot");
        Ok(())
    }

    /// Copies the batches `[from, to)`, the first of them entry `index`, from peers (the
    /// leader first, then the others in turn): those the log holds already are compared, the
    /// log is cut at the first that differs, the rest are appended and flushed. A peer whose
    /// log starts past `from` has the log restart at its first batch (or at `to`); the log
    /// start of a peer that said it is returned.
    ///
    /// A peer's log may be compacted there (see `partition::cleaner`): a batch with some of
    /// its records removed, or a filler standing for a run of removed entries of one epoch.
    /// Such a batch is held when this log's entries from the same offset are of its epoch and
    /// end where it ends (Raft's log matching, by offset: an entry of the same term beginning
    /// at the same offset is the same entry, and so is every entry before it); a filler
    /// partly held is appended for the rest only. Before the first compacted batch is
    /// appended, the window restarts at the snapshot and the anchor says so (as `restart_log`
    /// does, the log start kept): a window is never rebuilt over compacted batches, whose
    /// entries it could not count, and a crash leaves the rest to `finish_restart`.
    async fn copy(
        self: &Rc<Self>,
        mut index: u64,
        from: Offset,
        snapshot: &Snapshot,
        to: Offset,
    ) -> Result<Option<Offset>, StorageError> {
        let mut end = from;
        let mut attempt = 0;
        let mut peer_log_start = None;
        // Whether the window restarted at the snapshot (the log restarted, or a compacted
        // batch is appended): from then on batches are appended, not compared.
        let mut restarted = false;
        while end < to {
            if self.stopped.get() {
                return Err(StorageError::Closed);
            }
            let source = self.copy_source(attempt);
            attempt += 1;
            let mut batches = match self.request_copy(source, end, to).await {
                Copied::Batches(batches) => batches,
                Copied::FromLogStart { log_start, batches } => {
                    let first = batch_meta(&batches).map_or(to, |meta| meta.base_offset.min(to));
                    if first > end {
                        self.restart_log(snapshot, to, first).await?;
                        end = first;
                        restarted = true;
                    }
                    peer_log_start = Some(log_start);
                    batches
                }
                Copied::Unavailable => continue,
            };
            let before = end;
            let mut appended = false;
            while let Some((mut batch, mut meta)) = next_copied(&mut batches, end, to) {
                if !restarted {
                    let (next, held_end) = match self.held(index, &batch, &meta)? {
                        Held::Whole { next } => {
                            end = meta.last_offset + 1;
                            index = next;
                            continue;
                        }
                        Held::Part { next, end } => (next, end),
                    };
                    if self.window.borrow().last_index() >= next {
                        self.window.borrow_mut().truncate_from(next);
                        self.fail_waiters_from(next);
                        self.partition.truncate_suffix(held_end).await?;
                    }
                    if held_end > meta.base_offset {
                        let epoch = record_batch::header(&batch)
                            .map_or(-1, |header| header.partition_leader_epoch.get());
                        batch = records::filler(held_end, meta.last_offset, epoch);
                        meta = batch_meta(&batch).map_err(StorageError::Corrupt)?;
                    }
                    index = next;
                    if !is_whole_entry(&batch) {
                        let log_start = self.partition.log_start_offset();
                        self.restart_window(snapshot, to, log_start).await?;
                        restarted = true;
                    }
                }
                self.partition.append_entry(batch, meta).await?;
                appended = true;
                end = meta.last_offset + 1;
                index += 1;
            }
            if appended {
                self.partition.flush_entries().await?;
            }
            if end > before {
                attempt = 0;
            }
        }
        Ok(peer_log_start)
    }

    /// Restarts the log empty at `at` (at most the snapshot's position `to`), its batches
    /// below deleted on the peer copied from. The window restarts at the snapshot and the
    /// anchor says so first, with `at`: a crash before the log reaches `to` leaves a log
    /// shorter than the anchor's base, which opening restarts at `at` again if need be and
    /// the driver copies on (`finish_restart`) before it steps. (Restarting it at the base
    /// instead left a log without the committed batches between `at` and the base: the
    /// simulation found a new leader so, refusing an idempotent producer's next batch.)
    async fn restart_log(
        &self,
        snapshot: &Snapshot,
        to: Offset,
        at: Offset,
    ) -> Result<(), StorageError> {
        self.restart_window(snapshot, to, at).await?;
        self.partition.restart_at(at).await?;
        let group = self.group;
        tracing::info!(group, %at, "log restarted at the leader's log start");
        Ok(())
    }

    /// Restarts the window at the snapshot (its position `to`) and says so in the anchor
    /// first, with the log's (new) start `at`: from then on the log is only appended to, up
    /// to `to`, and a crash leaves that to `finish_restart`.
    async fn restart_window(
        &self,
        snapshot: &Snapshot,
        to: Offset,
        at: Offset,
    ) -> Result<(), StorageError> {
        self.window.borrow_mut().restore(snapshot, to);
        self.window.borrow_mut().set_restarted_at(Some(at));
        self.write_anchor().await
    }

    /// Copies the batches a restart cut short left out (see `restart_log`): from the log's
    /// end up to the window's base, from peers that committed them, before the driver steps.
    /// A peer whose log starts further on has the log restart there again.
    async fn finish_restart(self: &Rc<Self>) -> Result<(), StorageError> {
        let to = self.window.borrow().end_offset();
        if self.partition.log_end_offset() >= to {
            return Ok(());
        }
        let mut attempt = 0;
        while self.partition.log_end_offset() < to {
            if self.stopped.get() {
                return Err(StorageError::Closed);
            }
            let end = self.partition.log_end_offset();
            let source = self.copy_source(attempt);
            attempt += 1;
            let mut batches = match self.request_copy(source, end, to).await {
                Copied::Batches(batches) => batches,
                Copied::FromLogStart { batches, .. } => {
                    let first = batch_meta(&batches).map_or(to, |meta| meta.base_offset.min(to));
                    if first > end {
                        self.partition.restart_at(first).await?;
                    }
                    batches
                }
                Copied::Unavailable => continue,
            };
            let mut appended = false;
            while let Some((batch, meta)) =
                next_copied(&mut batches, self.partition.log_end_offset(), to)
            {
                self.partition.append_entry(batch, meta).await?;
                appended = true;
            }
            if appended {
                self.partition.flush_entries().await?;
                attempt = 0;
            }
        }
        self.window.borrow_mut().set_restarted_at(None);
        self.write_anchor().await?;
        let group = self.group;
        tracing::info!(group, %to, "a restarted log copied up to its base");
        Ok(())
    }

    /// How much of a copied batch the window's entries from `index` (which begin where the
    /// batch begins, if the window has it) hold: exactly the same bytes, or, for a batch a
    /// peer's compaction rewrote, entries of its epoch ending where it ends (see `copy`).
    fn held(&self, index: u64, batch: &Bytes, meta: &BatchMeta) -> Result<Held, StorageError> {
        let window = self.window.borrow();
        let nothing = Held::Part {
            next: index,
            end: meta.base_offset,
        };
        let Some(entry) = window.entry(index) else {
            return Ok(nothing);
        };
        let (stored, _) = entries::to_batch(entry, window.end_of(index - 1))
            .map_err(|error| StorageError::Corrupt(format!("raft entry {index}: {error}")))?;
        if stored == *batch {
            return Ok(Held::Whole { next: index + 1 });
        }
        let Some(header) = record_batch::header(batch) else {
            return Ok(nothing);
        };
        let epoch = u64::try_from(header.partition_leader_epoch.get());
        if is_whole_entry(batch) || epoch.is_err() {
            return Ok(nothing);
        }
        let (epoch, batch_end) = (epoch.unwrap_or_default(), meta.last_offset + 1);
        let (mut next, mut end) = (index, meta.base_offset);
        while end < batch_end
            && window.entry(next).is_some_and(|entry| entry.term == epoch)
            && window.end_of(next) <= batch_end
        {
            end = window.end_of(next);
            next += 1;
        }
        Ok(match end == batch_end {
            true => Held::Whole { next },
            // A batch with records of one entry is held whole or not at all.
            false if !records::is_filler(header) => nothing,
            false => Held::Part { next, end },
        })
    }

    /// The peer to ask on the `attempt`-th try: the leader, then every other replica in turn
    /// (None while this replica knows no other).
    fn copy_source(&self, attempt: usize) -> Option<Address> {
        let peers = self.peers.borrow();
        let leader = self.leader().filter(|leader| peers.contains_key(leader));
        let mut sources: Vec<NodeId> = leader.into_iter().collect();
        let mut others: Vec<NodeId> = peers
            .keys()
            .copied()
            .filter(|node| Some(*node) != leader)
            .collect();
        others.sort_unstable();
        sources.extend(others);
        let source = sources.get(attempt % sources.len().max(1))?;
        peers.get(source).copied()
    }

    async fn request_copy(&self, source: Option<Address>, from: Offset, to: Offset) -> Copied {
        let Some(source) = source else {
            clock::sleep(self.config.copy_timeout).await;
            return Copied::Unavailable;
        };
        let id = self.next_copy_id.get();
        self.next_copy_id.set(id + 1);
        let (sender, reply) = oneshot::channel();
        self.copies.borrow_mut().insert(id, sender);
        let request = Envelope::CopyRequest {
            group: self.group,
            id,
            from,
            to,
        };
        self.transport.send(source, request.encode());
        let timeout = clock::sleep(self.config.copy_timeout);
        let answered = match select(reply, Box::pin(timeout)).await {
            Either::Left((Ok(copied), _)) => copied,
            _ => Copied::Unavailable,
        };
        self.copies.borrow_mut().remove(&id);
        answered
    }

    /// Answers a copy request with committed, durable batches from `from` (up to the copy
    /// budget); from the one holding the log start if `from` is below it; or with "not here"
    /// if this replica has not committed up to `to`.
    async fn serve_copy(self: Rc<Self>, requester: Address, id: u64, from: Offset, to: Offset) {
        let committed_end = {
            let window = self.window.borrow();
            window.end_of(window.hard_state().commit.min(window.last_index()))
        };
        let log_start = self.partition.log_start_offset();
        let copied = if committed_end < to || from >= to {
            Copied::Unavailable
        } else if from < log_start {
            let batches = match log_start < to {
                true => self.read_joined(log_start, to).await,
                false => Some(Bytes::new()),
            };
            batches.map_or(Copied::Unavailable, |batches| Copied::FromLogStart {
                log_start,
                batches,
            })
        } else {
            self.read_joined(from, to)
                .await
                .filter(|batches| !batches.is_empty())
                .map_or(Copied::Unavailable, Copied::Batches)
        };
        let reply = Envelope::CopyReply {
            group: self.group,
            id,
            copied,
        };
        self.transport.send(requester, reply.encode());
    }

    /// Durable batches from the one holding `from` up to the copy budget, none past `to`,
    /// back to back.
    async fn read_joined(&self, from: Offset, to: Offset) -> Option<Bytes> {
        let batches = self
            .partition
            .read_below(from, limits::REPLICA_COPY_BYTES_MAX, to)
            .await
            .ok()?;
        let mut joined = BytesMut::new();
        batches
            .iter()
            .for_each(|batch| joined.extend_from_slice(batch));
        Some(joined.freeze())
    }
}

/// A leader woken from quiescence: its followers were silent by design, so raft-rs's quorum
/// check starts afresh rather than deposing it at once.
fn resume(node: &mut RawNode<WindowStorage>) {
    let raft = &mut node.raft;
    if raft.state == StateRole::Leader {
        raft.election_elapsed = 0;
        for (_, progress) in raft.mut_prs().iter_mut() {
            progress.recent_active = true;
        }
    }
}

/// Whether `message` is a heartbeat committing entries past this replica's log. A leader
/// commits on a follower only what the follower acknowledged holding, so such a heartbeat
/// comes from a leader that knew an earlier replica on this node, one that a reassignment
/// removed and deleted (its heartbeat late, or its leadership stale): raft-rs would abort
/// the process on it.
fn commits_past_log(node: &RawNode<WindowStorage>, message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgHeartbeat
        && message.commit > node.raft.raft_log.last_index()
}

/// When the leader last heard from a follower, and when it last had the commit point (never,
/// for one still catching up since the leader first heard from it), in ticks of the
/// replica's clock.
struct Heard {
    at: u64,
    caught_up_at: Option<u64>,
}

/// A Raft group as its leader knows it (see `Replica::group_state`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupState {
    pub leader: NodeId,
    pub term: u64,
    pub high_watermark: Offset,
    /// Every voter, by node id, the leader among them.
    pub voters: Vec<VoterState>,
    /// Every learner that stays one, by node id (the broker-only nodes following the
    /// metadata log: Kafka's observers).
    #[serde(default)]
    pub observers: Vec<VoterState>,
}

/// One voter of a group as its leader knows it; None where the leader does not know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoterState {
    pub node: NodeId,
    /// Where its log ends, as far as the leader knows it to match the leader's.
    pub log_end: Option<Offset>,
    pub heard_ms_ago: Option<u64>,
    pub caught_up_ms_ago: Option<u64>,
}

/// A batch of an idempotent producer proposed earlier in the same step.
struct Accepted {
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
    index: u64,
    term: u64,
}

impl Accepted {
    /// The next batch of the same producer must follow this one (or begin a new epoch at
    /// sequence 0); the same batch again (a retry) waits for it.
    fn check(&self, next: &ProducerAppend) -> Result<ProducerCheck, ProposeError> {
        if next.epoch == self.epoch && next.first_seq == self.first_seq {
            return Ok(ProducerCheck::InFlight(self.index, self.term));
        }
        let expected = last_sequence(self.last_seq, 1);
        let bumped = next.epoch > self.epoch && next.first_seq == 0;
        if bumped || (next.epoch == self.epoch && next.first_seq == expected) {
            return Ok(ProducerCheck::New);
        }
        let producer_id = next.producer_id;
        Err(match next.epoch < self.epoch {
            true => ProducerError::InvalidEpoch {
                producer_id,
                epoch: next.epoch,
                current: self.epoch,
            },
            false => ProducerError::OutOfOrder {
                producer_id,
                sequence: next.first_seq,
                expected: expected.into(),
            },
        }
        .into())
    }
}

/// What the leader does with a proposal.
enum ProducerCheck {
    /// Propose it.
    New,
    /// The retry of a batch in the log: answer with its offsets once committed.
    Duplicate(ProducerBatch),
    /// The retry of a batch proposed in the same step: wait for that entry.
    InFlight(u64, u64),
}

/// How much of a copied batch a replica's log holds already (see `Replica::held`).
enum Held {
    /// All of it, as the entries before `next`.
    Whole { next: u64 },
    /// Its offsets below `end`, as the entries before `next`; not the rest.
    Part { next: u64, end: Offset },
}

/// Whether `batch` is a whole Raft entry as every replica stamps it: one record per offset
/// of its range, as a client's batch and every control batch has. A peer's compaction
/// leaves batches with fewer records, and fillers with none.
pub(super) fn is_whole_entry(batch: &[u8]) -> bool {
    record_batch::header(batch).is_some_and(|header| {
        i64::from(header.record_count.get()) == i64::from(header.last_offset_delta.get()) + 1
    })
}

/// The next batch of a copy reply, whole, if it begins at `at` and ends before `to`.
fn next_copied(batches: &mut Bytes, at: Offset, to: Offset) -> Option<(Bytes, BatchMeta)> {
    let length = record_batch::declared_batch_bytes(batches).ok()?;
    if length > batches.len() {
        return None;
    }
    let meta = batch_meta(&batches[..length]).ok()?;
    if meta.base_offset != at || meta.last_offset >= to {
        return None;
    }
    Some((batches.split_to(length), meta))
}

/// Every batch of `log` from `start` to its end.
async fn read_from(log: &Log, start: Offset) -> Result<Vec<Bytes>, StorageError> {
    let mut batches = Vec::new();
    let mut offset = start;
    loop {
        let read = log
            .read(offset, limits::REPLICA_COPY_BYTES_MAX, log.log_end_offset())
            .await?;
        let Some(last) = read.last() else {
            return Ok(batches);
        };
        let meta = batch_meta(last).map_err(StorageError::Corrupt)?;
        offset = meta.last_offset + 1;
        batches.extend(read);
    }
}

/// Whether the leader streams its entries to the replica on `to`, which answered lately:
/// it is at most the entries in flight behind, and catches up at once once proposals pause.
fn is_streaming_to(node: &RawNode<WindowStorage>, to: NodeId) -> bool {
    node.raft.prs().get(raft_id(to)).is_some_and(|progress| {
        progress.state == ProgressState::Replicate && progress.recent_active
    })
}

/// The voter other than the leader, heard from within the last election timeout, whose log
/// matches the leader's furthest (None on a follower, or with no such voter).
fn most_caught_up_follower(node: &RawNode<WindowStorage>) -> Option<u64> {
    let raft = &node.raft;
    if raft.state != StateRole::Leader {
        return None;
    }
    let voters = raft.prs().conf().voters().ids();
    voters
        .iter()
        .filter(|id| *id != raft.id)
        .filter_map(|id| raft.prs().get(id).map(|progress| (progress, id)))
        .filter(|(progress, _)| progress.recent_active)
        .map(|(progress, id)| (progress.matched, id))
        .max()
        .map(|(_, id)| id)
}
