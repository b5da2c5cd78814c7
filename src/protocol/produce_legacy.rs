//! Produce v0-2, which the `kafka-protocol` crate no longer decodes or encodes.
//!
//! The broker advertises Produce from v0 (as Kafka 4 does, because librdkafka refuses to
//! compress otherwise) but serves only v3 and newer. It must still read a v0-2 request well
//! enough to answer every partition with UNSUPPORTED_VERSION, so this module decodes the body
//! into the crate's `ProduceRequest` and encodes the crate's `ProduceResponse` in the old
//! layouts.
//!
//! Layouts: a v0-2 request body is the v3 body without `transactional_id`. The v2 response
//! body equals v3; v1 lacks `log_append_time_ms`; v0 also lacks `throttle_time_ms`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::Decodable;

/// Newest Produce version handled here; v3 and newer go through the crate.
pub const PRODUCE_LEGACY_VERSION_MAX: i16 = 2;

/// Decodes a Produce v0-2 request body (the bytes after the request header).
///
/// Record sets stay slices of `body`. The nested topic and partition layouts are those of
/// v3, so the crate decodes them at v3.
pub fn decode_produce_legacy(body: &mut Bytes, version: i16) -> Result<ProduceRequest, String> {
    assert!((0..=PRODUCE_LEGACY_VERSION_MAX).contains(&version));
    let acks = take_i16(body)?;
    let timeout_ms = take_i32(body)?;
    let topic_count = take_i32(body)?;
    // A topic takes at least six bytes (name length and partition count), so a count beyond
    // the remaining bytes is malformed; refusing it here bounds the allocation below.
    let topic_count = usize::try_from(topic_count)
        .ok()
        .filter(|count| *count <= body.remaining())
        .ok_or_else(|| format!("topic count {topic_count} is invalid"))?;
    let mut topic_data = Vec::with_capacity(topic_count);
    for _ in 0..topic_count {
        let topic = TopicProduceData::decode(body, 3).map_err(|error| error.to_string())?;
        topic_data.push(topic);
    }
    Ok(ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topic_data))
}

fn take_i16(buf: &mut Bytes) -> Result<i16, String> {
    if buf.remaining() < 2 {
        return Err("truncated int16".to_string());
    }
    Ok(buf.get_i16())
}

fn take_i32(buf: &mut Bytes) -> Result<i32, String> {
    if buf.remaining() < 4 {
        return Err("truncated int32".to_string());
    }
    Ok(buf.get_i32())
}

/// Appends a Produce v0-2 response body to `buf`.
///
/// Only the fields these versions carry are written; the rest of `response` is ignored.
pub fn encode_produce_legacy_body(
    buf: &mut BytesMut,
    version: i16,
    response: &ProduceResponse,
) -> Result<(), String> {
    assert!((0..=PRODUCE_LEGACY_VERSION_MAX).contains(&version));
    put_count(buf, response.responses.len())?;
    for topic in &response.responses {
        let name: &str = &topic.name;
        let name_len = i16::try_from(name.len()).map_err(|_| "topic name too long")?;
        buf.put_i16(name_len);
        buf.put_slice(name.as_bytes());
        put_count(buf, topic.partition_responses.len())?;
        for partition in &topic.partition_responses {
            buf.put_i32(partition.index);
            buf.put_i16(partition.error_code);
            buf.put_i64(partition.base_offset);
            if version >= 2 {
                buf.put_i64(partition.log_append_time_ms);
            }
        }
    }
    if version >= 1 {
        buf.put_i32(response.throttle_time_ms);
    }
    Ok(())
}

fn put_count(buf: &mut BytesMut, count: usize) -> Result<(), String> {
    let count = i32::try_from(count).map_err(|_| "array too long")?;
    buf.put_i32(count);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::PartitionProduceData;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn sample_request() -> ProduceRequest {
        let partition = PartitionProduceData::default()
            .with_index(7)
            .with_records(Some(Bytes::from_static(b"batch-bytes")));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(vec![partition]);
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1500)
            .with_topic_data(vec![topic])
    }

    /// A v0-2 body (the v3 body minus its leading transactional_id) decodes to the same request.
    #[test]
    fn decodes_v3_body_without_transactional_id() {
        let request = sample_request();
        let mut v3 = BytesMut::new();
        request.encode(&mut v3, 3).expect("encode v3");
        let mut v3 = v3.freeze();
        // A null transactional_id is the two bytes 0xffff.
        assert_eq!(&v3[..2], &[0xff, 0xff]);
        v3.advance(2);
        for version in 0..=PRODUCE_LEGACY_VERSION_MAX {
            let decoded = decode_produce_legacy(&mut v3.clone(), version).expect("decode");
            assert_eq!(decoded, request);
        }
    }

    /// Truncated and lying bodies are errors, not panics or huge allocations.
    #[test]
    fn rejects_truncated_and_oversized_counts() {
        let mut v3 = BytesMut::new();
        sample_request().encode(&mut v3, 3).expect("encode v3");
        let body = v3.freeze().slice(2..);
        for cut in 0..body.len() {
            assert!(
                decode_produce_legacy(&mut body.slice(..cut), 0).is_err(),
                "cut {cut}"
            );
        }
        let lying = Bytes::from_static(&[0, 1, 0, 0, 0, 10, 0x7f, 0xff, 0xff, 0xff]);
        assert!(decode_produce_legacy(&mut lying.clone(), 2).is_err());
    }

    fn sample_response() -> ProduceResponse {
        let partition = PartitionProduceResponse::default()
            .with_index(3)
            .with_error_code(35)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1);
        let topic = TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_responses(vec![partition]);
        ProduceResponse::default()
            .with_responses(vec![topic])
            .with_throttle_time_ms(9)
    }

    /// v2 encodes exactly as the crate's v3; v1 drops log_append_time; v0 drops throttle time.
    #[test]
    fn response_layouts_per_version() {
        let response = sample_response();
        let mut v3 = BytesMut::new();
        response.encode(&mut v3, 3).expect("encode v3");
        let mut v2 = BytesMut::new();
        encode_produce_legacy_body(&mut v2, 2, &response).expect("v2");
        assert_eq!(v2, v3);
        let mut v1 = BytesMut::new();
        encode_produce_legacy_body(&mut v1, 1, &response).expect("v1");
        assert_eq!(v1.len(), v2.len() - 8);
        assert_eq!(&v1[v1.len() - 4..], &9i32.to_be_bytes());
        let mut v0 = BytesMut::new();
        encode_produce_legacy_body(&mut v0, 0, &response).expect("v0");
        assert_eq!(&v0[..], &v1[..v1.len() - 4]);
    }
}
