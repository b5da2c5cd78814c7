//! Shared harness for the integration tests: runs the real `corelog` binary on a free port over
//! a temporary data directory, stops it with SIGTERM or SIGKILL, restarts it on the same
//! directory and port, and speaks the Kafka protocol directly where a client library would hide
//! the detail a test pins down.
//!
//! The binary is `$CORELOG_BIN` when set (to test a build from another branch), else the one
//! Cargo built for this package. Broker stderr goes to a file next to the data directory and is
//! shown whenever the harness fails, so that a failing test says what the broker said.
//!
//! A broker that exits without being told to has failed, whatever its status: `kill`,
//! `signal_and_wait` (so `stop` and `terminate`) and `restart` first check that the process is
//! still running and panic with its exit status and stderr if it ended by itself, and dropping a
//! `Broker` that died by itself fails the test too.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use corelog::protocol::record_batch::{encode_plain_batch, PlainRecord};
use kafka_protocol::messages::{create_topics_request, fetch_request, produce_request};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Request, StrBytes};
use kafka_protocol::records::Compression;

/// How long a broker may take to answer its first ApiVersions request after spawn.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Read timeout of raw connections: generous, because the test machine is loaded.
pub const RAW_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the broker binary under test.
pub fn broker_binary() -> PathBuf {
    match std::env::var_os("CORELOG_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_corelog")),
    }
}

/// A port that was free a moment ago and that no other test of this process was given: tests
/// run in parallel, and two brokers told the same port would both bind it (SO_REUSEPORT) and
/// serve each other's clients. It is below the kernel's ephemeral range (32768 and up by
/// default), so that while a broker restarts on it no socket bound to port 0 (another
/// broker's admin listener, a client's connection) can be handed it: one was, and the
/// restart failed with EADDRINUSE.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for attempt in 0..COUNT {
        let candidate = FIRST + seed.wrapping_add(attempt.wrapping_mul(7_919)) % COUNT;
        let port = u16::try_from(candidate).expect("below 32768");
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// One `corelog serve` process over a temporary data directory that outlives restarts.
pub struct Broker {
    root: tempfile::TempDir,
    /// `<root>/data`, or the directory the test gave (`Launch::data_dir`, `start_in`).
    data: PathBuf,
    pub port: u16,
    args: Vec<String>,
    launch: Launch,
    child: Option<Child>,
    starts: u32,
}

/// How the harness launches a broker beyond its flags. The default passes an absolute
/// `--data-dir` (the temporary directory's `data`) and runs from the test's own directory.
#[derive(Default, Clone)]
pub struct Launch {
    /// Working directory of the broker: absolute, or relative to the broker's temporary
    /// directory (the harness creates it). The test process's own when `None`.
    pub working_dir: Option<PathBuf>,
    /// When true the harness passes no `--data-dir`: the broker's default, the flags in
    /// `args`, the environment or a config file decide where the data goes.
    pub no_data_dir_flag: bool,
    /// Extra environment variables of the broker process.
    pub env: Vec<(String, String)>,
    /// The data directory (absolute), e.g. on a file system the test mounted; the temporary
    /// directory's `data` when `None`. stderr stays in the temporary directory either way.
    pub data_dir: Option<PathBuf>,
}

impl Broker {
    /// Starts a broker with `shards` shards and the extra `serve` flags in `args`, and waits
    /// until it answers ApiVersions.
    pub fn start(shards: u32, args: &[&str]) -> Broker {
        Broker::start_sharded(Launch::default(), shards, args)
    }

    /// Like `start`, with the data directory at `data_dir` (e.g. on a file system the test
    /// mounted); stderr stays in the temporary directory.
    pub fn start_in(data_dir: &Path, shards: u32, args: &[&str]) -> Broker {
        let launch = Launch {
            data_dir: Some(data_dir.to_path_buf()),
            ..Launch::default()
        };
        Broker::start_sharded(launch, shards, args)
    }

    fn start_sharded(launch: Launch, shards: u32, args: &[&str]) -> Broker {
        let mut args: Vec<&str> = args.to_vec();
        let shards = shards.to_string();
        args.extend(["--shards", &shards]);
        Broker::start_with(launch, &args)
    }

