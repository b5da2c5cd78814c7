//! The APIs this broker serves and the version range of each, in one table.
//!
//! The table is what ApiVersions advertises and what the request decoder enforces, so the two
//! can never disagree. Clients read these ranges closely (kafka-python even infers the broker's
//! Kafka release from them), so every range must be one the handlers answer honestly.
//!
//! Adding an API is one line in [`SUPPORTED_APIS`] plus its handler, and its crate types in
//! the tests, which check that every range lies inside what the `kafka-protocol` crate's
//! request and response types decode and encode.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// One API the broker serves and the inclusive range of versions it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub api_key: ApiKey,
    /// Oldest version accepted.
    pub version_min: i16,
    /// Newest version accepted.
    pub version_max: i16,
}

impl ApiRange {
    /// Whether `version` lies in this range.
    pub fn contains(&self, version: i16) -> bool {
        self.version_min <= version && version <= self.version_max
    }
}

const fn api(api_key: ApiKey, version_min: i16, version_max: i16) -> ApiRange {
    assert!(version_min >= 0 && version_min <= version_max);
    ApiRange {
        api_key,
        version_min,
        version_max,
    }
}

/// Oldest Produce version the broker actually serves. Versions below it carry message formats
/// v0/v1, which the broker does not store; they are still advertised (see [`SUPPORTED_APIS`])
/// and decoded, and the handler answers each partition with UNSUPPORTED_VERSION.
pub const PRODUCE_VERSION_SERVED_MIN: i16 = 3;

/// Every API the broker serves, in API-key order.
///
/// Floors follow Kafka 4.x (KIP-896) but keep the older non-flexible versions that aiokafka
/// and kafka-python still send. Ceilings stop where a version would demand something the
/// broker does not do yet:
/// - Produce 0-13: Kafka 4 advertises 0 again because librdkafka refuses compressed produce
///   otherwise (KAFKA-18659); v0-2 get UNSUPPORTED_VERSION per partition. v12 is v11 on the
///   wire; it means transactions V2 (KIP-890) only to clients the `transaction.version`
///   feature tells so, which is not advertised. v13 names topics by id (KIP-516).
/// - Fetch 4-18: v13 names topics by id, v16 adds the leaders' endpoints to the response;
///   the other versions change only what the request may carry for followers of Kafka's
///   own replication, which consumers do not send.
/// - Metadata 1-13 (v13 adds a top-level error, REBOOTSTRAP_REQUIRED, never sent here),
///   ListOffsets 1-10 (the tiered-storage timestamps of v8-9 answered as Kafka does without
///   tiered storage; v10's timeout is for remote storage), CreateTopics 2-7, DeleteTopics
///   1-6, DescribeConfigs 1-4, ApiVersions 0-4.
/// - InitProducerId 0-5: idempotent producers only (v5 adds TRANSACTION_ABORTABLE, never
///   sent here; v6 is unstable in Kafka 4.1).
/// - Transactions: AddPartitionsToTxn 0-4 (v4 is the brokers' batched form), AddOffsetsToTxn
///   0-4, EndTxn 0-4, TxnOffsetCommit 0-4, DescribeTransactions 0, ListTransactions 0-1 (v2's id pattern is a
///   Java regular expression), WriteTxnMarkers 1 (Kafka 4.1 serves 1-2; v2 adds the
///   transaction version, which the crate does not decode yet). Each API's v5 belongs to
///   transactions V2 (KIP-890 part 2), which is not served.
/// - Admin: DeleteRecords 0-2 (kafka-python 2.x sends v0 only), OffsetForLeaderEpoch 2-4
///   (Kafka 4's floor), AlterConfigs 0-2, CreatePartitions 0-3, IncrementalAlterConfigs 0-1,
///   DescribeCluster 0-2,
///   ElectLeaders 0-2, DescribeLogDirs 1-4 (Kafka 4's floor), DescribeQuorum 0-2,
///   DescribeTopicPartitions 0, AlterPartitionReassignments 0-1, ListPartitionReassignments 0.
/// - FindCoordinator 0-6 answers this broker for groups (v6's share groups are
///   INVALID_REQUEST, as on a Kafka broker without share groups); librdkafka also uses its
///   presence as the sign that a broker takes LZ4.
/// - Classic consumer groups: JoinGroup 0-9, SyncGroup 0-5, Heartbeat 0-4, LeaveGroup 0-5,
///   DescribeGroups 0-6, ListGroups 0-5, DeleteGroups 0-2, OffsetDelete 0, OffsetCommit 2-9
///   and OffsetFetch 1-9 (v10 addresses topics by id, and is unstable in Kafka 4.1).
/// - Security: SaslHandshake 0-1, SaslAuthenticate 0-2, DescribeUserScramCredentials 0,
///   AlterUserScramCredentials 0, and DescribeAcls, CreateAcls and DeleteAcls 1-3 (as Kafka
///   4.1); DescribeClientQuotas and AlterClientQuotas 0-1.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    api(ApiKey::Produce, 0, 13),
    api(ApiKey::Fetch, 4, 18),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 1, 13),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::AddPartitionsToTxn, 0, 4),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::TxnOffsetCommit, 0, 4),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
];

