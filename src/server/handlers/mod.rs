//! One Kafka API per file, each with the same shape: `handle(&RequestContext, XRequest)`
//! returns the response body. Handlers reach partitions only through `Shard`'s routed
//! operations, never another shard's state.

pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_user_scram_credentials;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;

use std::collections::BTreeMap;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use super::dispatch::RequestContext;
use crate::metadata::validate_topic_name;
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
            .map(|name| CreateTopicSpec {
                name: name.to_string(),
                num_partitions: -1,
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

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}
