//! Request decoding and response encoding for the control-plane APIs.
//!
//! Input is one request frame without its 4-byte length; output is one complete response
//! frame with its length. Invariants:
//! - No byte sequence from the network panics or makes the decoder allocate more than a small
//!   multiple of the frame: every length is checked against the bytes that remain.
//! - Decoding is zero-copy: the header's client id and every Produce record set are slices of
//!   the frame, so the broker hands record batches on as received.
//! - Only versions in [`super::versions::SUPPORTED_APIS`] get their body decoded. The one
//!   exception Kafka makes is kept: an ApiVersions request of an unsupported version yields
//!   [`RequestBody::ApiVersionsUnsupported`] so the broker can answer error 35 with its ranges.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;

use super::produce_legacy::{
    decode_produce_legacy, encode_produce_legacy_body, PRODUCE_LEGACY_VERSION_MAX,
};
use super::versions::{api_versions_entries, supported_range};
use crate::limits::{REQUEST_BYTES_MAX, RESPONSE_BYTES_MAX};

/// Bytes before the client id: api key, api version and correlation id.
const REQUEST_HEADER_FIXED_BYTES: usize = 8;

/// A request whose header parsed and whose API the broker serves.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The API, already checked to be one Kafka defines (it is also in the header, as a
    /// raw `i16`).
    pub api_key: ApiKey,
    /// The request header (api key, version, correlation id, client id).
    pub header: RequestHeader,
    /// The decoded body, or the mark of an ApiVersions request of an unsupported version.
    pub body: RequestBody,
}

/// The body of a [`DecodedRequest`].
// Boxing `RequestKind` would shrink only the rare ApiVersionsUnsupported mark, at the price of
// an allocation on every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// A body decoded at the header's version. Produce v0-2 also arrive here, decoded into the
    /// v3 type; the handler must answer them with UNSUPPORTED_VERSION per partition (see
    /// [`super::versions::PRODUCE_VERSION_SERVED_MIN`]).
    Decoded(RequestKind),
    /// An ApiVersions request of a version outside the supported range. Its body is not read;
    /// answer it with [`encode_api_versions_unsupported`].
    ApiVersionsUnsupported,
}

/// Why a request frame could not be decoded. The broker closes the connection on any of
/// these, as Kafka does; the correlation id, where known, is there for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame cannot hold even the fixed part of a request header.
    #[error("request frame of {len_bytes} bytes is shorter than a request header")]
    FrameTooShort {
        /// Size of the frame received.
        len_bytes: usize,
    },
    /// The frame is over [`REQUEST_BYTES_MAX`]; the framer should have refused it already.
    #[error("request frame of {len_bytes} bytes is over the limit")]
    FrameTooLarge {
        /// Size of the frame received.
        len_bytes: usize,
    },
    /// The API key is not one Kafka defines.
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        /// The key as received.
        api_key: i16,
        /// Correlation id of the request.
        correlation_id: i32,
    },
    /// The broker does not serve this API, or not at this version.
    #[error("{api_key:?} v{api_version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion {
        /// The API requested.
        api_key: ApiKey,
        /// The version requested.
        api_version: i16,
        /// Correlation id of the request.
        correlation_id: i32,
    },
    /// The header or body does not parse at the version given.
    #[error("malformed {api_key:?} v{api_version} request: {reason}")]
    Malformed {
        /// The API requested.
        api_key: ApiKey,
        /// The version requested.
        api_version: i16,
        /// Correlation id of the request.
        correlation_id: i32,
        /// What the parser found wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The correlation id of the failed request, when the frame was long enough to carry one.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            DecodeError::FrameTooShort { .. } | DecodeError::FrameTooLarge { .. } => None,
            DecodeError::UnknownApiKey { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. }
            | DecodeError::Malformed { correlation_id, .. } => Some(*correlation_id),
        }
    }
}

/// A response could not be encoded: a programmer error (a field out of range for the
/// version, a body of the wrong API, or a response over [`RESPONSE_BYTES_MAX`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    /// The API of the response.
    pub api_key: ApiKey,
    /// The version asked for.
    pub api_version: i16,
    /// What went wrong.
    pub reason: String,
}

