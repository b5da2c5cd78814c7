//! The shard table: every topic, its config and the shard that owns each of its partitions.
//!
//! Per-shard: every shard holds a full copy, built by applying the same `MetadataRecord`s in
//! the same order (the controller broadcasts each record after it is durable), and guarded by
//! a revision: the metadata log offset of the next record to apply, checked on every update,
//! so that a record applied twice, out of order or after a gap is refused. Placement is always read from here, never
//! computed by hashing, so that partitions can move between shards (and later nodes).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::config::TopicDefaults;
use crate::ids::{PartitionId, ShardId};
use crate::metadata::topic_config::TopicConfig;
use crate::metadata::MetadataRecord;
use crate::quota::QuotaStore;
use crate::security::acl::AclStore;
use crate::security::users::UserStore;

/// One topic as every shard sees it.
#[derive(Debug, Clone)]
pub struct TopicEntry {
    pub name: String,
    pub id: uuid::Uuid,
    /// `shards[p]` owns partition `p`.
    pub shards: Vec<ShardId>,
    pub overrides: BTreeMap<String, String>,
    pub config: TopicConfig,
}

impl TopicEntry {
    pub fn partition_count(&self) -> i32 {
        self.shards.len() as i32
    }

    pub fn owner(&self, partition: PartitionId) -> Option<ShardId> {
        usize::try_from(partition.get())
            .ok()
            .and_then(|p| self.shards.get(p).copied())
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
    /// The metadata log offset of the next record to apply: every record below it is applied.
    revision: i64,
}

impl ShardTable {
    pub fn new(defaults: TopicDefaults) -> ShardTable {
        ShardTable {
            defaults,
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

    /// Partitions owned by each of `shard_count` shards.
    pub fn load_per_shard(&self, shard_count: usize) -> Vec<usize> {
        let mut load = vec![0; shard_count];
        for shard in self.topics.values().flat_map(|t| t.shards.iter()) {
            if let Some(count) = load.get_mut(shard.get()) {
                *count += 1;
            }
        }
        load
    }

    /// Applies the record at `offset` of the metadata log. Records are applied in log order on
    /// every shard, each exactly once: a record that is not the next one is refused, and the
    /// table is left as it was.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) -> Result<TableChange, String> {
        if offset != self.revision {
            return Err(format!(
                "the shard table has applied the metadata log up to offset {}, and cannot apply \
                 offset {offset}",
                self.revision
            ));
        }
        self.revision += 1;
        let mut change = TableChange::default();
        match record {
            MetadataRecord::TopicCreated {
                name,
                id,
                shards,
                configs,
            } => {
                let entry = Rc::new(TopicEntry {
                    name: name.clone(),
                    id: *id,
                    shards: shards.clone(),
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
                    for (partition, shard) in entry.shards.iter().enumerate() {
                        change
                            .removed
                            .push((name.clone(), PartitionId(partition as i32), *shard));
                    }
                }
            }
            MetadataRecord::PartitionsAdded { name, shards } => {
                let added = self.update(name, |entry| {
                    let first = entry.shards.len() as i32;
                    entry.shards.extend_from_slice(shards);
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
                let index = partition.get() as usize;
                let moved = self.update(name, |entry| {
                    let before = entry.shards.get(index).copied();
                    if before.is_some() {
                        entry.shards[index] = *shard;
                    }
                    before
                });
                if let Some((entry, Some(before))) = moved {
                    change.removed.push((name.clone(), *partition, before));
                    change.added.push((entry, *partition));
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
            // Only the controller reads these (see `controller::next_producer_id`).
            MetadataRecord::ProducerIdsAllocated { .. } => {}
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
            configs: BTreeMap::new(),
        }
    }

    /// The table applies each metadata record once, in log order: a record applied again, or
    /// one after a gap, is refused and changes nothing.
    #[test]
    fn records_apply_once_in_order() {
        let mut table = ShardTable::new(TopicDefaults {
            segment_bytes: 1 << 30,
            segment_ms: 1,
            retention_ms: -1,
            retention_bytes: -1,
            max_message_bytes: 1,
        });
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
    }
}
