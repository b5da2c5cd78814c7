//! Node-to-node messages: how a shard of one node reaches a shard of another.
//!
//! The replication layer (Raft for the metadata log and for every partition) speaks to its
//! peers only through [`Transport`]: it sends opaque payloads to an [`Address`] (a node and
//! one of its shards) and is handed the payloads addressed to it. Two implementations:
//!
//! - [`tcp::TcpTransport`], the broker's: one TCP link per ordered pair of shards on
//!   different nodes, payloads coalesced into frames (`frame`), links handed to the shard
//!   they name when the kernel's SO_REUSEPORT spread lands them on another one;
//! - [`sim::SimNetwork`], the simulation's: every node in one thread, deliveries scheduled
//!   on the `runtime::clock`, with drops, delays (so reordering) and cut links drawn from a
//!   seed, so that a run replays exactly.
//!
//! Delivery is at most once and not ordered across links: a payload may be lost (a broken
//! link, a full queue, a simulated drop) and the layer above must resend what matters, as
//! Raft does. Sending never waits. This module knows nothing of what payloads mean.

pub mod frame;
pub mod sim;
pub mod tcp;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;

pub use frame::{Address, Hello};

/// Where a transport hands the payloads addressed to its shard: the sender and the payload.
/// Called on the shard's executor; it must not block (queue the work instead).
pub type Deliver = Rc<dyn Fn(Address, Bytes)>;

/// One shard's way to send to shards of other nodes.
pub trait Transport {
    /// The shard this transport sends from.
    fn local(&self) -> Address;

    /// Queues `payload` for `to`, a shard of another node. Never waits; the payload may be
    /// lost (see the module documentation).
    fn send(&self, to: Address, payload: Bytes);
}

/// Counters of one shard's transport.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Payloads written to a link (or, simulated, scheduled for delivery).
    pub sent: Cell<u64>,
    /// Frames written to links (payloads queued together share one), and their bytes.
    pub frames_sent: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    /// Payloads handed to this shard.
    pub received: Cell<u64>,
    /// Payloads lost on the sending side: a full queue, an unreachable peer, a broken link,
    /// a simulated drop or cut.
    pub dropped: Cell<u64>,
}
