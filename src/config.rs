//! Broker configuration: defaults, a TOML file, `CORELOG_*` environment variables and flags,
//! in that order of precedence from lowest to highest.
//!
//! `ServeArgs` is what clap parses (every field optional so that "not given" is visible);
//! `FileConfig` is what the TOML file holds; `Config::resolve` merges them into the one
//! `Config` the broker runs with. Topic-level defaults (`TopicDefaults`) are the broker-wide
//! values of the per-topic configs that CreateTopics and AlterConfigs may override.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::ids::NodeId;
use crate::limits;
use crate::metadata::topic_config::TopicConfig;
use crate::runtime::CpuList;
use crate::security::sasl::SaslMechanism;
use crate::security::tls::{ClientAuth, TlsSettings};

mod cluster;
mod listeners;
pub use cluster::ClusterConfig;
pub use listeners::ListenerConfig;

/// Flags of `corelog serve`. Each may also come from `CORELOG_<NAME>` or the TOML file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with any of the options below (flags and environment win over it).
    #[arg(long, env = "CORELOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the partition logs and the metadata log; a relative path counts from
    /// the working directory, here as in the config file [default: ./data].
    #[arg(long, env = "CORELOG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the one PLAINTEXT Kafka listener; the short form of --listeners
    /// [default: 127.0.0.1:9092].
    #[arg(long, env = "CORELOG_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Kafka listeners, each NAME://host:port; the name is the security protocol (PLAINTEXT,
    /// SSL, SASL_PLAINTEXT, SASL_SSL) unless --listener-security-protocol-map maps it
    /// ("PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093").
    #[arg(long, env = "CORELOG_LISTENERS")]
    pub listeners: Option<String>,
    /// NAME:PROTOCOL pairs for listeners with names of their own ("CLIENT:SASL_SSL").
    #[arg(long, env = "CORELOG_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// NAME://host:port clients of each listener are told to connect to [default: what the
    /// listener binds].
    #[arg(long, env = "CORELOG_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Address of the admin HTTP listener (/metrics), or "off" [default: 127.0.0.1:9644].
    #[arg(long, env = "CORELOG_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// host:port clients are told to connect to, with one listener [default: the listen
    /// address].
    #[arg(long, env = "CORELOG_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Server certificate chain (PEM) of the SSL and SASL_SSL listeners.
    #[arg(long, env = "CORELOG_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CORELOG_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, env = "CORELOG_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// ssl.client.auth: none, requested or required [default: none].
    #[arg(long, env = "CORELOG_TLS_CLIENT_AUTH")]
    pub tls_client_auth: Option<ClientAuth>,
    /// SASL mechanisms the SASL listeners offer (sasl.enabled.mechanisms)
    /// [default: SCRAM-SHA-512,SCRAM-SHA-256].
    #[arg(long, env = "CORELOG_SASL_MECHANISMS")]
    pub sasl_mechanisms: Option<String>,
    /// connections.max.reauth.ms: SASL sessions last this long, then the client must
    /// re-authenticate on its connection (KIP-368); 0 for sessions without end [default: 0].
    #[arg(long, env = "CORELOG_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// on: every request is checked against the ACLs, and what no ACL allows is denied
    /// (allow.everyone.if.no.acl.found=false); off: every client may do everything
    /// [default: off].
    #[arg(long, env = "CORELOG_AUTHORIZER")]
    pub authorizer: Option<Toggle>,
    /// Principals the authorizer always allows, separated by ';' (super.users):
    /// "User:admin;User:CN=ops,O=example".
    #[arg(long, env = "CORELOG_SUPER_USERS")]
    pub super_users: Option<String>,
    /// Number of shards, one pinned executor each [default: the CPUs of --cpus, else the
    /// usable cores].
    #[arg(long, env = "CORELOG_SHARDS")]
    pub shards: Option<usize>,
    /// CPUs the shards are pinned to, one shard per CPU in the order given ("1", "0-3,6")
    /// [default: spread over the CPUs this process may run on].
    #[arg(long, env = "CORELOG_CPUS")]
    pub cpus: Option<CpuList>,
    /// This broker's node id [default: 0].
    #[arg(long, env = "CORELOG_NODE_ID")]
    pub node_id: Option<i32>,
    /// The rack this node is in (broker.rack): a cluster puts the replicas of a partition on
    /// different racks when there are enough, and Metadata reports it [default: none].
    #[arg(long, env = "CORELOG_BROKER_RACK")]
    pub broker_rack: Option<String>,
    /// Address of the node-to-node listener (Raft between the nodes of a cluster); with
    /// --controller-quorum-voters [default: none, a single-node broker].
    #[arg(long, env = "CORELOG_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// The metadata quorum's voters as ID@HOST:PORT,... (their --cluster-listen addresses;
    /// controller.quorum.voters); nodes given the same voters form one cluster.
    #[arg(long, env = "CORELOG_CONTROLLER_QUORUM_VOTERS")]
    pub controller_quorum_voters: Option<String>,
    /// How often a node of a cluster tells the active controller it is alive
    /// (broker.heartbeat.interval.ms) [default: 2000].
    #[arg(long, env = "CORELOG_BROKER_HEARTBEAT_INTERVAL_MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// A node the active controller has not heard from for this long is fenced: left out of
    /// Metadata, its partitions without a leader (broker.session.timeout.ms) [default: 9000].
    #[arg(long, env = "CORELOG_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// How often the leader of a partition hands it back to the partition's preferred leader
    /// (its first replica) once that is in sync again, so that leadership returns to a node
    /// that came back (leader.imbalance.check.interval.seconds); 0 turns it off
    /// [default: 300000].
    #[arg(long, env = "CORELOG_LEADER_IMBALANCE_CHECK_INTERVAL_MS")]
    pub leader_imbalance_check_interval_ms: Option<u64>,
    /// org.apache.kafka.common.replica.RackAwareReplicaSelector: a partition's leader sends a
    /// consumer that names its rack (client.rack) to an in-sync replica in that rack, which
    /// serves its fetches (KIP-392; replica.selector.class) [default: none: the leader
    /// serves every fetch].
    #[arg(long, env = "CORELOG_REPLICA_SELECTOR_CLASS")]
    pub replica_selector_class: Option<String>,
    /// Create unknown topics on Metadata and Produce requests [default: true].
    #[arg(long, env = "CORELOG_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partition count of automatically created topics [default: 1].
    #[arg(long, env = "CORELOG_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Replicas of each partition of a topic created without a replication factor
    /// (default.replication.factor); above 1 only in a cluster [default: 1].
    #[arg(long, env = "CORELOG_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// Default segment.bytes of topics [default: 1 GiB].
    #[arg(long, env = "CORELOG_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default segment.ms of topics [default: 7 days].
    #[arg(long, env = "CORELOG_SEGMENT_MS")]
    pub segment_ms: Option<i64>,
    /// Default retention.ms of topics, -1 for unlimited [default: 7 days].
    #[arg(long, env = "CORELOG_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes of topics, -1 for unlimited [default: -1].
    #[arg(long, env = "CORELOG_RETENTION_BYTES")]
    pub retention_bytes: Option<i64>,
    /// Default max.message.bytes of topics [default: 1048588].
    #[arg(long, env = "CORELOG_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<i32>,
    /// How often retention and time-based segment roll are checked [default: 30000].
    #[arg(long, env = "CORELOG_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Default cleanup.policy of topics: delete, compact, or compact,delete [default: delete].
    #[arg(long, env = "CORELOG_LOG_CLEANUP_POLICY")]
    pub log_cleanup_policy: Option<String>,
    /// How long each shard's log cleaner rests between rounds over its compacted partitions
    /// (log.cleaner.backoff.ms) [default: 15000].
    #[arg(long, env = "CORELOG_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Bytes of each shard's compaction key map (log.cleaner.dedupe.buffer.size): a pass
    /// cleans as far as the distinct keys that fit [default: 33554432].
    #[arg(long, env = "CORELOG_LOG_CLEANER_DEDUPE_BUFFER_SIZE")]
    pub log_cleaner_dedupe_buffer_size: Option<u64>,
    /// Largest request frame accepted (socket.request.max.bytes) [default: 104857600].
    #[arg(long, env = "CORELOG_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: Option<usize>,
    /// Memory budget of each shard's cache of recent batches [default: 64 MiB].
    #[arg(long, env = "CORELOG_BATCH_CACHE_BYTES")]
    pub batch_cache_bytes: Option<usize>,
    /// Microseconds an idle shard spins before parking; trades CPU for latency [default: 0].
    #[arg(long, env = "CORELOG_SPIN_BEFORE_PARK_US")]
    pub spin_before_park_us: Option<u64>,
    /// Executor preemption timer in microseconds [default: 2000].
    #[arg(long, env = "CORELOG_PREEMPT_TIMER_US")]
    pub preempt_timer_us: Option<u64>,
    /// Most client connections open at once, broker-wide (max.connections)
    /// [default: the open-file limit minus 2048 kept for log files].
    #[arg(long, env = "CORELOG_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client IP (max.connections.per.ip)
    /// [default: max-connections].
    #[arg(long, env = "CORELOG_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Close a connection after this long without a request (connections.max.idle.ms)
    /// [default: 600000].
    #[arg(long, env = "CORELOG_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// Request bytes held in memory at once, broker-wide, split evenly over the shards; a
    /// shard over its share stops reading from sockets (queued.max.request.bytes)
    /// [default: 512 MiB].
    #[arg(long, env = "CORELOG_QUEUED_MAX_REQUEST_BYTES")]
    pub queued_max_request_bytes: Option<usize>,
    /// Idle time after which a partition forgets an idempotent producer
    /// (producer.id.expiration.ms) [default: 86400000].
    #[arg(long, env = "CORELOG_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<i64>,
    /// transactional.id.expiration.ms: a transactional id whose producer sent nothing for this
    /// long, with no transaction open, is forgotten [default: 604800000].
    #[arg(long, env = "CORELOG_TRANSACTIONAL_ID_EXPIRATION_MS")]
    pub transactional_id_expiration_ms: Option<i64>,
    /// transaction.state.log.num.partitions: partitions of __transaction_state, fixed when the
    /// topic is first created [default: 16].
    #[arg(long, env = "CORELOG_TRANSACTION_STATE_LOG_NUM_PARTITIONS")]
    pub transaction_state_log_num_partitions: Option<i32>,
    /// transaction.max.timeout.ms: the longest transaction.timeout.ms a producer may ask for
    /// [default: 900000].
    #[arg(long, env = "CORELOG_TRANSACTION_MAX_TIMEOUT_MS")]
    pub transaction_max_timeout_ms: Option<i32>,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms: how often the coordinator
    /// looks for transactions past their timeout (and for expired transactional ids)
    /// [default: 10000].
    #[arg(
        long,
        env = "CORELOG_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS"
    )]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    /// offsets.topic.num.partitions: partitions of __consumer_offsets, fixed when the topic is
    /// first created [default: 16].
    #[arg(long, env = "CORELOG_OFFSETS_TOPIC_NUM_PARTITIONS")]
    pub offsets_topic_num_partitions: Option<i32>,
    /// group.min.session.timeout.ms [default: 6000].
    #[arg(long, env = "CORELOG_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// group.max.session.timeout.ms [default: 1800000].
    #[arg(long, env = "CORELOG_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// group.initial.rebalance.delay.ms: how long an empty group waits for more members
    /// [default: 3000].
    #[arg(long, env = "CORELOG_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<i32>,
    /// offsets.retention.minutes: offsets of empty groups expire after this [default: 10080].
    #[arg(long, env = "CORELOG_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<i64>,
    /// offsets.retention.check.interval.ms [default: 600000].
    #[arg(long, env = "CORELOG_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// Test-only: the admin listener arms storage faults (`POST /faults`). A flag only, never
    /// read from the environment or the file, so that no deployment turns it on by accident.
    #[arg(long, hide = true)]
    pub enable_fault_injection: bool,
}

