//! How findings and apply outcomes are printed: a short table for people, one JSON object for
//! scripts. Rendering builds strings so that it can be tested without a terminal.

use std::fmt::Write as _;

use serde::Serialize;

use super::{format_cpu_list, Action, Context, Finding, Outcome, Severity};

/// The JSON document of `tune check --json`.
#[derive(Serialize)]
struct CheckReport<'a> {
    shards: usize,
    shard_cpus: String,
    spare_cpus: String,
    data_dir: &'a str,
    /// The worst severity found; `bad` means exit status 1.
    worst: Severity,
    checks: &'a [Finding],
}

pub fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|finding| finding.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

pub fn check_json(context: &Context, findings: &[Finding]) -> String {
    let report = CheckReport {
        shards: context.shards,
        shard_cpus: format_cpu_list(context.shard_cpus()),
        spare_cpus: format_cpu_list(context.spare_cpus()),
        data_dir: &context.data_dir,
        worst: worst(findings),
        checks: findings,
    };
    serde_json::to_string_pretty(&report).expect("findings serialise")
}

fn label(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "ok  ",
        Severity::Warn => "WARN",
        Severity::Bad => "BAD ",
    }
}

/// Columns a text report line stays within.
const LINE_COLUMNS_MAX: usize = 100;

/// Wraps each line of `text` at word boundaries so that, behind `pad`, it fits the line width;
/// lines after the first are indented by `pad`.
pub fn indented(text: &str, pad: &str) -> String {
    let width = LINE_COLUMNS_MAX.saturating_sub(pad.len()).max(20);
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut current = String::new();
        for word in line.split_whitespace() {
            if !current.is_empty() && current.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        lines.push(current);
    }
    lines.join(&format!("\n{pad}"))
}

pub fn check_text(context: &Context, findings: &[Finding]) -> String {
    let mut out = String::new();
    let spare = context.spare_cpus();
    let _ = writeln!(
        out,
        "corelog tune check: shards {} on cpus {} (spare cpus: {}), data directory {}\n",
        context.shards,
        format_cpu_list(context.shard_cpus()),
        if spare.is_empty() {
            "none".into()
        } else {
            format_cpu_list(spare)
        },
        context.data_dir
    );
    for finding in findings {
        let _ = writeln!(
            out,
            "{} {:<17} {}  (recommended: {})",
            label(finding.severity),
            finding.name,
            finding.current,
            finding.recommended
        );
        if finding.severity == Severity::Ok {
            continue;
        }
        let pad = " ".repeat(7);
        let _ = writeln!(out, "{pad}reads: {}", finding.reads);
        let inner = format!("{pad}       ");
        let _ = writeln!(out, "{pad}why:   {}", indented(&finding.why, &inner));
        if finding.fix.is_some() {
            let _ = writeln!(out, "{pad}fix:   `corelog tune apply` can change this");
        }
        if let Some(advice) = &finding.advice {
            let _ = writeln!(out, "{pad}note:  {}", indented(advice, &inner));
        }
    }
    let count = |severity| findings.iter().filter(|f| f.severity == severity).count();
    let _ = writeln!(
        out,
        "\n{} ok, {} warn, {} bad; exit status {}",
        count(Severity::Ok),
        count(Severity::Warn),
        count(Severity::Bad),
        u8::from(worst(findings) == Severity::Bad)
    );
    out
}

/// One line per action: what, before, after (or why not).
pub fn outcome_line(action: &Action, outcome: &Outcome) -> String {
    let what = format!("{:<17} {}", action.check(), action.target());
    let value = action.value();
    match outcome {
        Outcome::Done { before, after } => format!("done      {what}: {before} -> {after}"),
        Outcome::Failed { before, error } => {
            format!("FAILED    {what}: {before} -> {value} refused: {error}")
        }
        Outcome::WouldDo { before } => format!("would set {what}: {before} -> {value}"),
        Outcome::NeedsRoot { before } => {
            format!("skipped   {what}: {before} -> {value} needs root")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{inspect_all, test_context, FakeHost, Resource};
    use super::*;

    fn findings() -> Vec<Finding> {
        let host = FakeHost::new()
            .file("/proc/self/status", "CapEff:\t0\n")
            .file("/proc/sys/vm/swappiness", "60\n")
            .limit(Resource::LockedMemory, Some(64 * 1024), Some(64 * 1024))
            .limit(Resource::OpenFiles, Some(1 << 20), Some(1 << 20));
        inspect_all(&host, &test_context(2, 2))
    }

    /// The table names the exit status, explains non-ok findings and keeps wrapped lines
    /// within the line width.
    #[test]
    fn text_report_explains_and_wraps() {
        let text = check_text(&test_context(2, 2), &findings());
        assert!(text.contains("BAD  locked_memory"), "{text}");
        assert!(text.contains("WARN swappiness"), "{text}");
        assert!(text.contains("1 bad; exit status 1"), "{text}");
        for line in text.lines().filter(|line| line.starts_with("       ")) {
            assert!(line.len() <= LINE_COLUMNS_MAX, "too long: {line}");
        }
    }

    /// The JSON report carries the worst severity and every finding with its fix.
    #[test]
    fn json_report_has_worst_and_fixes() {
        let json: serde_json::Value =
            serde_json::from_str(&check_json(&test_context(2, 2), &findings())).unwrap();
        assert_eq!(json["worst"], "bad");
        assert_eq!(json["shard_cpus"], "0-1");
        let swappiness = json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|check| check["name"] == "swappiness")
            .unwrap();
        assert_eq!(swappiness["fix"]["kind"], "write");
        assert_eq!(swappiness["fix"]["value"], "1");
    }
}