/// The body length a request frame's 4-byte big-endian prefix declares, refused when negative
/// or over `frame_bytes_max` (`socket.request.max.bytes`): such a peer is closed unread.
pub fn request_frame_length(prefix: [u8; 4], frame_bytes_max: usize) -> Result<usize, String> {
    let length = i32::from_be_bytes(prefix);
    match usize::try_from(length) {
        Ok(length) if length <= frame_bytes_max => Ok(length),
        _ => Err(format!(
            "frame length {length} is outside 0..={frame_bytes_max} (socket.request.max.bytes)"
        )),
    }
}

/// Decodes one request frame: the bytes after the 4-byte length prefix.
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    if frame.len() > REQUEST_BYTES_MAX {
        return Err(DecodeError::FrameTooLarge {
            len_bytes: frame.len(),
        });
    }
    if frame.len() < REQUEST_HEADER_FIXED_BYTES {
        return Err(DecodeError::FrameTooShort {
            len_bytes: frame.len(),
        });
    }
    let mut fixed = &frame[..REQUEST_HEADER_FIXED_BYTES];
    let api_key_raw = fixed.get_i16();
    let api_version = fixed.get_i16();
    let correlation_id = fixed.get_i32();
    let api_key = ApiKey::try_from(api_key_raw).map_err(|_| DecodeError::UnknownApiKey {
        api_key: api_key_raw,
        correlation_id,
    })?;
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        api_version,
        correlation_id,
        reason,
    };
    let served = supported_range(api_key).is_some_and(|range| range.contains(api_version));
    if !served && api_key != ApiKey::ApiVersions {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
        });
    }
    // Header v2 (flexible requests) still carries a non-compact client id; the crate's
    // RequestHeader decoder reads it that way.
    let mut rest = frame;
    let header_version = api_key.request_header_version(api_version);
    let header = RequestHeader::decode(&mut rest, header_version)
        .map_err(|error| malformed(format!("header: {error:#}")))?;
    if !served {
        return Ok(DecodedRequest {
            api_key,
            header,
            body: RequestBody::ApiVersionsUnsupported,
        });
    }
    let body = if api_key == ApiKey::Produce && api_version <= PRODUCE_LEGACY_VERSION_MAX {
        decode_produce_legacy(&mut rest, api_version)
            .map(RequestKind::Produce)
            .map_err(malformed)?
    } else {
        RequestKind::decode(api_key, &mut rest, api_version)
            .map_err(|error| malformed(format!("{error:#}")))?
    };
    // Trailing bytes are tolerated, as Kafka's parser tolerates them.
    Ok(DecodedRequest {
        api_key,
        header,
        body: RequestBody::Decoded(body),
    })
}

/// Encodes a complete response frame: 4-byte length, response header and body.
///
/// The header version follows the API and version (always v0 for ApiVersions). Produce v0-2
/// bodies are written by [`super::produce_legacy`].
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let error = |reason: String| EncodeError {
        api_key,
        api_version,
        reason,
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // Patched once the length is known.
    let header_version = api_key.response_header_version(api_version);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|e| error(format!("header: {e:#}")))?;
    match body {
        ResponseKind::Produce(produce) if api_version <= PRODUCE_LEGACY_VERSION_MAX => {
            if api_key != ApiKey::Produce {
                return Err(error("body is a Produce response".to_string()));
            }
            encode_produce_legacy_body(&mut buf, api_version, produce).map_err(error)?;
        }
        _ => body
            .encode(&mut buf, api_version)
            .map_err(|e| error(format!("{e:#}")))?,
    }
    finish_frame(buf).map_err(error)
}

