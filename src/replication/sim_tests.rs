//! A replicated partition under deterministic simulation: three or five nodes (as the seed
//! says) in one thread, each with its own life, simulated disk and network address, one
//! simulated clock, and one seed for the network's drops and delays, the crashes' torn
//! writes, the fault schedule and the workload.
//!
//! Clients propose batches to whichever node leads; meanwhile nodes crash (every task
//! killed, the disk keeping only what was synced, and torn sectors) and restart, the network
//! splits (one node isolated; a majority and a minority; two sides joined only through one
//! bridge node), leaders hand their leadership over, and the network drops and delays; now
//! and then the log start moves (DeleteRecords), so that lagging followers restart their
//! logs at the leader's; every few seconds nobody proposes for a while, so that the group
//! quiesces; and every few seconds the group's voters change (a reassignment: one
//! voter swapped for the spare node or a former voter, by learner, joint configuration and
//! hand-over, the target sometimes changed again midway; once the group settled, the nodes
//! outside it delete their replicas and start again empty). Checked throughout:
//! - at most one leader per term;
//! - what any node serves below its high watermark never changes afterwards, on any node
//!   (so committed logs are prefixes of each other and consumers see only committed data);
//!
//! and at the end, once the faults stop and every node is back: every client's batches are
//! acknowledged again, the voters are the last target, every one of them holds the same
//! log, starting at or past every acknowledged log-start move, and every acknowledged batch
//! not below such a move is in it at the offset it was acknowledged with.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{select, Either};
use glommio::Latency;

use super::replica::{
    is_whole_entry, Committed, ProposeError, Replica, ReplicaConfig, ReplicaSpec, Until,
};
use super::replicas::Replicas;
use crate::ids::{NodeId, Offset, PartitionId, ShardId};
use crate::metadata::topic_config::{TimestampType, TopicCompression, TopicConfig};
use crate::metrics::ShardMetrics;
use crate::partition::{KeyMap, ShardContext, TopicPartition};
use crate::protocol::record_batch::{self, encode_plain_batch, PlainRecord};
use crate::protocol::records;
use crate::runtime::clock::{self, SimClock};
use crate::runtime::life::Life;
use crate::runtime::{self, yield_now};
use crate::seeded::Seeded;
use crate::storage::sim_disk::SimDisk;
use crate::storage::{BatchCache, Log, StorageError};
use crate::sync::Latch;
use crate::transport::sim::{Faults, SimNetwork};
use crate::transport::{Address, Transport};

const GROUP: u64 = 1;
const TICK: Duration = Duration::from_millis(10);
const CLIENTS: usize = 3;
/// Every file and directory sync takes this long, so that crashes fall between writes and
/// their syncs.
const SYNC_LATENCY: Duration = Duration::from_millis(2);
/// A proposal not answered in this long is left unknown (neither acknowledged nor failed).
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(2);

fn topic_config() -> TopicConfig {
    TopicConfig {
        accepted: Default::default(),
        cleanup_policy: "delete".to_string(),
        segment_bytes: 4096,
        segment_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: 1 << 20,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        index_interval_bytes: 4096,
        min_insync_replicas: 1,
        delete_retention_ms: 86_400_000,
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        compression: TopicCompression::Producer,
    }
}

/// The compacted topic of `Mode::Compacted`: every replica cleans its log as soon as any
/// of it is dirty (and the trimmer's log-start moves go on, as `compact,delete` allows).
fn compacted_config() -> TopicConfig {
    TopicConfig {
        cleanup_policy: "compact,delete".to_string(),
        min_cleanable_dirty_ratio: 0.0,
        ..topic_config()
    }
}

/// What the simulated partition's log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// Compacted: keyed payloads, and every node cleans its replica now and then.
    Compacted,
}

impl Mode {
    /// How many records a payload has (an idempotent producer's sequence advances by it).
    fn records_per_payload(self) -> i32 {
        match self {
            Mode::Plain => 1,
            Mode::Compacted => 2,
        }
    }
}

/// The keys of `Mode::Compacted`'s payloads: few, so that most records are superseded.
const KEYS: u64 = 16;

/// Small windows, so that followers that fall behind are caught up by snapshots and copies.
fn replica_config() -> ReplicaConfig {
    ReplicaConfig {
        window_bytes_max: 4096,
        copy_timeout: Duration::from_millis(200),
        anchor_lag_entries_max: 8,
        ..ReplicaConfig::default()
    }
}

fn address(node: NodeId) -> Address {
    Address {
        node,
        shard: ShardId(0),
    }
}

/// One simulated process.
struct Node {
    id: NodeId,
    life: Rc<Life>,
    disk: Rc<SimDisk>,
    root: PathBuf,
    generation: u32,
    replica: Rc<RefCell<Option<Rc<Replica>>>>,
    /// When a dead node comes back, in simulated milliseconds.
    restart_at_ms: Option<i64>,
    /// Whether the node starts outside the group: the spare, and a node whose replica was
    /// deleted when a reassignment removed it.
    outside: bool,
}

