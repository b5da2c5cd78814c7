//! The one place that matches on the API key: decodes a frame, runs its handler, and encodes
//! the response. Every handler has the same shape: `handle(&RequestContext, XRequest)` returns
//! the response body (Fetch returns scatter-gather chunks, Produce with acks=0 nothing).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{select, Either};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use super::quotas::{QuotaCharge, Timed};
use super::session::ConnectionContext;
use super::{handlers, Listener, Response};
use crate::protocol::{self, DecodedRequest, RequestBody};
use crate::shard::Shard;

/// What a handler knows about its request besides the body.
pub struct RequestContext {
    pub shard: Rc<Shard>,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The connection: its listener, client address and session.
    pub connection: Rc<ConnectionContext>,
    /// The client quotas the request counts against, if any.
    pub quota: Option<QuotaCharge>,
}

impl RequestContext {
    /// The listener the request came in on (Metadata answers with its advertised address).
    pub fn listener(&self) -> &Listener {
        &self.connection.listener
    }
}

/// Decodes one frame; an error closes the connection (as Kafka does for bad frames).
pub fn decode(frame: Bytes) -> Result<DecodedRequest, String> {
    protocol::decode_request(frame).map_err(|error| error.to_string())
}

/// Runs the handler for `request`, encodes its response, and counts it.
pub async fn handle(
    shard: &Rc<Shard>,
    request: DecodedRequest,
    connection: Rc<ConnectionContext>,
) -> Response {
    let started = Instant::now();
    let api_key = request.header.request_api_key;
    let ctx = context(shard, &request.header, connection);
    let busy = ctx
        .quota
        .as_ref()
        .filter(|q| q.counts_time())
        .map(QuotaCharge::busy);
    let response = match busy {
        Some(busy) => Timed::new(run(ctx, request.body), busy).await,
        None => run(ctx, request.body).await,
    };
    shard.metrics.request_done(api_key, started.elapsed());
    response
}

/// A bare SASL token, which follows SaslHandshake v0 instead of SaslAuthenticate requests.
pub async fn raw_sasl_token(
    shard: &Rc<Shard>,
    connection: &Rc<ConnectionContext>,
    token: Bytes,
) -> Response {
    if let Err(response) = caught_up(shard).await {
        return response;
    }
    handlers::sasl_authenticate::raw_token(shard, connection, token).await
}

/// Waits until this node may answer clients (`Shard::caught_up`): a cluster node restarted
/// answers nothing but ApiVersions before it has caught up with the metadata log, where its
/// topics, leaders, ACLs and credentials are still those it had when it stopped. Err closes
/// the connection when the node stops first.
async fn caught_up(shard: &Shard) -> Result<(), Response> {
    if shard.caught_up.is_raised() {
        return Ok(());
    }
    let waited = select(
        Box::pin(shard.caught_up.wait()),
        Box::pin(shard.shutdown.wait()),
    )
    .await;
    match waited {
        Either::Left(_) => Ok(()),
        Either::Right(_) => Err(Response::Close("the node is stopping".into())),
    }
}

