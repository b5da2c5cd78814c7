//! Log compaction against the default two-shard broker: a keyed changelog with updates and
//! tombstones compacts to the latest record per key with every survivor at its original
//! offset, tombstones go once `delete.retention.ms` has passed since their first cleaning,
//! and the compacted log reads the same after a clean restart and after SIGKILL; a key map
//! smaller than the keys compacts in several passes; cleaner passes interrupted by SIGKILL
//! again and again never lose a latest value nor bring a deleted key back; consumer groups
//! resume after a restart from a compacted `__consumer_offsets`; and a changelog written in
//! transactions compacts like a plain one, the markers of transactions with nothing left
//! going too, with every transaction still decided after SIGKILL.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::records::Compression;
use rand::{Rng, SeedableRng};

/// Flags that make compaction prompt: segments roll after 300 ms and the cleaner looks every
/// 100 ms.
const PROMPT: &[&str] = &[
    "--log-cleaner-backoff-ms",
    "100",
    "--retention-check-interval-ms",
    "100",
];

/// Long enough for any pass on a loaded two-core machine.
const COMPACTED_WITHIN: Duration = Duration::from_secs(90);

/// One record as the log holds it: its offset, key and value (None: a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    offset: i64,
    key: String,
    value: Option<String>,
}

/// One v2 batch of keyed records (None: a tombstone), base offset 0, no producer.
fn keyed_batch(records: &[(String, Option<String>)]) -> Bytes {
    let now = now_ms();
    let records = records.iter().map(
        |(key, value)| corelog::protocol::record_batch::PlainRecord {
            timestamp: now,
            key: Some(Bytes::from(key.clone())),
            value: value.clone().map(Bytes::from),
        },
    );
    corelog::protocol::record_batch::encode_plain_batch(records, Compression::None)
        .expect("encode")
        .freeze()
}

/// Produces `records` as one batch with acks=all; returns the offset of each record.
fn produce_keyed(
    conn: &mut RawConn,
    topic: &str,
    records: &[(String, Option<String>)],
) -> Vec<i64> {
    let (error, base) = produce(conn, topic, 0, keyed_batch(records));
    assert_eq!(error, 0, "produce to {topic}");
    (base..base + records.len() as i64).collect()
}

/// Every record of partition 0 of `topic` below its high watermark, in offset order (markers
/// of transactions left out). A compacted log is sparse: the next fetch goes on after each
/// batch's last offset, as clients do, whatever records the batch still holds.
fn read_all(conn: &mut RawConn, topic: &str) -> Vec<Stored> {
    read_log(conn, topic).0
}

/// `read_all`'s records and the offsets of the transaction markers among them.
fn read_log(conn: &mut RawConn, topic: &str) -> (Vec<Stored>, Vec<i64>) {
    let mut stored = Vec::new();
    let mut markers = Vec::new();
    let mut offset = 0;
    loop {
        let response: FetchResponse =
            conn.request(&fetch_request(topic, 0, offset, 0, 0, 8 << 20), 12);
        let data = single_partition(&response);
        assert_eq!(data.error_code, 0, "fetch {topic} at {offset}");
        let records = data.records.clone().unwrap_or_default();
        let (batches, _) = parse_batches(&records);
        for info in &batches {
            offset = offset.max(info.base_offset);
            if info.attributes & 0x20 != 0 {
                // A transaction marker: no record of the table.
                markers.push(info.base_offset);
                offset = info.last_offset() + 1;
                continue;
            }
            let mut bytes = records.slice(info.position..info.position + info.size);
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
            for record in set.records.into_iter().filter(|r| r.offset >= offset) {
                stored.push(Stored {
                    offset: record.offset,
                    key: String::from_utf8(record.key.expect("keyed").to_vec()).unwrap(),
                    value: record.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                });
            }
            offset = offset.max(info.last_offset() + 1);
        }
        if offset >= data.high_watermark {
            return (stored, markers);
        }
    }
}

/// What read_committed fetches from offset 0 up to the last stable offset are told, one after
/// the other as a consumer reads: the high watermark, the last stable offset, and the first
/// offsets of the aborted transactions named on the way.
fn read_committed_view(conn: &mut RawConn, topic: &str) -> (i64, i64, Vec<i64>) {
    let mut offset = 0;
    let mut named = Vec::new();
    loop {
        let request = fetch_request(topic, 0, offset, 0, 0, 8 << 20).with_isolation_level(1);
        let response: FetchResponse = conn.request(&request, 12);
        let data = single_partition(&response);
        assert_eq!(data.error_code, 0, "read_committed fetch at {offset}");
        for txn in data.aborted_transactions.iter().flatten() {
            if !named.contains(&txn.first_offset) {
                named.push(txn.first_offset);
            }
        }
        let records = data.records.clone().unwrap_or_default();
        let (batches, _) = parse_batches(&records);
        let next = batches.last().map(|batch| batch.last_offset() + 1);
        match next {
            Some(next) if next > offset && next < data.last_stable_offset => offset = next,
            _ => return (data.high_watermark, data.last_stable_offset, named),
        }
    }
}

