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

/// `compression.type`: the codec a topic keeps its batches in. `Producer` keeps each batch in
/// the codec it came in; any other recompresses a batch that came in another one, as Kafka's
/// broker-side compression does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl TopicCompression {
    /// The config value, as Kafka names it.
    pub fn name(self) -> &'static str {
        match self {
            TopicCompression::Producer => "producer",
            TopicCompression::Uncompressed => "uncompressed",
            TopicCompression::Gzip => "gzip",
            TopicCompression::Snappy => "snappy",
            TopicCompression::Lz4 => "lz4",
            TopicCompression::Zstd => "zstd",
        }
    }

    const ALL: [TopicCompression; 6] = [
        TopicCompression::Producer,
        TopicCompression::Uncompressed,
        TopicCompression::Gzip,
        TopicCompression::Snappy,
        TopicCompression::Lz4,
        TopicCompression::Zstd,
    ];
}

/// The typed configuration of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// Values set for the stock keys corelog accepts without acting on them (see
    /// `ACCEPTED_KEYS`), by name.
    pub accepted: BTreeMap<&'static str, String>,
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
    /// Compaction (`partition::cleaner`), for a topic whose cleanup policy includes compact.
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub compression: TopicCompression,
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
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One key a topic may set.
pub struct ConfigKey {
    pub name: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
}

