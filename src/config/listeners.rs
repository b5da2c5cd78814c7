//! Kafka-style listeners: `--listeners NAME://host:port,...`, each with a security protocol
//! (the name itself, or `--listener-security-protocol-map NAME:PROTOCOL,...`), and the
//! addresses advertised for them (`--advertised-listeners NAME://host:port,...`).
//!
//! `--listen host:port` (and `--advertised-listener host:port`) remain the short form of one
//! PLAINTEXT listener, which is also the default.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

use crate::security::SecurityProtocol;

/// One listener: what it binds, how it is secured, and what clients are told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Kafka's listener name ("PLAINTEXT", "SASL_SSL", or a custom one from the map).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
}

/// What the listener flags and file keys say, before resolving.
#[derive(Debug, Default, Clone)]
pub struct ListenerFlags {
    pub listen: Option<SocketAddr>,
    pub listeners: Option<String>,
    pub advertised_listener: Option<String>,
    pub advertised_listeners: Option<String>,
    pub protocol_map: Option<String>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9092";

/// The listeners the broker runs, in the order given (the first is the one start-up logs and
/// port checks name first).
pub fn resolve(flags: &ListenerFlags) -> anyhow::Result<Vec<ListenerConfig>> {
    let specs = match (&flags.listen, &flags.listeners) {
        (Some(_), Some(_)) => bail!("--listen and --listeners are alternatives; give one"),
        (Some(address), None) => vec![("PLAINTEXT".to_string(), address.to_string())],
        (None, Some(list)) => parse_named_addresses(list, "--listeners")?,
        (None, None) => vec![("PLAINTEXT".to_string(), DEFAULT_LISTEN.to_string())],
    };
    let protocols = protocol_map(flags.protocol_map.as_deref())?;
    let advertised = advertised(flags, &specs)?;
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(specs.len());
    for (name, address) in specs {
        let protocol = match protocols.get(&name) {
            Some(protocol) => *protocol,
            None => name.parse().map_err(|_| {
                anyhow::anyhow!(
                    "listener {name:?} is not a security protocol name and is not in \
                     --listener-security-protocol-map"
                )
            })?,
        };
        let bind =
            resolve_bind(&address).with_context(|| format!("listener {name}://{address}"))?;
        if listeners.iter().any(|l| l.name == name) {
            bail!("listener {name:?} is named twice");
        }
        if listeners
            .iter()
            .any(|l| l.bind.port() == bind.port() && bind.port() != 0)
        {
            bail!(
                "listeners {name:?} and another both use port {}",
                bind.port()
            );
        }
        let (advertised_host, advertised_port) = match advertised.get(&name) {
            Some((host, port)) => (host.clone(), *port),
            None => (
                default_advertised_host(&address, &bind),
                i32::from(bind.port()),
            ),
        };
        listeners.push(ListenerConfig {
            name,
            protocol,
            bind,
            advertised_host,
            advertised_port,
        });
    }
    if let Some(unknown) = advertised
        .keys()
        .find(|n| !listeners.iter().any(|l| &&l.name == n))
    {
        bail!("--advertised-listeners names {unknown:?}, which is not a listener");
    }
    Ok(listeners)
}

fn advertised(
    flags: &ListenerFlags,
    specs: &[(String, String)],
) -> anyhow::Result<BTreeMap<String, (String, i32)>> {
    match (&flags.advertised_listener, &flags.advertised_listeners) {
        (Some(_), Some(_)) => {
            bail!("--advertised-listener and --advertised-listeners are alternatives; give one")
        }
        (Some(_), None) if specs.len() > 1 => {
            bail!("with several listeners, name each in --advertised-listeners NAME://host:port")
        }
        (Some(address), None) => {
            let (host, port) = parse_host_port(address)?;
            Ok(BTreeMap::from([(specs[0].0.clone(), (host, port))]))
        }
        (None, Some(list)) => parse_named_addresses(list, "--advertised-listeners")?
            .into_iter()
            .map(|(name, address)| Ok((name, parse_host_port(&address)?)))
            .collect(),
        (None, None) => Ok(BTreeMap::new()),
    }
}

/// "NAME://host:port,NAME://host:port" -> [(NAME, "host:port")]. Names are upper-cased, as
/// Kafka compares them.
fn parse_named_addresses(list: &str, flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let Some((name, address)) = item.split_once("://") else {
            bail!("{flag}: {item:?} is not NAME://host:port");
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("{flag}: {name:?} is not a listener name");
        }
        out.push((name.to_ascii_uppercase(), address.to_string()));
    }
    if out.is_empty() {
        bail!("{flag} names no listener");
    }
    Ok(out)
}

