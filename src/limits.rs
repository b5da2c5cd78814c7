//! Every limit of the broker in one place, with the relations between them checked at compile
//! time. Names carry their unit last (`_bytes`, `_ms`, `_count`).

/// Largest request frame accepted from a client (`socket.request.max.bytes` default in Kafka).
pub const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Size of the Kafka v2 record batch header, up to and including the record count.
pub const RECORD_BATCH_HEADER_BYTES: usize = 61;

/// Default largest record batch a topic accepts (`max.message.bytes`, as in Kafka).
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1024 * 1024 + 12;

/// Alignment of every direct-I/O write and read.
pub const DIO_ALIGNMENT_BYTES: usize = 4096;

/// Largest response frame the control-plane encoder writes. Anything near it is a bug in a
/// handler; the Kafka length prefix could hold up to `i32::MAX`.
pub const RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Record bytes a single Fetch response carries at most, whatever the client asks for
/// (Kafka's broker-side `fetch.max.bytes` default, 55 MiB).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 55 * 1024 * 1024;

const _: () = assert!(RESPONSE_BYTES_MAX <= i32::MAX as usize);
// Fetch responses also carry per-partition headers; leave them ample room below the frame cap.
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX * 2 <= RESPONSE_BYTES_MAX);
const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT < REQUEST_BYTES_MAX);
const _: () = assert!(RECORD_BATCH_HEADER_BYTES < DIO_ALIGNMENT_BYTES);

/// Most shards (executors) one broker runs.
pub const SHARDS_MAX: usize = 256;

/// Most partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Longest topic name Kafka allows.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Longest name of one file or directory (NAME_MAX of Linux file systems).
pub const FILE_NAME_BYTES_MAX: usize = 255;

/// Decimal digits of the largest partition index, `PARTITIONS_PER_TOPIC_MAX - 1`.
pub const PARTITION_INDEX_DIGITS_MAX: usize = decimal_digits(PARTITIONS_PER_TOPIC_MAX - 1);

const fn decimal_digits(mut value: i32) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

// The directory of every legal partition, `<topic>-<partition>`, is a legal file name (the
// 249-character topic limit is Kafka's room for this); the name it takes while it is deleted
// is checked in `storage::directory`.
const _: () = assert!(TOPIC_NAME_BYTES_MAX + 1 + PARTITION_INDEX_DIGITS_MAX <= FILE_NAME_BYTES_MAX);

/// Smallest `segment.bytes` a topic may set (Kafka's own floor is 1 MiB for the broker
/// default; we accept smaller per topic for tests, but not below one direct-I/O block).
pub const SEGMENT_BYTES_MIN: u64 = 16 * 1024;

/// Default per-shard budget of the recent-batch cache.
pub const BATCH_CACHE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Requests one connection may have in flight (read, not yet answered) before the broker
/// stops reading from it. Kafka clients pipeline; librdkafka allows up to 1e6 by default.
pub const CONNECTION_REQUESTS_IN_FLIGHT_MAX: usize = 256;

/// Default broker-wide budget of request bytes held in memory (`queued.max.request.bytes`).
pub const QUEUED_REQUEST_BYTES_DEFAULT: usize = 512 * 1024 * 1024;

/// Smallest per-shard request-byte budget: enough for a few ordinary produce requests.
pub const QUEUED_REQUEST_BYTES_PER_SHARD_MIN: usize = 4 * 1024 * 1024;

/// File descriptors the default `max.connections` leaves for segment files and listeners.
pub const FILE_DESCRIPTORS_RESERVED_COUNT: usize = 2048;

/// The default `max.connections` is never below this, whatever the open-file limit says.
pub const CONNECTIONS_MAX_FLOOR: usize = 64;

/// Bytes a connection reads from its socket at a time while no larger frame is pending. Idle
/// connections hold no read buffer at all, so thousands of them cost little.
pub const CONNECTION_READ_CHUNK_BYTES: usize = 64 * 1024;

