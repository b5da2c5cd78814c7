//! Access control lists as Kafka defines them (KIP-11, KIP-290 prefixed patterns), and the
//! decision of whether one principal may do one operation on one resource.
//!
//! A binding is a resource pattern (type, name, literal or prefixed) and an entry (principal,
//! host, operation, allow or deny). The rules are Kafka's `StandardAuthorizer`'s:
//! - a binding applies to a resource when its pattern is the literal name, the literal
//!   wildcard "*", or a prefix of the name; to a principal when it names it or "User:*"; to a
//!   host when it names the client's address or "*";
//! - a DENY that applies (its operation, or ALL) wins over every ALLOW;
//! - an ALLOW applies to its operation, ALL to every operation, and READ, WRITE, DELETE and
//!   ALTER each imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! - no ALLOW that applies means denied (`allow.everyone.if.no.acl.found=false`).
//!
//! Per-shard: every shard holds a copy of the [`AclStore`] inside its `ShardTable`, built from
//! the metadata log like the topics, so an authorization never leaves the shard.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The literal resource name that matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal and the host that match every principal and host.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
pub const WILDCARD_HOST: &str = "*";
/// The one name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Defines a Kafka enum: its variants with their wire codes and the names Kafka prints, with
/// conversions both ways (codes 0 UNKNOWN and 1 ANY are filters' business, not variants).
macro_rules! kafka_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)* }
            }

            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Kafka's name ("TOPIC", "DESCRIBE_CONFIGS").
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Parses a name, ignoring case and taking '-' for '_' ("describe-configs").
            pub fn from_name(text: &str) -> Option<$name> {
                let wanted = text.replace('-', "_");
                $name::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(&wanted))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum!(
    /// What kind of resource a binding protects.
    ResourceType {
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
);

kafka_enum!(
    /// How a binding's resource name matches.
    PatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

kafka_enum!(
    /// What a principal does to a resource.
    AclOperation {
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
);

kafka_enum!(
    /// Whether a binding allows or denies.
    AclPermission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

/// The wire codes of filters' "any" and of the MATCH pattern filter.
pub const CODE_ANY: i8 = 1;
pub const CODE_MATCH: i8 = 2;

impl ResourceType {
    /// The operations that mean something for this type, as KIP-430 reports them.
    pub fn operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
}

impl AclOperation {
    /// Whether an ALLOW binding for `self` allows `wanted`.
    fn allows(self, wanted: AclOperation) -> bool {
        use AclOperation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY binding for `self` denies `wanted` (denials imply nothing).
    fn denies(self, wanted: AclOperation) -> bool {
        self == AclOperation::All || self == wanted
    }
}

/// Which resources a binding covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
}

/// Who may or may not do what, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclEntry {
    /// "User:alice", or "User:*".
    pub principal: String,
    /// The client's IP address, or "*".
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// One ACL: a pattern and an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    pub entry: AclEntry,
}

impl AclBinding {
    /// Why Kafka would refuse to create this binding (INVALID_REQUEST).
    pub fn validate(&self) -> Result<(), String> {
        let pattern = &self.pattern;
        if pattern.name.is_empty() {
            return Err("the resource name is empty".into());
        }
        if pattern.resource_type == ResourceType::Cluster && pattern.name != CLUSTER_NAME {
            return Err(format!(
                "the only CLUSTER resource is {CLUSTER_NAME:?}, not {:?}",
                pattern.name
            ));
        }
        if pattern.pattern_type == PatternType::Prefixed && pattern.name == WILDCARD_RESOURCE {
            return Err("a PREFIXED pattern cannot be the wildcard \"*\"".into());
        }
        parse_principal(&self.entry.principal)?;
        if self.entry.host.is_empty() {
            return Err("the host is empty (use \"*\" for any host)".into());
        }
        Ok(())
    }
}

/// Checks that a principal reads "Type:name" (Kafka's `KafkaPrincipal` form).
pub fn parse_principal(text: &str) -> Result<(&str, &str), String> {
    match text.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok((kind, name)),
        _ => Err(format!(
            "principal {text:?} is not of the form \"User:name\""
        )),
    }
}

/// How a filter matches resource patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type (with a name: that exact name).
    Any,
    /// The patterns that would apply to a resource of that name: the literal name, the
    /// wildcard, and every prefix of it.
    Match,
    /// Exactly this pattern type.
    Only(PatternType),
}

/// Which bindings DescribeAcls lists and DeleteAcls removes: `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    /// A filter from the wire codes; why it is invalid (INVALID_REQUEST) otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        fn any_or<T>(
            code: i8,
            what: &str,
            parse: fn(i8) -> Option<T>,
        ) -> Result<Option<T>, String> {
            if code == CODE_ANY {
                return Ok(None);
            }
            parse(code)
                .map(Some)
                .ok_or_else(|| format!("{code} is not a valid {what} in a filter"))
        }
        let pattern = match pattern_type {
            CODE_ANY => PatternFilter::Any,
            CODE_MATCH => PatternFilter::Match,
            code => PatternFilter::Only(
                PatternType::from_code(code)
                    .ok_or_else(|| format!("{code} is not a valid pattern type in a filter"))?,
            ),
        };
        Ok(AclFilter {
            resource_type: any_or(resource_type, "resource type", ResourceType::from_code)?,
            name: name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: any_or(operation, "operation", AclOperation::from_code)?,
            permission: any_or(permission, "permission type", AclPermission::from_code)?,
        })
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        let (pattern, entry) = (&binding.pattern, &binding.entry);
        self.resource_type
            .is_none_or(|t| t == pattern.resource_type)
            && self.matches_name(pattern)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == entry.principal)
            && self.host.as_ref().is_none_or(|h| *h == entry.host)
            && self.operation.is_none_or(|o| o == entry.operation)
            && self.permission.is_none_or(|p| p == entry.permission)
    }

    fn matches_name(&self, pattern: &ResourcePattern) -> bool {
        match (self.pattern, &self.name) {
            (PatternFilter::Only(wanted), _) if wanted != pattern.pattern_type => false,
            (_, None) => true,
            (PatternFilter::Match, Some(name)) => pattern_applies(pattern, name),
            (_, Some(name)) => *name == pattern.name,
        }
    }
}

