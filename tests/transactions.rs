//! Transactions over the raw protocol, against the default two-shard broker. The partition
//! side: transactional batches, the markers WriteTxnMarkers writes, the last stable offset,
//! read_committed Fetch with its aborted transactions (checked with librdkafka's
//! read_committed consumer too), ListOffsets per isolation level, after a clean restart and
//! after SIGKILL; and the refusals: control batches from clients, markers of fenced epochs,
//! unknown partitions. The coordinator: InitProducerId with transactional ids, fencing,
//! AddPartitionsToTxn, EndTxn, DescribeTransactions and ListTransactions, timeouts, and its
//! state across SIGKILL (clients' transactions are tested in the Python and Node suites).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsRequest, ListTransactionsRequest, ListTransactionsResponse, ProduceResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

const INVALID_RECORD: i16 = 87;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

/// A producer id from InitProducerId (no transactional id: the partition side needs only an
/// id and an epoch).
fn producer_id(conn: &mut RawConn) -> i64 {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response: InitProducerIdResponse = conn.request(&request, 4);
    assert_eq!(response.error_code, 0, "{response:?}");
    response.producer_id.0
}

/// A batch of `values` from `producer` at epoch 0, sequence `sequence`, with the attributes
/// `set` added (0x10 transactional, 0x20 control); the CRC recomputed.
fn batch_of(producer: i64, sequence: i32, values: &[&str], set: i16) -> Bytes {
    let slices: Vec<&[u8]> = values.iter().map(|value| value.as_bytes()).collect();
    let batch = record_batch(&slices, now_ms(), Compression::None);
    with_producer(&batch, producer, 0, sequence, set)
}

/// Produces `batch` to `topic`/`partition` with acks=all; returns (error code, base offset).
fn produce(conn: &mut RawConn, topic: &str, partition: i32, batch: Bytes) -> (i16, i64) {
    let response: ProduceResponse = conn.request(&produce_request(topic, partition, batch, -1), 9);
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

/// WriteTxnMarkers v1 for one producer's transaction in `partitions` of `topic`; returns the
/// error code of each partition in order.
fn end_txn(
    conn: &mut RawConn,
    producer: i64,
    epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let marker = WritableTxnMarker::default()
        .with_producer_id(producer.into())
        .with_producer_epoch(epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(partitions.to_vec())]);
    let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let response: WriteTxnMarkersResponse = conn.request(&request, 1);
    let topic = &response.markers[0].topics[0];
    topic.partitions.iter().map(|p| p.error_code).collect()
}

/// What a Fetch v11 at `isolation` from `offset` says of one partition: (high watermark, last
/// stable offset, base offsets of the batches, aborted transactions).
struct Fetched {
    high_watermark: i64,
    last_stable_offset: i64,
    batches: Vec<i64>,
    aborted: Option<Vec<(i64, i64)>>,
}

fn fetch(conn: &mut RawConn, topic: &str, partition: i32, offset: i64, isolation: i8) -> Fetched {
    let request =
        fetch_request(topic, partition, offset, 0, 0, 1 << 20).with_isolation_level(isolation);
    let response: FetchResponse = conn.request(&request, 11);
    let data = single_partition(&response);
    assert_eq!(data.error_code, 0, "{data:?}");
    let (batches, _) = parse_batches(&data.records.clone().unwrap_or_default());
    Fetched {
        high_watermark: data.high_watermark,
        last_stable_offset: data.last_stable_offset,
        batches: batches.iter().map(|batch| batch.base_offset).collect(),
        aborted: data.aborted_transactions.as_ref().map(|list| {
            list.iter()
                .map(|t| (t.producer_id.0, t.first_offset))
                .collect()
        }),
    }
}

/// ListOffsets v5 latest at `isolation`.
fn latest(conn: &mut RawConn, topic: &str, partition: i32, isolation: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let response = conn.request(&request, 5);
    let data = &response.topics[0].partitions[0];
    assert_eq!(data.error_code, 0);
    data.offset
}

