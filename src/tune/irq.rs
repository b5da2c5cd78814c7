//! Device interrupts against the shards' cores: an interrupt handled on a shard's core preempts
//! that shard, so device IRQs should be steered to cores no shard runs on, when there are any.

use super::{format_cpu_list, parse_cpu_list, Check, Context, Finding, Fix, Host, Severity};

const INTERRUPTS: &str = "/proc/interrupts";

/// Device IRQs whose affinity includes a shard's CPU.
pub struct IrqAffinity;

/// A numbered (device) interrupt from /proc/interrupts.
#[derive(Debug, PartialEq)]
struct Irq {
    number: u32,
    /// The device name column ("virtio1-req.0", "nvme0q3").
    name: String,
}

fn affinity_path(irq: u32) -> String {
    format!("/proc/irq/{irq}/smp_affinity_list")
}

/// The numbered interrupts of /proc/interrupts; the per-CPU counters and the named
/// architecture interrupts (NMI, LOC, ...) are skipped, they cannot be steered.
fn parse_interrupts(text: &str) -> Vec<Irq> {
    let mut lines = text.lines();
    let cpu_columns = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    lines
        .filter_map(|line| {
            let (label, rest) = line.trim_start().split_once(':')?;
            let number = label.parse().ok()?;
            let fields: Vec<&str> = rest.split_whitespace().skip(cpu_columns).collect();
            let name = fields.last().copied().unwrap_or("?").to_string();
            Some(Irq { number, name })
        })
        .collect()
}

impl Check for IrqAffinity {
    fn name(&self) -> &'static str {
        "irq_affinity"
    }

    fn inspect(&self, host: &dyn Host, context: &Context) -> Finding {
        let shard_cpus = context.shard_cpus();
        let mut finding = Finding {
            name: self.name(),
            reads: format!("{INTERRUPTS}, /proc/irq/*/smp_affinity_list"),
            current: "not exposed".into(),
            recommended: format!(
                "no device IRQ on shard cpus {}",
                format_cpu_list(shard_cpus)
            ),
            severity: Severity::Ok,
            why: "An interrupt runs on whichever core its affinity names and preempts the \
                  shard pinned there: NIC and disk interrupts on a shard's core show up as \
                  latency spikes on its partitions."
                .into(),
            fix: None,
            advice: None,
        };
        let Ok(text) = host.read(INTERRUPTS) else {
            return finding;
        };
        let mut on_shards = Vec::new();
        for irq in parse_interrupts(&text) {
            let Ok(affinity) = host.read(&affinity_path(irq.number)) else {
                continue;
            };
            let Some(cpus) = parse_cpu_list(&affinity) else {
                continue;
            };
            if cpus.iter().any(|cpu| shard_cpus.contains(cpu)) {
                on_shards.push(irq);
            }
        }
        if on_shards.is_empty() {
            finding.current = "no device IRQ on a shard cpu".into();
            return finding;
        }
        finding.current = describe(&on_shards);
        finding.severity = Severity::Warn;
        let spare = context.spare_cpus();
        if spare.is_empty() {
            finding.advice = Some(format!(
                "every online CPU ({}) runs a shard, so there is no core to move interrupts to; \
                 run fewer --shards to leave a core for interrupts, or accept them spread out",
                format_cpu_list(&context.online_cpus)
            ));
            return finding;
        }
        finding.fix = Some(Fix::Write {
            paths: on_shards
                .iter()
                .map(|irq| affinity_path(irq.number))
                .collect(),
            value: format_cpu_list(spare),
        });
        finding.advice = Some(format!(
            "some IRQs (per-queue NVMe/virtio vectors managed by the kernel) refuse to move; \
             irqbalance undoes the change unless told IRQBALANCE_BANNED_CPULIST={}; \
             persist by setting /proc/irq/*/smp_affinity_list from a boot-time unit",
            format_cpu_list(shard_cpus)
        ));
        finding
    }
}

/// "3 IRQs: 36 virtio1-req.0, 41 virtio3-rx, ...", capped so the line stays readable.
fn describe(irqs: &[Irq]) -> String {
    const SHOWN_MAX: usize = 6;
    let mut names: Vec<String> = irqs
        .iter()
        .take(SHOWN_MAX)
        .map(|irq| format!("{} {}", irq.number, irq.name))
        .collect();
    if irqs.len() > SHOWN_MAX {
        names.push(format!("and {} more", irqs.len() - SHOWN_MAX));
    }
    format!("{} IRQs on shard cpus: {}", irqs.len(), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::{test_context, FakeHost};
    use super::*;

    const INTERRUPTS_TEXT: &str = "           CPU0       CPU1       CPU2       CPU3
 24:          1          0          0          0  IO-APIC   5-edge      ACPI:Ged
 36:          0     469972          0          0  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 41:       3533          0          0          0  PCI-MSIX-0000:00:04.0   1-edge      virtio3-rx
NMI:          0          0          0          0   Non-maskable interrupts
LOC:    1483751    1559895          0          0   Local timer interrupts
";

    fn host(affinity_36: &str, affinity_41: &str) -> FakeHost {
        FakeHost::new()
            .file(INTERRUPTS, INTERRUPTS_TEXT)
            .file(&affinity_path(24), "3\n")
            .file(&affinity_path(36), affinity_36)
            .file(&affinity_path(41), affinity_41)
    }

    /// Numbered IRQs are parsed with their device name; LOC/NMI lines are skipped.
    #[test]
    fn interrupts_parse() {
        let irqs = parse_interrupts(INTERRUPTS_TEXT);
        let numbers: Vec<u32> = irqs.iter().map(|irq| irq.number).collect();
        assert_eq!(numbers, vec![24, 36, 41]);
        assert_eq!(irqs[1].name, "virtio1-req.0");
    }

    /// IRQs whose affinity touches a shard's CPU are flagged and moved to the spare CPUs.
    #[test]
    fn irqs_on_shard_cores_move_to_spare_cores() {
        let host = host("0-3\n", "2\n");
        let finding = IrqAffinity.inspect(&host, &test_context(2, 4));
        assert_eq!(finding.severity, Severity::Warn);
        assert!(
            finding.current.contains("36 virtio1-req.0"),
            "{}",
            finding.current
        );
        assert!(!finding.current.contains("41"), "{}", finding.current);
        assert_eq!(
            finding.fix,
            Some(Fix::Write {
                paths: vec![affinity_path(36)],
                value: "2-3".into()
            })
        );
    }

    /// With a shard on every CPU there is nowhere to move IRQs: a warning that says why.
    #[test]
    fn no_spare_core_means_no_fix() {
        let host = host("0-3\n", "2\n");
        let finding = IrqAffinity.inspect(&host, &test_context(4, 4));
        assert_eq!(finding.severity, Severity::Warn);
        assert_eq!(finding.fix, None);
        assert!(finding.advice.unwrap().contains("fewer --shards"));
    }

    /// IRQs already off the shard cores are fine.
    #[test]
    fn irqs_off_shard_cores_are_ok() {
        let host = host("3\n", "2-3\n");
        let finding = IrqAffinity.inspect(&host, &test_context(2, 4));
        assert_eq!(finding.severity, Severity::Ok, "{}", finding.current);
        assert_eq!(finding.fix, None);
    }
}
