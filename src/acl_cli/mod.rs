//! `corelog acl add|list|remove`: ACLs over the Kafka protocol (CreateAcls, DescribeAcls,
//! DeleteAcls) against any broker with an authorizer, in the spirit of `kafka-acls.sh`:
//!
//! ```text
//! corelog acl add --principal User:alice --operation read,describe --topic orders
//! corelog acl add --principal User:svc --operation write --topic app. --prefixed
//! corelog acl add --principal User:bob --deny --host 10.0.0.7 --operation all --group g1
//! corelog acl list [--topic orders --pattern match] [--principal User:alice] [--json]
//! corelog acl remove --principal User:alice --topic orders
//! ```
//!
//! `add` makes one ACL per operation. `list` and `remove` take the same flags as filters: a
//! flag left out matches anything. `remove` needs at least one filter, or `--all`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use crate::client::acls::describe;
use crate::security::acl::{
    self, AclBinding, AclEntry, AclFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourcePattern, ResourceType,
};

/// `corelog acl [--brokers HOST:PORT] <command>`.
#[derive(Args, Debug)]
pub struct AclArgs {
    #[command(flatten)]
    pub brokers: crate::client::BrokersArg,
    #[command(subcommand)]
    pub command: AclCommand,
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Create ACLs: one per operation, for one principal on one resource.
    Add {
        /// "User:alice", or "User:*" for every principal.
        #[arg(long)]
        principal: String,
        /// Operations, comma-separated: read, write, create, delete, alter, describe,
        /// cluster-action, describe-configs, alter-configs, idempotent-write, all.
        #[arg(long, value_delimiter = ',', required = true)]
        operation: Vec<String>,
        /// A DENY instead of an ALLOW.
        #[arg(long)]
        deny: bool,
        /// The client address the ACL applies to.
        #[arg(long, default_value = acl::WILDCARD_HOST)]
        host: String,
        #[command(flatten)]
        resource: ResourceArgs,
        /// The name is a prefix: the ACL covers every resource whose name starts with it.
        #[arg(long)]
        prefixed: bool,
    },
    /// List ACLs, all or those the filters match.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete the ACLs the filters match, and list them.
    #[command(alias = "rm")]
    Remove {
        #[command(flatten)]
        filter: FilterArgs,
        /// Remove every ACL (when no filter is given).
        #[arg(long)]
        all: bool,
    },
}

/// The resource: one of --topic, --group, --transactional-id, --cluster.
#[derive(Args, Debug, Default)]
pub struct ResourceArgs {
    #[arg(long, group = "resource")]
    pub topic: Option<String>,
    #[arg(long, group = "resource")]
    pub group: Option<String>,
    #[arg(long, group = "resource")]
    pub transactional_id: Option<String>,
    /// The cluster ("kafka-cluster").
    #[arg(long, group = "resource")]
    pub cluster: bool,
}

impl ResourceArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        let named = |resource_type, name: &Option<String>| {
            name.as_ref().map(|name| (resource_type, name.clone()))
        };
        named(ResourceType::Topic, &self.topic)
            .or_else(|| named(ResourceType::Group, &self.group))
            .or_else(|| named(ResourceType::TransactionalId, &self.transactional_id))
            .or_else(|| {
                self.cluster
                    .then(|| (ResourceType::Cluster, acl::CLUSTER_NAME.to_string()))
            })
    }
}

/// How a filter's resource name matches.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PatternArg {
    /// Bindings of any pattern type with exactly this name.
    Any,
    /// Every binding that applies to a resource of this name: literal, wildcard, prefixes.
    Match,
    Literal,
    Prefixed,
}

#[derive(Args, Debug)]
pub struct FilterArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// How the resource name matches [default: literal for remove, any for list; any without
    /// a name].
    #[arg(long)]
    pub pattern: Option<PatternArg>,
    #[arg(long)]
    pub principal: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub operation: Option<String>,
    /// allow or deny.
    #[arg(long)]
    pub permission: Option<String>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.resource.resource().is_none()
            && self.principal.is_none()
            && self.host.is_none()
            && self.operation.is_none()
            && self.permission.is_none()
    }

    /// The filter; `named_pattern` is how a resource name matches unless `--pattern` says
    /// (without a name, any pattern matches).
    fn filter(&self, named_pattern: PatternArg) -> anyhow::Result<AclFilter> {
        let (resource_type, name) = self.resource.resource().unzip();
        let default_pattern = match name {
            Some(_) => named_pattern,
            None => PatternArg::Any,
        };
        let pattern = match self.pattern.unwrap_or(default_pattern) {
            PatternArg::Any => PatternFilter::Any,
            PatternArg::Match => PatternFilter::Match,
            PatternArg::Literal => PatternFilter::Only(PatternType::Literal),
            PatternArg::Prefixed => PatternFilter::Only(PatternType::Prefixed),
        };
        Ok(AclFilter {
            resource_type,
            name,
            pattern,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation.as_deref().map(operation).transpose()?,
            permission: self.permission.as_deref().map(permission).transpose()?,
        })
    }
}

