//! Client quotas as Kafka defines them (KIP-13, KIP-55, KIP-124, KIP-546): byte rates for
//! producing and fetching and a share of request time, set per user, per client id, per
//! (user, client id), and as defaults for each, and the token buckets that enforce them.
//!
//! Which quota applies to a request of user U with client id C is Kafka's order of
//! precedence, the first that is set:
//! `(U, C)`, `(U, default client)`, `U`, `(default user, C)`, `(default user, default client)`,
//! `default user`, `C`, `default client`. The quota is shared by every connection that
//! resolves to the same [`SensorKey`]: a quota set for "default user" gives each user a bucket
//! of their own, one set for client id C is shared by every user of C (as Kafka's metric tags).
//!
//! Enforcement is a token bucket per sensor ([`TokenBucket`]): it fills at the quota's rate up
//! to a burst of `QUOTA_BURST_MS` worth, each request takes its bytes (or microseconds of
//! shard time), and a bucket in debt throttles the connection until the debt is paid. Unlike
//! Kafka's sampled windows, the long-run rate is the quota without the bursts that a window
//! expiring lets through.
//!
//! Per-shard: every shard holds a copy of the [`QuotaStore`] in its `ShardTable`, built from
//! the metadata log; the buckets are per shard (`server::throttle`).

pub mod throttle;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits;

/// A quota's kind, by Kafka's config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuotaKey {
    /// Bytes per second of produce requests.
    ProducerByteRate,
    /// Bytes per second of fetch responses.
    ConsumerByteRate,
    /// Percentage of one shard's time its requests may take (100: a whole core).
    RequestPercentage,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 3] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
        }
    }

    pub fn from_name(name: &str) -> Option<QuotaKey> {
        QuotaKey::ALL.into_iter().find(|key| key.name() == name)
    }

    /// Why `value` is not a valid quota of this kind (Kafka: byte rates are positive whole
    /// numbers, request percentages positive).
    pub fn check(self, value: f64) -> Result<(), String> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!("{} must be positive, not {value}", self.name()));
        }
        let whole = matches!(
            self,
            QuotaKey::ProducerByteRate | QuotaKey::ConsumerByteRate
        );
        if whole && value.fract() != 0.0 {
            return Err(format!(
                "{} must be a whole number, not {value}",
                self.name()
            ));
        }
        Ok(())
    }

    /// The bucket's fill rate per second for a quota of `value`: bytes for byte rates,
    /// microseconds of shard time for request percentages.
    pub fn units_per_second(self, value: f64) -> f64 {
        match self {
            QuotaKey::RequestPercentage => value * 10_000.0,
            _ => value,
        }
    }
}

impl fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One part of a quota entity: a name, or the default for every name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// Kafka's wire form: null for the default.
    pub fn from_wire(name: Option<&str>) -> EntityName {
        name.map_or(EntityName::Default, |n| EntityName::Named(n.to_string()))
    }

    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(name) => Some(name),
        }
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityName::Default => f.write_str("<default>"),
            EntityName::Named(name) => f.write_str(name),
        }
    }
}

/// The entity types of client quotas.
pub const ENTITY_USER: &str = "user";
pub const ENTITY_CLIENT_ID: &str = "client-id";

/// Whom a quota is set for: a user, a client id, or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

