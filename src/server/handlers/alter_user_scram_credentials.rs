//! AlterUserScramCredentials (v0): create, replace and delete users' SCRAM credentials. The
//! client sends the salt and the salted password (never the password); the broker stores the
//! derived StoredKey and ServerKey through the controller, in the metadata log. One result per
//! user, in the order users first appear. Checks, as Kafka makes them: a user altered twice
//! for one mechanism is DUPLICATE_RESOURCE (every alteration of that user fails); an empty
//! name, an iteration count outside the bounds, an empty salt or salted password is
//! UNACCEPTABLE_CREDENTIAL; an unknown mechanism UNSUPPORTED_SASL_MECHANISM; deleting a
//! credential that does not exist RESOURCE_NOT_FOUND. Every alteration needs ALTER on the
//! cluster (CLUSTER_AUTHORIZATION_FAILED).

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::limits;
use crate::security::acl::AclOperation;
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::server::dispatch::RequestContext;
use crate::shard::admin::{AdminResult, ControllerCommand};

/// One alteration as planned: the user, and the command or why it is refused.
type Planned = (StrBytes, Result<ControllerCommand, AdminResult>);

pub async fn handle(
    ctx: &RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut planned: Vec<Planned> = Vec::new();
    for deletion in request.deletions {
        let command = ScramMechanism::from_kafka_type(deletion.mechanism)
            .ok_or_else(unsupported)
            .map(|mechanism| ControllerCommand::AlterUser {
                user: deletion.name.to_string(),
                mechanism,
                credential: None,
            });
        planned.push((deletion.name, command));
    }
    for upsertion in request.upsertions {
        let command = upsert(&upsertion);
        planned.push((upsertion.name, command));
    }
    refuse_duplicates(&mut planned);
    if !ctx.authorize_cluster(AclOperation::Alter) {
        let refused = AdminResult::error(
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to alter users",
        );
        for (_, command) in &mut planned {
            *command = Err(refused.clone());
        }
    }
    let commands = planned.iter().map(|(_, command)| command.clone()).collect();
    let outcomes = super::run_planned(ctx, commands)
        .await
        .into_iter()
        .map(|result| match result.error_code {
            0 => Ok(()),
            _ => Err(result),
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(per_user(&planned, outcomes))
}

fn upsert(
    upsertion: &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<ControllerCommand, AdminResult> {
    let mechanism = ScramMechanism::from_kafka_type(upsertion.mechanism).ok_or_else(unsupported)?;
    let unacceptable =
        |message: String| AdminResult::error(ResponseError::UnacceptableCredential, message);
    if upsertion.name.is_empty() {
        return Err(unacceptable("user name is empty".into()));
    }
    let iterations = u32::try_from(upsertion.iterations).unwrap_or(0);
    if !(limits::SCRAM_ITERATIONS_MIN..=limits::SCRAM_ITERATIONS_MAX).contains(&iterations) {
        return Err(unacceptable(format!(
            "iterations must be between {} and {}",
            limits::SCRAM_ITERATIONS_MIN,
            limits::SCRAM_ITERATIONS_MAX
        )));
    }
    if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
        return Err(unacceptable(
            "salt and salted password must not be empty".into(),
        ));
    }
    let credential = ScramCredential::from_salted_password(
        mechanism,
        &upsertion.salted_password,
        upsertion.salt.to_vec(),
        iterations,
    );
    Ok(ControllerCommand::AlterUser {
        user: upsertion.name.to_string(),
        mechanism,
        credential: Some(credential),
    })
}

fn unsupported() -> AdminResult {
    AdminResult::error(
        ResponseError::UnsupportedSaslMechanism,
        "unknown SCRAM mechanism",
    )
}

/// A user altered twice for one mechanism: every alteration of that user fails.
fn refuse_duplicates(planned: &mut [Planned]) {
    let mut seen = HashSet::new();
    let mut duplicated = HashSet::new();
    for (user, command) in planned.iter() {
        if let Ok(ControllerCommand::AlterUser { mechanism, .. }) = command {
            if !seen.insert((user.clone(), *mechanism)) {
                duplicated.insert(user.clone());
            }
        }
    }
    for (user, command) in planned.iter_mut() {
        if duplicated.contains(user) {
            *command = Err(AdminResult::error(
                ResponseError::DuplicateResource,
                format!(
                    "user {:?} is altered more than once for one mechanism",
                    user.as_str()
                ),
            ));
        }
    }
}

/// One result per user, in order of first appearance: the first failure of its alterations.
fn per_user(
    planned: &[Planned],
    outcomes: Vec<Result<(), AdminResult>>,
) -> Vec<AlterUserScramCredentialsResult> {
    let mut order: Vec<StrBytes> = Vec::new();
    let mut failures: HashMap<StrBytes, AdminResult> = HashMap::new();
    for ((user, _), outcome) in planned.iter().zip(outcomes) {
        if !order.contains(user) {
            order.push(user.clone());
        }
        if let Err(failure) = outcome {
            failures.entry(user.clone()).or_insert(failure);
        }
    }
    order
        .into_iter()
        .map(|user| {
            let result = AlterUserScramCredentialsResult::default().with_user(user.clone());
            match failures.remove(&user) {
                Some(failure) => result
                    .with_error_code(failure.error_code)
                    .with_error_message(failure.error_message.map(str_bytes)),
                None => result,
            }
        })
        .collect()
}
