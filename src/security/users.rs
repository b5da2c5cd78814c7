//! The SCRAM credentials of every user, as the metadata log records them.
//!
//! Per-shard: every shard holds a copy inside its `ShardTable`, built by applying the same
//! metadata records in the same order, so a connection authenticates on the shard that
//! accepted it without asking another.

use std::collections::BTreeMap;

use super::scram::{ScramCredential, ScramMechanism};

/// User name -> mechanism -> credential.
#[derive(Debug, Default, Clone)]
pub struct UserStore {
    users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

impl UserStore {
    pub fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.users.get(user)?.get(&mechanism).cloned()
    }

    /// Every credential of `user`, any mechanism (SASL/PLAIN accepts a password that matches
    /// any of them).
    pub fn credentials(&self, user: &str) -> Vec<(ScramMechanism, ScramCredential)> {
        self.users.get(user).map_or_else(Vec::new, |by_mechanism| {
            by_mechanism
                .iter()
                .map(|(mechanism, credential)| (*mechanism, credential.clone()))
                .collect()
        })
    }

    /// Users with at least one credential, each with its mechanisms and iteration counts.
    pub fn list(&self) -> impl Iterator<Item = (&str, Vec<(ScramMechanism, u32)>)> {
        self.users.iter().map(|(name, by_mechanism)| {
            let mechanisms = by_mechanism
                .iter()
                .map(|(mechanism, credential)| (*mechanism, credential.iterations))
                .collect();
            (name.as_str(), mechanisms)
        })
    }

    pub fn set(&mut self, user: &str, mechanism: ScramMechanism, credential: ScramCredential) {
        self.users
            .entry(user.to_string())
            .or_default()
            .insert(mechanism, credential);
    }

    /// Removes one credential; whether there was one.
    pub fn remove(&mut self, user: &str, mechanism: ScramMechanism) -> bool {
        let Some(by_mechanism) = self.users.get_mut(user) else {
            return false;
        };
        let removed = by_mechanism.remove(&mechanism).is_some();
        if by_mechanism.is_empty() {
            self.users.remove(user);
        }
        removed
    }
}
