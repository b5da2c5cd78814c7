//! `AppendTicket`: what became of one appended batch, shared by the log and its waiter.
//!
//! The high watermark alone cannot say whether a batch is durable: when a write fails for lack
//! of space the log discards its unwritten batches and gives their offsets to later ones, so a
//! watermark past a waiter's offsets may cover somebody else's data. The log settles every
//! staged batch's ticket exactly once: durable when the watermark passes it, discarded when it
//! is dropped unwritten. Per-shard: `Rc`, lives on the core that owns the log.

use std::cell::Cell;
use std::rc::Rc;

/// The fate of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Staged or being written; a fenced log leaves its staged batches here for good.
    Pending,
    /// Written and fdatasynced; the high watermark covers it.
    Durable,
    /// Dropped unwritten (no space left); its offsets may be reused.
    Discarded,
}

/// A shared handle on one batch's fate. Clones see the same batch.
#[derive(Debug, Clone)]
pub struct AppendTicket(Rc<Cell<Settled>>);

impl AppendTicket {
    pub(crate) fn pending() -> AppendTicket {
        AppendTicket(Rc::new(Cell::new(Settled::Pending)))
    }

    /// A ticket for a batch that is already durable (a duplicate of a published batch).
    pub(crate) fn durable() -> AppendTicket {
        AppendTicket(Rc::new(Cell::new(Settled::Durable)))
    }

    pub fn settled(&self) -> Settled {
        self.0.get()
    }

    pub(crate) fn settle(&self, outcome: Settled) {
        assert_eq!(self.0.get(), Settled::Pending, "a batch is settled once");
        assert_ne!(outcome, Settled::Pending);
        self.0.set(outcome);
    }
}
