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
use crate::runtime::{self, TcpListener, TcpStream};
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

/// Accepts connections until shutdown, handing each to `on_accept`. Accept errors (typically
/// EMFILE) back off briefly instead of spinning.
pub(crate) async fn accept_until_shutdown(
    shard: &Shard,
    listener: TcpListener,
    what: &str,
    mut on_accept: impl FnMut(TcpStream),
) {
    loop {
        let accepted = select(Box::pin(listener.accept()), Box::pin(shard.shutdown.wait())).await;
        match accepted {
            Either::Left((Ok(stream), _)) => on_accept(stream),
            Either::Left((Err(error), _)) => {
                tracing::warn!(%error, listener = what, "accept failed");
                runtime::sleep(Duration::from_millis(10)).await;
            }
            Either::Right(_) => return,
        }
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    accept_until_shutdown(&shard, listener, "kafka", |stream| {
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
    })
    .await
}
