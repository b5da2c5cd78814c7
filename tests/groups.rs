//! Consumer groups over the wire: the classic-protocol error codes Kafka clients react to
//! (MEMBER_ID_REQUIRED, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
//! REBALANCE_IN_PROGRESS, INVALID_SESSION_TIMEOUT, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND),
//! OffsetFetch's multi-group form, and committed offsets and group membership surviving a
//! SIGKILL with groups coordinated by both shards.

mod common;

use bytes::Bytes;
use common::*;
use corelog::group::partition_for;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

const MEMBER_ID_REQUIRED: i16 = 79;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const FENCED_INSTANCE_ID: i16 = 82;

/// Flags of every broker here: no initial rebalance delay, short sessions allowed.
const FLAGS: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "0",
    "--group-min-session-timeout-ms",
    "500",
];

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group_id(value: &str) -> GroupId {
    GroupId(text(value))
}

fn join_request(
    group: &str,
    member: &str,
    instance: Option<&str>,
    session_ms: i32,
) -> JoinGroupRequest {
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(text("range"))
        .with_metadata(Bytes::from_static(b"subscription"));
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(text(member))
        .with_group_instance_id(instance.map(text))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![protocol])
}

/// JoinGroup v5 for a new dynamic member: the MEMBER_ID_REQUIRED round trip, then the join.
fn join_new(conn: &mut RawConn, group: &str) -> JoinGroupResponse {
    let first = conn.request(&join_request(group, "", None, 10_000), 5);
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(
        !first.member_id.is_empty(),
        "MEMBER_ID_REQUIRED carries the id"
    );
    let second = conn.request(&join_request(group, &first.member_id, None, 10_000), 5);
    assert_eq!(second.error_code, 0);
    assert_eq!(second.member_id, first.member_id);
    second
}

fn sync(
    conn: &mut RawConn,
    group: &str,
    generation: i32,
    member: &str,
    assign: &[(&str, &[u8])],
) -> SyncGroupResponse {
    let assignments = assign
        .iter()
        .map(|(m, a)| {
            SyncGroupRequestAssignment::default()
                .with_member_id(text(m))
                .with_assignment(Bytes::copy_from_slice(a))
        })
        .collect();
    let request = SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(text(member))
        .with_assignments(assignments);
    conn.request(&request, 3)
}

fn heartbeat(
    conn: &mut RawConn,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(text(member))
        .with_group_instance_id(instance.map(text));
    conn.request(&request, 3).error_code
}

/// OffsetCommit of one partition at `version` by (group, generation, member); returns its
/// error code.
fn commit(
    conn: &mut RawConn,
    version: i16,
    (group, generation, member): (&str, i32, &str),
    (topic, partition): (&str, i32),
    offset: i64,
) -> i16 {
    let partition = OffsetCommitRequestPartition::default()
        .with_partition_index(partition)
        .with_committed_offset(offset)
        .with_committed_metadata(Some(text("meta")));
    let topic = OffsetCommitRequestTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![partition]);
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member))
        .with_topics(vec![topic]);
    conn.request(&request, version).topics[0].partitions[0].error_code
}

/// A group and the partitions of one topic asked of OffsetFetch (`None`: all of them).
type GroupAsk<'a> = (&'a str, Option<(&'a str, Vec<i32>)>);

/// OffsetFetch v8 for several groups: `None` topics asks for all of a group's offsets.
fn fetch_offsets(conn: &mut RawConn, groups: &[GroupAsk]) -> OffsetFetchResponse {
    fetch_offsets_at(conn, 8, groups)
}

/// OffsetFetch of several groups at `version` (8 or 9).
fn fetch_offsets_at(conn: &mut RawConn, version: i16, groups: &[GroupAsk]) -> OffsetFetchResponse {
    let groups = groups
        .iter()
        .map(|(group, topics)| {
            let topics = topics.as_ref().map(|(topic, partitions)| {
                vec![OffsetFetchRequestTopics::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(partitions.clone())]
            });
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(topics)
        })
        .collect();
    conn.request(&OffsetFetchRequest::default().with_groups(groups), version)
}

/// The committed offset of (group, topic, partition) in an OffsetFetch v8 response.
fn committed(
    response: &OffsetFetchResponse,
    group: &str,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let group = response
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == group)?;
    assert_eq!(group.error_code, 0, "group {group:?}");
    let topic = group.topics.iter().find(|t| t.name.as_str() == topic)?;
    let found = topic
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)?;
    Some(found.committed_offset)
}

