//! Admin operations on the shard: config changes and partition increases (decided by the
//! controller on shard 0) and DeleteRecords (done by the partition's owner).
//!
//! Per-shard: these are methods of `Shard` and run on the shard that received the request;
//! controller commands travel to shard 0 and DeleteRecords to the owner over the mesh, like
//! every other routed operation.

use std::rc::Rc;

use kafka_protocol::ResponseError;

use super::messages::{ShardRequest, TopicPartition};
use super::Shard;
use crate::metadata::topic_config::ConfigOperation;
use crate::quota::{QuotaEntity, QuotaKey};
use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::storage::StorageError;

/// A change only the controller may make, one topic, user or ACL each.
#[derive(Debug, Clone)]
pub enum ControllerCommand {
    /// Create (`create`) or delete an ACL; creating one that exists, or deleting one that
    /// does not, succeeds without a change (as Kafka does).
    Acl { binding: AclBinding, create: bool },
    /// Set (`Some`) or remove client quotas of one entity, all or none.
    AlterQuotas {
        entity: QuotaEntity,
        changes: Vec<(QuotaKey, Option<f64>)>,
        validate_only: bool,
    },
    /// Create or replace (`Some`) or delete (`None`) a user's credential for one mechanism.
    AlterUser {
        user: String,
        mechanism: ScramMechanism,
        credential: Option<ScramCredential>,
    },
    AlterConfigs {
        topic: String,
        change: ConfigChange,
        validate_only: bool,
    },
    /// Grow the topic to `count` partitions in total.
    CreatePartitions {
        topic: String,
        count: i32,
        validate_only: bool,
    },
}

impl ControllerCommand {
    /// The topic, user or resource the command changes, for logs.
    pub fn subject(&self) -> &str {
        match self {
            ControllerCommand::Acl { binding, .. } => &binding.pattern.name,
            ControllerCommand::AlterQuotas { .. } => "client quotas",
            ControllerCommand::AlterConfigs { topic, .. }
            | ControllerCommand::CreatePartitions { topic, .. } => topic,
            ControllerCommand::AlterUser { user, .. } => user,
        }
    }
}

/// How a config change is stated: AlterConfigs replaces every override, IncrementalAlterConfigs
/// applies operations to the current ones.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    Replace(Vec<(String, Option<String>)>),
    Incremental(Vec<(String, ConfigOperation, Option<String>)>),
}

/// The outcome of one controller command.
#[derive(Debug, Clone, Default)]
pub struct AdminResult {
    pub error_code: i16,
    pub error_message: Option<String>,
}

impl AdminResult {
    pub fn error(error: ResponseError, message: impl Into<String>) -> AdminResult {
        AdminResult {
            error_code: error.code(),
            error_message: Some(message.into()),
        }
    }
}

#[derive(Debug)]
pub struct DeleteRecordsInput {
    pub tp: TopicPartition,
    /// The new log start; -1 means the high watermark.
    pub offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteRecordsOutput {
    pub error_code: i16,
    /// The log start after the deletion (-1 with an error).
    pub low_watermark: i64,
}

impl Shard {
    /// Runs `commands` on the controller, in order; one result per command.
    pub async fn controller_commands(
        self: &Rc<Self>,
        commands: Vec<ControllerCommand>,
    ) -> Vec<AdminResult> {
        let controller = self.controller.borrow().clone();
        match controller {
            Some(controller) => return controller.run_commands(self, commands).await,
            None if self.id == 0 => {}
            None => {
                let reply = self
                    .call(0, |tx| ShardRequest::Controller(commands.clone(), tx))
                    .await;
                if let Some(results) = reply {
                    return results;
                }
            }
        }
        let unavailable = AdminResult::error(
            ResponseError::NotController,
            "the controller is not available",
        );
        vec![unavailable; commands.len()]
    }

    pub async fn delete_records(self: &Rc<Self>, input: DeleteRecordsInput) -> DeleteRecordsOutput {
        let error = |e: ResponseError| DeleteRecordsOutput {
            error_code: e.code(),
            low_watermark: -1,
        };
        match self.owner_of(&input.tp) {
            Some(owner) if owner == self.id => self.delete_records_local(input).await,
            Some(owner) => self
                .call(owner, |tx| ShardRequest::DeleteRecords(input, tx))
                .await
                .unwrap_or_else(|| error(ResponseError::NotLeaderOrFollower)),
            None => error(ResponseError::UnknownTopicOrPartition),
        }
    }

    pub(super) async fn delete_records_local(
        &self,
        input: DeleteRecordsInput,
    ) -> DeleteRecordsOutput {
        let Some(partition) = self.partition(&input.tp) else {
            return DeleteRecordsOutput {
                error_code: ResponseError::UnknownTopicOrPartition.code(),
                low_watermark: -1,
            };
        };
        let result = partition.log().delete_records(input.offset).await;
        // Fetches parked on this partition re-check their offset against the new start.
        partition.durable_notify().notify_all();
        match result {
            Ok(low_watermark) => DeleteRecordsOutput {
                error_code: 0,
                low_watermark,
            },
            Err(StorageError::OffsetOutOfRange { .. }) => DeleteRecordsOutput {
                error_code: ResponseError::OffsetOutOfRange.code(),
                low_watermark: -1,
            },
            Err(error) => {
                tracing::error!(%error, topic = %input.tp.topic, "DeleteRecords failed");
                DeleteRecordsOutput {
                    error_code: ResponseError::KafkaStorageError.code(),
                    low_watermark: -1,
                }
            }
        }
    }
}
