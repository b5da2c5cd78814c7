//! SCRAM users over the Kafka protocol: DescribeUserScramCredentials and
//! AlterUserScramCredentials. The salted password is derived here, on the client, as Kafka's
//! admin client does: the password itself never leaves this process.

use anyhow::anyhow;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{kafka_error, Admin};
use crate::limits;
use crate::security::scram::ScramMechanism;

/// A user and the mechanisms (with iteration counts) it has credentials for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserListing {
    pub user: String,
    pub mechanisms: Vec<(String, i32)>,
}

impl Admin {
    /// Every user with a SCRAM credential.
    pub fn users(&mut self) -> anyhow::Result<Vec<UserListing>> {
        let request = DescribeUserScramCredentialsRequest::default().with_users(None);
        let response = self.request(&request, 0)?;
        if response.error_code != 0 {
            let message = response.error_message.as_deref();
            return Err(kafka_error("describe users", response.error_code, message));
        }
        let mut users = Vec::new();
        for result in response.results {
            if result.error_code != 0 {
                let what = format!("describe user {:?}", result.user.as_str());
                return Err(kafka_error(
                    &what,
                    result.error_code,
                    result.error_message.as_deref(),
                ));
            }
            let mechanisms = result
                .credential_infos
                .iter()
                .map(|info| {
                    let name = ScramMechanism::from_kafka_type(info.mechanism)
                        .map_or_else(|| format!("type {}", info.mechanism), |m| m.to_string());
                    (name, info.iterations)
                })
                .collect();
            users.push(UserListing {
                user: result.user.to_string(),
                mechanisms,
            });
        }
        Ok(users)
    }

    /// Creates or replaces `user`'s credential for `mechanism`.
    pub fn upsert_user(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> anyhow::Result<()> {
        let mut salt = vec![0; limits::SCRAM_SALT_BYTES];
        getrandom::getrandom(&mut salt).map_err(|e| anyhow!("no random source: {e}"))?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.kafka_type())
            .with_iterations(iterations as i32)
            .with_salt(salt.into())
            .with_salted_password(salted.into());
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
        self.alter_user(user, request)
    }

    /// Deletes `user`'s credential for `mechanism`.
    pub fn delete_user(&mut self, user: &str, mechanism: ScramMechanism) -> anyhow::Result<()> {
        let deletion = ScramCredentialDeletion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.kafka_type());
        let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]);
        self.alter_user(user, request)
    }

    fn alter_user(
        &mut self,
        user: &str,
        request: AlterUserScramCredentialsRequest,
    ) -> anyhow::Result<()> {
        let response = self.request(&request, 0)?;
        let result = response
            .results
            .first()
            .ok_or_else(|| anyhow!("AlterUserScramCredentials answered without user {user:?}"))?;
        if result.error_code != 0 {
            let what = format!("alter user {user:?}");
            return Err(kafka_error(
                &what,
                result.error_code,
                result.error_message.as_deref(),
            ));
        }
        Ok(())
    }
}
