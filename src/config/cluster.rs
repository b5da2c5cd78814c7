//! The cluster flags: `--cluster-listen HOST:PORT` (node-to-node traffic: Raft for the
//! metadata log and, later, partitions) and `--controller-quorum-voters 1@HOST:PORT,...` (the
//! voters' cluster addresses, as Kafka's `controller.quorum.voters`). Neither given: the
//! single-node broker, with no cluster listener at all. A node outside the voters is a
//! broker-only node: it follows the metadata log without voting, and tells the others where
//! it listens when it registers.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

use crate::ids::NodeId;

/// How this node takes part in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// What the node-to-node listener binds (every shard, SO_REUSEPORT).
    pub listen: SocketAddr,
    /// The metadata quorum's voters and their cluster addresses, in the order given.
    pub voters: Vec<(NodeId, SocketAddr)>,
    /// Where the other nodes reach this one: its voter address, or for a broker-only node
    /// its `--cluster-listen` (which must then name an address, not 0.0.0.0).
    pub advertised: SocketAddr,
    /// How often this node tells the active controller it is alive.
    pub heartbeat_interval_ms: u64,
    /// A node not heard from for this long is fenced.
    pub session_timeout_ms: u64,
    /// How often a leader hands a partition back to its preferred leader once that is in
    /// sync again; 0: never.
    pub leader_balance_interval_ms: u64,
    /// Whether a leader sends a consumer that names its rack to an in-sync replica in that
    /// rack (KIP-392, `replica.selector.class`).
    pub rack_aware_reads: bool,
}

/// Kafka's `replica.selector.class` that sends consumers to a replica in their rack.
pub const RACK_AWARE_REPLICA_SELECTOR: &str =
    "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// What the cluster flags and file keys say, before resolving.
#[derive(Debug, Clone)]
pub struct ClusterFlags {
    pub node: NodeId,
    pub listen: Option<String>,
    pub voters: Option<String>,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub leader_balance_interval_ms: u64,
    pub replica_selector_class: Option<String>,
}

impl ClusterConfig {
    pub fn voter_ids(&self) -> Vec<NodeId> {
        self.voters.iter().map(|(node, _)| *node).collect()
    }

    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.iter().any(|(voter, _)| *voter == node)
    }
}

/// Resolves the cluster flags. --cluster-listen and --controller-quorum-voters go together or
/// not at all; a voter listens on its own voter address's port, a broker-only node on an
/// address the others can reach.
pub fn resolve(flags: &ClusterFlags) -> anyhow::Result<Option<ClusterConfig>> {
    let node = flags.node;
    let (listen, voters) = match (flags.listen.as_deref(), flags.voters.as_deref()) {
        (None, None) => return Ok(None),
        (Some(listen), Some(voters)) => (listen, voters),
        _ => bail!("--cluster-listen and --controller-quorum-voters go together: give both"),
    };
    if flags.heartbeat_interval_ms == 0 || flags.session_timeout_ms <= flags.heartbeat_interval_ms {
        bail!(
            "--broker-heartbeat-interval-ms must be at least 1 and below \
             --broker-session-timeout-ms"
        );
    }
    let listen = resolve_address(listen).context("--cluster-listen")?;
    let voters = parse_voters(voters)?;
    let advertised = match voters.iter().find(|(voter, _)| *voter == node) {
        Some((_, own)) => {
            let same_host = listen.ip().is_unspecified() || listen.ip() == own.ip();
            if own.port() != listen.port() || !same_host {
                bail!(
                    "--cluster-listen {listen} is not where --controller-quorum-voters says \
                     node {node} listens ({own})"
                );
            }
            *own
        }
        None if listen.ip().is_unspecified() => bail!(
            "--cluster-listen {listen}: node {node} is not a voter, and tells the others the \
             address it listens on; give one they reach (not {})",
            listen.ip()
        ),
        None if voters.iter().any(|(_, address)| *address == listen) => {
            bail!("--cluster-listen {listen} is a voter's address, and node {node} is not a voter")
        }
        None => listen,
    };
    let rack_aware_reads = match flags.replica_selector_class.as_deref() {
        None | Some("") => false,
        Some(RACK_AWARE_REPLICA_SELECTOR) => true,
        Some(other) => bail!(
            "--replica-selector-class {other:?} is not one corelog has: \
             {RACK_AWARE_REPLICA_SELECTOR} or none"
        ),
    };
    Ok(Some(ClusterConfig {
        listen,
        voters,
        advertised,
        heartbeat_interval_ms: flags.heartbeat_interval_ms,
        session_timeout_ms: flags.session_timeout_ms,
        leader_balance_interval_ms: flags.leader_balance_interval_ms,
        rack_aware_reads,
    }))
}