/// A v4+ member first gets MEMBER_ID_REQUIRED with its id, then joins as leader of
/// generation 1; stale generations and unknown members are refused with Kafka's codes.
#[test]
fn member_id_round_trip_and_generation_errors() {
    let broker = Broker::start(1, FLAGS);
    let mut conn = RawConn::connect(broker.port);
    let joined = join_new(&mut conn, "g");
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    let member = joined.member_id.to_string();
    let synced = sync(&mut conn, "g", 1, &member, &[(&member, b"assigned")]);
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assigned");
    assert_eq!(heartbeat(&mut conn, "g", 1, &member, None), 0);
    assert_eq!(
        heartbeat(&mut conn, "g", 0, &member, None),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut conn, "g", 1, "nobody", None),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        sync(&mut conn, "g", 7, &member, &[]).error_code,
        ILLEGAL_GENERATION
    );
    create_topic(broker.port, "t", 1);
    assert_eq!(
        commit(&mut conn, 8, ("g", 0, &member), ("t", 0), 5),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit(&mut conn, 8, ("g", 1, "nobody"), ("t", 0), 5),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(commit(&mut conn, 8, ("g", 1, &member), ("t", 0), 5), 0);
    let rejoin_unknown = conn.request(&join_request("g", "nobody", None, 10_000), 5);
    assert_eq!(rejoin_unknown.error_code, UNKNOWN_MEMBER_ID);
}

/// Session timeouts outside group.min/max.session.timeout.ms are INVALID_SESSION_TIMEOUT.
#[test]
fn session_timeout_bounds() {
    let broker = Broker::start(1, FLAGS);
    let mut conn = RawConn::connect(broker.port);
    let too_short = conn.request(&join_request("g", "", None, 100), 5);
    assert_eq!(too_short.error_code, INVALID_SESSION_TIMEOUT);
    let too_long = conn.request(&join_request("g", "", None, 1_800_001), 5);
    assert_eq!(too_long.error_code, INVALID_SESSION_TIMEOUT);
}

/// A second member joining a stable group starts a rebalance: the first member's heartbeat
/// says REBALANCE_IN_PROGRESS, and once it rejoins both get generation 2, the leader with
/// both members; the old generation's commits are then ILLEGAL_GENERATION.
#[test]
fn joining_member_triggers_rebalance() {
    let broker = Broker::start(1, FLAGS);
    create_topic(broker.port, "t", 2);
    let mut first = RawConn::connect(broker.port);
    let leader = join_new(&mut first, "g").member_id.to_string();
    assert_eq!(
        sync(&mut first, "g", 1, &leader, &[(&leader, b"a")]).error_code,
        0
    );
    let mut second = RawConn::connect(broker.port);
    let required = second.request(&join_request("g", "", None, 10_000), 5);
    assert_eq!(required.error_code, MEMBER_ID_REQUIRED);
    let follower = required.member_id.to_string();
    let pending = second
        .send_request(&join_request("g", &follower, None, 10_000), 5)
        .unwrap();
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            heartbeat(&mut first, "g", 1, &leader, None) == REBALANCE_IN_PROGRESS
        }),
        "the leader's heartbeat never reported the rebalance"
    );
    let rejoined = first.request(&join_request("g", &leader, None, 10_000), 5);
    let follower_join = second
        .recv_response::<JoinGroupRequest>(pending, 5)
        .unwrap();
    assert_eq!((rejoined.error_code, follower_join.error_code), (0, 0));
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(follower_join.generation_id, 2);
    assert_eq!(rejoined.leader.as_str(), leader);
    assert_eq!(rejoined.members.len(), 2, "the leader sees every member");
    assert!(follower_join.members.is_empty(), "followers see no members");
    assert_eq!(
        commit(&mut first, 8, ("g", 1, &leader), ("t", 0), 1),
        ILLEGAL_GENERATION
    );
    // The follower's SyncGroup waits for the leader's assignment.
    let pending_sync = second
        .send_request(
            &SyncGroupRequest::default()
                .with_group_id(group_id("g"))
                .with_generation_id(2)
                .with_member_id(text(&follower)),
            3,
        )
        .unwrap();
    let assignments: [(&str, &[u8]); 2] = [(&leader, b"p0"), (&follower, b"p1")];
    assert_eq!(
        &sync(&mut first, "g", 2, &leader, &assignments).assignment[..],
        b"p0"
    );
    let follower_sync = second
        .recv_response::<SyncGroupRequest>(pending_sync, 3)
        .unwrap();
    assert_eq!(&follower_sync.assignment[..], b"p1");
}

