//! `corelog topic create|list|describe|delete|alter`: topic administration over the Kafka
//! protocol against any broker, in the spirit of `rpk topic`.
//!
//! Each subcommand is one or a few blocking requests through `crate::client` (no executor);
//! output is a human-readable table (`render`), or JSON with `--json` where scripts read it.
//! A Kafka error answered for any topic makes the command exit non-zero after it has handled
//! the other topics, with a message naming the error code.

pub(crate) mod render;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::client::topics::AlterOperation;

/// `corelog topic [--brokers HOST:PORT] <command>`.
#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub brokers: crate::client::BrokersArg,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create topics.
    Create {
        #[arg(required = true)]
        topics: Vec<String>,
        /// Partitions per topic (-1: the broker's default).
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// A topic config, KEY=VALUE (repeatable).
        #[arg(short = 'c', long = "config", value_parser = parse_pair)]
        configs: Vec<(String, String)>,
        /// Only ask the broker to validate the request.
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics with their partition counts.
    #[command(alias = "ls")]
    List {
        /// Also list internal topics (names starting with "__").
        #[arg(short, long)]
        internal: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show a topic's partitions (with offsets) and configs.
    Describe {
        topic: String,
        /// Show every config, not only the ones set on the topic.
        #[arg(short, long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Change a topic's configs (IncrementalAlterConfigs) and/or add partitions.
    Alter {
        topic: String,
        /// Set a config, KEY=VALUE (repeatable).
        #[arg(long = "set", value_parser = parse_pair)]
        set: Vec<(String, String)>,
        /// Return a config to its default (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
        /// Add items to a list config, KEY=VALUE (repeatable).
        #[arg(long = "append", value_parser = parse_pair)]
        append: Vec<(String, String)>,
        /// Remove items from a list config, KEY=VALUE (repeatable).
        #[arg(long = "subtract", value_parser = parse_pair)]
        subtract: Vec<(String, String)>,
        /// Grow the topic to this many partitions in total.
        #[arg(short, long)]
        partitions: Option<i32>,
    },
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

pub fn run(args: &TopicArgs) -> anyhow::Result<()> {
    let mut admin = args.brokers.connect()?;
    match &args.command {
        TopicCommand::Create {
            topics,
            partitions,
            configs,
            dry_run,
        } => each_topic(topics, |topic| {
            admin.create_topic(topic, *partitions, configs, *dry_run)?;
            let verb = if *dry_run {
                "would be created"
            } else {
                "created"
            };
            println!("topic {topic} {verb}");
            Ok(())
        }),
        TopicCommand::List { internal, json } => {
            let topics = admin.topics(None)?;
            let shown: Vec<_> = topics
                .into_iter()
                .filter(|t| *internal || !t.internal)
                .collect();
            render::print_list(&shown, *json)
        }
        TopicCommand::Describe { topic, all, json } => {
            let (info, configs) = admin.describe_topic(topic)?;
            render::print_describe(&info, &configs, *all, *json)
        }
        TopicCommand::Delete { topics } => each_topic(topics, |topic| {
            admin.delete_topic(topic)?;
            println!("topic {topic} deleted");
            Ok(())
        }),
        TopicCommand::Alter {
            topic,
            set,
            delete,
            append,
            subtract,
            partitions,
        } => {
            let operations = alter_operations(set, delete, append, subtract);
            if operations.is_empty() && partitions.is_none() {
                bail!(
                    "nothing to alter: give --set, --delete, --append, --subtract or --partitions"
                );
            }
            if !operations.is_empty() {
                admin.alter_topic_configs(topic, &operations)?;
                println!(
                    "topic {topic}: {} config change(s) applied",
                    operations.len()
                );
            }
            if let Some(count) = partitions {
                admin.create_partitions(topic, *count)?;
                println!("topic {topic}: now {count} partitions");
            }
            Ok(())
        }
    }
}

fn alter_operations(
    set: &[(String, String)],
    delete: &[String],
    append: &[(String, String)],
    subtract: &[(String, String)],
) -> Vec<(String, AlterOperation, Option<String>)> {
    let with = |pairs: &[(String, String)], operation| {
        pairs
            .iter()
            .map(move |(key, value)| (key.clone(), operation, Some(value.clone())))
            .collect::<Vec<_>>()
    };
    let mut operations = with(set, AlterOperation::Set);
    operations.extend(
        delete
            .iter()
            .map(|key| (key.clone(), AlterOperation::Delete, None)),
    );
    operations.extend(with(append, AlterOperation::Append));
    operations.extend(with(subtract, AlterOperation::Subtract));
    operations
}

/// Runs `action` for every topic, reporting each failure; fails if any did.
fn each_topic(
    topics: &[String],
    mut action: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for topic in topics {
        if let Err(error) = action(topic) {
            eprintln!("corelog: error: {error:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} topic(s) failed", topics.len());
    }
    Ok(())
}
