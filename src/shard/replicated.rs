//! The replicated partitions of a cluster node's shard: each is one replica of the
//! partition's Raft group (`crate::replication`), opened over the partition's log on the shard
//! that owns it here.
//!
//! - Operations on such a partition run on its leader only; a follower answers
//!   NOT_LEADER_OR_FOLLOWER and the client refreshes its metadata.
//! - Produce proposes the batch to the group and answers once the group committed it: a
//!   majority of the replicas has it on disk (see `Routed::run_on_replica`).
//! - DeleteRecords and retention propose a move of the log start, which every replica
//!   applies, so that a new leader's log begins where the old one's did.
//! - A replica that wins an election reports its leadership to the controller, which
//!   records it in the metadata log, so that every node's Metadata sends clients there.
//! - The groups of a `__consumer_offsets` partition are coordinated by its leader.
//!
//! Per-shard.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use kafka_protocol::ResponseError;

use super::admin::ControllerCommand;
use super::controller_call::{ControllerAnswer, ControllerCall};
use super::messages::ShardRequest;
use super::table::TopicEntry;
use super::Shard;
use crate::group;
use crate::ids::Offset;
use crate::ids::{LeaderEpoch, NodeId, PartitionId, ShardId};
use crate::limits;
use crate::partition::{
    DeleteRecordsInput, DeleteRecordsOutput, Partition, PartitionOp, ProduceInput, ProduceOutput,
    TopicPartition, WriteMarkerInput, WriteMarkerOutput,
};
use crate::replication::{ProposeError, Replica, ReplicaConfig, ReplicaSpec, Until};
use crate::runtime;
use crate::storage::Log;
use crate::transport::{Address, Transport};
use crate::txn;

/// What a replica that does not lead knows of its partition's leader: another node and its
/// term as the leader epoch, or None while it knows none.
pub type LeaderSeen = Option<(NodeId, LeaderEpoch)>;

impl Shard {
    /// Of `claimed`, partitions the metadata says this node leads, those whose replica here
    /// does not lead, with what it knows of the leader instead. The metadata lags the
    /// replicas: a leader that lost its quorum steps down while a node cut off from the
    /// controller cannot record it, and its Metadata answers sent clients back to it. Asks
    /// each partition's owner shard.
    pub async fn not_led_here(
        self: &Rc<Self>,
        claimed: Vec<TopicPartition>,
    ) -> Vec<(TopicPartition, LeaderSeen)> {
        let mut by_owner: HashMap<ShardId, Vec<TopicPartition>> = HashMap::new();
        {
            let table = self.table();
            for tp in claimed {
                let owner = table.topic(&tp.topic).and_then(|t| t.owner(tp.partition));
                if let Some(owner) = owner {
                    by_owner.entry(owner).or_default().push(tp);
                }
            }
        }
        let mut found = Vec::new();
        for (owner, partitions) in by_owner {
            let answer = match owner == self.id {
                true => Some(self.not_led_by_replicas(partitions)),
                false => {
                    let ask = |tx| ShardRequest::NotLedHere(partitions, tx);
                    self.call(owner, ask).await
                }
            };
            found.extend(answer.unwrap_or_default());
        }
        found
    }

