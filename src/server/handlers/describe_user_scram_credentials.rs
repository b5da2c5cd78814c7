//! DescribeUserScramCredentials (v0): each user's SCRAM mechanisms and iteration counts
//! (never salts or keys). No users named (null or empty) means every user; a named user
//! without credentials is RESOURCE_NOT_FOUND, a user named twice DUPLICATE_RESOURCE. It
//! needs DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED).

use std::collections::HashMap;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::security::acl::AclOperation;
use crate::security::scram::ScramMechanism;
use crate::server::dispatch::RequestContext;

pub fn handle(
    ctx: &RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !ctx.authorize_cluster(AclOperation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("not authorized to describe users")));
    }
    let users = ctx.shard.table().users();
    let info = |mechanisms: Vec<(ScramMechanism, u32)>| -> Vec<CredentialInfo> {
        mechanisms
            .into_iter()
            .map(|(mechanism, iterations)| {
                CredentialInfo::default()
                    .with_mechanism(mechanism.kafka_type())
                    .with_iterations(iterations as i32)
            })
            .collect()
    };
    let results = match request.users.filter(|named| !named.is_empty()) {
        None => users
            .list()
            .map(|(name, mechanisms)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(name.to_string()))
                    .with_credential_infos(info(mechanisms))
            })
            .collect(),
        Some(named) => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for user in &named {
                *counts.entry(user.name.as_str()).or_default() += 1;
            }
            let all: HashMap<&str, Vec<(ScramMechanism, u32)>> = users.list().collect();
            named
                .iter()
                .map(|user| {
                    let name = user.name.as_str();
                    let result =
                        DescribeUserScramCredentialsResult::default().with_user(user.name.clone());
                    let refuse = |error: ResponseError, message: String| {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(user.name.clone())
                            .with_error_code(error.code())
                            .with_error_message(Some(str_bytes(message)))
                    };
                    if counts[name] > 1 {
                        return refuse(
                            ResponseError::DuplicateResource,
                            format!("user {name:?} is named more than once"),
                        );
                    }
                    match all.get(name) {
                        Some(mechanisms) => result.with_credential_infos(info(mechanisms.clone())),
                        None => refuse(
                            ResponseError::ResourceNotFound,
                            format!("user {name:?} has no SCRAM credential"),
                        ),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
