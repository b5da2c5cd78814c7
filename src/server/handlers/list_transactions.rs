//! ListTransactions: the transactional ids every shard of this node coordinates, filtered by
//! state (unknown state names are echoed back in `unknown_state_filters`), by producer id,
//! and (v1+) by running longer than `duration_filter` ms. Only ids the principal may DESCRIBE
//! are listed, as in Kafka.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::str_bytes;
use crate::metadata::now_ms;
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn::{self, state::TxnState};

pub async fn handle(
    ctx: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let known = |name: &str| TxnState::ALL.iter().any(|state| state.name() == name);
    let unknown_state_filters: Vec<_> = request
        .state_filters
        .iter()
        .filter(|name| !known(name))
        .cloned()
        .collect();
    let now = now_ms();
    let states = txn::list_all(&ctx.shard)
        .await
        .into_iter()
        .filter(|summary| {
            let txn = &summary.txn;
            let state_ok = request.state_filters.is_empty()
                || request
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == txn.state.name());
            let producer_ok = request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(txn.producer_id));
            // Only open (or ending) transactions have been running for some time.
            let open = matches!(
                txn.state,
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
            );
            let duration_ok = request.duration_filter < 0
                || (open && now.saturating_sub(txn.start_ms) > request.duration_filter);
            state_ok && producer_ok && duration_ok
        })
        .filter(|summary| {
            ctx.authorize(
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &summary.transactional_id,
            )
        })
        .map(|summary| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(&summary.transactional_id)))
                .with_producer_id(ProducerId(summary.txn.producer_id))
                .with_transaction_state(str_bytes(summary.txn.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown_state_filters)
        .with_transaction_states(states)
}
