//! `corelog group list|describe|delete|reset-offsets` against a real broker: the listing and
//! description (members, decoded assignments, committed offsets, lag) match what the broker
//! holds, a reset dry run commits nothing while `--execute` commits the planned offsets, and
//! refusals (members present, unknown groups) exit non-zero naming the Kafka error; a topic
//! deleted under a group's offsets leaves `describe` working, with its partitions marked.

mod common;

use std::process::{Command, Output};

use bytes::Bytes;
use common::*;
use corelog::client::groups::encode_assignment;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{GroupId, JoinGroupRequest, SyncGroupRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use serde_json::Value;

const TOPIC: &str = "events";

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Runs `corelog group --brokers <broker> <args>`.
fn group(broker: &str, args: &[&str]) -> Output {
    Command::new(broker_binary())
        .arg("group")
        .args(["--brokers", broker])
        .args(args)
        .output()
        .expect("run corelog group")
}

/// Runs a command that must succeed; returns its standard output.
fn ok(broker: &Broker, args: &[&str]) -> String {
    let output = group(&broker.bootstrap(), args);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        broker.fail(&format!(
            "group {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    stdout
}

/// Runs a command that must fail; returns its standard error.
fn refused(broker: &Broker, args: &[&str]) -> String {
    let output = group(&broker.bootstrap(), args);
    assert!(
        !output.status.success(),
        "group {args:?} should fail; stdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Joins `group` as its only member (JoinGroup v5 twice, SyncGroup v3) and assigns it both
/// partitions of TOPIC; returns the member id.
fn join_live_member(conn: &mut RawConn, group: &str) -> String {
    let join = |member: &str| {
        let protocol = JoinGroupRequestProtocol::default()
            .with_name(text("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"));
        JoinGroupRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(member))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![protocol])
    };
    let first = conn.request(&join(""), 5);
    let joined = conn.request(&join(&first.member_id), 5);
    assert_eq!(joined.error_code, 0, "join {group}");
    let member = joined.member_id.to_string();
    let assignment = encode_assignment(&[(TOPIC, &[0, 1])], b"");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(text(&member))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(text(&member))
            .with_assignment(Bytes::from(assignment))]);
    assert_eq!(conn.request(&sync, 3).error_code, 0, "sync {group}");
    member
}

/// A broker with TOPIC (partition 0: 3 records at t=1000 s, 2 at t=2000 s; partition 1: 3
/// records at t=1000 s), group "idle" without members (committed 2 and 1) and group "live"
/// with one member assigned both partitions.
fn setup() -> (Broker, RawConn, String) {
    let broker = Broker::start(1, &["--group-initial-rebalance-delay-ms", "0"]);
    create_topic(broker.port, TOPIC, 2);
    let mut conn = RawConn::connect(broker.port);
    let early = record_batch(&[b"a", b"b", b"c"], 1_000_000, Compression::None);
    let late = record_batch(&[b"d", b"e"], 2_000_000, Compression::None);
    assert_eq!(produce(&mut conn, TOPIC, 0, early.clone()).0, 0);
    assert_eq!(produce(&mut conn, TOPIC, 0, late).0, 0);
    assert_eq!(produce(&mut conn, TOPIC, 1, early).0, 0);
    simple_commit(&mut conn, "idle", TOPIC, &[(0, 2), (1, 1)]);
    let member = join_live_member(&mut conn, "live");
    (broker, conn, member)
}

/// list and describe show both groups, their state, members, assignment, offsets and lag.
#[test]
fn list_and_describe_show_groups_and_lag() {
    let (broker, _conn, member) = setup();
    let listed = json(&ok(&broker, &["list", "--json"]));
    let summary: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_str().unwrap(), g["state"].as_str().unwrap()))
        .collect();
    assert_eq!(summary, [("idle", "Empty"), ("live", "Stable")], "{listed}");
    let table = ok(&broker, &["list"]);
    assert!(
        table.starts_with("GROUP") && table.contains("consumer"),
        "{table}"
    );

    let idle = json(&ok(&broker, &["describe", "idle", "--json"]));
    assert_eq!(idle["state"], "Empty");
    assert_eq!(idle["total_lag"], 5, "(5-2) + (3-1): {idle}");
    let p0 = &idle["partitions"][0];
    assert_eq!(
        (&p0["committed_offset"], &p0["log_end_offset"]),
        (&2.into(), &5.into())
    );
    assert_eq!(p0["lag"], 3);

    let live = json(&ok(&broker, &["describe", "live", "--json"]));
    assert_eq!(
        (&live["state"], &live["protocol"]),
        (&"Stable".into(), &"range".into())
    );
    assert_eq!(live["members"][0]["member_id"], member.as_str());
    assert_eq!(
        live["members"][0]["assignment"]["topics"][0][1],
        serde_json::json!([0, 1])
    );
    let text = ok(&broker, &["describe", "live"]);
    assert!(
        text.contains(&member) && text.contains("events:[0, 1]"),
        "{text}"
    );
    assert!(text.contains("LOG-END-OFFSET"), "{text}");

    let stderr = refused(&broker, &["describe", "ghost"]);
    assert!(stderr.contains("GroupIdNotFound (69)"), "{stderr}");
}

