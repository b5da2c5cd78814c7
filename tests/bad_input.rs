//! Hostile bytes on one connection never hurt another: garbage, truncated, oversized and
//! malformed frames make the broker close that connection, while a real client producing and
//! consuming elsewhere sees no error and the broker keeps running.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BufMut;
use common::*;
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use kafka_protocol::records::Compression;
use rand::{Rng, RngCore, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "good-client";
/// How long the broker may take to close a connection that sent something bad.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// A librdkafka producer and consumer that keep sending a message and reading it back until
/// told to stop, recording every error either client reports.
struct GoodClient {
    stop: Arc<AtomicBool>,
    round_trips: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl GoodClient {
    fn start(bootstrap: String) -> GoodClient {
        let stop = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(AtomicUsize::new(0));
        let (thread_stop, thread_round_trips) = (stop.clone(), round_trips.clone());
        let thread = std::thread::spawn(move || {
            good_client_loop(&bootstrap, &thread_stop, &thread_round_trips)
        });
        GoodClient {
            stop,
            round_trips,
            thread: Some(thread),
        }
    }

    fn round_trips(&self) -> usize {
        self.round_trips.load(Ordering::SeqCst)
    }

    /// Stops the client and returns every error it saw.
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("good client thread")
    }
}

fn good_client_loop(bootstrap: &str, stop: &AtomicBool, round_trips: &AtomicUsize) -> Vec<String> {
    let producer: BaseProducer<RecordingContext> = producer_config(bootstrap)
        .set("linger.ms", "0")
        .create_with_context(RecordingContext::default())
        .expect("create producer");
    let consumer: BaseConsumer<ErrorCountingContext> = consumer_config(bootstrap)
        .create_with_context(ErrorCountingContext::default())
        .expect("create consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).expect("assign");
    let mut errors = Vec::new();
    let mut index = 0u64;
    while !stop.load(Ordering::SeqCst) && errors.is_empty() {
        let payload = format!("good {index}");
        let record = BaseRecord::<(), _>::to(TOPIC)
            .partition(0)
            .payload(&payload);
        if let Err((error, _)) = producer.send(record) {
            errors.push(format!("send: {error}"));
            break;
        }
        if let Err(error) = producer.flush(Duration::from_secs(30)) {
            errors.push(format!("flush: {error}"));
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) if message.offset() == index as i64 => {
                    if message.payload() != Some(payload.as_bytes()) {
                        errors.push(format!("read {:?} at {index}", message.payload()));
                    }
                    break;
                }
                Some(Ok(message)) => errors.push(format!("unexpected offset {}", message.offset())),
                Some(Err(error)) => errors.push(format!("consume: {error}")),
                None if Instant::now() > deadline => {
                    errors.push(format!("message {index} not consumed within 30 s"));
                }
                None => continue,
            }
            if !errors.is_empty() {
                break;
            }
        }
        round_trips.fetch_add(1, Ordering::SeqCst);
        index += 1;
    }
    for delivered in producer.context().deliveries.lock().unwrap().iter() {
        if let Some(error) = &delivered.error {
            errors.push(format!("delivery: {error}"));
        }
    }
    errors.extend(
        producer
            .context()
            .client_errors
            .lock()
            .unwrap()
            .iter()
            .cloned(),
    );
    errors.extend(
        consumer
            .context()
            .client_errors
            .lock()
            .unwrap()
            .iter()
            .cloned(),
    );
    errors
}

/// Sends `bytes` on a fresh connection (write errors are fine: the broker may close first),
/// optionally half-closes, and asserts that the broker closes the connection. Unless the
/// client half-closed (a peer hanging up mid-frame is not the broker's to report), the broker
/// must also say so in its log, naming the peer (whose port is this connection's local port).
fn assert_closed_after(broker: &mut Broker, what: &str, bytes: &[u8], half_close: bool) {
    let mut conn = RawConn::connect(broker.port);
    let peer_port = conn.stream.local_addr().unwrap().port();
    let _ = std::io::Write::write_all(&mut conn.stream, bytes);
    if half_close {
        conn.shutdown_write();
    }
    if !conn.wait_closed_by_peer(CLOSE_TIMEOUT) {
        broker.fail(&format!(
            "{what}: connection still open after {CLOSE_TIMEOUT:?}"
        ));
    }
    if !half_close {
        let peer = format!("127.0.0.1:{peer_port}");
        let logged = wait_until(Duration::from_secs(10), || broker.stderr().contains(&peer));
        if !logged {
            broker.fail(&format!("{what}: no log line names the closed peer {peer}"));
        }
    }
    assert_broker_healthy(broker, what);
}

