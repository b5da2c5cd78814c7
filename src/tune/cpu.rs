//! CPU checks: the frequency governor of each CPU and the kernel's clocksource.

use super::{options, Check, Context, Finding, Fix, Host, Severity};

const CPU_DIR: &str = "/sys/devices/system/cpu";
const GOVERNOR_WANTED: &str = "performance";
const CLOCKSOURCE_DIR: &str = "/sys/devices/system/clocksource/clocksource0";
const CLOCKSOURCE_WANTED: &str = "tsc";

/// `scaling_governor` of every CPU should be `performance`.
pub struct Governor;

impl Check for Governor {
    fn name(&self) -> &'static str {
        "cpu_governor"
    }

    fn inspect(&self, host: &dyn Host, _context: &Context) -> Finding {
        let mut finding = Finding {
            name: self.name(),
            reads: format!("{CPU_DIR}/cpu*/cpufreq/scaling_governor"),
            current: "not exposed (no cpufreq; usual on virtual machines)".into(),
            recommended: GOVERNOR_WANTED.into(),
            severity: Severity::Ok,
            why: "A core that clocks down while it waits for the next request takes time to \
                  clock up again; with one pinned shard per core that time lands on requests."
                .into(),
            fix: None,
            advice: None,
        };
        let governors = read_governors(host);
        if governors.is_empty() {
            return finding;
        }
        let slow: Vec<&(usize, String)> = governors
            .iter()
            .filter(|(_, governor)| governor != GOVERNOR_WANTED)
            .collect();
        finding.current = summarize(&governors);
        if slow.is_empty() {
            return finding;
        }
        finding.severity = Severity::Warn;
        let available = host
            .read(&format!(
                "{CPU_DIR}/cpu{}/cpufreq/scaling_available_governors",
                slow[0].0
            ))
            .unwrap_or_default();
        if !available.is_empty() && !options(&available).contains(&GOVERNOR_WANTED) {
            finding.advice = Some(format!(
                "the driver offers only: {}; set performance in the BIOS/firmware power profile",
                available.trim()
            ));
            return finding;
        }
        finding.fix = Some(Fix::Write {
            paths: slow.iter().map(|(cpu, _)| governor_path(*cpu)).collect(),
            value: GOVERNOR_WANTED.into(),
        });
        finding.advice = Some(
            "persist with a boot-time unit (`cpupower frequency-set -g performance`) or \
             tuned's latency-performance profile"
                .into(),
        );
        finding
    }
}

fn governor_path(cpu: usize) -> String {
    format!("{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor")
}

/// (cpu, governor) for every CPU that exposes one, ascending by CPU.
fn read_governors(host: &dyn Host) -> Vec<(usize, String)> {
    let mut cpus: Vec<usize> = host
        .list(CPU_DIR)
        .unwrap_or_default()
        .iter()
        .filter_map(|name| name.strip_prefix("cpu")?.parse().ok())
        .collect();
    cpus.sort_unstable();
    cpus.into_iter()
        .filter_map(|cpu| {
            let governor = host.read(&governor_path(cpu)).ok()?;
            Some((cpu, governor.trim().to_string()))
        })
        .collect()
}

