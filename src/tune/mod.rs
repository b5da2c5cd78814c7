//! `corelog tune`: what on this host hurts a thread-per-core broker, and fixing what can be fixed.
//!
//! Each setting is one [`Check`]: it reads the host through [`Host`] and returns one [`Finding`]
//! (current value, recommended value, severity, why, and an optional [`Fix`]). `check` prints the
//! findings; `apply` carries out the fixes of the findings that are not `ok`. Adding a setting is
//! one struct in one of the files here plus one line in [`all_checks`].
//!
//! Invariants: checks never write; a value the host does not expose (no cpufreq on a VM, data
//! directory on tmpfs) is reported as such with severity `ok`, never as an error; `apply` writes
//! only the sysfs/procfs paths a check put in its fix and goes on after a failed write.

mod apply;
mod cli;
mod cpu;
mod disk;
pub mod host;
mod irq;
mod memory;
mod report;
mod rlimits;

use serde::Serialize;

pub use apply::{plan, Action, Outcome};
pub use cli::{run, TuneArgs};
pub use host::{FakeHost, Host, RealHost, Resource};

/// How much a finding hurts. Ordered: `Ok < Warn < Bad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// As recommended, or not exposed on this host.
    Ok,
    /// Costs latency or throughput; the broker runs.
    Warn,
    /// The broker fails to start or fails under load.
    Bad,
}

/// A change `tune apply` can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fix {
    /// Write `value` to each path in `paths` (sysfs or procfs; needs root).
    Write { paths: Vec<String>, value: String },
    /// Raise the soft limit of the running process (`None`: unlimited).
    RaiseSoftLimit {
        resource: Resource,
        soft: Option<u64>,
    },
}

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub name: &'static str,
    /// The files or calls the value comes from.
    pub reads: String,
    pub current: String,
    pub recommended: String,
    pub severity: Severity,
    pub why: String,
    /// Present when `tune apply` can improve the setting.
    pub fix: Option<Fix>,
    /// What to do by hand: why there is no fix, or how to make a fix persistent.
    pub advice: Option<String>,
}

/// The broker layout the checks judge the host against.
#[derive(Debug, Clone)]
pub struct Context {
    /// Shards the broker would run (the first `shards` online CPUs).
    pub shards: usize,
    /// The online CPUs, ascending.
    pub online_cpus: Vec<usize>,
    /// Absolute path of the data directory (or of its nearest existing ancestor).
    pub data_dir: String,
}

impl Context {
    /// The CPUs shards would be pinned to: the first `shards` online CPUs.
    pub fn shard_cpus(&self) -> &[usize] {
        &self.online_cpus[..self.shards.min(self.online_cpus.len())]
    }

    /// Online CPUs no shard runs on.
    pub fn spare_cpus(&self) -> &[usize] {
        &self.online_cpus[self.shards.min(self.online_cpus.len())..]
    }
}

/// One host setting.
pub trait Check {
    /// A stable identifier (`snake_case`), used in JSON output and tests.
    fn name(&self) -> &'static str;
    /// Reads the setting and judges it; never writes.
    fn inspect(&self, host: &dyn Host, context: &Context) -> Finding;
}

/// Every check, in report order.
pub fn all_checks() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(cpu::Governor),
        Box::new(irq::IrqAffinity),
        Box::new(disk::Scheduler),
        Box::new(disk::QueueDepth),
        Box::new(memory::HugePagesEnabled),
        Box::new(memory::HugePagesDefrag),
        Box::new(memory::Swappiness),
        Box::new(rlimits::LockedMemory),
        Box::new(rlimits::OpenFiles),
        Box::new(cpu::Clocksource),
    ]
}

/// The names of every check, in report order.
pub fn check_names() -> Vec<&'static str> {
    all_checks().iter().map(|check| check.name()).collect()
}

/// Runs every check.
pub fn inspect_all(host: &dyn Host, context: &Context) -> Vec<Finding> {
    all_checks()
        .iter()
        .map(|check| check.inspect(host, context))
        .collect()
}

/// Parses a kernel CPU list such as "0-3,8,10-11".
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((low, high)) => {
                let (low, high): (usize, usize) = (low.parse().ok()?, high.parse().ok()?);
                if low > high || high - low > 65_536 {
                    return None;
                }
                cpus.extend(low..=high);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// Formats CPUs as a kernel CPU list ("0-3,8").
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let start = cpus[index];
        let mut end = start;
        while index + 1 < cpus.len() && cpus[index + 1] == end + 1 {
            index += 1;
            end = cpus[index];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        index += 1;
    }
    parts.join(",")
}

/// The bracketed choice of a sysfs selector such as "always [madvise] never".
pub fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')?;
    let end = start + text[start..].find(']')?;
    Some(&text[start + 1..end])
}

/// The options of a sysfs selector, brackets removed.
pub fn options(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .map(|word| word.trim_start_matches('[').trim_end_matches(']'))
        .collect()
}

/// A context for unit tests: `shards` shards on `cpus` online CPUs, data under /data.
#[cfg(test)]
pub(crate) fn test_context(shards: usize, cpus: usize) -> Context {
    Context {
        shards,
        online_cpus: (0..cpus).collect(),
        data_dir: "/data".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU lists round-trip through the kernel's range syntax, and garbage is refused.
    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(format_cpu_list(&[]), "");
    }

    /// A sysfs selector's bracketed word is the current choice.
    #[test]
    fn selectors_parse() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected("none"), None);
        assert_eq!(options("[mq-deadline] none"), vec!["mq-deadline", "none"]);
    }

    /// Shard CPUs are the first N online CPUs; the rest are spare.
    #[test]
    fn shard_and_spare_cpus() {
        let context = Context {
            shards: 2,
            online_cpus: vec![0, 1, 2, 3],
            data_dir: "/".into(),
        };
        assert_eq!(context.shard_cpus(), &[0, 1]);
        assert_eq!(context.spare_cpus(), &[2, 3]);
    }
}
