//! Topic administration over the blocking [`Admin`] client: list, describe, create, delete,
//! configs and partition increases. Every Kafka error code becomes an error naming it.

use anyhow::{anyhow, bail};
use kafka_protocol::messages::{
    create_partitions_request, create_topics_request, describe_configs_request,
    incremental_alter_configs_request, metadata_request,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::admin::{kafka_error, topic_name, versions, Admin};

/// DescribeConfigs' and AlterConfigs' resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// How long the broker may take over a topic change.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// A topic as Metadata shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: Option<String>,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Filled by `describe` (ListOffsets earliest / latest); None when not asked.
    pub log_start_offset: Option<i64>,
    pub high_watermark: Option<i64>,
}

/// One config of a topic as DescribeConfigs shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's config source name, e.g. DYNAMIC_TOPIC_CONFIG or DEFAULT_CONFIG.
    pub source: &'static str,
    pub read_only: bool,
}

/// An IncrementalAlterConfigs operation (KIP-339 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOperation {
    Set = 0,
    Delete = 1,
    Append = 2,
    Subtract = 3,
}

pub fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

impl Admin {
    /// Every topic (`names` None) or the named ones; an unknown named topic is an error.
    pub fn topics(&mut self, names: Option<&[String]>) -> anyhow::Result<Vec<TopicInfo>> {
        let wanted = names.map(|names| {
            names
                .iter()
                .map(|name| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(name)))
                })
                .collect()
        });
        let request = MetadataRequest::default()
            .with_topics(wanted)
            .with_allow_auto_topic_creation(false);
        let response = self.request(&request, versions::METADATA)?;
        let mut topics = Vec::with_capacity(response.topics.len());
        for topic in response.topics {
            let name = topic.name.map(|n| n.0.to_string()).unwrap_or_default();
            if topic.error_code != 0 {
                return Err(kafka_error(
                    &format!("topic {name:?}"),
                    topic.error_code,
                    None,
                ));
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    log_start_offset: None,
                    high_watermark: None,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let id = (!topic.topic_id.is_nil()).then(|| topic.topic_id.to_string());
            topics.push(TopicInfo {
                name,
                id,
                internal: topic.is_internal,
                partitions,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Metadata, configs and offsets of one topic.
    pub fn describe_topic(&mut self, name: &str) -> anyhow::Result<(TopicInfo, Vec<ConfigEntry>)> {
        let mut topic = self
            .topics(Some(&[name.to_string()]))?
            .pop()
            .ok_or_else(|| anyhow!("Metadata answered without topic {name:?}"))?;
        let count = topic.partitions.len() as i32;
        let starts = self.offsets(name, count, -2)?;
        let ends = self.offsets(name, count, -1)?;
        for partition in &mut topic.partitions {
            let index = partition.partition as usize;
            partition.log_start_offset = starts.get(index).copied();
            partition.high_watermark = ends.get(index).copied();
        }
        let configs = self.topic_configs(name)?;
        Ok((topic, configs))
    }

    pub fn topic_configs(&mut self, name: &str) -> anyhow::Result<Vec<ConfigEntry>> {
        let resource = describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None);
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response = self.request(&request, versions::DESCRIBE_CONFIGS)?;
        let Some(result) = response.results.into_iter().next() else {
            bail!("DescribeConfigs answered without topic {name:?}");
        };
        if result.error_code != 0 {
            let message = result.error_message.as_ref().map(|m| m.as_str());
            return Err(kafka_error(
                &format!("configs of {name:?}"),
                result.error_code,
                message,
            ));
        }
        let mut configs: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: source_name(c.config_source),
                read_only: c.read_only,
            })
            .collect();
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(configs)
    }

    /// Creates `name`; `partitions` -1 means the broker's default.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> anyhow::Result<()> {
        let configs = configs
            .iter()
            .map(|(key, value)| {
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(key.clone()))
                    .with_value(Some(StrBytes::from_string(value.clone())))
            })
            .collect();
        let topic = create_topics_request::CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(configs);
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_validate_only(validate_only);
        let response = self.request(&request, versions::CREATE_TOPICS)?;
        let result = response
            .topics
            .first()
            .ok_or_else(|| anyhow!("CreateTopics answered without topic {name:?}"))?;
        check(
            &format!("create {name:?}"),
            result.error_code,
            &result.error_message,
        )
    }

    pub fn delete_topic(&mut self, name: &str) -> anyhow::Result<()> {
        let request = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(name)])
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let response = self.request(&request, versions::DELETE_TOPICS)?;
        let result = response
            .responses
            .first()
            .ok_or_else(|| anyhow!("DeleteTopics answered without topic {name:?}"))?;
        check(&format!("delete {name:?}"), result.error_code, &None)
    }

    /// Applies config operations to topic `name` in one IncrementalAlterConfigs request.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        operations: &[(String, AlterOperation, Option<String>)],
    ) -> anyhow::Result<()> {
        let configs = operations
            .iter()
            .map(|(key, operation, value)| {
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_string(key.clone()))
                    .with_config_operation(*operation as i8)
                    .with_value(value.clone().map(StrBytes::from_string))
            })
            .collect();
        let resource = incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configs(configs);
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
        let response = self.request(&request, versions::INCREMENTAL_ALTER_CONFIGS)?;
        let result = response
            .responses
            .first()
            .ok_or_else(|| anyhow!("IncrementalAlterConfigs answered without {name:?}"))?;
        check(
            &format!("alter configs of {name:?}"),
            result.error_code,
            &result.error_message,
        )
    }

    /// Grows topic `name` to `count` partitions.
    pub fn create_partitions(&mut self, name: &str, count: i32) -> anyhow::Result<()> {
        let topic = create_partitions_request::CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            .with_assignments(None);
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let response = self.request(&request, versions::CREATE_PARTITIONS)?;
        let result = response
            .results
            .first()
            .ok_or_else(|| anyhow!("CreatePartitions answered without {name:?}"))?;
        check(
            &format!("add partitions to {name:?}"),
            result.error_code,
            &result.error_message,
        )
    }
}

fn check(what: &str, code: i16, message: &Option<StrBytes>) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(kafka_error(
        what,
        code,
        message.as_ref().map(|m| m.as_str()),
    ))
}

// DeleteTopics v4 names topics in `topic_names`; the `topics` list is v6+.
const _: () = assert!(versions::DELETE_TOPICS < 6);
