//! Disk checks for the device holding the data directory: its I/O scheduler and queue depth.
//!
//! The device is found as the kernel sees it: the mount holding the data directory in
//! /proc/self/mountinfo gives MAJ:MIN, /sys/dev/block/MAJ:MIN leads to the block device, and a
//! partition is followed to its parent disk, whose `queue/` holds the settings.

use super::{options, selected, Check, Context, Finding, Fix, Host, Severity};

const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Requests the device queue should accept: a few shards each keep several writes and reads
/// in flight, and a shallow queue serialises them in the block layer.
const QUEUE_REQUESTS_MIN: u64 = 64;

/// What kind of disk, which decides the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// NVMe, virtio or a stacked device (dm, md): the device or the layer below orders I/O.
    Fast,
    /// SATA/SAS SSDs and spinning disks: mq-deadline keeps reads from starving behind writes.
    Other,
}

/// The disk under the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Disk {
    /// The kernel name of the whole disk ("nvme0n1", "vda", "sda").
    name: String,
    kind: Kind,
    /// The mount point that holds the data directory.
    mount: String,
}

impl Disk {
    fn queue(&self, file: &str) -> String {
        format!("/sys/block/{}/queue/{file}", self.name)
    }

    fn wanted_scheduler(&self) -> &'static str {
        match self.kind {
            Kind::Fast => "none",
            Kind::Other => "mq-deadline",
        }
    }
}

