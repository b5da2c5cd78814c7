//! One Kafka API per file, each with the same shape: `handle(&RequestContext, XRequest)`
//! returns the response body. Handlers reach partitions only through `Shard`'s routed
//! operations, never another shard's state.

/// The `AclFilter` of a DescribeAcls request or of a DeleteAcls filter, which carry the same
/// fields under the same names.
macro_rules! acl_filter {
    ($wire:expr) => {{
        let wire = $wire;
        crate::security::acl::AclFilter::from_wire(
            wire.resource_type_filter,
            wire.resource_name_filter.as_deref(),
            wire.pattern_type_filter,
            wire.principal_filter.as_deref(),
            wire.host_filter.as_deref(),
            wire.operation,
            wire.permission_type,
        )
    }};
}

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod brokers;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use super::dispatch::RequestContext;
use kafka_protocol::ResponseError;

use crate::metadata::validate_topic_name;
pub use crate::protocol::str_bytes;
use crate::security::acl::AclOperation;
use crate::shard::admin::{AdminResult, ControllerCommand};
use crate::shard::messages::CreateTopicSpec;

/// Creates the topics in `names` that do not exist yet, if automatic creation is on, with
/// the broker's default partition count. Invalid names are left for the caller to report.
/// Called on every Produce, so the common case (all topics known) allocates nothing.
pub async fn auto_create_topics<'a>(ctx: &RequestContext, names: impl Iterator<Item = &'a str>) {
    if !ctx.shard.config.auto_create_topics {
        return;
    }
    let missing: Vec<CreateTopicSpec> = {
        let table = ctx.shard.table();
        names
            .filter(|name| table.topic(name).is_none() && validate_topic_name(name).is_ok())
            .filter(|name| may_create_topic(ctx, name))
            .map(|name| CreateTopicSpec {
                name: name.to_string(),
                num_partitions: -1,
                replication_factor: -1,
                configs: BTreeMap::new(),
                validate_only: false,
            })
            .collect()
    };
    if missing.is_empty() {
        return;
    }
    for result in ctx.shard.create_topics(missing).await {
        if result.error_code != 0 && result.error_code != 36 {
            tracing::warn!(topic = %result.name, error = result.error_code, "auto-create failed");
        }
    }
}

/// The first Produce and Fetch version that names topics by id instead of by name (KIP-516).
pub const TOPIC_ID_VERSION_MIN: i16 = 13;

/// For a request that names topics by id (Produce and Fetch v13+): fills in each topic's name
/// from its id, and returns the ids this node does not know, whose topics keep an empty name
/// and are answered UNKNOWN_TOPIC_ID. Empty, without allocating, when all are known.
pub fn names_from_ids<'a>(
    ctx: &RequestContext,
    topics: impl Iterator<Item = (&'a uuid::Uuid, &'a mut TopicName)>,
) -> HashSet<uuid::Uuid> {
    let table = ctx.shard.table();
    let mut unknown = HashSet::new();
    for (id, name) in topics {
        match table.topic_by_id(id) {
            Some(entry) => *name = TopicName(StrBytes::from_string(entry.name.clone())),
            None => {
                unknown.insert(*id);
            }
        }
    }
    unknown
}

/// Whether the principal may create topic `name`: CREATE on the cluster or on the topic.
pub fn may_create_topic(ctx: &RequestContext, name: &str) -> bool {
    ctx.authorize_cluster(AclOperation::Create) || ctx.authorize_topic(AclOperation::Create, name)
}

/// Why an ACL API is refused: SECURITY_DISABLED without an authorizer, as Kafka answers, and
/// CLUSTER_AUTHORIZATION_FAILED without `operation` on the cluster.
pub fn acl_refusal(ctx: &RequestContext, operation: AclOperation) -> Option<AdminResult> {
    if !ctx.authorizing() {
        let message = "no authorizer is configured on the broker (--authorizer on)";
        return Some(AdminResult::error(ResponseError::SecurityDisabled, message));
    }
    if !ctx.authorize_cluster(operation) {
        let message = format!("not authorized to {operation} the cluster's ACLs");
        return Some(AdminResult::error(
            ResponseError::ClusterAuthorizationFailed,
            message,
        ));
    }
    None
}

/// The topics of `names` the principal may not do `operation` on (empty, without allocating,
/// when the authorizer is off).
pub fn topics_denied<'a>(
    ctx: &RequestContext,
    operation: AclOperation,
    names: impl Iterator<Item = &'a str>,
) -> HashSet<String> {
    if !ctx.authorizing() {
        return HashSet::new();
    }
    names
        .filter(|name| !ctx.authorize_topic(operation, name))
        .map(str::to_string)
        .collect()
}

/// Runs the planned controller commands that were not refused already, in order; one
/// outcome per plan, the refusal where there was one.
pub async fn run_planned(
    ctx: &RequestContext,
    planned: Vec<Result<ControllerCommand, AdminResult>>,
) -> Vec<AdminResult> {
    run_unrefused(
        planned,
        |commands| ctx.shard.controller_commands(commands),
        || AdminResult::error(ResponseError::NotController, "the controller is closing"),
    )
    .await
}

/// Runs `run` once over the items that were not refused (none: not at all) and puts its
/// outcomes back among the refusals, in order: one outcome per item. An item `run` gave no
/// outcome for gets `missing()`.
pub async fn run_unrefused<T, O, Run, Ran>(
    planned: Vec<Result<T, O>>,
    run: Run,
    missing: impl Fn() -> O,
) -> Vec<O>
where
    Run: FnOnce(Vec<T>) -> Ran,
    Ran: Future<Output = Vec<O>>,
{
    let mut items = Vec::new();
    let mut refusals = Vec::with_capacity(planned.len());
    for plan in planned {
        match plan {
            Ok(item) => {
                items.push(item);
                refusals.push(None);
            }
            Err(refused) => refusals.push(Some(refused)),
        }
    }
    let mut outcomes = if items.is_empty() {
        Vec::new()
    } else {
        run(items).await
    }
    .into_iter();
    refusals
        .into_iter()
        .map(|refused| refused.unwrap_or_else(|| outcomes.next().unwrap_or_else(&missing)))
        .collect()
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
