//! InitProducerId: hands an idempotent producer a fresh producer id with epoch 0.
//!
//! As in Kafka, a request without a transactional id always gets a new id, whatever
//! producer id and epoch (v3+) it carries: KIP-360's epoch bump through this API is for
//! transactional producers, and idempotent clients bump their epoch themselves. This broker
//! has no transaction coordinator, so a transactional id is answered with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the error Kafka sends when the client may not use
//! that id: clients treat it as fatal and report it at once, where COORDINATOR_NOT_AVAILABLE
//! would have them retry until their timeout. An idempotent producer needs IDEMPOTENT_WRITE
//! on the cluster or WRITE on some topic (KIP-679), else CLUSTER_AUTHORIZATION_FAILED.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;

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
    if request.transactional_id.is_some() {
        return refused(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let idempotent_allowed = ctx.authorize_cluster(AclOperation::IdempotentWrite)
        || ctx.authorize_any(AclOperation::Write, ResourceType::Topic);
    if !idempotent_allowed {
        return refused(ResponseError::ClusterAuthorizationFailed);
    }
    match ctx.shard.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::warn!(%error, "cannot allocate a producer id");
            refused(ResponseError::CoordinatorNotAvailable)
        }
    }
}
