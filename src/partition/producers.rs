//! The producer state of one partition over its log: what appends are checked against, what
//! is durable (what snapshots hold), the staged batches in between, and the transactions:
//! the aborted-transaction index and what holds the last stable offset back.
//!
//! Appends are checked against `appended`, which counts staged batches, so that a retry of a
//! batch still being flushed is answered as a duplicate with the original's ticket. The log
//! settles each staged batch's ticket; `settle` then moves durable batches into `durable` and,
//! when the log discarded staged batches (a full device, a suffix truncation), takes
//! `appended` back to `durable` plus what is still staged. Transactions are read from the
//! durable state only: a marker counts once it is durable, and (for a replica) its
//! transaction stays unstable until the marker is below the high watermark, as Kafka's
//! `unreplicatedTxns`. Per-shard: owned by its partition.

use crate::ids::Offset;
use std::collections::VecDeque;

use crate::partition::aborted::{AbortedTxn, AbortedTxns};
use crate::partition::producer_state::{
    Checked, CompletedTxn, ProducerAppend, ProducerChange, ProducerError, ProducerTable,
};
use crate::protocol::control::TxnMarker;
use crate::storage::{AppendTicket, Settled};

/// A staged batch of an idempotent or transactional producer, or a staged marker.
struct Staged {
    change: ProducerChange,
    ticket: AppendTicket,
}

/// The producer state a partition's log holds when it opens (see `producer_snapshot`).
#[derive(Debug, Default)]
pub struct Rebuilt {
    pub durable: ProducerTable,
    /// The offset of the snapshot at the log end, if one is there.
    pub saved_at: Option<Offset>,
    pub aborted: AbortedTxns,
    /// Transactions completed by the markers read from the log (their markers may still be
    /// above a replica's high watermark).
    pub completed: Vec<CompletedTxn>,
    /// Where the aborted-transaction files on disk end (see `aborted`).
    pub aborted_saved_to: Offset,
}

pub struct Producers {
    /// The state of every appended batch, staged ones included.
    appended: ProducerTable,
    /// The state of the durable batches only.
    durable: ProducerTable,
    /// Staged batches of idempotent producers, in offset order.
    staged: VecDeque<Staged>,
    /// The offset up to which `durable` is already on disk (a snapshot, or an empty log), so
    /// that a close with nothing new writes no snapshot.
    saved_at: Option<Offset>,
    /// The durable aborted transactions.
    aborted: AbortedTxns,
    /// Where the aborted-transaction files end: the next one begins here.
    aborted_saved_to: Offset,
    /// Completed transactions whose markers may not be below the high watermark yet.
    unstable: VecDeque<CompletedTxn>,
}

impl Producers {
    /// The state of a log whose batches are all durable.
    pub fn new(rebuilt: Rebuilt) -> Producers {
        Producers {
            appended: rebuilt.durable.clone(),
            durable: rebuilt.durable,
            staged: VecDeque::new(),
            saved_at: rebuilt.saved_at,
            aborted: rebuilt.aborted,
            aborted_saved_to: rebuilt.aborted_saved_to,
            unstable: rebuilt.completed.into(),
        }
    }

    /// Checks an incoming batch against every appended batch (see `ProducerTable::check`).
    pub fn check(&self, append: &ProducerAppend) -> Result<Checked, ProducerError> {
        self.appended.check(append)
    }

    /// The epoch of `producer_id` and the sequence of its last appended batch (-1 for none),
    /// if the partition knows the producer.
    pub fn last_sequence(&self, producer_id: i64) -> Option<(i16, i32)> {
        let entry = self.appended.get(producer_id)?;
        Some((entry.epoch, entry.batches.back().map_or(-1, |b| b.last_seq)))
    }

    /// The base offset of the last durable batch of `producer_id`, if the partition knows
    /// the producer and a batch of it.
    pub fn last_batch_offset(&self, producer_id: i64) -> Option<Offset> {
        let entry = self.durable.get(producer_id)?;
        entry.batches.back().map(|batch| batch.base_offset)
    }

    /// Whether `producer_id` has a transaction open among the appended batches.
    pub fn in_transaction(&self, producer_id: i64) -> bool {
        self.appended
            .get(producer_id)
            .is_some_and(|entry| entry.txn_first_offset.is_some())
    }

    /// Checks a marker against every appended batch (see `ProducerTable::check_marker`).
    pub fn check_marker(&self, marker: &TxnMarker) -> Result<(), ProducerError> {
        self.appended.check_marker(marker)
    }

    /// The ticket of the batch at `base_offset` found as a duplicate's original: its own while
    /// it is staged, a settled one once it is durable.
    pub fn original_ticket(&self, base_offset: Offset) -> AppendTicket {
        let staged_at = |staged: &&Staged| match staged.change {
            ProducerChange::Batch(_, batch) => batch.base_offset == base_offset,
            ProducerChange::Marker { .. } => false,
        };
        self.staged
            .iter()
            .rev()
            .find(staged_at)
            .map_or_else(AppendTicket::durable, |staged| staged.ticket.clone())
    }

