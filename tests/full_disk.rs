//! A real full disk, not an injected one: the broker's data directory sits on a small ext4
//! file system that the test creates and loop-mounts, a ballast file takes most of it, and
//! acks=all producers fill the rest. While it is full, produce is answered promptly with
//! KAFKA_STORAGE_ERROR; once the ballast is deleted, writes resume without a restart; every
//! acknowledged message is at its acknowledged offset, before and after a restart.
//!
//! The injected faults of `storage_faults.rs` could not catch the defect this pins down: the
//! errno of a real device error was lost on its way up from the runtime, so a real ENOSPC
//! fenced the partition for good. Mounting needs root and a loop device; where that is
//! impossible the test says so and passes (set `CORELOG_REQUIRE_MOUNT=1` to fail instead).
//!
//! The broker must also survive a full disk under its own stderr: the second test gives it
//! /dev/full for stdout and stderr, where every write fails with ENOSPC.

mod common;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{ApiVersionsRequest, FetchResponse, ProduceRequest};
use kafka_protocol::records::Compression;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Kafka's answer to any storage failure of a partition; clients retry it.
const KAFKA_STORAGE_ERROR: i16 = 56;

const TOPIC: &str = "full";
const PARTITIONS: i32 = 2;

/// Size of the file system image. Small, so that filling it takes a moment.
const IMAGE_BYTES: u64 = 96 << 20;

/// Free space the ballast leaves for the producers to fill.
const LEFT_FOR_PRODUCERS_BYTES: u64 = 16 << 20;

/// Every produced value is this long: an id, `|`, then padding.
const VALUE_BYTES: usize = 8 << 10;

/// Small segments, so that the disk fills up across segment rolls (index, time index and
/// producer snapshot writes, a new segment file) as well as segment writes.
const SEGMENT_BYTES: &str = "1048576";

/// How soon writes must succeed again once space returns: ext4 hands freed blocks back at
/// its next journal commit (every 5 s by default), plus a loaded machine.
const RESUME_WITHIN: Duration = Duration::from_secs(30);

/// A small ext4 file system in a loop-mounted image file, unmounted (and removed) on drop,
/// whatever the test did.
struct LoopMount {
    /// Holds the image and the mount point; removed after the unmount.
    dir: tempfile::TempDir,
    mount_point: PathBuf,
}

impl LoopMount {
    /// Creates and mounts the file system, or says why it cannot and returns None.
    fn create(bytes: u64) -> Option<LoopMount> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip("not root, so no file system can be mounted");
        }
        let dir = tempfile::Builder::new()
            .prefix("corelog-full-disk-")
            .tempdir()
            .expect("tempdir");
        let image = dir.path().join("ext4.img");
        let mount_point = dir.path().join("mnt");
        File::create(&image)
            .and_then(|file| file.set_len(bytes))
            .expect("create the image file");
        std::fs::create_dir(&mount_point).expect("create the mount point");
        // No blocks reserved for root: the broker runs as root here and would use them.
        if let Err(reason) = run("mkfs.ext4", &["-q", "-F", "-m", "0"], &[&image]) {
            return skip(&format!("mkfs.ext4 failed: {reason}"));
        }
        if let Err(reason) = run("mount", &["-o", "loop"], &[&image, &mount_point]) {
            return skip(&format!("mount -o loop failed: {reason}"));
        }
        Some(LoopMount { dir, mount_point })
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // The broker is dead by now (it is dropped first), but the kernel may still be
        // releasing its files: retry a busy unmount, then detach lazily.
        let mount_point = [self.mount_point.as_path()];
        for _ in 0..50 {
            if run("umount", &[], &mount_point).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(reason) = run("umount", &["-l"], &mount_point) {
            eprintln!("cannot unmount {}: {reason}", self.mount_point.display());
        }
        let _ = &self.dir;
    }
}

fn skip<T>(reason: &str) -> Option<T> {
    assert!(
        std::env::var_os("CORELOG_REQUIRE_MOUNT").is_none(),
        "CORELOG_REQUIRE_MOUNT is set, but {reason}"
    );
    eprintln!("SKIPPED: the full-disk test needs a loop-mounted ext4 file system; {reason}");
    None
}