struct Cluster {
    name: String,
    mode: Mode,
    /// How many voters: three or five; one more node starts as a spare.
    size: i32,
    /// The voters the group is being moved to (at first the nodes below `size`).
    target: RefCell<BTreeSet<NodeId>>,
    /// Targets set, and targets a leader's configuration reached.
    reconfigurations: RefCell<u64>,
    reached: RefCell<u64>,
    random: RefCell<Seeded>,
    clock: Rc<SimClock>,
    network: Rc<SimNetwork>,
    shard: Rc<ShardContext>,
    nodes: RefCell<Vec<Node>>,
    /// Every batch any node served below its high watermark, by offset.
    committed: RefCell<BTreeMap<Offset, Bytes>>,
    /// The leader seen in each term.
    leaders: RefCell<HashMap<u64, NodeId>>,
    /// Acknowledged proposals: the payload's number and where it was committed.
    acked: RefCell<Vec<(u64, Committed)>>,
    /// Per producer, where its last acknowledged batch begins.
    last_acked: RefCell<HashMap<i64, Offset>>,
    /// Per producer, when its last batch was acknowledged (simulated milliseconds).
    acked_at_ms: RefCell<HashMap<i64, i64>>,
    /// The highest acknowledged log-start move.
    trimmed_to: RefCell<Offset>,
    next_payload: RefCell<u64>,
    crashes: RefCell<u64>,
    /// Snapshots installed by replicas that have since died.
    snapshots: RefCell<u64>,
    /// The chance of a crash, and of an isolated node, per draw of the fault schedule: from
    /// one every 10 s to three a second, as the seed says.
    crash_per_million: u32,
    /// A crashed node restarts within this many milliseconds: quickly (a supervisor's
    /// restart, back within the term it crashed in) or slowly, as the seed says.
    restart_ms_max: u64,
    /// Link cuts to heal, with when.
    heal_at_ms: RefCell<Option<i64>>,
    /// Until when the clients and the trimmer propose nothing, so that the group quiesces.
    quiet_until_ms: RefCell<i64>,
    /// Checks that found a live replica quiescent.
    quiescent_seen: RefCell<u64>,
    /// Batches a pass rewrote that checks read (`Mode::Compacted`).
    cleaned_seen: RefCell<u64>,
}

impl Cluster {
    fn new(seed: u64, mode: Mode) -> Rc<Cluster> {
        let clock = SimClock::install(1_700_000_000_000);
        let shard = Rc::new(ShardContext::new(
            runtime::task_queue("flush", 1000, Latency::NotImportant),
            Rc::new(ShardMetrics::new(1)),
        ));
        let mut random = Seeded::new(seed);
        let size = if random.coin() { 3 } else { 5 };
        let crash_per_million = 1_000 + random.below(29_000) as u32;
        let restart_ms_max = if random.coin() { 100 } else { 3_000 };
        let cluster = Rc::new(Cluster {
            name: format!("seed {seed} ({size} nodes, {mode:?})"),
            mode,
            size,
            target: RefCell::new((0..size).map(NodeId).collect()),
            reconfigurations: RefCell::new(0),
            reached: RefCell::new(0),
            random: RefCell::new(random),
            crash_per_million,
            restart_ms_max,
            clock,
            network: SimNetwork::new(seed ^ 0x5eed, Faults::default()),
            shard,
            nodes: RefCell::default(),
            committed: RefCell::default(),
            leaders: RefCell::default(),
            acked: RefCell::default(),
            last_acked: RefCell::default(),
            acked_at_ms: RefCell::default(),
            trimmed_to: RefCell::new(Offset::ZERO),
            next_payload: RefCell::new(0),
            crashes: RefCell::new(0),
            snapshots: RefCell::new(0),
            heal_at_ms: RefCell::new(None),
            quiet_until_ms: RefCell::new(0),
            quiescent_seen: RefCell::new(0),
            cleaned_seen: RefCell::new(0),
        });
        let stop = Rc::new(Latch::default());
        runtime::spawn_local(cluster.network.clone().run(stop)).detach();
        for id in 0..=size {
            let root = PathBuf::from(format!("/corelog-sim-{seed}/node-{id}/0"));
            let disk = SimDisk::mount(&root);
            disk.set_sync_latency(SYNC_LATENCY);
            let node = Node {
                id: NodeId(id),
                life: Life::new(),
                disk,
                root,
                generation: 0,
                replica: Rc::default(),
                restart_at_ms: None,
                outside: id >= size,
            };
            cluster.start(&node, seed);
            cluster.nodes.borrow_mut().push(node);
        }
        cluster
    }

    /// Starts `node`'s process: its log, its replica and its shard's Raft timer.
    fn start(&self, node: &Node, seed: u64) {
        let replicas = Replicas::new();
        let transport: Rc<dyn Transport> =
            Rc::new(self.network.attach(address(node.id), replicas.deliver()));
        let ticking = transport.clone();
        // The spare and deleted replicas join when a reassignment adds them (an anchor,
        // once written, keeps what a node applied).
        let voters = match node.outside {
            false => (0..self.size).map(NodeId).collect(),
            true => Vec::new(),
        };
        let spec = ReplicaSpec {
            group: GROUP,
            me: node.id,
            voters,
            peers: self
                .node_ids()
                .filter(|peer| *peer != node.id)
                .map(|peer| (peer, address(peer)))
                .collect(),
            seed: seed
                .wrapping_mul(31)
                .wrapping_add(node.generation as u64 * 7 + node.id.get() as u64),
        };
        let dir = node.root.join("topic-0");
        let shard = self.shard.clone();
        let slot = node.replica.clone();
        let mode = self.mode;
        let cleaner_seed = spec.seed;
        let process = async move {
            let config = match mode {
                Mode::Plain => topic_config(),
                Mode::Compacted => compacted_config(),
            };
            let cache = BatchCache::new(1 << 20);
            let log = Log::open(dir, config.log_config(), cache).await;
            let log = log.unwrap_or_else(|error| panic!("opening the log: {error}"));
            let tp = TopicPartition {
                topic: "sim".into(),
                partition: PartitionId(0),
            };
            let opened = Replica::open(spec, tp, config, log, shard, transport, replica_config());
            let replica = opened
                .await
                .unwrap_or_else(|error| panic!("opening the replica: {error}"));
            replicas.insert(replica.clone());
            *slot.borrow_mut() = Some(replica.clone());
            let ticks = replicas.tick(TICK, ticking, Rc::new(Latch::default()));
            match mode {
                Mode::Plain => ticks.await,
                Mode::Compacted => {
                    let cleaning = clean_now_and_then(replica, cleaner_seed);
                    futures::future::join(ticks, cleaning).await;
                }
            }
        };
        runtime::spawn_local(node.life.enter(process)).detach();
    }

