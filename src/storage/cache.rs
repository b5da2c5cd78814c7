//! Per-shard cache of recent durable batches, with a byte budget and oldest-first eviction.
//!
//! Logs insert batches once they are durable, in offset order, and serve reads of the tail
//! from here without touching the disk. Per-shard: one instance per core, shared by that
//! core's logs through `Rc`. Invariant: `bytes` is the sum of the costs of cached batches
//! (their lengths plus `ENTRY_OVERHEAD_BYTES` each), and `entries` their number.
//! It also carries the shard's read-ahead budget (`read_ahead`), a separate pool, so that
//! chunks read ahead for catch-up consumers never evict the tail that live consumers read,
//! and the shard's budget of pre-written bytes on disk (`prewrite`).

use crate::ids::Offset;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

use crate::limits::{PREWRITE_BYTES_PER_SHARD_MAX, READ_AHEAD_BYTES_PER_SHARD_MAX};
use crate::storage::prewrite::PrewriteBudget;
use crate::storage::read_ahead::{ReadAheadBudget, ReadAheadStats};

/// What a cached batch costs beyond its own bytes: its map entry, its slot in the eviction
/// order and the `Bytes` shared header. Measured: filling the cache with one-record batches of
/// 1 KiB grew RSS by about 230 bytes per batch beyond their lengths, so a budget that counted
/// lengths only held about 20 % more than it said.
const ENTRY_OVERHEAD_BYTES: usize = 256;

/// `order` slots naming removed batches, beyond the live ones, before `order` is compacted.
const STALE_ORDER_SLACK: usize = 1024;

struct Entry {
    last_offset: Offset,
    bytes: Bytes,
}

impl Entry {
    fn cost(&self) -> usize {
        cost(&self.bytes)
    }
}

fn cost(bytes: &Bytes) -> usize {
    bytes.len() + ENTRY_OVERHEAD_BYTES
}

#[derive(Default)]
struct Inner {
    logs: HashMap<u64, BTreeMap<Offset, Entry>>,
    /// Insertion order, oldest first; may name entries already removed (by retention),
    /// which `compact_order` drops once they outnumber the live ones.
    order: VecDeque<(u64, Offset)>,
    bytes: usize,
    entries: usize,
}

impl Inner {
    /// Drops the `order` slots of removed batches once there are many: without it, a cache
    /// that retention keeps under its budget never evicts, and `order` grew by a slot per
    /// batch for ever.
    fn compact_order(&mut self) {
        if self.order.len() <= 2 * self.entries + STALE_ORDER_SLACK {
            return;
        }
        let Inner { logs, order, .. } = self;
        order.retain(|(log, base)| {
            logs.get(log)
                .is_some_and(|batches| batches.contains_key(base))
        });
    }
}

pub struct BatchCache {
    budget_bytes: usize,
    inner: RefCell<Inner>,
    next_log_id: Cell<u64>,
    hits: Cell<u64>,
    misses: Cell<u64>,
    read_ahead: Rc<ReadAheadBudget>,
    prewrite: Rc<PrewriteBudget>,
}

impl BatchCache {
    pub fn new(budget_bytes: usize) -> Rc<Self> {
        Self::with_read_ahead(budget_bytes, READ_AHEAD_BYTES_PER_SHARD_MAX)
    }

    /// A cache of `budget_bytes` whose logs read ahead within `read_ahead_bytes`.
    pub fn with_read_ahead(budget_bytes: usize, read_ahead_bytes: usize) -> Rc<Self> {
        Self::with_budgets(budget_bytes, read_ahead_bytes, PREWRITE_BYTES_PER_SHARD_MAX)
    }

