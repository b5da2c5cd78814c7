//! `corelog bench`: a load generator that speaks the Kafka protocol itself and measures
//! throughput and latency against any Kafka-compatible broker.
//!
//! Shape (after Iggy's bench): one file per scenario (`produce`, `consume`, `e2e`), a shared
//! `report`, and the crate's small Kafka client (`crate::client`: framing, correlation ids,
//! and the blocking `Admin` used for set-up). The load runs
//! on pinned glommio executors started through `runtime::run_shards`; every executor owns its
//! producer and consumer tasks and its own [`report::Stats`], merged when all are done. Only the
//! progress counters cross threads, as relaxed atomics.
//!
//! Two ways to load the broker:
//! - closed loop (no `--rate`): each producer keeps up to `--max-in-flight` requests pipelined
//!   on its connection, and latency is measured from the moment a request is written;
//! - open loop (`--rate`): messages are due at fixed intervals whether or not the broker keeps
//!   up, and latency is measured from each message's *intended* send time, so a stalled broker
//!   shows up in the percentiles instead of silently slowing the load (coordinated omission).
//!
//! Set-up asks the first address of `--brokers` for its ApiVersions (request versions are
//! negotiated, see `versions`) and for the topic's partition leaders; the load then goes to
//! the leader's advertised address. Deliberately simple: all partitions of the topic must share
//! one leader (a single broker, or a cluster whose leaders are on one node).

mod consume;
mod e2e;
mod produce;
pub mod report;
mod versions;

use crate::client::security::{authenticate, ClientSecurity, ClientStream};
use crate::client::Connection;
use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::limits::BENCH_IN_FLIGHT_MAX;
use crate::runtime;
use report::{Progress, Report, Scenario, Stats};
pub use versions::Versions;

/// `corelog bench <scenario> [options]`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: ScenarioCommand,
}

#[derive(Subcommand, Debug)]
pub enum ScenarioCommand {
    /// Produce as fast as possible (closed loop) or at --rate (open loop).
    Produce(BenchOptions),
    /// Fetch the topic from its start (or --from latest) as fast as possible, until the end
    /// offsets it had at start or --duration, whichever comes first.
    Consume(BenchOptions),
    /// Produce and consume at once; latency from the producer's timestamp to consumption.
    E2e(BenchOptions),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyDistribution {
    None,
    Random,
    Sequential,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// The options every scenario takes (each ignores the ones that do not apply to it).
#[derive(Args, Clone, Debug)]
pub struct BenchOptions {
    /// Broker address(es), HOST:PORT[,HOST:PORT...]; set-up asks the first one, and the load
    /// goes to the address the topic's leader advertises.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[command(flatten)]
    pub security: crate::client::security::SecurityArgs,
    #[arg(long, default_value = "corelog-bench")]
    pub topic: String,
    /// Value bytes of each message.
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    /// How long to load the broker after the warm-up: 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Open loop: messages per second over all producers. Without it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Print one JSON object as the last line of standard output.
    #[arg(long)]
    pub json: bool,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Producer connections (one task each).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections (one task each); partitions are dealt out among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Produce acks: -1 (all), 0 (none) or 1 (leader).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i16).range(-1..=1))]
    pub acks: i16,
    /// Records per batch up to this many value bytes (at least one record).
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// Open loop: how long a batch may wait for more due messages before it is sent.
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    #[arg(long, value_enum, default_value_t = KeyDistribution::None)]
    pub key_distribution: KeyDistribution,
    /// Random keys are drawn from this many distinct keys (every key updated again and
    /// again, a changelog for a compacted topic); without it, each is new.
    #[arg(long)]
    pub key_space: Option<std::num::NonZeroU64>,
    /// Executors (pinned threads) running the producers and consumers.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// CPUs the executors are pinned to, one each in the order given ("0", "2-3")
    /// [default: the highest CPUs this process may run on, away from a broker's first shard].
    #[arg(long)]
    pub cpus: Option<runtime::CpuList>,
    /// Load before measuring starts: nothing in this period is counted.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Produce requests pipelined per producer connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Where consumers start (default: earliest for consume, latest for e2e).
    #[arg(long, value_enum)]
    pub from: Option<StartFrom>,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "us" => value / 1_000_000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("'{text}' is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The clock every task shares: when load starts, when counting starts, when it ends.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
    /// Wall-clock microseconds since the Unix epoch at `start` (for record timestamps).
    wall_start_us: u64,
}

