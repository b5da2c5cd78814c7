//! `tune apply`: turns the fixes of the findings that are not `ok` into single actions (one
//! path or one limit each) and carries them out, so that one refused write is reported and
//! the others still happen.

use super::host::Rlimit;
use super::{Finding, Fix, Host, Resource, Severity};

/// One change: a value into one file, or one soft limit of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Write {
        check: &'static str,
        path: String,
        value: String,
    },
    RaiseSoftLimit {
        check: &'static str,
        resource: Resource,
        soft: Option<u64>,
    },
}

impl Action {
    pub fn check(&self) -> &'static str {
        match self {
            Action::Write { check, .. } | Action::RaiseSoftLimit { check, .. } => check,
        }
    }

    /// What is changed, for the report ("/proc/sys/vm/swappiness", "RLIMIT_NOFILE (soft)").
    pub fn target(&self) -> String {
        match self {
            Action::Write { path, .. } => path.clone(),
            Action::RaiseSoftLimit { resource, .. } => {
                format!("{} soft limit", resource.kernel_name())
            }
        }
    }

    pub fn value(&self) -> String {
        match self {
            Action::Write { value, .. } => value.clone(),
            Action::RaiseSoftLimit { soft, .. } => show_limit(*soft),
        }
    }
}

fn show_limit(limit: Option<u64>) -> String {
    limit.map_or("unlimited".into(), |value| value.to_string())
}

/// What became of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Carried out; the value read back afterwards.
    Done { before: String, after: String },
    /// Attempted and refused.
    Failed { before: String, error: String },
    /// `--dry-run`: nothing attempted.
    WouldDo { before: String },
    /// Not attempted: writing to /sys or /proc/sys needs root.
    NeedsRoot { before: String },
}

/// The actions for every finding that is not `ok` and has a fix, in finding order.
pub fn plan(findings: &[Finding]) -> Vec<Action> {
    let mut actions = Vec::new();
    for finding in findings.iter().filter(|f| f.severity != Severity::Ok) {
        match &finding.fix {
            Some(Fix::Write { paths, value }) => {
                actions.extend(paths.iter().map(|path| Action::Write {
                    check: finding.name,
                    path: path.clone(),
                    value: value.clone(),
                }));
            }
            Some(Fix::RaiseSoftLimit { resource, soft }) => {
                actions.push(Action::RaiseSoftLimit {
                    check: finding.name,
                    resource: *resource,
                    soft: *soft,
                });
            }
            None => {}
        }
    }
    actions
}

fn read_value(host: &dyn Host, action: &Action) -> String {
    match action {
        Action::Write { path, .. } => host
            .read(path)
            .map(|text| text.trim().to_string())
            .unwrap_or_else(|error| format!("unreadable ({error})")),
        Action::RaiseSoftLimit { resource, .. } => host
            .rlimit(*resource)
            .map(|limit: Rlimit| show_limit(limit.soft))
            .unwrap_or_else(|error| format!("unreadable ({error})")),
    }
}

/// Carries out one action (or, with `dry_run`, only reads what it would change).
pub fn execute(host: &dyn Host, action: &Action, dry_run: bool) -> Outcome {
    let before = read_value(host, action);
    if dry_run {
        return Outcome::WouldDo { before };
    }
    let result = match action {
        Action::Write { .. } if !host.is_root() => return Outcome::NeedsRoot { before },
        Action::Write { path, value, .. } => host.write(path, value),
        Action::RaiseSoftLimit { resource, soft, .. } => host.set_soft_rlimit(*resource, *soft),
    };
    match result {
        Ok(()) => Outcome::Done {
            after: read_value(host, action),
            before,
        },
        Err(error) => Outcome::Failed {
            before,
            error: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::{inspect_all, test_context, FakeHost};
    use super::*;

    fn host() -> FakeHost {
        FakeHost::new()
            .file("/proc/sys/vm/swappiness", "60\n")
            .file(
                "/sys/kernel/mm/transparent_hugepage/enabled",
                "[always] madvise never\n",
            )
            .file(
                "/sys/kernel/mm/transparent_hugepage/defrag",
                "always [madvise] never\n",
            )
            .file(
                "/proc/interrupts",
                "   CPU0 CPU1\n 40: 1 2 MSI 1-edge nvme0q1\n",
            )
            .file("/proc/irq/40/smp_affinity_list", "0-1\n")
            .refuse_write("/proc/irq/40/smp_affinity_list")
            .file("/proc/self/status", "CapEff:\t0\n")
            .limit(Resource::OpenFiles, Some(1024), Some(100_000))
            .limit(Resource::LockedMemory, None, None)
    }

    /// Only findings that are not ok and have a fix are planned, one action per path.
    #[test]
    fn plan_covers_fixable_findings_only() {
        let findings = inspect_all(&host(), &test_context(1, 2));
        let planned: Vec<(&str, String)> = plan(&findings)
            .iter()
            .map(|action| (action.check(), action.value()))
            .collect();
        assert_eq!(
            planned,
            vec![
                ("irq_affinity", "1".to_string()),
                ("thp_enabled", "madvise".to_string()),
                ("swappiness", "1".to_string()),
                ("open_files", "65536".to_string()),
            ]
        );
    }

    /// A dry run reads but changes nothing.
    #[test]
    fn dry_run_changes_nothing() {
        let host = host();
        let findings = inspect_all(&host, &test_context(1, 2));
        for action in plan(&findings) {
            assert!(matches!(
                execute(&host, &action, true),
                Outcome::WouldDo { .. }
            ));
        }
        assert_eq!(host.content("/proc/sys/vm/swappiness").unwrap(), "60\n");
        assert_eq!(host.rlimit(Resource::OpenFiles).unwrap().soft, Some(1024));
    }

    /// A refused write is reported and the other actions still happen, with before/after.
    #[test]
    fn refused_write_does_not_stop_the_rest() {
        let host = host();
        let findings = inspect_all(&host, &test_context(1, 2));
        let outcomes: Vec<Outcome> = plan(&findings)
            .iter()
            .map(|action| execute(&host, action, false))
            .collect();
        assert!(
            matches!(outcomes[0], Outcome::Failed { .. }),
            "{outcomes:?}"
        );
        assert_eq!(
            outcomes[2],
            Outcome::Done {
                before: "60".into(),
                after: "1".into()
            }
        );
        assert_eq!(host.rlimit(Resource::OpenFiles).unwrap().soft, Some(65_536));
        assert_eq!(
            host.content("/sys/kernel/mm/transparent_hugepage/enabled")
                .unwrap(),
            "madvise\n"
        );
    }

    /// Without root, sysfs writes are not attempted but limits are still raised.
    #[test]
    fn without_root_writes_need_root() {
        let mut host = host();
        host.root = false;
        let findings = inspect_all(&host, &test_context(1, 2));
        let actions = plan(&findings);
        let swappiness = actions.iter().find(|a| a.check() == "swappiness").unwrap();
        assert!(matches!(
            execute(&host, swappiness, false),
            Outcome::NeedsRoot { .. }
        ));
        assert_eq!(host.content("/proc/sys/vm/swappiness").unwrap(), "60\n");
        let files = actions.iter().find(|a| a.check() == "open_files").unwrap();
        assert!(matches!(execute(&host, files, false), Outcome::Done { .. }));
    }
}