/// Whether `pattern` covers the resource called `name` (of the pattern's type).
fn pattern_applies(pattern: &ResourcePattern, name: &str) -> bool {
    match pattern.pattern_type {
        PatternType::Literal => pattern.name == name || pattern.name == WILDCARD_RESOURCE,
        PatternType::Prefixed => name.starts_with(&pattern.name),
    }
}

/// Every ACL, by resource pattern.
#[derive(Debug, Default, Clone)]
pub struct AclStore {
    bindings: BTreeMap<ResourcePattern, BTreeSet<AclEntry>>,
}

/// What is asked: may `principal`, from `host`, do `operation` on this resource?
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub principal: &'a str,
    /// The client's IP address, without Kafka's leading '/'.
    pub host: &'a str,
    pub operation: AclOperation,
    pub resource_type: ResourceType,
    pub name: &'a str,
}

impl AclStore {
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bindings.values().map(BTreeSet::len).sum()
    }

    /// Adds a binding; whether it was new.
    pub fn add(&mut self, binding: AclBinding) -> bool {
        self.bindings
            .entry(binding.pattern)
            .or_default()
            .insert(binding.entry)
    }

    /// Removes a binding; whether it was there.
    pub fn remove(&mut self, binding: &AclBinding) -> bool {
        let Some(entries) = self.bindings.get_mut(&binding.pattern) else {
            return false;
        };
        let removed = entries.remove(&binding.entry);
        if entries.is_empty() {
            self.bindings.remove(&binding.pattern);
        }
        removed
    }

    pub fn contains(&self, binding: &AclBinding) -> bool {
        self.bindings
            .get(&binding.pattern)
            .is_some_and(|entries| entries.contains(&binding.entry))
    }

    /// The bindings `filter` matches, in pattern order.
    pub fn matching(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.iter().filter(|b| filter.matches(b)).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = AclBinding> + '_ {
        self.bindings.iter().flat_map(|(pattern, entries)| {
            entries.iter().map(|entry| AclBinding {
                pattern: pattern.clone(),
                entry: entry.clone(),
            })
        })
    }

    /// Whether an ALLOW applies to `request` and no DENY does.
    pub fn allows(&self, request: &AccessRequest) -> bool {
        let mut allowed = false;
        for entry in self.entries_for(request.resource_type, request.name) {
            if !applies_to(entry, request) {
                continue;
            }
            match entry.permission {
                AclPermission::Deny if entry.operation.denies(request.operation) => return false,
                AclPermission::Allow if entry.operation.allows(request.operation) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// Whether `principal` from `host` is allowed `operation` on at least one resource of
    /// `resource_type` (KIP-679: WRITE on any topic lets a producer be idempotent). A DENY
    /// on the literal wildcard takes it away.
    pub fn allows_any(&self, request: &AccessRequest) -> bool {
        let mut allowed = false;
        for (pattern, entries) in &self.bindings {
            if pattern.resource_type != request.resource_type {
                continue;
            }
            for entry in entries.iter().filter(|e| applies_to(e, request)) {
                match entry.permission {
                    AclPermission::Allow => allowed |= entry.operation.allows(request.operation),
                    AclPermission::Deny => {
                        let total = pattern.pattern_type == PatternType::Literal
                            && pattern.name == WILDCARD_RESOURCE;
                        if total && entry.operation.denies(request.operation) {
                            return false;
                        }
                    }
                }
            }
        }
        allowed
    }

    /// The entries of every pattern that covers `name`: the literal name, the wildcard, and
    /// every prefixed pattern the name starts with.
    fn entries_for<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclEntry> + 'a {
        let literal = |name: &str| ResourcePattern {
            resource_type,
            name: name.to_string(),
            pattern_type: PatternType::Literal,
        };
        let exact = self.bindings.get(&literal(name));
        let wildcard = self.bindings.get(&literal(WILDCARD_RESOURCE));
        let prefixed = self
            .prefixed(resource_type)
            .filter_map(move |(pattern, entries)| {
                name.starts_with(&pattern.name).then_some(entries)
            });
        exact
            .into_iter()
            .chain(wildcard)
            .chain(prefixed)
            .flat_map(BTreeSet::iter)
    }

    /// The prefixed patterns of one type: a contiguous range of the map, which orders
    /// patterns by type first, then name, then pattern type.
    fn prefixed(
        &self,
        resource_type: ResourceType,
    ) -> impl Iterator<Item = (&ResourcePattern, &BTreeSet<AclEntry>)> {
        let start = ResourcePattern {
            resource_type,
            name: String::new(),
            pattern_type: PatternType::Literal,
        };
        self.bindings
            .range(start..)
            .take_while(move |(pattern, _)| pattern.resource_type == resource_type)
            .filter(|(pattern, _)| pattern.pattern_type == PatternType::Prefixed)
    }
}

fn applies_to(entry: &AclEntry, request: &AccessRequest) -> bool {
    (entry.principal == request.principal || entry.principal == WILDCARD_PRINCIPAL)
        && (entry.host == request.host || entry.host == WILDCARD_HOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: AclOperation,
        permission: AclPermission,
    ) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type,
                name: name.into(),
                pattern_type,
            },
            entry: AclEntry {
                principal: principal.into(),
                host: WILDCARD_HOST.into(),
                operation,
                permission,
            },
        }
    }

    fn ask<'a>(principal: &'a str, operation: AclOperation, name: &'a str) -> AccessRequest<'a> {
        AccessRequest {
            principal,
            host: "127.0.0.1",
            operation,
            resource_type: ResourceType::Topic,
            name,
        }
    }

    use AclOperation::*;
    use AclPermission::*;
    use PatternType::*;
    use ResourceType::Topic;

    /// Nothing is allowed without an ACL; an ALLOW applies to its own name only.
    #[test]
    fn deny_by_default_and_literal_allow() {
        let mut store = AclStore::default();
        assert!(!store.allows(&ask("User:alice", Read, "orders")));
        store.add(binding(Topic, "orders", Literal, "User:alice", Read, Allow));
        assert!(store.allows(&ask("User:alice", Read, "orders")));
        assert!(!store.allows(&ask("User:alice", Write, "orders")));
        assert!(!store.allows(&ask("User:bob", Read, "orders")));
        assert!(!store.allows(&ask("User:alice", Read, "orders2")));
    }

    /// Prefixed patterns cover names that start with them; the wildcard covers every name;
    /// "User:*" covers every principal.
    #[test]
    fn prefixed_wildcard_and_any_principal() {
        let mut store = AclStore::default();
        store.add(binding(Topic, "app.", Prefixed, "User:alice", Write, Allow));
        store.add(binding(Topic, "*", Literal, "User:*", Describe, Allow));
        assert!(store.allows(&ask("User:alice", Write, "app.events")));
        assert!(!store.allows(&ask("User:alice", Write, "other")));
        assert!(store.allows(&ask("User:carol", Describe, "other")));
        assert!(!store.allows(&ask("User:carol", Read, "other")));
    }

    /// READ/WRITE/DELETE/ALTER imply DESCRIBE and ALTER_CONFIGS implies DESCRIBE_CONFIGS
    /// for allows only; a DENY wins over any ALLOW; DENY ALL denies everything.
    #[test]
    fn implications_and_deny_precedence() {
        let mut store = AclStore::default();
        store.add(binding(Topic, "t", Literal, "User:a", Read, Allow));
        store.add(binding(Topic, "t", Literal, "User:a", AlterConfigs, Allow));
        assert!(store.allows(&ask("User:a", Describe, "t")));
        assert!(store.allows(&ask("User:a", DescribeConfigs, "t")));
        store.add(binding(Topic, "t", Literal, "User:a", Describe, Deny));
        assert!(!store.allows(&ask("User:a", Describe, "t")));
        assert!(
            store.allows(&ask("User:a", Read, "t")),
            "a denied DESCRIBE denies no READ"
        );
        store.add(binding(Topic, "t", Prefixed, "User:*", All, Deny));
        assert!(!store.allows(&ask("User:a", Read, "t")));
    }

    /// A binding for one host applies to that host only.
    #[test]
    fn hosts() {
        let mut store = AclStore::default();
        let mut allow = binding(Topic, "t", Literal, "User:a", Read, Allow);
        allow.entry.host = "10.0.0.1".into();
        store.add(allow);
        assert!(!store.allows(&ask("User:a", Read, "t")));
        let request = AccessRequest {
            host: "10.0.0.1",
            ..ask("User:a", Read, "t")
        };
        assert!(store.allows(&request));
    }

    /// Filters: ANY fields, exact names, and MATCH finding every pattern that applies.
    #[test]
    fn filters() {
        let mut store = AclStore::default();
        store.add(binding(Topic, "app.events", Literal, "User:a", Read, Allow));
        store.add(binding(Topic, "app.", Prefixed, "User:a", Write, Allow));
        store.add(binding(Topic, "*", Literal, "User:b", Read, Allow));
        store.add(binding(Topic, "other", Literal, "User:b", Read, Allow));
        let filter = |name: Option<&str>, pattern| AclFilter {
            resource_type: Some(Topic),
            name: name.map(str::to_string),
            pattern,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        assert_eq!(store.matching(&filter(None, PatternFilter::Any)).len(), 4);
        let exact = store.matching(&filter(Some("app."), PatternFilter::Any));
        assert_eq!(exact.len(), 1);
        let applying = store.matching(&filter(Some("app.events"), PatternFilter::Match));
        assert_eq!(applying.len(), 3);
        let prefixed = store.matching(&filter(None, PatternFilter::Only(Prefixed)));
        assert_eq!(prefixed.len(), 1);
        assert!(store.remove(&prefixed[0]));
        assert!(!store.remove(&prefixed[0]));
        assert_eq!(store.len(), 3);
    }

    /// KIP-679: WRITE on any topic allows idempotence, unless the wildcard is denied.
    #[test]
    fn allows_any_topic() {
        let mut store = AclStore::default();
        let request = ask("User:a", Write, "");
        assert!(!store.allows_any(&request));
        store.add(binding(Topic, "logs.", Prefixed, "User:a", Write, Allow));
        assert!(store.allows_any(&request));
        store.add(binding(Topic, "*", Literal, "User:a", Write, Deny));
        assert!(!store.allows_any(&request));
    }

    /// Kafka's names and codes convert both ways; bad bindings are refused.
    #[test]
    fn names_codes_and_validation() {
        assert_eq!(
            AclOperation::from_name("describe-configs"),
            Some(DescribeConfigs)
        );
        assert_eq!(
            ResourceType::from_code(5),
            Some(ResourceType::TransactionalId)
        );
        assert_eq!(AclPermission::from_code(1), None);
        let mut bad = binding(ResourceType::Cluster, "c", Literal, "User:a", Alter, Allow);
        assert!(bad.validate().is_err());
        bad.pattern.name = CLUSTER_NAME.into();
        assert!(bad.validate().is_ok());
        bad.entry.principal = "alice".into();
        assert!(bad.validate().is_err());
    }
}
