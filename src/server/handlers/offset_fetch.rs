//! OffsetFetch 1-9: committed offsets of one group (v1-7) or of several (v8+), each asked of
//! its coordinator. With `require_stable` (v7+), partitions whose offsets are pending in an
//! open transaction answer UNSTABLE_OFFSET_COMMIT, and the client asks again. A group needs DESCRIBE (GROUP_AUTHORIZATION_FAILED); a topic asked
//! for by name needs DESCRIBE (TOPIC_AUTHORIZATION_FAILED on its partitions), and when all of
//! a group's offsets are asked for, topics the principal may not describe are left out.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name};
use crate::group::records::OffsetValue;
use crate::group::{self, GroupCall, GroupReply};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

/// First version with a top-level error code.
const TOP_LEVEL_ERROR_VERSION: i16 = 2;
/// First version that asks for several groups.
const MULTI_GROUP_VERSION: i16 = 8;

/// A partition's committed offset (if any) and its error code.
type PartitionOffset = (String, i32, Option<OffsetValue>, i16);
type Offsets = Result<Vec<PartitionOffset>, ResponseError>;

pub async fn handle(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.api_version >= MULTI_GROUP_VERSION {
        return multi_group(ctx, request).await;
    }
    let topics = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let requested = topics.clone();
    let found = fetch(
        ctx,
        request.group_id.to_string(),
        topics,
        request.require_stable,
    )
    .await;
    let version = ctx.api_version;
    let (offsets, error) = match found {
        Ok(offsets) => (offsets, None),
        // v1 has no top-level error: each requested partition carries it instead.
        Err(error) if version < TOP_LEVEL_ERROR_VERSION => {
            let partitions = requested
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p, None, 0)));
            let topics = topics_v1_to_7(partitions.collect(), version, error.code());
            return OffsetFetchResponse::default().with_topics(topics);
        }
        Err(error) => (Vec::new(), Some(error)),
    };
    let mut response =
        OffsetFetchResponse::default().with_topics(topics_v1_to_7(offsets, version, 0));
    if let Some(error) = error {
        response.error_code = error.code();
    }
    response
}

async fn fetch(
    ctx: &RequestContext,
    group: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Offsets {
    if !ctx.authorize_group(AclOperation::Describe, &group) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let all_topics = topics.is_none();
    let call = GroupCall::FetchOffsets {
        group,
        topics,
        require_stable,
    };
    let offsets = match group::route(&ctx.shard, call).await {
        GroupReply::Offsets(offsets) => offsets,
        GroupReply::Error(error) => return Err(error),
        _ => return Err(ResponseError::UnknownServerError),
    };
    let denied = super::topics_denied(
        ctx,
        AclOperation::Describe,
        offsets.iter().map(|o| o.0.as_str()),
    );
    let refused = ResponseError::TopicAuthorizationFailed.code();
    Ok(offsets
        .into_iter()
        .filter_map(
            |(topic, partition, value, code)| match denied.contains(&topic) {
                false => Some((topic, partition, value, code)),
                true if all_topics => None,
                true => Some((topic, partition, None, refused)),
            },
        )
        .collect())
}

fn by_topic<T>(
    offsets: Vec<PartitionOffset>,
    make: impl Fn(i32, Option<OffsetValue>, i16) -> T,
) -> BTreeMap<String, Vec<T>> {
    let mut topics: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (topic, partition, value, error_code) in offsets {
        topics
            .entry(topic)
            .or_default()
            .push(make(partition, value, error_code));
    }
    topics
}

/// `group_error_code`, when not 0, is every partition's error (v1 has no top-level error).
fn topics_v1_to_7(
    offsets: Vec<PartitionOffset>,
    version: i16,
    group_error_code: i16,
) -> Vec<OffsetFetchResponseTopic> {
    let topics = by_topic(offsets, |partition, value, error_code| {
        let (offset, epoch, metadata) = fields(value);
        let error_code = if group_error_code != 0 {
            group_error_code
        } else {
            error_code
        };
        let mut p = OffsetFetchResponsePartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_metadata(Some(str_bytes(metadata)))
            .with_error_code(error_code);
        if version >= 5 {
            p.committed_leader_epoch = epoch;
        }
        p
    });
    topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect()
}

/// (offset, leader epoch, metadata) of a committed offset; -1, -1, "" when there is none.
fn fields(value: Option<OffsetValue>) -> (i64, i32, String) {
    match value {
        Some(v) => (v.offset, v.leader_epoch, v.metadata),
        None => (-1, -1, String::new()),
    }
}

async fn multi_group(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let require_stable = request.require_stable;
    let calls = request.groups.into_iter().map(|g| async move {
        let topics = g.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect::<Vec<_>>()
        });
        let found = fetch(ctx, g.group_id.to_string(), topics, require_stable).await;
        group_result(g.group_id, found)
    });
    let groups = futures::future::join_all(calls).await;
    OffsetFetchResponse::default().with_groups(groups)
}

fn group_result(group_id: GroupId, found: Offsets) -> OffsetFetchResponseGroup {
    let offsets = match found {
        Ok(offsets) => offsets,
        Err(error) => {
            return OffsetFetchResponseGroup::default()
                .with_group_id(group_id)
                .with_error_code(error.code())
        }
    };
    let topics = by_topic(offsets, |partition, value, error_code| {
        let (offset, epoch, metadata) = fields(value);
        OffsetFetchResponsePartitions::default()
            .with_error_code(error_code)
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(Some(str_bytes(metadata)))
    });
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopics::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_topics(topics)
}