    /// `not_led_here` for the partitions this shard owns.
    pub(super) fn not_led_by_replicas(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Vec<(TopicPartition, LeaderSeen)> {
        let me = self.config.node_id;
        partitions
            .into_iter()
            .filter_map(|tp| {
                let Some(replica) = self.replica_of(&tp) else {
                    return Some((tp, None));
                };
                if replica.is_leader() {
                    return None;
                }
                let epoch = i32::try_from(replica.term()).ok().map(LeaderEpoch);
                let seen = replica.leader().filter(|leader| *leader != me).zip(epoch);
                Some((tp, seen))
            })
            .collect()
    }

    /// The replica of `tp`'s Raft group on this shard, if `tp` is replicated and owned here.
    pub(super) fn replica_of(&self, tp: &TopicPartition) -> Option<Rc<Replica>> {
        let cluster = self.cluster.get()?;
        let replica = cluster.by_partition.borrow().get(tp).cloned();
        replica
    }

    /// Opens this node's replica of `partition`'s group over its log. The preferred leader
    /// campaigns at once, so that a new partition serves without waiting out an election
    /// timeout.
    pub(super) async fn open_replica(
        self: &Rc<Self>,
        topic: &TopicEntry,
        partition: PartitionId,
        log: Rc<Log>,
    ) -> Result<Rc<Partition>, String> {
        let cluster = self
            .cluster
            .get()
            .expect("replicated partitions are a cluster's");
        let group = topic.group(partition).expect("a replicated partition");
        let me = self.config.node_id;
        // A replica joining by a reassignment knows no voters: it neither campaigns nor
        // votes until the leader has added it to the group (its anchor, once written, keeps
        // what it applied).
        let joining = topic.is_adding(partition, me);
        let voters = match joining {
            true => Vec::new(),
            false => topic.replicas(partition).iter().map(|r| r.node).collect(),
        };
        let spec = ReplicaSpec {
            group,
            me,
            voters,
            peers: peers_of(topic, partition, me),
            seed: super::quorum::election_seed() ^ group,
        };
        let tp = TopicPartition {
            topic: topic.name.clone(),
            partition,
        };
        let transport: Rc<dyn Transport> = Rc::new(cluster.transport.clone());
        let replica = Replica::open(
            spec,
            tp.clone(),
            topic.config.clone(),
            log,
            self.partition_context.clone(),
            transport,
            ReplicaConfig::default(),
        )
        .await
        .map_err(|error| format!("cannot open the replica of {}: {error}", tp.topic))?;
        if topic.preferred_leader(partition) == Some(me) && !joining {
            replica.campaign();
        }
        cluster.replicas.insert(replica.clone());
        cluster
            .by_partition
            .borrow_mut()
            .insert(tp.clone(), replica.clone());
        let partition = replica.partition().clone();
        if tp.topic == group::OFFSETS_TOPIC || tp.topic == txn::TRANSACTION_TOPIC {
            let coordinate = self.clone().coordinate(tp.clone(), replica.clone());
            runtime::spawn_into(self.queues.requests, coordinate);
        }
        runtime::spawn_into(
            self.queues.requests,
            self.clone().report_leadership(tp, replica),
        );
        Ok(partition)
    }

    /// The groups of a replicated `__consumer_offsets` partition, and the transactional ids
    /// of a `__transaction_state` partition, are coordinated where it is led: loaded once
    /// this replica leads and has committed in its term (its log is then whole below the high
    /// watermark), dropped when it stops leading (they answer NOT_COORDINATOR here, and the
    /// new leader loads them), until the replica stops. Markers carry the term as the
    /// coordinator epoch.
    async fn coordinate(self: Rc<Self>, tp: TopicPartition, replica: Rc<Replica>) {
        let partition = tp.partition;
        let groups = tp.topic == group::OFFSETS_TOPIC;
        let mut coordinating = false;
        loop {
            let moved = replica.leadership_moved();
            let serving = replica.committed_in_term() && !replica.is_stopped();
            if serving != coordinating {
                coordinating = serving;
                tracing::info!(topic = %tp.topic, %partition, serving, "coordinator partition");
                match (groups, serving) {
                    (true, true) => group::partition_opened(&self, partition),
                    (true, false) => group::partition_removed(&self, partition),
                    (false, true) => {
                        let epoch = replica.leader_epoch().get();
                        txn::partition_opened(&self, partition, epoch)
                    }
                    (false, false) => txn::partition_removed(&self, partition),
                }
            }
            if replica.is_stopped() {
                return;
            }
            moved.await;
        }
    }

    /// Tells this shard's replica of `topic`'s `partition`, if any, where the group's
    /// replicas are now (a reassignment changed them).
    pub(super) fn replicas_changed(&self, topic: &TopicEntry, partition: PartitionId) {
        let tp = TopicPartition {
            topic: topic.name.clone(),
            partition,
        };
        if let Some(replica) = self.replica_of(&tp) {
            replica.set_peers(peers_of(topic, partition, self.config.node_id));
        }
    }

    /// Stops the replica of `tp` (its partition was removed or moved away).
    pub(super) fn close_replica(&self, tp: &TopicPartition) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let replica = cluster.by_partition.borrow_mut().remove(tp);
        if let Some(replica) = replica {
            replica.stop();
            cluster.replicas.remove(replica.group());
        }
    }