/// A static member rejoining without its member id takes a new id; the old id is fenced.
#[test]
fn static_member_replacement_fences_old_id() {
    let broker = Broker::start(1, FLAGS);
    let mut conn = RawConn::connect(broker.port);
    let first = conn.request(&join_request("g", "", Some("instance-1"), 10_000), 5);
    assert_eq!(
        first.error_code, 0,
        "static members need no member id round trip"
    );
    let old = first.member_id.to_string();
    assert_eq!(sync(&mut conn, "g", 1, &old, &[(&old, b"a")]).error_code, 0);
    let again = conn.request(&join_request("g", "", Some("instance-1"), 10_000), 5);
    assert_eq!(again.error_code, 0);
    assert_ne!(again.member_id.as_str(), old);
    assert_eq!(
        again.generation_id, 1,
        "a known static member does not rebalance"
    );
    let fenced = heartbeat(&mut conn, "g", 1, &old, Some("instance-1"));
    assert_eq!(fenced, FENCED_INSTANCE_ID);
    let current = heartbeat(&mut conn, "g", 1, &again.member_id, Some("instance-1"));
    assert_eq!(current, 0);
}

/// DeleteGroups refuses a group with members (NON_EMPTY_GROUP) and an unknown one
/// (GROUP_ID_NOT_FOUND); after LeaveGroup v3 the group and its offsets go.
#[test]
fn delete_groups_needs_an_empty_group() {
    let broker = Broker::start(1, FLAGS);
    create_topic(broker.port, "t", 1);
    let mut conn = RawConn::connect(broker.port);
    let member = join_new(&mut conn, "g").member_id.to_string();
    assert_eq!(sync(&mut conn, "g", 1, &member, &[]).error_code, 0);
    assert_eq!(commit(&mut conn, 8, ("g", 1, &member), ("t", 0), 9), 0);
    let delete = |conn: &mut RawConn, names: &[&str]| -> Vec<i16> {
        let request = DeleteGroupsRequest::default()
            .with_groups_names(names.iter().map(|n| group_id(n)).collect());
        conn.request(&request, 2)
            .results
            .iter()
            .map(|r| r.error_code)
            .collect()
    };
    assert_eq!(
        delete(&mut conn, &["g", "unknown"]),
        vec![NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND]
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(group_id("g"))
        .with_members(vec![MemberIdentity::default().with_member_id(text(&member))]);
    let left = conn.request(&leave, 3);
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    let described = conn.request(
        &DescribeGroupsRequest::default().with_groups(vec![group_id("g")]),
        5,
    );
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
    assert_eq!(delete(&mut conn, &["g"]), vec![0]);
    let offsets = fetch_offsets(&mut conn, &[("g", Some(("t", vec![0])))]);
    assert_eq!(
        committed(&offsets, "g", "t", 0),
        Some(-1),
        "offsets went with the group"
    );
}

/// OffsetFetch v8 answers several groups at once; simple commits (generation -1, no member)
/// create a group, while member commits to an unknown group are ILLEGAL_GENERATION (v8) or
/// GROUP_ID_NOT_FOUND (v9).
#[test]
fn offset_fetch_multi_group() {
    let broker = Broker::start(1, FLAGS);
    create_topic(broker.port, "t", 3);
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(commit(&mut conn, 8, ("a", -1, ""), ("t", 0), 10), 0);
    assert_eq!(commit(&mut conn, 8, ("a", -1, ""), ("t", 2), 12), 0);
    assert_eq!(commit(&mut conn, 2, ("b", -1, ""), ("t", 1), 21), 0);
    assert_eq!(
        commit(&mut conn, 8, ("c", 3, "m"), ("t", 0), 1),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit(&mut conn, 9, ("c", 3, "m"), ("t", 0), 1),
        GROUP_ID_NOT_FOUND
    );
    let response = fetch_offsets(
        &mut conn,
        &[("a", None), ("b", Some(("t", vec![0, 1]))), ("c", None)],
    );
    assert_eq!(response.groups.len(), 3);
    assert_eq!(committed(&response, "a", "t", 0), Some(10));
    assert_eq!(committed(&response, "a", "t", 2), Some(12));
    assert_eq!(
        committed(&response, "a", "t", 1),
        None,
        "all-offsets form lists only commits"
    );
    assert_eq!(committed(&response, "b", "t", 0), Some(-1));
    assert_eq!(committed(&response, "b", "t", 1), Some(21));
    let c = response
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "c")
        .unwrap();
    assert!(c.topics.is_empty());
}