impl Clock {
    /// Wall-clock microseconds at `instant` (which must not be before `start`).
    pub fn wall_us(&self, instant: Instant) -> u64 {
        self.wall_start_us + instant.saturating_duration_since(self.start).as_micros() as u64
    }

    pub fn measuring(&self, instant: Instant) -> bool {
        instant >= self.measure_from
    }
}

pub fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// What every task of a run reads; shared by all executors.
pub struct Shared {
    pub scenario: Scenario,
    pub options: BenchOptions,
    /// The partitions' leader, where every producer and consumer connects.
    pub address: SocketAddr,
    /// TLS and SASL of every connection.
    pub security: ClientSecurity,
    /// Request versions negotiated with the broker.
    pub versions: Versions,
    pub partitions: i32,
    /// Consumer start offsets, by partition.
    pub start_offsets: Vec<i64>,
    /// `consume`: the end offsets at start, by partition; a consumer that reached them all is
    /// done, so that a catch-up read is not diluted by idle waiting.
    pub end_offsets: Vec<i64>,
    pub progress: Progress,
    clock: OnceLock<Clock>,
}

impl Shared {
    pub fn clock(&self) -> Clock {
        *self.clock.get().expect("clock set before tasks start")
    }

    /// A load connection to the leader, secured and logged in as the options say.
    pub async fn connect(&self) -> anyhow::Result<Connection<ClientStream>> {
        let stream = self.security.connect(self.address).await?;
        let mut connection = Connection::new(stream);
        if let Some(login) = self.security.sasl() {
            authenticate(&mut connection, login).await?;
        }
        Ok(connection)
    }
}

/// Runs `corelog bench` and prints its report.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let (scenario, options) = match &args.scenario {
        ScenarioCommand::Produce(options) => (Scenario::Produce, options),
        ScenarioCommand::Consume(options) => (Scenario::Consume, options),
        ScenarioCommand::E2e(options) => (Scenario::EndToEnd, options),
    };
    validate(scenario, options)?;
    let shared = Arc::new(prepare(scenario, options.clone())?);
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        use std::io::IsTerminal;
        let (shared, done) = (shared.clone(), done.clone());
        let print = std::io::stdout().is_terminal();
        std::thread::spawn(move || report::watch(&shared.progress, &done, print))
    };
    let result = run_executors(shared.clone());
    done.store(true, Ordering::Relaxed);
    let _ = progress.join();
    let (stats, duration) = result?;
    let report = Report {
        scenario,
        stats,
        duration,
        parameters: parameters(&shared),
        latency_meaning: latency_meaning(scenario, options).to_string(),
    };
    println!("{}", report.text());
    if options.json {
        println!("{}", report.json());
    }
    Ok(())
}

fn validate(scenario: Scenario, options: &BenchOptions) -> anyhow::Result<()> {
    if options.threads == 0 || options.producers == 0 || options.consumers == 0 {
        bail!("--threads, --producers and --consumers must be at least 1");
    }
    if options.max_in_flight == 0 || options.max_in_flight > BENCH_IN_FLIGHT_MAX {
        bail!("--max-in-flight must be between 1 and {BENCH_IN_FLIGHT_MAX}");
    }
    if options.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    if let Some(rate) = options.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            bail!("--rate must be a positive number of messages per second");
        }
    }
    if scenario == Scenario::EndToEnd && options.message_size < 8 {
        bail!("e2e needs --message-size of at least 8 (the producer's timestamp)");
    }
    if scenario == Scenario::EndToEnd && options.acks == 0 {
        bail!("e2e needs acks -1 or 1 (acks 0 leaves nothing to wait for)");
    }
    Ok(())
}