/// Undoes mountinfo's octal escapes ("\040" for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` lies at or below the mount point `mount`, component-wise.
fn under(path: &str, mount: &str) -> bool {
    mount == "/"
        || path == mount
        || path
            .strip_prefix(mount)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// (mount point, "MAJ:MIN", source) of the mount holding `path`: the longest matching one.
fn find_mount(mountinfo: &str, path: &str) -> Option<(String, String, String)> {
    let mut best: Option<(String, String, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(device), Some(mount)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        let mount = unescape(mount);
        let source = line
            .split_once(" - ")
            .and_then(|(_, tail)| tail.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string();
        let longer = best
            .as_ref()
            .is_none_or(|(seen, _, _)| mount.len() >= seen.len());
        if under(path, &mount) && longer {
            best = Some((mount, device.to_string(), source));
        }
    }
    best
}

/// Finds the whole disk holding `path`, or says why there is none.
fn resolve(host: &dyn Host, path: &str) -> Result<Disk, String> {
    let mountinfo = host
        .read(MOUNTINFO)
        .map_err(|error| format!("cannot read {MOUNTINFO}: {error}"))?;
    let (mount, device, source) =
        find_mount(&mountinfo, path).ok_or_else(|| format!("no mount holds {path}"))?;
    // Anonymous devices (major 0: tmpfs, overlay, btrfs subvolumes) name no disk; btrfs still
    // names its device as the source.
    let sys_path = if !device.starts_with("0:") {
        format!("/sys/dev/block/{device}")
    } else if let Some(name) = source.strip_prefix("/dev/") {
        format!(
            "/sys/class/block/{}",
            name.rsplit('/').next().unwrap_or(name)
        )
    } else {
        return Err(format!(
            "{mount} is not on a block device (source {source})"
        ));
    };
    let target = host
        .read_link(&sys_path)
        .map_err(|error| format!("cannot resolve {sys_path}: {error}"))?;
    let mut components: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
    if host.read(&format!("{sys_path}/partition")).is_ok() {
        components.pop();
    }
    let name = components.last().ok_or("empty device link")?.to_string();
    let fast_name = ["nvme", "vd", "xvd", "dm-", "md"]
        .iter()
        .any(|prefix| name.starts_with(prefix));
    let kind = if fast_name || target.contains("/virtio") {
        Kind::Fast
    } else {
        Kind::Other
    };
    Ok(Disk { name, kind, mount })
}

fn disk_finding(name: &'static str, reads: String, recommended: &str, why: &str) -> Finding {
    Finding {
        name,
        reads,
        current: "unknown".into(),
        recommended: recommended.into(),
        severity: Severity::Ok,
        why: why.into(),
        fix: None,
        advice: None,
    }
}

/// The I/O scheduler: `none` for NVMe and virtio, `mq-deadline` for the rest.
pub struct Scheduler;

impl Check for Scheduler {
    fn name(&self) -> &'static str {
        "disk_scheduler"
    }

    fn inspect(&self, host: &dyn Host, context: &Context) -> Finding {
        let mut finding = disk_finding(
            self.name(),
            format!("{MOUNTINFO}, /sys/dev/block/MAJ:MIN, /sys/block/DISK/queue/scheduler"),
            "none (NVMe, virtio) or mq-deadline (other disks)",
            "corelog already batches and orders its writes (group commit, O_DIRECT); a \
             scheduler in between adds per-request CPU work and reorders for seeks that fast \
             devices do not have. On SATA/SAS disks mq-deadline keeps reads from starving.",
        );
        let disk = match resolve(host, &context.data_dir) {
            Ok(disk) => disk,
            Err(reason) => {
                finding.current = format!("not checked: {reason}");
                return finding;
            }
        };
        let wanted = disk.wanted_scheduler();
        finding.reads = disk.queue("scheduler");
        finding.recommended = format!("{wanted} for {}", disk.name);
        let Ok(text) = host.read(&disk.queue("scheduler")) else {
            finding.current = format!("not exposed for {}", disk.name);
            return finding;
        };
        // A queue with a single choice prints it without brackets ("none").
        let current = selected(&text).unwrap_or(text.trim()).to_string();
        finding.current = format!("{current} ({} on {})", disk.name, disk.mount);
        if current == wanted {
            return finding;
        }
        finding.severity = Severity::Warn;
        if !options(&text).contains(&wanted) {
            finding.advice = Some(format!("{wanted} is not available: load its module"));
            return finding;
        }
        finding.fix = Some(Fix::Write {
            paths: vec![disk.queue("scheduler")],
            value: wanted.into(),
        });
        finding.advice = Some(format!(
            "persist with a udev rule, e.g. /etc/udev/rules.d/60-corelog.rules:\n\
             ACTION==\"add|change\", KERNEL==\"{}\", ATTR{{queue/scheduler}}=\"{wanted}\"",
            disk.name
        ));
        finding
    }
}

/// The request queue depth (`nr_requests`): deep enough for every shard's I/O in flight.
pub struct QueueDepth;

impl Check for QueueDepth {
    fn name(&self) -> &'static str {
        "disk_queue_depth"
    }

    fn inspect(&self, host: &dyn Host, context: &Context) -> Finding {
        let mut finding = disk_finding(
            self.name(),
            format!("{MOUNTINFO}, /sys/dev/block/MAJ:MIN, /sys/block/DISK/queue/nr_requests"),
            &format!("at least {QUEUE_REQUESTS_MIN}"),
            "Every shard keeps several O_DIRECT writes, reads and syncs in flight through \
             io_uring; requests beyond the queue depth wait in the block layer and add \
             their wait to produce latency.",
        );
        let disk = match resolve(host, &context.data_dir) {
            Ok(disk) => disk,
            Err(reason) => {
                finding.current = format!("not checked: {reason}");
                return finding;
            }
        };
        finding.reads = disk.queue("nr_requests");
        let Ok(text) = host.read(&disk.queue("nr_requests")) else {
            finding.current = format!("not exposed for {}", disk.name);
            return finding;
        };
        finding.current = format!("{} ({})", text.trim(), disk.name);
        let Ok(depth) = text.trim().parse::<u64>() else {
            return finding;
        };
        if depth >= QUEUE_REQUESTS_MIN {
            return finding;
        }
        finding.severity = Severity::Warn;
        finding.fix = Some(Fix::Write {
            paths: vec![disk.queue("nr_requests")],
            value: QUEUE_REQUESTS_MIN.to_string(),
        });
        finding.advice = Some(format!(
            "the device may cap the depth below this; persist with a udev rule setting \
             ATTR{{queue/nr_requests}}=\"{QUEUE_REQUESTS_MIN}\" for KERNEL==\"{}\"",
            disk.name
        ));
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_context, FakeHost};
    use super::*;

    const MOUNTINFO_TEXT: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw
30 27 8:17 / /data rw,relatime - xfs /dev/sdb1 rw
31 27 0:40 / /data/tmp\\040dir rw - tmpfs tmpfs rw
";

    fn host(nvme_scheduler: &str, sd_scheduler: &str) -> FakeHost {
        FakeHost::new()
            .file(MOUNTINFO, MOUNTINFO_TEXT)
            .link(
                "/sys/dev/block/259:2",
                "../../devices/pci0/nvme/nvme0/nvme0n1/nvme0n1p2",
            )
            .file("/sys/dev/block/259:2/partition", "2\n")
            .file("/sys/block/nvme0n1/queue/scheduler", nvme_scheduler)
            .file("/sys/block/nvme0n1/queue/nr_requests", "1023\n")
            .link(
                "/sys/dev/block/8:17",
                "../../devices/pci0/ata1/host0/block/sdb/sdb1",
            )
            .file("/sys/dev/block/8:17/partition", "1\n")
            .file("/sys/block/sdb/queue/scheduler", sd_scheduler)
            .file("/sys/block/sdb/queue/nr_requests", "32\n")
    }

    fn context_at(data_dir: &str) -> Context {
        Context {
            data_dir: data_dir.into(),
            ..test_context(2, 2)
        }
    }

    /// The longest mount wins, component-wise, and escaped spaces are undone.
    #[test]
    fn mount_lookup() {
        let mount = |path| find_mount(MOUNTINFO_TEXT, path).map(|(m, d, _)| (m, d));
        assert_eq!(mount("/data/x"), Some(("/data".into(), "8:17".into())));
        assert_eq!(mount("/database"), Some(("/".into(), "259:2".into())));
        assert_eq!(
            mount("/data/tmp dir/a"),
            Some(("/data/tmp dir".into(), "0:40".into()))
        );
    }

    /// An NVMe partition resolves to its disk; `[mq-deadline] none` there wants `none`.
    #[test]
    fn nvme_partition_wants_none() {
        let host = host("[mq-deadline] none\n", "[mq-deadline] none\n");
        let finding = Scheduler.inspect(&host, &context_at("/srv/corelog"));
        assert_eq!(finding.severity, Severity::Warn, "{}", finding.current);
        assert!(
            finding.current.starts_with("mq-deadline (nvme0n1"),
            "{}",
            finding.current
        );
        assert_eq!(
            finding.fix,
            Some(Fix::Write {
                paths: vec!["/sys/block/nvme0n1/queue/scheduler".into()],
                value: "none".into()
            })
        );
        let host = self::host("[none] mq-deadline\n", "");
        let finding = Scheduler.inspect(&host, &context_at("/srv/corelog"));
        assert_eq!(finding.severity, Severity::Ok);
    }

    /// A SATA/SAS disk (sdb) wants mq-deadline, and its shallow queue is deepened.
    #[test]
    fn other_disk_wants_mq_deadline() {
        let host = host("[none]\n", "[none] mq-deadline bfq\n");
        let finding = Scheduler.inspect(&host, &context_at("/data/corelog"));
        assert_eq!(finding.severity, Severity::Warn);
        assert!(
            matches!(finding.fix, Some(Fix::Write { ref value, .. }) if value == "mq-deadline")
        );
        let finding = QueueDepth.inspect(&host, &context_at("/data/corelog"));
        assert_eq!(finding.severity, Severity::Warn);
        assert_eq!(finding.current, "32 (sdb)");

        let finding = Scheduler.inspect(&host, &context_at("/"));
        assert_eq!(finding.severity, Severity::Ok, "{}", finding.current);
        let finding = QueueDepth.inspect(&host, &context_at("/"));
        assert_eq!(finding.severity, Severity::Ok, "{}", finding.current);
    }

    /// A data directory on tmpfs names no disk: reported, not an error, no fix.
    #[test]
    fn tmpfs_is_not_checked() {
        let host = host("[none]\n", "[none]\n");
        let finding = Scheduler.inspect(&host, &context_at("/data/tmp dir"));
        assert_eq!(finding.severity, Severity::Ok);
        assert!(
            finding.current.contains("not on a block device"),
            "{}",
            finding.current
        );
        assert_eq!(finding.fix, None);
    }

    /// A whole virtio disk (no partition) is recognised as fast.
    #[test]
    fn virtio_whole_disk_wants_none() {
        let host = FakeHost::new()
            .file(MOUNTINFO, "27 1 254:0 / / rw - ext4 /dev/vda rw\n")
            .link(
                "/sys/dev/block/254:0",
                "../../devices/pci0/0000:00:02.0/virtio1/block/vda",
            )
            .file(
                "/sys/block/vda/queue/scheduler",
                "none [mq-deadline] kyber bfq\n",
            );
        let finding = Scheduler.inspect(&host, &context_at("/work"));
        assert_eq!(finding.severity, Severity::Warn);
        assert_eq!(finding.current, "mq-deadline (vda on /)");
    }
}
