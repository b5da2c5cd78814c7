//! corelog: a Kafka-wire-compatible message broker, thread-per-core on io_uring.
//!
//! The crate is a library plus one binary (`src/main.rs`) so that integration tests and
//! benchmarks can reach the same code the broker runs. See ARCHITECTURE.md for the map.

pub mod acl_cli;
pub mod bench;
pub mod client;
pub mod cluster_cli;
pub mod config;
pub mod fuzzing;
pub mod group;
pub mod group_cli;
pub mod ids;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod quota;
pub mod quota_cli;
pub mod replication;
pub mod runtime;
pub mod security;
pub mod seeded;
pub mod serve;
pub mod server;
pub mod shard;
pub mod storage;
pub mod sync;
pub mod topic;
pub mod transport;
pub mod tune;
pub mod txn;
pub mod user_cli;