/// Bytes of Fetch responses one connection may have reserved and not yet written: a peer that
/// stops reading holds at most this much (plus small responses) until it is dropped as idle.
pub const CONNECTION_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Capacity of each cross-shard channel, in messages.
pub const SHARD_CHANNEL_CAPACITY: usize = 4096;

/// Longest a Fetch may park waiting for data, whatever the client asks.
pub const FETCH_WAIT_MS_MAX: i32 = 60_000;

/// Bytes of socket writes coalesced before a write is issued.
pub const SOCKET_WRITE_COALESCE_BYTES: usize = 64 * 1024;

const _: () = assert!(SEGMENT_BYTES_MIN as usize >= DIO_ALIGNMENT_BYTES);
const _: () = assert!(CONNECTION_REQUESTS_IN_FLIGHT_MAX <= SHARD_CHANNEL_CAPACITY);
const _: () = assert!(QUEUED_REQUEST_BYTES_PER_SHARD_MIN >= CONNECTION_READ_CHUNK_BYTES);
// One Fetch of the largest size always fits a connection's response budget.
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX <= CONNECTION_RESPONSE_BYTES_MAX);

/// Largest single DMA read the storage layer issues (bigger batches are read in pieces).
pub const STORAGE_READ_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest single DMA write the appender issues; a flush of more data is split.
pub const STORAGE_WRITE_BYTES_MAX: usize = 1024 * 1024;

/// How many cleaned bytes a compaction gathers before it writes them (see
/// `storage::compact`).
pub const COMPACTION_WRITE_CHUNK_BYTES: usize = STORAGE_WRITE_BYTES_MAX;

/// Default of each shard's compaction key map (`--log-cleaner-dedupe-buffer-size`, Kafka's
/// `log.cleaner.dedupe.buffer.size`, which Kafka shares among its cleaner threads): a pass
/// maps as many keys of a partition's dirty records as fit and cleans up to there, so a
/// partition with more distinct keys is cleaned in several passes.
pub const CLEANER_KEY_MAP_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;
/// Smallest key map a shard may be given: one that holds at least a few thousand keys.
pub const CLEANER_KEY_MAP_BYTES_MIN: u64 = 64 * 1024;
/// What one key of the map costs: a 16-byte digest, the 8-byte offset of its latest record,
/// and the hash table's own overhead per entry.
pub const CLEANER_KEY_MAP_ENTRY_BYTES: u64 = 48;

/// Largest batch recovery accepts from disk: no batch can exceed the request that carried it.
pub const STORAGE_BATCH_BYTES_MAX: usize = REQUEST_BYTES_MAX;

/// Largest payload one node sends another (a Raft message): a batch of the largest size a
/// request can carry, plus room for what wraps it.
pub const CLUSTER_PAYLOAD_BYTES_MAX: usize = STORAGE_BATCH_BYTES_MAX + 64 * 1024;

/// Largest frame on a node-to-node link: one payload of the largest size and its headers.
pub const CLUSTER_FRAME_BYTES_MAX: usize = CLUSTER_PAYLOAD_BYTES_MAX + 64;

/// A link's writer puts queued payloads into one frame up to this size.
pub const CLUSTER_FRAME_COALESCE_BYTES: usize = 1024 * 1024;

/// Payloads queued on one link beyond this are dropped (an empty queue takes any payload).
pub const CLUSTER_LINK_QUEUE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A node-to-node connect, and a hello's answer, give up after these. A connect sends one
/// SYN (the kernel's next retry is 1 s later): a link to a peer behind a cut that heals is
/// back within a connect and a backoff of the heal.
pub const CLUSTER_CONNECT_TIMEOUT_MS: u64 = 1_000;
pub const CLUSTER_HELLO_TIMEOUT_MS: u64 = 3_000;

/// A node-to-node link whose peer has not acknowledged what was sent (or answered a keepalive
/// probe) for this long is closed and dialled again (`runtime::fail_when_unreachable`): two
/// election timeouts, so that a link does not outlive a network cut by TCP's retransmission
/// backoff, and a peer that is merely slow (its kernel acknowledges what it receives) keeps
/// its link.
pub const CLUSTER_LINK_SILENCE_MS: u64 =
    2 * REPLICATION_TICK_MS * REPLICATION_ELECTION_TICKS as u64;

