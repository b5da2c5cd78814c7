//! EndTxn: a producer commits or aborts its transaction. Its coordinator writes the decision,
//! then the markers, and answers once they are written (see `crate::txn`). Needs WRITE on the
//! transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn::{self, TxnCall, TxnReply};

/// Versions below this answer PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, as Kafka does.
const PRODUCER_FENCED_VERSION: i16 = 2;

pub async fn handle(ctx: &RequestContext, request: EndTxnRequest) -> EndTxnResponse {
    // v5's producer id and epoch are for transactions V2 (KIP-890), not served: -1.
    let answer = |error: ResponseError| {
        EndTxnResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let id = &request.transactional_id;
    if !ctx.authorize(AclOperation::Write, ResourceType::TransactionalId, id) {
        return answer(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let call = TxnCall::End {
        transactional_id: id.0.to_string(),
        producer_id: request.producer_id.0,
        epoch: request.producer_epoch,
        commit: request.committed,
    };
    match txn::route(&ctx.shard, call).await {
        TxnReply::Done => EndTxnResponse::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        TxnReply::Error(error) => answer(txn::client_error(
            error,
            ctx.api_version,
            PRODUCER_FENCED_VERSION,
        )),
        other => {
            tracing::error!(?other, "unexpected reply to EndTxn");
            answer(ResponseError::UnknownServerError)
        }
    }
}
