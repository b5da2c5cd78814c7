//! OffsetDelete 0: removes a group's committed offsets for partitions it does not consume.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use crate::group::{self, GroupCall, GroupReply};
use crate::server::dispatch::RequestContext;

pub async fn handle(ctx: &RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let count = partitions.len();
    let call = GroupCall::DeleteOffsets(request.group_id.to_string(), partitions);
    let codes = match group::route(&ctx.shard, call).await {
        GroupReply::DeleteOffsets(codes) => codes,
        GroupReply::Error(error) => {
            return OffsetDeleteResponse::default().with_error_code(error.code())
        }
        _ => vec![ResponseError::UnknownServerError.code(); count],
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or_default())
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