/// Sets a response's `throttle_time_ms` if its version has the field (Kafka added it to
/// different APIs at different versions; the SASL responses, DescribeQuorum's and
/// WriteTxnMarkers' never had it); whether it did.
pub fn set_throttle_time(body: &mut ResponseKind, api_version: i16, throttle_ms: i32) -> bool {
    macro_rules! set {
        ($($variant:ident since $version:literal),* $(,)?) => {
            match body {
                $(ResponseKind::$variant(response) if api_version >= $version => {
                    response.throttle_time_ms = throttle_ms;
                    true
                })*
                _ => false,
            }
        };
    }
    set!(
        Produce since 1, ListOffsets since 2, Metadata since 3, OffsetCommit since 3,
        OffsetFetch since 3, FindCoordinator since 1, JoinGroup since 2, Heartbeat since 1,
        LeaveGroup since 1, SyncGroup since 1, DescribeGroups since 1, ListGroups since 1,
        ApiVersions since 1, CreateTopics since 2, DeleteTopics since 1, DeleteRecords since 0,
        InitProducerId since 0, OffsetForLeaderEpoch since 2, DescribeAcls since 0,
        CreateAcls since 0, DeleteAcls since 0, DescribeConfigs since 0, AlterConfigs since 0,
        CreatePartitions since 0, DeleteGroups since 0, IncrementalAlterConfigs since 0,
        OffsetDelete since 0, DescribeCluster since 0, DescribeUserScramCredentials since 0,
        AlterUserScramCredentials since 0, DescribeClientQuotas since 0,
        AlterClientQuotas since 0, ElectLeaders since 0, DescribeLogDirs since 0,
        DescribeTopicPartitions since 0, AlterPartitionReassignments since 0,
        ListPartitionReassignments since 0, AddPartitionsToTxn since 0, AddOffsetsToTxn since 0,
        EndTxn since 0, TxnOffsetCommit since 0, DescribeTransactions since 0, ListTransactions since 0,
    )
}

/// Encodes the answer to [`RequestBody::ApiVersionsUnsupported`]: an ApiVersions v0 body with
/// error 35 (UNSUPPORTED_VERSION) and the supported ranges, so that the client retries with a
/// version from them. Kafka answers the same way.
pub fn encode_api_versions_unsupported(correlation_id: i32) -> Result<Bytes, EncodeError> {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_versions_entries());
    encode_response(
        correlation_id,
        ApiKey::ApiVersions,
        0,
        &ResponseKind::ApiVersions(response),
    )
}

