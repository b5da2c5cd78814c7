//! `corelog group list|describe|delete|reset-offsets`: consumer-group administration over the
//! Kafka protocol against any broker, in the spirit of `rpk group` and
//! `kafka-consumer-groups.sh`.
//!
//! Every group request goes to the group's coordinator (FindCoordinator first); `list` asks
//! every broker Metadata names, since each lists only the groups it coordinates. Output is a
//! table (`render`), or JSON with `--json`. A Kafka error makes the command exit non-zero with
//! the error's name and code; `delete` handles every group before it fails.

mod render;
mod reset;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::client::admin::{kafka_error, Admin};
use crate::client::groups::GroupListing;

pub use reset::{parse_datetime, ResetTarget};

/// `corelog group [--brokers HOST:PORT] <command>`.
#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub brokers: crate::client::BrokersArg,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List groups with their state and protocol type.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a group's members, assignments, committed offsets and lag.
    Describe {
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete groups (they must have no members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Plan (or with --execute, commit) new committed offsets of a group without members.
    ResetOffsets(reset::ResetArgs),
}

pub fn run(args: &GroupArgs) -> anyhow::Result<()> {
    let mut admin = args.brokers.connect()?;
    match &args.command {
        GroupCommand::List { json } => {
            let groups = list_all(&mut admin)?;
            render::print_list(&groups, *json)
        }
        GroupCommand::Describe { group, json } => {
            let mut coordinator = admin.coordinator(group)?;
            let description = coordinator.describe_group(group)?;
            if description.state == "Dead" {
                return Err(kafka_error(&format!("group {group:?}"), 69, None));
            }
            let offsets = coordinator.committed_offsets(group, None)?;
            let rows = render::partition_rows(&mut admin, &description, &offsets)?;
            render::print_describe(&description, &rows, *json)
        }
        GroupCommand::Delete { groups } => delete(&mut admin, groups),
        GroupCommand::ResetOffsets(reset) => reset::run(&mut admin, reset),
    }
}

/// The groups of every broker in the cluster, sorted by name.
fn list_all(admin: &mut Admin) -> anyhow::Result<Vec<GroupListing>> {
    let mut groups = admin.list_groups()?;
    let here = admin.address();
    for broker in admin.broker_addresses()? {
        let resolved = std::net::ToSocketAddrs::to_socket_addrs(broker.as_str());
        if resolved.is_ok_and(|mut addresses| addresses.any(|a| a == here)) {
            continue;
        }
        let mut other = Admin::connect_any(&[broker], &admin.security().clone())?;
        groups.extend(other.list_groups()?);
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    groups.dedup_by(|a, b| a.group == b.group);
    Ok(groups)
}

/// Deletes every group on its coordinator, reporting each; fails if any failed.
fn delete(admin: &mut Admin, groups: &[String]) -> anyhow::Result<()> {
    let mut failed = 0;
    for group in groups {
        let result = admin
            .coordinator(group)
            .and_then(|mut coordinator| coordinator.delete_groups(std::slice::from_ref(group)));
        let code = match result {
            Ok(results) => results.first().map_or(-1, |(_, code)| *code),
            Err(error) => {
                eprintln!("corelog: error: {error:#}");
                failed += 1;
                continue;
            }
        };
        if code == 0 {
            println!("group {group} deleted");
        } else {
            let error = kafka_error(&format!("delete group {group:?}"), code, None);
            eprintln!("corelog: error: {error:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} group(s) failed", groups.len());
    }
    Ok(())
}
