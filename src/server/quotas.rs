//! Client quotas on the request path: which quotas a request counts against, what it took
//! from them, and how long its connection must then wait (KIP-13, KIP-124, KIP-219).
//!
//! A request resolves its quotas once, from the principal's user name and the client id
//! (`quota::QuotaStore::resolve`); with no quota set anywhere this is one check of an empty
//! map. After the handler, the request takes from its buckets: Produce the record bytes it
//! carried, Fetch the record bytes it returns, and every request the shard time it took
//! (measured around the handler's polls, so waiting for the disk or a long poll costs
//! nothing). The longest wait any bucket asks for is the response's `throttle_time_ms`, and
//! the connection reads no further request until it has passed (Kafka mutes the channel the
//! same way), which also holds back clients whose version predates the field.
//!
//! Per-shard: the buckets are the shard's (`ShardNet::quotas`).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use crate::quota::{QuotaKey, SensorKey};
use crate::shard::Shard;

/// The quotas one request counts against.
pub struct QuotaCharge {
    produce: Option<(f64, SensorKey)>,
    fetch: Option<(f64, SensorKey)>,
    request_time: Option<(f64, SensorKey)>,
    /// Shard time the handler took so far (see [`Timed`]).
    busy: Rc<BusyClock>,
}

impl QuotaCharge {
    /// The quotas of a request of `api_key` from `user` with `client_id`; `None` when none
    /// applies (always, when no quota is set).
    pub fn resolve(
        shard: &Shard,
        api_key: ApiKey,
        user: &str,
        client_id: &str,
    ) -> Option<QuotaCharge> {
        let quotas = shard.table().quotas();
        if quotas.is_empty() || exempt(api_key) {
            return None;
        }
        let rate = |key: QuotaKey| {
            quotas
                .resolve(key, user, client_id)
                .map(|(value, sensor)| (key.units_per_second(value), sensor))
        };
        let charge = QuotaCharge {
            produce: (api_key == ApiKey::Produce)
                .then(|| rate(QuotaKey::ProducerByteRate))
                .flatten(),
            fetch: (api_key == ApiKey::Fetch)
                .then(|| rate(QuotaKey::ConsumerByteRate))
                .flatten(),
            request_time: rate(QuotaKey::RequestPercentage),
            busy: Rc::default(),
        };
        let any =
            charge.produce.is_some() || charge.fetch.is_some() || charge.request_time.is_some();
        any.then_some(charge)
    }

    /// Whether Produce request bytes are counted (so that they are summed only then).
    pub fn counts_produce(&self) -> bool {
        self.produce.is_some()
    }

    /// Whether shard time is counted (so that the handler is timed only then).
    pub fn counts_time(&self) -> bool {
        self.request_time.is_some()
    }

    pub fn busy(&self) -> Rc<BusyClock> {
        self.busy.clone()
    }

    /// Takes the request's use from its buckets; the milliseconds its connection must wait.
    pub fn settle(&self, shard: &Shard, produced_bytes: usize, fetched_bytes: usize) -> u64 {
        let throttle = &shard.quotas;
        let mut wait_ms = 0;
        if let Some((rate, sensor)) = &self.produce {
            wait_ms = wait_ms.max(throttle.take(sensor, produced_bytes as f64, *rate));
        }
        if let Some((rate, sensor)) = &self.fetch {
            wait_ms = wait_ms.max(throttle.take(sensor, fetched_bytes as f64, *rate));
        }
        if let Some((rate, sensor)) = &self.request_time {
            let busy_us = self.busy.elapsed().as_secs_f64() * 1e6;
            wait_ms = wait_ms.max(throttle.take(sensor, busy_us, *rate));
        }
        if wait_ms > 0 {
            crate::metrics::add(&shard.metrics.quota_throttled_responses, 1);
        }
        wait_ms
    }
}

/// Requests no quota applies to: those a client needs to connect and authenticate.
fn exempt(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    )
}

/// The shard time a request has taken: its past polls, and the one under way (a request
/// settles its quotas from inside its last poll).
#[derive(Default)]
pub struct BusyClock {
    past: Cell<Duration>,
    poll_started: Cell<Option<Instant>>,
}

impl BusyClock {
    pub fn elapsed(&self) -> Duration {
        let current = self
            .poll_started
            .get()
            .map_or(Duration::ZERO, |at| at.elapsed());
        self.past.get() + current
    }
}

/// A future that counts the time spent in its polls on a [`BusyClock`]: the shard time a
/// request takes, not the time it waits.
pub struct Timed<F> {
    inner: Pin<Box<F>>,
    clock: Rc<BusyClock>,
}

impl<F: Future> Timed<F> {
    pub fn new(inner: F, clock: Rc<BusyClock>) -> Timed<F> {
        Timed {
            inner: Box::pin(inner),
            clock,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        self.clock.poll_started.set(Some(started));
        let polled = self.inner.as_mut().poll(cx);
        self.clock.poll_started.set(None);
        self.clock
            .past
            .set(self.clock.past.get() + started.elapsed());
        polled
    }
}
