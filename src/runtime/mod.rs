//! The thin layer over glommio: executors, task queues, the shard mesh, timers and the clock
//! (`clock`: real or simulated time).
//!
//! Everything in corelog that names a glommio executor or channel API goes through here (files
//! go through `storage::file`, sockets through `server`), so that moving to a glommio fork or
//! another io_uring runtime is a contained change.

use std::future::Future;
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

pub mod clock;
mod doorbell;
pub mod life;
mod mesh;
mod worker;

pub use clock::sleep;
pub use mesh::{Mesh, MeshPort, Reply};
pub use worker::{LazyWorker, Ran, Worker};

pub use glommio::channels::local_channel;
pub use glommio::net::{TcpListener, TcpStream};
pub use glommio::sync::Semaphore;
pub use glommio::task::JoinHandle;
pub use glommio::Task;
pub use glommio::{Latency, Shares, TaskQueueHandle};

/// How the executors are started.
pub struct ExecutorPlan {
    pub shards: usize,
    /// The CPU each executor is pinned to, in order (`--cpus`); without it the executors are
    /// spread over the CPUs this process may run on (its affinity mask, so `taskset` works).
    pub cpus: Option<CpuList>,
    pub preempt_timer: Duration,
    pub spin_before_park: Option<Duration>,
}

/// A CPU list as `taskset -c` and the kernel write it (`0-3,6`), in the order given (`2,1`
/// pins the first executor to CPU 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl std::str::FromStr for CpuList {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<CpuList> {
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| anyhow::anyhow!("CPU list {text:?}: {part:?} is not a CPU number"))
        };
        let mut cpus = Vec::new();
        for item in text.split(',') {
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (number(first)?, number(last)?),
                None => (number(item)?, number(item)?),
            };
            if first > last {
                anyhow::bail!("CPU list {text:?}: range {item:?} runs backwards");
            }
            for cpu in first..=last {
                if cpus.contains(&cpu) {
                    anyhow::bail!("CPU list {text:?} names CPU {cpu} twice");
                }
                cpus.push(cpu);
            }
        }
        Ok(CpuList(cpus))
    }
}

/// Where the executors go: the CPUs of `--cpus` one each, or spread over the online CPUs in
/// this process's affinity mask (glommio alone would use every online CPU, ignoring `taskset`).
fn placement(plan: &ExecutorPlan) -> anyhow::Result<PoolPlacement> {
    let online = CpuSet::online().map_err(|e| anyhow::anyhow!("cannot list CPUs: {e}"))?;
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|id| id.id).collect())
        .unwrap_or_default();
    let usable = match allowed.is_empty() {
        true => online,
        false => online.filter(|location| allowed.contains(&location.cpu)),
    };
    if let Some(CpuList(cpus)) = &plan.cpus {
        if cpus.len() < plan.shards {
            anyhow::bail!(
                "{} executors need {} CPUs, but the CPU list names {}",
                plan.shards,
                plan.shards,
                cpus.len()
            );
        }
        let sets = cpus[..plan.shards]
            .iter()
            .map(|&cpu| {
                let set = usable.clone().filter(|location| location.cpu == cpu);
                match set.is_empty() {
                    true => Err(anyhow::anyhow!(
                        "CPU {cpu} is not online or not in this process's affinity mask"
                    )),
                    false => Ok(set),
                }
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(PoolPlacement::Custom(sets));
    }
    Ok(match plan.shards <= usable.len() {
        true => PoolPlacement::MaxSpread(plan.shards, Some(usable)),
        false => PoolPlacement::Fenced(plan.shards, usable),
    })
}

/// Starts one pinned executor per shard, runs `shard_main` on each, and waits for all to end.
/// Returns the error of the first shard that failed, if any.
pub fn run_shards<G, F>(plan: &ExecutorPlan, shard_main: G) -> anyhow::Result<()>
where
    G: FnOnce() -> F + Clone + Send + 'static,
    F: Future<Output = anyhow::Result<()>> + 'static,
{
    let mut builder = LocalExecutorPoolBuilder::new(placement(plan)?)
        .name("corelog-shard")
        .preempt_timer(plan.preempt_timer);
    if let Some(spin) = plan.spin_before_park {
        builder = builder.spin_before_park(spin);
    }
    let handles = builder
        .on_all_shards(shard_main)
        .map_err(explain_executor_error)?;
    let results = handles.join_all();
    for result in results {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(explain_executor_error(error)),
        }
    }
    Ok(())
}

/// glommio reports too little locked memory as a bare OS error; say what to do about it.
fn explain_executor_error(error: glommio::GlommioError<()>) -> anyhow::Error {
    let text = error.to_string();
    if text.contains("Cannot allocate memory") || text.contains("ENOMEM") {
        anyhow::anyhow!(
            "cannot start io_uring executors ({text}): too little locked memory; raise \
             RLIMIT_MEMLOCK (ulimit -l unlimited, or LimitMEMLOCK=infinity under systemd)"
        )
    } else {
        anyhow::anyhow!("cannot start executors: {text}")
    }
}

