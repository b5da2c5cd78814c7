//! DeleteTopics: by name (v1-5) or by name or id (v6); the controller records the deletion and
//! every owner shard removes the partition directories.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{str_bytes, topic_name};
use crate::server::dispatch::RequestContext;
use crate::shard::messages::TopicRef;

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
    let results = ctx.shard.delete_topics(refs.clone()).await;
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