    fn now_ms(&self) -> i64 {
        clock::now_ms()
    }

    /// Every node, the spare too.
    fn node_ids(&self) -> impl Iterator<Item = NodeId> {
        (0..=self.size).map(NodeId)
    }

    /// The live replicas of the voters of the target.
    fn live_members(&self) -> Vec<(NodeId, Rc<Replica>)> {
        let target = self.target.borrow();
        let live = self.live_replicas().into_iter();
        live.filter(|(node, _)| target.contains(node)).collect()
    }

    fn live_replicas(&self) -> Vec<(NodeId, Rc<Replica>)> {
        let nodes = self.nodes.borrow();
        let live = nodes.iter().filter_map(|node| {
            let replica = node.replica.borrow().clone()?;
            Some((node.id, replica))
        });
        live.collect()
    }

    /// Lets every task woken run, then moves the clock to the next deadline.
    async fn step(&self) {
        for _ in 0..32 {
            yield_now().await;
        }
        let next = self.clock.until_next_deadline().unwrap_or(TICK);
        self.clock.advance(next.min(TICK));
    }

    /// Kills `index`'s process: its tasks die, its disk keeps what was synced (and torn
    /// sectors), and it restarts later on what survived.
    fn crash(&self, index: usize, restart_after_ms: i64) {
        let mut nodes = self.nodes.borrow_mut();
        let node = &mut nodes[index];
        if node.restart_at_ms.is_some() {
            return;
        }
        *self.crashes.borrow_mut() += 1;
        let torn = self.random.borrow_mut().next_u64();
        self.end_process(node, |disk, root| disk.crash_into(root, torn));
        node.restart_at_ms = Some(self.now_ms() + restart_after_ms);
    }

    /// Ends `node`'s process: its tasks die, it leaves the network, and its next process
    /// gets the disk `next_disk` makes from the old one, under a new root.
    fn end_process(&self, node: &mut Node, next_disk: impl FnOnce(&SimDisk, &Path) -> Rc<SimDisk>) {
        node.life.kill();
        if let Some(replica) = node.replica.borrow_mut().take() {
            *self.snapshots.borrow_mut() += replica.snapshots_installed();
        }
        self.network.detach(address(node.id));
        node.generation += 1;
        let root = node
            .root
            .parent()
            .unwrap()
            .join(node.generation.to_string());
        node.disk = next_disk(&node.disk, &root);
        node.disk.set_sync_latency(SYNC_LATENCY);
        node.root = root;
        node.life = Life::new();
    }

    /// Deletes the replica of `index`, as a node that a completed reassignment removed
    /// does: its process restarts at once on an empty disk, outside the group.
    fn delete_replica(&self, index: usize) {
        let mut nodes = self.nodes.borrow_mut();
        let node = &mut nodes[index];
        self.end_process(node, |_, root| SimDisk::mount(root));
        node.outside = true;
        node.restart_at_ms = Some(self.now_ms());
    }

    fn restart_due(&self, seed: u64) {
        let now = self.now_ms();
        let mut nodes = self.nodes.borrow_mut();
        for node in nodes.iter_mut() {
            if node.restart_at_ms.is_some_and(|at| at <= now) {
                node.restart_at_ms = None;
                self.start(node, seed);
            }
        }
    }

    /// One draw of the fault schedule, every 10 ms of simulated time: crashes, network splits
    /// (for 0.2 to 3.2 s) and leadership handovers at the seed's rate, new drop and delay
    /// rates about every 2 s.
    fn inject_faults(&self) {
        let now = self.now_ms();
        if self.heal_at_ms.borrow().is_some_and(|at| at <= now) {
            self.network.heal_all();
            *self.heal_at_ms.borrow_mut() = None;
        }
        let mut random = self.random.borrow_mut();
        let nodes = self.size as u64 + 1;
        if random.chance(self.crash_per_million) {
            let index = random.below(nodes) as usize;
            let restart_after = 10 + random.below(self.restart_ms_max) as i64;
            drop(random);
            self.crash(index, restart_after);
            return;
        }
        if random.chance(self.crash_per_million) && self.heal_at_ms.borrow().is_none() {
            let (side, other) = split(&mut random, nodes as i32);
            self.network.partition(&side, &other);
            *self.heal_at_ms.borrow_mut() = Some(now + 200 + random.below(3_000) as i64);
        }
        if random.chance(self.crash_per_million) {
            // A leader handing over before a clean stop.
            drop(random);
            let leading = self
                .live_replicas()
                .into_iter()
                .find(|(_, r)| r.is_leader());
            if let Some((_, leader)) = leading {
                leader.transfer_leadership();
            }
            random = self.random.borrow_mut();
        }
        if random.chance(5_000) {
            self.network.set_faults(Faults {
                drop_per_million: random.below(50_000) as u32,
                delay_min_ms: 0,
                delay_max_ms: 1 + random.below(30),
            });
        }
    }

