//! The `corelog tune` process contract: `check --json` prints one JSON object with an entry per
//! check and exits 0 (nothing bad) or 1 (something bad); `apply --dry-run` changes nothing and
//! exits 0; `apply` changes the values it plans, shown on a fabricated host tree.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn corelog() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corelog"))
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run corelog");
    eprintln!("stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// On this machine `tune check --json` exits 0 or 1 and prints one entry per check, in order.
#[test]
fn check_json_has_one_entry_per_check() {
    let output = run(corelog().args(["tune", "check", "--json"]));
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "exit status {:?}",
        output.status
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|error| panic!("not JSON ({error}):\n{}", stdout(&output)));
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .map(|check| check["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, corelog::tune::check_names());
    let bad = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|check| check["severity"] == "bad");
    assert_eq!(
        code,
        Some(i32::from(bad)),
        "exit status follows the worst severity"
    );
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}

/// `tune apply --dry-run` exits 0 and leaves the values it would change as they were.
#[test]
fn apply_dry_run_changes_nothing() {
    // With one shard on a machine of several CPUs the plan includes IRQ moves as well.
    let watched = [
        "/proc/sys/vm/swappiness",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        "/proc/irq/default_smp_affinity",
    ];
    let irq_paths: Vec<String> = std::fs::read_dir("/proc/irq")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| format!("{}/smp_affinity_list", entry.path().display()))
                .collect()
        })
        .unwrap_or_default();
    let paths: Vec<&str> = watched
        .iter()
        .copied()
        .chain(irq_paths.iter().map(String::as_str))
        .collect();
    let before: Vec<Option<String>> = paths.iter().map(|path| read_trimmed(path)).collect();
    let output = run(corelog().args(["tune", "apply", "--dry-run", "--shards", "1"]));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("dry run"), "{}", stdout(&output));
    let after: Vec<Option<String>> = paths.iter().map(|path| read_trimmed(path)).collect();
    assert_eq!(before, after, "a dry run changed a value");
}

fn write(root: &Path, path: &str, content: &str) {
    let full = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, content).unwrap();
}

/// A fabricated host: swappiness 60, THP always, CAP_IPC_LOCK absent.
fn fabricated_host() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "/proc/sys/vm/swappiness", "60\n");
    write(
        root.path(),
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    write(
        root.path(),
        "/proc/self/status",
        "CapEff:\t0000000000000000\n",
    );
    write(root.path(), "/sys/devices/system/cpu/online", "0-1\n");
    root
}

/// Too little locked memory without CAP_IPC_LOCK is `bad`, and `check` exits 1.
#[test]
fn check_exits_one_when_something_is_bad() {
    let root = fabricated_host();
    let mut command = corelog();
    command.args(["tune", "check", "--json", "--shards", "2", "--host-root"]);
    command.arg(root.path());
    // SAFETY: setrlimit only lowers this child's own soft limit, before exec.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit);
            limit.rlim_cur = 1024 * 1024;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
            Ok(())
        });
    }
    let output = run(&mut command);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(report["worst"], "bad", "{}", stdout(&output));
    assert_eq!(output.status.code(), Some(1));
}

/// `tune apply` writes the planned values and shows before and after; without root it writes
/// nothing and says that root is needed. Either way it exits 0.
#[test]
fn apply_changes_a_fabricated_host() {
    let root = fabricated_host();
    let mut command = corelog();
    command
        .args(["tune", "apply", "--host-root"])
        .arg(root.path());
    let output = run(&mut command);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let swappiness = std::fs::read_to_string(root.path().join("proc/sys/vm/swappiness")).unwrap();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(swappiness, "1", "{text}");
        assert!(text.contains("/proc/sys/vm/swappiness: 60 -> 1"), "{text}");
        let thp = root
            .path()
            .join("sys/kernel/mm/transparent_hugepage/enabled");
        assert_eq!(std::fs::read_to_string(thp).unwrap(), "madvise");
    } else {
        assert_eq!(swappiness, "60\n", "{text}");
        assert!(text.contains("need root"), "{text}");
    }
}