    /// A cache as `with_read_ahead`, whose logs pre-write at most `prewrite_bytes` in all.
    pub fn with_budgets(
        budget_bytes: usize,
        read_ahead_bytes: usize,
        prewrite_bytes: u64,
    ) -> Rc<Self> {
        Rc::new(BatchCache {
            budget_bytes,
            inner: RefCell::new(Inner::default()),
            next_log_id: Cell::new(0),
            hits: Cell::new(0),
            misses: Cell::new(0),
            read_ahead: ReadAheadBudget::new(read_ahead_bytes),
            prewrite: PrewriteBudget::new(prewrite_bytes),
        })
    }

    /// The shard's read-ahead budget, shared by its logs.
    pub(crate) fn read_ahead_budget(&self) -> Rc<ReadAheadBudget> {
        self.read_ahead.clone()
    }

    /// The shard's budget of pre-written bytes, shared by its logs.
    pub(crate) fn prewrite_budget(&self) -> Rc<PrewriteBudget> {
        self.prewrite.clone()
    }

    /// Pre-written bytes the shard's logs hold on disk now.
    pub fn prewritten_bytes(&self) -> u64 {
        self.prewrite.used()
    }

    /// Read-ahead counters of the shard (hits, misses, bytes read and held).
    pub fn read_ahead_stats(&self) -> ReadAheadStats {
        self.read_ahead.stats()
    }

    /// Whether the batch holding `offset` is cached (counted neither hit nor miss).
    pub(crate) fn holds(&self, log: u64, offset: Offset) -> bool {
        let inner = self.inner.borrow();
        let first = inner
            .logs
            .get(&log)
            .and_then(|batches| batches.range(..=offset).next_back());
        first.is_some_and(|(_, entry)| entry.last_offset >= offset)
    }

    /// (hits, misses, bytes cached).
    pub fn stats(&self) -> (u64, u64, usize) {
        (
            self.hits.get(),
            self.misses.get(),
            self.inner.borrow().bytes,
        )
    }

    /// A fresh key for one log's entries.
    pub(crate) fn register_log(&self) -> u64 {
        let id = self.next_log_id.get();
        self.next_log_id.set(id + 1);
        id
    }

