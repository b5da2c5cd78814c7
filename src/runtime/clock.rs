//! The time the broker reads: `now` (monotonic), `now_ms` (wall clock, milliseconds since the
//! Unix epoch) and `sleep`. Real time by default. A simulated clock installed on the
//! executor's thread (`SimClock::install`) replaces all three there, so that the layers below
//! the wire (partitions, their logs, groups, the controller) can run in a deterministic
//! simulation: time moves only when the simulation advances it, and a sleep ends only then,
//! in deadline order.
//!
//! Per-thread: a simulated clock belongs to the executor that installed it. With none
//! installed, each call costs one look at an empty thread-local slot.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

thread_local! {
    static SIMULATED: RefCell<Option<Rc<SimClock>>> = const { RefCell::new(None) };
}

fn simulated() -> Option<Rc<SimClock>> {
    SIMULATED.with(|clock| clock.borrow().clone())
}

/// Monotonic now.
pub fn now() -> Instant {
    match simulated() {
        Some(clock) => clock.origin + clock.elapsed.get(),
        None => Instant::now(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    match simulated() {
        Some(clock) => clock.origin_ms + clock.elapsed.get().as_millis() as i64,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64),
    }
}

/// Waits for `duration`: on the executor's timer, or until a simulated clock has advanced
/// that far.
pub async fn sleep(duration: Duration) {
    match simulated() {
        Some(clock) => {
            let deadline = clock.elapsed.get() + duration;
            let id = clock.next_sleep.get();
            clock.next_sleep.set(id + 1);
            SimSleep {
                clock,
                deadline,
                id,
            }
            .await
        }
        None => glommio::timer::sleep(duration).await,
    }
}

/// A clock that moves only when told to. Per-thread (see the module doc).
pub struct SimClock {
    origin: Instant,
    origin_ms: i64,
    elapsed: Cell<Duration>,
    /// Sleeps waiting: their deadline (elapsed time), id and waker.
    sleepers: RefCell<Vec<(Duration, u64, Waker)>>,
    next_sleep: Cell<u64>,
}

impl SimClock {
    /// Installs a clock on this thread reading `origin_ms` as wall time, until `uninstall`.
    pub fn install(origin_ms: i64) -> Rc<SimClock> {
        let clock = Rc::new(SimClock {
            origin: Instant::now(),
            origin_ms,
            elapsed: Cell::new(Duration::ZERO),
            sleepers: RefCell::default(),
            next_sleep: Cell::new(0),
        });
        SIMULATED.with(|slot| {
            let previous = slot.borrow_mut().replace(clock.clone());
            assert!(previous.is_none(), "one simulated clock per thread");
        });
        clock
    }

    /// Gives this thread real time back.
    pub fn uninstall(&self) {
        SIMULATED.with(|slot| slot.borrow_mut().take());
    }

    /// Moves time forward by `by` and wakes every sleep due by then, earliest first.
    pub fn advance(&self, by: Duration) {
        let now = self.elapsed.get() + by;
        self.elapsed.set(now);
        let mut due: Vec<(Duration, u64, Waker)> = Vec::new();
        self.sleepers.borrow_mut().retain(|sleeper| {
            let is_due = sleeper.0 <= now;
            if is_due {
                due.push(sleeper.clone());
            }
            !is_due
        });
        due.sort_by_key(|(deadline, id, _)| (*deadline, *id));
        for (_, _, waker) in due {
            waker.wake();
        }
    }

    /// How long until the earliest sleep is due, if one waits: how far a simulation that has
    /// nothing else to do may jump.
    pub fn until_next_deadline(&self) -> Option<Duration> {
        let now = self.elapsed.get();
        let sleepers = self.sleepers.borrow();
        let earliest = sleepers.iter().map(|(deadline, _, _)| *deadline).min()?;
        Some(earliest.saturating_sub(now))
    }
}

struct SimSleep {
    clock: Rc<SimClock>,
    deadline: Duration,
    id: u64,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.elapsed.get() >= self.deadline {
            return Poll::Ready(());
        }
        let mut sleepers = self.clock.sleepers.borrow_mut();
        match sleepers.iter_mut().find(|(_, id, _)| *id == self.id) {
            Some((_, _, waker)) => waker.clone_from(cx.waker()),
            None => sleepers.push((self.deadline, self.id, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for SimSleep {
    /// A sleep given up (a timeout that lost its race) leaves no waker behind.
    fn drop(&mut self) {
        let id = self.id;
        self.clock
            .sleepers
            .borrow_mut()
            .retain(|(_, at, _)| *at != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a simulated clock, time moves only when advanced, sleeps end in deadline order
    /// once their time has come, and a sleep dropped early leaves nothing waiting.
    #[test]
    fn simulated_time_moves_only_when_advanced() {
        crate::runtime::run_on_new_executor(|| async {
            let clock = SimClock::install(1_000_000);
            let started = now();
            assert_eq!(now_ms(), 1_000_000);
            let woken = Rc::new(RefCell::new(Vec::new()));
            for (name, after_ms) in [("late", 5_000), ("early", 2_000)] {
                let woken = woken.clone();
                glommio::spawn_local(async move {
                    sleep(Duration::from_millis(after_ms)).await;
                    woken.borrow_mut().push((name, now_ms()));
                })
                .detach();
            }
            // The spawned tasks run up to their sleeps.
            glommio::executor().yield_now().await;
            assert_eq!(clock.until_next_deadline(), Some(Duration::from_secs(2)));
            clock.advance(Duration::from_millis(1_999));
            glommio::executor().yield_now().await;
            assert!(woken.borrow().is_empty(), "nothing is due yet");
            clock.advance(Duration::from_millis(10_000));
            glommio::executor().yield_now().await;
            assert_eq!(
                *woken.borrow(),
                [("early", 1_011_999), ("late", 1_011_999)],
                "woken in deadline order, at the time they see"
            );
            assert_eq!(now() - started, Duration::from_millis(11_999));
            let mut given_up = Box::pin(sleep(Duration::from_secs(60)));
            assert!(futures::poll!(&mut given_up).is_pending());
            assert_eq!(clock.until_next_deadline(), Some(Duration::from_secs(60)));
            drop(given_up);
            assert_eq!(
                clock.until_next_deadline(),
                None,
                "a dropped sleep is forgotten"
            );
            clock.uninstall();
            assert!(now_ms() > 1_700_000_000_000, "real time again");
        });
    }
}
