//! Fetch responses, encoded by hand as scatter-gather chunks (the consumer hot path).
//!
//! The response is a list of `Bytes`: header pieces (frame length, response header, topic and
//! partition fields) written into one buffer and cut into slices, interleaved with the stored
//! record batches passed through untouched. Nothing is copied out of a batch, and the socket
//! writer sends the chunks with one vectored write.
//!
//! Versions 4 to 18 are encoded; from 12 flexible (compact strings and arrays, unsigned
//! varint lengths, tagged fields, response header v1). Aborted transactions are always null:
//! the broker has no transactions yet. From 11 a partition may name a preferred read replica
//! (KIP-392), from 12 its current leader (a tagged field, KIP-951's use of it); from 13
//! topics are named by id (KIP-516); from 16 the response may carry the endpoints of the
//! leaders it names (a tagged field, KIP-951). 14, 15, 17 and 18 change only the request.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;

/// Oldest Fetch version this encoder writes.
pub const FETCH_VERSION_MIN: i16 = 4;
/// Newest Fetch version this encoder writes.
pub const FETCH_VERSION_MAX: i16 = 18;
/// First flexible Fetch version.
const FETCH_VERSION_FLEXIBLE_MIN: i16 = 12;
/// First version naming topics by id.
const FETCH_VERSION_TOPIC_ID_MIN: i16 = 13;
/// First version whose response may carry node endpoints.
const FETCH_VERSION_NODE_ENDPOINTS_MIN: i16 = 16;
/// The partition's tagged field that names its current leader.
const CURRENT_LEADER_TAG: u32 = 1;
/// The response's tagged field that holds node endpoints.
const NODE_ENDPOINTS_TAG: u32 = 0;

/// A Fetch response, as handlers build it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchResponseData {
    /// Time the request was throttled for, in milliseconds.
    pub throttle_time_ms: i32,
    /// Top-level error (v7+).
    pub error_code: i16,
    /// Fetch session id (v7+); 0 when sessions are not used.
    pub session_id: i32,
    /// The topics answered.
    pub topics: Vec<FetchTopic>,
    /// The endpoints of the leaders partitions name (v16+).
    pub node_endpoints: Vec<FetchNodeEndpoint>,
}

/// A broker's endpoint, as a v16+ response gives it for the leaders it names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchNodeEndpoint {
    pub node_id: i32,
    pub host: StrBytes,
    pub port: i32,
    pub rack: Option<StrBytes>,
}

/// One topic of a [`FetchResponseData`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchTopic {
    /// The topic name (up to v12).
    pub name: StrBytes,
    /// The topic id (v13+).
    pub topic_id: uuid::Uuid,
    /// The partitions answered.
    pub partitions: Vec<FetchPartition>,
}

/// One partition of a [`FetchTopic`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchPartition {
    /// The partition index.
    pub partition_index: i32,
    /// The partition's error code, 0 when none.
    pub error_code: i16,
    /// The high watermark.
    pub high_watermark: i64,
    /// The last stable offset.
    pub last_stable_offset: i64,
    /// The log start offset (v5+).
    pub log_start_offset: i64,
    /// Whole record batches as stored, in offset order; sent as one record set.
    pub records: Vec<Bytes>,
    /// For read_committed fetches, the aborted transactions among `records` as (producer id,
    /// first offset); None (sent as null) otherwise.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    /// The leader id and epoch a NOT_LEADER_OR_FOLLOWER answer names (v12+), if known.
    pub current_leader: Option<(i32, i32)>,
    /// The replica the consumer is to fetch from instead (v11+, KIP-392), if any.
    pub preferred_read_replica: Option<i32>,
}

/// Where a run of record batches goes: after `header_end` bytes of the header buffer.
struct Splice<'a> {
    header_end: usize,
    records: &'a [Bytes],
}

