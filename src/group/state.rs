//! One classic-protocol consumer group: Kafka's group state machine (Empty,
//! PreparingRebalance, CompletingRebalance, Stable, Dead), its members, and its committed
//! offsets, with the error codes Kafka clients react to.
//!
//! Per-shard: a `Group` lives on its coordinator shard and does no I/O. Requests that must wait
//! (JoinGroup until the rebalance completes, SyncGroup until the leader's assignment is
//! durable) get a oneshot receiver; time is passed in, and `poll` runs every deadline that has
//! passed (session expiry, rebalance timeout, initial rebalance delay). The coordinator calls
//! `poll` after every request and from its timer loop.
//!
//! Invariants: every member id in `instances` is in `members`; `leader` is a member whenever
//! there are members; only PreparingRebalance has a join deadline; `awaiting_join` counts the
//! members with a JoinGroup waiting and `protocol_support` how many members list each
//! protocol name, so that a JoinGroup costs the same whatever the size of the group (a flood
//! of joins must not make the shard spend its time scanning thousands of members). `poll`
//! scans every member; the coordinator runs it at deadlines, not on every request.

use crate::ids::Offset;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::ResponseError;

use super::records::{GroupValue, MemberValue, OffsetValue};
use crate::protocol::str_bytes;

/// Kafka's group states, named as DescribeGroups and ListGroups report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup carries, version differences already resolved.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
    /// v9+: a static leader rejoining a stable group is told to skip the assignment.
    pub supports_skip_assignment: bool,
}

/// One member of the group.
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
    heartbeat_deadline: Instant,
}

impl Member {
    fn new(id: String, args: &JoinArgs, now: Instant) -> Member {
        Member {
            id,
            instance_id: args.instance_id.clone(),
            client_id: args.client_id.clone(),
            client_host: args.client_host.clone(),
            session_timeout_ms: args.session_timeout_ms,
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            protocol_type: args.protocol_type.clone(),
            protocols: args.protocols.clone(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            heartbeat_deadline: now + millis(args.session_timeout_ms),
        }
    }

    fn update(&mut self, args: &JoinArgs) {
        self.client_id = args.client_id.clone();
        self.client_host = args.client_host.clone();
        self.session_timeout_ms = args.session_timeout_ms;
        self.rebalance_timeout_ms = args.rebalance_timeout_ms;
    }

    /// Members waiting in JoinGroup or SyncGroup need not heartbeat (as in Kafka).
    fn kept_alive(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }

    pub fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        let found = self
            .protocols
            .iter()
            .find(|(name, _)| Some(name.as_str()) == protocol);
        found
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn touch(&mut self, now: Instant) {
        self.heartbeat_deadline = now + millis(self.session_timeout_ms);
    }
}

/// A committed offset and the position of its record in `__consumer_offsets`, which orders
/// commits that complete concurrently the same way a replay would.
#[derive(Debug, Clone)]
pub struct CommittedOffset {
    pub value: OffsetValue,
    pub record_offset: Offset,
}

/// The result of a JoinGroup that the group handled.
pub enum JoinOutcome {
    Respond(JoinGroupResponse),
    Wait(oneshot::Receiver<JoinGroupResponse>),
    /// A static member replaced its old id in a stable group: persist, then answer.
    PersistThenRespond(GroupValue, JoinGroupResponse),
}

/// The result of a SyncGroup that the group handled.
pub enum SyncOutcome {
    Respond(SyncGroupResponse),
    Wait(oneshot::Receiver<SyncGroupResponse>),
    /// The leader sent the assignment: persist it, then `assignment_persisted`.
    Persist(GroupValue, i32, oneshot::Receiver<SyncGroupResponse>),
}

/// One classic group. See the module documentation.
pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// When the group entered its state, in ms since the epoch (Empty groups expire from it).
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Members whose JoinGroup waits for the rebalance (`join_waiter` is set).
    awaiting_join: usize,
    /// Protocol name -> number of members listing it (each member's names are distinct).
    protocol_support: HashMap<String, usize>,
    /// v4+ members told MEMBER_ID_REQUIRED, until they join or their session times out.
    pending: HashMap<String, Instant>,
    /// group.instance.id -> member id of the static members.
    instances: HashMap<String, String>,
    pub offsets: HashMap<(String, i32), CommittedOffset>,
    /// Offsets committed in open transactions (TxnOffsetCommit), by producer id: they
    /// replace `offsets` when the producer's commit marker reaches the group's partition,
    /// and are dropped by its abort marker.
    pub pending_offsets: HashMap<i64, HashMap<(String, i32), CommittedOffset>>,
    join_deadline: Option<Instant>,
    /// Left of the rebalance timeout while the initial rebalance delay keeps extending.
    initial_delay: Option<(Duration, Duration)>,
    new_member_added: bool,
    /// Assignments the leader sent, waiting to be durable: (generation, member -> bytes).
    pending_assignment: Option<(i32, HashMap<String, Bytes>)>,
    /// group.initial.rebalance.delay.ms.
    initial_rebalance_delay: Duration,
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

fn join_error(error: ResponseError, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error.code())
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
}

