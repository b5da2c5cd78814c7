//! Loading a `__transaction_state` partition when its shard opens it (or, when it is
//! replicated, when this shard's replica begins to lead it): the log is replayed from its
//! start, the last record per transactional id wins and a null value forgets the id. Until
//! the replay finishes, the partition's ids answer COORDINATOR_LOAD_IN_PROGRESS; once the
//! partition leaves, NOT_COORDINATOR. Transactions found prepared get their markers again.

use crate::ids::PartitionId;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::ops::At;
use super::records;
use super::state::Txn;
use super::{markers, partition_for, Entry, Host, Load, TRANSACTION_TOPIC};
use crate::group::for_each_record;
use crate::runtime;

/// Called by the shard when it opened state partition `partition`, or its replica here began
/// to lead it (`coordinator_epoch` is then the replica's term): starts loading it.
pub fn partition_opened(shard: &Rc<impl Host>, partition: PartitionId, coordinator_epoch: i32) {
    let coordinator = shard.transactions();
    if let Some(count) = shard.partition_count(TRANSACTION_TOPIC) {
        coordinator.partition_count.set(count);
    }
    let generation = coordinator.generations.get() + 1;
    coordinator.generations.set(generation);
    let load = Load {
        generation,
        coordinator_epoch,
        loaded: false,
    };
    coordinator.partitions.borrow_mut().insert(partition, load);
    let shard = shard.clone();
    runtime::spawn_into(shard.requests_queue(), async move {
        let started = Instant::now();
        let replayed = replay(&shard, partition).await;
        let coordinator = shard.transactions();
        // The partition left (or left and came back) during the replay.
        if coordinator.partitions.borrow().get(&partition) != Some(&load) {
            return;
        }
        let txns = replayed.unwrap_or_else(|error| {
            // Served empty rather than stuck loading; the error is logged.
            tracing::error!(%partition, %error, "loading transactions failed");
            HashMap::new()
        });
        tracing::debug!(
            %partition,
            transactions = txns.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded transactions"
        );
        let prepared: Vec<String> = txns
            .iter()
            .filter(|(_, txn)| txn.state.is_prepared())
            .map(|(id, _)| id.clone())
            .collect();
        coordinator
            .txns
            .borrow_mut()
            .extend(txns.into_iter().map(|(id, txn)| {
                (
                    id,
                    Entry {
                        txn,
                        pending: false,
                    },
                )
            }));
        let load = Load {
            loaded: true,
            ..load
        };
        coordinator.partitions.borrow_mut().insert(partition, load);
        for id in prepared {
            let at = At {
                partition,
                load,
                id,
            };
            markers::spawn_completion(&shard, &at);
        }
    });
}

/// Called by the shard when state partition `partition` left it (moved or deleted), or its
/// replica here stopped leading it.
pub fn partition_removed(shard: &Rc<impl Host>, partition: PartitionId) {
    let coordinator = shard.transactions();
    let count = coordinator.partition_count.get();
    coordinator.partitions.borrow_mut().remove(&partition);
    coordinator
        .txns
        .borrow_mut()
        .retain(|id, _| partition_for(id, count) != partition);
    // EndTxn calls waiting for their markers answer now.
    coordinator.completed.notify_all();
}

async fn replay(
    shard: &Rc<impl Host>,
    partition: PartitionId,
) -> anyhow::Result<HashMap<String, Txn>> {
    let mut txns = HashMap::new();
    for_each_record(&**shard, TRANSACTION_TOPIC, partition, |record| {
        if record.control {
            return;
        }
        let Some(key) = record.key else { return };
        let id = match records::decode_key(&key) {
            Ok(id) => id,
            Err(error) => return tracing::warn!(%error, record.offset, "skipping record"),
        };
        match record.value.map(|value| records::decode_value(&value)) {
            None => {
                txns.remove(&id);
            }
            Some(Ok(txn)) => {
                txns.insert(id, txn);
            }
            Some(Err(error)) => tracing::warn!(%error, record.offset, "skipping transaction"),
        }
    })
    .await?;
    Ok(txns)
}
