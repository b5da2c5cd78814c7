//! corelog's own small Kafka client, shared by `corelog bench` and the admin commands
//! (`corelog topic`, `group`, `cluster`, ...).
//!
//! `frame` speaks the wire (frames, headers, correlation ids) over any async byte stream;
//! `admin` is a blocking control-plane client over one TCP connection on the calling thread
//! (no executor), for set-up and administration. It deliberately knows nothing of the broker's
//! internals: everything goes through the Kafka protocol, so it works against any broker.

pub mod acls;
pub mod admin;
pub mod cluster;
pub mod frame;
pub mod groups;
pub mod quotas;
pub mod reassignments;
pub mod security;
pub mod topics;
pub mod users;

pub use frame::{Connection, FrameReader, FrameWriter};

/// The `--brokers` flag of the admin commands (`corelog topic`, `corelog group`).
#[derive(clap::Args, Debug, Clone)]
pub struct BrokersArg {
    /// Broker address(es), HOST:PORT[,HOST:PORT...]; the first one that answers is used.
    #[arg(
        long,
        global = true,
        env = "CORELOG_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    #[command(flatten)]
    pub security: security::SecurityArgs,
}

impl BrokersArg {
    /// A control-plane connection to the first of the brokers that answers.
    pub fn connect(&self) -> anyhow::Result<admin::Admin> {
        use anyhow::Context;
        let security = security::ClientSecurity::from_args(&self.security)?;
        admin::Admin::connect_any(std::slice::from_ref(&self.brokers), &security)
            .with_context(|| format!("cannot reach a broker at {}", self.brokers))
    }
}