/// Creates the task queue of a shard with the given shares and latency class.
pub fn task_queue(name: &str, shares: usize, latency: Latency) -> TaskQueueHandle {
    glommio::executor().create_task_queue(Shares::Static(shares), latency, name)
}

/// Spawns `future` into `queue` and detaches it.
pub fn spawn_into<F>(queue: TaskQueueHandle, future: F)
where
    F: Future<Output = ()> + 'static,
{
    let spawned = match life::current() {
        Some(life) => glommio::spawn_local_into(life.enter(future), queue),
        None => glommio::spawn_local_into(future, queue),
    };
    match spawned {
        Ok(task) => drop(task.detach()),
        Err(error) => panic!("task queue vanished: {error}"),
    }
}

/// Spawns `future` into the executor's current task queue. Like every spawn here, a task
/// spawned by a task of a simulated [`life::Life`] belongs to that life.
pub fn spawn_local<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match life::current() {
        Some(life) => glommio::spawn_local(life.enter(future)),
        None => glommio::spawn_local(future),
    }
}

/// Spawns `future` into `queue`; the handle resolves to its output (None if it was cancelled).
pub fn spawn_joinable<F, T>(queue: TaskQueueHandle, future: F) -> JoinHandle<T>
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    let spawned = match life::current() {
        Some(life) => glommio::spawn_local_into(life.enter(future), queue),
        None => glommio::spawn_local_into(future, queue),
    };
    match spawned {
        Ok(task) => task.detach(),
        Err(error) => panic!("task queue vanished: {error}"),
    }
}

