//! The admin APIs tools call: AlterConfigs and IncrementalAlterConfigs (live on every shard,
//! recorded, replayed), CreatePartitions, DeleteRecords (durable across SIGKILL),
//! DescribeCluster, OffsetForLeaderEpoch and ListOffsets max-timestamp, with the error codes
//! Kafka answers.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// IncrementalAlterConfigs v1 for one resource; returns (error code, message).
fn incremental(
    conn: &mut RawConn,
    resource_type: i8,
    name: &str,
    operations: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let configs = operations
        .iter()
        .map(|(key, operation, value)| {
            AlterableConfig::default()
                .with_name(text(key))
                .with_config_operation(*operation)
                .with_value(value.map(text))
        })
        .collect();
    let resource = AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_configs(configs);
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![resource])
        .with_validate_only(validate_only);
    let response: IncrementalAlterConfigsResponse = conn.request(&request, 1);
    let result = &response.responses[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// (value, source) of every config of topic `name`, by DescribeConfigs v1 (librdkafka's max).
fn describe(conn: &mut RawConn, name: &str) -> Vec<(String, String, i8)> {
    use describe_configs_request::DescribeConfigsResource;
    let resource = DescribeConfigsResource::default()
        .with_resource_type(TOPIC)
        .with_resource_name(text(name))
        .with_configuration_keys(None);
    let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
    let response: DescribeConfigsResponse = conn.request(&request, 1);
    assert_eq!(response.results[0].error_code, 0, "{response:?}");
    response.results[0]
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), value, c.config_source)
        })
        .collect()
}

fn config(configs: &[(String, String, i8)], key: &str) -> (String, i8) {
    let found = configs.iter().find(|c| c.0 == key).expect(key);
    (found.1.clone(), found.2)
}

/// A batch of one record of `bytes` value bytes.
fn batch_of(bytes: usize) -> bytes::Bytes {
    record_batch(&[&vec![b'x'; bytes]], now_ms(), Compression::None)
}

/// Partition count of `topic` by Metadata v9.
fn partition_count(conn: &mut RawConn, topic: &str) -> usize {
    let request = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
    ]));
    let response: MetadataResponse = conn.request(&request, 9);
    response.topics[0].partitions.len()
}

/// Incremental changes apply on every shard at once, show in DescribeConfigs with their
/// source, refuse unknown keys, bad values, list operations on scalars, unknown topics and
/// broker resources with Kafka's codes, and validate_only changes nothing.
#[test]
fn incremental_alter_configs_apply_live_with_kafka_errors() {
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "cfg", 2);
    let mut conn = RawConn::connect(broker.port);
    let ops = [
        ("retention.ms", SET, Some("1234567")),
        ("max.message.bytes", SET, Some("3000")),
    ];
    assert_eq!(incremental(&mut conn, TOPIC, "cfg", &ops, false), (0, None));
    let configs = describe(&mut conn, "cfg");
    assert_eq!(config(&configs, "retention.ms"), ("1234567".into(), 1));
    assert_eq!(config(&configs, "max.message.bytes"), ("3000".into(), 1));
    assert_eq!(
        config(&configs, "segment.ms").1,
        5,
        "untouched keys stay DEFAULT_CONFIG"
    );
    for partition in 0..2 {
        assert_eq!(
            produce(&mut conn, "cfg", partition, batch_of(4000)).0,
            10,
            "too large"
        );
        assert_eq!(produce(&mut conn, "cfg", partition, batch_of(1000)).0, 0);
    }
    let refused = [
        (vec![("bogus.key", SET, Some("1"))], 40),
        (vec![("retention.ms", SET, Some("soon"))], 40),
        (vec![("retention.ms", APPEND, Some("1"))], 40),
        (vec![("retention.ms", SET, None)], 42),
    ];
    for (ops, code) in refused {
        let (error, message) = incremental(&mut conn, TOPIC, "cfg", &ops, false);
        assert_eq!(error, code, "{ops:?}");
        assert!(
            message.is_some_and(|m| !m.is_empty()),
            "{ops:?} explains itself"
        );
    }
    let ops = [("retention.ms", SET, Some("1"))];
    assert_eq!(incremental(&mut conn, TOPIC, "nope", &ops, false).0, 3);
    assert_eq!(
        incremental(
            &mut conn,
            BROKER,
            "0",
            &[("log.retention.ms", SET, Some("1"))],
            false
        )
        .0,
        42
    );
    assert_eq!(incremental(&mut conn, TOPIC, "cfg", &ops, true), (0, None));
    assert_eq!(
        config(&describe(&mut conn, "cfg"), "retention.ms").0,
        "1234567"
    );
    let ops = [
        ("max.message.bytes", DELETE, None),
        ("cleanup.policy", APPEND, Some("compact")),
    ];
    assert_eq!(incremental(&mut conn, TOPIC, "cfg", &ops, false).0, 0);
    let configs = describe(&mut conn, "cfg");
    assert_eq!(config(&configs, "max.message.bytes").1, 5);
    assert_eq!(
        config(&configs, "cleanup.policy"),
        ("compact,delete".into(), 1)
    );
    // A compacted topic takes only records with keys.
    let keyed = keyed_record_batch(&[(Some(b"k"), &[b'x'; 4000])], now_ms(), Compression::None);
    assert_eq!(
        produce(&mut conn, "cfg", 1, keyed).0,
        0,
        "default limit again"
    );
}