fn assert_broker_healthy(broker: &mut Broker, what: &str) {
    if !broker.is_alive() {
        broker.fail(&format!("broker died after {what}"));
    }
    let mut conn = RawConn::connect(broker.port);
    let response = conn.request(&ApiVersionsRequest::default(), 0);
    assert_eq!(response.error_code, 0, "ApiVersions after {what}");
}

/// While a librdkafka producer and consumer work on their own connections, other connections
/// send random garbage, a truncated frame, a length prefix over socket.request.max.bytes,
/// negative and zero lengths, an unknown API key, an unknown version of a known API, and
/// valid headers over malformed bodies. The broker closes each bad connection, stays up, keeps
/// answering, and the good client sees no error and keeps making progress.
#[test]
fn bad_connections_are_closed_and_do_not_disturb_good_clients() {
    let mut broker = Broker::start(2, &[]);
    create_topic(broker.port, TOPIC, 1);
    let good = GoodClient::start(broker.bootstrap());
    assert!(
        wait_until(Duration::from_secs(60), || good.round_trips() >= 3),
        "the good client works before any bad input"
    );

    let seed: u64 = rand::thread_rng().gen();
    eprintln!("garbage seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..5 {
        let mut garbage = vec![0u8; rng.gen_range(1..64 * 1024)];
        rng.fill_bytes(&mut garbage);
        assert_closed_after(
            &mut broker,
            &format!("random garbage #{round}"),
            &garbage,
            true,
        );
    }
    let mut truncated = frame(&header_v1_frame(3, 1, 1, &[0, 0, 0, 0]));
    truncated[3] = 200;
    assert_closed_after(
        &mut broker,
        "a truncated frame then EOF",
        &truncated[..10],
        true,
    );
    let oversized = (200i32 * 1024 * 1024).to_be_bytes();
    assert_closed_after(&mut broker, "a 200 MiB length prefix", &oversized, false);
    let just_over = (100i32 * 1024 * 1024 + 1).to_be_bytes();
    assert_closed_after(&mut broker, "a length of 100 MiB + 1", &just_over, false);
    assert_closed_after(&mut broker, "a length of -1", &(-1i32).to_be_bytes(), false);
    assert_closed_after(
        &mut broker,
        "a length of i32::MIN",
        &i32::MIN.to_be_bytes(),
        false,
    );
    assert_closed_after(
        &mut broker,
        "a zero-length frame",
        &0i32.to_be_bytes(),
        false,
    );
    let unknown_key = frame(&header_v1_frame(12_345, 0, 1, &[]));
    assert_closed_after(&mut broker, "an unknown API key", &unknown_key, false);
    let unknown_version = frame(&header_v1_frame(3, 99, 1, &[0, 0, 0, 0]));
    assert_closed_after(&mut broker, "Metadata v99", &unknown_version, false);
    malformed_bodies(&mut broker);

    assert!(broker.is_alive(), "broker alive at the end");
    let before = good.round_trips();
    assert!(
        wait_until(Duration::from_secs(60), || good.round_trips() >= before + 3),
        "the good client still makes progress after the bad input"
    );
    let errors = good.finish();
    assert!(
        errors.is_empty(),
        "the good client saw errors: {errors:?}\n{}",
        broker.stderr()
    );
    broker.stop();
}

/// Valid request headers over bodies that do not parse.
fn malformed_bodies(broker: &mut Broker) {
    // Metadata v4: a topics array claiming a million entries, and nothing after it.
    let mut body = Vec::new();
    body.put_i32(1_000_000);
    let metadata = frame(&header_v1_frame(3, 4, 1, &body));
    assert_closed_after(
        broker,
        "Metadata with a topics array past the frame",
        &metadata,
        false,
    );

    // Produce v3: a records length pointing far past the end of the frame.
    let mut body = Vec::new();
    body.put_i16(-1); // transactional id: null
    body.put_i16(-1); // acks
    body.put_i32(30_000);
    body.put_i32(1);
    body.put_i16(TOPIC.len() as i16);
    body.put_slice(TOPIC.as_bytes());
    body.put_i32(1);
    body.put_i32(0);
    body.put_i32(1_000_000);
    body.put_slice(&[0u8; 64]);
    let produce = frame(&header_v1_frame(0, 3, 1, &body));
    assert_closed_after(
        broker,
        "Produce with records past the frame",
        &produce,
        false,
    );

    // Fetch v12 (flexible): a compact string length far past the end of the frame.
    let mut header = Vec::new();
    header.put_i16(1);
    header.put_i16(12);
    header.put_i32(1);
    header.put_i16(4);
    header.put_slice(b"test");
    header.put_u8(0);
    header.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]);
    assert_closed_after(broker, "Fetch with a bad varint", &frame(&header), false);

    // A valid request followed by garbage in the same write: the valid one is answered first.
    let mut conn = RawConn::connect(broker.port);
    let request = MetadataRequest::default().with_topics(Some(vec![]));
    let (correlation_id, body) = conn.encode_request(&request, 4);
    let mut bytes = frame(&body);
    bytes.extend_from_slice(&frame(&header_v1_frame(12_345, 0, 2, &[])));
    std::io::Write::write_all(&mut conn.stream, &bytes).unwrap();
    let response = conn.recv_response::<MetadataRequest>(correlation_id, 4);
    assert!(
        response.is_ok(),
        "the request before the bad one is answered: {response:?}"
    );
    assert!(
        conn.wait_closed_by_peer(CLOSE_TIMEOUT),
        "closed after the bad request"
    );
    assert_broker_healthy(broker, "a valid request then an unknown key");
}