    /// Tells the controller each term this replica wins and each change of the replicas in
    /// sync with it, until the replica stops. A report that does not reach the controller is
    /// sent again while it is still what the replica would report.
    async fn report_leadership(self: Rc<Self>, tp: TopicPartition, replica: Rc<Replica>) {
        let retry = Duration::from_millis(limits::LEADER_REPORT_RETRY_MS);
        let mut reported = None;
        while !replica.is_stopped() {
            let moved = replica.leadership_moved();
            let now = (replica.term(), replica.in_sync());
            if replica.is_leader() && reported.as_ref() != Some(&now) {
                if self.report_leader(&tp, now.0, now.1.clone()).await {
                    reported = Some(now);
                } else {
                    let pause = runtime::sleep(retry);
                    select(Box::pin(pause), Box::pin(moved)).await;
                }
                continue;
            }
            moved.await;
        }
    }

    async fn report_leader(
        self: &Rc<Self>,
        tp: &TopicPartition,
        term: u64,
        in_sync: Vec<NodeId>,
    ) -> bool {
        let Ok(epoch) = i32::try_from(term) else {
            tracing::error!(topic = %tp.topic, partition = %tp.partition, term, "term past the leader epoch range");
            return false;
        };
        let command = ControllerCommand::PartitionLeader {
            topic: tp.topic.clone(),
            partition: tp.partition,
            leader: self.config.node_id,
            epoch: LeaderEpoch(epoch),
            in_sync,
        };
        let call = ControllerCall::Commands(vec![command]);
        let patience = Duration::from_millis(limits::LEADER_REPORT_TIMEOUT_MS);
        match self.call_controller_within(call, patience).await {
            Some(ControllerAnswer::Commands(results)) => {
                let refused = results.iter().find(|result| result.error_code != 0);
                match refused {
                    None => {
                        tracing::debug!(topic = %tp.topic, partition = %tp.partition, epoch, "leadership reported");
                        true
                    }
                    // The topic is gone (its deletion is on its way here): nothing to report.
                    Some(result)
                        if result.error_code == ResponseError::UnknownTopicOrPartition.code() =>
                    {
                        true
                    }
                    Some(result) => {
                        tracing::debug!(topic = %tp.topic, error = ?result.error_message, "leadership report refused");
                        false
                    }
                }
            }
            _ => false,
        }
    }

