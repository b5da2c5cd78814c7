//! The shard mesh: requests and replies between shards, with no `Waker` ever crossing a thread.
//!
//! glommio 0.9 wakes a task from another thread by cloning its waker into a queue of the
//! task's executor. When the last foreign reference of a waker is dropped, its
//! `drop_waker` takes the count to zero and then clones the waker back up to queue it, so
//! that the owner destroys the task: between those two steps the owning executor can drop
//! the task's `JoinHandle`, see no reference left and free the task, and the queued clone
//! then frees it again (`free(): double free`, the 2-shard abort of issue 12, always in
//! `process_foreign_wakes`). Every `Waker` handed to a channel that another thread
//! completes (flume, a futures oneshot) takes that path. So the mesh is built the way
//! Seastar's smp queues are, and a task is only ever woken by its own executor:
//!
//! - Each ordered pair of shards has a lane: a queue guarded by a mutex that only those two
//!   threads take, for a push or to swap the whole queue out.
//! - Each shard has a doorbell: an eventfd that its own executor reads through its own
//!   io_uring. A sender pushes, then rings the doorbell unless it is still rung from an
//!   earlier push (so a burst costs one `write(2)`); the read completes like any I/O, on the
//!   receiving executor, which then wakes its mesh task locally.
//! - A reply goes back the same way, into the caller's reply inbox, then its doorbell; the
//!   caller's mesh task hands it to the waiting call through a slot of its own shard.
//!
//! No wake-up is lost: the receiver lowers the bell *before* it empties its queues, and a
//! sender rings *after* it pushed, so a push either lands before the emptying (and is taken)
//! or finds the bell lowered (and rings it again).
//!
//! A lane holds at most `capacity` requests. A sender that finds it full marks the lane and
//! waits; the receiver, after emptying a marked lane, rings the sender's doorbell, and the
//! sender's mesh task wakes the senders waiting for room. Replies never wait for room: each
//! call has at most one reply in flight.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::doorbell::{Doorbell, DoorbellReader};
use crate::sync::Notify;

/// The mesh of `shards` shards, made before the executors start; each executor joins once.
pub struct Mesh<T: Send + 'static> {
    capacity: usize,
    stations: Vec<Arc<Station<T>>>,
    next_id: AtomicUsize,
}

/// What reaches one shard: a lane from every shard (its own is never used), its reply
/// inbox, and the doorbell both ring.
struct Station<T> {
    doorbell: Arc<Doorbell>,
    lanes: Vec<Mutex<Lane<T>>>,
    replies: Arc<ReplyInbox>,
}

/// Requests from one shard to another, oldest first.
struct Lane<T> {
    requests: VecDeque<T>,
    /// The receiver has stopped: requests are refused.
    closed: bool,
    /// The sender found the lane full and waits for the receiver to ring it.
    sender_waiting: bool,
}

/// Replies to one shard's calls, from every other shard.
struct ReplyInbox {
    doorbell: Arc<Doorbell>,
    state: Mutex<ReplyState>,
}

/// A call's reply: the value, or None if the request was dropped unanswered.
type ReplyValue = Option<Box<dyn Any + Send>>;

#[derive(Default)]
struct ReplyState {
    replies: Vec<(u64, ReplyValue)>,
    closed: bool,
}

