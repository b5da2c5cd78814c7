//! Who a client is: listeners' security protocols, TLS, SASL mechanisms, principals and the
//! stored user credentials.
//!
//! This module knows mechanisms and certificates, not connections: `server::session` holds a
//! connection's authentication state and runs the Kafka side of SASL (SaslHandshake,
//! SaslAuthenticate) over what is here. Authentication ends in a [`Principal`], which every
//! request of the connection carries in its context.

pub mod acl;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod users;

use std::fmt;
use std::rc::Rc;
use std::str::FromStr;

/// A listener's security protocol, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(text: &str) -> Result<SecurityProtocol, String> {
        let all = [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ];
        all.into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!("{text:?} is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)")
            })
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who sent a request, as Kafka writes it: "User:alice". Clients on a listener without
/// authentication are `User:ANONYMOUS`; on TLS with a client certificate, the certificate's
/// subject ("User:CN=alice,O=example").
///
/// Kept in that form, made once per authentication, because the authorizer matches it for
/// every resource of every request; a clone is a reference count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    text: Rc<str>,
}

impl Principal {
    pub const TYPE: &'static str = "User";

    pub fn user(name: &str) -> Principal {
        Principal {
            text: format!("{}:{name}", Principal::TYPE).into(),
        }
    }

    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// The user name: "alice" of "User:alice".
    pub fn name(&self) -> &str {
        &self.text[Principal::TYPE.len() + 1..]
    }

    /// "User:alice", as ACLs and `super.users` name it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