    /// Records a batch or marker just staged in the log.
    pub fn record(&mut self, change: ProducerChange, ticket: AppendTicket) {
        self.appended.apply(&change);
        self.staged.push_back(Staged { change, ticket });
    }

    /// After the log settled tickets: moves the durable batches into the durable state and
    /// forgets discarded ones. `rolls` are the segment rolls the log reported, ascending;
    /// returns the durable state at each of them (every batch below a roll was durable when
    /// it happened), for snapshots.
    pub fn settle(&mut self, rolls: &[Offset]) -> Vec<(Offset, ProducerTable)> {
        let mut snapshots = Vec::new();
        let mut rolls = rolls.iter().copied().peekable();
        let mut discarded = false;
        while let Some(front) = self.staged.front() {
            match front.ticket.settled() {
                Settled::Pending => break,
                Settled::Durable => {
                    let offset = front.change.offset();
                    while let Some(roll) = rolls.next_if(|roll| *roll <= offset) {
                        snapshots.push((roll, self.durable.clone()));
                    }
                    if let Some(completed) = self.durable.apply(&front.change) {
                        if let Some(aborted) = AbortedTxn::of(&completed) {
                            self.aborted.push(aborted);
                        }
                        self.unstable.push_back(completed);
                    }
                }
                Settled::Discarded => discarded = true,
            }
            self.staged.pop_front();
        }
        snapshots.extend(rolls.map(|roll| (roll, self.durable.clone())));
        if discarded {
            self.appended = self.durable.clone();
            for staged in &self.staged {
                self.appended.apply(&staged.change);
            }
        }
        snapshots
    }

    /// The last stable offset under `high_watermark`: the first offset of the earliest
    /// transaction that is open, or whose marker is not below the high watermark yet.
    pub fn last_stable_offset(&mut self, high_watermark: Offset) -> Offset {
        self.forget_stable(high_watermark);
        let unstable = self.unstable.iter().map(|completed| completed.first_offset);
        let open = self.durable.first_open_txn();
        unstable
            .chain(open)
            .fold(high_watermark, |lowest, first| lowest.min(first))
    }

    /// Forgets the completed transactions whose markers are below `high_watermark`: they no
    /// longer hold the last stable offset back. Run whenever the high watermark moves, so
    /// that the list stays as short as the markers in flight.
    pub fn forget_stable(&mut self, high_watermark: Offset) {
        while self
            .unstable
            .front()
            .is_some_and(|completed| completed.last_offset < high_watermark)
        {
            self.unstable.pop_front();
        }
    }

    /// The aborted transactions overlapping `[from, upper)` (see `AbortedTxns::overlapping`).
    pub fn aborted_overlapping(&self, from: Offset, upper: Offset) -> Vec<(i64, Offset)> {
        self.aborted.overlapping(from, upper)
    }

    /// The aborted transactions with markers in `[saved to, end)` for the file that is to end
    /// at `end`, and where that file begins.
    pub fn aborted_unsaved(&self, end: Offset) -> (Offset, Vec<AbortedTxn>) {
        let from = self.aborted_saved_to;
        (from, self.aborted.between(from, end))
    }

    /// The aborted-transaction files now reach `end`.
    pub fn aborted_saved(&mut self, end: Offset) {
        self.aborted_saved_to = self.aborted_saved_to.max(end);
    }

    /// Whether the aborted-transaction index holds the transaction whose marker is at `marker`.
    pub fn holds_aborted_marker(&self, marker: Offset) -> bool {
        self.aborted.holds_marker(marker)
    }

    /// Forgets the aborted transactions whose markers are at `markers` (see
    /// `AbortedTxns::forget_markers`).
    pub fn forget_aborted_markers(&mut self, markers: &[Offset]) {
        self.aborted.forget_markers(markers);
    }

    /// Forgets the aborted transactions whose markers lie below `log_start`.
    pub fn log_start_moved(&mut self, log_start: Offset) {
        self.aborted.remove_below(log_start);
    }

    /// Forgets producers idle for `expiration_ms` (Kafka's `producer.id.expiration.ms`).
    /// Returns how many were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.durable.remove_expired(now_ms, expiration_ms);
        self.appended.remove_expired(now_ms, expiration_ms)
    }

    pub fn len(&self) -> usize {
        self.appended.len()
    }

    /// The durable state, unless it is on disk at `end` already.
    pub fn unsaved_at(&self, end: Offset) -> Option<ProducerTable> {
        (self.saved_at != Some(end)).then(|| self.durable.clone())
    }

    pub fn saved(&mut self, offset: Offset) {
        self.saved_at = Some(offset);
    }
}
