//! A blocking control-plane client over one TCP connection on the calling thread: topics,
//! partitions, offsets and configs, for `corelog bench`'s set-up and `corelog topic`.
//!
//! Request versions are fixed ones that Kafka 3.x/4.x and corelog all serve; at connect the
//! broker's ApiVersions ranges are read, so a broker that lacks one gets a clear error naming
//! the API rather than a decoding failure. Kafka error codes become errors that name the code
//! (`UnknownTopicOrPartition (3)`) and carry the broker's message.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::io::AllowStdIo;
use kafka_protocol::messages::{create_topics_request, list_offsets_request, metadata_request};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::messages::{
    CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;

use super::frame::Connection;
use super::security::{authenticate, BlockingStream, ClientSecurity};

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION and TOPIC_ALREADY_EXISTS error codes.
pub(crate) const ERROR_UNKNOWN_TOPIC: i16 = 3;
const ERROR_TOPIC_EXISTS: i16 = 36;

/// Request versions this client sends: inside the ranges Kafka 3.x/4.x and corelog serve.
pub mod versions {
    pub const METADATA: i16 = 10;
    pub const CREATE_TOPICS: i16 = 5;
    pub const DELETE_TOPICS: i16 = 4;
    pub const LIST_OFFSETS: i16 = 5;
    pub const DESCRIBE_CONFIGS: i16 = 4;
    pub const CREATE_PARTITIONS: i16 = 3;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 1;
    pub const API_VERSIONS: i16 = 0;
}

/// How long set-up waits for a connection or a created topic to appear.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Admin {
    address: SocketAddr,
    security: ClientSecurity,
    connection: Connection<AllowStdIo<BlockingStream>>,
    /// The broker's version range per API key, from ApiVersions at connect.
    ranges: HashMap<i16, (i16, i16)>,
}

pub fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A Kafka error code in a response, with what was asked and the broker's message.
pub fn kafka_error(what: &str, code: i16, message: Option<&str>) -> anyhow::Error {
    let name = match ResponseError::try_from_code(code) {
        Some(error) => format!("{error:?}"),
        None => "unknown error".to_string(),
    };
    match message.filter(|m| !m.is_empty()) {
        Some(message) => anyhow!("{what}: {name} ({code}): {message}"),
        None => anyhow!("{what}: {name} ({code})"),
    }
}

impl Admin {
    /// Connects to `address` (named `host` in its TLS certificate), authenticating as
    /// `security` says.
    pub fn connect(
        address: SocketAddr,
        host: &str,
        security: &ClientSecurity,
    ) -> anyhow::Result<Admin> {
        let stream = security
            .connect_blocking(address, host, SETUP_TIMEOUT)
            .with_context(|| format!("cannot reach the broker at {address}"))?;
        let mut admin = Admin {
            address,
            security: security.clone(),
            connection: Connection::new(AllowStdIo::new(stream)),
            ranges: HashMap::new(),
        };
        let response = admin.request(&ApiVersionsRequest::default(), versions::API_VERSIONS)?;
        if response.error_code != 0 {
            return Err(kafka_error("ApiVersions", response.error_code, None));
        }
        admin.ranges = response
            .api_keys
            .iter()
            .map(|range| (range.api_key, (range.min_version, range.max_version)))
            .collect();
        if let Some(login) = security.sasl() {
            futures::executor::block_on(authenticate(&mut admin.connection, login))
                .with_context(|| format!("cannot log in to the broker at {address}"))?;
        }
        Ok(admin)
    }

    /// How this client connects (for connections to other brokers).
    pub fn security(&self) -> &ClientSecurity {
        &self.security
    }

    /// The address this client is connected to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Connects to the first of `brokers` (`HOST:PORT`, comma-separated lists allowed) that
    /// answers.
    pub fn connect_any(brokers: &[String], security: &ClientSecurity) -> anyhow::Result<Admin> {
        let mut last_error = anyhow!("no broker address given");
        for broker in brokers.iter().flat_map(|list| list.split(',')) {
            let addresses = match broker.trim().to_socket_addrs() {
                Ok(addresses) => addresses,
                Err(error) => {
                    last_error = anyhow!("cannot resolve broker address {broker:?}: {error}");
                    continue;
                }
            };
            let host = broker.trim().rsplit_once(':').map_or("", |(host, _)| host);
            for address in addresses {
                match Admin::connect(address, host, security) {
                    Ok(admin) => return Ok(admin),
                    Err(error) => last_error = error,
                }
            }
        }
        Err(last_error)
    }

    pub(super) fn request<Q: Request>(
        &mut self,
        request: &Q,
        version: i16,
    ) -> anyhow::Result<Q::Response> {
        let served = self.ranges.get(&Q::KEY).copied();
        let known = !self.ranges.is_empty();
        if known && !served.is_some_and(|(min, max)| min <= version && version <= max) {
            let api = ApiKey::try_from(Q::KEY).map_or("unknown".to_string(), |k| format!("{k:?}"));
            bail!(
                "the broker at {} does not serve {api} v{version} (it serves {served:?})",
                self.address
            );
        }
        futures::executor::block_on(self.connection.request(request, version)).with_context(|| {
            format!(
                "request (api key {}) to the broker at {} failed",
                Q::KEY,
                self.address
            )
        })
    }

