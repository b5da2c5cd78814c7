//! One shard's quota buckets, and what its connections took from them that the other shards
//! have not heard of yet.
//!
//! A quota is per broker, as in Kafka, while a client's connections may land on any shard:
//! every shard keeps a bucket per sensor, takes what its own connections use at once, and
//! every `QUOTA_GOSSIP_INTERVAL_MS` tells the other shards what it took (`Shard`'s quota
//! gossip), which they take from their buckets too. Each bucket thus sees the use of every
//! shard, its own at once and the others' within one interval, and a sensor's connections are
//! held to the quota together wherever they are.
//!
//! Per-shard: lives in the shard's `ShardNet`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

use super::{SensorKey, TokenBucket};
use crate::limits;

/// What one shard's connections took from one sensor: the sensor, the units, and the rate
/// (units per second) of its quota, so that a shard without the bucket yet can make it.
pub type Usage = (SensorKey, f64, f64);

pub struct Throttle {
    buckets: RefCell<HashMap<SensorKey, TokenBucket>>,
    /// Units taken here since the last gossip, with the quota's rate.
    unreported: RefCell<HashMap<SensorKey, (f64, f64)>>,
    origin: Instant,
    /// Gossip rounds since the last pruning of full buckets.
    rounds: Cell<u32>,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            buckets: RefCell::default(),
            unreported: RefCell::default(),
            origin: Instant::now(),
            rounds: Cell::new(0),
        }
    }
}

impl Throttle {
    /// Takes `units` from `sensor`'s bucket for a quota of `rate` units per second; the
    /// milliseconds the connection must now wait.
    pub fn take(&self, sensor: &SensorKey, units: f64, rate: f64) -> u64 {
        let now = self.now_ms();
        let mut buckets = self.buckets.borrow_mut();
        if !buckets.contains_key(sensor) && !self.room_for_one(&mut buckets, now) {
            tracing::warn!(?sensor, "too many quota buckets on this shard; throttling");
            return limits::QUOTA_THROTTLE_MS_MAX;
        }
        let bucket = buckets
            .entry(sensor.clone())
            .or_insert_with(|| TokenBucket::new(rate, now));
        let wait_ms = bucket.take(units, rate, now);
        let mut unreported = self.unreported.borrow_mut();
        let entry = unreported.entry(sensor.clone()).or_insert((0.0, rate));
        *entry = (entry.0 + units, rate);
        wait_ms
    }

    /// What other shards' connections took.
    pub fn take_remote(&self, usage: &[Usage]) {
        let now = self.now_ms();
        let mut buckets = self.buckets.borrow_mut();
        for (sensor, units, rate) in usage {
            if !buckets.contains_key(sensor) && !self.room_for_one(&mut buckets, now) {
                continue;
            }
            buckets
                .entry(sensor.clone())
                .or_insert_with(|| TokenBucket::new(*rate, now))
                .take_remote(*units, *rate, now);
        }
    }

    /// What this shard's connections took since the last call, for the other shards; and,
    /// now and then, the buckets nobody drew from for a while are forgotten.
    pub fn take_unreported(&self) -> Vec<Usage> {
        let rounds = self.rounds.get() + 1;
        self.rounds.set(rounds);
        if u64::from(rounds) * limits::QUOTA_GOSSIP_INTERVAL_MS >= 10 * limits::QUOTA_BURST_MS {
            self.rounds.set(0);
            let now = self.now_ms();
            self.buckets
                .borrow_mut()
                .retain(|_, bucket| !bucket.is_full(now));
        }
        self.unreported
            .borrow_mut()
            .drain()
            .map(|(sensor, (units, rate))| (sensor, units, rate))
            .collect()
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.borrow().len()
    }

    /// Makes room for a new bucket by forgetting full ones; whether there is room.
    fn room_for_one(&self, buckets: &mut HashMap<SensorKey, TokenBucket>, now: f64) -> bool {
        if buckets.len() < limits::QUOTA_BUCKETS_PER_SHARD_MAX {
            return true;
        }
        buckets.retain(|_, bucket| !bucket.is_full(now));
        buckets.len() < limits::QUOTA_BUCKETS_PER_SHARD_MAX
    }

    fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::QuotaKey;

    fn sensor() -> SensorKey {
        SensorKey {
            key: QuotaKey::ProducerByteRate,
            user: "alice".into(),
            client_id: String::new(),
        }
    }

    /// What one shard takes reaches the other's bucket through the gossip: a client over its
    /// quota on one shard is throttled on the other too, and what was gossiped is not sent
    /// again.
    #[test]
    fn shards_share_a_quota_through_gossip() {
        let (first, second) = (Throttle::default(), Throttle::default());
        let rate = 1000.0;
        assert_eq!(first.take(&sensor(), 900.0, rate), 0);
        assert_eq!(
            second.take(&sensor(), 900.0, rate),
            0,
            "each shard alone is under"
        );
        second.take_remote(&first.take_unreported());
        first.take_remote(&second.take_unreported());
        assert!(first.take(&sensor(), 1.0, rate) > 0);
        assert!(second.take(&sensor(), 1.0, rate) > 0);
        let again = first.take_unreported();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1, 1.0, "only what was taken since the last gossip");
        assert!(first.take_unreported().is_empty());
    }
}