/// The latest record of every key among `written` (offset order).
fn latest_per_key(written: &[Stored]) -> BTreeMap<String, Stored> {
    let mut latest = BTreeMap::new();
    for record in written {
        latest.insert(record.key.clone(), record.clone());
    }
    latest
}

/// Whether the log holds exactly one record per key: the latest written, at its offset
/// (tombstones included when `with_tombstones`, else none of their keys at all).
fn is_compacted(stored: &[Stored], written: &[Stored], with_tombstones: bool) -> bool {
    let expected: Vec<Stored> = latest_per_key(written)
        .into_values()
        .filter(|record| with_tombstones || record.value.is_some())
        .collect();
    let mut expected = expected;
    expected.sort_by_key(|record| record.offset);
    stored == expected
}

/// Writes `rounds` rounds of updates to `keys` keys (every 7th key deleted in the last
/// round if `deletes`), a batch of `per_batch` records at a time; returns what was written.
fn write_changelog(
    conn: &mut RawConn,
    topic: &str,
    (keys, rounds, per_batch): (usize, usize, usize),
    deletes: bool,
) -> Vec<Stored> {
    let mut written = Vec::new();
    for round in 0..rounds {
        let records: Vec<(String, Option<String>)> = (0..keys)
            .map(|key| {
                let deleted = deletes && round + 1 == rounds && key % 7 == 0;
                let value = (!deleted).then(|| format!("value-{key}-{round}-{}", "x".repeat(64)));
                (format!("key-{key}"), value)
            })
            .collect();
        for chunk in records.chunks(per_batch) {
            let offsets = produce_keyed(conn, topic, chunk);
            for ((key, value), offset) in chunk.iter().zip(offsets) {
                written.push(Stored {
                    offset,
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
    }
    written
}

fn compacted_topic(broker: &Broker, topic: &str, delete_retention_ms: &str) {
    create_topic_with_configs(
        broker.port,
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "65536"),
            ("segment.ms", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", delete_retention_ms),
        ],
    );
}

/// A keyed changelog compacts to the latest record per key at its original offset,
/// tombstones stay for delete.retention.ms after their first cleaning and then go, and the
/// compacted log reads the same after a clean restart and after SIGKILL, appends continuing
/// at the same log end.
#[test]
fn a_changelog_compacts_to_the_latest_record_per_key() {
    let mut broker = Broker::start_with(Launch::default(), PROMPT);
    let topic = "changelog";
    compacted_topic(&broker, topic, "2000");
    let mut conn = RawConn::connect(broker.port);
    let mut written = write_changelog(&mut conn, topic, (200, 5, 50), true);
    let compacted = wait_until(COMPACTED_WITHIN, || {
        is_compacted(&read_all(&mut conn, topic), &written, true)
    });
    let stored = read_all(&mut conn, topic);
    assert!(
        compacted,
        "not compacted: {} records: {stored:?}",
        stored.len()
    );
    assert!(
        stored.iter().any(|record| record.value.is_none()),
        "tombstones stay at first"
    );

    // New writes make the log dirty again; the pass after delete.retention.ms removes the
    // tombstones and every record of their keys.
    std::thread::sleep(Duration::from_millis(2100));
    written.extend(write_changelog(&mut conn, topic, (20, 2, 20), false));
    let without_tombstones = wait_until(COMPACTED_WITHIN, || {
        is_compacted(&read_all(&mut conn, topic), &written, false)
    });
    assert!(
        without_tombstones,
        "tombstones stayed: {:?}",
        read_all(&mut conn, topic)
    );

    for crash in [false, true] {
        let before = read_all(&mut conn, topic);
        if crash {
            broker.kill();
        } else {
            broker.stop();
        }
        broker.restart();
        conn = RawConn::connect(broker.port);
        assert_eq!(
            read_all(&mut conn, topic),
            before,
            "after restart (crash: {crash})"
        );
    }
    let end = written.last().unwrap().offset + 1;
    let next = produce_keyed(
        &mut conn,
        topic,
        &[("key-new".to_string(), Some("v".to_string()))],
    );
    assert_eq!(next, vec![end], "appends continue at the log end");
}

/// With a key map that holds fewer keys than the log has, compaction still ends with the
/// latest record of every key: each pass cleans as far as its map reaches.
#[test]
fn a_small_key_map_compacts_in_several_passes() {
    let mut args = PROMPT.to_vec();
    args.extend(["--log-cleaner-dedupe-buffer-size", "65536"]);
    let broker = Broker::start_with(Launch::default(), &args);
    let topic = "many-keys";
    compacted_topic(&broker, topic, "3600000");
    let mut conn = RawConn::connect(broker.port);
    // 65536 bytes hold 1365 keys; 4000 keys need three passes at least.
    let written = write_changelog(&mut conn, topic, (4000, 3, 500), true);
    let compacted = wait_until(COMPACTED_WITHIN, || {
        is_compacted(&read_all(&mut conn, topic), &written, true)
    });
    assert!(
        compacted,
        "{} records left",
        read_all(&mut conn, topic).len()
    );
    let (status, body) = http_get(broker.admin_port(), "/metrics");
    assert!(status.contains("200"), "{status}");
    let family = "corelog_partition_cleaner_bytes_written_total{topic=\"many-keys\"";
    assert!(
        sample(&body, family).is_some_and(|bytes| bytes > 0.0),
        "{body}"
    );
    let passed = "corelog_partition_cleaner_last_pass_timestamp_seconds{topic=\"many-keys\"";
    assert!(
        sample(&body, passed).is_some_and(|seconds| seconds > 0.0),
        "{body}"
    );
}

/// SIGKILL at random moments while the cleaner works, many times: after each restart every
/// key's latest acknowledged record is there at its offset (or, for a tombstone, possibly no
/// record of the key at all), and no key holds an older record than its latest.
#[test]
fn cleaner_passes_killed_at_random_never_lose_a_latest_record() {
    let mut broker = Broker::start_with(Launch::default(), PROMPT);
    let topic = "killed";
    compacted_topic(&broker, topic, "0");
    let mut rng = rand::rngs::StdRng::seed_from_u64(now_ms() as u64);
    let mut written = Vec::new();
    for round in 0..12 {
        let mut conn = RawConn::connect(broker.port);
        written.extend(write_changelog(&mut conn, topic, (300, 2, 100), true));
        // Segments roll after 300 ms and the cleaner looks every 100 ms: kills land before,
        // during and after passes.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1200)));
        broker.kill();
        broker.restart();
        let mut conn = RawConn::connect(broker.port);
        let stored = read_all(&mut conn, topic);
        let latest = latest_per_key(&written);
        let mut seen = BTreeMap::new();
        for record in &stored {
            let newest = &latest[&record.key];
            assert!(
                record.offset <= newest.offset,
                "round {round}: {record:?} after the latest {newest:?}"
            );
            seen.insert(record.key.clone(), record.clone());
        }
        for (key, newest) in &latest {
            match (seen.get(key), &newest.value) {
                (Some(last), _) => assert_eq!(last, newest, "round {round}: key {key}"),
                (None, None) => {}
                (None, Some(_)) => panic!("round {round}: key {key} lost {newest:?}"),
            }
        }
    }
}

/// One transaction of `transactional_kills`: its records (offset, key, value) and whether it
/// aborted; its marker follows its last record.
struct WrittenTxn {
    records: Vec<Stored>,
    aborted: bool,
}

impl WrittenTxn {
    fn marker(&self) -> i64 {
        self.records.last().expect("not empty").offset + 1
    }
}

/// A transactional changelog, with SIGKILL at random moments while the cleaner works, many
/// times: after each restart every transaction is decided (the last stable offset is the high
/// watermark), a transaction with any record left has its marker, an aborted one with any
/// record left is named to read_committed fetches, and every key's latest committed record is
/// there; and markers of spent transactions went meanwhile.
#[test]
fn transactional_cleaner_passes_killed_at_random_leave_every_transaction_whole() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let mut broker = Broker::start_with(Launch::default(), PROMPT);
    let topic = "killed-transactions";
    compacted_topic(&broker, topic, "0");
    let mut rng = rand::rngs::StdRng::seed_from_u64(now_ms() as u64);
    let timeout = Duration::from_secs(30);
    let mut txns: Vec<WrittenTxn> = Vec::new();
    let mut conn = RawConn::connect(broker.port);
    for round in 0..10 {
        let producer: ThreadedProducer<DefaultProducerContext> =
            producer_config(&broker.bootstrap())
                .set("transactional.id", "killed-transactions")
                .create()
                .expect("transactional producer");
        producer.init_transactions(timeout).expect("init");
        let response: FetchResponse = conn.request(&fetch_request(topic, 0, 0, 0, 0, 0), 12);
        let mut next = single_partition(&response).high_watermark;
        for number in 0..6 {
            producer.begin_transaction().expect("begin");
            let mut records = Vec::new();
            for _ in 0..20 {
                let key = format!("k{}", rng.gen_range(0..40));
                let value = format!("r{round}-t{number}-{next}");
                let record = BaseRecord::to(topic).key(&key).payload(&value).partition(0);
                producer
                    .send(record)
                    .map_err(|(error, _)| error)
                    .expect("send");
                records.push(Stored {
                    offset: next,
                    key,
                    value: Some(value),
                });
                next += 1;
            }
            producer.flush(timeout).expect("flush");
            let aborted = number % 3 == 2;
            if aborted {
                producer.abort_transaction(timeout).expect("abort");
            } else {
                producer.commit_transaction(timeout).expect("commit");
            }
            next += 1;
            txns.push(WrittenTxn { records, aborted });
        }
        drop(producer);
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1200)));
        broker.kill();
        broker.restart();
        conn = RawConn::connect(broker.port);

        let (stored, markers) = read_log(&mut conn, topic);
        let (high_watermark, last_stable, named) = read_committed_view(&mut conn, topic);
        assert_eq!(high_watermark, next, "round {round}: the log end");
        assert_eq!(
            last_stable, high_watermark,
            "round {round}: a transaction is open"
        );
        let present: BTreeMap<i64, &Stored> = stored.iter().map(|r| (r.offset, r)).collect();
        for txn in &txns {
            let left: Vec<&Stored> = txn
                .records
                .iter()
                .filter(|record| present.get(&record.offset) == Some(record))
                .collect();
            if left.is_empty() {
                continue;
            }
            assert!(
                markers.contains(&txn.marker()),
                "round {round}: records {left:?} left without their marker"
            );
            assert!(
                !txn.aborted || named.contains(&txn.records[0].offset),
                "round {round}: aborted records {left:?} left, not named in {named:?}"
            );
        }
        let committed: Vec<Stored> = txns
            .iter()
            .filter(|txn| !txn.aborted)
            .flat_map(|txn| txn.records.clone())
            .collect();
        for (key, latest) in latest_per_key(&committed) {
            assert_eq!(
                present.get(&latest.offset),
                Some(&&latest),
                "round {round}: key {key}'s latest committed record"
            );
        }
        assert!(
            stored
                .iter()
                .all(|record| present[&record.offset] == record),
            "round {round}: duplicate offsets"
        );
    }
    let (_, markers) = read_log(&mut conn, topic);
    eprintln!("{} of {} markers left", markers.len(), txns.len());
    assert!(
        markers.len() < txns.len(),
        "some spent markers went: {} of {}",
        markers.len(),
        txns.len()
    );
}

