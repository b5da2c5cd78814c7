//! Resource limits against hostile or careless clients: connection caps (broker-wide and per
//! client IP) refuse cleanly, idle and stalled connections are closed after
//! `connections.max.idle.ms`, a peer that never reads its responses cannot grow broker memory
//! without bound, and thousands of idle connections are cheap.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{ApiVersionsRequest, FetchRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn api_versions() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("corelog-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1"))
}

/// True if the connection answers an ApiVersions request.
fn answers(conn: &mut RawConn) -> bool {
    conn.try_request(&api_versions(), 3).is_ok()
}

/// A raw connection to `port` from the local address `source` (any port).
fn connect_from(source: [u8; 4], port: u16) -> RawConn {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: SocketAddr = (source, 0).into();
    socket
        .bind(&source.into())
        .expect("bind the source address");
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&target.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(RAW_READ_TIMEOUT)).unwrap();
    RawConn::from_stream(stream)
}

/// `max.connections` refuses the connection over the cap (closed without a byte), and room
/// comes back when a connection closes.
#[test]
fn broker_wide_connection_cap_refuses_cleanly() {
    let broker = Broker::start(2, &["--max-connections", "3"]);
    // The harness's readiness probe is closed by now, but the broker may not have counted
    // its close yet: wait until three connections are held at once.
    let mut held = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        let mut conn = RawConn::connect(broker.port);
        if answers(&mut conn) {
            held.push(conn);
        }
        held.len() == 3
    }));
    let mut refused = RawConn::connect(broker.port);
    assert!(!answers(&mut refused), "a fourth connection is refused");
    drop(held.pop());
    assert!(
        wait_until(Duration::from_secs(10), || answers(&mut RawConn::connect(
            broker.port
        ))),
        "a closed connection makes room"
    );
    for conn in &mut held {
        assert!(answers(conn), "refusals leave admitted connections alone");
    }
}

/// `max.connections.per.ip` refuses only the address that reached it.
#[test]
fn per_ip_connection_cap_refuses_only_that_ip() {
    let broker = Broker::start(1, &["--max-connections-per-ip", "2"]);
    let mut held = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        let mut conn = connect_from([127, 0, 0, 1], broker.port);
        if answers(&mut conn) {
            held.push(conn);
        }
        held.len() == 2
    }));
    let mut refused = connect_from([127, 0, 0, 1], broker.port);
    assert!(!answers(&mut refused), "a third connection from 127.0.0.1");
    let mut other = connect_from([127, 0, 0, 2], broker.port);
    assert!(
        answers(&mut other),
        "another client address is still welcome"
    );
}

/// A connection without requests is closed after `connections.max.idle.ms`; one that keeps
/// asking is not.
#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let broker = Broker::start(1, &["--connections-max-idle-ms", "600"]);
    let mut idle = RawConn::connect(broker.port);
    let mut busy = RawConn::connect(broker.port);
    assert!(answers(&mut idle));
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1_500) {
        assert!(answers(&mut busy), "a connection in use stays open");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        idle.wait_closed_by_peer(Duration::from_secs(10)),
        "the idle connection was closed"
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
}

/// A long poll that outlasts `connections.max.idle.ms` is waiting, not idle: it gets its
/// answer.
#[test]
fn a_long_poll_is_not_idleness() {
    let broker = Broker::start(1, &["--connections-max-idle-ms", "300"]);
    create_topic(broker.port, "quiet", 1);
    let mut conn = RawConn::connect(broker.port);
    let mut fetch: FetchRequest = fetch_request("quiet", 0, 0, 0, 1, 1 << 20);
    fetch.max_wait_ms = 1_000;
    let started = Instant::now();
    let response = conn
        .try_request(&fetch, 12)
        .expect("the long poll is answered");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(single_partition(&response).error_code, 0);
}

/// A peer that pipelines large fetches and never reads the responses holds a bounded amount
/// of broker memory, does not disturb other clients, and is dropped once it made no progress
/// for `connections.max.idle.ms`.
#[test]
fn a_peer_that_never_reads_cannot_grow_broker_memory() {
    let broker = Broker::start(
        1,
        &[
            "--connections-max-idle-ms",
            "2000",
            // Too small to keep the batches: every fetch reads them from disk afresh.
            "--batch-cache-bytes",
            "65536",
        ],
    );
    create_topic(broker.port, "big", 1);
    let mut producer = RawConn::connect(broker.port);
    let value = vec![7u8; 512 * 1024];
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for _ in 0..8 {
        let batch = record_batch(&[&value], now_ms, Compression::None);
        assert_eq!(produce(&mut producer, "big", 0, batch).0, 0);
    }
    let before_kib = rss_kib(broker.pid());
    let mut stalled = RawConn::connect(broker.port);
    let fetch = fetch_request("big", 0, 0, 0, 1, 8 << 20);
    // Far more than the socket buffers hold: the broker must stop reading at some point.
    let mut sent = 0;
    while sent < 2_000 && stalled.send_request(&fetch, 12).is_ok() {
        sent += 1;
    }
    // The bound must hold while the broker answers whatever it read: sample it for a while.
    let mut growth_kib = 0;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(1) {
        growth_kib = growth_kib.max(rss_kib(broker.pid()).saturating_sub(before_kib));
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("broker grew by {growth_kib} KiB for a peer that never reads");
    assert!(
        growth_kib < 256 * 1024,
        "a stalled reader grew the broker by {growth_kib} KiB"
    );
    assert_eq!(
        produce(
            &mut producer,
            "big",
            0,
            record_batch(&[b"x"], now_ms, Compression::None)
        )
        .0,
        0,
        "other clients are served meanwhile"
    );
    // Reading would unstall the peer: watch the socket's TCP state for the broker's FIN.
    assert!(
        wait_until(Duration::from_secs(30), || closed_by_peer(&stalled.stream)),
        "the stalled connection was dropped"
    );
}

/// Whether the peer closed its side of `stream` (FIN or reset received), found without
/// reading from it.
fn closed_by_peer(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data, filled by getsockopt on a socket we own.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointers are to `info` and `length`, which outlive the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut length,
        )
    };
    assert_eq!(result, 0, "getsockopt(TCP_INFO)");
    const TCP_CLOSE_WAIT: u8 = 8;
    const TCP_CLOSE: u8 = 7;
    matches!(info.tcpi_state, TCP_CLOSE_WAIT | TCP_CLOSE)
}

/// Thousands of idle connections are held at a small cost each, and a client that arrives
/// after them is served.
#[test]
fn thousands_of_idle_connections_are_cheap() {
    const CONNECTIONS: usize = 3_000;
    let broker = Broker::start(2, &[]);
    let before_kib = rss_kib(broker.pid());
    let mut held = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut conn = RawConn::connect(broker.port);
        assert!(answers(&mut conn), "connection {} is served", held.len());
        held.push(conn);
    }
    let per_connection_kib = rss_kib(broker.pid()).saturating_sub(before_kib) / CONNECTIONS as u64;
    assert!(
        per_connection_kib <= 16,
        "{per_connection_kib} KiB of broker memory per idle connection"
    );
    let mut late = RawConn::connect(broker.port);
    assert!(answers(&mut late));
    for conn in held.iter_mut().step_by(500) {
        assert!(answers(conn), "held connections still answer");
    }
}