/// Resolves the broker, prepares the topic and reads the consumers' start offsets.
fn prepare(scenario: Scenario, options: BenchOptions) -> anyhow::Result<Shared> {
    let first = options.brokers.split(',').next().unwrap_or_default().trim();
    let address = first
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve broker address '{first}'"))?
        .next()
        .with_context(|| format!("broker address '{first}' resolves to nothing"))?;
    let security = ClientSecurity::from_args(&options.security)?;
    let host = first.rsplit_once(':').map_or("", |(host, _)| host);
    let mut admin = crate::client::admin::Admin::connect(address, host, &security)?;
    let partitions = match scenario {
        Scenario::Consume => admin.partition_count(&options.topic)?.with_context(|| {
            format!("topic {} does not exist; nothing to consume", options.topic)
        })?,
        _ => admin.ensure_topic(&options.topic, options.partitions)?,
    };
    let leader = admin.leader_address(&options.topic)?;
    if leader != address {
        tracing::debug!("bench: {} is led by {leader}", options.topic);
        admin = crate::client::admin::Admin::connect(leader, &leader.ip().to_string(), &security)?;
    }
    let address = leader;
    let from = options.from.unwrap_or(match scenario {
        Scenario::EndToEnd => StartFrom::Latest,
        _ => StartFrom::Earliest,
    });
    let start_offsets = match (scenario, from) {
        (Scenario::Produce, _) => Vec::new(),
        (_, StartFrom::Earliest) => admin.offsets(&options.topic, partitions, -2)?,
        (_, StartFrom::Latest) => admin.offsets(&options.topic, partitions, -1)?,
    };
    let end_offsets = match scenario {
        Scenario::Consume => admin.offsets(&options.topic, partitions, -1)?,
        _ => Vec::new(),
    };
    Ok(Shared {
        scenario,
        options,
        address,
        security,
        versions: Versions::from_served(|key| admin.served_range(key))
            .map_err(|error| anyhow::anyhow!("broker at {address}: {error}"))?,
        partitions,
        start_offsets,
        end_offsets,
        progress: Progress::default(),
        clock: OnceLock::new(),
    })
}

/// The last `count` CPUs this process may use, highest first: a broker spreads its shards from
/// the lowest CPU, so a bench on the same machine that starts from the other end does not share
/// a core with a one-shard broker. None when there are fewer CPUs than executors.
fn top_cpus(count: usize) -> Option<runtime::CpuList> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()?
        .into_iter()
        .map(|id| id.id)
        .collect();
    cpus.sort_unstable_by(|a, b| b.cmp(a));
    (cpus.len() >= count).then(|| runtime::CpuList(cpus[..count].to_vec()))
}

/// Time the executors get to connect before the clock starts.
const CONNECT_GRACE: Duration = Duration::from_millis(100);

/// Starts the executors, runs every task to the end, and merges what they measured.
fn run_executors(shared: Arc<Shared>) -> anyhow::Result<(Stats, Duration)> {
    let threads = shared.options.threads;
    let plan = runtime::ExecutorPlan {
        shards: threads,
        cpus: shared.options.cpus.clone().or_else(|| top_cpus(threads)),
        preempt_timer: Duration::from_millis(2),
        spin_before_park: None,
    };
    let next_index = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(threads));
    let collected: Arc<Mutex<Vec<Stats>>> = Arc::new(Mutex::new(Vec::new()));
    let finished_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    {
        let (shared, collected, finished_at) =
            (shared.clone(), collected.clone(), finished_at.clone());
        runtime::run_shards(&plan, move || async move {
            let index = next_index.fetch_add(1, Ordering::SeqCst);
            // Every executor waits here once, before it has any task, so that all of them
            // share one clock that starts after they are all up.
            barrier.wait();
            shared.clock.get_or_init(|| {
                let start = Instant::now() + CONNECT_GRACE;
                Clock {
                    start,
                    measure_from: start + shared.options.warmup,
                    end: start + shared.options.warmup + shared.options.duration,
                    wall_start_us: wall_clock_us() + CONNECT_GRACE.as_micros() as u64,
                }
            });
            let stats = run_executor(&shared, index).await;
            collected.lock().expect("stats lock").push(stats);
            let mut last = finished_at.lock().expect("finish lock");
            *last = Some(last.map_or(Instant::now(), |t| t.max(Instant::now())));
            Ok(())
        })?;
    }
    let mut total = Stats::new();
    for stats in collected.lock().expect("stats lock").iter() {
        total.merge(stats);
    }
    let clock = shared.clock();
    let finished = finished_at
        .lock()
        .expect("finish lock")
        .unwrap_or(clock.end);
    Ok((
        total,
        finished.saturating_duration_since(clock.measure_from),
    ))
}