/// A group whose offsets were committed many times resumes where it committed after a
/// restart, with `__consumer_offsets` compacted meanwhile (and after a SIGKILL).
#[test]
fn groups_resume_from_a_compacted_offsets_topic() {
    let mut args = PROMPT.to_vec();
    args.extend(["--segment-ms", "300"]);
    let mut broker = Broker::start_with(Launch::default(), &args);
    let topic = "events";
    create_topic(broker.port, topic, 2);
    let mut conn = RawConn::connect(broker.port);
    let group = "compacting-group";
    for commit in 1..=300 {
        simple_commit(&mut conn, group, topic, &[(0, commit), (1, 2 * commit)]);
        if commit % 50 == 0 {
            // Segments roll after 300 ms: the commits spread over several.
            std::thread::sleep(Duration::from_millis(350));
        }
    }
    let offsets_partitions = || {
        std::fs::read_dir(broker.data_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().contains("__consumer_offsets-"))
            .collect::<Vec<_>>()
    };
    let cleaned = wait_until(COMPACTED_WITHIN, || {
        offsets_partitions()
            .iter()
            .any(|dir| dir.join("cleaner-checkpoint").exists())
    });
    assert!(cleaned, "no pass over __consumer_offsets");
    for crash in [false, true] {
        if crash {
            broker.kill();
        } else {
            broker.stop();
        }
        broker.restart();
        let mut conn = RawConn::connect(broker.port);
        let resumed = wait_until(COMPACTED_WITHIN, || {
            committed_offsets(&mut conn, group, topic, &[0, 1]) == [300, 600]
        });
        assert!(
            resumed,
            "{:?}",
            committed_offsets(&mut conn, group, topic, &[0, 1])
        );
    }
}

