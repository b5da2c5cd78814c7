//! The Kafka listener of a shard: accepting connections, framing, in-order responses.
//!
//! Per-shard: every shard binds the listener (SO_REUSEPORT, so the kernel spreads
//! connections); a connection lives on the shard that accepted it. Requests on a connection
//! take effect in arrival order (only pipelined produces overlap, see `order`), and their
//! responses are written back in request order.

pub mod admin;
pub mod admission;
pub mod authorize;
mod connection;
pub mod dispatch;
pub mod handlers;
mod order;
pub mod password_checks;
pub mod quotas;
mod read_ahead;
pub mod session;

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ListenerConfig};
use crate::limits;
use crate::metrics;
use crate::runtime::{self, TcpListener, TcpStream};
use crate::security::tls::TlsContext;
use crate::shard::{Serving, Shard};
use crate::sync::ByteBudget;
use admission::{Admission, Admitted};
use futures::future::{select, Either};

/// The Kafka listeners and the admin listener as `serve` starts them on every shard, with what
/// all shards' connections share: connection admission (touched once per connection, never
/// per request) and the TLS configuration (reloaded by the main thread on SIGHUP).
pub struct Server {
    admission: Arc<Admission>,
    tls: Option<Arc<TlsContext>>,
}

impl Server {
    pub fn new(config: &Config, tls: Option<Arc<TlsContext>>) -> Server {
        Server {
            admission: Arc::new(Admission::new(
                config.max_connections,
                config.max_connections_per_ip,
            )),
            tls,
        }
    }
}

impl Serving for Server {
    fn start_listeners(&self, shard: &Rc<Shard>) -> Result<(), String> {
        let net = Rc::new(ShardNet::new(
            &shard.config,
            self.admission.clone(),
            self.tls.clone(),
        ));
        start_listeners(shard, net)
    }

    fn start_process_services(&self, shard: &Rc<Shard>) {
        admin::start(shard.clone());
    }
}

/// What a shard's connections share: the process-wide admission counters and this shard's
/// budget of request bytes in memory. Per-shard (the budget is an `Rc`).
pub struct ShardNet {
    pub admission: Arc<Admission>,
    /// Taken for each request frame as its body is read, given back once its handler is
    /// done: a shard over budget stops reading from its sockets.
    pub request_budget: Rc<ByteBudget>,
    /// One slot (capacity 1): the frame holding it reads past an exhausted `request_budget`,
    /// so that frames read in part, all waiting for budget, cannot deadlock the shard.
    pub request_overdraft: Rc<ByteBudget>,
    /// The Kafka listeners, as configured.
    pub listeners: Vec<Rc<Listener>>,
    /// PLAIN password checks (each a key derivation), within their share of the core.
    pub password_checks: Rc<password_checks::PasswordChecks>,
}

impl ShardNet {
    pub fn new(
        config: &Config,
        admission: Arc<Admission>,
        tls: Option<Arc<TlsContext>>,
    ) -> ShardNet {
        let listeners = config
            .listeners
            .iter()
            .map(|listener| {
                Rc::new(Listener {
                    config: listener.clone(),
                    tls: listener.protocol.uses_tls().then(|| tls.clone()).flatten(),
                })
            })
            .collect();
        ShardNet {
            admission,
            request_budget: ByteBudget::new(config.queued_request_bytes_per_shard()),
            request_overdraft: ByteBudget::new(1),
            listeners,
            password_checks: Default::default(),
        }
    }
}

/// One Kafka listener as a shard serves it.
pub struct Listener {
    pub config: ListenerConfig,
    /// The TLS configuration, on SSL and SASL_SSL listeners.
    pub tls: Option<Arc<TlsContext>>,
}

/// What a handler produced for one request.
pub enum Response {
    /// A complete response frame, split into chunks written back to back (record bytes are
    /// passed through without being copied).
    Chunks(Vec<bytes::Bytes>),
    /// acks=0 produce: the client expects no response.
    Nothing,
    /// The request was unacceptable: close the connection after earlier responses.
    Close(String),
    /// Write this response, then close the connection (a failed SASL authentication).
    ChunksThenClose(Vec<bytes::Bytes>, String),
}

