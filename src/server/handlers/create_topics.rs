//! CreateTopics: validates each topic and hands it to the controller (shard 0), which places
//! its partitions, records it in the metadata log and has every shard apply it. Each topic
//! needs CREATE on the cluster or on the topic (TOPIC_AUTHORIZATION_FAILED); the configs of a
//! created topic are returned (v5+) only with DESCRIBE_CONFIGS on it.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::{run_unrefused, str_bytes};
use crate::ids::NodeId;
use crate::metadata::topic_config::{all_keys, source_of, TopicConfig};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::messages::{CreateTopicSpec, TopicResult};

pub async fn handle(ctx: &RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let planned = request.topics.iter().map(|topic| {
        let name = topic.name.0.to_string();
        if counts[&name] > 1 {
            Err(refusal(
                &name,
                ResponseError::InvalidRequest,
                "topic named more than once",
            ))
        } else {
            to_spec(ctx, topic, request.validate_only)
        }
    });
    let results = run_unrefused(
        planned.collect(),
        |specs| ctx.shard.create_topics(specs),
        TopicResult::default,
    )
    .await;
    let topics = results
        .into_iter()
        .map(|result| topic_result(ctx, result))
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn to_spec(
    ctx: &RequestContext,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<CreateTopicSpec, TopicResult> {
    let name = topic.name.0.to_string();
    if !super::may_create_topic(ctx, &name) {
        let message = "not authorized to create this topic";
        return Err(refusal(
            &name,
            ResponseError::TopicAuthorizationFailed,
            message,
        ));
    }
    let mut num_partitions = topic.num_partitions;
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            let message = "replica assignment given with partition count or replication factor";
            return Err(refusal(&name, ResponseError::InvalidRequest, message));
        }
        let node = ctx.shard.config.node_id;
        let only_this_node = topic
            .assignments
            .iter()
            .all(|a| a.broker_ids.iter().all(|b| NodeId(b.0) == node));
        let indexes_dense = topic
            .assignments
            .iter()
            .enumerate()
            .all(|(i, a)| a.partition_index == i as i32);
        if ctx.shard.config.cluster.is_some() {
            let message = "replica assignments are not supported in a cluster yet";
            return Err(refusal(
                &name,
                ResponseError::InvalidReplicaAssignment,
                message,
            ));
        }
        if !only_this_node || !indexes_dense {
            let message = format!("assignments must name only broker {node}, partitions 0..n");
            return Err(refusal(
                &name,
                ResponseError::InvalidReplicaAssignment,
                &message,
            ));
        }
        num_partitions = topic.assignments.len() as i32;
    } else {
        let factor = topic.replication_factor;
        let refused = match factor {
            -1 | 1 => None,
            _ if factor < 1 => Some("is not positive"),
            _ if ctx.shard.config.cluster.is_none() => Some("is not possible with 1 broker"),
            _ => None,
        };
        if let Some(why) = refused {
            let message = format!("replication factor {factor} {why}");
            return Err(refusal(
                &name,
                ResponseError::InvalidReplicationFactor,
                &message,
            ));
        }
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            let message = format!("config {} has a null value", config.name.as_str());
            return Err(refusal(&name, ResponseError::InvalidConfig, &message));
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    Ok(CreateTopicSpec {
        name,
        num_partitions,
        replication_factor: if topic.assignments.is_empty() {
            topic.replication_factor
        } else {
            1
        },
        configs,
        validate_only,
    })
}

fn refusal(name: &str, error: ResponseError, message: &str) -> TopicResult {
    TopicResult::refused(name.to_string(), (error, message.to_string()))
}

fn topic_result(ctx: &RequestContext, result: TopicResult) -> CreatableTopicResult {
    let version = ctx.api_version;
    let mut out = CreatableTopicResult::default()
        .with_name(super::topic_name(&result.name))
        .with_error_code(result.error_code)
        .with_error_message(result.error_message.clone().map(str_bytes));
    // Fields newer than the request's version stay at their defaults: the crate refuses to
    // encode a field its version lacks.
    if result.error_code != 0 || version < 5 {
        return out;
    }
    out = out
        .with_num_partitions(result.num_partitions)
        .with_replication_factor(result.replication_factor);
    if version >= 7 {
        out.topic_id = result.id;
    }
    if !ctx.authorize_topic(AclOperation::DescribeConfigs, &result.name) {
        out.topic_config_error_code = ResponseError::TopicAuthorizationFailed.code();
        return out;
    }
    let overrides = ctx
        .shard
        .table()
        .topic(&result.name)
        .map(|t| t.overrides.clone())
        .unwrap_or_default();
    let defaults = ctx.shard.table().defaults().clone();
    let config = TopicConfig::resolve(&defaults, &overrides);
    let configs = all_keys()
        .map(|key| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(key.name))
                .with_value(config.value_of(key.name).map(str_bytes))
                .with_config_source(source_of(key.name, &overrides, &defaults) as i8)
        })
        .collect();
    out.with_configs(Some(configs))
}
