//! DescribeConfigs: the effective configs of topics (resource type 2) and of this broker
//! (type 4), with their sources, and synonyms and documentation when asked. A topic needs
//! DESCRIBE_CONFIGS on it (TOPIC_AUTHORIZATION_FAILED), the broker DESCRIBE_CONFIGS on the
//! cluster (CLUSTER_AUTHORIZATION_FAILED).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::config::Config;
use crate::metadata::topic_config::{all_keys, source_of, ConfigSource, ConfigType, TopicConfig};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// One config entry before it is put on the wire.
struct Entry {
    name: String,
    value: String,
    source: ConfigSource,
    kind: ConfigType,
    doc: &'static str,
    read_only: bool,
}

pub fn handle(ctx: &RequestContext, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match entries_of(ctx, resource) {
                Ok(entries) => {
                    // Kafka answers every config for a null key list and for an empty one.
                    let keys = resource
                        .configuration_keys
                        .as_ref()
                        .filter(|k| !k.is_empty());
                    let configs = entries
                        .into_iter()
                        .filter(|e| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == e.name)))
                        .map(|e| to_wire(e, &request, ctx.api_version))
                        .collect();
                    base.with_configs(configs)
                }
                Err((error, message)) => base
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entries_of(
    ctx: &RequestContext,
    resource: &DescribeConfigsResource,
) -> Result<Vec<Entry>, (ResponseError, String)> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC if !ctx.authorize_topic(AclOperation::DescribeConfigs, name) => Err((
            ResponseError::TopicAuthorizationFailed,
            "not authorized to describe this topic's configs".into(),
        )),
        RESOURCE_BROKER if !ctx.authorize_cluster(AclOperation::DescribeConfigs) => Err((
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to describe broker configs".into(),
        )),
        RESOURCE_TOPIC => {
            let table = ctx.shard.table();
            let topic = table.topic(name).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                )
            })?;
            Ok(topic_entries(&topic.overrides, table.defaults()))
        }
        RESOURCE_BROKER => {
            let node = ctx.shard.config.node_id.to_string();
            if !name.is_empty() && name != node {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("this is broker {node}"),
                ));
            }
            Ok(broker_entries(&ctx.shard.config))
        }
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported"),
        )),
    }
}

fn topic_entries(
    overrides: &BTreeMap<String, String>,
    defaults: &crate::config::TopicDefaults,
) -> Vec<Entry> {
    let config = TopicConfig::resolve(defaults, overrides);
    all_keys()
        .map(|key| Entry {
            name: key.name.to_string(),
            value: config.value_of(key.name).unwrap_or_default(),
            source: source_of(key.name, overrides, defaults),
            kind: key.kind,
            doc: key.doc,
            read_only: false,
        })
        .collect()
}

fn broker_entries(config: &Config) -> Vec<Entry> {
    let defaults = &config.topic_defaults;
    let join = |text: &dyn Fn(&crate::config::ListenerConfig) -> String| {
        config
            .listeners
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(",")
    };
    let listener = join(&|l| format!("{}://{}", l.name, l.bind));
    let advertised = join(&|l| format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port));
    let protocol_map = join(&|l| format!("{}:{}", l.name, l.protocol));
    let security = &config.security;
    let mechanisms: Vec<&str> = security.sasl_mechanisms.iter().map(|m| m.name()).collect();
    let mut pairs: Vec<(&str, String, ConfigType)> = vec![
        ("advertised.listeners", advertised, ConfigType::List),
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::String,
        ),
        ("broker.id", config.node_id.to_string(), ConfigType::Int),
        ("listeners", listener, ConfigType::List),
        (
            "listener.security.protocol.map",
            protocol_map,
            ConfigType::List,
        ),
        (
            "sasl.enabled.mechanisms",
            mechanisms.join(","),
            ConfigType::List,
        ),
        (
            "connections.max.reauth.ms",
            security.connections_max_reauth_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigType::String,
        ),
        (
            "log.retention.bytes",
            defaults.retention_bytes.to_string(),
            ConfigType::Long,
        ),
        (
            "log.retention.ms",
            defaults.retention_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.roll.ms",
            defaults.segment_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.segment.bytes",
            defaults.segment_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "message.max.bytes",
            defaults.max_message_bytes.to_string(),
            ConfigType::Int,
        ),
        ("node.id", config.node_id.to_string(), ConfigType::Int),
        (
            "num.partitions",
            config.num_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
    ];
    pairs.sort_by_key(|(name, ..)| *name);
    pairs
        .into_iter()
        .map(|(name, value, kind)| Entry {
            name: name.to_string(),
            value,
            source: ConfigSource::Broker,
            kind,
            doc: "",
            read_only: true,
        })
        .collect()
}

fn to_wire(
    entry: Entry,
    request: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResourceResult {
    let synonyms = if request.include_synonyms {
        vec![DescribeConfigsSynonym::default()
            .with_name(str_bytes(entry.name.clone()))
            .with_value(Some(str_bytes(entry.value.clone())))
            .with_source(entry.source as i8)]
    } else {
        Vec::new()
    };
    let result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(entry.name))
        .with_value(Some(str_bytes(entry.value)))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source as i8)
        .with_synonyms(synonyms);
    // Fields newer than the request's version stay at their defaults.
    if version >= 3 {
        let documentation = request.include_documentation.then(|| str_bytes(entry.doc));
        result
            .with_config_type(entry.kind as i8)
            .with_documentation(documentation)
    } else {
        result
    }
}