/// The values a librdkafka consumer with `isolation.level` reads from `partitions` of `topic`,
/// up to the record "end" each partition ends with.
fn consume(broker: &Broker, topic: &str, partitions: &[i32], isolation: &str) -> HashSet<String> {
    let consumer: rdkafka::consumer::BaseConsumer = consumer_config(&broker.bootstrap())
        .set("isolation.level", isolation)
        .create()
        .expect("create consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(topic, *partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut values = HashSet::new();
    let mut ended = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended.len() < partitions.len() {
        assert!(Instant::now() < deadline, "read {values:?} so far");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
                if value == "end" {
                    ended.insert(message.partition());
                } else {
                    values.insert(value);
                }
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            None => {}
        }
    }
    values
}

/// Producer A writes a transaction to both partitions and producer B one to partition 0;
/// while they are open a read_committed fetch sees nothing past A's first batch and
/// ListOffsets read_committed says so; A aborts, B commits; then a read_committed fetch gets
/// everything with A's transaction listed as aborted, and librdkafka's read_committed
/// consumer reads B's records and the plain ones but none of A's (read_uncommitted reads
/// all). The same holds after a clean restart and after SIGKILL.
#[test]
fn read_committed_consumers_see_only_committed_transactions() {
    let mut broker = Broker::start(2, &[]);
    let topic = "txn";
    create_topic(broker.port, topic, 2);
    let mut conn = RawConn::connect(broker.port);
    let a = producer_id(&mut conn);
    let b = producer_id(&mut conn);
    let txn = 0x10;
    assert_eq!(
        produce(&mut conn, topic, 0, batch_of(a, 0, &["a0", "a1"], txn)),
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, topic, 1, batch_of(a, 0, &["a2"], txn)),
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, topic, 0, batch_of(-1, -1, &["plain"], 0)),
        (0, 2)
    );
    assert_eq!(
        produce(&mut conn, topic, 0, batch_of(b, 0, &["b0"], txn)),
        (0, 3)
    );

    let open = fetch(&mut conn, topic, 0, 0, READ_COMMITTED);
    assert_eq!((open.high_watermark, open.last_stable_offset), (4, 0));
    assert_eq!((open.batches, open.aborted), (vec![], Some(vec![])));
    let uncommitted = fetch(&mut conn, topic, 0, 0, READ_UNCOMMITTED);
    assert_eq!(
        (uncommitted.batches, uncommitted.aborted),
        (vec![0, 2, 3], None)
    );
    assert_eq!(latest(&mut conn, topic, 0, READ_COMMITTED), 0);
    assert_eq!(latest(&mut conn, topic, 0, READ_UNCOMMITTED), 4);

    assert_eq!(
        end_txn(&mut conn, a, 0, 0, false, topic, &[0, 1]),
        vec![0, 0]
    );
    let after_abort = fetch(&mut conn, topic, 0, 0, READ_COMMITTED);
    assert_eq!(after_abort.last_stable_offset, 3, "B's transaction is open");
    assert_eq!(after_abort.batches, vec![0, 2]);
    assert_eq!(after_abort.aborted, Some(vec![(a, 0)]));
    assert_eq!(end_txn(&mut conn, b, 0, 0, true, topic, &[0]), vec![0]);
    for partition in [0, 1] {
        assert_eq!(
            produce(&mut conn, topic, partition, batch_of(-1, -1, &["end"], 0)).0,
            0
        );
    }
    let expected_committed: HashSet<String> =
        ["plain", "b0"].into_iter().map(String::from).collect();
    let expected_all: HashSet<String> = ["a0", "a1", "a2", "plain", "b0"]
        .into_iter()
        .map(String::from)
        .collect();
    let check = |broker: &Broker, conn: &mut RawConn, when: &str| {
        let done = fetch(conn, topic, 0, 0, READ_COMMITTED);
        assert_eq!(done.last_stable_offset, done.high_watermark, "{when}");
        assert_eq!(done.batches, vec![0, 2, 3, 4, 5, 6], "{when}");
        assert_eq!(done.aborted, Some(vec![(a, 0)]), "{when}");
        // A's abort marker is at 4: a fetch from past it need not know A.
        assert_eq!(
            fetch(conn, topic, 0, 4, READ_COMMITTED).aborted,
            Some(vec![(a, 0)])
        );
        assert_eq!(
            fetch(conn, topic, 0, 5, READ_COMMITTED).aborted,
            Some(vec![])
        );
        assert_eq!(
            fetch(conn, topic, 1, 0, READ_COMMITTED).aborted,
            Some(vec![(a, 0)])
        );
        assert_eq!(latest(conn, topic, 0, READ_COMMITTED), 7, "{when}");
        let committed = consume(broker, topic, &[0, 1], "read_committed");
        assert_eq!(committed, expected_committed, "{when}");
        let all = consume(broker, topic, &[0, 1], "read_uncommitted");
        assert_eq!(all, expected_all, "{when}");
    };
    check(&broker, &mut conn, "before any restart");
    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    check(&broker, &mut conn, "after a clean restart");
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    check(&broker, &mut conn, "after SIGKILL");
}

