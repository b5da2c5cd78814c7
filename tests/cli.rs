//! The `corelog serve` process contract: SIGTERM and SIGINT shut down cleanly with status 0;
//! a bad flag, a taken port or an unusable data directory make it exit non-zero at once with a
//! message that names the problem.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs `corelog serve` with `args` (plus `--shards 1 --node-id 0`) and expects it to exit by
/// itself within 60 s; returns its output.
fn serve_expecting_exit(args: &[&str]) -> Output {
    let mut child = Command::new(broker_binary())
        .arg("serve")
        .args(args)
        .args(["--shards", "1", "--node-id", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corelog");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("kill");
            let output = child.wait_with_output().expect("output");
            panic!(
                "corelog serve {args:?} still running after 60 s; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn assert_failed_naming(output: &Output, what: &str, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{what}: exit status {}",
        output.status
    );
    assert!(
        stderr.contains(needle),
        "{what}: the message should name {needle:?}; stderr:\n{stderr}"
    );
}

/// SIGINT, like SIGTERM, shuts the broker down cleanly with exit status 0.
#[test]
fn sigint_shuts_down_cleanly() {
    let mut broker = Broker::start(2, &[]);
    create_topic(broker.port, "before-sigint", 1);
    let status = broker.signal_and_wait(libc::SIGINT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGINT\n{}",
        broker.stderr()
    );
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    let response: kafka_protocol::messages::FetchResponse =
        conn.request(&fetch_request("before-sigint", 0, 0, 0, 1, 1024), 12);
    assert_eq!(
        single_partition(&response).error_code,
        0,
        "topic kept across SIGINT"
    );
    broker.stop();
}

/// A listen address whose port is already taken: non-zero exit naming the address.
#[test]
fn taken_port_exits_non_zero_naming_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().expect("tempdir");
    let output = serve_expecting_exit(&[
        "--listen",
        &address,
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_failed_naming(&output, "taken port", &address);
}

/// A data directory that cannot be created (its parent is a regular file): non-zero exit
/// naming the path.
#[test]
fn unusable_data_dir_exits_non_zero_naming_the_path() {
    let root = tempfile::tempdir().expect("tempdir");
    let file = root.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let data_dir = file.join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let output = serve_expecting_exit(&[
        "--listen",
        &listen,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert_failed_naming(&output, "unusable data dir", file.to_str().unwrap());
}

/// A flag value that does not parse: non-zero exit naming the flag.
#[test]
fn bad_flag_exits_non_zero_naming_the_flag() {
    let output = serve_expecting_exit(&["--segment-bytes", "lots"]);
    assert_failed_naming(&output, "bad flag value", "--segment-bytes");
    let output = serve_expecting_exit(&["--no-such-flag"]);
    assert_failed_naming(&output, "unknown flag", "--no-such-flag");
}

/// The distinct CPU lists of the `corelog-shard` threads of process `pid` (an executor and its
/// helper thread share a name), once they exist, as the kernel writes them ("1", "0-1").
fn shard_thread_cpus(pid: u32) -> Vec<String> {
    let mut cpus = std::collections::BTreeSet::new();
    let found = wait_until(Duration::from_secs(30), || {
        cpus.clear();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            if comm.starts_with("corelog-shard") {
                let allowed = status
                    .lines()
                    .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                    .map(|list| list.trim().to_string());
                cpus.extend(allowed);
            }
        }
        !cpus.is_empty()
    });
    assert!(found, "no corelog-shard thread appeared in process {pid}");
    cpus.into_iter().collect()
}

/// The highest CPU this test may use: pinning to it differs from the default placement,
/// which starts at the lowest.
fn last_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// `--cpus N` pins the shard's executor to CPU N, and only to it.
#[test]
fn cpus_flag_pins_the_shard() {
    let cpu = last_cpu().to_string();
    let mut broker = Broker::start(1, &["--cpus", &cpu]);
    assert_eq!(shard_thread_cpus(broker.pid() as u32), vec![cpu]);
    broker.stop();
}

/// Without `--cpus`, shards go only to CPUs of the process's affinity mask, so that
/// `taskset -c N corelog serve` keeps the broker off the other CPUs.
#[test]
fn shards_stay_inside_the_affinity_mask() {
    use std::os::unix::process::CommandExt;
    let cpu = last_cpu();
    let data = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(broker_binary());
    command
        .args([
            "serve",
            "--shards",
            "1",
            "--admin-listen",
            "off",
            "--listen",
            &listen,
        ])
        .args(["--data-dir", data.path().to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: sched_setaffinity on the child between fork and exec touches no shared state.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            match libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = command.spawn().expect("spawn corelog");
    let cpus = shard_thread_cpus(child.id());
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(cpus, vec![cpu.to_string()]);
}

/// A CPU that is not online, or fewer CPUs than shards: non-zero exit naming the problem.
#[test]
fn unusable_cpus_exit_non_zero() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let output = serve_expecting_exit(&["--cpus", "4095", "--data-dir", dir, "--listen", &listen]);
    assert_failed_naming(&output, "offline CPU", "CPU 4095");
    let output = serve_expecting_exit(&["--cpus", "0-1,0", "--data-dir", dir]);
    assert_failed_naming(&output, "CPU named twice", "--cpus");
}