    /// The partition count of `topic`, or None if the broker does not know it.
    pub fn partition_count(&mut self, topic: &str) -> anyhow::Result<Option<i32>> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(topic_name(topic)))]))
            .with_allow_auto_topic_creation(false);
        let response = self.request(&request, versions::METADATA)?;
        let Some(found) = response.topics.first() else {
            bail!("Metadata answered without the topic {topic}");
        };
        match found.error_code {
            0 if !found.partitions.is_empty() => Ok(Some(found.partitions.len() as i32)),
            0 | ERROR_UNKNOWN_TOPIC => Ok(None),
            code => bail!("Metadata for topic {topic}: Kafka error code {code}"),
        }
    }

    /// The partition count of `topic`, creating it with `partitions` if it does not exist.
    pub fn ensure_topic(&mut self, topic: &str, partitions: i32) -> anyhow::Result<i32> {
        if let Some(count) = self.partition_count(topic)? {
            return Ok(count);
        }
        let creatable = create_topics_request::CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1);
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable])
            .with_timeout_ms(30_000);
        let response = self.request(&request, versions::CREATE_TOPICS)?;
        let code = response.topics.first().map_or(-1, |topic| topic.error_code);
        if code != 0 && code != ERROR_TOPIC_EXISTS {
            bail!("CreateTopics {topic} with {partitions} partitions: Kafka error code {code}");
        }
        // A broker may answer CreateTopics before Metadata shows the topic everywhere.
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(count) = self.partition_count(topic)? {
                return Ok(count);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(anyhow!(
            "topic {topic} was created but does not appear in Metadata"
        ))
    }

    /// The advertised address of the broker that leads every partition of `topic`.
    pub fn leader_address(&mut self, topic: &str) -> anyhow::Result<SocketAddr> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(topic_name(topic)))]))
            .with_allow_auto_topic_creation(false);
        let response = self.request(&request, versions::METADATA)?;
        let partitions = response.topics.iter().flat_map(|found| &found.partitions);
        let mut leaders: Vec<i32> = partitions.map(|partition| partition.leader_id.0).collect();
        leaders.sort_unstable();
        leaders.dedup();
        let leader = match leaders[..] {
            [leader] if leader >= 0 => leader,
            [] => bail!("Metadata for topic {topic} lists no partitions"),
            [_] => bail!("topic {topic} has no leader"),
            _ => bail!(
                "the partitions of {topic} are led by brokers {leaders:?}; corelog bench \
                 sends to one broker, so use a topic led by one"
            ),
        };
        let broker = response
            .brokers
            .iter()
            .find(|broker| broker.node_id.0 == leader)
            .with_context(|| format!("Metadata names leader {leader} but not its address"))?;
        let host = broker.host.as_str();
        let port = u16::try_from(broker.port)
            .with_context(|| format!("leader {leader} advertises port {}", broker.port))?;
        (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve the leader's address {host}:{port}"))?
            .next()
            .with_context(|| format!("the leader's address {host}:{port} resolves to nothing"))
    }

    /// The versions the broker serves of `api_key`, as it answered ApiVersions at connect.
    pub fn served_range(&self, api_key: i16) -> Option<(i16, i16)> {
        self.ranges.get(&api_key).copied()
    }

    /// The offset of every partition `0..partitions` at `timestamp` (-2 earliest, -1 latest).
    pub fn offsets(
        &mut self,
        topic: &str,
        partitions: i32,
        timestamp: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let all: Vec<i32> = (0..partitions).collect();
        let offsets = self.partition_offsets(topic, &all, timestamp)?;
        Ok(offsets.into_iter().map(|(_, offset)| offset).collect())
    }

    /// ListOffsets of some partitions of `topic` at `timestamp` (-2 earliest, -1 latest, else
    /// the first offset whose timestamp is at least it; -1 when there is none).
    pub fn partition_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> anyhow::Result<Vec<(i32, i64)>> {
        self.list_offsets(topic, partitions, timestamp)?
            .into_iter()
            .map(|(partition, answer)| {
                let what = || format!("ListOffsets {topic}-{partition}");
                answer
                    .map(|offset| (partition, offset))
                    .map_err(|code| kafka_error(&what(), code, None))
            })
            .collect()
    }

    /// ListOffsets as [`Admin::partition_offsets`], answered per partition in partition order:
    /// its offset, or the Kafka error code the broker gave for it. Fails only when the request
    /// fails or the answer leaves a partition out.
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> anyhow::Result<Vec<(i32, Result<i64, i16>)>> {
        let wanted = partitions
            .iter()
            .map(|&index| {
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(index)
                    .with_timestamp(timestamp)
            })
            .collect();
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(wanted)]);
        let response = self.request(&request, versions::LIST_OFFSETS)?;
        let mut offsets: Vec<(i32, Result<i64, i16>)> = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|partition| {
                let answer = match partition.error_code {
                    0 => Ok(partition.offset),
                    code => Err(code),
                };
                (partition.partition_index, answer)
            })
            .collect();
        if offsets.len() != partitions.len() {
            return Err(anyhow!(
                "ListOffsets answered {} of {} partitions of {topic}",
                offsets.len(),
                partitions.len()
            ));
        }
        offsets.sort_unstable_by_key(|(partition, _)| *partition);
        Ok(offsets)
    }
}
