//! The transport over TCP: one link per ordered pair of shards on different nodes.
//!
//! A link carries payloads one way. Its dialer (the sending shard) connects to the peer
//! node's cluster listener, says hello, and waits for the answer before it sends a frame.
//! Every shard of a node accepts on the same cluster address (SO_REUSEPORT), so a link may
//! land on a shard it does not name: that shard answers, then hands the socket over to the
//! named shard through `Handoff` (the shard mesh in the broker), and the named shard reads
//! its frames. No frame byte can have been read by then, because the dialer sends none
//! before the answer; so a link's payloads are always read by the shard they are for, with
//! no hop between cores per message.
//!
//! Sending never waits. Payloads queue per link up to `CLUSTER_LINK_QUEUE_BYTES_MAX`; beyond
//! it, or while the peer cannot be reached, they are dropped and counted: the layers above
//! (Raft) resend what matters, and a dead peer must not hold memory. The writer coalesces
//! what is queued into frames of up to `CLUSTER_FRAME_COALESCE_BYTES`, so the messages of
//! many Raft groups between two shards share one write.
//!
//! A link whose peer stops acknowledging (a cut network, a frozen host) fails after
//! `CLUSTER_LINK_SILENCE_MS`, at both ends, and its dialer dials again: left open, it would
//! carry nothing after the cut heals until TCP's retransmission backoff next fires.
//!
//! Per-shard: a `TcpTransport` lives on the executor that made it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::{select, Either};
use futures::{AsyncReadExt, AsyncWriteExt};

use super::frame::{self, Address, Answer, Hello, ANSWER_BYTES, HELLO_BYTES};
use super::{Deliver, Transport, TransportStats};
use crate::ids::NodeId;
use crate::limits::{
    CLUSTER_CONNECT_TIMEOUT_MS, CLUSTER_FRAME_COALESCE_BYTES, CLUSTER_HELLO_TIMEOUT_MS,
    CLUSTER_LINK_QUEUE_BYTES_MAX, CLUSTER_LINK_SILENCE_MS, CLUSTER_PAYLOAD_BYTES_MAX,
    CLUSTER_RECONNECT_BACKOFF_MS_MAX, CLUSTER_RECONNECT_BACKOFF_MS_MIN,
};
use crate::runtime::{self, TaskQueueHandle, TcpListener, TcpStream};
use crate::sync::{Latch, Notify};

/// Hands an accepted link to the shard its hello names (another shard of this node).
pub type Handoff = Rc<dyn Fn(Hello, OwnedFd)>;

/// Where the other nodes listen, by node id.
pub type PeerAddresses = HashMap<NodeId, SocketAddr>;

/// One shard's end of the node-to-node network. See the module documentation.
pub struct TcpTransport {
    local: Address,
    shard_count: usize,
    peers: RefCell<PeerAddresses>,
    links: RefCell<HashMap<Address, Rc<Link>>>,
    deliver: Deliver,
    handoff: Handoff,
    queue: TaskQueueHandle,
    stop: Rc<Latch>,
    stats: Rc<TransportStats>,
}

/// The sending end of one link.
struct Link {
    to: Address,
    queued: RefCell<VecDeque<Bytes>>,
    queued_bytes: Cell<usize>,
    ready: Notify,
}

impl TcpTransport {
    /// The transport of shard `local` of a node with `shard_count` shards. `deliver` gets
    /// every payload read for this shard; `handoff` moves links that landed here to the
    /// shard they name. Its tasks run on `queue` until `stop` is raised.
    pub fn new(
        local: Address,
        shard_count: usize,
        peers: PeerAddresses,
        deliver: Deliver,
        handoff: Handoff,
        queue: TaskQueueHandle,
        stop: Rc<Latch>,
    ) -> Rc<TcpTransport> {
        Rc::new(TcpTransport {
            local,
            shard_count,
            peers: RefCell::new(peers),
            links: RefCell::new(HashMap::new()),
            deliver,
            handoff,
            queue,
            stop,
            stats: Rc::default(),
        })
    }

    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Records where `node` listens now; links to it reconnect there.
    pub fn set_peer(&self, node: NodeId, address: SocketAddr) {
        self.peers.borrow_mut().insert(node, address);
    }

    /// Accepts links on `listener` (this shard's socket of the cluster address) until stop.
    pub fn listen(self: &Rc<Self>, listener: TcpListener) {
        let transport = self.clone();
        runtime::spawn_into(self.queue, async move {
            loop {
                let accepted = select(Box::pin(listener.accept()), Box::pin(transport.stop.wait()));
                match accepted.await {
                    Either::Left((Ok(stream), _)) => {
                        let transport = transport.clone();
                        runtime::spawn_into(transport.queue, transport.clone().greet(stream));
                    }
                    Either::Left((Err(error), _)) => {
                        tracing::warn!(%error, "cluster listener: accept failed");
                        runtime::sleep(Duration::from_millis(10)).await;
                    }
                    Either::Right(_) => return,
                }
            }
        });
    }

