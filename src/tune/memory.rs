//! Memory checks: transparent huge pages (enabled and defrag) and `vm.swappiness`.

use super::{options, selected, Check, Context, Finding, Fix, Host, Severity};

const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";
const SWAPPINESS: &str = "/proc/sys/vm/swappiness";
const SWAPPINESS_WANTED: u32 = 1;

/// Judges a THP selector file: `always` is a warning, anything else is fine.
fn inspect_thp(host: &dyn Host, name: &'static str, file: &str, why: &str) -> Finding {
    let path = format!("{THP_DIR}/{file}");
    let mut finding = Finding {
        name,
        reads: path.clone(),
        current: "not exposed".into(),
        recommended: "madvise or never".into(),
        severity: Severity::Ok,
        why: why.into(),
        fix: None,
        advice: None,
    };
    let Ok(text) = host.read(&path) else {
        return finding;
    };
    let Some(current) = selected(&text) else {
        finding.current = format!("unreadable selector {:?}", text.trim());
        return finding;
    };
    finding.current = current.to_string();
    if current != "always" {
        return finding;
    }
    finding.severity = Severity::Warn;
    if options(&text).contains(&"madvise") {
        finding.fix = Some(Fix::Write {
            paths: vec![path],
            value: "madvise".into(),
        });
    }
    finding.advice = Some(format!(
        "persist with the kernel parameter `transparent_hugepage=madvise` (enabled) or a \
         boot-time unit writing madvise to {THP_DIR}/{file}"
    ));
    finding
}

/// `transparent_hugepage/enabled` should not be `always`.
pub struct HugePagesEnabled;

impl Check for HugePagesEnabled {
    fn name(&self) -> &'static str {
        "thp_enabled"
    }

    fn inspect(&self, host: &dyn Host, _context: &Context) -> Finding {
        inspect_thp(
            host,
            self.name(),
            "enabled",
            "With THP always on, every anonymous mapping may be backed by huge pages: the \
             kernel's khugepaged collapses pages behind the broker's back and a page fault can \
             wait for a 2 MiB page to be assembled; corelog gains nothing from it (its I/O \
             buffers are registered with io_uring, its cache is small allocations).",
        )
    }
}

/// `transparent_hugepage/defrag` should not be `always`.
pub struct HugePagesDefrag;

impl Check for HugePagesDefrag {
    fn name(&self) -> &'static str {
        "thp_defrag"
    }

    fn inspect(&self, host: &dyn Host, _context: &Context) -> Finding {
        inspect_thp(
            host,
            self.name(),
            "defrag",
            "defrag=always makes a page fault compact memory synchronously to find a huge \
             page; that stall lands on whatever request the shard was serving, as a \
             millisecond-scale latency spike.",
        )
    }
}

/// `vm.swappiness` should be 1: keep the broker's memory resident, drop page cache first.
pub struct Swappiness;

impl Check for Swappiness {
    fn name(&self) -> &'static str {
        "swappiness"
    }

    fn inspect(&self, host: &dyn Host, _context: &Context) -> Finding {
        let mut finding = Finding {
            name: self.name(),
            reads: SWAPPINESS.into(),
            current: "not exposed".into(),
            recommended: SWAPPINESS_WANTED.to_string(),
            severity: Severity::Ok,
            why: "corelog reads the log with O_DIRECT and keeps recent batches in its own \
                  cache; if that cache is swapped out, a fetch that should be a memory copy \
                  waits for a swap-in. A low swappiness makes the kernel reclaim page cache \
                  first; 1 rather than 0 keeps swap as a last resort before the OOM killer."
                .into(),
            fix: None,
            advice: None,
        };
        let Ok(text) = host.read(SWAPPINESS) else {
            return finding;
        };
        finding.current = text.trim().to_string();
        let Ok(value) = text.trim().parse::<u32>() else {
            return finding;
        };
        if value <= SWAPPINESS_WANTED {
            return finding;
        }
        finding.severity = Severity::Warn;
        finding.fix = Some(Fix::Write {
            paths: vec![SWAPPINESS.into()],
            value: SWAPPINESS_WANTED.to_string(),
        });
        finding.advice = Some(format!(
            "persist with a line `vm.swappiness = {SWAPPINESS_WANTED}` in \
             /etc/sysctl.d/90-corelog.conf"
        ));
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_context, FakeHost};
    use super::*;

    /// THP `always [madvise] never` is fine; `[always]` is fixed to madvise.
    #[test]
    fn thp_always_is_fixed_to_madvise() {
        let enabled = format!("{THP_DIR}/enabled");
        let host = FakeHost::new().file(&enabled, "always [madvise] never\n");
        let finding = HugePagesEnabled.inspect(&host, &test_context(1, 1));
        assert_eq!(
            (finding.severity, finding.current.as_str()),
            (Severity::Ok, "madvise")
        );

        let host = FakeHost::new().file(&enabled, "[always] madvise never\n");
        let finding = HugePagesEnabled.inspect(&host, &test_context(1, 1));
        assert_eq!(finding.severity, Severity::Warn);
        assert_eq!(
            finding.fix,
            Some(Fix::Write {
                paths: vec![enabled],
                value: "madvise".into()
            })
        );
    }

    /// defrag's longer selector parses, and a missing file is "not exposed".
    #[test]
    fn thp_defrag_selector_and_absence() {
        let defrag = format!("{THP_DIR}/defrag");
        let host = FakeHost::new().file(&defrag, "always defer defer+madvise [madvise] never\n");
        let finding = HugePagesDefrag.inspect(&host, &test_context(1, 1));
        assert_eq!(
            (finding.severity, finding.current.as_str()),
            (Severity::Ok, "madvise")
        );

        let finding = HugePagesDefrag.inspect(&FakeHost::new(), &test_context(1, 1));
        assert_eq!(finding.severity, Severity::Ok);
        assert_eq!(finding.current, "not exposed");
    }

    /// Swappiness 60 is fixed to 1; 1 and 0 are left alone.
    #[test]
    fn swappiness_is_lowered_to_one() {
        let host = FakeHost::new().file(SWAPPINESS, "60\n");
        let finding = Swappiness.inspect(&host, &test_context(1, 1));
        assert_eq!(finding.severity, Severity::Warn);
        assert_eq!(finding.current, "60");
        assert!(finding.advice.unwrap().contains("vm.swappiness = 1"));
        for fine in ["1\n", "0\n"] {
            let host = FakeHost::new().file(SWAPPINESS, fine);
            let finding = Swappiness.inspect(&host, &test_context(1, 1));
            assert_eq!(finding.severity, Severity::Ok, "{fine}");
            assert_eq!(finding.fix, None);
        }
    }
}
