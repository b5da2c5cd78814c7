//! One client connection: a reader that frames requests and starts a task for each, and a
//! writer that awaits those tasks in request order and writes their responses.
//!
//! Invariants:
//! - Responses leave in the order requests arrived.
//! - At most `CONNECTION_REQUESTS_IN_FLIGHT_MAX` requests are in flight; a request's bytes
//!   count against the shard's request budget from just before they are read until its
//!   handler is done; a Fetch reserves its largest response from the connection's response
//!   budget until that response is written. Any of these limits stops the reader, which is
//!   the backpressure.
//! - The claimed length of a frame takes nothing from the request budget: a part-read frame
//!   holds budget for at most twice the bytes its client sent, plus one read chunk.
//! - A bad frame closes only this connection, after the responses to the requests before it.
//! - A connection without progress (no request started or read, no response written) for
//!   `connections.max.idle.ms` is closed, unless it only waits for a handler (a long poll).
//!   A peer that stops reading its responses therefore holds a connection, and the responses
//!   already made for it, for at most that long. A frame not read whole within that time of
//!   its first bytes closes its connection whatever else is in flight.
//! - An idle connection holds no read or write buffer.
//! - On a TLS listener the TLS handshake, and on a SASL listener the authentication, end
//!   within `AUTHENTICATION_TIMEOUT_MS` of the accept, or the connection is closed. While a
//!   connection authenticates, its requests run one at a time (see `session`).

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::{FutureExt, StreamExt};

use kafka_protocol::messages::RequestKind;

use super::order::RequestOrder;
use super::read_ahead::ReadAhead;
use super::session::{ConnectionContext, Session};
use super::{dispatch, Listener, Response, ShardNet};
use crate::limits;
use crate::metrics;
use crate::protocol::{request_frame_length, DecodedRequest, RequestBody};
use crate::runtime::{self, local_channel, JoinHandle, TcpStream};
use crate::security::{tls, Principal};
use crate::shard::Shard;
use crate::sync::{BudgetPermit, ByteBudget, Latch};

/// A request's handler task, and the response bytes it reserved until its response is written.
type InFlight = (JoinHandle<Response>, Option<BudgetPermit>);

/// What the reader and the writer of one connection share. Per-shard.
struct ConnectionState {
    /// Requests read and not yet answered.
    in_flight: Cell<usize>,
    /// When a request was last started or read, or a response last written.
    last_progress: Cell<Instant>,
    /// When the first bytes of the frame being read arrived, while there is one.
    frame_started: Cell<Option<Instant>>,
    /// Whether the writer is inside a socket write (false while it awaits a handler).
    writing: Cell<bool>,
    /// Raised by the writer when it stops (client gone, or a handler asked to close).
    writer_stopped: Latch,
    /// Raised to make the writer give up at once (idle or stalled peer, shutdown grace over).
    abort_writer: Latch,
    /// Bytes of record-carrying responses (Fetch) reserved before their handler runs and
    /// given back once written, so a peer that stops reading holds at most this much.
    response_budget: Rc<ByteBudget>,
}

impl ConnectionState {
    fn progressed(&self) {
        self.last_progress.set(Instant::now());
    }
}

/// How long a connection's in-flight responses may take to be written once the shard shuts
/// down, before the connection is dropped anyway (a peer that never reads must not hold up
/// shutdown).
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(10);

/// Serves `stream`, accepted on `listener`, until the client closes it, it misbehaves, it
/// idles too long, or the shard shuts down.
pub async fn serve(
    shard: &Rc<Shard>,
    net: &Rc<ShardNet>,
    listener: Rc<Listener>,
    stream: TcpStream,
    ip: IpAddr,
) {
    let accepted = Instant::now();
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| ip.to_string());
    let _ = stream.set_nodelay(true);
    let sasl = listener.config.protocol.uses_sasl();
    let Some(tls) = listener.tls.clone() else {
        let session = Session::new(sasl, None);
        let connection = Rc::new(ConnectionContext::new(listener, net.clone(), ip, session));
        return serve_stream(shard, connection, stream, &peer, accepted).await;
    };
    // The TLS states are boxed so that a plaintext connection's task is not sized for them.
    let connection = ConnectionContext::new(listener, net.clone(), ip, Session::new(sasl, None));
    Box::pin(serve_tls(shard, connection, tls, stream, peer, accepted)).await
}

