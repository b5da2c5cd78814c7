//! Connection admission: the broker-wide cap on open client connections and the cap per client
//! IP address (Kafka's `max.connections` and `max.connections.per.ip`), and the budget of
//! failed authentications per client IP.
//!
//! Process-wide: shared by every shard's acceptor, because the kernel spreads one client's
//! connections over all shards. It is touched twice per connection (admit, release) and once
//! per failed authentication, never per request, so a mutex around the per-IP maps costs
//! nothing that matters. A refused connection is closed at once without a byte written, which
//! is what Kafka does.
//!
//! An IP that fails authentication faster than `AUTHENTICATION_FAILURES_PER_IP_PER_SECOND` (a
//! token bucket with a second's burst) has its new connections on authenticating listeners
//! throttled until its debt of failures is paid: they are admitted, held unread for that long
//! (at most `QUOTA_THROTTLE_MS_MAX`) and closed, as Kafka closes connections over an IP's
//! connection-rate quota. A client failing logins in a loop then costs the broker an accept
//! and a timer per attempt instead of a TLS handshake and a SASL exchange, and its loop slows
//! to the pace of the holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limits;
use crate::quota::TokenBucket;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The broker already holds `max.connections` connections.
    BrokerFull,
    /// This client IP already holds `max.connections.per.ip` connections.
    IpFull,
}

/// What becomes of an admitted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Serve,
    /// Its IP fails authentication too often: hold it unread this long, then close it.
    Throttle(Duration),
}

/// The counters. See the module documentation.
pub struct Admission {
    connections_max: usize,
    connections_per_ip_max: usize,
    counts: Mutex<Counts>,
    origin: Instant,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Failed authentications per IP; an IP whose bucket has filled up again is forgotten at
    /// the next prune.
    failures: HashMap<IpAddr, TokenBucket>,
    /// The size of `failures` at which it is next pruned.
    prune_at: usize,
    /// When it was last pruned (milliseconds from `Admission::origin`).
    pruned_ms: f64,
}

impl Counts {
    /// Forgets the IPs whose failure buckets filled up again, once the map has grown to
    /// `prune_at` (twice what the last prune left, within the bounds in `limits`), and at
    /// most once a second while it is full, so that a flood from more addresses than it
    /// holds cannot make every failure walk the whole map.
    fn prune(&mut self, now_ms: f64) {
        let due =
            self.failures.len() >= self.prune_at.max(limits::AUTHENTICATION_FAILURE_IPS_PRUNE);
        let full = self.failures.len() >= limits::AUTHENTICATION_FAILURE_IPS_MAX;
        if !due || (full && now_ms - self.pruned_ms < 1000.0) {
            return;
        }
        self.failures.retain(|_, bucket| !bucket.is_full(now_ms));
        self.prune_at = (self.failures.len() * 2).clamp(
            limits::AUTHENTICATION_FAILURE_IPS_PRUNE,
            limits::AUTHENTICATION_FAILURE_IPS_MAX,
        );
        self.pruned_ms = now_ms;
    }
}

/// Failed authentications per second per IP.
fn failure_rate() -> f64 {
    limits::AUTHENTICATION_FAILURES_PER_IP_PER_SECOND as f64
}

impl Admission {
    pub fn new(connections_max: usize, connections_per_ip_max: usize) -> Admission {
        Admission {
            connections_max,
            connections_per_ip_max,
            counts: Mutex::new(Counts::default()),
            origin: Instant::now(),
        }
    }

    /// Counts a new connection from `ip` on a listener that authenticates its clients or
    /// not, or says why it must be refused. Every `Ok` must be matched by one
    /// [`Admission::release`], also for a throttled connection, which stays counted while it
    /// is held.
    pub fn admit(&self, ip: IpAddr, authenticates: bool) -> Result<Admitted, Refusal> {
        self.admit_at(ip, authenticates, self.now_ms())
    }

    fn admit_at(&self, ip: IpAddr, authenticates: bool, now_ms: f64) -> Result<Admitted, Refusal> {
        let mut counts = self.lock();
        if counts.total >= self.connections_max {
            return Err(Refusal::BrokerFull);
        }
        let from_ip = counts.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.connections_per_ip_max {
            return Err(Refusal::IpFull);
        }
        *from_ip += 1;
        counts.total += 1;
        let wait_ms = match (authenticates, counts.failures.get_mut(&ip)) {
            (true, Some(bucket)) => bucket.wait_ms(now_ms),
            _ => 0,
        };
        Ok(match wait_ms {
            0 => Admitted::Serve,
            wait_ms => Admitted::Throttle(Duration::from_millis(wait_ms)),
        })
    }

    /// Charges a failed authentication (a TLS handshake, a SASL exchange, or neither done in
    /// time) to `ip`'s budget. True if this failure puts the IP over its budget, so that its
    /// next connections are throttled.
    pub fn authentication_failed(&self, ip: IpAddr) -> bool {
        self.failed_at(ip, self.now_ms())
    }

    fn failed_at(&self, ip: IpAddr, now_ms: f64) -> bool {
        let mut counts = self.lock();
        let counts = &mut *counts;
        if !counts.failures.contains_key(&ip) {
            counts.prune(now_ms);
        }
        let tracked = counts.failures.len();
        let bucket = match counts.failures.get_mut(&ip) {
            Some(bucket) => bucket,
            // Beyond this many IPs failing at once, a new one is not tracked: the map stays
            // bounded, and the password-check share still bounds what PLAIN costs.
            None if tracked >= limits::AUTHENTICATION_FAILURE_IPS_MAX => return false,
            None => counts
                .failures
                .entry(ip)
                .or_insert_with(|| TokenBucket::new(failure_rate(), now_ms)),
        };
        let was_over = bucket.wait_ms(now_ms) > 0;
        bucket.take_remote(1.0, failure_rate(), now_ms);
        !was_over && bucket.wait_ms(now_ms) > 0
    }

