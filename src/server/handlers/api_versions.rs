//! ApiVersions: the APIs and version ranges this broker serves (from `protocol::versions`).
//! An unsupported ApiVersions version never reaches here: dispatch answers it with error 35.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::protocol::versions::api_versions_entries;
use crate::server::dispatch::RequestContext;

pub fn handle(_ctx: &RequestContext, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_versions_entries())
}
