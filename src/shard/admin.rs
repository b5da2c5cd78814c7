//! Controller commands of the admin operations: config changes, partition increases, users,
//! ACLs, quotas and the leaders replicated partitions report, decided by the controller.
//!
//! Handlers make these and send them with `Shard::controller_commands` (see
//! `controller_call`).

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::ids::{LeaderEpoch, NodeId, PartitionId};
use crate::metadata::topic_config::ConfigOperation;
use crate::quota::{QuotaEntity, QuotaKey};
use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};

/// A change only the controller may make, one topic, user or ACL each.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The replica of a replicated partition on `leader` leads it in `epoch` (its Raft term)
    /// with the replicas `in_sync`.
    PartitionLeader {
        topic: String,
        partition: PartitionId,
        leader: NodeId,
        epoch: LeaderEpoch,
        in_sync: Vec<NodeId>,
    },
    /// Have the preferred leader of a replicated partition lead it (ElectLeaders).
    ElectPreferredLeader {
        topic: String,
        partition: PartitionId,
    },
    /// Move a replicated partition's replicas to `target` (`None`: cancel the reassignment in
    /// progress); with `keep_replication_factor`, a target of another size is refused.
    ReassignPartition {
        topic: String,
        partition: PartitionId,
        target: Option<Vec<NodeId>>,
        keep_replication_factor: bool,
    },
    /// The leader of a partition being reassigned reports that the group's voters are
    /// `voters`: if that is the target, the reassignment is complete.
    ReassignmentDone {
        topic: String,
        partition: PartitionId,
        voters: Vec<NodeId>,
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
            | ControllerCommand::CreatePartitions { topic, .. }
            | ControllerCommand::PartitionLeader { topic, .. }
            | ControllerCommand::ElectPreferredLeader { topic, .. }
            | ControllerCommand::ReassignPartition { topic, .. }
            | ControllerCommand::ReassignmentDone { topic, .. } => topic,
            ControllerCommand::AlterUser { user, .. } => user,
        }
    }
}

/// How a config change is stated: AlterConfigs replaces every override, IncrementalAlterConfigs
/// applies operations to the current ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConfigChange {
    Replace(Vec<(String, Option<String>)>),
    Incremental(Vec<(String, ConfigOperation, Option<String>)>),
}

/// The outcome of one controller command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