/// Binds this shard's socket of every listener and starts accepting. Errors are reported,
/// not panicked.
fn start_listeners(shard: &Rc<Shard>, net: Rc<ShardNet>) -> Result<(), String> {
    for listener in net.listeners.clone() {
        let socket = runtime::bind_shared_listener(listener.config.bind)
            .map_err(|e| format!("listener {}: {e}", listener.config.name))?;
        runtime::spawn_into(
            shard.queues.requests,
            accept_loop(shard.clone(), net.clone(), listener, socket),
        );
    }
    Ok(())
}

/// Accepts connections until shutdown, handing each to `on_accept`. Accept errors (typically
/// EMFILE) back off briefly instead of spinning.
pub(crate) async fn accept_until_shutdown(
    shard: &Shard,
    listener: TcpListener,
    what: &str,
    mut on_accept: impl FnMut(TcpStream),
) {
    loop {
        let accepted = select(Box::pin(listener.accept()), Box::pin(shard.shutdown.wait())).await;
        match accepted {
            Either::Left((Ok(stream), _)) => on_accept(stream),
            Either::Left((Err(error), _)) => {
                tracing::warn!(%error, listener = what, "accept failed");
                runtime::sleep(Duration::from_millis(10)).await;
            }
            Either::Right(_) => return,
        }
    }
}

async fn accept_loop(
    shard: Rc<Shard>,
    net: Rc<ShardNet>,
    listener: Rc<Listener>,
    socket: TcpListener,
) {
    let name = listener.config.name.clone();
    let authenticates = listener.config.protocol.uses_tls() || listener.config.protocol.uses_sasl();
    accept_until_shutdown(&shard, socket, &name, |stream| {
        let Some((ip, admitted)) = admit(&shard, &net, &stream, authenticates) else {
            // Dropping the stream closes it without a byte written, as Kafka does.
            return;
        };
        let shard = shard.clone();
        let net = net.clone();
        if let Admitted::Throttle(hold) = admitted {
            metrics::add(&shard.metrics.connections_throttled, 1);
            tracing::debug!(%ip, ?hold, "connection throttled: its IP fails authentication");
            runtime::spawn_into(shard.queues.requests, async move {
                let held = runtime::sleep(hold);
                select(Box::pin(held), Box::pin(shard.shutdown.wait())).await;
                drop(stream);
                net.admission.release(ip);
            });
            return;
        }
        let listener = listener.clone();
        shard.connections.opened();
        metrics::add(&shard.metrics.connections_accepted, 1);
        metrics::add(&shard.metrics.connections_open, 1);
        runtime::spawn_into(shard.queues.requests, async move {
            connection::serve(&shard, &net, listener, stream, ip).await;
            net.admission.release(ip);
            shard.connections.closed();
            let open = &shard.metrics.connections_open;
            open.set(open.get().saturating_sub(1));
        });
    })
    .await
}

/// Counts a new connection against the connection caps and its IP's authentication failures;
/// `None` if it must be refused.
fn admit(
    shard: &Shard,
    net: &ShardNet,
    stream: &TcpStream,
    authenticates: bool,
) -> Option<(IpAddr, Admitted)> {
    let ip = match stream.peer_addr() {
        Ok(peer) => peer.ip(),
        Err(error) => {
            tracing::debug!(%error, "accepted connection has no peer address; closing it");
            return None;
        }
    };
    match net.admission.admit(ip, authenticates) {
        Ok(admitted) => Some((ip, admitted)),
        Err(refusal) => {
            metrics::add(&shard.metrics.connections_refused, 1);
            tracing::debug!(%ip, ?refusal, "connection refused");
            None
        }
    }
}

/// Counts a failed authentication (a TLS handshake or a SASL exchange that failed, or did not
/// end in time) of the client at `ip`, in the shard's metrics and against the IP's budget.
pub(crate) fn authentication_failed(shard: &Shard, net: &ShardNet, ip: IpAddr) {
    metrics::add(&shard.metrics.authentication_failures, 1);
    if net.admission.authentication_failed(ip) {
        tracing::warn!(
            %ip,
            "client fails authentication more than {} times a second: its new connections to \
             listeners that authenticate are closed until it stops",
            limits::AUTHENTICATION_FAILURES_PER_IP_PER_SECOND
        );
    }
}