/// Locks a mutex shared with another thread (a lane, an inbox, a helper's queue). A panic
/// while holding one aborts the process (panic = "abort"), so a poisoned lock cannot be
/// observed; take the data either way.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T: Send + 'static> Mesh<T> {
    /// A mesh of `shards` shards whose lanes hold at most `capacity` requests each.
    pub fn full(shards: usize, capacity: usize) -> std::io::Result<Arc<Mesh<T>>> {
        assert!(capacity > 0, "a lane without room would block every sender");
        let stations = (0..shards)
            .map(|_| {
                let doorbell = Arc::new(Doorbell::new()?);
                let lanes = (0..shards)
                    .map(|_| {
                        Mutex::new(Lane {
                            requests: VecDeque::new(),
                            closed: false,
                            sender_waiting: false,
                        })
                    })
                    .collect();
                let replies = Arc::new(ReplyInbox {
                    doorbell: doorbell.clone(),
                    state: Mutex::new(ReplyState::default()),
                });
                Ok(Arc::new(Station {
                    doorbell,
                    lanes,
                    replies,
                }))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Arc::new(Mesh {
            capacity,
            stations,
            next_id: AtomicUsize::new(0),
        }))
    }

    /// Called once on each executor: takes the next shard id and that shard's port.
    pub fn join(&self) -> MeshPort<T> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        assert!(
            id < self.stations.len(),
            "more executors joined the mesh than it has shards"
        );
        MeshPort {
            id,
            capacity: self.capacity,
            stations: self.stations.clone(),
            calls: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
            room: Notify::new(),
            closed: Cell::new(false),
        }
    }
}

/// One shard's end of the mesh: it sends requests, receives them ([`MeshPort::serve`]) and
/// matches replies to its calls.
///
/// Per-shard: lives on the executor that joined; only the `Arc`ed stations are shared.
pub struct MeshPort<T: Send + 'static> {
    id: usize,
    capacity: usize,
    stations: Vec<Arc<Station<T>>>,
    /// Calls of this shard waiting for their reply, by call number.
    calls: RefCell<HashMap<u64, CallSlot>>,
    next_call: Cell<u64>,
    /// Raised whenever this shard's doorbell is answered: a lane it waits on may have room.
    room: Notify,
    closed: Cell<bool>,
}

enum CallSlot {
    Waiting(Option<Waker>),
    Answered(ReplyValue),
}

/// The handle with which the shard that serves a request answers the shard that sent it.
/// Dropping it unanswered tells the caller that no answer comes (its call returns None).
pub struct Reply<R: Send + 'static> {
    inbox: Option<Arc<ReplyInbox>>,
    call: u64,
    _value: PhantomData<fn(R)>,
}

impl<R: Send + 'static> Reply<R> {
    /// Sends the answer to the calling shard; if it has stopped, the value is dropped.
    pub fn send(mut self, value: R) {
        if let Some(inbox) = self.inbox.take() {
            inbox.deliver(self.call, Some(Box::new(value)));
        }
    }
}

impl<R: Send + 'static> Drop for Reply<R> {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            inbox.deliver(self.call, None);
        }
    }
}

impl ReplyInbox {
    fn deliver(&self, call: u64, value: ReplyValue) {
        let mut state = lock(&self.state);
        if state.closed {
            drop(state);
            drop(value);
            return;
        }
        state.replies.push((call, value));
        drop(state);
        self.doorbell.ring();
    }
}