/// A dry run changes nothing; --execute commits each target, clamped to the log's range;
/// a group with members is refused with a clear message.
#[test]
fn reset_offsets_plans_then_commits() {
    let (broker, mut conn, _member) = setup();
    fn reset<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["reset-offsets", "idle", "--topic", TOPIC];
        all.extend_from_slice(args);
        all
    }
    let plan = ok(&broker, &reset(&["--to-earliest"]));
    assert!(
        plan.contains("NEW-OFFSET") && plan.contains("dry run"),
        "{plan}"
    );
    assert_eq!(
        committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]),
        [2, 1],
        "a dry run commits nothing"
    );

    ok(&broker, &reset(&["--to-earliest", "--execute"]));
    assert_eq!(committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]), [0, 0]);
    ok(
        &broker,
        &reset(&["--to-latest", "--partitions", "1", "--execute"]),
    );
    assert_eq!(committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]), [0, 3]);
    ok(&broker, &reset(&["--to-offset", "4", "--execute"]));
    assert_eq!(
        committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]),
        [4, 3],
        "clamped to partition 1's end"
    );
    ok(
        &broker,
        &reset(&["--shift-by", "-2", "--partitions", "0", "--execute"]),
    );
    assert_eq!(committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]), [2, 3]);
    ok(
        &broker,
        &reset(&["--to-datetime", "1970-01-01T00:33:20Z", "--execute"]),
    );
    assert_eq!(
        committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]),
        [3, 3],
        "first record at 2000 s; none in p1"
    );
    ok(&broker, &reset(&["--to-datetime", "1000000", "--execute"]));
    assert_eq!(committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]), [0, 0]);

    let args = [
        "reset-offsets",
        "live",
        "--topic",
        TOPIC,
        "--to-earliest",
        "--execute",
    ];
    let stderr = refused(&broker, &args);
    assert!(stderr.contains("no members"), "{stderr}");
    let stderr = refused(&broker, &["reset-offsets", "idle", "--topic", TOPIC]);
    assert!(
        stderr.contains("--to-earliest"),
        "a target is required: {stderr}"
    );
}

/// delete removes an empty group, refuses one with members (NON_EMPTY_GROUP) and an unknown
/// one (GROUP_ID_NOT_FOUND), and exits non-zero if any group failed.
#[test]
fn delete_reports_each_group() {
    let (broker, mut conn, _member) = setup();
    let stderr = refused(&broker, &["delete", "idle", "live", "ghost"]);
    assert!(stderr.contains("NonEmptyGroup (68)"), "{stderr}");
    assert!(stderr.contains("GroupIdNotFound (69)"), "{stderr}");
    assert_eq!(
        committed_offsets(&mut conn, "idle", TOPIC, &[0, 1]),
        [-1, -1],
        "idle's offsets went with it"
    );
    let listed = json(&ok(&broker, &["list", "--json"]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["live"]);
}

/// After TOPIC is deleted under both groups' offsets and assignment, describe still answers:
/// the group's other topic keeps its log end and lag, and TOPIC's partitions stay listed with
/// their committed offsets, marked deleted, without log end or lag (Kafka's tool shows `-`
/// there after KAFKA-17218; before, describe failed on UNKNOWN_TOPIC_OR_PARTITION).
#[test]
fn describe_marks_partitions_of_a_deleted_topic() {
    let (broker, mut conn, member) = setup();
    create_topic(broker.port, "kept", 1);
    let records = record_batch(&[b"a", b"b", b"c", b"d"], 1_000_000, Compression::None);
    assert_eq!(produce(&mut conn, "kept", 0, records).0, 0);
    simple_commit(&mut conn, "idle", "kept", &[(0, 1)]);
    let deleted = Command::new(broker_binary())
        .args(["topic", "--brokers", &broker.bootstrap(), "delete", TOPIC])
        .output()
        .expect("run corelog topic delete");
    assert!(deleted.status.success(), "topic delete: {deleted:?}");

    // Topic, committed offset, log end offset, lag, deleted.
    type Row<'a> = (&'a str, i64, Option<i64>, Option<i64>, bool);
    let idle = json(&ok(&broker, &["describe", "idle", "--json"]));
    let rows: Vec<Row> = idle["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap(),
                p["committed_offset"].as_i64().unwrap(),
                p["log_end_offset"].as_i64(),
                p["lag"].as_i64(),
                p["deleted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (TOPIC, 2, None, None, true),
            (TOPIC, 1, None, None, true),
            ("kept", 1, Some(4), Some(3), false),
        ],
        "{idle}"
    );
    assert_eq!(idle["total_lag"], 3, "{idle}");

    let live = json(&ok(&broker, &["describe", "live", "--json"]));
    for partition in live["partitions"].as_array().unwrap() {
        assert_eq!(partition["member_id"], member.as_str(), "{live}");
        assert_eq!(partition["deleted"], true, "{live}");
    }
    let table = ok(&broker, &["describe", "idle"]);
    let events: Vec<&str> = table.lines().filter(|l| l.starts_with(TOPIC)).collect();
    assert_eq!(events.len(), 2, "{table}");
    for line in events {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[3..5], ["deleted", "-"], "log end and lag: {table}");
    }
    assert!(table.contains("its topic was deleted"), "{table}");
}
