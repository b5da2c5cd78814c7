//! A helper thread of one shard for CPU-heavy work the shard must not wait behind (a PLAIN
//! login's key derivation: 2-5 ms of HMACs). It is pinned to the shard's core, like the shard,
//! under `SCHED_IDLE`, so the kernel hands the core to the shard's thread the moment that
//! wakes, and the helper fills the time the shard leaves (with a sliver of the core when the
//! shard never rests, so it is not starved). Neither glommio's blocking pool, whose thread
//! runs at the shard's priority, nor nice 19 will do: the kernel lets a running thread finish
//! its slice (up to a few ms) before a woken one of normal policy gets the core, whatever
//! their nice values, and only an idle-policy thread gives way at once.
//!
//! Jobs run one at a time, in the order given. The result comes back without a `Waker`
//! crossing threads: the helper stores it, then rings a doorbell that the shard reads through
//! its own io_uring (see `doorbell`).
//!
//! Per-shard: made and used on the shard's thread.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::doorbell::{Doorbell, DoorbellReader};
use super::mesh::lock;
use super::Semaphore;

/// What a job returned, and the CPU time its thread spent on it (not the time it waited for
/// the core).
pub struct Ran<R> {
    pub value: R,
    pub cpu: Duration,
}

type Job = Box<dyn FnOnce() + Send>;

pub struct Worker {
    shared: Arc<Shared>,
    bell: DoorbellReader,
    /// One job in flight per caller at a time, so one reader of the doorbell.
    turn: Semaphore,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    work_arrived: Condvar,
    doorbell: Doorbell,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Worker {
    /// Starts the helper thread on the calling thread's CPUs (the shard's core).
    pub fn start(name: &str) -> std::io::Result<Worker> {
        let cpus = current_cpus()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work_arrived: Condvar::new(),
            doorbell: Doorbell::new()?,
        });
        let bell = DoorbellReader::new(&shared.doorbell);
        let helper = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                settle(&cpus);
                helper.serve();
            })?;
        Ok(Worker {
            shared,
            bell,
            turn: Semaphore::new(1),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the helper thread and waits for it. A caller dropped while waiting
    /// leaves the job to run, its result unread.
    pub async fn run<F, R>(&self, work: F) -> Ran<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let _turn = self.turn.acquire_permit(1).await;
        let slot: Arc<Mutex<Option<Ran<R>>>> = Arc::default();
        let filled = slot.clone();
        self.shared.push(Box::new(move || {
            let started = thread_cpu_time();
            let value = work();
            let cpu = thread_cpu_time().saturating_sub(started);
            *lock(&filled) = Some(Ran { value, cpu });
        }));
        loop {
            // Lowered before looking: a ring after this is read below.
            self.shared.doorbell.lower();
            if let Some(ran) = lock(&slot).take() {
                return ran;
            }
            self.bell.wait().await;
        }
    }
}

/// A worker started by its first job, so that a shard that never needs one has no thread.
/// Per-shard.
pub struct LazyWorker {
    name: &'static str,
    worker: OnceCell<Rc<Worker>>,
}

impl LazyWorker {
    pub fn new(name: &'static str) -> LazyWorker {
        LazyWorker {
            name,
            worker: OnceCell::new(),
        }
    }

    /// The worker, started now if it was not yet.
    pub fn get(&self) -> std::io::Result<Rc<Worker>> {
        if let Some(worker) = self.worker.get() {
            return Ok(worker.clone());
        }
        let worker = Worker::start(self.name)?;
        Ok(self.worker.get_or_init(|| Rc::new(worker)).clone())
    }
}

impl Drop for Worker {
    /// Stops the helper once the jobs queued are done, and waits for it (at most a job).
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work_arrived.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn push(&self, job: Job) {
        lock(&self.queue).jobs.push_back(job);
        self.work_arrived.notify_one();
    }

    /// The helper thread: runs jobs until the worker is dropped.
    fn serve(&self) {
        loop {
            let job = {
                let mut queue = lock(&self.queue);
                loop {
                    if let Some(job) = queue.jobs.pop_front() {
                        break job;
                    }
                    if queue.closed {
                        return;
                    }
                    queue = self
                        .work_arrived
                        .wait(queue)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            };
            job();
            // Rung after the job stored its result.
            self.doorbell.ring();
        }
    }
}

/// The CPUs the calling thread may run on.
fn current_cpus() -> std::io::Result<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity(2) fills it for the
    // calling thread (0) and its size is passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Pins the calling thread to `cpus` and puts it under `SCHED_IDLE`. Either may fail only if
/// the system forbids it; the helper then runs anyway, as it is, and says so.
fn settle(cpus: &libc::cpu_set_t) {
    let idle = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setaffinity(2) reads a cpu_set_t of the size passed, sched_setscheduler(2)
    // one sched_param; both act on the calling thread (0) only.
    let (pinned, idled) = unsafe {
        let pinned = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), cpus);
        let idled = libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle);
        (pinned, idled)
    };
    if pinned != 0 || idled != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "the shard's helper thread could not be pinned to its core or put under SCHED_IDLE"
        );
    }
}

/// CPU time of the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one timespec; the thread CPU clock always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ThreadExecutor;

    /// Jobs run on a thread of their own under SCHED_IDLE, on the caller's CPUs, and come
    /// back in order with the CPU time they spent.
    #[test]
    fn jobs_run_on_a_low_priority_helper_and_return() {
        let executor = ThreadExecutor::new();
        executor.run(async {
            let worker = Worker::start("test-helper").expect("worker");
            let caller = std::thread::current().id();
            let ran = worker
                .run(move || {
                    // SAFETY: sched_getscheduler(2) of the calling thread.
                    let policy = unsafe { libc::sched_getscheduler(0) };
                    let mut sum = 0u64;
                    for n in 0..2_000_000u64 {
                        sum = std::hint::black_box(sum.wrapping_add(n));
                    }
                    (
                        std::thread::current().id() != caller,
                        policy,
                        current_cpus().unwrap(),
                    )
                })
                .await;
            let (elsewhere, policy, cpus) = ran.value;
            assert!(elsewhere);
            assert_eq!(policy, libc::SCHED_IDLE);
            // SAFETY: CPU_EQUAL compares two valid sets.
            assert!(unsafe { libc::CPU_EQUAL(&cpus, &current_cpus().unwrap()) });
            assert!(ran.cpu > Duration::ZERO);
            for n in 0..100u64 {
                assert_eq!(worker.run(move || n * 2).await.value, n * 2);
            }
        });
    }
}