/// The TOML file: the same options as the flags, spelled with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    listeners: Option<String>,
    listener_security_protocol_map: Option<String>,
    advertised_listeners: Option<String>,
    admin_listen: Option<String>,
    advertised_listener: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_client_auth: Option<String>,
    sasl_mechanisms: Option<String>,
    connections_max_reauth_ms: Option<u64>,
    authorizer: Option<String>,
    super_users: Option<String>,
    shards: Option<usize>,
    cpus: Option<String>,
    node_id: Option<i32>,
    broker_rack: Option<String>,
    cluster_listen: Option<String>,
    controller_quorum_voters: Option<String>,
    broker_heartbeat_interval_ms: Option<u64>,
    broker_session_timeout_ms: Option<u64>,
    leader_imbalance_check_interval_ms: Option<u64>,
    replica_selector_class: Option<String>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<i32>,
    default_replication_factor: Option<i16>,
    segment_bytes: Option<u64>,
    segment_ms: Option<i64>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    max_message_bytes: Option<i32>,
    retention_check_interval_ms: Option<u64>,
    log_cleanup_policy: Option<String>,
    log_cleaner_backoff_ms: Option<u64>,
    log_cleaner_dedupe_buffer_size: Option<u64>,
    socket_request_max_bytes: Option<usize>,
    batch_cache_bytes: Option<usize>,
    spin_before_park_us: Option<u64>,
    preempt_timer_us: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    queued_max_request_bytes: Option<usize>,
    producer_id_expiration_ms: Option<i64>,
    transactional_id_expiration_ms: Option<i64>,
    transaction_state_log_num_partitions: Option<i32>,
    transaction_max_timeout_ms: Option<i32>,
    transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    offsets_topic_num_partitions: Option<i32>,
    group_min_session_timeout_ms: Option<i32>,
    group_max_session_timeout_ms: Option<i32>,
    group_initial_rebalance_delay_ms: Option<i32>,
    offsets_retention_minutes: Option<i64>,
    offsets_retention_check_interval_ms: Option<u64>,
}