/// A transaction left open stays open across SIGKILL: the last stable offset still holds at
/// its first batch after the restart, and its marker moves it on.
#[test]
fn an_open_transaction_outlives_a_crash() {
    let mut broker = Broker::start(2, &[]);
    let topic = "txn-open";
    create_topic(broker.port, topic, 1);
    let mut conn = RawConn::connect(broker.port);
    let a = producer_id(&mut conn);
    assert_eq!(
        produce(&mut conn, topic, 0, batch_of(-1, -1, &["before"], 0)),
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, topic, 0, batch_of(a, 0, &["a0"], 0x10)),
        (0, 1)
    );
    assert_eq!(
        produce(&mut conn, topic, 0, batch_of(-1, -1, &["after"], 0)),
        (0, 2)
    );
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_eq!(latest(&mut conn, topic, 0, READ_COMMITTED), 1);
    assert_eq!(
        fetch(&mut conn, topic, 0, 0, READ_COMMITTED).batches,
        vec![0]
    );
    assert_eq!(end_txn(&mut conn, a, 0, 0, true, topic, &[0]), vec![0]);
    assert_eq!(latest(&mut conn, topic, 0, READ_COMMITTED), 4);
    assert_eq!(
        fetch(&mut conn, topic, 0, 0, READ_COMMITTED).batches,
        vec![0, 1, 2, 3]
    );
}

