//! `corelog topic create|list|describe|delete|alter` against a real broker: tables and JSON
//! that show what the broker holds, config changes and partition increases that take effect,
//! and a non-zero exit with the Kafka error named when the broker refuses.

mod common;

use std::process::{Command, Output};

use common::{free_port, Broker};
use serde_json::Value;

/// Runs `corelog topic --brokers <broker> <args>`.
fn topic(broker: &str, args: &[&str]) -> Output {
    Command::new(common::broker_binary())
        .arg("topic")
        .args(["--brokers", broker])
        .args(args)
        .output()
        .expect("run corelog topic")
}

/// Runs a command that must succeed; returns its standard output.
fn ok(broker: &Broker, args: &[&str]) -> String {
    let output = topic(&broker.bootstrap(), args);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        broker.fail(&format!(
            "topic {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    stdout
}

/// Runs a command that must fail; returns its standard error.
fn refused(broker: &Broker, args: &[&str]) -> String {
    let output = topic(&broker.bootstrap(), args);
    assert!(!output.status.success(), "topic {args:?} should fail");
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn config<'a>(described: &'a Value, key: &str) -> &'a Value {
    described["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == key)
        .unwrap_or_else(|| panic!("no config {key} in {described}"))
}

/// The whole life of a topic through the CLI, checked against what the broker reports.
#[test]
fn topic_lifecycle_through_the_cli() {
    let broker = Broker::start(2, &[]);
    let created = ok(
        &broker,
        &[
            "create",
            "orders",
            "audit",
            "-p",
            "3",
            "-c",
            "retention.ms=600000",
        ],
    );
    assert!(created.contains("topic orders created"), "{created}");
    let table = ok(&broker, &["list"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("PARTITIONS"),
        "{table}"
    );
    assert!(table
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]));
    let listed = json(&ok(&broker, &["list", "--json"]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["audit", "orders"]);

    let described = json(&ok(&broker, &["describe", "orders", "--json"]));
    assert_eq!(described["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(config(&described, "retention.ms")["value"], "600000");
    assert_eq!(
        config(&described, "retention.ms")["source"],
        "DYNAMIC_TOPIC_CONFIG"
    );
    assert_eq!(config(&described, "segment.ms")["source"], "DEFAULT_CONFIG");

    let altered = ok(
        &broker,
        &[
            "alter",
            "orders",
            "--set",
            "max.message.bytes=5000",
            "--delete",
            "retention.ms",
            "--partitions",
            "5",
        ],
    );
    assert!(altered.contains("now 5 partitions"), "{altered}");
    let described = json(&ok(&broker, &["describe", "orders", "--json"]));
    assert_eq!(described["partitions"].as_array().unwrap().len(), 5);
    assert_eq!(config(&described, "max.message.bytes")["value"], "5000");
    assert_eq!(
        config(&described, "retention.ms")["source"],
        "DEFAULT_CONFIG"
    );
    let text = ok(&broker, &["describe", "orders"]);
    assert!(
        text.contains("HIGH-WATERMARK") && text.contains("max.message.bytes"),
        "{text}"
    );
    assert!(
        !text.contains("segment.ms"),
        "only overrides without --all:\n{text}"
    );

    let stderr = refused(&broker, &["create", "orders"]);
    assert!(stderr.contains("TopicAlreadyExists (36)"), "{stderr}");
    let stderr = refused(&broker, &["alter", "orders", "--set", "no.such=1"]);
    assert!(stderr.contains("InvalidConfig (40)"), "{stderr}");
    let stderr = refused(&broker, &["alter", "orders", "--partitions", "2"]);
    assert!(stderr.contains("InvalidPartitions (37)"), "{stderr}");
    let stderr = refused(&broker, &["delete", "audit", "ghost"]);
    assert!(stderr.contains("UnknownTopicOrPartition (3)"), "{stderr}");
    let names = json(&ok(&broker, &["list", "--json"]));
    assert_eq!(
        names.as_array().unwrap().len(),
        1,
        "audit was deleted despite ghost: {names}"
    );
}

/// With no broker listening, the CLI fails at once and says which address it tried.
#[test]
fn unreachable_broker_fails_clearly() {
    let address = format!("127.0.0.1:{}", free_port());
    let output = topic(&address, &["list"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address), "{stderr}");
}