    /// Starts a broker launched as `launch` says, with the `serve` flags in `args` (the
    /// default shard count unless they name one), and waits until it answers ApiVersions.
    pub fn start_with(launch: Launch, args: &[&str]) -> Broker {
        let root = tempfile::Builder::new()
            .prefix("corelog-test-")
            .tempdir()
            .expect("tempdir");
        let data = launch
            .data_dir
            .clone()
            .unwrap_or_else(|| root.path().join("data"));
        std::fs::create_dir_all(&data).expect("create data dir");
        if let Some(dir) = &launch.working_dir {
            std::fs::create_dir_all(root.path().join(dir)).expect("create working dir");
        }
        let mut broker = Broker {
            root,
            data,
            port: free_port(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
            launch,
            child: None,
            starts: 0,
        };
        broker.spawn_and_wait();
        broker
    }

    /// The temporary directory everything of this broker lives under.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The working directory the broker runs in, when the launch names one.
    pub fn working_dir(&self) -> Option<PathBuf> {
        let dir = self.launch.working_dir.as_ref()?;
        Some(self.root.path().join(dir))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Directory of one partition's log, as the broker lays it out.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir().join(format!("{topic}-{partition}"))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("broker is running").id() as i32
    }

    /// True while the broker process has not exited.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => child.try_wait().expect("try_wait").is_none(),
        }
    }

    fn stderr_path(&self, start: u32) -> PathBuf {
        self.root.path().join(format!("stderr-{start}.log"))
    }

    /// The admin listener's port of the running broker, as it logged it (start it with
    /// `--admin-listen 127.0.0.1:0`; each start picks a new one).
    pub fn admin_port(&self) -> u16 {
        let mut port = None;
        let found = wait_until(Duration::from_secs(10), || {
            let current = std::fs::read_to_string(self.stderr_path(self.starts));
            port = current.unwrap_or_default().lines().find_map(|line| {
                let (_, rest) = line.split_once("admin=127.0.0.1:")?;
                rest.split_whitespace().next()?.parse().ok()
            });
            port.is_some()
        });
        if !found {
            self.fail("the broker never logged its admin address");
        }
        port.unwrap()
    }

    /// Every stderr line the broker wrote in this test, across restarts.
    pub fn stderr(&self) -> String {
        let mut all = String::new();
        for start in 1..=self.starts {
            let text = std::fs::read_to_string(self.stderr_path(start)).unwrap_or_default();
            all.push_str(&format!("--- broker start {start} stderr ---\n{text}"));
        }
        all
    }

    /// Panics with the broker's stderr attached.
    pub fn fail(&self, message: &str) -> ! {
        panic!("{message}\n{}", self.stderr());
    }

    fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "spawn while a broker is running");
        self.starts += 1;
        let stderr = File::create(self.stderr_path(self.starts)).expect("create stderr file");
        let data_dir = self.data_dir();
        let listen = self.bootstrap();
        let mut command = Command::new(broker_binary());
        command.arg("serve");
        if self.launch.no_data_dir_flag {
            // Only what the test sets may choose the directory, not the caller's environment.
            command
                .env_remove("CORELOG_DATA_DIR")
                .env_remove("CORELOG_CONFIG");
        } else {
            command.args(["--data-dir", data_dir.to_str().unwrap()]);
        }
        if let Some(dir) = self.working_dir() {
            command.current_dir(dir);
        }
        let child = command
            .args(["--listen", &listen, "--node-id", "0"])
            // An ephemeral admin port, so that brokers of parallel tests never collide.
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(&self.args)
            .envs(self.launch.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("RUST_BACKTRACE", "1")
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {:?}: {error}", broker_binary()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls until the broker accepts a connection and answers ApiVersions.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                self.fail(&format!("broker exited during start-up with {status}"));
            }
            if probe_api_versions(self.port).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "broker not ready on port {} after {READY_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and returns the exit status, failing if the broker does not exit in time.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// Sends `signal` and returns the exit status, failing if the broker does not exit in time
    /// or had already died by itself.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        self.check_not_died(&format!("signal {signal}"));
        let pid = self.pid();
        // SAFETY: kill(2) on a child we spawned and have not reaped, so the pid is ours.
        let result = unsafe { libc::kill(pid, signal) };
        let error = io::Error::last_os_error();
        assert_eq!(result, 0, "kill({pid}, {signal}) failed: {error}");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                self.fail(&format!(
                    "no exit within {STOP_TIMEOUT:?} of signal {signal}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Clean shutdown: SIGTERM, and the broker must exit with status 0.
    pub fn stop(&mut self) {
        let status = self.terminate();
        if status.code() != Some(0) {
            self.fail(&format!(
                "broker exited with {status} after SIGTERM, expected 0"
            ));
        }
    }

    /// Crash: SIGKILL, no chance to flush anything. Fails if the broker had died by itself.
    pub fn kill(&mut self) {
        self.check_not_died("SIGKILL");
        self.kill_unchecked();
    }

    fn kill_unchecked(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the broker");
            child.wait().expect("reap the broker");
        }
    }

    /// Starts the broker again on the same data directory, port and flags. Fails if the
    /// previous process died by itself: that is a failure to report, not one to restart over.
    pub fn restart(&mut self) {
        self.check_not_died("restart");
        self.spawn_and_wait();
    }

    /// The exit status of a broker process that ended although the harness never signalled
    /// it (the harness forgets a process once it has reaped it after a signal of its own).
    fn died_by_itself(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(status)
    }

    /// Panics with the exit status and stderr if the broker died by itself before `what`.
    fn check_not_died(&mut self, what: &str) {
        if let Some(status) = self.died_by_itself() {
            self.fail(&format!(
                "the broker died by itself ({status}) before {what}: a broker that exits \
                 unasked is a failure, not a restart"
            ));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let died = self.died_by_itself();
        self.kill_unchecked();
        // A test that failed anywhere (a client call, an assertion) shows what the broker said.
        if std::thread::panicking() {
            if let Some(status) = died {
                eprintln!("the broker died by itself ({status})");
            }
            eprintln!("{}", self.stderr());
        } else if let Some(status) = died {
            self.fail(&format!(
                "the broker died by itself ({status}) during the test"
            ));
        }
    }
}

/// One ApiVersions round trip on a fresh connection: the readiness probe.
fn probe_api_versions(port: u16) -> io::Result<()> {
    let mut conn = RawConn::connect_with_timeout(port, Duration::from_secs(5))?;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("corelog-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1"));
    let response = conn.try_request(&request, 3)?;
    if response.error_code != 0 {
        return Err(io::Error::other(format!(
            "ApiVersions error {}",
            response.error_code
        )));
    }
    Ok(())
}