/// Encodes a complete Fetch response frame as chunks to be written in order.
///
/// The first chunk starts with the 4-byte frame length and the response header; record
/// batches are the very `Bytes` given in `response`; empty batches are skipped.
///
/// Preconditions (programmer errors, asserted): `version` is in 4..=18, names are shorter
/// than 32 KiB, and the whole response fits in an `i32` length. The handler bounds record
/// bytes with `limits::FETCH_RESPONSE_BYTES_MAX`, which keeps the last one true.
pub fn encode_fetch_response(
    correlation_id: i32,
    version: i16,
    response: &FetchResponseData,
) -> Vec<Bytes> {
    assert!((FETCH_VERSION_MIN..=FETCH_VERSION_MAX).contains(&version));
    let flexible = version >= FETCH_VERSION_FLEXIBLE_MIN;
    let mut buf = BytesMut::with_capacity(header_capacity(response));
    let mut splices = Vec::new();
    buf.put_i32(0); // Frame length, patched below.
    buf.put_i32(correlation_id);
    if flexible {
        put_unsigned_varint(&mut buf, 0); // Response header v1: no tagged fields.
    }
    buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(response.error_code);
        buf.put_i32(response.session_id);
    }
    put_array_len(&mut buf, response.topics.len(), flexible);
    for topic in &response.topics {
        match version >= FETCH_VERSION_TOPIC_ID_MIN {
            true => buf.put_slice(topic.topic_id.as_bytes()),
            false => put_string(&mut buf, &topic.name, flexible),
        }
        put_array_len(&mut buf, topic.partitions.len(), flexible);
        for partition in &topic.partitions {
            put_partition_head(&mut buf, version, partition);
            let records_len = records_len_bytes(&partition.records);
            put_bytes_len(&mut buf, records_len, flexible);
            splices.push(Splice {
                header_end: buf.len(),
                records: &partition.records,
            });
            if flexible {
                put_partition_tags(&mut buf, partition);
            }
        }
        if flexible {
            put_unsigned_varint(&mut buf, 0); // Topic tagged fields.
        }
    }
    if version >= FETCH_VERSION_NODE_ENDPOINTS_MIN && !response.node_endpoints.is_empty() {
        put_node_endpoints(&mut buf, &response.node_endpoints);
    } else if flexible {
        put_unsigned_varint(&mut buf, 0); // Response tagged fields.
    }
    let records_total: usize = splices.iter().map(|s| records_len_bytes(s.records)).sum();
    let frame_len = buf.len() - 4 + records_total;
    let frame_len = i32::try_from(frame_len).expect("fetch response over i32::MAX bytes");
    buf[..4].copy_from_slice(&frame_len.to_be_bytes());
    gather(buf.freeze(), &splices)
}

/// A partition's tagged fields: its current leader, if it names one.
fn put_partition_tags(buf: &mut BytesMut, partition: &FetchPartition) {
    let Some((leader, epoch)) = partition.current_leader else {
        put_unsigned_varint(buf, 0);
        return;
    };
    put_unsigned_varint(buf, 1);
    put_unsigned_varint(buf, CURRENT_LEADER_TAG);
    put_unsigned_varint(buf, 9); // Two int32s and an empty tag buffer.
    buf.put_i32(leader);
    buf.put_i32(epoch);
    put_unsigned_varint(buf, 0);
}

/// The response's tagged fields when it names node endpoints: that one field.
fn put_node_endpoints(buf: &mut BytesMut, endpoints: &[FetchNodeEndpoint]) {
    let mut field = BytesMut::new();
    put_array_len(&mut field, endpoints.len(), true);
    for endpoint in endpoints {
        field.put_i32(endpoint.node_id);
        put_string(&mut field, &endpoint.host, true);
        field.put_i32(endpoint.port);
        match &endpoint.rack {
            Some(rack) => put_string(&mut field, rack, true),
            None => put_unsigned_varint(&mut field, 0),
        }
        put_unsigned_varint(&mut field, 0);
    }
    put_unsigned_varint(buf, 1);
    put_unsigned_varint(buf, NODE_ENDPOINTS_TAG);
    let len = u32::try_from(field.len()).expect("node endpoints over u32::MAX bytes");
    put_unsigned_varint(buf, len);
    buf.put_slice(&field);
}

