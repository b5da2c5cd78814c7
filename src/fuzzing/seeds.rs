//! Seed inputs for the fuzz targets, encoded by the same code clients and the broker use, so
//! that fuzzing starts from real requests, batches and segments rather than from nothing.
//! `tests/fuzz_replay.rs` writes them to `tests/fuzz/seeds/<target>/` and replays them.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, GroupId, RequestKind, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;

use super::{request_frame, FIX_CRC, FIX_LENGTH};
use crate::protocol::produce_legacy::PRODUCE_LEGACY_VERSION_MAX;
use crate::protocol::record_batch::{self, encode_plain_batch, PlainRecord};
use crate::protocol::{decode_request, RequestBody, SUPPORTED_APIS};

/// One seed: the target it feeds, a file name, and its bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = request_seeds();
    seeds.extend(batch_seeds());
    seeds.extend(segment_seeds());
    seeds.extend(sasl_seeds());
    seeds
}

/// SASL tokens as clients send them: `[mechanism, split]` then the tokens (see
/// `fuzzing::sasl_exchange`; mechanisms in `SaslMechanism::ALL` order: SCRAM-SHA-512,
/// SCRAM-SHA-256, PLAIN).
fn sasl_seeds() -> Vec<Seed> {
    let plain = format!("\0alice\0{}", super::sasl::PASSWORD);
    let first = "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
    let last = "c=biws,r=fyko+d2lbbFgONRv9qkxdawLnonce,p=dHpbYXBhc3N3b3Jk";
    let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    let two = |a: &str, b: &str| {
        let mut bytes = vec![a.len() as u8];
        bytes.extend_from_slice(a.as_bytes());
        bytes.extend_from_slice(b.as_bytes());
        bytes
    };
    let seed = |name: &str, mechanism: u8, rest: Vec<u8>| {
        let mut bytes = vec![mechanism];
        bytes.extend(rest);
        Seed {
            target: "sasl_exchange",
            name: name.into(),
            bytes,
        }
    };
    vec![
        seed("plain", 2, two(&plain, "")),
        seed("scram_512_first", 0, two(first, "")),
        seed("scram_256_both", 1, two(first, last)),
        seed("server_first", 0, two("", server_first)),
    ]
}

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "none"),
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];

/// A batch of `count` small records (keys on the even ones) with base offset 0.
fn batch(count: i64, compression: Compression) -> Vec<u8> {
    let records = (0..count).map(|i| PlainRecord {
        timestamp: 1_700_000_000_000 + i,
        key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(format!("value {i} value {i} value {i}"))),
    });
    encode_plain_batch(records, compression)
        .expect("plain batches encode")
        .to_vec()
}