impl<T: Send + 'static> MeshPort<T> {
    /// This shard's id in the mesh.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Sends the request `make` builds to shard `to` and waits for its reply; None if that
    /// shard has stopped or dropped the request unanswered.
    pub async fn call<R: Send + 'static>(
        &self,
        to: usize,
        make: impl FnOnce(Reply<R>) -> T,
    ) -> Option<R> {
        let call = self.next_call.get();
        self.next_call.set(call + 1);
        self.calls
            .borrow_mut()
            .insert(call, CallSlot::Waiting(None));
        let pending = PendingCall { port: self, call };
        let reply = Reply {
            inbox: Some(self.stations[self.id].replies.clone()),
            call,
            _value: PhantomData,
        };
        // A refused request drops here, and its reply tells this (already ended) call so.
        self.send(to, make(reply)).await.ok()?;
        let value = pending.await?;
        let value = value
            .downcast::<R>()
            .expect("a reply carries the type its call asked for");
        Some(*value)
    }

    /// Queues `message` on the lane to shard `to`, waiting while it is full; gives the
    /// message back if that shard has stopped (or is this one).
    async fn send(&self, to: usize, message: T) -> Result<(), T> {
        let Some(station) = self.stations.get(to).filter(|_| to != self.id) else {
            return Err(message);
        };
        loop {
            // Taken before looking, so a ring between the look and the wait is not missed.
            let room = self.room.notified();
            {
                let mut lane = lock(&station.lanes[self.id]);
                if lane.closed {
                    return Err(message);
                }
                if lane.requests.len() < self.capacity {
                    lane.requests.push_back(message);
                    drop(lane);
                    station.doorbell.ring();
                    return Ok(());
                }
                lane.sender_waiting = true;
            }
            room.await;
        }
    }

    /// Receives for this shard until [`MeshPort::close`]: hands every request to `deliver`
    /// in the order its sender sent it, and every reply to its waiting call. Run it as one
    /// task per shard, and await that task after `close` before the executor ends: a task
    /// still waiting on the doorbell read then is never freed (LeakSanitizer reports it).
    pub async fn serve(&self, mut deliver: impl FnMut(T)) {
        let station = &self.stations[self.id];
        let bell = DoorbellReader::new(&station.doorbell);
        while !self.closed.get() {
            // Lowered before the queues are emptied: see the module documentation.
            station.doorbell.lower();
            self.room.notify_all();
            self.take_replies();
            self.take_requests(&mut deliver);
            bell.wait().await;
        }
        bell.close().await;
    }

    fn take_replies(&self) {
        let replies = std::mem::take(&mut lock(&self.stations[self.id].replies.state).replies);
        let mut wakers = Vec::new();
        {
            let mut calls = self.calls.borrow_mut();
            for (call, value) in replies {
                // A call that gave up has no slot any more; its reply just drops.
                if let Some(slot) = calls.get_mut(&call) {
                    if let CallSlot::Waiting(Some(waker)) =
                        std::mem::replace(slot, CallSlot::Answered(value))
                    {
                        wakers.push(waker);
                    }
                }
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    fn take_requests(&self, deliver: &mut impl FnMut(T)) {
        let station = &self.stations[self.id];
        for (from, lane) in station.lanes.iter().enumerate() {
            if from == self.id {
                continue;
            }
            let (requests, sender_waiting) = {
                let mut lane = lock(lane);
                let waiting = std::mem::replace(&mut lane.sender_waiting, false);
                (std::mem::take(&mut lane.requests), waiting)
            };
            if sender_waiting {
                self.stations[from].doorbell.ring();
            }
            requests.into_iter().for_each(&mut *deliver);
        }
    }

    /// Stops this shard's end: later requests to it are refused, requests still queued are
    /// dropped (their callers get None), calls of this shard still waiting end with None,
    /// and [`MeshPort::serve`] returns.
    pub fn close(&self) {
        self.closed.set(true);
        let station = &self.stations[self.id];
        let mut dropped = Vec::new();
        for lane in &station.lanes {
            let mut lane = lock(lane);
            lane.closed = true;
            dropped.extend(lane.requests.drain(..));
        }
        let replies = {
            let mut state = lock(&station.replies.state);
            state.closed = true;
            std::mem::take(&mut state.replies)
        };
        drop((dropped, replies));
        let waiting: Vec<_> = self.calls.borrow_mut().drain().collect();
        for (_, slot) in waiting {
            if let CallSlot::Waiting(Some(waker)) = slot {
                waker.wake();
            }
        }
        station.doorbell.ring_again();
    }
}

/// A call waiting for its reply; dropping it forgets the call.
struct PendingCall<'a, T: Send + 'static> {
    port: &'a MeshPort<T>,
    call: u64,
}

impl<T: Send + 'static> Future for PendingCall<'_, T> {
    type Output = ReplyValue;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReplyValue> {
        let mut calls = self.port.calls.borrow_mut();
        let Some(slot) = calls.get_mut(&self.call) else {
            // Forgotten by `close`: no answer comes.
            return Poll::Ready(None);
        };
        if let CallSlot::Waiting(waker) = slot {
            *waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        match calls.remove(&self.call) {
            Some(CallSlot::Answered(value)) => Poll::Ready(value),
            _ => unreachable!("the slot was answered a moment ago"),
        }
    }
}

impl<T: Send + 'static> Drop for PendingCall<'_, T> {
    fn drop(&mut self) {
        self.port.calls.borrow_mut().remove(&self.call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{run_shards, sleep, spawn_local, ExecutorPlan};
    use std::rc::Rc;
    use std::time::Duration;

    enum Request {
        Echo(u64, Reply<u64>),
        Ignore(Reply<u64>),
    }

    fn plan(shards: usize) -> ExecutorPlan {
        ExecutorPlan {
            shards,
            cpus: None,
            preempt_timer: Duration::from_millis(2),
            spin_before_park: None,
        }
    }

    /// Starts the shard's mesh task: echoes add one, ignored requests drop their reply.
    fn start_serving(port: &Rc<MeshPort<Request>>) {
        let server = port.clone();
        spawn_local(async move {
            server
                .serve(|request| match request {
                    Request::Echo(value, reply) => reply.send(value + 1),
                    Request::Ignore(reply) => drop(reply),
                })
                .await
        })
        .detach();
    }

    /// Waits until every shard has raised `done`, so that none closes while others call it.
    async fn wait_for_all(done: &AtomicUsize, shards: usize) {
        done.fetch_add(1, Ordering::SeqCst);
        while done.load(Ordering::SeqCst) < shards {
            sleep(Duration::from_millis(1)).await;
        }
    }

    /// Many tasks on every shard call every other shard at once through lanes of four, so
    /// senders keep waiting for room; each call gets its own answer, the tasks end and their
    /// handles drop while replies are still crossing (the pattern that made glommio's
    /// foreign wake-up free a task twice).
    #[test]
    fn concurrent_calls_all_get_their_own_answer() {
        const SHARDS: usize = 2;
        const TASKS: u64 = 32;
        const CALLS: u64 = 500;
        let mesh = Mesh::<Request>::full(SHARDS, 4).expect("doorbells");
        let done = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let counted = answered.clone();
        run_shards(&plan(SHARDS), move || async move {
            let port = Rc::new(mesh.join());
            start_serving(&port);
            let other = (port.id() + 1) % SHARDS;
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let port = port.clone();
                    spawn_local(async move {
                        for call in 0..CALLS {
                            let value = task * CALLS + call;
                            let answer = port.call(other, |reply| Request::Echo(value, reply));
                            assert_eq!(answer.await, Some(value + 1));
                        }
                    })
                    .detach()
                })
                .collect();
            for task in tasks {
                task.await.expect("caller task");
                counted.fetch_add(1, Ordering::SeqCst);
            }
            wait_for_all(&done, SHARDS).await;
            port.close();
            Ok(())
        })
        .expect("shards ran");
        assert_eq!(answered.load(Ordering::SeqCst), SHARDS * TASKS as usize);
    }

    /// A request dropped unanswered ends its call with None, and so does a call to a shard
    /// that has closed; a call given up (its future dropped) leaves no slot behind.
    #[test]
    fn unanswered_and_refused_calls_end_with_none() {
        const SHARDS: usize = 2;
        let mesh = Mesh::<Request>::full(SHARDS, 16).expect("doorbells");
        let closed_first = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        run_shards(&plan(SHARDS), move || async move {
            let port = Rc::new(mesh.join());
            if port.id() == 1 {
                start_serving(&port);
                wait_for_all(&done, SHARDS).await;
                port.close();
                closed_first.store(1, Ordering::SeqCst);
                return Ok(());
            }
            start_serving(&port);
            assert_eq!(port.call(1, Request::Ignore).await, None::<u64>);
            let given_up = port.call(1, |reply| Request::Echo(1, reply));
            drop(given_up);
            assert_eq!(port.call(1, |reply| Request::Echo(1, reply)).await, Some(2));
            assert!(
                port.calls.borrow().is_empty(),
                "no call slot is left behind"
            );
            wait_for_all(&done, SHARDS).await;
            while closed_first.load(Ordering::SeqCst) == 0 {
                sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(port.call(1, |reply| Request::Echo(1, reply)).await, None);
            assert_eq!(port.call(0, |reply| Request::Echo(1, reply)).await, None);
            port.close();
            Ok(())
        })
        .expect("shards ran");
    }
}