/// `serve` on a TLS listener: the handshake (within the authentication timeout), then the
/// connection over TLS.
async fn serve_tls(
    shard: &Rc<Shard>,
    mut connection: ConnectionContext,
    tls: std::sync::Arc<tls::TlsContext>,
    stream: TcpStream,
    peer: String,
    accepted: Instant,
) {
    let name = connection.listener.config.name.clone();
    let sasl = connection.listener.config.protocol.uses_sasl();
    let (net, ip) = (connection.net.clone(), connection.client_ip);
    let handshake = accept_tls(&tls, stream);
    let deadline = runtime::sleep(authentication_timeout());
    // A handshake in progress must not hold up shutdown, which waits for every connection.
    let stop = select(Box::pin(deadline), Box::pin(shard.shutdown.wait()));
    let secured = match select(Box::pin(handshake), stop).await {
        Either::Left((Ok(secured), _)) => secured,
        Either::Left((Err(reason), _)) => {
            super::authentication_failed(shard, &net, ip);
            tracing::warn!(%peer, listener = %name, "closing connection: {reason}");
            return;
        }
        Either::Right((Either::Left(_), _)) => {
            super::authentication_failed(shard, &net, ip);
            tracing::warn!(%peer, listener = %name, "closing connection: TLS handshake not done in time");
            return;
        }
        Either::Right((Either::Right(_), _)) => return,
    };
    let session = secured.get_ref().1;
    tracing::debug!(
        %peer,
        listener = %name,
        version = ?session.protocol_version(),
        suite = ?session.negotiated_cipher_suite().map(|s| s.suite()),
        "TLS established"
    );
    let principal = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(tls::certificate_subject)
        .map(|subject| Principal::user(&subject));
    connection.session = Session::new(sasl, principal);
    serve_stream(shard, Rc::new(connection), secured, &peer, accepted).await
}

fn authentication_timeout() -> Duration {
    Duration::from_millis(limits::AUTHENTICATION_TIMEOUT_MS)
}

/// A TLS record starts with its content type; a handshake's is 22.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Completes the TLS handshake; an error says what went wrong (a plaintext client is named as
/// such rather than left to a handshake error).
async fn accept_tls(
    tls: &tls::TlsContext,
    stream: TcpStream,
) -> Result<futures_rustls::server::TlsStream<ReadAhead<TcpStream>>, String> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => return Err("client left before the TLS handshake".into()),
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
            return Err("a plaintext client connected to a TLS listener".into())
        }
        Ok(_) => {}
        Err(error) => return Err(format!("read failed: {error}")),
    }
    futures_rustls::TlsAcceptor::from(tls.current())
        .accept(ReadAhead::new(stream))
        .await
        .map_err(|error| format!("TLS handshake failed: {error}"))
}

/// Serves a connection over `stream` (plain TCP or TLS).
async fn serve_stream<S>(
    shard: &Rc<Shard>,
    connection: Rc<ConnectionContext>,
    stream: S,
    peer: &str,
    accepted: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let listener = connection.listener.config.name.clone();
    let (reader, writer) = stream.split();
    let (queue, responses) = local_channel::new_bounded(limits::CONNECTION_REQUESTS_IN_FLIGHT_MAX);
    let state = Rc::new(ConnectionState {
        in_flight: Cell::new(0),
        last_progress: Cell::new(Instant::now()),
        frame_started: Cell::new(None),
        writing: Cell::new(false),
        writer_stopped: Latch::default(),
        abort_writer: Latch::default(),
        response_budget: ByteBudget::new(limits::CONNECTION_RESPONSE_BYTES_MAX),
    });
    let writer_task = runtime::spawn_joinable(
        shard.queues.requests,
        write_responses(shard.clone(), writer, responses, state.clone()),
    );
    let read = read_requests(shard, reader, queue, &state, &connection);
    let unauthenticated = async {
        let left = authentication_timeout().saturating_sub(accepted.elapsed());
        runtime::sleep(left).await;
        if connection.session.ever_authenticated() {
            futures::future::pending::<()>().await;
        }
    };
    let stopped = match select(Box::pin(read), Box::pin(unauthenticated)).await {
        Either::Left((stopped, _)) => stopped,
        Either::Right(_) => {
            super::authentication_failed(shard, &connection.net, connection.client_ip);
            state.abort_writer.raise();
            Some("SASL authentication not done in time".to_string())
        }
    };
    if let Some(reason) = stopped {
        tracing::warn!(%peer, %listener, "closing connection: {reason}");
    }
    // The writer finishes the responses already due, but not for ever: at most
    // `connections.max.idle.ms`, and at most SHUTDOWN_WRITE_GRACE once the shard shuts down,
    // even if the read side ended long before (a peer that left with a JoinGroup pending).
    let idle_after = Duration::from_millis(shard.config.connections_max_idle_ms);
    let shutdown_grace = async {
        shard.shutdown.wait().await;
        runtime::sleep(idle_after.min(SHUTDOWN_WRITE_GRACE)).await
    };
    let grace = select(
        Box::pin(runtime::sleep(idle_after)),
        Box::pin(shutdown_grace),
    );
    let written = match select(writer_task, grace).await {
        Either::Left((written, _)) => written,
        Either::Right((_, writer_task)) => {
            state.abort_writer.raise();
            writer_task.await
        }
    };
    if let Some(Some(reason)) = written {
        tracing::warn!(%peer, %listener, "closing connection: {reason}");
    }
}