/// `1@host:port,2@host:port,...`: distinct node ids, each with a resolvable address.
fn parse_voters(text: &str) -> anyhow::Result<Vec<(NodeId, SocketAddr)>> {
    let mut voters: Vec<(NodeId, SocketAddr)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, address)) = entry.split_once('@') else {
            bail!("--controller-quorum-voters entry {entry:?} is not ID@HOST:PORT");
        };
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .with_context(|| format!("--controller-quorum-voters: {id:?} is not a node id"))?;
        let address = resolve_address(address)
            .with_context(|| format!("--controller-quorum-voters entry {entry:?}"))?;
        if voters.iter().any(|(voter, _)| voter.get() == id) {
            bail!("--controller-quorum-voters names node {id} twice");
        }
        if voters.iter().any(|(_, other)| *other == address) {
            bail!("--controller-quorum-voters names {address} twice");
        }
        voters.push((NodeId(id), address));
    }
    if voters.is_empty() {
        bail!("--controller-quorum-voters names no voter");
    }
    Ok(voters)
}

fn resolve_address(text: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .with_context(|| format!("{text:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        node: NodeId,
        listen: Option<&str>,
        voters: Option<&str>,
    ) -> anyhow::Result<Option<ClusterConfig>> {
        super::resolve(&flags(node, listen, voters))
    }

    fn flags(node: NodeId, listen: Option<&str>, voters: Option<&str>) -> ClusterFlags {
        ClusterFlags {
            node,
            listen: listen.map(str::to_string),
            voters: voters.map(str::to_string),
            heartbeat_interval_ms: 2_000,
            session_timeout_ms: 9_000,
            leader_balance_interval_ms: 300_000,
            replica_selector_class: None,
        }
    }

    #[test]
    fn voters_and_listen_agree() {
        let voters = "1@127.0.0.1:9101, 2@127.0.0.1:9102,3@127.0.0.1:9103";
        let config = resolve(NodeId(2), Some("0.0.0.0:9102"), Some(voters))
            .unwrap()
            .unwrap();
        assert_eq!(config.voter_ids(), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert!(config.is_voter(NodeId(3)) && !config.is_voter(NodeId(4)));
        assert_eq!(config.advertised, "127.0.0.1:9102".parse().unwrap());
        assert_eq!(resolve(NodeId(0), None, None).unwrap(), None);
    }

    #[test]
    fn a_node_outside_the_voters_is_a_broker_only_node() {
        let voters = "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103";
        let config = resolve(NodeId(4), Some("127.0.0.1:9104"), Some(voters))
            .unwrap()
            .unwrap();
        assert!(!config.is_voter(NodeId(4)));
        assert_eq!(config.advertised, "127.0.0.1:9104".parse().unwrap());
    }

    #[test]
    fn bad_cluster_flags_are_refused() {
        let voters = "1@127.0.0.1:9101,2@127.0.0.1:9102";
        let refused = |node: i32, listen: Option<&str>, voters: Option<&str>| {
            resolve(NodeId(node), listen, voters)
                .unwrap_err()
                .to_string()
        };
        let node_1 = || flags(NodeId(1), Some("127.0.0.1:9101"), Some(voters));
        let slow_heartbeats = ClusterFlags {
            heartbeat_interval_ms: 9_000,
            ..node_1()
        };
        let refusal = super::resolve(&slow_heartbeats).unwrap_err().to_string();
        assert!(refusal.contains("below"));
        let unknown_selector = ClusterFlags {
            replica_selector_class: Some("com.example.Nearest".into()),
            ..node_1()
        };
        let refusal = super::resolve(&unknown_selector).unwrap_err().to_string();
        assert!(refusal.contains("RackAwareReplicaSelector"));
        let rack_aware = ClusterFlags {
            replica_selector_class: Some(RACK_AWARE_REPLICA_SELECTOR.into()),
            ..node_1()
        };
        assert!(
            super::resolve(&rack_aware)
                .unwrap()
                .unwrap()
                .rack_aware_reads
        );
        assert!(refused(1, Some("127.0.0.1:9101"), None).contains("go together"));
        assert!(refused(3, Some("0.0.0.0:9103"), Some(voters)).contains("not a voter"));
        assert!(refused(3, Some("127.0.0.1:9102"), Some(voters)).contains("a voter's address"));
        assert!(refused(1, Some("127.0.0.1:9999"), Some(voters)).contains("is not where"));
        let twice = "1@127.0.0.1:9101,1@127.0.0.1:9102";
        assert!(refused(1, Some("127.0.0.1:9101"), Some(twice)).contains("twice"));
        assert!(refused(1, Some("127.0.0.1:9101"), Some("x@y")).contains("not a node id"));
        assert!(refused(1, Some("127.0.0.1:9101"), Some("9101")).contains("ID@HOST:PORT"));
    }
}