/// How soon a shard that is not kept busy answers a trivial request, counting only time not
/// spent waiting for a CPU (see [`ProbeClock`]); the bugs this catches (a spinning, swamped or
/// blocked shard) took 30 s or never answered.
pub const RESPONSIVE_WITHIN: Duration = Duration::from_secs(5);

/// ApiVersions on eight fresh connections (so that some land on every shard) each answer
/// within `RESPONSIVE_WITHIN` while `beside` is pending: no shard is kept busy by it. Returns
/// the slowest of the eight.
pub fn assert_shards_answer_quickly(broker: &Broker, beside: &str) -> ProbeTime {
    let mut slowest = ProbeTime::default();
    for attempt in 0..8 {
        let clock = ProbeClock::start(broker);
        let mut conn = RawConn::connect(broker.port);
        let response = conn.request(&ApiVersionsRequest::default(), 0);
        assert_eq!(response.error_code, 0);
        let took = clock.stop();
        assert!(
            took.unexplained() < RESPONSIVE_WITHIN,
            "ApiVersions {attempt} took {took} beside {beside}"
        );
        slowest = slowest.max(took);
    }
    slowest
}

/// Times one probe of a broker and separates what a loaded machine explains from what the
/// broker does. A shard that is busy (spinning, swamped by work) or blocked never waits for a
/// CPU while it keeps the probe waiting, so wall time less CPU waits still shows it in full;
/// other processes on a busy machine only make threads wait for a CPU. The waits come from the
/// kernel's per-thread schedstat (time runnable but not running): the probing thread's own,
/// and the least any shard thread waited, since any shard may have served the probe and the
/// least never forgives more than the serving shard waited. Where the kernel keeps no schedstat
/// nothing is forgiven and the probe is judged by wall time.
pub struct ProbeClock {
    started: Instant,
    own: Option<Schedstat>,
    shards: Vec<(PathBuf, Schedstat)>,
}

/// A thread's time on a CPU and time runnable but waiting for one (schedstat's first two
/// fields), in total or over a probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedstat {
    pub ran: Duration,
    pub waited: Duration,
}

