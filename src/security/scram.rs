//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): stored credentials and the server's
//! side of one exchange.
//!
//! The cryptography is RustCrypto's (`hmac`, `sha2`, `pbkdf2`, `subtle`); this module only
//! parses and builds the exchange's messages. The server keeps a salted credential (salt,
//! iteration count, StoredKey, ServerKey), never the password: it checks the client's proof
//! against StoredKey and proves itself with ServerKey, so a SCRAM exchange costs it a few
//! HMACs and no key derivation. Messages are refused with a reason that names the field at
//! fault and never echoes a proof or a password.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::limits;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The number Kafka's user-credential APIs use (1: SHA-256, 2: SHA-512).
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(value: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.kafka_type() == value)
    }

    /// Length of the hash and of every key.
    pub fn key_bytes(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, parts),
            ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// SaltedPassword := Hi(password, salt, iterations), which is PBKDF2 with this HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.key_bytes()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server stores for one user and mechanism: enough to verify a client and prove
/// itself, never enough to log in as the user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl fmt::Debug for ScramCredential {
    /// Keys stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for `password` with a fresh random salt.
    pub fn new(mechanism: ScramMechanism, password: &str, iterations: u32) -> ScramCredential {
        let mut salt = vec![0; limits::SCRAM_SALT_BYTES];
        getrandom::getrandom(&mut salt).expect("the OS random source works");
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential from a SaltedPassword (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, &[b"Client Key"]);
        ScramCredential {
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, &[b"Server Key"]),
            iterations,
        }
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN checks
    /// passwords this way). Costs a key derivation: `iterations` HMACs.
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let candidate = mechanism.hash(&mechanism.hmac(&salted, &[b"Client Key"]));
        bool::from(candidate.ct_eq(&self.stored_key))
    }
}

/// Why an exchange failed; the text goes to the client in SaslAuthenticate's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramError(pub String);

impl fmt::Display for ScramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScramError {}

fn refuse<T>(reason: impl Into<String>) -> Result<T, ScramError> {
    Err(ScramError(reason.into()))
}

/// The server's side of one SCRAM exchange: client-first, server-first, client-final,
/// server-final.
pub struct ScramExchange {
    mechanism: ScramMechanism,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<Pending>),
    Finished,
}

/// What the server remembers between its first message and the client's final one.
struct Pending {
    user: String,
    credential: ScramCredential,
    /// The base64 of the GS2 header the client-final must repeat.
    channel_binding: String,
    /// The client's nonce followed by the server's.
    nonce: String,
    client_nonce_len: usize,
    client_first_bare: String,
    server_first: String,
}

impl Pending {
    /// Whether the client-final's nonce is the exchange's: exactly `nonce`, or (from
    /// librdkafka before 2.6.1, which prepends its own nonce a second time) the client's
    /// nonce followed by exactly `nonce`. Both carry the whole server nonce, so neither can be
    /// replayed; Kafka 3.8.1-3.9 accept the second form too (Kafka 4 refuses it, and with it
    /// kcat as Debian ships it).
    fn is_nonce(&self, nonce: &str) -> bool {
        let client_nonce = &self.nonce[..self.client_nonce_len];
        nonce == self.nonce
            || nonce
                .strip_prefix(client_nonce)
                .is_some_and(|rest| rest == self.nonce)
    }
}

/// The outcome of a successful step.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send this and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send `response` (server-final) to the client.
    Done { response: Vec<u8>, user: String },
}

