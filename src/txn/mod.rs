//! The transaction coordinator: transactional ids, their producer ids and epochs, and the
//! two-phase end of each transaction (a decision written to `__transaction_state`, then
//! commit or abort markers written to every partition of the transaction).
//!
//! Placement mirrors consumer groups (`crate::group`): the coordinator of transactional id T
//! is the shard that owns (on a cluster: leads) partition `abs(javaHash(T)) % N` of the
//! internal topic `__transaction_state`, created when a producer first asks FindCoordinator
//! for a transaction. Handlers on any shard call [`route`], which runs the call here or sends
//! it over the mesh as `ShardRequest::Txn`.
//!
//! Per-shard: each shard has one [`Coordinator`] holding the ids of the state partitions it
//! owns. Every change of an id's state is one record in its partition (Kafka's schemas, see
//! `records`), applied in memory only once durable; while a write is in flight the id answers
//! CONCURRENT_TRANSACTIONS. At start (or when this shard's replica begins to lead) each
//! partition is replayed (`load`), and prepared transactions found there get their markers
//! again. No `RefCell` borrow is held across an `.await`.
//!
//! EndTxn answers once the markers are written and the completion recorded, so a producer
//! that committed reads its own writes with read_committed at once; if the markers take
//! longer than `END_TXN_ANSWER_WAIT_MS` (a partition without a leader), it answers success
//! anyway, since the decision is durable, and the markers keep being retried (`markers`).

mod host;
mod load;
mod markers;
mod ops;
pub mod records;
pub mod state;

use crate::ids::{PartitionId, ShardId};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use crate::config::TxnConfig;
use crate::group::{coordinator_shard, partition_for};
use crate::limits;
use crate::metadata::now_ms;
use crate::partition::TopicPartition;
use crate::protocol::record_batch::{encode_plain_batch, PlainRecord};
use crate::runtime;
use crate::runtime::clock;
use crate::sync::Notify;
use state::Txn;

pub use host::Host;
pub use load::{partition_opened, partition_removed};

/// The internal topic holding the transaction coordinator's state.
pub const TRANSACTION_TOPIC: &str = "__transaction_state";

/// How long EndTxn waits for the markers before answering success anyway (see the module
/// documentation).
const END_TXN_ANSWER_WAIT_MS: u64 = 5_000;

/// A transaction operation, routed to the coordinator of its transactional id.
#[derive(Debug)]
pub enum TxnCall {
    /// InitProducerId with a transactional id; `expected` is the producer id and epoch a
    /// KIP-360 client (v3+) says it had.
    Init {
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    },
    /// AddPartitionsToTxn and AddOffsetsToTxn (the latter adds the group's offsets
    /// partition); `verify_only` is v4's KIP-890 check, which adds nothing.
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    },
    End {
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    },
    Describe(String),
    /// This shard's transactions, for ListTransactions (sent to every shard).
    List,
}

/// A transaction as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone)]
pub struct TxnSummary {
    pub transactional_id: String,
    pub txn: Txn,
}

/// The coordinator's answer.
#[derive(Debug)]
pub enum TxnReply {
    /// The whole call failed with this error.
    Error(ResponseError),
    /// InitProducerId's producer id and epoch.
    Producer {
        producer_id: i64,
        epoch: i16,
    },
    Done,
    /// `verify_only`: one error code per partition, in request order.
    Verified(Vec<i16>),
    Describe(TxnSummary),
    List(Vec<TxnSummary>),
}

impl TxnCall {
    fn transactional_id(&self) -> Option<&str> {
        match self {
            TxnCall::Init {
                transactional_id, ..
            }
            | TxnCall::AddPartitions {
                transactional_id, ..
            }
            | TxnCall::End {
                transactional_id, ..
            }
            | TxnCall::Describe(transactional_id) => Some(transactional_id),
            TxnCall::List => None,
        }
    }
}

/// One transactional id as the coordinator holds it.
#[derive(Debug)]
struct Entry {
    /// The state last written (and durable).
    txn: Txn,
    /// A write of this id's state is in flight: other requests wait (CONCURRENT_TRANSACTIONS).
    pending: bool,
}

/// A state partition this shard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    /// Which opening of the partition this is: tasks of an earlier one (markers being
    /// written when the partition left and came back) stop.
    generation: u64,
    /// The epoch markers carry: the partition's leader epoch when it was loaded, so that
    /// partitions refuse markers of an earlier coordinator of the same ids.
    coordinator_epoch: i32,
    loaded: bool,
}

/// The transactional ids this shard coordinates. See the module documentation.
pub struct Coordinator {
    config: TxnConfig,
    txns: RefCell<HashMap<String, Entry>>,
    /// State partitions this shard owns.
    partitions: RefCell<HashMap<PartitionId, Load>>,
    generations: Cell<u64>,
    /// Partition count of `__transaction_state` when this shard opened its partitions.
    partition_count: Cell<i32>,
    /// Woken when a prepared transaction completes (EndTxn waits for its own).
    completed: Notify,
}

impl Coordinator {
    pub fn new(config: &TxnConfig) -> Coordinator {
        Coordinator {
            config: config.clone(),
            txns: RefCell::new(HashMap::new()),
            partitions: RefCell::new(HashMap::new()),
            generations: Cell::new(0),
            partition_count: Cell::new(1),
            completed: Notify::new(),
        }
    }

    /// The load of `partition` if this shard still holds it as loaded by `generation`.
    fn still_loaded(&self, partition: PartitionId, generation: u64) -> bool {
        self.partitions
            .borrow()
            .get(&partition)
            .is_some_and(|load| load.loaded && load.generation == generation)
    }
}