    pub(crate) fn insert(&self, log: u64, base_offset: Offset, last_offset: Offset, bytes: Bytes) {
        if cost(&bytes) > self.budget_bytes {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        inner.bytes += cost(&bytes);
        inner.entries += 1;
        let entry = Entry { last_offset, bytes };
        if let Some(old) = inner
            .logs
            .entry(log)
            .or_default()
            .insert(base_offset, entry)
        {
            inner.bytes -= old.cost();
            inner.entries -= 1;
        }
        inner.order.push_back((log, base_offset));
        while inner.bytes > self.budget_bytes {
            let Some((log, base)) = inner.order.pop_front() else {
                break;
            };
            let removed = inner
                .logs
                .get_mut(&log)
                .and_then(|batches| batches.remove(&base));
            if let Some(entry) = removed {
                inner.bytes -= entry.cost();
                inner.entries -= 1;
            }
        }
        inner.compact_order();
    }

    /// Consecutive cached batches starting with the one holding `offset`, up to `max_bytes`
    /// (at least one), all below `high_watermark`; None if that first batch is not cached.
    pub(crate) fn read(
        &self,
        log: u64,
        offset: Offset,
        max_bytes: usize,
        high_watermark: Offset,
    ) -> Option<Vec<Bytes>> {
        let inner = self.inner.borrow();
        let batches = inner.logs.get(&log);
        let first = batches.and_then(|b| b.range(..=offset).next_back());
        let Some((_, first)) = first.filter(|(_, entry)| entry.last_offset >= offset) else {
            self.misses.set(self.misses.get() + 1);
            return None;
        };
        self.hits.set(self.hits.get() + 1);
        let mut result = vec![first.bytes.clone()];
        let mut total = first.bytes.len();
        let mut next = first.last_offset + 1;
        while next < high_watermark {
            let Some(entry) = batches.and_then(|b| b.get(&next)) else {
                break;
            };
            if total + entry.bytes.len() > max_bytes {
                break;
            }
            total += entry.bytes.len();
            result.push(entry.bytes.clone());
            next = entry.last_offset + 1;
        }
        Some(result)
    }

    /// Drops a log's batches below `offset` (retention moved its start).
    pub(crate) fn remove_below(&self, log: u64, offset: Offset) {
        let mut inner = self.inner.borrow_mut();
        let Some(batches) = inner.logs.get_mut(&log) else {
            return;
        };
        let kept = batches.split_off(&offset);
        let dropped: usize = batches.values().map(Entry::cost).sum();
        let count = batches.len();
        *batches = kept;
        inner.bytes -= dropped;
        inner.entries -= count;
        inner.compact_order();
    }

    /// Drops a log's batches from `offset` on (its suffix was truncated; `offset` is a batch
    /// boundary). Their slots in the eviction order go stale like those `remove_below` leaves.
    pub(crate) fn remove_from(&self, log: u64, offset: Offset) {
        let mut inner = self.inner.borrow_mut();
        let Some(batches) = inner.logs.get_mut(&log) else {
            return;
        };
        let doomed = batches.split_off(&offset);
        inner.bytes -= doomed.values().map(Entry::cost).sum::<usize>();
        inner.entries -= doomed.len();
        inner.compact_order();
    }

    /// Drops a log's batches with base offsets in `[from, to)` (a compaction replaced the
    /// segments holding them).
    pub(crate) fn remove_range(&self, log: u64, from: Offset, to: Offset) {
        let mut inner = self.inner.borrow_mut();
        let Some(batches) = inner.logs.get_mut(&log) else {
            return;
        };
        let mut doomed = batches.split_off(&from);
        let mut kept = doomed.split_off(&to);
        batches.append(&mut kept);
        inner.bytes -= doomed.values().map(Entry::cost).sum::<usize>();
        inner.entries -= doomed.len();
        inner.compact_order();
    }

    /// Drops every batch of a log (closed or removed).
    pub(crate) fn remove_log(&self, log: u64) {
        let mut inner = self.inner.borrow_mut();
        if let Some(batches) = inner.logs.remove(&log) {
            inner.bytes -= batches.values().map(Entry::cost).sum::<usize>();
            inner.entries -= batches.len();
        }
        inner.order.retain(|(id, _)| *id != log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache stays within budget by evicting the oldest batches first; a batch costs its
    /// length and a fixed overhead.
    #[test]
    fn evicts_oldest_first_within_budget() {
        let cost = 100 + ENTRY_OVERHEAD_BYTES;
        let cache = BatchCache::new(2 * cost + 50);
        let log = cache.register_log();
        for base in (0..5).map(Offset) {
            cache.insert(log, base, base, Bytes::from(vec![0u8; 100]));
        }
        assert_eq!(cache.stats().2, 2 * cost);
        assert!(cache.read(log, Offset(2), 1000, Offset(5)).is_none());
        let batches = cache.read(log, Offset(3), 1000, Offset(5)).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(
            cache.read(log, Offset(3), 1000, Offset(4)).unwrap().len(),
            1
        );
        assert_eq!(cache.read(log, Offset(3), 10, Offset(5)).unwrap().len(), 1);
        cache.remove_log(log);
        assert_eq!(cache.stats().2, 0);
    }

    /// Retention that keeps the cache under its budget leaves no slots behind: the eviction
    /// order stays proportional to the batches cached, however many came and went.
    #[test]
    fn retention_under_budget_keeps_the_order_small() {
        let cache = BatchCache::new(1 << 30);
        let log = cache.register_log();
        for base in (0..100_000).map(Offset) {
            cache.insert(log, base, base, Bytes::from_static(b"x"));
            if base.get() % 100 == 99 {
                cache.remove_below(log, base + 1);
            }
        }
        let inner = cache.inner.borrow();
        assert_eq!(inner.entries, 0);
        assert_eq!(inner.bytes, 0);
        assert!(
            inner.order.len() <= STALE_ORDER_SLACK + 1,
            "{} slots",
            inner.order.len()
        );
    }
}