    fn is_quiet(&self) -> bool {
        self.now_ms() < *self.quiet_until_ms.borrow()
    }

    /// Election safety, and that nothing served as committed ever changes.
    async fn check(&self) {
        for (node, replica) in self.live_replicas() {
            if replica.is_quiescent() {
                *self.quiescent_seen.borrow_mut() += 1;
            }
            if replica.is_leader() {
                let term = replica.term();
                let previous = self.leaders.borrow_mut().insert(term, node);
                assert!(
                    previous.is_none_or(|leader| leader == node),
                    "{}: two leaders in term {term}: {previous:?} and {node}",
                    self.name
                );
            }
            let partition = replica.partition().clone();
            let mut offset = partition.log_start_offset();
            while offset < partition.high_watermark() {
                let Ok(batches) = partition.read(offset, 64 * 1024).await else {
                    break;
                };
                for batch in batches {
                    let header = record_batch::header(&batch).unwrap();
                    let base = Offset(header.base_offset.get());
                    if self.mode == Mode::Compacted && !is_whole_entry(&batch) {
                        self.check_cleaned(node, &batch);
                        offset = base + i64::from(header.last_offset_delta.get()) + 1;
                        continue;
                    }
                    let mut committed = self.committed.borrow_mut();
                    match committed.get(&base) {
                        Some(seen) => assert_eq!(
                            seen, &batch,
                            "{}: node {node} serves another batch at committed offset {base}",
                            self.name
                        ),
                        None => {
                            committed.insert(base, batch.clone());
                        }
                    }
                    offset = base + i64::from(header.last_offset_delta.get()) + 1;
                }
            }
        }
    }
}

impl Cluster {
    /// A batch a pass rewrote (`Mode::Compacted`) stands for the committed batches of its
    /// range: each of them whole inside it and of its epoch; one with records keeps some of
    /// the records of the committed batch at its base, at their offsets.
    fn check_cleaned(&self, node: NodeId, batch: &Bytes) {
        let name = &self.name;
        let header = record_batch::header(batch).unwrap();
        let epoch = header.partition_leader_epoch.get();
        let base = Offset(header.base_offset.get());
        let last = last_offset(batch);
        *self.cleaned_seen.borrow_mut() += 1;
        let committed = self.committed.borrow();
        if let Some((seen_base, seen)) = committed.range(..base).next_back() {
            assert!(
                last_offset(seen) < base,
                "{name}: node {node}'s cleaned batch at {base} begins inside the committed \
                 batch at {seen_base}"
            );
        }
        for (seen_base, seen) in committed.range(base..=last) {
            let seen_epoch = record_batch::header(seen)
                .unwrap()
                .partition_leader_epoch
                .get();
            assert!(
                seen_epoch == epoch && last_offset(seen) <= last,
                "{name}: node {node}'s cleaned batch [{base}, {last}] of epoch {epoch} holds \
                 the committed batch at {seen_base} of epoch {seen_epoch}, ending at {}",
                last_offset(seen)
            );
        }
        let Some(seen) = committed
            .get(&base)
            .filter(|_| header.record_count.get() > 0)
        else {
            return;
        };
        assert_eq!(
            last_offset(seen),
            last,
            "{name}: node {node}'s batch at {base}"
        );
        let original = records::parse(seen).unwrap();
        for record in records::parse(batch).unwrap() {
            assert!(
                original.contains(&record),
                "{name}: node {node}'s cleaned batch at {base} has a record its original had not"
            );
        }
    }
}

/// The last offset of a stored batch.
fn last_offset(batch: &[u8]) -> Offset {
    let header = record_batch::header(batch).unwrap();
    Offset(header.base_offset.get() + i64::from(header.last_offset_delta.get()))
}

/// Two sides of a network split of `size` nodes, cut from each other: one node isolated, a
/// minority against a majority (2 against 3 of five), or two sides joined only through a
/// bridge node, which is in neither and still reaches both.
fn split(random: &mut Seeded, size: i32) -> (Vec<NodeId>, Vec<NodeId>) {
    let mut nodes: Vec<NodeId> = (0..size).map(NodeId).collect();
    // A seeded shuffle picks who ends up where.
    for at in (1..nodes.len()).rev() {
        let other = random.below(at as u64 + 1) as usize;
        nodes.swap(at, other);
    }
    match random.below(3) {
        0 => (nodes[..1].to_vec(), nodes[1..].to_vec()),
        1 => {
            let minority = (size as usize - 1) / 2;
            (nodes[..minority].to_vec(), nodes[minority..].to_vec())
        }
        _ => {
            let bridge_sides = (size as usize - 1) / 2;
            let (left, rest) = nodes.split_at(bridge_sides);
            (left.to_vec(), rest[1..].to_vec())
        }
    }
}

/// A batch of one record `payload-<number>` of idempotent producer `producer` at `sequence`.
fn payload(number: u64, producer: i64, sequence: i32, mode: Mode) -> Bytes {
    let record = |key: Option<u64>, suffix: &str| PlainRecord {
        timestamp: 1_700_000_000_000,
        key: key.map(|key| Bytes::from(format!("key-{key}"))),
        value: Some(Bytes::from(format!("payload-{number}{suffix}"))),
    };
    let records = match mode {
        Mode::Plain => vec![record(None, "")],
        // Two keys, so that a pass may keep one record of the batch.
        Mode::Compacted => vec![
            record(Some(number % KEYS), ""),
            record(Some((number * 7 + 3) % KEYS), "b"),
        ],
    };
    let compression = kafka_protocol::records::Compression::None;
    let mut batch = encode_plain_batch(records, compression).unwrap();
    crate::protocol::record_batch::set_producer(&mut batch, producer, 0, sequence, 0);
    batch.freeze()
}