impl QuotaEntity {
    /// An entity from its (type, name) components; why it is invalid (INVALID_REQUEST).
    pub fn from_components<'a>(
        components: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<QuotaEntity, String> {
        let mut entity = QuotaEntity {
            user: None,
            client_id: None,
        };
        for (entity_type, name) in components {
            let slot = match entity_type {
                ENTITY_USER => &mut entity.user,
                ENTITY_CLIENT_ID => &mut entity.client_id,
                "ip" => return Err("IP quotas (connection_creation_rate) are not supported".into()),
                other => return Err(format!("{other:?} is not a quota entity type")),
            };
            if slot.is_some() {
                return Err(format!("entity type {entity_type:?} is given twice"));
            }
            if name == Some("") {
                return Err(format!("the {entity_type} name is empty"));
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err("the entity has no component".into());
        }
        Ok(entity)
    }

    /// (type, name) components in Kafka's order.
    pub fn components(&self) -> Vec<(&'static str, &EntityName)> {
        let user = self.user.as_ref().map(|name| (ENTITY_USER, name));
        let client = self.client_id.as_ref().map(|name| (ENTITY_CLIENT_ID, name));
        user.into_iter().chain(client).collect()
    }
}

impl fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .components()
            .into_iter()
            .map(|(kind, name)| format!("{kind}={name}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Which requests share one bucket: Kafka's quota metric tags, the user and client id parts
/// of the entity that matched ("" for a part the entity does not have).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SensorKey {
    pub key: QuotaKey,
    pub user: String,
    pub client_id: String,
}

/// How a DescribeClientQuotas filter component matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentMatch {
    Exact(String),
    Default,
    /// Any name, but the entity must have this type.
    Specified,
}

/// Every quota set, by entity.
#[derive(Debug, Default, Clone)]
pub struct QuotaStore {
    quotas: BTreeMap<QuotaEntity, BTreeMap<QuotaKey, f64>>,
}

impl QuotaStore {
    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }

    /// Sets (`Some`) or removes one quota of `entity`.
    pub fn set(&mut self, entity: &QuotaEntity, key: QuotaKey, value: Option<f64>) {
        match value {
            Some(value) => {
                self.quotas
                    .entry(entity.clone())
                    .or_default()
                    .insert(key, value);
            }
            None => {
                if let Some(values) = self.quotas.get_mut(entity) {
                    values.remove(&key);
                    if values.is_empty() {
                        self.quotas.remove(entity);
                    }
                }
            }
        }
    }

    pub fn get(&self, entity: &QuotaEntity) -> Option<&BTreeMap<QuotaKey, f64>> {
        self.quotas.get(entity)
    }

    /// The quota of `key` for requests of `user` with `client_id`, and the bucket it is
    /// counted in, by Kafka's order of precedence.
    pub fn resolve(&self, key: QuotaKey, user: &str, client_id: &str) -> Option<(f64, SensorKey)> {
        use EntityName::{Default, Named};
        let named = |name: &str| Some(Named(name.to_string()));
        let levels = [
            (named(user), named(client_id)),
            (named(user), Some(Default)),
            (named(user), None),
            (Some(Default), named(client_id)),
            (Some(Default), Some(Default)),
            (Some(Default), None),
            (None, named(client_id)),
            (None, Some(Default)),
        ];
        levels.into_iter().find_map(|(user_part, client_part)| {
            let tags = SensorKey {
                key,
                user: user_part.as_ref().map_or("", |_| user).to_string(),
                client_id: client_part.as_ref().map_or("", |_| client_id).to_string(),
            };
            let entity = QuotaEntity {
                user: user_part,
                client_id: client_part,
            };
            let value = *self.quotas.get(&entity)?.get(&key)?;
            Some((value, tags))
        })
    }

    /// The entities a DescribeClientQuotas filter matches, with their quotas: each component
    /// must match the entity's part of that type; `strict` also refuses entities with parts
    /// the filter does not name.
    pub fn matching<'a>(
        &'a self,
        components: &'a [(String, ComponentMatch)],
        strict: bool,
    ) -> impl Iterator<Item = (&'a QuotaEntity, &'a BTreeMap<QuotaKey, f64>)> + 'a {
        self.quotas.iter().filter(move |(entity, _)| {
            let part = |entity_type: &str| match entity_type {
                ENTITY_USER => entity.user.as_ref(),
                ENTITY_CLIENT_ID => entity.client_id.as_ref(),
                _ => None,
            };
            let all_match =
                components
                    .iter()
                    .all(|(entity_type, wanted)| match (part(entity_type), wanted) {
                        (None, _) => false,
                        (Some(_), ComponentMatch::Specified) => true,
                        (Some(name), ComponentMatch::Default) => *name == EntityName::Default,
                        (Some(EntityName::Named(name)), ComponentMatch::Exact(wanted)) => {
                            name == wanted
                        }
                        (Some(EntityName::Default), ComponentMatch::Exact(_)) => false,
                    });
            all_match && (!strict || entity.components().len() == components.len())
        })
    }
}