/// Clients may not write control batches (a forged commit marker is INVALID_RECORD, as in
/// Kafka); a marker of an older producer epoch than the producer's is INVALID_PRODUCER_EPOCH,
/// one of an older coordinator epoch than the producer's last marker
/// TRANSACTION_COORDINATOR_FENCED, and one for an unknown partition
/// UNKNOWN_TOPIC_OR_PARTITION; nothing refused is written.
#[test]
fn forged_and_fenced_markers_are_refused() {
    let broker = Broker::start(2, &[]);
    let topic = "txn-refused";
    create_topic(broker.port, topic, 1);
    let mut conn = RawConn::connect(broker.port);
    let a = producer_id(&mut conn);
    let forged = batch_of(a, -1, &["commit"], 0x30);
    assert_eq!(produce(&mut conn, topic, 0, forged).0, INVALID_RECORD);
    let plain = record_batch(&[b"a0"], now_ms(), Compression::None);
    let epoch_one = with_producer(&plain, a, 1, 0, 0x10);
    assert_eq!(produce(&mut conn, topic, 0, epoch_one), (0, 0));
    assert_eq!(
        end_txn(&mut conn, a, 0, 3, false, topic, &[0]),
        vec![INVALID_PRODUCER_EPOCH]
    );
    assert_eq!(end_txn(&mut conn, a, 1, 3, false, topic, &[0]), vec![0]);
    assert_eq!(
        end_txn(&mut conn, a, 1, 2, false, topic, &[0]),
        vec![TRANSACTION_COORDINATOR_FENCED]
    );
    assert_eq!(
        end_txn(&mut conn, a, 1, 3, false, "no-such-topic", &[0]),
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    let done = fetch(&mut conn, topic, 0, 0, READ_COMMITTED);
    assert_eq!((done.high_watermark, done.last_stable_offset), (2, 2));
    assert_eq!(done.aborted, Some(vec![(a, 0)]));
}

// The transaction coordinator.

const CONCURRENT_TRANSACTIONS: i16 = 51;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const PRODUCER_FENCED: i16 = 90;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

/// FindCoordinator v3 for transactional id `id`, asked until the coordinator is available
/// (the first lookup creates `__transaction_state`); returns its node id.
fn find_txn_coordinator(conn: &mut RawConn, id: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key(str_bytes(id))
            .with_key_type(1);
        let response: FindCoordinatorResponse = conn.request(&request, 3);
        if response.error_code == 0 {
            return response.node_id.0;
        }
        assert_eq!(
            response.error_code, COORDINATOR_NOT_AVAILABLE,
            "{response:?}"
        );
        assert!(Instant::now() < deadline, "no transaction coordinator");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// InitProducerId v4 for transactional id `id`, retried while the coordinator loads or ends
/// an earlier transaction; returns (error code, producer id, epoch).
fn init_txn(conn: &mut RawConn, id: &str, timeout_ms: i32, version: i16) -> (i16, i64, i16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(str_bytes(id).into()))
            .with_transaction_timeout_ms(timeout_ms);
        let response: InitProducerIdResponse = conn.request(&request, version);
        let code = response.error_code;
        let retriable = code == COORDINATOR_LOAD_IN_PROGRESS || code == CONCURRENT_TRANSACTIONS;
        if !retriable || Instant::now() > deadline {
            return (code, response.producer_id.0, response.producer_epoch);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// AddPartitionsToTxn v3 (v1 when `old`) for one topic; returns each partition's code.
fn add_partitions(
    conn: &mut RawConn,
    id: &str,
    producer: (i64, i16),
    topic: &str,
    partitions: &[i32],
    version: i16,
) -> Vec<i16> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(str_bytes(id).into())
        .with_v3_and_below_producer_id(producer.0.into())
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(partitions.to_vec())]);
    let response: AddPartitionsToTxnResponse = conn.request(&request, version);
    response.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect()
}

/// EndTxn v3 (the coordinator's, not WriteTxnMarkers); returns the error code.
fn end(conn: &mut RawConn, id: &str, producer: (i64, i16), commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(str_bytes(id).into())
        .with_producer_id(producer.0.into())
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let response: EndTxnResponse = conn.request(&request, 3);
    response.error_code
}

/// DescribeTransactions v0 of one id: (error code, state, producer id, epoch, partitions).
fn describe(conn: &mut RawConn, id: &str) -> (i16, String, i64, i16, Vec<i32>) {
    let request =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![str_bytes(id).into()]);
    let response: DescribeTransactionsResponse = conn.request(&request, 0);
    let state = &response.transaction_states[0];
    let partitions = state
        .topics
        .iter()
        .flat_map(|topic| topic.partitions.clone())
        .collect();
    (
        state.error_code,
        state.transaction_state.to_string(),
        state.producer_id.0,
        state.producer_epoch,
        partitions,
    )
}

/// A transactional batch of `values` from `producer` at its epoch from `sequence`.
fn txn_batch(producer: (i64, i16), sequence: i32, values: &[&str]) -> Bytes {
    let slices: Vec<&[u8]> = values.iter().map(|value| value.as_bytes()).collect();
    let batch = record_batch(&slices, now_ms(), Compression::None);
    with_producer(&batch, producer.0, producer.1, sequence, 0x10)
}

