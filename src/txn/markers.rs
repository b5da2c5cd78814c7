//! The second phase of a transaction's end: once PrepareCommit or PrepareAbort is durable,
//! a marker goes to every partition of the transaction (all at once), each retried until its
//! partition's owner wrote it, and then the completion is recorded.
//!
//! A partition without a leader, or moving, is retried with a growing delay
//! (`TXN_MARKER_RETRY_MS_MIN` to `_MAX`) for as long as this shard coordinates the id; a
//! deleted partition needs no marker. A partition that refuses the marker as coming from an
//! older coordinator (or an older producer epoch) ends the attempt: a newer coordinator of
//! the id exists and completes it. A coordinator that loads a prepared transaction (after a
//! restart, or a new leader of the state partition) sends its markers again; partitions take
//! a marker again without harm.

use std::rc::Rc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::ResponseError;

use super::ops::{persist, At};
use super::state;
use super::Host;
use crate::ids::PartitionId;
use crate::limits;
use crate::metadata::now_ms;
use crate::partition::{TopicPartition, WriteMarkerInput};
use crate::protocol::control::TxnMarker;
use crate::runtime;

/// How one partition's marker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Written, or the partition is gone.
    Done,
    /// This coordinator is no longer the id's: leave the transaction to the next one.
    Stopped,
}

/// Completes the prepared transaction of `at.id` in the background.
pub fn spawn_completion(shard: &Rc<impl Host>, at: &At) {
    let shard = shard.clone();
    let at = at.clone();
    runtime::spawn_into(shard.requests_queue(), async move {
        complete(&shard, &at).await;
        shard.transactions().completed.notify_all();
    });
}

async fn complete(shard: &Rc<impl Host>, at: &At) {
    let txn = match shard.transactions().txns.borrow().get(&at.id) {
        Some(entry) if entry.txn.state.is_prepared() => entry.txn.clone(),
        _ => return,
    };
    let marker = TxnMarker {
        producer_id: txn.producer_id,
        producer_epoch: txn.producer_epoch,
        coordinator_epoch: at.load.coordinator_epoch,
        commit: txn.state == state::TxnState::PrepareCommit,
    };
    let writes = txn.partitions.iter().map(|(topic, partition)| {
        let tp = TopicPartition {
            topic: topic.clone(),
            partition: PartitionId(*partition),
        };
        write_until_done(shard, at, tp, marker)
    });
    let outcomes = join_all(writes).await;
    if outcomes.contains(&Outcome::Stopped) {
        return;
    }
    let mut delay = retry_delay_min();
    loop {
        let next = {
            let mut txns = shard.transactions().txns.borrow_mut();
            match txns.get_mut(&at.id) {
                // Nothing else writes a prepared transaction's state (every request answers
                // CONCURRENT_TRANSACTIONS or INVALID_TXN_STATE to it).
                Some(entry) if entry.txn == txn && !entry.pending => {
                    entry.pending = true;
                    Some(state::complete(&entry.txn, now_ms()))
                }
                _ => None,
            }
        };
        let Some(next) = next else { return };
        match persist(shard, at, next, false).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(id = %at.id, ?error, "recording a completed transaction failed");
                if !at.still_here(&**shard) || shard.is_shutting_down() {
                    return;
                }
            }
        }
        runtime::sleep(delay).await;
        delay = (delay * 2).min(retry_delay_max());
    }
}

async fn write_until_done(
    shard: &Rc<impl Host>,
    at: &At,
    tp: TopicPartition,
    marker: TxnMarker,
) -> Outcome {
    let mut delay = retry_delay_min();
    loop {
        let input = WriteMarkerInput {
            tp: tp.clone(),
            marker,
        };
        let code = shard.write_marker(input).await.error_code;
        match ResponseError::try_from_code(code) {
            _ if code == 0 => return Outcome::Done,
            Some(ResponseError::UnknownTopicOrPartition) if !exists(&**shard, &tp) => {
                return Outcome::Done
            }
            Some(
                ResponseError::TransactionCoordinatorFenced | ResponseError::InvalidProducerEpoch,
            ) => {
                tracing::warn!(id = %at.id, topic = %tp.topic, partition = %tp.partition, code,
                    "a partition refused the marker of a stale coordinator");
                return Outcome::Stopped;
            }
            _ => {}
        }
        if !at.still_here(&**shard) || shard.is_shutting_down() {
            return Outcome::Stopped;
        }
        tracing::debug!(id = %at.id, topic = %tp.topic, partition = %tp.partition, code,
            "retrying a transaction marker");
        runtime::sleep(delay).await;
        delay = (delay * 2).min(retry_delay_max());
    }
}

/// Whether the partition exists in this shard's table.
fn exists(shard: &impl Host, tp: &TopicPartition) -> bool {
    shard
        .partition_count(&tp.topic)
        .is_some_and(|count| tp.partition.get() < count)
}

fn retry_delay_min() -> Duration {
    Duration::from_millis(limits::TXN_MARKER_RETRY_MS_MIN)
}

fn retry_delay_max() -> Duration {
    Duration::from_millis(limits::TXN_MARKER_RETRY_MS_MAX)
}
