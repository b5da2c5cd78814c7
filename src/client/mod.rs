//! corelog's own small Kafka client, shared by `corelog bench` and `corelog topic`.
//!
//! `frame` speaks the wire (frames, headers, correlation ids) over any async byte stream;
//! `admin` is a blocking control-plane client over one TCP connection on the calling thread
//! (no executor), for set-up and administration. It deliberately knows nothing of the broker's
//! internals: everything goes through the Kafka protocol, so it works against any broker.

pub mod admin;
pub mod frame;
pub mod groups;
pub mod topics;

pub use frame::{Connection, FrameReader, FrameWriter};