impl Schedstat {
    /// The thread's totals so far; None where the kernel does not keep them.
    fn read(path: &Path) -> Option<Schedstat> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut fields = text
            .split_whitespace()
            .map(|field| field.parse::<u64>().ok());
        Some(Schedstat {
            ran: Duration::from_nanos(fields.next()??),
            waited: Duration::from_nanos(fields.next()??),
        })
    }

    pub fn since(self, before: Schedstat) -> Schedstat {
        Schedstat {
            ran: self.ran.saturating_sub(before.ran),
            waited: self.waited.saturating_sub(before.waited),
        }
    }
}

/// A probe's wall time, and what the probing thread and each shard thread did meanwhile.
#[derive(Debug, Clone, Default)]
pub struct ProbeTime {
    pub wall: Duration,
    pub own: Option<Schedstat>,
    /// Empty when the shard threads' schedstat could not be read at both ends.
    pub shards: Vec<Schedstat>,
}

impl ProbeTime {
    /// The part of the wall time a loaded machine explains: the probing thread's wait for a
    /// CPU plus the least any shard waited.
    pub fn cpu_wait(&self) -> Duration {
        let own = self.own.map(|own| own.waited).unwrap_or_default();
        let least_shard = self.shards.iter().map(|shard| shard.waited).min();
        own + least_shard.unwrap_or_default()
    }

    /// The wall time no CPU wait explains: what a busy or blocked shard would add.
    pub fn unexplained(&self) -> Duration {
        self.wall.saturating_sub(self.cpu_wait())
    }

    /// The one of the two with the more unexplained time.
    pub fn max(self, other: ProbeTime) -> ProbeTime {
        if other.unexplained() > self.unexplained() {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for ProbeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} ({:?} of it waiting for a CPU, {:?} not; ran/waited: probe {:?}",
            self.wall,
            self.cpu_wait(),
            self.unexplained(),
            self.own.map(|own| (own.ran, own.waited))
        )?;
        for (index, shard) in self.shards.iter().enumerate() {
            write!(f, ", shard thread {index} {:?}", (shard.ran, shard.waited))?;
        }
        write!(f, ")")
    }
}

/// The start of the shard threads' names, as `runtime` gives them to the executors.
const SHARD_THREAD_NAME: &str = "corelog-shard";
/// The calling thread's schedstat.
const OWN_SCHEDSTAT: &str = "/proc/thread-self/schedstat";

impl ProbeClock {
    /// Starts timing on the calling thread, which must be the one that probes.
    pub fn start(broker: &Broker) -> ProbeClock {
        let shards = shard_threads(broker.pid())
            .into_iter()
            .filter_map(|path| {
                let now = Schedstat::read(&path)?;
                Some((path, now))
            })
            .collect();
        ProbeClock {
            own: Schedstat::read(Path::new(OWN_SCHEDSTAT)),
            shards,
            started: Instant::now(),
        }
    }

    pub fn stop(&self) -> ProbeTime {
        let wall = self.started.elapsed();
        let own = self
            .own
            .and_then(|before| Some(Schedstat::read(Path::new(OWN_SCHEDSTAT))?.since(before)));
        let shards = self
            .shards
            .iter()
            .map(|(path, before)| Some(Schedstat::read(path)?.since(*before)))
            .collect::<Option<Vec<Schedstat>>>()
            .unwrap_or_default();
        ProbeTime { wall, own, shards }
    }
}

/// The schedstat totals of the broker's executor threads (process `pid`), by thread name;
/// empty where the kernel keeps none or the process is gone.
pub fn shard_schedstats(pid: i32) -> Vec<Schedstat> {
    shard_threads(pid)
        .iter()
        .filter_map(|path| Schedstat::read(path))
        .collect()
}

/// The schedstat files of the broker's executor threads. glommio names them
/// `corelog-shard-<id>`, and so is each one's helper thread for blocking calls, which the
/// executor starts: of the threads of one name, the executor has the lowest id.
fn shard_threads(pid: i32) -> Vec<PathBuf> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut executors: std::collections::BTreeMap<String, (u64, PathBuf)> = Default::default();
    for task in tasks.filter_map(|task| task.ok()) {
        let path = task.path();
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|tid| tid.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !name.starts_with(SHARD_THREAD_NAME) {
            continue;
        }
        let lowest = executors
            .entry(name.trim_end().to_string())
            .or_insert((tid, path.clone()));
        if tid < lowest.0 {
            *lowest = (tid, path);
        }
    }
    executors
        .into_values()
        .map(|(_, path)| path.join("schedstat"))
        .collect()
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc status")
}