/// The fixed fields of a partition, up to and excluding the record set length.
fn put_partition_head(buf: &mut BytesMut, version: i16, partition: &FetchPartition) {
    let flexible = version >= FETCH_VERSION_FLEXIBLE_MIN;
    buf.put_i32(partition.partition_index);
    buf.put_i16(partition.error_code);
    buf.put_i64(partition.high_watermark);
    buf.put_i64(partition.last_stable_offset);
    if version >= 5 {
        buf.put_i64(partition.log_start_offset);
    }
    match (&partition.aborted_transactions, flexible) {
        (None, true) => put_unsigned_varint(buf, 0),
        (None, false) => buf.put_i32(-1),
        (Some(aborted), _) => {
            let count = u32::try_from(aborted.len()).expect("aborted transactions fit a u32");
            match flexible {
                true => put_unsigned_varint(buf, count + 1),
                false => buf.put_i32(i32::try_from(count).expect("fits an i32")),
            }
            for (producer_id, first_offset) in aborted {
                buf.put_i64(*producer_id);
                buf.put_i64(*first_offset);
                if flexible {
                    put_unsigned_varint(buf, 0);
                }
            }
        }
    }
    if version >= 11 {
        buf.put_i32(partition.preferred_read_replica.unwrap_or(-1));
    }
}