impl ScramExchange {
    pub fn new(mechanism: ScramMechanism) -> ScramExchange {
        ScramExchange {
            mechanism,
            state: State::AwaitingClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes the client's next message. `credential_of` looks a user up. Any error ends the
    /// exchange.
    pub fn step(
        &mut self,
        message: &[u8],
        credential_of: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, ScramError> {
        let Ok(message) = std::str::from_utf8(message) else {
            self.state = State::Finished;
            return refuse("SCRAM message is not UTF-8");
        };
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitingClientFirst => {
                let pending = self.client_first(message, credential_of)?;
                let response = pending.server_first.clone().into_bytes();
                self.state = State::AwaitingClientFinal(Box::new(pending));
                Ok(ScramStep::Continue(response))
            }
            State::AwaitingClientFinal(pending) => self.client_final(message, pending),
            State::Finished => refuse("the SCRAM exchange is over"),
        }
    }

    fn client_first(
        &self,
        message: &str,
        credential_of: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Pending, ScramError> {
        let (gs2_header, bare) = split_gs2_header(message)?;
        let mut fields = bare.split(',');
        let user = match fields.next().and_then(|f| f.strip_prefix("n=")) {
            Some(name) => unescape_name(name)?,
            None => return refuse("client-first message has no user name"),
        };
        let client_nonce = match fields.next().and_then(|f| f.strip_prefix("r=")) {
            Some(nonce) if valid_nonce(nonce) => nonce,
            _ => return refuse("client-first message has no valid nonce"),
        };
        // Kafka's extensions (tokenauth=true for delegation tokens) follow; corelog has no
        // delegation tokens, so a token login is refused rather than read as a password one.
        for extension in fields {
            if extension.starts_with("tokenauth=") {
                return refuse("delegation tokens are not supported");
            }
        }
        if let Some(authzid) = gs2_header.authzid {
            if authzid != user {
                return refuse("authorization id differs from the user name");
            }
        }
        let Some(credential) = credential_of(&user) else {
            return refuse(invalid_credentials(self.mechanism));
        };
        let mut random = [0u8; limits::SCRAM_NONCE_BYTES];
        getrandom::getrandom(&mut random).expect("the OS random source works");
        let nonce = format!("{client_nonce}{}", BASE64.encode(random));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        Ok(Pending {
            user,
            credential,
            channel_binding: BASE64.encode(gs2_header.text),
            nonce,
            client_nonce_len: client_nonce.len(),
            client_first_bare: bare.to_string(),
            server_first,
        })
    }

    fn client_final(&self, message: &str, pending: Box<Pending>) -> Result<ScramStep, ScramError> {
        let Some((without_proof, proof)) = message.rsplit_once(",p=") else {
            return refuse("client-final message has no proof");
        };
        let mut fields = without_proof.split(',');
        if fields.next().and_then(|f| f.strip_prefix("c=")) != Some(&pending.channel_binding) {
            return refuse("client-final message has the wrong channel binding");
        }
        let Some(nonce) = fields.next().and_then(|f| f.strip_prefix("r=")) else {
            return refuse("client-final message has no nonce");
        };
        if !pending.is_nonce(nonce) {
            return refuse("client-final message has the wrong nonce");
        }
        let Ok(proof) = BASE64.decode(proof) else {
            return refuse("client-final proof is not base64");
        };
        let mechanism = self.mechanism;
        let auth_message = format!(
            "{},{},{without_proof}",
            pending.client_first_bare, pending.server_first
        );
        let credential = &pending.credential;
        let signature = mechanism.hmac(&credential.stored_key, &[auth_message.as_bytes()]);
        if proof.len() != signature.len() {
            return refuse(invalid_credentials(mechanism));
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let valid = mechanism.hash(&client_key).ct_eq(&credential.stored_key);
        if !bool::from(valid) {
            return refuse(invalid_credentials(mechanism));
        }
        let server_signature = mechanism.hmac(&credential.server_key, &[auth_message.as_bytes()]);
        Ok(ScramStep::Done {
            response: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
            user: pending.user,
        })
    }
}

/// What Kafka tells a client whose SCRAM login failed (the same for an unknown user and a
/// wrong password).
fn invalid_credentials(mechanism: ScramMechanism) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism {mechanism}"
    )
}

/// The client's side of one SCRAM exchange (corelog's own clients: `corelog user`, `topic`,
/// `group` and `bench` against a SASL listener).
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// The ServerSignature the server must send back, once the client-final is built.
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange for `user`; returns the client and its client-first message.
    pub fn start(mechanism: ScramMechanism, user: &str, password: &str) -> (ScramClient, String) {
        let mut random = [0u8; limits::SCRAM_NONCE_BYTES];
        getrandom::getrandom(&mut random).expect("the OS random source works");
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_nonce = BASE64.encode(random);
        let client_first_bare = format!("n={name},r={client_nonce}");
        let first = format!("n,,{client_first_bare}");
        let client = ScramClient {
            mechanism,
            password: password.to_string(),
            client_nonce,
            client_first_bare,
            expected_server_signature: None,
        };
        (client, first)
    }

    /// Takes the server-first message; returns the client-final message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| ScramError("server-first message is not UTF-8".into()))?;
        let field = |key: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(key))
                .ok_or_else(|| ScramError(format!("server-first message has no {key}")))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return refuse("server-first message does not extend the client's nonce");
        }
        let salt = BASE64
            .decode(field("s=")?)
            .map_err(|_| ScramError("server-first salt is not base64".into()))?;
        let iterations: u32 = field("i=")?
            .parse()
            .map_err(|_| ScramError("server-first iteration count is not a number".into()))?;
        if !(limits::SCRAM_ITERATIONS_MIN..=limits::SCRAM_ITERATIONS_MAX).contains(&iterations) {
            return refuse(format!("server asks for {iterations} iterations"));
        }
        let salted = self
            .mechanism
            .salted_password(self.password.as_bytes(), &salt, iterations);
        Ok(self.sign(&salted, server_first, &format!("c=biws,r={nonce}")))
    }

    /// The client-final message for `without_proof` (RFC 5802's ClientProof over the
    /// AuthMessage), remembering the ServerSignature the server must answer with.
    fn sign(&mut self, salted: &[u8], server_first: &str, without_proof: &str) -> String {
        let mechanism = self.mechanism;
        let client_key = mechanism.hmac(salted, &[b"Client Key"]);
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = mechanism.hmac(&mechanism.hash(&client_key), &[auth.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mechanism.hmac(salted, &[b"Server Key"]);
        self.expected_server_signature = Some(mechanism.hmac(&server_key, &[auth.as_bytes()]));
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    /// Checks the server-final message: the server proves it knows the credential.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramError("server-final message is not UTF-8".into()))?;
        if let Some(error) = text.strip_prefix("e=") {
            return refuse(format!("server refused: {error}"));
        }
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or_else(|| ScramError("server-final message has no verifier".into()))?;
        match &self.expected_server_signature {
            Some(expected) if bool::from(expected.ct_eq(&signature)) => Ok(()),
            _ => refuse("the server's signature does not match: it does not know the credential"),
        }
    }
}

/// The GS2 header of a client-first message: "n,," or "y,," with an optional "a=authzid".
struct Gs2Header<'a> {
    text: &'a str,
    authzid: Option<String>,
}