/// Legacy AlterConfigs replaces the whole override set; its validate_only changes nothing.
#[test]
fn alter_configs_replaces_all_overrides() {
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let broker = Broker::start(1, &[]);
    create_topic_with_configs(broker.port, "legacy", 1, &[("retention.ms", "5000")]);
    let mut conn = RawConn::connect(broker.port);
    let alter = |conn: &mut RawConn, pairs: &[(&str, &str)], validate_only: bool, version| {
        let configs = pairs
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(text(k))
                    .with_value(Some(text(v)))
            })
            .collect();
        let resource = AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(text("legacy"))
            .with_configs(configs);
        let request = AlterConfigsRequest::default()
            .with_resources(vec![resource])
            .with_validate_only(validate_only);
        let response: AlterConfigsResponse = conn.request(&request, version);
        response.responses[0].error_code
    };
    assert_eq!(alter(&mut conn, &[("segment.ms", "99999")], true, 0), 0);
    assert_eq!(
        config(&describe(&mut conn, "legacy"), "retention.ms"),
        ("5000".into(), 1)
    );
    assert_eq!(alter(&mut conn, &[("segment.ms", "99999")], false, 2), 0);
    let configs = describe(&mut conn, "legacy");
    assert_eq!(config(&configs, "segment.ms"), ("99999".into(), 1));
    assert_eq!(
        config(&configs, "retention.ms").1,
        5,
        "dropped from the set: default again"
    );
    assert_eq!(alter(&mut conn, &[("no.such.key", "1")], false, 1), 40);
}

/// CreatePartitions grows a topic (placement recorded, produce works on the new partition),
/// refuses shrinking and foreign assignments, and configs and partitions survive a restart.
#[test]
fn create_partitions_and_configs_survive_restart() {
    use create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
    let mut broker = Broker::start(2, &[]);
    create_topic(broker.port, "grow", 2);
    let mut conn = RawConn::connect(broker.port);
    let grow = |conn: &mut RawConn, name: &str, count, assignments, validate_only| {
        let topic = CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            .with_assignments(assignments);
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000)
            .with_validate_only(validate_only);
        let response: CreatePartitionsResponse = conn.request(&request, 3);
        response.results[0].error_code
    };
    assert_eq!(grow(&mut conn, "grow", 2, None, false), 37, "no increase");
    assert_eq!(grow(&mut conn, "grow", 1, None, false), 37, "shrink");
    assert_eq!(grow(&mut conn, "nope", 3, None, false), 3);
    let elsewhere = vec![CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(7)])];
    assert_eq!(grow(&mut conn, "grow", 3, Some(elsewhere), false), 39);
    assert_eq!(grow(&mut conn, "grow", 5, None, true), 0);
    assert_eq!(
        partition_count(&mut conn, "grow"),
        2,
        "validate_only changed nothing"
    );
    let here = vec![CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)])];
    assert_eq!(grow(&mut conn, "grow", 3, Some(here), false), 0);
    assert_eq!(grow(&mut conn, "grow", 4, None, false), 0);
    assert_eq!(partition_count(&mut conn, "grow"), 4);
    assert_eq!(produce(&mut conn, "grow", 3, batch_of(10)), (0, 0));
    assert_eq!(
        incremental(
            &mut conn,
            TOPIC,
            "grow",
            &[("retention.ms", SET, Some("777777"))],
            false
        )
        .0,
        0
    );
    drop(conn);
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(partition_count(&mut conn, "grow"), 4);
    assert_eq!(
        config(&describe(&mut conn, "grow"), "retention.ms"),
        ("777777".into(), 1)
    );
    assert_eq!(produce(&mut conn, "grow", 3, batch_of(10)), (0, 1));
}