/// The coordinator over the raw protocol, on the default two-shard broker: epochs and
/// fencing, the checks of each request and the errors Kafka answers them with, a commit and
/// an abort through EndTxn (markers written to partitions on both shards), retries of
/// EndTxn, a new instance aborting its predecessor's open transaction, DescribeTransactions
/// and ListTransactions; then the same state after SIGKILL and a restart.
#[test]
fn the_coordinator_commits_aborts_and_fences() {
    let mut broker = Broker::start(2, &[]);
    let topic = "txn-coordinated";
    create_topic(broker.port, topic, 2);
    let mut conn = RawConn::connect(broker.port);
    let id = "coordinated-1";
    assert!(find_txn_coordinator(&mut conn, id) >= 0);

    let (code, _, _) = init_txn(&mut conn, id, i32::MAX, 4);
    assert_eq!(code, INVALID_TRANSACTION_TIMEOUT);
    let (code, pid, epoch) = init_txn(&mut conn, id, 60_000, 4);
    assert_eq!((code, epoch), (0, 0));
    let (code, same, epoch) = init_txn(&mut conn, id, 60_000, 4);
    assert_eq!(
        (code, same, epoch),
        (0, pid, 1),
        "a new instance bumps the epoch"
    );
    let zombie = (pid, 0);
    let producer = (pid, 1);

    // The zombie is fenced, with PRODUCER_FENCED since v2 and INVALID_PRODUCER_EPOCH before.
    assert_eq!(
        add_partitions(&mut conn, id, zombie, topic, &[0], 3),
        vec![PRODUCER_FENCED]
    );
    assert_eq!(
        add_partitions(&mut conn, id, zombie, topic, &[0], 1),
        vec![INVALID_PRODUCER_EPOCH]
    );
    // An unknown partition fails the request; the others are not attempted.
    let codes = add_partitions(&mut conn, id, producer, topic, &[0, 7], 3);
    assert_eq!(
        codes,
        vec![OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(
        end(&mut conn, id, producer, true),
        INVALID_TXN_STATE,
        "nothing is open"
    );

    // Commit: both partitions (one per shard) get the marker before EndTxn answers.
    assert_eq!(
        add_partitions(&mut conn, id, producer, topic, &[0, 1], 3),
        vec![0, 0]
    );
    assert_eq!(describe(&mut conn, id).1, "Ongoing");
    assert_eq!(
        produce(&mut conn, topic, 0, txn_batch(producer, 0, &["c0"])).0,
        0
    );
    assert_eq!(
        produce(&mut conn, topic, 1, txn_batch(producer, 0, &["c1"])).0,
        0
    );
    assert_eq!(end(&mut conn, id, producer, true), 0);
    assert_eq!(
        end(&mut conn, id, producer, true),
        0,
        "a retried commit succeeds"
    );
    assert_eq!(end(&mut conn, id, producer, false), INVALID_TXN_STATE);
    for partition in [0, 1] {
        let stable = latest(&mut conn, topic, partition, READ_COMMITTED);
        assert_eq!(
            stable,
            latest(&mut conn, topic, partition, READ_UNCOMMITTED)
        );
    }
    let (code, state, described_pid, described_epoch, partitions) = describe(&mut conn, id);
    assert_eq!((code, state.as_str()), (0, "CompleteCommit"));
    assert_eq!((described_pid, described_epoch), producer);
    assert!(partitions.is_empty());

    // Abort through EndTxn.
    assert_eq!(
        add_partitions(&mut conn, id, producer, topic, &[0], 3),
        vec![0]
    );
    assert_eq!(
        produce(&mut conn, topic, 0, txn_batch(producer, 1, &["a0"])).0,
        0
    );
    assert_eq!(end(&mut conn, id, producer, false), 0);

    // A transaction left open by an instance that died: the next instance's InitProducerId
    // aborts it with the next epoch (CONCURRENT_TRANSACTIONS until the markers are written,
    // which `init_txn` waits out) and then gets the epoch after that.
    assert_eq!(
        add_partitions(&mut conn, id, producer, topic, &[1], 3),
        vec![0]
    );
    assert_eq!(
        produce(&mut conn, topic, 1, txn_batch(producer, 1, &["left-open"])).0,
        0
    );
    let (code, same, epoch) = init_txn(&mut conn, id, 60_000, 4);
    assert_eq!((code, same, epoch), (0, pid, 3));
    assert_eq!(end(&mut conn, id, producer, true), PRODUCER_FENCED);
    // The dead instance's batch is fenced at the partition too.
    let late = txn_batch(producer, 2, &["late"]);
    assert_eq!(produce(&mut conn, topic, 1, late).0, INVALID_PRODUCER_EPOCH);

    let listed: ListTransactionsResponse = conn.request(&ListTransactionsRequest::default(), 1);
    assert!(listed
        .transaction_states
        .iter()
        .any(|t| t.transactional_id.as_str() == id && t.producer_id.0 == pid));
    assert_eq!(
        describe(&mut conn, "no-such-id").0,
        TRANSACTIONAL_ID_NOT_FOUND
    );

    for partition in [0, 1] {
        let end_marker = record_batch(&[b"end"], now_ms(), Compression::None);
        assert_eq!(produce(&mut conn, topic, partition, end_marker).0, 0);
    }
    let committed = consume(&broker, topic, &[0, 1], "read_committed");
    assert_eq!(
        committed,
        HashSet::from(["c0".to_string(), "c1".to_string()])
    );

    // The coordinator's state survives SIGKILL: the id continues at the next epoch.
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let (code, same, epoch) = init_txn(&mut conn, id, 60_000, 4);
    assert_eq!((code, same, epoch), (0, pid, 4));
    assert_eq!(describe(&mut conn, id).1, "Empty");
}

/// A transaction left open past its `transaction.timeout.ms` is aborted by the coordinator
/// with the next epoch (fencing its producer), and its partitions' last stable offset moves
/// on; also across a restart that found it open.
#[test]
fn a_transaction_past_its_timeout_is_aborted() {
    let mut broker = Broker::start(
        2,
        &[
            "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
            "100",
        ],
    );
    let topic = "txn-timeout";
    create_topic(broker.port, topic, 1);
    let mut conn = RawConn::connect(broker.port);
    let id = "slow-1";
    find_txn_coordinator(&mut conn, id);
    let (code, pid, epoch) = init_txn(&mut conn, id, 1_000, 4);
    assert_eq!((code, epoch), (0, 0));
    let producer = (pid, 0);
    assert_eq!(
        add_partitions(&mut conn, id, producer, topic, &[0], 3),
        vec![0]
    );
    assert_eq!(
        produce(&mut conn, topic, 0, txn_batch(producer, 0, &["x"])).0,
        0
    );
    assert_eq!(latest(&mut conn, topic, 0, READ_COMMITTED), 0);
    // The broker restarts while it is open: the reloaded coordinator aborts it too.
    broker.kill();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while describe(&mut conn, id).1 != "CompleteAbort" {
        assert!(Instant::now() < deadline, "{:?}", describe(&mut conn, id));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(describe(&mut conn, id).3, 1, "aborted with the next epoch");
    let end_offset = latest(&mut conn, topic, 0, READ_UNCOMMITTED);
    assert_eq!(latest(&mut conn, topic, 0, READ_COMMITTED), end_offset);
    assert_eq!(end(&mut conn, id, producer, true), PRODUCER_FENCED);
    let fetched = fetch(&mut conn, topic, 0, 0, READ_COMMITTED);
    assert_eq!(fetched.aborted, Some(vec![(pid, 0)]));
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// `--transactional-id-expiration-ms`: an id whose producer sent nothing for that long, with
/// no transaction open, is forgotten (DescribeTransactions: TRANSACTIONAL_ID_NOT_FOUND), also
/// after a restart, and starts again with a new producer id; an open one is kept.
#[test]
fn idle_transactional_ids_expire() {
    let mut broker = Broker::start(
        2,
        &[
            "--transactional-id-expiration-ms",
            "500",
            "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
            "100",
        ],
    );
    let topic = "txn-expiry";
    create_topic(broker.port, topic, 1);
    let mut conn = RawConn::connect(broker.port);
    find_txn_coordinator(&mut conn, "idle");
    let (code, idle_pid, _) = init_txn(&mut conn, "idle", 60_000, 4);
    assert_eq!(code, 0);
    let (code, busy_pid, _) = init_txn(&mut conn, "busy", 60_000, 4);
    assert_eq!(code, 0);
    let busy = (busy_pid, 0);
    assert_eq!(
        add_partitions(&mut conn, "busy", busy, topic, &[0], 3),
        vec![0]
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while describe(&mut conn, "idle").0 != TRANSACTIONAL_ID_NOT_FOUND {
        assert!(Instant::now() < deadline, "the idle id never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        describe(&mut conn, "busy").1,
        "Ongoing",
        "an open transaction is kept"
    );
    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    find_txn_coordinator(&mut conn, "idle");
    let (code, _, _) = init_txn(&mut conn, "busy", 60_000, 4);
    assert_eq!(
        code, 0,
        "the open transaction was loaded, and is aborted first"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, ..) = describe(&mut conn, "idle");
        if code == TRANSACTIONAL_ID_NOT_FOUND {
            break;
        }
        assert_eq!(code, COORDINATOR_LOAD_IN_PROGRESS);
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, pid, epoch) = init_txn(&mut conn, "idle", 60_000, 4);
    assert_eq!(code, 0);
    assert_ne!(
        pid, idle_pid,
        "a forgotten id starts with a new producer id"
    );
    assert_eq!(epoch, 0);
}

/// Produce of a transactional batch with its transactional id, as clients send it.
fn produce_txn(conn: &mut RawConn, id: &str, topic: &str, partition: i32, batch: Bytes) -> i16 {
    let request = produce_request(topic, partition, batch, -1)
        .with_transactional_id(Some(str_bytes(id).into()));
    let response: ProduceResponse = conn.request(&request, 9);
    response.responses[0].partition_responses[0].error_code
}

/// KIP-890 part 1: a producer's first transactional batch in a partition is written only if
/// the coordinator has the partition in the producer's open transaction. A batch for a
/// partition never added, and a late batch after the transaction ended (which would open a
/// transaction nobody ends, holding the last stable offset back for ever), are refused with
/// INVALID_TXN_STATE, and the last stable offset keeps up with the high watermark.
#[test]
fn batches_outside_the_transaction_are_refused() {
    let broker = Broker::start(2, &[]);
    let topic = "txn-verified";
    create_topic(broker.port, topic, 2);
    let mut conn = RawConn::connect(broker.port);
    let id = "verified-1";
    find_txn_coordinator(&mut conn, id);
    let (code, pid, epoch) = init_txn(&mut conn, id, 60_000, 4);
    assert_eq!((code, epoch), (0, 0));
    let producer = (pid, 0);
    assert_eq!(
        add_partitions(&mut conn, id, producer, topic, &[0], 3),
        vec![0]
    );
    let stray = txn_batch(producer, 0, &["stray"]);
    assert_eq!(
        produce_txn(&mut conn, id, topic, 1, stray),
        INVALID_TXN_STATE
    );
    let first = txn_batch(producer, 0, &["t0"]);
    assert_eq!(produce_txn(&mut conn, id, topic, 0, first), 0);
    let second = txn_batch(producer, 1, &["t1"]);
    assert_eq!(
        produce_txn(&mut conn, id, topic, 0, second),
        0,
        "the open transaction goes on"
    );
    assert_eq!(end(&mut conn, id, producer, true), 0);
    let late = txn_batch(producer, 2, &["late"]);
    assert_eq!(
        produce_txn(&mut conn, id, topic, 0, late),
        INVALID_TXN_STATE
    );
    for partition in [0, 1] {
        assert_eq!(
            latest(&mut conn, topic, partition, READ_COMMITTED),
            latest(&mut conn, topic, partition, READ_UNCOMMITTED),
            "no transaction hangs in partition {partition}"
        );
    }
    // A zombie with an older epoch is refused at the check too.
    let (code, _, epoch) = init_txn(&mut conn, id, 60_000, 4);
    assert_eq!((code, epoch), (0, 1));
    let zombie = txn_batch(producer, 3, &["zombie"]);
    assert_eq!(
        produce_txn(&mut conn, id, topic, 1, zombie),
        INVALID_PRODUCER_EPOCH
    );
}
