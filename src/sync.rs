//! Small single-threaded synchronisation primitives for tasks on one shard.
//!
//! Per-shard: none of these types is `Send`; they live on the executor that made them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it; a waiter that registered before `notify_all` is never
/// missed, because it compares the generation it saw with the current one.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn new() -> Notify {
        Notify::default()
    }

    /// Wakes all current waiters.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A flag that, once raised, stays raised, with a future that waits for it.
#[derive(Default)]
pub struct Latch {
    raised: Cell<bool>,
    notify: Notify,
}

impl Latch {
    pub fn raise(&self) {
        self.raised.set(true);
        self.notify.notify_all();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    pub async fn wait(&self) {
        while !self.raised.get() {
            self.notify.notified().await;
        }
    }
}

/// A budget of bytes shared by the tasks of one shard: [`ByteBudget::acquire`] waits until
/// enough is free, and the bytes return when the [`BudgetPermit`] drops. A request for more
/// than the whole budget takes all of it once everything else returned, so it never waits
/// forever. Not fair: small requests may pass a large one that waits.
pub struct ByteBudget {
    capacity: usize,
    used: Cell<usize>,
    freed: Notify,
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
pub struct BudgetPermit {
    budget: Rc<ByteBudget>,
    bytes: usize,
}

impl ByteBudget {
    pub fn new(capacity: usize) -> Rc<ByteBudget> {
        assert!(capacity > 0, "an empty budget would block forever");
        Rc::new(ByteBudget {
            capacity,
            used: Cell::new(0),
            freed: Notify::new(),
        })
    }

    /// Takes `bytes` (at most the whole capacity), waiting while they are not free.
    pub async fn acquire(self: &Rc<Self>, bytes: usize) -> BudgetPermit {
        let bytes = bytes.min(self.capacity);
        loop {
            // Registered before the check, so a release between check and await is not missed.
            let freed = self.freed.notified();
            if self.used.get() + bytes <= self.capacity {
                self.used.set(self.used.get() + bytes);
                return BudgetPermit {
                    budget: self.clone(),
                    bytes,
                };
            }
            freed.await;
        }
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.get()
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.used.set(budget.used.get() - self.bytes);
        budget.freed.notify_all();
    }
}

/// A lock granted in the order it was asked for: a released lock goes to the oldest waiter,
/// so a task that releases it and at once asks again queues behind the tasks already waiting.
/// (`futures::lock::Mutex` lets the releasing task take it straight back: a pre-writing run,
/// one step after another, kept a waiting flush out for 30 ms.) A waiter that gives up (its
/// future dropped) leaves the queue.
#[derive(Default)]
pub struct FairLock {
    state: RefCell<FairState>,
}

#[derive(Default)]
struct FairState {
    locked: bool,
    next_ticket: u64,
    /// Tickets still waiting, oldest first, with the waker of each once it has been polled.
    waiters: BTreeMap<u64, Option<Waker>>,
}

impl FairState {
    /// Wakes the oldest waiter if the lock is free for it.
    fn wake_first(&mut self) {
        if self.locked {
            return;
        }
        if let Some(waker) = self.waiters.values_mut().next().and_then(Option::take) {
            waker.wake();
        }
    }
}

impl FairLock {
    pub fn new() -> FairLock {
        FairLock::default()
    }

    /// Waits for the lock behind everyone who asked before this call.
    pub fn lock(&self) -> FairLockFuture<'_> {
        let mut state = self.state.borrow_mut();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiters.insert(ticket, None);
        FairLockFuture {
            lock: self,
            ticket,
            done: false,
        }
    }
}

pub struct FairLockFuture<'a> {
    lock: &'a FairLock,
    ticket: u64,
    done: bool,
}

impl<'a> Future for FairLockFuture<'a> {
    type Output = FairLockGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FairLockGuard<'a>> {
        let lock = self.lock;
        let mut state = lock.state.borrow_mut();
        let first = state.waiters.keys().next() == Some(&self.ticket);
        if first && !state.locked {
            state.waiters.remove(&self.ticket);
            state.locked = true;
            drop(state);
            self.done = true;
            return Poll::Ready(FairLockGuard { lock });
        }
        state.waiters.insert(self.ticket, Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for FairLockFuture<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.lock.state.borrow_mut();
        state.waiters.remove(&self.ticket);
        // It may have been the one a release woke: pass the turn on.
        state.wake_first();
    }
}

/// Holds a [`FairLock`]; releases it on drop.
pub struct FairLockGuard<'a> {
    lock: &'a FairLock,
}

impl Drop for FairLockGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.lock.state.borrow_mut();
        state.locked = false;
        state.wake_first();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// An acquisition that does not fit waits until enough bytes come back; an oversized one
    /// takes the whole budget.
    #[test]
    fn byte_budget_waits_for_room() {
        let budget = ByteBudget::new(100);
        let first = budget.acquire(60).now_or_never().expect("fits");
        let mut second = Box::pin(budget.acquire(50));
        assert!(second.as_mut().now_or_never().is_none(), "60 + 50 > 100");
        drop(first);
        let second = second.now_or_never().expect("fits after the release");
        assert_eq!(budget.used(), 50);
        drop(second);
        let huge = budget
            .acquire(1_000)
            .now_or_never()
            .expect("clamped to capacity");
        assert_eq!(budget.used(), 100);
        drop(huge);
        assert_eq!(budget.used(), 0);
    }

    /// A released lock goes to the oldest waiter, not to a task that asks again after it, and
    /// a waiter that gives up leaves the queue without blocking those behind it.
    #[test]
    fn fair_lock_serves_in_order() {
        let lock = FairLock::new();
        let first = lock.lock().now_or_never().expect("free");
        let mut second = Box::pin(lock.lock());
        let mut gives_up = Box::pin(lock.lock());
        assert!(second.as_mut().now_or_never().is_none(), "held");
        assert!(gives_up.as_mut().now_or_never().is_none(), "held");
        drop(first);
        // The releasing task asks again at once: it queues behind the two waiting.
        let mut again = Box::pin(lock.lock());
        assert!(
            again.as_mut().now_or_never().is_none(),
            "second asked first"
        );
        let second = second.now_or_never().expect("the oldest waiter gets it");
        drop(gives_up);
        assert!(
            again.as_mut().now_or_never().is_none(),
            "second still holds it"
        );
        drop(second);
        let again = again
            .now_or_never()
            .expect("next in line after the one who gave up");
        drop(again);
        assert!(lock.lock().now_or_never().is_some(), "free again");
    }
}