/// The range the broker serves for `api_key`, or `None` when it does not serve that API.
pub fn supported_range(api_key: ApiKey) -> Option<ApiRange> {
    SUPPORTED_APIS
        .iter()
        .copied()
        .find(|range| range.api_key == api_key)
}

/// Whether the broker accepts `api_key` at `version`.
pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    supported_range(api_key).is_some_and(|range| range.contains(version))
}

/// The `api_keys` list of an ApiVersions response, built from [`SUPPORTED_APIS`].
pub fn api_versions_entries() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|range| {
            ApiVersion::default()
                .with_api_key(range.api_key as i16)
                .with_min_version(range.version_min)
                .with_max_version(range.version_max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions the crate's request and response types of `api_key` decode and encode
    /// (`ApiKey::valid_versions` is not it: it names OffsetCommit and OffsetFetch 10 and
    /// InitProducerId 6, which the types stop short of).
    fn crate_ranges(
        api_key: ApiKey,
    ) -> (
        kafka_protocol::protocol::VersionRange,
        kafka_protocol::protocol::VersionRange,
    ) {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Message;
        macro_rules! ranges {
            ($($key:ident: $request:ty, $response:ty;)*) => {
                match api_key {
                    $(ApiKey::$key => (<$request as Message>::VERSIONS, <$response as Message>::VERSIONS),)*
                    other => panic!("list the crate's types of {other:?} here"),
                }
            };
        }
        ranges!(
            Produce: ProduceRequest, ProduceResponse;
            Fetch: FetchRequest, FetchResponse;
            ListOffsets: ListOffsetsRequest, ListOffsetsResponse;
            Metadata: MetadataRequest, MetadataResponse;
            OffsetCommit: OffsetCommitRequest, OffsetCommitResponse;
            OffsetFetch: OffsetFetchRequest, OffsetFetchResponse;
            FindCoordinator: FindCoordinatorRequest, FindCoordinatorResponse;
            JoinGroup: JoinGroupRequest, JoinGroupResponse;
            Heartbeat: HeartbeatRequest, HeartbeatResponse;
            LeaveGroup: LeaveGroupRequest, LeaveGroupResponse;
            SyncGroup: SyncGroupRequest, SyncGroupResponse;
            DescribeGroups: DescribeGroupsRequest, DescribeGroupsResponse;
            ListGroups: ListGroupsRequest, ListGroupsResponse;
            SaslHandshake: SaslHandshakeRequest, SaslHandshakeResponse;
            ApiVersions: ApiVersionsRequest, ApiVersionsResponse;
            CreateTopics: CreateTopicsRequest, CreateTopicsResponse;
            DeleteTopics: DeleteTopicsRequest, DeleteTopicsResponse;
            DeleteRecords: DeleteRecordsRequest, DeleteRecordsResponse;
            InitProducerId: InitProducerIdRequest, InitProducerIdResponse;
            OffsetForLeaderEpoch: OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
            WriteTxnMarkers: WriteTxnMarkersRequest, WriteTxnMarkersResponse;
            AddPartitionsToTxn: AddPartitionsToTxnRequest, AddPartitionsToTxnResponse;
            AddOffsetsToTxn: AddOffsetsToTxnRequest, AddOffsetsToTxnResponse;
            EndTxn: EndTxnRequest, EndTxnResponse;
            TxnOffsetCommit: TxnOffsetCommitRequest, TxnOffsetCommitResponse;
            DescribeTransactions: DescribeTransactionsRequest, DescribeTransactionsResponse;
            ListTransactions: ListTransactionsRequest, ListTransactionsResponse;
            DescribeAcls: DescribeAclsRequest, DescribeAclsResponse;
            CreateAcls: CreateAclsRequest, CreateAclsResponse;
            DeleteAcls: DeleteAclsRequest, DeleteAclsResponse;
            DescribeConfigs: DescribeConfigsRequest, DescribeConfigsResponse;
            AlterConfigs: AlterConfigsRequest, AlterConfigsResponse;
            DescribeLogDirs: DescribeLogDirsRequest, DescribeLogDirsResponse;
            SaslAuthenticate: SaslAuthenticateRequest, SaslAuthenticateResponse;
            CreatePartitions: CreatePartitionsRequest, CreatePartitionsResponse;
            DeleteGroups: DeleteGroupsRequest, DeleteGroupsResponse;
            ElectLeaders: ElectLeadersRequest, ElectLeadersResponse;
            IncrementalAlterConfigs: IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
            AlterPartitionReassignments: AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse;
            ListPartitionReassignments: ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse;
            OffsetDelete: OffsetDeleteRequest, OffsetDeleteResponse;
            DescribeClientQuotas: DescribeClientQuotasRequest, DescribeClientQuotasResponse;
            AlterClientQuotas: AlterClientQuotasRequest, AlterClientQuotasResponse;
            DescribeUserScramCredentials: DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse;
            AlterUserScramCredentials: AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse;
            DescribeQuorum: DescribeQuorumRequest, DescribeQuorumResponse;
            DescribeCluster: DescribeClusterRequest, DescribeClusterResponse;
            DescribeTopicPartitions: DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse;
        )
    }

    /// Every advertised range lies inside what the crate's request and response types can
    /// decode and encode, except the Produce v0-2 that the codec decodes by hand.
    #[test]
    fn ranges_within_crate_support() {
        for range in SUPPORTED_APIS {
            let (request, response) = crate_ranges(range.api_key);
            let min = if range.api_key == ApiKey::Produce {
                PRODUCE_VERSION_SERVED_MIN
            } else {
                range.version_min
            };
            for (what, crate_range) in [("request", request), ("response", response)] {
                assert!(crate_range.min <= min, "{:?} {what}", range.api_key);
                assert!(
                    range.version_max <= crate_range.max,
                    "{:?} {what}",
                    range.api_key
                );
            }
        }
    }

    /// The table holds each API once and in API-key order, so lookups cannot hit a duplicate.
    #[test]
    fn table_sorted_and_unique() {
        for pair in SUPPORTED_APIS.windows(2) {
            assert!((pair[0].api_key as i16) < (pair[1].api_key as i16));
        }
    }

    /// The advertised entries and the decoder's checks come from the same table.
    #[test]
    fn entries_match_lookup() {
        let entries = api_versions_entries();
        assert_eq!(entries.len(), SUPPORTED_APIS.len());
        let produce = entries.iter().find(|e| e.api_key == ApiKey::Produce as i16);
        assert_eq!(
            produce.map(|e| (e.min_version, e.max_version)),
            Some((0, 13))
        );
        assert!(is_supported(ApiKey::Fetch, 18));
        assert!(!is_supported(ApiKey::Fetch, 19));
        assert!(!is_supported(ApiKey::Fetch, 3));
        assert!(is_supported(ApiKey::JoinGroup, 0));
        assert!(!is_supported(ApiKey::OffsetCommit, 10));
    }
}