/// Reads frames until end of stream, shutdown or idleness, starting a handler task for each;
/// the task holds the request's budget until it is done. Dropping `queue` at the end lets the
/// writer finish. Returns why it stopped, if it was an error.
async fn read_requests<R: AsyncRead + Unpin>(
    shard: &Rc<Shard>,
    mut reader: R,
    queue: local_channel::LocalSender<InFlight>,
    state: &ConnectionState,
    connection: &Rc<ConnectionContext>,
) -> Option<String> {
    let mut frames = FrameReader::new(shard.config.socket_request_max_bytes);
    let mut order = RequestOrder::default();
    let session = &connection.session;
    loop {
        let next = frames.next(&mut reader, &connection.net, state);
        let (frame, charge) = match until_quit(shard, state, next).await {
            Some(Ok(Some(next))) => next,
            Some(Ok(None)) | None => return None,
            Some(Err(reason)) => return Some(reason),
        };
        state.progressed();
        metrics::add(&shard.metrics.bytes_received, 4 + frame.len() as u64);
        // A client quota holds the connection's next request back (Kafka mutes the channel).
        if let Some(wait) = connection.take_throttle() {
            until_quit(shard, state, runtime::sleep(wait)).await?;
            state.progressed();
        }
        let serial = session.is_serial();
        let work = if session.expects_raw_token() {
            Work::RawToken(frame)
        } else {
            match dispatch::decode(frame) {
                Ok(request) => Work::Request(request),
                Err(reason) => return Some(reason),
            }
        };
        let reserved = match &work {
            Work::Request(request) => match response_bytes_bound(request) {
                0 => None,
                bound => match until_quit(shard, state, state.response_budget.acquire(bound)).await
                {
                    Some(reserved) => Some(reserved),
                    None => return None,
                },
            },
            Work::RawToken(_) => None,
        };
        let handler_shard = shard.clone();
        let handler_connection = connection.clone();
        let overlaps =
            matches!(&work, Work::Request(request) if overlaps_earlier_requests(request));
        let turn = order.admit(overlaps && !serial);
        let done = turn.done();
        let task = runtime::spawn_joinable(shard.queues.requests, async move {
            turn.wait().await;
            let response = match work {
                Work::Request(request) => {
                    dispatch::handle(&handler_shard, request, handler_connection).await
                }
                Work::RawToken(token) => {
                    dispatch::raw_sasl_token(&handler_shard, &handler_connection, token).await
                }
            };
            drop(turn);
            drop(charge);
            response
        });
        state.in_flight.set(state.in_flight.get() + 1);
        match until_quit(shard, state, queue.send((task, reserved))).await {
            Some(Ok(())) => {}
            // The writer stopped (the client went away or a handler asked to close), or the
            // connection is to end.
            Some(Err(_)) | None => return None,
        }
        // While authenticating, what the next frame is depends on how this one ends.
        if serial && until_quit(shard, state, done.wait()).await.is_none() {
            return None;
        }
    }
}

/// What a frame holds. Not boxed: a request is moved once, into its task, and the rare
/// token is the small variant.
#[allow(clippy::large_enum_variant)]
enum Work {
    Request(DecodedRequest),
    /// A bare SASL token (after SaslHandshake v0).
    RawToken(Bytes),
}

/// Whether `request` may run beside the requests before it on its connection (see
/// [`super::order`]): produce requests only.
fn overlaps_earlier_requests(request: &DecodedRequest) -> bool {
    matches!(&request.body, RequestBody::Decoded(RequestKind::Produce(_)))
}