/// Runs `call` on the coordinator of its transactional id, this shard or another.
pub async fn route(shard: &Rc<impl Host>, call: TxnCall) -> TxnReply {
    let owner = match call.transactional_id() {
        Some(id) => match coordinator_shard(&**shard, TRANSACTION_TOPIC, id) {
            Ok(owner) => owner,
            Err(error) => return TxnReply::Error(error),
        },
        None => shard.shard_id(),
    };
    if owner == shard.shard_id() {
        return handle_local(shard, call).await;
    }
    let reply = shard.call_txn_coordinator(owner, call).await;
    reply.unwrap_or(TxnReply::Error(ResponseError::NotCoordinator))
}

/// ListTransactions: every shard's transactions.
pub async fn list_all(shard: &Rc<impl Host>) -> Vec<TxnSummary> {
    let calls = ShardId::all(shard.shard_count()).map(|owner| async move {
        let reply = match owner == shard.shard_id() {
            true => handle_local(shard, TxnCall::List).await,
            false => shard
                .call_txn_coordinator(owner, TxnCall::List)
                .await
                .unwrap_or(TxnReply::List(Vec::new())),
        };
        match reply {
            TxnReply::List(txns) => txns,
            _ => Vec::new(),
        }
    });
    let mut txns: Vec<TxnSummary> = futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    txns.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    txns
}

/// The state partition of `transactional_id` and its load, if this shard coordinates it and
/// has loaded it.
fn local_partition(
    shard: &impl Host,
    transactional_id: &str,
) -> Result<(PartitionId, Load), ResponseError> {
    if transactional_id.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    let count = shard
        .partition_count(TRANSACTION_TOPIC)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let partition = partition_for(transactional_id, count);
    match shard.transactions().partitions.borrow().get(&partition) {
        None => Err(ResponseError::NotCoordinator),
        Some(load) if !load.loaded => Err(ResponseError::CoordinatorLoadInProgress),
        Some(load) => Ok((partition, *load)),
    }
}

/// Runs `call` on this shard, which should be its transactional id's coordinator.
pub async fn handle_local(shard: &Rc<impl Host>, call: TxnCall) -> TxnReply {
    if let TxnCall::List = call {
        return TxnReply::List(ops::list(&**shard));
    }
    let id = call.transactional_id().unwrap_or_default().to_string();
    let (partition, load) = match local_partition(&**shard, &id) {
        Ok(found) => found,
        Err(error) => return TxnReply::Error(error),
    };
    let at = ops::At {
        partition,
        load,
        id,
    };
    match call {
        TxnCall::Init {
            timeout_ms,
            expected,
            ..
        } => ops::init(shard, at, timeout_ms, expected).await,
        TxnCall::AddPartitions {
            producer_id,
            epoch,
            partitions,
            verify_only,
            ..
        } => match verify_only {
            true => ops::verify(&**shard, &at.id, producer_id, epoch, &partitions),
            false => ops::add_partitions(shard, at, producer_id, epoch, partitions).await,
        },
        TxnCall::End {
            producer_id,
            epoch,
            commit,
            ..
        } => ops::end(shard, at, producer_id, epoch, commit).await,
        TxnCall::Describe(id) => ops::describe(&**shard, &id),
        TxnCall::List => unreachable!("answered above"),
    }
}

/// Appends one state record (a tombstone when `txn` is None) to a state partition and waits
/// until it is durable.
async fn write(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    transactional_id: &str,
    txn: Option<&Txn>,
) -> Result<(), ResponseError> {
    let record = PlainRecord {
        timestamp: now_ms(),
        key: Some(records::encode_key(transactional_id)),
        value: txn.map(records::encode_value),
    };
    let batch = encode_plain_batch(vec![record], Compression::None)
        .map_err(|_| ResponseError::UnknownServerError)?;
    let tp = TopicPartition {
        topic: TRANSACTION_TOPIC.to_string(),
        partition,
    };
    let output = shard.append(tp, batch.freeze()).await;
    if output.error_code != 0 {
        tracing::warn!(
            error = output.error_code,
            "{TRANSACTION_TOPIC} append failed"
        );
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    Ok(())
}

/// The configs `__transaction_state` is created with.
pub fn state_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        // The cleaner keeps the latest record of each key (`partition::cleaner`).
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        (
            "segment.bytes".to_string(),
            limits::TRANSACTION_STATE_TOPIC_SEGMENT_BYTES.to_string(),
        ),
    ])
}

/// The shard's transaction timer loop: aborts transactions past their timeout and forgets
/// transactional ids unused for `transactional.id.expiration.ms`, every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (Kafka scans all its
/// transactions at that interval too).
pub async fn run_timers(shard: Rc<impl Host>) {
    let interval = Duration::from_millis(shard.transactions().config.abort_check_interval_ms);
    let mut next = clock::now() + interval;
    while !shard.is_shutting_down() {
        if clock::now() >= next {
            ops::abort_timed_out(&shard).await;
            ops::expire(&shard).await;
            next = clock::now() + interval;
        }
        // At most a second at a time, so that shutdown is prompt.
        let sleep = next.saturating_duration_since(clock::now());
        runtime::sleep(sleep.min(Duration::from_secs(1))).await;
    }
}

const _: () = assert!(END_TXN_ANSWER_WAIT_MS > limits::TXN_MARKER_RETRY_MS_MAX);

/// The error a client of `api_version` is sent for `error`: PRODUCER_FENCED (Kafka 2.7) is
/// INVALID_PRODUCER_EPOCH to versions below `fenced_since`, as Kafka answers them.
pub fn client_error(error: ResponseError, api_version: i16, fenced_since: i16) -> ResponseError {
    match error {
        ResponseError::ProducerFenced if api_version < fenced_since => {
            ResponseError::InvalidProducerEpoch
        }
        error => error,
    }
}
