//! Connection admission: the broker-wide cap on open client connections and the cap per client
//! IP address (Kafka's `max.connections` and `max.connections.per.ip`).
//!
//! Process-wide: shared by every shard's acceptor, because the kernel spreads one client's
//! connections over all shards. It is touched twice per connection (admit, release), never per
//! request, so a mutex around the per-IP map costs nothing that matters. A refused connection
//! is closed at once without a byte written, which is what Kafka does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The broker already holds `max.connections` connections.
    BrokerFull,
    /// This client IP already holds `max.connections.per.ip` connections.
    IpFull,
}

/// The counters. See the module documentation.
pub struct Admission {
    connections_max: usize,
    connections_per_ip_max: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(connections_max: usize, connections_per_ip_max: usize) -> Admission {
        Admission {
            connections_max,
            connections_per_ip_max,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Counts a new connection from `ip`, or says why it must be refused. Every `Ok` must be
    /// matched by one [`Admission::release`].
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
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
        Ok(())
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
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.admit(A), Err(Refusal::IpFull));
        assert_eq!(admission.admit(B), Ok(()));
        admission.release(A);
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.open(), 3);
    }

    /// The broker-wide cap counts every IP, and a refusal leaves no count behind.
    #[test]
    fn broker_cap_counts_all_ips() {
        let admission = Admission::new(2, 5);
        assert_eq!(admission.admit(A), Ok(()));
        assert_eq!(admission.admit(B), Ok(()));
        assert_eq!(admission.admit(B), Err(Refusal::BrokerFull));
        admission.release(A);
        admission.release(B);
        assert_eq!(admission.open(), 0);
        assert!(admission.lock().per_ip.is_empty());
    }
}