/// DeleteRecords v0-2 for one partition: (error code, low watermark).
fn delete_records(
    conn: &mut RawConn,
    topic: &str,
    partition: i32,
    offset: i64,
    version: i16,
) -> (i16, i64) {
    use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    let partition = DeleteRecordsPartition::default()
        .with_partition_index(partition)
        .with_offset(offset);
    let request = DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![partition])])
        .with_timeout_ms(30_000);
    let response: DeleteRecordsResponse = conn.request(&request, version);
    let result = &response.topics[0].partitions[0];
    (result.error_code, result.low_watermark)
}

/// ListOffsets v7 for partition 0 at `timestamp`: (error code, offset, timestamp).
fn list_offset(conn: &mut RawConn, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let partition = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(timestamp);
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![partition])]);
    let response: ListOffsetsResponse = conn.request(&request, 7);
    let result = &response.topics[0].partitions[0];
    (result.error_code, result.offset, result.timestamp)
}

fn fetch_error(conn: &mut RawConn, topic: &str, offset: i64) -> i16 {
    let response: FetchResponse = conn.request(&fetch_request(topic, 0, offset, 0, 1, 1 << 20), 12);
    single_partition(&response).error_code
}

/// DeleteRecords moves the log start (fetch below it is OFFSET_OUT_OF_RANGE, ListOffsets
/// earliest returns it), deletes whole segments below it, refuses offsets past the high
/// watermark, and the new start survives SIGKILL and restart.
#[test]
fn delete_records_is_durable_across_sigkill() {
    let mut broker = Broker::start(1, &[]);
    create_topic_with_configs(broker.port, "trim", 1, &[("segment.bytes", "16384")]);
    let mut conn = RawConn::connect(broker.port);
    for batch in 0..6 {
        assert_eq!(produce(&mut conn, "trim", 0, batch_of(9000)), (0, batch));
    }
    let partition_dir = broker.partition_dir("trim", 0);
    assert_eq!(
        first_segment(&partition_dir).file_name().unwrap(),
        "00000000000000000000.log"
    );
    assert_eq!(
        delete_records(&mut conn, "trim", 0, 7, 2),
        (1, -1),
        "past the high watermark"
    );
    assert_eq!(delete_records(&mut conn, "trim", 0, -5, 1), (1, -1));
    assert_eq!(delete_records(&mut conn, "nope", 0, 1, 0).0, 3);
    assert_eq!(delete_records(&mut conn, "trim", 0, 4, 0), (0, 4));
    assert_eq!(
        delete_records(&mut conn, "trim", 0, 2, 0),
        (0, 4),
        "never backwards"
    );
    assert_eq!(list_offset(&mut conn, "trim", -2).1, 4);
    assert_eq!(fetch_error(&mut conn, "trim", 3), 1);
    assert_eq!(fetch_error(&mut conn, "trim", 4), 0);
    assert_ne!(
        first_segment(&partition_dir).file_name().unwrap(),
        "00000000000000000000.log",
        "whole segments below the log start are deleted"
    );
    drop(conn);
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(
        list_offset(&mut conn, "trim", -2).1,
        4,
        "log start after SIGKILL"
    );
    assert_eq!(fetch_error(&mut conn, "trim", 3), 1);
    assert_eq!(
        delete_records(&mut conn, "trim", 0, -1, 2),
        (0, 6),
        "-1 is the high watermark"
    );
    assert_eq!(list_offset(&mut conn, "trim", -1).1, 6);
}

/// Lowering retention.bytes with IncrementalAlterConfigs deletes old segments at once, not at
/// the next retention pass (30 s by default, longer than this test waits).
#[test]
fn live_retention_change_deletes_segments() {
    let broker = Broker::start(1, &[]);
    create_topic_with_configs(broker.port, "shrink", 1, &[("segment.bytes", "16384")]);
    let mut conn = RawConn::connect(broker.port);
    for batch in 0..6 {
        assert_eq!(produce(&mut conn, "shrink", 0, batch_of(9000)), (0, batch));
    }
    assert_eq!(list_offset(&mut conn, "shrink", -2).1, 0);
    let ops = [("retention.bytes", SET, Some("0"))];
    assert_eq!(incremental(&mut conn, TOPIC, "shrink", &ops, false).0, 0);
    let mut log_start = 0;
    let advanced = wait_until(Duration::from_secs(10), || {
        log_start = list_offset(&mut conn, "shrink", -2).1;
        log_start > 0
    });
    assert!(advanced, "log start still 0 after lowering retention.bytes");
    assert!(log_start < 6, "the active segment stays");
}

