//! Replication: partitions (and, next, the metadata log) replicated by Raft among their
//! replicas, with tikv's raft-rs as the consensus core.
//!
//! - `entries`: one Raft entry is one record batch, stamped at the log end by every replica;
//! - `window`: raft-rs's view of the log (an index window over the partition's batches) and
//!   the durable anchor beside it;
//! - `replica`: one group's replica, a `RawNode` driven on the partition's shard;
//! - `membership`: the steps that move a group's voters to a target (reassignment);
//! - `replicas`: a shard's replicas, their one timer and the dispatch of peers' payloads;
//! - `message`: what replicas send each other over the `transport`.
//!
//! Layering: above `partition` (whose log the replica writes through the partition's replica
//! operations) and `transport`; below `shard`. It knows nothing of the wire protocol.

pub mod entries;
mod logger;
pub mod membership;
pub mod message;
pub mod replica;
pub mod replicas;
#[cfg(test)]
mod sim_tests;
pub mod window;

pub use membership::Membership;
pub use message::{Envelope, GroupId};
pub use replica::{
    Committed, GroupState, ProposeError, Replica, ReplicaConfig, ReplicaSpec, Until, VoterState,
};
pub use replicas::Replicas;