/// One client: an idempotent producer that proposes numbered batches to the leader it
/// finds, one at a time, and retries each (same sequence) until it is acknowledged.
async fn client(cluster: Rc<Cluster>, producer: i64, stop: Rc<Latch>) {
    let mut sequence = 0;
    let mut unacknowledged = None;
    while !stop.is_raised() {
        if cluster.is_quiet() && unacknowledged.is_none() {
            clock::sleep(TICK).await;
            continue;
        }
        let leader = cluster
            .live_replicas()
            .into_iter()
            .find(|(_, replica)| replica.is_leader());
        let Some((leader_node, replica)) = leader else {
            clock::sleep(TICK).await;
            continue;
        };
        let leader_term = replica.term();
        let number = *unacknowledged.get_or_insert_with(|| {
            let mut next = cluster.next_payload.borrow_mut();
            *next += 1;
            *next
        });
        let batch = payload(number, producer, sequence, cluster.mode);
        let proposed = Box::pin(async move { replica.propose(batch).await });
        let timeout = Box::pin(clock::sleep(PROPOSAL_TIMEOUT));
        match select(proposed, timeout).await {
            Either::Left((Ok(committed), _)) => {
                cluster.acked.borrow_mut().push((number, committed));
                (cluster.last_acked.borrow_mut()).insert(producer, committed.base_offset);
                (cluster.acked_at_ms.borrow_mut()).insert(producer, cluster.now_ms());
                unacknowledged = None;
                sequence += cluster.mode.records_per_payload();
            }
            Either::Left((Err(ProposeError::Producer(error)), _)) => {
                let terms: Vec<_> = (cluster.live_replicas().iter())
                    .map(|(node, replica)| (*node, replica.term(), replica.is_leader()))
                    .collect();
                panic!(
                    "{}: the retry of a batch in order refused by node {leader_node} in term \
                     {leader_term}: {error}; (node, term, leads) now: {terms:?}",
                    cluster.name
                )
            }
            Either::Left((Err(_), _)) => clock::sleep(TICK).await,
            Either::Right(_) => {}
        }
    }
}

/// Moves the log start now and then, never past the last batch a client had acknowledged:
/// a batch whose answer was lost is retried, and its original must still be there for the
/// retry to be found a duplicate.
async fn trimmer(cluster: Rc<Cluster>, seed: u64, stop: Rc<Latch>) {
    let mut random = Seeded::new(seed ^ 0x7219);
    while !stop.is_raised() {
        clock::sleep(Duration::from_millis(200 + random.below(800))).await;
        if cluster.is_quiet() {
            continue;
        }
        let target = {
            let last = cluster.last_acked.borrow();
            let every_client = last.len() == CLIENTS;
            last.values().min().copied().filter(|_| every_client)
        };
        let leader = cluster
            .live_replicas()
            .into_iter()
            .find(|(_, replica)| replica.is_leader());
        let (Some(target), Some((_, replica))) = (target, leader) else {
            continue;
        };
        let proposed = Box::pin(async move { replica.propose_log_start(target).await });
        let timeout = Box::pin(clock::sleep(PROPOSAL_TIMEOUT));
        if let Either::Left((Ok(_), _)) = select(proposed, timeout).await {
            let mut trimmed_to = cluster.trimmed_to.borrow_mut();
            *trimmed_to = (*trimmed_to).max(target);
        }
    }
}

/// Every 1 to 4 s of faults, swaps one voter of the target for a node outside it (the spare
/// at first, former voters later), whether or not the last target was reached; every 100 ms
/// hands the current leader the target, as a shard's reassignment loop does, and once the
/// leader says the group settled there, deletes the replicas of the nodes outside it, as
/// the nodes a completed reassignment removed do.
async fn reconfigurer(cluster: Rc<Cluster>, seed: u64, calm: Rc<Latch>, stop: Rc<Latch>) {
    let mut random = Seeded::new(seed ^ 0x4ec0);
    let mut next_change_ms = cluster.now_ms() + 1_000 + random.below(3_000) as i64;
    let mut was_reached = true;
    let mut completed = true;
    while !stop.is_raised() {
        clock::sleep(Duration::from_millis(100)).await;
        if !calm.is_raised() && cluster.now_ms() >= next_change_ms {
            next_change_ms = cluster.now_ms() + 1_000 + random.below(3_000) as i64;
            let mut target = cluster.target.borrow_mut();
            let members: Vec<NodeId> = target.iter().copied().collect();
            let outside: Vec<NodeId> = cluster.node_ids().filter(|n| !target.contains(n)).collect();
            let leaving = members[random.below(members.len() as u64) as usize];
            let joining = outside[random.below(outside.len() as u64) as usize];
            target.remove(&leaving);
            target.insert(joining);
            *cluster.reconfigurations.borrow_mut() += 1;
            was_reached = false;
            completed = false;
        }
        let leader = cluster
            .live_replicas()
            .into_iter()
            .find(|(_, replica)| replica.is_leader());
        if let Some((_, leader)) = leader {
            let target = cluster.target.borrow().clone();
            let reached = leader.membership().is(&target);
            if reached && !was_reached {
                *cluster.reached.borrow_mut() += 1;
            }
            was_reached = reached;
            if !reached {
                leader.reconfigure(target);
            } else if !completed && leader.settled(&target) {
                completed = true;
                let removed: Vec<usize> = (cluster.nodes.borrow().iter().enumerate())
                    .filter(|(_, node)| !target.contains(&node.id))
                    .map(|(index, _)| index)
                    .collect();
                for index in removed {
                    cluster.delete_replica(index);
                }
            }
        }
    }
}