/// The most bytes the response to `request` may hold, for requests whose responses carry
/// record data (the first batch of a Fetch may exceed it, as Kafka allows); 0 for the rest.
fn response_bytes_bound(request: &DecodedRequest) -> usize {
    match &request.body {
        RequestBody::Decoded(RequestKind::Fetch(fetch)) => usize::try_from(fetch.max_bytes)
            .map_or(0, |max| max.min(limits::FETCH_RESPONSE_BYTES_MAX)),
        _ => 0,
    }
}

/// Runs `work` until it completes, or returns `None` when the connection should end quietly
/// instead: the shard shuts down, the writer stopped, the connection made no progress for
/// `connections.max.idle.ms`, or a frame was not read whole within that time.
async fn until_quit<T>(
    shard: &Shard,
    state: &ConnectionState,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let idle_after = Duration::from_millis(shard.config.connections_max_idle_ms);
    // Kept across idle checks: reading a frame must not be cancelled half way.
    let mut work = std::pin::pin!(work);
    loop {
        let stop = select(
            Box::pin(shard.shutdown.wait()),
            Box::pin(state.writer_stopped.wait()),
        );
        // Once quiet but waiting on a handler, look again a whole period later.
        let check_in = |since: Instant| match idle_after.saturating_sub(since.elapsed()) {
            Duration::ZERO => idle_after,
            left => left,
        };
        let frame_due_in = state.frame_started.get().map_or(Duration::MAX, check_in);
        let idle_in = check_in(state.last_progress.get()).min(frame_due_in);
        let stop_or_idle = select(stop, Box::pin(runtime::sleep(idle_in)));
        match select(work.as_mut(), stop_or_idle).await {
            Either::Left((done, _)) => return Some(done),
            Either::Right((Either::Left(_), _)) => return None,
            Either::Right((Either::Right(_), _)) => {
                let quiet = state.last_progress.get().elapsed() >= idle_after;
                // Waiting on a handler (a long poll) is not idleness; a stuck write is, and so
                // is a frame left half sent, which may hold request budget.
                let stuck = state.in_flight.get() == 0 || state.writing.get();
                let frame_overdue = state
                    .frame_started
                    .get()
                    .is_some_and(|started| started.elapsed() >= idle_after);
                if (quiet && stuck) || frame_overdue {
                    metrics::add(&shard.metrics.connections_idle_closed, 1);
                    tracing::debug!("closing a connection without progress for {idle_after:?}");
                    state.abort_writer.raise();
                    return None;
                }
            }
        }
    }
}

/// Awaits each request's handler in order and writes its response.
async fn write_responses<W: AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    mut writer: W,
    responses: local_channel::LocalReceiver<InFlight>,
    state: Rc<ConnectionState>,
) -> Option<String> {
    let written = write_in_order(&shard, &mut writer, responses, &state);
    let result = match select(Box::pin(written), Box::pin(state.abort_writer.wait())).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => None,
    };
    state.writer_stopped.raise();
    let _ = writer.close().await;
    result
}

/// Writes the responses in request order. Responses already done behind the awaited one go
/// out in the same socket write: one flush often completes many produce requests of a
/// connection at once, and a write per response would cost a syscall, a TCP segment and a
/// wake-up of the client each.
async fn write_in_order<W: AsyncWrite + Unpin>(
    shard: &Shard,
    writer: &mut W,
    responses: local_channel::LocalReceiver<InFlight>,
    state: &ConnectionState,
) -> Option<String> {
    let mut queued = responses.stream();
    // A request taken from the queue while gathering whose response was not ready yet.
    let mut held: Option<InFlight> = None;
    loop {
        let (task, reserved) = match held.take() {
            Some(in_flight) => in_flight,
            None => queued.next().await?,
        };
        let mut batch = ResponseBatch::default();
        let mut ending = batch.add(task.await, reserved);
        while ending.is_none() && batch.gathering() {
            // Only what is already queued and done: never wait for more here.
            let Some(Some((mut task, reserved))) = queued.next().now_or_never() else {
                break;
            };
            match (&mut task).now_or_never() {
                Some(response) => ending = batch.add(response, reserved),
                None => {
                    held = Some((task, reserved));
                    break;
                }
            }
        }
        metrics::add(&shard.metrics.bytes_sent, batch.bytes as u64);
        state.writing.set(true);
        let written = write_chunks(writer, batch.chunks, batch.bytes).await;
        state.writing.set(false);
        let Ok(writes) = written else {
            return None;
        };
        metrics::add(&shard.metrics.socket_writes, writes);
        state.in_flight.set(state.in_flight.get() - batch.answered);
        state.progressed();
        drop(batch.reserved);
        if ending.is_some() {
            return ending;
        }
    }
}

