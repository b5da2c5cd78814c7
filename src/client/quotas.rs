//! Client quotas over the Kafka protocol: DescribeClientQuotas and AlterClientQuotas, in the
//! shapes of `crate::quota`.

use std::collections::BTreeMap;

use anyhow::anyhow;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;

use super::admin::{kafka_error, Admin};
use crate::quota::{ComponentMatch, EntityName, QuotaEntity, QuotaKey};

/// Flexible, and served by Kafka 2.6 to 4.x.
const QUOTA_API_VERSION: i16 = 1;

/// One entity's quotas, by key name (keys this client does not know are kept).
pub type QuotaListing = (QuotaEntity, BTreeMap<String, f64>);

impl Admin {
    /// The quotas of entities the filter matches (see `quota::QuotaStore::matching`).
    pub fn describe_quotas(
        &mut self,
        components: &[(String, ComponentMatch)],
        strict: bool,
    ) -> anyhow::Result<Vec<QuotaListing>> {
        let components = components
            .iter()
            .map(|(entity_type, matching)| {
                let (match_type, name) = match matching {
                    ComponentMatch::Exact(name) => (0, Some(text(name))),
                    ComponentMatch::Default => (1, None),
                    ComponentMatch::Specified => (2, None),
                };
                ComponentData::default()
                    .with_entity_type(text(entity_type))
                    .with_match_type(match_type)
                    .with_match(name)
            })
            .collect();
        let request = DescribeClientQuotasRequest::default()
            .with_components(components)
            .with_strict(strict);
        let response = self.request(&request, QUOTA_API_VERSION)?;
        if response.error_code != 0 {
            let message = response.error_message.as_deref();
            return Err(kafka_error("describe quotas", response.error_code, message));
        }
        let mut listings = Vec::new();
        for entry in response.entries.unwrap_or_default() {
            let parts = entry
                .entity
                .iter()
                .map(|part| (part.entity_type.as_str(), part.entity_name.as_deref()));
            let entity = QuotaEntity::from_components(parts).map_err(|e| {
                anyhow!("the broker answered an entity this client cannot read: {e}")
            })?;
            let values = entry
                .values
                .iter()
                .map(|value| (value.key.to_string(), value.value))
                .collect();
            listings.push((entity, values));
        }
        Ok(listings)
    }

    /// Sets (`Some`) and removes quotas of one entity, all or none.
    pub fn alter_quotas(
        &mut self,
        entity: &QuotaEntity,
        changes: &[(QuotaKey, Option<f64>)],
    ) -> anyhow::Result<()> {
        let parts = entity
            .components()
            .into_iter()
            .map(|(entity_type, name)| {
                EntityData::default()
                    .with_entity_type(text(entity_type))
                    .with_entity_name(name.to_wire().map(text))
            })
            .collect();
        let ops = changes
            .iter()
            .map(|(key, value)| {
                OpData::default()
                    .with_key(text(key.name()))
                    .with_value(value.unwrap_or(0.0))
                    .with_remove(value.is_none())
            })
            .collect();
        let entry = EntryData::default().with_entity(parts).with_ops(ops);
        let request = AlterClientQuotasRequest::default().with_entries(vec![entry]);
        let response = self.request(&request, QUOTA_API_VERSION)?;
        let result = response
            .entries
            .first()
            .ok_or_else(|| anyhow!("AlterClientQuotas answered without the entity"))?;
        if result.error_code != 0 {
            let what = format!("alter quotas of {entity}");
            return Err(kafka_error(
                &what,
                result.error_code,
                result.error_message.as_deref(),
            ));
        }
        Ok(())
    }
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// An entity part from the command line: a name, or the default.
pub fn entity_name(name: Option<&String>, default: bool) -> Option<EntityName> {
    match (name, default) {
        (Some(name), _) => Some(EntityName::Named(name.clone())),
        (None, true) => Some(EntityName::Default),
        (None, false) => None,
    }
}