/// Consumer-group settings (Kafka's broker configs of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` when it is created; afterwards the topic's own
    /// partition count decides placement.
    pub offsets_topic_num_partitions: i32,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i32,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: u64,
}

/// Transaction-coordinator settings (Kafka's broker configs of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct TxnConfig {
    /// Partitions of `__transaction_state` when it is created; afterwards the topic's own
    /// partition count decides placement.
    pub state_topic_num_partitions: i32,
    pub max_timeout_ms: i32,
    pub id_expiration_ms: i64,
    pub abort_check_interval_ms: u64,
}

/// Broker-wide defaults of the per-topic configs.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDefaults {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    /// cleanup.policy, as `TopicConfig` stores it.
    pub cleanup_policy: String,
    pub max_message_bytes: i32,
}

/// How clients are authenticated on the listeners that ask for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// Needed when a listener uses TLS (SSL, SASL_SSL).
    pub tls: Option<TlsSettings>,
    /// Offered by SASL listeners, in this order.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// 0: sessions do not end.
    pub connections_max_reauth_ms: u64,
    /// Whether requests are authorized against the ACLs.
    pub authorizer: bool,
    /// Principals ("User:admin") allowed everything when the authorizer is on.
    pub super_users: Vec<String>,
}

/// An on/off setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    #[value(alias = "true")]
    On,
    #[value(alias = "false")]
    Off,
}

