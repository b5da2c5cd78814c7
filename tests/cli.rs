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
