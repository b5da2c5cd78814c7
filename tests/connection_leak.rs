//! A connection leaves nothing behind in the broker once it is closed: many short connections
//! (connect, ApiVersions, close, as health checks and short-lived clients do) keep broker
//! memory flat instead of growing with every one of them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::protocol::StrBytes;

/// Connect / ApiVersions / close cycles in all, and those run before the first measurement
/// (allocator arenas, the shards' task and buffer pools and the kernel's socket structures
/// reach their working size there).
const CYCLES: usize = 50_000;
const WARM_UP_CYCLES: usize = 5_000;

/// Client threads running cycles at once: enough to keep both shards busy, so the test ends
/// in well under a minute on a loaded 2-core machine.
const CLIENT_THREADS: usize = 4;

/// Most RSS growth allowed over the 45,000 measured cycles: 8 MiB is under 190 bytes per
/// cycle, a tenth of the 1.9 KiB each cycle leaked before the fix (+38 MiB per 20,000), and
/// far above the allocator's noise (a few hundred KiB between runs here).
const RSS_GROWTH_KIB_MAX: u64 = 8 * 1024;

/// How long the broker may take to see the last clients' closes.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

fn api_versions() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("corelog-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1"))
}

/// Runs `cycles` connect / ApiVersions / close cycles over `CLIENT_THREADS` threads.
fn run_cycles(port: u16, cycles: usize) {
    let left = AtomicUsize::new(cycles);
    std::thread::scope(|scope| {
        for _ in 0..CLIENT_THREADS {
            scope.spawn(|| {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let mut conn = RawConn::connect(port);
                    let response = conn.request(&api_versions(), 3);
                    assert_eq!(response.error_code, 0);
                }
            });
        }
    });
}

/// Open client connections the broker counts, summed over its shards (`/metrics`).
fn connections_open(admin_port: u16) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", admin_port)).expect("connect to admin");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read metrics");
    response
        .lines()
        .filter(|line| line.starts_with("corelog_connections_open{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the broker has closed every client connection, then reads its RSS.
fn settled_rss_kib(broker: &Broker, admin_port: u16) -> u64 {
    if !wait_until(SETTLE_TIMEOUT, || connections_open(admin_port) == 0) {
        broker.fail("client connections still open in the broker after the clients closed");
    }
    rss_kib(broker.pid())
}

/// 50,000 connect / ApiVersions / close cycles against a broker with the default two shards:
/// after a warm-up, resident memory grows by less than `RSS_GROWTH_KIB_MAX` over the rest.
#[test]
fn closed_connections_leave_no_memory_behind() {
    let broker = Broker::start(2, &[]);
    let admin_port = broker.admin_port();
    let started = Instant::now();
    run_cycles(broker.port, WARM_UP_CYCLES);
    let warm_kib = settled_rss_kib(&broker, admin_port);
    run_cycles(broker.port, CYCLES - WARM_UP_CYCLES);
    let end_kib = settled_rss_kib(&broker, admin_port);
    let growth_kib = end_kib.saturating_sub(warm_kib);
    let measured = (CYCLES - WARM_UP_CYCLES) as u64;
    println!(
        "{CYCLES} cycles in {:?}: RSS {warm_kib} KiB after {WARM_UP_CYCLES}, {end_kib} KiB \
         at the end: +{growth_kib} KiB ({} bytes per cycle)",
        started.elapsed(),
        growth_kib * 1024 / measured,
    );
    assert!(
        growth_kib < RSS_GROWTH_KIB_MAX,
        "RSS grew {growth_kib} KiB over {measured} cycles ({} bytes per cycle); \
         at most {RSS_GROWTH_KIB_MAX} KiB allowed",
        growth_kib * 1024 / measured
    );
}