/// Group names whose offsets partitions (of 16, placed alternately) land on shard 0 and 1.
fn groups_on_both_shards() -> (String, String) {
    let on = |parity: i32| {
        (0..)
            .map(|i| format!("group-{i}"))
            .find(|g| partition_for(g, 16).get() % 2 == parity)
            .unwrap()
    };
    (on(0), on(1))
}

/// With two shards, offsets committed to groups on both shards and a stable group's
/// membership survive SIGKILL: after restart OffsetFetch returns them and DescribeGroups shows
/// the member, its address and its assignment.
#[test]
fn offsets_and_membership_survive_sigkill() {
    let mut broker = Broker::start(2, FLAGS);
    create_topic(broker.port, "t", 2);
    let (even, odd) = groups_on_both_shards();
    let mut conn = RawConn::connect(broker.port);
    let member = join_new(&mut conn, &even).member_id.to_string();
    assert_eq!(
        sync(&mut conn, &even, 1, &member, &[(&member, b"both")]).error_code,
        0
    );
    assert_eq!(commit(&mut conn, 8, (&even, 1, &member), ("t", 0), 100), 0);
    assert_eq!(commit(&mut conn, 8, (&even, 1, &member), ("t", 0), 101), 0);
    assert_eq!(commit(&mut conn, 7, (&odd, -1, ""), ("t", 1), 200), 0);
    drop(conn);
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let response = fetch_offsets(&mut conn, &[(&even, None), (&odd, None)]);
    assert_eq!(committed(&response, &even, "t", 0), Some(101));
    assert_eq!(committed(&response, &odd, "t", 1), Some(200));
    let described = conn.request(
        &DescribeGroupsRequest::default().with_groups(vec![group_id(&even)]),
        5,
    );
    let group = &described.groups[0];
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].member_id.as_str(), member);
    assert_eq!(&group.members[0].member_assignment[..], b"both");
    assert_eq!(
        group.members[0].client_host.as_str(),
        "/127.0.0.1",
        "the member's address, as Kafka shows it"
    );
    assert_eq!(
        heartbeat(&mut conn, &even, 1, &member, None),
        0,
        "the member is known"
    );
}

