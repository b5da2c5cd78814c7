//! The `corelog` command line: `serve` runs the broker, `bench` loads one, `topic` administers
//! topics on one, `group` its consumer groups.

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("corelog: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORELOG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