/// A token bucket: fills at its quota's rate (units per second) up to `QUOTA_BURST_MS` worth,
/// and may go into debt; a bucket in debt asks its connection to wait until the debt would be
/// paid. The rate is the one last given, so that a changed quota applies from then on.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    /// Milliseconds (any monotonic origin) at which `tokens` was last brought up to date.
    updated_ms: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, now_ms: f64) -> TokenBucket {
        TokenBucket {
            tokens: burst(rate),
            rate,
            updated_ms: now_ms,
        }
    }

    /// Takes `units` at `now_ms` for a quota of `rate` units per second; the milliseconds the
    /// connection must wait (0 if the bucket is not in debt), at most `QUOTA_THROTTLE_MS_MAX`.
    pub fn take(&mut self, units: f64, rate: f64, now_ms: f64) -> u64 {
        self.take_remote(units, rate, now_ms);
        if self.tokens >= 0.0 || rate <= 0.0 {
            return 0;
        }
        let wait_ms = (-self.tokens / rate * 1000.0).ceil();
        (wait_ms as u64).min(limits::QUOTA_THROTTLE_MS_MAX)
    }

    /// The milliseconds until the bucket is out of debt at `now_ms` (0 if it is not in debt),
    /// at most `QUOTA_THROTTLE_MS_MAX`.
    pub fn wait_ms(&mut self, now_ms: f64) -> u64 {
        self.take(0.0, self.rate, now_ms)
    }

    /// Takes what other shards used (their connections count against the same quota).
    pub fn take_remote(&mut self, units: f64, rate: f64, now_ms: f64) {
        self.refill(now_ms);
        self.rate = rate;
        self.tokens = self.tokens.min(burst(rate)) - units;
    }

    /// Whether the bucket has filled up again: it may be forgotten.
    pub fn is_full(&self, now_ms: f64) -> bool {
        let elapsed_s = (now_ms - self.updated_ms).max(0.0) / 1000.0;
        self.tokens + self.rate * elapsed_s >= burst(self.rate)
    }

    fn refill(&mut self, now_ms: f64) {
        let elapsed_s = (now_ms - self.updated_ms).max(0.0) / 1000.0;
        self.tokens = (self.tokens + self.rate * elapsed_s).min(burst(self.rate));
        self.updated_ms = self.updated_ms.max(now_ms);
    }
}

