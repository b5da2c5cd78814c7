//! The SASL mechanisms a listener may offer (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and one
//! authentication with one of them, apart from how Kafka carries the tokens.
//!
//! PLAIN checks the password against the user's stored SCRAM credentials, so no password is
//! stored anywhere; that check is a key derivation (thousands of HMACs), which the caller runs
//! off the shard's thread ([`PlainCheck::run`] is `Send`).

use std::fmt;

use super::scram::{ScramCredential, ScramExchange, ScramMechanism, ScramStep};
use super::users::UserStore;
use crate::limits;

/// A SASL mechanism corelog serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(ScramMechanism),
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Scram(ScramMechanism::Sha512),
        SaslMechanism::Scram(ScramMechanism::Sha256),
        SaslMechanism::Plain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(scram) => scram.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an authentication failed; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslError(pub String);

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The outcome of one client token.
pub enum SaslProgress {
    /// Send this token and wait for the client's next one.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; send `response` as the last token.
    Done { response: Vec<u8>, user: String },
    /// PLAIN: the password still has to be checked (off the shard's thread).
    CheckPassword(PlainCheck),
}

/// One authentication in progress on a connection.
pub enum Authenticator {
    Plain { finished: bool },
    Scram(ScramExchange),
}

impl Authenticator {
    pub fn new(mechanism: SaslMechanism) -> Authenticator {
        match mechanism {
            SaslMechanism::Plain => Authenticator::Plain { finished: false },
            SaslMechanism::Scram(scram) => Authenticator::Scram(ScramExchange::new(scram)),
        }
    }

    /// Takes the client's next token; an error ends the authentication.
    pub fn step(&mut self, token: &[u8], users: &UserStore) -> Result<SaslProgress, SaslError> {
        if token.len() > limits::SASL_TOKEN_BYTES_MAX {
            return Err(SaslError(format!(
                "SASL token of {} bytes exceeds {}",
                token.len(),
                limits::SASL_TOKEN_BYTES_MAX
            )));
        }
        match self {
            Authenticator::Plain { finished } => {
                if std::mem::replace(finished, true) {
                    return Err(SaslError("the PLAIN exchange is over".into()));
                }
                let (user, password) = parse_plain(token)?;
                let candidates = users.credentials(&user);
                Ok(SaslProgress::CheckPassword(PlainCheck {
                    user,
                    password,
                    candidates,
                }))
            }
            Authenticator::Scram(exchange) => {
                let mechanism = exchange.mechanism();
                let step = exchange
                    .step(token, |user| users.credential(user, mechanism))
                    .map_err(|error| SaslError(error.0))?;
                Ok(match step {
                    ScramStep::Continue(challenge) => SaslProgress::Challenge(challenge),
                    ScramStep::Done { response, user } => SaslProgress::Done { response, user },
                })
            }
        }
    }
}

/// A PLAIN password to check against the user's stored credentials.
pub struct PlainCheck {
    user: String,
    password: String,
    candidates: Vec<(ScramMechanism, ScramCredential)>,
}

impl fmt::Debug for PlainCheck {
    /// The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCheck")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl PlainCheck {
    /// Derives the key for each stored credential (cheapest first) until one matches.
    pub fn run(self) -> Result<SaslProgress, SaslError> {
        let mut candidates = self.candidates;
        candidates.sort_by_key(|(mechanism, credential)| (credential.iterations, *mechanism));
        let matches = candidates
            .iter()
            .any(|(mechanism, credential)| credential.matches_password(*mechanism, &self.password));
        if !matches {
            return Err(SaslError(
                "Authentication failed: Invalid username or password".into(),
            ));
        }
        Ok(SaslProgress::Done {
            response: Vec::new(),
            user: self.user,
        })
    }
}

/// "authzid NUL authcid NUL password" (RFC 4616); the authzid must be empty or the user.
fn parse_plain(token: &[u8]) -> Result<(String, String), SaslError> {
    let bad = || SaslError("PLAIN message is malformed".into());
    let text = std::str::from_utf8(token).map_err(|_| bad())?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if user.is_empty() || password.is_empty() {
        return Err(SaslError("PLAIN user name or password is empty".into()));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError(
            "authorization id differs from the user name".into(),
        ));
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> UserStore {
        let mut users = UserStore::default();
        let credential = ScramCredential::new(ScramMechanism::Sha256, "secret", 4096);
        users.set("alice", ScramMechanism::Sha256, credential);
        users
    }

    fn plain(token: &[u8]) -> Result<String, SaslError> {
        let mut authenticator = Authenticator::new(SaslMechanism::Plain);
        match authenticator.step(token, &store())? {
            SaslProgress::CheckPassword(check) => match check.run()? {
                SaslProgress::Done { user, .. } => Ok(user),
                _ => unreachable!("a check ends the exchange"),
            },
            _ => unreachable!("PLAIN always checks a password"),
        }
    }

    /// PLAIN accepts the password a stored SCRAM credential was made from, and nothing else.
    #[test]
    fn plain_checks_against_scram_credentials() {
        assert_eq!(plain(b"\0alice\0secret").unwrap(), "alice");
        assert_eq!(plain(b"alice\0alice\0secret").unwrap(), "alice");
        assert!(plain(b"\0alice\0wrong").is_err());
        assert!(plain(b"\0bob\0secret").is_err(), "unknown user");
        assert!(plain(b"bob\0alice\0secret").is_err(), "other authzid");
        assert!(plain(b"\0alice").is_err());
        assert!(plain(b"\0alice\0secret\0more").is_err());
        assert!(plain(b"\0\0secret").is_err());
        assert!(plain(b"\xff\0alice\0secret").is_err());
    }

    /// Mechanism names round-trip as Kafka spells them.
    #[test]
    fn mechanism_names() {
        for mechanism in SaslMechanism::ALL {
            assert_eq!(SaslMechanism::from_name(mechanism.name()), Some(mechanism));
        }
        assert_eq!(SaslMechanism::from_name("GSSAPI"), None);
    }
}