/// The topic config keys corelog acts on, in name order (see `all_keys` for every key).
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        kind: ConfigType::List,
        doc: "delete or compact",
    },
    ConfigKey {
        name: "compression.type",
        kind: ConfigType::String,
        doc:
            "producer (as sent), uncompressed, gzip, snappy, lz4 or zstd (recompressed on produce)",
    },
    ConfigKey {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        doc: "how long a tombstone stays after compaction first covered it",
    },
    ConfigKey {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        doc: "bytes per index entry",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "longest a record stays uncompacted",
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
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        doc: "share of uncompacted bytes that starts a compaction",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "shortest a record stays uncompacted",
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

/// A stock Kafka topic config corelog accepts, validates as Kafka does, stores and describes,
/// but does not act on; `doc` says why (DescribeConfigs v3+ shows it).
pub struct AcceptedKey {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    rule: Rule,
    pub doc: &'static str,
}

/// What values an accepted key takes.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// A whole number in the range.
    Whole(i64, i64),
    /// true or false.
    Boolean,
    /// Exactly this value: the only one corelog can honour.
    Only(&'static str),
    /// A list of replicas (`partition:broker,...`, or `*`).
    Replicas,
}

impl Rule {
    fn check(self, name: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        let refused = |why: &str| Err(ConfigError(format!("{name}={value:?}: {why}")));
        match self {
            Rule::Whole(min, max) => match value.parse::<i64>() {
                Ok(number) if (min..=max).contains(&number) => Ok(()),
                _ => refused(&format!("not a whole number in [{min}, {max}]")),
            },
            Rule::Boolean if value.eq_ignore_ascii_case("true") => Ok(()),
            Rule::Boolean if value.eq_ignore_ascii_case("false") => Ok(()),
            Rule::Boolean => refused("not true or false"),
            Rule::Only(only) if value.eq_ignore_ascii_case(only) => Ok(()),
            Rule::Only(only) => refused(&format!("corelog supports only {only}")),
            Rule::Replicas => {
                let item = |item: &str| {
                    let parts: Vec<&str> = item.trim().split(':').collect();
                    parts.len() == 2 && parts.iter().all(|part| part.trim().parse::<u32>().is_ok())
                };
                if value.is_empty() || value == "*" || value.split(',').all(item) {
                    Ok(())
                } else {
                    refused("not a list of partition:broker pairs or *")
                }
            }
        }
    }
}

const LONG_MAX: i64 = i64::MAX;

/// The stock topic configs of Kafka 4.1 that corelog accepts without acting on them, with
/// Kafka's defaults and ranges, so that an admin tool creating a topic with a stock config
/// set does not fail. Each says what corelog does instead.
pub const ACCEPTED_KEYS: &[AcceptedKey] = &[
    AcceptedKey {
        name: "compression.gzip.level",
        kind: ConfigType::Int,
        default: "-1",
        rule: Rule::Whole(-1, 9),
        doc: "no effect: recompression (compression.type) uses the codec's default level",
    },
    AcceptedKey {
        name: "compression.lz4.level",
        kind: ConfigType::Int,
        default: "9",
        rule: Rule::Whole(1, 17),
        doc: "no effect: recompression (compression.type) uses the codec's default level",
    },
    AcceptedKey {
        name: "compression.zstd.level",
        kind: ConfigType::Int,
        default: "3",
        rule: Rule::Whole(-131_072, 22),
        doc: "no effect: recompression (compression.type) uses the codec's default level",
    },
    AcceptedKey {
        name: "file.delete.delay.ms",
        kind: ConfigType::Long,
        default: "60000",
        rule: Rule::Whole(0, LONG_MAX),
        doc: "no effect: corelog deletes a segment's files as soon as no reader holds them",
    },
    AcceptedKey {
        name: "flush.messages",
        kind: ConfigType::Long,
        default: "9223372036854775807",
        rule: Rule::Whole(1, LONG_MAX),
        doc: "no effect: corelog syncs every batch to disk before acknowledging it",
    },
    AcceptedKey {
        name: "flush.ms",
        kind: ConfigType::Long,
        default: "9223372036854775807",
        rule: Rule::Whole(0, LONG_MAX),
        doc: "no effect: corelog syncs every batch to disk before acknowledging it",
    },
    AcceptedKey {
        name: "follower.replication.throttled.replicas",
        kind: ConfigType::List,
        default: "",
        rule: Rule::Replicas,
        doc: "no effect: corelog has no replication throttles",
    },
    AcceptedKey {
        name: "leader.replication.throttled.replicas",
        kind: ConfigType::List,
        default: "",
        rule: Rule::Replicas,
        doc: "no effect: corelog has no replication throttles",
    },
    AcceptedKey {
        name: "local.retention.bytes",
        kind: ConfigType::Long,
        default: "-2",
        rule: Rule::Whole(-2, LONG_MAX),
        doc: "no effect without tiered storage (retention.bytes applies)",
    },
    AcceptedKey {
        name: "local.retention.ms",
        kind: ConfigType::Long,
        default: "-2",
        rule: Rule::Whole(-2, LONG_MAX),
        doc: "no effect without tiered storage (retention.ms applies)",
    },
    AcceptedKey {
        name: "message.downconversion.enable",
        kind: ConfigType::Boolean,
        default: "true",
        rule: Rule::Boolean,
        doc: "no effect: corelog serves v2 batches only, to clients that all read them",
    },
    AcceptedKey {
        name: "preallocate",
        kind: ConfigType::Boolean,
        default: "false",
        rule: Rule::Boolean,
        doc: "no effect: corelog pre-writes the segments of busy partitions itself",
    },
    AcceptedKey {
        name: "remote.log.copy.disable",
        kind: ConfigType::Boolean,
        default: "false",
        rule: Rule::Boolean,
        doc: "no effect without tiered storage",
    },
    AcceptedKey {
        name: "remote.log.delete.on.disable",
        kind: ConfigType::Boolean,
        default: "false",
        rule: Rule::Boolean,
        doc: "no effect without tiered storage",
    },
    AcceptedKey {
        name: "remote.storage.enable",
        kind: ConfigType::Boolean,
        default: "false",
        rule: Rule::Only("false"),
        doc: "false only: corelog has no tiered storage",
    },
    AcceptedKey {
        name: "segment.index.bytes",
        kind: ConfigType::Int,
        default: "10485760",
        rule: Rule::Whole(4, i32::MAX as i64),
        doc: "no effect: corelog's indexes grow with their segment",
    },
    AcceptedKey {
        name: "segment.jitter.ms",
        kind: ConfigType::Long,
        default: "0",
        rule: Rule::Whole(0, LONG_MAX),
        doc: "no effect: segments roll at segment.ms exactly",
    },
    AcceptedKey {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        default: "false",
        rule: Rule::Only("false"),
        doc: "false only: a Raft group never elects a replica without the committed log",
    },
];

/// Every key a topic may set, those corelog acts on and those it only accepts, in name order
/// (the order DescribeConfigs lists them in).
pub fn all_keys() -> impl Iterator<Item = ConfigKey> {
    let acted_on = TOPIC_CONFIG_KEYS.iter().map(|key| ConfigKey {
        name: key.name,
        kind: key.kind,
        doc: key.doc,
    });
    let accepted = ACCEPTED_KEYS.iter().map(|key| ConfigKey {
        name: key.name,
        kind: key.kind,
        doc: key.doc,
    });
    let mut keys: Vec<ConfigKey> = acted_on.chain(accepted).collect();
    keys.sort_by_key(|key| key.name);
    keys.into_iter()
}

/// Why a config was refused; CreateTopics and AlterConfigs answer INVALID_CONFIG with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl TopicConfig {
    /// Whether `cleanup.policy` includes `compact` ("compact" or "compact,delete"): the log
    /// keeps the latest record of each key, so every record needs a key.
    pub fn is_compacted(&self) -> bool {
        self.cleanup_policy
            .split(',')
            .any(|policy| policy == "compact")
    }

    /// Applies `overrides` (already validated) on top of the broker defaults.
    pub fn resolve(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let mut config = TopicConfig {
            accepted: BTreeMap::new(),
            // Checked when the broker's config was read.
            cleanup_policy: parse_cleanup_policy(&defaults.cleanup_policy)
                .unwrap_or_else(|_| "delete".to_string()),
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
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            compression: TopicCompression::Producer,
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
            "compression.type" => self.compression = parse_compression(value)?,
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
            "delete.retention.ms" => self.delete_retention_ms = parse_range(name, value, 0)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = parse_range(name, value, 1)?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = match value.trim().parse::<f64>() {
                    Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
                    _ => {
                        return Err(ConfigError(format!(
                            "{name}: {value:?} is not a number in [0, 1]"
                        )))
                    }
                }
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse_range(name, value, 0)?,
            "retention.bytes" => self.retention_bytes = parse_range(name, value, -1)?,
            "retention.ms" => self.retention_ms = parse_range(name, value, -1)?,
            "segment.bytes" => {
                self.segment_bytes =
                    parse_range::<u64>(name, value, crate::limits::SEGMENT_BYTES_MIN as i64)?
            }
            "segment.ms" => self.segment_ms = parse_range(name, value, 1)?,
            _ => {
                let Some(key) = ACCEPTED_KEYS.iter().find(|key| key.name == name) else {
                    return Err(ConfigError(format!("unknown topic config {name:?}")));
                };
                key.rule.check(name, value)?;
                self.accepted.insert(key.name, value.trim().to_string());
            }
        }
        Ok(())
    }

    /// The effective value of `name` as DescribeConfigs shows it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.clone(),
            "compression.type" => self.compression.name().to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            _ => {
                let key = ACCEPTED_KEYS.iter().find(|key| key.name == name)?;
                let set = self.accepted.get(key.name);
                set.map_or_else(|| key.default.to_string(), Clone::clone)
            }
        })
    }

    /// Whether the cleanup policy includes delete: retention by time and size applies.
    pub fn deletes(&self) -> bool {
        self.cleanup_policy
            .split(',')
            .any(|policy| policy == "delete")
    }

    /// The storage-level part of the configuration. Retention deletes nothing of a topic
    /// that only compacts.
    pub fn log_config(&self) -> LogConfig {
        let deletes = self.deletes();
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_bytes: if deletes { self.retention_bytes } else { -1 },
            retention_ms: if deletes { self.retention_ms } else { -1 },
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
        let Some(key) = all_keys().find(|key| key.name == name) else {
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
        cleanup_policy: "delete".to_string(),
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

/// Kafka's names (`BrokerCompressionType`); `none` is the producer's word, which a topic
/// refuses as Kafka does.
fn parse_compression(value: &str) -> Result<TopicCompression, ConfigError> {
    let found = TopicCompression::ALL
        .into_iter()
        .find(|codec| codec.name() == value);
    found.ok_or_else(|| {
        ConfigError(format!(
            "compression.type: {value:?} is not one of producer, uncompressed, gzip, snappy, \
             lz4, zstd"
        ))
    })
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

    /// The stock keys corelog only accepts take Kafka's values and ranges, refuse what
    /// corelog cannot honour, show their default until set, and list in name order with the
    /// rest.
    #[test]
    fn stock_keys_are_accepted_with_kafkas_ranges() {
        let stock = overrides(&[
            ("flush.messages", "1"),
            ("flush.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("preallocate", "true"),
            ("message.downconversion.enable", "false"),
            ("unclean.leader.election.enable", "false"),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("segment.jitter.ms", "0"),
        ]);
        TopicConfig::validate(&stock).expect("a stock config set");
        for (name, value) in [
            ("flush.messages", "0"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("preallocate", "yes"),
            ("unclean.leader.election.enable", "true"),
            ("remote.storage.enable", "true"),
            ("compression.zstd.level", "23"),
            ("follower.replication.throttled.replicas", "0-1"),
        ] {
            let refused = TopicConfig::validate(&overrides(&[(name, value)]));
            assert!(refused.is_err(), "{name}={value}");
        }
        let config = TopicConfig::resolve(&probe_defaults(), &stock);
        assert_eq!(config.value_of("flush.messages").as_deref(), Some("1"));
        assert_eq!(
            config.value_of("delete.retention.ms").as_deref(),
            Some("86400000")
        );
        let names: Vec<&str> = all_keys().map(|key| key.name).collect();
        assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "{names:?}");
        assert_eq!(names.len(), TOPIC_CONFIG_KEYS.len() + ACCEPTED_KEYS.len());
        let source = source_of("flush.ms", &stock, &probe_defaults());
        assert_eq!(source, ConfigSource::Topic);
        let source = source_of("flush.ms", &BTreeMap::new(), &probe_defaults());
        assert_eq!(source, ConfigSource::Default);
    }
}
