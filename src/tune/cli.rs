//! The `corelog tune check|apply` commands: flags, the context they describe, exit statuses.
//!
//! Exit status: `check` exits 0 when no finding is `bad` and 1 otherwise; `apply` exits 0 when
//! every change it attempted succeeded (changes skipped for lack of root are not attempted) and
//! 1 otherwise. Bad flags exit 2 (clap).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{apply, inspect_all, parse_cpu_list, plan, report, Context, Fix, Outcome};
use super::{Host, RealHost, Severity};
use crate::limits::SHARDS_MAX;

#[derive(Args, Debug)]
pub struct TuneArgs {
    #[command(subcommand)]
    pub command: TuneCommand,
}

#[derive(Subcommand, Debug)]
pub enum TuneCommand {
    /// Report host settings that hurt a thread-per-core broker (exit 1 if any is bad).
    Check {
        #[command(flatten)]
        target: TargetArgs,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fix what `check` can fix (sysfs/procfs writes need root).
    Apply {
        #[command(flatten)]
        target: TargetArgs,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The broker layout to judge the host against.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Shards the broker will run (the first N online CPUs); default: every online CPU.
    #[arg(long)]
    pub shards: Option<usize>,
    /// The broker's data directory, whose disk is checked.
    #[arg(long, env = "CORELOG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Read and write the host under this directory instead of "/" (for tests).
    #[arg(long, hide = true, default_value = "/")]
    pub host_root: PathBuf,
}

pub fn run(args: &TuneArgs) -> ExitCode {
    match &args.command {
        TuneCommand::Check { target, json } => {
            let host = RealHost::new(target.host_root.clone());
            let context = context(&host, target);
            let findings = inspect_all(&host, &context);
            if *json {
                emit(&format!("{}\n", report::check_json(&context, &findings)));
            } else {
                emit(&report::check_text(&context, &findings));
            }
            ExitCode::from(u8::from(report::worst(&findings) == Severity::Bad))
        }
        TuneCommand::Apply { target, dry_run } => {
            let host = RealHost::new(target.host_root.clone());
            let context = context(&host, target);
            run_apply(&host, &context, *dry_run)
        }
    }
}

/// Writes to standard output; a closed pipe (`| head`) is not worth a panic.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn run_apply(host: &dyn Host, context: &Context, dry_run: bool) -> ExitCode {
    let findings = inspect_all(host, context);
    let actions = plan(&findings);
    let mut out = String::new();
    if dry_run {
        out.push_str("dry run: nothing is changed\n");
    }
    if actions.is_empty() {
        out.push_str("nothing to change\n");
    }
    let mut failed = 0;
    let mut needs_root = 0;
    for action in &actions {
        let outcome = apply::execute(host, action, dry_run);
        failed += usize::from(matches!(outcome, Outcome::Failed { .. }));
        needs_root += usize::from(matches!(outcome, Outcome::NeedsRoot { .. }));
        let _ = writeln!(out, "{}", report::outcome_line(action, &outcome));
    }
    if needs_root > 0 {
        let _ = writeln!(
            out,
            "\n{needs_root} change(s) need root: run `sudo corelog tune apply`"
        );
    }
    for finding in findings.iter().filter(|f| f.severity != Severity::Ok) {
        let Some(advice) = &finding.advice else {
            continue;
        };
        let heading = match finding.fix {
            Some(Fix::RaiseSoftLimit { .. }) => "only this process's soft limit changes; ",
            Some(Fix::Write { .. }) => "does not survive a reboot; ",
            None => "cannot be fixed here; ",
        };
        let text = format!("{}: {heading}{advice}", finding.name);
        let _ = writeln!(out, "\n{}", report::indented(&text, "    "));
    }
    emit(&out);
    ExitCode::from(u8::from(failed > 0))
}

/// The online CPUs, the shard count and the absolute data directory.
fn context(host: &dyn Host, target: &TargetArgs) -> Context {
    let online_cpus = host
        .read("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|text| parse_cpu_list(&text))
        .filter(|cpus| !cpus.is_empty())
        .unwrap_or_else(|| (0..crate::config::usable_cores()).collect());
    let shards = target
        .shards
        .unwrap_or(online_cpus.len())
        .clamp(1, SHARDS_MAX);
    Context {
        shards,
        online_cpus,
        data_dir: existing_ancestor(&target.data_dir),
    }
}

/// The absolute, symlink-free path of `dir`, or of its nearest existing ancestor when it does
/// not exist yet (the broker would create it on the same file system).
fn existing_ancestor(dir: &Path) -> String {
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(dir))
        .unwrap_or_else(|_| dir.to_path_buf());
    let found = absolute
        .ancestors()
        .find_map(|path| std::fs::canonicalize(path).ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    found.to_string_lossy().into_owned()
}
