//! DeleteTopics: by name (v1-5) or by name or id (v6); the controller records the deletion and
//! every owner shard removes the partition directories. Each topic needs DELETE
//! (TOPIC_AUTHORIZATION_FAILED).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::ResponseError;

use super::{run_unrefused, str_bytes, topic_name};
use crate::security::acl::AclOperation;
use crate::server::dispatch::RequestContext;
use crate::shard::messages::{TopicRef, TopicResult};

pub async fn handle(ctx: &RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut refs: Vec<TopicRef> = request
        .topic_names
        .iter()
        .map(|n| TopicRef::Name(n.0.to_string()))
        .collect();
    for topic in &request.topics {
        refs.push(match &topic.name {
            Some(name) => TopicRef::Name(name.0.to_string()),
            None => TopicRef::Id(topic.topic_id),
        });
    }
    let results = delete_allowed(ctx, &refs).await;
    let responses = refs
        .iter()
        .zip(results)
        .map(|(requested, result)| {
            let name = match requested {
                TopicRef::Name(name) => Some(name.clone()),
                TopicRef::Id(_) if !result.name.is_empty() => Some(result.name.clone()),
                TopicRef::Id(_) => None,
            };
            let id = match requested {
                TopicRef::Id(id) => *id,
                TopicRef::Name(_) => result.id,
            };
            let mut response = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_error_code(result.error_code);
            // Fields newer than the request's version stay at their defaults.
            if ctx.api_version >= 5 {
                response.error_message = result.error_message.map(str_bytes);
            }
            if ctx.api_version >= 6 {
                response.topic_id = id;
            }
            response
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Deletes the topics the principal may delete; one result per reference, in order. A topic
/// id that names no topic is left to the controller (UNKNOWN_TOPIC_ID).
async fn delete_allowed(ctx: &RequestContext, refs: &[TopicRef]) -> Vec<TopicResult> {
    let planned = refs.iter().map(|reference| {
        let name = match reference {
            TopicRef::Name(name) => Some(name.clone()),
            TopicRef::Id(id) => ctx.shard.table().topic_by_id(id).map(|t| t.name.clone()),
        };
        match name {
            Some(name) if !ctx.authorize_topic(AclOperation::Delete, &name) => Err(TopicResult {
                name,
                error_code: ResponseError::TopicAuthorizationFailed.code(),
                error_message: Some("not authorized to delete this topic".into()),
                ..Default::default()
            }),
            _ => Ok(reference.clone()),
        }
    });
    run_unrefused(
        planned.collect(),
        |allowed| ctx.shard.delete_topics(allowed),
        TopicResult::default,
    )
    .await
}