impl std::str::FromStr for Toggle {
    type Err = String;

    fn from_str(text: &str) -> Result<Toggle, String> {
        match text.to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(Toggle::On),
            "off" | "false" => Ok(Toggle::Off),
            _ => Err(format!("{text:?} is not on or off")),
        }
    }
}

impl SecurityConfig {
    fn resolve(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<SecurityConfig> {
        let cert = args.tls_cert.clone().or(file.tls_cert.clone());
        let key = args.tls_key.clone().or(file.tls_key.clone());
        let client_ca = args.tls_client_ca.clone().or(file.tls_client_ca.clone());
        let client_auth = match (&args.tls_client_auth, &file.tls_client_auth) {
            (Some(auth), _) => *auth,
            (None, Some(text)) => text
                .parse()
                .map_err(|e: String| anyhow::anyhow!("tls_client_auth in the config file: {e}"))?,
            (None, None) => ClientAuth::None,
        };
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert: absolute(&cert)?,
                key: absolute(&key)?,
                client_ca: client_ca.as_deref().map(absolute).transpose()?,
                client_auth,
            }),
            (None, None) if client_ca.is_none() && client_auth == ClientAuth::None => None,
            _ => bail!("TLS needs both --tls-cert and --tls-key"),
        };
        let mechanisms = args
            .sasl_mechanisms
            .clone()
            .or(file.sasl_mechanisms.clone())
            .unwrap_or_else(|| "SCRAM-SHA-512,SCRAM-SHA-256".into());
        let mut sasl_mechanisms = Vec::new();
        for name in mechanisms
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let mechanism =
                SaslMechanism::from_name(&name.to_ascii_uppercase()).with_context(|| {
                    format!(
                        "SASL mechanism {name:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
                    )
                })?;
            if !sasl_mechanisms.contains(&mechanism) {
                sasl_mechanisms.push(mechanism);
            }
        }
        let authorizer = match (args.authorizer, &file.authorizer) {
            (Some(toggle), _) => toggle,
            (None, Some(text)) => text
                .parse()
                .map_err(|e: String| anyhow::anyhow!("authorizer in the config file: {e}"))?,
            (None, None) => Toggle::Off,
        };
        let super_users = args
            .super_users
            .clone()
            .or(file.super_users.clone())
            .unwrap_or_default();
        let super_users = super_users
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|principal| {
                crate::security::acl::parse_principal(principal)
                    .map(|_| principal.to_string())
                    .map_err(|e| anyhow::anyhow!("--super-users: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SecurityConfig {
            tls,
            sasl_mechanisms,
            authorizer: authorizer == Toggle::On,
            super_users,
            connections_max_reauth_ms: pick(
                args.connections_max_reauth_ms,
                file.connections_max_reauth_ms,
                0,
            ),
        })
    }
}

