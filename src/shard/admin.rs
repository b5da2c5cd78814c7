//! Admin operations on the shard: config changes, partition increases, users, ACLs and quotas,
//! decided by the controller on shard 0.
//!
//! Per-shard: these are methods of `Shard` and run on the shard that received the request;
//! controller commands travel to shard 0 over the mesh.

use std::rc::Rc;

use kafka_protocol::ResponseError;

use super::messages::ShardRequest;
use super::Shard;
use crate::metadata::topic_config::ConfigOperation;
use crate::quota::{QuotaEntity, QuotaKey};
use crate::security::acl::AclBinding;
use crate::security::scram::{ScramCredential, ScramMechanism};

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

impl Shard {
    /// Runs `commands` on the controller, in order; one result per command.
    pub async fn controller_commands(
        self: &Rc<Self>,
        commands: Vec<ControllerCommand>,
    ) -> Vec<AdminResult> {
        let count = commands.len();
        let remote = commands.clone();
        self.on_controller(
            async |controller| controller.run_commands(self, commands).await,
            |tx| ShardRequest::Controller(remote, tx),
        )
        .await
        .unwrap_or_else(|| {
            let unavailable = AdminResult::error(
                ResponseError::NotController,
                "the controller is not available",
            );
            vec![unavailable; count]
        })
    }
}
