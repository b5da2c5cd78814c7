//! Topic administration over the wire: CreateTopics, DeleteTopics and DescribeConfigs answer
//! with Kafka's error codes, topics, their configs and their deletion outlive a restart (the
//! metadata log is replayed), and a topic of the longest legal name deletes like any other.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, FetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

/// CreateTopics v5 for one topic; returns its error code.
fn create(conn: &mut RawConn, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_value(Some(StrBytes::from_string(value.to_string())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(30_000);
    conn.request(&request, 5).topics[0].error_code
}

/// DeleteTopics v4 (by name) for one topic; returns its error code.
fn delete(conn: &mut RawConn, name: &str) -> i16 {
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name(name)])
        .with_timeout_ms(30_000);
    conn.request(&request, 4).responses[0].error_code
}

/// DescribeConfigs v1 of a topic: its error code and the value of `key`, asked both for that
/// key alone and for all configs (null key list); the two answers must agree.
fn describe(conn: &mut RawConn, topic: &str, key: &str) -> (i16, Option<String>) {
    let mut answers = Vec::new();
    for keys in [Some(vec![StrBytes::from_string(key.to_string())]), None] {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(keys);
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response = conn.request(&request, 1);
        let result = &response.results[0];
        let value = result
            .configs
            .iter()
            .find(|config| config.name.as_str() == key)
            .and_then(|config| config.value.as_ref().map(|value| value.to_string()));
        answers.push((result.error_code, value));
    }
    assert_eq!(
        answers[0], answers[1],
        "{topic} {key}: by name and among all configs"
    );
    answers.remove(0)
}

fn high_watermark(conn: &mut RawConn, topic: &str, partition: i32) -> (i16, i64) {
    let request = fetch_request(topic, partition, 0, 0, 1, 1 << 20);
    let response: FetchResponse = conn.request(&request, 12);
    let data = single_partition(&response);
    (data.error_code, data.high_watermark)
}