/// A file path given in the configuration, made absolute once (SIGHUP reloads read it again,
/// whatever the working directory is by then).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// The resolved configuration the broker runs with. Immutable after start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Always absolute (see `absolute_data_dir`).
    pub data_dir: PathBuf,
    /// The Kafka listeners, at least one.
    pub listeners: Vec<ListenerConfig>,
    /// None when the admin listener is off.
    pub admin_listen: Option<SocketAddr>,
    pub security: SecurityConfig,
    pub shards: usize,
    /// See `ExecutorPlan::cpus`.
    pub cpus: Option<CpuList>,
    pub node_id: NodeId,
    /// broker.rack.
    pub rack: Option<String>,
    /// None for a single-node broker.
    pub cluster: Option<ClusterConfig>,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub topic_defaults: TopicDefaults,
    pub retention_check_interval_ms: u64,
    /// Rest between a shard's cleaner rounds (`partition::cleaner`).
    pub log_cleaner_backoff_ms: u64,
    /// Bytes of each shard's compaction key map.
    pub log_cleaner_dedupe_buffer_size: u64,
    pub socket_request_max_bytes: usize,
    pub batch_cache_bytes: usize,
    pub spin_before_park_us: u64,
    pub preempt_timer_us: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_max_idle_ms: u64,
    /// The broker-wide budget; see [`Config::queued_request_bytes_per_shard`].
    pub queued_max_request_bytes: usize,
    pub producer_id_expiration_ms: i64,
    pub groups: GroupConfig,
    pub transactions: TxnConfig,
    /// Test-only: whether the admin listener serves `/faults` (see `storage::faults`).
    pub fault_injection: bool,
}

