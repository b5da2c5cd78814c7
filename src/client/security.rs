//! Connecting corelog's own clients (`topic`, `group`, `user`, `bench`) to secured listeners:
//! TLS with rustls and SASL PLAIN or SCRAM-SHA-256/512, set with the flags below (the names
//! follow Kafka's client configs: security.protocol, sasl.mechanism, ...).
//!
//! The blocking admin client uses [`BlockingStream`], the benchmark's executors
//! [`ClientStream`]; both authenticate with [`authenticate`] over a framed connection right
//! after connecting.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::io::{AsyncRead, AsyncWrite};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::admin::kafka_error;
use super::frame::Connection;
use crate::runtime::TcpStream;
use crate::security::sasl::SaslMechanism;
use crate::security::scram::ScramClient;
use crate::security::tls;
use crate::security::SecurityProtocol;

/// The security flags of the client commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [default: PLAINTEXT].
    #[arg(long, global = true, env = "CORELOG_SECURITY_PROTOCOL")]
    pub security_protocol: Option<SecurityProtocol>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 [default: SCRAM-SHA-512].
    #[arg(long, global = true, env = "CORELOG_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,
    #[arg(long, global = true, env = "CORELOG_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// Better given in the environment than on the command line, where `ps` shows it.
    #[arg(
        long,
        global = true,
        env = "CORELOG_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
    /// CA certificates (PEM) the broker's certificate must chain to (needed for SSL and
    /// SASL_SSL).
    #[arg(long, global = true, env = "CORELOG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for brokers that ask for one.
    #[arg(long, global = true, env = "CORELOG_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// The key (PEM) of --tls-client-cert.
    #[arg(long, global = true, env = "CORELOG_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
}

/// A SASL login.
#[derive(Clone)]
pub struct SaslLogin {
    pub mechanism: SaslMechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    /// The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How a client connects: resolved from [`SecurityArgs`]. Shared by the bench's threads.
#[derive(Clone, Debug, Default)]
pub struct ClientSecurity {
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslLogin>,
}

impl ClientSecurity {
    pub fn from_args(args: &SecurityArgs) -> anyhow::Result<ClientSecurity> {
        let protocol = args
            .security_protocol
            .unwrap_or(SecurityProtocol::Plaintext);
        let tls = match protocol.uses_tls() {
            true => Some(tls_config(args)?),
            false => None,
        };
        let sasl = match protocol.uses_sasl() {
            false => None,
            true => {
                let name = args.sasl_mechanism.as_deref().unwrap_or("SCRAM-SHA-512");
                let mechanism = SaslMechanism::from_name(&name.to_ascii_uppercase())
                    .with_context(|| format!("--sasl-mechanism {name:?} is not supported"))?;
                let (Some(user), Some(password)) = (&args.sasl_username, &args.sasl_password)
                else {
                    bail!("{protocol} needs --sasl-username and --sasl-password");
                };
                Some(SaslLogin {
                    mechanism,
                    user: user.clone(),
                    password: password.clone(),
                })
            }
        };
        Ok(ClientSecurity { tls, sasl })
    }

    pub fn sasl(&self) -> Option<&SaslLogin> {
        self.sasl.as_ref()
    }

    /// Connects a blocking stream (TLS handshake included) to `address`; `host` names the
    /// broker in its certificate.
    pub fn connect_blocking(
        &self,
        address: SocketAddr,
        host: &str,
        timeout: Duration,
    ) -> io::Result<BlockingStream> {
        let stream = StdTcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout * 3))?;
        stream.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(BlockingStream::Plain(stream));
        };
        let connection = rustls::ClientConnection::new(tls.clone(), server_name(host)?)
            .map_err(io::Error::other)?;
        let mut secured = rustls::StreamOwned::new(connection, stream);
        // The handshake, now, so that a certificate problem is reported as such.
        while secured.conn.is_handshaking() {
            secured
                .conn
                .complete_io(&mut secured.sock)
                .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
        }
        Ok(BlockingStream::Tls(Box::new(secured)))
    }

    /// Connects an executor's stream (TLS handshake included) to `address`.
    pub async fn connect(&self, address: SocketAddr) -> io::Result<ClientStream> {
        let stream = TcpStream::connect(address).await?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(ClientStream::Plain(stream));
        };
        let connector = futures_rustls::TlsConnector::from(tls.clone());
        let secured = connector
            .connect(server_name(&address.ip().to_string())?, stream)
            .await?;
        Ok(ClientStream::Tls(Box::new(secured)))
    }
}

fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))
}

fn tls_config(args: &SecurityArgs) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let Some(ca) = &args.tls_ca else {
        bail!("TLS needs --tls-ca, the CA certificates the broker's certificate chains to");
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", ca.display()))?;
    for certificate in certificates {
        roots
            .add(certificate)
            .with_context(|| format!("bad CA certificate in {}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (&args.tls_client_cert, &args.tls_client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("client certificate")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("--tls-client-cert and --tls-client-key go together"),
    };
    Ok(Arc::new(config))
}

/// SaslHandshake v1 and SaslAuthenticate v1 for `login` on a fresh connection.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    login: &SaslLogin,
) -> anyhow::Result<()> {
    let mechanism = login.mechanism.name();
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let response = connection.request(&handshake, 1).await?;
    if response.error_code != 0 {
        let enabled: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
        let message = format!("the broker offers {}", enabled.join(", "));
        return Err(kafka_error(
            "SASL handshake",
            response.error_code,
            Some(&message),
        ));
    }
    match login.mechanism {
        SaslMechanism::Plain => {
            let token = format!("\0{}\0{}", login.user, login.password);
            sasl_step(connection, token.into_bytes()).await?;
        }
        SaslMechanism::Scram(scram) => {
            let (mut client, first) = ScramClient::start(scram, &login.user, &login.password);
            let server_first = sasl_step(connection, first.into_bytes()).await?;
            let last = client.client_final(&server_first)?;
            let server_final = sasl_step(connection, last.into_bytes()).await?;
            client.verify_server_final(&server_final)?;
        }
    }
    Ok(())
}

async fn sasl_step<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    token: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
    let response = connection.request(&request, 1).await?;
    if response.error_code != 0 {
        let message = response.error_message.as_deref();
        return Err(kafka_error(
            "SASL authentication",
            response.error_code,
            message,
        ));
    }
    Ok(response.auth_bytes.to_vec())
}

/// A blocking connection, plain or TLS.
pub enum BlockingStream {
    Plain(StdTcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, StdTcpStream>>),
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(stream) => stream.read(buf),
            BlockingStream::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(stream) => stream.write(buf),
            BlockingStream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(stream) => stream.flush(),
            BlockingStream::Tls(stream) => stream.flush(),
        }
    }
}

/// An executor's connection, plain or TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_close(cx),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}
