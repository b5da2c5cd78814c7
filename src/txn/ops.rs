//! The coordinator's operations on one transactional id: InitProducerId, AddPartitionsToTxn
//! (and AddOffsetsToTxn), EndTxn, DescribeTransactions and ListTransactions, and the timer's
//! aborts and expiry.
//!
//! Each decides under a short borrow of the id (`state` says what may happen), marks the id
//! pending, writes the new state, and applies it once durable (`persist`).

use crate::ids::PartitionId;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use kafka_protocol::ResponseError;

use super::state::{self, EndPlan, InitPlan, Txn};
use super::END_TXN_ANSWER_WAIT_MS;
use super::{markers, partition_for, write, Entry, Host, Load, TxnReply, TxnSummary};
use crate::limits;
use crate::metadata::now_ms;
use crate::runtime;
use crate::runtime::clock;

/// The transactional id an operation is on, and its state partition as loaded here.
#[derive(Debug, Clone)]
pub struct At {
    pub partition: PartitionId,
    pub load: Load,
    pub id: String,
}

impl At {
    /// Whether this shard still coordinates the id as it did when the operation began.
    pub fn still_here(&self, shard: &impl Host) -> bool {
        shard
            .transactions()
            .still_loaded(self.partition, self.load.generation)
    }
}

/// Writes `next` as the id's state, which the caller marked pending (inserting it when
/// `created`), and applies it once durable. A failed write leaves the state as it was (an id
/// this write created is forgotten).
pub async fn persist(
    shard: &Rc<impl Host>,
    at: &At,
    next: Txn,
    created: bool,
) -> Result<(), ResponseError> {
    let written = write(shard, at.partition, &at.id, Some(&next)).await;
    if !at.still_here(&**shard) {
        // The partition left during the write: its ids are another coordinator's now.
        return Err(ResponseError::NotCoordinator);
    }
    let mut txns = shard.transactions().txns.borrow_mut();
    match written {
        Ok(()) => {
            txns.insert(
                at.id.clone(),
                Entry {
                    txn: next,
                    pending: false,
                },
            );
            Ok(())
        }
        Err(error) => {
            if created {
                txns.remove(&at.id);
            } else if let Some(entry) = txns.get_mut(&at.id) {
                entry.pending = false;
            }
            Err(error)
        }
    }
}

/// Decides a request on the current state of an existing id with no write in flight: the
/// state `decide` returns to write (the id is then marked pending), or None to write nothing.
fn take_for_write(
    shard: &impl Host,
    id: &str,
    decide: impl FnOnce(&Txn) -> Result<Option<Txn>, ResponseError>,
) -> Result<Option<Txn>, ResponseError> {
    let mut txns = shard.transactions().txns.borrow_mut();
    let entry = txns
        .get_mut(id)
        .ok_or(ResponseError::InvalidProducerIdMapping)?;
    if entry.pending {
        return Err(ResponseError::ConcurrentTransactions);
    }
    let next = decide(&entry.txn)?;
    entry.pending = next.is_some();
    Ok(next)
}