/// A client that sends JoinGroup and leaves while the join is still pending does not hold up
/// shutdown: the broker exits 0 within the shutdown write grace, not after
/// connections.max.idle.ms (found by scripts/net_fuzz.py: SIGTERM then hung for minutes).
#[test]
fn client_gone_with_join_pending_does_not_hold_up_shutdown() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest};
    use kafka_protocol::protocol::StrBytes;

    // The first join of an empty group waits this long for more members: pending throughout.
    let mut broker = Broker::start(2, &["--group-initial-rebalance-delay-ms", "60000"]);
    let mut conn = RawConn::connect(broker.port);
    let protocol = JoinGroupRequestProtocol::default()
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(bytes::Bytes::from_static(b"meta"));
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("left-while-joining")))
        .with_session_timeout_ms(30_000)
        .with_member_id(StrBytes::from_static_str(""))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![protocol]);
    conn.send_request(&join, 0).expect("send JoinGroup");
    drop(conn);
    // Nothing observable tells when the broker has read the end of stream; give it a moment,
    // so that the connection is past its read side when the signal comes (the case that hung).
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    broker.stop();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "shutdown took {elapsed:?} with a pending JoinGroup of a departed client"
    );
}

/// A Fetch long poll that finds some data, but less than min_bytes, waits without spinning
/// its shard: other connections keep being answered at once (found by scripts/net_fuzz.py:
/// the shard spun until max_wait_ms and every connection on it stalled).
#[test]
fn fetch_waiting_for_min_bytes_does_not_spin_the_shard() {
    let mut broker = Broker::start(2, &[]);
    create_topic(broker.port, "held-back", 1);
    let mut producer = RawConn::connect(broker.port);
    let records = record_batch(&[b"there already"], 1_700_000_000_000, Compression::None);
    assert_eq!(
        produce(&mut producer, "held-back", 0, records).0,
        0,
        "produce"
    );
    let mut fetcher = RawConn::connect(broker.port);
    fetcher
        .send_request(
            &fetch_request("held-back", 0, 0, 10_000, 1 << 20, 1 << 20),
            12,
        )
        .expect("send Fetch");
    assert_shards_answer_quickly(&broker, "a waiting Fetch");
    assert_broker_healthy(&mut broker, "a waiting Fetch");
    broker.stop();
}

/// A Fetch that names a topic but no partition, with min_bytes > 0, waits out max_wait_ms
/// (nothing can arrive for it) without spinning its shard: other requests stay fast.
#[test]
fn fetch_naming_no_partition_waits_without_spinning_the_shard() {
    let mut broker = Broker::start(2, &[]);
    create_topic(broker.port, "no-partitions", 1);
    let mut request = fetch_request("no-partitions", 0, 0, 5_000, 1, 1 << 20);
    request.topics[0].partitions.clear();
    let mut fetcher = RawConn::connect(broker.port);
    let sent = Instant::now();
    let correlation_id = fetcher.send_request(&request, 12).expect("send Fetch");
    assert_shards_answer_quickly(&broker, "a Fetch of no partition");
    let response = fetcher
        .recv_response::<kafka_protocol::messages::FetchRequest>(correlation_id, 12)
        .expect("Fetch response");
    assert_eq!(response.error_code, 0);
    assert!(
        sent.elapsed() >= Duration::from_millis(4_500),
        "the Fetch waited out max_wait_ms ({:?})",
        sent.elapsed()
    );
    assert_broker_healthy(&mut broker, "a Fetch of no partition");
    broker.stop();
}
