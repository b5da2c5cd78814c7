//! DescribeCluster: the cluster id, the active controller and the brokers (from v2, fenced
//! ones too when asked, marked so). A broker answers only for the broker endpoint type;
//! asking it for controllers is refused as Kafka does (MISMATCHED_ENDPOINT_TYPE). Anyone may
//! ask, as in Kafka; the authorized operations (KIP-430) are reported only to a principal
//! with DESCRIBE on the cluster, 0 to others.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::{brokers, str_bytes};
use crate::server::dispatch::RequestContext;

/// DescribeCluster's endpoint type for brokers (2 is controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(ctx: &RequestContext, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    if ctx.api_version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // Fields newer than the request's version stay at their defaults.
        response.endpoint_type = request.endpoint_type;
        response.error_code = ResponseError::MismatchedEndpointType.code();
        response.error_message = Some(str_bytes("this endpoint serves brokers only"));
        return response;
    }
    let brokers = if ctx.api_version >= 2 && request.include_fenced_brokers {
        brokers::brokers_and_fenced(ctx)
    } else {
        brokers::brokers(ctx)
    };
    let brokers = brokers
        .into_iter()
        .map(|broker| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.node.get()))
                .with_host(str_bytes(broker.host))
                .with_port(broker.port)
                .with_rack(broker.rack.map(str_bytes))
                .with_is_fenced(broker.fenced)
        })
        .collect();
    let controller = ctx.shard.controller_node().map_or(-1, |node| node.get());
    let response = response
        .with_cluster_id(str_bytes(brokers::cluster_id(ctx)))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers);
    let operations = ctx.cluster_operations_if(request.include_cluster_authorized_operations);
    response.with_cluster_authorized_operations(operations)
}