fn protocol_map(text: Option<&str>) -> anyhow::Result<BTreeMap<String, SecurityProtocol>> {
    let mut map = BTreeMap::new();
    for item in text
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let Some((name, protocol)) = item.split_once(':') else {
            bail!("--listener-security-protocol-map: {item:?} is not NAME:PROTOCOL");
        };
        let protocol = protocol
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--listener-security-protocol-map: {e}"))?;
        map.insert(name.to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

/// "host:port" where the host may be empty (every interface), a name or an IP address.
fn resolve_bind(address: &str) -> anyhow::Result<SocketAddr> {
    let (host, port) = split_host_port(address, "listener")?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host:?}"))?
        .next()
        .with_context(|| format!("{host:?} resolves to no address"))
}

/// What clients are told when no advertised address is given: the host as written, or this
/// machine's name when the listener binds every interface.
fn default_advertised_host(address: &str, bind: &SocketAddr) -> String {
    let written = split_host_port(address, "listener").map_or("", |(host, _)| host);
    if !bind.ip().is_unspecified() && !written.is_empty() {
        return written.to_string();
    }
    if !bind.ip().is_unspecified() {
        return bind.ip().to_string();
    }
    let mut name = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into a buffer we own.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    match std::str::from_utf8(&name[..end]) {
        Ok(host) if ok && !host.is_empty() => host.to_string(),
        _ => "localhost".to_string(),
    }
}

/// "host:port" as advertised (the host is not resolved).
pub fn parse_host_port(text: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = split_host_port(text, "advertised listener")?;
    if host.is_empty() {
        bail!("advertised listener {text:?} has no host");
    }
    Ok((host.to_string(), i32::from(port)))
}

/// "host:port" (an IPv6 host in brackets) split into the host, brackets removed, and the
/// port; `what` names the setting in errors.
fn split_host_port<'a>(text: &'a str, what: &str) -> anyhow::Result<(&'a str, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("{what} {text:?} is not host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("{what} {text:?} has a bad port"))?;
    Ok((host.trim_matches(['[', ']']), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(listeners: &str) -> ListenerFlags {
        ListenerFlags {
            listeners: Some(listeners.into()),
            ..Default::default()
        }
    }

    /// The default is one PLAINTEXT listener on 127.0.0.1:9092, advertised as itself.
    #[test]
    fn default_is_one_plaintext_listener() {
        let listeners = resolve(&ListenerFlags::default()).unwrap();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].name, "PLAINTEXT");
        assert_eq!(listeners[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[0].bind, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(listeners[0].advertised_host, "127.0.0.1");
        assert_eq!(listeners[0].advertised_port, 9092);
    }

    /// Several listeners with their protocols, custom names through the map, advertised
    /// addresses per name.
    #[test]
    fn named_listeners_and_advertised_addresses() {
        let mut flags =
            flags("PLAINTEXT://127.0.0.1:9092,sasl_ssl://localhost:9093,CLIENT://:9094");
        flags.protocol_map = Some("CLIENT:SASL_PLAINTEXT".into());
        flags.advertised_listeners = Some("CLIENT://broker.example:19094".into());
        let listeners = resolve(&flags).unwrap();
        let summary: Vec<_> = listeners
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.protocol,
                    l.advertised_host.as_str(),
                    l.advertised_port,
                )
            })
            .collect();
        assert_eq!(
            summary[0],
            ("PLAINTEXT", SecurityProtocol::Plaintext, "127.0.0.1", 9092)
        );
        assert_eq!(
            summary[1],
            ("SASL_SSL", SecurityProtocol::SaslSsl, "localhost", 9093)
        );
        assert_eq!(
            summary[2],
            (
                "CLIENT",
                SecurityProtocol::SaslPlaintext,
                "broker.example",
                19094
            )
        );
        assert!(listeners[2].bind.ip().is_unspecified());
    }

    /// Contradictions and typos are errors that say what is wrong.
    #[test]
    fn bad_listener_settings_are_refused() {
        for (listeners, map, advertised) in [
            ("CLIENT://127.0.0.1:1", None, None),
            (
                "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
                None,
                None,
            ),
            ("PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1", None, None),
            ("PLAINTEXT:127.0.0.1:1", None, None),
            ("PLAINTEXT://127.0.0.1", None, None),
            ("", None, None),
            ("X://127.0.0.1:1", Some("X:KERBEROS"), None),
            ("PLAINTEXT://127.0.0.1:1", None, Some("SSL://h:1")),
        ] {
            let mut flags = flags(listeners);
            flags.protocol_map = map.map(String::from);
            flags.advertised_listeners = advertised.map(String::from);
            assert!(
                resolve(&flags).is_err(),
                "{listeners} {map:?} {advertised:?}"
            );
        }
        let both = ListenerFlags {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            listeners: Some("PLAINTEXT://127.0.0.1:2".into()),
            ..Default::default()
        };
        assert!(resolve(&both).is_err());
    }
}