/// Runs this executor's share of the producers and consumers and returns what they measured.
async fn run_executor(shared: &Arc<Shared>, index: usize) -> Stats {
    let options = &shared.options;
    let stats = Rc::new(RefCell::new(Stats::new()));
    let mut tasks = Vec::new();
    let produces = shared.scenario != Scenario::Consume;
    let consumes = shared.scenario != Scenario::Produce;
    if produces {
        for producer in (index..options.producers).step_by(options.threads) {
            let (shared, stats) = (shared.clone(), stats.clone());
            tasks.push(runtime::spawn_local(produce::producer(
                shared, producer, stats,
            )));
        }
    }
    if consumes {
        for consumer in (index..options.consumers).step_by(options.threads) {
            let (shared, stats) = (shared.clone(), stats.clone());
            tasks.push(runtime::spawn_local(consume::consumer(
                shared, consumer, stats,
            )));
        }
    }
    for task in tasks {
        task.await;
    }
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .unwrap_or_else(|stats| std::mem::take(&mut stats.borrow_mut()))
}

fn latency_meaning(scenario: Scenario, options: &BenchOptions) -> &'static str {
    match (scenario, options.rate.is_some()) {
        (Scenario::Produce, false) => "produce request written to acknowledged, closed loop",
        (Scenario::Produce, true) => {
            "intended send time to acknowledged, open loop, corrected for coordinated omission"
        }
        (Scenario::Consume, _) => "fetch request round trip",
        (Scenario::EndToEnd, false) => "producer timestamp in the record to consumed",
        (Scenario::EndToEnd, true) => {
            "intended send time in the record to consumed, open loop, corrected for \
             coordinated omission"
        }
    }
}

/// The parameters of the run, echoed in the JSON report.
fn parameters(shared: &Shared) -> serde_json::Value {
    let options = &shared.options;
    json!({
        "brokers": options.brokers,
        "leader": shared.address.to_string(),
        "versions": {
            "produce": shared.versions.produce,
            "fetch": shared.versions.fetch,
            "metadata": shared.versions.metadata,
            "create_topics": shared.versions.create_topics,
            "list_offsets": shared.versions.list_offsets,
        },
        "topic": options.topic,
        "message_size": options.message_size,
        "duration_s": options.duration.as_secs_f64(),
        "warmup_s": options.warmup.as_secs_f64(),
        "rate": options.rate,
        "mode": if options.rate.is_some() { "open-loop" } else { "closed-loop" },
        "partitions": shared.partitions,
        "producers": options.producers,
        "consumers": options.consumers,
        "acks": options.acks,
        "batch_size": options.batch_size,
        "linger_ms": options.linger_ms,
        "compression": format!("{:?}", options.compression).to_lowercase(),
        "key_distribution": format!("{:?}", options.key_distribution).to_lowercase(),
        "key_space": options.key_space.map(|keys| keys.get()),
        "threads": options.threads,
        "max_in_flight": options.max_in_flight,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    /// Durations parse in the units scripts use, and nonsense is refused.
    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("10parsecs").is_err());
    }

    /// The bench's default CPUs are the highest this process may use, highest first, and
    /// there is no default when executors outnumber them.
    #[test]
    fn bench_defaults_to_the_highest_cpus() {
        let mut allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap()
            .into_iter()
            .map(|id| id.id)
            .collect();
        allowed.sort_unstable();
        let highest = *allowed.last().unwrap();
        let top_cpus = super::top_cpus;
        assert_eq!(top_cpus(1), Some(crate::runtime::CpuList(vec![highest])));
        let all = top_cpus(allowed.len()).unwrap().0;
        assert_eq!(all, allowed.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(top_cpus(allowed.len() + 1), None);
    }
}
