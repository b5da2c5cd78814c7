//! DescribeCluster: the cluster id, the controller and the brokers (just this node). A broker
//! answers only for the broker endpoint type; asking it for controllers is refused as Kafka
//! does (MISMATCHED_ENDPOINT_TYPE). Anyone may ask, as in Kafka; the authorized operations
//! (KIP-430) are reported only to a principal with DESCRIBE on the cluster, 0 to others.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::metadata::CLUSTER_ID;
use super::str_bytes;
use crate::server::dispatch::RequestContext;

/// DescribeCluster's endpoint type for brokers (2 is controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(ctx: &RequestContext, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let config = &ctx.shard.config;
    let node_id = BrokerId(config.node_id.get());
    let mut response = DescribeClusterResponse::default();
    if ctx.api_version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // Fields newer than the request's version stay at their defaults.
        response.endpoint_type = request.endpoint_type;
        response.error_code = ResponseError::MismatchedEndpointType.code();
        response.error_message = Some(str_bytes("this endpoint serves brokers only"));
        return response;
    }
    let broker = DescribeClusterBroker::default()
        .with_broker_id(node_id)
        .with_host(str_bytes(ctx.listener().config.advertised_host.clone()))
        .with_port(ctx.listener().config.advertised_port);
    let response = response
        .with_cluster_id(str_bytes(CLUSTER_ID))
        .with_controller_id(node_id)
        .with_brokers(vec![broker]);
    let operations = ctx.cluster_operations_if(request.include_cluster_authorized_operations);
    response.with_cluster_authorized_operations(operations)
}