fn split_gs2_header(message: &str) -> Result<(Gs2Header<'_>, &str), ScramError> {
    let mut parts = message.splitn(3, ',');
    let (Some(binding), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return refuse("client-first message has no GS2 header");
    };
    match binding {
        "n" | "y" => {}
        _ if binding.starts_with("p=") => return refuse("channel binding is not supported"),
        _ => return refuse("client-first message has a bad GS2 header"),
    }
    // The header as sent, both commas included: the client-final repeats it in base64.
    let text = &message[..binding.len() + authzid.len() + 2];
    let authzid = match authzid {
        "" => None,
        _ => match authzid.strip_prefix("a=") {
            Some(name) => Some(unescape_name(name)?),
            None => return refuse("client-first message has a bad authorization id"),
        },
    };
    Ok((Gs2Header { text, authzid }, bare))
}

/// A saslname with "=2C" and "=3D" decoded (RFC 5802, 5.1); any other '=' is an error.
fn unescape_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return refuse("user name has a bad escape"),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return refuse("user name is empty");
    }
    Ok(out)
}

/// Printable ASCII except ',' (RFC 5802's "printable"), and not absurdly long.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= limits::SASL_TOKEN_BYTES_MAX
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Serde for byte vectors as base64 strings (the metadata log's records are JSON).
mod base64_bytes {
    use super::{Engine, BASE64};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mechanism: ScramMechanism, stored: &str, tried: &str) -> Result<ScramStep, ScramError> {
        run_with_nonce_prefix(mechanism, stored, tried, "")
    }

    fn run_with_nonce_prefix(
        mechanism: ScramMechanism,
        stored: &str,
        tried: &str,
        nonce_prefix: &str,
    ) -> Result<ScramStep, ScramError> {
        let credential = ScramCredential::new(mechanism, stored, 4096);
        let mut exchange = ScramExchange::new(mechanism);
        let (mut client, first) = ScramClient::start(mechanism, "alice", tried);
        let step = exchange.step(first.as_bytes(), |user| {
            (user == "alice").then(|| credential.clone())
        })?;
        let ScramStep::Continue(server_first) = step else {
            panic!("the first step continues");
        };
        let last = client.client_final(&server_first)?;
        // librdkafka before 2.6.1: its own nonce once more in front of the combined one
        // (the proof covers the message as sent).
        let last = if nonce_prefix.is_empty() {
            last
        } else {
            let client_nonce = client.client_nonce.clone();
            let prefix = if nonce_prefix == "client" {
                &client_nonce
            } else {
                nonce_prefix
            };
            resign(
                &mut client,
                &server_first,
                &last.replace("r=", &format!("r={prefix}")),
            )
        };
        let step = exchange.step(last.as_bytes(), |_| unreachable!())?;
        if let ScramStep::Done { response, .. } = &step {
            client.verify_server_final(response)?;
        }
        Ok(step)
    }

    /// Recomputes the proof of a client-final message whose nonce was altered.
    fn resign(client: &mut ScramClient, server_first: &[u8], altered: &str) -> String {
        let without_proof = &altered[..altered.rfind(",p=").unwrap()];
        let server_first = std::str::from_utf8(server_first).unwrap();
        let fields: Vec<&str> = server_first.split(',').collect();
        let salt = BASE64
            .decode(fields[1].strip_prefix("s=").unwrap())
            .unwrap();
        let salted = client
            .mechanism
            .salted_password(client.password.as_bytes(), &salt, 4096);
        client.sign(&salted, server_first, without_proof)
    }

    /// The right password authenticates with both hashes, and the server proves itself with
    /// the signature the client expects.
    #[test]
    fn right_password_authenticates() {
        for mechanism in ScramMechanism::ALL {
            let step = run(mechanism, "secret", "secret").unwrap();
            assert!(matches!(step, ScramStep::Done { user, .. } if user == "alice"));
        }
    }

    /// librdkafka before 2.6.1 repeats its own nonce before the combined one: accepted in
    /// exactly that form, and no other prefix is.
    #[test]
    fn doubled_client_nonce_of_old_librdkafka() {
        let step = run_with_nonce_prefix(ScramMechanism::Sha512, "secret", "secret", "client");
        assert!(matches!(step, Ok(ScramStep::Done { .. })));
        let error =
            run_with_nonce_prefix(ScramMechanism::Sha512, "secret", "secret", "x").unwrap_err();
        assert!(error.0.contains("nonce"), "{error}");
    }

    /// A wrong password is refused at the client's proof.
    #[test]
    fn wrong_password_is_refused() {
        for mechanism in ScramMechanism::ALL {
            let error = run(mechanism, "secret", "guess").unwrap_err();
            assert!(error.0.contains("Authentication failed"), "{error}");
        }
    }

    /// RFC 7677's test vector: the client and server keys of user "user", password "pencil".
    #[test]
    fn rfc_7677_vector() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mechanism = ScramMechanism::Sha256;
        let salted = mechanism.salted_password(b"pencil", &salt, 4096);
        let credential = ScramCredential::from_salted_password(mechanism, &salted, salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let server_signature = mechanism.hmac(&credential.server_key, &[auth.as_bytes()]);
        assert_eq!(
            BASE64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(credential.matches_password(mechanism, "pencil"));
        assert!(!credential.matches_password(mechanism, "pencil2"));
    }

    /// Malformed messages are refused with a reason, never a panic.
    #[test]
    fn malformed_messages_are_refused() {
        let credential = ScramCredential::new(ScramMechanism::Sha256, "x", 4096);
        for message in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=a,r=b",
            b"p=tls-unique,,n=a,r=b",
            b"n,,n=,r=abc",
            b"n,,n=a=ZZ,r=abc",
            b"n,,n=a",
            b"n,,n=a,r=",
            b"n,a=bob,n=alice,r=abc",
            b"n,,n=alice,r=abc,tokenauth=true",
            b"\xff\xfe",
        ] {
            let mut exchange = ScramExchange::new(ScramMechanism::Sha256);
            let result = exchange.step(message, |_| Some(credential.clone()));
            assert!(
                result.is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(message)
            );
        }
        let mut exchange = ScramExchange::new(ScramMechanism::Sha256);
        exchange
            .step(b"n,,n=a,r=abc", |_| Some(credential.clone()))
            .unwrap();
        for last in ["c=biws,r=abc", "c=eSws,r=abcX,p=AAAA", "c=biws,r=abc,p=!!"] {
            let mut again = ScramExchange::new(ScramMechanism::Sha256);
            again
                .step(b"n,,n=a,r=abc", |_| Some(credential.clone()))
                .unwrap();
            assert!(again.step(last.as_bytes(), |_| None).is_err(), "{last}");
        }
    }

    /// Escaped names decode, and an authorization id equal to the user is accepted.
    #[test]
    fn escaped_names_and_authzid() {
        assert_eq!(unescape_name("a=2Cb=3Dc").unwrap(), "a,b=c");
        let credential = ScramCredential::new(ScramMechanism::Sha512, "x", 4096);
        let mut exchange = ScramExchange::new(ScramMechanism::Sha512);
        let mut seen = String::new();
        exchange
            .step(b"n,a=al=2Cice,n=al=2Cice,r=abc", |user| {
                seen = user.to_string();
                Some(credential.clone())
            })
            .unwrap();
        assert_eq!(seen, "al,ice");
    }
}