/// Runs a command to completion; its stderr is the error.
fn run(program: &str, flags: &[&str], paths: &[&Path]) -> Result<(), String> {
    let output = Command::new(program)
        .args(flags)
        .args(paths)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!("{program} {}: {}", output.status, stderr.trim()))
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs fills a struct we own from a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let result = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    assert_eq!(result, 0, "statvfs: {}", std::io::Error::last_os_error());
    stat.f_bavail as u64 * stat.f_frsize as u64
}

/// Writes a file of `bytes` (synced) that takes that much of the file system.
fn write_ballast(path: &Path, bytes: u64) {
    let mut file = File::create(path).expect("create ballast");
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let length = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..length]).expect("write ballast");
        left -= length as u64;
    }
    file.sync_all().expect("sync ballast");
}

/// A value of `VALUE_BYTES` that starts with `id`.
fn value(id: &str) -> String {
    format!("{id}|{}", "x".repeat(VALUE_BYTES - id.len() - 1))
}

fn one_record(value: &str) -> bytes::Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    record_batch(&[value.as_bytes()], now, Compression::None)
}

/// Acknowledged messages: (partition, offset) -> id.
type Acked = HashMap<(i32, i64), String>;

/// One acks=all Produce over a raw connection, which must be answered within
/// `RESPONSIVE_WITHIN` (the connection's read timeout): a full disk is no reason to leave a
/// request hanging. Returns (error code, base offset).
fn produce_promptly(broker: &Broker, conn: &mut RawConn, partition: i32, id: &str) -> (i16, i64) {
    let started = Instant::now();
    let request = produce_request(TOPIC, partition, one_record(&value(id)), -1);
    let answered = conn
        .send_request(&request, 9)
        .and_then(|correlation_id| conn.recv_response::<ProduceRequest>(correlation_id, 9));
    let response = match answered {
        Ok(response) => response,
        Err(error) => broker.fail(&format!(
            "produce {id} to partition {partition} unanswered after {:?}: {error}",
            started.elapsed()
        )),
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

/// Produces with librdkafka, acks=all, in rounds of `round` messages across the partitions,
/// until a round has a failed delivery (the disk is full) or `rounds` rounds are done.
/// Records every acknowledged message; returns whether any delivery failed.
fn produce_rounds(broker: &Broker, acked: &mut Acked, tag: &str, rounds: usize) -> bool {
    let producer: BaseProducer<RecordingContext> = producer_config(&broker.bootstrap())
        // Retried KAFKA_STORAGE_ERROR gives up after this, so a full disk ends a round.
        .set("message.timeout.ms", "4000")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "200")
        .create_with_context(RecordingContext::default())
        .expect("create producer");
    let round: i32 = 64;
    for number in 0..rounds {
        for index in 0..round {
            let id = format!("{tag}-{number}-{index}");
            let payload = value(&id);
            let record = BaseRecord::<(), str>::to(TOPIC)
                .partition(index % PARTITIONS)
                .payload(&payload);
            producer.send(record).expect("enqueue");
        }
        if producer.flush(Duration::from_secs(60)).is_err() {
            broker.fail("a round of deliveries was never reported");
        }
        let deliveries = std::mem::take(&mut *producer.context().deliveries.lock().unwrap());
        let mut failed = false;
        for delivery in deliveries {
            let id = String::from_utf8_lossy(&delivery.payload);
            let id = id.split('|').next().unwrap().to_string();
            match delivery.offset {
                Some(offset) => record_ack(acked, delivery.partition, offset, id),
                None => failed = true,
            }
        }
        if failed {
            return true;
        }
    }
    false
}

fn record_ack(acked: &mut Acked, partition: i32, offset: i64, id: String) {
    if let Some(earlier) = acked.insert((partition, offset), id.clone()) {
        panic!("{id} and {earlier} were both acknowledged at {partition}/{offset}");
    }
}

/// Raw produces to `partition` until three are refused with KAFKA_STORAGE_ERROR, each one
/// answered promptly; the ones that still fit (pre-written space) are acknowledged.
fn produce_until_refused(broker: &Broker, acked: &mut Acked, partition: i32) {
    let mut conn = RawConn::connect_with_timeout(broker.port, RESPONSIVE_WITHIN).unwrap();
    let mut refused = 0;
    for attempt in 0..4000 {
        let id = format!("full-{partition}-{attempt}");
        match produce_promptly(broker, &mut conn, partition, &id) {
            (0, offset) => record_ack(acked, partition, offset, id),
            (KAFKA_STORAGE_ERROR, _) => refused += 1,
            (code, _) => broker.fail(&format!("produce {id}: unexpected error {code}")),
        }
        if refused == 3 {
            return;
        }
    }
    broker.fail(&format!(
        "partition {partition} never reported the disk full"
    ));
}

/// Raw produces to `partition` until one is acknowledged; fails after `RESUME_WITHIN`.
fn produce_until_resumed(broker: &Broker, acked: &mut Acked, partition: i32) -> Duration {
    let mut conn = RawConn::connect_with_timeout(broker.port, RESPONSIVE_WITHIN).unwrap();
    let started = Instant::now();
    for attempt in 0.. {
        let id = format!("resumed-{partition}-{attempt}");
        match produce_promptly(broker, &mut conn, partition, &id) {
            (0, offset) => {
                record_ack(acked, partition, offset, id);
                return started.elapsed();
            }
            (KAFKA_STORAGE_ERROR, _) if started.elapsed() < RESUME_WITHIN => {
                std::thread::sleep(Duration::from_millis(100));
            }
            (code, _) => broker.fail(&format!(
                "partition {partition}: writes did not resume {:?} after space returned \
                 (error {code})",
                started.elapsed()
            )),
        }
    }
    unreachable!()
}

/// Every (offset, id) stored in `partition` below its high watermark, checking each value's
/// length.
fn read_all(conn: &mut RawConn, partition: i32) -> HashMap<i64, String> {
    let mut stored = HashMap::new();
    let mut offset = 0;
    loop {
        let response: FetchResponse =
            conn.request(&fetch_request(TOPIC, partition, offset, 0, 0, 8 << 20), 11);
        let data = single_partition(&response);
        assert_eq!(data.error_code, 0, "fetch {TOPIC}-{partition} at {offset}");
        let mut records = data.records.clone().unwrap_or_default();
        while !records.is_empty() {
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
            let from = offset;
            for record in set.records.into_iter().filter(|r| r.offset >= from) {
                let value = record.value.unwrap_or_default();
                assert_eq!(
                    value.len(),
                    VALUE_BYTES,
                    "value at {partition}/{}",
                    record.offset
                );
                let value = String::from_utf8_lossy(&value);
                stored.insert(record.offset, value.split('|').next().unwrap().to_string());
                offset = record.offset + 1;
            }
        }
        if offset >= data.high_watermark {
            return stored;
        }
    }
}

/// Every acknowledged message is stored at its acknowledged offset.
fn check_acknowledged(broker: &Broker, acked: &Acked, when: &str) {
    let mut conn = RawConn::connect(broker.port);
    for partition in 0..PARTITIONS {
        let stored = read_all(&mut conn, partition);
        let mut wanted: Vec<_> = acked.iter().filter(|((p, _), _)| *p == partition).collect();
        wanted.sort();
        for ((_, offset), id) in wanted {
            match stored.get(offset) {
                Some(found) if found == id => {}
                found => broker.fail(&format!(
                    "{when}: {id} was acknowledged at {partition}/{offset}, which holds {found:?}"
                )),
            }
        }
    }
}

/// Fill the disk, see produce refused promptly, free space, see writes resume without a
/// restart, and find every acknowledged message, before and after a restart.
#[test]
fn real_full_disk_refuses_produce_promptly_and_recovers_without_restart() {
    let Some(mount) = LoopMount::create(IMAGE_BYTES) else {
        return;
    };
    let mut broker = Broker::start_in(&mount.path().join("data"), 1, &[]);
    let segment = [("segment.bytes", SEGMENT_BYTES)];
    create_topic_with_configs(broker.port, TOPIC, PARTITIONS, &segment);
    let mut acked = Acked::new();
    assert!(!produce_rounds(&broker, &mut acked, "warm", 1));
    // Pre-writing ahead of each log end runs after the first flushes; let it settle first.
    std::thread::sleep(Duration::from_secs(1));

    let ballast = mount.path().join("ballast");
    let free = free_bytes(mount.path());
    write_ballast(&ballast, free.saturating_sub(LEFT_FOR_PRODUCERS_BYTES));
    let filled = produce_rounds(&broker, &mut acked, "fill", 1000);
    assert!(
        filled,
        "the disk never filled ({} acknowledged)",
        acked.len()
    );
    for partition in 0..PARTITIONS {
        produce_until_refused(&broker, &mut acked, partition);
    }
    assert!(broker.is_alive(), "the broker died on a full disk");
    eprintln!(
        "disk full after {} acknowledged messages; {} bytes free",
        acked.len(),
        free_bytes(mount.path())
    );

    std::fs::remove_file(&ballast).expect("delete ballast");
    for partition in 0..PARTITIONS {
        let waited = produce_until_resumed(&broker, &mut acked, partition);
        eprintln!("partition {partition} writes again {waited:?} after space returned");
    }
    assert!(
        !produce_rounds(&broker, &mut acked, "after", 3),
        "every delivery succeeds once space is back"
    );
    check_acknowledged(&broker, &acked, "without a restart");
    let stderr = broker.stderr();
    assert!(
        stderr.contains("no space for the log") && stderr.contains("errno=28"),
        "the broker saw ENOSPC for what it is:\n{stderr}"
    );
    assert!(
        !stderr.contains("partition stops acknowledging") && !stderr.contains("fenced"),
        "a full disk fenced a log:\n{stderr}"
    );

    broker.stop();
    broker.restart();
    check_acknowledged(&broker, &acked, "after a restart");
    assert!(!produce_rounds(&broker, &mut acked, "restarted", 1));
}

/// The broker with stdout and stderr on /dev/full (every write fails with ENOSPC, like a
/// log file on a full disk) keeps serving requests that log, and exits cleanly on SIGTERM:
/// a failed log write must never abort it.
#[test]
fn broker_survives_a_full_disk_under_its_own_log() {
    let root = tempfile::Builder::new()
        .prefix("corelog-test-")
        .tempdir()
        .expect("tempdir");
    let full = || {
        let file = File::options().write(true).open("/dev/full");
        Stdio::from(file.expect("open /dev/full"))
    };
    let port = free_port();
    let child = Command::new(broker_binary())
        .arg("serve")
        .args(["--data-dir", root.path().join("data").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--node-id", "0"])
        .args(["--admin-listen", "127.0.0.1:0", "--shards", "1"])
        // Debug logging: a line for nearly every request.
        .env("CORELOG_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(full())
        .stderr(full())
        .spawn()
        .expect("spawn the broker");
    let mut child = KillOnDrop(child);
    let mut alive = || child.0.try_wait().expect("try_wait").is_none();
    let ready = wait_until(Duration::from_secs(60), || {
        assert!(alive(), "the broker died writing its log at start-up");
        RawConn::connect_with_timeout(port, Duration::from_secs(5))
            .and_then(|mut conn| conn.try_request(&ApiVersionsRequest::default(), 3))
            .is_ok()
    });
    assert!(ready, "the broker never answered");

    create_topic(port, "logged", 1);
    let mut conn = RawConn::connect(port);
    assert_eq!(produce(&mut conn, "logged", 0, one_record("v")), (0, 0));
    // Bad frames: the broker logs each one and closes the connection.
    for _ in 0..3 {
        let mut bad = RawConn::connect(port);
        bad.send_frame(&header_v1_frame(12_345, 0, 1, &[])).unwrap();
        assert!(bad.wait_closed_by_peer(Duration::from_secs(10)));
        let mut bad = RawConn::connect(port);
        bad.stream.write_all(&(-1i32).to_be_bytes()).unwrap();
        assert!(bad.wait_closed_by_peer(Duration::from_secs(10)));
    }
    assert_eq!(produce(&mut conn, "logged", 0, one_record("w")), (0, 1));
    assert!(alive(), "the broker died writing its log");

    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within {STOP_TIMEOUT:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}");
}

/// A broker process that is killed if the test ends before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
