//! The state machine of one transactional id, as pure code with time passed in: what each
//! request may do in each state, and the state to write to `__transaction_state` for it. The
//! coordinator (`super::ops`) writes the returned state and applies it once durable; nothing
//! here does I/O.
//!
//! The states and transitions are Kafka's (`TransactionState`):
//!
//! ```text
//! Empty ──AddPartitions──▶ Ongoing ──EndTxn──▶ PrepareCommit ──markers──▶ CompleteCommit
//!   ▲                       │  ▲                PrepareAbort  ──markers──▶ CompleteAbort
//!   └──InitProducerId───────┼──┴──AddPartitions (next transaction)◀───────────┘
//!                           └──InitProducerId or timeout: epoch bump, PrepareAbort
//! ```
//!
//! Kafka's PrepareEpochFence is the in-memory step between Ongoing and the PrepareAbort that
//! fences a producer; here the fencing abort is written directly as PrepareAbort with the
//! bumped epoch, which is what Kafka writes too.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

/// Kafka's `TransactionState`, with its codes in `__transaction_state` and its names in
/// DescribeTransactions and ListTransactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Whether the transaction's outcome is decided and its markers are being written.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// Whether no transaction is open: the id may start one, or expire.
    fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// One transactional id's state, as `__transaction_state` stores it (TransactionLogValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub producer_id: i64,
    /// -1 before the first InitProducerId.
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions the open (or prepared) transaction wrote to or may write to.
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// The epoch Kafka stops at: a bump from here takes a new producer id instead.
const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// What InitProducerId does with a transactional id.
#[derive(Debug, PartialEq, Eq)]
pub enum InitPlan {
    /// Write this state and answer its producer id and epoch.
    Write(Txn),
    /// The open transaction is aborted first with a bumped epoch that fences its producer:
    /// write this PrepareAbort, write its markers, and answer CONCURRENT_TRANSACTIONS (the
    /// client retries and then gets the next epoch).
    AbortFirst(Txn),
}

/// Whether InitProducerId for this id needs a new producer id: the id is new, or its epoch
/// is exhausted.
pub fn init_needs_producer_id(current: Option<&Txn>) -> bool {
    current.is_none_or(|txn| txn.producer_epoch >= EPOCH_EXHAUSTED)
}

