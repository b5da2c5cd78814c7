//! The idempotent-producer state of one partition over its log: what appends are checked
//! against, what is durable (what snapshots hold), and the staged batches in between.
//!
//! Appends are checked against `appended`, which counts staged batches, so that a retry of a
//! batch still being flushed is answered as a duplicate with the original's ticket. The log
//! settles each staged batch's ticket; `settle` then moves durable batches into `durable` and,
//! when the log discarded staged batches (a full device, a suffix truncation), takes
//! `appended` back to `durable` plus what is still staged. Per-shard: owned by its partition.

use crate::ids::Offset;
use std::collections::VecDeque;

use crate::partition::producer_state::{
    Checked, ProducerAppend, ProducerBatch, ProducerError, ProducerTable,
};
use crate::storage::{AppendTicket, Settled};

/// A staged batch of an idempotent producer.
struct Staged {
    producer_id: i64,
    epoch: i16,
    batch: ProducerBatch,
    ticket: AppendTicket,
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
}

impl Producers {
    /// The state of a log whose batches are all durable.
    pub fn new(durable: ProducerTable, saved_at: Option<Offset>) -> Producers {
        Producers {
            appended: durable.clone(),
            durable,
            staged: VecDeque::new(),
            saved_at,
        }
    }

    /// Checks an incoming batch against every appended batch (see `ProducerTable::check`).
    pub fn check(&self, append: &ProducerAppend) -> Result<Checked, ProducerError> {
        self.appended.check(append)
    }

    /// The ticket of the batch at `base_offset` found as a duplicate's original: its own while
    /// it is staged, a settled one once it is durable.
    pub fn original_ticket(&self, base_offset: Offset) -> AppendTicket {
        self.staged
            .iter()
            .rev()
            .find(|staged| staged.batch.base_offset == base_offset)
            .map_or_else(AppendTicket::durable, |staged| staged.ticket.clone())
    }

    /// Records a batch just staged in the log.
    pub fn record(&mut self, append: &ProducerAppend, batch: ProducerBatch, ticket: AppendTicket) {
        self.appended
            .record(append.producer_id, append.epoch, batch);
        self.staged.push_back(Staged {
            producer_id: append.producer_id,
            epoch: append.epoch,
            batch,
            ticket,
        });
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
                    while let Some(roll) = rolls.next_if(|roll| *roll <= front.batch.base_offset) {
                        snapshots.push((roll, self.durable.clone()));
                    }
                    self.durable
                        .record(front.producer_id, front.epoch, front.batch);
                }
                Settled::Discarded => discarded = true,
            }
            self.staged.pop_front();
        }
        snapshots.extend(rolls.map(|roll| (roll, self.durable.clone())));
        if discarded {
            self.appended = self.durable.clone();
            for staged in &self.staged {
                self.appended
                    .record(staged.producer_id, staged.epoch, staged.batch);
            }
        }
        snapshots
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