    /// A shard of a node told to stop hands the leadership of every partition it leads to a
    /// caught-up follower, so that producers move on without waiting for an election
    /// timeout; it waits at most `LEADERSHIP_HANDOVER_MS` for them all.
    pub(super) async fn hand_over_leaderships(&self) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        let leading: Vec<Rc<Replica>> = cluster
            .by_partition
            .borrow()
            .values()
            .filter(|replica| replica.is_leader() && replica.has_peers())
            .cloned()
            .collect();
        if leading.is_empty() {
            return;
        }
        let handed_over = futures::future::join_all(leading.iter().map(|r| r.hand_over()));
        let election = Duration::from_millis(limits::LEADERSHIP_HANDOVER_MS);
        let timed_out = matches!(
            select(Box::pin(handed_over), Box::pin(runtime::sleep(election))).await,
            Either::Right(_)
        );
        if timed_out {
            let still = leading.iter().filter(|replica| replica.is_leader()).count();
            tracing::warn!(shard = %self.id, still, "partition leaderships not all handed over before the shutdown");
        }
    }

    /// Every `leader_balance_interval_ms` (0: never), each partition this shard leads whose
    /// preferred leader (its first replica) is another node, live and in sync, is handed back
    /// to it: leadership returns to a node that came back, and stays spread as placement
    /// spread it. One timer per shard, not per partition.
    pub(super) async fn balance_leaders(self: Rc<Self>, stop: Rc<crate::sync::Latch>) {
        let interval = self
            .config
            .cluster
            .as_ref()
            .map_or(0, |cluster| cluster.leader_balance_interval_ms);
        if interval == 0 {
            return;
        }
        loop {
            let pause = runtime::sleep(Duration::from_millis(interval));
            if let Either::Right(_) = select(Box::pin(pause), Box::pin(stop.wait())).await {
                return;
            }
            let Some(cluster) = self.cluster.get() else {
                return;
            };
            let leading: Vec<(TopicPartition, Rc<Replica>)> = cluster
                .by_partition
                .borrow()
                .iter()
                .filter(|(_, replica)| replica.leads_in_term())
                .map(|(tp, replica)| (tp.clone(), replica.clone()))
                .collect();
            for (tp, replica) in leading {
                self.hand_to_preferred(&tp, &replica);
            }
        }
    }

    /// Moves the groups of the partitions this shard leads that are being reassigned towards
    /// their targets (`Replica::reconfigure`), and reports each target reached and applied
    /// by all its voters to the controller, which completes the reassignment (the nodes that
    /// left then delete their replicas). Looks every `REASSIGNMENT_CHECK_MS` and at every
    /// change of the metadata; one loop per shard, not one per partition.
    pub(super) async fn drive_reassignments(self: Rc<Self>, stop: Rc<crate::sync::Latch>) {
        let interval = Duration::from_millis(limits::REASSIGNMENT_CHECK_MS);
        loop {
            let changed = self.table_changed();
            let pause = select(Box::pin(runtime::sleep(interval)), Box::pin(changed));
            if let Either::Right(_) = select(pause, Box::pin(stop.wait())).await {
                return;
            }
            let Some(cluster) = self.cluster.get() else {
                return;
            };
            // Only the partitions being reassigned are looked at, so that a look costs
            // nothing while none is.
            let reassigning: Vec<(TopicPartition, Rc<Replica>, BTreeSet<NodeId>)> = {
                let table = self.table();
                let by_partition = cluster.by_partition.borrow();
                let moving = table.topics().flat_map(|topic| {
                    let partitions = topic.reassigning.keys();
                    partitions.map(move |partition| (topic, *partition))
                });
                moving
                    .filter_map(|(topic, partition)| {
                        let tp = TopicPartition {
                            topic: topic.name.clone(),
                            partition,
                        };
                        let replica = by_partition.get(&tp)?.clone();
                        let target = topic.reassignment_target(partition)?;
                        replica
                            .leads_in_term()
                            .then(|| (tp, replica, target.into_iter().collect()))
                    })
                    .collect()
            };
            for (tp, replica, target) in reassigning {
                if replica.settled(&target) {
                    self.report_reassigned(&tp, target).await;
                } else if !replica.membership().is(&target) {
                    replica.reconfigure(target);
                }
            }
        }
    }

    async fn report_reassigned(self: &Rc<Self>, tp: &TopicPartition, voters: BTreeSet<NodeId>) {
        let command = ControllerCommand::ReassignmentDone {
            topic: tp.topic.clone(),
            partition: tp.partition,
            voters: voters.into_iter().collect(),
        };
        let call = ControllerCall::Commands(vec![command]);
        let patience = Duration::from_millis(limits::LEADER_REPORT_TIMEOUT_MS);
        match self.call_controller_within(call, patience).await {
            Some(ControllerAnswer::Commands(results))
                if results.iter().all(|r| r.error_code == 0) =>
            {
                tracing::info!(topic = %tp.topic, partition = %tp.partition, "reassignment complete");
            }
            // Not recorded (no controller, the topic deleted): the next look reports again.
            answer => tracing::debug!(topic = %tp.topic, ?answer, "reassignment not recorded yet"),
        }
    }

    /// Hands the leadership of `tp`, led here by `replica`, to its preferred leader when that
    /// is another node, live and in sync (the balancer, and ElectLeaders).
    pub(super) fn hand_to_preferred(&self, tp: &TopicPartition, replica: &Replica) {
        if !replica.leads_in_term() {
            return;
        }
        let me = self.config.node_id;
        let table = self.table();
        let preferred = table
            .topic(&tp.topic)
            .and_then(|topic| topic.preferred_leader(tp.partition))
            .filter(|node| *node != me && !table.is_fenced(*node));
        drop(table);
        if let Some(preferred) = preferred.filter(|n| replica.in_sync().contains(n)) {
            tracing::info!(topic = %tp.topic, partition = %tp.partition, %preferred, "handing the partition to its preferred leader");
            replica.transfer_to(preferred);
        }
    }

    /// Stops every replica of this shard before its partitions close.
    pub(super) fn stop_replicas(&self) {
        if let Some(cluster) = self.cluster.get() {
            for replica in cluster.by_partition.borrow().values() {
                replica.stop();
            }
        }
    }
}

