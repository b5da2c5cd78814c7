//! The `corelog` command line: `serve` runs the broker, `bench` loads one, `topic` administers
//! topics on one, `group` its consumer groups.
//!
//! Log lines go to stderr, and a failure to write one is ignored: a broker whose stderr is a
//! file on a full disk (or a pipe nobody reads) keeps serving. The standard `eprintln!` and
//! tracing's default error report both panic when stderr fails, and a panic aborts the
//! release build (`panic = "abort"`), so the serve path writes stderr only through
//! `LossyStderr` or a `writeln!` whose result it drops, and never writes stdout.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "corelog",
    version,
    about = "A Kafka-compatible broker, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(corelog::config::ServeArgs),
    /// Check (and apply) host settings for a thread-per-core broker.
    Tune(corelog::tune::TuneArgs),
    /// Load a Kafka-compatible broker and measure throughput and latency.
    Bench(corelog::bench::BenchArgs),
    /// Create, list, describe, delete and alter topics on any Kafka-compatible broker.
    Topic(corelog::topic::TopicArgs),
    /// List, describe, delete consumer groups and reset their offsets on any Kafka broker.
    Group(corelog::group_cli::GroupArgs),
    /// Create, delete and list SCRAM users (over the Kafka protocol, or offline in a data
    /// directory before the broker's first start).
    User(corelog::user_cli::UserArgs),
    /// Add, list and remove ACLs (over the Kafka protocol; the broker needs --authorizer on).
    Acl(corelog::acl_cli::AclArgs),
    /// Set and list client quotas (produce and fetch byte rates, request time) over the
    /// Kafka protocol.
    Quota(corelog::quota_cli::QuotaArgs),
    /// Look at a cluster: nodes, controller, metadata quorum and partition health.
    Cluster(corelog::cluster_cli::ClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => corelog::serve::run(&args),
        Command::Tune(args) => return corelog::tune::run(&args),
        Command::Bench(args) => corelog::bench::run(&args),
        Command::Topic(args) => corelog::topic::run(&args),
        Command::Group(args) => corelog::group_cli::run(&args),
        Command::User(args) => corelog::user_cli::run(&args),
        Command::Acl(args) => corelog::acl_cli::run(&args),
        Command::Quota(args) => corelog::quota_cli::run(&args),
        Command::Cluster(args) => corelog::cluster_cli::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(io::stderr(), "corelog: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// stderr for log lines, dropping what it cannot write (see the module documentation).
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORELOG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Its report of a failed write is an `eprintln!`, which panics (see above).
        .log_internal_errors(false)
        .init();
}