pub async fn init(
    shard: &Rc<impl Host>,
    at: At,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> TxnReply {
    let config = &shard.transactions().config;
    if timeout_ms <= 0 || timeout_ms > config.max_timeout_ms {
        return TxnReply::Error(ResponseError::InvalidTransactionTimeout);
    }
    let needs_producer_id = {
        let txns = shard.transactions().txns.borrow();
        match txns.get(&at.id) {
            Some(entry) if entry.pending => {
                return TxnReply::Error(ResponseError::ConcurrentTransactions)
            }
            Some(entry) => state::init_needs_producer_id(Some(&entry.txn)),
            None if txns.len() >= limits::TRANSACTIONAL_IDS_PER_SHARD_MAX => {
                return TxnReply::Error(ResponseError::CoordinatorNotAvailable)
            }
            None => true,
        }
    };
    let new_producer_id = match needs_producer_id {
        true => match shard.new_producer_id().await {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(%error, "cannot allocate a producer id");
                return TxnReply::Error(ResponseError::CoordinatorNotAvailable);
            }
        },
        false => None,
    };
    if !at.still_here(&**shard) {
        return TxnReply::Error(ResponseError::NotCoordinator);
    }
    // Decided again after the wait for an id: another request may have changed the state.
    let (plan, created) = {
        let mut txns = shard.transactions().txns.borrow_mut();
        let current = txns.get(&at.id);
        if current.is_some_and(|entry| entry.pending) {
            return TxnReply::Error(ResponseError::ConcurrentTransactions);
        }
        let created = current.is_none();
        let plan = state::init(
            current.map(|entry| &entry.txn),
            timeout_ms,
            expected,
            new_producer_id,
            now_ms(),
        );
        let plan = match plan {
            Ok(plan) => plan,
            Err(error) => return TxnReply::Error(error),
        };
        let (InitPlan::Write(next) | InitPlan::AbortFirst(next)) = &plan;
        let entry = txns.entry(at.id.clone()).or_insert_with(|| Entry {
            txn: next.clone(),
            pending: true,
        });
        entry.pending = true;
        (plan, created)
    };
    match plan {
        InitPlan::Write(next) => {
            let (producer_id, epoch) = (next.producer_id, next.producer_epoch);
            match persist(shard, &at, next, created).await {
                Ok(()) => TxnReply::Producer { producer_id, epoch },
                Err(error) => TxnReply::Error(error),
            }
        }
        InitPlan::AbortFirst(next) => {
            tracing::info!(id = %at.id, "aborting the open transaction of a new producer instance");
            if let Err(error) = persist(shard, &at, next, created).await {
                return TxnReply::Error(error);
            }
            markers::spawn_completion(shard, &at);
            TxnReply::Error(ResponseError::ConcurrentTransactions)
        }
    }
}

pub async fn add_partitions(
    shard: &Rc<impl Host>,
    at: At,
    producer_id: i64,
    epoch: i16,
    partitions: Vec<(String, i32)>,
) -> TxnReply {
    let next = take_for_write(&**shard, &at.id, |txn| {
        state::add_partitions(
            txn,
            producer_id,
            epoch,
            &partitions,
            limits::TRANSACTION_PARTITIONS_MAX,
            now_ms(),
        )
    });
    let next = match next {
        Err(error) => return TxnReply::Error(error),
        Ok(None) => return TxnReply::Done,
        Ok(Some(next)) => next,
    };
    match persist(shard, &at, next, false).await {
        Ok(()) => TxnReply::Done,
        Err(error) => TxnReply::Error(error),
    }
}

