//! The shard table: every topic, its config and the shard that owns each of its partitions.
//!
//! Per-shard: every shard holds a full copy, built by applying the same `MetadataRecord`s in
//! the same order (the controller broadcasts each record after it is durable), and guarded by
//! a revision: the metadata log offset of the next record to apply, checked on every update,
//! so that a record applied twice, out of order or after a gap is refused. Placement is
//! always read from here, never computed by hashing, so that partitions can move between
//! shards and nodes. A single node's partitions are recorded as owner shards and held here as
//! one replica each on this node, so that the rest of the broker sees one shape.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use crate::config::TopicDefaults;
use crate::ids::{LeaderEpoch, NodeId, PartitionId, ShardId};
use crate::metadata::topic_config::TopicConfig;
use crate::metadata::{BrokerRegistration, MetadataRecord, PlacedReplica};
use crate::partition::LEADER_EPOCH;
use crate::quota::QuotaStore;
use crate::replication::GroupId;
use crate::security::acl::AclStore;
use crate::security::users::UserStore;

/// One topic as every shard sees it.
#[derive(Debug, Clone)]
pub struct TopicEntry {
    pub name: String,
    pub id: uuid::Uuid,
    /// `replicas[p]` are partition `p`'s replicas, the first its preferred leader.
    pub replicas: Vec<Vec<PlacedReplica>>,
    /// `groups[p]` is the Raft group of partition `p`'s replicas; empty when the topic's
    /// partitions are not replicated (a single node's, `__consumer_offsets` in a cluster).
    pub groups: Vec<GroupId>,
    /// What its replicated partitions' leaders last reported.
    pub leaders: BTreeMap<PartitionId, Leadership>,
    /// Its partitions being reassigned.
    pub reassigning: BTreeMap<PartitionId, Reassignment>,
    /// This node: the one whose shards `owner` names.
    here: NodeId,
    pub overrides: BTreeMap<String, String>,
    pub config: TopicConfig,
}

/// A replicated partition's leader as it reported itself (see
/// `MetadataRecord::PartitionLeaderChanged`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub leader: NodeId,
    pub epoch: LeaderEpoch,
    /// The replicas in sync with the leader, the leader first.
    pub in_sync: Vec<NodeId>,
}

/// A partition's replicas being changed (see `MetadataRecord::PartitionReplicasChanged`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// Nodes of the target joining the group.
    pub adding: Vec<NodeId>,
    /// Nodes leaving it once the group's voters are the target.
    pub removing: Vec<NodeId>,
}

/// Where a partition is, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On this node, owned by this shard.
    Here(ShardId),
    /// On another node of the cluster.
    Elsewhere(NodeId),
    /// No such partition.
    Unknown,
}

impl TopicEntry {
    pub fn partition_count(&self) -> i32 {
        self.replicas.len() as i32
    }

    /// The replicas of `partition` (none if it does not exist).
    pub fn replicas(&self, partition: PartitionId) -> &[PlacedReplica] {
        usize::try_from(partition.get())
            .ok()
            .and_then(|index| self.replicas.get(index))
            .map_or(&[], Vec::as_slice)
    }

    pub fn placement(&self, partition: PartitionId) -> Placement {
        let replicas = self.replicas(partition);
        if let Some(mine) = replicas.iter().find(|r| r.node == self.here) {
            return Placement::Here(mine.shard);
        }
        match replicas.first() {
            Some(preferred) => Placement::Elsewhere(preferred.node),
            None => Placement::Unknown,
        }
    }

    /// The shard of this node that owns `partition`: None if it does not exist or is on
    /// another node.
    pub fn owner(&self, partition: PartitionId) -> Option<ShardId> {
        match self.placement(partition) {
            Placement::Here(shard) => Some(shard),
            _ => None,
        }
    }

    /// The nodes `partition` is being reassigned to (its replicas without those being
    /// removed, in order), or None when it is not being reassigned.
    pub fn reassignment_target(&self, partition: PartitionId) -> Option<Vec<NodeId>> {
        let reassignment = self.reassigning.get(&partition)?;
        let replicas = self.replicas(partition).iter().map(|replica| replica.node);
        Some(
            replicas
                .filter(|node| !reassignment.removing.contains(node))
                .collect(),
        )
    }