/// Where each replica of `partition` other than this node's is.
fn peers_of(topic: &TopicEntry, partition: PartitionId, me: NodeId) -> HashMap<NodeId, Address> {
    let replicas = topic.replicas(partition).iter();
    replicas
        .filter(|replica| replica.node != me)
        .map(|replica| {
            let address = Address {
                node: replica.node,
                shard: replica.shard,
            };
            (replica.node, address)
        })
        .collect()
}

/// Produce on a replicated partition: the leader checks the batch as `Partition::produce`
/// does, proposes it, and answers once the group committed it (acks=all: a majority has it
/// on disk), once it is on the leader's disk (acks=1), or at once (acks=0). With acks=all, fewer replicas in sync
/// than the topic's `min.insync.replicas` is NOT_ENOUGH_REPLICAS before the batch is
/// proposed, and NOT_ENOUGH_REPLICAS_AFTER_APPEND once it is committed. The producer state is checked by the
/// replica (see `Replica::propose`). Losing the leadership before the batch committed is
/// NOT_LEADER_OR_FOLLOWER, which producers retry at the new leader; an idempotent retry is
/// then deduplicated against the log it inherited.
pub(super) async fn produce_on_replica(replica: Rc<Replica>, input: ProduceInput) -> ProduceOutput {
    let partition = replica.partition().clone();
    if !replica.is_leader() {
        return partition.error(
            ResponseError::NotLeaderOrFollower,
            "not the partition's leader",
        );
    }
    let (entry, place) = match partition.prepare_entry(input.records).await {
        Ok(prepared) => prepared,
        Err(refused) => return refused,
    };
    let wanted = partition.min_insync_replicas();
    let too_few = |in_sync: usize| input.acks == -1 && in_sync < wanted;
    if too_few(replica.in_sync().len()) {
        let message = format!("fewer than min.insync.replicas={wanted} replicas in sync");
        return partition.error(ResponseError::NotEnoughReplicas, &message);
    }
    // Proposed in line: the proposal takes its place in the log order when made.
    if input.acks == 0 {
        let proposal = replica.propose_until(entry.batch, Until::Committed);
        drop(place);
        runtime::spawn_local(async move {
            let _ = proposal.await;
        })
        .detach();
        return ProduceOutput::default();
    }
    let until = match input.acks {
        1 => Until::DurableHere,
        _ => Until::Committed,
    };
    let proposal = replica.propose_until(entry.batch.clone(), until);
    drop(place);
    match proposal.await {
        // Kafka's answer when the in-sync replicas shrank while the batch was committed: it
        // is written, but not as redundantly as the producer asked.
        Ok(_) if too_few(replica.in_sync().len()) => {
            let message = format!("written, but fewer than min.insync.replicas={wanted} in sync");
            partition.error(ResponseError::NotEnoughReplicasAfterAppend, &message)
        }
        Ok(committed) => partition.entry_committed(&entry, committed.base_offset),
        Err(ProposeError::Producer(error)) => partition.producer_error(error),
        Err(
            error @ (ProposeError::NotLeader { .. }
            | ProposeError::NotCommitted
            | ProposeError::Stopped),
        ) => partition.error(ResponseError::NotLeaderOrFollower, &error.to_string()),
    }
}

