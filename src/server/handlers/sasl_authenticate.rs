//! SaslAuthenticate (v0-2), and the bare tokens that follow SaslHandshake v0: one step of
//! the connection's SASL exchange.
//!
//! A failure is answered with SASL_AUTHENTICATION_FAILED and its reason (bare tokens: no
//! answer) after `AUTHENTICATION_FAILURE_DELAY_MS`, and the connection closes. Success sets
//! the connection's principal; from v1 the answer carries the session's lifetime
//! (`connections.max.reauth.ms`, KIP-368). PLAIN's password check, a key derivation, runs on
//! a blocking thread within its share of the core (`server::password_checks`). Tokens are
//! never logged.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::limits;
use crate::metrics;
use crate::runtime;
use crate::security::sasl::{SaslError, SaslProgress};
use crate::server::dispatch::RequestContext;
use crate::server::session::ConnectionContext;
use crate::server::{self, Response};
use crate::shard::Shard;

/// The response, and why the connection closes after it, if it does.
pub async fn handle(
    ctx: &RequestContext,
    request: SaslAuthenticateRequest,
) -> (SaslAuthenticateResponse, Option<String>) {
    let response = SaslAuthenticateResponse::default();
    match step(&ctx.shard, &ctx.connection, &request.auth_bytes).await {
        Ok(Step::Challenge(token)) => (response.with_auth_bytes(token.into()), None),
        Ok(Step::Done { token, lifetime }) => {
            let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
            let response = response
                .with_auth_bytes(token.into())
                .with_session_lifetime_ms(if ctx.api_version >= 1 { lifetime_ms } else { 0 });
            (response, None)
        }
        Err(failure) => {
            let response = response
                .with_error_code(failure.error.code())
                .with_error_message(Some(str_bytes(failure.message.clone())));
            (response, Some(failure.message))
        }
    }
}

/// A bare token after SaslHandshake v0, answered with a bare token; a failure closes the
/// connection without an answer, as Kafka does.
pub async fn raw_token(
    shard: &Rc<Shard>,
    connection: &Rc<ConnectionContext>,
    token: Bytes,
) -> Response {
    match step(shard, connection, &token).await {
        Ok(Step::Challenge(token) | Step::Done { token, .. }) => {
            let mut frame = BytesMut::with_capacity(4 + token.len());
            frame.put_u32(token.len() as u32);
            frame.extend_from_slice(&token);
            Response::Chunks(vec![frame.freeze()])
        }
        Err(failure) => Response::Close(failure.message),
    }
}

enum Step {
    Challenge(Vec<u8>),
    Done { token: Vec<u8>, lifetime: Duration },
}

struct Failure {
    error: ResponseError,
    message: String,
}

/// Feeds `token` to the connection's exchange.
async fn step(
    shard: &Rc<Shard>,
    connection: &ConnectionContext,
    token: &[u8],
) -> Result<Step, Failure> {
    let session = &connection.session;
    let users = shard.table().users();
    let progress = match session.with_exchange(|exchange| exchange.step(token, &users)) {
        Some(progress) => progress,
        None => {
            return Err(Failure {
                error: ResponseError::IllegalSaslState,
                message: "SaslAuthenticate without a SaslHandshake before it".into(),
            })
        }
    };
    let progress = match progress {
        Ok(SaslProgress::CheckPassword(check)) => {
            connection
                .net
                .password_checks
                .run(check, &shard.metrics)
                .await
        }
        other => other,
    };
    // The connection's close line reports the failure (listener, peer, reason); the token
    // itself is never logged.
    let failed = |error: SaslError| async move {
        server::authentication_failed(shard, &connection.net, connection.client_ip);
        session.abandon();
        runtime::sleep(Duration::from_millis(
            limits::AUTHENTICATION_FAILURE_DELAY_MS,
        ))
        .await;
        Err(Failure {
            error: ResponseError::SaslAuthenticationFailed,
            message: error.0,
        })
    };
    match progress {
        Ok(SaslProgress::Challenge(challenge)) => Ok(Step::Challenge(challenge)),
        Ok(SaslProgress::Done { response, user }) => {
            let reauth = Duration::from_millis(shard.config.security.connections_max_reauth_ms);
            match session.complete(user, reauth) {
                Ok(lifetime) => {
                    metrics::add(&shard.metrics.authentications, 1);
                    Ok(Step::Done {
                        token: response,
                        lifetime,
                    })
                }
                Err(reason) => failed(SaslError(reason)).await,
            }
        }
        Ok(SaslProgress::CheckPassword(_)) => {
            failed(SaslError("a password check asked for another".into())).await
        }
        Err(error) => failed(error).await,
    }
}
