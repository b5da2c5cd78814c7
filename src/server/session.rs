//! A connection's identity: the listener it came in on, the client's address, and its
//! authentication (SASL state, the principal, when the session expires).
//!
//! On a SASL listener a connection starts unauthenticated: only ApiVersions, SaslHandshake
//! and SaslAuthenticate are admitted, one at a time (the reader waits for each before it reads
//! on, as Kafka mutes the channel), and anything else closes the connection. SaslHandshake v0
//! switches the connection to raw tokens: the frames that follow are bare SASL tokens, not
//! requests, until the exchange ends. Once a session with a lifetime
//! (`connections.max.reauth.ms`, KIP-368) expires, the connection must re-authenticate
//! (SaslHandshake v1 and SaslAuthenticate again, as the same principal) before any other
//! request; one that does not is closed.
//!
//! Per-shard: lives with its connection.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use super::{Listener, ShardNet};
use crate::security::sasl::{Authenticator, SaslMechanism};
use crate::security::Principal;

/// What every request of one connection shares.
pub struct ConnectionContext {
    pub listener: Rc<Listener>,
    /// What the shard's connections share (admission, budgets, password checks).
    pub net: Rc<ShardNet>,
    pub client_ip: IpAddr,
    /// The client's address as Kafka shows it in group descriptions ("/127.0.0.1").
    pub client_host: Rc<str>,
    pub session: Session,
    /// A client quota's wait: no further request is read before this (see `quotas`).
    throttled_until: Cell<Option<Instant>>,
}

impl ConnectionContext {
    pub fn new(
        listener: Rc<Listener>,
        net: Rc<ShardNet>,
        client_ip: IpAddr,
        session: Session,
    ) -> Self {
        ConnectionContext {
            listener,
            net,
            client_ip,
            client_host: format!("/{client_ip}").into(),
            session,
            throttled_until: Cell::new(None),
        }
    }

    /// Holds back the connection's next request for `wait` (extending an earlier wait).
    pub fn throttle_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let later = self.throttled_until.get().map_or(until, |t| t.max(until));
        self.throttled_until.set(Some(later));
    }

    /// How long the next request must still wait, and the wait forgotten.
    pub fn take_throttle(&self) -> Option<Duration> {
        let until = self.throttled_until.take()?;
        Some(until.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero())
    }
}

/// The authentication state of one connection.
pub struct Session {
    sasl: bool,
    principal: RefCell<Principal>,
    authenticated: Cell<bool>,
    /// Set while a SaslHandshake has chosen a mechanism and its exchange is not over.
    exchange: RefCell<Option<Exchange>>,
    /// When the session must be renewed (KIP-368), if it has a lifetime.
    expires_at: Cell<Option<Instant>>,
}

struct Exchange {
    authenticator: Authenticator,
    mechanism: SaslMechanism,
    /// Begun by SaslHandshake v0: tokens come as bare frames.
    raw_tokens: bool,
}

/// Why a SASL request is refused, and whether the connection ends with it.
#[derive(Debug)]
pub enum SaslRefusal {
    /// The request comes in the wrong state (ILLEGAL_SASL_STATE).
    IllegalState(String),
    /// The mechanism is not enabled (UNSUPPORTED_SASL_MECHANISM).
    UnsupportedMechanism(String),
}

impl Session {
    /// A new connection's session: anonymous (or the client certificate's subject) and
    /// authenticated unless the listener asks for SASL.
    pub fn new(sasl: bool, certificate_principal: Option<Principal>) -> Session {
        Session {
            sasl,
            principal: RefCell::new(certificate_principal.unwrap_or_else(Principal::anonymous)),
            authenticated: Cell::new(!sasl),
            exchange: RefCell::new(None),
            expires_at: Cell::new(None),
        }
    }

    pub fn principal(&self) -> Principal {
        self.principal.borrow().clone()
    }