    /// Whether `node` is joining `partition`'s group by a reassignment.
    pub fn is_adding(&self, partition: PartitionId, node: NodeId) -> bool {
        self.reassigning
            .get(&partition)
            .is_some_and(|reassignment| reassignment.adding.contains(&node))
    }

    /// The node of `partition`'s preferred leader.
    pub fn preferred_leader(&self, partition: PartitionId) -> Option<NodeId> {
        self.replicas(partition).first().map(|replica| replica.node)
    }

    /// The Raft group of `partition`'s replicas, if it is replicated.
    pub fn group(&self, partition: PartitionId) -> Option<GroupId> {
        usize::try_from(partition.get())
            .ok()
            .and_then(|index| self.groups.get(index))
            .copied()
    }

    /// `partition`'s leader and leader epoch as this node knows them: for a replicated
    /// partition what its leader last reported (None before the first report), for one that
    /// is not its only replica, in the one epoch such a partition has.
    pub fn leader(&self, partition: PartitionId) -> Option<(NodeId, LeaderEpoch)> {
        match self.group(partition) {
            Some(_) => self
                .leaders
                .get(&partition)
                .map(|reported| (reported.leader, reported.epoch)),
            None => self
                .preferred_leader(partition)
                .map(|node| (node, LEADER_EPOCH)),
        }
    }

