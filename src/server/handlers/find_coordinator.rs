//! FindCoordinator: a group's coordinator is the node holding its `__consumer_offsets`
//! partition, a transactional id's the node holding its `__transaction_state` partition (this
//! one on a single node); inside it, the calls reach the coordinator shard through
//! `crate::group::route` and `crate::txn::route`. `__transaction_state` is created by the
//! first transactional lookup, which, like Kafka, answers COORDINATOR_NOT_AVAILABLE until its
//! partitions have leaders. Kafka clients also use this API's presence as a feature probe
//! (librdkafka only compresses with LZ4 for brokers that serve it). A group key needs
//! DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED), a transactional id DESCRIBE on it
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{brokers, str_bytes};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::security::acl::{AclOperation, ResourceType};
use crate::server::dispatch::RequestContext;
use crate::txn::TRANSACTION_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// First version that carries a batch of keys instead of one.
const BATCHED_VERSION: i16 = 4;

pub async fn handle(
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if request.key_type == KEY_TYPE_TRANSACTION
        && ctx.shard.table().topic(TRANSACTION_TOPIC).is_none()
    {
        if let Err(error) = ctx.shard.ensure_transaction_topic().await {
            tracing::warn!(%error, "cannot create {TRANSACTION_TOPIC}");
        }
    }
    if ctx.api_version >= BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| coordinator(ctx, key.clone(), request.key_type))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let found = coordinator(ctx, request.key.clone(), request.key_type);
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(found.error_code)
        .with_node_id(found.node_id)
        .with_host(found.host)
        .with_port(found.port);
    if ctx.api_version >= 1 {
        response.error_message = found.error_message;
    }
    response
}

fn coordinator(ctx: &RequestContext, key: StrBytes, key_type: i8) -> Coordinator {
    let error = match key_type {
        KEY_TYPE_GROUP if !ctx.authorize_group(AclOperation::Describe, &key) => Some((
            ResponseError::GroupAuthorizationFailed,
            "not authorized to describe this group",
        )),
        KEY_TYPE_GROUP => None,
        KEY_TYPE_TRANSACTION
            if !ctx.authorize(AclOperation::Describe, ResourceType::TransactionalId, &key) =>
        {
            Some((
                ResponseError::TransactionalIdAuthorizationFailed,
                "not authorized to describe this transactional id",
            ))
        }
        KEY_TYPE_TRANSACTION => None,
        _ => Some((
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        )),
    };
    let found = match (error, key_type) {
        (None, KEY_TYPE_GROUP) => partition_leader(ctx, OFFSETS_TOPIC, &key),
        (None, _) => partition_leader(ctx, TRANSACTION_TOPIC, &key),
        (Some(refused), _) => Err(refused),
    };
    let coordinator = Coordinator::default().with_key(key);
    match found {
        Ok(broker) => coordinator
            .with_node_id(BrokerId(broker.node.get()))
            .with_host(str_bytes(broker.host))
            .with_port(broker.port),
        Err((error, message)) => coordinator
            .with_node_id(BrokerId(-1))
            .with_host(str_bytes(""))
            .with_port(-1)
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message))),
    }
}

/// The broker leading the partition of `key` in the coordinator topic `topic`.
fn partition_leader(
    ctx: &RequestContext,
    topic: &str,
    key: &str,
) -> Result<brokers::Broker, (ResponseError, &'static str)> {
    let unavailable = (
        ResponseError::CoordinatorNotAvailable,
        "the coordinator is not available yet",
    );
    let topic = ctx.shard.table().topic(topic).ok_or(unavailable)?;
    let partition = partition_for(key, topic.partition_count());
    let (node, _) = topic.leader(partition).ok_or(unavailable)?;
    // A fenced node is left out of the brokers: its groups wait for a new leader.
    brokers::broker(ctx, node).ok_or(unavailable)
}
