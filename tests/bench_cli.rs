//! `corelog bench` against a real broker: the JSON report on the last line of standard output,
//! its counts checked against what the broker stored, the open-loop rate, consume and e2e
//! reports, and a clear failure when no broker listens.

mod common;

use std::process::{Command, Output};

use common::{topic_name, Broker, RawConn};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::ListOffsetsRequest;
use serde_json::Value;

/// Runs `corelog bench <args>` and returns its output.
fn bench(args: &[&str]) -> Output {
    Command::new(common::broker_binary())
        .arg("bench")
        .args(args)
        .output()
        .expect("run corelog bench")
}

/// Runs a bench that must succeed and returns the JSON object on its last stdout line.
fn bench_json(broker: &Broker, args: &[&str]) -> Value {
    let bootstrap = broker.bootstrap();
    let mut all = vec![args[0], "--brokers", bootstrap.as_str(), "--json"];
    all.extend_from_slice(&args[1..]);
    let output = bench(&all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        broker.fail(&format!(
            "bench {all:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        ));
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|error| panic!("last line is not JSON ({error}): {last:?}\n{stdout}"))
}

fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {report}"))
}

/// The headline latency object has every percentile, in non-decreasing order.
fn assert_latency_ordered(report: &Value) {
    assert_percentiles_ordered(report, "latency_us");
}

/// The latency object `key` has every percentile, in non-decreasing order.
fn assert_percentiles_ordered(report: &Value, key: &str) {
    let latency = &report[key];
    let name = key;
    let keys = ["p50", "p90", "p99", "p999", "p9999", "max"];
    let values: Vec<u64> = keys
        .iter()
        .map(|key| {
            latency[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}.{key} missing in {report}"))
        })
        .collect();
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "latency percentiles out of order: {latency}"
    );
    assert!(values[0] > 0, "no latency recorded: {latency}");
}

/// The log end offset of `topic`-`partition` (ListOffsets latest).
fn end_offset(port: u16, topic: &str, partition: i32) -> i64 {
    let wanted = ListOffsetsPartition::default()
        .with_partition_index(partition)
        .with_timestamp(-1);
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![wanted])]);
    let response = RawConn::connect(port).request(&request, 5);
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "ListOffsets {topic}-{partition}");
    answer.offset
}

/// A closed-loop produce reports exactly the records the broker then holds, with ordered
/// latency percentiles; a consume of the same topic then reads every one of them back.
#[test]
fn produce_report_matches_the_log_and_consume_reads_it_back() {
    let broker = Broker::start(2, &[]);
    let args = [
        "produce",
        "--topic",
        "bench-closed",
        "--partitions",
        "2",
        "--message-size",
        "512",
        "--duration",
        "2s",
    ];
    let report = bench_json(&broker, &args);
    assert_eq!(report["scenario"], "produce");
    let messages = number(&report, "messages") as i64;
    assert!(messages > 0, "nothing produced: {report}");
    assert_eq!(number(&report, "bytes") as i64, messages * 512);
    assert_eq!(number(&report, "errors"), 0.0, "{report}");
    assert!(number(&report, "msgs_per_s") > 0.0 && number(&report, "mb_per_s") > 0.0);
    assert!(
        (number(&report, "duration_s") - 2.0).abs() < 1.0,
        "{report}"
    );
    assert_eq!(report["parameters"]["partitions"], 2);
    assert_latency_ordered(&report);
    let stored: i64 = (0..2)
        .map(|partition| end_offset(broker.port, "bench-closed", partition))
        .sum();
    assert_eq!(stored, messages, "the broker holds what the report counted");

    let consumed = bench_json(
        &broker,
        &["consume", "--topic", "bench-closed", "--duration", "10s"],
    );
    assert_eq!(consumed["scenario"], "consume");
    assert_eq!(number(&consumed, "messages") as i64, messages, "{consumed}");
    assert_latency_ordered(&consumed);
}