pub fn sync_error(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error.code())
}

impl Group {
    pub fn new(id: String, now_ms: i64, initial_rebalance_delay: Duration) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            awaiting_join: 0,
            protocol_support: HashMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            offsets: HashMap::new(),
            pending_offsets: HashMap::new(),
            join_deadline: None,
            initial_delay: None,
            new_member_added: false,
            pending_assignment: None,
            initial_rebalance_delay,
        }
    }

    /// The group as its last GroupMetadata record left it; members must heartbeat within
    /// their session timeout from now, or they expire and the group rebalances.
    pub fn restore(&mut self, value: GroupValue, now: Instant) {
        self.generation = value.generation;
        self.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        self.protocol = value.protocol;
        self.state_since_ms = value.state_timestamp_ms;
        self.members.clear();
        self.awaiting_join = 0;
        self.protocol_support.clear();
        self.instances.clear();
        for stored in value.members {
            let args = JoinArgs {
                member_id: stored.member_id.clone(),
                instance_id: stored.instance_id.clone(),
                client_id: stored.client_id,
                client_host: stored.client_host,
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(
                    self.protocol.clone().unwrap_or_default(),
                    stored.subscription,
                )],
                require_known_member_id: false,
                supports_skip_assignment: false,
            };
            let mut member = Member::new(stored.member_id.clone(), &args, now);
            member.assignment = stored.assignment;
            if let Some(instance) = &stored.instance_id {
                self.instances
                    .insert(instance.clone(), stored.member_id.clone());
            }
            self.insert_member(member);
        }
        self.leader = value.leader.filter(|l| self.members.contains_key(l));
        if self.leader.is_none() {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// The GroupMetadata record of the group now, with `assignments` overriding the members'.
    pub fn value(&self, assignments: Option<&HashMap<String, Bytes>>, now_ms: i64) -> GroupValue {
        let protocol = self.protocol.as_deref();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: now_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(protocol),
                    assignment: match assignments {
                        Some(a) => a.get(&m.id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    pub fn is_empty_of_members(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Members and pending members: what `group.max.size` limits (as in Kafka since
    /// KAFKA-9885, a pending member counts, or v4+ joins could grow the group without bound).
    pub fn size(&self) -> usize {
        self.members.len() + self.pending.len()
    }

    /// Adds `member` to the map and to the counts kept beside it.
    fn insert_member(&mut self, member: Member) {
        for (name, _) in &member.protocols {
            *self.protocol_support.entry(name.clone()).or_default() += 1;
        }
        if member.join_waiter.is_some() {
            self.awaiting_join += 1;
        }
        if let Some(old) = self.members.insert(member.id.clone(), member) {
            unreachable!("member {} inserted twice", old.id);
        }
    }

    /// Removes a member from the map and from the counts kept beside it.
    fn take_member(&mut self, id: &str) -> Option<Member> {
        let member = self.members.remove(id)?;
        for (name, _) in &member.protocols {
            self.withdraw_support(name);
        }
        if member.join_waiter.is_some() {
            self.awaiting_join -= 1;
        }
        Some(member)
    }

    fn withdraw_support(&mut self, name: &str) {
        let count = self
            .protocol_support
            .get_mut(name)
            .expect("every listed protocol is counted");
        *count -= 1;
        if *count == 0 {
            self.protocol_support.remove(name);
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// Whether a member with these protocols may join: the group's protocol type, and at
    /// least one protocol that every other member also supports.
    /// Costs O(protocols of the joiner and of `except`), not O(members), thanks to
    /// `protocol_support`.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: &str) -> bool {
        let own: HashSet<&str> = self
            .members
            .get(except)
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default();
        let others = self.members.len() - usize::from(self.members.contains_key(except));
        if others == 0 {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            let listing = self.protocol_support.get(name).copied().unwrap_or(0);
            listing - usize::from(own.contains(name.as_str())) == others
        })
    }

    fn rebalance_timeout(&self) -> Duration {
        let max = self.members.values().map(|m| m.rebalance_timeout_ms).max();
        millis(max.unwrap_or(0))
    }

    /// Checks a static member's instance id against the member id it claims.
    fn check_instance(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            if let Some(known) = self.instances.get(instance) {
                if known != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    pub fn join(&mut self, mut args: JoinArgs, now: Instant, now_ms: i64) -> JoinOutcome {
        // A protocol named twice counts once (the first), as in Kafka's keyed collection.
        let mut seen = HashSet::new();
        args.protocols.retain(|(name, _)| seen.insert(name.clone()));
        if self.state == GroupState::Dead {
            return JoinOutcome::Respond(join_error(
                ResponseError::CoordinatorNotAvailable,
                &args.member_id,
            ));
        }
        if !self.supports(&args.protocol_type, &args.protocols, &args.member_id) {
            return JoinOutcome::Respond(join_error(
                ResponseError::InconsistentGroupProtocol,
                &args.member_id,
            ));
        }
        if args.member_id.is_empty() {
            self.join_new(args, now, now_ms)
        } else {
            self.join_known(args, now, now_ms)
        }
    }

    fn join_new(&mut self, args: JoinArgs, now: Instant, now_ms: i64) -> JoinOutcome {
        let prefix = args.instance_id.as_deref().unwrap_or(&args.client_id);
        let member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance) = &args.instance_id {
            if let Some(old) = self.instances.get(instance).cloned() {
                return self.replace_static(old, member_id, args, now, now_ms);
            }
        } else if args.require_known_member_id {
            self.pending
                .insert(member_id.clone(), now + millis(args.session_timeout_ms));
            return JoinOutcome::Respond(join_error(ResponseError::MemberIdRequired, &member_id));
        }
        JoinOutcome::Wait(self.add_member(member_id, &args, now, now_ms))
    }

    fn join_known(&mut self, args: JoinArgs, now: Instant, now_ms: i64) -> JoinOutcome {
        let id = args.member_id.clone();
        if self.pending.remove(&id).is_some() {
            return JoinOutcome::Wait(self.add_member(id, &args, now, now_ms));
        }
        if let Err(error) = self.check_instance(&id, args.instance_id.as_deref()) {
            return JoinOutcome::Respond(join_error(error, &id));
        }
        let member = self.members.get(&id).expect("checked above");
        let same_protocols = member.protocols == args.protocols;
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::CompletingRebalance if same_protocols => {
                // The member lost its JoinGroup response: answer it again.
                JoinOutcome::Respond(self.join_response(&id, false))
            }
            GroupState::Stable if same_protocols && !is_leader => {
                JoinOutcome::Respond(self.join_response(&id, false))
            }
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable => {
                let rx = self.await_join(&id, &args, now);
                self.prepare_rebalance(now, now_ms);
                JoinOutcome::Wait(rx)
            }
            GroupState::Empty | GroupState::Dead => {
                JoinOutcome::Respond(join_error(ResponseError::UnknownMemberId, &id))
            }
        }
    }

    /// A static member rejoined without its member id: it takes over its old membership
    /// under a new id, and the old id is fenced.
    fn replace_static(
        &mut self,
        old: String,
        new: String,
        args: JoinArgs,
        now: Instant,
        now_ms: i64,
    ) -> JoinOutcome {
        let mut member = self.take_member(&old).expect("instances point at members");
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(join_error(ResponseError::FencedInstanceId, &old));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(sync_error(ResponseError::FencedInstanceId));
        }
        let same_protocols = member.protocols == args.protocols;
        member.id = new.clone();
        member.touch(now);
        self.insert_member(member);
        let instance = args.instance_id.clone().expect("static member");
        self.instances.insert(instance, new.clone());
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(new.clone());
        }
        if self.state == GroupState::Stable && same_protocols {
            let is_leader = self.leader.as_deref() == Some(new.as_str());
            let skip = is_leader && args.supports_skip_assignment;
            let mut response = self.join_response(&new, skip);
            response.skip_assignment = skip;
            return JoinOutcome::PersistThenRespond(self.value(None, now_ms), response);
        }
        let rx = self.await_join(&new, &args, now);
        self.prepare_rebalance(now, now_ms);
        JoinOutcome::Wait(rx)
    }

    fn add_member(
        &mut self,
        id: String,
        args: &JoinArgs,
        now: Instant,
        now_ms: i64,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        self.insert_member(Member::new(id.clone(), args, now));
        if let Some(instance) = &args.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if self.state == GroupState::PreparingRebalance && self.initial_delay.is_some() {
            self.new_member_added = true;
        }
        let rx = self.await_join(&id, args, now);
        self.prepare_rebalance(now, now_ms);
        rx
    }

    fn await_join(
        &mut self,
        id: &str,
        args: &JoinArgs,
        now: Instant,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        let member = self.members.get_mut(id).expect("member exists");
        let old_protocols = std::mem::replace(&mut member.protocols, args.protocols.clone());
        member.update(args);
        member.touch(now);
        // A second JoinGroup replaces the first, whose caller sees REBALANCE_IN_PROGRESS.
        if member.join_waiter.replace(tx).is_none() {
            self.awaiting_join += 1;
        }
        for (name, _) in &args.protocols {
            *self.protocol_support.entry(name.clone()).or_default() += 1;
        }
        for (name, _) in &old_protocols {
            self.withdraw_support(name);
        }
        rx
    }

    /// Starts a rebalance unless one is already preparing.
    fn prepare_rebalance(&mut self, now: Instant, now_ms: i64) {
        match self.state {
            GroupState::PreparingRebalance | GroupState::Dead => return,
            GroupState::CompletingRebalance => {
                self.pending_assignment = None;
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                    if let Some(waiter) = member.sync_waiter.take() {
                        let _ = waiter.send(sync_error(ResponseError::RebalanceInProgress));
                    }
                }
            }
            GroupState::Empty | GroupState::Stable => {}
        }
        let timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty {
            let delay = self.initial_delay_for(timeout);
            self.initial_delay = Some((delay, timeout.saturating_sub(delay)));
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + timeout);
        }
        self.new_member_added = false;
        self.set_state(GroupState::PreparingRebalance, now_ms);
    }

    fn initial_delay_for(&self, timeout: Duration) -> Duration {
        self.initial_rebalance_delay.min(timeout)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.awaiting_join == self.members.len()
    }

    /// Whether the join phase can end now (everyone joined, or its deadline passed): then the
    /// coordinator polls at once rather than at the group's next scheduled poll. O(1).
    pub fn join_ready(&self, now: Instant) -> bool {
        self.state == GroupState::PreparingRebalance
            && ((self.initial_delay.is_none() && self.all_joined())
                || self.join_deadline.is_some_and(|d| d <= now))
    }

    /// Runs every deadline that has passed; returns the next one, and whether the group's
    /// metadata must be written (it became Empty).
    pub fn poll(&mut self, now: Instant, now_ms: i64) -> (Option<Instant>, bool) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.kept_alive() && m.heartbeat_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        log_removed(&self.id, &expired, "member sessions expired");
        for id in expired {
            self.remove_member(&id, now, now_ms);
        }
        self.pending.retain(|_, deadline| *deadline > now);
        let mut persist = false;
        if self.state == GroupState::PreparingRebalance {
            let due = self.join_deadline.is_some_and(|d| d <= now);
            if self.initial_delay.is_none() && self.all_joined() {
                persist = self.complete_join(now, now_ms);
            } else if due {
                match self.initial_delay {
                    Some((delay, remaining))
                        if self.new_member_added && !remaining.is_zero() && !delay.is_zero() =>
                    {
                        let next = delay.min(remaining);
                        self.initial_delay = Some((delay, remaining - next));
                        self.new_member_added = false;
                        self.join_deadline = Some(now + next);
                    }
                    _ => persist = self.complete_join(now, now_ms),
                }
            }
        }
        let heartbeats = self.members.values().filter(|m| !m.kept_alive());
        let next = heartbeats
            .map(|m| m.heartbeat_deadline)
            .chain(self.pending.values().copied())
            .chain(self.join_deadline)
            .min();
        (next, persist)
    }

    /// Ends the join phase: members that did not rejoin leave, the generation advances, and
    /// every waiting member gets its JoinGroup response. True if the group became Empty.
    fn complete_join(&mut self, now: Instant, now_ms: i64) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        log_removed(&self.id, &gone, "members did not rejoin in time");
        for id in gone {
            self.remove_member(&id, now, now_ms);
        }
        self.join_deadline = None;
        self.initial_delay = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return true;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id, false);
            let member = self.members.get_mut(&id).expect("listed above");
            member.touch(now);
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(response);
            }
        }
        self.awaiting_join = 0;
        false
    }

    /// The protocol every member supports that most members list first among those.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let everyone = self.members.len();
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.protocol_support.get(*name) == Some(&everyone))
            .collect();
        let candidate_set: HashSet<&String> = candidates.iter().copied().collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for member in self.members.values() {
            let vote = member
                .protocols
                .iter()
                .map(|(name, _)| name)
                .find(|name| candidate_set.contains(name));
            if let Some(vote) = vote {
                *votes.entry(vote).or_default() += 1;
            }
        }
        // Ties go to the candidate the first member prefers.
        let (_, best) = candidates.iter().enumerate().max_by_key(|(position, c)| {
            (
                votes.get(*c).copied().unwrap_or(0),
                std::cmp::Reverse(*position),
            )
        })?;
        Some((*best).clone())
    }

    /// The JoinGroup response for `id` in the current generation: the leader gets the
    /// members and their metadata (unless told to skip the assignment, then also).
    fn join_response(&self, id: &str, skip: bool) -> JoinGroupResponse {
        let is_leader = self.leader.as_deref() == Some(id);
        let protocol = self.protocol.as_deref();
        let members = if is_leader || skip {
            self.members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.id.clone()))
                        .with_group_instance_id(m.instance_id.clone().map(str_bytes))
                        .with_metadata(m.metadata_for(protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.clone().map(str_bytes))
            .with_protocol_name(self.protocol.clone().map(str_bytes))
            .with_leader(str_bytes(self.leader.clone().unwrap_or_default()))
            .with_member_id(str_bytes(id))
            .with_members(members)
    }

    /// Removes a member (left, expired or not rejoined); the group rebalances if it was
    /// stable, and its waiting requests are answered.
    pub fn remove_member(&mut self, id: &str, now: Instant, now_ms: i64) {
        let Some(mut member) = self.take_member(id) else {
            return;
        };
        if let Some(instance) = &member.instance_id {
            self.instances.remove(instance);
        }
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(join_error(ResponseError::UnknownMemberId, id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(sync_error(ResponseError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now, now_ms);
        }
    }

    /// LeaveGroup for one member; `member_id` may be empty when `instance_id` names it.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let id = match instance_id {
            Some(instance) => {
                let known = self.instances.get(instance).cloned();
                let known = known.ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && known != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
                known
            }
            None => {
                if self.pending.remove(member_id).is_some() {
                    return Ok(());
                }
                member_id.to_string()
            }
        };
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %id, "member left");
        self.remove_member(&id, now, now_ms);
        Ok(())
    }

    /// SyncGroup (`args.group` is this group).
    pub fn sync(&mut self, args: super::SyncArgs, now: Instant, now_ms: i64) -> SyncOutcome {
        if self.state == GroupState::Dead {
            return SyncOutcome::Respond(sync_error(ResponseError::CoordinatorNotAvailable));
        }
        let member_id = args.member_id.as_str();
        if let Err(error) = self.check_instance(member_id, args.instance_id.as_deref()) {
            return SyncOutcome::Respond(sync_error(error));
        }
        if args.generation != self.generation {
            return SyncOutcome::Respond(sync_error(ResponseError::IllegalGeneration));
        }
        let differs =
            |asked: &Option<String>, actual: &Option<String>| asked.is_some() && asked != actual;
        if differs(&args.protocol_type, &self.protocol_type)
            || differs(&args.protocol_name, &self.protocol)
        {
            return SyncOutcome::Respond(sync_error(ResponseError::InconsistentGroupProtocol));
        }
        let assignments = args.assignments;
        let member = self.members.get_mut(member_id).expect("checked above");
        member.touch(now);
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                SyncOutcome::Respond(sync_error(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                SyncOutcome::Respond(sync_error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => SyncOutcome::Respond(self.sync_response(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                member.sync_waiter = Some(tx);
                let is_leader = self.leader.as_deref() == Some(member_id);
                if !is_leader || self.pending_assignment.is_some() {
                    return SyncOutcome::Wait(rx);
                }
                let assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                let value = self.value(Some(&assignments), now_ms);
                self.pending_assignment = Some((self.generation, assignments));
                SyncOutcome::Persist(value, self.generation, rx)
            }
        }
    }

    fn sync_response(&self, member_id: &str) -> SyncGroupResponse {
        let assignment = self.members.get(member_id).map(|m| m.assignment.clone());
        SyncGroupResponse::default()
            .with_protocol_type(self.protocol_type.clone().map(str_bytes))
            .with_protocol_name(self.protocol.clone().map(str_bytes))
            .with_assignment(assignment.unwrap_or_default())
    }

    /// The leader's assignment for `generation` was written (or failed to be).
    pub fn assignment_persisted(&mut self, generation: i32, ok: bool, now: Instant, now_ms: i64) {
        let current =
            self.state == GroupState::CompletingRebalance && self.generation == generation;
        let Some((pending_generation, assignments)) = self.pending_assignment.take() else {
            return;
        };
        if !current || pending_generation != generation {
            return;
        }
        if !ok {
            for member in self.members.values_mut() {
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(sync_error(ResponseError::CoordinatorNotAvailable));
                }
            }
            self.prepare_rebalance(now, now_ms);
            return;
        }
        for member in self.members.values_mut() {
            member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
        }
        self.set_state(GroupState::Stable, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.sync_response(&id);
            let member = self.members.get_mut(&id).expect("listed above");
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(response);
                member.touch(now);
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(ResponseError::UnknownMemberId),
            _ => {}
        }
        self.check_instance(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        self.members.get_mut(member_id).expect("checked").touch(now);
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Whether an OffsetCommit from this member and generation may write (Kafka's rules for
    /// classic groups, including "simple" commits with generation -1 to a memberless group).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.check_instance(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
            if self.state == GroupState::CompletingRebalance {
                return Err(ResponseError::RebalanceInProgress);
            }
            self.members.get_mut(member_id).expect("checked").touch(now);
            return Ok(());
        }
        if self.state != GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    /// Marks the group Dead (deleted); waiting requests are answered.
    pub fn kill(&mut self, now_ms: i64) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(join_error(ResponseError::CoordinatorNotAvailable, ""));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(sync_error(ResponseError::CoordinatorNotAvailable));
            }
        }
        self.members.clear();
        self.awaiting_join = 0;
        self.protocol_support.clear();
        self.instances.clear();
        self.pending.clear();
        self.join_deadline = None;
        self.set_state(GroupState::Dead, now_ms);
    }

    /// Topics the members of a "consumer" group subscribe to, from their subscriptions.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let mut topics = Vec::new();
        for member in self.members.values() {
            topics.extend(subscription_topics(
                &member.metadata_for(self.protocol.as_deref()),
            )?);
        }
        Some(topics)
    }
}