/// Every 2 to 6 s, a quiet period of 1.5 to 5 s in which the clients and the trimmer propose
/// nothing: the group quiesces, and the faults go on. They end with the faults.
async fn quieter(cluster: Rc<Cluster>, seed: u64, calm: Rc<Latch>) {
    let mut random = Seeded::new(seed ^ 0x9e1e);
    while !calm.is_raised() {
        clock::sleep(Duration::from_millis(2_000 + random.below(4_000))).await;
        let quiet_ms = 1_500 + random.below(3_500) as i64;
        *cluster.quiet_until_ms.borrow_mut() = cluster.now_ms() + quiet_ms;
    }
}

/// A node's log cleaner in `Mode::Compacted`, as a shard's: a pass every 100 to 500 ms, the
/// replica asked first to bring its anchor up (`Replica::want_anchor`), with a key map of
/// the smallest budget.
async fn clean_now_and_then(replica: Rc<Replica>, seed: u64) {
    let mut random = Seeded::new(seed ^ 0xc1ea);
    let mut key_map = KeyMap::new(crate::limits::CLEANER_KEY_MAP_BYTES_MIN);
    loop {
        clock::sleep(Duration::from_millis(100 + random.below(400))).await;
        replica.want_anchor();
        match replica
            .partition()
            .clean(&mut key_map, clock::now_ms())
            .await
        {
            Ok(_) | Err(StorageError::Closed) | Err(StorageError::Failed(_)) => {}
            Err(error) => panic!("compaction failed: {error}"),
        }
    }
}