pub fn run(args: &AclArgs) -> anyhow::Result<()> {
    let bindings = match &args.command {
        AclCommand::Add {
            principal,
            operation: operations,
            deny,
            host,
            resource,
            prefixed,
        } => {
            let permission = if *deny {
                AclPermission::Deny
            } else {
                AclPermission::Allow
            };
            let entry = |operation| AclEntry {
                principal: principal.clone(),
                host: host.clone(),
                operation,
                permission,
            };
            let pattern = pattern(resource, *prefixed)?;
            operations
                .iter()
                .map(|name| {
                    let binding = AclBinding {
                        pattern: pattern.clone(),
                        entry: entry(operation(name)?),
                    };
                    binding.validate().map_err(anyhow::Error::msg)?;
                    Ok(binding)
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        }
        AclCommand::Remove { filter, all } if filter.is_empty() && !all => {
            bail!("remove needs a filter (--topic, --principal, ...), or --all to remove every ACL")
        }
        _ => Vec::new(),
    };
    let mut admin = args.brokers.connect()?;
    match &args.command {
        AclCommand::Add { .. } => {
            admin.create_acls(&bindings)?;
            for binding in &bindings {
                println!("created: {}", describe(binding));
            }
        }
        AclCommand::List { filter, json } => {
            let found = admin.describe_acls(&filter.filter(PatternArg::Any)?)?;
            print_list(&found, *json)?;
        }
        AclCommand::Remove { filter, .. } => {
            let removed = admin.delete_acls(&filter.filter(PatternArg::Literal)?)?;
            for binding in &removed {
                println!("removed: {}", describe(binding));
            }
            if removed.is_empty() {
                println!("no ACL matched");
            }
        }
    }
    Ok(())
}

fn pattern(resource: &ResourceArgs, prefixed: bool) -> anyhow::Result<ResourcePattern> {
    let (resource_type, name) = resource
        .resource()
        .context("name the resource: --topic, --group, --transactional-id or --cluster")?;
    Ok(ResourcePattern {
        resource_type,
        name,
        pattern_type: if prefixed {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        },
    })
}

fn operation(name: &str) -> anyhow::Result<AclOperation> {
    AclOperation::from_name(name.trim()).with_context(|| {
        let names: Vec<&str> = AclOperation::ALL.iter().map(|o| o.name()).collect();
        format!("{name:?} is not an operation ({})", names.join(", "))
    })
}

fn permission(name: &str) -> anyhow::Result<AclPermission> {
    AclPermission::from_name(name.trim()).with_context(|| format!("{name:?} is not allow or deny"))
}

/// One row per ACL, in Kafka's names.
#[derive(serde::Serialize)]
struct Row<'a> {
    resource_type: &'a str,
    name: &'a str,
    pattern_type: &'a str,
    principal: &'a str,
    host: &'a str,
    operation: &'a str,
    permission: &'a str,
}

fn print_list(bindings: &[AclBinding], json: bool) -> anyhow::Result<()> {
    let rows: Vec<Row> = bindings
        .iter()
        .map(|AclBinding { pattern, entry }| Row {
            resource_type: pattern.resource_type.name(),
            name: &pattern.name,
            pattern_type: pattern.pattern_type.name(),
            principal: &entry.principal,
            host: &entry.host,
            operation: entry.operation.name(),
            permission: entry.permission.name(),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<17} {:<24} {:<9} {:<24} {:<15} {:<17} PERMISSION",
        "RESOURCE-TYPE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION"
    );
    for row in rows {
        println!(
            "{:<17} {:<24} {:<9} {:<24} {:<15} {:<17} {}",
            row.resource_type,
            row.name,
            row.pattern_type,
            row.principal,
            row.host,
            row.operation,
            row.permission
        );
    }
    Ok(())
}