fn burst(rate: f64) -> f64 {
    rate * limits::QUOTA_BURST_MS as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<&str>, client: Option<&str>) -> QuotaEntity {
        let part = |name: Option<&str>| {
            name.map(|n| match n {
                "<default>" => EntityName::Default,
                n => EntityName::Named(n.into()),
            })
        };
        QuotaEntity {
            user: part(user),
            client_id: part(client),
        }
    }

    /// Kafka's precedence: the most specific entity wins, user quotas before client-id ones,
    /// and the sensor is shared as Kafka's metric tags say.
    #[test]
    fn precedence_and_sensors() {
        let mut store = QuotaStore::default();
        let key = QuotaKey::ProducerByteRate;
        assert!(store.resolve(key, "alice", "app").is_none());
        store.set(&entity(None, Some("<default>")), key, Some(1.0));
        let (value, sensor) = store.resolve(key, "alice", "app").unwrap();
        assert_eq!(
            (value, sensor.user.as_str(), sensor.client_id.as_str()),
            (1.0, "", "app")
        );
        store.set(&entity(None, Some("app")), key, Some(2.0));
        assert_eq!(store.resolve(key, "alice", "app").unwrap().0, 2.0);
        store.set(&entity(Some("<default>"), None), key, Some(3.0));
        let (value, sensor) = store.resolve(key, "bob", "app").unwrap();
        assert_eq!(
            (value, sensor.user.as_str(), sensor.client_id.as_str()),
            (3.0, "bob", "")
        );
        store.set(&entity(Some("alice"), None), key, Some(4.0));
        store.set(&entity(Some("alice"), Some("app")), key, Some(5.0));
        assert_eq!(store.resolve(key, "alice", "app").unwrap().0, 5.0);
        assert_eq!(store.resolve(key, "alice", "other").unwrap().0, 4.0);
        assert!(store
            .resolve(QuotaKey::ConsumerByteRate, "alice", "app")
            .is_none());
        store.set(&entity(Some("alice"), Some("app")), key, None);
        assert_eq!(store.resolve(key, "alice", "app").unwrap().0, 4.0);
    }

    /// DescribeClientQuotas filters: exact, default, specified, and strict.
    #[test]
    fn describe_filters() {
        let mut store = QuotaStore::default();
        let key = QuotaKey::ConsumerByteRate;
        store.set(&entity(Some("alice"), None), key, Some(1.0));
        store.set(&entity(Some("alice"), Some("app")), key, Some(2.0));
        store.set(&entity(Some("<default>"), None), key, Some(3.0));
        let user = |m| vec![(ENTITY_USER.to_string(), m)];
        let alice = user(ComponentMatch::Exact("alice".into()));
        assert_eq!(store.matching(&alice, false).count(), 2);
        assert_eq!(store.matching(&alice, true).count(), 1);
        assert_eq!(
            store
                .matching(&user(ComponentMatch::Default), false)
                .count(),
            1
        );
        assert_eq!(
            store
                .matching(&user(ComponentMatch::Specified), false)
                .count(),
            3
        );
        assert_eq!(store.matching(&[], false).count(), 3);
    }

    /// A bucket lets a burst through, then throttles so that the long-run rate is the quota.
    #[test]
    fn token_bucket_rate() {
        let rate = 1000.0;
        let mut bucket = TokenBucket::new(rate, 0.0);
        assert_eq!(
            bucket.take(1000.0, rate, 0.0),
            0,
            "one second's burst is free"
        );
        assert_eq!(bucket.take(500.0, rate, 0.0), 500);
        // A client that waits as told is held to the rate.
        let mut now = 500.0;
        let mut sent = 1500.0;
        while now < 10_000.0 {
            now += bucket.take(100.0, rate, now) as f64;
            sent += 100.0;
        }
        let long_run = sent / (now / 1000.0);
        assert!((long_run - rate).abs() / rate < 0.15, "{long_run}");
        bucket.take_remote(10_000.0, rate, now);
        assert_eq!(bucket.take(0.0, rate, now), limits::QUOTA_THROTTLE_MS_MAX);
        assert!(!bucket.is_full(now));
        assert!(bucket.is_full(now + 30_000.0));
    }

    /// Values are checked as Kafka checks them.
    #[test]
    fn value_checks() {
        assert!(QuotaKey::ProducerByteRate.check(1024.0).is_ok());
        assert!(QuotaKey::ProducerByteRate.check(10.5).is_err());
        assert!(QuotaKey::RequestPercentage.check(12.5).is_ok());
        assert!(QuotaKey::RequestPercentage.check(0.0).is_err());
        let components = [("user", Some("a")), ("user", Some("b"))];
        assert!(QuotaEntity::from_components(components.into_iter()).is_err());
        let components = [("ip", Some("1.2.3.4"))];
        assert!(QuotaEntity::from_components(components.into_iter()).is_err());
    }
}
