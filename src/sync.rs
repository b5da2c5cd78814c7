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
///
/// Each polled [`Notified`] holds one slot in `waiters` (its key is its index), found again in
/// O(1) on every poll and freed by its `Drop`: a waiter that gives up (a `select` that another
/// branch won, a connection that closed) leaves nothing behind. A waker left in the list would
/// keep its task's memory alive until the next `notify_all`, which for a shard's shutdown
/// latch is never, and would make every later registration scan past it.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<WaiterSlots>,
}

/// The wakers of one generation's waiters, by slot. Freed slots are reused, so the list is
/// as long as the most waiters a generation ever had at once, never longer.
#[derive(Default)]
struct WaiterSlots {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl WaiterSlots {
    fn insert(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(key) => {
                debug_assert!(self.slots[key].is_none(), "a free slot is empty");
                self.slots[key] = Some(waker);
                key
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, key: usize) {
        let waker = self.slots[key].take();
        assert!(waker.is_some(), "a waiter removes only its own slot, once");
        self.free.push(key);
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

impl Notify {
    pub fn new() -> Notify {
        Notify::default()
    }

    /// Wakes all current waiters.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        // Taken out before waking, so a waiter polled or dropped from inside `wake` finds the
        // list free; the slots of this generation are void from here on (see `Notified`).
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters.slots.into_iter().flatten() {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
            slot: None,
        }
    }

    /// Waiters registered now (polled, not yet woken or dropped).
    pub fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// Waits for the next [`Notify::notify_all`]; leaves the waiter list when dropped.
pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
    /// Its slot in `notify.waiters`, once polled. Valid only while the generation is still
    /// `generation`: `notify_all` empties the list, and the slot may then be another's.
    slot: Option<usize>,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let notify = self.notify;
        if notify.generation.get() != self.generation {
            self.slot = None;
            return Poll::Ready(());
        }
        let mut waiters = notify.waiters.borrow_mut();
        match self.slot {
            Some(key) => {
                let waker = waiters.slots[key].as_mut().expect("own slot is filled");
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let key = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.slot = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        let Some(key) = self.slot else { return };
        if self.notify.generation.get() == self.generation {
            self.notify.waiters.borrow_mut().remove(key);
        }
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl CountingWaker {
        fn woken(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Polls `future` once with `waker`.
    fn poll_with<F: Future + Unpin>(future: &mut F, waker: &Arc<CountingWaker>) -> Poll<F::Output> {
        let waker = Waker::from(waker.clone());
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    /// Waiters that give up leave the list (and release their wakers): thousands of them,
    /// polled and dropped, leave no slot taken and no waker alive, and the list does not grow
    /// past the most waiters there were at once.
    #[test]
    fn dropped_waiters_leave_the_list() {
        let notify = Notify::new();
        let waker = Arc::new(CountingWaker::default());
        for _ in 0..10_000 {
            let mut waiting = notify.notified();
            assert!(poll_with(&mut waiting, &waker).is_pending());
            assert_eq!(notify.waiting(), 1);
        }
        assert_eq!(notify.waiting(), 0, "every dropped waiter left");
        assert_eq!(Arc::strong_count(&waker), 1, "no waker clone kept");
        assert_eq!(
            notify.waiters.borrow().slots.len(),
            1,
            "the one slot was reused"
        );
        notify.notify_all();
        assert_eq!(waker.woken(), 0, "nobody was waiting");
    }

    /// A waiter registered before `notify_all` is woken and ready, whatever other waiters did
    /// meanwhile (gave up, or were polled again); one that never polled is ready too.
    #[test]
    fn waiters_before_notify_all_are_never_missed() {
        let notify = Notify::new();
        let (first, second) = (Arc::default(), Arc::default());
        let mut kept = notify.notified();
        let mut gives_up = notify.notified();
        let mut never_polled = notify.notified();
        assert!(poll_with(&mut kept, &first).is_pending());
        assert!(poll_with(&mut gives_up, &second).is_pending());
        // Polled again with the same waker: still one slot each.
        assert!(poll_with(&mut kept, &first).is_pending());
        assert_eq!(notify.waiting(), 2);
        drop(gives_up);
        notify.notify_all();
        assert_eq!((first.woken(), second.woken()), (1, 0));
        assert!(poll_with(&mut kept, &first).is_ready());
        assert!(poll_with(&mut never_polled, &first).is_ready());
        let mut after = notify.notified();
        assert!(
            poll_with(&mut after, &first).is_pending(),
            "only a later notify_all"
        );
    }

    /// A waiter moved to another task wakes that task; a waiter of an earlier generation,
    /// dropped late, does not remove the slot a newer waiter now holds.
    #[test]
    fn late_drops_and_new_wakers_keep_the_right_slot() {
        let notify = Notify::new();
        let (old_task, new_task, late_task) = (Arc::default(), Arc::default(), Arc::default());
        let mut moved = notify.notified();
        assert!(poll_with(&mut moved, &old_task).is_pending());
        assert!(poll_with(&mut moved, &new_task).is_pending());
        assert_eq!(
            Arc::strong_count(&old_task),
            1,
            "the old waker was replaced"
        );
        notify.notify_all();
        assert_eq!((old_task.woken(), new_task.woken()), (0, 1));
        // `moved` still remembers slot 0 of the last generation; a new waiter takes slot 0.
        let mut newer = notify.notified();
        assert!(poll_with(&mut newer, &late_task).is_pending());
        drop(moved);
        assert_eq!(notify.waiting(), 1, "the newer waiter keeps its slot");
        notify.notify_all();
        assert_eq!(late_task.woken(), 1);
    }

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
