//! Per-topic configuration: the keys a topic may set, their validation, and their resolution
//! against the broker-wide defaults.
//!
//! A topic stores only its overrides (name -> string value, as Kafka's CreateTopics and
//! AlterConfigs carry them); `TopicConfig::resolve` turns overrides plus defaults into typed
//! values. The same table answers DescribeConfigs.

use std::collections::BTreeMap;

use crate::config::TopicDefaults;
use crate::storage::LogConfig;

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The typed configuration of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: String,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    pub timestamp_type: TimestampType,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub index_interval_bytes: u64,
    /// Replicas in sync that a produce with acks=all needs (NOT_ENOUGH_REPLICAS otherwise).
    pub min_insync_replicas: i32,
}

/// Where a config's value comes from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`, 1).
    Topic = 1,
    /// Set in the broker's configuration (`STATIC_BROKER_CONFIG`, 4).
    Broker = 4,
    /// The built-in default (`DEFAULT_CONFIG`, 5).
    Default = 5,
}

/// Kafka's config types for DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// One key a topic may set.
pub struct ConfigKey {
    pub name: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
}

/// Every topic config key corelog knows, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        kind: ConfigType::List,
        doc: "delete or compact",
    },
    ConfigKey {
        name: "compression.type",
        kind: ConfigType::String,
        doc: "only producer",
    },
    ConfigKey {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        doc: "bytes per index entry",
    },
    ConfigKey {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        doc: "largest batch accepted",
    },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        doc: "how far in the future a CreateTime may be",
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        doc: "how far in the past a CreateTime may be",
    },
    ConfigKey {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        doc: "CreateTime or LogAppendTime",
    },
    ConfigKey {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        doc: "replicas in sync an acks=all produce needs",
    },
    ConfigKey {
        name: "retention.bytes",
        kind: ConfigType::Long,
        doc: "-1 for unlimited",
    },
    ConfigKey {
        name: "retention.ms",
        kind: ConfigType::Long,
        doc: "-1 for unlimited",
    },
    ConfigKey {
        name: "segment.bytes",
        kind: ConfigType::Int,
        doc: "segment roll size",
    },
    ConfigKey {
        name: "segment.ms",
        kind: ConfigType::Long,
        doc: "segment roll age",
    },
];

/// Why a config was refused; CreateTopics and AlterConfigs answer INVALID_CONFIG with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl TopicConfig {
    /// Applies `overrides` (already validated) on top of the broker defaults.
    pub fn resolve(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let mut config = TopicConfig {
            cleanup_policy: "delete".to_string(),
            segment_bytes: defaults.segment_bytes,
            segment_ms: defaults.segment_ms,
            retention_ms: defaults.retention_ms,
            retention_bytes: defaults.retention_bytes,
            max_message_bytes: defaults.max_message_bytes,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            index_interval_bytes: 4096,
            min_insync_replicas: 1,
        };
        for (name, value) in overrides {
            // Overrides were validated when stored; a failure here means a corrupt metadata
            // log, and the default is the safe reading of it.
            let _ = config.set(name, value);
        }
        config
    }

    /// Checks every override and returns the first error.
    pub fn validate(overrides: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let mut probe = TopicConfig::resolve(&probe_defaults(), &BTreeMap::new());
        for (name, value) in overrides {
            probe.set(name, value)?;
        }
        Ok(())
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        match name {
            "cleanup.policy" => self.cleanup_policy = parse_cleanup_policy(value)?,
            "compression.type" if value == "producer" => {}
            "compression.type" => {
                return Err(ConfigError(
                    "compression.type: only 'producer' is supported (batches are stored as sent)"
                        .into(),
                ))
            }
            "index.interval.bytes" => self.index_interval_bytes = parse_range(name, value, 0)?,
            "max.message.bytes" => {
                self.max_message_bytes =
                    parse_range::<i64>(name, value, 0)?.min(i32::MAX as i64) as i32
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max_ms = parse_range(name, value, 0)?
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max_ms = parse_range(name, value, 0)?
            }
            "message.timestamp.type" => self.timestamp_type = parse_timestamp_type(value)?,
            "min.insync.replicas" => {
                self.min_insync_replicas =
                    parse_range::<i64>(name, value, 1)?.min(i64::from(i32::MAX)) as i32
            }
            "retention.bytes" => self.retention_bytes = parse_range(name, value, -1)?,
            "retention.ms" => self.retention_ms = parse_range(name, value, -1)?,
            "segment.bytes" => {
                self.segment_bytes =
                    parse_range::<u64>(name, value, crate::limits::SEGMENT_BYTES_MIN as i64)?
            }
            "segment.ms" => self.segment_ms = parse_range(name, value, 1)?,
            _ => return Err(ConfigError(format!("unknown topic config {name:?}"))),
        }
        Ok(())
    }

    /// The effective value of `name` as DescribeConfigs shows it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.clone(),
            "compression.type" => "producer".to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            _ => return None,
        })
    }

    /// The storage-level part of the configuration.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            index_interval_bytes: self.index_interval_bytes.max(1),
        }
    }
}

