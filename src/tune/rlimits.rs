//! Resource limits: locked memory (io_uring) and open files, against what N shards need.
//!
//! `tune apply` can only raise the soft limit of its own process, which helps nobody once it
//! exits; the findings therefore always print the limits.conf and systemd lines that make the
//! limit hold for the broker.

use super::host::Rlimit;
use super::{Check, Context, Finding, Fix, Host, Resource, Severity};

/// Locked memory each executor needs: glommio's I/O buffer (10 MiB by default) plus rings.
use crate::limits::LOCKED_MEMORY_BYTES_PER_SHARD as LOCKED_BYTES_PER_SHARD;
/// Descriptors one shard may hold: connections plus three files per segment, with headroom.
const OPEN_FILES_PER_SHARD: u64 = 16_384;
/// The least open-file limit recommended however few shards run.
const OPEN_FILES_MIN: u64 = 65_536;
/// CAP_IPC_LOCK's bit in the capability masks of /proc/self/status.
const CAP_IPC_LOCK_BIT: u32 = 14;

fn show(limit: Option<u64>, unit: u64, suffix: &str) -> String {
    match limit {
        None => "unlimited".into(),
        Some(value) => format!("{}{suffix}", value / unit),
    }
}

fn at_least(limit: Option<u64>, needed: u64) -> bool {
    limit.is_none_or(|value| value >= needed)
}

/// Whether this process has CAP_IPC_LOCK in its effective set (root normally does).
fn can_lock_freely(host: &dyn Host) -> bool {
    let Ok(status) = host.read("/proc/self/status") else {
        return host.is_root();
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_IPC_LOCK_BIT) != 0)
}

/// The soft limit `apply` can raise to: `needed` when the hard limit allows, else the hard one.
fn raise_to(limit: Rlimit, needed: u64, unlimited: bool) -> Option<u64> {
    match limit.hard {
        None if unlimited => None,
        None => Some(needed),
        Some(hard) => Some(hard.min(needed.max(limit.soft.unwrap_or(0)))),
    }
}

/// RLIMIT_MEMLOCK must cover every shard's io_uring buffers, unless CAP_IPC_LOCK exempts us.
pub struct LockedMemory;

impl Check for LockedMemory {
    fn name(&self) -> &'static str {
        "locked_memory"
    }

    fn inspect(&self, host: &dyn Host, context: &Context) -> Finding {
        let needed = LOCKED_BYTES_PER_SHARD * context.shards as u64;
        let mut finding = Finding {
            name: self.name(),
            reads: "getrlimit(RLIMIT_MEMLOCK), CapEff in /proc/self/status".into(),
            current: "unknown".into(),
            recommended: format!(
                "unlimited (at least {} KiB for {} shards)",
                needed / 1024,
                context.shards
            ),
            severity: Severity::Ok,
            why: "glommio locks its io_uring rings and I/O buffers in memory; below the limit \
                  the executors fail to start (`corelog serve` refuses to start). Root, or \
                  any process with CAP_IPC_LOCK, is exempt."
                .into(),
            fix: None,
            advice: Some(
                "persist for a service user `corelog` in /etc/security/limits.d/corelog.conf:\n\
                 corelog soft memlock unlimited\n\
                 corelog hard memlock unlimited\n\
                 or in the systemd unit: LimitMEMLOCK=infinity"
                    .into(),
            ),
        };
        let Ok(limit) = host.rlimit(Resource::LockedMemory) else {
            return finding;
        };
        finding.current = format!(
            "soft {}, hard {}",
            show(limit.soft, 1024, " KiB"),
            show(limit.hard, 1024, " KiB")
        );
        if can_lock_freely(host) {
            // Judged for this process: a broker started as another user needs the limit.
            finding
                .current
                .push_str("; this process is exempt (CAP_IPC_LOCK)");
            return finding;
        }
        if at_least(limit.soft, needed) {
            return finding;
        }
        finding.severity = Severity::Bad;
        if at_least(limit.hard, needed) {
            finding.fix = Some(Fix::RaiseSoftLimit {
                resource: Resource::LockedMemory,
                soft: raise_to(limit, needed, true),
            });
        }
        finding
    }
}

/// RLIMIT_NOFILE must cover every shard's connections and segment files.
pub struct OpenFiles;

