//! DescribeLogDirs: this node's one log directory (`--data-dir`), the bytes on disk of each
//! partition replica it holds, and (v4) the size of its file system and the bytes still
//! usable. Clients ask every broker in turn; partitions this node holds no replica of are
//! left out, as Kafka leaves them out. The offset lag Kafka reports is that of a replica
//! moving between log directories, which corelog does not do: always 0. Needs DESCRIBE on
//! the cluster: without it the answer is CLUSTER_AUTHORIZATION_FAILED (v3+) and no directory.

use std::collections::{BTreeMap, HashMap, HashSet};

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::ids::PartitionId;
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::storage;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let mut response = DescribeLogDirsResponse::default();
    if !ctx.authorize_cluster(AclOperation::Describe) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return response;
    }
    // None: every partition; otherwise the partitions named, by topic.
    let wanted: Option<HashMap<&str, HashSet<i32>>> = request.topics.as_ref().map(|topics| {
        let mut wanted: HashMap<&str, HashSet<i32>> = HashMap::new();
        for topic in topics {
            let partitions = wanted.entry(topic.topic.0.as_str()).or_default();
            partitions.extend(topic.partitions.iter().copied());
        }
        wanted
    });
    let is_wanted = |topic: &str, partition: PartitionId| {
        wanted.as_ref().is_none_or(|wanted| {
            wanted
                .get(topic)
                .is_some_and(|partitions| partitions.contains(&partition.get()))
        })
    };
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (tp, size) in ctx.shard.all_partition_sizes().await {
        if !is_wanted(&tp.topic, tp.partition) {
            continue;
        }
        let partition = DescribeLogDirsPartition::default()
            .with_partition_index(tp.partition.get())
            .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
            .with_offset_lag(0)
            .with_is_future_key(false);
        by_topic.entry(tp.topic).or_default().push(partition);
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|partition| partition.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    let data_dir = &ctx.shard.config.data_dir;
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(data_dir.display().to_string()))
        .with_topics(topics);
    match storage::disk_space(data_dir) {
        Ok((total, usable)) => {
            result.total_bytes = i64::try_from(total).unwrap_or(i64::MAX);
            result.usable_bytes = i64::try_from(usable).unwrap_or(i64::MAX);
        }
        // Kafka's "unknown" for both.
        Err(_) => {
            result.total_bytes = -1;
            result.usable_bytes = -1;
        }
    }
    response.results = vec![result];
    response
}
