//! `corelog user create|delete|list`: SCRAM users, over the Kafka protocol against a running
//! broker (`--brokers`), or with `--data-dir` straight into the metadata log of a broker that
//! is not running, to create the first administrator before the first start (as Kafka's
//! `kafka-storage format --add-scram`).
//!
//! The password comes from `--password`, or else from the first line of standard input; it is
//! salted and derived here and never stored or sent.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::limits;
use crate::metadata::{MetadataRecord, MetadataStore};
use crate::runtime::ThreadExecutor;
use crate::security::scram::{ScramCredential, ScramMechanism};
use crate::storage::BatchCache;

/// `corelog user [--brokers HOST:PORT | --data-dir DIR] <command>`.
#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(flatten)]
    pub brokers: crate::client::BrokersArg,
    /// Change the metadata log in DIR directly instead (the broker must not be running).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user's SCRAM credential, or replace it (a new password).
    Create {
        user: String,
        /// The password [default: the first line of standard input].
        #[arg(long)]
        password: Option<String>,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        #[arg(long, default_value_t = limits::SCRAM_ITERATIONS_MIN)]
        iterations: u32,
    },
    /// Delete a user's credential for one mechanism.
    Delete {
        user: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
    },
    /// List users and their mechanisms.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: &UserArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.data_dir {
        return run_offline(dir, &args.command);
    }
    let mut admin = args.brokers.connect()?;
    match &args.command {
        UserCommand::Create {
            user,
            password,
            mechanism,
            iterations,
        } => {
            let (mechanism, password) = creation(user, mechanism, *iterations, password)?;
            admin.upsert_user(user, mechanism, &password, *iterations)?;
            println!("user {user:?}: {mechanism} credential set");
        }
        UserCommand::Delete { user, mechanism } => {
            let mechanism = parse_mechanism(mechanism)?;
            admin.delete_user(user, mechanism)?;
            println!("user {user:?}: {mechanism} credential deleted");
        }
        UserCommand::List { json } => {
            let users = admin.users()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                println!("{:<32} MECHANISMS", "USER");
                for listing in users {
                    let mechanisms: Vec<String> = listing
                        .mechanisms
                        .iter()
                        .map(|(name, iterations)| format!("{name} ({iterations} iterations)"))
                        .collect();
                    println!("{:<32} {}", listing.user, mechanisms.join(", "));
                }
            }
        }
    }
    Ok(())
}

/// `--data-dir`: only `create` and `delete`, appended to the metadata log under the data
/// directory's lock, so a running broker is refused.
fn run_offline(dir: &Path, command: &UserCommand) -> anyhow::Result<()> {
    let record = match command {
        UserCommand::Create {
            user,
            password,
            mechanism,
            iterations,
        } => {
            let (mechanism, password) = creation(user, mechanism, *iterations, password)?;
            MetadataRecord::UserScramCredentialSet {
                name: user.clone(),
                mechanism,
                credential: ScramCredential::new(mechanism, &password, *iterations),
            }
        }
        UserCommand::Delete { user, mechanism } => MetadataRecord::UserScramCredentialDeleted {
            name: user.clone(),
            mechanism: parse_mechanism(mechanism)?,
        },
        UserCommand::List { .. } => bail!("list asks a running broker: use --brokers"),
    };
    let dir = std::path::absolute(dir)
        .with_context(|| format!("cannot resolve data directory {}", dir.display()))?;
    let _lock = crate::serve::lock_data_dir(&dir)?;
    let anchor = dir
        .join(crate::metadata::METADATA_LOG_DIR)
        .join(crate::replication::window::ANCHOR_FILE);
    if anchor.exists() {
        bail!(
            "{} belongs to a node of a cluster, whose metadata log only its quorum writes: \
             start the cluster and use --brokers",
            dir.display()
        );
    }
    let summary = match &record {
        MetadataRecord::UserScramCredentialSet {
            name, mechanism, ..
        } => {
            format!(
                "user {name:?}: {mechanism} credential set in {}",
                dir.display()
            )
        }
        _ => format!("user credential deleted in {}", dir.display()),
    };
    ThreadExecutor::new().run(async move {
        let cache = BatchCache::with_budgets(1 << 20, 1 << 20, 0);
        let (store, _) = MetadataStore::open(&dir, cache).await?;
        let appended = store.append(&record).await;
        let closed = store.close().await;
        appended.and(closed)
    })?;
    println!("{summary}");
    Ok(())
}

fn parse_mechanism(name: &str) -> anyhow::Result<ScramMechanism> {
    ScramMechanism::from_name(&name.to_ascii_uppercase())
        .with_context(|| format!("{name:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"))
}

/// `create`'s arguments checked, with the password read: the mechanism and the password.
fn creation(
    user: &str,
    mechanism: &str,
    iterations: u32,
    password: &Option<String>,
) -> anyhow::Result<(ScramMechanism, String)> {
    let mechanism = parse_mechanism(mechanism)?;
    check_iterations(iterations)?;
    if user.is_empty() {
        bail!("the user name is empty");
    }
    Ok((mechanism, password_or_stdin(password.as_deref())?))
}

fn check_iterations(iterations: u32) -> anyhow::Result<()> {
    let range = limits::SCRAM_ITERATIONS_MIN..=limits::SCRAM_ITERATIONS_MAX;
    if !range.contains(&iterations) {
        bail!(
            "--iterations must be between {} and {}",
            range.start(),
            range.end()
        );
    }
    Ok(())
}

fn password_or_stdin(password: Option<&str>) -> anyhow::Result<String> {
    let password = match password {
        Some(password) => password.to_string(),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