impl Config {
    /// Merges flags/environment (`args`) over the TOML file over the defaults, and checks values.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let groups = group_config(args, &file);
        let transactions = txn_config(args, &file);
        let security = SecurityConfig::resolve(args, &file)?;
        let listeners = listeners::resolve(&listeners::ListenerFlags {
            listen: args.listen.or(file.listen),
            listeners: args.listeners.clone().or(file.listeners),
            advertised_listener: args
                .advertised_listener
                .clone()
                .or(file.advertised_listener),
            advertised_listeners: args
                .advertised_listeners
                .clone()
                .or(file.advertised_listeners),
            protocol_map: args
                .listener_security_protocol_map
                .clone()
                .or(file.listener_security_protocol_map),
        })?;
        let cpus = match (args.cpus.clone(), file.cpus) {
            (Some(list), _) => Some(list),
            (None, Some(text)) => Some(text.parse::<CpuList>().context("cpus in the config file")?),
            (None, None) => None,
        };
        let default_shards = cpus.as_ref().map_or_else(usable_cores, |list| list.0.len());
        let shards = pick(args.shards, file.shards, default_shards);
        let admin = pick(
            args.admin_listen.clone(),
            file.admin_listen,
            "127.0.0.1:9644".into(),
        );
        let admin_listen = match admin.as_str() {
            "off" => None,
            text => Some(text.parse().with_context(|| {
                format!("--admin-listen {text:?} is neither host:port nor \"off\"")
            })?),
        };
        let defaults = TopicDefaults {
            segment_bytes: pick(args.segment_bytes, file.segment_bytes, 1 << 30),
            segment_ms: pick(args.segment_ms, file.segment_ms, 7 * 24 * 3_600_000),
            retention_ms: pick(args.retention_ms, file.retention_ms, 7 * 24 * 3_600_000),
            retention_bytes: pick(args.retention_bytes, file.retention_bytes, -1),
            cleanup_policy: pick(
                args.log_cleanup_policy.clone(),
                file.log_cleanup_policy,
                "delete".to_string(),
            ),
            max_message_bytes: pick(
                args.max_message_bytes,
                file.max_message_bytes,
                limits::MESSAGE_BYTES_MAX_DEFAULT as i32,
            ),
        };
        let max_connections = pick(
            args.max_connections,
            file.max_connections,
            default_max_connections(),
        );
        let data_dir = pick(
            args.data_dir.clone(),
            file.data_dir,
            PathBuf::from("./data"),
        );
        let node_id = NodeId(pick(args.node_id, file.node_id, 0));
        let cluster = cluster::resolve(&cluster::ClusterFlags {
            node: node_id,
            listen: args.cluster_listen.clone().or(file.cluster_listen),
            voters: args
                .controller_quorum_voters
                .clone()
                .or(file.controller_quorum_voters),
            heartbeat_interval_ms: pick(
                args.broker_heartbeat_interval_ms,
                file.broker_heartbeat_interval_ms,
                2_000,
            ),
            session_timeout_ms: pick(
                args.broker_session_timeout_ms,
                file.broker_session_timeout_ms,
                9_000,
            ),
            leader_balance_interval_ms: pick(
                args.leader_imbalance_check_interval_ms,
                file.leader_imbalance_check_interval_ms,
                300_000,
            ),
            replica_selector_class: args
                .replica_selector_class
                .clone()
                .or(file.replica_selector_class),
        })?;
        let config = Config {
            data_dir: absolute_data_dir(&data_dir)?,
            listeners,
            admin_listen,
            security,
            shards,
            cpus,
            node_id,
            rack: args.broker_rack.clone().or(file.broker_rack),
            cluster,
            auto_create_topics: pick(args.auto_create_topics, file.auto_create_topics, true),
            num_partitions: pick(args.num_partitions, file.num_partitions, 1),
            default_replication_factor: pick(
                args.default_replication_factor,
                file.default_replication_factor,
                1,
            ),
            topic_defaults: defaults,
            retention_check_interval_ms: pick(
                args.retention_check_interval_ms,
                file.retention_check_interval_ms,
                30_000,
            ),
            log_cleaner_backoff_ms: pick(
                args.log_cleaner_backoff_ms,
                file.log_cleaner_backoff_ms,
                15_000,
            ),
            log_cleaner_dedupe_buffer_size: pick(
                args.log_cleaner_dedupe_buffer_size,
                file.log_cleaner_dedupe_buffer_size,
                limits::CLEANER_KEY_MAP_BYTES_DEFAULT,
            ),
            socket_request_max_bytes: pick(
                args.socket_request_max_bytes,
                file.socket_request_max_bytes,
                limits::REQUEST_BYTES_MAX,
            ),
            batch_cache_bytes: pick(
                args.batch_cache_bytes,
                file.batch_cache_bytes,
                limits::BATCH_CACHE_BYTES_DEFAULT,
            ),
            spin_before_park_us: pick(args.spin_before_park_us, file.spin_before_park_us, 0),
            preempt_timer_us: pick(args.preempt_timer_us, file.preempt_timer_us, 2_000),
            max_connections,
            max_connections_per_ip: pick(
                args.max_connections_per_ip,
                file.max_connections_per_ip,
                max_connections,
            ),
            connections_max_idle_ms: pick(
                args.connections_max_idle_ms,
                file.connections_max_idle_ms,
                600_000,
            ),
            queued_max_request_bytes: pick(
                args.queued_max_request_bytes,
                file.queued_max_request_bytes,
                limits::QUEUED_REQUEST_BYTES_DEFAULT,
            ),
            producer_id_expiration_ms: pick(
                args.producer_id_expiration_ms,
                file.producer_id_expiration_ms,
                limits::PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            ),
            groups,
            transactions,
            fault_injection: args.enable_fault_injection,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        for listener in &self.listeners {
            if listener.protocol.uses_tls() && self.security.tls.is_none() {
                bail!(
                    "listener {} uses TLS ({}): give --tls-cert and --tls-key",
                    listener.name,
                    listener.protocol
                );
            }
            if listener.protocol.uses_sasl() && self.security.sasl_mechanisms.is_empty() {
                bail!(
                    "listener {} uses SASL: --sasl-mechanisms names none",
                    listener.name
                );
            }
        }
        if self.shards == 0 || self.shards > limits::SHARDS_MAX {
            bail!("--shards must be between 1 and {}", limits::SHARDS_MAX);
        }
        if let Some(CpuList(cpus)) = &self.cpus {
            if cpus.len() < self.shards {
                bail!(
                    "--shards {} needs as many CPUs in --cpus, which names {}",
                    self.shards,
                    cpus.len()
                );
            }
        }
        if self.node_id.get() < 0 {
            bail!("--node-id must not be negative");
        }
        if let Some(rack) = &self.rack {
            if rack.is_empty() || rack.len() > limits::RACK_BYTES_MAX {
                bail!(
                    "--broker-rack must be 1 to {} bytes",
                    limits::RACK_BYTES_MAX
                );
            }
        }
        if self.default_replication_factor < 1 {
            bail!("--default-replication-factor must be at least 1");
        }
        let policy = [(
            "cleanup.policy".to_string(),
            self.topic_defaults.cleanup_policy.clone(),
        )];
        if let Err(error) = TopicConfig::validate(&policy.into_iter().collect()) {
            bail!("--log-cleanup-policy: {error}");
        }
        if self.log_cleaner_dedupe_buffer_size < limits::CLEANER_KEY_MAP_BYTES_MIN {
            bail!(
                "--log-cleaner-dedupe-buffer-size must be at least {}",
                limits::CLEANER_KEY_MAP_BYTES_MIN
            );
        }
        if self.default_replication_factor > 1 && self.cluster.is_none() {
            bail!(
                "--default-replication-factor above 1 needs a cluster (--controller-quorum-voters)"
            );
        }
        if self.num_partitions < 1 || self.num_partitions > limits::PARTITIONS_PER_TOPIC_MAX {
            bail!(
                "--num-partitions must be between 1 and {}",
                limits::PARTITIONS_PER_TOPIC_MAX
            );
        }
        if self.topic_defaults.segment_bytes < limits::SEGMENT_BYTES_MIN {
            bail!(
                "--segment-bytes must be at least {}",
                limits::SEGMENT_BYTES_MIN
            );
        }
        if self.producer_id_expiration_ms < 1 || self.transactions.id_expiration_ms < 1 {
            bail!(
                "--producer-id-expiration-ms and --transactional-id-expiration-ms must be positive"
            );
        }
        if self.topic_defaults.max_message_bytes < 0 {
            bail!("--max-message-bytes must not be negative");
        }
        if self.socket_request_max_bytes < 1024 || self.socket_request_max_bytes > i32::MAX as usize
        {
            bail!(
                "--socket-request-max-bytes must be between 1024 and {}",
                i32::MAX
            );
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            bail!("--max-connections and --max-connections-per-ip must be at least 1");
        }
        if self.connections_max_idle_ms == 0 {
            bail!("--connections-max-idle-ms must be at least 1");
        }
        let groups = &self.groups;
        if !(1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&groups.offsets_topic_num_partitions) {
            bail!("--offsets-topic-num-partitions is out of range");
        }
        if groups.min_session_timeout_ms < 1
            || groups.min_session_timeout_ms > groups.max_session_timeout_ms
        {
            bail!("--group-min-session-timeout-ms must be positive and at most the maximum");
        }
        if groups.initial_rebalance_delay_ms < 0 || groups.offsets_retention_ms < 1 {
            bail!("group delays and offsets retention must not be negative");
        }
        let transactions = &self.transactions;
        if !(1..=limits::PARTITIONS_PER_TOPIC_MAX)
            .contains(&transactions.state_topic_num_partitions)
        {
            bail!("--transaction-state-log-num-partitions is out of range");
        }
        if transactions.max_timeout_ms < 1 || transactions.abort_check_interval_ms < 1 {
            bail!("--transaction-max-timeout-ms and the cleanup interval must be positive");
        }
        Ok(())
    }

