//! Durability across crashes: what the broker acknowledged survives SIGKILL at the offsets it
//! gave, nothing is invented, and a torn or corrupt segment tail is cut off at recovery without
//! losing the batches before it.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::records::Compression;
use rand::{Rng, SeedableRng};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 8;
const PRODUCERS: usize = 4;
const MESSAGES_TOTAL: usize = 100_000;
const MESSAGES_PER_PRODUCER: usize = MESSAGES_TOTAL / PRODUCERS;
const ROUNDS: usize = 3;

/// The payload of message `sequence` of producer `producer` (an id unique across rounds): it names its origin so that anything read
/// back can be traced to exactly one send.
fn payload(producer: usize, sequence: usize) -> Vec<u8> {
    let mut payload = format!("p{producer:02}-s{sequence:06}-").into_bytes();
    payload.resize(100, b'.');
    payload
}

fn parse_payload(payload: &[u8]) -> (usize, usize) {
    let text = std::str::from_utf8(&payload[..12]).expect("payload is ascii");
    let producer = text[1..3].parse().expect("producer in payload");
    let sequence = text[5..11].parse().expect("sequence in payload");
    (producer, sequence)
}

fn partition_of(producer: usize, sequence: usize) -> i32 {
    ((producer + sequence) % PARTITIONS as usize) as i32
}

/// One producer thread: sends its messages until told to stop, then purges what is left so
/// that no acknowledgement can arrive after the crash. Returns every delivery report and how
/// many messages it handed to librdkafka.
fn run_producer(
    bootstrap: String,
    producer_index: usize,
    stop: Arc<AtomicBool>,
    acked_total: Arc<AtomicUsize>,
) -> (Vec<Delivered>, usize) {
    let mut config = producer_config(&bootstrap);
    config
        .set("linger.ms", "2")
        .set("batch.num.messages", "100");
    let context = RecordingContext {
        acked: acked_total,
        ..Default::default()
    };
    let producer: BaseProducer<RecordingContext> = config
        .create_with_context(context)
        .expect("create producer");
    let mut sent = 0;
    while sent < MESSAGES_PER_PRODUCER && !stop.load(Ordering::SeqCst) {
        let body = payload(producer_index, sent);
        let record = BaseRecord::<(), _>::to(TOPIC)
            .partition(partition_of(producer_index, sent))
            .payload(&body);
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => panic!("producer {producer_index}: send failed: {error}"),
        }
        producer.poll(Duration::ZERO);
    }
    while !stop.load(Ordering::SeqCst) && producer.in_flight_count() > 0 {
        producer.poll(Duration::from_millis(10));
    }
    producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    producer.poll(Duration::from_millis(100));
    let deliveries = producer.context().deliveries.lock().unwrap().clone();
    (deliveries, sent)
}

fn seed() -> u64 {
    match std::env::var("CORELOG_CRASH_SEED") {
        Ok(seed) => seed.parse().expect("CORELOG_CRASH_SEED is a u64"),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// What one round of production saw before the crash.
struct Round {
    /// Every delivery report that carried an offset.
    acked: Vec<Delivered>,
    /// Messages handed to librdkafka, per producer of the round.
    sent: Vec<usize>,
}

/// How the broker is stopped under load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    /// SIGKILL: nothing gets flushed.
    Kill,
    /// SIGTERM: in-flight requests finish, the log is synced, exit status 0.
    Terminate,
}

/// Starts PRODUCERS producer threads (ids `first_id..`), stops the broker as `ending` says once
/// `kill_after_acked` of their messages are acknowledged, and collects what they saw.
fn produce_until_stopped(
    broker: &mut Broker,
    first_id: usize,
    kill_after_acked: usize,
    ending: Ending,
) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (first_id..first_id + PRODUCERS)
        .map(|id| {
            let (bootstrap, stop, acked) = (broker.bootstrap(), stop.clone(), acked_total.clone());
            std::thread::spawn(move || run_producer(bootstrap, id, stop, acked))
        })
        .collect();
    // Polled every millisecond rather than with `wait_until`, so the kill lands close to the
    // drawn moment even when the broker acknowledges tens of thousands of messages a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reached = false;
    while !reached && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        reached = acked_total.load(Ordering::SeqCst) >= kill_after_acked;
    }
    match ending {
        Ending::Kill => broker.kill(),
        Ending::Terminate => broker.stop(),
    }
    stop.store(true, Ordering::SeqCst);
    let acked_at_kill = acked_total.load(Ordering::SeqCst);
    assert!(reached, "only {acked_at_kill} acknowledged in 120 s");
    let results: Vec<(Vec<Delivered>, usize)> = threads
        .into_iter()
        .map(|thread| thread.join().expect("producer thread"))
        .collect();
    let acked: Vec<Delivered> = results
        .iter()
        .flat_map(|(deliveries, _)| deliveries.iter().cloned())
        .filter(|delivered| delivered.offset.is_some())
        .collect();
    let sent: Vec<usize> = results.iter().map(|(_, sent)| *sent).collect();
    if acked.len() == PRODUCERS * MESSAGES_PER_PRODUCER {
        eprintln!("note: every message was acknowledged before the kill landed");
    }
    eprintln!(
        "sent {}, acknowledged {} before the kill",
        sent.iter().sum::<usize>(),
        acked.len()
    );
    Round { acked, sent }
}