/// One operation of IncrementalAlterConfigs (KIP-339), by its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigOperation {
    Set = 0,
    Delete = 1,
    Append = 2,
    Subtract = 3,
}

impl ConfigOperation {
    pub fn from_code(code: i8) -> Option<ConfigOperation> {
        match code {
            0 => Some(ConfigOperation::Set),
            1 => Some(ConfigOperation::Delete),
            2 => Some(ConfigOperation::Append),
            3 => Some(ConfigOperation::Subtract),
            _ => None,
        }
    }
}

/// Why an alteration was refused: the Kafka error class and a message.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterError {
    /// INVALID_REQUEST: the request itself is malformed (duplicate keys, null values).
    Request(String),
    /// INVALID_CONFIG: an unknown key, a bad value, or an operation the key does not take.
    Config(String),
}

/// The overrides after applying IncrementalAlterConfigs `operations` to `current`. SET
/// replaces, DELETE returns the key to its default, APPEND and SUBTRACT (list keys only) add
/// or remove items of the effective value. The result is validated as a whole.
pub fn apply_incremental(
    current: &BTreeMap<String, String>,
    defaults: &TopicDefaults,
    operations: &[(String, ConfigOperation, Option<String>)],
) -> Result<BTreeMap<String, String>, AlterError> {
    let mut names: Vec<&str> = operations
        .iter()
        .map(|(name, _, _)| name.as_str())
        .collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(AlterError::Request(format!(
            "config {:?} named twice",
            pair[0]
        )));
    }
    let effective = TopicConfig::resolve(defaults, current);
    let mut next = current.clone();
    for (name, operation, value) in operations {
        let Some(key) = TOPIC_CONFIG_KEYS.iter().find(|key| key.name == name) else {
            return Err(AlterError::Config(format!("unknown topic config {name:?}")));
        };
        let is_list = key.kind == ConfigType::List;
        let value = value.as_deref();
        match (operation, value) {
            (ConfigOperation::Delete, _) => {
                next.remove(name);
            }
            (_, None) => {
                return Err(AlterError::Request(format!(
                    "config {name:?} has a null value"
                )))
            }
            (ConfigOperation::Set, Some(value)) => {
                next.insert(name.clone(), value.to_string());
            }
            (ConfigOperation::Append | ConfigOperation::Subtract, Some(_)) if !is_list => {
                return Err(AlterError::Config(format!(
                    "{name} is not a list: APPEND and SUBTRACT do not apply"
                )))
            }
            (ConfigOperation::Append | ConfigOperation::Subtract, Some(value)) => {
                let mut items = list_items(&effective.value_of(name).unwrap_or_default());
                for item in list_items(value) {
                    if *operation == ConfigOperation::Append && !items.contains(&item) {
                        items.push(item);
                    } else if *operation == ConfigOperation::Subtract {
                        items.retain(|existing| *existing != item);
                    }
                }
                next.insert(name.clone(), items.join(","));
            }
        }
    }
    TopicConfig::validate(&next).map_err(|error| AlterError::Config(error.0))?;
    Ok(next)
}

/// The overrides a legacy AlterConfigs sets: exactly the given pairs, every other key back to
/// its default.
pub fn replace_all(
    pairs: &[(String, Option<String>)],
) -> Result<BTreeMap<String, String>, AlterError> {
    let mut next = BTreeMap::new();
    for (name, value) in pairs {
        let Some(value) = value else {
            return Err(AlterError::Request(format!(
                "config {name:?} has a null value"
            )));
        };
        if next.insert(name.clone(), value.clone()).is_some() {
            return Err(AlterError::Request(format!("config {name:?} named twice")));
        }
    }
    TopicConfig::validate(&next).map_err(|error| AlterError::Config(error.0))?;
    Ok(next)
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where the value of `name` comes from for a topic with these overrides.
pub fn source_of(
    name: &str,
    overrides: &BTreeMap<String, String>,
    broker_defaults: &TopicDefaults,
) -> ConfigSource {
    if overrides.contains_key(name) {
        return ConfigSource::Topic;
    }
    let builtin = TopicConfig::resolve(&probe_defaults(), &BTreeMap::new());
    let broker = TopicConfig::resolve(broker_defaults, &BTreeMap::new());
    if builtin.value_of(name) == broker.value_of(name) {
        ConfigSource::Default
    } else {
        ConfigSource::Broker
    }
}

/// The built-in defaults, used to tell DEFAULT_CONFIG from STATIC_BROKER_CONFIG.
fn probe_defaults() -> TopicDefaults {
    TopicDefaults {
        segment_bytes: 1 << 30,
        segment_ms: 7 * 24 * 3_600_000,
        retention_ms: 7 * 24 * 3_600_000,
        retention_bytes: -1,
        max_message_bytes: crate::limits::MESSAGE_BYTES_MAX_DEFAULT as i32,
    }
}

fn parse_range<T>(name: &str, value: &str, min: i64) -> Result<T, ConfigError>
where
    T: TryFrom<i64>,
{
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| ConfigError(format!("{name}: {value:?} is not a number")))?;
    if parsed < min {
        return Err(ConfigError(format!(
            "{name}: {parsed} is below the minimum {min}"
        )));
    }
    T::try_from(parsed).map_err(|_| ConfigError(format!("{name}: {parsed} is out of range")))
}

