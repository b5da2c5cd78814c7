//! AlterClientQuotas 0-1 (KIP-546): sets and removes quotas of entities (user, client id, or
//! both; a null name is the default), through the controller into the metadata log, each
//! entry's operations all or none. It needs ALTER_CONFIGS on the cluster
//! (CLUSTER_AUTHORIZATION_FAILED). An unknown entity type or key, a type or key given twice,
//! a value that is not positive (or not whole, for byte rates) is INVALID_REQUEST, as Kafka
//! answers; IP entities (connection_creation_rate) are refused the same way.

use kafka_protocol::messages::alter_client_quotas_request::EntryData;
use kafka_protocol::messages::alter_client_quotas_response::{self, EntityData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kafka_protocol::ResponseError;

use super::{run_planned, str_bytes};
use crate::quota::{QuotaEntity, QuotaKey};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ControllerCommand};

pub async fn handle(
    ctx: &RequestContext,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let authorized = ctx.authorize_cluster(AclOperation::AlterConfigs);
    let planned = request
        .entries
        .iter()
        .map(|entry| {
            if !authorized {
                let message = "not authorized to alter client quotas";
                return Err(AdminResult::error(
                    ResponseError::ClusterAuthorizationFailed,
                    message,
                ));
            }
            command(entry, request.validate_only)
                .map_err(|message| AdminResult::error(ResponseError::InvalidRequest, message))
        })
        .collect();
    let results = run_planned(ctx, planned).await;
    let entries = request
        .entries
        .into_iter()
        .zip(results)
        .map(|(entry, result)| {
            let entity = entry
                .entity
                .into_iter()
                .map(|part| {
                    EntityData::default()
                        .with_entity_type(part.entity_type)
                        .with_entity_name(part.entity_name)
                })
                .collect();
            alter_client_quotas_response::EntryData::default()
                .with_error_code(result.error_code)
                .with_error_message(result.error_message.map(str_bytes))
                .with_entity(entity)
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// The controller command for one entry, or why it is invalid.
fn command(entry: &EntryData, validate_only: bool) -> Result<ControllerCommand, String> {
    let components = entry
        .entity
        .iter()
        .map(|part| (part.entity_type.as_str(), part.entity_name.as_deref()));
    let entity = QuotaEntity::from_components(components)?;
    let mut changes: Vec<(QuotaKey, Option<f64>)> = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let key = QuotaKey::from_name(op.key.as_str()).ok_or_else(|| {
            format!(
                "{:?} is not a client quota key (producer_byte_rate, consumer_byte_rate, \
                 request_percentage)",
                op.key.as_str()
            )
        })?;
        if changes.iter().any(|(seen, _)| *seen == key) {
            return Err(format!("{key} is changed twice"));
        }
        if op.remove {
            changes.push((key, None));
        } else {
            key.check(op.value)?;
            changes.push((key, Some(op.value)));
        }
    }
    Ok(ControllerCommand::AlterQuotas {
        entity,
        changes,
        validate_only,
    })
}
