//! TLS for the SSL and SASL_SSL listeners: rustls with the `ring` provider, TLS 1.2 and 1.3,
//! the certificate chain and key from PEM files, optional client certificates
//! (`ssl.client.auth` none, requested or required) and reloading on SIGHUP.
//!
//! Shared by all threads: [`TlsContext`] holds the current rustls configuration behind a
//! mutex that is taken once per accepted TLS connection (never per request) and by the
//! reload. Connections keep the configuration they were accepted with, so a reload drops
//! none of them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// `ssl.client.auth`: whether clients are asked for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    /// Asked for; a client without one is still served (and is `User:ANONYMOUS` on SSL).
    Requested,
    /// Required: a client without a trusted certificate fails the handshake.
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<ClientAuth, String> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err(format!("{text:?} is not none, requested or required")),
        }
    }
}

/// Where the TLS material comes from (the `--tls-*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CAs that client certificates must chain to (PEM); needed unless client auth is none.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// The rustls configuration every TLS listener uses, replaceable while the broker runs.
pub struct TlsContext {
    settings: TlsSettings,
    current: Mutex<Arc<ServerConfig>>,
}

impl TlsContext {
    /// Loads the certificate, key and client CAs; any problem is an error naming the file.
    pub fn load(settings: TlsSettings) -> anyhow::Result<TlsContext> {
        let config = server_config(&settings)?;
        Ok(TlsContext {
            settings,
            current: Mutex::new(config),
        })
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the files again and uses them for connections accepted from now on. On an error
    /// the configuration in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.settings)?;
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        Ok(())
    }
}

/// The cryptography rustls runs on: `ring`, or aws-lc-rs when built with that feature.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

fn server_config(settings: &TlsSettings) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_certificates(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .with_context(|| format!("cannot read a private key from {}", settings.key.display()))?;
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?;
    let builder = match (settings.client_auth, &settings.client_ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => bail!("client authentication needs the client CA file (--tls-client-ca)"),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(ca)? {
                roots
                    .add(certificate)
                    .with_context(|| format!("bad CA certificate in {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Requested => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().context("client CA")?)
        }
    };
    let config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "certificate {} does not go with key {}",
            settings.cert.display(),
            settings.key.display()
        )
    })?;
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", path.display()))?;
    if certificates.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certificates)
}

/// The principal name of a client certificate: its subject as an RFC 2253 distinguished name
/// ("CN=alice,OU=eng,O=example"), which is what Kafka's default mapping rule yields.
pub fn certificate_subject(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut parts = Vec::new();
    // RFC 2253 writes the most specific name first: the reverse of the encoded order.
    for rdn in parsed
        .subject()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attribute| {
                let oid = attribute.attr_type();
                let key = x509_parser::objects::oid2abbrev(oid, registry)
                    .map_or_else(|_| oid.to_id_string(), str::to_string);
                let value = attribute.as_str().map_or_else(
                    |_| format!("#{}", hex(attribute.attr_value().data)),
                    escape_rfc2253,
                );
                format!("{key}={value}")
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (index, c) in value.chars().enumerate() {
        let leading = index == 0 && (c == ' ' || c == '#');
        let trailing = index + 1 == value.chars().count() && c == ' ';
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || leading || trailing {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made with `openssl req -subj "/C=US/O=Example, Inc./OU=eng/CN=alice"`.
    const SUBJECT_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIB2zCCAYGgAwIBAgIUAs6KZdTSQnV+FxAbe+dFHFeqDbgwCgYIKoZIzj0EAwIw\n\
QzELMAkGA1UEBhMCVVMxFjAUBgNVBAoMDUV4YW1wbGUsIEluYy4xDDAKBgNVBAsM\n\
A2VuZzEOMAwGA1UEAwwFYWxpY2UwHhcNMjYxMjAzMDcyMTAwWhcNMzYxMTMwMDcy\n\
MTAwWjBDMQswCQYDVQQGEwJVUzEWMBQGA1UECgwNRXhhbXBsZSwgSW5jLjEMMAoG\n\
A1UECwwDZW5nMQ4wDAYDVQQDDAVhbGljZTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
A0IABOnm2aCN1XocXG9tlzm83mRuDIgOc0pDJ/lfIgY19KS2kRAsbSniA9ZNWSuq\n\
6d/zTyWuyPEF1bryxZ6K3+T8sW+jUzBRMB0GA1UdDgQWBBRE958SoJo669HYf8ft\n\
fEy1hZ2hhjAfBgNVHSMEGDAWgBRE958SoJo669HYf8ftfEy1hZ2hhjAPBgNVHRMB\n\
Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQD1CdE5cCXEp43d0wFkbTqCSOQ6\n\
rDiQQ2++lU/Owp9UcgIgaJ9h7M061KqmOsf7vt12EmkqiRy30C1tUNOoyKUTrA4=\n\
-----END CERTIFICATE-----\n";

    /// The principal of a client certificate is its subject as RFC 2253 writes it (what
    /// `openssl x509 -nameopt RFC2253` and Java's X500Principal print): most specific first,
    /// commas inside values escaped.
    #[test]
    fn certificate_subject_is_rfc_2253() {
        let certificate = CertificateDer::from_pem_slice(SUBJECT_PEM.as_bytes()).unwrap();
        assert_eq!(
            certificate_subject(&certificate).as_deref(),
            Some("CN=alice,OU=eng,O=Example\\, Inc.,C=US")
        );
    }

    /// Special characters are escaped as RFC 2253 says.
    #[test]
    fn rfc_2253_escapes() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("#1"), "\\#1");
        assert_eq!(escape_rfc2253("plain"), "plain");
    }
}
