//! The Kafka wire protocol: request decoding, response encoding and the version table.
//!
//! This module knows bytes and Kafka types and nothing about shards, partitions' owners or
//! disks. Control-plane messages use the `kafka-protocol` crate's generated types; the hot
//! paths (Fetch responses, and Produce record batches kept as raw `Bytes`) are written by hand.
//! Every function here is total on network input: bad bytes give an error, never a panic.

pub mod codec;
pub mod control;
pub mod fetch_response;
pub mod produce_legacy;
pub mod record_batch;
pub mod records;
pub mod versions;

pub use codec::{
    decode_request, encode_api_versions_unsupported, encode_response, request_frame_length,
    set_throttle_time, DecodeError, DecodedRequest, EncodeError, RequestBody,
};
pub use fetch_response::{
    encode_fetch_response, FetchNodeEndpoint, FetchPartition, FetchResponseData, FetchTopic,
};
pub use versions::{is_supported, supported_range, ApiRange, SUPPORTED_APIS};

use kafka_protocol::protocol::StrBytes;

/// A Kafka string field from any text.
pub fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}