/// Responses gathered for one socket write, in request order.
#[derive(Default)]
struct ResponseBatch {
    chunks: Vec<Bytes>,
    bytes: usize,
    /// Requests answered by this write.
    answered: usize,
    /// Response budget held until the write is done.
    reserved: Vec<BudgetPermit>,
}

impl ResponseBatch {
    /// Most responses gathered into one write; the bytes are bounded by the coalescing size.
    const RESPONSES_MAX: usize = 64;

    /// Adds a handler's outcome. Returns why the connection ends instead, if it does: the
    /// responses before it are still written.
    fn add(
        &mut self,
        response: Option<Response>,
        reserved: Option<BudgetPermit>,
    ) -> Option<String> {
        self.reserved.extend(reserved);
        match response {
            Some(Response::Chunks(chunks)) => {
                self.bytes += chunks.iter().map(Bytes::len).sum::<usize>();
                if self.chunks.is_empty() {
                    // The usual single response keeps its own vector.
                    self.chunks = chunks;
                } else {
                    self.chunks.extend(chunks);
                }
            }
            Some(Response::Nothing) => {}
            Some(Response::Close(reason)) => return Some(reason),
            Some(Response::ChunksThenClose(chunks, reason)) => {
                self.bytes += chunks.iter().map(Bytes::len).sum::<usize>();
                self.chunks.extend(chunks);
                return Some(reason);
            }
            None => return Some("request handler was cancelled".into()),
        }
        self.answered += 1;
        None
    }

    /// Whether more ready responses may join this write.
    fn gathering(&self) -> bool {
        self.answered < Self::RESPONSES_MAX && self.bytes < limits::SOCKET_WRITE_COALESCE_BYTES
    }
}

/// Writes responses' chunks, coalescing small ones into as few writes as possible, and returns
/// how many writes it took. The coalescing buffer lives only for this call, so an idle
/// connection holds none.
async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunks: Vec<Bytes>,
    total_bytes: usize,
) -> std::io::Result<u64> {
    if let [only] = chunks.as_slice() {
        write_all(writer, only).await?;
        return Ok(1);
    }
    let mut writes = 0;
    let mut out = BytesMut::with_capacity(total_bytes.min(limits::SOCKET_WRITE_COALESCE_BYTES));
    for chunk in chunks {
        if out.len() + chunk.len() <= limits::SOCKET_WRITE_COALESCE_BYTES {
            out.extend_from_slice(&chunk);
            continue;
        }
        if !out.is_empty() {
            write_all(writer, &out).await?;
            writes += 1;
            out.clear();
        }
        if chunk.len() >= limits::SOCKET_WRITE_COALESCE_BYTES {
            write_all(writer, &chunk).await?;
            writes += 1;
        } else {
            out.extend_from_slice(&chunk);
        }
    }
    if !out.is_empty() {
        write_all(writer, &out).await?;
        writes += 1;
    }
    Ok(writes)
}

async fn write_all<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// The request budget one frame holds, taken piece by piece as its bytes are read and given
/// back when its handler drops it.
#[derive(Default)]
struct FrameCharge {
    /// Bytes covered: taken from the budget, or let past it by `overdraft`.
    bytes: usize,
    permits: Vec<BudgetPermit>,
    /// The shard's overdraft slot, once this frame found the budget exhausted.
    overdraft: Option<BudgetPermit>,
}