/// OffsetForLeaderEpoch: epoch 0 ends at the high watermark, unknown epochs answer -1, a
/// newer current epoch is UNKNOWN_LEADER_EPOCH; DescribeCluster names this broker; ListOffsets
/// -3 finds the first record with the largest timestamp.
#[test]
fn leader_epoch_cluster_and_max_timestamp() {
    use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    let broker = Broker::start(2, &[]);
    create_topic(broker.port, "epochs", 1);
    let mut conn = RawConn::connect(broker.port);
    let now = now_ms();
    for (index, timestamp) in [now - 2000, now, now - 1000].into_iter().enumerate() {
        let batch = record_batch(&[b"a", b"b"], timestamp, Compression::None);
        assert_eq!(
            produce(&mut conn, "epochs", 0, batch),
            (0, 2 * index as i64)
        );
    }
    assert_eq!(list_offset(&mut conn, "epochs", -3), (0, 2, now));
    let ask = |conn: &mut RawConn, topic: &str, current: i32, epoch: i32, version| {
        let partition = OffsetForLeaderPartition::default()
            .with_partition(0)
            .with_current_leader_epoch(current)
            .with_leader_epoch(epoch);
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![partition])]);
        let response: OffsetForLeaderEpochResponse = conn.request(&request, version);
        let result = &response.topics[0].partitions[0];
        (result.error_code, result.leader_epoch, result.end_offset)
    };
    assert_eq!(ask(&mut conn, "epochs", 0, 0, 4), (0, 0, 6));
    assert_eq!(ask(&mut conn, "epochs", -1, 0, 2), (0, 0, 6));
    assert_eq!(ask(&mut conn, "epochs", -1, 3, 3), (0, -1, -1));
    assert_eq!(ask(&mut conn, "epochs", 1, 0, 4).0, 75);
    assert_eq!(
        ask(&mut conn, "epochs", -2, 0, 4).0,
        74,
        "FENCED_LEADER_EPOCH"
    );
    // Fetch (v9+) and ListOffsets (v4+) check the consumer's current epoch alike (KIP-320):
    // the partition's (0) or -1 pass, a newer one is UNKNOWN_LEADER_EPOCH, an older one
    // FENCED_LEADER_EPOCH; nothing is read for them.
    for (current, error) in [(0, 0), (-1, 0), (1, 75), (-2, 74)] {
        let mut request = fetch_request("epochs", 0, 0, 0, 1, 1 << 20);
        request.topics[0].partitions[0].current_leader_epoch = current;
        let expected = if error == 0 { 6 } else { -1 };
        for version in [9, 12] {
            let response: FetchResponse = conn.request(&request, version);
            let partition = single_partition(&response);
            let answer = (partition.error_code, partition.high_watermark);
            assert_eq!(
                answer,
                (error, expected),
                "fetch v{version} in epoch {current}"
            );
        }
        let partition = list_offsets_request::ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_current_leader_epoch(current)
            .with_timestamp(-1);
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name("epochs"))
                .with_partitions(vec![partition])]);
        for version in [4, 7, 10] {
            let response: ListOffsetsResponse = conn.request(&request, version);
            let result = &response.topics[0].partitions[0];
            assert_eq!((result.error_code, result.offset), (error, expected));
        }
    }
    assert_eq!(ask(&mut conn, "nope", -1, 0, 4).0, 3);
    for version in [0, 1] {
        let response: DescribeClusterResponse =
            conn.request(&DescribeClusterRequest::default(), version);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.controller_id, BrokerId(0));
        let brokers: Vec<_> = response
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.port))
            .collect();
        assert_eq!(brokers, vec![(0, i32::from(broker.port))]);
        assert!(!response.cluster_id.is_empty());
    }
    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    let response: DescribeClusterResponse = conn.request(&controllers, 1);
    assert_eq!(response.error_code, 114, "MISMATCHED_ENDPOINT_TYPE");
}