/// One line per group and event, not per member: a flood of joins can expire thousands of
/// members at once, and a line each would stall the shard on its synchronous log writes.
fn log_removed(group: &str, ids: &[String], what: &str) {
    match ids {
        [] => {}
        [only] => tracing::info!(%group, member = %only, "{what}"),
        [first, ..] => {
            tracing::info!(%group, count = ids.len(), first = %first, "{what}");
            tracing::debug!(%group, members = ?ids, "{what}");
        }
    }
}

/// The topics of a ConsumerProtocolSubscription (version prefix, then the message).
pub fn subscription_topics(bytes: &Bytes) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, 3);
    bytes::Buf::advance(&mut buf, 2);
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(member_id: &str, protocols: &[&str]) -> JoinArgs {
        JoinArgs {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/host".into(),
            session_timeout_ms: 1_000,
            rebalance_timeout_ms: 5_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from_static(b"meta")))
                .collect(),
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    fn waiting(outcome: JoinOutcome) -> oneshot::Receiver<JoinGroupResponse> {
        match outcome {
            JoinOutcome::Wait(rx) => rx,
            _ => panic!("expected the join to wait"),
        }
    }

    fn answered(rx: &mut oneshot::Receiver<JoinGroupResponse>) -> Option<JoinGroupResponse> {
        rx.try_recv().expect("not cancelled")
    }

    /// The initial rebalance delay of a new group extends while members keep arriving, and
    /// the rebalance then completes with all of them, the first member leading.
    #[test]
    fn initial_delay_extends_while_members_arrive() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into(), 0, Duration::from_millis(100));
        let mut first = waiting(group.join(args("", &["range"]), t0, 0));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        group.poll(t0 + Duration::from_millis(50), 0);
        let mut second =
            waiting(group.join(args("", &["range"]), t0 + Duration::from_millis(50), 0));
        group.poll(t0 + Duration::from_millis(100), 0);
        assert!(
            answered(&mut first).is_none(),
            "a member arrived: the delay extends"
        );
        group.poll(t0 + Duration::from_millis(200), 0);
        let first = answered(&mut first).expect("completed");
        let second = answered(&mut second).expect("completed");
        assert_eq!((first.generation_id, second.generation_id), (1, 1));
        assert_eq!(first.leader, first.member_id);
        assert_eq!((first.members.len(), second.members.len()), (2, 0));
        assert_eq!(group.state, GroupState::CompletingRebalance);
    }

    /// The protocol all members support wins by the members' first choices.
    #[test]
    fn protocol_selected_by_vote() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into(), 0, Duration::ZERO);
        let mut a = waiting(group.join(args("", &["range", "roundrobin"]), t0, 0));
        group.poll(t0, 0);
        let a = answered(&mut a).expect("single member completes at once");
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        let b = args("", &["roundrobin", "range"]);
        let mut b = waiting(group.join(b, t0, 0));
        let mut a = waiting(group.join(args(&a.member_id, &["roundrobin", "range"]), t0, 0));
        group.poll(t0, 0);
        let (a, b) = (answered(&mut a).unwrap(), answered(&mut b).unwrap());
        assert_eq!(a.generation_id, 2);
        assert_eq!(a.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(b.protocol_name.as_deref(), Some("roundrobin"));
        let odd = group.join(args("", &["sticky"]), t0, 0);
        let JoinOutcome::Respond(refused) = odd else {
            panic!("must be refused")
        };
        assert_eq!(
            refused.error_code,
            ResponseError::InconsistentGroupProtocol.code()
        );
    }

    /// A stable member that stops heartbeating expires after its session timeout and the
    /// group rebalances; the others learn it from their heartbeat.
    #[test]
    fn session_expiry_rebalances() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into(), 0, Duration::ZERO);
        let mut a = waiting(group.join(args("", &["range"]), t0, 0));
        let mut b = waiting(group.join(args("", &["range"]), t0, 0));
        group.poll(t0, 0);
        let (a, b) = (answered(&mut a).unwrap(), answered(&mut b).unwrap());
        let (a, b) = (a.member_id.to_string(), b.member_id.to_string());
        let sync = crate::group::SyncArgs {
            group: "g".into(),
            member_id: a.clone(),
            instance_id: None,
            generation: 1,
            protocol_type: None,
            protocol_name: None,
            assignments: Vec::new(),
        };
        let SyncOutcome::Persist(_, generation, _rx) = group.sync(sync, t0, 0) else {
            panic!("the leader's sync persists the assignment")
        };
        group.assignment_persisted(generation, true, t0, 0);
        assert_eq!(group.state, GroupState::Stable);
        let later = t0 + Duration::from_millis(800);
        assert_eq!(group.heartbeat(&a, None, 1, later), Ok(()));
        group.poll(t0 + Duration::from_millis(1_001), 0);
        assert!(!group.members.contains_key(&b), "b expired");
        assert_eq!(group.state, GroupState::PreparingRebalance);
        let heartbeat = group.heartbeat(&a, None, 1, t0 + Duration::from_millis(1_100));
        assert_eq!(heartbeat, Err(ResponseError::RebalanceInProgress));
    }

    /// v4+ joins without a member id add pending members, which count in `size` (what
    /// GROUP_MAX_SIZE_REACHED is decided on) and expire after their session timeout.
    #[test]
    fn pending_members_count_in_size_and_expire() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into(), 0, Duration::ZERO);
        for _ in 0..3 {
            let mut join = args("", &["range"]);
            join.require_known_member_id = true;
            let JoinOutcome::Respond(response) = group.join(join, t0, 0) else {
                panic!("a v4+ join without an id is answered at once")
            };
            assert_eq!(response.error_code, ResponseError::MemberIdRequired.code());
        }
        assert_eq!((group.members.len(), group.size()), (0, 3));
        let (next, _) = group.poll(t0 + Duration::from_millis(999), 0);
        assert_eq!(next, Some(t0 + Duration::from_millis(1_000)));
        group.poll(t0 + Duration::from_millis(1_000), 0);
        assert_eq!(
            group.size(),
            0,
            "pending members expire after their session timeout"
        );
        assert!(group.is_empty_of_members());
    }

    /// The per-protocol counts that replace scans of all members stay right as members join
    /// with duplicate names, change their protocols on rejoin, and leave.
    #[test]
    fn protocol_support_follows_joins_rejoins_and_leaves() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into(), 0, Duration::ZERO);
        let mut a = waiting(group.join(args("", &["range", "range", "rr"]), t0, 0));
        let mut b = waiting(group.join(args("", &["rr", "range"]), t0, 0));
        group.poll(t0, 0);
        let (a, b) = (answered(&mut a).unwrap(), answered(&mut b).unwrap());
        let (a, b) = (a.member_id.to_string(), b.member_id.to_string());
        assert_eq!(group.protocol_support.get("range"), Some(&2));
        assert!(group.supports("consumer", &args("", &["range"]).protocols, ""));
        // a rejoins with only "rr": a newcomer with only "range" no longer fits.
        let _a = waiting(group.join(args(&a, &["rr"]), t0, 0));
        assert_eq!(group.protocol_support.get("range"), Some(&1));
        assert!(!group.supports("consumer", &args("", &["range"]).protocols, ""));
        assert!(!group.supports("consumer", &args("", &["sticky"]).protocols, &b));
        assert!(group.supports("consumer", &args("", &["rr"]).protocols, ""));
        // Except b itself, only a counts: b may switch to anything a lists.
        assert!(group.supports("consumer", &args("", &["rr"]).protocols, &b));
        group.leave(&b, None, t0, 0).unwrap();
        group.leave(&a, None, t0, 0).unwrap();
        assert!(
            group.protocol_support.is_empty(),
            "{:?}",
            group.protocol_support
        );
        assert_eq!(group.awaiting_join, 0);
    }

    /// A join phase that can end (everyone joined, or its deadline passed) is reported by the
    /// O(1) `join_ready`, which is what the coordinator checks after each request.
    #[test]
    fn join_ready_when_all_joined_or_due() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into(), 0, Duration::from_millis(100));
        let _a = waiting(group.join(args("", &["range"]), t0, 0));
        assert!(!group.join_ready(t0), "the initial delay runs first");
        assert!(group.join_ready(t0 + Duration::from_millis(100)));
        group.poll(t0 + Duration::from_millis(100), 0);
        assert_eq!(group.state, GroupState::CompletingRebalance);
        let _b = waiting(group.join(args("", &["range"]), t0, 0));
        assert!(!group.join_ready(t0), "the first member has not rejoined");
        let first = group.leader.clone().unwrap();
        let _a = waiting(group.join(args(&first, &["range"]), t0, 0));
        assert!(group.join_ready(t0), "both members are in");
    }
}