/// Open loop sends rate x duration messages (within 20%), whatever the broker's speed.
#[test]
fn open_loop_produces_at_the_requested_rate() {
    let broker = Broker::start(1, &[]);
    let args = [
        "produce",
        "--topic",
        "bench-open",
        "--message-size",
        "100",
        "--rate",
        "2000",
        "--duration",
        "2s",
    ];
    let report = bench_json(&broker, &args);
    let messages = number(&report, "messages");
    assert!(
        (3200.0..=4800.0).contains(&messages),
        "expected about 4000 messages, got {messages}: {report}"
    );
    assert_eq!(report["parameters"]["mode"], "open-loop");
    assert_latency_ordered(&report);
    // Each request's round trip is part of the latency of every message it carried, which
    // also counts the wait from the message's intended time to the send.
    assert_percentiles_ordered(&report, "produce_request_latency_us");
    let slowest = |key: &str| report[key]["max"].as_u64().unwrap();
    assert!(
        slowest("produce_request_latency_us") <= slowest("produce_latency_us"),
        "{report}"
    );
    assert_eq!(end_offset(broker.port, "bench-open", 0) as f64, messages);
}

/// e2e consumes what it produces and reports end-to-end latency from the records' stamps.
#[test]
#[ignore = "hung once in ~30 runs (30 s, then timed out), suspected glommio lost wake-up; \
            run with --ignored while investigating (see the issue notes)"]
fn e2e_reports_consumed_messages_and_latency() {
    let broker = Broker::start(2, &[]);
    let args = [
        "e2e",
        "--topic",
        "bench-e2e",
        "--partitions",
        "2",
        "--rate",
        "1000",
        "--duration",
        "2s",
    ];
    let report = bench_json(&broker, &args);
    assert_eq!(report["scenario"], "e2e");
    let produced = number(&report, "produced_messages");
    let consumed = number(&report, "messages");
    assert!(produced > 1000.0, "{report}");
    // The last messages may still be in flight when the run ends.
    assert!(
        consumed > produced * 0.8 && consumed <= produced,
        "{report}"
    );
    assert_latency_ordered(&report);
    // One machine, one clock: an end-to-end latency above a minute would be a unit mix-up.
    assert!(
        number(&report["latency_us"], "max") < 60_000_000.0,
        "{report}"
    );
}

/// Without a broker at the address, bench exits non-zero and says it cannot reach it.
#[test]
fn unreachable_broker_fails_with_a_message() {
    let port = common::free_port();
    let address = format!("127.0.0.1:{port}");
    let output = bench(&[
        "produce",
        "--brokers",
        &address,
        "--topic",
        "t",
        "--duration",
        "1s",
    ]);
    assert!(!output.status.success(), "bench succeeded without a broker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the broker") && stderr.contains(&address),
        "unclear error: {stderr}"
    );
}

/// The report names the request versions negotiated from the broker's ApiVersions (corelog
/// serves the bench's preferred ones) and the leader that Metadata advertised.
#[test]
fn report_names_negotiated_versions_and_the_leader() {
    let broker = Broker::start(1, &[]);
    let report = bench_json(
        &broker,
        &["produce", "--topic", "negotiated", "--duration", "300ms"],
    );
    let parameters = &report["parameters"];
    assert_eq!(
        parameters["leader"],
        broker.bootstrap().as_str(),
        "{report}"
    );
    let versions = &parameters["versions"];
    for (api, version) in [
        ("produce", 7),
        ("fetch", 11),
        ("metadata", 9),
        ("list_offsets", 5),
    ] {
        assert_eq!(versions[api], version, "{api} in {report}");
    }
    assert!(number(&report, "messages") > 0.0, "{report}");
}

/// The load goes to the leader's advertised address, not to the bootstrap address: with an
/// advertised port where nothing listens, bench fails naming that port.
#[test]
fn load_goes_to_the_advertised_leader() {
    let advertised = format!("127.0.0.1:{}", common::free_port());
    let broker = Broker::start(1, &["--advertised-listener", &advertised]);
    let bootstrap = broker.bootstrap();
    let output = bench(&[
        "produce",
        "--brokers",
        &bootstrap,
        "--topic",
        "advertised",
        "--duration",
        "300ms",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "bench ignored the advertised leader"
    );
    assert!(
        stderr.contains("cannot reach the broker") && stderr.contains(&advertised),
        "unclear error: {stderr}"
    );
}
