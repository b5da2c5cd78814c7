//! `corelog quota set|list`: client quotas over the Kafka protocol (AlterClientQuotas,
//! DescribeClientQuotas) against any broker, in the spirit of `kafka-configs.sh
//! --entity-type users|clients`:
//!
//! ```text
//! corelog quota set --user alice --producer-byte-rate 1048576 --consumer-byte-rate 2097152
//! corelog quota set --user-default --request-percentage 50
//! corelog quota set --user alice --client-id app --remove producer_byte_rate
//! corelog quota list [--user alice] [--client-id-default] [--strict] [--json]
//! ```
//!
//! An entity is a user (`--user NAME` or `--user-default`), a client id (`--client-id ID` or
//! `--client-id-default`), or both. `list` without an entity lists every quota.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::client::quotas::entity_name;
use crate::quota::{ComponentMatch, QuotaEntity, QuotaKey, ENTITY_CLIENT_ID, ENTITY_USER};

/// `corelog quota [--brokers HOST:PORT] <command>`.
#[derive(Args, Debug)]
pub struct QuotaArgs {
    #[command(flatten)]
    pub brokers: crate::client::BrokersArg,
    #[command(subcommand)]
    pub command: QuotaCommand,
}

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Set or remove quotas of one entity.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Bytes per second of produce requests (producer_byte_rate).
        #[arg(long)]
        producer_byte_rate: Option<u64>,
        /// Bytes per second of fetch responses (consumer_byte_rate).
        #[arg(long)]
        consumer_byte_rate: Option<u64>,
        /// Percentage of one shard's time the requests may take (request_percentage).
        #[arg(long)]
        request_percentage: Option<f64>,
        /// Quotas to remove, comma-separated: producer_byte_rate, consumer_byte_rate,
        /// request_percentage.
        #[arg(long, value_delimiter = ',')]
        remove: Vec<String>,
    },
    /// List quotas: all, or those of the entities the flags name.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        entity: EntityArgs,
        /// Only entities with no part the flags do not name.
        #[arg(long)]
        strict: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct EntityArgs {
    #[arg(long, conflicts_with = "user_default")]
    pub user: Option<String>,
    /// The default of every user.
    #[arg(long)]
    pub user_default: bool,
    #[arg(long, conflicts_with = "client_id_default")]
    pub client_id: Option<String>,
    /// The default of every client id.
    #[arg(long)]
    pub client_id_default: bool,
}

impl EntityArgs {
    fn entity(&self) -> Option<QuotaEntity> {
        let entity = QuotaEntity {
            user: entity_name(self.user.as_ref(), self.user_default),
            client_id: entity_name(self.client_id.as_ref(), self.client_id_default),
        };
        (entity.user.is_some() || entity.client_id.is_some()).then_some(entity)
    }
}

pub fn run(args: &QuotaArgs) -> anyhow::Result<()> {
    match &args.command {
        QuotaCommand::Set {
            entity,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
            remove,
        } => {
            let entity = entity.entity().context(
                "name the entity: --user, --user-default, --client-id, --client-id-default",
            )?;
            let mut changes = Vec::new();
            let rates = [
                (
                    QuotaKey::ProducerByteRate,
                    producer_byte_rate.map(|v| v as f64),
                ),
                (
                    QuotaKey::ConsumerByteRate,
                    consumer_byte_rate.map(|v| v as f64),
                ),
                (QuotaKey::RequestPercentage, *request_percentage),
            ];
            for (key, value) in rates {
                if let Some(value) = value {
                    key.check(value).map_err(anyhow::Error::msg)?;
                    changes.push((key, Some(value)));
                }
            }
            for name in remove {
                let key = QuotaKey::from_name(name.trim())
                    .with_context(|| format!("{name:?} is not a client quota key"))?;
                changes.push((key, None));
            }
            if changes.is_empty() {
                bail!("nothing to set: give a rate or --remove");
            }
            args.brokers.connect()?.alter_quotas(&entity, &changes)?;
            for (key, value) in &changes {
                match value {
                    Some(value) => println!("{entity}: {key} = {value}"),
                    None => println!("{entity}: {key} removed"),
                }
            }
        }
        QuotaCommand::List {
            entity,
            strict,
            json,
        } => {
            let mut components = Vec::new();
            if let Some(entity) = entity.entity() {
                for (entity_type, name) in entity.components() {
                    let matching = match name.to_wire() {
                        Some(name) => ComponentMatch::Exact(name.to_string()),
                        None => ComponentMatch::Default,
                    };
                    components.push((entity_type.to_string(), matching));
                }
            }
            let listings = args
                .brokers
                .connect()?
                .describe_quotas(&components, *strict)?;
            print_list(&listings, *json)?;
        }
    }
    Ok(())
}

fn print_list(listings: &[crate::client::quotas::QuotaListing], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = listings
            .iter()
            .map(|(entity, values)| {
                let part = |name: &Option<crate::quota::EntityName>| {
                    name.as_ref()
                        .map(|n| n.to_wire().unwrap_or("<default>").to_string())
                };
                serde_json::json!({
                    ENTITY_USER: part(&entity.user),
                    ENTITY_CLIENT_ID: part(&entity.client_id),
                    "quotas": values,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<40} QUOTAS", "ENTITY");
    for (entity, values) in listings {
        let values: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{:<40} {}", entity.to_string(), values.join(", "));
    }
    Ok(())
}