/// One frame: a 4-byte big-endian length, then `body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// A blocking Kafka connection speaking raw length-prefixed frames.
pub struct RawConn {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        RawConn::connect_with_timeout(port, RAW_READ_TIMEOUT)
            .unwrap_or_else(|error| panic!("connect to 127.0.0.1:{port}: {error}"))
    }

    pub fn connect_with_timeout(port: u16, timeout: Duration) -> io::Result<RawConn> {
        let address = ([127, 0, 0, 1], port).into();
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RawConn::from_stream(stream))
    }

    /// Wraps a connected stream (whose timeouts the caller has set).
    pub fn from_stream(stream: TcpStream) -> RawConn {
        RawConn {
            stream,
            correlation_id: 0,
        }
    }

    /// Writes one frame: a 4-byte big-endian length, then `body`.
    pub fn send_frame(&mut self, body: &[u8]) -> io::Result<()> {
        self.stream.write_all(&frame(body))
    }

    /// Writes the frames of `bodies` back to back in one write, so that the broker reads them
    /// as pipelined requests.
    pub fn send_frames<B: AsRef<[u8]>>(&mut self, bodies: &[B]) -> io::Result<()> {
        let bytes: Vec<u8> = bodies
            .iter()
            .flat_map(|body| frame(body.as_ref()))
            .collect();
        self.stream.write_all(&bytes)
    }

    /// Reads one whole frame and returns its body.
    pub fn recv_frame(&mut self) -> io::Result<Bytes> {
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length)?;
        let length = i32::from_be_bytes(length);
        if !(0..=64 * 1024 * 1024).contains(&length) {
            return Err(io::Error::other(format!("response frame length {length}")));
        }
        let mut body = vec![0u8; length as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Encodes a request header plus `request` at `version`, without sending it.
    pub fn encode_request<R: Request>(&mut self, request: &R, version: i16) -> (i32, BytesMut) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("corelog-raw")));
        let mut buffer = BytesMut::new();
        encode_request_header_into_buffer(&mut buffer, &header).expect("encode request header");
        request
            .encode(&mut buffer, version)
            .expect("encode request body");
        (self.correlation_id, buffer)
    }

    /// Sends `request` at `version`; returns its correlation id.
    pub fn send_request<R: Request>(&mut self, request: &R, version: i16) -> io::Result<i32> {
        let (correlation_id, body) = self.encode_request(request, version);
        self.send_frame(&body)?;
        Ok(correlation_id)
    }

    /// Reads the response to the request with `correlation_id` sent as `R` at `version`.
    pub fn recv_response<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> io::Result<R::Response> {
        let mut body = self.recv_frame()?;
        let header_version = response_header_version(R::KEY, version);
        let header = ResponseHeader::decode(&mut body, header_version).map_err(io::Error::other)?;
        if header.correlation_id != correlation_id {
            return Err(io::Error::other(format!(
                "correlation id {} in response, expected {correlation_id}",
                header.correlation_id
            )));
        }
        let response = R::Response::decode(&mut body, version).map_err(io::Error::other)?;
        if body.has_remaining() {
            return Err(io::Error::other(format!(
                "{} bytes after response",
                body.remaining()
            )));
        }
        Ok(response)
    }

    pub fn try_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> io::Result<R::Response> {
        let correlation_id = self.send_request(request, version)?;
        self.recv_response::<R>(correlation_id, version)
    }

    /// One request/response round trip; panics on any I/O or decoding failure.
    pub fn request<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        self.try_request(request, version)
            .unwrap_or_else(|error| panic!("api key {} v{version}: {error}", R::KEY))
    }

    /// Waits until the broker closes this connection (read returns end of file or an error
    /// other than a timeout), discarding whatever it sends first. False if still open at the
    /// deadline.
    pub fn wait_closed_by_peer(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut scratch = [0u8; 64 * 1024];
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while Instant::now() < deadline {
            match self.stream.read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error) if is_timeout(&error) => continue,
                Err(_) => return true,
            }
        }
        false
    }

    /// Half-closes the write side, so the broker reads end of file after what was sent.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The response header version for `api_key` at `version`; ApiVersions always answers with