impl FrameCharge {
    /// Covers the frame's first `bytes` bytes, waiting while the budget has no room and the
    /// overdraft slot is taken.
    ///
    /// Why this cannot deadlock: frames read in part hold budget while they wait for more, so
    /// they alone could exhaust it and all wait for one another. A frame that finds no room
    /// takes the shard's single overdraft slot instead, if free, and from then on reads to its
    /// end without the budget. Its connection then waits only for its own client: the frame
    /// completes, or the connection is closed once the frame is `connections.max.idle.ms`
    /// old. Either way the slot (given back with the frame's charge, when its handler is done)
    /// and its budget come back, and the next frame in turn can finish. The cost is memory:
    /// the budget plus one frame of at most `socket.request.max.bytes` per shard, which a
    /// frame larger than the whole budget needed anyway.
    async fn cover(&mut self, bytes: usize, net: &ShardNet) {
        let Some(more) = bytes.checked_sub(self.bytes).filter(|&more| more > 0) else {
            return;
        };
        if self.overdraft.is_none() {
            // The budget is asked first, so the slot is taken only when it has no room.
            let budget = std::pin::pin!(net.request_budget.acquire(more));
            let slot = std::pin::pin!(net.request_overdraft.acquire(1));
            match select(budget, slot).await {
                Either::Left((permit, _)) => self.permits.push(permit),
                Either::Right((slot, _)) => self.overdraft = Some(slot),
            }
        }
        self.bytes += more;
    }
}

/// Splits the byte stream into request frames (a 4-byte big-endian length, then the body).
struct FrameReader {
    buf: BytesMut,
    frame_bytes_max: usize,
    /// Budget held for the frame at the head of `buf`.
    charge: FrameCharge,
    /// Whether the last read filled all the room it was given (more is probably waiting).
    last_read_full: bool,
}

/// Bytes asked of the socket when nothing is buffered and the last read drained it: the
/// connection is probably idle, and the buffer of a pending read stays allocated until data
/// comes. Most requests other than produce fit in one such read. Also the most room a frame's
/// body gets ahead of its data while its client does not keep the socket full.
const READ_IDLE_BYTES: usize = 4 * 1024;
/// Most bytes read from the socket at once while a large frame is pending.
const READ_STEP_BYTES_MAX: usize = 1024 * 1024;