    /// Uncounts a connection that [`Admission::admit`] let in.
    pub fn release(&self, ip: IpAddr) {
        let mut counts = self.lock();
        counts.total = counts.total.checked_sub(1).expect("release follows admit");
        let from_ip = counts.per_ip.get_mut(&ip).expect("release follows admit");
        *from_ip -= 1;
        if *from_ip == 0 {
            counts.per_ip.remove(&ip);
        }
    }

    /// Open connections, broker-wide.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counters stay consistent even if a holder panicked: every update is one step.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// The per-IP cap refuses only the IP that reached it; a release makes room again.
    #[test]
    fn per_ip_cap_refuses_only_that_ip() {
        let admission = Admission::new(10, 2);
        assert_eq!(admission.admit(A, true), Ok(Admitted::Serve));
        assert_eq!(admission.admit(A, true), Ok(Admitted::Serve));
        assert_eq!(admission.admit(A, true), Err(Refusal::IpFull));
        assert_eq!(admission.admit(B, true), Ok(Admitted::Serve));
        admission.release(A);
        assert_eq!(admission.admit(A, true), Ok(Admitted::Serve));
        assert_eq!(admission.open(), 3);
    }

    /// The broker-wide cap counts every IP, and a refusal leaves no count behind.
    #[test]
    fn broker_cap_counts_all_ips() {
        let admission = Admission::new(2, 5);
        assert_eq!(admission.admit(A, true), Ok(Admitted::Serve));
        assert_eq!(admission.admit(B, true), Ok(Admitted::Serve));
        assert_eq!(admission.admit(B, true), Err(Refusal::BrokerFull));
        admission.release(A);
        admission.release(B);
        assert_eq!(admission.open(), 0);
        assert!(admission.lock().per_ip.is_empty());
    }

    /// An IP failing authentication past its burst has its connections on authenticating
    /// listeners throttled (held for its debt), not those on other listeners, and not other
    /// IPs; the hold never exceeds the quota cap, and ends once the debt is paid.
    #[test]
    fn failing_ip_is_throttled_only_where_it_authenticates() {
        let admission = Admission::new(1000, 1000);
        let burst = limits::AUTHENTICATION_FAILURES_PER_IP_PER_SECOND;
        let over: Vec<bool> = (0..burst * 3)
            .map(|_| admission.failed_at(A, 0.0))
            .collect();
        // The failure that went over the budget says so, once.
        assert_eq!(over.iter().filter(|&&o| o).count(), 1, "{over:?}");
        assert!(over[burst as usize], "{over:?}");
        // A debt of twice the burst: two seconds' worth.
        assert_eq!(
            admission.admit_at(A, true, 0.0),
            Ok(Admitted::Throttle(Duration::from_millis(2000)))
        );
        assert_eq!(admission.admit_at(A, false, 0.0), Ok(Admitted::Serve));
        assert_eq!(admission.admit_at(B, true, 0.0), Ok(Admitted::Serve));
        assert_eq!(admission.admit_at(A, true, 2000.0), Ok(Admitted::Serve));
        // Throttled connections are counted like any other until released.
        assert_eq!(admission.open(), 4);
        for _ in 0..10_000 {
            admission.failed_at(B, 0.0);
        }
        assert_eq!(
            admission.admit_at(B, true, 0.0),
            Ok(Admitted::Throttle(Duration::from_millis(
                limits::QUOTA_THROTTLE_MS_MAX
            )))
        );
    }

    /// Failures within the burst (a mistyped password) throttle nothing.
    #[test]
    fn failures_within_the_burst_throttle_nothing() {
        let admission = Admission::new(1000, 1000);
        for _ in 0..limits::AUTHENTICATION_FAILURES_PER_IP_PER_SECOND {
            assert!(!admission.failed_at(A, 0.0));
        }
        assert_eq!(admission.admit_at(A, true, 0.0), Ok(Admitted::Serve));
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + n))
    }

    /// IPs whose buckets filled up again are forgotten once enough are tracked.
    #[test]
    fn failing_ips_at_rest_are_pruned() {
        let admission = Admission::new(1000, 1000);
        for n in 0..limits::AUTHENTICATION_FAILURE_IPS_PRUNE as u32 {
            admission.failed_at(ip(n), 0.0);
        }
        assert!(!admission.failed_at(A, 60_000.0));
        assert_eq!(admission.lock().failures.len(), 1);
    }

    /// No more IPs than the cap are tracked at once; one beyond is not throttled.
    #[test]
    fn failing_ips_are_capped() {
        let admission = Admission::new(1000, 1000);
        let cap = limits::AUTHENTICATION_FAILURE_IPS_MAX as u32;
        for n in 0..cap + 1 {
            admission.failed_at(ip(n), 0.0);
        }
        assert_eq!(admission.lock().failures.len(), cap as usize);
        for _ in 0..100 {
            admission.failed_at(A, 0.0);
        }
        assert_eq!(admission.admit_at(A, true, 0.0), Ok(Admitted::Serve));
        // Once those IPs are at rest, the full map is pruned and A is tracked.
        assert!(!admission.failed_at(A, 60_000.0));
        assert_eq!(admission.lock().failures.len(), 1);
    }
}