/// Writes the length prefix into the first four bytes of a finished frame.
fn finish_frame(mut buf: BytesMut) -> Result<Bytes, String> {
    let body_len = buf.len() - 4;
    if body_len > RESPONSE_BYTES_MAX {
        return Err(format!("response of {body_len} bytes is over the limit"));
    }
    let body_len = i32::try_from(body_len).map_err(|_| "response length overflows i32")?;
    buf[..4].copy_from_slice(&body_len.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::versions::SUPPORTED_APIS;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{MetadataResponse, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use rand::{Rng, SeedableRng};

    /// A request frame (without length) as a client would send it.
    fn frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(0x0102_0304)
            .with_client_id(Some(StrBytes::from_static_str("test-client")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    fn default_body(api_key: ApiKey) -> RequestKind {
        use kafka_protocol::messages::*;
        use kafka_protocol::messages::{
            DeleteGroupsRequest, DescribeGroupsRequest, HeartbeatRequest, JoinGroupRequest,
            LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest,
            OffsetFetchRequest, SyncGroupRequest,
        };
        match api_key {
            ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
            ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
            ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
            ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
            ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
            ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
            ApiKey::DescribeConfigs => {
                RequestKind::DescribeConfigs(DescribeConfigsRequest::default())
            }
            ApiKey::FindCoordinator => {
                RequestKind::FindCoordinator(FindCoordinatorRequest::default())
            }
            ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
            ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
            ApiKey::AddPartitionsToTxn => {
                RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default())
            }
            ApiKey::AddOffsetsToTxn => {
                RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::default())
            }
            ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default()),
            ApiKey::TxnOffsetCommit => {
                RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default())
            }
            ApiKey::DescribeTransactions => {
                RequestKind::DescribeTransactions(DescribeTransactionsRequest::default())
            }
            ApiKey::ListTransactions => {
                RequestKind::ListTransactions(ListTransactionsRequest::default())
            }
            ApiKey::WriteTxnMarkers => {
                RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default())
            }
            ApiKey::OffsetForLeaderEpoch => {
                RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
            }
            ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
            ApiKey::CreatePartitions => {
                RequestKind::CreatePartitions(CreatePartitionsRequest::default())
            }
            ApiKey::IncrementalAlterConfigs => {
                RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
            }
            ApiKey::DescribeCluster => {
                RequestKind::DescribeCluster(DescribeClusterRequest::default())
            }
            ApiKey::ElectLeaders => RequestKind::ElectLeaders(ElectLeadersRequest::default()),
            ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(DescribeQuorumRequest::default()),
            ApiKey::DescribeTopicPartitions => {
                RequestKind::DescribeTopicPartitions(DescribeTopicPartitionsRequest::default())
            }
            ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsRequest::default(),
            ),
            ApiKey::ListPartitionReassignments => {
                RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default())
            }
            ApiKey::DescribeLogDirs => {
                RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default())
            }
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
            ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
            ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
            ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
            ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
            ApiKey::SaslHandshake => RequestKind::SaslHandshake(SaslHandshakeRequest::default()),
            ApiKey::SaslAuthenticate => {
                RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default())
            }
            ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsRequest::default(),
            ),
            ApiKey::AlterUserScramCredentials => {
                RequestKind::AlterUserScramCredentials(AlterUserScramCredentialsRequest::default())
            }
            ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default()),
            ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::default()),
            ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::default()),
            ApiKey::DescribeClientQuotas => {
                RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default())
            }
            ApiKey::AlterClientQuotas => {
                RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default())
            }
            other => panic!("no default body for {other:?}; add one with the API"),
        }
    }

    fn produce_request(records: Bytes) -> ProduceRequest {
        let partition = PartitionProduceData::default()
            .with_index(3)
            .with_records(Some(records));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(vec![partition]);
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic])
    }

    /// Every supported API decodes at every advertised version (Produce from v3, where the
    /// crate can encode it) to the header and body that were sent.
    #[test]
    fn every_supported_version_round_trips() {
        for range in SUPPORTED_APIS {
            for version in range.version_min..=range.version_max {
                if range.api_key == ApiKey::Produce && version <= PRODUCE_LEGACY_VERSION_MAX {
                    continue;
                }
                let body = default_body(range.api_key);
                let decoded = decode_request(frame(range.api_key, version, &body))
                    .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", range.api_key));
                assert_eq!(decoded.header.request_api_version, version);
                assert_eq!(decoded.header.correlation_id, 0x0102_0304);
                assert_eq!(decoded.header.client_id.as_deref(), Some("test-client"));
                assert_eq!(decoded.body, RequestBody::Decoded(body));
            }
        }
    }

    /// Produce record sets come out as slices of the frame, not copies, flexible or not.
    #[test]
    fn produce_records_are_zero_copy() {
        let records = Bytes::from(vec![0xab; 16 * 1024]);
        for version in [3, 8, 9, 11] {
            let body = RequestKind::Produce(produce_request(records.clone()));
            let frame = frame(ApiKey::Produce, version, &body);
            let frame_range = frame.as_ptr_range();
            let decoded = decode_request(frame.clone()).expect("decode");
            let RequestBody::Decoded(RequestKind::Produce(produce)) = decoded.body else {
                panic!("not a produce body");
            };
            let got = produce.topic_data[0].partition_data[0]
                .records
                .clone()
                .expect("records");
            assert_eq!(got, records);
            assert!(
                frame_range.contains(&got.as_ptr()),
                "v{version} copied the records"
            );
        }
    }

    /// Produce v0-2 frames decode (into the v3 type) so the broker can refuse them per
    /// partition.
    #[test]
    fn produce_legacy_versions_decode() {
        let request = produce_request(Bytes::from_static(b"old"));
        let mut v3 = frame(ApiKey::Produce, 3, &RequestKind::Produce(request.clone())).to_vec();
        for version in 0..=PRODUCE_LEGACY_VERSION_MAX {
            // Rewrite the version and drop the null transactional id that follows the header.
            let header_len = REQUEST_HEADER_FIXED_BYTES + 2 + "test-client".len();
            v3[2..4].copy_from_slice(&version.to_be_bytes());
            let mut legacy = v3[..header_len].to_vec();
            legacy.extend_from_slice(&v3[header_len + 2..]);
            let decoded = decode_request(Bytes::from(legacy)).expect("decode legacy");
            assert_eq!(decoded.header.request_api_version, version);
            assert_eq!(
                decoded.body,
                RequestBody::Decoded(RequestKind::Produce(request.clone()))
            );
        }
    }

    /// ApiVersions of an unknown version is not an error: the header is parsed, the body
    /// ignored, and the answer is a v0 body with error 35 and the supported ranges.
    #[test]
    fn api_versions_unsupported_version() {
        for version in [5, 127, -1] {
            let mut raw = BytesMut::new();
            raw.put_i16(ApiKey::ApiVersions as i16);
            raw.put_i16(version);
            raw.put_i32(99);
            raw.put_i16(3);
            raw.put_slice(b"cli");
            if version >= 3 {
                raw.put_u8(0); // Header v2 tagged fields.
            }
            raw.put_slice(b"\xff\xfe unknown future body");
            let decoded = decode_request(raw.freeze()).expect("decode");
            assert_eq!(decoded.body, RequestBody::ApiVersionsUnsupported);
            assert_eq!(decoded.header.correlation_id, 99);
            assert_eq!(decoded.header.client_id.as_deref(), Some("cli"));
        }
        let mut answer = encode_api_versions_unsupported(99).expect("encode");
        assert_eq!(answer.get_i32() as usize, answer.len());
        assert_eq!(answer.get_i32(), 99); // Header v0: the correlation id alone.
        let body = ApiVersionsResponse::decode(&mut answer, 0).expect("v0 body");
        assert!(answer.is_empty());
        assert_eq!(body.error_code, 35);
        assert_eq!(body.api_keys, api_versions_entries());
    }

    /// Request header v2 keeps a non-compact (int16-length) client id.
    #[test]
    fn header_v2_client_id_is_not_compact() {
        let mut raw = BytesMut::new();
        raw.put_i16(ApiKey::ApiVersions as i16);
        raw.put_i16(3);
        raw.put_i32(7);
        raw.put_i16(5);
        raw.put_slice(b"kcat!");
        raw.put_u8(0); // No tagged fields.
        raw.put_slice(&[
            5, b'k', b'c', b'a', b't', 6, b'2', b'.', b'0', b'.', b'2', 0,
        ]);
        let decoded = decode_request(raw.freeze()).expect("decode");
        assert_eq!(decoded.header.client_id.as_deref(), Some("kcat!"));
        let RequestBody::Decoded(RequestKind::ApiVersions(body)) = decoded.body else {
            panic!("not an ApiVersions body");
        };
        assert_eq!(&*body.client_software_name, "kcat");
        assert_eq!(&*body.client_software_version, "2.0.2");
    }

    /// Unknown keys, unserved APIs and versions, and short frames are told apart.
    #[test]
    fn distinguishes_rejections() {
        let raw = |key: i16, version: i16| {
            let mut buf = BytesMut::new();
            buf.put_i16(key);
            buf.put_i16(version);
            buf.put_i32(41);
            buf.put_i16(-1);
            buf.freeze()
        };
        let unknown = decode_request(raw(999, 0)).expect_err("unknown key");
        assert_eq!(
            unknown,
            DecodeError::UnknownApiKey {
                api_key: 999,
                correlation_id: 41
            }
        );
        for (key, version) in [
            (ApiKey::Fetch, 3),
            (ApiKey::Fetch, 19),
            (ApiKey::DescribeProducers, 0),
        ] {
            let error = decode_request(raw(key as i16, version)).expect_err("unsupported");
            let want = DecodeError::UnsupportedVersion {
                api_key: key,
                api_version: version,
                correlation_id: 41,
            };
            assert_eq!(error, want);
        }
        for len in 0..REQUEST_HEADER_FIXED_BYTES {
            let error = decode_request(raw(3, 1).slice(..len)).expect_err("short");
            assert_eq!(error, DecodeError::FrameTooShort { len_bytes: len });
            assert_eq!(error.correlation_id(), None);
        }
        let body_missing = decode_request(raw(ApiKey::Metadata as i16, 1)).expect_err("no body");
        assert!(matches!(
            body_missing,
            DecodeError::Malformed {
                correlation_id: 41,
                ..
            }
        ));
    }

    /// A count that claims far more elements than the frame holds is refused before any
    /// allocation (left unchecked it asks for gigabytes and aborts the process).
    #[test]
    fn huge_counts_are_errors() {
        for (key, version) in [
            (ApiKey::Metadata, 1),
            (ApiKey::Produce, 0),
            (ApiKey::Produce, 3),
        ] {
            let mut buf = BytesMut::new();
            buf.put_i16(key as i16);
            buf.put_i16(version);
            buf.put_i32(1);
            buf.put_i16(-1);
            if key == ApiKey::Produce {
                buf.put_slice(if version >= 3 {
                    &[0xff, 0xff, 0, 1, 0, 0, 0, 1]
                } else {
                    &[0, 1, 0, 0, 0, 1]
                });
            }
            buf.put_i32(i32::MAX);
            buf.put_slice(&[0; 16]);
            assert!(decode_request(buf.freeze()).is_err(), "{key:?} v{version}");
        }
    }

    /// Random, truncated and corrupted frames of every supported API and version give errors
    /// or requests, never a panic.
    #[test]
    fn random_and_mangled_frames_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut valid = Vec::new();
        for range in SUPPORTED_APIS {
            for version in range.version_min.max(3)..=range.version_max {
                let body = match range.api_key {
                    ApiKey::Produce => {
                        RequestKind::Produce(produce_request(Bytes::from_static(b"x")))
                    }
                    key => default_body(key),
                };
                valid.push(frame(range.api_key, version, &body));
            }
        }
        for base in &valid {
            for cut in 0..base.len() {
                let _ = decode_request(base.slice(..cut));
            }
            for _ in 0..200 {
                let mut mangled = base.to_vec();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..mangled.len());
                    mangled[at] = rng.gen();
                }
                let _ = decode_request(Bytes::from(mangled));
            }
            for _ in 0..200 {
                let mut noise = base[..4].to_vec();
                let len = rng.gen_range(0..96);
                noise.extend((0..len).map(|_| rng.gen::<u8>()));
                let _ = decode_request(Bytes::from(noise));
            }
        }
    }

    /// Responses carry the right length, correlation id and header version: v1 (tagged
    /// fields) for flexible Metadata, v0 for every ApiVersions version.
    #[test]
    fn response_frames_and_header_versions() {
        let metadata = ResponseKind::Metadata(MetadataResponse::default().with_throttle_time_ms(3));
        let mut frame = encode_response(8, ApiKey::Metadata, 12, &metadata).expect("encode");
        assert_eq!(frame.get_i32() as usize, frame.len());
        let header = ResponseHeader::decode(&mut frame, 1).expect("header v1");
        assert_eq!(header.correlation_id, 8);
        let body = MetadataResponse::decode(&mut frame, 12).expect("body");
        assert!(frame.is_empty());
        assert_eq!(body.throttle_time_ms, 3);

        let versions = ApiVersionsResponse::default().with_api_keys(api_versions_entries());
        let versions = ResponseKind::ApiVersions(versions);
        for version in 0..=4 {
            let mut frame = encode_response(9, ApiKey::ApiVersions, version, &versions).unwrap();
            assert_eq!(frame.get_i32() as usize, frame.len());
            assert_eq!(frame.get_i32(), 9);
            ApiVersionsResponse::decode(&mut frame, version).expect("body right after id");
            assert!(frame.is_empty(), "v{version}");
        }
    }

    /// Produce v0-2 responses go through the hand encoder with a v0 header.
    #[test]
    fn produce_legacy_response_frames() {
        use kafka_protocol::messages::produce_response::*;
        let partition = PartitionProduceResponse::default()
            .with_index(1)
            .with_error_code(35);
        let topic = TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_responses(vec![partition]);
        let response =
            ResponseKind::Produce(ProduceResponse::default().with_responses(vec![topic]));
        let sizes: Vec<usize> = (0..=2)
            .map(|version| {
                encode_response(4, ApiKey::Produce, version, &response)
                    .unwrap()
                    .len()
            })
            .collect();
        // length + correlation id + topics(4) + name(2+1) + partitions(4) + 14, then extras.
        assert_eq!(
            sizes,
            vec![4 + 4 + 4 + 3 + 4 + 14, 4 + 4 + 4 + 3 + 4 + 14 + 4, 45]
        );
    }

    /// A throttle time set on any response of any served version still encodes (it is set
    /// only where the version has the field: every API's newest, Metadata from v3, never the
    /// SASL responses).
    #[test]
    fn throttle_time_is_set_where_the_version_has_it() {
        use kafka_protocol::messages::*;
        macro_rules! all {
            ($($variant:ident: $response:ty),* $(,)?) => {
                vec![$((ApiKey::$variant, ResponseKind::$variant(<$response>::default()))),*]
            };
        }
        let responses = all!(
            Produce: ProduceResponse, ListOffsets: ListOffsetsResponse,
            Metadata: MetadataResponse, OffsetCommit: OffsetCommitResponse,
            OffsetFetch: OffsetFetchResponse, FindCoordinator: FindCoordinatorResponse,
            JoinGroup: JoinGroupResponse, Heartbeat: HeartbeatResponse,
            LeaveGroup: LeaveGroupResponse, SyncGroup: SyncGroupResponse,
            DescribeGroups: DescribeGroupsResponse, ListGroups: ListGroupsResponse,
            SaslHandshake: SaslHandshakeResponse, ApiVersions: ApiVersionsResponse,
            CreateTopics: CreateTopicsResponse, DeleteTopics: DeleteTopicsResponse,
            DeleteRecords: DeleteRecordsResponse, InitProducerId: InitProducerIdResponse,
            OffsetForLeaderEpoch: OffsetForLeaderEpochResponse,
            DescribeAcls: DescribeAclsResponse, CreateAcls: CreateAclsResponse,
            DeleteAcls: DeleteAclsResponse, DescribeConfigs: DescribeConfigsResponse,
            AlterConfigs: AlterConfigsResponse, SaslAuthenticate: SaslAuthenticateResponse,
            CreatePartitions: CreatePartitionsResponse, DeleteGroups: DeleteGroupsResponse,
            IncrementalAlterConfigs: IncrementalAlterConfigsResponse,
            OffsetDelete: OffsetDeleteResponse,
            DescribeClientQuotas: DescribeClientQuotasResponse,
            AlterClientQuotas: AlterClientQuotasResponse,
            DescribeUserScramCredentials: DescribeUserScramCredentialsResponse,
            AlterUserScramCredentials: AlterUserScramCredentialsResponse,
            DescribeCluster: DescribeClusterResponse,
            ElectLeaders: ElectLeadersResponse, DescribeLogDirs: DescribeLogDirsResponse,
            DescribeQuorum: DescribeQuorumResponse,
            DescribeTopicPartitions: DescribeTopicPartitionsResponse,
            AlterPartitionReassignments: AlterPartitionReassignmentsResponse,
            ListPartitionReassignments: ListPartitionReassignmentsResponse,
            WriteTxnMarkers: WriteTxnMarkersResponse,
            AddPartitionsToTxn: AddPartitionsToTxnResponse,
            AddOffsetsToTxn: AddOffsetsToTxnResponse, EndTxn: EndTxnResponse,
            TxnOffsetCommit: TxnOffsetCommitResponse,
            DescribeTransactions: DescribeTransactionsResponse,
            ListTransactions: ListTransactionsResponse,
        );
        assert_eq!(
            responses.len(),
            SUPPORTED_APIS.len() - 1,
            "every API but Fetch"
        );
        for (api_key, response) in responses {
            let range = SUPPORTED_APIS
                .iter()
                .find(|r| r.api_key == api_key)
                .unwrap();
            for version in range.version_min..=range.version_max {
                let mut response = response.clone();
                let set = set_throttle_time(&mut response, version, 250);
                // The SASL responses, DescribeQuorum's and WriteTxnMarkers' never had the field.
                let never = matches!(
                    api_key,
                    ApiKey::SaslHandshake
                        | ApiKey::SaslAuthenticate
                        | ApiKey::DescribeQuorum
                        | ApiKey::WriteTxnMarkers
                );
                if version == range.version_max || never {
                    assert_eq!(set, !never, "{api_key:?} v{version}");
                }
                if api_key == ApiKey::Metadata {
                    assert_eq!(set, version >= 3, "Metadata v{version}");
                }
                encode_response(1, api_key, version, &response)
                    .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
            }
        }
    }
}
