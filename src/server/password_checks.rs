//! PLAIN password checks, each a key derivation (thousands of HMACs, 2-5 ms) on the shard's
//! helper thread (`runtime::Worker`): pinned to the shard's core under `SCHED_IDLE`, so the
//! shard's requests come first and derivations take the time they leave.
//!
//! One check runs at a time, and all of them together may take at most
//! `PASSWORD_CHECK_SHARE_PERCENT` of the core: each check's CPU time is taken from a token
//! bucket that fills at that share, and a check waits while the bucket is in debt. A client
//! failing PLAIN logins in a loop therefore queues behind its own failures instead of taking
//! the core from other clients' requests, even from many addresses (one address failing often
//! is throttled before, by `admission`). SCRAM logins cost the broker no derivation and never
//! wait here.
//!
//! Per-shard (`ShardNet::password_checks`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::limits;
use crate::metrics::{self, ShardMetrics};
use crate::quota::TokenBucket;
use crate::runtime::{self, LazyWorker, Semaphore, Worker};
use crate::security::sasl::{PlainCheck, SaslError, SaslProgress};

pub struct PasswordChecks {
    /// One check at a time, so that the budget is looked at before each.
    slot: Semaphore,
    /// Started at the first check: a broker without PLAIN logins has no helper thread.
    worker: LazyWorker,
    /// Microseconds of derivation, filling at the share of one core.
    budget: RefCell<TokenBucket>,
    origin: Instant,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        PasswordChecks {
            slot: Semaphore::new(1),
            worker: LazyWorker::new("corelog-password"),
            budget: RefCell::new(TokenBucket::new(budget_rate(), 0.0)),
            origin: Instant::now(),
        }
    }
}

/// Microseconds of derivation per second.
fn budget_rate() -> f64 {
    limits::PASSWORD_CHECK_SHARE_PERCENT as f64 * 10_000.0
}

impl PasswordChecks {
    /// Runs `check` once the budget allows, and charges its CPU time to the budget. The check
    /// and its charge run in a task of their own, so that a caller dropped on the way (its
    /// connection closed) cannot leave a derivation uncharged.
    pub async fn run(
        self: &Rc<Self>,
        check: PlainCheck,
        metrics: &ShardMetrics,
    ) -> Result<SaslProgress, SaslError> {
        let worker = self.worker()?;
        let checks = self.clone();
        let task = runtime::spawn_local(async move {
            let _slot = checks.slot.acquire_permit(1).await;
            loop {
                let wait_ms = checks.budget.borrow_mut().wait_ms(checks.now_ms());
                if wait_ms == 0 {
                    break;
                }
                runtime::sleep(Duration::from_millis(wait_ms)).await;
            }
            let ran = worker.run(move || check.run()).await;
            let took_us = ran.cpu.as_micros() as u64;
            checks
                .budget
                .borrow_mut()
                .take_remote(took_us as f64, budget_rate(), checks.now_ms());
            (ran.value, took_us)
        })
        .detach();
        let Some((outcome, took_us)) = task.await else {
            return Err(SaslError("the password check was cancelled".into()));
        };
        metrics::add(&metrics.password_check_micros, took_us);
        outcome
    }

    fn worker(&self) -> Result<Rc<Worker>, SaslError> {
        self.worker.get().map_err(|error| {
            tracing::error!(%error, "cannot start the password-check thread");
            SaslError("the password check is unavailable".into())
        })
    }

    fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }
}