fn parse_cleanup_policy(value: &str) -> Result<String, ConfigError> {
    let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
    parts.sort_unstable();
    parts.dedup();
    if parts.is_empty() || parts.iter().any(|p| *p != "delete" && *p != "compact") {
        return Err(ConfigError(format!(
            "cleanup.policy: {value:?} is not delete/compact"
        )));
    }
    Ok(parts.join(","))
}

fn parse_timestamp_type(value: &str) -> Result<TimestampType, ConfigError> {
    match value {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err(ConfigError(format!(
            "message.timestamp.type: {value:?} is not valid"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Overrides replace defaults; unknown keys and bad values are refused.
    #[test]
    fn validate_and_resolve() {
        let ok = overrides(&[
            ("retention.ms", "1000"),
            ("message.timestamp.type", "LogAppendTime"),
        ]);
        TopicConfig::validate(&ok).unwrap();
        let config = TopicConfig::resolve(&probe_defaults(), &ok);
        assert_eq!(config.retention_ms, 1000);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        assert!(TopicConfig::validate(&overrides(&[("bogus", "1")])).is_err());
        assert!(TopicConfig::validate(&overrides(&[("retention.ms", "x")])).is_err());
        assert!(TopicConfig::validate(&overrides(&[("segment.bytes", "10")])).is_err());
        assert!(TopicConfig::validate(&overrides(&[("cleanup.policy", "nope")])).is_err());
    }

    /// SET, DELETE, APPEND and SUBTRACT act on the overrides as Kafka's KIP-339 says, and a
    /// bad key, value or operation refuses the whole change.
    #[test]
    fn incremental_operations() {
        use ConfigOperation::*;
        let defaults = probe_defaults();
        let current = overrides(&[("retention.ms", "1000"), ("segment.ms", "5000")]);
        let op = |name: &str, operation, value: Option<&str>| {
            (name.to_string(), operation, value.map(str::to_string))
        };
        let next = apply_incremental(
            &current,
            &defaults,
            &[
                op("retention.ms", Set, Some("2000")),
                op("segment.ms", Delete, None),
                op("cleanup.policy", Append, Some("compact")),
            ],
        )
        .unwrap();
        assert_eq!(
            next,
            overrides(&[
                ("retention.ms", "2000"),
                ("cleanup.policy", "delete,compact")
            ])
        );
        let next = apply_incremental(
            &next,
            &defaults,
            &[op("cleanup.policy", Subtract, Some("delete"))],
        )
        .unwrap();
        assert_eq!(next["cleanup.policy"], "compact");
        let refused = |ops: &[(String, ConfigOperation, Option<String>)]| {
            apply_incremental(&current, &defaults, ops).unwrap_err()
        };
        assert!(matches!(
            refused(&[op("bogus", Set, Some("1"))]),
            AlterError::Config(_)
        ));
        assert!(matches!(
            refused(&[op("retention.ms", Set, Some("x"))]),
            AlterError::Config(_)
        ));
        assert!(matches!(
            refused(&[op("retention.ms", Append, Some("1"))]),
            AlterError::Config(_)
        ));
        assert!(matches!(
            refused(&[op("retention.ms", Set, None)]),
            AlterError::Request(_)
        ));
        assert!(matches!(
            refused(&[
                op("segment.ms", Delete, None),
                op("segment.ms", Set, Some("9"))
            ]),
            AlterError::Request(_)
        ));
        assert_eq!(replace_all(&[]).unwrap(), BTreeMap::new());
        assert!(matches!(
            replace_all(&[("max.message.bytes".into(), Some("-5".into()))]),
            Err(AlterError::Config(_))
        ));
    }
}
