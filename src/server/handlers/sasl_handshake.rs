//! SaslHandshake (v0-1): the client names its mechanism; the answer lists the enabled ones.
//! v1 is followed by SaslAuthenticate requests, v0 by bare tokens (see `server::session`).
//! A mechanism that is not enabled, or a handshake in the wrong state, is answered with its
//! error and the connection is closed, as Kafka does.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::server::dispatch::RequestContext;
use crate::server::session::SaslRefusal;

/// The response, and why the connection closes after it, if it does.
pub fn handle(
    ctx: &RequestContext,
    request: SaslHandshakeRequest,
) -> (SaslHandshakeResponse, Option<String>) {
    let enabled = &ctx.shard.config.security.sasl_mechanisms;
    let response = SaslHandshakeResponse::default()
        .with_mechanisms(enabled.iter().map(|m| str_bytes(m.name())).collect());
    let session = &ctx.connection.session;
    match session.handshake(request.mechanism.as_str(), enabled, ctx.api_version) {
        Ok(()) => (response, None),
        Err(SaslRefusal::IllegalState(reason)) => (
            response.with_error_code(ResponseError::IllegalSaslState.code()),
            Some(reason),
        ),
        Err(SaslRefusal::UnsupportedMechanism(reason)) => (
            response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
            Some(reason),
        ),
    }
}
