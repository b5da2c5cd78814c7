//! PLAIN password checks, each a key derivation (thousands of HMACs) on the executor's
//! blocking thread, which is pinned to the shard's core and so competes with the shard's
//! requests for it.
//!
//! One check runs at a time, and all of them together may take at most
//! `PASSWORD_CHECK_SHARE_PERCENT` of the core: each check's time is taken from a token bucket
//! that fills at that share, and a check waits while the bucket is in debt. A client failing
//! PLAIN logins in a loop therefore queues behind its own failures instead of taking the core
//! from other clients' requests. SCRAM logins cost the broker no derivation and never wait
//! here.
//!
//! Per-shard (`ShardNet::password_checks`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::limits;
use crate::metrics::{self, ShardMetrics};
use crate::quota::TokenBucket;
use crate::runtime::{self, Semaphore};
use crate::security::sasl::{PlainCheck, SaslError, SaslProgress};

pub struct PasswordChecks {
    /// One check at a time: the blocking thread runs one anyway, and a queue of checks in
    /// front of it would also hold up the file operations glommio runs there.
    slot: Semaphore,
    /// Microseconds of derivation, filling at the share of one core.
    budget: RefCell<TokenBucket>,
    origin: Instant,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        PasswordChecks {
            slot: Semaphore::new(1),
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
    /// Runs `check` once the budget allows, and charges its time to the budget. The check
    /// and its charge run in a task of their own, so that a caller dropped on the way (its
    /// connection closed) cannot leave a derivation uncharged.
    pub async fn run(
        self: &Rc<Self>,
        check: PlainCheck,
        metrics: &ShardMetrics,
    ) -> Result<SaslProgress, SaslError> {
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
            let started = Instant::now();
            let outcome = runtime::run_blocking(move || check.run()).await;
            let took_us = started.elapsed().as_micros() as u64;
            checks
                .budget
                .borrow_mut()
                .take_remote(took_us as f64, budget_rate(), checks.now_ms());
            (outcome, took_us)
        })
        .detach();
        let Some((outcome, took_us)) = task.await else {
            return Err(SaslError("the password check was cancelled".into()));
        };
        metrics::add(&metrics.password_check_micros, took_us);
        outcome
    }

    fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }
}
