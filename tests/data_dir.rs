//! Where the data goes: `corelog serve` run as the README runs it, from a fresh working
//! directory with no `--data-dir`, and with the data directory given every way a user may give
//! it (relative, `./x`, `../x`, nested, with a trailing slash, through a symlink, from the
//! environment, from a config file named by a relative path). Each time a real client's
//! messages are read back before and after a clean restart, from where the user pointed.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};

const TOPIC: &str = "where-the-data-goes";
const PARTITIONS: i32 = 4;

/// Payloads per partition, in offset order.
type Sent = HashMap<i32, Vec<Vec<u8>>>;

/// Produces `count` messages over the topic's partitions with librdkafka (acks=all), checks
/// that every one was delivered, and returns them per partition in offset order.
fn produce_all(broker: &Broker, count: usize) -> Sent {
    let producer: BaseProducer<RecordingContext> = producer_config(&broker.bootstrap())
        .create_with_context(RecordingContext::default())
        .expect("create producer");
    for index in 0..count {
        let payload = format!("message {index}");
        enqueue(&producer, TOPIC, index as i32 % PARTITIONS, &payload);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let mut deliveries = producer.context().deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), count, "one delivery report per message");
    deliveries.sort_by_key(|delivered| (delivered.partition, delivered.offset));
    let mut sent = Sent::new();
    for delivered in deliveries {
        assert!(delivered.error.is_none(), "delivery failed: {delivered:?}");
        sent.entry(delivered.partition)
            .or_default()
            .push(delivered.payload);
    }
    sent
}

/// A consumer reads every partition from the beginning and finds exactly `sent`.
fn assert_reads_back(broker: &Broker, sent: &Sent) {
    let consumer = consumer(&broker.bootstrap());
    let ends = sent
        .iter()
        .map(|(partition, payloads)| (*partition, payloads.len() as i64))
        .collect();
    let received = consume_until(&consumer, TOPIC, &ends, Duration::from_secs(60));
    for (partition, payloads) in sent {
        let read: Vec<Vec<u8>> = received[partition]
            .iter()
            .map(|message| message.payload().unwrap_or_default().to_vec())
            .collect();
        assert_eq!(&read, payloads, "partition {partition}");
    }
}

/// Starts a broker as `launch` and `args` say, produces and reads back, stops it (SIGTERM,
/// exit 0), checks that the logs are under `expected`, restarts it and reads everything back.
fn round_trip(launch: Launch, args: &[&str], expected: &Path, messages: usize) {
    let mut broker = Broker::start_with(launch, args);
    create_topic(broker.port, TOPIC, PARTITIONS);
    let sent = produce_all(&broker, messages);
    assert_reads_back(&broker, &sent);
    broker.stop();
    for dir in ["__cluster_metadata-0".to_string(), format!("{TOPIC}-0")] {
        if !expected.join(&dir).is_dir() {
            broker.fail(&format!("no {dir} under {}", expected.display()));
        }
    }
    broker.restart();
    assert_reads_back(&broker, &sent);
    broker.stop();
}

/// A launch from `working_dir` that leaves the data directory to the broker's own rules.
fn launch_in(working_dir: &Path) -> Launch {
    Launch {
        working_dir: Some(working_dir.to_path_buf()),
        no_data_dir_flag: true,
        ..Launch::default()
    }
}

/// A fresh, empty working directory `work` inside a scratch directory the test owns.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let scratch = tempfile::Builder::new()
        .prefix("corelog-cwd-")
        .tempdir()
        .expect("tempdir");
    let work = scratch.path().join("work");
    std::fs::create_dir(&work).expect("create the working directory");
    (scratch, work)
}

/// `corelog serve` with no `--data-dir`, run from a fresh working directory with the default
/// shard count as the README's quick start runs it, keeps its data in `./data` there, and a
/// real client's messages come back before and after a clean restart.
#[test]
fn default_data_dir_from_a_fresh_working_directory() {
    let (_scratch, work) = scratch();
    round_trip(launch_in(&work), &[], &work.join("data"), 200);
}

/// Every form of a relative data directory works, and the data lands where it points: a
/// nested relative path, `./x`, `../x`, a trailing slash, a symlink to a directory, the
/// `CORELOG_DATA_DIR` environment variable, and `data_dir` in a config file that `--config`
/// names by a relative path (relative data paths count from the working directory, as in
/// Kafka's `log.dirs`).
#[test]
fn relative_data_dirs_in_every_form() {
    let (scratch, work) = scratch();
    let outside = scratch.path();
    std::fs::create_dir(outside.join("real")).expect("symlink target");
    std::os::unix::fs::symlink("../real", work.join("linked")).expect("symlink");
    std::fs::write(work.join("corelog.toml"), "data_dir = \"from-toml\"\n").expect("config");
    let flag_forms = [
        ("some/nested/dir", work.join("some/nested/dir")),
        ("./dotted", work.join("dotted")),
        ("../beside", outside.join("beside")),
        ("trailing/", work.join("trailing")),
        ("linked", outside.join("real")),
    ];
    for (given, expected) in flag_forms {
        eprintln!("--data-dir {given}");
        round_trip(launch_in(&work), &["--data-dir", given], &expected, 40);
    }
    eprintln!("CORELOG_DATA_DIR=from-env");
    let mut launch = launch_in(&work);
    launch.env = vec![("CORELOG_DATA_DIR".into(), "from-env".into())];
    round_trip(launch, &[], &work.join("from-env"), 40);
    eprintln!("--config corelog.toml");
    round_trip(
        launch_in(&work),
        &["--config", "corelog.toml"],
        &work.join("from-toml"),
        40,
    );
    assert!(
        !work.join("data").exists(),
        "no form fell back to the default ./data"
    );
}
