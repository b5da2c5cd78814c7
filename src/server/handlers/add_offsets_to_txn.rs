//! AddOffsetsToTxn: a consumer group's offsets join a producer's transaction (the producer
//! then commits them with TxnOffsetCommit): the group's `__consumer_offsets` partition is
//! added to the transaction, so that the markers reach it. Needs WRITE on the transactional
//! id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and READ on the group
//! (GROUP_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn::{self, TxnCall, TxnReply};

/// Versions below this answer PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, as Kafka does.
const PRODUCER_FENCED_VERSION: i16 = 2;

pub async fn handle(
    ctx: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let answer =
        |error: ResponseError| AddOffsetsToTxnResponse::default().with_error_code(error.code());
    let id = &request.transactional_id;
    if !ctx.authorize(AclOperation::Write, ResourceType::TransactionalId, id) {
        return answer(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if !ctx.authorize_group(AclOperation::Read, &request.group_id) {
        return answer(ResponseError::GroupAuthorizationFailed);
    }
    let count = ctx
        .shard
        .table()
        .topic(OFFSETS_TOPIC)
        .map(|topic| topic.partition_count());
    let Some(count) = count else {
        return answer(ResponseError::CoordinatorNotAvailable);
    };
    let partition = partition_for(&request.group_id, count);
    let call = TxnCall::AddPartitions {
        transactional_id: id.0.to_string(),
        producer_id: request.producer_id.0,
        epoch: request.producer_epoch,
        partitions: vec![(OFFSETS_TOPIC.to_string(), partition.get())],
        verify_only: false,
    };
    match txn::route(&ctx.shard, call).await {
        TxnReply::Done => AddOffsetsToTxnResponse::default(),
        TxnReply::Error(error) => answer(txn::client_error(
            error,
            ctx.api_version,
            PRODUCER_FENCED_VERSION,
        )),
        other => {
            tracing::error!(?other, "unexpected reply to AddOffsetsToTxn");
            answer(ResponseError::UnknownServerError)
        }
    }
}
