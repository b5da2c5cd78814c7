//! Kafka wire formats: bytes and Kafka types only, nothing about shards or disks.
pub mod record_batch;
