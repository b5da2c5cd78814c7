//! Newtypes for the numbers that name a place in a log or a thing in a cluster.
//!
//! An offset, a leader epoch, a node id, a shard id and a partition id are all small integers
//! on the wire, and a function that takes two of them as plain `i64`/`i32` takes them in
//! either order. These types keep them apart from each other and from counts and positions.
//! They are plain values (`Copy`, ordered, hashable) with the wire integer inside; the wire
//! types of `protocol` and `kafka-protocol` stay integers, and handlers convert at the edge.
//! This module knows nothing else, so every layer may import it.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Serialize};

/// A position in one partition's log: the offset of a record. Offsets are dense and never
/// change once committed. Adding a count moves along the log; the difference of two offsets
/// is a count.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub i64);

impl Offset {
    pub const ZERO: Offset = Offset(0);
    /// -1 on the wire: no offset (a response to a failed request, or one not known).
    pub const NONE: Offset = Offset(-1);

    /// The wire value.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The offset right after this one.
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl Add<i64> for Offset {
    type Output = Offset;

    fn add(self, count: i64) -> Offset {
        Offset(self.0 + count)
    }
}

impl AddAssign<i64> for Offset {
    fn add_assign(&mut self, count: i64) {
        self.0 += count;
    }
}

impl Sub for Offset {
    type Output = i64;

    /// How many offsets lie from `other` up to `self`.
    fn sub(self, other: Offset) -> i64 {
        self.0 - other.0
    }
}

impl Sub<i64> for Offset {
    type Output = Offset;

    fn sub(self, count: i64) -> Offset {
        Offset(self.0 - count)
    }
}

/// The epoch of a partition's leadership: the batch header's partitionLeaderEpoch (the Raft
/// term in a cluster). -1 on the wire means unknown.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LeaderEpoch(pub i32);

impl LeaderEpoch {
    /// What a client sends when it does not know the epoch.
    pub const UNKNOWN: LeaderEpoch = LeaderEpoch(-1);

    pub const fn get(self) -> i32 {
        self.0
    }
}

/// A node of the cluster: Kafka's `node.id` (its `broker.id`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub i32);

impl NodeId {
    pub const fn get(self) -> i32 {
        self.0
    }
}

/// A shard of one node: the index of its core's executor, from 0.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ShardId(pub usize);

impl ShardId {
    pub const fn get(self) -> usize {
        self.0
    }

    /// Every shard of a node with `count` shards.
    pub fn all(count: usize) -> impl Iterator<Item = ShardId> {
        (0..count).map(ShardId)
    }
}

/// A partition of one topic, from 0.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct PartitionId(pub i32);

impl PartitionId {
    pub const fn get(self) -> i32 {
        self.0
    }

    /// Partitions `0..count` of a topic.
    pub fn all(count: i32) -> impl Iterator<Item = PartitionId> {
        (0..count).map(PartitionId)
    }
}

macro_rules! display_inner {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

display_inner!(Offset, LeaderEpoch, NodeId, ShardId, PartitionId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_move_by_counts_and_differ_by_counts() {
        let start = Offset(10);
        assert_eq!(start + 5, Offset(15));
        assert_eq!(Offset(15) - start, 5);
        assert_eq!(start.next(), Offset(11));
        assert_eq!(Offset(15) - 5, start);
        assert_eq!(format!("{start}"), "10");
    }
}
