//! WriteTxnMarkers: writes the markers that end producers' transactions in partitions, each
//! on its partition's owner (its leader, through its Raft group, on a cluster), and answers
//! per marker and partition once each is written. Kafka's transaction coordinator sends it
//! to partition leaders; it needs CLUSTER_ACTION on the cluster (CLUSTER_AUTHORIZATION_FAILED
//! for every partition otherwise), as in Kafka.

use futures::future::join_all;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;

use crate::ids::PartitionId;
use crate::partition::{PartitionOp, TopicPartition, WriteMarkerInput, WriteMarkerOutput};
use crate::protocol::control::TxnMarker;
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let allowed = ctx.authorize_cluster(AclOperation::ClusterAction);
    let writes = request.markers.iter().flat_map(|marker| {
        let txn_marker = TxnMarker {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            commit: marker.transaction_result,
        };
        marker.topics.iter().flat_map(move |topic| {
            topic.partition_indexes.iter().map(move |index| {
                let input = WriteMarkerInput {
                    tp: TopicPartition {
                        topic: topic.name.0.to_string(),
                        partition: PartitionId(*index),
                    },
                    marker: txn_marker,
                };
                async move {
                    match allowed {
                        true => ctx.shard.write_txn_marker(input).await,
                        false => {
                            WriteMarkerInput::refused(ResponseError::ClusterAuthorizationFailed)
                        }
                    }
                }
            })
        })
    });
    let mut outputs = join_all(writes).await.into_iter();
    let markers = request
        .markers
        .iter()
        .map(|marker| {
            let topics = marker
                .topics
                .iter()
                .map(|topic| {
                    let partitions = topic
                        .partition_indexes
                        .iter()
                        .map(|index| {
                            let output: WriteMarkerOutput = outputs.next().unwrap_or_default();
                            WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(*index)
                                .with_error_code(output.error_code)
                        })
                        .collect();
                    WritableTxnMarkerTopicResult::default()
                        .with_name(topic.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}
