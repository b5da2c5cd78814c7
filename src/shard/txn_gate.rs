//! KIP-890 part 1: a producer's first transactional batch in a partition is written only if
//! its transaction coordinator says the partition was added to the producer's open
//! transaction. Without the check, a batch that arrives after its transaction ended (a
//! zombie's, a retry held up in the network) opens a transaction no coordinator knows, which
//! is never ended and holds the partition's last stable offset (and every read_committed
//! consumer) back for ever: Kafka's "hanging transaction".
//!
//! On the owner shard, a produce that carries a transactional id and a transactional batch of
//! a producer with no transaction open in the partition asks the coordinator (AddPartitionsToTxn
//! `verify_only`: on this node through `txn::route`, on another over `node_call`). A refusal is
//! INVALID_TXN_STATE (the partition is not in an open transaction) or the producer error; a
//! coordinator that cannot answer yet is NOT_ENOUGH_REPLICAS, which every client retries, as
//! in Kafka. Requests without a transactional id are not checked (Kafka does the same).
//!
//! Order: a connection's batches for a partition reach its owner in the order sent and must be
//! appended in that order, but the check awaits. So each (partition, producer) has a gate: a
//! produce of that producer waits for the one before it to have been staged (not to be
//! durable) before it looks at the partition, and the check happens inside its turn. Batches
//! of a producer whose transaction is open here and with nobody waiting go straight through.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::task::Poll;

use kafka_protocol::ResponseError;

use super::node_call::{NodeCall, VerifyInput};
use super::Shard;
use crate::partition::producer_state::stored_batch_producer;
use crate::partition::{PartitionOp, ProduceInput, ProduceOutput, TopicPartition};
use crate::sync::Latch;
use crate::txn::{self, TxnCall, TxnReply, TRANSACTION_TOPIC};

/// The last produce of each (partition, producer) that others must wait for.
pub type Gates = RefCell<HashMap<(TopicPartition, i64), Rc<Latch>>>;

/// A produce's turn at its (partition, producer) gate: raised, and the gate forgotten if it
/// is still this turn's, when dropped.
struct Turn<'a> {
    gates: &'a Gates,
    key: (TopicPartition, i64),
    latch: Rc<Latch>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.latch.raise();
        let mut gates = self.gates.borrow_mut();
        if gates
            .get(&self.key)
            .is_some_and(|latch| Rc::ptr_eq(latch, &self.latch))
        {
            gates.remove(&self.key);
        }
    }
}

impl Shard {
    /// Produce on the partition this shard owns, checking a producer's first transactional
    /// batch with its coordinator (see the module documentation).
    pub(super) async fn produce_here(self: &Rc<Self>, input: ProduceInput) -> ProduceOutput {
        // Only transactional producers send a transactional id: the others' produce pays
        // nothing here.
        let Some(transactional_id) = input.transactional_id.clone() else {
            return self.run_local(input).await;
        };
        let producer = input
            .records
            .as_ref()
            .and_then(|records| stored_batch_producer(records))
            .filter(|(append, _)| append.transactional)
            .map(|(append, _)| (append.producer_id, append.epoch));
        let Some((producer_id, epoch)) = producer else {
            return self.run_local(input).await;
        };
        let key = (input.tp.clone(), producer_id);
        let before = self.txn_gates.borrow().get(&key).cloned();
        if before.is_none() && self.in_transaction(&input.tp, producer_id) {
            return self.run_local(input).await;
        }
        let turn = Turn {
            gates: &self.txn_gates,
            key: key.clone(),
            latch: Rc::new(Latch::default()),
        };
        self.txn_gates.borrow_mut().insert(key, turn.latch.clone());
        if let Some(before) = before {
            before.wait().await;
        }
        if !self.in_transaction(&input.tp, producer_id) {
            let check = VerifyInput {
                transactional_id,
                producer_id,
                epoch,
                tp: input.tp.clone(),
            };
            if let Err(error) = self.verify(check).await {
                return ProduceInput::refused(produce_error(error));
            }
        }
        // The next produce of this producer may look at the partition once this one is
        // staged, which the first poll does (appends and proposals are taken synchronously).
        let mut produce = Box::pin(self.run_local(input));
        let first = futures::poll!(&mut produce);
        drop(turn);
        match first {
            Poll::Ready(output) => output,
            Poll::Pending => produce.await,
        }
    }

    /// Whether `producer_id` has a transaction open in partition `tp`, owned here.
    fn in_transaction(&self, tp: &TopicPartition, producer_id: i64) -> bool {
        let partition = match self.replica_of(tp) {
            Some(replica) => Some(replica.partition().clone()),
            None => self.partition(tp),
        };
        partition.is_some_and(|p| p.producer_in_transaction(producer_id))
    }

    /// Asks the producer's coordinator whether `check.tp` is in its open transaction: here,
    /// or on the node leading the coordinator's state partition.
    async fn verify(self: &Rc<Self>, check: VerifyInput) -> Result<(), ResponseError> {
        let leader = {
            let table = self.table();
            table.topic(TRANSACTION_TOPIC).and_then(|topic| {
                let partition =
                    crate::group::partition_for(&check.transactional_id, topic.partition_count());
                topic.leader(partition).map(|(node, _)| node)
            })
        };
        match leader {
            Some(node) if node != self.config.node_id && self.cluster.get().is_some() => {
                match self.call_node(node, NodeCall::Verify(check)).await {
                    Some(code) => answered(code),
                    None => Err(ResponseError::CoordinatorNotAvailable),
                }
            }
            _ => self.verify_here(check).await,
        }
    }

    /// The check on this node's coordinator (never forwarded to another node).
    pub(super) async fn verify_here(
        self: &Rc<Self>,
        check: VerifyInput,
    ) -> Result<(), ResponseError> {
        let call = TxnCall::AddPartitions {
            transactional_id: check.transactional_id,
            producer_id: check.producer_id,
            epoch: check.epoch,
            partitions: vec![(check.tp.topic, check.tp.partition.get())],
            verify_only: true,
        };
        match txn::route(self, call).await {
            TxnReply::Verified(codes) => match codes.first() {
                Some(code) => answered(*code),
                None => Err(ResponseError::UnknownServerError),
            },
            TxnReply::Error(error) => Err(error),
            _ => Err(ResponseError::UnknownServerError),
        }
    }
}

/// A check's error code as its result.
fn answered(code: i16) -> Result<(), ResponseError> {
    match code {
        0 => Ok(()),
        code => {
            Err(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError))
        }
    }
}

/// The produce error for a failed check, as Kafka answers it: a coordinator that cannot
/// answer now is NOT_ENOUGH_REPLICAS (retriable in every client); a partition not in the
/// transaction INVALID_TXN_STATE; a stale producer INVALID_PRODUCER_EPOCH.
fn produce_error(error: ResponseError) -> ResponseError {
    match error {
        ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::ConcurrentTransactions => ResponseError::NotEnoughReplicas,
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::InvalidTxnState | ResponseError::InvalidProducerIdMapping => error,
        _ => ResponseError::InvalidTxnState,
    }
}