impl FrameReader {
    fn new(frame_bytes_max: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            frame_bytes_max,
            charge: FrameCharge::default(),
            last_read_full: false,
        }
    }

    /// The next frame's body and the budget it holds; `Ok(None)` at a clean end of stream;
    /// `Err` for a bad length, a stream cut inside a frame, or a socket error. Budget is taken
    /// for the room of each read before it is made, never for the claimed length as such.
    /// Marks `state` when a frame's first bytes are in, and again once it is whole.
    async fn next<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        net: &ShardNet,
        state: &ConnectionState,
    ) -> Result<Option<(Bytes, FrameCharge)>, String> {
        loop {
            if !self.buf.is_empty() && state.frame_started.get().is_none() {
                state.frame_started.set(Some(Instant::now()));
                state.progressed();
            }
            let read_bytes = match self.frame_length()? {
                Some(length) if self.buf.len() >= 4 + length => {
                    // Bytes read beyond a frame's end were not charged to it: cover them now.
                    self.charge.cover(4 + length, net).await;
                    let mut frame = self.buf.split_to(4 + length);
                    let _ = frame.split_to(4);
                    state.frame_started.set(None);
                    return Ok(Some((frame.freeze(), std::mem::take(&mut self.charge))));
                }
                Some(length) => {
                    let start = self.buf.len();
                    let read_bytes = self.read_size(4 + length - start);
                    self.reserve_for_frame(4 + length);
                    self.charge
                        .cover((start + read_bytes).min(4 + length), net)
                        .await;
                    read_bytes
                }
                // The prefix itself: a small read, within what every connection may hold.
                None => self.read_size(4 - self.buf.len()),
            };
            if !self.read_more(reader, read_bytes).await? {
                return Ok(None);
            }
        }
    }

    /// Bytes to ask of the socket for `needed` more bytes of the frame at the head of `buf`.
    /// Room ahead of the data grows with the data already in, so a frame's budget stays
    /// within twice what its client sent plus one chunk, whatever length it claimed. Small
    /// frames read at least a chunk, taking the frames behind them in the same read; a frame
    /// larger than a chunk reads no further than its end, so that the next frame's first bytes
    /// are not left in its buffer, to be copied into a new one.
    fn read_size(&self, needed: usize) -> usize {
        let start = self.buf.len();
        let chunk = self.chunk();
        let most = READ_STEP_BYTES_MAX.min(chunk.max(start));
        if start + needed > limits::CONNECTION_READ_CHUNK_BYTES {
            needed.min(most)
        } else {
            needed.clamp(chunk, most)
        }
    }

    /// Makes room for the whole frame of `frame_bytes` at the head of `buf` at once, within
    /// the same bound as the reads (twice the bytes in plus one chunk), so that a large frame
    /// is not copied again each time its buffer grows.
    fn reserve_for_frame(&mut self, frame_bytes: usize) {
        let start = self.buf.len();
        let wanted = frame_bytes.min(2 * start + self.chunk());
        if wanted > self.buf.capacity() {
            self.buf.reserve(wanted - start);
        }
    }

    /// The room of a read that starts a frame: a whole chunk while the client keeps the socket
    /// full, a small one when it is probably idle.
    fn chunk(&self) -> usize {
        if self.last_read_full {
            limits::CONNECTION_READ_CHUNK_BYTES
        } else {
            READ_IDLE_BYTES
        }
    }

    /// Reads at most `read_bytes` more; `Ok(false)` at a clean end of stream (between frames).
    async fn read_more<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        read_bytes: usize,
    ) -> Result<bool, String> {
        let start = self.buf.len();
        if start == 0 {
            // Give the consumed buffer back (frames still hold their slices of it), so that
            // an idle connection keeps no memory.
            self.buf = BytesMut::new();
        }
        self.buf.resize(start + read_bytes, 0);
        let read = reader.read(&mut self.buf[start..]).await;
        let count = read.as_ref().copied().unwrap_or(0);
        self.buf.truncate(start + count);
        self.last_read_full = count == read_bytes;
        match read {
            Ok(0) if start == 0 => Ok(false),
            // A TLS peer that closes without close_notify, between frames, has simply left.
            Err(error) if start == 0 && error.kind() == std::io::ErrorKind::UnexpectedEof => {
                Ok(false)
            }
            Ok(0) => Err(format!("stream ended inside a frame ({start} bytes)")),
            Ok(_) => Ok(true),
            Err(error) => Err(format!("read failed: {error}")),
        }
    }

    /// The length of the frame at the head of the buffer, once its prefix is in.
    fn frame_length(&self) -> Result<Option<usize>, String> {
        match self.buf.first_chunk::<4>() {
            Some(prefix) => match request_frame_length(*prefix, self.frame_bytes_max) {
                Ok(length) => Ok(Some(length)),
                // A TLS record header: content type 22 (handshake), version 3.x.
                Err(_) if prefix[..2] == [TLS_HANDSHAKE_RECORD, 3] => {
                    Err("a TLS client connected to a listener without TLS".into())
                }
                Err(reason) => Err(reason),
            },
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_holding(bytes: usize, last_read_full: bool) -> FrameReader {
        let mut reader = FrameReader::new(100 * 1024 * 1024);
        reader.buf.resize(bytes, 0);
        reader.last_read_full = last_read_full;
        reader
    }

    /// A small frame's read takes a whole chunk (the frames behind it come in the same read); a
    /// large frame's read stops at its end, and never grows faster than the data already in.
    #[test]
    fn reads_stop_at_the_end_of_a_large_frame() {
        let chunk = limits::CONNECTION_READ_CHUNK_BYTES;
        let small = reader_holding(100, true);
        assert_eq!(small.read_size(400), chunk);
        let large = reader_holding(chunk, true);
        assert_eq!(
            large.read_size(3_000),
            3_000,
            "no further than the frame's end"
        );
        assert_eq!(
            large.read_size(10 * chunk),
            chunk,
            "room grows with the data in"
        );
        let idle = reader_holding(100, false);
        assert_eq!(idle.read_size(400), READ_IDLE_BYTES);
    }

    /// Room for a large frame is made once, within twice the bytes in plus one chunk, however
    /// long the frame claims to be.
    #[test]
    fn room_for_a_frame_is_made_once_within_the_bound() {
        let chunk = limits::CONNECTION_READ_CHUNK_BYTES;
        let mut reader = reader_holding(chunk, true);
        reader.reserve_for_frame(2 * chunk + 100);
        let capacity = reader.buf.capacity();
        assert!(
            capacity >= 2 * chunk + 100,
            "the whole frame fits: {capacity}"
        );
        reader.buf.resize(2 * chunk + 100, 0);
        assert_eq!(reader.buf.capacity(), capacity, "no second allocation");

        let mut claimed_huge = reader_holding(chunk, true);
        claimed_huge.reserve_for_frame(90 * 1024 * 1024);
        assert!(
            claimed_huge.buf.capacity() <= 2 * (2 * chunk + chunk),
            "bounded by the bytes in, not the claim: {}",
            claimed_huge.buf.capacity()
        );
    }
}