/// AddPartitionsToTxn v4's `verify_only`: one error code per partition.
pub fn verify(
    shard: &impl Host,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> TxnReply {
    let txns = shard.transactions().txns.borrow();
    let Some(entry) = txns.get(id) else {
        return TxnReply::Error(ResponseError::InvalidProducerIdMapping);
    };
    let codes = partitions
        .iter()
        .map(
            |partition| match state::verify_partition(&entry.txn, producer_id, epoch, partition) {
                Ok(()) => 0,
                Err(error) => error.code(),
            },
        )
        .collect();
    TxnReply::Verified(codes)
}

pub async fn end(
    shard: &Rc<impl Host>,
    at: At,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> TxnReply {
    let next = take_for_write(&**shard, &at.id, |txn| {
        let plan = state::end(txn, producer_id, epoch, commit, now_ms())?;
        Ok(match plan {
            EndPlan::Done => None,
            EndPlan::Prepare(next) => Some(next),
        })
    });
    let next = match next {
        Err(error) => return TxnReply::Error(error),
        Ok(None) => return TxnReply::Done,
        Ok(Some(next)) => next,
    };
    if let Err(error) = persist(shard, &at, next, false).await {
        return TxnReply::Error(error);
    }
    markers::spawn_completion(shard, &at);
    let deadline = clock::now() + Duration::from_millis(END_TXN_ANSWER_WAIT_MS);
    loop {
        let completed = shard.transactions().completed.notified();
        let prepared = shard
            .transactions()
            .txns
            .borrow()
            .get(&at.id)
            .is_some_and(|entry| entry.txn.state.is_prepared());
        let now = clock::now();
        if !prepared || now >= deadline || !at.still_here(&**shard) {
            // The decision is durable: the markers are written whether or not the client
            // waits for them.
            return TxnReply::Done;
        }
        let timer = Box::pin(runtime::sleep(deadline - now));
        if let Either::Left(_) = select(timer, Box::pin(completed)).await {
            return TxnReply::Done;
        }
    }
}

pub fn describe(shard: &impl Host, id: &str) -> TxnReply {
    match shard.transactions().txns.borrow().get(id) {
        Some(entry) => TxnReply::Describe(TxnSummary {
            transactional_id: id.to_string(),
            txn: entry.txn.clone(),
        }),
        None => TxnReply::Error(ResponseError::TransactionalIdNotFound),
    }
}

pub fn list(shard: &impl Host) -> Vec<TxnSummary> {
    let coordinator = shard.transactions();
    let count = coordinator.partition_count.get();
    let partitions = coordinator.partitions.borrow();
    let loaded = |id: &str| {
        partitions
            .get(&partition_for(id, count))
            .is_some_and(|load| load.loaded)
    };
    coordinator
        .txns
        .borrow()
        .iter()
        .filter(|(id, _)| loaded(id))
        .map(|(id, entry)| TxnSummary {
            transactional_id: id.clone(),
            txn: entry.txn.clone(),
        })
        .collect()
}

/// Where `id` is coordinated here, if its partition is loaded.
fn at(shard: &impl Host, id: &str) -> Option<At> {
    let coordinator = shard.transactions();
    let partition = partition_for(id, coordinator.partition_count.get());
    let load = *coordinator.partitions.borrow().get(&partition)?;
    load.loaded.then(|| At {
        partition,
        load,
        id: id.to_string(),
    })
}

/// The ids for which `due` holds and no write is in flight.
fn due_ids(shard: &impl Host, due: impl Fn(&Txn) -> bool) -> Vec<String> {
    shard
        .transactions()
        .txns
        .borrow()
        .iter()
        .filter(|(_, entry)| !entry.pending && due(&entry.txn))
        .map(|(id, _)| id.clone())
        .collect()
}

/// Aborts, fencing their producers, the open transactions past their timeout.
pub async fn abort_timed_out(shard: &Rc<impl Host>) {
    for id in due_ids(&**shard, |txn| state::timed_out(txn, now_ms())) {
        let Some(at) = at(&**shard, &id) else {
            continue;
        };
        let next = take_for_write(&**shard, &id, |txn| {
            let now = now_ms();
            Ok(state::timed_out(txn, now).then(|| state::fenced_abort(txn, now)))
        });
        let Ok(Some(next)) = next else {
            continue;
        };
        tracing::info!(%id, "aborting a transaction past its timeout");
        match persist(shard, &at, next, false).await {
            Ok(()) => markers::spawn_completion(shard, &at),
            Err(error) => tracing::warn!(%id, ?error, "aborting a timed-out transaction failed"),
        }
    }
}

/// Forgets the ids unused for `transactional.id.expiration.ms`: a tombstone each.
pub async fn expire(shard: &Rc<impl Host>) {
    let expiration_ms = shard.transactions().config.id_expiration_ms;
    for id in due_ids(&**shard, |txn| state::expired(txn, now_ms(), expiration_ms)) {
        let Some(at) = at(&**shard, &id) else {
            continue;
        };
        {
            let mut txns = shard.transactions().txns.borrow_mut();
            let Some(entry) = txns.get_mut(&id) else {
                continue;
            };
            if entry.pending || !state::expired(&entry.txn, now_ms(), expiration_ms) {
                continue;
            }
            entry.pending = true;
        }
        let written = write(shard, at.partition, &id, None).await;
        if !at.still_here(&**shard) {
            continue;
        }
        let mut txns = shard.transactions().txns.borrow_mut();
        match written {
            Ok(()) => {
                txns.remove(&id);
                tracing::debug!(%id, "transactional id expired");
            }
            Err(error) => {
                if let Some(entry) = txns.get_mut(&id) {
                    entry.pending = false;
                }
                tracing::warn!(%id, ?error, "expiring a transactional id failed");
            }
        }
    }
}
