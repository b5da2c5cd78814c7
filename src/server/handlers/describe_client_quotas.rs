//! DescribeClientQuotas 0-1 (KIP-546): the quotas of every entity a filter matches. A
//! component matches a name exactly (match type 0), the default (1), or any name of its type
//! (2); `strict` leaves out entities with parts the filter does not name. It needs
//! DESCRIBE_CONFIGS on the cluster (CLUSTER_AUTHORIZATION_FAILED); an unknown entity or match
//! type, or a type named twice, is INVALID_REQUEST, as Kafka answers.

use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::quota::{ComponentMatch, ENTITY_CLIENT_ID, ENTITY_USER};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

pub fn handle(
    ctx: &RequestContext,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refuse = |error: ResponseError, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
            .with_entries(None)
    };
    if !ctx.authorize_cluster(AclOperation::DescribeConfigs) {
        let message = "not authorized to describe client quotas".to_string();
        return refuse(ResponseError::ClusterAuthorizationFailed, message);
    }
    let components = match filter(&request.components) {
        Ok(components) => components,
        Err(message) => return refuse(ResponseError::InvalidRequest, message),
    };
    let quotas = ctx.shard.table().quotas();
    let entries = quotas
        .matching(&components, request.strict)
        .map(|(entity, values)| {
            let entity = entity
                .components()
                .into_iter()
                .map(|(entity_type, name)| {
                    EntityData::default()
                        .with_entity_type(str_bytes(entity_type))
                        .with_entity_name(name.to_wire().map(str_bytes))
                })
                .collect();
            let values = values
                .iter()
                .map(|(key, value)| {
                    ValueData::default()
                        .with_key(str_bytes(key.name()))
                        .with_value(*value)
                })
                .collect();
            EntryData::default().with_entity(entity).with_values(values)
        })
        .collect();
    DescribeClientQuotasResponse::default()
        .with_error_message(None)
        .with_entries(Some(entries))
}

fn filter(components: &[ComponentData]) -> Result<Vec<(String, ComponentMatch)>, String> {
    let mut parsed: Vec<(String, ComponentMatch)> = Vec::new();
    for component in components {
        let entity_type = component.entity_type.as_str();
        if entity_type != ENTITY_USER && entity_type != ENTITY_CLIENT_ID {
            return Err(format!("{entity_type:?} is not a quota entity type"));
        }
        if parsed.iter().any(|(seen, _)| seen == entity_type) {
            return Err(format!("entity type {entity_type:?} is given twice"));
        }
        let matching = match (component.match_type, &component._match) {
            (MATCH_EXACT, Some(name)) => ComponentMatch::Exact(name.to_string()),
            (MATCH_EXACT, None) => return Err("an exact match needs a name".into()),
            (MATCH_DEFAULT, _) => ComponentMatch::Default,
            (MATCH_SPECIFIED, _) => ComponentMatch::Specified,
            (other, _) => return Err(format!("{other} is not a match type")),
        };
        parsed.push((entity_type.to_string(), matching));
    }
    Ok(parsed)
}