/// A changelog written in transactions compacts as a plain one: a committed transactional
/// record goes once a later committed record of its key is mapped, records of aborted
/// transactions go whole (also where they are a key's latest), and a transaction's marker goes
/// once none of its batches is left and delete.retention.ms has passed, an aborted one after
/// its entry in the aborted-transaction index (a read_committed fetch then names no aborted
/// transaction). Every transaction stays decided (the last stable offset is the high
/// watermark), also after SIGKILL, when the producer state is rebuilt from the compacted log,
/// and the transactional producer goes on committing.
#[test]
fn a_transactional_changelog_compacts_and_its_spent_markers_go() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let mut broker = Broker::start_with(Launch::default(), PROMPT);
    let topic = "transactional-table";
    compacted_topic(&broker, topic, "0");
    let producer: ThreadedProducer<DefaultProducerContext> = producer_config(&broker.bootstrap())
        .set("transactional.id", "compaction-test")
        .create()
        .expect("transactional producer");
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).expect("init");
    let transaction = |values: &[(&str, &str)], commit: bool| {
        producer.begin_transaction().expect("begin");
        for (key, value) in values {
            let record = BaseRecord::to(topic).key(*key).payload(*value).partition(0);
            producer
                .send(record)
                .map_err(|(error, _)| error)
                .expect("send");
        }
        // Written before the end, so that an aborted transaction leaves records behind.
        producer.flush(timeout).expect("flush");
        if commit {
            producer.commit_transaction(timeout).expect("commit");
        } else {
            producer.abort_transaction(timeout).expect("abort");
        }
    };
    // Offsets: T1 0-1 marker 2, T2 3-4 marker 5, T3 6-7 marker 8, T4 9 marker 10,
    // T5 11 marker 12, T6 13 marker 14.
    transaction(&[("a", "a1"), ("b", "b1")], true);
    transaction(&[("a", "a-aborted"), ("c", "c-aborted")], false);
    transaction(&[("a", "a3"), ("d", "d3")], true);
    transaction(&[("b", "b4")], true);
    transaction(&[("e", "e-aborted")], false);
    transaction(&[("c", "c6")], true);
    let end = 15;
    let mut conn = RawConn::connect(broker.port);

    // The transactions' part of the log, compacted: T1's and both aborted transactions'
    // records and markers gone; T3, T4 and T6 hold latest records and keep their markers.
    let expected = (
        vec![
            (6, "a", "a3"),
            (7, "d", "d3"),
            (9, "b", "b4"),
            (13, "c", "c6"),
        ],
        vec![8, 10, 14],
    );
    let compacted_part = |conn: &mut RawConn| {
        let (stored, markers) = read_log(conn, topic);
        let records: Vec<(i64, String, String)> = stored
            .into_iter()
            .filter(|record| record.offset < end)
            .map(|record| {
                (
                    record.offset,
                    record.key,
                    record.value.expect("no tombstone"),
                )
            })
            .collect();
        let markers: Vec<i64> = markers.into_iter().filter(|m| *m < end).collect();
        (records, markers)
    };
    let matches = |part: &(Vec<(i64, String, String)>, Vec<i64>)| {
        let records: Vec<(i64, &str, &str)> = part
            .0
            .iter()
            .map(|(offset, key, value)| (*offset, key.as_str(), value.as_str()))
            .collect();
        records == expected.0 && part.1 == expected.1
    };
    // Later plain writes keep the partition dirty, roll segments every 300 ms (and with them
    // the producer snapshots that markers must be below) and so bring pass after pass.
    let mut ticks = 0;
    let compacted = wait_until(COMPACTED_WITHIN, || {
        ticks += 1;
        produce_keyed(
            &mut conn,
            topic,
            &[("tick".to_string(), Some(format!("tick-{ticks}")))],
        );
        matches(&compacted_part(&mut conn))
    });
    assert!(compacted, "{:?}", compacted_part(&mut conn));
    let decided = |conn: &mut RawConn, when: &str| {
        let (high_watermark, last_stable, named) = read_committed_view(conn, topic);
        assert_eq!(
            last_stable, high_watermark,
            "{when}: every transaction is decided"
        );
        assert!(
            named.is_empty(),
            "{when}: aborted transactions at {named:?}"
        );
    };
    decided(&mut conn, "compacted");

    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert!(matches(&compacted_part(&mut conn)), "after SIGKILL");
    decided(&mut conn, "after SIGKILL");
    transaction(&[("a", "a7")], true);
    let latest_a = read_all(&mut conn, topic)
        .into_iter()
        .rfind(|record| record.key == "a")
        .and_then(|record| record.value);
    assert_eq!(latest_a.as_deref(), Some("a7"));
    decided(&mut conn, "after the producer's next transaction");
}
