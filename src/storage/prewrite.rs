//! Who gets pre-written space (zeros written and synced ahead of a log end, see `appender`),
//! and how much there is of it.
//!
//! Pre-writing makes `fdatasync` cheap for a partition that keeps appending, and is wasted on
//! one that took a single message: with a fixed amount per partition, 10,000 partitions with
//! one message each would hold 80 GB of zeros. So the zeros are a per-shard budget
//! ([`PrewriteBudget`], `PREWRITE_BYTES_PER_SHARD_MAX`), spent only on logs that are hot
//! ([`Heat`]: `PREWRITE_HOT_BYTES` written within a `PREWRITE_HOT_WINDOW_MS` window).
//!
//! Invariant: the budget's `used` is the sum of what its logs hold, and a log holds exactly
//! the zeros its active segment has ahead of its log end (`Log` settles the two after every
//! write, pre-writing step, roll and trim); a step reserves its bytes before it writes them,
//! so `used` never exceeds the capacity. A log gives back everything when it closes (or is
//! deleted, or dropped), and its zeros are trimmed once it has been cold for a retention
//! pass.
//!
//! Per-shard: one budget per shard, shared by that shard's logs through `Rc`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::limits::{DIO_ALIGNMENT_BYTES, PREWRITE_HOT_BYTES, PREWRITE_HOT_WINDOW_MS};

const ALIGNMENT: u64 = DIO_ALIGNMENT_BYTES as u64;

/// The shard's pre-written bytes: what its logs hold, out of a fixed capacity.
pub struct PrewriteBudget {
    capacity: u64,
    used: Cell<u64>,
}

impl PrewriteBudget {
    pub fn new(capacity: u64) -> Rc<PrewriteBudget> {
        Rc::new(PrewriteBudget {
            capacity,
            used: Cell::new(0),
        })
    }

    /// Whole blocks free now.
    pub fn available(&self) -> u64 {
        let free = self.capacity.saturating_sub(self.used.get());
        free - free % ALIGNMENT
    }

    /// Takes up to `wanted` bytes, in whole blocks, as many as are free; returns how many.
    pub fn take(&self, wanted: u64) -> u64 {
        let taken = wanted.min(self.available());
        self.used.set(self.used.get() + taken);
        taken
    }

    /// Counts `bytes` a log holds without having reserved them (zeros found, not written).
    /// May go over the capacity; later `take`s then get nothing until enough comes back.
    pub fn charge(&self, bytes: u64) {
        self.used.set(self.used.get() + bytes);
    }

    pub fn give_back(&self, bytes: u64) {
        let used = self.used.get();
        assert!(
            bytes <= used,
            "giving back {bytes} of {used} pre-written bytes"
        );
        self.used.set(used - bytes);
    }

    /// Bytes held by the shard's logs now.
    pub fn used(&self) -> u64 {
        self.used.get()
    }
}

/// Bytes a log wrote recently, in windows of `PREWRITE_HOT_WINDOW_MS`: the log is hot while
/// the current window or the one before it reached `PREWRITE_HOT_BYTES`. So a partition
/// turns hot as soon as it has written that much, and turns cold one to two windows after
/// it slowed down.
#[derive(Default)]
pub struct Heat {
    window_started: Option<Instant>,
    current_bytes: u64,
    previous_bytes: u64,
}

impl Heat {
    const WINDOW: Duration = Duration::from_millis(PREWRITE_HOT_WINDOW_MS);

    /// Counts `bytes` written at `now`.
    pub fn record(&mut self, bytes: u64, now: Instant) {
        self.advance(now);
        self.current_bytes += bytes;
    }

    pub fn is_hot(&mut self, now: Instant) -> bool {
        self.advance(now);
        self.current_bytes.max(self.previous_bytes) >= PREWRITE_HOT_BYTES
    }

    /// Starts a new window if the current one is over; a gap of more than a whole window
    /// leaves nothing of the old bytes.
    fn advance(&mut self, now: Instant) {
        let started = *self.window_started.get_or_insert(now);
        let elapsed = now.saturating_duration_since(started);
        if elapsed < Self::WINDOW {
            return;
        }
        self.previous_bytes = if elapsed < 2 * Self::WINDOW {
            self.current_bytes
        } else {
            0
        };
        self.current_bytes = 0;
        self.window_started = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes never pass the capacity and come in whole blocks; charges may, and then nothing
    /// more is given until enough comes back.
    #[test]
    fn budget_is_bounded() {
        let budget = PrewriteBudget::new(10 * ALIGNMENT);
        assert_eq!(budget.take(4 * ALIGNMENT), 4 * ALIGNMENT);
        assert_eq!(
            budget.take(100 * ALIGNMENT),
            6 * ALIGNMENT,
            "only what is left"
        );
        assert_eq!(budget.take(ALIGNMENT), 0);
        budget.give_back(100);
        assert_eq!(budget.take(ALIGNMENT), 0, "a part block is not handed out");
        budget.charge(3 * ALIGNMENT);
        assert_eq!(budget.used(), 13 * ALIGNMENT - 100);
        assert_eq!(budget.available(), 0);
        budget.give_back(budget.used());
        assert_eq!(budget.available(), 10 * ALIGNMENT);
    }

    /// A log is hot once it wrote `PREWRITE_HOT_BYTES` within a window, stays hot through
    /// the next window, and is cold after two quiet windows or one long gap.
    #[test]
    fn heat_follows_recent_writes() {
        let start = Instant::now();
        let window = Heat::WINDOW;
        let mut heat = Heat::default();
        heat.record(PREWRITE_HOT_BYTES - 1, start);
        assert!(!heat.is_hot(start), "one byte short");
        heat.record(1, start + window / 2);
        assert!(heat.is_hot(start + window / 2));
        assert!(
            heat.is_hot(start + window + window / 2),
            "the previous window counts"
        );
        assert!(
            !heat.is_hot(start + 2 * window + window),
            "two quiet windows"
        );
        let mut gap = Heat::default();
        gap.record(PREWRITE_HOT_BYTES, start);
        assert!(
            !gap.is_hot(start + 3 * window),
            "a long gap forgets everything"
        );
    }
}