    /// The share of `queued_max_request_bytes` each shard holds (never below a floor that
    /// keeps a shard able to take ordinary requests).
    pub fn queued_request_bytes_per_shard(&self) -> usize {
        (self.queued_max_request_bytes / self.shards)
            .max(limits::QUEUED_REQUEST_BYTES_PER_SHARD_MIN)
    }
}

/// The open-file limit (which `corelog serve` raises to its hard maximum at start) minus the
/// descriptors kept for segment files and listeners.
fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a struct we own.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let files = if known { limit.rlim_max as usize } else { 0 };
    files
        .saturating_sub(limits::FILE_DESCRIPTORS_RESERVED_COUNT)
        .max(limits::CONNECTIONS_MAX_FLOOR)
}

fn txn_config(args: &ServeArgs, file: &FileConfig) -> TxnConfig {
    TxnConfig {
        state_topic_num_partitions: pick(
            args.transaction_state_log_num_partitions,
            file.transaction_state_log_num_partitions,
            limits::TRANSACTION_STATE_TOPIC_PARTITIONS_DEFAULT,
        ),
        max_timeout_ms: pick(
            args.transaction_max_timeout_ms,
            file.transaction_max_timeout_ms,
            900_000,
        ),
        id_expiration_ms: pick(
            args.transactional_id_expiration_ms,
            file.transactional_id_expiration_ms,
            7 * 24 * 3_600_000,
        ),
        abort_check_interval_ms: pick(
            args.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            file.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            10_000,
        ),
    }
}

