//! The authorizer: whether the principal of a request may do an operation on a resource.
//!
//! Every handler asks through the methods here, with the operation Kafka's `KafkaApis` checks
//! for that API, and answers a refusal with the error Kafka sends (TOPIC_AUTHORIZATION_FAILED,
//! GROUP_AUTHORIZATION_FAILED, ...). With `--authorizer off` everything is allowed and nothing
//! is looked up; with it on, super users are allowed everything and everyone else what the
//! ACLs in the shard's table allow (`security::acl`), which is nothing without an ACL.
//!
//! Per-shard: reads the shard's copy of the ACLs; the principal is the connection's.

use super::dispatch::RequestContext;
use crate::security::acl::{AccessRequest, AclOperation, AclStore, ResourceType, CLUSTER_NAME};

/// The KIP-430 value of "authorized operations" that were not asked for.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

impl RequestContext {
    /// Whether the authorizer is on (so that handlers can skip work when it is not).
    pub fn authorizing(&self) -> bool {
        self.shard.config.security.authorizer
    }

    /// May this request's principal do `operation` on the resource `name` of `resource_type`?
    pub fn authorize(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.decide(operation, resource_type, name, AclStore::allows)
    }

    pub fn authorize_topic(&self, operation: AclOperation, topic: &str) -> bool {
        self.authorize(operation, ResourceType::Topic, topic)
    }

    pub fn authorize_group(&self, operation: AclOperation, group: &str) -> bool {
        self.authorize(operation, ResourceType::Group, group)
    }

    pub fn authorize_cluster(&self, operation: AclOperation) -> bool {
        self.authorize(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// May the principal do `operation` on at least one resource of `resource_type`? (KIP-679:
    /// WRITE on any topic is enough for an idempotent producer.)
    pub fn authorize_any(&self, operation: AclOperation, resource_type: ResourceType) -> bool {
        self.decide(operation, resource_type, "", AclStore::allows_any)
    }

    /// Allowed with the authorizer off, to super users, and where `rule` finds it allowed.
    fn decide(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
        rule: fn(&AclStore, &AccessRequest) -> bool,
    ) -> bool {
        if !self.authorizing() {
            return true;
        }
        let principal = self.connection.session.principal();
        let request = AccessRequest {
            principal: principal.as_str(),
            host: self.client_ip(),
            operation,
            resource_type,
            name,
        };
        let allowed =
            self.is_super_user(principal.as_str()) || rule(&self.shard.table().acls(), &request);
        if !allowed {
            tracing::debug!(
                %principal,
                host = request.host,
                %operation,
                %resource_type,
                resource = name,
                "denied"
            );
        }
        allowed
    }

    /// The KIP-430 bit set of the operations the principal may do on a resource: bit `code`
    /// for each operation of its type that is allowed.
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        resource_type
            .operations()
            .iter()
            .filter(|operation| self.authorize(**operation, resource_type, name))
            .fold(0, |bits, operation| bits | (1 << operation.code()))
    }

    /// KIP-430's cluster operations when `asked`: those allowed to a principal with DESCRIBE
    /// on the cluster, none (0) to one without, as Kafka reports them.
    pub fn cluster_operations_if(&self, asked: bool) -> i32 {
        if !asked {
            AUTHORIZED_OPERATIONS_OMITTED
        } else if self.authorize_cluster(AclOperation::Describe) {
            self.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
        } else {
            0
        }
    }

    fn is_super_user(&self, principal: &str) -> bool {
        let super_users = &self.shard.config.security.super_users;
        super_users.iter().any(|user| user == principal)
    }

    /// The client's IP address as ACL hosts name it (without Kafka's leading '/').
    fn client_ip(&self) -> &str {
        self.connection.client_host.trim_start_matches('/')
    }
}
