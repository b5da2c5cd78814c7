//! The requests of one connection take effect in arrival order, as Kafka's do (it mutes a
//! connection while a request is in progress): a request pipelined behind a produce sees that
//! produce, and an offset commit pipelined before a LeaveGroup lands while the member is still
//! in the group. Issue 12, item 13b: corelog ran them concurrently and only ordered the
//! responses, so a ListOffsets or Fetch behind a produce missed it.

mod common;

use bytes::{Buf, Bytes};
use common::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use kafka_protocol::records::Compression;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Reads the next response frame, checks its correlation id, and decodes it as `R` at
/// `version`.
fn response<R: Request>(conn: &mut RawConn, correlation_id: i32, version: i16) -> R::Response
where
    R::Response: Decodable,
{
    let mut body = conn.recv_frame().expect("a response");
    assert_eq!(body.get_i32(), correlation_id, "responses in request order");
    if response_header_version(R::KEY, version) >= 1 {
        assert_eq!(body.get_u8(), 0, "no header tags");
    }
    R::Response::decode(&mut body, version).expect("decode the response")
}

fn latest_offset_request(topic: &str) -> ListOffsetsRequest {
    let partition = ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(-1);
    ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![partition])])
}

/// A ListOffsets (latest) and a Fetch pipelined behind an acks=all produce, on a partition
/// of the other shard as well as this one, answer as if the produce had finished first.
#[test]
fn requests_behind_a_produce_see_it() {
    let broker = Broker::start(2, &[]);
    for round in 0..20 {
        let topic = format!("ordered-{round}");
        create_topic(broker.port, &topic, 1);
        let mut conn = RawConn::connect(broker.port);
        let batch = record_batch(&[b"one", b"two", b"three"], 1, Compression::None);
        let (produce_id, produce) = conn.encode_request(&produce_request(&topic, 0, batch, -1), 9);
        let (list_id, list) = conn.encode_request(&latest_offset_request(&topic), 7);
        let fetch = fetch_request(&topic, 0, 0, 0, 0, 1 << 20);
        let (fetch_id, fetch) = conn.encode_request(&fetch, 12);
        conn.send_frames(&[produce, list, fetch]).unwrap();
        let produced = response::<ProduceRequest>(&mut conn, produce_id, 9);
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
        let listed = response::<ListOffsetsRequest>(&mut conn, list_id, 7);
        let latest = &listed.topics[0].partitions[0];
        assert_eq!(
            (latest.error_code, latest.offset),
            (0, 3),
            "round {round}: ListOffsets behind the produce"
        );
        let fetched = response::<FetchRequest>(&mut conn, fetch_id, 12);
        let partition = single_partition(&fetched);
        assert_eq!(
            partition.high_watermark, 3,
            "round {round}: fetch behind it"
        );
        let records = partition.records.clone().unwrap_or_default();
        assert_eq!(
            parse_batches(&records).0.len(),
            1,
            "round {round}: the batch"
        );
    }
}

fn join(conn: &mut RawConn, group: &str, member: &str) -> JoinGroupResponse {
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(text("range"))
        .with_metadata(Bytes::from_static(b"subscription"));
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(text(member))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![protocol]);
    conn.request(&request, 5)
}

/// A member of `group` with a completed rebalance: (generation, member id).
fn stable_member(conn: &mut RawConn, group: &str) -> (i32, String) {
    let first = join(conn, group, "");
    let joined = join(conn, group, &first.member_id);
    assert_eq!(joined.error_code, 0, "join {group}");
    let assignment = SyncGroupRequestAssignment::default()
        .with_member_id(joined.member_id.clone())
        .with_assignment(Bytes::from_static(b"assignment"));
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_assignments(vec![assignment]);
    assert_eq!(conn.request(&sync, 3).error_code, 0, "sync {group}");
    (joined.generation_id, joined.member_id.to_string())
}

/// A consumer's goodbye, pipelined as librdkafka sends it: the final OffsetCommit, then
/// LeaveGroup. The commit lands (the member was still in the group when it arrived), and an
/// OffsetFetch behind both reads it; groups on both shards' coordinators.
#[test]
fn a_commit_pipelined_before_leave_group_lands() {
    let broker = Broker::start(2, &["--group-initial-rebalance-delay-ms", "0"]);
    create_topic(broker.port, "committed", 1);
    for round in 0..10 {
        let group = format!("leaving-{round}");
        let mut conn = RawConn::connect(broker.port);
        let (generation, member) = stable_member(&mut conn, &group);
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index(0)
            .with_committed_offset(42 + round);
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(text(&group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(text(&member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("committed"))
                .with_partitions(vec![partition])]);
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(text(&group)))
            .with_members(vec![MemberIdentity::default().with_member_id(text(&member))]);
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(text(&group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name("committed"))
                .with_partition_indexes(vec![0])]));
        let (commit_id, commit) = conn.encode_request(&commit, 8);
        let (leave_id, leave) = conn.encode_request(&leave, 4);
        let (fetch_id, fetch) = conn.encode_request(&fetch, 7);
        conn.send_frames(&[commit, leave, fetch]).unwrap();
        let committed = response::<OffsetCommitRequest>(&mut conn, commit_id, 8);
        assert_eq!(
            committed.topics[0].partitions[0].error_code, 0,
            "round {round}: the commit before LeaveGroup"
        );
        let left = response::<LeaveGroupRequest>(&mut conn, leave_id, 4);
        assert_eq!(left.error_code, 0, "round {round}: leave");
        let fetched = response::<OffsetFetchRequest>(&mut conn, fetch_id, 7);
        let offset = fetched.topics[0].partitions[0].committed_offset;
        assert_eq!(offset, 42 + round, "round {round}: OffsetFetch behind both");
    }
}