fn str(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

/// A body with some content for the APIs where empty bodies would leave whole decoders
/// unvisited; `None` for the rest.
fn rich_body(api_key: ApiKey) -> Option<RequestKind> {
    let topic = TopicName(str("orders"));
    Some(match api_key {
        ApiKey::Produce => {
            let partition = m::produce_request::PartitionProduceData::default()
                .with_records(Some(Bytes::from(batch(3, Compression::Gzip))));
            let topic = m::produce_request::TopicProduceData::default()
                .with_name(topic)
                .with_partition_data(vec![partition]);
            RequestKind::Produce(m::ProduceRequest::default().with_topic_data(vec![topic]))
        }
        ApiKey::Metadata => {
            let topic = m::metadata_request::MetadataRequestTopic::default().with_name(Some(topic));
            RequestKind::Metadata(m::MetadataRequest::default().with_topics(Some(vec![topic])))
        }
        ApiKey::JoinGroup => {
            let subscription = m::ConsumerProtocolSubscription::default()
                .with_topics(vec![str("orders"), str("payments")]);
            let mut metadata = BytesMut::new();
            metadata.put_i16(1);
            subscription.encode(&mut metadata, 1).expect("subscription");
            let protocol = m::join_group_request::JoinGroupRequestProtocol::default()
                .with_name(str("range"))
                .with_metadata(metadata.freeze());
            RequestKind::JoinGroup(
                m::JoinGroupRequest::default()
                    .with_group_id(GroupId(str("group")))
                    .with_protocol_type(str("consumer"))
                    .with_protocols(vec![protocol]),
            )
        }
        ApiKey::CreateTopics => {
            let config = m::create_topics_request::CreatableTopicConfig::default()
                .with_name(str("retention.ms"))
                .with_value(Some(str("1000")));
            let topic = m::create_topics_request::CreatableTopic::default()
                .with_name(topic)
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![config]);
            RequestKind::CreateTopics(m::CreateTopicsRequest::default().with_topics(vec![topic]))
        }
        ApiKey::OffsetCommit => {
            let partition = m::offset_commit_request::OffsetCommitRequestPartition::default()
                .with_committed_offset(5);
            let topic = m::offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic)
                .with_partitions(vec![partition]);
            RequestKind::OffsetCommit(
                m::OffsetCommitRequest::default()
                    .with_group_id(GroupId(str("group")))
                    .with_topics(vec![topic]),
            )
        }
        ApiKey::ListOffsets => {
            let partition =
                m::list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1);
            let topic = m::list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic)
                .with_partitions(vec![partition]);
            RequestKind::ListOffsets(m::ListOffsetsRequest::default().with_topics(vec![topic]))
        }
        ApiKey::CreateAcls => {
            let creation = m::create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(str("orders."))
                .with_resource_pattern_type(4)
                .with_principal(str("User:alice"))
                .with_host(str("*"))
                .with_operation(3)
                .with_permission_type(3);
            RequestKind::CreateAcls(m::CreateAclsRequest::default().with_creations(vec![creation]))
        }
        ApiKey::DeleteAcls => {
            let filter = m::delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(str("orders")))
                .with_pattern_type_filter(2)
                .with_principal_filter(Some(str("User:alice")))
                .with_operation(1)
                .with_permission_type(1);
            RequestKind::DeleteAcls(m::DeleteAclsRequest::default().with_filters(vec![filter]))
        }
        ApiKey::AlterClientQuotas => {
            let entity = m::alter_client_quotas_request::EntityData::default()
                .with_entity_type(str("user"))
                .with_entity_name(Some(str("alice")));
            let op = m::alter_client_quotas_request::OpData::default()
                .with_key(str("producer_byte_rate"))
                .with_value(1048576.0);
            let entry = m::alter_client_quotas_request::EntryData::default()
                .with_entity(vec![entity])
                .with_ops(vec![op]);
            RequestKind::AlterClientQuotas(
                m::AlterClientQuotasRequest::default().with_entries(vec![entry]),
            )
        }
        _ => return None,
    })
}

/// The body of `api_key` at `version`: the rich one if it encodes there, else an empty one.
fn body_bytes(api_key: ApiKey, version: i16) -> Option<Vec<u8>> {
    let encode = |body: &RequestKind| {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version).ok().map(|()| buf.to_vec())
    };
    if api_key == ApiKey::Produce && version <= PRODUCE_LEGACY_VERSION_MAX {
        // A v0-2 body is the v3 body without its (null) transactional id.
        return body_bytes(api_key, 3).map(|v3| v3[2..].to_vec());
    }
    if let Some(bytes) = rich_body(api_key).as_ref().and_then(encode) {
        return Some(bytes);
    }
    // An empty body of any API: decode filler and encode back what it decoded to. Zeros are
    // empty arrays and strings in the classic encoding, ones in the compact (flexible) one.
    [0u8, 1].into_iter().find_map(|filler| {
        let frame = request_frame(api_key, version, &[filler; 64]);
        match decode_request(frame).ok()?.body {
            RequestBody::Decoded(body) => encode(&body),
            RequestBody::ApiVersionsUnsupported => None,
        }
    })
}

