//! AddPartitionsToTxn: partitions join a producer's transaction before it writes to them, so
//! that the coordinator knows where to send the markers. v0-3 carry one transaction (from a
//! producer); v4+ carry a batch of them (from brokers) and may only verify that partitions
//! are in their transactions (KIP-890).
//!
//! As in Kafka, the transactional id needs WRITE (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for
//! the whole transaction), each topic WRITE (TOPIC_AUTHORIZATION_FAILED) and must exist
//! (UNKNOWN_TOPIC_OR_PARTITION); if any partition fails those checks, nothing is added and
//! the others answer OPERATION_NOT_ATTEMPTED. A coordinator error applies to every partition.

use futures::future::join_all;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TransactionalId,
};
use kafka_protocol::ResponseError;

use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn::{self, TxnCall, TxnReply};

/// The first version that carries a batch of transactions.
const BATCHED_VERSION: i16 = 4;
/// Versions below this answer PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, as Kafka does.
const PRODUCER_FENCED_VERSION: i16 = 2;

pub async fn handle(
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.api_version >= BATCHED_VERSION {
        if !ctx.authorize_cluster(AclOperation::ClusterAction) {
            return AddPartitionsToTxnResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        }
        let results = request.transactions.into_iter().map(|txn| async move {
            let topic_results = add(
                ctx,
                &txn.transactional_id,
                txn.producer_id,
                txn.producer_epoch,
                &txn.topics,
                txn.verify_only,
            )
            .await;
            AddPartitionsToTxnResult::default()
                .with_transactional_id(txn.transactional_id)
                .with_topic_results(topic_results)
        });
        let results = join_all(results).await;
        return AddPartitionsToTxnResponse::default().with_results_by_transaction(results);
    }
    let results = add(
        ctx,
        &request.v3_and_below_transactional_id,
        request.v3_and_below_producer_id,
        request.v3_and_below_producer_epoch,
        &request.v3_and_below_topics,
        false,
    )
    .await;
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// One transaction's partitions: checked here, then added (or verified) by its coordinator.
async fn add(
    ctx: &RequestContext,
    transactional_id: &TransactionalId,
    producer_id: ProducerId,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let id_allowed = ctx.authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        transactional_id,
    );
    // Per-partition refusals, in request order.
    let refusals: Vec<Option<ResponseError>> = {
        let table = ctx.shard.table();
        topics
            .iter()
            .flat_map(|topic| {
                let refusal = if !id_allowed {
                    Some(ResponseError::TransactionalIdAuthorizationFailed)
                } else if !ctx.authorize_topic(AclOperation::Write, &topic.name) {
                    Some(ResponseError::TopicAuthorizationFailed)
                } else {
                    None
                };
                let count = table.topic(&topic.name).map(|t| t.partition_count());
                topic.partitions.iter().map(move |partition| {
                    refusal.or_else(|| match count {
                        Some(count) if (0..count).contains(partition) => None,
                        _ => Some(ResponseError::UnknownTopicOrPartition),
                    })
                })
            })
            .collect()
    };
    let codes: Vec<i16> = if refusals.iter().any(Option::is_some) {
        let not_attempted = ResponseError::OperationNotAttempted;
        refusals
            .iter()
            .map(|refusal| refusal.unwrap_or(not_attempted).code())
            .collect()
    } else {
        let partitions: Vec<(String, i32)> = topics
            .iter()
            .flat_map(|topic| {
                let name = topic.name.0.to_string();
                topic.partitions.iter().map(move |p| (name.clone(), *p))
            })
            .collect();
        let count = partitions.len();
        let call = TxnCall::AddPartitions {
            transactional_id: transactional_id.0.to_string(),
            producer_id: producer_id.0,
            epoch,
            partitions,
            verify_only,
        };
        match txn::route(&ctx.shard, call).await {
            TxnReply::Done => vec![0; count],
            TxnReply::Verified(codes) => codes,
            TxnReply::Error(error) => {
                let error = txn::client_error(error, ctx.api_version, PRODUCER_FENCED_VERSION);
                vec![error.code(); count]
            }
            other => {
                tracing::error!(?other, "unexpected reply to AddPartitionsToTxn");
                vec![ResponseError::UnknownServerError.code(); count]
            }
        }
    };
    let mut codes = codes.into_iter();
    topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*partition)
                        .with_partition_error_code(codes.next().unwrap_or_default())
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect()
}
