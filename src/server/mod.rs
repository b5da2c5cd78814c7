//! The Kafka listener of a shard: accepting connections, framing, in-order responses.
//!
//! Per-shard: every shard binds the listener (SO_REUSEPORT, so the kernel spreads
//! connections); a connection lives on the shard that accepted it. Requests on a connection
//! are handled concurrently, and their responses are written back in request order.

pub mod admin;
mod connection;
pub mod dispatch;
pub mod handlers;

use std::rc::Rc;
use std::time::Duration;

use crate::metrics;
use crate::runtime::{self, TcpListener};
use crate::shard::Shard;
use futures::future::{select, Either};

/// What a handler produced for one request.
pub enum Response {
    /// A complete response frame, split into chunks written back to back (record bytes are
    /// passed through without being copied).
    Chunks(Vec<bytes::Bytes>),
    /// acks=0 produce: the client expects no response.
    Nothing,
    /// The request was unacceptable: close the connection after earlier responses.
    Close(String),
}

/// Binds this shard's listener and starts accepting. Errors are reported, not panicked.
pub fn start_listener(shard: Rc<Shard>) -> Result<(), String> {
    let listener = runtime::bind_shared_listener(shard.config.listen).map_err(|e| e.to_string())?;
    runtime::spawn_into(shard.queues.requests, accept_loop(shard, listener));
    Ok(())
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let accepted = select(Box::pin(listener.accept()), Box::pin(shard.shutdown.wait())).await;
        match accepted {
            Either::Left((Ok(stream), _)) => {
                let shard = shard.clone();
                shard.connections.opened();
                metrics::add(&shard.metrics.connections_accepted, 1);
                metrics::add(&shard.metrics.connections_open, 1);
                runtime::spawn_into(shard.queues.requests, async move {
                    connection::serve(&shard, stream).await;
                    shard.connections.closed();
                    let open = &shard.metrics.connections_open;
                    open.set(open.get().saturating_sub(1));
                });
            }
            Either::Left((Err(error), _)) => {
                // Typically EMFILE: back off instead of spinning on the error.
                tracing::warn!(%error, "accept failed");
                runtime::sleep(Duration::from_millis(10)).await;
            }
            Either::Right(_) => return,
        }
    }
}
