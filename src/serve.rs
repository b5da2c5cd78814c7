//! `corelog serve`: checks the environment, starts one executor per shard, and turns
//! SIGTERM/SIGINT into a clean shutdown. The main thread holds no broker state.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::{Config, ServeArgs};
use crate::limits;
use crate::runtime::{self, ExecutorPlan, Mesh};
use crate::security::tls::TlsContext;
use crate::server::Server;
use crate::shard::{self, ProcessSignals, Serving};

/// Runs the broker until a signal asks it to stop; returns once every log is closed.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Arc::new(Config::resolve(args)?);
    check_locked_memory(config.shards)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    check_ports_free(&config)?;
    let tls = match &config.security.tls {
        Some(settings) => Some(Arc::new(TlsContext::load(settings.clone())?)),
        None => None,
    };
    let signals = Arc::new(ProcessSignals::default());
    watch_signals(signals.clone(), tls.clone())?;
    let serving: Arc<dyn Serving> = Arc::new(Server::new(&config, tls));
    let plan = ExecutorPlan {
        shards: config.shards,
        cpus: config.cpus.clone(),
        preempt_timer: Duration::from_micros(config.preempt_timer_us.max(100)),
        spin_before_park: (config.spin_before_park_us > 0)
            .then(|| Duration::from_micros(config.spin_before_park_us)),
    };
    tracing::info!(
        data_dir = %config.data_dir.display(),
        listeners = ?config.listeners.iter().map(|l| l.bind).collect::<Vec<_>>(),
        cluster = ?config.cluster.as_ref().map(|c| c.listen),
        shards = config.shards,
        cpus = ?config.cpus,
        "starting corelog"
    );
    let mesh = Mesh::full(config.shards, limits::SHARD_CHANNEL_CAPACITY)
        .context("cannot create the shard mesh's doorbells")?;
    let shard_signals = signals.clone();
    runtime::run_shards(&plan, move || {
        shard::run(config, mesh, shard_signals, serving)
    })?;
    tracing::info!("corelog stopped cleanly");
    Ok(())
}

/// Creates the data directory, proves it writable, and takes an exclusive lock on it so that
/// two brokers never share one directory.
pub fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join(".lock");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "data directory {} is in use by another corelog process",
            dir.display()
        );
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    Ok(file)
}

/// Every shard binds each listener's port with SO_REUSEPORT, which would silently share it
/// with another process doing the same; a plain bind first turns a taken port into a clear
/// error. SO_REUSEADDR keeps connections of an earlier run in TIME_WAIT from failing the
/// check. A broker that was just killed can hold its listeners for a moment after it exits
/// (io_uring tears its ring down asynchronously), so a busy port is retried for a few seconds.
fn check_ports_free(config: &Config) -> anyhow::Result<()> {
    let deadline = Instant::now() + PORT_WAIT;
    let mut ports: Vec<(String, std::net::SocketAddr)> = config
        .listeners
        .iter()
        .map(|listener| (format!("listener {}", listener.name), listener.bind))
        .collect();
    if let Some(cluster) = &config.cluster {
        ports.push(("--cluster-listen".to_string(), cluster.listen));
    }
    for (name, listen) in ports {
        let mut warned = false;
        loop {
            match runtime::listening_socket(listen, false, 1) {
                Ok(_) => break,
                Err(error) if error.kind() == ErrorKind::AddrInUse && Instant::now() < deadline => {
                    if !warned {
                        tracing::warn!(%listen, "port is busy; waiting for it");
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot listen on {listen} ({name})"))
                }
            }
        }
    }
    Ok(())
}

/// How long a busy port is waited for at start.
const PORT_WAIT: Duration = Duration::from_secs(5);

/// glommio locks memory for io_uring; without enough it fails deep inside start-up with a bare
/// OS error. Root (CAP_IPC_LOCK) is exempt from the limit.
fn check_locked_memory(shards: usize) -> anyhow::Result<()> {
    // SAFETY: plain syscalls filling a struct we own.
    let (euid, limit) = unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit);
        (libc::geteuid(), limit.rlim_cur)
    };
    let needed = limits::LOCKED_MEMORY_BYTES_PER_SHARD * shards as u64;
    if euid != 0 && limit != libc::RLIM_INFINITY && limit < needed {
        bail!(
            "too little locked memory for io_uring: the limit is {} KiB, {} shards need about \
             {} KiB; raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity under systemd) or \
             run with fewer --shards",
            limit / 1024,
            shards,
            needed / 1024
        );
    }
    Ok(())
}

/// SIGTERM or SIGINT starts a clean shutdown; a second one exits at once. SIGHUP reloads the
/// TLS certificate and key (connections already open keep theirs).
fn watch_signals(signals: Arc<ProcessSignals>, tls: Option<Arc<TlsContext>>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut incoming = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("corelog-signals".into())
        .spawn(move || {
            for signal in incoming.forever() {
                if signal == SIGHUP {
                    reload_tls(tls.as_deref());
                    continue;
                }
                if signals.shutdown.swap(true, Ordering::SeqCst) {
                    // Not `eprintln!`: it panics if stderr cannot be written (a full disk).
                    let message = "corelog: second signal, exiting without a clean shutdown";
                    let _ = writeln!(std::io::stderr(), "{message} ({signal})");
                    std::process::exit(130);
                }
                tracing::info!(signal, "shutting down");
            }
        })?;
    Ok(())
}

fn reload_tls(tls: Option<&TlsContext>) {
    let Some(tls) = tls else {
        tracing::info!("SIGHUP: no TLS listener, nothing to reload");
        return;
    };
    match tls.reload() {
        Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
        Err(error) => {
            tracing::error!("SIGHUP: TLS reload failed, keeping the certificate in use: {error:#}")
        }
    }
}
