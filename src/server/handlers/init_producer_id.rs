//! InitProducerId: hands a producer its producer id and epoch.
//!
//! Without a transactional id (an idempotent producer) the answer is always a fresh id at
//! epoch 0, whatever producer id and epoch (v3+) the request carries, as in Kafka: KIP-360's
//! epoch bump through this API is for transactional producers, and idempotent clients bump
//! their epoch themselves. It needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
//! (KIP-679), else CLUSTER_AUTHORIZATION_FAILED.
//!
//! With a transactional id the id's coordinator answers (`crate::txn`): the next epoch of its
//! producer id, fencing older instances. It needs WRITE on the transactional id, else
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn::{self, TxnCall, TxnReply};

/// Versions below this answer PRODUCER_FENCED as INVALID_PRODUCER_EPOCH, as Kafka does.
const PRODUCER_FENCED_VERSION: i16 = 4;

pub async fn handle(
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let granted = |producer_id: i64, epoch: i16| {
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
    };
    if let Some(transactional_id) = &request.transactional_id {
        if !ctx.authorize(
            AclOperation::Write,
            ResourceType::TransactionalId,
            transactional_id,
        ) {
            return refused(ResponseError::TransactionalIdAuthorizationFailed);
        }
        let expected =
            (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let call = TxnCall::Init {
            transactional_id: transactional_id.0.to_string(),
            timeout_ms: request.transaction_timeout_ms,
            expected,
        };
        return match txn::route(&ctx.shard, call).await {
            TxnReply::Producer { producer_id, epoch } => granted(producer_id, epoch),
            TxnReply::Error(error) => refused(txn::client_error(
                error,
                ctx.api_version,
                PRODUCER_FENCED_VERSION,
            )),
            other => {
                tracing::error!(?other, "unexpected reply to InitProducerId");
                refused(ResponseError::UnknownServerError)
            }
        };
    }
    let idempotent_allowed = ctx.authorize_cluster(AclOperation::IdempotentWrite)
        || ctx.authorize_any(AclOperation::Write, ResourceType::Topic);
    if !idempotent_allowed {
        return refused(ResponseError::ClusterAuthorizationFailed);
    }
    match ctx.shard.allocate_producer_id().await {
        Ok(id) => granted(id, 0),
        Err(error) => {
            tracing::warn!(%error, "cannot allocate a producer id");
            refused(ResponseError::CoordinatorNotAvailable)
        }
    }
}