/// The number of a batch's `payload-<number>` record.
fn payload_number(batch: &[u8]) -> Option<u64> {
    let tag = b"payload-";
    let at = batch.windows(tag.len()).position(|window| window == tag)? + tag.len();
    let digits = batch[at..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&batch[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Runs one seed for `duration` of faults, then heals and checks the end state. Returns a
/// digest of what happened, the same for the same seed.
async fn simulate(seed: u64, duration: Duration, mode: Mode) -> String {
    let cluster = Cluster::new(seed, mode);
    let stop = Rc::new(Latch::default());
    for producer in 0..CLIENTS as i64 {
        runtime::spawn_local(client(cluster.clone(), 1000 + producer, stop.clone())).detach();
    }
    runtime::spawn_local(trimmer(cluster.clone(), seed, stop.clone())).detach();
    let calm = Rc::new(Latch::default());
    runtime::spawn_local(quieter(cluster.clone(), seed, calm.clone())).detach();
    let reconfiguring = reconfigurer(cluster.clone(), seed, calm.clone(), stop.clone());
    runtime::spawn_local(reconfiguring).detach();
    let end = cluster.now_ms() + duration.as_millis() as i64;
    let (mut last_check, mut last_faults) = (0, 0);
    while cluster.now_ms() < end {
        cluster.step().await;
        if cluster.now_ms() - last_faults >= 10 {
            cluster.inject_faults();
            last_faults = cluster.now_ms();
        }
        cluster.restart_due(seed);
        if cluster.now_ms() - last_check >= 50 {
            cluster.check().await;
            last_check = cluster.now_ms();
        }
    }
    // The faults stop: the network heals, every node comes back, the last target is reached,
    // the clients go on for a while and then stop.
    calm.raise();
    *cluster.quiet_until_ms.borrow_mut() = 0;
    cluster.network.heal_all();
    cluster.network.set_faults(Faults::default());
    *cluster.heal_at_ms.borrow_mut() = None;
    for node in cluster.nodes.borrow_mut().iter_mut() {
        if node.restart_at_ms.is_some() {
            node.restart_at_ms = Some(0);
        }
    }
    cluster.restart_due(seed);
    let healed_ms = cluster.now_ms();
    let clients_end = healed_ms + 8_000;
    let settle_end = healed_ms + 20_000;
    let mut converged = false;
    while cluster.now_ms() < settle_end {
        cluster.step().await;
        if cluster.now_ms() > clients_end {
            stop.raise();
        }
        if stop.is_raised() && all_equal(&cluster) {
            converged = true;
            break;
        }
    }
    cluster.check().await;
    let name = &cluster.name;
    assert!(
        converged,
        "{name}: the nodes did not converge after the faults stopped"
    );
    // Copies: the end checks of `Mode::Compacted` read the replicas (await).
    let acked = cluster.acked.borrow().clone();
    let committed = cluster.committed.borrow().clone();
    assert!(!acked.is_empty(), "{name}: nothing was acknowledged");
    // Liveness: once the faults stopped, every client's batches are acknowledged again (a
    // retry answered NOT_LEADER for ever, say, would stall its producer).
    for producer in 0..CLIENTS as i64 {
        let at = cluster
            .acked_at_ms
            .borrow()
            .get(&(1000 + producer))
            .copied();
        assert!(
            at.is_some_and(|at| at > healed_ms),
            "{name}: producer {producer} had no acknowledgement between the end of the faults \
             ({healed_ms} ms) and {clients_end} ms (its last at {at:?} ms)"
        );
    }
    let trimmed_to = *cluster.trimmed_to.borrow();
    for (node, replica) in cluster.live_members() {
        let log_start = replica.partition().log_start_offset();
        assert!(
            log_start >= trimmed_to,
            "{name}: node {node}'s log starts at {log_start}, below the move to {trimmed_to}"
        );
    }
    if cluster.mode == Mode::Compacted {
        check_compacted_end(&cluster, &acked, &committed, trimmed_to).await;
    }
    for (number, at) in acked.iter() {
        if at.last_offset < trimmed_to && !committed.contains_key(&at.base_offset) {
            continue;
        }
        if cluster.mode == Mode::Compacted && !committed.contains_key(&at.base_offset) {
            continue; // Cleaned before it was seen whole: see check_compacted_end.
        }
        let batch = committed.get(&at.base_offset).unwrap_or_else(|| {
            panic!(
                "{name}: acknowledged payload {number} at {} is lost",
                at.base_offset
            )
        });
        let found = payload_number(batch);
        assert_eq!(
            found,
            Some(*number),
            "{name}: the payload at {}",
            at.base_offset
        );
    }
    // Retries were deduplicated: no payload is in the log twice.
    let mut seen = HashMap::new();
    for (offset, batch) in committed.iter() {
        if let Some(number) = payload_number(batch) {
            let first = seen.insert(number, *offset);
            assert!(
                first.is_none(),
                "{name}: payload {number} at {first:?} and {offset}"
            );
        }
    }
    // Every replica knows every producer of its log, restarted ones from snapshots and the
    // log (a log restarted at the leader's log start knows those after it).
    for (node, replica) in cluster.live_members() {
        let partition = replica.partition();
        let in_log: std::collections::HashSet<i64> = committed
            .range(partition.log_start_offset()..)
            .filter_map(|(_, batch)| record_batch::header(batch))
            .map(|header| header.producer_id.get())
            .filter(|producer| *producer >= 0)
            .collect();
        let producers = partition.producer_count();
        assert!(
            producers >= in_log.len(),
            "{name}: node {node} knows {producers} producers, its log has {}",
            in_log.len()
        );
    }
    let snapshots = *cluster.snapshots.borrow()
        + (cluster.live_replicas().iter())
            .map(|(_, replica)| replica.snapshots_installed())
            .sum::<u64>();
    let digest = format!(
        "nodes {} acked {} committed {} terms {} crashes {} snapshots {snapshots} \
         reconfigurations {}/{} quiescent {} cleaned {} sent {} dropped {}",
        cluster.size,
        acked.len(),
        committed.len(),
        cluster.leaders.borrow().len(),
        cluster.crashes.borrow(),
        cluster.reached.borrow(),
        cluster.reconfigurations.borrow(),
        cluster.quiescent_seen.borrow(),
        cluster.cleaned_seen.borrow(),
        cluster.network.stats().sent.get(),
        cluster.network.stats().dropped.get()
    );
    for node in cluster.nodes.borrow().iter() {
        node.life.kill();
    }
    cluster.clock.uninstall();
    digest
}

/// The end state of `Mode::Compacted`: an acknowledged payload never seen whole was cleaned
/// because both its keys have later records; and every member's log holds the latest record
/// of every key at or past its log start (compaction never removes one).
async fn check_compacted_end(
    cluster: &Cluster,
    acked: &[(u64, Committed)],
    committed: &BTreeMap<Offset, Bytes>,
    trimmed_to: Offset,
) {
    let name = &cluster.name;
    assert!(
        *cluster.cleaned_seen.borrow() > 0,
        "{name}: no replica served a batch a pass rewrote"
    );
    let mut latest: HashMap<Bytes, Offset> = HashMap::new();
    for (base, batch) in committed {
        for record in records::parse(batch).unwrap() {
            if let Some(key) = record.key {
                let offset = *base + i64::from(record.offset_delta);
                let known = latest.entry(key).or_insert(offset);
                *known = (*known).max(offset);
            }
        }
    }
    for (number, at) in acked {
        if at.last_offset < trimmed_to || committed.contains_key(&at.base_offset) {
            continue;
        }
        for (delta, key) in [(0, number % KEYS), (1, (number * 7 + 3) % KEYS)] {
            let key = Bytes::from(format!("key-{key}"));
            let offset = at.base_offset + delta;
            assert!(
                latest.get(&key).is_some_and(|later| *later > offset),
                "{name}: payload {number}'s record of {key:?} at {offset} is gone, and no later \
                 one of its key is known"
            );
        }
    }
    for (node, replica) in cluster.live_members() {
        let partition = replica.partition().clone();
        let mut held: HashMap<Offset, Bytes> = HashMap::new();
        let mut offset = partition.log_start_offset();
        while offset < partition.high_watermark() {
            let batches = partition.read(offset, 64 * 1024).await.unwrap();
            for batch in batches {
                for record in records::parse(&batch).unwrap() {
                    let at = Offset(record_batch::header(&batch).unwrap().base_offset.get())
                        + i64::from(record.offset_delta);
                    if let Some(key) = record.key {
                        held.insert(at, key);
                    }
                }
                offset = last_offset(&batch) + 1;
            }
        }
        for (key, at) in &latest {
            if *at < partition.log_start_offset() {
                continue;
            }
            assert_eq!(
                held.get(at),
                Some(key),
                "{name}: node {node} lost the latest record of {key:?}, at {at}"
            );
        }
    }
}

/// Whether the group's voters are the target, every one of them is up, one leads, and all
/// have the same committed end as the log end.
fn all_equal(cluster: &Cluster) -> bool {
    let live = cluster.live_members();
    let leader = live.iter().find(|(_, replica)| replica.is_leader());
    let reached = leader.is_some_and(|(_, leader)| {
        let target = cluster.target.borrow();
        leader.membership().is(&target)
    });
    if live.len() != cluster.size as usize || !reached {
        return false;
    }
    let ends: Vec<(Offset, Offset)> = live
        .iter()
        .map(|(_, replica)| {
            let partition = replica.partition();
            (partition.high_watermark(), partition.log_end_offset())
        })
        .collect();
    ends.iter().all(|end| *end == ends[0] && end.0 == end.1)
}

fn seeds() -> std::ops::Range<u64> {
    let first = std::env::var("CORELOG_SIM_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok());
    let count = std::env::var("CORELOG_SIM_SEEDS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(32);
    match first {
        Some(seed) => seed..seed + 1,
        None => 1..1 + count,
    }
}

/// Many seeds of crashes, partitions, drops and delays: no two leaders in a term, committed
/// data never changes, and every acknowledged batch survives. `CORELOG_SIM_SEED=N` replays
/// one seed; `CORELOG_SIM_SEEDS=N` runs N of them; `CORELOG_SIM_SECONDS` sets the length.
#[test]
fn a_replicated_partition_survives_crashes_partitions_and_lossy_links() {
    simulate_seeds(Mode::Plain);
}

/// The same faults on a compacted partition, which every replica cleans on its own: a
/// follower catching up copies batches a peer's pass rewrote, or fillers for the batches it
/// removed, and checks its own entries against them. Nothing served changes but by a pass
/// (`Cluster::check_cleaned`), the latest record of every key stays on every replica, and
/// the replicas' logs converge.
#[test]
fn a_compacted_replicated_partition_survives_crashes_partitions_and_lossy_links() {
    simulate_seeds(Mode::Compacted);
}

/// Simulates every seed of `seeds()` in `mode`, `CORELOG_SIM_SECONDS` (20) of faults each.
fn simulate_seeds(mode: Mode) {
    let seconds = std::env::var("CORELOG_SIM_SECONDS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(20);
    for seed in seeds() {
        let digest = runtime::run_on_new_executor(move || async move {
            simulate(seed, Duration::from_secs(seconds), mode).await
        });
        eprintln!("seed {seed}: {digest}");
    }
}

/// Steps `cluster` until `future` (spawned) ends, for at most `limit` of simulated time.
async fn step_until<T: 'static>(
    cluster: &Cluster,
    future: impl std::future::Future<Output = T> + 'static,
    limit: Duration,
) -> Option<T> {
    let result = Rc::new(RefCell::new(None));
    let slot = result.clone();
    let task = runtime::spawn_local(async move {
        *slot.borrow_mut() = Some(future.await);
    });
    let end = cluster.now_ms() + limit.as_millis() as i64;
    while result.borrow().is_none() && cluster.now_ms() < end {
        cluster.step().await;
    }
    drop(task);
    result.take()
}

/// The retry of a batch committed earlier, on a group nothing else is proposed to, is
/// answered with the original's offsets (committed, and durable here): no new entry comes to
/// wake its waiter, and the leader's window, compacted once every follower had the whole
/// log, holds the entry only as its base. Both once made every such retry wait, or fail as
/// NOT_LEADER, for as long as the leader stayed.
#[test]
fn the_retry_of_a_committed_batch_is_answered_on_an_idle_group() {
    runtime::run_on_new_executor(|| async {
        let cluster = Cluster::new(3, Mode::Plain);
        let leader = || {
            let live = cluster.live_replicas().into_iter();
            live.map(|(_, replica)| replica)
                .find(|replica| replica.is_leader())
        };
        let mut replica = None;
        while replica.is_none() {
            cluster.step().await;
            replica = leader();
        }
        let replica = replica.unwrap();
        let batch = payload(1, 1000, 0, Mode::Plain);
        let proposing = {
            let (replica, batch) = (replica.clone(), batch.clone());
            async move { replica.propose(batch).await }
        };
        let limit = Duration::from_secs(5);
        let first = step_until(&cluster, proposing, limit).await;
        let first = first.expect("the batch is answered").expect("committed");
        // Long enough for every replica to apply it and the group to fall idle.
        step_until(&cluster, std::future::pending::<()>(), limit).await;
        for until in [Until::Committed, Until::DurableHere] {
            let retrying = {
                let (replica, batch) = (replica.clone(), batch.clone());
                async move { replica.propose_until(batch, until).await }
            };
            let retry = step_until(&cluster, retrying, limit).await;
            let retry = retry.unwrap_or_else(|| panic!("{until:?}: the retry is never answered"));
            let retry = retry.unwrap_or_else(|error| panic!("{until:?}: {error}"));
            let offsets = (retry.base_offset, retry.last_offset);
            assert_eq!(offsets, (first.base_offset, first.last_offset), "{until:?}");
        }
        for node in cluster.nodes.borrow().iter() {
            node.life.kill();
        }
        cluster.clock.uninstall();
    });
}

/// The same seed gives the same run, so that a failing seed can be replayed.
#[test]
fn a_seed_replays_exactly() {
    let run = || {
        runtime::run_on_new_executor(|| async {
            simulate(42, Duration::from_secs(5), Mode::Plain).await
        })
    };
    assert_eq!(run(), run());
}
