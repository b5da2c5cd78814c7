//! The controller: the one writer of the metadata log, on shard 0.
//!
//! Per-shard: lives on shard 0 only. It validates topic changes, decides placement (the least
//! loaded shard), appends the change to the metadata log, waits until it is durable, and then
//! has every shard apply it before answering. Changes are serialized by a one-permit semaphore
//! so that validation always sees the table the change will be applied to. It reaches its
//! shard only through `ControllerHost`.

use std::cell::{Cell, Ref};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use kafka_protocol::ResponseError;

use super::admin::{AdminResult, ConfigChange, ControllerCommand};
use super::messages::{CreateTopicSpec, TopicRef, TopicResult};
use super::table::ShardTable;
use crate::config::Config;
use crate::ids::{PartitionId, ShardId};
use crate::limits;
use crate::metadata::topic_config::{self, AlterError, TopicConfig};
use crate::metadata::{self, collision_key, MetadataRecord, MetadataStore, METADATA_LOG_DIR};
use crate::storage::{self, BatchCache};

/// What the controller needs from the shard it runs on (shard 0), and no more.
pub trait ControllerHost {
    fn config(&self) -> &Config;
    fn shard_count(&self) -> usize;
    /// This shard's table: what a change is validated against.
    fn table(&self) -> Ref<'_, ShardTable>;
    /// Has every shard apply `records`, the first at metadata log offset `first`.
    fn apply_everywhere(
        &self,
        first: i64,
        records: Vec<MetadataRecord>,
    ) -> impl Future<Output = Result<(), String>>;
}

pub struct Controller {
    store: MetadataStore,
    serial: crate::runtime::Semaphore,
    /// Every producer id below this was handed out in an earlier block.
    next_producer_id: Cell<i64>,
}

impl Controller {
    /// Opens the metadata log; returns the controller and every record to replay. Partitions
    /// placed on shards that no longer exist are moved first, and the moves are made durable.
    pub async fn open(
        shard: &impl ControllerHost,
    ) -> anyhow::Result<(Rc<Controller>, Vec<MetadataRecord>)> {
        // Its own cache, and pre-writing for this one log apart from the shard's partitions.
        let cache = BatchCache::with_budgets(
            1 << 20,
            limits::READ_AHEAD_BYTES_PER_SHARD_MAX,
            limits::PREWRITE_AHEAD_BYTES,
        );
        let (store, mut records) = MetadataStore::open(&shard.config().data_dir, cache).await?;
        for record in reassign_lost_shards(&records, shard.shard_count()) {
            tracing::warn!(
                ?record,
                "moving a partition off a shard that no longer exists"
            );
            let offset = store.append(&record).await?;
            assert_eq!(
                offset,
                records.len() as i64,
                "metadata records are dense from 0"
            );
            records.push(record);
        }
        let controller = Rc::new(Controller {
            store,
            serial: crate::runtime::Semaphore::new(1),
            next_producer_id: Cell::new(next_producer_id(&records)),
        });
        Ok((controller, records))
    }

    /// After every shard has loaded the table: remove directories metadata does not know.
    pub fn after_start(&self, shard: &impl ControllerHost) {
        remove_orphan_directories(&shard.config().data_dir, shard);
    }

    pub async fn close(&self) {
        if let Err(error) = self.store.close().await {
            tracing::error!(%error, "closing the metadata log failed");
        }
    }