/// header v0 so that a client can parse the answer before it knows the versions.
pub fn response_header_version(api_key: i16, version: i16) -> i16 {
    let key = ApiKey::try_from(api_key).expect("known api key");
    if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    }
}

/// Creates a topic through CreateTopics v5 and asserts success.
pub fn create_topic(port: u16, name: &str, partitions: i32) {
    create_topic_with_configs(port, name, partitions, &[]);
}

/// Creates a topic with topic configs (`segment.bytes`, ...) and asserts success.
pub fn create_topic_with_configs(port: u16, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(key, value)| {
            create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_value(Some(StrBytes::from_string(value.to_string())))
        })
        .collect();
    let topic = create_topics_request::CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(30_000);
    let response: CreateTopicsResponse = RawConn::connect(port).request(&request, 5);
    let result = &response.topics[0];
    assert_eq!(
        result.error_code, 0,
        "CreateTopics {name}: {:?}",
        result.error_message
    );
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// `batch` as producer `producer_id` at `epoch` sends it from sequence `sequence`, with the
/// attribute bits `attributes` added (0x10 transactional, 0x20 control); the CRC, which
/// covers these fields, recomputed.
pub fn with_producer(
    batch: &[u8],
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    attributes: i16,
) -> Bytes {
    let mut batch = bytes::BytesMut::from(batch);
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | attributes;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

/// Milliseconds since the Unix epoch, as clients stamp records.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("a clock after 1970").as_millis() as i64
}

/// One v2 record batch of `values` (no keys), base offset 0, CreateTime `timestamp_ms`, no
/// producer id, as a non-idempotent client sends it.
pub fn record_batch(values: &[&[u8]], timestamp_ms: i64, compression: Compression) -> Bytes {
    let records = values.iter().map(|value| PlainRecord {
        timestamp: timestamp_ms,
        key: None,
        value: Some(Bytes::copy_from_slice(value)),
    });
    let buffer = encode_plain_batch(records, compression).expect("encode record batch");
    let (batches, _) = parse_batches(&buffer);
    assert_eq!(batches.len(), 1, "the encoder made exactly one batch");
    buffer.freeze()
}

/// One v2 record batch of `(key, value)` records, base offset 0, CreateTime `timestamp_ms`, no
/// producer id: a `None` key is a null key, which a compacted topic refuses.
pub fn keyed_record_batch(
    records: &[(Option<&[u8]>, &[u8])],
    timestamp_ms: i64,
    compression: Compression,
) -> Bytes {
    let records = records.iter().map(|(key, value)| PlainRecord {
        timestamp: timestamp_ms,
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
    });
    let buffer = encode_plain_batch(records, compression).expect("encode record batch");
    buffer.freeze()
}

/// A legacy (magic 0 or 1) message set of uncompressed `values`, offsets from 0: the formats
/// Kafka 4 no longer accepts. Built by hand because the protocol crate no longer encodes them.
pub fn legacy_message_set(values: &[&[u8]], timestamp_ms: i64, magic: i8) -> Bytes {
    assert!(magic == 0 || magic == 1, "legacy magic");
    let mut set = BytesMut::new();
    for (offset, value) in values.iter().enumerate() {
        let mut message = BytesMut::new();
        message.put_i8(magic);
        message.put_i8(0); // attributes: no compression, CreateTime
        if magic == 1 {
            message.put_i64(timestamp_ms);
        }
        message.put_i32(-1); // null key
        message.put_i32(value.len() as i32);
        message.put_slice(value);
        set.put_i64(offset as i64);
        set.put_i32(4 + message.len() as i32);
        set.put_u32(crc32_ieee(&message));
        set.put_slice(&message);
    }
    set.freeze()
}

/// CRC-32 (IEEE), the checksum of legacy messages.
fn crc32_ieee(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A Produce request carrying `records` for one partition.
pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    let partition_data = produce_request::PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(records));
    let topic_data = produce_request::TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![partition_data]);
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![topic_data])
}

/// Produces `records` with acks=all at Produce v9; returns (error code, base offset).
pub fn produce(conn: &mut RawConn, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let response: ProduceResponse =
        conn.request(&produce_request(topic, partition, records, -1), 9);
    assert_eq!(response.responses.len(), 1, "one topic in {response:?}");
    let partitions = &response.responses[0].partition_responses;
    assert_eq!(partitions.len(), 1, "one partition in {response:?}");
    (partitions[0].error_code, partitions[0].base_offset)
}