/// Interleaves slices of the header buffer with the record batches.
fn gather(header: Bytes, splices: &[Splice<'_>]) -> Vec<Bytes> {
    let batch_count: usize = splices.iter().map(|s| s.records.len()).sum();
    let mut chunks = Vec::with_capacity(splices.len() + batch_count + 1);
    let mut start = 0;
    for splice in splices {
        if records_len_bytes(splice.records) == 0 {
            continue; // Nothing to splice in; the header bytes run on.
        }
        chunks.push(header.slice(start..splice.header_end));
        start = splice.header_end;
        chunks.extend(
            splice
                .records
                .iter()
                .filter(|batch| !batch.is_empty())
                .cloned(),
        );
    }
    chunks.push(header.slice(start..));
    chunks
}

/// Total size of a record set.
fn records_len_bytes(records: &[Bytes]) -> usize {
    records.iter().map(Bytes::len).sum()
}

/// A capacity that holds every header byte of `response` without growing.
fn header_capacity(response: &FetchResponseData) -> usize {
    // Per partition: 4+2+8+8+8 fixed, 4 aborted, 4 replica, 5 length, 1 tags.
    const PARTITION_BYTES_MAX: usize = 44;
    // Per topic: a 5-byte length prefix for the name or a 16-byte id, 5 for the array, 1 for
    // tags.
    const TOPIC_OVERHEAD_BYTES: usize = 27;
    // Per endpoint: 4 id, 4 port, 5 host length, 5 rack length, 1 tags.
    const ENDPOINT_OVERHEAD_BYTES: usize = 19;
    // Per aborted transaction: 8 producer id, 8 first offset, 1 tags.
    const ABORTED_BYTES: usize = 17;
    let aborted = |p: &FetchPartition| p.aborted_transactions.as_ref().map_or(0, Vec::len);
    let topics: usize = response
        .topics
        .iter()
        .map(|t| {
            let aborted: usize = t.partitions.iter().map(aborted).sum();
            TOPIC_OVERHEAD_BYTES
                + t.name.len()
                + t.partitions.len() * PARTITION_BYTES_MAX
                + aborted * ABORTED_BYTES
        })
        .sum();
    let endpoints: usize = response
        .node_endpoints
        .iter()
        .map(|e| ENDPOINT_OVERHEAD_BYTES + e.host.len() + e.rack.as_ref().map_or(0, |r| r.len()))
        .sum();
    // The endpoints' tagged field: 5 for the count, tag and length each.
    32 + topics + endpoints + 15
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Array length: compact (n + 1 as unsigned varint) when flexible, else int32.
fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    let len = u32::try_from(len).ok().filter(|len| *len < i32::MAX as u32);
    let len = len.expect("fetch response array over i32::MAX entries");
    if flexible {
        put_unsigned_varint(buf, len + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

/// Record set length, laid out as a (compact) bytes length.
fn put_bytes_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    put_array_len(buf, len, flexible);
}

fn put_string(buf: &mut BytesMut, value: &str, flexible: bool) {
    if flexible {
        put_array_len(buf, value.len(), true);
    } else {
        let len = i16::try_from(value.len()).expect("topic name over i16::MAX bytes");
        buf.put_i16(len);
    }
    buf.put_slice(value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;

    fn batch(tag: u8, len: usize) -> Bytes {
        Bytes::from(vec![tag; len])
    }

    fn sample() -> FetchResponseData {
        let partition = |index: i32, records: Vec<Bytes>| FetchPartition {
            partition_index: index,
            error_code: if index == 2 { 1 } else { 0 },
            high_watermark: 1000 + i64::from(index),
            last_stable_offset: 900 + i64::from(index),
            log_start_offset: 10 + i64::from(index),
            records,
            current_leader: (index == 2).then_some((3, 7)),
            preferred_read_replica: (index == 1).then_some(2),
            // A read_committed partition with aborted transactions, one without any.
            aborted_transactions: match index {
                0 => Some(vec![(4_000, 17), (4_001, 250)]),
                1 => Some(Vec::new()),
                _ => None,
            },
        };
        let endpoint = |node_id: i32, rack: Option<&'static str>| FetchNodeEndpoint {
            node_id,
            host: StrBytes::from_static_str("broker.example"),
            port: 9092 + node_id,
            rack: rack.map(StrBytes::from_static_str),
        };
        FetchResponseData {
            throttle_time_ms: 17,
            error_code: 0,
            session_id: 4242,
            node_endpoints: vec![endpoint(3, Some("rack-a")), endpoint(5, None)],
            topics: vec![
                FetchTopic {
                    name: StrBytes::from_static_str("orders"),
                    topic_id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
                    partitions: vec![
                        partition(0, vec![batch(1, 70), batch(2, 300), batch(3, 61)]),
                        partition(1, vec![]),
                        partition(2, vec![Bytes::new(), batch(4, 5000)]),
                    ],
                },
                FetchTopic {
                    name: StrBytes::from_static_str("empty-topic"),
                    topic_id: uuid::Uuid::from_u128(7),
                    partitions: vec![],
                },
                FetchTopic {
                    name: StrBytes::from_static_str("audit"),
                    topic_id: uuid::Uuid::from_u128(u128::MAX - 1),
                    partitions: vec![partition(5, vec![batch(9, 128)])],
                },
            ],
        }
    }

    fn concat(chunks: &[Bytes]) -> Bytes {
        let mut all = BytesMut::new();
        for chunk in chunks {
            all.extend_from_slice(chunk);
        }
        all.freeze()
    }

    /// Every version 4..=18 decodes with kafka-protocol to exactly the fields given, with the
    /// batches of each partition concatenated as its record set.
    #[test]
    fn every_version_decodes_to_input() {
        let input = sample();
        for version in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
            let mut frame = concat(&encode_fetch_response(77, version, &input));
            let frame_len = frame.get_i32();
            assert_eq!(frame_len as usize, frame.len(), "v{version}");
            let header_version = if version >= 12 { 1 } else { 0 };
            let header = ResponseHeader::decode(&mut frame, header_version).expect("header");
            assert_eq!(header.correlation_id, 77);
            let decoded = FetchResponse::decode(&mut frame, version).expect("body");
            assert!(frame.is_empty(), "v{version}: {} bytes left", frame.len());
            assert_matches_input(&decoded, &input, version);
        }
    }

    fn assert_matches_input(decoded: &FetchResponse, input: &FetchResponseData, version: i16) {
        assert_eq!(decoded.throttle_time_ms, input.throttle_time_ms);
        if version >= 7 {
            assert_eq!(decoded.error_code, input.error_code);
            assert_eq!(decoded.session_id, input.session_id);
        }
        let endpoints: Vec<FetchNodeEndpoint> = decoded
            .node_endpoints
            .iter()
            .map(|e| FetchNodeEndpoint {
                node_id: e.node_id.0,
                host: e.host.clone(),
                port: e.port,
                rack: e.rack.clone(),
            })
            .collect();
        match version >= 16 {
            true => assert_eq!(endpoints, input.node_endpoints, "v{version}"),
            false => assert!(endpoints.is_empty(), "v{version}"),
        }
        assert_eq!(decoded.responses.len(), input.topics.len());
        for (got, want) in decoded.responses.iter().zip(&input.topics) {
            match version >= 13 {
                true => assert_eq!((got.topic_id, got.topic.0.as_str()), (want.topic_id, "")),
                false => assert_eq!(
                    (got.topic_id, &got.topic.0),
                    (uuid::Uuid::nil(), &want.name)
                ),
            }
            assert_eq!(got.partitions.len(), want.partitions.len());
            for (p, q) in got.partitions.iter().zip(&want.partitions) {
                assert_eq!(p.partition_index, q.partition_index);
                assert_eq!(p.error_code, q.error_code);
                assert_eq!(p.high_watermark, q.high_watermark);
                assert_eq!(p.last_stable_offset, q.last_stable_offset);
                let log_start = if version >= 5 { q.log_start_offset } else { -1 };
                assert_eq!(p.log_start_offset, log_start);
                let aborted = p.aborted_transactions.as_ref().map(|list| {
                    let pairs = list.iter();
                    pairs
                        .map(|t| (t.producer_id.0, t.first_offset))
                        .collect::<Vec<_>>()
                });
                assert_eq!(aborted, q.aborted_transactions, "v{version}");
                let preferred = if version >= 11 {
                    q.preferred_read_replica.unwrap_or(-1)
                } else {
                    -1
                };
                assert_eq!(p.preferred_read_replica.0, preferred, "v{version}");
                assert_eq!(p.records.as_ref(), Some(&concat(&q.records)), "v{version}");
                let leader = &p.current_leader;
                let named =
                    (leader.leader_id.0 >= 0).then_some((leader.leader_id.0, leader.leader_epoch));
                let expected = if version >= 12 {
                    q.current_leader
                } else {
                    None
                };
                assert_eq!(named, expected, "v{version}");
            }
        }
    }

    /// Record batches are passed through as the same memory, never copied, and the header
    /// pieces between them are few.
    #[test]
    fn batches_are_not_copied() {
        let input = sample();
        let chunks = encode_fetch_response(1, 12, &input);
        let batches: Vec<&Bytes> = input
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.records)
            .filter(|b| !b.is_empty())
            .collect();
        for batch in &batches {
            assert!(chunks
                .iter()
                .any(|c| c.as_ptr() == batch.as_ptr() && c.len() == batch.len()));
        }
        // Three partitions carry records: one header piece before each run, one at the end.
        assert_eq!(chunks.len(), batches.len() + 4);
    }

    /// A response without records is a single chunk holding the whole frame.
    #[test]
    fn empty_response_is_one_chunk() {
        let input = FetchResponseData {
            session_id: 5,
            ..FetchResponseData::default()
        };
        for version in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
            let chunks = encode_fetch_response(3, version, &input);
            assert_eq!(chunks.len(), 1);
            let mut frame = chunks[0].clone();
            assert_eq!(frame.get_i32() as usize, frame.len());
        }
    }
}
