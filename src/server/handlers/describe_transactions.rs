//! DescribeTransactions: the state of each named transactional id, from its coordinator
//! (TRANSACTIONAL_ID_NOT_FOUND for an unknown one). Needs DESCRIBE on each id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), as in Kafka.

use futures::future::join_all;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn::{self, TxnCall, TxnReply};

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = request.transactional_ids.into_iter().map(|id| async move {
        let failed = |error: ResponseError| {
            TransactionState::default()
                .with_transactional_id(id.clone())
                .with_error_code(error.code())
                .with_transaction_state(str_bytes(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1)
        };
        if !ctx.authorize(AclOperation::Describe, ResourceType::TransactionalId, &id) {
            return failed(ResponseError::TransactionalIdAuthorizationFailed);
        }
        match txn::route(&ctx.shard, TxnCall::Describe(id.0.to_string())).await {
            TxnReply::Describe(summary) => {
                let txn = &summary.txn;
                let mut topics: Vec<TopicData> = Vec::new();
                for (topic, partition) in &txn.partitions {
                    match topics.last_mut() {
                        Some(last) if last.topic.0.as_str() == topic => {
                            last.partitions.push(*partition)
                        }
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(topic)))
                                .with_partitions(vec![*partition]),
                        ),
                    }
                }
                TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_transaction_state(str_bytes(txn.state.name()))
                    .with_transaction_timeout_ms(txn.timeout_ms)
                    .with_transaction_start_time_ms(txn.start_ms)
                    .with_producer_id(ProducerId(txn.producer_id))
                    .with_producer_epoch(txn.producer_epoch)
                    .with_topics(topics)
            }
            TxnReply::Error(error) => failed(error),
            other => {
                tracing::error!(?other, "unexpected reply to DescribeTransactions");
                failed(ResponseError::UnknownServerError)
            }
        }
    });
    DescribeTransactionsResponse::default().with_transaction_states(join_all(states).await)
}
