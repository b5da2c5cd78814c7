//! Lives of simulated processes: every task a node spawned dies with it.
//!
//! A deterministic simulation runs many nodes on one executor. To kill one (a crash, a
//! SIGKILL) every task it started must stop at once and drop what it holds, while the other
//! nodes run on. A [`Life`] is that process: [`Life::enter`] wraps a node's root future, and
//! every task spawned (through this module's `spawn_*`) while a task of that life is being
//! polled belongs to it too, however deep. [`Life::kill`] wakes them all; each one then drops
//! its future (so its files, sleeps and wakers go with it) and never runs again. A killed
//! task stays behind as an empty shell that never completes: a joiner of it would wait
//! forever, but only tasks of the same dead life can be joining it.
//!
//! Outside a simulation no life is current: a spawn costs one look at a thread-local.
//! Per-shard: a life belongs to the executor thread that made it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

thread_local! {
    /// The life of the task being polled on this thread, if it has one.
    static CURRENT: RefCell<Option<Rc<Life>>> = const { RefCell::new(None) };
}

/// One simulated process. See the module documentation.
#[derive(Default)]
pub struct Life {
    dead: Cell<bool>,
    /// The waker of each live task, by slot; freed slots are reused.
    tasks: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Life {
    pub fn new() -> Rc<Life> {
        Rc::default()
    }

    /// `future` run as a task of this life: it and everything it spawns die at `kill`.
    pub fn enter<F: Future>(self: &Rc<Self>, future: F) -> Scoped<F> {
        let slot = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.free.pop() {
                Some(slot) => slot,
                None => {
                    tasks.wakers.push(None);
                    tasks.wakers.len() - 1
                }
            }
        };
        Scoped {
            life: self.clone(),
            slot: Some(slot),
            inner: Some(Box::pin(future)),
        }
    }

    /// Kills every task of this life: each drops its future the next time it is polled,
    /// which this wakes it for. Tasks spawned in it later die at once.
    pub fn kill(&self) {
        self.dead.set(true);
        let wakers: Vec<Waker> = self
            .tasks
            .borrow_mut()
            .wakers
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Tasks of this life whose futures are still alive.
    pub fn task_count(&self) -> usize {
        let tasks = self.tasks.borrow();
        tasks.wakers.len() - tasks.free.len()
    }

    fn release(&self, slot: usize) {
        let mut tasks = self.tasks.borrow_mut();
        tasks.wakers[slot] = None;
        tasks.free.push(slot);
    }
}

/// The life of the task being polled, if any: what a spawn inherits.
pub(super) fn current() -> Option<Rc<Life>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// A future that belongs to a [`Life`].
pub struct Scoped<F> {
    life: Rc<Life>,
    /// Its slot in the life's task list; None once it completed or died.
    slot: Option<usize>,
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let Some(slot) = this.slot else {
            return Poll::Pending;
        };
        if this.life.is_dead() {
            this.inner = None;
            this.slot = None;
            this.life.release(slot);
            return Poll::Pending;
        }
        this.life.tasks.borrow_mut().wakers[slot] = Some(cx.waker().clone());
        let previous = CURRENT.with(|current| current.replace(Some(this.life.clone())));
        let polled = this.inner.as_mut().expect("alive").as_mut().poll(cx);
        CURRENT.with(|current| *current.borrow_mut() = previous);
        if polled.is_ready() {
            this.inner = None;
            this.slot = None;
            this.life.release(slot);
        }
        polled
    }
}

impl<F> Drop for Scoped<F> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.life.release(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime;
    use crate::sync::Notify;
    use std::time::Duration;

    /// Counts the guards of one life that are still alive.
    struct Guard(Rc<Cell<usize>>);

    impl Guard {
        fn new(alive: &Rc<Cell<usize>>) -> Guard {
            alive.set(alive.get() + 1);
            Guard(alive.clone())
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }

    /// A node's root task that spawns a waiter, a sleeper and a child that spawns its own.
    async fn node(alive: Rc<Cell<usize>>, never: Rc<Notify>, ticks: Rc<Cell<u32>>) {
        let guard = Guard::new(&alive);
        let (waiting, sleeping) = (Guard::new(&alive), Guard::new(&alive));
        runtime::spawn_local(async move {
            let _guard = waiting;
            never.notified().await;
        })
        .detach();
        runtime::spawn_local(async move {
            let _guard = sleeping;
            loop {
                runtime::sleep(Duration::from_millis(1)).await;
                ticks.set(ticks.get() + 1);
            }
        })
        .detach();
        let nested = Guard::new(&alive);
        let inner = Guard::new(&alive);
        runtime::spawn_local(async move {
            let _guard = nested;
            runtime::spawn_local(async move {
                let _guard = inner;
                std::future::pending::<()>().await;
            })
            .detach();
            std::future::pending::<()>().await;
        })
        .detach();
        let _guard = guard;
        std::future::pending::<()>().await;
    }

    /// Killing a life drops every task it spawned, however deep, and stops its work; another
    /// life on the same executor runs on untouched.
    #[test]
    fn a_killed_life_drops_every_task_it_spawned_and_others_run_on() {
        runtime::run_on_new_executor(|| async {
            let never = Rc::new(Notify::new());
            let (doomed, survivor) = (Life::new(), Life::new());
            let (doomed_alive, survivor_alive) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
            let (doomed_ticks, survivor_ticks) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
            let root = doomed.enter(node(
                doomed_alive.clone(),
                never.clone(),
                doomed_ticks.clone(),
            ));
            runtime::spawn_local(root).detach();
            let root = survivor.enter(node(
                survivor_alive.clone(),
                never.clone(),
                survivor_ticks.clone(),
            ));
            runtime::spawn_local(root).detach();
            while doomed_ticks.get() < 3 || survivor_ticks.get() < 3 {
                runtime::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!((doomed_alive.get(), survivor_alive.get()), (5, 5));
            assert_eq!(
                doomed.task_count(),
                5,
                "the root, three children and a grandchild"
            );
            doomed.kill();
            runtime::yield_now().await;
            assert_eq!(
                doomed_alive.get(),
                0,
                "every task of the killed life dropped"
            );
            assert_eq!(doomed.task_count(), 0);
            assert_eq!(never.waiting(), 1, "the dead waiter left the notify");
            let (dead_at, alive_at) = (doomed_ticks.get(), survivor_ticks.get());
            while survivor_ticks.get() < alive_at + 3 {
                runtime::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(doomed_ticks.get(), dead_at, "a dead life does no more work");
            assert_eq!(survivor_alive.get(), 5);
            survivor.kill();
            runtime::yield_now().await;
            assert_eq!(survivor_alive.get(), 0);
        });
    }
}