    /// Whether requests other than the SASL ones may run now.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated.get() && !self.is_expired()
    }

    /// Whether the connection has authenticated once (its session may have expired since).
    pub fn ever_authenticated(&self) -> bool {
        self.authenticated.get()
    }

    fn is_expired(&self) -> bool {
        self.expires_at.get().is_some_and(|at| Instant::now() >= at)
    }

    /// Whether the next frame is a bare SASL token (after SaslHandshake v0).
    pub fn expects_raw_token(&self) -> bool {
        self.exchange
            .borrow()
            .as_ref()
            .is_some_and(|exchange| exchange.raw_tokens)
    }

    /// Whether the reader must wait for each request before reading the next: while the
    /// connection authenticates, what the next frame is depends on the answer to this one.
    pub fn is_serial(&self) -> bool {
        !self.authenticated.get() || self.exchange.borrow().is_some()
    }

    /// Refuses a request the session does not admit now: the reason closes the connection.
    pub fn admit(&self, api_key: ApiKey) -> Result<(), String> {
        let sasl_api = matches!(
            api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        if sasl_api || self.is_authenticated() {
            return Ok(());
        }
        if self.authenticated.get() {
            return Err(format!(
                "{api_key:?} request after the SASL session of {} expired",
                self.principal()
            ));
        }
        Err(format!("{api_key:?} request before SASL authentication"))
    }

    /// SaslHandshake: chooses `mechanism` for the exchange that follows. A handshake on an
    /// authenticated connection begins re-authentication (KIP-368, v1 only).
    pub fn handshake(
        &self,
        mechanism: &str,
        enabled: &[SaslMechanism],
        version: i16,
    ) -> Result<(), SaslRefusal> {
        if !self.sasl {
            let message = "SASL is not enabled on this listener";
            return Err(SaslRefusal::IllegalState(message.into()));
        }
        if self.exchange.borrow().is_some() {
            let message = "SaslHandshake during a SASL exchange";
            return Err(SaslRefusal::IllegalState(message.into()));
        }
        if self.authenticated.get() && version == 0 {
            let message = "re-authentication needs SaslHandshake v1";
            return Err(SaslRefusal::IllegalState(message.into()));
        }
        let chosen = SaslMechanism::from_name(mechanism).filter(|m| enabled.contains(m));
        let Some(chosen) = chosen else {
            let message = format!("SASL mechanism {mechanism:?} is not enabled");
            return Err(SaslRefusal::UnsupportedMechanism(message));
        };
        *self.exchange.borrow_mut() = Some(Exchange {
            authenticator: Authenticator::new(chosen),
            mechanism: chosen,
            raw_tokens: version == 0,
        });
        Ok(())
    }

    /// Runs `step` on the exchange in progress; `None` if there is none (ILLEGAL_SASL_STATE).
    pub fn with_exchange<T>(&self, step: impl FnOnce(&mut Authenticator) -> T) -> Option<T> {
        self.exchange
            .borrow_mut()
            .as_mut()
            .map(|exchange| step(&mut exchange.authenticator))
    }

    /// The mechanism of the exchange in progress.
    pub fn mechanism(&self) -> Option<SaslMechanism> {
        self.exchange.borrow().as_ref().map(|e| e.mechanism)
    }

    /// Ends the exchange in progress without authenticating (it failed).
    pub fn abandon(&self) {
        self.exchange.borrow_mut().take();
    }

    /// Ends the exchange as `user`; returns the session's lifetime (zero: no end). A
    /// re-authentication must be the same principal as before.
    pub fn complete(&self, user: String, max_reauth: Duration) -> Result<Duration, String> {
        self.exchange.borrow_mut().take();
        let principal = Principal::user(&user);
        if self.authenticated.get() && *self.principal.borrow() != principal {
            return Err(format!(
                "re-authentication as {principal} on a connection of {}",
                self.principal()
            ));
        }
        *self.principal.borrow_mut() = principal;
        self.authenticated.set(true);
        self.expires_at
            .set((!max_reauth.is_zero()).then(|| Instant::now() + max_reauth));
        Ok(max_reauth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENABLED: &[SaslMechanism] = &SaslMechanism::ALL;

    /// Before authentication only the SASL APIs pass; after it everything does.
    #[test]
    fn only_sasl_apis_before_authentication() {
        let session = Session::new(true, None);
        assert!(session.admit(ApiKey::ApiVersions).is_ok());
        assert!(session.admit(ApiKey::SaslHandshake).is_ok());
        assert!(session.admit(ApiKey::Metadata).is_err());
        assert!(session.is_serial());
        session.handshake("SCRAM-SHA-256", ENABLED, 1).unwrap();
        session.complete("alice".into(), Duration::ZERO).unwrap();
        assert!(session.admit(ApiKey::Metadata).is_ok());
        assert!(!session.is_serial());
        assert_eq!(session.principal().to_string(), "User:alice");
    }

    /// A listener without SASL starts authenticated and refuses a handshake.
    #[test]
    fn plaintext_sessions_are_anonymous() {
        let session = Session::new(false, None);
        assert!(session.admit(ApiKey::Produce).is_ok());
        assert_eq!(session.principal().to_string(), "User:ANONYMOUS");
        assert!(matches!(
            session.handshake("PLAIN", ENABLED, 1),
            Err(SaslRefusal::IllegalState(_))
        ));
    }

    /// An expired session admits only the SASL APIs; re-authenticating as someone else fails.
    #[test]
    fn expired_sessions_must_reauthenticate_as_the_same_principal() {
        let session = Session::new(true, None);
        session.handshake("PLAIN", ENABLED, 1).unwrap();
        session
            .complete("alice".into(), Duration::from_nanos(1))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1));
        assert!(session.admit(ApiKey::Fetch).is_err());
        assert!(session.admit(ApiKey::SaslHandshake).is_ok());
        assert!(matches!(
            session.handshake("PLAIN", ENABLED, 0),
            Err(SaslRefusal::IllegalState(_))
        ));
        session.handshake("PLAIN", ENABLED, 1).unwrap();
        assert!(session.complete("bob".into(), Duration::ZERO).is_err());
        session.handshake("PLAIN", ENABLED, 1).unwrap();
        session.complete("alice".into(), Duration::ZERO).unwrap();
        assert!(session.admit(ApiKey::Fetch).is_ok());
    }

    /// Unknown and disabled mechanisms are refused; v0 handshakes switch to raw tokens.
    #[test]
    fn mechanisms_and_raw_tokens() {
        let session = Session::new(true, None);
        let only_scram = [SaslMechanism::Scram(
            crate::security::scram::ScramMechanism::Sha512,
        )];
        assert!(matches!(
            session.handshake("PLAIN", &only_scram, 1),
            Err(SaslRefusal::UnsupportedMechanism(_))
        ));
        assert!(matches!(
            session.handshake("GSSAPI", ENABLED, 1),
            Err(SaslRefusal::UnsupportedMechanism(_))
        ));
        session.handshake("SCRAM-SHA-512", &only_scram, 0).unwrap();
        assert!(session.expects_raw_token());
    }
}