/// A Fetch request for one partition.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
) -> FetchRequest {
    let fetch_partition = fetch_request::FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(max_bytes);
    let fetch_topic = fetch_request::FetchTopic::default()
        .with_topic(topic_name(topic))
        .with_partitions(vec![fetch_partition]);
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(vec![fetch_topic])
}

/// The one partition of a Fetch response for one partition.
pub fn single_partition(
    response: &FetchResponse,
) -> &kafka_protocol::messages::fetch_response::PartitionData {
    assert_eq!(
        response.error_code, 0,
        "top-level fetch error in {response:?}"
    );
    assert_eq!(response.responses.len(), 1, "one topic in fetch response");
    let partitions = &response.responses[0].partitions;
    assert_eq!(partitions.len(), 1, "one partition in fetch response");
    &partitions[0]
}

/// Header fields of one stored v2 record batch, read straight from the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    /// Position of the batch in the buffer it was parsed from.
    pub position: usize,
    pub base_offset: i64,
    /// Whole batch size, including the 12-byte offset and length prefix.
    pub size: usize,
    pub magic: i8,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub record_count: i32,
}

impl BatchInfo {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }
}

/// Walks complete v2 batches back to back in `bytes`, stopping at the first one that is
/// incomplete or at zero padding (a batch length of 0). Returns the batches and the number of
/// bytes they cover.
pub fn parse_batches(bytes: &[u8]) -> (Vec<BatchInfo>, usize) {
    let mut batches = Vec::new();
    let mut position = 0;
    while bytes.len() - position >= 61 {
        let mut header = &bytes[position..];
        let base_offset = header.get_i64();
        let length = header.get_i32();
        if length <= 0 {
            break;
        }
        let size = 12 + length as usize;
        if position + size > bytes.len() {
            break;
        }
        let _leader_epoch = header.get_i32();
        let magic = header.get_i8();
        let _crc = header.get_u32();
        let attributes = header.get_i16();
        let last_offset_delta = header.get_i32();
        let mut count_bytes = &bytes[position + 57..position + 61];
        let record_count = count_bytes.get_i32();
        batches.push(BatchInfo {
            position,
            base_offset,
            size,
            magic,
            attributes,
            last_offset_delta,
            record_count,
        });
        position += size;
    }
    (batches, position)
}

/// Checks the CRC-32C of a v2 batch (over attributes to the end) as a client would.
pub fn batch_crc_ok(batch: &[u8]) -> bool {
    let stored = (&batch[17..21]).get_u32();
    stored == crc32c::crc32c(&batch[21..])
}

/// Builds a raw frame body from a request header (v1, non-flexible) plus arbitrary body bytes.
pub fn header_v1_frame(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    body: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.put_i16(api_key);
    frame.put_i16(api_version);
    frame.put_i32(correlation_id);
    frame.put_i16(4);
    frame.put_slice(b"test");
    frame.put_slice(body);
    frame
}

/// Sends one HTTP GET (to the admin listener) and returns (status line, body).
pub fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of the first sample whose line starts with `prefix` (name and labels).
pub fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// An admin commit (generation -1, no member) of `offsets` (partition, offset) of `topic`
/// by OffsetCommit v8.
pub fn simple_commit(conn: &mut RawConn, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let partitions = offsets
        .iter()
        .map(|&(partition, offset)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
        })
        .collect();
    let request = kafka_protocol::messages::OffsetCommitRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_string(
            group.to_string(),
        )))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(partitions)]);
    let response = conn.request(&request, 8);
    for partition in &response.topics[0].partitions {
        assert_eq!(partition.error_code, 0, "commit {offsets:?}");
    }
}