fn group_config(args: &ServeArgs, file: &FileConfig) -> GroupConfig {
    let retention_minutes = pick(
        args.offsets_retention_minutes,
        file.offsets_retention_minutes,
        7 * 24 * 60,
    );
    GroupConfig {
        offsets_topic_num_partitions: pick(
            args.offsets_topic_num_partitions,
            file.offsets_topic_num_partitions,
            limits::OFFSETS_TOPIC_PARTITIONS_DEFAULT,
        ),
        min_session_timeout_ms: pick(
            args.group_min_session_timeout_ms,
            file.group_min_session_timeout_ms,
            6_000,
        ),
        max_session_timeout_ms: pick(
            args.group_max_session_timeout_ms,
            file.group_max_session_timeout_ms,
            1_800_000,
        ),
        initial_rebalance_delay_ms: pick(
            args.group_initial_rebalance_delay_ms,
            file.group_initial_rebalance_delay_ms,
            3_000,
        ),
        offsets_retention_ms: retention_minutes.saturating_mul(60_000),
        offsets_retention_check_interval_ms: pick(
            args.offsets_retention_check_interval_ms,
            file.offsets_retention_check_interval_ms,
            600_000,
        ),
    }
}

/// The data directory as an absolute path, resolved against the working directory once, here.
/// glommio opens directories relative to no directory at all (dirfd -1), so a relative path
/// failed deep in start-up with EBADF; and nothing later may depend on the working directory.
/// Symlinks and `..` are left to the kernel, as for any path the user gives.
fn absolute_data_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if path.as_os_str().is_empty() {
        bail!("the data directory is empty");
    }
    std::path::absolute(path)
        .with_context(|| format!("cannot resolve data directory {}", path.display()))
}

fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Cores this process may run on (its affinity mask), at least one.
pub fn usable_cores() -> usize {
    core_affinity::get_core_ids().map_or(1, |ids| ids.len().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags win over the TOML file, which wins over the defaults.
    #[test]
    fn precedence_flag_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "num_partitions = 3\nnode_id = 7\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            node_id: Some(9),
            ..Default::default()
        };
        let config = Config::resolve(&args).unwrap();
        assert_eq!(config.node_id, NodeId(9));
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.listeners[0].bind, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(config.listeners[0].advertised_port, 9092);
    }

    /// A relative data directory, from a flag or the TOML file, resolves against the working
    /// directory to an absolute path; an absolute one stays as given; an empty one is refused.
    #[test]
    fn data_dir_is_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let resolve = |flag: Option<&str>, file: Option<&str>| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.toml");
            let line = file.map_or(String::new(), |file| format!("data_dir = {file:?}\n"));
            std::fs::write(&path, line).unwrap();
            let args = ServeArgs {
                config: Some(path),
                data_dir: flag.map(PathBuf::from),
                ..Default::default()
            };
            Config::resolve(&args).map(|config| config.data_dir)
        };
        assert_eq!(resolve(None, None).unwrap(), cwd.join("data"));
        assert_eq!(resolve(Some("a/b/"), None).unwrap(), cwd.join("a/b"));
        assert_eq!(resolve(Some("../x"), None).unwrap(), cwd.join("../x"));
        assert_eq!(
            resolve(None, Some("from-file")).unwrap(),
            cwd.join("from-file")
        );
        assert_eq!(
            resolve(Some("/srv/data"), None).unwrap(),
            Path::new("/srv/data")
        );
        assert!(resolve(Some(""), None).is_err());
    }

    /// The authorizer is off by default, on from the file or a flag; super users are
    /// ';'-separated principals (a certificate DN keeps its commas), each "Type:name".
    #[test]
    fn authorizer_and_super_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "authorizer = \"on\"\n").unwrap();
        let args = |config: Option<PathBuf>, super_users: Option<&str>| ServeArgs {
            config,
            super_users: super_users.map(str::to_string),
            ..Default::default()
        };
        let off = Config::resolve(&args(None, None)).unwrap().security;
        assert!(!off.authorizer && off.super_users.is_empty());
        let users = "User:admin; User:CN=ops,O=example";
        let on = Config::resolve(&args(Some(path), Some(users)))
            .unwrap()
            .security;
        assert!(on.authorizer);
        assert_eq!(on.super_users, ["User:admin", "User:CN=ops,O=example"]);
        assert!(Config::resolve(&args(None, Some("admin"))).is_err());
    }

    /// An unknown key in the TOML file is an error, not silently ignored.
    #[test]
    fn unknown_file_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "no_such_option = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(Config::resolve(&args).is_err());
    }
}