/// A link to an unreachable peer retries after a pause that doubles from the first to the
/// second of these.
pub const CLUSTER_RECONNECT_BACKOFF_MS_MIN: u64 = 50;
pub const CLUSTER_RECONNECT_BACKOFF_MS_MAX: u64 = 500;

const _: () = assert!(CLUSTER_FRAME_COALESCE_BYTES <= CLUSTER_FRAME_BYTES_MAX);
const _: () = assert!(CLUSTER_FRAME_BYTES_MAX <= u32::MAX as usize);

/// Raft's clock: every replica of a shard ticks this often (one timer per shard, not per
/// group). Elections start after 10 to 20 ticks without a leader; leaders send heartbeats
/// every 2 (Kafka's default `replica.lag.time.max.ms` is 30 s; leaders here are replaced
/// after 1 to 2 s of silence).
pub const REPLICATION_TICK_MS: u64 = 100;
/// How long a stopping node waits for its leaderships to be handed over (and for a quorum to
/// answer): two election timeouts, within which a transfer to a live follower completes and
/// without a quorum none can.
pub const LEADERSHIP_HANDOVER_MS: u64 = 2 * REPLICATION_TICK_MS * REPLICATION_ELECTION_TICKS as u64;
/// The longest `--broker-rack`.
pub const RACK_BYTES_MAX: usize = 255;
/// Replicas of each `__consumer_offsets` partition in a cluster, fewer when fewer nodes are
/// live when it is created (Kafka's `offsets.topic.replication.factor`).
pub const OFFSETS_TOPIC_REPLICATION_FACTOR: i16 = 3;
/// A follower that has not caught up with its leader's commit point for this long leaves the
/// partition's in-sync replicas (Kafka's `replica.lag.time.max.ms` default).
pub const REPLICA_LAG_TIME_MAX_MS: u64 = 30_000;
/// A replicated partition's new leader tells the controller again after this long when its
/// report did not get through.
pub const LEADER_REPORT_RETRY_MS: u64 = 500;
/// How long a leader's report waits for the controller's answer before it counts as lost
/// (node-to-node links drop what they cannot deliver) and is sent again: as long as a
/// link is given to show it is alive. Until a report gets through, clients are told the
/// previous leader.
pub const LEADER_REPORT_TIMEOUT_MS: u64 = CLUSTER_LINK_SILENCE_MS;
/// How often a shard looks at the partitions it leads that are being reassigned (besides
/// every change of its metadata): each is handed its target, and a reached target is
/// reported to the controller.
pub const REASSIGNMENT_CHECK_MS: u64 = 200;
pub const REPLICATION_ELECTION_TICKS: usize = 10;
/// The most partitions one DescribeTopicPartitions answer holds (Kafka's
/// `max.request.partition.size.limit` default).
pub const DESCRIBE_TOPIC_PARTITIONS_MAX: usize = 2000;
/// How long a leader keeps handing its leadership to a preferred leader (ElectLeaders, the
/// leader balancer) that has not taken it yet: ten election timeouts.
pub const REPLICA_HAND_OVER_TICKS_MAX: u64 = 10 * REPLICATION_ELECTION_TICKS as u64;
pub const REPLICATION_HEARTBEAT_TICKS: usize = 2;
/// A leader with nothing to do for this many ticks quiesces its group: no heartbeats, no
/// election timers, until something stirs it (1 s). 10,000 idle groups then cost their
/// shards' `Alive` payloads, not 10,000 heartbeats and answers every 200 ms.
pub const REPLICATION_QUIESCE_TICKS: u64 = REPLICATION_ELECTION_TICKS as u64;
/// A shard with quiescent groups tells the shards of their other replicas it is up this
/// often, and a quiescent group is stirred when a node of its other replicas has not been
/// heard from (anything: a payload of any group) for `REPLICATION_SILENCE_TICKS`; then it
/// elects a leader as after any silence.
pub const REPLICATION_ALIVE_TICKS: u64 = REPLICATION_HEARTBEAT_TICKS as u64;
pub const REPLICATION_SILENCE_TICKS: u64 = REPLICATION_ELECTION_TICKS as u64;
/// Payloads for a Raft group a shard has not opened (yet) are kept this many ticks, and
/// this many bytes of them at most, for the replica that may be about to open
/// (`replication::Replicas`): two election timeouts, and a few append messages.
pub const EARLY_PAYLOAD_TICKS: u64 = 2 * REPLICATION_ELECTION_TICKS as u64;
pub const EARLY_PAYLOAD_BYTES_MAX: usize = 4 * REPLICATION_MESSAGE_BYTES_MAX as usize;
/// Most bytes of entries one append message carries to a follower.
pub const REPLICATION_MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// Most append messages in flight to one follower.
pub const REPLICATION_INFLIGHT_MESSAGES_MAX: usize = 256;
/// Bytes of entries a replica's window keeps past what it applied: a follower further behind
/// than this is brought up by a snapshot and a copy of the leader's log.
pub const REPLICA_WINDOW_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Most messages (and copy requests) a replica queues for its driver; more are dropped, as
/// a lossy link would drop them, and Raft resends.
pub const REPLICA_PENDING_MESSAGES_MAX: usize = 4096;
/// Most bytes of log one copy reply carries (a follower catching up after a snapshot).
pub const REPLICA_COPY_BYTES_MAX: usize = 1024 * 1024;
/// How long a follower waits for a copy reply before it asks another replica.
pub const REPLICA_COPY_TIMEOUT_MS: u64 = 1_000;
/// The anchor's base is written again once it lags the window's by this many entries, so that
/// an open rebuilds at most this many entries more than the window holds.
pub const REPLICA_ANCHOR_LAG_ENTRIES_MAX: u64 = 10_000;
/// How long a controller call forwarded to the metadata leader on another node waits for its
/// answer before the caller is told NOT_CONTROLLER (and retries, as Kafka clients do).
pub const CONTROLLER_CALL_TIMEOUT_MS: u64 = 10_000;
/// How long a transaction call on another node (a marker for a partition it leads, a check
/// with a coordinator it holds) waits for the answer before its caller takes it as lost and
/// retries (see `shard::node_call`).
pub const NODE_CALL_TIMEOUT_MS: u64 = 5_000;
/// How long a new metadata leader waits to have applied its whole log before it serves a
/// controller call; past it the call is answered NOT_CONTROLLER.
pub const CONTROLLER_CATCH_UP_TIMEOUT_MS: u64 = 5_000;
/// How long a cluster node told to stop waits for the controller to fence it before it drains
/// anyway.
pub const CONTROLLED_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
/// Segment size of the metadata log.
pub const METADATA_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const _: () = assert!(METADATA_SEGMENT_BYTES >= SEGMENT_BYTES_MIN);
const _: () = assert!(REPLICATION_HEARTBEAT_TICKS * 3 <= REPLICATION_ELECTION_TICKS);
const _: () = assert!(REPLICATION_ALIVE_TICKS * 3 <= REPLICATION_SILENCE_TICKS);
const _: () = assert!(REPLICA_COPY_BYTES_MAX + 64 <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () =
    assert!(REPLICATION_MESSAGE_BYTES_MAX as usize + 64 * 1024 <= CLUSTER_PAYLOAD_BYTES_MAX);
const _: () = assert!(CLUSTER_RECONNECT_BACKOFF_MS_MIN <= CLUSTER_RECONNECT_BACKOFF_MS_MAX);

/// Default distance in log bytes between two sparse index entries (`index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES_DEFAULT: u64 = 4096;

/// Default segment size (`segment.bytes` in Kafka).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Largest index file (either kind) recovery loads; a bigger one is treated as garbage.
pub const INDEX_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

const _: () = assert!(STORAGE_READ_BYTES_MAX % DIO_ALIGNMENT_BYTES == 0);
const _: () = assert!(CLEANER_KEY_MAP_BYTES_MIN >= 1000 * CLEANER_KEY_MAP_ENTRY_BYTES);
const _: () = assert!(CLEANER_KEY_MAP_BYTES_DEFAULT >= CLEANER_KEY_MAP_BYTES_MIN);
const _: () = assert!(STORAGE_WRITE_BYTES_MAX % DIO_ALIGNMENT_BYTES == 0);
const _: () = assert!(STORAGE_READ_BYTES_MAX >= MESSAGE_BYTES_MAX_DEFAULT);
const _: () = assert!(STORAGE_BATCH_BYTES_MAX >= MESSAGE_BYTES_MAX_DEFAULT);

/// Pre-written space (zeros written and synced ahead of the log end, so that `fdatasync`
/// commits no file growth; see `storage::appender`) one hot partition keeps ahead, the
/// low-water mark below which a new pre-writing run starts, and the zeros written per step
/// (a flush waits for one step at most).
pub const PREWRITE_AHEAD_BYTES: u64 = 8 * 1024 * 1024;
pub const PREWRITE_LOW_BYTES: u64 = 2 * 1024 * 1024;
pub const PREWRITE_STEP_BYTES: u64 = 256 * 1024;

/// Pre-written bytes one shard holds at most, over all its partitions (`storage::prewrite`):
/// 16 partitions at full depth. Without it every written partition held 8 MiB, and 10,000
/// partitions with one message each would have held 80 GB of zeros.
pub const PREWRITE_BYTES_PER_SHARD_MAX: u64 = 128 * 1024 * 1024;

/// A partition gets pre-written space only while it is hot: this many bytes written within
/// one window of `PREWRITE_HOT_WINDOW_MS` (or the window before). 256 KiB per 10 s is a
/// 1 KiB message every 40 ms; a partition slower than that gains little from pre-writing.
pub const PREWRITE_HOT_BYTES: u64 = 256 * 1024;
pub const PREWRITE_HOT_WINDOW_MS: u64 = 10_000;

const _: () = assert!(PREWRITE_LOW_BYTES < PREWRITE_AHEAD_BYTES);
const _: () = assert!(PREWRITE_AHEAD_BYTES % PREWRITE_STEP_BYTES == 0);
const _: () = assert!(PREWRITE_STEP_BYTES % DIO_ALIGNMENT_BYTES as u64 == 0);
// Several hot partitions fit the budget at full depth.
const _: () = assert!(PREWRITE_AHEAD_BYTES * 8 <= PREWRITE_BYTES_PER_SHARD_MAX);

/// Per-shard budget of read-ahead chunks (`storage::read_ahead`): bytes read ahead of
/// catch-up consumers and not yet served. Apart from the batch cache, so that read-ahead
/// never evicts the tail that live consumers read.
pub const READ_AHEAD_BYTES_PER_SHARD_MAX: usize = 32 * 1024 * 1024;

/// Smallest and largest read-ahead chunk (one DMA read each); a stream's chunk follows the
/// size its reader fetches.
pub const READ_AHEAD_CHUNK_BYTES_MIN: usize = 256 * 1024;
pub const READ_AHEAD_CHUNK_BYTES_MAX: usize = STORAGE_READ_BYTES_MAX;

/// Chunks one read-ahead stream holds: the one being served and the one being read after it.
pub const READ_AHEAD_CHUNKS_PER_STREAM_MAX: usize = 2;

/// Sequential readers of one log that get read-ahead at once; more just read from disk.
pub const READ_AHEAD_STREAMS_PER_LOG_MAX: usize = 2;

/// Misses of a log after which a stream that served none of them may be replaced.
pub const READ_AHEAD_STREAM_IDLE_MISSES: u32 = 2;

/// A stream that served nothing for this long gives its chunks up when another needs room.
pub const READ_AHEAD_STREAM_IDLE_MS: u64 = 1000;

const _: () = assert!(READ_AHEAD_CHUNK_BYTES_MIN <= READ_AHEAD_CHUNK_BYTES_MAX);
const _: () = assert!(READ_AHEAD_CHUNK_BYTES_MAX <= STORAGE_READ_BYTES_MAX);
const _: () = assert!(
    READ_AHEAD_CHUNKS_PER_STREAM_MAX >= 2,
    "one served, one being read"
);
// One log's streams at their largest fit the shard's budget.
const _: () = assert!(
    READ_AHEAD_CHUNK_BYTES_MAX * READ_AHEAD_CHUNKS_PER_STREAM_MAX * READ_AHEAD_STREAMS_PER_LOG_MAX
        <= READ_AHEAD_BYTES_PER_SHARD_MAX
);

/// Locked memory each shard's executor needs: glommio's I/O buffer (10 MiB by default) plus
/// the io_uring rings. `serve` refuses to start with less, and `tune check` reports it.
pub const LOCKED_MEMORY_BYTES_PER_SHARD: u64 = 16 * 1024 * 1024;

/// Largest response frame the load generator (`corelog bench`) accepts from a broker.
pub const BENCH_RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Highest latency the load generator's histograms hold (60 s); slower samples are clamped.
pub const BENCH_LATENCY_US_MAX: u64 = 60_000_000;

/// Bytes one bench Fetch asks for in total, and per partition (Kafka's consumer defaults).
pub const BENCH_FETCH_BYTES_MAX: i32 = 50 * 1024 * 1024;
pub const BENCH_FETCH_PARTITION_BYTES_MAX: i32 = 1024 * 1024;

/// Most requests one bench producer connection may pipeline (`--max-in-flight`).
pub const BENCH_IN_FLIGHT_MAX: usize = 1024;

const _: () = assert!(BENCH_FETCH_PARTITION_BYTES_MAX <= BENCH_FETCH_BYTES_MAX);
const _: () = assert!(BENCH_FETCH_BYTES_MAX as usize * 2 <= BENCH_RESPONSE_BYTES_MAX);

/// Batches remembered per idempotent producer and partition for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`; clients keep at most five requests in flight per partition).
pub const PRODUCER_BATCHES_RETAINED_COUNT: usize = 5;

/// Producer ids the controller hands a shard at a time (Kafka's block size).
pub const PRODUCER_ID_BLOCK_COUNT: i64 = 1000;

/// Largest producer-state snapshot file recovery loads; a bigger one is treated as corrupt.
pub const PRODUCER_SNAPSHOT_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// The largest aborted-transaction file (`<end>.txnindex`) a partition reads at open: one
/// range between two snapshots (a segment), 32 bytes per aborted transaction.
pub const ABORTED_TXN_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Default `producer.id.expiration.ms`: producers idle this long are forgotten (one day).
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;

const _: () = assert!(PRODUCER_BATCHES_RETAINED_COUNT >= 1);
const _: () = assert!(PRODUCER_ID_BLOCK_COUNT >= 1);
/// Partition logs one shard closes at once at shutdown. A close with changes to persist
/// trims, syncs and writes index and producer-snapshot files (about five syncs); running
/// many at once lets the device and the file system's journal take the syncs together.
/// Each close in flight holds a few files open, so the closes stay well within the file
/// descriptors kept apart from connections.
pub const LOG_CLOSES_PER_SHARD_MAX: usize = 64;
const _: () = assert!(LOG_CLOSES_PER_SHARD_MAX * 4 <= FILE_DESCRIPTORS_RESERVED_COUNT);

/// Default partition count of `__consumer_offsets` (Kafka's is 50). Each partition is a log
/// opened and replayed at every start and pre-written ahead once it takes commits, so 50 costs
/// start-up time and disk writes on a two-core machine for no gain; 16 still spreads groups
/// over up to 16 shards. The count is fixed when the topic is created.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 16;

/// Largest `metadata` string of a committed offset (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// Segment size of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes`).
pub const OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;

/// Groups one shard coordinates at most; JoinGroup for a new group beyond it is refused.
pub const GROUPS_PER_SHARD_MAX: usize = 100_000;

/// Members one group may have, pending (v4+ joins told MEMBER_ID_REQUIRED) members included;
/// a new member beyond it gets GROUP_MAX_SIZE_REACHED (Kafka's `group.max.size` is unbounded
/// by default).
pub const GROUP_MEMBERS_MAX: usize = 10_000;

/// Members and pending members of all the groups of one shard together: each waiting
/// JoinGroup holds a request task, so without this bound a flood of joins spread over many
/// groups could hold `GROUPS_PER_SHARD_MAX * GROUP_MEMBERS_MAX` of them.
pub const GROUP_MEMBERS_PER_SHARD_MAX: usize = 100_000;
const _: () = assert!(GROUP_MEMBERS_MAX <= GROUP_MEMBERS_PER_SHARD_MAX);

/// A group touched by a request is polled (its members scanned for expired sessions) at most
/// this soon after it, and group deadlines run at most this late: polls of a large group
/// under a flood of requests cost O(members) per interval rather than per request.
pub const GROUP_POLL_INTERVAL_MS_MIN: u64 = 10;

/// Default partition count of `__transaction_state` (Kafka's is 50), for the reasons of
/// `OFFSETS_TOPIC_PARTITIONS_DEFAULT`. The topic is created when a producer first looks for
/// a transaction coordinator, so brokers without transactional producers never open it.
pub const TRANSACTION_STATE_TOPIC_PARTITIONS_DEFAULT: i32 = 16;

/// Segment size of `__transaction_state` (Kafka's `transaction.state.log.segment.bytes`).
pub const TRANSACTION_STATE_TOPIC_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;

/// Transactional ids one shard coordinates at most; InitProducerId for a new one beyond it is
/// refused with COORDINATOR_NOT_AVAILABLE (each holds its partitions' names in memory).
pub const TRANSACTIONAL_IDS_PER_SHARD_MAX: usize = 100_000;

/// Partitions one transaction may hold at once: AddPartitionsToTxn beyond it is
/// INVALID_REQUEST (each is sent a marker when the transaction ends).
pub const TRANSACTION_PARTITIONS_MAX: usize = 10_000;

/// How long the coordinator waits before sending a marker again to a partition whose owner
/// refused or did not answer (it has no leader, it is moving): the first retry, doubled up to
/// the last.
pub const TXN_MARKER_RETRY_MS_MIN: u64 = 50;
pub const TXN_MARKER_RETRY_MS_MAX: u64 = 2_000;

const _: () = assert!(OFFSETS_TOPIC_PARTITIONS_DEFAULT <= PARTITIONS_PER_TOPIC_MAX);
const _: () = assert!(TRANSACTION_STATE_TOPIC_PARTITIONS_DEFAULT <= PARTITIONS_PER_TOPIC_MAX);
const _: () = assert!(TRANSACTION_STATE_TOPIC_SEGMENT_BYTES >= SEGMENT_BYTES_MIN);
const _: () = assert!(OFFSETS_TOPIC_SEGMENT_BYTES >= SEGMENT_BYTES_MIN);
const _: () = assert!(OFFSET_METADATA_BYTES_MAX < MESSAGE_BYTES_MAX_DEFAULT);

/// Random bytes of a new SCRAM credential's salt.
pub const SCRAM_SALT_BYTES: usize = 32;

/// Random bytes the server adds to a SCRAM exchange's nonce.
pub const SCRAM_NONCE_BYTES: usize = 24;

/// SCRAM iteration counts a credential may have (Kafka's bounds: RFC 7677 asks for at least
/// 4096, and each iteration costs the client, and PLAIN logins the server, one HMAC).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
pub const SCRAM_ITERATIONS_MAX: u32 = 16384;

/// Largest SASL token a client may send (Kafka's `sasl.server.max.receive.size` default).
pub const SASL_TOKEN_BYTES_MAX: usize = 524_288;

/// Longest a new connection may take to finish its TLS handshake and SASL authentication
/// before it is closed, so that connections that never finish cannot pile up.
pub const AUTHENTICATION_TIMEOUT_MS: u64 = 10_000;

/// The share of a shard's core that PLAIN password checks (key derivations, on the blocking
/// thread that shares the core) may take together, so that a client failing PLAIN logins in a
/// loop cannot slow the shard's other clients; checks beyond it wait their turn. With a
/// 4096-iteration credential a check takes 2-5 ms, so this is 20-50 logins a second per
/// shard, with a burst of a second's worth (`QUOTA_BURST_MS`).
pub const PASSWORD_CHECK_SHARE_PERCENT: u64 = 10;

const _: () = assert!(SCRAM_ITERATIONS_MIN >= 4096 && SCRAM_ITERATIONS_MIN <= SCRAM_ITERATIONS_MAX);
const _: () = assert!(SASL_TOKEN_BYTES_MAX < REQUEST_BYTES_MAX);
const _: () = assert!(PASSWORD_CHECK_SHARE_PERCENT > 0 && PASSWORD_CHECK_SHARE_PERCENT < 100);

/// How long the answer to a failed SASL authentication is held back before the connection
/// closes (Kafka's `connection.failed.authentication.delay.ms` default): it slows a client
/// guessing passwords in a loop without costing the shard anything but a timer.
pub const AUTHENTICATION_FAILURE_DELAY_MS: u64 = 100;
const _: () = assert!(AUTHENTICATION_FAILURE_DELAY_MS < AUTHENTICATION_TIMEOUT_MS);

/// Failed authentications a second one client IP may have (with a burst of a second's worth,
/// `QUOTA_BURST_MS`) before its new connections on listeners that authenticate (TLS or SASL)
/// are held unread until its debt is paid and then closed (see `server::admission`). A
/// client failing logins in a loop then costs the broker an accept and a timer per attempt;
/// a user mistyping a password is never held.
pub const AUTHENTICATION_FAILURES_PER_IP_PER_SECOND: u64 = 10;
/// The failure budgets are pruned of IPs at rest once this many are tracked (and again at
/// twice the count left, or at most once a second while full), and no more than
/// `AUTHENTICATION_FAILURE_IPS_MAX` are tracked: an IP beyond is not throttled, and the
/// password-check share still bounds what it costs.
pub const AUTHENTICATION_FAILURE_IPS_PRUNE: usize = 1024;
pub const AUTHENTICATION_FAILURE_IPS_MAX: usize = 65_536;
const _: () = assert!(AUTHENTICATION_FAILURE_IPS_PRUNE <= AUTHENTICATION_FAILURE_IPS_MAX);

/// A quota's bucket holds this much of its rate: the burst a client at rest may send at once.
pub const QUOTA_BURST_MS: u64 = 1000;
/// Longest a throttled connection is muted after one response (Kafka caps the throttle time
/// too); a bucket deeper in debt throttles the following responses as well.
pub const QUOTA_THROTTLE_MS_MAX: u64 = 10_000;
/// How often a shard tells the others what its connections took from each quota, so that a
/// quota is shared by a client's connections on every shard.
pub const QUOTA_GOSSIP_INTERVAL_MS: u64 = 100;
/// Most quota buckets one shard keeps (one per sensor: user and client id as the matching
/// quota tags them, so client ids chosen by clients can multiply them). Full buckets are
/// forgotten first; a request needing a new bucket beyond this is throttled by
/// `QUOTA_THROTTLE_MS_MAX` (quotas fail closed).
pub const QUOTA_BUCKETS_PER_SHARD_MAX: usize = 100_000;
/// Kafka clients' default `request.timeout.ms`: a muted connection's pipelined requests must
/// not time out while it waits.
pub const CLIENT_REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
const _: () = assert!(QUOTA_GOSSIP_INTERVAL_MS * 5 <= QUOTA_BURST_MS);
const _: () = assert!(QUOTA_THROTTLE_MS_MAX * 2 <= CLIENT_REQUEST_TIMEOUT_MS_DEFAULT);