/// The committed offsets of `partitions` of `topic` for `group`, by OffsetFetch v8 (-1:
/// none), in partition order.
pub fn committed_offsets(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<i64> {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    let ask = OffsetFetchRequestGroup::default()
        .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_string(
            group.to_string(),
        )))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(partitions.to_vec())]));
    let request = kafka_protocol::messages::OffsetFetchRequest::default().with_groups(vec![ask]);
    let response = conn.request(&request, 8);
    let mut partitions = response.groups[0].topics[0].partitions.clone();
    partitions.sort_by_key(|p| p.partition_index);
    partitions.iter().map(|p| p.committed_offset).collect()
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stored segment file of a partition with the lowest base offset.
pub fn first_segment(partition_dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap_or_else(|error| panic!("read {partition_dir:?}: {error}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    logs.into_iter()
        .next()
        .unwrap_or_else(|| panic!("no .log in {partition_dir:?}"))
}

/// The stored segment file of a partition with the highest base offset.
pub fn last_segment(partition_dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap_or_else(|error| panic!("read {partition_dir:?}: {error}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    logs.pop()
        .unwrap_or_else(|| panic!("no .log in {partition_dir:?}"))
}

// ---------------------------------------------------------------------------------------------
// librdkafka clients, through the rdkafka crate.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a delivery report said about one message.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub partition: i32,
    /// `None` when delivery failed.
    pub offset: Option<i64>,
    pub payload: Vec<u8>,
    pub error: Option<String>,
}

/// A producer context that records every delivery report and every client-level error.
#[derive(Default)]
pub struct RecordingContext {
    pub deliveries: Mutex<Vec<Delivered>>,
    /// Count of successful deliveries; may be shared by several producers' contexts.
    pub acked: Arc<AtomicUsize>,
    pub client_errors: Mutex<Vec<String>>,
}

impl ClientContext for RecordingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.client_errors
            .lock()
            .unwrap()
            .push(format!("{error}: {reason}"));
    }
}

/// A consumer context that records every client-level error (broker connection lost, ...).
#[derive(Default)]
pub struct ErrorCountingContext {
    pub client_errors: Mutex<Vec<String>>,
}

impl ClientContext for ErrorCountingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.client_errors
            .lock()
            .unwrap()
            .push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ErrorCountingContext {}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        let delivered = match result {
            Ok(message) => Delivered {
                partition: message.partition(),
                offset: Some(message.offset()),
                payload: message.payload().unwrap_or_default().to_vec(),
                error: None,
            },
            Err((error, message)) => Delivered {
                partition: message.partition(),
                offset: None,
                payload: message.payload().unwrap_or_default().to_vec(),
                error: Some(error.to_string()),
            },
        };
        if delivered.offset.is_some() {
            self.acked.fetch_add(1, Ordering::SeqCst);
        }
        self.deliveries.lock().unwrap().push(delivered);
    }
}

/// Producer settings every test shares: acks=all, librdkafka's defaults otherwise.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    config
}

/// A consumer that only uses `assign()` with explicit offsets and never commits. librdkafka
/// refuses `assign()` without a `group.id`, so it gets a dummy one that is never joined.
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    consumer_config(bootstrap)
        .create()
        .expect("create consumer")
}

pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "corelog-tests-unjoined")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    config
}

/// The (low, high) watermarks of a partition, as ListOffsets reports them.
pub fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> (i64, i64) {
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("watermarks of {topic}-{partition}: {error}"))
}

/// Reads every partition in `ends` from offset 0 up to its end offset (exclusive) and returns
/// the messages per partition. Fails on any consumer error or if `timeout` passes first.
pub fn consume_until(
    consumer: &BaseConsumer,
    topic: &str,
    ends: &HashMap<i32, i64>,
    timeout: Duration,
) -> HashMap<i32, Vec<OwnedMessage>> {
    let mut assignment = TopicPartitionList::new();
    for &partition in ends.keys() {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut received: HashMap<i32, Vec<OwnedMessage>> = ends
        .keys()
        .map(|&partition| (partition, Vec::new()))
        .collect();
    let done = |received: &HashMap<i32, Vec<OwnedMessage>>| {
        ends.iter().all(|(partition, &end)| {
            received[partition]
                .last()
                .map_or(end == 0, |message| message.offset() + 1 >= end)
        })
    };
    let deadline = Instant::now() + timeout;
    while !done(&received) {
        assert!(
            Instant::now() < deadline,
            "consume timed out; ends {ends:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                received
                    .get_mut(&message.partition())
                    .unwrap()
                    .push(message.detach());
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
        }
    }
    received
}

/// Hands `payload` for `topic`/`partition` to librdkafka's queue and serves its callbacks once
/// (delivery reports arrive through the producer's context).
pub fn enqueue<C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    topic: &str,
    partition: i32,
    payload: &str,
) {
    let record = BaseRecord::<(), _>::to(topic)
        .partition(partition)
        .payload(payload);
    producer
        .send(record)
        .map_err(|(error, _)| error)
        .expect("enqueue");
    producer.poll(Duration::ZERO);
}