/// CreateTopics answers TOPIC_ALREADY_EXISTS (36) for a duplicate, INVALID_PARTITIONS (37)
/// for zero partitions, INVALID_TOPIC_EXCEPTION (17) for an illegal name, and
/// DeleteTopics answers UNKNOWN_TOPIC_OR_PARTITION (3) for a topic that does not exist.
#[test]
fn create_and_delete_topics_answer_kafka_error_codes() {
    let broker = Broker::start(2, &["--auto-create-topics", "false"]);
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(create(&mut conn, "once", 2, &[]), 0);
    assert_eq!(
        create(&mut conn, "once", 2, &[]),
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        create(&mut conn, "no-partitions", 0, &[]),
        37,
        "INVALID_PARTITIONS"
    );
    assert_eq!(
        create(&mut conn, "bad/name", 1, &[]),
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(
        create(&mut conn, "..", 1, &[]),
        17,
        "INVALID_TOPIC_EXCEPTION for '..'"
    );
    assert_eq!(
        delete(&mut conn, "never-created"),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(delete(&mut conn, "once"), 0);
    assert_eq!(
        high_watermark(&mut conn, "once", 0).0,
        3,
        "a deleted topic is unknown"
    );
}

/// Topics, their partition counts, configs and data survive a clean restart; a deleted topic
/// stays deleted (its directories go) and, created again under the same name, starts empty at
/// offset 0.
#[test]
fn topics_and_deletions_survive_restart() {
    let mut broker = Broker::start(2, &["--auto-create-topics", "false"]);
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(
        create(&mut conn, "keep", 4, &[("retention.ms", "123456789")]),
        0
    );
    assert_eq!(create(&mut conn, "gone", 2, &[]), 0);
    for partition in 0..4 {
        let batch = record_batch(&[b"kept", b"too"], 1, Compression::None);
        assert_eq!(produce(&mut conn, "keep", partition, batch), (0, 0));
    }
    let batch = record_batch(&[b"doomed"], 1, Compression::None);
    assert_eq!(produce(&mut conn, "gone", 1, batch), (0, 0));
    assert_eq!(delete(&mut conn, "gone"), 0);
    drop(conn);
    broker.stop();
    broker.restart();

    let mut conn = RawConn::connect(broker.port);
    for partition in 0..4 {
        assert_eq!(
            high_watermark(&mut conn, "keep", partition),
            (0, 2),
            "keep-{partition}"
        );
    }
    assert_eq!(
        high_watermark(&mut conn, "keep", 4).0,
        3,
        "keep has exactly 4 partitions"
    );
    let retention = describe(&mut conn, "keep", "retention.ms");
    assert_eq!(retention, (0, Some("123456789".to_string())), "config kept");
    assert_eq!(
        high_watermark(&mut conn, "gone", 1).0,
        3,
        "gone stays deleted"
    );
    let gone_dirs = || (0..2).any(|partition| broker.partition_dir("gone", partition).exists());
    assert!(
        wait_until(Duration::from_secs(30), || !gone_dirs()),
        "the deleted topic's partition directories are removed"
    );

    assert_eq!(
        create(&mut conn, "gone", 2, &[]),
        0,
        "the name is free again"
    );
    assert_eq!(
        high_watermark(&mut conn, "gone", 1),
        (0, 0),
        "a recreated topic is empty"
    );
    let batch = record_batch(&[b"reborn"], 1, Compression::None);
    assert_eq!(
        produce(&mut conn, "gone", 1, batch),
        (0, 0),
        "and starts at offset 0"
    );
}

/// DescribeConfigs of a topic reports a config set at creation and the broker default for one
/// not set; of an unknown topic it answers UNKNOWN_TOPIC_OR_PARTITION (3).
#[test]
fn describe_configs_reports_topic_configs() {
    let broker = Broker::start(2, &["--auto-create-topics", "false"]);
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(
        create(&mut conn, "configured", 1, &[("segment.bytes", "2097152")]),
        0
    );
    let segment = describe(&mut conn, "configured", "segment.bytes");
    assert_eq!(segment, (0, Some("2097152".to_string())));
    let max_message = describe(&mut conn, "configured", "max.message.bytes");
    assert_eq!(max_message, (0, Some("1048588".to_string())), "the default");
    assert_eq!(describe(&mut conn, "missing", "segment.bytes").0, 3);
}

/// Kafka's longest legal topic name: 249 characters, cycling through every legal one.
fn longest_topic_name() -> String {
    let legal = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    legal.chars().cycle().take(249).collect()
}

fn admin_client(broker: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("create admin client")
}

/// Creates (`create`) or deletes a topic through librdkafka's admin API and asserts success.
fn admin_change(admin: &AdminClient<DefaultClientContext>, name: &str, create: bool) {
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = if create {
        let topic = NewTopic::new(name, 3, TopicReplication::Fixed(1));
        futures::executor::block_on(admin.create_topics([&topic], &options))
    } else {
        futures::executor::block_on(admin.delete_topics(&[name], &options))
    };
    let results = results.expect("admin request");
    assert_eq!(results.len(), 1);
    if let Err((_, code)) = &results[0] {
        panic!(
            "{} failed: {code}",
            if create { "create" } else { "delete" }
        );
    }
}

/// Produces `per_partition` messages tagged `life` to each of the topic's 3 partitions with
/// librdkafka, and asserts they were given offsets 0.. in every partition.
fn produce_life(broker: &Broker, topic: &str, life: &str, per_partition: i64) {
    let producer: BaseProducer<RecordingContext> = producer_config(&broker.bootstrap())
        .create_with_context(RecordingContext::default())
        .expect("create producer");
    for index in 0..per_partition * 3 {
        let payload = format!("{life} {index}");
        enqueue(&producer, topic, (index % 3) as i32, &payload);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let deliveries = producer.context().deliveries.lock().unwrap().clone();
    let mut offsets: Vec<(i32, Option<i64>)> = deliveries
        .iter()
        .map(|delivered| (delivered.partition, delivered.offset))
        .collect();
    offsets.sort();
    let expected: Vec<(i32, Option<i64>)> = (0..3)
        .flat_map(|partition| (0..per_partition).map(move |offset| (partition, Some(offset))))
        .collect();
    assert_eq!(
        offsets, expected,
        "{life}: every message delivered, from offset 0"
    );
}

/// The topic holds nothing, then `life`'s messages are all that a consumer reads from it.
fn assert_only_life(broker: &Broker, topic: &str, life: &str, per_partition: i64) {
    let mut conn = RawConn::connect(broker.port);
    for partition in 0..3 {
        assert_eq!(
            high_watermark(&mut conn, topic, partition),
            (0, 0),
            "before {life}, partition {partition} is empty: nothing of a deleted life came back"
        );
    }
    produce_life(broker, topic, life, per_partition);
    let consumer = consumer(&broker.bootstrap());
    let ends: HashMap<i32, i64> = (0..3).map(|partition| (partition, per_partition)).collect();
    let received = consume_until(&consumer, topic, &ends, Duration::from_secs(60));
    for (partition, messages) in received {
        for message in messages {
            let payload = String::from_utf8_lossy(message.payload().unwrap_or_default());
            assert!(
                payload.starts_with(life),
                "partition {partition}: {payload}"
            );
        }
    }
}

/// Directories in the data directory whose name starts like the topic's.
fn leftovers(data_dir: &Path, topic: &str) -> Vec<String> {
    std::fs::read_dir(data_dir)
        .expect("read the data directory")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&topic[..100]))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

/// A topic of Kafka's longest legal name (249 characters) round-trips like any other: with a
/// real client it is created, written and deleted, and created again it holds nothing of
/// before, both at once and across a restart, and no directory of it is left behind. Neither
/// does a deletion whose directory stayed behind (a removal that failed at run time, a crash
/// before or after the rename to its deletion name, at the length limit) resurface.
#[test]
fn topic_of_the_longest_name_deletes_and_recreates_empty() {
    let mut broker = Broker::start(2, &["--auto-create-topics", "false"]);
    let topic = longest_topic_name();
    assert_eq!(topic.len(), 249);
    let admin = admin_client(&broker);
    admin_change(&admin, &topic, true);
    produce_life(&broker, &topic, "first", 20);
    let saved = broker.root().join("saved");
    copy_dir(&broker.partition_dir(&topic, 0), &saved);
    admin_change(&admin, &topic, false);
    admin_change(&admin, &topic, true);
    assert_only_life(&broker, &topic, "second", 10);

    // A removal that failed at run time left the directory under its own name.
    admin_change(&admin, &topic, false);
    assert_eq!(
        leftovers(&broker.data_dir(), &topic),
        Vec::<String>::new(),
        "the deleted topic's directories are gone"
    );
    copy_dir(&saved, &broker.partition_dir(&topic, 0));
    admin_change(&admin, &topic, true);
    assert_only_life(&broker, &topic, "third", 10);

    // A crash interrupted the deletion before and after renaming the directory.
    admin_change(&admin, &topic, false);
    drop(admin);
    broker.stop();
    copy_dir(&saved, &broker.partition_dir(&topic, 0));
    let unique = "0123456789abcdef0123456789abcdef";
    let tail = format!("-1.{unique}-delete");
    let renamed = format!("{}{tail}", &topic[..255 - tail.len()]);
    copy_dir(&saved, &broker.data_dir().join(renamed));
    broker.restart();
    assert_eq!(
        leftovers(&broker.data_dir(), &topic),
        Vec::<String>::new(),
        "start-up removed what the interrupted deletion left"
    );
    let admin = admin_client(&broker);
    admin_change(&admin, &topic, true);
    assert_only_life(&broker, &topic, "fourth", 10);
}