    /// Reads an accepted link's hello, answers it, and reads the link here or hands it over.
    async fn greet(self: Rc<Self>, mut stream: TcpStream) {
        let mut bytes = [0; HELLO_BYTES];
        let read = with_timeout(CLUSTER_HELLO_TIMEOUT_MS, stream.read_exact(&mut bytes)).await;
        if !matches!(read, Some(Ok(()))) {
            return;
        }
        let (answer, hello) = match Hello::decode(&bytes) {
            Ok(hello) if hello.to.node != self.local.node => (Answer::WrongNode, None),
            Ok(hello) if hello.to.shard.get() >= self.shard_count => (Answer::NoSuchShard, None),
            Ok(hello) => (Answer::Accepted, Some(hello)),
            Err(frame::FrameError::Version(_)) => (Answer::UnsupportedVersion, None),
            Err(_) => return,
        };
        if stream.write_all(&answer.encode()).await.is_err() {
            return;
        }
        let Some(hello) = hello else {
            tracing::warn!(?answer, "cluster listener: refused a link");
            return;
        };
        // The reading end ends too when its peer is gone (the peer dials a new link).
        if let Err(error) = runtime::fail_when_unreachable(&stream, link_silence()) {
            tracing::warn!(from = ?hello.from, %error, "cluster link: no timeout for an unreachable peer");
        }
        if hello.to.shard == self.local.shard {
            self.read_link(hello, stream).await;
            return;
        }
        // A duplicate of the descriptor outlives this shard's stream, which closes its own.
        // SAFETY: `dup` returns a new descriptor this process owns, or -1.
        let fd = unsafe { libc::dup(stream.as_raw_fd()) };
        drop(stream);
        if fd < 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cluster listener: dup failed");
            return;
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        (self.handoff)(hello, unsafe { OwnedFd::from_raw_fd(fd) });
    }

    /// Reads a link handed over by another shard of this node.
    pub fn adopt(self: &Rc<Self>, hello: Hello, fd: OwnedFd) {
        assert_eq!(
            hello.to, self.local,
            "links are handed to the shard they name"
        );
        // SAFETY: the descriptor is a connected TCP socket handed over whole.
        let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
        runtime::spawn_into(self.queue, self.clone().read_link(hello, stream));
    }

    /// Delivers every payload of the link until it ends or the transport stops.
    async fn read_link(self: Rc<Self>, hello: Hello, mut stream: TcpStream) {
        loop {
            let frame = select(
                Box::pin(read_frame(&mut stream)),
                Box::pin(self.stop.wait()),
            );
            let payloads = match frame.await {
                Either::Left((Ok(payloads), _)) => payloads,
                Either::Left((Err(error), _)) => {
                    tracing::debug!(from = ?hello.from, %error, "cluster link ended");
                    return;
                }
                Either::Right(_) => return,
            };
            for payload in payloads {
                self.stats.received.set(self.stats.received.get() + 1);
                (self.deliver)(hello.from, payload);
            }
        }
    }

    fn link(self: &Rc<Self>, to: Address) -> Rc<Link> {
        if let Some(link) = self.links.borrow().get(&to) {
            return link.clone();
        }
        let link = Rc::new(Link {
            to,
            queued: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            ready: Notify::new(),
        });
        self.links.borrow_mut().insert(to, link.clone());
        runtime::spawn_into(self.queue, self.clone().write_link(link.clone()));
        link
    }

    /// Connects, then writes what is queued as frames, until stop; reconnects after a
    /// failure, dropping what was queued while the peer was unreachable.
    async fn write_link(self: Rc<Self>, link: Rc<Link>) {
        let mut backoff = CLUSTER_RECONNECT_BACKOFF_MS_MIN;
        while !self.stop.is_raised() {
            let Some(mut stream) = self.connect(link.to).await else {
                self.drop_queued(&link);
                let pause = runtime::sleep(Duration::from_millis(backoff));
                if let Either::Right(_) = select(Box::pin(pause), Box::pin(self.stop.wait())).await
                {
                    return;
                }
                backoff = (backoff * 2).min(CLUSTER_RECONNECT_BACKOFF_MS_MAX);
                continue;
            };
            backoff = CLUSTER_RECONNECT_BACKOFF_MS_MIN;
            loop {
                while link.queued.borrow().is_empty() {
                    let ready = link.ready.notified();
                    if link.queued.borrow().is_empty() {
                        if let Either::Right(_) =
                            select(Box::pin(ready), Box::pin(self.stop.wait())).await
                        {
                            return;
                        }
                    }
                }
                let payloads = take_frame(&link);
                let frame = frame::encode_frame(&payloads);
                if let Err(error) = stream.write_all(&frame).await {
                    tracing::debug!(to = ?link.to, %error, "cluster link broke");
                    self.count_dropped(payloads.len());
                    break;
                }
                let stats = &self.stats;
                stats.sent.set(stats.sent.get() + payloads.len() as u64);
                stats.frames_sent.set(stats.frames_sent.get() + 1);
                stats
                    .bytes_sent
                    .set(stats.bytes_sent.get() + frame.len() as u64);
            }
        }
    }

