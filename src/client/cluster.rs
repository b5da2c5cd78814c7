//! The cluster over the Kafka protocol: DescribeCluster (the brokers clients are told about
//! and the active controller) and DescribeQuorum (the metadata quorum as its leader knows
//! it), for `corelog cluster status`.

use anyhow::anyhow;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use serde::Serialize;

use super::admin::{kafka_error, Admin};

/// Served by Kafka 2.8 to 4.x (v1 adds the endpoint type).
const DESCRIBE_CLUSTER_VERSION: i16 = 0;
/// Lists fenced brokers too when asked; served by Kafka 4.0 on and corelog.
const DESCRIBE_CLUSTER_FENCED_VERSION: i16 = 2;
/// v1 adds the voters' last fetch and caught-up times; served by Kafka 3.3 to 4.x.
const DESCRIBE_QUORUM_VERSION: i16 = 1;

/// What DescribeCluster tells.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    /// -1 when none is known.
    pub controller: i32,
    /// By node id.
    pub brokers: Vec<BrokerInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokerInfo {
    pub node: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered, but not heard from within its session (known from v2 only).
    pub fenced: bool,
}

/// The metadata quorum as DescribeQuorum tells it.
#[derive(Debug, Clone, Serialize)]
pub struct QuorumInfo {
    pub leader: i32,
    pub epoch: i32,
    pub high_watermark: i64,
    /// By node id.
    pub voters: Vec<VoterInfo>,
    /// The nodes that follow the metadata log without voting (broker-only nodes), by node id.
    pub observers: Vec<VoterInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VoterInfo {
    pub node: i32,
    /// -1 when the leader does not know it.
    pub log_end_offset: i64,
    /// Milliseconds since the epoch; -1 when the leader has not heard from it.
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

impl Admin {
    /// The brokers, fenced ones too where the broker serves DescribeCluster v2.
    pub fn describe_cluster(&mut self) -> anyhow::Result<ClusterInfo> {
        let fenced_too = self
            .served_range(DescribeClusterRequest::KEY)
            .is_some_and(|(_, max)| max >= DESCRIBE_CLUSTER_FENCED_VERSION);
        let (request, version) = if fenced_too {
            let request = DescribeClusterRequest::default()
                .with_endpoint_type(1)
                .with_include_fenced_brokers(true);
            (request, DESCRIBE_CLUSTER_FENCED_VERSION)
        } else {
            (DescribeClusterRequest::default(), DESCRIBE_CLUSTER_VERSION)
        };
        let response = self.request(&request, version)?;
        if response.error_code != 0 {
            let message = response.error_message.as_deref();
            return Err(kafka_error(
                "describe cluster",
                response.error_code,
                message,
            ));
        }
        let mut brokers: Vec<BrokerInfo> = response
            .brokers
            .iter()
            .map(|broker| BrokerInfo {
                node: broker.broker_id.0,
                host: broker.host.to_string(),
                port: broker.port,
                rack: broker.rack.as_ref().map(|rack| rack.to_string()),
                fenced: broker.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|broker| broker.node);
        Ok(ClusterInfo {
            cluster_id: response.cluster_id.to_string(),
            controller: response.controller_id.0,
            brokers,
        })
    }

    pub fn describe_quorum(&mut self) -> anyhow::Result<QuorumInfo> {
        let partition = PartitionData::default().with_partition_index(0);
        let topic = TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![partition]);
        let request = DescribeQuorumRequest::default().with_topics(vec![topic]);
        let response = self.request(&request, DESCRIBE_QUORUM_VERSION)?;
        if response.error_code != 0 {
            return Err(kafka_error("describe quorum", response.error_code, None));
        }
        let partition = response
            .topics
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .next()
            .ok_or_else(|| anyhow!("DescribeQuorum answered no partition"))?;
        if partition.error_code != 0 {
            return Err(kafka_error("describe quorum", partition.error_code, None));
        }
        let replicas = |states: &[ReplicaState]| {
            let mut replicas: Vec<VoterInfo> = states
                .iter()
                .map(|state| VoterInfo {
                    node: state.replica_id.0,
                    log_end_offset: state.log_end_offset,
                    last_fetch_timestamp: state.last_fetch_timestamp,
                    last_caught_up_timestamp: state.last_caught_up_timestamp,
                })
                .collect();
            replicas.sort_by_key(|replica| replica.node);
            replicas
        };
        Ok(QuorumInfo {
            leader: partition.leader_id.0,
            epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: replicas(&partition.current_voters),
            observers: replicas(&partition.observers),
        })
    }
}