    pub async fn create_topics(
        &self,
        shard: &impl ControllerHost,
        specs: Vec<CreateTopicSpec>,
    ) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(specs.len());
        for spec in specs {
            let Ok(_permit) = self.serial.acquire_permit(1).await else {
                break;
            };
            results.push(self.create_topic(shard, spec).await);
        }
        results
    }

    async fn create_topic(
        &self,
        shard: &impl ControllerHost,
        spec: CreateTopicSpec,
    ) -> TopicResult {
        let num_partitions = if spec.num_partitions == -1 {
            shard.config().num_partitions
        } else {
            spec.num_partitions
        };
        let mut result = TopicResult {
            name: spec.name.clone(),
            num_partitions,
            ..Default::default()
        };
        if let Err((error, message)) = self.check_new_topic(shard, &spec, num_partitions) {
            result.error_code = error.code();
            result.error_message = Some(message);
            return result;
        }
        result.id = uuid::Uuid::new_v4();
        if spec.validate_only {
            return result;
        }
        let record = MetadataRecord::TopicCreated {
            name: spec.name.clone(),
            id: result.id,
            shards: place(
                &shard.table().load_per_shard(shard.shard_count()),
                num_partitions as usize,
            ),
            configs: spec.configs,
        };
        if let Err(message) = self.commit(shard, record).await {
            result.error_code = ResponseError::KafkaStorageError.code();
            result.error_message = Some(message);
        }
        tracing::info!(topic = %spec.name, partitions = num_partitions, "topic created");
        result
    }

    fn check_new_topic(
        &self,
        shard: &impl ControllerHost,
        spec: &CreateTopicSpec,
        num_partitions: i32,
    ) -> Result<(), (ResponseError, String)> {
        metadata::validate_topic_name(&spec.name)
            .map_err(|m| (ResponseError::InvalidTopicException, m))?;
        if format!("{}-0", spec.name) == METADATA_LOG_DIR {
            return Err((
                ResponseError::InvalidTopicException,
                "reserved topic name".into(),
            ));
        }
        let table = shard.table();
        if table.topic(&spec.name).is_some() {
            let message = format!("topic {:?} already exists", spec.name);
            return Err((ResponseError::TopicAlreadyExists, message));
        }
        let key = collision_key(&spec.name);
        if let Some(other) = table.topics().find(|t| collision_key(&t.name) == key) {
            let message = format!(
                "topic {:?} collides with existing {:?}",
                spec.name, other.name
            );
            return Err((ResponseError::InvalidTopicException, message));
        }
        if !(1..=crate::limits::PARTITIONS_PER_TOPIC_MAX).contains(&num_partitions) {
            let message = format!("number of partitions {num_partitions} is out of range");
            return Err((ResponseError::InvalidPartitions, message));
        }
        TopicConfig::validate(&spec.configs).map_err(|e| (ResponseError::InvalidConfig, e.0))
    }

    pub async fn delete_topics(
        &self,
        shard: &impl ControllerHost,
        topics: Vec<TopicRef>,
    ) -> Vec<TopicResult> {
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            let Ok(_permit) = self.serial.acquire_permit(1).await else {
                break;
            };
            results.push(self.delete_topic(shard, topic).await);
        }
        results
    }

    async fn delete_topic(&self, shard: &impl ControllerHost, topic: TopicRef) -> TopicResult {
        let found = match &topic {
            TopicRef::Name(name) => shard.table().topic(name),
            TopicRef::Id(id) => shard.table().topic_by_id(id),
        };
        let Some(entry) = found else {
            let (name, error) = match topic {
                TopicRef::Name(name) => (name, ResponseError::UnknownTopicOrPartition),
                TopicRef::Id(_) => (String::new(), ResponseError::UnknownTopicId),
            };
            return TopicResult {
                name,
                error_code: error.code(),
                error_message: Some("topic does not exist".into()),
                ..Default::default()
            };
        };
        let mut result = TopicResult {
            name: entry.name.clone(),
            id: entry.id,
            ..Default::default()
        };
        let record = MetadataRecord::TopicDeleted {
            name: entry.name.clone(),
            id: entry.id,
        };
        if let Err(message) = self.commit(shard, record).await {
            result.error_code = ResponseError::KafkaStorageError.code();
            result.error_message = Some(message);
        }
        tracing::info!(topic = %entry.name, "topic deleted");
        result
    }

    /// Hands out the next block of `PRODUCER_ID_BLOCK_COUNT` producer ids, `[first, end)`,
    /// after recording it durably so that no id is ever handed out twice.
    pub async fn allocate_producer_ids(
        &self,
        shard: &impl ControllerHost,
    ) -> Result<(i64, i64), String> {
        let _permit = self
            .serial
            .acquire_permit(1)
            .await
            .map_err(|_| "the controller is closing".to_string())?;
        let first = self.next_producer_id.get();
        let end = first
            .checked_add(crate::limits::PRODUCER_ID_BLOCK_COUNT)
            .ok_or_else(|| "producer ids are exhausted".to_string())?;
        let record = MetadataRecord::ProducerIdsAllocated {
            next_producer_id: end,
        };
        self.commit(shard, record).await?;
        self.next_producer_id.set(end);
        Ok((first, end))
    }

    /// Config changes and partition increases, one topic per command, each validated against
    /// the table it will be applied to and recorded before the next one starts.
    pub async fn run_commands(
        &self,
        shard: &impl ControllerHost,
        commands: Vec<ControllerCommand>,
    ) -> Vec<AdminResult> {
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            let Ok(_permit) = self.serial.acquire_permit(1).await else {
                break;
            };
            let subject = command.subject().to_string();
            let (record, validate_only) = match self.plan(shard, command) {
                Ok(planned) => planned,
                Err((error, message)) => {
                    results.push(AdminResult::error(error, message));
                    continue;
                }
            };
            if validate_only {
                results.push(AdminResult::default());
                continue;
            }
            tracing::info!(%subject, ?record, "metadata changed");
            results.push(match self.commit(shard, record).await {
                Ok(()) => AdminResult::default(),
                Err(message) => AdminResult::error(ResponseError::KafkaStorageError, message),
            });
        }
        results
    }

    /// The record a command would write, and whether it is only to be validated.
    fn plan(
        &self,
        shard: &impl ControllerHost,
        command: ControllerCommand,
    ) -> Result<(MetadataRecord, bool), (ResponseError, String)> {
        let unknown = |name: &str| {
            let message = format!("topic {name:?} does not exist");
            (ResponseError::UnknownTopicOrPartition, message)
        };
        let table = shard.table();
        match command {
            ControllerCommand::AlterConfigs {
                topic,
                change,
                validate_only,
            } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let configs = match change {
                    ConfigChange::Replace(pairs) => topic_config::replace_all(&pairs),
                    ConfigChange::Incremental(operations) => topic_config::apply_incremental(
                        &entry.overrides,
                        table.defaults(),
                        &operations,
                    ),
                };
                let configs = configs.map_err(|error| match error {
                    AlterError::Request(message) => (ResponseError::InvalidRequest, message),
                    AlterError::Config(message) => (ResponseError::InvalidConfig, message),
                })?;
                let record = MetadataRecord::TopicConfigChanged {
                    name: topic,
                    configs,
                };
                Ok((record, validate_only))
            }
            ControllerCommand::CreatePartitions {
                topic,
                count,
                validate_only,
            } => {
                let entry = table.topic(&topic).ok_or_else(|| unknown(&topic))?;
                let current = entry.partition_count();
                if count <= current {
                    let message =
                        format!("topic {topic:?} has {current} partitions; {count} is no increase");
                    return Err((ResponseError::InvalidPartitions, message));
                }
                if count > crate::limits::PARTITIONS_PER_TOPIC_MAX {
                    let message = format!(
                        "{count} partitions exceed the limit of {}",
                        crate::limits::PARTITIONS_PER_TOPIC_MAX
                    );
                    return Err((ResponseError::InvalidPartitions, message));
                }
                let shards = place(
                    &table.load_per_shard(shard.shard_count()),
                    (count - current) as usize,
                );
                let record = MetadataRecord::PartitionsAdded {
                    name: topic,
                    shards,
                };
                Ok((record, validate_only))
            }
            ControllerCommand::Acl { binding, create } => {
                // An ACL already as wanted is "validated only": success without a record.
                let unchanged = table.acls().contains(&binding) == create;
                let record = if create {
                    MetadataRecord::AclCreated { binding }
                } else {
                    MetadataRecord::AclDeleted { binding }
                };
                Ok((record, unchanged))
            }
            ControllerCommand::AlterQuotas {
                entity,
                changes,
                validate_only,
            } => Ok((
                MetadataRecord::ClientQuotasAltered { entity, changes },
                validate_only,
            )),
            ControllerCommand::AlterUser {
                user,
                mechanism,
                credential,
            } => match credential {
                Some(credential) => {
                    let record = MetadataRecord::UserScramCredentialSet {
                        name: user,
                        mechanism,
                        credential,
                    };
                    Ok((record, false))
                }
                None if table.users().credential(&user, mechanism).is_none() => Err((
                    ResponseError::ResourceNotFound,
                    format!("user {user:?} has no {mechanism} credential"),
                )),
                None => {
                    let record = MetadataRecord::UserScramCredentialDeleted {
                        name: user,
                        mechanism,
                    };
                    Ok((record, false))
                }
            },
        }
    }

    /// Makes `record` durable, then has every shard apply it. Every record is committed this
    /// way, so that each shard's table applies every offset of the metadata log in order.
    async fn commit(
        &self,
        shard: &impl ControllerHost,
        record: MetadataRecord,
    ) -> Result<(), String> {
        let offset = self
            .store
            .append(&record)
            .await
            .map_err(|e| format!("metadata log: {e}"))?;
        shard.apply_everywhere(offset, vec![record]).await
    }
}