    /// A connected link to `to` whose hello was accepted, or None (reported).
    async fn connect(&self, to: Address) -> Option<TcpStream> {
        let address = *self.peers.borrow().get(&to.node)?;
        let timeout = Duration::from_millis(CLUSTER_CONNECT_TIMEOUT_MS);
        let mut stream = match TcpStream::connect_timeout(address, timeout).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(?to, %address, %error, "cluster link: connect failed");
                return None;
            }
        };
        // Raft messages are small and latency-bound; the writer coalesces them itself.
        let _ = stream.set_nodelay(true);
        if let Err(error) = runtime::fail_when_unreachable(&stream, link_silence()) {
            tracing::warn!(?to, %error, "cluster link: no timeout for an unreachable peer");
        }
        let hello = Hello {
            from: self.local,
            to,
        };
        stream.write_all(&hello.encode()).await.ok()?;
        let mut bytes = [0; ANSWER_BYTES];
        let read = with_timeout(CLUSTER_HELLO_TIMEOUT_MS, stream.read_exact(&mut bytes)).await;
        if !matches!(read, Some(Ok(()))) {
            return None;
        }
        match Answer::decode(&bytes) {
            Ok(Answer::Accepted) => Some(stream),
            answer => {
                tracing::warn!(?to, %address, ?answer, "cluster link refused by its peer");
                None
            }
        }
    }

    fn drop_queued(&self, link: &Link) {
        let dropped = link.queued.borrow_mut().drain(..).count();
        link.queued_bytes.set(0);
        self.count_dropped(dropped);
    }

    fn count_dropped(&self, count: usize) {
        self.stats
            .dropped
            .set(self.stats.dropped.get() + count as u64);
    }
}

impl Transport for Rc<TcpTransport> {
    fn local(&self) -> Address {
        self.local
    }

    fn send(&self, to: Address, payload: Bytes) {
        assert!(!payload.is_empty() && payload.len() <= CLUSTER_PAYLOAD_BYTES_MAX);
        assert_ne!(to.node, self.local.node, "a node does not send to itself");
        let link = self.link(to);
        let queued = link.queued_bytes.get();
        // An empty queue takes any payload, so that one larger than the limit still goes.
        if queued > 0 && queued + payload.len() > CLUSTER_LINK_QUEUE_BYTES_MAX {
            self.count_dropped(1);
            return;
        }
        link.queued_bytes.set(queued + payload.len());
        link.queued.borrow_mut().push_back(payload);
        link.ready.notify_all();
    }
}

/// Takes queued payloads for one frame: at least one, then more while the frame stays under
/// the coalescing size.
fn take_frame(link: &Link) -> Vec<Bytes> {
    let mut queued = link.queued.borrow_mut();
    let mut payloads = Vec::new();
    let mut bytes = frame::FRAME_HEADER_BYTES;
    while let Some(next) = queued.front() {
        let grown = bytes + 4 + next.len();
        if !payloads.is_empty() && grown > CLUSTER_FRAME_COALESCE_BYTES {
            break;
        }
        bytes = grown;
        payloads.push(queued.pop_front().expect("front exists"));
    }
    let taken: usize = payloads.iter().map(Bytes::len).sum();
    link.queued_bytes.set(link.queued_bytes.get() - taken);
    payloads
}

/// Reads one whole frame and splits it into its payloads.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<Bytes>> {
    let invalid =
        |error: frame::FrameError| std::io::Error::new(std::io::ErrorKind::InvalidData, error);
    let mut prefix = [0; 4];
    stream.read_exact(&mut prefix).await?;
    let length = frame::frame_length(prefix).map_err(invalid)?;
    let mut bytes = BytesMut::zeroed(length);
    bytes[..4].copy_from_slice(&prefix);
    stream.read_exact(&mut bytes[4..]).await?;
    frame::decode_frame(bytes.freeze()).map_err(invalid)
}

fn link_silence() -> Duration {
    Duration::from_millis(CLUSTER_LINK_SILENCE_MS)
}

/// `future`'s output, or None after `timeout_ms`.
async fn with_timeout<T>(
    timeout_ms: u64,
    future: impl std::future::Future<Output = T>,
) -> Option<T> {
    let timeout = runtime::sleep(Duration::from_millis(timeout_ms));
    match select(Box::pin(future), Box::pin(timeout)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}