impl Check for OpenFiles {
    fn name(&self) -> &'static str {
        "open_files"
    }

    fn inspect(&self, host: &dyn Host, context: &Context) -> Finding {
        let needed = (OPEN_FILES_PER_SHARD * context.shards as u64).max(OPEN_FILES_MIN);
        let mut finding = Finding {
            name: self.name(),
            reads: "getrlimit(RLIMIT_NOFILE)".into(),
            current: "unknown".into(),
            recommended: format!("at least {needed} for {} shards", context.shards),
            severity: Severity::Ok,
            why: "Every client connection and every segment, index and time-index file holds \
                  a descriptor; at the limit, accept and segment roll fail with EMFILE."
                .into(),
            fix: None,
            advice: Some(format!(
                "persist for a service user `corelog` in /etc/security/limits.d/corelog.conf:\n\
                 corelog soft nofile {needed}\n\
                 corelog hard nofile {needed}\n\
                 or in the systemd unit: LimitNOFILE={needed}"
            )),
        };
        let Ok(limit) = host.rlimit(Resource::OpenFiles) else {
            return finding;
        };
        finding.current = format!(
            "soft {}, hard {}",
            show(limit.soft, 1, ""),
            show(limit.hard, 1, "")
        );
        if at_least(limit.soft, needed) {
            return finding;
        }
        finding.severity = Severity::Warn;
        if limit.hard.is_none_or(|hard| hard > limit.soft.unwrap_or(0)) {
            finding.fix = Some(Fix::RaiseSoftLimit {
                resource: Resource::OpenFiles,
                soft: raise_to(limit, needed, false),
            });
        }
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_context, FakeHost};
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// 8 MiB of locked memory is too little for 2 shards without CAP_IPC_LOCK: bad, and the
    /// soft limit is raised to unlimited when the hard limit allows.
    #[test]
    fn locked_memory_too_low_is_bad() {
        let host = FakeHost::new()
            .file(
                "/proc/self/status",
                "Name:\tcorelog\nCapEff:\t0000000000000000\n",
            )
            .limit(Resource::LockedMemory, Some(8 * MIB), None);
        let finding = LockedMemory.inspect(&host, &test_context(2, 2));
        assert_eq!(finding.severity, Severity::Bad);
        assert!(matches!(
            finding.fix,
            Some(Fix::RaiseSoftLimit { soft: None, .. })
        ));
        assert!(finding.advice.unwrap().contains("LimitMEMLOCK=infinity"));
    }

    /// With a hard limit below the need there is nothing apply can do.
    #[test]
    fn locked_memory_hard_limit_too_low_has_no_fix() {
        let host = FakeHost::new()
            .file("/proc/self/status", "CapEff:\t0000000000000000\n")
            .limit(Resource::LockedMemory, Some(8 * MIB), Some(8 * MIB));
        let finding = LockedMemory.inspect(&host, &test_context(2, 2));
        assert_eq!(finding.severity, Severity::Bad);
        assert_eq!(finding.fix, None);
    }

    /// CAP_IPC_LOCK (root) exempts the process from the limit.
    #[test]
    fn locked_memory_exempt_with_cap_ipc_lock() {
        let host = FakeHost::new()
            .file("/proc/self/status", "CapEff:\t000001ffffffffff\n")
            .limit(Resource::LockedMemory, Some(8 * MIB), Some(8 * MIB));
        let finding = LockedMemory.inspect(&host, &test_context(2, 2));
        assert_eq!(finding.severity, Severity::Ok);
        assert!(finding.current.contains("exempt"), "{}", finding.current);
    }

    /// An open-file soft limit under the need is raised up to the need, capped by the hard one.
    #[test]
    fn open_files_raised_within_hard_limit() {
        let host = FakeHost::new().limit(Resource::OpenFiles, Some(1024), Some(1_048_576));
        let finding = OpenFiles.inspect(&host, &test_context(8, 8));
        assert_eq!(finding.severity, Severity::Warn);
        assert!(matches!(
            finding.fix,
            Some(Fix::RaiseSoftLimit {
                soft: Some(131_072),
                ..
            })
        ));
        assert!(finding.advice.unwrap().contains("LimitNOFILE=131072"));

        let host = FakeHost::new().limit(Resource::OpenFiles, Some(1024), Some(20_000));
        let finding = OpenFiles.inspect(&host, &test_context(1, 1));
        assert!(matches!(
            finding.fix,
            Some(Fix::RaiseSoftLimit {
                soft: Some(20_000),
                ..
            })
        ));

        let host = FakeHost::new().limit(Resource::OpenFiles, Some(20_000), Some(20_000));
        assert_eq!(OpenFiles.inspect(&host, &test_context(1, 1)).fix, None);

        let host = FakeHost::new().limit(Resource::OpenFiles, Some(100_000), Some(100_000));
        assert_eq!(
            OpenFiles.inspect(&host, &test_context(1, 1)).severity,
            Severity::Ok
        );
    }
}