/// The first producer id never handed out, per the metadata log.
fn next_producer_id(records: &[MetadataRecord]) -> i64 {
    records
        .iter()
        .filter_map(|record| match record {
            MetadataRecord::ProducerIdsAllocated { next_producer_id } => Some(*next_producer_id),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Owners for `count` new partitions: each goes to the least loaded shard so far.
fn place(load: &[usize], count: usize) -> Vec<ShardId> {
    let mut load = load.to_vec();
    (0..count)
        .map(|_| {
            let (shard, _) = load
                .iter()
                .enumerate()
                .min_by_key(|(shard, load)| (**load, *shard))
                .expect("at least one shard");
            load[shard] += 1;
            ShardId(shard)
        })
        .collect()
}

/// Partitions placed on shards that no longer exist (the shard count shrank) move to the
/// least loaded remaining shard.
fn reassign_lost_shards(records: &[MetadataRecord], shard_count: usize) -> Vec<MetadataRecord> {
    let mut table = super::table::ShardTable::new(crate::config::TopicDefaults {
        segment_bytes: 1 << 30,
        segment_ms: 1,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: 1,
    });
    for (offset, record) in (0..).zip(records) {
        table
            .apply(offset, record)
            .expect("records are applied in log order");
    }
    let mut load = table.load_per_shard(shard_count);
    let mut moves = Vec::new();
    for topic in table.topics() {
        for (partition, owner) in topic.shards.iter().enumerate() {
            if owner.get() >= shard_count {
                let shard = place(&load, 1)[0];
                load[shard.get()] += 1;
                moves.push(MetadataRecord::PartitionMoved {
                    name: topic.name.clone(),
                    partition: PartitionId(partition as i32),
                    shard,
                });
            }
        }
    }
    moves
}

/// Removes partition directories that the metadata log does not know (a deletion that crashed
/// before its directory was renamed) and directories whose deletion started (one that crashed
/// after), so that a re-created topic never sees old data.
fn remove_orphan_directories(data_dir: &Path, shard: &impl ControllerHost) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    let known: HashMap<String, ()> = shard
        .table()
        .topics()
        .flat_map(|t| {
            PartitionId::all(t.partition_count())
                .map(move |p| (metadata::partition_dir_name(&t.name, p), ()))
        })
        .collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let looks_like_partition = name
            .rsplit_once('-')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let orphan = looks_like_partition && !known.contains_key(&name) && name != METADATA_LOG_DIR;
        if is_dir && (orphan || storage::is_deletion_name(&name)) {
            tracing::warn!(directory = %name, "removing a partition directory unknown to metadata");
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::error!(%error, directory = %name, "cannot remove directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New partitions go to the least loaded shards, spreading evenly.
    #[test]
    fn placement_spreads_over_least_loaded() {
        let shards = |ids: &[usize]| ids.iter().copied().map(ShardId).collect::<Vec<_>>();
        assert_eq!(place(&[0, 0], 4), shards(&[0, 1, 0, 1]));
        assert_eq!(place(&[3, 0, 1], 3), shards(&[1, 1, 2]));
    }
}