async fn run(ctx: RequestContext, body: RequestBody) -> Response {
    // Before authentication (or once a session expired) only the SASL APIs are served.
    if let Err(reason) = ctx.connection.session.admit(ctx.api_key) {
        return Response::Close(reason);
    }
    if ctx.api_key != ApiKey::ApiVersions {
        if let Err(response) = caught_up(&ctx.shard).await {
            return response;
        }
    }
    let body = match body {
        RequestBody::Decoded(body) => body,
        RequestBody::ApiVersionsUnsupported => {
            return encoded(protocol::encode_api_versions_unsupported(
                ctx.correlation_id,
            ));
        }
    };
    let mut produced_bytes = 0;
    let mut response = match body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(handlers::api_versions::handle(&ctx, r))
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(handlers::metadata::handle(&ctx, r).await)
        }
        RequestKind::Produce(r) => {
            if ctx.quota.as_ref().is_some_and(QuotaCharge::counts_produce) {
                produced_bytes = handlers::produce::record_bytes(&r);
            }
            match handlers::produce::handle(&ctx, r).await {
                Some(response) => ResponseKind::Produce(response),
                None => {
                    throttle(&ctx, produced_bytes, 0);
                    return Response::Nothing;
                }
            }
        }
        RequestKind::Fetch(r) => {
            let mut data = handlers::fetch::handle(&ctx, r).await;
            let fetched_bytes = handlers::fetch::record_bytes(&data);
            data.throttle_time_ms = throttle(&ctx, 0, fetched_bytes);
            let chunks =
                protocol::encode_fetch_response(ctx.correlation_id, ctx.api_version, &data);
            return Response::Chunks(chunks);
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(handlers::list_offsets::handle(&ctx, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(handlers::create_topics::handle(&ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(handlers::delete_topics::handle(&ctx, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(handlers::find_coordinator::handle(&ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(&ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(handlers::describe_configs::handle(&ctx, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(handlers::alter_configs::handle(&ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            handlers::incremental_alter_configs::handle(&ctx, r).await,
        ),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(handlers::create_partitions::handle(&ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(handlers::delete_records::handle(&ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(handlers::add_partitions_to_txn::handle(&ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(handlers::add_offsets_to_txn::handle(&ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(handlers::end_txn::handle(&ctx, r).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(handlers::txn_offset_commit::handle(&ctx, r).await)
        }
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
            handlers::describe_transactions::handle(&ctx, r).await,
        ),
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(handlers::list_transactions::handle(&ctx, r).await)
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(handlers::write_txn_markers::handle(&ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(handlers::describe_cluster::handle(&ctx, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(handlers::describe_log_dirs::handle(&ctx, r).await)
        }
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            handlers::describe_topic_partitions::handle(&ctx, r),
        ),
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(handlers::describe_quorum::handle(&ctx, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(handlers::elect_leaders::handle(&ctx, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            handlers::alter_partition_reassignments::handle(&ctx, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            handlers::list_partition_reassignments::handle(&ctx, r),
        ),
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            handlers::offset_for_leader_epoch::handle(&ctx, r).await,
        ),
        RequestKind::SaslHandshake(r) => {
            let (response, close) = handlers::sasl_handshake::handle(&ctx, r);
            return then_close(&ctx, ResponseKind::SaslHandshake(response), close);
        }
        RequestKind::SaslAuthenticate(r) => {
            let (response, close) = handlers::sasl_authenticate::handle(&ctx, r).await;
            return then_close(&ctx, ResponseKind::SaslAuthenticate(response), close);
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            handlers::describe_user_scram_credentials::handle(&ctx, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            handlers::alter_user_scram_credentials::handle(&ctx, r).await,
        ),
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(handlers::create_acls::handle(&ctx, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(handlers::describe_acls::handle(&ctx, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(handlers::delete_acls::handle(&ctx, r).await)
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(handlers::describe_client_quotas::handle(&ctx, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(handlers::alter_client_quotas::handle(&ctx, r).await)
        }
        other => match group_api(&ctx, other).await {
            Ok(response) => response,
            Err(response) => return response,
        },
    };
    let throttle_ms = throttle(&ctx, produced_bytes, 0);
    if throttle_ms > 0 {
        protocol::set_throttle_time(&mut response, ctx.api_version, throttle_ms);
    }
    encoded(protocol::encode_response(
        ctx.correlation_id,
        ctx.api_key,
        ctx.api_version,
        &response,
    ))
}

/// Takes the request's use from its client quotas; the milliseconds its connection now waits
/// before the next request is read (0 without quotas).
fn throttle(ctx: &RequestContext, produced_bytes: usize, fetched_bytes: usize) -> i32 {
    let Some(quota) = &ctx.quota else {
        return 0;
    };
    let wait_ms = quota.settle(&ctx.shard, produced_bytes, fetched_bytes);
    if wait_ms > 0 {
        ctx.connection.throttle_for(Duration::from_millis(wait_ms));
    }
    i32::try_from(wait_ms).unwrap_or(i32::MAX)
}

/// The consumer-group APIs (`crate::group`); `Err` for a request to end the connection.
async fn group_api(ctx: &RequestContext, body: RequestKind) -> Result<ResponseKind, Response> {
    use handlers::*;
    let response = match body {
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, r).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r).await),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, r).await)
        }
        other => {
            // The decoder only admits APIs in the version table, and each has an arm above.
            return Err(Response::Close(format!(
                "no handler for {:?}",
                api_name(&other)
            )));
        }
    };
    Ok(response)
}

fn context(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    connection: Rc<ConnectionContext>,
) -> RequestContext {
    let api_key = ApiKey::try_from(header.request_api_key).unwrap_or(ApiKey::ApiVersions);
    let client_id = header.client_id.as_ref().map(|c| c.to_string());
    let quota = if shard.table().quotas().is_empty() {
        None
    } else {
        let principal = connection.session.principal();
        let client_id = client_id.as_deref().unwrap_or("");
        QuotaCharge::resolve(shard, api_key, principal.name(), client_id)
    };
    RequestContext {
        shard: shard.clone(),
        api_key,
        api_version: header.request_api_version,
        correlation_id: header.correlation_id,
        client_id,
        connection,
        quota,
    }
}

/// The encoded response, and the connection closed after it if `close` says why.
fn then_close(ctx: &RequestContext, response: ResponseKind, close: Option<String>) -> Response {
    let frame =
        protocol::encode_response(ctx.correlation_id, ctx.api_key, ctx.api_version, &response);
    match (close, encoded(frame)) {
        (Some(reason), Response::Chunks(chunks)) => Response::ChunksThenClose(chunks, reason),
        (_, response) => response,
    }
}

fn encoded(result: Result<Bytes, protocol::EncodeError>) -> Response {
    match result {
        Ok(frame) => Response::Chunks(vec![frame]),
        Err(error) => {
            tracing::error!(%error, "response encoding failed");
            Response::Close(error.to_string())
        }
    }
}

fn api_name(body: &RequestKind) -> String {
    let text = format!("{body:?}");
    text.split('(').next().unwrap_or_default().to_string()
}