/// A transaction marker on a replicated partition: the leader checks it against the producer
/// state of its log and proposes it, and answers once the group committed it (Kafka writes
/// markers with acks=all). Losing the leadership first is NOT_LEADER_OR_FOLLOWER, which the
/// coordinator retries at the new leader.
pub(super) async fn write_marker_on_replica(
    replica: Rc<Replica>,
    input: WriteMarkerInput,
) -> WriteMarkerOutput {
    if !replica.leads_in_term() {
        return WriteMarkerInput::refused(ResponseError::NotLeaderOrFollower);
    }
    let partition = replica.partition().clone();
    let batch = match partition.prepare_marker(&input.marker) {
        Ok(batch) => batch,
        Err(refused) => return WriteMarkerOutput::from(refused),
    };
    match replica.propose(batch).await {
        Ok(_) => WriteMarkerOutput::default(),
        Err(ProposeError::Producer(error)) => partition.producer_error(error).into(),
        Err(error) => {
            let group = replica.group();
            tracing::debug!(group, %error, "transaction marker not committed");
            WriteMarkerInput::refused(ResponseError::NotLeaderOrFollower)
        }
    }
}

/// DeleteRecords on a replicated partition: the leader proposes the move of the log start,
/// and answers once the group committed it and this replica applied it. Every replica moves
/// its log start when it applies the entry, so that a new leader begins where the old one
/// did. An offset past the high watermark is OFFSET_OUT_OF_RANGE, as on a single node.
pub(super) async fn delete_records_on_replica(
    replica: Rc<Replica>,
    input: DeleteRecordsInput,
) -> DeleteRecordsOutput {
    let refused = |error: ResponseError| DeleteRecordsOutput {
        error_code: error.code(),
        low_watermark: Offset::NONE,
    };
    if !replica.leads_in_term() {
        return refused(ResponseError::NotLeaderOrFollower);
    }
    let partition = replica.partition().clone();
    let high_watermark = partition.high_watermark();
    let target = match input.offset {
        Offset::NONE => high_watermark,
        offset => offset,
    };
    if !(Offset::ZERO..=high_watermark).contains(&target) {
        return refused(ResponseError::OffsetOutOfRange);
    }
    if target > partition.log_start_offset() {
        if let Err(error) = replica.propose_log_start(target).await {
            let group = replica.group();
            tracing::debug!(group, %error, "DeleteRecords not committed");
            return refused(ResponseError::NotLeaderOrFollower);
        }
    }
    DeleteRecordsOutput {
        error_code: 0,
        low_watermark: partition.log_start_offset(),
    }
}

/// Retention of a replicated partition is its leader's: where the topic's retention would
/// move the log start, the leader proposes the move, so that every replica's log starts at
/// the same offset (each replica's own retention pass deletes only below its log start).
pub(super) fn retain(replica: Rc<Replica>, now_ms: i64) {
    if !replica.leads_in_term() {
        return;
    }
    let Some(log_start) = replica.partition().retention_start(now_ms) else {
        return;
    };
    runtime::spawn_local(async move {
        if let Err(error) = replica.propose_log_start(log_start).await {
            let group = replica.group();
            tracing::debug!(group, %error, "retention's log start not committed; the next pass tries again");
        }
    })
    .detach();
}