    /// `partition`'s replicas in sync with its leader: as its leader last reported for a
    /// replicated partition (none before the first report), its one replica otherwise.
    pub fn in_sync(&self, partition: PartitionId) -> Vec<NodeId> {
        match self.group(partition) {
            Some(_) => self
                .leaders
                .get(&partition)
                .map(|reported| reported.in_sync.clone())
                .unwrap_or_default(),
            None => self.replicas(partition).iter().map(|r| r.node).collect(),
        }
    }

    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// What applying a record changed, so that the shard can open or drop partition logs.
#[derive(Debug, Default)]
pub struct TableChange {
    /// (topic, partition, owner shard) that now exist or moved here.
    pub added: Vec<(Rc<TopicEntry>, PartitionId)>,
    /// The added partitions are new (a topic created, partitions added), not moved: nothing
    /// of theirs can be on disk yet, so a directory under their name is a leftover.
    pub added_are_new: bool,
    /// (topic, partition, owner shard before) that no longer exist or moved away.
    pub removed: Vec<(String, PartitionId, ShardId)>,
    /// Topics whose config changed.
    pub reconfigured: Vec<Rc<TopicEntry>>,
    /// (topic, partition) whose leader is asked to hand over to the preferred leader.
    pub preferred_elected: Vec<(String, PartitionId)>,
    /// (topic, partition) whose replicas changed (a reassignment): their replicas learn
    /// where the others are.
    pub replicas_changed: Vec<(Rc<TopicEntry>, PartitionId)>,
    /// A node registered: the shards learn where it listens.
    pub brokers_registered: bool,
}

/// Per-shard copy of the cluster's topic table.
pub struct ShardTable {
    defaults: TopicDefaults,
    topics: BTreeMap<String, Rc<TopicEntry>>,
    ids: HashMap<uuid::Uuid, String>,
    /// SCRAM credentials; shared with authentications in progress, copied on change.
    users: Rc<UserStore>,
    /// ACLs; shared with requests being authorized, copied on change.
    acls: Rc<AclStore>,
    /// Client quotas; shared with requests being throttled, copied on change.
    quotas: Rc<QuotaStore>,
    /// The nodes of the cluster, as they registered (empty on a single node).
    brokers: BTreeMap<NodeId, BrokerRegistration>,
    /// Registered nodes the active controller has not heard from within their session.
    fenced: BTreeSet<NodeId>,
    /// Every producer id below this was handed out in an earlier block.
    next_producer_id: i64,
    /// Every Raft group id below this is taken (0 is the metadata log's).
    next_group_id: GroupId,
    /// This node.
    here: NodeId,
    /// The metadata log offset of the next record to apply: every record below it is applied.
    revision: i64,
}

impl ShardTable {
    /// The table of node `here`.
    pub fn new(defaults: TopicDefaults, here: NodeId) -> ShardTable {
        ShardTable {
            defaults,
            brokers: BTreeMap::new(),
            fenced: BTreeSet::new(),
            next_producer_id: 0,
            next_group_id: 1,
            here,
            topics: BTreeMap::new(),
            ids: HashMap::new(),
            users: Rc::default(),
            acls: Rc::default(),
            quotas: Rc::default(),
            revision: 0,
        }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn defaults(&self) -> &TopicDefaults {
        &self.defaults
    }

    pub fn topic(&self, name: &str) -> Option<Rc<TopicEntry>> {
        self.topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &uuid::Uuid) -> Option<Rc<TopicEntry>> {
        self.ids.get(id).and_then(|name| self.topic(name))
    }

    pub fn users(&self) -> Rc<UserStore> {
        self.users.clone()
    }

    pub fn acls(&self) -> Rc<AclStore> {
        self.acls.clone()
    }

    pub fn quotas(&self) -> Rc<QuotaStore> {
        self.quotas.clone()
    }

    pub fn topics(&self) -> impl Iterator<Item = &Rc<TopicEntry>> {
        self.topics.values()
    }

    /// The registered nodes of the cluster (none on a single node).
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    pub fn broker(&self, node: NodeId) -> Option<&BrokerRegistration> {
        self.brokers.get(&node)
    }

    /// Whether `node` is registered and fenced (not heard from within its session, or not
    /// caught up with the metadata log since it registered).
    pub fn is_fenced(&self, node: NodeId) -> bool {
        self.fenced.contains(&node)
    }

    /// Every producer id below this was handed out in an earlier block.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// The first Raft group id no partition has taken.
    pub fn next_group_id(&self) -> GroupId {
        self.next_group_id
    }

    fn take_groups(&mut self, groups: &[GroupId]) {
        if let Some(last) = groups.iter().max() {
            self.next_group_id = self.next_group_id.max(last + 1);
        }
    }

    /// Every replica of every partition, with its topic and partition.
    pub fn placed_replicas(
        &self,
    ) -> impl Iterator<Item = (&Rc<TopicEntry>, PartitionId, PlacedReplica)> {
        self.topics.values().flat_map(|topic| {
            topic
                .replicas
                .iter()
                .enumerate()
                .flat_map(move |(index, replicas)| {
                    let partition = PartitionId(index as i32);
                    replicas
                        .iter()
                        .map(move |replica| (topic, partition, *replica))
                })
        })
    }

    /// Replicas owned by each of `shard_count` shards of `node`.
    pub fn load_per_shard(&self, node: NodeId, shard_count: usize) -> Vec<usize> {
        let mut load = vec![0; shard_count];
        for (_, _, replica) in self.placed_replicas() {
            if replica.node == node {
                if let Some(count) = load.get_mut(replica.shard.get()) {
                    *count += 1;
                }
            }
        }
        load
    }

    /// Partitions each node is the preferred leader of.
    pub fn leaders_per_node(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        let leaders = self.topics.values().flat_map(|topic| &topic.replicas);
        for preferred in leaders.filter_map(|replicas| replicas.first()) {
            *load.entry(preferred.node).or_default() += 1;
        }
        load
    }

    /// Replicas held by each registered node that is not fenced.
    pub fn load_per_node(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self
            .brokers
            .keys()
            .filter(|node| !self.fenced.contains(node))
            .map(|node| (*node, 0))
            .collect();
        for (_, _, replica) in self.placed_replicas() {
            if let Some(count) = load.get_mut(&replica.node) {
                *count += 1;
            }
        }
        load
    }

    /// A partition's replicas as recorded: a single node's owner shards as one replica each
    /// on this node, a cluster's as they are.
    fn placed(
        &self,
        shards: &[ShardId],
        replicas: &[Vec<PlacedReplica>],
    ) -> Vec<Vec<PlacedReplica>> {
        let here = self.here;
        let single = shards.iter().map(|shard| {
            vec![PlacedReplica {
                node: here,
                shard: *shard,
            }]
        });
        single.chain(replicas.iter().cloned()).collect()
    }

    /// Skips the metadata log offset `offset`, which holds no record (a control batch of a
    /// replicated metadata log): like `apply`, only the next offset may be skipped.
    pub fn skip(&mut self, offset: i64) -> Result<(), String> {
        self.check_next(offset)?;
        self.revision += 1;
        Ok(())
    }

    fn check_next(&self, offset: i64) -> Result<(), String> {
        if offset != self.revision {
            return Err(format!(
                "the shard table has applied the metadata log up to offset {}, and cannot apply \
                 offset {offset}",
                self.revision
            ));
        }
        Ok(())
    }

    /// Applies the record at `offset` of the metadata log. Records are applied in log order on
    /// every shard, each exactly once: a record that is not the next one is refused, and the
    /// table is left as it was.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) -> Result<TableChange, String> {
        self.check_next(offset)?;
        self.revision += 1;
        let mut change = TableChange::default();
        match record {
            MetadataRecord::TopicCreated {
                name,
                id,
                shards,
                replicas,
                groups,
                configs,
            } => {
                self.take_groups(groups);
                let entry = Rc::new(TopicEntry {
                    name: name.clone(),
                    id: *id,
                    replicas: self.placed(shards, replicas),
                    groups: groups.clone(),
                    leaders: BTreeMap::new(),
                    reassigning: BTreeMap::new(),
                    here: self.here,
                    overrides: configs.clone(),
                    config: TopicConfig::resolve(&self.defaults, configs),
                });
                for partition in PartitionId::all(entry.partition_count()) {
                    change.added.push((entry.clone(), partition));
                }
                change.added_are_new = true;
                self.ids.insert(*id, name.clone());
                self.topics.insert(name.clone(), entry);
            }
            MetadataRecord::TopicDeleted { name, .. } => {
                if let Some(entry) = self.topics.remove(name) {
                    self.ids.remove(&entry.id);
                    for partition in PartitionId::all(entry.partition_count()) {
                        if let Some(shard) = entry.owner(partition) {
                            change.removed.push((name.clone(), partition, shard));
                        }
                    }
                }
            }
            MetadataRecord::PartitionsAdded {
                name,
                shards,
                replicas,
                groups,
            } => {
                self.take_groups(groups);
                let placed = self.placed(shards, replicas);
                let added = self.update(name, |entry| {
                    let first = entry.partition_count();
                    entry.replicas.extend(placed);
                    entry.groups.extend(groups);
                    first
                });
                if let Some((entry, first)) = added {
                    for partition in (first..entry.partition_count()).map(PartitionId) {
                        change.added.push((entry.clone(), partition));
                    }
                    change.added_are_new = true;
                }
            }
            MetadataRecord::PartitionMoved {
                name,
                partition,
                shard,
            } => {
                let here = self.here;
                let moved = self.update(name, |entry| {
                    let before = entry.owner(*partition);
                    if before.is_some() {
                        entry.replicas[partition.get() as usize] = vec![PlacedReplica {
                            node: here,
                            shard: *shard,
                        }];
                    }
                    before
                });
                if let Some((entry, Some(before))) = moved {
                    change.removed.push((name.clone(), *partition, before));
                    change.added.push((entry, *partition));
                }
            }
            MetadataRecord::PartitionReplicasChanged {
                name,
                partition,
                replicas,
                adding,
                removing,
            } => {
                let here = self.here;
                let changed = self.update(name, |entry| {
                    let index = usize::try_from(partition.get()).ok()?;
                    let slot = entry.replicas.get_mut(index)?;
                    let shard_here = |replicas: &[PlacedReplica]| {
                        replicas.iter().find(|r| r.node == here).map(|r| r.shard)
                    };
                    let before = shard_here(slot);
                    *slot = replicas.clone();
                    let after = shard_here(slot);
                    if adding.is_empty() && removing.is_empty() {
                        entry.reassigning.remove(partition);
                    } else {
                        let reassignment = Reassignment {
                            adding: adding.clone(),
                            removing: removing.clone(),
                        };
                        entry.reassigning.insert(*partition, reassignment);
                    }
                    Some((before, after))
                });
                if let Some((entry, Some((before, after)))) = changed {
                    if let Some(before) = before.filter(|shard| after != Some(*shard)) {
                        change.removed.push((name.clone(), *partition, before));
                    }
                    if after.is_some() && after != before {
                        // A directory of this topic under its name is what this node held
                        // of it before a restart; one of another topic is a leftover.
                        change.added.push((entry.clone(), *partition));
                        change.added_are_new = true;
                    }
                    change.replicas_changed.push((entry, *partition));
                }
            }
            MetadataRecord::PartitionLeaderChanged {
                name,
                partition,
                leader,
                epoch,
                in_sync,
            } => {
                self.update(name, |entry| {
                    let recorded = entry.leaders.get(partition).map(|reported| reported.epoch);
                    if recorded.is_none_or(|recorded| recorded <= *epoch) {
                        let reported = Leadership {
                            leader: *leader,
                            epoch: *epoch,
                            in_sync: in_sync.clone(),
                        };
                        entry.leaders.insert(*partition, reported);
                    }
                });
            }
            MetadataRecord::PreferredLeaderElected { name, partition } => {
                if self.topics.contains_key(name) {
                    change.preferred_elected.push((name.clone(), *partition));
                }
            }
            MetadataRecord::TopicConfigChanged { name, configs } => {
                let defaults = self.defaults.clone();
                if let Some((entry, ())) = self.update(name, |entry| {
                    entry.overrides = configs.clone();
                    entry.config = TopicConfig::resolve(&defaults, configs);
                }) {
                    change.reconfigured.push(entry);
                }
            }
            MetadataRecord::ProducerIdsAllocated { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::BrokerRegistered(registration) => {
                // A node registers when it starts, and is fenced until it has caught up
                // with the metadata log (`BrokerUnfenced`).
                self.fenced.insert(registration.node);
                self.brokers.insert(registration.node, registration.clone());
                change.brokers_registered = true;
            }
            MetadataRecord::BrokerFenced { node } => {
                if self.brokers.contains_key(node) {
                    self.fenced.insert(*node);
                }
            }
            MetadataRecord::BrokerUnfenced { node } => {
                self.fenced.remove(node);
            }
            MetadataRecord::UserScramCredentialSet {
                name,
                mechanism,
                credential,
            } => Rc::make_mut(&mut self.users).set(name, *mechanism, credential.clone()),
            MetadataRecord::UserScramCredentialDeleted { name, mechanism } => {
                Rc::make_mut(&mut self.users).remove(name, *mechanism);
            }
            MetadataRecord::AclCreated { binding } => {
                Rc::make_mut(&mut self.acls).add(binding.clone());
            }
            MetadataRecord::AclDeleted { binding } => {
                Rc::make_mut(&mut self.acls).remove(binding);
            }
            MetadataRecord::ClientQuotasAltered { entity, changes } => {
                let quotas = Rc::make_mut(&mut self.quotas);
                for (key, value) in changes {
                    quotas.set(entity, *key, *value);
                }
            }
        }
        Ok(change)
    }

    /// Replaces topic `name` by a modified copy (entries are shared immutably).
    fn update<T>(
        &mut self,
        name: &str,
        modify: impl FnOnce(&mut TopicEntry) -> T,
    ) -> Option<(Rc<TopicEntry>, T)> {
        let current = self.topics.get(name)?;
        let mut entry = TopicEntry::clone(current);
        let result = modify(&mut entry);
        let entry = Rc::new(entry);
        self.topics.insert(name.to_string(), entry.clone());
        Some((entry, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic_created(name: &str) -> MetadataRecord {
        MetadataRecord::TopicCreated {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            shards: vec![ShardId(0)],
            replicas: Vec::new(),
            groups: Vec::new(),
            configs: BTreeMap::new(),
        }
    }

    /// The table applies each metadata record once, in log order: a record applied again, or
    /// one after a gap, is refused and changes nothing.
    #[test]
    fn records_apply_once_in_order() {
        let mut table = ShardTable::new(
            TopicDefaults {
                segment_bytes: 1 << 30,
                segment_ms: 1,
                retention_ms: -1,
                retention_bytes: -1,
                cleanup_policy: "delete".to_string(),
                max_message_bytes: 1,
            },
            NodeId(0),
        );
        assert!(table.apply(0, &topic_created("a")).is_ok());
        assert!(
            table.apply(0, &topic_created("b")).is_err(),
            "applied twice"
        );
        assert!(table.apply(2, &topic_created("b")).is_err(), "after a gap");
        assert!(table.topic("b").is_none());
        assert_eq!(table.revision(), 1);
        assert!(table.apply(1, &topic_created("b")).is_ok());
        assert_eq!(table.revision(), 2);
        assert!(table.skip(3).is_err(), "a skip after a gap");
        assert!(table.skip(2).is_ok(), "a control batch's offset");
        assert!(table.apply(3, &topic_created("c")).is_ok());
        assert_eq!(table.revision(), 4);
    }
}