/// "performance on cpu 0-3, powersave on cpu 4-7".
fn summarize(governors: &[(usize, String)]) -> String {
    let mut names: Vec<&str> = governors.iter().map(|(_, g)| g.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let parts: Vec<String> = names
        .iter()
        .map(|name| {
            let cpus: Vec<usize> = governors
                .iter()
                .filter(|(_, g)| g == name)
                .map(|(cpu, _)| *cpu)
                .collect();
            format!("{name} on cpu {}", super::format_cpu_list(&cpus))
        })
        .collect();
    parts.join(", ")
}

/// The clocksource should be `tsc` when the kernel offers it.
pub struct Clocksource;

impl Check for Clocksource {
    fn name(&self) -> &'static str {
        "clocksource"
    }

    fn inspect(&self, host: &dyn Host, _context: &Context) -> Finding {
        let current_path = format!("{CLOCKSOURCE_DIR}/current_clocksource");
        let available_path = format!("{CLOCKSOURCE_DIR}/available_clocksource");
        let mut finding = Finding {
            name: self.name(),
            reads: format!("{current_path}, {available_path}"),
            current: "not exposed".into(),
            recommended: CLOCKSOURCE_WANTED.into(),
            severity: Severity::Ok,
            why: "The broker reads the clock for every request, timeout and latency sample; \
                  tsc is read in user space through the vDSO, other sources (hpet, acpi_pm, \
                  sometimes kvm-clock) cost a system call or a slow device read."
                .into(),
            fix: None,
            advice: None,
        };
        let Ok(current) = host.read(&current_path) else {
            return finding;
        };
        let current = current.trim().to_string();
        let available = host.read(&available_path).unwrap_or_default();
        finding.current = current.clone();
        if current == CLOCKSOURCE_WANTED {
            return finding;
        }
        if !options(&available).contains(&CLOCKSOURCE_WANTED) {
            finding.advice = Some(format!(
                "tsc is not offered (available: {}); the kernel judged it unstable here",
                available.trim()
            ));
            return finding;
        }
        finding.severity = Severity::Warn;
        finding.fix = Some(Fix::Write {
            paths: vec![current_path],
            value: CLOCKSOURCE_WANTED.into(),
        });
        finding.advice = Some("persist with the kernel parameter `clocksource=tsc`".into());
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_context, FakeHost};
    use super::*;

    /// Without cpufreq (a VM) the governor is reported as not exposed, not as an error.
    #[test]
    fn governor_absent_is_ok() {
        let host = FakeHost::new().file("/sys/devices/system/cpu/online", "0-1\n");
        let finding = Governor.inspect(&host, &test_context(2, 2));
        assert_eq!(finding.severity, Severity::Ok);
        assert!(
            finding.current.contains("not exposed"),
            "{}",
            finding.current
        );
        assert_eq!(finding.fix, None);
    }

    /// CPUs on powersave are listed, and the fix writes performance to exactly those.
    #[test]
    fn governor_powersave_is_fixed_per_cpu() {
        let host = FakeHost::new()
            .file(&governor_path(0), "performance\n")
            .file(&governor_path(1), "powersave\n")
            .file(&governor_path(2), "powersave\n")
            .file(
                "/sys/devices/system/cpu/cpu1/cpufreq/scaling_available_governors",
                "performance powersave\n",
            );
        let finding = Governor.inspect(&host, &test_context(3, 3));
        assert_eq!(finding.severity, Severity::Warn);
        assert_eq!(
            finding.current,
            "performance on cpu 0, powersave on cpu 1-2"
        );
        assert_eq!(
            finding.fix,
            Some(Fix::Write {
                paths: vec![governor_path(1), governor_path(2)],
                value: "performance".into()
            })
        );
    }

    /// A driver without the performance governor gets advice, not a write that would fail.
    #[test]
    fn governor_without_performance_has_no_fix() {
        let host = FakeHost::new().file(&governor_path(0), "schedutil\n").file(
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors",
            "schedutil\n",
        );
        let finding = Governor.inspect(&host, &test_context(1, 1));
        assert_eq!(finding.severity, Severity::Warn);
        assert_eq!(finding.fix, None);
        assert!(finding.advice.unwrap().contains("BIOS"));
    }

    /// kvm-clock with tsc available is a warning with a fix; without tsc it is left alone.
    #[test]
    fn clocksource_prefers_tsc_when_offered() {
        let dir = "/sys/devices/system/clocksource/clocksource0";
        let host = FakeHost::new()
            .file(&format!("{dir}/current_clocksource"), "kvm-clock\n")
            .file(
                &format!("{dir}/available_clocksource"),
                "kvm-clock tsc acpi_pm\n",
            );
        let finding = Clocksource.inspect(&host, &test_context(1, 1));
        assert_eq!(finding.severity, Severity::Warn);
        assert!(matches!(finding.fix, Some(Fix::Write { ref value, .. }) if value == "tsc"));

        let host = FakeHost::new()
            .file(&format!("{dir}/current_clocksource"), "hpet\n")
            .file(&format!("{dir}/available_clocksource"), "hpet acpi_pm\n");
        let finding = Clocksource.inspect(&host, &test_context(1, 1));
        assert_eq!(finding.severity, Severity::Ok);
        assert_eq!(finding.fix, None);

        let host = FakeHost::new()
            .file(&format!("{dir}/current_clocksource"), "tsc\n")
            .file(&format!("{dir}/available_clocksource"), "tsc kvm-clock\n");
        assert_eq!(
            Clocksource.inspect(&host, &test_context(1, 1)).current,
            "tsc"
        );
    }
}