/// `request_body` seeds (`[api pick, version pick, body]`) for every served API and version,
/// and `request_stream` seeds of one and of several length-prefixed frames.
fn request_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut stream = Vec::new();
    for (pick, range) in SUPPORTED_APIS.iter().enumerate() {
        for version in range.version_min..=range.version_max {
            let Some(body) = body_bytes(range.api_key, version) else {
                continue;
            };
            let name = format!("{:?}-v{version}", range.api_key).to_lowercase();
            let mut input = vec![pick as u8, (version - range.version_min) as u8];
            input.extend_from_slice(&body);
            seeds.push(Seed {
                target: "request_body",
                name: name.clone(),
                bytes: input,
            });
            if version == range.version_max || version == range.version_min {
                let frame = request_frame(range.api_key, version, &body);
                let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
                framed.extend_from_slice(&frame);
                stream.extend_from_slice(&framed);
                seeds.push(Seed {
                    target: "request_stream",
                    name,
                    bytes: framed,
                });
            }
        }
    }
    seeds.push(Seed {
        target: "request_stream",
        name: "all-apis".into(),
        bytes: stream,
    });
    seeds
}

/// `record_batch` seeds: one batch per codec, a producer batch, a control batch, two batches
/// back to back, and copies flagged to have their length and CRC fixed after mutation.
fn batch_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut push = |name: String, flags: u8, bytes: &[u8]| {
        let mut input = vec![flags];
        input.extend_from_slice(bytes);
        seeds.push(Seed {
            target: "record_batch",
            name,
            bytes: input,
        });
    };
    for (codec, codec_name) in CODECS {
        let bytes = batch(5, codec);
        push(codec_name.to_string(), 0, &bytes);
        push(format!("{codec_name}-fix"), FIX_LENGTH | FIX_CRC, &bytes);
    }
    let mut producer = batch(2, Compression::None);
    producer[43..51].copy_from_slice(&7i64.to_be_bytes()); // producerId
    producer[51..53].copy_from_slice(&0i16.to_be_bytes()); // producerEpoch
    producer[53..57].copy_from_slice(&0i32.to_be_bytes()); // baseSequence
    push("producer-fix".into(), FIX_CRC, &producer);
    let mut control = batch(1, Compression::None);
    control[21..23].copy_from_slice(&record_batch::ATTRIBUTE_CONTROL.to_be_bytes());
    push("control-fix".into(), FIX_CRC, &control);
    let mut two = batch(2, Compression::None);
    two.extend_from_slice(&batch(3, Compression::Lz4));
    push("two-batches".into(), 0, &two);
    // Timestamps further apart than 32 bits: the second record's delta is a 6-byte varlong,
    // which the record decoder once read as an int32 varint (ListOffsets then missed it).
    let wide = [1234, 999_999_999_999].map(|timestamp| PlainRecord {
        timestamp,
        key: None,
        value: Some(Bytes::from_static(b"wide")),
    });
    let wide = encode_plain_batch(wide, Compression::None).expect("plain batches encode");
    push("wide-timestamps".into(), 0, &wide);
    seeds
}

/// `segment_recovery` seeds: batches of every codec with continuing offsets, then the same
/// followed by block padding, by a torn batch, and by a batch that breaks the offsets.
fn segment_seeds() -> Vec<Seed> {
    let mut log = Vec::new();
    let mut offset = 0i64;
    for (codec, _) in CODECS {
        let mut bytes = batch(3, codec);
        record_batch::set_base_offset(&mut bytes, offset);
        offset += 3;
        log.extend_from_slice(&bytes);
    }
    let mut padded = log.clone();
    padded.resize(log.len().next_multiple_of(4096), 0);
    let mut torn = log.clone();
    torn.extend_from_slice(&batch(2, Compression::None)[..40]);
    let mut gap = log.clone();
    gap.extend_from_slice(&batch(2, Compression::None)); // Base offset 0 again.
    [
        ("log", log),
        ("padded", padded),
        ("torn", torn),
        ("gap", gap),
    ]
    .into_iter()
    .map(|(name, bytes)| Seed {
        target: "segment_recovery",
        name: name.into(),
        bytes,
    })
    .collect()
}