/// Three rounds of 100k messages from four acks=all producers into eight partitions on two
/// shards, each ended by SIGKILL at a random moment (seeded; `CORELOG_CRASH_SEED` replays one)
/// and followed by a restart on the same directory, so that later rounds append to logs that
/// recovery has already cut. At the end every acknowledged message is read back at its
/// acknowledged offset, offsets run from 0 without gaps, each producer's messages keep their
/// order within a partition, nothing appears that was not sent or appears twice, and
/// producing resumes at the recovered log end.
#[test]
fn acknowledged_messages_survive_sigkill() {
    let seed = seed();
    eprintln!("crash test seed: {seed} (set CORELOG_CRASH_SEED={seed} to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut broker = Broker::start(2, &[]);
    create_topic(broker.port, TOPIC, PARTITIONS);
    let mut acked = Vec::new();
    let mut sent_counts = Vec::new();
    for round in 0..ROUNDS {
        let kill_after_acked = rng.gen_range(MESSAGES_TOTAL / 10..MESSAGES_TOTAL * 8 / 10);
        eprintln!("round {round}: SIGKILL after {kill_after_acked} acknowledged messages");
        let result = produce_until_stopped(
            &mut broker,
            round * PRODUCERS,
            kill_after_acked,
            Ending::Kill,
        );
        assert!(result.acked.len() >= kill_after_acked);
        acked.extend(result.acked);
        sent_counts.extend(result.sent);
        broker.restart();
    }

    verify_after_restart(&broker, &acked, &sent_counts, seed);
}

/// SIGTERM while four producers are busy: the broker finishes what it accepted, syncs and
/// exits 0; after a restart every acknowledged message is at its offset and nothing is
/// invented or duplicated.
#[test]
fn sigterm_under_load_exits_zero_and_keeps_acknowledged() {
    let mut broker = Broker::start(2, &[]);
    create_topic(broker.port, TOPIC, PARTITIONS);
    let result = produce_until_stopped(&mut broker, 0, MESSAGES_TOTAL / 4, Ending::Terminate);
    broker.restart();
    verify_after_restart(&broker, &result.acked, &result.sent, 0);
}

/// Reads the whole topic back and checks it against what was sent and acknowledged.
fn verify_after_restart(broker: &Broker, acked: &[Delivered], sent_counts: &[usize], seed: u64) {
    let consumer = consumer(&broker.bootstrap());
    let ends: HashMap<i32, i64> = (0..PARTITIONS)
        .map(|partition| {
            let (low, high) = watermarks(&consumer, TOPIC, partition);
            assert_eq!(low, 0, "log start of partition {partition}");
            (partition, high)
        })
        .collect();
    let received = consume_until(&consumer, TOPIC, &ends, Duration::from_secs(120));
    check_log_against_sends(&received, sent_counts);
    for delivered in acked {
        let offset = delivered.offset.unwrap();
        let log = &received[&delivered.partition];
        let found = log
            .get(offset as usize)
            .map(|message| message.payload().unwrap_or_default());
        assert_eq!(
            found,
            Some(&delivered.payload[..]),
            "acknowledged message at {}:{offset} after restart (seed {seed})",
            delivered.partition
        );
    }
    let recovered: i64 = ends.values().sum();
    eprintln!(
        "recovered {recovered} messages, {} acknowledged",
        acked.len()
    );
    produce_after_recovery(broker, &ends);
}

/// Every message read back was sent, exactly once, into the partition it was sent to, and
/// each producer's messages appear in send order within a partition.
fn check_log_against_sends(
    received: &HashMap<i32, Vec<rdkafka::message::OwnedMessage>>,
    sent_counts: &[usize],
) {
    let mut seen = HashSet::new();
    for (&partition, messages) in received {
        let mut last_sequence: HashMap<usize, usize> = HashMap::new();
        for (index, message) in messages.iter().enumerate() {
            assert_eq!(
                message.offset(),
                index as i64,
                "offsets contiguous in {partition}"
            );
            let bytes = message.payload().expect("payload");
            let (producer, sequence) = parse_payload(bytes);
            assert!(
                sequence < sent_counts[producer],
                "{partition}:{index} was never sent"
            );
            assert_eq!(
                bytes,
                &payload(producer, sequence)[..],
                "payload bytes intact"
            );
            assert_eq!(
                partition,
                partition_of(producer, sequence),
                "message in wrong partition"
            );
            assert!(
                seen.insert((producer, sequence)),
                "{partition}:{index} is a duplicate"
            );
            if let Some(previous) = last_sequence.insert(producer, sequence) {
                assert!(
                    previous < sequence,
                    "producer {producer} out of order in {partition}"
                );
            }
        }
    }
}

/// After recovery, a new message in each partition lands exactly at the recovered log end.
fn produce_after_recovery(broker: &Broker, ends: &HashMap<i32, i64>) {
    let producer: BaseProducer<RecordingContext> = producer_config(&broker.bootstrap())
        .create_with_context(RecordingContext::default())
        .expect("create producer");
    for partition in 0..PARTITIONS {
        let record = BaseRecord::<(), _>::to(TOPIC)
            .partition(partition)
            .payload("after");
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("enqueue");
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush after recovery");
    for delivered in producer.context().deliveries.lock().unwrap().iter() {
        assert_eq!(delivered.error, None, "produce after recovery");
        assert_eq!(
            delivered.offset,
            Some(ends[&delivered.partition]),
            "offset after recovery"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Torn and corrupt tails.

const BATCHES: usize = 10;
const RECORDS_PER_BATCH: usize = 5;

/// The values of batch number `batch`, each padded to at least `value_bytes`.
fn batch_values(batch: usize, value_bytes: usize) -> Vec<Vec<u8>> {
    (0..RECORDS_PER_BATCH)
        .map(|record| {
            let mut value: Vec<u8> = format!("batch {batch} record {record}").into();
            value.resize(value.len().max(value_bytes), b'#');
            value
        })
        .collect()
}

fn make_batch(batch: usize, value_bytes: usize) -> Bytes {
    let values = batch_values(batch, value_bytes);
    let values: Vec<&[u8]> = values.iter().map(|value| &value[..]).collect();
    record_batch(&values, 1_700_000_000_000 + batch as i64, Compression::None)
}

/// Reads a partition from offset 0 to its high watermark by raw Fetch; returns the stored
/// batch bytes and the high watermark.
fn fetch_all(conn: &mut RawConn, topic: &str, partition: i32) -> (Vec<Bytes>, i64) {
    let mut batches = Vec::new();
    let mut offset = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = fetch_request(topic, partition, offset, 0, 1, 1 << 20);
        let response: FetchResponse = conn.request(&request, 12);
        let data = single_partition(&response);
        assert_eq!(data.error_code, 0, "fetch {topic}-{partition} at {offset}");
        if offset >= data.high_watermark {
            return (batches, data.high_watermark);
        }
        let records = data.records.clone().unwrap_or_default();
        let (infos, _) = parse_batches(&records);
        assert!(
            !infos.is_empty() || Instant::now() < deadline,
            "no progress at {offset}"
        );
        for info in infos {
            if info.last_offset() >= offset {
                let bytes = records.slice(info.position..info.position + info.size);
                assert!(
                    batch_crc_ok(&bytes),
                    "served batch at {} has a bad CRC",
                    info.base_offset
                );
                offset = info.last_offset() + 1;
                batches.push(bytes);
            }
        }
    }
}

/// Checks that `served` are the first `count` produced batches, records byte for byte.
fn assert_batches_are_prefix(served: &[Bytes], count: usize, value_bytes: usize) {
    assert_eq!(served.len(), count, "batches served");
    for (index, bytes) in served.iter().enumerate() {
        let (infos, _) = parse_batches(bytes);
        assert_eq!(
            infos[0].base_offset,
            (index * RECORDS_PER_BATCH) as i64,
            "base offset"
        );
        let produced = make_batch(index, value_bytes);
        assert_eq!(
            &bytes[61..],
            &produced[61..],
            "records of batch {index} verbatim"
        );
    }
}

/// Produces BATCHES batches of values of `value_bytes` into two partitions of a topic with
/// `segment_bytes`, stops the broker cleanly, lets `damage` spoil the last batch of partition
/// 0's last segment, restarts, and checks that recovery cut exactly that batch.
fn torn_tail_case(
    value_bytes: usize,
    segment_bytes: usize,
    damage: impl FnOnce(&Path, &BatchInfo),
) {
    let mut broker = Broker::start(2, &[]);
    let topic = "torn";
    let segment_config = segment_bytes.to_string();
    create_topic_with_configs(broker.port, topic, 2, &[("segment.bytes", &segment_config)]);
    let mut conn = RawConn::connect(broker.port);
    for batch in 0..BATCHES {
        for partition in 0..2 {
            let expected = (batch * RECORDS_PER_BATCH) as i64;
            let produced = produce(&mut conn, topic, partition, make_batch(batch, value_bytes));
            assert_eq!(produced, (0, expected));
        }
    }
    drop(conn);
    broker.stop();

    let segment = last_segment(&broker.partition_dir(topic, 0));
    let bytes = std::fs::read(&segment).expect("read segment");
    let (infos, _) = parse_batches(&bytes);
    let last = infos
        .last()
        .expect("batches stored verbatim in the last segment");
    let last_base = ((BATCHES - 1) * RECORDS_PER_BATCH) as i64;
    assert_eq!(last.base_offset, last_base, "last batch of {segment:?}");
    damage(&segment, last);

    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let (served, high_watermark) = fetch_all(&mut conn, topic, 0);
    assert_eq!(high_watermark, last_base, "log end after recovery");
    assert_batches_are_prefix(&served, BATCHES - 1, value_bytes);
    let (untouched, untouched_end) = fetch_all(&mut conn, topic, 1);
    let end = (BATCHES * RECORDS_PER_BATCH) as i64;
    assert_eq!(untouched_end, end, "partition 1 intact");
    assert_batches_are_prefix(&untouched, BATCHES, value_bytes);

    // Produce continues at the recovered end, and survives another clean restart.
    let again = make_batch(BATCHES - 1, value_bytes);
    assert_eq!(produce(&mut conn, topic, 0, again), (0, last_base));
    drop(conn);
    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let (served, high_watermark) = fetch_all(&mut conn, topic, 0);
    assert_eq!(high_watermark, end, "log end after re-produce and restart");
    assert_batches_are_prefix(&served, BATCHES, value_bytes);
}

fn truncate_mid_batch(segment: &Path, last: &BatchInfo) {
    let file = OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open segment");
    file.set_len((last.position + last.size / 2) as u64)
        .expect("truncate segment");
}

fn flip_byte_in_batch(segment: &Path, last: &BatchInfo) {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment)
        .expect("open segment");
    let position = (last.position + last.size - 3) as u64;
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(position)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(position)).unwrap();
    file.write_all(&[byte[0] ^ 0xff]).unwrap();
    file.sync_all().unwrap();
}

/// A segment cut off in the middle of its last batch (a torn write) is truncated to the batch
/// boundary at start: every earlier batch is served, the log end is that boundary, and new
/// produce continues there.
#[test]
fn torn_last_batch_is_truncated_at_recovery() {
    torn_tail_case(20, 1 << 30, truncate_mid_batch);
}

/// A flipped byte inside the last batch of a segment (its CRC no longer matches) makes
/// recovery cut the log before that batch: earlier batches are served unchanged and new
/// produce continues at the cut.
#[test]
fn corrupt_last_batch_is_truncated_at_recovery() {
    torn_tail_case(20, 1 << 30, flip_byte_in_batch);
}

/// With 1 MiB segments and 200 KB batches the log spans several segments; a torn last batch
/// in the newest segment is cut without touching the sealed segments before it, and the
/// offset index of the newest segment is made to agree with its shortened file.
#[test]
fn torn_last_batch_in_a_later_segment_is_truncated_at_recovery() {
    torn_tail_case(40_000, 1 << 20, truncate_mid_batch);
}

/// As above with a corrupt rather than a torn last batch in the newest of several segments.
#[test]
fn corrupt_last_batch_in_a_later_segment_is_truncated_at_recovery() {
    torn_tail_case(40_000, 1 << 20, flip_byte_in_batch);
}