/// Binds a listener that every shard can share (SO_REUSEPORT: the kernel spreads incoming
/// connections) and that restarts cleanly over old connections in TIME_WAIT (SO_REUSEADDR).
pub fn bind_shared_listener(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = listening_socket(address, true, 1024)?;
    // SAFETY: the descriptor is a listening TCP socket we own and hand over exactly once.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Makes a connection fail once its peer has been unreachable for about `timeout`: data
/// unacknowledged that long (TCP_USER_TIMEOUT), or keepalive probes unanswered while it is
/// idle. A link across a network cut otherwise stays open through the cut, and once the cut
/// heals carries nothing until TCP's retransmission backoff next fires, seconds to minutes
/// later; closed, it is dialled again at once.
pub fn fail_when_unreachable(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_user_timeout(Some(timeout))?;
    // Keepalive counts in whole seconds (zero is refused); the user timeout decides when
    // unanswered probes end the connection.
    let probe = Duration::from_secs((timeout.as_secs() / 2).max(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe)
        .with_interval(probe)
        .with_retries(2);
    socket.set_tcp_keepalive(&keepalive)
}

/// A TCP socket listening on `address` with SO_REUSEADDR, and SO_REUSEPORT if `shared`.
pub fn listening_socket(
    address: std::net::SocketAddr,
    shared: bool,
    backlog: i32,
) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let domain = if address.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(shared)?;
    socket.bind(&address.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// How many TCP sockets on this host listen on exactly `address` (from `/proc/net/tcp` and
/// `/proc/net/tcp6`). SO_REUSEPORT lets another process of the same user join our listeners
/// silently; after binding, a count above our own shard count means the port is shared.
///
/// Sockets are counted by inode: the kernel prints the table in pieces, so a read that races
/// other processes binding or closing sockets can print one socket twice (four brokers
/// starting at once saw "3 sockets, 2 ours" on a port nobody else used).
pub fn count_listeners(address: std::net::SocketAddr) -> std::io::Result<usize> {
    let table = if address.is_ipv6() {
        "/proc/net/tcp6"
    } else {
        "/proc/net/tcp"
    };
    let text = std::fs::read_to_string(table)?;
    let inodes: std::collections::HashSet<&str> = text
        .lines()
        .skip(1)
        .filter_map(|line| listener_inode(line, address))
        .collect();
    Ok(inodes.len())
}

/// The inode of the socket on one line of `/proc/net/tcp{,6}` if it is in LISTEN state on
/// `address`. The address is printed as 32-bit words in host byte order, the port as
/// big-endian hex.
fn listener_inode(line: &str, address: std::net::SocketAddr) -> Option<&str> {
    const TCP_LISTEN: &str = "0A";
    let mut fields = line.split_whitespace();
    let (Some(local), Some(_remote), Some(state)) = (fields.nth(1), fields.next(), fields.next())
    else {
        return None;
    };
    // tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, then the inode.
    let inode = fields.nth(5)?;
    let (ip_hex, port_hex) = local.split_once(':')?;
    if state != TCP_LISTEN || u16::from_str_radix(port_hex, 16) != Ok(address.port()) {
        return None;
    }
    let mut ip = Vec::with_capacity(16);
    for word in ip_hex.as_bytes().chunks(8) {
        let word = std::str::from_utf8(word).ok();
        match word.and_then(|word| u32::from_str_radix(word, 16).ok()) {
            Some(word) => ip.extend_from_slice(&word.to_ne_bytes()),
            None => return None,
        }
    }
    let same_ip = match address.ip() {
        std::net::IpAddr::V4(v4) => ip == v4.octets(),
        std::net::IpAddr::V6(v6) => ip == v6.octets(),
    };
    same_ip.then_some(inode)
}

/// Runs the future `make` builds to its end on a new unpinned executor with a thread of its
/// own, and returns its output (tests and tools; the broker uses [`run_shards`]).
pub fn run_on_new_executor<F, Fut, T>(make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(make)
        .expect("start an executor")
        .join()
        .expect("the executor's thread")
}

/// An unpinned executor on the calling thread, for tools that run many short futures one
/// after another (the fuzzer): cheaper than an executor per future.
pub struct ThreadExecutor(glommio::LocalExecutor);

impl Default for ThreadExecutor {
    fn default() -> ThreadExecutor {
        ThreadExecutor::new()
    }
}

impl ThreadExecutor {
    pub fn new() -> ThreadExecutor {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("an executor for this thread");
        ThreadExecutor(executor)
    }

    /// Runs `future` to its end on this thread.
    pub fn run<T>(&self, future: impl Future<Output = T>) -> T {
        self.0.run(future)
    }
}

/// Yields if the executor wants to run something else (long background loops call this).
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// Lets every other task ready on this executor run before this one goes on (simulations
/// step time only once everything woken has run).
pub async fn yield_now() {
    glommio::executor().yield_now().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listening socket shows up in the count for its address, and only for its address.
    #[test]
    fn count_listeners_sees_a_listening_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        assert_eq!(count_listeners(address).expect("read /proc"), 1);
        let other_ip = std::net::SocketAddr::from(([127, 0, 0, 2], address.port()));
        assert_eq!(count_listeners(other_ip).expect("read /proc"), 0);
        drop(listener);
        assert_eq!(count_listeners(address).expect("read /proc"), 0);
    }

    /// Lines as the kernel prints them: IPv4 and IPv6, listening and connected; a listener
    /// is known by its inode, so a line printed twice counts once.
    #[test]
    fn proc_net_tcp_lines_parse() {
        let v4 = "   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000 \
                  0        0 3632656 1 000000006e69c8b2 100 0 0 10 0";
        let address: std::net::SocketAddr = "127.0.0.1:9092".parse().unwrap();
        assert_eq!(listener_inode(v4, address), Some("3632656"));
        assert_eq!(listener_inode(&v4.replace(" 0A ", " 01 "), address), None);
        assert_eq!(listener_inode(v4, "127.0.0.1:9093".parse().unwrap()), None);
        let v6 = "   1: 00000000000000000000000001000000:2384 \
                  00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 \
                  00000000     0        0 3633468 1 000000009701c0ff 100 0 0 10 0";
        assert_eq!(
            listener_inode(v6, "[::1]:9092".parse().unwrap()),
            Some("3633468")
        );
        assert_eq!(listener_inode("garbage", address), None);
    }

    /// CPU lists read as `taskset -c` writes them, in the order given; mistakes are refused.
    #[test]
    fn cpu_lists_parse_in_order() {
        let parse = |text: &str| text.parse::<CpuList>().map(|list| list.0);
        assert_eq!(parse("1").unwrap(), vec![1]);
        assert_eq!(parse("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse("2,1").unwrap(), vec![2, 1]);
        for bad in ["", "a", "3-1", "1,1", "0-2,2", "1,"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// `--cpus` pins one executor per listed CPU; a CPU that is not online is refused before
    /// any executor starts.
    #[test]
    fn cpu_list_placement() {
        let plan = |shards, cpus: Vec<usize>| ExecutorPlan {
            shards,
            cpus: Some(CpuList(cpus)),
            preempt_timer: Duration::from_millis(2),
            spin_before_park: None,
        };
        match placement(&plan(1, vec![0])).unwrap() {
            PoolPlacement::Custom(sets) => {
                assert_eq!(sets.len(), 1);
                assert_eq!(sets[0].iter().map(|l| l.cpu).collect::<Vec<_>>(), vec![0]);
            }
            other => panic!("expected a custom placement, got {other:?}"),
        }
        assert!(placement(&plan(2, vec![0])).is_err());
        assert!(placement(&plan(1, vec![100_000])).is_err());
    }
}