/// Every advertised version of every group API gets an answer that decodes (the crate refuses
/// to encode a field a version lacks, which would close the connection instead).
#[test]
fn every_group_api_version_answers() {
    use kafka_protocol::messages::{ListGroupsRequest, OffsetDeleteRequest};
    let broker = Broker::start(1, FLAGS);
    create_topic(broker.port, "t", 1);
    let mut conn = RawConn::connect(broker.port);
    for version in 0..=9 {
        let group = format!("join-v{version}");
        let mut request = join_request(&group, "", None, 10_000);
        if version == 0 {
            request.rebalance_timeout_ms = -1;
        }
        let response = conn.request(&request, version);
        let expected = if version >= 4 { MEMBER_ID_REQUIRED } else { 0 };
        assert_eq!(response.error_code, expected, "JoinGroup v{version}");
        if version < 4 {
            assert_eq!(response.protocol_name.as_deref(), Some("range"));
        }
    }
    for version in 0..=5 {
        let request = SyncGroupRequest::default()
            .with_group_id(group_id("join-v0"))
            .with_member_id(text("nobody"));
        assert_eq!(
            conn.request(&request, version).error_code,
            UNKNOWN_MEMBER_ID
        );
    }
    for version in 0..=4 {
        assert_eq!(
            heartbeat_at(&mut conn, version),
            UNKNOWN_MEMBER_ID,
            "Heartbeat v{version}"
        );
    }
    for version in 0..=5 {
        let mut request = LeaveGroupRequest::default().with_group_id(group_id("join-v0"));
        if version >= 3 {
            request.members = vec![MemberIdentity::default().with_member_id(text("nobody"))];
        } else {
            request.member_id = text("nobody");
        }
        let response = conn.request(&request, version);
        let code = response
            .members
            .first()
            .map_or(response.error_code, |m| m.error_code);
        assert_eq!(code, UNKNOWN_MEMBER_ID, "LeaveGroup v{version}");
    }
    for version in 0..=5 {
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id("join-v0")]);
        let group = &conn.request(&request, version).groups[0];
        assert_eq!(
            group.group_state.as_str(),
            "CompletingRebalance",
            "DescribeGroups v{version}"
        );
    }
    for version in 0..=5 {
        let groups = conn.request(&ListGroupsRequest::default(), version).groups;
        assert!(
            groups.iter().any(|g| g.group_id.as_str() == "join-v0"),
            "ListGroups v{version}"
        );
    }
    for version in 2..=9 {
        assert_eq!(
            commit(&mut conn, version, ("simple", -1, ""), ("t", 0), 7),
            0,
            "v{version}"
        );
    }
    for version in 1..=7 {
        let topic =
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic_name("t"))
                .with_partition_indexes(vec![0]);
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id("simple"))
            .with_topics(Some(vec![topic]));
        let response = conn.request(&request, version);
        assert_eq!(
            response.topics[0].partitions[0].committed_offset, 7,
            "v{version}"
        );
    }
    for version in 8..=9 {
        let response = fetch_offsets_at(&mut conn, version, &[("simple", None)]);
        assert_eq!(
            committed(&response, "simple", "t", 0),
            Some(7),
            "v{version}"
        );
    }
    let delete = OffsetDeleteRequest::default().with_group_id(group_id("nothing"));
    assert_eq!(conn.request(&delete, 0).error_code, GROUP_ID_NOT_FOUND);
    for version in 0..=2 {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id("none")]);
        assert_eq!(
            conn.request(&request, version).results[0].error_code,
            GROUP_ID_NOT_FOUND
        );
    }
}

fn heartbeat_at(conn: &mut RawConn, version: i16) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(group_id("join-v0"))
        .with_generation_id(1)
        .with_member_id(text("nobody"));
    conn.request(&request, version).error_code
}