/// InitProducerId: a new id starts Empty at epoch 0; an idle one moves to the next epoch,
/// which fences any older producer of the id; an open transaction is aborted first.
/// `expected` is the producer id and epoch a KIP-360 client (v3+) says it had: it must be
/// the id's current one. `new_producer_id` is given when `init_needs_producer_id` said so.
pub fn init(
    current: Option<&Txn>,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<InitPlan, ResponseError> {
    let Some(current) = current else {
        let producer_id = new_producer_id.ok_or(ResponseError::UnknownServerError)?;
        return Ok(InitPlan::Write(Txn {
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }));
    };
    if let Some((producer_id, epoch)) = expected {
        if (producer_id, epoch) != (current.producer_id, current.producer_epoch) {
            return Err(ResponseError::ProducerFenced);
        }
    }
    match current.state {
        state if state.is_idle() => {
            let (producer_id, producer_epoch) = bumped(current, new_producer_id)?;
            Ok(InitPlan::Write(Txn {
                producer_id,
                producer_epoch,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now_ms,
            }))
        }
        TxnState::Ongoing => Ok(InitPlan::AbortFirst(fenced_abort(current, now_ms))),
        _ => Err(ResponseError::ConcurrentTransactions),
    }
}

/// The next producer id and epoch: the next epoch, or a new id at epoch 0 once exhausted.
fn bumped(current: &Txn, new_producer_id: Option<i64>) -> Result<(i64, i16), ResponseError> {
    if current.producer_epoch < EPOCH_EXHAUSTED {
        return Ok((current.producer_id, current.producer_epoch + 1));
    }
    let producer_id = new_producer_id.ok_or(ResponseError::UnknownServerError)?;
    Ok((producer_id, 0))
}

/// The abort of an open transaction that also fences its producer (InitProducerId from a new
/// instance, or the timeout): the markers carry the next epoch, so the old producer's next
/// batch or marker request is refused. An exhausted epoch aborts at the same epoch.
pub fn fenced_abort(current: &Txn, now_ms: i64) -> Txn {
    let producer_epoch = match current.producer_epoch < EPOCH_EXHAUSTED {
        true => current.producer_epoch + 1,
        false => current.producer_epoch,
    };
    Txn {
        producer_epoch,
        state: TxnState::PrepareAbort,
        last_update_ms: now_ms,
        ..current.clone()
    }
}

/// Checks that a request comes from the id's current producer.
fn check_producer(current: &Txn, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
    if producer_id != current.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch != current.producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(())
}

/// AddPartitionsToTxn and AddOffsetsToTxn: the partitions join the transaction, which opens
/// if none is. `None` when they are all in it already (nothing to write).
pub fn add_partitions(
    current: &Txn,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    partitions_max: usize,
    now_ms: i64,
) -> Result<Option<Txn>, ResponseError> {
    check_producer(current, producer_id, epoch)?;
    match current.state {
        TxnState::Ongoing
            if partitions
                .iter()
                .all(|partition| current.partitions.contains(partition)) =>
        {
            return Ok(None)
        }
        TxnState::Ongoing => {}
        state if state.is_idle() => {}
        state if state.is_prepared() => return Err(ResponseError::ConcurrentTransactions),
        _ => return Err(ResponseError::InvalidTxnState),
    }
    let mut next = current.clone();
    if current.state != TxnState::Ongoing {
        next.state = TxnState::Ongoing;
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.partitions.extend(partitions.iter().cloned());
    if next.partitions.len() > partitions_max {
        return Err(ResponseError::InvalidRequest);
    }
    next.last_update_ms = now_ms;
    Ok(Some(next))
}

/// AddPartitionsToTxn v4's `verify_only` (KIP-890): whether `partition` is in the producer's
/// open transaction.
pub fn verify_partition(
    current: &Txn,
    producer_id: i64,
    epoch: i16,
    partition: &(String, i32),
) -> Result<(), ResponseError> {
    check_producer(current, producer_id, epoch)?;
    match current.state == TxnState::Ongoing && current.partitions.contains(partition) {
        true => Ok(()),
        false => Err(ResponseError::InvalidTxnState),
    }
}

/// What EndTxn does.
#[derive(Debug, PartialEq, Eq)]
pub enum EndPlan {
    /// Write this PrepareCommit or PrepareAbort, then the markers, then the completion.
    Prepare(Txn),
    /// The transaction already ended this way (a retry): answer success.
    Done,
}

/// EndTxn: an open transaction is prepared to commit or abort; the same end asked again
/// after it completed is a retry and succeeds; anything else is refused as Kafka does.
pub fn end(
    current: &Txn,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndPlan, ResponseError> {
    check_producer(current, producer_id, epoch)?;
    let prepared = match commit {
        true => TxnState::PrepareCommit,
        false => TxnState::PrepareAbort,
    };
    let completed = completion_of(prepared);
    match current.state {
        TxnState::Ongoing => Ok(EndPlan::Prepare(Txn {
            state: prepared,
            last_update_ms: now_ms,
            ..current.clone()
        })),
        state if state == completed => Ok(EndPlan::Done),
        state if state == prepared => Err(ResponseError::ConcurrentTransactions),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// The state a prepared transaction completes to once its markers are written.
pub fn completion_of(prepared: TxnState) -> TxnState {
    match prepared {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        _ => TxnState::CompleteAbort,
    }
}

/// The completed state of a prepared transaction: its partitions are done with.
pub fn complete(current: &Txn, now_ms: i64) -> Txn {
    Txn {
        state: completion_of(current.state),
        partitions: BTreeSet::new(),
        last_update_ms: now_ms,
        ..current.clone()
    }
}

/// Whether an open transaction has run past its timeout at `now_ms` (it is then aborted with
/// `fenced_abort`).
pub fn timed_out(current: &Txn, now_ms: i64) -> bool {
    current.state == TxnState::Ongoing
        && now_ms.saturating_sub(current.start_ms) > i64::from(current.timeout_ms)
}

/// Whether an idle id has been unused for `expiration_ms` at `now_ms` (it is then forgotten:
/// a tombstone in `__transaction_state`).
pub fn expired(current: &Txn, now_ms: i64, expiration_ms: i64) -> bool {
    current.state.is_idle() && now_ms.saturating_sub(current.last_update_ms) >= expiration_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_string(), partition)
    }

    fn written(plan: InitPlan) -> Txn {
        match plan {
            InitPlan::Write(txn) => txn,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn new_id() -> Txn {
        written(init(None, 60_000, None, Some(7), 1).unwrap())
    }

    /// A new id starts at epoch 0; each InitProducerId after bumps the epoch; an exhausted
    /// epoch moves to a new producer id.
    #[test]
    fn init_bumps_epochs_and_then_the_producer_id() {
        let txn = new_id();
        assert_eq!((txn.producer_id, txn.producer_epoch), (7, 0));
        assert_eq!(txn.state, TxnState::Empty);
        assert!(!init_needs_producer_id(Some(&txn)));
        let next = written(init(Some(&txn), 1000, None, None, 2).unwrap());
        assert_eq!(
            (next.producer_id, next.producer_epoch, next.timeout_ms),
            (7, 1, 1000)
        );
        let old = Txn {
            producer_epoch: EPOCH_EXHAUSTED,
            ..next
        };
        assert!(init_needs_producer_id(Some(&old)));
        let renewed = written(init(Some(&old), 1000, None, Some(9), 3).unwrap());
        assert_eq!((renewed.producer_id, renewed.producer_epoch), (9, 0));
    }

    /// KIP-360: a client naming a producer id and epoch that are not the current ones is a
    /// zombie.
    #[test]
    fn init_with_a_stale_producer_is_fenced() {
        let txn = new_id();
        assert_eq!(
            init(Some(&txn), 1000, Some((7, 3)), None, 2),
            Err(ResponseError::ProducerFenced)
        );
        assert!(init(Some(&txn), 1000, Some((7, 0)), None, 2).is_ok());
    }

    /// InitProducerId during an open transaction aborts it with the next epoch first; while
    /// its markers are written, the client is told to retry.
    #[test]
    fn init_during_a_transaction_aborts_it_fenced() {
        let txn = new_id();
        let open = add_partitions(&txn, 7, 0, &[tp("t", 0)], 10, 5)
            .unwrap()
            .unwrap();
        let InitPlan::AbortFirst(abort) = init(Some(&open), 1000, None, None, 6).unwrap() else {
            panic!("expected the abort first");
        };
        assert_eq!(abort.state, TxnState::PrepareAbort);
        assert_eq!(abort.producer_epoch, 1);
        assert_eq!(abort.partitions, open.partitions);
        assert_eq!(
            init(Some(&abort), 1000, None, None, 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        let done = complete(&abort, 8);
        assert_eq!(done.state, TxnState::CompleteAbort);
        assert!(done.partitions.is_empty());
        let next = written(init(Some(&done), 1000, None, None, 9).unwrap());
        assert_eq!((next.producer_epoch, next.state), (2, TxnState::Empty));
    }

    /// Partitions open a transaction and accumulate; adding known ones writes nothing; a
    /// wrong producer id or epoch is refused; a prepared transaction takes none.
    #[test]
    fn add_partitions_opens_and_grows_the_transaction() {
        let txn = new_id();
        let open = add_partitions(&txn, 7, 0, &[tp("t", 0)], 10, 5)
            .unwrap()
            .unwrap();
        assert_eq!((open.state, open.start_ms), (TxnState::Ongoing, 5));
        assert_eq!(add_partitions(&open, 7, 0, &[tp("t", 0)], 10, 6), Ok(None));
        let grown = add_partitions(&open, 7, 0, &[tp("u", 1)], 10, 6)
            .unwrap()
            .unwrap();
        assert_eq!(grown.partitions.len(), 2);
        assert_eq!(grown.start_ms, 5);
        assert_eq!(
            add_partitions(&grown, 8, 0, &[tp("t", 1)], 10, 6),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert_eq!(
            add_partitions(&grown, 7, 1, &[tp("t", 1)], 10, 6),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            add_partitions(&grown, 7, 0, &[tp("t", 1), tp("t", 2)], 2, 6),
            Err(ResponseError::InvalidRequest)
        );
        let EndPlan::Prepare(prepared) = end(&grown, 7, 0, true, 7).unwrap() else {
            panic!("expected a prepare");
        };
        assert_eq!(
            add_partitions(&prepared, 7, 0, &[tp("t", 1)], 10, 8),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(verify_partition(&grown, 7, 0, &tp("u", 1)), Ok(()));
        assert_eq!(
            verify_partition(&grown, 7, 0, &tp("u", 2)),
            Err(ResponseError::InvalidTxnState)
        );
    }

    /// EndTxn prepares an open transaction; a retry after completion succeeds; the other end
    /// or no transaction at all is INVALID_TXN_STATE.
    #[test]
    fn end_prepares_and_retries_succeed() {
        let txn = new_id();
        assert_eq!(
            end(&txn, 7, 0, true, 2),
            Err(ResponseError::InvalidTxnState)
        );
        let open = add_partitions(&txn, 7, 0, &[tp("t", 0)], 10, 5)
            .unwrap()
            .unwrap();
        let EndPlan::Prepare(prepared) = end(&open, 7, 0, false, 6).unwrap() else {
            panic!("expected a prepare");
        };
        assert_eq!(prepared.state, TxnState::PrepareAbort);
        assert_eq!(
            end(&prepared, 7, 0, false, 7),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            end(&prepared, 7, 0, true, 7),
            Err(ResponseError::InvalidTxnState)
        );
        let done = complete(&prepared, 8);
        assert_eq!(end(&done, 7, 0, false, 9), Ok(EndPlan::Done));
        assert_eq!(
            end(&done, 7, 0, true, 9),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            end(&done, 7, 1, false, 9),
            Err(ResponseError::ProducerFenced)
        );
    }

    /// Open transactions time out after their own timeout; idle ids expire.
    #[test]
    fn timeouts_and_expiry() {
        let txn = new_id();
        assert!(!timed_out(&txn, i64::MAX));
        let open = add_partitions(&txn, 7, 0, &[tp("t", 0)], 10, 100)
            .unwrap()
            .unwrap();
        assert!(!timed_out(&open, 100 + 60_000));
        assert!(timed_out(&open, 100 + 60_001));
        assert!(!expired(&open, i64::MAX, 1));
        assert!(expired(&txn, 1 + 500, 500));
        assert!(!expired(&txn, 1 + 499, 500));
    }

    #[test]
    fn state_codes_round_trip() {
        for state in TxnState::ALL {
            assert_eq!(TxnState::from_code(state.code()), Some(state));
        }
        assert_eq!(TxnState::from_code(8), None);
    }
}
